//! What the booking saga costs over the external calls it makes. Baseline: the
//! bare calls of a booking (authorize off-session, create the Duffel order,
//! capture) made directly against localstripe and the Duffel fake. Measured:
//! `POST /v1/bookings` through a sidecar, which adds the state writes, history,
//! locks, RLS, the sealed passengers and the Radar metadata queries. 1 and 8
//! concurrent clients. First, at 1 client, the saga's own time (each call less
//! the outbound waits its `Server-Timing` reports: Stripe, Duffel, KMS, the
//! pool) against `GET /healthz`, and the statements and transactions it sends
//! per booking (pg_stat_statements, when the cluster preloads it). Run by
//! bench/bookings.sh; prints tables, asserts nothing.

// Test code: a failed unwrap is a failed test (or benchmark), with its message.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::bench::{healthz_floor, print_row, run, summary, Figures, Operation, OwnTimes};
use harness::duffel_fake::{FakeDuffel, DUFFEL_TOKEN};
use harness::{
    call, new_traveler, traveler_token, wallet_card, wallet_sidecar_config, Emulators, Sidecar, TestDb, STRIPE_KEY,
};
use kms_sidecar::config::DatabaseSettings;
use kms_sidecar::domain::Money;
use kms_sidecar::duffel::{DuffelPort, HttpDuffel, OrderRequest};
use kms_sidecar::stripe::{AsyncStripe, OffSessionAuthorization, StripePort};
use secrecy::SecretString;
use serde_json::json;

fn passengers() -> serde_json::Value {
    json!([{ "id": "pas_1", "given_name": "Ada", "family_name": "Lovelace", "born_on": "1990-12-10" }])
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let duration = Duration::from_secs(std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3));
    let emulators = Emulators::from_env()?;
    let db = TestDb::migrated().await?;
    let user = new_traveler(&db).await?;
    let token = traveler_token(&user, json!({}));
    let duffel = FakeDuffel::start().await?;
    let mut config = wallet_sidecar_config(&db)?.with_stripe(&emulators.localstripe_url).with_duffel(&duffel.url);
    config.settings.database = Some(DatabaseSettings { max_connections: 16 });
    config.settings.server_timing = true;
    config.env.push(("PW_LOG".into(), "warn".into()));
    let sidecar = Arc::new(Sidecar::start_with(config).await?);
    wallet_card(&sidecar, &token, &emulators.localstripe_url, "4242424242424242").await?;
    let mut admin = db.admin().await?;
    let campaign: String = sqlx::query_scalar(
        "INSERT INTO campaigns (user_id, name, consent_at, consent_text_version) VALUES ($1::uuid, 'bench', now(), 'campaign-mit-bench') RETURNING id::text",
    )
    .bind(&user)
    .fetch_one(&mut admin)
    .await?;
    let (customer, payment_method): (String, String) = sqlx::query_as(
        "SELECT stripe_customer_id, stripe_payment_method_id FROM payment_methods WHERE user_id = $1::uuid",
    )
    .bind(&user)
    .fetch_one(&mut admin)
    .await?;

    let stripe = Arc::new(AsyncStripe::new(
        &SecretString::from(STRIPE_KEY.to_owned()),
        Some(&emulators.localstripe_url),
        Duration::from_secs(10),
    )?);
    let duffel_client =
        Arc::new(HttpDuffel::new(&duffel.url, SecretString::from(DUFFEL_TOKEN.to_owned()), Duration::from_secs(10))?);
    let counter = Arc::new(AtomicU64::new(0));

    // First, while localstripe is fresh: it slows as objects pile up, and the
    // CPU it then takes from the sidecar (same cores) would count as own time.
    OwnTimes::print_header(&format!("the saga's own time, 1 client, {} s per row", duration.as_secs()));
    let floor_p95 = healthz_floor(&sidecar, duration).await?;
    let book = |n: u64| {
        let body = json!({ "campaign_id": campaign, "offer_id": format!("off_own{n}"), "amount": 42_000,
                           "currency": "eur", "route": "LIS-JFK", "passengers": passengers() });
        let (sidecar, token) = (&sidecar, &token);
        async move { call(sidecar, "POST", "/v1/bookings", token, Some(&format!("own-{n}")), Some(body)).await }
    };
    // Warm-up, not measured: connections, prepared statements, the data key.
    for _ in 0..10 {
        let booked = book(counter.fetch_add(1, Ordering::Relaxed)).await?;
        anyhow::ensure!(booked.json["data"]["state"] == "captured", "{}", booked.text);
    }
    let counting = statement_counts_reset(&mut admin).await;
    let mut own = OwnTimes::default();
    let until = Instant::now() + duration;
    while Instant::now() < until {
        let booked = own.measure(book(counter.fetch_add(1, Ordering::Relaxed))).await?;
        anyhow::ensure!(booked.json["data"]["state"] == "captured", "{}", booked.text);
    }
    let bookings = own.own.len().max(1) as f64;
    own.print("POST /v1/bookings (the saga)", floor_p95);
    println!("own = the call's time less the sidecar's outbound waits; target own p95 ≤ 10000 µs");
    let counted = match counting {
        Ok(()) => {
            let (statements, transactions) = statement_counts(&mut admin).await?;
            let counted = format!(
                "{:.1} statements, {:.1} transactions per booking",
                statements as f64 / bookings,
                transactions as f64 / bookings
            );
            println!("per booking: {counted} (statements sent to PostgreSQL; transactions BEGIN ... COMMIT)");
            counted
        }
        Err(error) => {
            println!("per booking: statements not counted ({error})");
            "statements not counted".to_owned()
        }
    };
    println!();

    println!(
        "{:<52} {:>10} {:>10} {:>10}",
        format!("booking, {} s per row", duration.as_secs()),
        "bookings/s",
        "p50 µs",
        "p99 µs"
    );
    let mut rows: Vec<(usize, Figures, Figures)> = Vec::new();
    for clients in [1, 8] {
        let bare = run(clients, duration, || {
            let (stripe, duffel_client, counter) =
                (Arc::clone(&stripe), Arc::clone(&duffel_client), Arc::clone(&counter));
            let (customer, payment_method) = (customer.clone(), payment_method.clone());
            async move {
                let operation: Operation = Box::new(move || {
                    let (stripe, duffel_client) = (Arc::clone(&stripe), Arc::clone(&duffel_client));
                    let (customer, payment_method) = (customer.clone(), payment_method.clone());
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    Box::pin(async move {
                        let booking_id = uuid::Uuid::new_v4();
                        let key = format!("bench:{booking_id}");
                        let intent = stripe
                            .authorize_off_session(&OffSessionAuthorization {
                                customer_id: &customer,
                                payment_method_id: &payment_method,
                                amount: 42_000,
                                currency: "eur",
                                metadata: HashMap::from([("booking_id".to_owned(), booking_id.to_string())]),
                                idempotency_key: &key,
                            })
                            .await?;
                        let total = Money::new(42_000, "eur")?;
                        let offer = format!("off_bare{n}");
                        let passengers = passengers();
                        duffel_client
                            .create_order(&OrderRequest {
                                booking_id,
                                offer_id: &offer,
                                passengers: &passengers,
                                total: &total,
                            })
                            .await?;
                        stripe.capture_payment_intent(&intent.id, &format!("{key}:capture")).await?;
                        Ok(())
                    })
                });
                Ok(operation)
            }
        })
        .await?;
        print_row(&format!("bare calls (authorize, order, capture), {clients} clients"), &bare);
        let saga = run(clients, duration, || {
            let (sidecar, counter, token, campaign) =
                (Arc::clone(&sidecar), Arc::clone(&counter), token.clone(), campaign.clone());
            async move {
                let operation: Operation = Box::new(move || {
                    let (sidecar, token) = (Arc::clone(&sidecar), token.clone());
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let body = json!({ "campaign_id": campaign, "offer_id": format!("off_saga{n}"), "amount": 42_000,
                                       "currency": "eur", "route": "LIS-JFK", "passengers": passengers() });
                    Box::pin(async move {
                        let booked =
                            call(&sidecar, "POST", "/v1/bookings", &token, Some(&format!("bench-{n}")), Some(body))
                                .await?;
                        anyhow::ensure!(booked.json["data"]["state"] == "captured", "{}", booked.text);
                        Ok(())
                    })
                });
                Ok(operation)
            }
        })
        .await?;
        print_row(&format!("POST /v1/bookings (the saga), {clients} clients"), &saga);
        rows.push((clients, bare, saga));
    }
    println!();
    for (clients, bare, saga) in &rows {
        println!(
            "{clients} client(s): the saga runs at {:.2}x the bare calls' throughput and adds {:.1} ms per booking at the median",
            saga.ops_per_sec / bare.ops_per_sec.max(f64::MIN_POSITIVE),
            (saga.p50.as_secs_f64() - bare.p50.as_secs_f64()) * 1000.0
        );
    }

    let (own50, own95) = own.own_p50_p95();
    let one_client = rows.iter().find(|(clients, _, _)| *clients == 1);
    let ratio = one_client.map(|(_, bare, saga)| saga.p50.as_secs_f64() / bare.p50.as_secs_f64().max(1e-9));
    summary(
        "booking saga's own time, 1 client",
        &format!("own p50 {} µs, p95 {} µs; {counted}", own50.as_micros(), own95.as_micros()),
        &format!("{:.2}x the bare calls' p50", ratio.unwrap_or(0.0)),
        "own p95 ≤ 10000 µs",
    )?;
    Ok(())
}

/// Starts counting the sidecar's statements: pg_stat_statements installed and reset.
async fn statement_counts_reset(admin: &mut sqlx::PgConnection) -> anyhow::Result<()> {
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(&mut *admin).await?;
    sqlx::query("SELECT pg_stat_statements_reset()").execute(&mut *admin).await?;
    Ok(())
}

/// Top-level statements (each a round trip) and explicit transactions the
/// sidecar's roles sent to this database since the reset; not this connection's.
async fn statement_counts(admin: &mut sqlx::PgConnection) -> anyhow::Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT coalesce(sum(calls), 0)::bigint, coalesce(sum(calls) FILTER (WHERE query = 'BEGIN'), 0)::bigint
           FROM pg_stat_statements
          WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)",
    )
    .fetch_one(admin)
    .await?)
}
