//! Consent records: a card's consent to off-session charges through the
//! sidecar, a campaign's and marketing's recorded by the database whoever
//! writes them; withdrawn, never deleted; bookings need the card's.

use harness::duffel_fake::FakeDuffel;
use harness::{as_traveler, card_saved_through_stripe, claims, new_traveler, sqlstate, Template, TestApp, TestDb};
use hyper::StatusCode;
use serde_json::{json, Value};

/// The request's place, as an Edge Function forwards it.
const FROM: [(&str, &str); 2] = [("x-forwarded-for", "203.0.113.7"), ("user-agent", "parker-app/5")];

async fn as_app(
    app: &TestApp,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<harness::Response> {
    let bearer = format!("Bearer {token}");
    let mut headers = vec![("authorization", bearer.as_str())];
    headers.extend(FROM);
    app.sidecar.request_with(method, path, &headers, body).await
}

/// (kind, text_version, ip, user agent, withdrawn) of a traveler's consents, oldest first.
async fn consents(
    db: &TestDb,
    traveler: &str,
) -> anyhow::Result<Vec<(String, String, Option<String>, Option<String>, bool)>> {
    Ok(sqlx::query_as(
        "SELECT kind, text_version, host(ip_address), user_agent, withdrawn_at IS NOT NULL
           FROM consents WHERE user_id = $1::uuid ORDER BY granted_at, kind",
    )
    .bind(traveler)
    .fetch_all(&mut db.admin().await?)
    .await?)
}

#[tokio::test]
async fn a_card_is_charged_off_session_only_with_its_consent_in_force() -> anyhow::Result<()> {
    let duffel = FakeDuffel::start().await?;
    let app = TestApp::wallet().with_stripe().with_duffel(duffel.url.clone()).start().await?;
    let ada = app.new_traveler().await?;
    let campaign: String = sqlx::query_scalar(
        "INSERT INTO campaigns (user_id, name, consent_at, consent_text_version)
         VALUES ($1::uuid, 'Lisbon', now(), 'campaign-mit-1') RETURNING id::text",
    )
    .bind(&ada.id)
    .fetch_one(&mut app.db.admin().await?)
    .await?;
    let booking = |key: &str| {
        let body = json!({
            "campaign_id": campaign, "offer_id": "off_consent", "amount": 10_000, "currency": "eur",
            "passengers": [{ "id": "pas_1", "given_name": "Ada", "family_name": "Lovelace" }],
        });
        app.traveler(&ada).key(key).post("/v1/bookings", body)
    };

    // Saved without the consent box ticked: listed, never charged while away.
    let intent = card_saved_through_stripe(&app.sidecar, &ada.token, &app.localstripe()?, "4242424242424242").await?;
    let added =
        as_app(&app, &ada.token, "POST", "/v1/wallet/payment-methods", Some(json!({ "setup_intent_id": intent })))
            .await?;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    assert_eq!(added.json["data"]["off_session_consent"], Value::Null);
    let card = added.json["data"]["id"].as_str().unwrap_or_default().to_owned();
    let refused = booking("b-1").await?;
    assert_eq!(
        (refused.status, refused.json["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("card_consent_required"))
    );

    // The traveler consents: recorded with the text's version and the request's place.
    let path = format!("/v1/wallet/payment-methods/{card}/consent");
    let bad = as_app(&app, &ada.token, "POST", &path, Some(json!({ "text_version": "not a version" }))).await?;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let given = as_app(&app, &ada.token, "POST", &path, Some(json!({ "text_version": "card-mit-7" }))).await?;
    assert_eq!(given.status, StatusCode::CREATED, "{}", given.text);
    let again = as_app(&app, &ada.token, "POST", &path, Some(json!({ "text_version": "card-mit-7" }))).await?;
    assert_eq!((again.status, &again.json["data"]["id"]), (StatusCode::OK, &given.json["data"]["id"]), "one in force");
    // Agreeing to a newer text is a new consent; the old one ends.
    let newer = as_app(&app, &ada.token, "POST", &path, Some(json!({ "text_version": "card-mit-8" }))).await?;
    assert_eq!(newer.status, StatusCode::CREATED, "{}", newer.text);
    assert_ne!(newer.json["data"]["id"], given.json["data"]["id"]);
    let listed = app.traveler(&ada).get("/v1/wallet/payment-methods").await?;
    assert_eq!(listed.json["data"][0]["off_session_consent"]["text_version"], "card-mit-8");
    let booked = booking("b-2").await?;
    assert_eq!(
        (booked.status, booked.json["data"]["state"].as_str()),
        (StatusCode::CREATED, Some("captured")),
        "{}",
        booked.text
    );

    // Withdrawn: recorded on the row, which stays; no new off-session charge.
    let withdrawn = as_app(&app, &ada.token, "DELETE", &path, None).await?;
    assert_eq!(withdrawn.status, StatusCode::OK, "{}", withdrawn.text);
    assert!(withdrawn.json["data"]["withdrawn_at"].is_string());
    let refused = booking("b-3").await?;
    assert_eq!(refused.json["code"], "card_consent_required");
    let none = as_app(&app, &ada.token, "DELETE", &path, None).await?;
    assert_eq!((none.status, none.json["code"].as_str()), (StatusCode::NOT_FOUND, Some("consent_not_found")));
    let card_consents: Vec<_> =
        consents(&app.db, &ada.id).await?.into_iter().filter(|c| c.0 == "card_off_session").collect();
    let place = (Some("203.0.113.7".to_owned()), Some("parker-app/5".to_owned()));
    let record =
        |version: &str| ("card_off_session".to_owned(), version.to_owned(), place.0.clone(), place.1.clone(), true);
    assert_eq!(card_consents, [record("card-mit-7"), record("card-mit-8")]);
    let writers: Vec<(Option<String>, Option<String>)> =
        sqlx::query_as("SELECT DISTINCT recorded_by, withdrawn_by FROM consents WHERE kind = 'card_off_session'")
            .fetch_all(&mut app.db.admin().await?)
            .await?;
    assert_eq!(writers, [(Some(format!("user:{}", ada.id)), Some(format!("user:{}", ada.id)))]);
    let withdrawn_from: (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT host(withdrawn_ip_address), withdrawn_user_agent FROM consents WHERE kind = 'card_off_session'",
    )
    .fetch_one(&mut app.db.admin().await?)
    .await?;
    assert_eq!(withdrawn_from, (Some("203.0.113.7".to_owned()), Some("parker-app/5".to_owned())));

    // Saved with the box ticked in one request; another traveler's card is not found.
    let intent = card_saved_through_stripe(&app.sidecar, &ada.token, &app.localstripe()?, "5555555555554444").await?;
    let body = json!({ "setup_intent_id": intent, "off_session_consent": { "text_version": "card-mit-7" } });
    let added = as_app(&app, &ada.token, "POST", "/v1/wallet/payment-methods", Some(body)).await?;
    assert_eq!(added.json["data"]["off_session_consent"]["text_version"], "card-mit-7", "{}", added.text);
    let bob = app.new_traveler().await?;
    let theirs = as_app(&app, &bob.token, "POST", &path, Some(json!({ "text_version": "card-mit-7" }))).await?;
    assert_eq!((theirs.status, theirs.json["code"].as_str()), (StatusCode::NOT_FOUND, Some("card_not_found")));

    // A deleted card's consent is withdrawn with it (the row stays).
    let second = added.json["data"]["id"].as_str().unwrap_or_default().to_owned();
    let deleted = app.traveler(&ada).delete(&format!("/v1/wallet/payment-methods/{second}")).await?;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text);
    let in_force: i64 =
        sqlx::query_scalar("SELECT count(*) FROM consents WHERE withdrawn_at IS NULL AND kind = 'card_off_session'")
            .fetch_one(&mut app.db.admin().await?)
            .await?;
    assert_eq!(in_force, 0);
    Ok(())
}

/// Campaign and marketing consents are recorded from what the traveler writes
/// through PostgREST, with the text's version and the request's place; a
/// withdrawal is recorded on the row; nobody but the recorder writes them.
/// Runs `sql` as the traveler through PostgREST, from a known place; the
/// refusal's SQLSTATE, if refused.
async fn run(conn: &mut sqlx::PgConnection, sql: String, who: String) -> anyhow::Result<Option<String>> {
    let mut tx = as_traveler(conn, &claims(&who)).await?;
    sqlx::query("SELECT set_config('request.headers', $1, true)")
        .bind(json!({ "x-forwarded-for": "198.51.100.4", "user-agent": "parker-app/6" }).to_string())
        .execute(&mut *tx)
        .await?;
    match sqlx::raw_sql(&sql).execute(&mut *tx).await {
        Ok(_) => {
            tx.commit().await?;
            Ok(None)
        }
        Err(error) => Ok(sqlstate(&error)),
    }
}

#[tokio::test]
async fn campaign_and_marketing_consents_are_recorded_whoever_writes_them() -> anyhow::Result<()> {
    for template in [Template::Plain, Template::Supabase] {
        let db = TestDb::migrated_on(template).await?;
        let (ada, bob) = (new_traveler(&db).await?, new_traveler(&db).await?);
        let mut conn = db.traveler().await?;
        let no_text = run(
            &mut conn,
            format!("INSERT INTO campaigns (user_id, name, consent_at) VALUES ('{ada}', 'x', now())"),
            ada.clone(),
        )
        .await?;
        assert_eq!(no_text.as_deref(), Some("23514"), "{template}: a consent names its text");
        let granted = format!(
            "INSERT INTO campaigns (user_id, name, consent_at, consent_text_version) VALUES ('{ada}', 'Rome', now(), 'campaign-mit-3');
             INSERT INTO traveler_profiles (user_id, notification_preferences)
             VALUES ('{ada}', '{{\"topics\": {{\"marketing\": true}}, \"marketing_consent_version\": \"marketing-2\"}}')"
        );
        assert_eq!(run(&mut conn, granted, ada.clone()).await?, None, "{template}");
        let recorded = consents(&db, &ada).await?;
        let place = (Some("198.51.100.4".to_owned()), Some("parker-app/6".to_owned()));
        assert_eq!(
            recorded,
            [
                (
                    "campaign_off_session".to_owned(),
                    "campaign-mit-3".to_owned(),
                    place.0.clone(),
                    place.1.clone(),
                    false
                ),
                ("marketing".to_owned(), "marketing-2".to_owned(), place.0.clone(), place.1.clone(), false),
            ],
            "{template}"
        );
        let withdrawn = "UPDATE campaigns SET consent_at = NULL;
             UPDATE traveler_profiles SET notification_preferences = '{\"topics\": {\"marketing\": false}}'";
        assert_eq!(run(&mut conn, withdrawn.to_owned(), ada.clone()).await?, None, "{template}");
        assert!(consents(&db, &ada).await?.iter().all(|c| c.4), "{template}: both withdrawn, both kept");
        let regranted = "UPDATE campaigns SET consent_at = now()";
        assert_eq!(run(&mut conn, regranted.to_owned(), ada.clone()).await?, None, "{template}");
        assert_eq!(consents(&db, &ada).await?.len(), 3, "{template}: a new grant is a new record");
        let new_text = "UPDATE campaigns SET consent_text_version = 'campaign-mit-4'";
        assert_eq!(run(&mut conn, new_text.to_owned(), ada.clone()).await?, None, "{template}");
        let recorded = consents(&db, &ada).await?;
        let in_force: Vec<&str> = recorded.iter().filter(|c| !c.4).map(|c| c.1.as_str()).collect();
        assert_eq!((recorded.len(), in_force), (4, vec!["campaign-mit-4"]), "{template}: a new text, a new consent");
        let writers: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT recorded_by FROM consents WHERE user_id = $1::uuid")
                .bind(&ada)
                .fetch_all(&mut db.admin().await?)
                .await?;
        assert_eq!(writers, [format!("user:{ada}")], "{template}");

        // Nobody rewrites or removes a consent, nor reads another traveler's.
        for sql in [
            format!(
                "INSERT INTO consents (user_id, kind, subject_id, text_version, recorded_by)
                 VALUES ('{ada}', 'marketing', NULL, 'x', 'user:{ada}')"
            ),
            "UPDATE consents SET text_version = 'other'".to_owned(),
            "DELETE FROM consents".to_owned(),
        ] {
            assert_eq!(run(&mut conn, sql.clone(), ada.clone()).await?.as_deref(), Some("42501"), "{template}: {sql}");
        }
        let mut tx = as_traveler(&mut conn, &claims(&bob)).await?;
        let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM consents").fetch_one(&mut *tx).await?;
        assert_eq!(seen, 0, "{template}: Bob sees none of Ada's");
        tx.rollback().await?;
        let mut sidecar = sqlx::Connection::connect(&db.url("pw_test_sidecar")?).await?;
        for (sql, expected) in [
            ("UPDATE consents SET text_version = 'other'", "42501"),
            ("DELETE FROM consents", "42501"),
            ("UPDATE consents SET withdrawn_at = now() WHERE withdrawn_at IS NOT NULL", "23514"),
        ] {
            let mut tx = harness::as_role(&mut sidecar, "parker_wallet_sidecar", &claims(&ada)).await?;
            let refused = sqlx::query(sql).execute(&mut *tx).await;
            let code = refused.err().as_ref().and_then(sqlstate);
            assert_eq!(code.as_deref(), Some(expected), "{template}: {sql}");
        }
    }
    Ok(())
}
