//! `/healthz` (the process serves), `/readyz` (the key provider works).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::json;

use super::{json_response, HttpResponse};
use crate::state::AppState;

pub fn healthz() -> HttpResponse {
    json_response(StatusCode::OK, &json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

/// Probes hit /readyz often; a provider check costs KMS calls, so its answer is
/// reused for a while.
#[derive(Debug, Default)]
pub struct ReadinessCache(Mutex<Option<(Instant, bool)>>);

const READINESS_TTL: Duration = Duration::from_secs(15);

pub async fn readyz(state: &AppState) -> HttpResponse {
    let cached = state
        .readiness
        .0
        .lock()
        .ok()
        .and_then(|c| *c)
        .filter(|(at, _)| at.elapsed() < READINESS_TTL)
        .map(|(_, ready)| ready);
    let ready = match cached {
        Some(ready) => ready,
        None => {
            // The provider's error text stays in the log, never in the answer.
            let ready = match state.crypto.provider().check().await {
                Ok(()) => true,
                Err(error) => {
                    tracing::warn!(%error, "key provider not ready");
                    false
                }
            };
            if let Ok(mut cache) = state.readiness.0.lock() {
                *cache = Some((Instant::now(), ready));
            }
            ready
        }
    };
    let provider = state.crypto.provider().name();
    if ready {
        json_response(
            StatusCode::OK,
            &json!({ "status": "ready", "key_provider": { "name": provider, "status": "ok" } }),
        )
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "status": "not_ready", "key_provider": { "name": provider, "status": "error" } }),
        )
    }
}
