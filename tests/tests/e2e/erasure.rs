//! The GDPR erasure: the traveler's request through the sidecar, the operator's
//! `kms-sidecar erase` carrying it out against localstripe, moto's KMS (the
//! signed audit redaction) and the database, on both templates; money in
//! flight holds it back; a SIGKILL mid-way resumes to the same end.

use std::process::Output;

use harness::{localstripe_get, OperatedApp, Template, TestTraveler, WEBHOOK_SECRET};
use hyper::StatusCode;
use serde_json::{json, Value};

const ACCOUNT: &str = "/v1/privacy/account";

/// The operator's stack (the audit signing key, Duffel, Stripe, KMS).
struct Erasing(OperatedApp);

impl std::ops::Deref for Erasing {
    type Target = OperatedApp;

    fn deref(&self) -> &OperatedApp {
        &self.0
    }
}

impl Erasing {
    async fn start(template: Template) -> anyhow::Result<Self> {
        Ok(Self(OperatedApp::start(template).await?))
    }

    /// `kms-sidecar erase ARGS` as the operator runs it.
    fn command(&self, args: &[&str]) -> anyhow::Result<std::process::Command> {
        self.0.command(&[&["erase"], args].concat())
    }

    fn erase(&self, args: &[&str]) -> anyhow::Result<(Option<i32>, Vec<Value>)> {
        let Output { status, stdout, stderr } = self.command(args)?.output()?;
        let lines = String::from_utf8(stdout)?.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        anyhow::ensure!(matches!(status.code(), Some(0 | 2)), "erase {args:?}: {}", String::from_utf8_lossy(&stderr));
        Ok((status.code(), lines))
    }

    /// A traveler with a profile, a card (consented), marketing on, a campaign
    /// and a captured booking.
    async fn traveler(&self) -> anyhow::Result<(TestTraveler, String)> {
        let app = &self.app;
        let traveler = app.new_traveler().await?;
        app.marketing_profile(&traveler, "Bob", "Babbage", "1791-12-26").await?;
        app.saved_card(&traveler, "4242424242424242").await?;
        let campaign = app.consented_campaign(&traveler, "Babbage abroad").await?;
        Ok((traveler, campaign))
    }

    async fn book(&self, traveler: &TestTraveler, campaign: &str, key: &str) -> anyhow::Result<harness::Response> {
        let body = json!({
            "campaign_id": campaign, "offer_id": format!("off_{key}"), "amount": 9_900, "currency": "gbp",
            "passengers": [{ "id": "pas_1", "given_name": "Charles", "family_name": "Babbage", "born_on": "1791-12-26" }],
        });
        self.app.traveler(traveler).key(key).post("/v1/bookings", body).await
    }

    /// A Stripe event about `object`, signed and delivered to the webhook route.
    async fn deliver(&self, kind: &str, object: Value) -> anyhow::Result<(String, harness::Response)> {
        let id = format!("evt_{}", uuid::Uuid::new_v4().simple());
        let now = chrono::Utc::now().timestamp();
        let event = json!({ "id": id, "object": "event", "type": kind, "created": now, "data": { "object": object } });
        Ok((id, harness::deliver_stripe_event(&self.app.sidecar, &event, WEBHOOK_SECRET, now).await?))
    }

    async fn count(&self, sql: &str, traveler: &str) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(sql).bind(traveler).fetch_one(&mut self.app.db.admin().await?).await?)
    }
}

#[tokio::test]
async fn an_erasure_deletes_the_personal_data_keeps_the_bookings_and_the_trail_verifies() -> anyhow::Result<()> {
    for template in [Template::Plain, Template::Supabase] {
        let w = Erasing::start(template).await?;
        let (bob, campaign) = w.traveler().await?;
        let booked = w.book(&bob, &campaign, "b1").await?;
        assert_eq!(booked.json["data"]["state"], "captured", "{template}: {}", booked.text);
        let customer: String =
            sqlx::query_scalar("SELECT stripe_customer_id FROM wallet_customers WHERE user_id = $1::uuid")
                .bind(&bob.id)
                .fetch_one(&mut w.app.db.admin().await?)
                .await?;

        // Stripe told us about the customer: the record of it names them.
        let customer_object = json!({ "id": customer, "object": "customer", "name": "Bob Babbage" });
        let (told, ack) = w.deliver("customer.updated", customer_object).await?;
        assert_eq!(ack.status, StatusCode::OK, "{template}: {}", ack.text);

        // The request: confirmed, with a key; then nothing new starts.
        let confirm = json!({ "confirmation": "erase my account" });
        let keyless = harness::call(&w.app.sidecar, "DELETE", ACCOUNT, &bob.token, None, Some(confirm.clone())).await?;
        assert_eq!(keyless.status, StatusCode::BAD_REQUEST, "{template}");
        let unconfirmed =
            w.app.traveler(&bob).key("e0").delete_with_body(ACCOUNT, json!({ "confirmation": "yes" })).await?;
        assert_eq!(
            (unconfirmed.status, unconfirmed.json["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("confirmation_required"))
        );
        // A token whose sign-in is an hour old (a stolen one, refreshed) does not erase.
        let an_hour_ago = chrono::Utc::now().timestamp() - 3_600;
        let stale =
            harness::traveler_token(&bob.id, json!({ "amr": [{ "method": "password", "timestamp": an_hour_ago }] }));
        let not_fresh =
            harness::call(&w.app.sidecar, "DELETE", ACCOUNT, &stale, Some("e1"), Some(confirm.clone())).await?;
        assert_eq!(
            (not_fresh.status, not_fresh.json["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("reauthentication_required")),
            "{template}: {}",
            not_fresh.text
        );
        // Signed in again, the same key asks again.
        let requested = w.app.traveler(&bob).key("e1").delete_with_body(ACCOUNT, confirm.clone()).await?;
        assert_eq!(
            (requested.status, requested.json["data"]["state"].as_str()),
            (StatusCode::ACCEPTED, Some("requested")),
            "{template}: {}",
            requested.text
        );
        let again = w.app.traveler(&bob).key("e1").delete_with_body(ACCOUNT, confirm).await?;
        assert_eq!(again.headers.get("idempotent-replayed").map(|v| v.as_bytes()), Some(&b"true"[..]));
        let refused = w.book(&bob, &campaign, "b2").await?;
        assert_eq!(
            (refused.status, refused.json["code"].as_str()),
            (StatusCode::CONFLICT, Some("account_being_erased"))
        );
        let no_intent = w.app.traveler(&bob).post_empty("/v1/wallet/setup-intents").await?;
        assert_eq!(no_intent.json["code"], "account_being_erased", "{template}");
        // Whoever writes, the database records nothing new for them: the app
        // through PostgREST, service_role, the sidecar (a consent given again).
        let (mut traveler_login, mut operator) = (w.app.db.traveler().await?, w.app.db.admin().await?);
        for (conn, role, claims, insert) in [
            (
                &mut traveler_login,
                "authenticated",
                harness::claims(&bob.id),
                "INSERT INTO campaigns (user_id, name) VALUES ($1::uuid, 'Another trip')",
            ),
            (
                &mut operator,
                "service_role",
                String::new(),
                "INSERT INTO traveler_profiles (user_id, first_name) VALUES ($1::uuid, 'Bob')",
            ),
        ] {
            let mut tx = harness::as_role(conn, role, &claims).await?;
            let refused = sqlx::query(insert).bind(&bob.id).execute(&mut *tx).await.err();
            assert_eq!(refused.as_ref().and_then(harness::sqlstate).as_deref(), Some("PWE01"), "{template}: {role}");
        }
        let card: String = sqlx::query_scalar("SELECT id::text FROM payment_methods WHERE user_id = $1::uuid")
            .bind(&bob.id)
            .fetch_one(&mut w.app.db.admin().await?)
            .await?;
        let consent = format!("/v1/wallet/payment-methods/{card}/consent");
        let withdrawn = w.app.traveler(&bob).key("c1").delete(&consent).await?;
        assert_eq!(withdrawn.status, StatusCode::OK, "{template}: {}", withdrawn.text);
        let given = w.app.traveler(&bob).key("c2").post(&consent, json!({ "text_version": "card-mit-1" })).await?;
        assert_eq!(
            (given.status, given.json["code"].as_str()),
            (StatusCode::CONFLICT, Some("account_being_erased")),
            "{template}: {}",
            given.text
        );

        // The operator's job carries it out.
        let (code, lines) = w.erase(&["--pending"])?;
        assert_eq!(code, Some(0), "{template}: {lines:?}");
        let line = lines.iter().find(|l| l["user_id"] == bob.id.as_str()).cloned().unwrap_or_default();
        assert_eq!(line["state"], "completed", "{template}: {lines:?}");

        // Stripe: the customer is gone.
        let at_stripe = localstripe_get(&w.app.localstripe()?, &format!("/v1/customers/{customer}")).await?;
        assert!(
            at_stripe.status == StatusCode::NOT_FOUND || at_stripe.json["deleted"] == true,
            "{template}: {}",
            at_stripe.text
        );

        // The wallet: nothing personal left; the booking kept without its passengers.
        for table in [
            "payment_methods",
            "wallet_customers",
            "consents",
            "campaigns",
            "phone_verifications",
            "idempotency_keys",
            "traveler_profiles",
            "profile_completion_tracking",
            "notification_outbox",
        ] {
            let left = w.count(&format!("SELECT count(*) FROM {table} WHERE user_id = $1::uuid"), &bob.id).await?;
            assert_eq!(left, 0, "{template}: {table}");
        }
        let kept: (String, i32, i32) = sqlx::query_as(
            "SELECT state, length(passengers_sealed), length(request_fingerprint)
               FROM booking_charges WHERE user_id = $1::uuid",
        )
        .bind(&bob.id)
        .fetch_one(&mut w.app.db.admin().await?)
        .await?;
        assert_eq!(kept, ("captured".to_owned(), 0, 0), "{template}");
        // Stripe's event is kept (a redelivery is recognised), without what it said.
        let told: Value = sqlx::query_scalar("SELECT payload FROM stripe_events WHERE id = $1")
            .bind(&told)
            .fetch_one(&mut w.app.db.admin().await?)
            .await?;
        assert_eq!(told, json!({ "erased": true }), "{template}");

        // The audit trail: redacted, signed, still verifying; no name left in it.
        let named = w
            .count(
                "SELECT count(*) FROM traveler_data_audit WHERE user_id = $1::uuid
                AND (coalesce(old_data::text, '') || coalesce(new_data::text, '')) ~ 'Babbage|Bob'",
                &bob.id,
            )
            .await?;
        assert_eq!(named, 0, "{template}");
        let signed = w
            .count(
                "SELECT count(*) FROM audit_redaction_signatures s JOIN traveler_data_audit a ON a.id = s.audit_id
              WHERE a.user_id = $1::uuid",
                &bob.id,
            )
            .await?;
        assert_eq!(signed, 1, "{template}");
        let broken: i64 = sqlx::query_scalar("SELECT count(*) FROM wallet.verify_audit_chain()")
            .fetch_one(&mut w.app.db.admin().await?)
            .await?;
        assert_eq!(broken, 0, "{template}");

        // The account: deleted by the operator, who may here.
        let users = w.count("SELECT count(*) FROM auth.users WHERE id = $1::uuid", &bob.id).await?;
        assert_eq!(users, 0, "{template}: {line}");
        let state: (String, bool) =
            sqlx::query_as("SELECT state, completed_at IS NOT NULL FROM erasures WHERE user_id = $1::uuid")
                .bind(&bob.id)
                .fetch_one(&mut w.app.db.admin().await?)
                .await?;
        assert_eq!(state, ("completed".to_owned(), true), "{template}");

        // Stripe's customer.deleted that follows is acknowledged.
        let deleted = json!({ "id": customer, "object": "customer", "deleted": true });
        let (_, ack) = w.deliver("customer.deleted", deleted).await?;
        assert_eq!(ack.status, StatusCode::OK, "{template}: {}", ack.text);

        // Running it again changes nothing.
        let (code, lines) = w.erase(&["--user", &bob.id])?;
        assert_eq!(
            (code, lines.first().map(|l| l["state"].clone())),
            (Some(0), Some(json!("completed"))),
            "{template}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn money_in_flight_holds_the_erasure_back() -> anyhow::Result<()> {
    let w = Erasing::start(Template::Plain).await?;
    let (ada, campaign) = w.traveler().await?;
    // A booking stuck before capture: money in flight.
    let booked = w.book(&ada, &campaign, "b1").await?;
    sqlx::query(
        "UPDATE booking_charges SET state = 'needs_reconciliation', reconcile_from = 'capturing' WHERE id = $1::uuid",
    )
    .bind(booked.json["data"]["id"].as_str().unwrap_or_default())
    .execute(&mut w.app.db.admin().await?)
    .await?;
    let refused =
        w.app.traveler(&ada).key("e1").delete_with_body(ACCOUNT, json!({ "confirmation": "erase my account" })).await?;
    assert_eq!(
        (refused.status, refused.json["code"].as_str()),
        (StatusCode::CONFLICT, Some("money_in_flight")),
        "{}",
        refused.text
    );
    let (code, lines) = w.erase(&["--user", &ada.id])?;
    assert_eq!(code, Some(2));
    assert_eq!(lines[0]["refused"], "money_in_flight");
    assert_eq!(w.count("SELECT count(*) FROM erasures WHERE user_id = $1::uuid", &ada.id).await?, 0);
    assert_eq!(w.count("SELECT count(*) FROM traveler_profiles WHERE user_id = $1::uuid", &ada.id).await?, 1);

    // "Not now" is not kept: once the money is settled, the same key asks again.
    sqlx::query("UPDATE booking_charges SET state = 'captured', reconcile_from = NULL WHERE user_id = $1::uuid")
        .bind(&ada.id)
        .execute(&mut w.app.db.admin().await?)
        .await?;
    let retried =
        w.app.traveler(&ada).key("e1").delete_with_body(ACCOUNT, json!({ "confirmation": "erase my account" })).await?;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{}", retried.text);
    Ok(())
}

/// A SIGKILL while Stripe is deleting the customer (the request out, no answer
/// ever: a Stripe that accepts and never answers): the next run takes it from
/// there to the same end.
#[tokio::test]
async fn a_crash_mid_erasure_resumes_to_the_same_end() -> anyhow::Result<()> {
    let w = Erasing::start(Template::Plain).await?;
    let (eve, _) = w.traveler().await?;
    let mut hung = w.app.config.clone();
    if let Some(stripe) = hung.settings.stripe.as_mut() {
        stripe.api_base = Some(format!("http://127.0.0.1:{}/", harness::silent_tcp_port()?));
        stripe.timeout_ms = 120_000;
    }
    let mut child = hung
        .command(w.dir.path(), &["erase", "--user", &eve.id])?
        .env("DATABASE_URL", w.app.db.url(harness::OPERATOR)?)
        .spawn()?;
    // The request is recorded before Stripe is asked; give the call a moment to leave.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while w.count("SELECT count(*) FROM erasures WHERE user_id = $1::uuid", &eve.id).await? == 0 {
        anyhow::ensure!(std::time::Instant::now() < deadline, "the erasure was never recorded");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    child.kill()?;
    child.wait()?;
    assert_eq!(
        w.count("SELECT count(*) FROM erasures WHERE user_id = $1::uuid AND state = 'requested'", &eve.id).await?,
        1,
        "stopped before Stripe answered"
    );
    let (code, lines) = w.erase(&["--pending"])?;
    assert_eq!((code, lines[0]["state"].clone()), (Some(0), json!("completed")), "{lines:?}");
    assert_eq!(w.count("SELECT count(*) FROM payment_methods WHERE user_id = $1::uuid", &eve.id).await?, 0);
    Ok(())
}

/// Where only Supabase Auth may delete its users, the erasure does the rest
/// and waits (exit 2) until the user is gone, then completes; an operator
/// whose role does not pass row-level security is refused before anything.
#[tokio::test]
async fn an_erasure_waits_for_supabase_auth_to_delete_the_user() -> anyhow::Result<()> {
    let w = Erasing::start(Template::Supabase).await?;
    let (bob, _) = w.traveler().await?;
    let mut superuser = w.app.db.superuser().await?;
    // Supabase's postgres may delete auth users (a direct grant, and membership
    // in supabase_auth_admin): take both away in this database.
    sqlx::query("REVOKE DELETE ON auth.users FROM postgres, supabase_auth_admin").execute(&mut superuser).await?;
    let may: bool = sqlx::query_scalar("SELECT has_table_privilege('postgres', 'auth.users', 'DELETE')")
        .fetch_one(&mut superuser)
        .await?;
    assert!(!may);

    let clerk = format!("erase_clerk_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE ROLE {clerk} LOGIN")).execute(&mut superuser).await?;
    let refused = w.command(&["--pending"])?.env("DATABASE_URL", w.app.db.url(&clerk)?).output()?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(refused.status.code() == Some(1) && stderr.contains("row-level security"), "{stderr}");

    let (code, lines) = w.erase(&["--user", &bob.id])?;
    assert_eq!((code, lines[0]["waiting_for"].as_str()), (Some(2), Some("auth_user_deletion")), "{lines:?}");
    let state: String = sqlx::query_scalar("SELECT state FROM erasures WHERE user_id = $1::uuid")
        .bind(&bob.id)
        .fetch_one(&mut w.app.db.admin().await?)
        .await?;
    assert_eq!(state, "audit_redacted");
    assert_eq!(w.count("SELECT count(*) FROM traveler_profiles WHERE user_id = $1::uuid", &bob.id).await?, 0);

    // Supabase Auth's admin API deletes the user: nothing of the wallet holds it back.
    sqlx::query("DELETE FROM auth.users WHERE id = $1::uuid").bind(&bob.id).execute(&mut superuser).await?;
    let (code, lines) = w.erase(&["--pending"])?;
    assert_eq!((code, lines[0]["state"].as_str()), (Some(0), Some("completed")), "{lines:?}");
    Ok(())
}
