//! The GDPR export: one JSON document, streamed, compared field by field with
//! the database and with what the Stripe emulator holds.

use harness::duffel_fake::FakeDuffel;
use harness::{localstripe_get, TestApp};
use hyper::StatusCode;
use serde_json::{json, Value};

const EXPORT: &str = "/v1/privacy/export";

/// Rows of `sql` (a query of `to_jsonb` rows, $1 the traveler) as JSON.
async fn rows(app: &TestApp, sql: &str, traveler: &str) -> anyhow::Result<Vec<Value>> {
    Ok(sqlx::query_scalar(sql).bind(traveler).fetch_all(&mut app.db.admin().await?).await?)
}

#[tokio::test]
async fn the_export_holds_what_the_database_and_stripe_hold_on_the_traveler() -> anyhow::Result<()> {
    let duffel = FakeDuffel::start().await?;
    let app = TestApp::wallet().with_stripe().with_duffel(duffel.url.clone()).start().await?;
    let (ada, bob) = (app.new_traveler().await?, app.new_traveler().await?);
    app.marketing_profile(&ada, "Ada", "Lovelace", "1815-12-10").await?;
    let mut admin = app.db.admin().await?;
    // A long history: the export streams it.
    for n in 0..300 {
        sqlx::query("UPDATE traveler_profiles SET last_name = $2 WHERE user_id = $1::uuid")
            .bind(&ada.id)
            .bind(format!("Lovelace {n}"))
            .execute(&mut admin)
            .await?;
    }
    let card = app.saved_card(&ada, "4242424242424242").await?;
    let campaign: String = sqlx::query_scalar(
        "INSERT INTO campaigns (user_id, name, consent_at, consent_text_version)
         VALUES ($1::uuid, 'Lisbon', now(), 'campaign-mit-1') RETURNING id::text",
    )
    .bind(&ada.id)
    .fetch_one(&mut admin)
    .await?;
    let passengers =
        json!([{ "id": "pas_1", "given_name": "Ada", "family_name": "Lovelace", "born_on": "1815-12-10" }]);
    let body = json!({ "campaign_id": campaign, "offer_id": "off_export", "amount": 12_000, "currency": "eur", "passengers": passengers });
    let booked = app.traveler(&ada).key("export-1").post("/v1/bookings", body).await?;
    assert_eq!(booked.json["data"]["state"], "captured", "{}", booked.text);

    let export = app.traveler(&ada).get(EXPORT).await?;
    assert_eq!(export.status, StatusCode::OK, "{}", export.text);
    assert_eq!(export.content_type.as_deref(), Some("application/json"));
    assert!(export.headers.get("content-length").is_none(), "streamed, not sized up front");
    assert_eq!(export.headers["cache-control"], "no-store");
    let doc = &export.json;
    assert_eq!(
        (doc["format"].as_str(), doc["user_id"].as_str()),
        (Some("parker-wallet/export-1"), Some(ada.id.as_str()))
    );

    let one = |sql: &'static str| {
        let (app, id) = (&app, ada.id.clone());
        async move { anyhow::Ok(rows(app, sql, &id).await?.into_iter().next().unwrap_or(Value::Null)) }
    };
    assert_eq!(doc["profile"], one("SELECT to_jsonb(p) FROM traveler_profiles p WHERE user_id = $1::uuid").await?);
    assert_eq!(
        doc["completion"],
        one("SELECT to_jsonb(t) - 'id' FROM profile_completion_tracking t WHERE user_id = $1::uuid").await?
    );
    for (key, sql) in [
        ("consents", "SELECT to_jsonb(c) FROM consents c WHERE user_id = $1::uuid ORDER BY granted_at, id"),
        ("campaigns", "SELECT to_jsonb(c) FROM campaigns c WHERE user_id = $1::uuid ORDER BY created_at, id"),
        (
            "audit",
            "SELECT to_jsonb(a) - 'personal_salt' FROM traveler_data_audit a WHERE user_id = $1::uuid ORDER BY chain_seq",
        ),
        ("notifications", "SELECT to_jsonb(o) FROM notification_outbox o WHERE user_id = $1::uuid ORDER BY created_at, id"),
    ] {
        assert_eq!(doc[key], Value::Array(rows(&app, sql, &ada.id).await?), "{key}");
    }
    assert!(doc["audit"].as_array().map_or(0, Vec::len) > 300, "the whole history");
    assert_eq!(doc["consents"].as_array().map(Vec::len), Some(3), "marketing, card and campaign consents");

    // Cards: the row (no ciphertext) and its sealed metadata opened for the owner.
    let cards = rows(
        &app,
        "SELECT to_jsonb(c) - 'encrypted_card_data' - 'encryption_version' FROM payment_methods c WHERE user_id = $1::uuid",
        &ada.id,
    )
    .await?;
    let mut exported_card = doc["cards"][0].clone();
    let metadata = exported_card.as_object_mut().and_then(|card| card.remove("metadata")).unwrap_or_default();
    assert_eq!(Value::Array(vec![exported_card]), Value::Array(cards.clone()));
    assert_eq!(cards[0]["id"], card.as_str());
    assert_eq!((metadata["last4"].as_str(), metadata["brand"].as_str()), (Some("4242"), Some("visa")), "{metadata}");
    assert!(doc["cards"][0].get("encrypted_card_data").is_none(), "no ciphertext");

    // Bookings: the row, its history, and the passengers opened.
    let booking = &doc["bookings"][0];
    assert_eq!(booking["passengers"], passengers);
    assert!(booking.get("passengers_sealed").is_none(), "no ciphertext");
    let row = one("SELECT to_jsonb(b) - 'passengers_sealed' - 'request_fingerprint' FROM booking_charges b WHERE user_id = $1::uuid").await?;
    let history =
        rows(&app, "SELECT to_jsonb(e) FROM booking_charge_events e WHERE user_id = $1::uuid ORDER BY id", &ada.id)
            .await?;
    let mut expected = row.clone();
    expected["history"] = Value::Array(history);
    expected["passengers"] = passengers.clone();
    assert_eq!(booking, &expected);

    // What Stripe holds, fetched live: the same as the emulator answers.
    let customer_id: String =
        sqlx::query_scalar("SELECT stripe_customer_id FROM wallet_customers WHERE user_id = $1::uuid")
            .bind(&ada.id)
            .fetch_one(&mut admin)
            .await?;
    let localstripe = app.localstripe()?;
    let customer = localstripe_get(&localstripe, &format!("/v1/customers/{customer_id}")).await?.json;
    assert_eq!(doc["stripe"]["customer"], customer);
    let methods =
        localstripe_get(&localstripe, &format!("/v1/payment_methods?customer={customer_id}&type=card")).await?.json;
    assert_eq!(doc["stripe"]["payment_methods"], methods["data"]);
    assert_eq!(doc["stripe"]["payment_methods"].as_array().map(Vec::len), Some(1));

    // Bob's export holds nothing of Ada's.
    let theirs = app.traveler(&bob).get(EXPORT).await?;
    assert_eq!(theirs.status, StatusCode::OK);
    assert!(!theirs.text.contains(&ada.id) && !theirs.text.contains("Lovelace"), "{}", theirs.text);
    assert_eq!((theirs.json["profile"].clone(), theirs.json["stripe"].clone()), (Value::Null, Value::Null));
    for key in ["cards", "consents", "bookings", "audit"] {
        assert_eq!(theirs.json[key], json!([]), "{key}");
    }
    // No token, no export.
    assert_eq!(app.sidecar.request("GET", EXPORT, None).await?.status, StatusCode::UNAUTHORIZED);
    Ok(())
}
