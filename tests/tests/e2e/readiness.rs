//! `/readyz` names each part the sidecar needs: the key provider, the
//! database (a query within a second) and Stripe (cached like the key
//! provider); one part down is 503 `not_ready`, naming it, with no provider's
//! error text.

use harness::TestApp;
use hyper::StatusCode;

#[tokio::test]
async fn readiness_names_each_part_and_what_is_down() -> anyhow::Result<()> {
    let app = TestApp::wallet().with_stripe().start().await?;
    let ready = app.sidecar.request("GET", "/readyz", None).await?;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    assert_eq!(
        (ready.json["status"].as_str(), ready.json["database"].as_str(), ready.json["stripe"].as_str()),
        (Some("ready"), Some("ok"), Some("ok")),
        "{}",
        ready.text
    );
    assert_eq!(ready.json["key_provider"]["status"], "ok");

    // Stripe and the database unreachable: named, and nothing of why.
    let closed = harness::free_port()?;
    let down = TestApp::wallet()
        .with_stripe_at(format!("http://127.0.0.1:{closed}/"))
        .configure(move |config| {
            let nowhere = format!("postgres://pw_test_sidecar@127.0.0.1:{closed}/nowhere");
            *config = config.clone().with_env("PW_DATABASE_URL", &nowhere);
        })
        .start()
        .await?;
    let not_ready = down.sidecar.request("GET", "/readyz", None).await?;
    assert_eq!(not_ready.status, StatusCode::SERVICE_UNAVAILABLE, "{}", not_ready.text);
    assert_eq!(
        (not_ready.json["status"].as_str(), not_ready.json["database"].as_str(), not_ready.json["stripe"].as_str()),
        (Some("not_ready"), Some("error"), Some("error")),
        "{}",
        not_ready.text
    );
    assert_eq!(not_ready.json["key_provider"]["status"], "ok");
    assert!(!not_ready.text.contains(&closed.to_string()), "an endpoint in the answer: {}", not_ready.text);
    Ok(())
}
