//! docs/runbooks/secrets-rotation.md, where a command exists: the sidecar
//! reads its secrets at start, so each rotation is a restart with new values,
//! on the same database.

use harness::{deliver_stripe_event, Sidecar, TestApp, WEBHOOK_SECRET};
use hyper::StatusCode;
use serde_json::json;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn event() -> serde_json::Value {
    json!({ "id": format!("evt_{}", uuid::Uuid::new_v4().simple()), "type": "rotation.check", "data": { "object": {} } })
}

#[tokio::test]
async fn a_webhook_secret_rotation_runs_with_both_then_the_new_one_only() -> anyhow::Result<()> {
    const OLD: &str = "whsec_rotation_old";
    let app = TestApp::wallet().with_stripe().start().await?;
    let TestApp { db: _db, sidecar, config } = app;
    drop(sidecar);

    // Step 2: both secrets listed; Stripe signs with either.
    let both_secrets = config.clone().with_env("PW_STRIPE_WEBHOOK_SECRETS", &format!("{OLD},{WEBHOOK_SECRET}"));
    let both = Sidecar::start_with(both_secrets).await?;
    for secret in [OLD, WEBHOOK_SECRET] {
        let delivered = deliver_stripe_event(&both, &event(), secret, now()).await?;
        assert_eq!(delivered.status, StatusCode::OK, "{secret}: {}", delivered.text);
    }
    drop(both);

    // Step 4: the old secret removed; its signatures are refused, nothing recorded.
    let new_only = Sidecar::start_with(config.with_env("PW_STRIPE_WEBHOOK_SECRETS", WEBHOOK_SECRET)).await?;
    let old = deliver_stripe_event(&new_only, &event(), OLD, now()).await?;
    assert_eq!((old.status, old.json["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_signature")));
    let new = deliver_stripe_event(&new_only, &event(), WEBHOOK_SECRET, now()).await?;
    assert_eq!(new.status, StatusCode::OK, "{}", new.text);
    Ok(())
}

#[tokio::test]
async fn a_legacy_jwt_secret_change_refuses_old_tokens_after_the_restart() -> anyhow::Result<()> {
    const NEW_SECRET: &str = "parker-wallet-test-jwt-secret-rotated-this-quarter";
    let app = TestApp::wallet().start().await?;
    let ada = app.new_traveler().await?;
    assert!(app.traveler(&ada).get("/v1/wallet/payment-methods").await?.status.is_success());
    let TestApp { db: _db, sidecar, config } = app;
    drop(sidecar);

    let restarted = Sidecar::start_with(config.with_env("PW_JWT_SECRET", NEW_SECRET)).await?;
    let list = |token: String| {
        let restarted = &restarted;
        async move { harness::call(restarted, "GET", "/v1/wallet/payment-methods", &token, None, None).await }
    };
    let old = list(ada.token.clone()).await?;
    assert_eq!((old.status, old.json["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_token")));
    let new = list(harness::traveler_token_signed(NEW_SECRET, &ada.id, json!({}))).await?;
    assert_eq!(new.status, StatusCode::OK, "{}", new.text);
    Ok(())
}
