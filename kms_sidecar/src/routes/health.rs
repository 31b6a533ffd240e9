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
pub struct ReadinessCache(Mutex<Option<(Instant, Result<(), String>)>>);

const READINESS_TTL: Duration = Duration::from_secs(15);

pub async fn readyz(state: &AppState) -> HttpResponse {
    let cached = state
        .readiness
        .0
        .lock()
        .ok()
        .and_then(|c| c.clone())
        .filter(|(at, _)| at.elapsed() < READINESS_TTL)
        .map(|(_, result)| result);
    let result = match cached {
        Some(result) => result,
        None => {
            let result = state.crypto.provider().check().await.map_err(|e| e.to_string());
            if let Ok(mut cache) = state.readiness.0.lock() {
                *cache = Some((Instant::now(), result.clone()));
            }
            result
        }
    };
    let provider = state.crypto.provider().name();
    match result {
        Ok(()) => json_response(StatusCode::OK, &json!({ "status": "ready", "key_provider": { "name": provider, "status": "ok" } })),
        Err(error) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "status": "not_ready", "key_provider": { "name": provider, "status": "error", "detail": error } }),
        ),
    }
}
