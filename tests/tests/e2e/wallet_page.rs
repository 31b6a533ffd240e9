//! The reference wallet page (web/) in headless Chromium, against the Edge
//! Functions under Deno and a real sidecar, Stripe (localstripe's Stripe.js
//! and API), Duffel's and Twilio's fakes. The browser part is
//! tests/browser/wallet_page.cjs; this side sets the stage and judges what it
//! saw: no WCAG 2.1 A/AA violation on any page (axe-core), keyboard-only card
//! saving, the PSD2 consent enforced and recorded with its text version, the
//! phone verified, 3-D Secure completed, no horizontal scrolling at 375×812,
//! and a hostile name shown as text with nothing executed under the CSP.
//! Screenshots of each page land in docs/screenshots/.

use harness::app::{booking_request, TestApp};
use harness::duffel_fake::FakeDuffel;
use harness::twilio_fake::FakeTwilio;
use harness::web::{EdgeGateway, GatewaySettings, SidecarLink};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NEEDS_3DS: &str = "4000002760003184";
const PHONE: &str = "+33612345678";
/// What a hostile traveler puts in their name: it must show as text.
const HOSTILE_NAME: &str = "<img src=x onerror=\"window.__xss=true;alert(1)\">";

#[tokio::test]
async fn a_traveler_uses_the_wallet_page_in_chromium() -> anyhow::Result<()> {
    let twilio = FakeTwilio::start().await?;
    let duffel = FakeDuffel::start().await?;
    let port = harness::free_port()?;
    let page_url = format!("http://127.0.0.1:{port}");
    let link = format!("{page_url}/bookings/{{booking_id}}/authenticate");
    let app = TestApp::wallet()
        .with_stripe()
        .with_duffel(duffel.url.clone())
        .with_twilio(twilio.url.clone())
        .configure(move |config| config.settings.bookings.authentication_url = link)
        .start()
        .await?;
    let traveler = app.new_traveler().await?;
    // The name written as the app writes it (PostgREST, under RLS as the traveler).
    let mut conn = app.db.traveler().await?;
    let mut tx = harness::as_traveler(&mut conn, &harness::claims(&traveler.id)).await?;
    sqlx::query("INSERT INTO traveler_profiles (user_id, first_name) VALUES ($1::uuid, $2)")
        .bind(&traveler.id)
        .bind(HOSTILE_NAME)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;

    // A booking waiting for 3-D Secure, on a card that asks for it; and a card
    // that expired, which the page must flag.
    app.saved_card(&traveler, NEEDS_3DS).await?;
    sqlx::query(
        "INSERT INTO payment_methods (user_id, stripe_customer_id, stripe_payment_method_id, encrypted_card_data,
                                      brand, last4, exp_month, exp_year, created_at)
         SELECT user_id, stripe_customer_id, 'pm_expired_page', '\\x02', 'visa', '0005', 1, 2020, now() - interval '2 days'
           FROM wallet_customers WHERE user_id = $1::uuid",
    )
    .bind(&traveler.id)
    .execute(&mut app.db.admin().await?)
    .await?;
    let campaign = app.consented_campaign(&traveler, "Lisbon in spring").await?;
    let booking = booking_request(&campaign, &format!("off_{}", uuid::Uuid::new_v4().simple()));
    let booked = app.traveler(&traveler).key("page-3ds").post("/v1/bookings", booking).await?;
    assert_eq!(booked.json["data"]["state"], "requires_authentication", "{}", booked.text);
    let booking_id = booked.json["data"]["id"].as_str().unwrap_or_default().to_owned();
    let emailed: Value = sqlx::query_scalar("SELECT payload FROM notification_outbox WHERE user_id = $1::uuid")
        .bind(&traveler.id)
        .fetch_one(&mut app.db.admin().await?)
        .await?;
    assert_eq!(
        emailed["link"],
        format!("{page_url}/bookings/{booking_id}/authenticate"),
        "the email links to the page"
    );

    let _gateway = EdgeGateway::start(GatewaySettings {
        sidecar: SidecarLink::Socket(&app.sidecar.socket),
        localstripe: app.localstripe()?,
        demo_token: Some(traveler.token.clone()),
        service_key: None,
        port,
    })
    .await?;
    // The demo token only to the page itself: not to another site's page, nor to
    // a name rebound to loopback (DNS rebinding); no function by a prototype's name.
    let status = |request: String| async move {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        anyhow::Ok(String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned())
    };
    let ask = |host: &str, origin: &str, path: &str| {
        format!("POST {path} HTTP/1.1\r\nHost: {host}\r\n{origin}Content-Length: 0\r\nConnection: close\r\n\r\n")
    };
    let own = format!("127.0.0.1:{port}");
    assert!(status(ask(&own, "", "/demo/session")).await?.contains(" 200"), "the page's own sign-in");
    assert!(status(ask(&format!("rebound.example:{port}"), "", "/demo/session")).await?.contains(" 421"));
    let foreign = "Origin: https://evil.example\r\n";
    assert!(status(ask(&own, foreign, "/demo/session")).await?.contains(" 403"));
    assert!(status(ask(&own, "", "/functions/v1/constructor")).await?.contains(" 404"));

    let shots = harness::crate_dir().join("../docs/screenshots");
    std::fs::create_dir_all(&shots)?;
    let output = tokio::process::Command::new("node")
        .arg(harness::crate_dir().join("browser/wallet_page.cjs"))
        .args([page_url.as_str(), &shots.display().to_string(), &booking_id, &twilio.url, PHONE])
        .env("NODE_PATH", std::env::var("PW_NODE_MODULES")?)
        .output()
        .await?;
    let printed = String::from_utf8_lossy(&output.stdout);
    let seen: Value = serde_json::from_str(printed.trim().lines().last().unwrap_or("null")).unwrap_or(Value::Null);
    assert!(output.status.success(), "the browser run failed: {printed}\n{}", String::from_utf8_lossy(&output.stderr));

    // Accessibility: every page, both sizes.
    let pages = seen["axe"].as_object().map(|pages| pages.len()).unwrap_or_default();
    assert_eq!(pages, 8, "axe ran on every page: {seen}");
    for (page, violations) in seen["axe"].as_object().into_iter().flatten() {
        assert_eq!(violations, &json!([]), "axe found WCAG 2.1 A/AA violations on {page}");
    }
    assert!(
        seen["mobile_overflow"].as_i64() <= Some(0) && seen["mobile_overflow_adding"].as_i64() <= Some(0),
        "{seen}"
    );

    // The PSD2 consent: refused unticked (focus sent to the box), recorded with its version when ticked.
    assert!(seen["consent_refused"].as_str().is_some_and(|m| m.contains("Tick the box")), "{seen}");
    assert_eq!(seen["focus_after_refusal"], "card-consent");
    assert_eq!(seen["cards_while_refused"], 2, "nothing saved without the consent: {seen}");
    assert_eq!(
        seen["expired_flagged"],
        json!(["Visa ending 0005"]),
        "the expired card, and only it, is flagged: {seen}"
    );
    let cards = app.traveler(&traveler).get("/v1/wallet/payment-methods").await?;
    let saved: Vec<(String, bool, String)> = cards.json["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let version = c["off_session_consent"]["text_version"].as_str().unwrap_or_default().to_owned();
            (c["last4"].as_str().unwrap_or_default().to_owned(), c["is_default"] == true, version)
        })
        .collect();
    let page_consent = std::fs::read_to_string(harness::crate_dir().join("../web/wallet/src/consent.ts"))?;
    let version =
        page_consent.split("CARD_CONSENT_VERSION = \"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("?");
    assert_eq!(
        saved,
        [
            ("4444".to_owned(), true, version.to_owned()),
            ("3184".to_owned(), false, String::new()),
            ("0005".to_owned(), false, String::new())
        ],
        "4242 saved by keyboard then deleted, 4444 saved and made the default, 3184's consent withdrawn: {seen}"
    );
    assert_eq!(seen["cards_after_escape"], 4, "Escape keeps the card");
    assert_eq!(seen["withdrawn"], true, "{seen}");

    // The phone, from the profile's recommendation.
    assert!(seen["score_after_phone"].as_i64() > seen["score_with_card"].as_i64(), "{seen}");
    assert_eq!(twilio.codes_sent_to(PHONE).len(), 1);

    // 3-D Secure completed on the page the email links to, then resumed.
    assert!(seen["final_state"].as_str().is_some_and(|s| s.contains("Your flight is booked")), "{seen}");
    let after = app.traveler(&traveler).get(&format!("/v1/bookings/{booking_id}")).await?;
    assert_eq!(after.json["data"]["state"], "captured", "{}", after.text);

    // XSS: the name shown as the text it is, nothing run, no dialog, a CSP without unsafe-inline.
    assert_eq!(seen["greeting"], format!("Hello, {HOSTILE_NAME}"), "{seen}");
    assert_eq!(seen["script_ran"], false);
    assert_eq!(seen["dialogs"], json!([]), "{seen}");
    let csp = seen["csp"].as_str().unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(seen["csp_violations"], json!([]), "{seen}");
    for shot in
        ["sign-in", "add-card", "delete-card", "wallet-desktop", "wallet-mobile", "authenticate", "authenticated"]
    {
        assert!(shots.join(format!("{shot}.png")).exists(), "{shot}.png");
    }
    Ok(())
}
