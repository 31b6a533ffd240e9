//! Stripe webhooks through the sidecar: signatures (ours and localstripe's own),
//! deduplication, and effects computed from Stripe's current state.

use harness::{traveler_token, wallet_sidecar_config, Emulators, Sidecar, TestDb, WEBHOOK_SECRET};
use hyper::StatusCode;
use serde_json::json;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

use harness::deliver_stripe_event as deliver;

fn event(id: &str, kind: &str, object: serde_json::Value) -> serde_json::Value {
    json!({ "id": id, "object": "event", "type": kind, "created": now(), "data": { "object": object } })
}

fn event_id() -> String {
    format!("evt_{}", uuid::Uuid::new_v4().simple())
}

struct World {
    db: TestDb,
    sidecar: Sidecar,
    stripe: String,
    token: String,
    user: String,
}

async fn world() -> anyhow::Result<World> {
    let emulators = Emulators::from_env()?;
    let db = TestDb::migrated().await?;
    let user = uuid::Uuid::new_v4().to_string();
    sqlx::query("INSERT INTO auth.users (id) VALUES ($1::uuid)").bind(&user).execute(&mut db.admin().await?).await?;
    let sidecar = Sidecar::start_with(wallet_sidecar_config(&db)?.with_stripe(&emulators.localstripe_url)).await?;
    let token = traveler_token(&user, json!({}));
    Ok(World { db, sidecar, stripe: emulators.localstripe_url, token, user })
}

/// A SetupIntent confirmed with a card at Stripe, not yet stored by the wallet.
async fn confirmed_intent(w: &World, number: &str) -> anyhow::Result<(String, String, String)> {
    let intent = harness::setup_intent(&w.sidecar, &w.token).await?;
    let (id, secret, customer) = (
        intent.json["setup_intent_id"].as_str().unwrap_or_default().to_owned(),
        intent.json["client_secret"].as_str().unwrap_or_default().to_owned(),
        intent.json["customer_id"].as_str().unwrap_or_default().to_owned(),
    );
    let pm = harness::localstripe_card(&w.stripe, number).await?;
    harness::localstripe_post(
        &w.stripe,
        &format!("/v1/setup_intents/{id}/confirm"),
        &[("payment_method", &pm), ("client_secret", &secret)],
    )
    .await?;
    Ok((id, customer, pm))
}

/// The wallet stores the card a SetupIntent collected, as the app asks it to.
async fn add_card(w: &World, intent: &str) -> anyhow::Result<harness::Response> {
    let body = json!({ "setup_intent_id": intent });
    harness::call(&w.sidecar, "POST", "/v1/wallet/payment-methods", &w.token, None, Some(body)).await
}

async fn cards(w: &World) -> anyhow::Result<Vec<serde_json::Value>> {
    let listing = harness::call(&w.sidecar, "GET", "/v1/wallet/payment-methods", &w.token, None, None).await?;
    Ok(listing.json["data"].as_array().cloned().unwrap_or_default())
}

async fn events_stored(w: &World) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM stripe_events").fetch_one(&mut w.db.admin().await?).await?)
}

#[tokio::test]
async fn setup_intent_succeeded_stores_the_card_once() -> anyhow::Result<()> {
    let w = world().await?;
    let (intent, customer, _) = confirmed_intent(&w, "4242424242424242").await?;
    // The payload is deliberately thin: the sidecar fetches the SetupIntent itself.
    let succeeded = event(
        &event_id(),
        "setup_intent.succeeded",
        json!({ "id": intent, "object": "setup_intent", "customer": customer }),
    );
    let first = deliver(&w.sidecar, &succeeded, WEBHOOK_SECRET, now()).await?;
    assert_eq!((first.status, first.json["applied"].as_bool()), (StatusCode::OK, Some(true)), "{}", first.text);
    let again = deliver(&w.sidecar, &succeeded, WEBHOOK_SECRET, now()).await?;
    assert_eq!(again.json["duplicate"], true);
    let stored = cards(&w).await?;
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0]["last4"].as_str(), stored[0]["is_default"].as_bool()), (Some("4242"), Some(true)));

    // The traveler's own POST of the same SetupIntent agrees with the webhook: still one card.
    let posted = add_card(&w, &intent).await?;
    assert_eq!(posted.status, StatusCode::OK, "{}", posted.text);
    assert_eq!(cards(&w).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn bad_or_stale_signatures_are_400_and_store_nothing() -> anyhow::Result<()> {
    let w = world().await?;
    let unknown = event(&event_id(), "invoice.created", json!({ "id": "in_1", "customer": "cus_x" }));
    for (secret, at, what) in [
        ("whsec_wrong", now(), "another secret"),
        (WEBHOOK_SECRET, now() - 400, "too old"),
        (WEBHOOK_SECRET, now() + 400, "from the future"),
    ] {
        let response = deliver(&w.sidecar, &unknown, secret, at).await?;
        assert_eq!(
            (response.status, response.json["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_signature")),
            "{what}"
        );
    }
    let unsigned = w.sidecar.request("POST", "/v1/webhooks/stripe", Some(unknown.clone())).await?;
    assert_eq!(unsigned.json["code"], "invalid_signature");
    assert_eq!(events_stored(&w).await?, 0);

    // The retired secret still verifies during a rotation; unknown events are kept and acknowledged.
    let accepted = deliver(&w.sidecar, &unknown, "whsec_retired_one", now()).await?;
    assert_eq!((accepted.status, accepted.json["applied"].as_bool()), (StatusCode::OK, Some(false)));
    assert_eq!(events_stored(&w).await?, 1);
    Ok(())
}

/// Signed events the table cannot hold were a 500, which Stripe retries for
/// days: an id the table's CHECK refuses, a NUL character jsonb cannot store.
#[tokio::test]
async fn signed_events_the_table_cannot_hold_are_400_and_store_nothing() -> anyhow::Result<()> {
    let w = world().await?;
    let odd_id = event("evt_abc-def", "invoice.created", json!({ "id": "in_1", "customer": "cus_x" }));
    let with_nul = event(&event_id(), "invoice.created", json!({ "id": "in_1", "metadata": { "note": "a\u{0}b" } }));
    for (event, what) in [(odd_id, "an id of another form"), (with_nul, "a NUL character")] {
        let response = deliver(&w.sidecar, &event, WEBHOOK_SECRET, now()).await?;
        assert_eq!(
            (response.status, response.json["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{what}: {}",
            response.text
        );
    }
    assert_eq!(events_stored(&w).await?, 0);
    Ok(())
}

#[tokio::test]
async fn detached_events_follow_stripe_not_the_payload() -> anyhow::Result<()> {
    let w = world().await?;
    let (intent, _, pm) = confirmed_intent(&w, "4242424242424242").await?;
    add_card(&w, &intent).await?;

    // A stale "detached" while the card is still attached at Stripe changes nothing.
    let detached = |id: String| {
        event(&id, "payment_method.detached", json!({ "id": pm, "object": "payment_method", "customer": null }))
    };
    let early = deliver(&w.sidecar, &detached(event_id()), WEBHOOK_SECRET, now()).await?;
    assert_eq!(early.json["applied"], false, "{}", early.text);
    assert_eq!(cards(&w).await?.len(), 1);

    harness::localstripe_post(&w.stripe, &format!("/v1/payment_methods/{pm}/detach"), &[]).await?;
    let real = deliver(&w.sidecar, &detached(event_id()), WEBHOOK_SECRET, now()).await?;
    assert_eq!(real.json["applied"], true, "{}", real.text);
    assert!(cards(&w).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn customer_deleted_at_stripe_empties_the_wallet() -> anyhow::Result<()> {
    let w = world().await?;
    let (intent, customer, _) = confirmed_intent(&w, "4242424242424242").await?;
    add_card(&w, &intent).await?;
    let stream = tokio::net::TcpStream::connect(w.stripe.trim_start_matches("http://")).await?;
    let key = format!("Bearer {}", harness::STRIPE_KEY);
    harness::send_raw(stream, "DELETE", &format!("/v1/customers/{customer}"), &[("authorization", &key)], Vec::new())
        .await?;
    let deleted = deliver(
        &w.sidecar,
        &event(&event_id(), "customer.deleted", json!({ "id": customer, "object": "customer" })),
        WEBHOOK_SECRET,
        now(),
    )
    .await?;
    assert_eq!(deleted.json["applied"], true, "{}", deleted.text);
    assert!(cards(&w).await?.is_empty());
    let customers: i64 = sqlx::query_scalar("SELECT count(*) FROM wallet_customers WHERE user_id = $1::uuid")
        .bind(&w.user)
        .fetch_one(&mut w.db.admin().await?)
        .await?;
    assert_eq!(customers, 0);
    Ok(())
}

/// localstripe's own webhooks, signed by localstripe, reach the sidecar through
/// a forwarder playing the public function Stripe calls.
#[tokio::test]
async fn webhooks_registered_with_localstripe_are_verified_and_applied() -> anyhow::Result<()> {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;

    let w = world().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let socket = w.sidecar.socket.clone();
    let (answers, mut received) = tokio::sync::mpsc::unbounded_channel::<(serde_json::Value, StatusCode)>();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (socket, answers) = (socket.clone(), answers.clone());
            let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let (socket, answers) = (socket.clone(), answers.clone());
                async move {
                    let signature = request
                        .headers()
                        .get("stripe-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let body = request.into_body().collect().await?.to_bytes().to_vec();
                    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let forwarded = async {
                        let stream = tokio::net::UnixStream::connect(&socket).await?;
                        harness::send_raw(
                            stream,
                            "POST",
                            "/v1/webhooks/stripe",
                            &[("stripe-signature", &signature)],
                            body,
                        )
                        .await
                    }
                    .await;
                    let status = forwarded.map(|r| r.status).unwrap_or(StatusCode::BAD_GATEWAY);
                    let _ = answers.send((event, status));
                    Ok::<_, hyper::Error>(
                        hyper::Response::builder().status(status).body(Full::new(Bytes::new())).unwrap_or_default(),
                    )
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    let hook = format!("pw-e2e-{}", uuid::Uuid::new_v4().simple());
    let registered = harness::localstripe_post(
        &w.stripe,
        &format!("/_config/webhooks/{hook}"),
        &[
            ("url", &format!("http://127.0.0.1:{port}/stripe")),
            ("secret", WEBHOOK_SECRET),
            ("events[]", "customer.created"),
            ("events[]", "customer.deleted"),
        ],
    )
    .await?;
    assert!(registered.status.is_success(), "{}", registered.text);

    let (_, customer, _) = confirmed_intent(&w, "4242424242424242").await?;
    let (created, status) = wait_for("customer.created", &customer, &mut received).await?;
    assert_eq!(status, StatusCode::OK, "localstripe's signature verified");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM stripe_events WHERE id = $1")
        .bind(created["id"].as_str())
        .fetch_one(&mut w.db.admin().await?)
        .await?;
    assert_eq!(stored, 1);

    let stream = tokio::net::TcpStream::connect(w.stripe.trim_start_matches("http://")).await?;
    let key = format!("Bearer {}", harness::STRIPE_KEY);
    harness::send_raw(stream, "DELETE", &format!("/v1/customers/{customer}"), &[("authorization", &key)], Vec::new())
        .await?;
    let (_, status) = wait_for("customer.deleted", &customer, &mut received).await?;
    assert_eq!(status, StatusCode::OK);
    let customers: i64 = sqlx::query_scalar("SELECT count(*) FROM wallet_customers WHERE user_id = $1::uuid")
        .bind(&w.user)
        .fetch_one(&mut w.db.admin().await?)
        .await?;
    assert_eq!(customers, 0, "the wallet follows the deletion at Stripe");
    Ok(())
}

/// The next forwarded webhook of `kind` about `customer`, waiting up to 15 s.
async fn wait_for(
    kind: &str,
    customer: &str,
    received: &mut tokio::sync::mpsc::UnboundedReceiver<(serde_json::Value, StatusCode)>,
) -> anyhow::Result<(serde_json::Value, StatusCode)> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(deadline, received.recv()).await {
            Ok(Some((event, status))) if event["type"] == kind && event["data"]["object"]["id"] == customer => {
                return Ok((event, status))
            }
            Ok(Some(_)) => continue,
            _ => anyhow::bail!("no {kind} webhook for {customer} within 15 s"),
        }
    }
}

/// `payment_method.automatically_updated` (the network sent a new expiry). The
/// emulator cannot change a card's expiry, so Stripe is played by a stub that
/// serves the real payment method as localstripe returned it, with the new expiry.
#[tokio::test]
async fn an_automatically_updated_card_gets_its_new_expiry() -> anyhow::Result<()> {
    use http_body_util::Full;
    use hyper::body::Bytes;

    let w = world().await?;
    let (intent, _, pm) = confirmed_intent(&w, "4242424242424242").await?;
    add_card(&w, &intent).await?;

    let stream = tokio::net::TcpStream::connect(w.stripe.trim_start_matches("http://")).await?;
    let key = format!("Bearer {}", harness::STRIPE_KEY);
    let mut method =
        harness::send_raw(stream, "GET", &format!("/v1/payment_methods/{pm}"), &[("authorization", &key)], Vec::new())
            .await?
            .json;
    method["card"]["exp_month"] = json!(3);
    method["card"]["exp_year"] = json!(2035);
    let served = method.to_string();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let served = served.clone();
            let service = hyper::service::service_fn(move |_request: hyper::Request<hyper::body::Incoming>| {
                let served = served.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(served)))
                            .unwrap_or_default(),
                    )
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    let updated_stripe =
        Sidecar::start_with(wallet_sidecar_config(&w.db)?.with_stripe(&format!("http://127.0.0.1:{port}/"))).await?;
    let updated = deliver(
        &updated_stripe,
        &event(
            &event_id(),
            "payment_method.automatically_updated",
            json!({ "id": pm, "object": "payment_method", "customer": method["customer"] }),
        ),
        WEBHOOK_SECRET,
        now(),
    )
    .await?;
    assert_eq!(updated.json["applied"], true, "{}", updated.text);
    let stored = cards(&w).await?;
    assert_eq!(
        (stored.len(), stored[0]["exp_month"].as_i64(), stored[0]["exp_year"].as_i64()),
        (1, Some(3), Some(2035))
    );
    Ok(())
}

/// Every row of every table of the wallet, as text, that holds a Stripe client
/// secret (`..._secret_...`).
async fn rows_holding_a_client_secret(db: &TestDb) -> anyhow::Result<Vec<String>> {
    let mut conn = db.admin().await?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('public', 'auth', 'wallet', 'wallet_internal') ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await?;
    let mut found = Vec::new();
    for table in tables {
        let rows: Vec<String> =
            sqlx::query_scalar(&format!("SELECT t::text FROM {table} t WHERE t::text LIKE '%\\_secret\\_%'"))
                .fetch_all(&mut conn)
                .await?;
        found.extend(rows.into_iter().map(|row| format!("{table}: {row}")));
    }
    Ok(found)
}

/// A replayed SetupIntent answer and Stripe's own events carry client secrets;
/// none of them rests in the database. The replay fetches the secret again.
#[tokio::test]
async fn no_client_secret_rests_in_any_table() -> anyhow::Result<()> {
    let w = world().await?;
    let bearer = format!("Bearer {}", w.token);
    let headers = [("authorization", bearer.as_str()), ("idempotency-key", "setup-1")];
    let first = w.sidecar.request_with("POST", "/v1/wallet/setup-intents", &headers, None).await?;
    let secret = first.json["client_secret"].as_str().unwrap_or_default().to_owned();
    assert!(secret.contains("_secret_"), "{}", first.text);
    let replay = w.sidecar.request_with("POST", "/v1/wallet/setup-intents", &headers, None).await?;
    assert_eq!(replay.json, first.json, "the replay answers the same secret, fetched again");

    // The event as Stripe sends it: the whole SetupIntent, client secret included.
    let intent = first.json["setup_intent_id"].as_str().unwrap_or_default();
    let stream = tokio::net::TcpStream::connect(w.stripe.trim_start_matches("http://")).await?;
    let key = format!("Bearer {}", harness::STRIPE_KEY);
    let object = harness::send_raw(
        stream,
        "GET",
        &format!("/v1/setup_intents/{intent}"),
        &[("authorization", &key)],
        Vec::new(),
    )
    .await?;
    assert_eq!(object.json["client_secret"], secret.as_str(), "{}", object.text);
    let created = event(&event_id(), "setup_intent.created", object.json);
    let delivered = deliver(&w.sidecar, &created, WEBHOOK_SECRET, now()).await?;
    assert_eq!(delivered.status, StatusCode::OK, "{}", delivered.text);
    let stored: serde_json::Value = sqlx::query_scalar("SELECT payload FROM stripe_events WHERE id = $1")
        .bind(created["id"].as_str())
        .fetch_one(&mut w.db.admin().await?)
        .await?;
    assert_eq!(stored["data"]["object"]["client_secret"], serde_json::Value::Null, "{stored}");
    assert_eq!(stored["data"]["object"]["id"], intent, "what the event was about is kept");

    assert_eq!(rows_holding_a_client_secret(&w.db).await?, Vec::<String>::new());
    Ok(())
}
