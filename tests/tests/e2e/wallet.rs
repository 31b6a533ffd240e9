//! The wallet routes' foundation: a traveler's JWT decides whose wallet the
//! sidecar reads, and the sidecar itself is held by RLS.

use harness::TestApp;
use harness::{
    call, card_saved_through_stripe, new_traveler, setup_intent, traveler_token, wallet_sidecar_config, Sidecar,
    SidecarConfig, TestDb,
};
use hyper::StatusCode;
use kms_sidecar::domain::CallerClass;
use serde_json::json;

const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
const BOB: &str = "b0b00000-0000-4000-8000-000000000002";

async fn seeded() -> anyhow::Result<TestDb> {
    let db = TestDb::migrated().await?;
    let mut admin = db.admin().await?;
    sqlx::raw_sql(&format!(
        "INSERT INTO auth.users (id) VALUES ('{ALICE}'), ('{BOB}');
         INSERT INTO wallet_customers (user_id, stripe_customer_id) VALUES ('{ALICE}', 'cus_a'), ('{BOB}', 'cus_b');
         INSERT INTO payment_methods (user_id, stripe_customer_id, stripe_payment_method_id, encrypted_card_data,
                                      brand, last4, exp_month, exp_year, is_default, created_at) VALUES
           ('{ALICE}', 'cus_a', 'pm_a_old', '\\x02', 'visa', '0005', 1, 2020, false, now() - interval '2 days'),
           ('{ALICE}', 'cus_a', 'pm_a_new', '\\x02', 'mastercard', '4444', 12, 2099, false, now() - interval '1 day'),
           ('{ALICE}', 'cus_a', 'pm_a_def', '\\x02', 'visa', '4242', 12, 2098, true, now() - interval '3 days'),
           ('{BOB}', 'cus_b', 'pm_b', '\\x02', 'amex', '0005', 6, 2097, true, now());"
    ))
    .execute(&mut admin)
    .await?;
    Ok(db)
}

async fn list(sidecar: &Sidecar, token: &str) -> anyhow::Result<harness::Response> {
    let bearer = format!("Bearer {token}");
    sidecar
        .request_with(
            "GET",
            "/v1/wallet/payment-methods",
            &[("authorization", &bearer), ("user-agent", "edge-fn/1")],
            None,
        )
        .await
}

#[tokio::test]
async fn a_traveler_lists_only_their_cards_default_first_expired_flagged() -> anyhow::Result<()> {
    let db = seeded().await?;
    let sidecar = Sidecar::start_with(wallet_sidecar_config(&db)?).await?;
    let alice = list(&sidecar, &traveler_token(ALICE, json!({}))).await?;
    assert_eq!(alice.status, StatusCode::OK, "{}", alice.text);
    let last4: Vec<&str> =
        alice.json["data"].as_array().unwrap().iter().map(|c| c["last4"].as_str().unwrap()).collect();
    assert_eq!(last4, ["4242", "4444", "0005"], "default first, then newest");
    let expired: Vec<bool> =
        alice.json["data"].as_array().unwrap().iter().map(|c| c["expired"].as_bool().unwrap()).collect();
    assert_eq!(expired, [false, false, true]);
    assert!(!alice.text.contains("encrypted"), "no ciphertext in the listing");

    let bob = list(&sidecar, &traveler_token(BOB, json!({}))).await?;
    assert_eq!(bob.json["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(bob.json["data"][0]["last4"], "0005");
    Ok(())
}

/// Quotes and backslashes a traveler chose (in their token's metadata, in a
/// header) reach the database unchanged, as settings, and change nothing else.
#[tokio::test]
async fn claims_and_headers_with_quotes_and_backslashes_arrive_unchanged() -> anyhow::Result<()> {
    let db = seeded().await?;
    let sidecar = Sidecar::start_with(wallet_sidecar_config(&db)?).await?;
    let name = r#"O'Brien \' \"x\"'); DROP TABLE payment_methods; --"#;
    let token = traveler_token(ALICE, json!({ "user_metadata": { "full_name": name } }));
    let agent = r#"it's \ an "agent"', true); --"#;
    let card: String =
        sqlx::query_scalar("SELECT id::text FROM payment_methods WHERE stripe_payment_method_id = 'pm_a_new'")
            .fetch_one(&mut db.admin().await?)
            .await?;
    let bearer = format!("Bearer {token}");
    let made_default = sidecar
        .request_with(
            "POST",
            &format!("/v1/wallet/payment-methods/{card}/default"),
            &[("authorization", &bearer), ("user-agent", agent)],
            None,
        )
        .await?;
    assert_eq!(made_default.status, StatusCode::OK, "{}", made_default.text);
    let (recorded_agent, actor, cards): (Option<String>, Option<String>, i64) = sqlx::query_as(
        "SELECT a.user_agent, a.actor, (SELECT count(*) FROM payment_methods)
           FROM traveler_data_audit a
          WHERE a.table_name = 'payment_methods' AND a.action = 'UPDATE' AND a.record_id = $1::uuid",
    )
    .bind(&card)
    .fetch_one(&mut db.admin().await?)
    .await?;
    assert_eq!(recorded_agent.as_deref(), Some(agent), "the header as sent");
    assert_eq!(actor, Some(format!("user:{ALICE}")), "the claims as sent");
    assert_eq!(cards, 4, "nothing but the default changed");
    Ok(())
}

#[tokio::test]
async fn bad_tokens_are_401_with_a_stable_code() -> anyhow::Result<()> {
    let db = seeded().await?;
    let sidecar = Sidecar::start_with(wallet_sidecar_config(&db)?).await?;
    let foreign = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": ALICE, "role": "authenticated", "aud": "authenticated", "exp": 4_000_000_000u64 }),
        &jsonwebtoken::EncodingKey::from_secret(b"another-project-secret-of-sufficient-length"),
    )?;
    for (token, what) in [
        (traveler_token(ALICE, json!({ "exp": 1_000_000 })), "expired"),
        (foreign, "signed with another secret"),
        (traveler_token(ALICE, json!({ "aud": "somewhere-else" })), "another audience"),
        (traveler_token(ALICE, json!({ "role": "anon" })), "anon role"),
        (traveler_token("not-a-uuid", json!({})), "sub not a uuid"),
        ("garbage".to_owned(), "not a JWT"),
    ] {
        let response = list(&sidecar, &token).await?;
        assert_eq!(
            (response.status, response.json["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_token")),
            "{what}"
        );
    }
    let missing = sidecar.request("GET", "/v1/wallet/payment-methods", None).await?;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn only_edge_callers_reach_the_wallet_and_it_needs_configuring() -> anyhow::Result<()> {
    let db = seeded().await?;
    let as_admin =
        Sidecar::start_with(wallet_sidecar_config(&db)?.callers(CallerClass::Admin, vec![harness::own_uid()])).await?;
    let refused = list(&as_admin, &traveler_token(ALICE, json!({}))).await?;
    assert_eq!((refused.status, refused.json["code"].as_str()), (StatusCode::FORBIDDEN, Some("caller_not_allowed")));

    let unconfigured =
        Sidecar::start_with(SidecarConfig::default().callers(CallerClass::Edge, vec![harness::own_uid()])).await?;
    let response = list(&unconfigured, &traveler_token(ALICE, json!({}))).await?;
    assert_eq!(
        (response.status, response.json["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("wallet_not_configured"))
    );

    // Bookings: the same caller rule; a wallet without [stripe] and [duffel] cannot book.
    let token = traveler_token(ALICE, json!({}));
    let refused = call(&as_admin, "POST", "/v1/bookings", &token, Some("k"), Some(json!({}))).await?;
    assert_eq!((refused.status, refused.json["code"].as_str()), (StatusCode::FORBIDDEN, Some("caller_not_allowed")));
    let wallet_only = Sidecar::start_with(wallet_sidecar_config(&db)?).await?;
    let body = json!({ "campaign_id": uuid::Uuid::nil(), "offer_id": "off_1", "passengers": [], "amount": 1, "currency": "eur" });
    let unbookable = call(&wallet_only, "POST", "/v1/bookings", &token, Some("k"), Some(body)).await?;
    assert_eq!(
        (unbookable.status, unbookable.json["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("bookings_not_configured"))
    );

    // Without [stripe] a card cannot be added: 503 before the body is judged,
    // so the Idempotency-Key is freed for a retry once Stripe is configured.
    for body in [json!({ "setup_intent_id": "seti_1" }), json!({ "unknown": true })] {
        let response =
            call(&wallet_only, "POST", "/v1/wallet/payment-methods", &token, Some("card-1"), Some(body)).await?;
        assert_eq!(
            (response.status, response.json["code"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("wallet_not_configured")),
            "{}",
            response.text
        );
    }
    Ok(())
}

/// Defense in depth: the sidecar's own role sees only the traveler it acts for,
/// even through a query that forgets the WHERE clause.
#[tokio::test]
async fn the_sidecars_database_role_is_held_by_rls() -> anyhow::Result<()> {
    let db = seeded().await?;
    let mut conn: sqlx::PgConnection = sqlx::Connection::connect(&db.url("pw_test_sidecar")?).await?;
    let mut tx = sqlx::Connection::begin(&mut conn).await?;
    sqlx::query("SELECT set_config('role', 'parker_wallet_sidecar', true), set_config('request.jwt.claims', $1, true)")
        .bind(format!(r#"{{"sub":"{ALICE}","role":"authenticated"}}"#))
        .execute(&mut *tx)
        .await?;
    let owners: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT user_id::text FROM payment_methods").fetch_all(&mut *tx).await?;
    assert_eq!(owners, [ALICE]);
    let moved = sqlx::query(&format!("UPDATE payment_methods SET is_default = false WHERE user_id = '{BOB}'"))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    assert_eq!(moved, 0, "Bob's cards are invisible to a request acting for Alice");
    let error = sqlx::query(&format!(
        "INSERT INTO wallet_customers (user_id, stripe_customer_id) VALUES ('{BOB}', 'cus_forged')"
    ))
    .execute(&mut *tx)
    .await
    .unwrap_err();
    assert_eq!(harness::sqlstate(&error).as_deref(), Some("42501"), "{error}");
    Ok(())
}

#[tokio::test]
async fn twenty_concurrent_first_calls_create_exactly_one_stripe_customer() -> anyhow::Result<()> {
    let app = std::sync::Arc::new(TestApp::wallet().with_stripe().start().await?);
    let traveler = app.new_traveler().await?;
    let (db, user, token) = (&app.db, &traveler.id, &traveler.token);
    let emulators = harness::Emulators::from_env()?;
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let app = std::sync::Arc::clone(&app);
            let token = token.clone();
            tokio::spawn(async move { setup_intent(&app.sidecar, &token).await })
        })
        .collect();
    let mut customers = std::collections::BTreeSet::new();
    for call in calls {
        let response = call.await??;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
        let secret = response.json["client_secret"].as_str().unwrap_or_default();
        assert!(secret.starts_with("seti_") && secret.contains("_secret_"), "{secret}");
        customers.insert(response.json["customer_id"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(customers.len(), 1, "{customers:?}");
    let at_stripe = harness::stripe_customers_of(&emulators.localstripe_url, user).await?;
    assert_eq!(at_stripe.len(), 1, "Stripe holds exactly one customer for the traveler");
    assert_eq!(at_stripe[0]["email"], format!("{user}@example.com"));

    let mut admin = db.admin().await?;
    let (rows, agent, ip): (i64, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM wallet_customers WHERE user_id = $1::uuid),
                a.user_agent, host(a.ip_address)
           FROM traveler_data_audit a WHERE a.user_id = $1::uuid AND a.table_name = 'wallet_customers'",
    )
    .bind(user)
    .fetch_one(&mut admin)
    .await?;
    assert_eq!(
        (rows, agent.as_deref(), ip.as_deref()),
        (1, Some("edge-fn/1"), Some("198.51.100.23")),
        "audited with the caller's request"
    );
    Ok(())
}

#[tokio::test]
async fn stripe_down_is_a_502_and_nothing_is_written() -> anyhow::Result<()> {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let app = TestApp::wallet().with_stripe_at(format!("http://127.0.0.1:{closed}/")).start().await?;
    let (db, sidecar, user) = (&app.db, &app.sidecar, app.new_traveler().await?.id);
    let response = setup_intent(sidecar, &traveler_token(&user, json!({}))).await?;
    assert_eq!(
        (response.status, response.json["code"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("stripe_unavailable")),
        "{}",
        response.text
    );
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM wallet_customers").fetch_one(&mut db.admin().await?).await?;
    assert_eq!(rows, 0);
    Ok(())
}

#[tokio::test]
async fn cards_are_added_deduplicated_defaulted_and_deleted() -> anyhow::Result<()> {
    use base64::Engine;
    let app = TestApp::wallet().with_stripe().start().await?;
    let traveler = app.new_traveler().await?;
    let (db, sidecar, user, token) = (&app.db, &app.sidecar, &traveler.id, &traveler.token);
    let emulators = harness::Emulators::from_env()?;
    let stripe = emulators.localstripe_url.as_str();

    let first_intent = card_saved_through_stripe(sidecar, token, stripe, "4242424242424242").await?;
    let first =
        app.traveler(&traveler).post("/v1/wallet/payment-methods", json!({ "setup_intent_id": first_intent })).await?;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(
        (first.json["data"]["last4"].as_str(), first.json["data"]["is_default"].as_bool()),
        (Some("4242"), Some(true))
    );
    let first_id = first.json["data"]["id"].as_str().unwrap_or_default().to_owned();

    // Adding the same SetupIntent again, or the same card through another one, updates the row.
    let again =
        app.traveler(&traveler).post("/v1/wallet/payment-methods", json!({ "setup_intent_id": first_intent })).await?;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    let same_card = card_saved_through_stripe(sidecar, token, stripe, "4242424242424242").await?;
    let deduped =
        app.traveler(&traveler).post("/v1/wallet/payment-methods", json!({ "setup_intent_id": same_card })).await?;
    assert_eq!((deduped.status, deduped.json["data"]["id"].as_str()), (StatusCode::OK, Some(first_id.as_str())));

    let second_intent = card_saved_through_stripe(sidecar, token, stripe, "4000056655665556").await?;
    let second =
        app.traveler(&traveler).post("/v1/wallet/payment-methods", json!({ "setup_intent_id": second_intent })).await?;
    assert_eq!((second.status, second.json["data"]["is_default"].as_bool()), (StatusCode::CREATED, Some(false)));
    let second_id = second.json["data"]["id"].as_str().unwrap_or_default().to_owned();

    // The stored metadata is ciphertext that only this traveler's context (and row) opens.
    let mut admin = db.admin().await?;
    let (sealed, pm): (Vec<u8>, String) =
        sqlx::query_as("SELECT encrypted_card_data, stripe_payment_method_id FROM payment_methods WHERE id = $1::uuid")
            .bind(&first_id)
            .fetch_one(&mut admin)
            .await?;
    let context =
        json!({ "user_id": user, "table": "payment_methods", "column": "encrypted_card_data", "record_id": first_id });
    let opened =
        sidecar.crypto("decrypt", &base64::engine::general_purpose::STANDARD.encode(&sealed), &context).await?;
    let metadata: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD.decode(opened.json["data"].as_str().unwrap_or_default())?,
    )?;
    assert_eq!((metadata["last4"].as_str(), metadata["payment_method_id"].as_str()), (Some("4242"), Some(pm.as_str())));
    assert!(metadata["fingerprint"].is_string());

    // Switch the default, then delete it: the remaining card is promoted.
    let switched =
        app.traveler(&traveler).post_empty(&format!("/v1/wallet/payment-methods/{second_id}/default")).await?;
    assert_eq!(switched.json["data"]["is_default"], true, "{}", switched.text);
    let listing = app.traveler(&traveler).get("/v1/wallet/payment-methods").await?;
    assert_eq!(listing.json["data"][0]["id"].as_str(), Some(second_id.as_str()), "default first");
    let deleted = app.traveler(&traveler).delete(&format!("/v1/wallet/payment-methods/{second_id}")).await?;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text);
    let listing = app.traveler(&traveler).get("/v1/wallet/payment-methods").await?;
    let remaining = listing.json["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(remaining.len(), 1);
    assert_eq!(
        (remaining[0]["id"].as_str(), remaining[0]["is_default"].as_bool()),
        (Some(first_id.as_str()), Some(true))
    );
    Ok(())
}

#[tokio::test]
async fn another_travelers_setup_intent_or_card_is_not_found() -> anyhow::Result<()> {
    let emulators = harness::Emulators::from_env()?;
    let app = TestApp::wallet().with_stripe().start().await?;
    let (alice, bob) = (app.new_traveler().await?, app.new_traveler().await?);
    let sidecar = &app.sidecar;
    let (alice_token, bob_token) = (&alice.token, &bob.token);
    let alices_intent =
        card_saved_through_stripe(sidecar, alice_token, &emulators.localstripe_url, "4242424242424242").await?;
    let added = call(
        sidecar,
        "POST",
        "/v1/wallet/payment-methods",
        alice_token,
        None,
        Some(json!({ "setup_intent_id": alices_intent })),
    )
    .await?;
    let card = added.json["data"]["id"].as_str().unwrap_or_default().to_owned();

    setup_intent(sidecar, bob_token).await?; // Bob has a customer of his own.
    let stolen = call(
        sidecar,
        "POST",
        "/v1/wallet/payment-methods",
        bob_token,
        None,
        Some(json!({ "setup_intent_id": alices_intent })),
    )
    .await?;
    assert_eq!((stolen.status, stolen.json["code"].as_str()), (StatusCode::NOT_FOUND, Some("setup_intent_not_found")));
    for (method, path) in [
        ("POST", format!("/v1/wallet/payment-methods/{card}/default")),
        ("DELETE", format!("/v1/wallet/payment-methods/{card}")),
    ] {
        let response = call(sidecar, method, &path, bob_token, None, None).await?;
        assert_eq!(
            (response.status, response.json["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("card_not_found")),
            "{path}"
        );
    }
    for (body, code) in [
        (json!({ "setup_intent_id": "pi_123" }), "invalid_request"),
        (json!({ "setup_intent_id": "seti_1' OR 1=1 --" }), "invalid_request"),
        (json!({ "setup_intent_id": "seti_123", "extra": true }), "invalid_request"),
    ] {
        let response = call(sidecar, "POST", "/v1/wallet/payment-methods", bob_token, None, Some(body)).await?;
        assert_eq!((response.status, response.json["code"].as_str()), (StatusCode::BAD_REQUEST, Some(code)));
    }
    let bad_id = call(sidecar, "DELETE", "/v1/wallet/payment-methods/not-a-uuid", bob_token, None, None).await?;
    assert_eq!(bad_id.json["code"], "invalid_id");
    Ok(())
}

#[tokio::test]
async fn concurrent_default_switches_leave_exactly_one_default() -> anyhow::Result<()> {
    let app = std::sync::Arc::new(TestApp::wallet().with_stripe().start().await?);
    let traveler = app.new_traveler().await?;
    let (db, sidecar, user, token) = (&app.db, &app.sidecar, &traveler.id, &traveler.token);
    let emulators = harness::Emulators::from_env()?;
    let mut cards = Vec::new();
    for number in ["4242424242424242", "4000056655665556", "5555555555554444"] {
        let intent = card_saved_through_stripe(sidecar, token, &emulators.localstripe_url, number).await?;
        let added =
            app.traveler(&traveler).post("/v1/wallet/payment-methods", json!({ "setup_intent_id": intent })).await?;
        cards.push(added.json["data"]["id"].as_str().unwrap_or_default().to_owned());
    }
    let switches: Vec<_> = (0..30)
        .map(|n| {
            let app = std::sync::Arc::clone(&app);
            let (token, card) = (token.clone(), cards[n % cards.len()].clone());
            tokio::spawn(async move {
                call(&app.sidecar, "POST", &format!("/v1/wallet/payment-methods/{card}/default"), &token, None, None)
                    .await
            })
        })
        .collect();
    for switch in switches {
        assert_eq!(switch.await??.status, StatusCode::OK);
    }
    let defaults: i64 =
        sqlx::query_scalar("SELECT count(*) FROM payment_methods WHERE user_id = $1::uuid AND is_default")
            .bind(user)
            .fetch_one(&mut db.admin().await?)
            .await?;
    assert_eq!(defaults, 1);
    Ok(())
}

/// A wallet change stores its answer in its own transaction: every change
/// route's answer is stored (refusals too) and replayed as it was first given.
#[tokio::test]
async fn every_wallet_change_is_replayed_as_first_answered() -> anyhow::Result<()> {
    let app = TestApp::wallet().with_stripe().start().await?;
    let traveler = app.new_traveler().await?;
    let emulators = harness::Emulators::from_env()?;
    let mut cards = Vec::new();
    for (n, number) in ["4242424242424242", "5555555555554444"].into_iter().enumerate() {
        let intent =
            card_saved_through_stripe(&app.sidecar, &traveler.token, &emulators.localstripe_url, number).await?;
        let body = json!({ "setup_intent_id": intent, "off_session_consent": { "text_version": "card-mit-1" } });
        let key = format!("add-{n}");
        let added = app.traveler(&traveler).key(&key).post("/v1/wallet/payment-methods", body.clone()).await?;
        assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
        let again = app.traveler(&traveler).key(&key).post("/v1/wallet/payment-methods", body).await?;
        assert_eq!((again.status, &again.json), (added.status, &added.json), "add replayed");
        assert_eq!(again.headers.get("idempotent-replayed").map(|v| v.as_bytes()), Some(&b"true"[..]));
        cards.push(added.json["data"]["id"].as_str().unwrap_or_default().to_owned());
    }
    let second = &cards[1];
    let consent = json!({ "text_version": "card-mit-2" });
    let missing = uuid::Uuid::new_v4();
    let changes: [(&str, &str, String, Option<serde_json::Value>, StatusCode); 5] = [
        ("default", "POST", format!("/v1/wallet/payment-methods/{second}/default"), None, StatusCode::OK),
        ("consent", "POST", format!("/v1/wallet/payment-methods/{second}/consent"), Some(consent), StatusCode::CREATED),
        ("withdraw", "DELETE", format!("/v1/wallet/payment-methods/{second}/consent"), None, StatusCode::OK),
        ("delete", "DELETE", format!("/v1/wallet/payment-methods/{second}"), None, StatusCode::OK),
        ("refused", "POST", format!("/v1/wallet/payment-methods/{missing}/default"), None, StatusCode::NOT_FOUND),
    ];
    for (key, method, path, body, status) in changes {
        let first = call(&app.sidecar, method, &path, &traveler.token, Some(key), body.clone()).await?;
        assert_eq!(first.status, status, "{key}: {}", first.text);
        let again = call(&app.sidecar, method, &path, &traveler.token, Some(key), body).await?;
        assert_eq!((again.status, &again.json), (first.status, &first.json), "{key} replayed as first answered");
        assert_eq!(again.headers.get("idempotent-replayed").map(|v| v.as_bytes()), Some(&b"true"[..]), "{key}");
        let (state, stored_status): (String, Option<i16>) =
            sqlx::query_as("SELECT state, response_status FROM idempotency_keys WHERE user_id = $1::uuid AND key = $2")
                .bind(&traveler.id)
                .bind(key)
                .fetch_one(&mut app.db.admin().await?)
                .await?;
        assert_eq!((state.as_str(), stored_status), ("completed", Some(status.as_u16() as i16)), "{key}");
    }
    // The answer was written by the change's own transaction.
    let same_transaction: bool = sqlx::query_scalar(
        "SELECT answer.xmin::text = consent.xmin::text
           FROM idempotency_keys answer, consents consent
          WHERE answer.user_id = $1::uuid AND answer.key = 'withdraw' AND consent.subject_id = $2::uuid
            AND consent.text_version = 'card-mit-2'",
    )
    .bind(&traveler.id)
    .bind(second)
    .fetch_one(&mut app.db.admin().await?)
    .await?;
    assert!(same_transaction, "a withdrawal and its stored answer commit together");
    Ok(())
}

/// A request that waited on the wallet lock past the time after which its key
/// counts as abandoned, while a retry took the key over: the first to run
/// deleted the card and stored 200, then the retry found no card and
/// overwrote the stored answer with 404. Now only the claim's holder writes
/// its answer: the stale request's change rolls back and the retry's 200 stands.
#[tokio::test]
async fn a_request_whose_key_was_taken_over_cannot_overwrite_the_answer() -> anyhow::Result<()> {
    let app = std::sync::Arc::new(TestApp::wallet().with_stripe().start().await?);
    let traveler = app.new_traveler().await?;
    let emulators = harness::Emulators::from_env()?;
    let intent =
        card_saved_through_stripe(&app.sidecar, &traveler.token, &emulators.localstripe_url, "4242424242424242")
            .await?;
    let added =
        app.traveler(&traveler).post("/v1/wallet/payment-methods", json!({ "setup_intent_id": intent })).await?;
    let card = added.json["data"]["id"].as_str().unwrap_or_default().to_owned();
    let path = format!("/v1/wallet/payment-methods/{card}");
    let mut admin = app.db.admin().await?;
    let wallet_lock = "hashtextextended('parker_wallet.wallet:' || $1, 0)";
    sqlx::query(&format!("SELECT pg_advisory_lock({wallet_lock})")).bind(&traveler.id).execute(&mut admin).await?;
    let waiting = |n: i64| {
        let db = &app.db;
        async move {
            for _ in 0..200 {
                let queued: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_locks
                      WHERE locktype = 'advisory' AND NOT granted
                        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                )
                .fetch_one(&mut db.admin().await?)
                .await?;
                if queued >= n {
                    return Ok(());
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            anyhow::bail!("{n} requests never queued on the wallet lock")
        }
    };
    let delete = |app: std::sync::Arc<TestApp>, token: String, path: String| {
        tokio::spawn(async move { call(&app.sidecar, "DELETE", &path, &token, Some("k-del"), None).await })
    };
    let stale = delete(std::sync::Arc::clone(&app), traveler.token.clone(), path.clone());
    waiting(1).await?;
    // The first request has waited "too long": its key counts as abandoned.
    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '10 minutes' WHERE key = 'k-del'")
        .execute(&mut admin)
        .await?;
    let retry = delete(std::sync::Arc::clone(&app), traveler.token.clone(), path.clone());
    waiting(2).await?;
    sqlx::query(&format!("SELECT pg_advisory_unlock({wallet_lock})")).bind(&traveler.id).execute(&mut admin).await?;
    let (stale, retry) = (stale.await??, retry.await??);
    let retaken: bool =
        sqlx::query_scalar("SELECT created_at > now() - interval '1 minute' FROM idempotency_keys WHERE key = 'k-del'")
            .fetch_one(&mut admin)
            .await?;
    assert!(retaken, "the retry took the key over with a claim of its own");
    assert_eq!(retry.status, StatusCode::OK, "the retry deleted the card: {}", retry.text);
    assert!(stale.status.is_server_error(), "the stale request's change rolled back: {}", stale.text);
    let replay = call(&app.sidecar, "DELETE", &path, &traveler.token, Some("k-del"), None).await?;
    assert_eq!((replay.status, &replay.json), (StatusCode::OK, &retry.json), "the stored answer is the retry's");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM payment_methods WHERE id = $1::uuid")
        .bind(&card)
        .fetch_one(&mut admin)
        .await?;
    assert_eq!(left, 0);
    Ok(())
}

#[tokio::test]
async fn idempotency_keys_replay_refuse_reuse_and_serialise_duplicates() -> anyhow::Result<()> {
    let app = std::sync::Arc::new(TestApp::wallet().with_stripe().start().await?);
    let traveler = app.new_traveler().await?;
    let (db, user, token) = (&app.db, &traveler.id, &traveler.token);

    let first = app.traveler(&traveler).key("k-1").post_empty("/v1/wallet/setup-intents").await?;
    let replay = app.traveler(&traveler).key("k-1").post_empty("/v1/wallet/setup-intents").await?;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!((replay.status, &replay.json), (StatusCode::OK, &first.json), "same key, same request: the same answer");

    // A stored refusal replays too; the same key on another request is refused.
    let missing = json!({ "setup_intent_id": "seti_doesnotexist" });
    let refused = app.traveler(&traveler).key("k-2").post("/v1/wallet/payment-methods", missing.clone()).await?;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.text);
    let refused_again = app.traveler(&traveler).key("k-2").post("/v1/wallet/payment-methods", missing).await?;
    assert_eq!(
        (refused_again.status, refused_again.json["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("setup_intent_not_found"))
    );
    let reused = app
        .traveler(&traveler)
        .key("k-2")
        .post("/v1/wallet/payment-methods", json!({ "setup_intent_id": "seti_other" }))
        .await?;
    assert_eq!(
        (reused.status, reused.json["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("idempotency_key_reused"))
    );

    // Concurrent duplicates: one runs, the others wait their turn (409) or replay it.
    let racers: Vec<_> = (0..10)
        .map(|_| {
            let app = std::sync::Arc::clone(&app);
            let token = token.clone();
            tokio::spawn(async move {
                call(&app.sidecar, "POST", "/v1/wallet/setup-intents", &token, Some("k-race"), None).await
            })
        })
        .collect();
    let mut intents = std::collections::BTreeSet::new();
    for racer in racers {
        let response = racer.await??;
        match response.status {
            StatusCode::OK => {
                intents.insert(response.json["setup_intent_id"].as_str().unwrap_or_default().to_owned());
            }
            StatusCode::CONFLICT => assert_eq!(response.json["code"], "idempotency_in_progress"),
            other => panic!("unexpected {other}: {}", response.text),
        }
    }
    assert_eq!(intents.len(), 1, "one SetupIntent for one key: {intents:?}");

    // Keys expire after 24 hours; the purge job removes them and the key is free again.
    let mut admin = db.admin().await?;
    sqlx::query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'k-1'")
        .execute(&mut admin)
        .await?;
    let purged: i64 =
        sqlx::query_scalar("SELECT wallet_internal.purge_expired_idempotency_keys()").fetch_one(&mut admin).await?;
    assert_eq!(purged, 1);
    let fresh = app.traveler(&traveler).key("k-1").post_empty("/v1/wallet/setup-intents").await?;
    assert_ne!(fresh.json["setup_intent_id"], first.json["setup_intent_id"]);
    // An expired key the purge has not reached yet is free too: a new run, not a replay.
    sqlx::query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'k-1'")
        .execute(&mut admin)
        .await?;
    let after_expiry = app
        .traveler(&traveler)
        .key("k-1")
        .post("/v1/wallet/payment-methods", json!({ "setup_intent_id": "seti_other" }))
        .await?;
    assert_eq!(
        (after_expiry.status, after_expiry.json["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("setup_intent_not_found")),
        "the expired key's first request is forgotten"
    );

    // A key a crashed sidecar left "in progress" is taken over once abandoned,
    // by the same request only: another is refused as a reuse.
    let route = "POST /v1/wallet/setup-intents";
    let same_request = kms_sidecar::idempotency::fingerprint(route, uuid::Uuid::parse_str(user)?, b"");
    for (key, print) in [("k-crashed", same_request), ("k-crashed-other", b"\x00".to_vec())] {
        sqlx::query(
            "INSERT INTO idempotency_keys (user_id, key, route, request_fingerprint, state, created_at)
             VALUES ($1::uuid, $2, $3, $4, 'in_progress', now() - interval '10 minutes')",
        )
        .bind(user)
        .bind(key)
        .bind(route)
        .bind(print)
        .execute(&mut admin)
        .await?;
    }
    let recovered = app.traveler(&traveler).key("k-crashed").post_empty("/v1/wallet/setup-intents").await?;
    assert_eq!(recovered.status, StatusCode::OK, "{}", recovered.text);
    let other = app.traveler(&traveler).key("k-crashed-other").post_empty("/v1/wallet/setup-intents").await?;
    assert_eq!(
        (other.status, other.json["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("idempotency_key_reused"))
    );
    Ok(())
}

/// A valid token whose user is gone created a Stripe customer, then failed (500).
#[tokio::test]
async fn a_token_whose_user_is_gone_is_403_before_stripe_is_called() -> anyhow::Result<()> {
    let emulators = harness::Emulators::from_env()?;
    let app = TestApp::wallet().with_stripe().start().await?;
    let sidecar = &app.sidecar;
    let ghost = uuid::Uuid::new_v4().to_string();
    let refused = setup_intent(sidecar, &traveler_token(&ghost, json!({}))).await?;
    assert_eq!(
        (refused.status, refused.json["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("traveler_not_found")),
        "{}",
        refused.text
    );
    assert!(harness::stripe_customers_of(&emulators.localstripe_url, &ghost).await?.is_empty());
    Ok(())
}

/// A non-ASCII key used to be read as no key at all (two SetupIntents for one
/// key); a key of 192 to 255 characters overflowed Stripe's limit once the
/// sidecar prefixed it (502).
#[tokio::test]
async fn idempotency_keys_outside_printable_ascii_are_400_and_the_longest_still_work() -> anyhow::Result<()> {
    let app = TestApp::wallet().with_stripe().start().await?;
    let traveler = app.new_traveler().await?;
    let user = &traveler.id;
    let emulators = harness::Emulators::from_env()?;
    for key in ["clé-1", "key with spaces"] {
        let refused = app.traveler(&traveler).key(key).post_empty("/v1/wallet/setup-intents").await?;
        assert_eq!(
            (refused.status, refused.json["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{key}"
        );
    }
    assert!(harness::stripe_customers_of(&emulators.localstripe_url, user).await?.is_empty(), "refused before Stripe");

    let longest = "k".repeat(255);
    let first = app.traveler(&traveler).key(&longest).post_empty("/v1/wallet/setup-intents").await?;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let replay = app.traveler(&traveler).key(&longest).post_empty("/v1/wallet/setup-intents").await?;
    assert_eq!(replay.json["setup_intent_id"], first.json["setup_intent_id"]);
    Ok(())
}

#[tokio::test]
async fn a_slow_stripe_is_a_504() -> anyhow::Result<()> {
    let port = harness::silent_tcp_port()?;
    let app = TestApp::wallet()
        .with_stripe_at(format!("http://127.0.0.1:{port}/"))
        .configure(|config| {
            if let Some(stripe) = config.settings.stripe.as_mut() {
                stripe.timeout_ms = 500;
            }
        })
        .start()
        .await?;
    let (db, sidecar, user) = (&app.db, &app.sidecar, app.new_traveler().await?.id);
    let response = setup_intent(sidecar, &traveler_token(&user, json!({}))).await?;
    assert_eq!(
        (response.status, response.json["code"].as_str()),
        (StatusCode::GATEWAY_TIMEOUT, Some("stripe_timeout")),
        "{}",
        response.text
    );
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM wallet_customers").fetch_one(&mut db.admin().await?).await?;
    assert_eq!(rows, 0, "nothing half-written");
    Ok(())
}

#[tokio::test]
async fn oversized_bodies_and_hostile_strings_are_refused_cleanly() -> anyhow::Result<()> {
    let app = TestApp::wallet().with_stripe().start().await?;
    let traveler = app.new_traveler().await?;
    let (db, sidecar, user, token) = (&app.db, &app.sidecar, &traveler.id, &traveler.token);
    let bearer = format!("Bearer {token}");

    let huge = json!({ "setup_intent_id": "seti_".to_owned() + &"a".repeat(200 * 1024) });
    let too_large = app.traveler(&traveler).post("/v1/wallet/payment-methods", huge).await?;
    assert_eq!(
        (too_large.status, too_large.json["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );

    // Hostile header values travel as data: the audit keeps no address for them.
    let response = sidecar
        .request_with(
            "POST",
            "/v1/wallet/setup-intents",
            &[
                ("authorization", &bearer),
                ("x-forwarded-for", "'); DROP TABLE payment_methods; --"),
                ("user-agent", "\\'; SELECT pg_sleep(10); --"),
            ],
            None,
        )
        .await?;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    let (ip, agent): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT host(ip_address), user_agent FROM traveler_data_audit WHERE user_id = $1::uuid AND table_name = 'wallet_customers'",
    )
    .bind(user)
    .fetch_one(&mut db.admin().await?)
    .await?;
    assert_eq!((ip, agent.as_deref()), (None, Some("\\'; SELECT pg_sleep(10); --")));
    let intact: i64 =
        sqlx::query_scalar("SELECT count(*) FROM payment_methods").fetch_one(&mut db.admin().await?).await?;
    assert_eq!(intact, 0);
    Ok(())
}

/// The attack: about eight parallel first-time calls of one traveler, each
/// holding a pooled connection while it waits for the traveler's lock behind a
/// slow Stripe, left every other traveler with 503. Now one traveler's requests
/// beyond `limits.per_traveler_requests` wait their turn holding no connection,
/// beyond `per_traveler_queue` more are refused (429, Retry-After), and another
/// traveler is served at once.
#[tokio::test]
async fn one_traveler_flooding_does_not_starve_another() -> anyhow::Result<()> {
    let port = harness::silent_tcp_port()?;
    let db = TestDb::migrated().await?;
    let (flooder, other) = (new_traveler(&db).await?, new_traveler(&db).await?);
    let mut config = wallet_sidecar_config(&db)?.with_stripe(&format!("http://127.0.0.1:{port}/"));
    if let Some(stripe) = config.settings.stripe.as_mut() {
        stripe.timeout_ms = 1000;
    }
    config.settings.limits.per_traveler_requests = 2;
    config.settings.limits.per_traveler_queue = 4;
    let sidecar = std::sync::Arc::new(Sidecar::start_with(config).await?);
    let flood_token = traveler_token(&flooder, json!({}));
    let flood: Vec<_> = (0..12)
        .map(|_| {
            let (sidecar, token) = (std::sync::Arc::clone(&sidecar), flood_token.clone());
            tokio::spawn(async move { setup_intent(&sidecar, &token).await })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let started = std::time::Instant::now();
    let listed = list(&sidecar, &traveler_token(&other, json!({}))).await?;
    assert_eq!(listed.status, StatusCode::OK, "the other traveler is served: {}", listed.text);
    eprintln!("the other traveler's call took {:?} during the flood", started.elapsed());

    let mut statuses = std::collections::BTreeMap::new();
    for request in flood {
        let response = request.await??;
        if response.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(response.json["code"], "too_many_requests", "{}", response.text);
            assert_eq!(response.content_type.as_deref(), Some("application/problem+json"));
            assert_eq!(
                response.headers.get("retry-after").and_then(|v| v.to_str().ok()),
                Some("1"),
                "says when to retry"
            );
        }
        *statuses.entry(response.status.as_u16()).or_insert(0) += 1;
    }
    // Two running and four waiting were let in (Stripe never answers: 504 each); six refused.
    assert_eq!(statuses, std::collections::BTreeMap::from([(429, 6), (504, 6)]), "{statuses:?}");
    Ok(())
}
