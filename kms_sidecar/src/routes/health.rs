//! `/healthz` (the process serves), `/readyz` (the key provider works).

use hyper::StatusCode;

use super::views::{HealthView, ProviderView, ReadinessView};
use super::{json_response, HttpResponse};
use crate::state::AppState;

pub fn healthz() -> HttpResponse {
    json_response(StatusCode::OK, &HealthView { status: "ok", version: env!("CARGO_PKG_VERSION") })
}

pub async fn readyz(state: &AppState) -> HttpResponse {
    let ready = state.readiness.key_provider_ready(&state.crypto).await;
    let name = state.crypto.provider().name();
    if ready {
        json_response(
            StatusCode::OK,
            &ReadinessView { status: "ready", key_provider: ProviderView { name, status: "ok" } },
        )
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &ReadinessView { status: "not_ready", key_provider: ProviderView { name, status: "error" } },
        )
    }
}
