//! The HTTP surface. `dispatch` is the router: it checks the caller's class,
//! reads the body within the size limit and hands over to one route module.

mod crypto;
mod error;
pub mod health;
mod idempotency;
mod stripe_webhooks;
mod wallet;

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};

pub use error::ApiError;

use crate::domain::CallerClass;
use crate::metrics::Metrics;
use crate::state::AppState;

pub type HttpResponse = Response<Full<Bytes>>;

/// The routes and the caller classes allowed on each.
fn allowed(path: &str, class: CallerClass) -> bool {
    match path {
        "/healthz" | "/readyz" => true,
        p if p.starts_with("/v1/crypto/") => true,
        p if p.starts_with("/v1/wallet/") => class == CallerClass::Edge,
        "/v1/webhooks/stripe" => class == CallerClass::Edge,
        "/metrics" => class == CallerClass::Admin,
        _ => false,
    }
}

/// Routes one request. `caller` is the peer's class, `None` when its uid is not
/// in the caller map: such a peer is refused everything.
pub async fn dispatch(
    state: Arc<AppState>,
    caller: Option<CallerClass>,
    request: Request<Incoming>,
) -> Result<HttpResponse, Infallible> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let response = match route(&state, caller, request).await {
        Ok(response) => response,
        Err(error) => {
            if matches!(error, ApiError::Forbidden) {
                Metrics::add(&state.metrics.requests_refused);
            }
            let problem = error.into_problem();
            if problem.status >= 500 {
                tracing::warn!(%method, %path, code = problem.code, "request failed");
            }
            problem.into_response()
        }
    };
    Ok(response)
}

/// `/v1/wallet/payment-methods/{id}` and `/v1/wallet/payment-methods/{id}/default`.
fn card_path(path: &str) -> Option<(&str, bool)> {
    let rest = path.strip_prefix("/v1/wallet/payment-methods/")?;
    match rest.strip_suffix("/default") {
        Some(id) => Some((id, true)),
        None if !rest.contains('/') => Some((rest, false)),
        None => None,
    }
}

async fn route(state: &AppState, caller: Option<CallerClass>, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let path = request.uri().path().to_owned();
    let known = card_path(&path).is_some() || matches!(
        path.as_str(),
        "/healthz"
            | "/readyz"
            | "/metrics"
            | "/v1/crypto/encrypt"
            | "/v1/crypto/decrypt"
            | "/v1/crypto/rewrap"
            | "/v1/wallet/payment-methods"
            | "/v1/wallet/setup-intents"
            | "/v1/webhooks/stripe"
    );
    if !known {
        return Err(ApiError::NotFound(path));
    }
    let class = caller.ok_or(ApiError::Forbidden)?;
    if !allowed(&path, class) {
        return Err(ApiError::Forbidden);
    }
    let method = request.method().clone();
    match (method, path.as_str()) {
        (Method::GET, "/healthz") => Ok(health::healthz()),
        (Method::GET, "/readyz") => Ok(health::readyz(state).await),
        (Method::GET, "/metrics") => Ok(text_response(state.metrics.render())),
        (method, wallet_path) if wallet_path.starts_with("/v1/wallet/") => {
            let call = wallet::authenticate(state, &request)?;
            let body = read_body(request, state.settings.limits.max_body_bytes).await?;
            let route = format!("{method} {wallet_path}");
            let ((status, answer), replayed) = match (&method, wallet_path) {
                (&Method::GET, "/v1/wallet/payment-methods") => (wallet::list_payment_methods(&call).await?, false),
                (&Method::POST, "/v1/wallet/setup-intents") => {
                    idempotency::run(&call, &route, &body, wallet::create_setup_intent(state, &call)).await?
                }
                (&Method::POST, "/v1/wallet/payment-methods") => {
                    idempotency::run(&call, &route, &body, wallet::add_payment_method(state, &call, &body)).await?
                }
                (_, card) => {
                    let (id, default) = card_path(card).ok_or_else(|| ApiError::NotFound(card.to_owned()))?;
                    let card_id = uuid::Uuid::parse_str(id).map_err(|_| ApiError::InvalidId(id.to_owned()))?;
                    match (&method, default) {
                        (&Method::POST, true) => idempotency::run(&call, &route, &body, wallet::make_default(&call, card_id)).await?,
                        (&Method::DELETE, false) => {
                            idempotency::run(&call, &route, &body, wallet::delete_payment_method(state, &call, card_id)).await?
                        }
                        _ => return Err(ApiError::MethodNotAllowed),
                    }
                }
            };
            let mut response = if status.as_u16() >= 400 {
                let mut response = json_response(status, &answer);
                response.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("application/problem+json"),
                );
                response
            } else {
                json_response(status, &answer)
            };
            if replayed {
                response.headers_mut().insert("idempotent-replayed", hyper::header::HeaderValue::from_static("true"));
            }
            Ok(response)
        }
        (Method::POST, "/v1/webhooks/stripe") => {
            let signature = request.headers().get("stripe-signature").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let body = read_body(request, state.settings.limits.max_body_bytes).await?;
            let (status, answer) = stripe_webhooks::receive(state, signature.as_deref(), &body).await?;
            Ok(json_response(status, &answer))
        }
        (Method::POST, crypto_path) if crypto_path.starts_with("/v1/crypto/") => {
            let operation = match crypto_path {
                "/v1/crypto/encrypt" => crypto::Operation::Encrypt,
                "/v1/crypto/decrypt" => crypto::Operation::Decrypt,
                _ => crypto::Operation::Rewrap,
            };
            let body = read_body(request, state.settings.limits.max_body_bytes).await?;
            crypto::handle(state, operation, &body).await
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

pub(crate) async fn read_body(request: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    let declared = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::TooLarge(limit));
    }
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(ApiError::TooLarge(limit)),
        Err(error) => Err(ApiError::BadRequest(format!("reading the body: {error}"))),
    }
}

/// A JSON response with the given status.
pub(crate) fn json_response(status: StatusCode, value: &serde_json::Value) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn text_response(body: String) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}
