//! Bookings end to end: a real sidecar process, localstripe behind a fault
//! proxy, the Duffel fake; crashes are real SIGKILLs at the moment a step's
//! request is in flight (state written, call not made) or just made (answer lost).

use std::sync::Arc;

use harness::duffel_fake::FakeDuffel;
use harness::fake_http::Fault;
use harness::stripe_proxy::StripeProxy;
use harness::web::{EdgeGateway, GatewaySettings, SidecarLink};
use harness::{
    assert_booking_in_audit_chain, call, new_traveler, traveler_token, wallet_card, wallet_sidecar_config, Emulators,
    Response, Sidecar, SidecarConfig, TestDb,
};
use hyper::StatusCode;
use kms_sidecar::config::DatabaseSettings;
use serde_json::{json, Value};

const VISA: &str = "4242424242424242";
const DECLINED_AT_CHARGE: &str = "4000000000000341";
const NEEDS_3DS: &str = "4000002760003184";

struct Booker {
    db: TestDb,
    sidecar: Option<Sidecar>,
    config: SidecarConfig,
    duffel: FakeDuffel,
    stripe: StripeProxy,
    localstripe: String,
    user: String,
    token: String,
    campaign: String,
    _keys: tempfile::TempDir,
}

/// A traveler with `cards` saved in this order (the first is the default) and
/// a campaign, with consent or not; a booking sidecar on Stripe-via-proxy and Duffel.
async fn booker(cards: &[&str], consent: bool) -> anyhow::Result<Booker> {
    let emulators = Emulators::from_env()?;
    let db = TestDb::migrated().await?;
    let user = new_traveler(&db).await?;
    let token = traveler_token(&user, json!({}));
    let stripe = StripeProxy::start(&emulators.localstripe_url).await?;
    let duffel = FakeDuffel::start().await?;
    // One keyring for every sidecar of the test: a restarted one must read what the first sealed.
    let keys = tempfile::tempdir()?;
    let mut config = wallet_sidecar_config(&db)?.with_stripe(&stripe.url).with_duffel(&duffel.url);
    config.settings.keys.local_key_file = Some(keys.path().join("keyring"));
    config.settings.bookings.reconcile_after_secs = 0;
    config.settings.bookings.order_settle_secs = 0;
    let sidecar = Sidecar::start_with(config.clone()).await?;
    for number in cards {
        wallet_card(&sidecar, &token, &emulators.localstripe_url, number).await?;
    }
    let campaign: String = sqlx::query_scalar(
        "INSERT INTO campaigns (user_id, name, consent_at, consent_text_version)
         VALUES ($1::uuid, 'Summer in Lisbon', CASE WHEN $2 THEN now() END, CASE WHEN $2 THEN 'campaign-mit-test' END)
         RETURNING id::text",
    )
    .bind(&user)
    .bind(consent)
    .fetch_one(&mut db.admin().await?)
    .await?;
    Ok(Booker {
        db,
        sidecar: Some(sidecar),
        config,
        duffel,
        stripe,
        localstripe: emulators.localstripe_url,
        user,
        token,
        campaign,
        _keys: keys,
    })
}

fn offer() -> String {
    format!("off_{}", uuid::Uuid::new_v4().simple())
}

impl Booker {
    fn sidecar(&self) -> &Sidecar {
        self.sidecar.as_ref().expect("a running sidecar")
    }

    fn body(&self, offer_id: &str) -> Value {
        harness::app::booking_request(&self.campaign, offer_id)
    }

    async fn book(&self, key: &str, body: &Value) -> anyhow::Result<Response> {
        call(self.sidecar(), "POST", "/v1/bookings", &self.token, Some(key), Some(body.clone())).await
    }

    async fn show(&self, id: &str) -> anyhow::Result<Response> {
        call(self.sidecar(), "GET", &format!("/v1/bookings/{id}"), &self.token, None, None).await
    }

    /// SIGKILL, then a new sidecar on the same database and keys.
    async fn crash_and_restart(&mut self) -> anyhow::Result<()> {
        if let Some(sidecar) = self.sidecar.take() {
            sidecar.kill()?;
        }
        self.stripe.faults.clear();
        self.duffel.faults.clear();
        self.sidecar = Some(Sidecar::start_with(self.config.clone()).await?);
        Ok(())
    }

    /// `kms-sidecar reconcile` as its timer runs it (the operator's
    /// `DATABASE_URL` records the run).
    async fn reconcile(&self) -> anyhow::Result<(bool, String)> {
        let output = tokio::process::Command::new(std::env::var("PW_SIDECAR_BIN")?)
            .args(["reconcile", "--min-age-secs", "0", "--config"])
            .arg(self.sidecar().dir().join("sidecar.toml"))
            .envs(self.config.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("DATABASE_URL", self.db.url(harness::OPERATOR)?)
            .output()
            .await?;
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        Ok((output.status.success(), text))
    }

    /// Every PaymentIntent Stripe holds for a booking, from localstripe itself.
    async fn intents(&self, booking_id: &str) -> anyhow::Result<Vec<Value>> {
        let stream = tokio::net::TcpStream::connect(self.localstripe.trim_start_matches("http://")).await?;
        let bearer = format!("Bearer {}", harness::STRIPE_KEY);
        let page = harness::send_raw(
            stream,
            "GET",
            "/v1/payment_intents?limit=100",
            &[("authorization", &bearer)],
            Vec::new(),
        )
        .await?;
        let all = page.json["data"].as_array().cloned().unwrap_or_default();
        Ok(all.into_iter().filter(|pi| pi["metadata"]["booking_id"] == booking_id).collect())
    }

    async fn state_of(&self, id: &str) -> anyhow::Result<(String, Option<String>)> {
        Ok(sqlx::query_as("SELECT state, reconcile_from FROM booking_charges WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&mut self.db.admin().await?)
            .await?)
    }
}

fn id_of(response: &Response) -> String {
    response.json["data"]["id"].as_str().unwrap_or_default().to_owned()
}

/// A booking answer's state and, when it waits for the reconciler, the step.
fn standing(response: &Response) -> (Option<&str>, Option<&str>) {
    let data = &response.json["data"];
    (data["state"].as_str(), data["reconcile_from"].as_str())
}

/// The booking an answer is about.
fn booking_id(response: &Response) -> anyhow::Result<uuid::Uuid> {
    Ok(response.json["data"]["id"].as_str().unwrap_or_default().parse()?)
}

fn states(response: &Response) -> Vec<String> {
    response.json["data"]["history"]
        .as_array()
        .map(|h| h.iter().filter_map(|e| e["state"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_booking_is_authorized_then_ordered_then_captured_exactly_once() -> anyhow::Result<()> {
    let b = booker(&[VISA], true).await?;
    let body = b.body(&offer());
    let booked = b.book("trip-1", &body).await?;
    assert_eq!(booked.status, StatusCode::CREATED, "{}", booked.text);
    let data = &booked.json["data"];
    assert_eq!(data["state"], "captured", "{}", booked.text);
    assert_eq!((data["card"]["brand"].as_str(), data["card"]["last4"].as_str()), (Some("visa"), Some("4242")));
    assert_eq!((data["amount"].as_i64(), data["currency"].as_str()), (Some(42_000), Some("eur")));
    assert!(data["booking_reference"].as_str().is_some_and(|r| r.starts_with("RZ")), "{data}");
    assert!(data["capture_by"].is_string());
    assert_eq!(states(&booked), ["authorizing", "ordering", "capturing", "captured"]);
    assert_booking_in_audit_chain(&b.db, booking_id(&booked)?).await?;
    let id = id_of(&booked);

    let intents = b.intents(&id).await?;
    assert_eq!(intents.len(), 1);
    let intent = &intents[0];
    assert_eq!((intent["status"].as_str(), intent["capture_method"].as_str()), (Some("succeeded"), Some("manual")));
    let metadata = &intent["metadata"];
    assert_eq!(metadata["campaign_id"], b.campaign.as_str());
    assert_eq!(metadata["route"], "LIS-JFK");
    assert_eq!(metadata["first_booking"], "true");
    assert_eq!(metadata["traveler_account_age_days"], "0");
    assert_eq!(metadata["merchant_initiated"], "true");
    let orders = b.duffel.orders_for(&id);
    assert_eq!(orders.len(), 1);
    assert_eq!(
        (orders[0]["total_amount"].as_str(), orders[0]["total_currency"].as_str()),
        (Some("420.00"), Some("EUR"))
    );
    assert_eq!(orders[0]["passengers"][0]["family_name"], "Lovelace");

    // The same request again: the same booking, nothing charged or ordered twice.
    let again = b.book("trip-1", &body).await?;
    assert_eq!((again.status, id_of(&again)), (StatusCode::OK, id.clone()), "{}", again.text);
    assert_eq!(b.intents(&id).await?.len(), 1);
    assert_eq!(b.duffel.orders_for(&id).len(), 1);
    let shown = b.show(&id).await?;
    assert_eq!((shown.status, shown.json["data"]["state"].as_str()), (StatusCode::OK, Some("captured")));

    // The passengers are sealed at rest, and the traveler reads the row under RLS.
    let mut admin = b.db.admin().await?;
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT passengers_sealed FROM booking_charges WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&mut admin)
        .await?;
    assert_eq!(sealed[0], 3, "an envelope record, version 3 (bound to its row)");
    assert!(!String::from_utf8_lossy(&sealed).contains("Lovelace"));
    let stranger = traveler_token(&uuid::Uuid::new_v4().to_string(), json!({}));
    let hidden = call(b.sidecar(), "GET", &format!("/v1/bookings/{id}"), &stranger, None, None).await?;
    assert_eq!((hidden.status, hidden.json["code"].as_str()), (StatusCode::NOT_FOUND, Some("booking_not_found")));
    Ok(())
}

#[tokio::test]
async fn refusals_name_their_reason_and_charge_nothing() -> anyhow::Result<()> {
    let b = booker(&[VISA], false).await?;
    let body = b.body(&offer());
    let no_consent = b.book("k-consent", &body).await?;
    assert_eq!(
        (no_consent.status, no_consent.json["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("consent_required"))
    );
    sqlx::query(
        "UPDATE campaigns SET consent_at = now(), consent_text_version = 'campaign-mit-test' WHERE id = $1::uuid",
    )
    .bind(&b.campaign)
    .execute(&mut b.db.admin().await?)
    .await?;

    for (patch, status, code) in [
        (json!({ "amount": 0 }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount"),
        (json!({ "amount": -5 }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount"),
        (json!({ "currency": "zzz" }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_currency"),
        (json!({ "offer_id": "ord_123" }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_booking"),
        (json!({ "passengers": [] }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_booking"),
        (json!({ "campaign_id": uuid::Uuid::new_v4() }), StatusCode::NOT_FOUND, "campaign_not_found"),
        (json!({ "amount": "420.00" }), StatusCode::BAD_REQUEST, "invalid_request"),
    ] {
        let mut bad = body.clone();
        for (key, value) in patch.as_object().into_iter().flatten() {
            bad[key] = value.clone();
        }
        let refused = b.book(&format!("k-{}", uuid::Uuid::new_v4()), &bad).await?;
        assert_eq!((refused.status, refused.json["code"].as_str()), (status, Some(code)), "{patch}: {}", refused.text);
    }
    let unkeyed = call(b.sidecar(), "POST", "/v1/bookings", &b.token, None, Some(body.clone())).await?;
    assert_eq!((unkeyed.status, unkeyed.json["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));

    let booked = b.book("k-1", &body).await?;
    assert_eq!(booked.json["data"]["state"], "captured", "{}", booked.text);
    let reused = b.book("k-1", &b.body(&offer())).await?;
    assert_eq!(
        (reused.status, reused.json["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("idempotency_key_reused"))
    );

    // A traveler without a usable card.
    let cardless = new_traveler(&b.db).await?;
    let campaign: String = sqlx::query_scalar(
        "INSERT INTO campaigns (user_id, name, consent_at, consent_text_version) VALUES ($1::uuid, 'x', now(), 'campaign-mit-test') RETURNING id::text",
    )
    .bind(&cardless)
    .fetch_one(&mut b.db.admin().await?)
    .await?;
    let mut theirs = body.clone();
    theirs["campaign_id"] = json!(campaign);
    let token = traveler_token(&cardless, json!({}));
    let refused = call(b.sidecar(), "POST", "/v1/bookings", &token, Some("k-x"), Some(theirs.clone())).await?;
    assert_eq!(
        (refused.status, refused.json["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("no_usable_card"))
    );
    // Someone else's campaign is not found, not "forbidden".
    let foreign = b.book("k-foreign", &theirs).await?;
    assert_eq!((foreign.status, foreign.json["code"].as_str()), (StatusCode::NOT_FOUND, Some("campaign_not_found")));
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM booking_charges").fetch_one(&mut b.db.admin().await?).await?;
    assert_eq!(rows, 1, "only the good request made a booking");
    Ok(())
}

/// The project's service key, as Supabase signs it (no audience, no subject).

#[tokio::test]
async fn the_service_key_books_for_the_campaigns_owner() -> anyhow::Result<()> {
    let b = booker(&[VISA], true).await?;
    let service_key = harness::service_role_key()?;
    let booked =
        call(b.sidecar(), "POST", "/v1/bookings", &service_key, Some("cron-1"), Some(b.body(&offer()))).await?;
    assert_eq!(
        (booked.status, booked.json["data"]["state"].as_str()),
        (StatusCode::CREATED, Some("captured")),
        "{}",
        booked.text
    );
    let owner: String = sqlx::query_scalar("SELECT user_id::text FROM booking_charges WHERE id = $1::uuid")
        .bind(id_of(&booked))
        .fetch_one(&mut b.db.admin().await?)
        .await?;
    assert_eq!(owner, b.user);
    let actors = harness::booking_audit_actors(&b.db, id_of(&booked).parse()?).await?;
    assert!(actors.iter().all(|(_, actor)| actor == "system:parker-wallet/campaign-owner"), "{actors:?}");
    // The service key reads nothing by itself.
    let shown = call(b.sidecar(), "GET", &format!("/v1/bookings/{}", id_of(&booked)), &service_key, None, None).await?;
    assert_eq!(shown.status, StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn the_scheduled_edge_function_books_once_through_deno() -> anyhow::Result<()> {
    let b = booker(&[VISA], true).await?;
    let key = harness::service_role_key()?;
    let gateway = EdgeGateway::start(GatewaySettings {
        sidecar: SidecarLink::Socket(&b.sidecar().socket),
        localstripe: b.localstripe.clone(),
        demo_token: None,
        service_key: Some(key.clone()),
        port: 0,
    })
    .await?;
    let booking = b.body(&offer()).to_string().into_bytes();
    let mut answers = Vec::new();
    // The scheduler twice, then someone with a traveler's token.
    for bearer in [key.clone(), key.clone(), b.token.clone()] {
        let headers = [("authorization", format!("Bearer {bearer}")), ("content-type", "application/json".into())];
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        answers.push(gateway.request("POST", "/functions/v1/book-campaign", &headers, booking.clone()).await?);
    }
    let texts: Vec<&str> = answers.iter().map(|a| a.text.as_str()).collect();
    assert_eq!((answers[0].status, answers[1].status), (StatusCode::CREATED, StatusCode::OK), "{texts:?}");
    assert_eq!(answers[0].json["data"]["state"], "captured", "{texts:?}");
    let id = answers[0].json["data"]["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(answers[1].json["data"]["id"], id.as_str(), "the schedule firing twice books once");
    assert_eq!(answers[2].status, StatusCode::UNAUTHORIZED, "only the scheduler may run it: {texts:?}");
    assert_eq!(b.intents(&id).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_definite_duffel_failure_releases_the_authorization() -> anyhow::Result<()> {
    let b = booker(&[VISA], true).await?;
    let gone = offer();
    b.duffel.offer_gone(&gone);
    let booked = b.book("k-gone", &b.body(&gone)).await?;
    let data = &booked.json["data"];
    assert_eq!(data["state"], "voided", "{}", booked.text);
    assert_eq!(data["failure"]["code"], "duffel_offer_no_longer_available");
    assert_eq!(states(&booked), ["authorizing", "ordering", "voiding", "voided"]);
    assert_booking_in_audit_chain(&b.db, booking_id(&booked)?).await?;
    let intents = b.intents(&id_of(&booked)).await?;
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0]["status"], "canceled", "the card is left uncharged");
    Ok(())
}

#[tokio::test]
async fn an_ambiguous_duffel_outcome_is_left_to_the_reconciler() -> anyhow::Result<()> {
    let b = booker(&[VISA], true).await?;
    // Duffel fails with a 500 and made nothing: the reconciler finds no order and releases.
    b.duffel.faults.inject("POST", "/air/orders", Fault::Fail(500));
    let lost = b.book("k-500", &b.body(&offer())).await?;
    assert_eq!(standing(&lost), (Some("needs_reconciliation"), Some("ordering")), "{}", lost.text);
    let lost_id = id_of(&lost);
    assert_eq!(b.intents(&lost_id).await?[0]["status"], "requires_capture", "never a blind void");

    // Duffel made the order, then answered 502: the reconciler finds it and captures.
    b.duffel.faults.inject("POST", "/air/orders", Fault::ActThenFail(502));
    let made = b.book("k-502", &b.body(&offer())).await?;
    assert_eq!(made.json["data"]["state"], "needs_reconciliation", "{}", made.text);
    let made_id = id_of(&made);

    let (clean, report) = b.reconcile().await?;
    assert!(clean, "{report}");
    assert_eq!(b.state_of(&lost_id).await?.0, "voided", "{report}");
    assert_eq!(b.intents(&lost_id).await?[0]["status"], "canceled");
    assert_eq!(b.state_of(&made_id).await?.0, "captured", "{report}");
    assert_eq!(b.intents(&made_id).await?[0]["status"], "succeeded");
    assert_eq!(b.duffel.orders_for(&made_id).len(), 1, "the order was found, not made again");
    let (_, again) = b.reconcile().await?;
    assert!(again.contains("0 examined"), "{again}");
    Ok(())
}

#[tokio::test]
async fn a_failed_capture_is_retried_never_voided() -> anyhow::Result<()> {
    let b = booker(&[VISA], true).await?;
    for _ in 0..3 {
        b.stripe.faults.inject("POST", "/capture", Fault::Fail(500));
    }
    let booked = b.book("k-capture", &b.body(&offer())).await?;
    assert_eq!(standing(&booked), (Some("needs_reconciliation"), Some("capturing")), "{}", booked.text);
    let id = id_of(&booked);
    assert_eq!(b.intents(&id).await?[0]["status"], "requires_capture");
    let (clean, report) = b.reconcile().await?;
    assert!(clean, "{report}");
    assert_eq!(b.state_of(&id).await?.0, "captured");
    assert_eq!(b.intents(&id).await?[0]["status"], "succeeded");
    // The traveler's request and the reconciler each sign their own writes.
    let actors = harness::booking_audit_actors(&b.db, id.parse()?).await?;
    assert_eq!(actors.first().map(|(_, actor)| actor.clone()), Some(format!("user:{}", b.user)), "{actors:?}");
    assert_eq!(
        actors.last().cloned(),
        Some(("captured".to_owned(), "system:parker-wallet/reconciler".to_owned())),
        "{actors:?}"
    );
    Ok(())
}

#[tokio::test]
async fn stripe_faults_at_authorization_never_make_a_second_charge() -> anyhow::Result<()> {
    let b = booker(&[VISA], true).await?;
    // Stripe authorized, and the answer was lost: the reconciler finds the PaymentIntent.
    b.stripe.faults.inject("POST", "/v1/payment_intents", Fault::ActThenFail(500));
    let lost = b.book("k-lost", &b.body(&offer())).await?;
    assert_eq!(standing(&lost), (Some("needs_reconciliation"), Some("authorizing")), "{}", lost.text);
    // Stripe is down: nothing happened there; the reconciler authorizes once.
    b.stripe.faults.inject("POST", "/v1/payment_intents", Fault::Fail(503));
    let down = b.book("k-down", &b.body(&offer())).await?;
    assert_eq!(down.json["data"]["state"], "needs_reconciliation", "{}", down.text);

    let (clean, report) = b.reconcile().await?;
    assert!(clean, "{report}");
    for booking in [id_of(&lost), id_of(&down)] {
        assert_eq!(b.state_of(&booking).await?.0, "captured", "{report}");
        let intents = b.intents(&booking).await?;
        assert_eq!(intents.len(), 1, "one PaymentIntent per booking: {intents:?}");
        assert_eq!(intents[0]["status"], "succeeded");
    }
    Ok(())
}

#[tokio::test]
async fn timeouts_are_unknown_outcomes_not_failures() -> anyhow::Result<()> {
    let b = booker(&[VISA], true).await?;
    // Stripe never answers the authorization (the sidecar gives up after its 3 s timeout).
    b.stripe.faults.inject("POST", "/v1/payment_intents", Fault::Hang);
    let stripe_slow = b.book("k-stripe-slow", &b.body(&offer())).await?;
    assert_eq!(standing(&stripe_slow), (Some("needs_reconciliation"), Some("authorizing")), "{}", stripe_slow.text);
    assert_eq!(stripe_slow.json["data"]["failure"]["code"], "stripe_unreachable");
    // Duffel never answers the order: the card stays authorized, not released.
    b.duffel.faults.inject("POST", "/air/orders", Fault::Hang);
    let duffel_slow = b.book("k-duffel-slow", &b.body(&offer())).await?;
    assert_eq!(standing(&duffel_slow), (Some("needs_reconciliation"), Some("ordering")), "{}", duffel_slow.text);
    assert_eq!(b.intents(&id_of(&duffel_slow)).await?[0]["status"], "requires_capture");

    let (clean, report) = b.reconcile().await?;
    assert!(clean, "{report}");
    assert_eq!(b.state_of(&id_of(&stripe_slow)).await?.0, "captured", "{report}");
    assert_eq!(b.intents(&id_of(&stripe_slow)).await?.len(), 1);
    assert_eq!(b.state_of(&id_of(&duffel_slow)).await?.0, "voided", "no order listed: the card is released. {report}");
    assert_eq!(b.intents(&id_of(&duffel_slow)).await?[0]["status"], "canceled");
    Ok(())
}

#[tokio::test]
async fn three_d_secure_waits_for_the_traveler_then_resumes() -> anyhow::Result<()> {
    let b = booker(&[NEEDS_3DS], true).await?;
    let booked = b.book("k-3ds", &b.body(&offer())).await?;
    assert_eq!(booked.json["data"]["state"], "requires_authentication", "{}", booked.text);
    let id = id_of(&booked);
    assert!(b.duffel.orders_for(&id).is_empty(), "no order before the card is authorized");

    let (kind, payload): (String, Value) =
        sqlx::query_as("SELECT kind, payload FROM notification_outbox WHERE user_id = $1::uuid")
            .bind(&b.user)
            .fetch_one(&mut b.db.admin().await?)
            .await?;
    assert_eq!(kind, "complete_authentication");
    assert_eq!(payload["booking_id"], id.as_str());
    assert!(payload["link"].as_str().is_some_and(|l| l.contains(&id)), "{payload}");
    assert!(!payload.to_string().contains("_secret_"), "no client secret in the outbox: {payload}");

    let shown = b.show(&id).await?;
    let secret = shown.json["data"]["authentication"]["client_secret"].as_str().unwrap_or_default().to_owned();
    assert!(secret.contains("_secret_"), "{}", shown.text);
    assert!(
        shown.json["data"]["authentication"]["payment_method"].as_str().is_some_and(|pm| pm.starts_with("pm_")),
        "{}",
        shown.text
    );
    let resume_path = format!("/v1/bookings/{id}/resume");
    let early = call(b.sidecar(), "POST", &resume_path, &b.token, None, None).await?;
    assert_eq!((early.status, early.json["code"].as_str()), (StatusCode::CONFLICT, Some("authentication_pending")));

    // The traveler completes 3-D Secure in the browser (what Stripe.js does).
    let intent = shown.json["data"]["authentication"]["payment_intent_id"].as_str().unwrap_or_default().to_owned();
    let authenticated = harness::localstripe_post(
        &b.localstripe,
        &format!("/v1/payment_intents/{intent}/_authenticate?client_secret={secret}&success=true"),
        &[],
    )
    .await?;
    assert_eq!(authenticated.json["status"], "requires_capture", "{}", authenticated.text);
    let resumed = call(b.sidecar(), "POST", &resume_path, &b.token, None, None).await?;
    assert_eq!(
        (resumed.status, resumed.json["data"]["state"].as_str()),
        (StatusCode::OK, Some("captured")),
        "{}",
        resumed.text
    );
    assert_eq!(states(&resumed), ["authorizing", "requires_authentication", "ordering", "capturing", "captured"]);
    assert_booking_in_audit_chain(&b.db, booking_id(&resumed)?).await?;
    assert_eq!(b.intents(&id).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_hard_decline_falls_back_to_the_backup_card_once() -> anyhow::Result<()> {
    let b = booker(&[VISA, DECLINED_AT_CHARGE], true).await?;
    // Make the failing card the default; the Visa becomes the backup.
    let cards = call(b.sidecar(), "GET", "/v1/wallet/payment-methods", &b.token, None, None).await?;
    let failing =
        cards.json["data"].as_array().and_then(|c| c.iter().find(|c| c["last4"] == "0341")).map(|c| c["id"].clone());
    let failing = failing.and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let switched =
        call(b.sidecar(), "POST", &format!("/v1/wallet/payment-methods/{failing}/default"), &b.token, None, None)
            .await?;
    assert!(switched.status.is_success(), "{}", switched.text);

    let booked = b.book("k-backup", &b.body(&offer())).await?;
    let data = &booked.json["data"];
    assert_eq!(data["state"], "captured", "{}", booked.text);
    assert_eq!((data["card"]["last4"].as_str(), data["card"]["attempt"].as_i64()), (Some("4242"), Some(2)));
    assert_eq!(states(&booked), ["authorizing", "authorizing", "ordering", "capturing", "captured"]);
    assert_booking_in_audit_chain(&b.db, booking_id(&booked)?).await?;
    let first_failure = &booked.json["data"]["history"][1]["failure_code"];
    assert!(first_failure.is_string(), "the retry records why: {}", booked.text);
    Ok(())
}

/// Where a crash is staged: which fake holds which request, and how; and how
/// the booking must end.
struct Crash {
    at_stripe: bool,
    method: &'static str,
    path: &'static str,
    fault: Fault,
    /// The offer Duffel refuses (to crash on the void path).
    refuse_order: bool,
    /// `captured`, or `voided` (the card released, nothing ordered).
    ends: &'static str,
}

#[tokio::test]
async fn a_sigkill_at_any_step_ends_in_exactly_one_charge_or_none() -> anyhow::Result<()> {
    let crash = |at_stripe, method, path, fault, refuse_order, ends| Crash {
        at_stripe,
        method,
        path,
        fault,
        refuse_order,
        ends,
    };
    let cases = [
        crash(true, "POST", "/v1/payment_intents", Fault::Hang, false, "captured"),
        crash(true, "POST", "/v1/payment_intents", Fault::ActThenHang, false, "captured"),
        // An order of unknown fate is never sent again: not listed at Duffel, the card is released.
        crash(false, "POST", "/air/orders", Fault::Hang, false, "voided"),
        crash(false, "POST", "/air/orders", Fault::ActThenHang, false, "captured"),
        crash(true, "POST", "/capture", Fault::Hang, false, "captured"),
        crash(true, "POST", "/capture", Fault::ActThenHang, false, "captured"),
        crash(true, "POST", "/cancel", Fault::Hang, true, "voided"),
        crash(true, "POST", "/cancel", Fault::ActThenHang, true, "voided"),
    ];
    let mut b = booker(&[VISA], true).await?;
    for (n, case) in cases.iter().enumerate() {
        let label = format!("case {n}: {} {} {:?}", case.method, case.path, case.fault);
        let offer_id = offer();
        if case.refuse_order {
            b.duffel.offer_gone(&offer_id);
        }
        let faults = if case.at_stripe { Arc::clone(&b.stripe.faults) } else { Arc::clone(&b.duffel.faults) };
        faults.inject(case.method, case.path, case.fault.clone());
        let key = format!("crash-{n}");
        let body = b.body(&offer_id);
        let socket = b.sidecar().socket.clone();
        let token = b.token.clone();
        let in_flight = {
            let (key, body) = (key.clone(), body.clone());
            tokio::spawn(async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                let bearer = format!("Bearer {token}");
                harness::send_raw(
                    stream,
                    "POST",
                    "/v1/bookings",
                    &[("authorization", &bearer), ("idempotency-key", &key), ("content-type", "application/json")],
                    body.to_string().into_bytes(),
                )
                .await
            })
        };
        faults.hung().await.map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
        b.crash_and_restart().await?;
        let _ = in_flight.await;

        // Half the cases recover by the client's retry, half by the reconciler.
        let id: String = sqlx::query_scalar("SELECT id::text FROM booking_charges WHERE idempotency_key = $1")
            .bind(&key)
            .fetch_one(&mut b.db.admin().await?)
            .await?;
        if n % 2 == 0 {
            let retried = b.book(&key, &body).await?;
            assert_eq!(retried.status, StatusCode::OK, "{label}: {}", retried.text);
        } else {
            let (clean, report) = b.reconcile().await?;
            assert!(clean, "{label}: {report}");
        }
        if b.state_of(&id).await?.0 == "needs_reconciliation" {
            let (clean, report) = b.reconcile().await?;
            assert!(clean, "{label}: {report}");
        }
        let (state, _) = b.state_of(&id).await?;
        let intents = b.intents(&id).await?;
        assert_eq!(intents.len(), 1, "{label}: one PaymentIntent, not {}", intents.len());
        let orders = b.duffel.orders_for(&id).len();
        let expected = match case.ends {
            "captured" => ("captured", Some("succeeded"), 1),
            _ => ("voided", Some("canceled"), 0),
        };
        assert_eq!((state.as_str(), intents[0]["status"].as_str(), orders), expected, "{label}");
    }
    Ok(())
}

#[tokio::test]
async fn twenty_identical_requests_book_once() -> anyhow::Result<()> {
    let b = Arc::new(booker(&[VISA], true).await?);
    let body = b.body(&offer());
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let (b, body) = (Arc::clone(&b), body.clone());
            tokio::spawn(async move { b.book("same-key", &body).await })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for call in calls {
        let response = call.await??;
        assert!(response.status.is_success(), "{}", response.text);
        assert_eq!(response.json["data"]["state"], "captured", "{}", response.text);
        created += usize::from(response.status == StatusCode::CREATED);
        ids.insert(id_of(&response));
    }
    assert_eq!((ids.len(), created), (1, 1), "{ids:?}");
    let id = ids.into_iter().next().unwrap_or_default();
    assert_eq!(b.intents(&id).await?.len(), 1);
    assert_eq!(b.duffel.orders_for(&id).len(), 1);
    Ok(())
}

/// More concurrent bookings than lease connections (`database.max_connections`,
/// here 1) with a slow airline: each waits its turn for a lease instead of
/// answering 503 after the pool's five seconds.
#[tokio::test]
async fn a_burst_beyond_the_lease_pool_waits_its_turn() -> anyhow::Result<()> {
    let mut b = booker(&[VISA], true).await?;
    b.config.settings.database = Some(DatabaseSettings { max_connections: 1 });
    b.config.settings.limits.per_traveler_requests = 4;
    b.crash_and_restart().await?;
    for _ in 0..4 {
        b.duffel.faults.inject("POST", "/air/orders", Fault::Slow(std::time::Duration::from_secs(2)));
    }
    let b = Arc::new(b);
    let burst: Vec<_> = (0..4)
        .map(|n| {
            let b = Arc::clone(&b);
            tokio::spawn(async move { b.book(&format!("burst-{n}"), &b.body(&offer())).await })
        })
        .collect();
    for booking in burst {
        let response = booking.await??;
        assert_eq!(
            (response.status, standing(&response)),
            (StatusCode::CREATED, (Some("captured"), None)),
            "{}",
            response.text
        );
    }
    Ok(())
}
