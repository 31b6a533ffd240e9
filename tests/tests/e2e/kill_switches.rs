//! Kill switches thrown mid-run (`kill_switch.*` in `feature_flags`): within
//! seconds, without a restart, the route answers 503 `feature_disabled` with
//! Retry-After; reads go on; a booking already in flight finishes its saga.

use std::time::{Duration, Instant};

use harness::duffel_fake::FakeDuffel;
use harness::fake_http::Fault;
use harness::{Response, TestApp};
use serde_json::json;

async fn throw(app: &TestApp, feature: &str, thrown: bool) -> anyhow::Result<()> {
    let updated = sqlx::query("UPDATE feature_flags SET enabled = $2 WHERE name = 'kill_switch.' || $1")
        .bind(feature)
        .bind(thrown)
        .execute(&mut app.db.admin().await?)
        .await?;
    anyhow::ensure!(updated.rows_affected() == 1, "no switch kill_switch.{feature}");
    Ok(())
}

/// Asks (with a request that changes nothing) until the sidecar has read the
/// switch: it reads them every 2 s.
async fn until<F, Fut>(what: &str, mut probe: F, seen: impl Fn(&Response) -> bool) -> anyhow::Result<Response>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Response>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = probe().await?;
        if seen(&response) {
            return Ok(response);
        }
        anyhow::ensure!(Instant::now() < deadline, "{what}: still {} {}", response.status, response.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn disabled(response: &Response) -> bool {
    response.status.as_u16() == 503 && response.json["code"] == "feature_disabled"
}

#[tokio::test]
async fn wallet_switches_turn_routes_off_and_on_without_a_restart() -> anyhow::Result<()> {
    let app = TestApp::wallet().with_stripe().start().await?;
    let ada = app.new_traveler().await?;
    let card = app.saved_card(&ada, "4242424242424242").await?;

    throw(&app, "card_saves", true).await?;
    // An empty add is refused for its body while saves are on: no card is made.
    let add = || app.traveler(&ada).post("/v1/wallet/payment-methods", json!({}));
    let off = until("card saves off", add, disabled).await?;
    assert_eq!(off.headers.get("retry-after").map(|v| v.as_bytes()), Some(&b"60"[..]), "{}", off.text);
    let intent = app.traveler(&ada).key("s1").post_empty("/v1/wallet/setup-intents").await?;
    assert!(disabled(&intent), "{}", intent.text);
    // Reads, and writes other than saves, go on.
    assert!(app.traveler(&ada).get("/v1/wallet/payment-methods").await?.status.is_success());
    let default = format!("/v1/wallet/payment-methods/{card}/default");
    assert!(app.traveler(&ada).key("d1").post_empty(&default).await?.status.is_success());

    throw(&app, "wallet_writes", true).await?;
    let make_default = || app.traveler(&ada).post_empty(&default);
    until("wallet writes off", make_default, disabled).await?;
    assert!(app.traveler(&ada).get("/v1/wallet/payment-methods").await?.status.is_success());

    throw(&app, "wallet_writes", false).await?;
    throw(&app, "card_saves", false).await?;
    let back = until("card saves on", add, |r| r.status.as_u16() == 400).await?;
    assert_eq!(back.json["code"], "invalid_request", "{}", back.text);
    Ok(())
}

#[tokio::test]
async fn a_booking_in_flight_finishes_when_auto_booking_is_switched_off() -> anyhow::Result<()> {
    let duffel = FakeDuffel::start().await?;
    // The airline takes its time (within Duffel's timeout): the booking is in
    // flight while the switch is thrown and read.
    let app = TestApp::wallet()
        .with_stripe()
        .with_duffel(duffel.url.clone())
        .configure(|config| config.settings.duffel.iter_mut().for_each(|duffel| duffel.timeout_ms = 20_000))
        .start()
        .await?;
    let ada = app.new_traveler().await?;
    app.saved_card(&ada, "4242424242424242").await?;
    let campaign = app.consented_campaign(&ada, "Rome").await?;
    duffel.faults.inject("POST", "/air/orders", Fault::Slow(Duration::from_secs(8)));
    let body = json!({
        "campaign_id": campaign, "offer_id": "off_inflight", "amount": 12_000, "currency": "eur",
        "passengers": [{ "id": "pas_1", "given_name": "Ada", "family_name": "Lovelace", "born_on": "1815-12-10" }],
    });
    let booking = app.traveler(&ada).key("b1").post("/v1/bookings", body);
    let state = || async {
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM booking_charges WHERE user_id = $1::uuid")
            .bind(&ada.id)
            .fetch_optional(&mut app.db.admin().await?)
            .await?;
        Ok::<_, anyhow::Error>(state.unwrap_or_default())
    };
    let switch_off = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while state().await? != "ordering" {
            anyhow::ensure!(Instant::now() < deadline, "the booking never reached Duffel");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        throw(&app, "auto_booking", true).await?;
        // A new booking with no body is refused for its body while bookings are on.
        let book = || app.traveler(&ada).key("probe").post("/v1/bookings", json!({}));
        until("auto-booking off", book, disabled).await?;
        anyhow::ensure!(state().await? == "ordering", "the switch was seen while the booking was in flight");
        Ok(())
    };
    let (finished, switched) = tokio::join!(booking, switch_off);
    switched?;
    let finished = finished?;
    assert_eq!(finished.json["data"]["state"], "captured", "{}", finished.text);
    let id = finished.json["data"]["id"].as_str().unwrap_or_default();
    assert!(app.traveler(&ada).get(&format!("/v1/bookings/{id}")).await?.status.is_success());
    Ok(())
}
