//! The demo's walk through a running local stack (`scripts/demo.sh` brings the
//! stack up and runs this): a traveler signs up, fills her profile, saves a
//! card through Stripe, books flights, and the operator checks the audit
//! trail (its chain, then a KMS-signed checkpoint), the sealed records and the
//! RLS report. The SQL steps are shown as
//! psql shows them; the app's calls go through the harness, the same code the
//! end-to-end tests use (tokens, the card saved as Stripe.js saves it, the
//! wallet sidecar's settings).
//!
//! With `keep`, the wallet sidecar and the reference wallet page (with the Edge
//! Functions, under Deno) are left running with the stack (their pids in the
//! stack's `sidecar.pid.extra`, their directories in `dirs.extra`, which
//! `stack down` stops and removes), and the page's local URL is printed.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};
use harness::web::{EdgeGateway, GatewaySettings, SidecarLink};
use harness::{
    call, card_saved_through_stripe, localstripe_get, localstripe_post, own_uid, traveler_token_signed, Response,
    Sidecar, SidecarConfig,
};
use kms_sidecar::config::{AuditSettings, DatabaseSettings};
use kms_sidecar::domain::CallerClass;
use serde_json::{json, Value};

const DB: &str = "parker_demo";
const ADA: &str = "a11ce000-0000-4000-8000-00000000ada1";
const BOB: &str = "b0b00000-0000-4000-8000-000000000b0b";

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set: run the demo through scripts/demo.sh"))
}

fn step(title: &str) {
    println!("\n\x1b[1;36m## {title}\x1b[0m");
}

/// psql as the stack's superuser, output as an operator sees it.
fn psql(db: &str, sql: &str) -> Result<()> {
    let mut child = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-P", "pager=off"])
        .args(["-h", &env("PW_PGHOST")?, "-p", &env("PW_PGPORT")?, "-U", "postgres", "-d", db])
        .stdin(Stdio::piped())
        .spawn()
        .context("psql")?;
    child.stdin.take().context("psql's stdin")?.write_all(sql.as_bytes())?;
    ensure!(child.wait()?.success(), "psql failed on: {sql}");
    Ok(())
}

/// One value, unaligned.
fn psql_value(db: &str, sql: &str) -> Result<String> {
    let output = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA"])
        .args(["-h", &env("PW_PGHOST")?, "-p", &env("PW_PGPORT")?, "-U", "postgres", "-d", db, "-c", sql])
        .output()?;
    ensure!(output.status.success(), "psql failed on {sql}: {}", String::from_utf8_lossy(&output.stderr));
    Ok(String::from_utf8(output.stdout)?.lines().next().unwrap_or_default().to_owned())
}

/// As PostgREST serves a request: role `authenticated`, the traveler's
/// verified claims and request headers, all local to one transaction.
fn as_traveler(user: &str, sql: &str) -> Result<()> {
    psql(
        DB,
        &format!(
            r#"BEGIN;
SELECT set_config('role', 'authenticated', true),
       set_config('request.jwt.claims', '{{"sub":"{user}","role":"authenticated"}}', true),
       set_config('request.headers', '{{"user-agent":"parker-demo/1.0","x-forwarded-for":"203.0.113.7"}}', true) \gset
{sql}
COMMIT;
"#
        ),
    )
}

fn sidecar_bin() -> Result<String> {
    env("PW_SIDECAR_BIN")
}

fn run_sidecar(args: &[&str], envs: &[(String, String)]) -> Result<()> {
    let status = Command::new(sidecar_bin()?).args(args).envs(envs.iter().cloned()).status()?;
    ensure!(status.success(), "kms-sidecar {args:?} failed");
    Ok(())
}

/// One line on a booking: state, amount, card, order, failure, history.
fn summary(response: &Response) -> Result<String> {
    let booking = &response.json["data"];
    ensure!(booking.is_object(), "booking failed: {}", response.text);
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut line = format!(
        "booking {}: {}, {} {} on {} ..{}",
        text(&booking["id"]),
        text(&booking["state"]),
        booking["amount"],
        text(&booking["currency"]),
        text(&booking["card"]["brand"]),
        text(&booking["card"]["last4"]),
    );
    if booking["duffel_order_id"].is_string() {
        line +=
            &format!(", Duffel order {} ({})", text(&booking["duffel_order_id"]), text(&booking["booking_reference"]));
    }
    if booking["failure"].is_object() {
        line += &format!(", failure {}", text(&booking["failure"]["code"]));
    }
    let history: Vec<String> = booking["history"].as_array().into_iter().flatten().map(|h| text(&h["state"])).collect();
    Ok(format!("{line}\nhistory: {}", history.join(" -> ")))
}

async fn intent_status(localstripe: &str, id: &str) -> Result<String> {
    let intent = localstripe_get(localstripe, &format!("/v1/payment_intents/{id}")).await?;
    Ok(intent.json["status"].as_str().unwrap_or_default().to_owned())
}

pub async fn walk(keep: bool) -> Result<()> {
    let (host, port, stack_dir) = (env("PW_PGHOST")?, env("PW_PGPORT")?, env("PW_STACK_DIR")?);
    let localstripe = env("PW_LOCALSTRIPE_URL")?;
    let database_url = format!("postgres://postgres@{host}:{port}/{DB}");
    let migrate_env = [("DATABASE_URL".to_owned(), database_url)];

    step("Install: CREATE EXTENSION parker_wallet, then the migrations");
    psql("postgres", &format!("CREATE DATABASE {DB}"))?;
    psql(DB, "CREATE EXTENSION parker_wallet")?;
    let migrations = harness::migrations_dir().display().to_string();
    run_sidecar(&["migrate", "--dir", &migrations, "up"], &migrate_env)?;
    run_sidecar(&["migrate", "--dir", &migrations, "status"], &migrate_env)?;

    step("Sign-up: Supabase Auth creates two travelers");
    psql(
        DB,
        &format!(
            "INSERT INTO auth.users (id, email) VALUES ('{ADA}', 'ada@example.com'), ('{BOB}', 'bob@example.com')"
        ),
    )?;
    println!("ada = {ADA}\nbob = {BOB}");

    step("Ada creates her profile through PostgREST (RLS applies)");
    as_traveler(
        ADA,
        &format!(
            "INSERT INTO traveler_profiles (user_id, first_name, last_name, date_of_birth, phone_number)
             VALUES ('{ADA}', 'Ada', 'Lovelace', '1990-12-10', '+351912345678');"
        ),
    )?;
    as_traveler(ADA, "SELECT first_name, last_name, phone_number, phone_verified FROM traveler_profiles;")?;

    step("Ada's completion score");
    as_traveler(
        ADA,
        &format!(
            "SELECT score, array_to_string(missing_fields, ', ') AS missing FROM wallet.profile_completeness('{ADA}');
             SELECT unnest(recommendations) AS next_steps FROM wallet.profile_completeness('{ADA}');"
        ),
    )?;

    step("Ada chooses her notifications: the tracked score follows (trigger)");
    as_traveler(
        ADA,
        r#"UPDATE traveler_profiles SET notification_preferences =
             '{"channels": {"email": true, "sms": false, "push": true},
               "topics": {"price_drops": true, "booking_confirmations": true, "authentication_needed": true, "marketing": false},
               "quiet_hours": {"start": "22:00", "end": "07:00", "time_zone": "Europe/London"}}';
           SELECT completeness_score, array_to_string(missing_fields, ', ') AS missing, last_calculated
             FROM profile_completion_tracking;
           DO $$
           BEGIN
             UPDATE traveler_profiles SET notification_preferences = '{"channels": {"sms": true}}';
           EXCEPTION WHEN check_violation THEN
             RAISE NOTICE 'SMS before the phone is verified: refused (SQLSTATE %): %', SQLSTATE, SQLERRM;
           END
           $$;"#,
    )?;

    step("RLS check: Bob sees none of Ada's rows and cannot change them");
    as_traveler(
        BOB,
        &format!(
            "SELECT count(*) AS ada_profiles_visible_to_bob FROM traveler_profiles WHERE user_id = '{ADA}';
             WITH changed AS (UPDATE traveler_profiles SET first_name = 'Mallory' WHERE user_id = '{ADA}' RETURNING 1)
             SELECT count(*) AS ada_rows_bob_updated FROM changed;"
        ),
    )?;
    psql(DB, &format!("SELECT first_name AS ada_first_name_after_bob FROM traveler_profiles WHERE user_id = '{ADA}'"))?;

    step("Ada's audit trail, as she can read it (one hash chain per traveler)");
    as_traveler(
        ADA,
        "SELECT chain_seq, action, table_name, host(ip_address) AS ip, user_agent,
                coalesce(new_data ->> 'first_name', '') AS first_name,
                encode(substr(row_hash, 1, 6), 'hex') AS hash_prefix
           FROM traveler_data_audit ORDER BY chain_seq;",
    )?;

    step("The audit chain verifies (no broken row), then a tampered row is caught");
    psql(DB, "SELECT count(*) AS broken_rows FROM wallet.verify_audit_chain()")?;
    psql(
        DB,
        &format!(
            r#"UPDATE traveler_data_audit SET new_data = jsonb_set(new_data, '{{first_name}}', '"Eve"')
                WHERE user_id = '{ADA}' AND chain_seq = 1"#
        ),
    )?;
    psql(DB, "SELECT user_id, chain_seq, reason FROM wallet.verify_audit_chain()")?;

    step("Feature flag at 10% rollout: same buckets as Parker Flight's userInBucket()");
    psql(DB, "INSERT INTO feature_flags (name, enabled, rollout_percent) VALUES ('auto_booking', true, 10)")?;
    psql(
        DB,
        &format!(
            "SELECT who, wallet.flag_bucket(id) AS bucket, wallet.flag_enabled('auto_booking', id) AS sees_auto_booking
               FROM (VALUES ('ada', '{ADA}'::uuid), ('bob', '{BOB}'::uuid)) AS t(who, id)"
        ),
    )?;

    step("Ada saves a card: Edge Function -> sidecar -> Stripe (localstripe), card data never touches us");
    // The sidecar as Edge Functions reach it: wallet routes on, an RLS-bound login role.
    psql(DB, "CREATE ROLE pw_demo_sidecar LOGIN NOINHERIT; GRANT parker_wallet_sidecar TO pw_demo_sidecar;")?;
    let jwt_secret = format!("parker-demo-jwt-secret-{}", uuid::Uuid::new_v4().simple());
    let mut config = SidecarConfig::default()
        .callers(CallerClass::Edge, vec![own_uid()])
        .with_jwt_secret(&jwt_secret)
        .with_stripe(&format!("{localstripe}/"))
        .with_duffel(&env("PW_DUFFEL_URL")?)
        .with_twilio(&env("PW_TWILIO_URL")?);
    config.settings.database = Some(DatabaseSettings::default());
    // The stack's keyring: the database's own sidecar opens what this one seals.
    config.settings.keys.local_key_file = Some(format!("{stack_dir}/local-keyring").into());
    config.env.push(("PW_DATABASE_URL".into(), format!("postgres://pw_demo_sidecar@{host}:{port}/{DB}")));
    config.env.push(("PW_LOG".into(), "warn".into()));
    // The 3-D Secure email links to the reference page, served below.
    let page_port = harness::free_port()?;
    config.settings.bookings.authentication_url =
        format!("http://127.0.0.1:{page_port}/bookings/{{booking_id}}/authenticate");
    let wallet = Sidecar::start_with(config.clone()).await?;
    // Ada's access token, as Supabase Auth signs it (HS256, the project's secret).
    let ada = traveler_token_signed(&jwt_secret, ADA, json!({ "email": "ada@example.com" }));

    // What Stripe.js does in Ada's browser: the card goes to Stripe, never to us.
    let saved = card_saved_through_stripe(&wallet, &ada, &localstripe, "4242424242424242").await?;
    println!("SetupIntent {saved} confirmed in the browser (its client secret went to Stripe.js only)");
    let added =
        // With the consent box ticked: this card may be charged while Ada is away (PSD2).
        call(&wallet, "POST", "/v1/wallet/payment-methods", &ada, None, Some(json!({
            "setup_intent_id": saved, "off_session_consent": { "text_version": "card-mit-2026-12" },
        })))
            .await?;
    ensure!(added.status.is_success(), "adding the card: {}", added.text);
    println!("Ada's wallet:");
    let listed = call(&wallet, "GET", "/v1/wallet/payment-methods", &ada, None, None).await?;
    println!("{}", serde_json::to_string_pretty(&listed.json)?);
    as_traveler(
        ADA,
        "SELECT completeness_score AS score_with_a_card FROM profile_completion_tracking;
         SELECT chain_seq, table_name, action, new_data ->> 'encrypted_card_data' AS card_ciphertext_in_audit,
                host(ip_address) AS ip, user_agent
           FROM traveler_data_audit WHERE table_name IN ('wallet_customers', 'payment_methods') ORDER BY chain_seq;",
    )?;

    step("Ada verifies her phone: a code by SMS (Twilio Verify; its fake here), typed back: the score reaches 100");
    let start = json!({ "phone_number": "+351 912 345 678" });
    let started =
        call(&wallet, "POST", "/v1/profile/phone/verification", &ada, Some("demo-phone-1"), Some(start)).await?;
    ensure!(started.status.is_success(), "starting phone verification: {}", started.text);
    println!("{}", serde_json::to_string_pretty(&started.json)?);
    // What Ada reads on her phone.
    let twilio = env("PW_TWILIO_URL")?.trim_start_matches("http://").to_owned();
    let sms = harness::send(tokio::net::TcpStream::connect(&twilio).await?, "GET", "/_fake/codes/+351912345678", None)
        .await?;
    let code = sms.json["codes"].as_array().and_then(|codes| codes.last()).and_then(Value::as_str).unwrap_or_default();
    println!("SMS to +351912345678: your Parker Flight code is {code}");
    let checked = call(
        &wallet,
        "POST",
        "/v1/profile/phone/verification/check",
        &ada,
        Some("demo-phone-2"),
        Some(json!({ "code": code })),
    )
    .await?;
    ensure!(checked.status.is_success(), "checking the code: {}", checked.text);
    println!("{}", serde_json::to_string_pretty(&checked.json)?);
    as_traveler(
        ADA,
        "SELECT phone_number, phone_verified FROM traveler_profiles;
         SELECT completeness_score, array_to_string(recommendations, ' ') AS recommendations FROM profile_completion_tracking;
         SELECT chain_seq, action, actor, new_data ->> 'phone_verified' AS phone_verified_in_audit
           FROM traveler_data_audit WHERE table_name = 'traveler_profiles' ORDER BY chain_seq DESC LIMIT 1;
         UPDATE traveler_profiles SET notification_preferences = jsonb_set(notification_preferences, '{channels,sms}', 'true')
          RETURNING notification_preferences -> 'channels' AS channels_now_sms_is_allowed;",
    )?;

    step("Ada books a flight: authorize off-session (manual capture) -> Duffel order -> capture");
    let campaign = psql_value(
        DB,
        &format!(
            "INSERT INTO campaigns (user_id, name, consent_at, consent_text_version)
             VALUES ('{ADA}', 'Lisbon in spring', now(), 'campaign-mit-2026-12') RETURNING id"
        ),
    )?;
    println!("Campaign {campaign}, with Ada's consent to merchant-initiated charges (PSD2)");
    let book = |key: &'static str, offer: &'static str| {
        let body = json!({
            "campaign_id": campaign, "offer_id": offer, "amount": 42000, "currency": "eur", "route": "LIS-JFK",
            "passengers": [{ "id": "pas_1", "given_name": "Ada", "family_name": "Lovelace", "born_on": "1990-12-10" }],
        });
        let (wallet, ada) = (&wallet, &ada);
        async move { call(wallet, "POST", "/v1/bookings", ada, Some(key), Some(body)).await }
    };
    let booked = book("demo-booking-1", "off_0000DemoLisbon1").await?;
    println!("{}", summary(&booked)?);
    let intent = booked.json["data"]["payment_intent_id"].as_str().unwrap_or_default().to_owned();
    println!("PaymentIntent at Stripe: {}", intent_status(&localstripe, &intent).await?);
    println!("The same request again (same Idempotency-Key) is the same booking, charged once:");
    println!("{}", summary(&book("demo-booking-1", "off_0000DemoLisbon1").await?)?);

    step("A booking Duffel cannot fulfil (offer sold out): the authorization is released, nothing charged");
    let voided = book("demo-booking-2", "off_0000DemoSoldOut").await?;
    println!("{}", summary(&voided)?);
    let intent = voided.json["data"]["payment_intent_id"].as_str().unwrap_or_default().to_owned();
    println!("PaymentIntent at Stripe: {}", intent_status(&localstripe, &intent).await?);

    step("A card whose issuer wants 3-D Secure: the booking waits for Ada, then resumes");
    // Saved with 3-D Secure completed at set-up, as Stripe.js would; then made the default.
    let three_ds = card_saved_through_stripe(&wallet, &ada, &localstripe, "4000002760003184").await?;
    let card = call(
        &wallet,
        "POST",
        "/v1/wallet/payment-methods",
        &ada,
        None,
        Some(json!({
            "setup_intent_id": three_ds, "off_session_consent": { "text_version": "card-mit-2026-12" },
        })),
    )
    .await?;
    let card = card.json["data"]["id"].as_str().unwrap_or_default().to_owned();
    call(&wallet, "POST", &format!("/v1/wallet/payment-methods/{card}/default"), &ada, None, None).await?;
    let waiting = book("demo-booking-3", "off_0000DemoLisbon3").await?;
    println!("{}", summary(&waiting)?);
    let booking = waiting.json["data"]["id"].as_str().unwrap_or_default().to_owned();
    println!("Outbox message for Parker Flight's notifier (a link, no secret):");
    psql(DB, &format!("SELECT kind, payload FROM notification_outbox WHERE user_id = '{ADA}'"))?;
    let shown = call(&wallet, "GET", &format!("/v1/bookings/{booking}"), &ada, None, None).await?;
    let authentication = &shown.json["data"]["authentication"];
    let (pi, secret) = (
        authentication["payment_intent_id"].as_str().unwrap_or_default(),
        authentication["client_secret"].as_str().unwrap_or_default(),
    );
    // What Stripe.js does when Ada opens the link and completes the challenge.
    localstripe_post(
        &localstripe,
        &format!("/v1/payment_intents/{pi}/_authenticate?client_secret={secret}&success=true"),
        &[],
    )
    .await?;
    let resumed = call(&wallet, "POST", &format!("/v1/bookings/{booking}/resume"), &ada, None, None).await?;
    println!("{}", summary(&resumed)?);

    step("Ada exports her data (GDPR): one JSON document, streamed; cards and passengers opened for her, Stripe asked live");
    let export = call(&wallet, "GET", "/v1/privacy/export", &ada, None, None).await?;
    ensure!(export.status.is_success(), "the export: {}", export.text);
    let doc = &export.json;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    for key in ["cards", "consents", "campaigns", "bookings", "notifications", "audit"] {
        println!("{key:>14}: {} item(s)", doc[key].as_array().map_or(0, Vec::len));
    }
    println!(
        "{:>14}: {} {} ..{}; Stripe customer {} with {} payment method(s); first booking's passengers: {}",
        "e.g.",
        text(&doc["profile"]["first_name"]),
        text(&doc["cards"][0]["metadata"]["brand"]),
        text(&doc["cards"][0]["metadata"]["last4"]),
        text(&doc["stripe"]["customer"]["id"]),
        doc["stripe"]["payment_methods"].as_array().map_or(0, Vec::len),
        doc["bookings"][0]["passengers"],
    );

    step("kms-sidecar reconcile (its timer's job): nothing left unsettled; the run recorded for /metrics");
    let wallet_config = wallet.dir().join("sidecar.toml").display().to_string();
    // As the job's unit runs it: the sidecar's settings, and the operator's DATABASE_URL to record the run.
    let job_env = [config.env.as_slice(), migrate_env.as_slice()].concat();
    run_sidecar(&["reconcile", "--config", &wallet_config, "--min-age-secs", "0"], &job_env)?;

    step("Signed audit checkpoint (KMS Sign, moto here), then the owner drops Ada's newest audit row: audit-verify reports it, and the row edited above");
    let emulators = harness::Emulators::from_env()?;
    let (data_key, _) = emulators.create_kms_key().await?;
    let audit_dir = tempfile::Builder::new().prefix("pw-demo-audit-").tempdir()?;
    let mut auditor = SidecarConfig { admin_port: None, ..emulators.kms_sidecar_config(&data_key)? };
    auditor.settings.audit = Some(AuditSettings {
        signing_key_id: emulators.create_signing_key().await?,
        checkpoint_log: audit_dir.path().join("checkpoints.jsonl"),
        checkpoint_interval_secs: 3600,
    });
    // Exit 2 is the commands' "found something": what this step shows.
    let audit = |args: &[&str]| -> Result<()> {
        let status = auditor.command(audit_dir.path(), args)?.envs(migrate_env.iter().cloned()).status()?;
        ensure!(matches!(status.code(), Some(0 | 2)), "kms-sidecar {args:?} failed");
        Ok(())
    };
    audit(&["audit-checkpoint"])?;
    psql(
        DB,
        &format!(
            "DELETE FROM traveler_data_audit WHERE user_id = '{ADA}'
                AND chain_seq = (SELECT max(chain_seq) FROM traveler_data_audit WHERE user_id = '{ADA}')"
        ),
    )?;
    audit(&["audit-verify"])?;

    step("Bob saves a card, then deletes his account: the request (202), then the operator's erase job (Stripe, wallet, auth user, signed audit redaction)");
    let bob = traveler_token_signed(&jwt_secret, BOB, json!({ "email": "bob@example.com" }));
    let saved = card_saved_through_stripe(&wallet, &bob, &localstripe, "5555555555554444").await?;
    let body = json!({ "setup_intent_id": saved, "off_session_consent": { "text_version": "card-mit-2026-12" } });
    call(&wallet, "POST", "/v1/wallet/payment-methods", &bob, None, Some(body)).await?;
    let bob_customer =
        psql_value(DB, &format!("SELECT stripe_customer_id FROM wallet_customers WHERE user_id = '{BOB}'"))?;
    let confirm = json!({ "confirmation": "erase my account" });
    let requested = call(&wallet, "DELETE", "/v1/privacy/account", &bob, Some("demo-erase-bob"), Some(confirm)).await?;
    println!("DELETE /v1/privacy/account -> {} {}", requested.status, requested.json);
    let auditor = auditor.with_stripe(&format!("{localstripe}/"));
    let status =
        auditor.command(audit_dir.path(), &["erase", "--pending"])?.envs(migrate_env.iter().cloned()).status()?;
    ensure!(status.success(), "kms-sidecar erase failed");
    let at_stripe = localstripe_get(&localstripe, &format!("/v1/customers/{bob_customer}")).await?;
    println!(
        "Bob's Stripe customer {bob_customer} at the emulator: {} {}",
        at_stripe.status, at_stripe.json["deleted"]
    );
    psql(
        DB,
        &format!(
            "SELECT state, requested_by, completed_at IS NOT NULL AS completed FROM erasures WHERE user_id = '{BOB}';
             SELECT (SELECT count(*) FROM traveler_profiles WHERE user_id = '{BOB}') AS profiles,
                    (SELECT count(*) FROM payment_methods WHERE user_id = '{BOB}') AS cards,
                    (SELECT count(*) FROM consents WHERE user_id = '{BOB}') AS consents,
                    (SELECT count(*) FROM auth.users WHERE id = '{BOB}') AS auth_users;
             SELECT chain_seq, action, table_name, redacted_digest IS NOT NULL AS redacted,
                    ip_address IS NULL AND user_agent IS NULL AS no_ip_or_agent,
                    left(coalesce(new_data, old_data)::text, 60) AS data
               FROM traveler_data_audit WHERE user_id = '{BOB}' ORDER BY chain_seq;
             SELECT count(*) AS bobs_chain_broken FROM wallet.verify_audit_chain() WHERE user_id = '{BOB}';"
        ),
    )?;

    step("Card metadata sealed by the sidecar (envelope encryption; the database sees ciphertext; bound to traveler, table, column and row)");
    let context = |user: &str| {
        format!(
            r#"{{"user_id":"{user}","table":"payment_methods","column":"encrypted_card_data","record_id":"00000000-0000-4000-8000-0000000000c1"}}"#
        )
    };
    psql(
        DB,
        &format!(
            r#"CREATE TEMP TABLE sealed AS
  SELECT wallet.encrypt(convert_to('{{"brand":"visa","last4":"4242"}}', 'UTF8'), '{ada}') AS record;
SELECT get_byte(record, 0) AS format_version, length(record) AS bytes,
       encode(substr(record, 1, 16), 'hex') || '...' AS first_bytes FROM sealed;
SELECT convert_from(wallet.decrypt(record, '{ada}'), 'UTF8') AS decrypted_for_ada FROM sealed;
DO $$
BEGIN
  PERFORM wallet.decrypt(record, '{bob}') FROM sealed;
EXCEPTION WHEN data_exception THEN
  RAISE NOTICE 'decrypting as bob fails: %', SQLERRM;
END
$$;
SELECT wallet.sidecar_health() ->> 'ready' AS sidecar_ready;
"#,
            ada = context(ADA),
            bob = context(BOB),
        ),
    )?;

    step("RLS report for the public schema (no findings expected)");
    psql(
        DB,
        "SELECT table_name, rls_enabled, rls_forced, policy_count, policy_columns_indexed, cardinality(findings) AS findings
           FROM wallet.rls_report(ARRAY['public'])",
    )?;

    step("The reference wallet page and the Edge Functions, served by Deno (web/serve.ts)");
    let page = EdgeGateway::start(GatewaySettings {
        sidecar: SidecarLink::Socket(&wallet.socket),
        localstripe: localstripe.clone(),
        demo_token: Some(ada.clone()),
        service_key: None,
        port: page_port,
    })
    .await?;
    let home = page.request("GET", "/", &[], Vec::new()).await?;
    let csp = home.headers.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or("(none)");
    println!("GET / -> {}\nContent-Security-Policy: {csp}", home.status);
    let cards = page.call("GET", "/functions/v1/manage-payment-methods", &ada, None, None).await?;
    let count = cards.json["data"].as_array().map_or(0, Vec::len);
    println!("GET /functions/v1/manage-payment-methods as Ada -> {} ({count} card(s))", cards.status);
    let profile = page.call("GET", "/functions/v1/profile", &ada, None, None).await?;
    println!(
        "GET /functions/v1/profile as Ada -> {} (score {})",
        profile.status, profile.json["data"]["completeness_score"]
    );
    ensure!(
        home.status.is_success() && cards.status.is_success() && profile.status.is_success(),
        "the page or a function failed"
    );

    step("Sidecar health over its Unix socket");
    let stream = tokio::net::UnixStream::connect(env("PW_SIDECAR_SOCKET")?).await?;
    println!("{}", harness::send(stream, "GET", "/healthz", None).await?.text);

    if keep {
        let wallet_dir = wallet.dir().to_owned();
        let pid = wallet.detach();
        let append = |file: &str, line: String| -> Result<()> {
            let mut extra =
                std::fs::OpenOptions::new().create(true).append(true).open(format!("{stack_dir}/{file}"))?;
            Ok(writeln!(extra, "{line}")?)
        };
        append("sidecar.pid.extra", pid.to_string())?;
        append("dirs.extra", wallet_dir.display().to_string())?;
        let (page_pid, page_dir) = page.detach();
        if let Some(pid) = page_pid {
            append("sidecar.pid.extra", pid.to_string())?;
        }
        append("dirs.extra", page_dir.display().to_string())?;
        println!("\nwallet page: http://127.0.0.1:{page_port}/  (\"Sign in as the demo traveler\" signs in as Ada, for an hour)");
        println!("psql:     psql -h {host} -p {port} -U postgres {DB}");
        println!("sidecar:  curl --unix-socket {} http://sidecar/healthz", env("PW_SIDECAR_SOCKET")?);
    }
    Ok(())
}
