//! `/healthz` (the process serves), `/readyz` (what it needs answers: the key
//! provider, and the database and Stripe when configured).

use hyper::StatusCode;

use super::views::{HealthView, ProviderView, ReadinessView};
use super::{json_response, HttpResponse};
use crate::readiness::database_ready;
use crate::state::AppState;

pub fn healthz() -> HttpResponse {
    json_response(StatusCode::OK, &HealthView { status: "ok", version: env!("CARGO_PKG_VERSION") })
}

pub async fn readyz(state: &AppState) -> HttpResponse {
    let word = |ok: bool| if ok { "ok" } else { "error" };
    let key_provider = state.readiness.key_provider_ready(&state.crypto).await;
    let database = match &state.database {
        Some(database) => Some(database_ready(database).await),
        None => None,
    };
    let stripe = match &state.stripe {
        Some(stripe) => Some(state.readiness.stripe_ready(stripe.as_ref()).await),
        None => None,
    };
    let ready = key_provider && database != Some(false) && stripe != Some(false);
    let view = ReadinessView {
        status: if ready { "ready" } else { "not_ready" },
        key_provider: ProviderView { name: state.crypto.provider().name(), status: word(key_provider) },
        database: database.map(word),
        stripe: stripe.map(word),
    };
    json_response(if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, &view)
}
