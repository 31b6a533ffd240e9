//! The scheduled jobs as their systemd units run them: each timer's
//! `ExecStart` (deploy/systemd), read from the unit and run against the test
//! stack (localstripe, the Duffel fake, moto's KMS), does its work and records
//! its run; `/metrics` then shows the runs and the money figures of a scripted
//! set of bookings, the reconcile command's own transitions included.

use std::path::PathBuf;

use anyhow::Context;
use harness::{metric, OperatedApp, Template, TestTraveler};
use serde_json::{json, Value};

const VISA: &str = "4242424242424242";
const DECLINED_AT_CHARGE: &str = "4000000000000341";
const NEEDS_3DS: &str = "4000002760003184";

/// The `kms-sidecar` arguments of a job's unit, as its `ExecStart` has them,
/// less the settings file (the test's own stands in for it).
fn unit_arguments(unit: &str) -> anyhow::Result<Vec<String>> {
    let path: PathBuf = harness::crate_dir().join(format!("../deploy/systemd/parker-wallet-{unit}.service"));
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let exec = text.lines().find_map(|line| line.strip_prefix("ExecStart=")).context("no ExecStart")?;
    let mut words = exec.split_whitespace();
    anyhow::ensure!(words.next() == Some("/usr/local/bin/kms-sidecar"), "{unit}: {exec}");
    let mut arguments = Vec::new();
    while let Some(word) = words.next() {
        if word == "--config" {
            words.next();
        } else {
            arguments.push(word.to_owned());
        }
    }
    Ok(arguments)
}

/// Runs a unit's command: its exit code and what it printed.
fn run_unit(operated: &OperatedApp, unit: &str) -> anyhow::Result<(Option<i32>, String)> {
    let arguments = unit_arguments(unit)?;
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let output = operated.command(&arguments)?.output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    Ok((output.status.code(), text))
}

async fn book(operated: &OperatedApp, traveler: &TestTraveler, campaign: &str, offer: &str) -> anyhow::Result<Value> {
    let body = json!({
        "campaign_id": campaign, "offer_id": offer, "amount": 42_000, "currency": "eur", "route": "LIS-JFK",
        "passengers": [{ "id": "pas_1", "given_name": "Ada", "family_name": "Lovelace", "born_on": "1990-12-10" }],
    });
    let booked = operated.app.traveler(traveler).key(offer).post("/v1/bookings", body).await?;
    anyhow::ensure!(booked.status.is_success(), "{}", booked.text);
    Ok(booked.json["data"].clone())
}

/// A traveler with `cards` saved (the first is the default) and a consented campaign.
async fn traveler(operated: &OperatedApp, cards: &[&str]) -> anyhow::Result<(TestTraveler, String)> {
    let app = &operated.app;
    let traveler = app.new_traveler().await?;
    for number in cards {
        app.saved_card(&traveler, number).await?;
    }
    let campaign = app.consented_campaign(&traveler, "Summer in Lisbon").await?;
    Ok((traveler, campaign))
}

async fn each_timers_command_does_its_work_and_the_figures_add_up(template: Template) -> anyhow::Result<()> {
    let operated = OperatedApp::start_with(template, |config| {
        config.settings.bookings.reconcile_after_secs = 0;
        config.settings.bookings.authentication_expiry_hours = 0;
    })
    .await?;
    let app = &operated.app;
    let mut admin = app.db.admin().await?;

    // The scripted run. Ann: the default card declines at the charge, the
    // backup pays; then (the backup again) an offer Duffel no longer has, voided.
    let (ann, ann_campaign) = traveler(&operated, &[VISA, DECLINED_AT_CHARGE]).await?;
    let failing: String =
        sqlx::query_scalar("SELECT id::text FROM payment_methods WHERE user_id = $1::uuid AND last4 = '0341'")
            .bind(&ann.id)
            .fetch_one(&mut admin)
            .await?;
    let switched =
        app.traveler(&ann).key("default").post_empty(&format!("/v1/wallet/payment-methods/{failing}/default")).await?;
    assert!(switched.status.is_success(), "{}", switched.text);
    let backup = book(&operated, &ann, &ann_campaign, "off_backup").await?;
    assert_eq!((backup["state"].as_str(), backup["card"]["attempt"].as_i64()), (Some("captured"), Some(2)), "{backup}");
    operated.duffel.offer_gone("off_gone");
    assert_eq!(book(&operated, &ann, &ann_campaign, "off_gone").await?["state"], "voided");
    // Ben's card asks for 3-D Secure, and Ben never completes it.
    let (ben, ben_campaign) = traveler(&operated, &[NEEDS_3DS]).await?;
    let waiting = book(&operated, &ben, &ben_campaign, "off_3ds").await?;
    assert_eq!(waiting["state"], "requires_authentication");
    // Cat's only card declines.
    let (cat, cat_campaign) = traveler(&operated, &[DECLINED_AT_CHARGE]).await?;
    assert_eq!(book(&operated, &cat, &cat_campaign, "off_declined").await?["state"], "declined");
    // Dan books, then asks to be erased.
    let (dan, dan_campaign) = traveler(&operated, &[VISA]).await?;
    assert_eq!(book(&operated, &dan, &dan_campaign, "off_dan").await?["state"], "captured");
    let erasure = app
        .traveler(&dan)
        .key("erase")
        .delete_with_body("/v1/privacy/account", json!({ "confirmation": "erase my account" }))
        .await?;
    assert!(erasure.status.is_success(), "{}", erasure.text);
    // An answer kept past its Idempotency-Key's life.
    sqlx::query(
        "INSERT INTO idempotency_keys (user_id, key, route, request_fingerprint, state, expires_at)
         VALUES ($1::uuid, 'long-gone', 'POST /v1/bookings', '\\x00', 'completed', now() - interval '1 hour')",
    )
    .bind(&ann.id)
    .execute(&mut admin)
    .await?;

    // Each timer's command, as its unit runs it.
    let (code, out) = run_unit(&operated, "purge-idempotency-keys")?;
    assert_eq!(code, Some(0), "{template}: {out}");
    assert!(out.contains("1 expired answer(s) deleted"), "{template}: {out}");

    let (code, out) = run_unit(&operated, "reconcile")?;
    assert_eq!(code, Some(0), "{template}: {out}");
    let (state, failure): (String, Option<String>) =
        sqlx::query_as("SELECT state, failure_code FROM booking_charges WHERE user_id = $1::uuid")
            .bind(&ben.id)
            .fetch_one(&mut admin)
            .await?;
    assert_eq!((state.as_str(), failure.as_deref()), ("declined", Some("authentication_expired")), "{template}");

    let (code, out) = run_unit(&operated, "audit-checkpoint")?;
    assert_eq!(code, Some(0), "{template}: {out}");
    let checkpoints: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_checkpoints").fetch_one(&mut admin).await?;
    assert_eq!(checkpoints, 1, "{template}");

    let (code, out) = run_unit(&operated, "audit-verify")?;
    assert_eq!(code, Some(0), "{template}: {out}");

    let (code, out) = run_unit(&operated, "erase-pending")?;
    assert!(matches!(code, Some(0 | 2)), "{template}: {out}");
    let erased: String = sqlx::query_scalar("SELECT state FROM erasures WHERE user_id = $1::uuid")
        .bind(&dan.id)
        .fetch_one(&mut admin)
        .await?;
    assert!(["audit_redacted", "completed"].contains(&erased.as_str()), "{template}: {erased}: {out}");

    // Dan's kept booking has no passengers left to rewrap: passed over, not a failure.
    let (code, out) = run_unit(&operated, "rotate-keys")?;
    assert_eq!(code, Some(0), "{template}: {out}");
    assert!(out.contains("rotate-keys booking_charges.passengers_sealed: 4 examined"), "{template}: {out}");

    // What /metrics shows: every run, and the money as it happened.
    let metrics = app.sidecar.metrics().await?;
    for job in ["reconcile", "purge_idempotency_keys", "audit_checkpoint", "audit_verify", "rotate_keys"] {
        assert_eq!(metric(&metrics, &format!("parker_wallet_job_last_exit_code{{job=\"{job}\"}}")), 0, "{job}");
        let succeeded = metric(&metrics, &format!("parker_wallet_job_last_success_timestamp_seconds{{job=\"{job}\"}}"));
        assert!((1..u64::MAX).contains(&succeeded), "{template}: {job} {succeeded}");
    }
    assert!(metric(&metrics, "parker_wallet_job_last_exit_code{job=\"erase_pending\"}") <= 2);
    let payments = |event: &str| metric(&metrics, &format!("parker_wallet_payments_total{{event=\"{event}\"}}"));
    let happened = [
        ("authorized", 3),
        ("captured", 2),
        ("voided", 1),
        ("refunded", 0),
        // Both of Ann's: her default card declines each time.
        ("backup_card_used", 2),
        ("three_ds_requested", 1),
        ("three_ds_completed", 0),
        ("three_ds_expired", 1),
    ];
    for (event, count) in happened {
        assert_eq!(payments(event), count, "{template}: {event}\n{metrics}");
    }
    let declines =
        |class: &str| metric(&metrics, &format!("parker_wallet_payment_declines_total{{class=\"{class}\"}}"));
    assert_eq!((declines("card"), declines("authentication_expired"), declines("fraud")), (1, 1, 0), "{template}");
    let bookings = |state: &str| metric(&metrics, &format!("parker_wallet_bookings{{state=\"{state}\"}}"));
    assert_eq!((bookings("captured"), bookings("voided"), bookings("declined")), (2, 1, 2), "{template}");
    assert_eq!(bookings("needs_reconciliation"), 0);
    assert_eq!(metric(&metrics, "parker_wallet_bookings_near_capture_deadline"), 0);
    // Outbound calls, each dependency by outcome.
    let calls = |dependency: &str, outcome: &str| {
        metric(
            &metrics,
            &format!("parker_wallet_outbound_requests_total{{dependency=\"{dependency}\",outcome=\"{outcome}\"}}"),
        )
    };
    assert!(calls("stripe", "ok") > 10, "{metrics}");
    assert!(calls("stripe", "refused") >= 2, "the two declines: {metrics}");
    assert!(calls("duffel", "ok") >= 2 && calls("duffel", "refused") >= 1, "{metrics}");
    assert!(calls("kms", "ok") >= 1 && calls("postgres_pool", "ok") > 10, "{metrics}");
    assert_eq!(metric(&metrics, "parker_wallet_dependency_up{dependency=\"stripe\"}"), 1);
    assert_eq!(metric(&metrics, "parker_wallet_dependency_up{dependency=\"key_provider\"}"), 1);
    assert_eq!(metric(&metrics, "parker_wallet_kill_switch_thrown{feature=\"auto_booking\"}"), 0);
    assert_eq!(metric(&metrics, "parker_wallet_database_figures_up"), 1);
    Ok(())
}

/// What the alerts read cannot be rewritten from the serving sidecar's role
/// (a process the socket reaches), nor from PostgREST's: only the operator's
/// connection records a run.
async fn only_the_operator_records_a_jobs_run(template: Template) -> anyhow::Result<()> {
    let db = harness::TestDb::migrated_on(template).await?;
    for role in ["parker_wallet_sidecar", "authenticated", "service_role"] {
        let mut conn = db.superuser().await?;
        sqlx::raw_sql(&format!("SET ROLE {role}")).execute(&mut conn).await?;
        let silenced =
            sqlx::query("SELECT wallet_internal.record_job_run('audit_checkpoint', now(), 0)").execute(&mut conn).await;
        assert_eq!(silenced.as_ref().err().and_then(harness::sqlstate).as_deref(), Some("42501"), "{template}: {role}");
        let mut conn = db.superuser().await?;
        sqlx::raw_sql(&format!("SET ROLE {role}")).execute(&mut conn).await?;
        let read = sqlx::query("SELECT * FROM wallet_internal.job_runs").execute(&mut conn).await;
        assert_eq!(read.as_ref().err().and_then(harness::sqlstate).as_deref(), Some("42501"), "{template}: {role}");
    }
    Ok(())
}

/// A job whose run cannot be recorded, or that was started wrongly, never
/// exits 2 (which its unit takes for a run that found something).
#[tokio::test]
async fn a_run_not_recorded_or_a_bad_command_line_fails_the_unit() -> anyhow::Result<()> {
    let operated = OperatedApp::start(Template::Plain).await?;
    // reconcile works through the sidecar's own settings; without the
    // operator's DATABASE_URL its clean run cannot be recorded.
    let unrecorded = operated.command(&["reconcile"])?.env_remove("DATABASE_URL").output()?;
    let said = String::from_utf8_lossy(&unrecorded.stderr);
    assert_eq!(unrecorded.status.code(), Some(1), "{said}");
    assert!(said.contains("the reconcile run was not recorded"), "{said}");
    let usage = operated.command(&["reconcile", "--no-such-flag"])?.output()?;
    assert_eq!(usage.status.code(), Some(64), "{}", String::from_utf8_lossy(&usage.stderr));
    Ok(())
}

/// Every raw series the dashboard queries is one the sidecar exports.
#[tokio::test]
async fn every_series_on_the_dashboard_is_exported() -> anyhow::Result<()> {
    let operated = OperatedApp::start(Template::Plain).await?;
    let metrics = operated.app.sidecar.metrics().await?;
    let dashboard = std::fs::read_to_string(harness::crate_dir().join("../deploy/grafana/parker-wallet.json"))?;
    let mut names: Vec<&str> = dashboard
        .match_indices("parker_wallet_")
        .map(|(at, _)| {
            let rest = &dashboard[at..];
            &rest[..rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len())]
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let exported = name.trim_end_matches("_bucket");
        assert!(metrics.contains(&format!("# TYPE {exported} ")), "the dashboard reads {name}, which /metrics lacks");
    }
    Ok(())
}

harness::on_both_templates!(
    each_timers_command_does_its_work_and_the_figures_add_up,
    only_the_operator_records_a_jobs_run
);
