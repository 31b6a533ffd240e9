//! `/metrics` after a scripted run: every request counted by route (the route
//! table's name, never the raw path), method and status class, with its
//! latency; refused tokens and webhook signatures by reason; 403s by caller
//! class.

use harness::{metric as sample, TestApp};

const CARDS: &str = r#"route="/v1/wallet/payment-methods",method="GET""#;

#[tokio::test]
async fn metrics_count_what_a_scripted_run_did() -> anyhow::Result<()> {
    let port = harness::free_port()?;
    let app = TestApp::wallet().with_stripe().configure(move |c| c.admin_port = Some(port)).start().await?;
    let ada = app.new_traveler().await?;
    let before = app.sidecar.metrics().await?;
    assert_eq!(sample(&before, &format!("parker_wallet_http_requests_total{{{CARDS},status_class=\"2xx\"}}")), 0);

    // Three lists, then three refused tokens on the same route.
    for _ in 0..3 {
        assert!(app.traveler(&ada).get("/v1/wallet/payment-methods").await?.status.is_success());
    }
    let expired = harness::traveler_token(&ada.id, serde_json::json!({ "exp": 1_000 }));
    for token in [expired.as_str(), "not-a-jwt"] {
        let refused = harness::call(&app.sidecar, "GET", "/v1/wallet/payment-methods", token, None, None).await?;
        assert_eq!(refused.status.as_u16(), 401);
    }
    let missing = app.sidecar.request("GET", "/v1/wallet/payment-methods", None).await?;
    assert_eq!(missing.status.as_u16(), 401);
    // A card id in the path: named by the route, not by the id.
    let card = uuid::Uuid::new_v4().to_string();
    let gone = app.traveler(&ada).key("d1").delete(&format!("/v1/wallet/payment-methods/{card}")).await?;
    assert_eq!(gone.status.as_u16(), 404);
    // No such route; a route the edge class may not use.
    assert_eq!(app.sidecar.request("GET", "/v1/nowhere", None).await?.status.as_u16(), 404);
    assert_eq!(app.sidecar.request("GET", "/metrics", None).await?.status.as_u16(), 403);
    // A webhook signed with another secret.
    let event = serde_json::json!({ "id": "evt_1", "type": "customer.updated", "data": { "object": {} } });
    let forged =
        harness::deliver_stripe_event(&app.sidecar, &event, "whsec_not_ours", chrono::Utc::now().timestamp()).await?;
    assert_eq!(forged.status.as_u16(), 400);

    let metrics = app.sidecar.metrics().await?;
    let total = |labels: &str, class: &str| {
        sample(&metrics, &format!("parker_wallet_http_requests_total{{{labels},status_class=\"{class}\"}}"))
    };
    assert_eq!((total(CARDS, "2xx"), total(CARDS, "4xx"), total(CARDS, "5xx")), (3, 3, 0), "{metrics}");
    let card_route = r#"route="/v1/wallet/payment-methods/{id}",method="DELETE""#;
    assert_eq!(total(card_route, "4xx"), 1, "{metrics}");
    assert!(!metrics.contains(&card), "a raw path in the metrics: {metrics}");
    assert_eq!(total(r#"route="unmatched",method="GET""#, "4xx"), 1, "{metrics}");
    assert_eq!(total(r#"route="/v1/webhooks/stripe",method="POST""#, "4xx"), 1, "{metrics}");

    // Latency: every answered request of the route in its histogram, +Inf = count.
    let histogram = "parker_wallet_http_request_duration_seconds";
    assert_eq!(sample(&metrics, &format!("{histogram}_count{{{CARDS}}}")), 6, "{metrics}");
    assert_eq!(sample(&metrics, &format!("{histogram}_bucket{{{CARDS},le=\"+Inf\"}}")), 6);
    assert!(sample(&metrics, &format!("{histogram}_bucket{{{CARDS},le=\"0.2\"}}")) <= 6);
    // Nothing in flight but the scrape itself.
    assert_eq!(sample(&metrics, &format!("parker_wallet_http_requests_in_flight{{{CARDS}}}")), 0);
    assert_eq!(sample(&metrics, r#"parker_wallet_http_requests_in_flight{route="/metrics",method="GET"}"#), 1);

    // Refusals by reason and class.
    for reason in ["expired", "malformed", "missing"] {
        let series = format!("parker_wallet_tokens_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(sample(&metrics, &series), 1, "{reason}: {metrics}");
    }
    assert_eq!(sample(&metrics, r#"parker_wallet_webhook_signatures_refused_total{reason="mismatch"}"#), 1);
    assert_eq!(sample(&metrics, r#"parker_wallet_http_forbidden_total{caller_class="edge"}"#), 1, "{metrics}");
    Ok(())
}
