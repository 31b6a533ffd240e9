//! The Edge Functions as the Supabase CLI lays them out (supabase/functions):
//! each type-checks and lints clean under Deno (the reference page in web/
//! too), each is declared in supabase/config.toml, and each serves its routes
//! under Deno against a real sidecar, over the socket and over the TCP port.

use std::process::Command;

use harness::app::{booking_request, TestApp};
use harness::duffel_fake::FakeDuffel;
use harness::twilio_fake::FakeTwilio;
use harness::web::{EdgeGateway, GatewaySettings, SidecarLink};
use harness::WEBHOOK_SECRET;
use hyper::StatusCode;
use kms_sidecar::config::TcpSettings;
use kms_sidecar::domain::CallerClass;
use serde_json::json;

const PHONE: &str = "+33611223344";
const SERVICE_TOKEN: &str = "edge-functions-service-token";

#[test]
fn every_function_type_checks_lints_clean_and_is_declared() -> anyhow::Result<()> {
    let functions = harness::crate_dir().join("../supabase/functions");
    let config = std::fs::read_to_string(functions.join("../config.toml"))?;
    let mut entry_points = Vec::new();
    for entry in std::fs::read_dir(&functions)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if path.is_dir() && !name.starts_with('_') {
            assert!(config.contains(&format!("[functions.{name}]")), "supabase/config.toml does not declare {name}");
            entry_points.push(format!("{name}/index.ts"));
        }
    }
    entry_points.sort();
    assert_eq!(
        entry_points,
        [
            "book-campaign/index.ts",
            "bookings/index.ts",
            "manage-payment-methods/index.ts",
            "privacy/index.ts",
            "profile/index.ts",
            "stripe-webhooks/index.ts",
            "verify-phone/index.ts"
        ]
    );
    let web = functions.join("../../web");
    let functions_config = functions.join("deno.json").display().to_string();
    let page_config = web.join("wallet/deno.json").display().to_string();
    // The functions; the local gateway with them; the page, with the DOM's types.
    let mut runs: Vec<(Vec<String>, &std::path::Path)> = vec![
        (["check".to_owned()].into_iter().chain(entry_points).collect(), &functions),
        (vec!["lint".into()], &functions),
        (vec!["check".into(), format!("--config={functions_config}"), "serve.ts".into()], &web),
        (vec!["lint".into(), format!("--config={functions_config}"), "serve.ts".into()], &web),
    ];
    let page = web.join("wallet");
    runs.push((vec!["check".into(), format!("--config={page_config}"), "src/main.ts".into()], &page));
    runs.push((vec!["lint".into()], &page));
    let deno = harness::web::deno()?;
    for (args, dir) in runs {
        let output = Command::new(&deno).args(&args).current_dir(dir).env("NO_COLOR", "1").output()?;
        assert!(
            output.status.success(),
            "deno {args:?} in {}: {}{}",
            dir.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The checked-in client types are what the sidecar generates today (the unit
/// test compares the TypeScript; this runs the command the docs name).
#[test]
fn the_client_types_are_generated_by_the_sidecar_command() -> anyhow::Result<()> {
    let binary = std::env::var("PW_SIDECAR_BIN")?;
    let output = Command::new(&binary).arg("api-types").output()?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let checked_in = std::fs::read(harness::crate_dir().join("../supabase/functions/_shared/api.ts"))?;
    assert!(output.stdout == checked_in, "run `kms-sidecar api-types > supabase/functions/_shared/api.ts`");
    let schema = Command::new(&binary).args(["api-types", "--schema"]).output()?;
    let schema: serde_json::Value = serde_json::from_slice(&schema.stdout)?;
    assert!(schema["$defs"]["CardView"]["properties"]["last4"].is_object(), "{schema}");
    assert_eq!(schema["x-routes"].as_array().map(Vec::len), Some(kms_sidecar::routes::api::catalogue().len()));
    Ok(())
}

/// Every function under Deno against a real sidecar, through the local
/// gateway as the app calls them: the wallet (a card saved, its consent
/// withdrawn and given again, made the default, a replay, deleted), a Stripe
/// event, the phone, the profile, a scheduled booking and its reading, the
/// export and the erasure; then the same functions over the TCP port with the
/// service token.
#[tokio::test]
async fn every_function_serves_its_routes_against_the_sidecar() -> anyhow::Result<()> {
    let twilio = FakeTwilio::start().await?;
    let duffel = FakeDuffel::start().await?;
    let tcp_port = harness::free_port()?;
    let app = TestApp::wallet()
        .with_stripe()
        .with_duffel(duffel.url.clone())
        .with_twilio(twilio.url.clone())
        .configure(move |config| {
            config.settings.tcp =
                Some(TcpSettings { listen: ([127, 0, 0, 1], tcp_port).into(), caller_class: CallerClass::Edge });
            config.env.push(("PW_SERVICE_TOKEN".into(), SERVICE_TOKEN.into()));
        })
        .start()
        .await?;
    let traveler = app.new_traveler().await?;
    let token = traveler.token.as_str();
    let localstripe = app.localstripe()?;
    let service_key = harness::service_role_key()?;
    let gateway = EdgeGateway::start(GatewaySettings {
        sidecar: SidecarLink::Socket(&app.sidecar.socket),
        localstripe: localstripe.clone(),
        demo_token: None,
        service_key: Some(service_key.clone()),
        port: 0,
    })
    .await?;
    let wallet = "/functions/v1/manage-payment-methods";

    // A card: SetupIntent, Stripe.js's part, saved with the PSD2 consent.
    let intent = gateway.call("POST", &format!("{wallet}/setup-intents"), token, Some("si-1"), None).await?;
    assert_eq!(intent.status, StatusCode::OK, "{}", intent.text);
    let setup_intent = intent.json["setup_intent_id"].as_str().unwrap_or_default().to_owned();
    harness::confirm_setup_intent(
        &localstripe,
        &setup_intent,
        intent.json["client_secret"].as_str().unwrap_or_default(),
        "4242424242424242",
    )
    .await?;
    let body = json!({ "setup_intent_id": setup_intent, "off_session_consent": { "text_version": "card-mit-fn" } });
    let added = gateway.call("POST", wallet, token, Some("add-1"), Some(body.clone())).await?;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    let card = added.json["data"]["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(added.json["data"]["off_session_consent"]["text_version"], "card-mit-fn");
    let replayed = gateway.call("POST", wallet, token, Some("add-1"), Some(body)).await?;
    assert_eq!(replayed.status, StatusCode::CREATED, "{}", replayed.text);
    assert_eq!(replayed.headers.get("idempotent-replayed").map(|v| v.as_bytes()), Some(&b"true"[..]));
    let withdrawn = gateway.call("DELETE", &format!("{wallet}/{card}/consent"), token, Some("w-1"), None).await?;
    assert_eq!(withdrawn.status, StatusCode::OK, "{}", withdrawn.text);
    assert!(withdrawn.json["data"]["withdrawn_at"].is_string(), "{}", withdrawn.text);
    let consent = json!({ "text_version": "card-mit-fn-2" });
    let given = gateway.call("POST", &format!("{wallet}/{card}/consent"), token, Some("c-1"), Some(consent)).await?;
    assert_eq!(given.status, StatusCode::CREATED, "{}", given.text);
    let default = gateway.call("POST", &format!("{wallet}/{card}/default"), token, Some("d-1"), None).await?;
    assert_eq!((default.status, default.json["data"]["is_default"].as_bool()), (StatusCode::OK, Some(true)));
    let listed = gateway.call("GET", wallet, token, None, None).await?;
    assert_eq!(listed.json["data"][0]["off_session_consent"]["text_version"], "card-mit-fn-2", "{}", listed.text);
    let not_json =
        gateway.request("POST", wallet, &[("authorization", &format!("Bearer {token}"))], b"{".to_vec()).await?;
    assert_eq!((not_json.status, not_json.json["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    let traversal =
        gateway.call("POST", &format!("{wallet}/../../v1/crypto/decrypt"), token, None, Some(json!({}))).await?;
    assert_eq!(traversal.status, StatusCode::NOT_FOUND, "{}", traversal.text);
    let anonymous = gateway.request("GET", wallet, &[], Vec::new()).await?;
    assert_eq!((anonymous.status, anonymous.json["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_token")));

    // Stripe's event: the raw bytes and signature pass through; a forged one is refused.
    let event = json!({ "id": "evt_fn_1", "object": "event", "type": "customer.updated", "created": 1_700_000_000,
                        "data": { "object": { "id": "cus_unknown", "object": "customer" } } });
    let bytes = event.to_string().into_bytes();
    let now = chrono::Utc::now().timestamp();
    let signature = kms_sidecar::stripe::signature::sign(&bytes, WEBHOOK_SECRET, now);
    let hook = [("stripe-signature", signature.as_str()), ("content-type", "application/json")];
    let received = gateway.request("POST", "/functions/v1/stripe-webhooks", &hook, bytes.clone()).await?;
    assert_eq!(
        (received.status, received.json["received"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{}",
        received.text
    );
    let forged = kms_sidecar::stripe::signature::sign(&bytes, "whsec_not_ours", now);
    let refused = gateway
        .request("POST", "/functions/v1/stripe-webhooks", &[("stripe-signature", forged.as_str())], bytes)
        .await?;
    assert_eq!((refused.status, refused.json["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_signature")));

    // The phone, then the profile it completes.
    app.marketing_profile(&traveler, "Ada", "Lovelace", "1990-12-10").await?;
    let before = gateway.call("GET", "/functions/v1/profile", token, None, None).await?;
    assert_eq!(before.status, StatusCode::OK, "{}", before.text);
    let started = gateway
        .call("POST", "/functions/v1/verify-phone", token, Some("p-1"), Some(json!({ "phone_number": PHONE })))
        .await?;
    assert_eq!(
        (started.status, started.json["data"]["status"].as_str()),
        (StatusCode::CREATED, Some("pending")),
        "{}",
        started.text
    );
    let code = twilio.codes_sent_to(PHONE).pop().unwrap_or_default();
    let checked = gateway
        .call("POST", "/functions/v1/verify-phone/check", token, Some("p-2"), Some(json!({ "code": code })))
        .await?;
    assert_eq!(
        (checked.status, checked.json["data"]["phone_verified"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{}",
        checked.text
    );
    let after = gateway.call("GET", "/functions/v1/profile", token, None, None).await?;
    let score = |r: &harness::Response| r.json["data"]["completeness_score"].as_i64().unwrap_or(-1);
    assert!(score(&after) > score(&before), "{} then {}", before.text, after.text);
    assert!(!after.json["data"]["missing_fields"].to_string().contains("phone_verified"), "{}", after.text);

    // The scheduler books; the traveler reads the booking.
    let campaign = app.consented_campaign(&traveler, "Lisbon in spring").await?;
    let booking = booking_request(&campaign, &format!("off_{}", uuid::Uuid::new_v4().simple()));
    let scheduler = format!("Bearer {service_key}");
    let booked = gateway
        .request(
            "POST",
            "/functions/v1/book-campaign",
            &[("authorization", &scheduler)],
            booking.to_string().into_bytes(),
        )
        .await?;
    assert_eq!(
        (booked.status, booked.json["data"]["state"].as_str()),
        (StatusCode::CREATED, Some("captured")),
        "{}",
        booked.text
    );
    let id = booked.json["data"]["id"].as_str().unwrap_or_default().to_owned();
    let shown = gateway.call("GET", &format!("/functions/v1/bookings/{id}"), token, None, None).await?;
    assert_eq!(
        (shown.status, shown.json["data"]["id"].as_str()),
        (StatusCode::OK, Some(id.as_str())),
        "{}",
        shown.text
    );
    let as_traveler = gateway.call("POST", "/functions/v1/book-campaign", token, None, Some(booking)).await?;
    assert_eq!(as_traveler.status, StatusCode::UNAUTHORIZED, "only the scheduler books: {}", as_traveler.text);

    // Over the TCP port: the service token in its own header, the traveler's in Authorization.
    let tcp = EdgeGateway::start(GatewaySettings {
        sidecar: SidecarLink::Tcp { url: format!("http://127.0.0.1:{tcp_port}"), service_token: SERVICE_TOKEN.into() },
        localstripe: localstripe.clone(),
        demo_token: None,
        service_key: None,
        port: 0,
    })
    .await?;
    let over_tcp = tcp.call("GET", wallet, token, None, None).await?;
    assert_eq!(
        (over_tcp.status, over_tcp.json["data"][0]["id"].as_str()),
        (StatusCode::OK, Some(card.as_str())),
        "{}",
        over_tcp.text
    );
    let wrong = EdgeGateway::start(GatewaySettings {
        sidecar: SidecarLink::Tcp {
            url: format!("http://127.0.0.1:{tcp_port}"),
            service_token: "not-the-token".into(),
        },
        localstripe: localstripe.clone(),
        demo_token: None,
        service_key: None,
        port: 0,
    })
    .await?;
    let refused = wrong.call("GET", wallet, token, None, None).await?;
    // The deployment's fault, not the traveler's: never "your session ended".
    assert_eq!(
        (refused.status, refused.json["code"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("sidecar_unavailable")),
        "{}",
        refused.text
    );

    // The card deleted; the export streams through; the erasure needs its confirmation.
    let deleted = gateway.call("DELETE", &format!("{wallet}/{card}"), token, Some("del-1"), None).await?;
    assert_eq!(
        (deleted.status, deleted.json["deleted"].as_str()),
        (StatusCode::OK, Some(card.as_str())),
        "{}",
        deleted.text
    );
    let gone = gateway.call("DELETE", &format!("{wallet}/{card}"), token, Some("del-2"), None).await?;
    assert_eq!(
        (gone.status, gone.json["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("card_not_found")),
        "{}",
        gone.text
    );
    let export = gateway.call("GET", "/functions/v1/privacy/export", token, None, None).await?;
    assert_eq!(export.status, StatusCode::OK, "{}", export.text);
    assert!(export.headers.get("content-disposition").is_some());
    assert_eq!(export.json["profile"]["phone_number"], PHONE, "{}", export.text);
    let unconfirmed = gateway
        .call("DELETE", "/functions/v1/privacy/account", token, Some("e-1"), Some(json!({ "confirmation": "yes" })))
        .await?;
    assert_eq!(
        (unconfirmed.status, unconfirmed.json["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("confirmation_required")),
        "{}",
        unconfirmed.text
    );
    let confirmation = json!({ "confirmation": kms_sidecar::privacy::erase::CONFIRMATION });
    let erased =
        gateway.call("DELETE", "/functions/v1/privacy/account", token, Some("e-2"), Some(confirmation)).await?;
    assert_eq!(
        (erased.status, erased.json["data"]["state"].as_str()),
        (StatusCode::ACCEPTED, Some("requested")),
        "{}",
        erased.text
    );
    Ok(())
}
