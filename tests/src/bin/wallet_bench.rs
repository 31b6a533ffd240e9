//! What the wallet routes cost the sidecar itself, apart from the Stripe calls
//! they make. Each call's `Server-Timing: outbound;dur=...` (the sidecar's
//! `server_timing` setting) says how long it waited on Stripe and for a pooled
//! connection; the sidecar's own time is the rest. Baseline, in the same run:
//! `GET /healthz` over the same socket, the transport's floor. One client,
//! calls back to back; the target is p95 ≤ 5 ms of the sidecar's own time.
//! Run by bench/wallet.sh; prints a table, asserts nothing.

// Test code: a failed unwrap is a failed test (or benchmark), with its message.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use harness::bench::{healthz_floor, summary, OwnTimes};
use harness::{
    call, confirm_setup_intent, new_traveler, traveler_token, wallet_card, wallet_sidecar_config, Emulators, Sidecar,
    TestDb,
};
use kms_sidecar::config::DatabaseSettings;
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let duration = Duration::from_secs(std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3));
    let emulators = Emulators::from_env()?;
    let localstripe = emulators.localstripe_url.clone();
    let db = TestDb::migrated().await?;
    let user = new_traveler(&db).await?;
    let token = traveler_token(&user, json!({}));
    let mut config = wallet_sidecar_config(&db)?.with_stripe(&localstripe);
    config.settings.database = Some(DatabaseSettings { max_connections: 16 });
    config.settings.server_timing = true;
    config.env.push(("PW_LOG".into(), "warn".into()));
    let sidecar = Sidecar::start_with(config).await?;
    let first = wallet_card(&sidecar, &token, &localstripe, "4242424242424242").await?;
    let second = wallet_card(&sidecar, &token, &localstripe, "5555555555554444").await?;
    let mut n = 0u64;
    let mut key = || {
        n += 1;
        format!("bench-{n}")
    };

    OwnTimes::print_header(&format!("1 client, {} s per row", duration.as_secs()));
    let floor_p95 = healthz_floor(&sidecar, duration).await?;

    let mut list = OwnTimes::default();
    let until = Instant::now() + duration;
    while Instant::now() < until {
        list.measure(call(&sidecar, "GET", "/v1/wallet/payment-methods", &token, None, None)).await?;
    }
    list.print("GET /v1/wallet/payment-methods", floor_p95);

    let mut default = OwnTimes::default();
    let until = Instant::now() + duration;
    let mut cards = [first.as_str(), second.as_str()].into_iter().cycle();
    while Instant::now() < until {
        let card = cards.next().unwrap_or_default();
        let path = format!("/v1/wallet/payment-methods/{card}/default");
        default.measure(call(&sidecar, "POST", &path, &token, Some(&key()), None)).await?;
    }
    default.print("POST .../{id}/default", floor_p95);

    // A SetupIntent, Stripe.js's part (not measured), the card saved, then deleted.
    let (mut setup, mut add, mut delete) = (OwnTimes::default(), OwnTimes::default(), OwnTimes::default());
    let until = Instant::now() + duration;
    while Instant::now() < until {
        let intent =
            setup.measure(call(&sidecar, "POST", "/v1/wallet/setup-intents", &token, Some(&key()), None)).await?;
        let id = intent.json["setup_intent_id"].as_str().unwrap_or_default().to_owned();
        let secret = intent.json["client_secret"].as_str().unwrap_or_default().to_owned();
        confirm_setup_intent(&localstripe, &id, &secret, "4000000000000077").await?;
        let body = json!({ "setup_intent_id": id, "off_session_consent": { "text_version": "card-mit-bench" } });
        let added =
            add.measure(call(&sidecar, "POST", "/v1/wallet/payment-methods", &token, Some(&key()), Some(body))).await?;
        let card = added.json["data"]["id"].as_str().unwrap_or_default().to_owned();
        let path = format!("/v1/wallet/payment-methods/{card}");
        delete.measure(call(&sidecar, "DELETE", &path, &token, Some(&key()), None)).await?;
    }
    setup.print("POST /v1/wallet/setup-intents", floor_p95);
    add.print("POST /v1/wallet/payment-methods", floor_p95);
    delete.print("DELETE /v1/wallet/payment-methods/{id}", floor_p95);
    for (route, times) in [
        ("list", &mut list),
        ("default", &mut default),
        ("setup intent", &mut setup),
        ("add", &mut add),
        ("delete", &mut delete),
    ] {
        let (own50, own95) = times.own_p50_p95();
        summary(
            &format!("wallet route {route}: the sidecar's own time, 1 client"),
            &format!("p50 {} µs, p95 {} µs", own50.as_micros(), own95.as_micros()),
            &format!("{:.1}x GET /healthz p95", own95.as_secs_f64() / floor_p95.as_secs_f64().max(1e-9)),
            "p95 ≤ 5000 µs",
        )?;
    }
    println!("\nown = the call's time less the sidecar's outbound wait (Stripe, pooled connection); target own p95 ≤ 5000 µs");
    Ok(())
}
