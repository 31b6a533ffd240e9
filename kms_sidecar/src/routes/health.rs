//! Liveness: the process is up and serving. Readiness (dependencies) comes with them.

use hyper::StatusCode;
use serde_json::json;

use super::{json_response, HttpResponse};

pub fn healthz() -> HttpResponse {
    json_response(
        StatusCode::OK,
        &json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }),
    )
}
