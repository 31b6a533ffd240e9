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

use harness::{
    call, confirm_setup_intent, new_traveler, traveler_token, wallet_card, wallet_sidecar_config, Emulators, Response,
    Sidecar, TestDb,
};
use kms_sidecar::config::DatabaseSettings;
use serde_json::json;

/// Own and whole times of one route's calls.
#[derive(Default)]
struct Samples {
    whole: Vec<Duration>,
    own: Vec<Duration>,
}

impl Samples {
    /// Records a call that took `whole`, of which the sidecar waited `outbound`.
    fn add(&mut self, whole: Duration, response: &Response) {
        self.whole.push(whole);
        self.own.push(whole.saturating_sub(outbound(response)));
    }

    fn print(&mut self, label: &str, floor: Duration) {
        let (own50, own95) = percentiles(&mut self.own);
        let (_, whole95) = percentiles(&mut self.whole);
        println!(
            "{label:<44} {:>6} {:>10} {:>10} {:>10} {:>9.1}x",
            self.own.len(),
            own50.as_micros(),
            own95.as_micros(),
            whole95.as_micros(),
            own95.as_secs_f64() / floor.as_secs_f64().max(1e-9)
        );
    }
}

/// The outbound wait the sidecar reports (`outbound;dur=<ms>`).
fn outbound(response: &Response) -> Duration {
    let header = response.headers.get("server-timing").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let ms = header.split("dur=").nth(1).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Duration::from_secs_f64(ms / 1000.0)
}

fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |q: f64| {
        samples
            .get(((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    (at(0.50), at(0.95))
}

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

    println!(
        "{:<44} {:>6} {:>10} {:>10} {:>10} {:>10}",
        format!("1 client, {} s per row", duration.as_secs()),
        "calls",
        "own p50 µs",
        "own p95 µs",
        "all p95 µs",
        "own/floor"
    );
    let mut floor = Samples::default();
    let until = Instant::now() + duration;
    while Instant::now() < until {
        let begun = Instant::now();
        let answer = sidecar.request("GET", "/healthz", None).await?;
        floor.add(begun.elapsed(), &answer);
    }
    let floor_p95 = percentiles(&mut floor.own).1;
    floor.print("baseline: GET /healthz (the socket's floor)", floor_p95);

    let mut list = Samples::default();
    let until = Instant::now() + duration;
    while Instant::now() < until {
        let begun = Instant::now();
        let answer = call(&sidecar, "GET", "/v1/wallet/payment-methods", &token, None, None).await?;
        anyhow::ensure!(answer.status.is_success(), "{}", answer.text);
        list.add(begun.elapsed(), &answer);
    }
    list.print("GET /v1/wallet/payment-methods", floor_p95);

    let mut default = Samples::default();
    let until = Instant::now() + duration;
    let mut cards = [first.as_str(), second.as_str()].into_iter().cycle();
    while Instant::now() < until {
        let card = cards.next().unwrap_or_default();
        let path = format!("/v1/wallet/payment-methods/{card}/default");
        let begun = Instant::now();
        let answer = call(&sidecar, "POST", &path, &token, Some(&key()), None).await?;
        anyhow::ensure!(answer.status.is_success(), "{}", answer.text);
        default.add(begun.elapsed(), &answer);
    }
    default.print("POST .../{id}/default", floor_p95);

    // A SetupIntent, Stripe.js's part (not measured), the card saved, then deleted.
    let (mut setup, mut add, mut delete) = (Samples::default(), Samples::default(), Samples::default());
    let until = Instant::now() + duration;
    while Instant::now() < until {
        let begun = Instant::now();
        let intent = call(&sidecar, "POST", "/v1/wallet/setup-intents", &token, Some(&key()), None).await?;
        anyhow::ensure!(intent.status.is_success(), "{}", intent.text);
        setup.add(begun.elapsed(), &intent);
        let id = intent.json["setup_intent_id"].as_str().unwrap_or_default().to_owned();
        let secret = intent.json["client_secret"].as_str().unwrap_or_default().to_owned();
        confirm_setup_intent(&localstripe, &id, &secret, "4000000000000077").await?;
        let body = json!({ "setup_intent_id": id, "off_session_consent": { "text_version": "card-mit-bench" } });
        let begun = Instant::now();
        let added = call(&sidecar, "POST", "/v1/wallet/payment-methods", &token, Some(&key()), Some(body)).await?;
        anyhow::ensure!(added.status.is_success(), "{}", added.text);
        add.add(begun.elapsed(), &added);
        let card = added.json["data"]["id"].as_str().unwrap_or_default().to_owned();
        let path = format!("/v1/wallet/payment-methods/{card}");
        let begun = Instant::now();
        let deleted = call(&sidecar, "DELETE", &path, &token, Some(&key()), None).await?;
        anyhow::ensure!(deleted.status.is_success(), "{}", deleted.text);
        delete.add(begun.elapsed(), &deleted);
    }
    setup.print("POST /v1/wallet/setup-intents", floor_p95);
    add.print("POST /v1/wallet/payment-methods", floor_p95);
    delete.print("DELETE /v1/wallet/payment-methods/{id}", floor_p95);
    println!("\nown = the call's time less the sidecar's outbound wait (Stripe, pooled connection); target own p95 ≤ 5000 µs");
    Ok(())
}
