//! The HTTP surface. `dispatch` is the router; each route lives in its own module.

mod health;

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};

use crate::problem::Problem;

pub type HttpResponse = Response<Full<Bytes>>;

/// Routes one request. Never fails at the hyper level: every error is a problem response.
pub async fn dispatch(request: Request<Incoming>) -> Result<HttpResponse, Infallible> {
    let response = match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => health::healthz(),
        (_, "/healthz") => Problem::method_not_allowed().into_response(),
        (_, path) => Problem::not_found()
            .with_detail(format!("no route for {path}"))
            .into_response(),
    };
    Ok(response)
}

/// A JSON response with the given status.
pub(crate) fn json_response(status: hyper::StatusCode, value: &serde_json::Value) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
