//! The load test against the playbook's SLO (p95 < 200 ms, errors < 0.1 %):
//! an open model, requests started at a fixed arrival rate whatever the
//! sidecar's pace (a slow server cannot slow the generator down and hide its
//! latency: each request's time counts from when it was due), a realistic mix
//! over the socket, several rates in turn. Each answer's `Server-Timing`
//! (`[server_timing]` on) says how long the sidecar waited on Stripe, Duffel,
//! KMS and the pool; the rest is the sidecar's own time. Prints per-route
//! p50/p95/p99 (total and own), errors, the sidecar's RSS, and the highest rate
//! that held the SLO. Run by bench/load.sh; asserts nothing.

// Test code: a failed unwrap is a failed benchmark, with its message.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use harness::duffel_fake::FakeDuffel;
use harness::{
    call, card_saved_through_stripe, new_traveler, traveler_token, wallet_card, wallet_sidecar_config, Emulators,
    Sidecar, TestDb, CARD_CONSENT_VERSION,
};
use kms_sidecar::config::DatabaseSettings;
use serde_json::json;

/// The mix, by weight: what the app mostly does is read the wallet.
const MIX: [(Route, u32); 8] = [
    (Route::ListCards, 35),
    (Route::Encrypt, 15),
    (Route::Decrypt, 15),
    (Route::SetupIntent, 10),
    (Route::AddCard, 5),
    (Route::SetDefault, 10),
    (Route::ShowBooking, 5),
    (Route::Book, 5),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Route {
    ListCards,
    Encrypt,
    Decrypt,
    SetupIntent,
    AddCard,
    SetDefault,
    ShowBooking,
    Book,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Self::ListCards => "GET /v1/wallet/payment-methods",
            Self::Encrypt => "POST /v1/crypto/encrypt",
            Self::Decrypt => "POST /v1/crypto/decrypt",
            Self::SetupIntent => "POST /v1/wallet/setup-intents",
            Self::AddCard => "POST /v1/wallet/payment-methods",
            Self::SetDefault => "POST /v1/wallet/payment-methods/{id}/default",
            Self::ShowBooking => "GET /v1/bookings/{id}",
            Self::Book => "POST /v1/bookings",
        }
    }

    /// The route for the `n`th request: the mix's weights, spread evenly.
    fn nth(n: u64) -> Self {
        let total: u32 = MIX.iter().map(|(_, weight)| weight).sum();
        // A multiplicative hash spreads consecutive requests over the mix.
        let mut point = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32 % total;
        for (route, weight) in MIX {
            if point < weight {
                return route;
            }
            point -= weight;
        }
        Self::ListCards
    }
}

struct Traveler {
    id: String,
    token: String,
    campaign: String,
    cards: Vec<String>,
    sealed: String,
    booking: String,
}

/// One answered request: total time from when it was due, the sidecar's wait
/// on its dependencies, and whether it failed (a 5xx, or no answer).
struct Sample {
    route: Route,
    total: Duration,
    outbound: Duration,
    failed: bool,
}

/// `outbound;dur=<ms>` from Server-Timing.
fn outbound(response: &harness::Response) -> Duration {
    response
        .headers
        .get("server-timing")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').find_map(|metric| metric.trim().strip_prefix("outbound;dur=")))
        .and_then(|ms| ms.parse::<f64>().ok())
        .map_or(Duration::ZERO, |ms| Duration::from_secs_f64(ms / 1000.0))
}

async fn request(
    sidecar: &Sidecar,
    localstripe: &str,
    traveler: &Traveler,
    route: Route,
    n: u64,
) -> anyhow::Result<harness::Response> {
    let key = format!("load-{n}");
    let context = json!({ "user_id": traveler.id, "table": "payment_methods", "column": "encrypted_card_data",
                          "record_id": "0000000a-0000-4000-8000-000000000001" });
    let token = traveler.token.as_str();
    match route {
        Route::ListCards => call(sidecar, "GET", "/v1/wallet/payment-methods", token, None, None).await,
        Route::Encrypt => {
            let data = base64::engine::general_purpose::STANDARD.encode(b"4242 4242 4242 4242");
            call(sidecar, "POST", "/v1/crypto/encrypt", token, None, Some(json!({ "data": data, "context": context })))
                .await
        }
        Route::Decrypt => {
            call(
                sidecar,
                "POST",
                "/v1/crypto/decrypt",
                token,
                None,
                Some(json!({ "data": traveler.sealed, "context": context })),
            )
            .await
        }
        Route::SetupIntent => call(sidecar, "POST", "/v1/wallet/setup-intents", token, Some(&key), None).await,
        Route::AddCard => {
            // Stripe.js's part (confirming the setup intent at localstripe) is
            // the browser's: done first, outside the measured request.
            let intent = card_saved_through_stripe(sidecar, token, localstripe, "4242424242424242").await?;
            let body =
                json!({ "setup_intent_id": intent, "off_session_consent": { "text_version": CARD_CONSENT_VERSION } });
            call(sidecar, "POST", "/v1/wallet/payment-methods", token, Some(&key), Some(body)).await
        }
        Route::SetDefault => {
            let card = &traveler.cards[(n % traveler.cards.len() as u64) as usize];
            call(sidecar, "POST", &format!("/v1/wallet/payment-methods/{card}/default"), token, Some(&key), None).await
        }
        Route::ShowBooking => {
            call(sidecar, "GET", &format!("/v1/bookings/{}", traveler.booking), token, None, None).await
        }
        Route::Book => {
            let body = json!({ "campaign_id": traveler.campaign, "offer_id": format!("off_load{n}"), "amount": 42_000,
                               "currency": "eur", "route": "LIS-JFK",
                               "passengers": [{ "id": "pas_1", "given_name": "Ada", "family_name": "Lovelace", "born_on": "1990-12-10" }] });
            call(sidecar, "POST", "/v1/bookings", token, Some(&key), Some(body)).await
        }
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted.get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1))).copied().unwrap_or_default()
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The sidecar's resident set, from /proc (kB).
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").to_owned()))
        })
        .and_then(|kb| kb.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::var("LOAD_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let rates: Vec<u64> = std::env::var("LOAD_RATES")
        .unwrap_or_else(|_| "10,25,50,100,150".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let emulators = Emulators::from_env()?;
    let db = TestDb::migrated().await?;
    let duffel = FakeDuffel::start().await?;
    let mut config = wallet_sidecar_config(&db)?.with_stripe(&emulators.localstripe_url).with_duffel(&duffel.url);
    config.settings.database = Some(DatabaseSettings { max_connections: 16 });
    config.settings.server_timing = true;
    config.env.push(("PW_LOG".into(), "warn".into()));
    let sidecar = Arc::new(Sidecar::start_with(config).await?);
    let localstripe = emulators.localstripe_url.clone();

    // Travelers enough that the per-traveler cap (2 at once) is not what is measured.
    let mut travelers = Vec::new();
    let mut admin = db.admin().await?;
    for n in 0..40 {
        let id = new_traveler(&db).await?;
        let token = traveler_token(&id, json!({}));
        let mut cards = Vec::new();
        for number in ["4242424242424242", "5555555555554444"] {
            cards.push(wallet_card(&sidecar, &token, &localstripe, number).await?);
        }
        let campaign: String = sqlx::query_scalar(
            "INSERT INTO campaigns (user_id, name, consent_at, consent_text_version)
             VALUES ($1::uuid, 'load', now(), 'campaign-mit-load') RETURNING id::text",
        )
        .bind(&id)
        .fetch_one(&mut admin)
        .await?;
        let mut traveler = Traveler { id, token, campaign, cards, sealed: String::new(), booking: String::new() };
        let sealed = request(&sidecar, &localstripe, &traveler, Route::Encrypt, n).await?;
        traveler.sealed = sealed.json["data"].as_str().unwrap_or_default().to_owned();
        let booked = request(&sidecar, &localstripe, &traveler, Route::Book, 1_000_000 + n).await?;
        anyhow::ensure!(booked.status.is_success(), "{}", booked.text);
        traveler.booking = booked.json["data"]["id"].as_str().unwrap_or_default().to_owned();
        travelers.push(traveler);
    }
    let travelers = Arc::new(travelers);
    let counter = Arc::new(AtomicU64::new(2_000_000));

    println!(
        "open-model load, {seconds} s per rate, mix: {}",
        MIX.iter().map(|(r, w)| format!("{} {w}%", r.name())).collect::<Vec<_>>().join(", ")
    );
    println!("times in ms from when each request was due; own = total minus the wait on Stripe, Duffel, KMS and the pool (Server-Timing)");
    let (mut holding, mut own_holding) = (None, None);
    for rate in rates {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let started = Instant::now();
        let total_requests = rate * seconds;
        let mut tasks = Vec::with_capacity(total_requests as usize);
        for i in 0..total_requests {
            let due = started + interval * u32::try_from(i)?;
            tokio::time::sleep_until(due.into()).await;
            let n = counter.fetch_add(1, Ordering::Relaxed);
            let route = Route::nth(n);
            let (sidecar, travelers, samples, localstripe) =
                (Arc::clone(&sidecar), Arc::clone(&travelers), Arc::clone(&samples), localstripe.clone());
            tasks.push(tokio::spawn(async move {
                let traveler = &travelers[(n % travelers.len() as u64) as usize];
                let answer = request(&sidecar, &localstripe, traveler, route, n).await;
                let total = due.elapsed();
                let (outbound, failed) = match &answer {
                    Ok(response) => (outbound(response), response.status.is_server_error()),
                    Err(_) => (Duration::ZERO, true),
                };
                samples.lock().unwrap().push(Sample { route, total, outbound, failed });
            }));
        }
        let rss_at_end_of_arrivals = rss_kb(sidecar.pid());
        for task in tasks {
            task.await?;
        }
        let samples = std::mem::take(&mut *samples.lock().unwrap());
        let mut by_route: BTreeMap<Route, Vec<&Sample>> = BTreeMap::new();
        for sample in &samples {
            by_route.entry(sample.route).or_default().push(sample);
        }
        println!();
        println!("rate {rate}/s: {} requests, sidecar RSS {} MiB", samples.len(), rss_at_end_of_arrivals / 1024);
        println!(
            "{:<46} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}",
            "route", "n", "p50", "p95", "p99", "own p50", "own p95", "errors"
        );
        let row = |name: &str, samples: &[&Sample]| {
            let mut total: Vec<Duration> = samples.iter().map(|s| s.total).collect();
            let mut own: Vec<Duration> = samples.iter().map(|s| s.total.saturating_sub(s.outbound)).collect();
            total.sort_unstable();
            own.sort_unstable();
            let failed = samples.iter().filter(|s| s.failed).count();
            println!(
                "{name:<46} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>6.2}%",
                samples.len(),
                ms(percentile(&total, 0.50)),
                ms(percentile(&total, 0.95)),
                ms(percentile(&total, 0.99)),
                ms(percentile(&own, 0.50)),
                ms(percentile(&own, 0.95)),
                100.0 * failed as f64 / samples.len().max(1) as f64
            );
            (percentile(&total, 0.95), percentile(&own, 0.95), failed as f64 / samples.len().max(1) as f64)
        };
        for (route, samples) in &by_route {
            row(route.name(), samples);
        }
        let all: Vec<&Sample> = samples.iter().collect();
        let (p95, own_p95, errors) = row("all", &all);
        let slo = Duration::from_millis(200);
        let word = |held: bool| if held { "held" } else { "missed" };
        let holds = p95 < slo && errors < 0.001;
        let own_holds = own_p95 < slo && errors < 0.001;
        println!(
            "SLO (p95 < 200 ms, errors < 0.1 %) at {rate}/s: {} end to end, {} on the sidecar's own time",
            word(holds),
            word(own_holds)
        );
        if holds {
            holding = Some(rate);
        }
        if own_holds {
            own_holding = Some(rate);
        }
    }
    println!();
    let say = |rate: Option<u64>| rate.map_or("none".to_owned(), |rate| format!("{rate}/s"));
    println!("highest rate that held the SLO end to end: {}", say(holding));
    println!("highest rate that held it on the sidecar's own time: {}", say(own_holding));
    Ok(())
}
