//! `/healthz` (the process serves), `/readyz` (what it needs answers: the key
//! provider, and the database and Stripe when configured), `/metrics`.

use hyper::StatusCode;

use super::views::{HealthView, ProviderView, ReadinessView};
use super::{json_response, text_response, HttpResponse};
use crate::kill_switches::Feature;
use crate::metrics::Family;
use crate::readiness::database_ready;
use crate::state::AppState;

pub fn healthz() -> HttpResponse {
    json_response(StatusCode::OK, &HealthView { status: "ok", version: env!("CARGO_PKG_VERSION") })
}

/// Each part's readiness; `None` for a part the sidecar is not configured with.
struct Parts {
    key_provider: bool,
    database: Option<bool>,
    stripe: Option<bool>,
}

async fn parts(state: &AppState) -> Parts {
    let (key_provider, stripe) = providers(state).await;
    Parts { key_provider, database: database_part(state).await, stripe }
}

/// The key provider's and Stripe's readiness, each asked at most once per TTL.
async fn providers(state: &AppState) -> (bool, Option<bool>) {
    let key_provider = state.readiness.key_provider_ready(&state.crypto).await;
    let stripe = match &state.stripe {
        Some(stripe) => Some(state.readiness.stripe_ready(stripe.as_ref()).await),
        None => None,
    };
    (key_provider, stripe)
}

/// The database's readiness, asked now (it is cheap); `None` without one.
async fn database_part(state: &AppState) -> Option<bool> {
    match &state.database {
        Some(database) => Some(database_ready(database).await),
        None => None,
    }
}

/// Asks the providers again every [`crate::readiness::REFRESH`] for as long as
/// the sidecar runs (each at most once per TTL, as for `/readyz`), so that
/// `/metrics` reads answers no older than the TTL.
pub async fn watch_readiness(state: std::sync::Arc<AppState>) {
    let mut every = tokio::time::interval(crate::readiness::REFRESH);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        providers(&state).await;
    }
}

pub async fn readyz(state: &AppState) -> HttpResponse {
    let word = |ok: bool| if ok { "ok" } else { "error" };
    let Parts { key_provider, database, stripe } = parts(state).await;
    let ready = key_provider && database != Some(false) && stripe != Some(false);
    let view = ReadinessView {
        status: if ready { "ready" } else { "not_ready" },
        key_provider: ProviderView { name: state.crypto.provider().name(), status: word(key_provider) },
        database: database.map(word),
        stripe: stripe.map(word),
    };
    json_response(if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, &view)
}

/// The process's own series, then what is read at scrape time: the
/// dependencies as the readiness checks see them, the kill switches, and the
/// database's figures (money, jobs), which a slow database leaves out.
pub async fn metrics(state: &AppState) -> HttpResponse {
    // The providers' last answers, never a live call: a hung Stripe must not
    // make the scrape time out and hide the very series that says so.
    let (key_provider, stripe) = state.readiness.last_answers();
    let database = database_part(state).await;
    let up = [("key_provider", key_provider), ("database", database), ("stripe", stripe)]
        .into_iter()
        .filter_map(|(part, ready)| Some((format!("{{dependency=\"{part}\"}}"), f64::from(u8::from(ready?)))))
        .collect();
    let thrown = Feature::ALL
        .into_iter()
        .map(|feature| {
            (format!("{{feature=\"{}\"}}", feature.as_str()), f64::from(u8::from(state.kill_switches.is_off(feature))))
        })
        .collect();
    let mut families = vec![
        Family::gauge(
            "parker_wallet_dependency_up",
            "1 while the dependency passes its readiness check (the key provider and Stripe checked at most every 15 s).",
            up,
        ),
        Family::gauge("parker_wallet_kill_switch_thrown", "1 while an operator has the feature switched off.", thrown),
    ];
    if let Some(database) = &state.database {
        let read = match crate::operations::figures(database, &state.settings.bookings).await {
            Ok(figures) => {
                families.extend(figures);
                true
            }
            Err(error) => {
                tracing::warn!(%error, "the database's figures are left out of this scrape");
                false
            }
        };
        // Their absence silences the money and job alerts: this says so.
        families.push(Family::gauge(
            "parker_wallet_database_figures_up",
            "1 when this scrape carries the database's money and job figures.",
            vec![(String::new(), f64::from(u8::from(read)))],
        ));
    }
    let mut out = state.metrics.render();
    for family in &families {
        family.render(&mut out);
    }
    text_response(out)
}
