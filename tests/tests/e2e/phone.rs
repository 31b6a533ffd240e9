//! Phone verification end to end: the sidecar's routes, Twilio Verify's fake
//! and the database (the wallet's own limits, the approval, the audit trail,
//! the completion score), on both database templates.

use std::time::Duration;

use harness::fake_http::Fault;
use harness::twilio_fake::FakeTwilio;
use harness::{as_traveler, claims, free_port, Template, TestApp, TestTraveler};
use hyper::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection;

const START: &str = "/v1/profile/phone/verification";
const CHECK: &str = "/v1/profile/phone/verification/check";
const ADA_PHONE: &str = "+351912345678";

async fn app_on(
    template: Template,
    twilio: &FakeTwilio,
    limits: impl FnOnce(&mut kms_sidecar::config::PhoneSettings) + Send + 'static,
) -> anyhow::Result<TestApp> {
    let admin_port = free_port()?;
    TestApp::wallet()
        .on(template)
        .with_twilio(twilio.url.clone())
        .configure(move |config| {
            config.admin_port = Some(admin_port);
            limits(&mut config.settings.phone);
        })
        .start()
        .await
}

/// A traveler with a profile (names and birth date, no phone yet).
async fn traveler_with_profile(app: &TestApp) -> anyhow::Result<TestTraveler> {
    let traveler = app.new_traveler().await?;
    sqlx::query(
        "INSERT INTO traveler_profiles (user_id, first_name, last_name, date_of_birth)
         VALUES ($1::uuid, 'Ada', 'Lovelace', '1815-12-10')",
    )
    .bind(&traveler.id)
    .execute(&mut app.db.admin().await?)
    .await?;
    Ok(traveler)
}

async fn profile(app: &TestApp, traveler: &TestTraveler) -> anyhow::Result<(Option<String>, bool, i32)> {
    Ok(sqlx::query_as(
        "SELECT p.phone_number, p.phone_verified, t.completeness_score
           FROM traveler_profiles p JOIN profile_completion_tracking t USING (user_id) WHERE p.user_id = $1::uuid",
    )
    .bind(&traveler.id)
    .fetch_one(&mut app.db.admin().await?)
    .await?)
}

fn outcome(metrics: &str, outcome: &str) -> u64 {
    let series = format!("parker_wallet_phone_verifications_total{{outcome=\"{outcome}\"}} ");
    metrics.lines().find_map(|line| line.strip_prefix(&series)).and_then(|v| v.parse().ok()).unwrap_or(u64::MAX)
}

fn wrong(code: &str) -> &'static str {
    if code == "000000" {
        "111111"
    } else {
        "000000"
    }
}

/// The playbook's flow on both templates: a code by SMS, a wrong one refused
/// with the attempts left, the right one marks the phone verified (audited as
/// the traveler's own change) and moves the score; a replay answers the same.
#[tokio::test]
async fn the_code_sent_by_sms_verifies_the_phone_and_moves_the_score() -> anyhow::Result<()> {
    for template in [Template::Plain, Template::Supabase] {
        let twilio = FakeTwilio::start().await?;
        let app = app_on(template, &twilio, |_| {}).await?;
        let ada = traveler_with_profile(&app).await?;
        let started =
            app.traveler(&ada).key("start-1").post(START, json!({ "phone_number": "+351 912 345 678" })).await?;
        assert_eq!(started.status, StatusCode::CREATED, "{template}: {}", started.text);
        assert_eq!(started.json["data"]["status"], "pending");
        assert_eq!(started.json["data"]["phone_number"], ADA_PHONE, "normalised to E.164");
        assert!(started.json["data"]["expires_at"].is_string());
        let (number, _, score_before) = profile(&app, &ada).await?;
        assert_eq!(number.as_deref(), Some(ADA_PHONE), "the number is the profile's now");
        let codes = twilio.codes_sent_to(ADA_PHONE);
        assert_eq!(codes.len(), 1, "one SMS");

        let refused = app.traveler(&ada).key("check-1").post(CHECK, json!({ "code": wrong(&codes[0]) })).await?;
        assert_eq!(
            (refused.status, refused.json["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("incorrect_code"))
        );
        assert_eq!(refused.json["attempts_remaining"], 4);
        assert!(!profile(&app, &ada).await?.1);

        let body = json!({ "code": codes[0] });
        let verified = app.traveler(&ada).key("check-2").post(CHECK, body.clone()).await?;
        assert_eq!(verified.status, StatusCode::OK, "{template}: {}", verified.text);
        assert_eq!(verified.json["data"]["phone_verified"], true);
        let (number, phone_verified, score_after) = profile(&app, &ada).await?;
        assert_eq!((number.as_deref(), phone_verified), (Some(ADA_PHONE), true));
        assert_eq!(score_after, score_before + 15, "{template}: a verified phone is worth 15 points");
        assert_eq!(verified.json["data"]["completeness_score"], score_after);

        let replay = app.traveler(&ada).key("check-2").post(CHECK, body).await?;
        assert_eq!(replay.status, StatusCode::OK);
        assert_eq!(replay.headers.get("idempotent-replayed").map(|v| v.as_bytes()), Some(&b"true"[..]));
        assert_eq!(twilio.codes_sent_to(ADA_PHONE).len(), 1);

        // Audited as the traveler's own change, and the chain verifies.
        let mut admin = app.db.admin().await?;
        let (actor, verified_in_audit): (Option<String>, Option<bool>) = sqlx::query_as(
            "SELECT actor, (new_data ->> 'phone_verified')::boolean FROM traveler_data_audit
              WHERE table_name = 'traveler_profiles' AND user_id = $1::uuid ORDER BY chain_seq DESC LIMIT 1",
        )
        .bind(&ada.id)
        .fetch_one(&mut admin)
        .await?;
        assert_eq!((actor, verified_in_audit), (Some(format!("user:{}", ada.id)), Some(true)));
        let broken: i64 =
            sqlx::query_scalar("SELECT count(*) FROM wallet.verify_audit_chain()").fetch_one(&mut admin).await?;
        assert_eq!(broken, 0);

        // The same number again: already verified, no SMS.
        let again = app.traveler(&ada).key("start-2").post(START, json!({ "phone_number": ADA_PHONE })).await?;
        assert_eq!((again.status, again.json["data"]["status"].as_str()), (StatusCode::OK, Some("approved")));
        assert_eq!(twilio.codes_sent_to(ADA_PHONE).len(), 1);

        let metrics = app.sidecar.metrics().await?;
        assert_eq!(
            [outcome(&metrics, "started"), outcome(&metrics, "incorrect_code"), outcome(&metrics, "approved")],
            [1, 1, 1],
            "{metrics}"
        );
    }
    Ok(())
}

/// The wallet's own limits hold whatever the order and concurrency of the
/// requests: between resends, per traveler (a new number every time), and per
/// number across travelers; a refusal says when to retry and keeps no key.
#[tokio::test]
async fn sends_are_limited_per_traveler_per_number_and_between_resends() -> anyhow::Result<()> {
    let twilio = FakeTwilio::start().await?;
    let app = app_on(Template::Plain, &twilio, |phone| {
        phone.sends_per_traveler = 3;
        phone.sends_per_number = 2;
        phone.resend_after_secs = 0;
    })
    .await?;

    // Ten different numbers at once from one traveler: three SMS, no more.
    let app = std::sync::Arc::new(app);
    let eve = traveler_with_profile(&app).await?;
    let requests: Vec<_> = (0..10)
        .map(|n| {
            let (app, eve) = (std::sync::Arc::clone(&app), eve.clone());
            let number = format!("+1415555{:04}", 2670 + n);
            tokio::spawn(async move {
                app.traveler(&eve).key(&format!("burst-{n}")).post(START, json!({ "phone_number": number })).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await??);
    }
    let statuses: Vec<StatusCode> = answers.iter().map(|answer| answer.status).collect();
    // Three sends claimed; one overtaken by a later start for another number
    // answers 409 phone_number_changed (its code is void).
    let claimed = statuses.iter().filter(|s| matches!(**s, StatusCode::CREATED | StatusCode::CONFLICT)).count();
    assert_eq!(claimed, 3, "{statuses:?}");
    assert!(statuses.contains(&StatusCode::CREATED), "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count(), 7, "{statuses:?}");
    assert_eq!(twilio.codes_sent(), 3);
    let limited = answers.into_iter().find(|a| a.status == StatusCode::TOO_MANY_REQUESTS).unwrap();
    assert_eq!(limited.json["code"], "verification_rate_limited");
    let retry_after: u64 = limited.headers["retry-after"].to_str()?.parse()?;
    assert!(retry_after > 3000 && retry_after <= 3600, "the window's oldest send frees a slot: {retry_after}");
    assert_eq!(limited.json["retry_after_secs"], retry_after);

    // One number, two travelers: the number's limit counts both.
    let (ada, bob, carol) =
        (traveler_with_profile(&app).await?, traveler_with_profile(&app).await?, traveler_with_profile(&app).await?);
    for (who, key) in [(&ada, "a"), (&bob, "b")] {
        let sent = app.traveler(who).key(key).post(START, json!({ "phone_number": ADA_PHONE })).await?;
        assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.text);
    }
    let refused = app.traveler(&carol).key("c").post(START, json!({ "phone_number": ADA_PHONE })).await?;
    assert_eq!(
        (refused.status, refused.json["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("verification_rate_limited"))
    );
    assert_eq!(profile(&app, &carol).await?.0, None, "a refused start leaves the profile's number alone");
    // A 429 keeps no Idempotency-Key: the same key runs again (and is refused again, for now).
    let again = app.traveler(&carol).key("c").post(START, json!({ "phone_number": ADA_PHONE })).await?;
    assert_eq!(again.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(again.headers.get("idempotent-replayed").is_none());
    assert_eq!(twilio.codes_sent_to(ADA_PHONE).len(), 2);

    // The default gap between resends.
    let strict = app_on(Template::Plain, &twilio, |_| {}).await?;
    let dan = traveler_with_profile(&strict).await?;
    let first = strict.traveler(&dan).post(START, json!({ "phone_number": "+442079460958" })).await?;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let soon = strict.traveler(&dan).post(START, json!({ "phone_number": "+442079460958" })).await?;
    assert_eq!(soon.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = soon.headers["retry-after"].to_str()?.parse()?;
    assert!((1..=30).contains(&retry_after), "{retry_after}");

    let metrics = app.sidecar.metrics().await?;
    assert_eq!(outcome(&metrics, "refused_traveler_limit"), 7, "{metrics}");
    assert_eq!(outcome(&metrics, "refused_number_limit"), 2, "{metrics}");
    assert_eq!(outcome(&strict.sidecar.metrics().await?, "refused_resend_too_soon"), 1);
    Ok(())
}

/// A number changed after the code was sent is not marked verified, whether
/// the change came before the check or while Twilio was approving the code.
#[tokio::test]
async fn a_number_changed_while_the_code_was_out_is_not_marked() -> anyhow::Result<()> {
    let twilio = FakeTwilio::start().await?;
    let app = app_on(Template::Plain, &twilio, |phone| phone.resend_after_secs = 0).await?;
    let ada = traveler_with_profile(&app).await?;
    let change_number = |number: &'static str| {
        let (db, id) = (&app.db, ada.id.clone());
        async move {
            let mut conn = db.traveler().await?;
            let mut tx = as_traveler(&mut conn, &claims(&id)).await?;
            sqlx::query("UPDATE traveler_profiles SET phone_number = $1 WHERE user_id = $2::uuid")
                .bind(number)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            anyhow::Ok(())
        }
    };

    // Before the check.
    app.traveler(&ada).post(START, json!({ "phone_number": ADA_PHONE })).await?;
    change_number("+442079460958").await?;
    let code = twilio.codes_sent_to(ADA_PHONE)[0].clone();
    let refused = app.traveler(&ada).post(CHECK, json!({ "code": code })).await?;
    assert_eq!((refused.status, refused.json["code"].as_str()), (StatusCode::CONFLICT, Some("phone_number_changed")));
    assert!(!profile(&app, &ada).await?.1);

    // While Twilio approves: the approval's statement finds another number.
    app.traveler(&ada).post(START, json!({ "phone_number": ADA_PHONE })).await?;
    let code = twilio.codes_sent_to(ADA_PHONE).last().unwrap().clone();
    twilio.faults.inject("POST", "/VerificationCheck", Fault::Slow(Duration::from_millis(1500)));
    let check = app.traveler(&ada).post(CHECK, json!({ "code": code }));
    let change = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        change_number("+14155552671").await
    };
    let (refused, changed) = tokio::join!(check, change);
    changed?;
    let refused = refused?;
    assert_eq!(
        (refused.status, refused.json["code"].as_str()),
        (StatusCode::CONFLICT, Some("phone_number_changed")),
        "{}",
        refused.text
    );
    let (number, verified, _) = profile(&app, &ada).await?;
    assert_eq!((number.as_deref(), verified), (Some("+14155552671"), false));
    let metrics = app.sidecar.metrics().await?;
    assert_eq!(outcome(&metrics, "number_changed"), 2, "{metrics}");
    Ok(())
}

/// A code can be checked for `code_ttl_secs` and at most `max_checks` times;
/// then the traveler starts again.
#[tokio::test]
async fn codes_expire_and_attempts_run_out() -> anyhow::Result<()> {
    let twilio = FakeTwilio::start().await?;
    let app = app_on(Template::Plain, &twilio, |phone| {
        phone.code_ttl_secs = 1;
        phone.resend_after_secs = 0;
    })
    .await?;
    let ada = traveler_with_profile(&app).await?;
    app.traveler(&ada).post(START, json!({ "phone_number": ADA_PHONE })).await?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let code = twilio.codes_sent_to(ADA_PHONE)[0].clone();
    let expired = app.traveler(&ada).post(CHECK, json!({ "code": code })).await?;
    assert_eq!((expired.status, expired.json["code"].as_str()), (StatusCode::GONE, Some("verification_expired")));
    let none = app.traveler(&ada).post(CHECK, json!({ "code": code })).await?;
    assert_eq!((none.status, none.json["code"].as_str()), (StatusCode::CONFLICT, Some("no_pending_verification")));

    let app = app_on(Template::Plain, &twilio, |phone| phone.resend_after_secs = 0).await?;
    let bob = traveler_with_profile(&app).await?;
    let bob_phone = "+442079460958";
    app.traveler(&bob).post(START, json!({ "phone_number": bob_phone })).await?;
    let code = twilio.codes_sent_to(bob_phone)[0].clone();
    let mut remaining: Vec<Value> = Vec::new();
    for _ in 0..5 {
        let refused = app.traveler(&bob).post(CHECK, json!({ "code": wrong(&code) })).await?;
        assert_eq!(refused.json["code"], "incorrect_code");
        remaining.push(refused.json["attempts_remaining"].clone());
    }
    assert_eq!(remaining, [4, 3, 2, 1, 0].map(Value::from));
    let exhausted = app.traveler(&bob).post(CHECK, json!({ "code": code })).await?;
    assert_eq!((exhausted.status, exhausted.json["code"].as_str()), (StatusCode::CONFLICT, Some("too_many_attempts")));
    assert!(!profile(&app, &bob).await?.1, "the right code after the last attempt verifies nothing");

    // A new verification starts the count again.
    app.traveler(&bob).post(START, json!({ "phone_number": bob_phone })).await?;
    let code = twilio.codes_sent_to(bob_phone).last().unwrap().clone();
    let verified = app.traveler(&bob).post(CHECK, json!({ "code": code })).await?;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text);
    Ok(())
}

/// What the traveler sends is checked before anything is sent; Twilio's own
/// refusals and outages reach them with their own codes.
#[tokio::test]
async fn bad_input_and_twilios_refusals_are_answered_as_such() -> anyhow::Result<()> {
    let twilio = FakeTwilio::start().await?;
    let app = app_on(Template::Plain, &twilio, |phone| {
        phone.resend_after_secs = 0;
        phone.sends_per_number = 10;
        phone.sends_per_traveler = 10;
    })
    .await?;
    let ada = traveler_with_profile(&app).await?;
    let no_profile = app.new_traveler().await?;
    for (who, path, body, expected) in [
        (&ada, START, json!({ "phone_number": "912 345 678" }), (StatusCode::BAD_REQUEST, "invalid_phone_number")),
        (&ada, START, json!({ "phone_number": "+1 555 0100" }), (StatusCode::BAD_REQUEST, "invalid_phone_number")),
        (&ada, START, json!({ "phone": ADA_PHONE }), (StatusCode::BAD_REQUEST, "invalid_request")),
        (&ada, CHECK, json!({ "code": "12ab56" }), (StatusCode::BAD_REQUEST, "invalid_code")),
        (&ada, CHECK, json!({ "code": "123456" }), (StatusCode::CONFLICT, "no_pending_verification")),
        (&no_profile, START, json!({ "phone_number": ADA_PHONE }), (StatusCode::CONFLICT, "profile_required")),
    ] {
        let answer = app.traveler(who).post(path, body.clone()).await?;
        assert_eq!(
            (answer.status, answer.json["code"].as_str()),
            (expected.0, Some(expected.1)),
            "{body}: {}",
            answer.text
        );
    }
    let anonymous = app.sidecar.request("POST", START, Some(json!({ "phone_number": ADA_PHONE }))).await?;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(twilio.codes_sent(), 0);

    // Twilio down: 503, and the key is free for the retry.
    twilio.faults.inject("POST", "/Verifications", Fault::Fail(503));
    let down = app.traveler(&ada).key("k").post(START, json!({ "phone_number": ADA_PHONE })).await?;
    assert_eq!(
        (down.status, down.json["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("twilio_unavailable"))
    );
    assert!(
        !down.text.contains("20500") && !down.text.contains("Internal Server Error"),
        "Twilio's words stay in the log: {}",
        down.text
    );
    assert_eq!(profile(&app, &ada).await?.0, None, "a send Twilio refused leaves the profile alone");
    let retried = app.traveler(&ada).key("k").post(START, json!({ "phone_number": ADA_PHONE })).await?;
    assert_eq!(retried.status, StatusCode::CREATED, "{}", retried.text);
    // Twilio's own limits: 60203 after five sends to a number in ten minutes.
    for n in 0..5 {
        let sent = app.traveler(&ada).post(START, json!({ "phone_number": ADA_PHONE })).await?;
        let expected = if n < 4 { StatusCode::CREATED } else { StatusCode::TOO_MANY_REQUESTS };
        assert_eq!(sent.status, expected, "{n}: {}", sent.text);
        if n == 4 {
            assert_eq!(sent.json["code"], "too_many_codes_sent");
            assert_eq!(sent.headers["retry-after"], "600");
        }
    }
    let metrics = app.sidecar.metrics().await?;
    assert_eq!(outcome(&metrics, "refused_by_twilio"), 2, "{metrics}");

    // Without [twilio] the routes say so.
    let unconfigured = TestApp::wallet().start().await?;
    let eve = traveler_with_profile(&unconfigured).await?;
    let answer = unconfigured.traveler(&eve).post(START, json!({ "phone_number": ADA_PHONE })).await?;
    assert_eq!(
        (answer.status, answer.json["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("phone_verification_not_configured"))
    );
    Ok(())
}

/// The verifications table is the sidecar's: travelers and the API roles
/// cannot read others' rows, start one without the limits, or mark a phone
/// verified themselves.
#[tokio::test]
async fn travelers_cannot_skip_the_limits_or_verify_themselves() -> anyhow::Result<()> {
    for template in [Template::Plain, Template::Supabase] {
        let twilio = FakeTwilio::start().await?;
        let app = app_on(template, &twilio, |_| {}).await?;
        let ada = traveler_with_profile(&app).await?;
        let mut conn = app.db.traveler().await?;
        for sql in [
            "SELECT count(*) FROM phone_verifications",
            "SELECT * FROM wallet_internal.claim_phone_verification('+351912345678', '10 minutes', '1 hour', 100, 100, '0')",
            "UPDATE traveler_profiles SET phone_verified = true",
            "INSERT INTO phone_verifications (user_id, phone_number, expires_at) VALUES (gen_random_uuid(), '+351912345678', now())",
        ] {
            let mut tx = as_traveler(&mut conn, &claims(&ada.id)).await?;
            let refused = sqlx::query(sql).execute(&mut *tx).await.expect_err(sql);
            assert_eq!(harness::sqlstate(&refused).as_deref(), Some("42501"), "{template}: {sql}: {refused}");
            tx.rollback().await?;
        }
    }
    Ok(())
}

/// A verified phone stays verified when a send to another number fails; a
/// resend to the same number while a check is in flight does not spoil it.
#[tokio::test]
async fn a_failed_send_or_a_resend_does_not_cost_the_traveler_their_verification() -> anyhow::Result<()> {
    let twilio = FakeTwilio::start().await?;
    let app = app_on(Template::Plain, &twilio, |phone| phone.resend_after_secs = 0).await?;
    let ada = traveler_with_profile(&app).await?;
    app.traveler(&ada).post(START, json!({ "phone_number": ADA_PHONE })).await?;
    let code = twilio.codes_sent_to(ADA_PHONE)[0].clone();
    assert_eq!(app.traveler(&ada).post(CHECK, json!({ "code": code })).await?.status, StatusCode::OK);

    twilio.faults.inject("POST", "/Verifications", Fault::Fail(503));
    let failed = app.traveler(&ada).post(START, json!({ "phone_number": "+442079460958" })).await?;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE);
    let (number, verified, _) = profile(&app, &ada).await?;
    assert_eq!((number.as_deref(), verified), (Some(ADA_PHONE), true), "still the verified phone");

    // A new number, then a resend of the same code while the check is at Twilio.
    let new_phone = "+442079460958";
    app.traveler(&ada).post(START, json!({ "phone_number": new_phone })).await?;
    let code = twilio.codes_sent_to(new_phone)[0].clone();
    twilio.faults.inject("POST", "/VerificationCheck", Fault::Slow(Duration::from_millis(1500)));
    let check = app.traveler(&ada).post(CHECK, json!({ "code": code }));
    let resend = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        app.traveler(&ada).post(START, json!({ "phone_number": new_phone })).await
    };
    let (checked, resent) = tokio::join!(check, resend);
    assert_eq!(resent?.status, StatusCode::CREATED);
    let checked = checked?;
    assert_eq!(checked.status, StatusCode::OK, "{}", checked.text);
    assert_eq!(twilio.codes_sent_to(new_phone), [code.clone(), code], "Twilio resent the same code");
    let (number, verified, _) = profile(&app, &ada).await?;
    assert_eq!((number.as_deref(), verified), (Some(new_phone), true));
    Ok(())
}

/// The sidecar's role reaches the table only as far as the rules allow: the
/// gate refuses limits out of bounds (no window onto others' sends), and a
/// verification's state only moves forward.
#[tokio::test]
async fn the_sidecars_role_cannot_bend_the_limits_or_revive_a_verification() -> anyhow::Result<()> {
    let twilio = FakeTwilio::start().await?;
    let app = app_on(Template::Plain, &twilio, |phone| phone.resend_after_secs = 0).await?;
    let ada = traveler_with_profile(&app).await?;
    app.traveler(&ada).post(START, json!({ "phone_number": ADA_PHONE })).await?;
    let mut conn = sqlx::PgConnection::connect(&app.db.url("pw_test_sidecar")?).await?;
    let refusals = [
        ("SELECT * FROM wallet_internal.claim_phone_verification('+351912345678', '10 minutes', '100 years', 5, 0, '0')", "22023"),
        ("SELECT * FROM wallet_internal.claim_phone_verification('+351912345678', '10 minutes', '1 hour', 5, 5, '2 hours')", "22023"),
        ("UPDATE phone_verifications SET twilio_sid = 'VE00000000000000000000000000000000'", "23514"),
    ];
    for (sql, code) in refusals {
        let mut tx = harness::as_role(&mut conn, "parker_wallet_sidecar", &claims(&ada.id)).await?;
        let refused = sqlx::query(sql).execute(&mut *tx).await.expect_err(sql);
        assert_eq!(harness::sqlstate(&refused).as_deref(), Some(code), "{sql}: {refused}");
    }
    let mut tx = harness::as_role(&mut conn, "parker_wallet_sidecar", &claims(&ada.id)).await?;
    sqlx::query("UPDATE phone_verifications SET state = 'failed'").execute(&mut *tx).await?;
    tx.commit().await?;
    let mut tx = harness::as_role(&mut conn, "parker_wallet_sidecar", &claims(&ada.id)).await?;
    let revived = sqlx::query("UPDATE phone_verifications SET state = 'pending', checks = 0").execute(&mut *tx).await;
    assert_eq!(harness::sqlstate(&revived.expect_err("revived")).as_deref(), Some("23514"));
    Ok(())
}
