//! [`DuffelPort`] over Duffel's HTTP API (hyper, rustls).

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::{DuffelError, DuffelOrder, DuffelPort, OrderRequest};
use crate::outbound::{exchange, https_client, HttpsClient, OutboundError};

pub struct HttpDuffel {
    client: HttpsClient,
    api_base: String,
    token: SecretString,
    timeout: Duration,
}

impl std::fmt::Debug for HttpDuffel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpDuffel")
            .field("api_base", &self.api_base)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Pages read when looking for a booking's order (200 orders a page).
const MAX_PAGES: usize = 25;

impl HttpDuffel {
    /// `api_base`: `https://api.duffel.com` in production.
    pub fn new(api_base: &str, token: SecretString, timeout: Duration) -> Result<Self, DuffelError> {
        Ok(Self { client: https_client(), api_base: api_base.trim_end_matches('/').to_owned(), token, timeout })
    }

    async fn call(
        &self,
        method: hyper::Method,
        path_and_query: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, DuffelError> {
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.api_base))
            .header("authorization", format!("Bearer {}", self.token.expose_secret()))
            .header("duffel-version", "v2")
            .header("accept", "application/json")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default())))
            .map_err(|e| DuffelError::Unavailable(format!("request: {e}")))?;
        let (status, bytes) = exchange("duffel", &self.client, request, self.timeout).await.map_err(|e| match e {
            OutboundError::Timeout => DuffelError::Timeout,
            OutboundError::Failed(detail) => DuffelError::Unavailable(detail),
        })?;
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        if (200..300).contains(&status) {
            return Ok(body);
        }
        Err(error_of(status, &body))
    }
}

/// Duffel's error envelope to our error: a 4xx, or any answer whose error code
/// says the order was not created, is definite; the rest may have acted.
fn error_of(status: u16, body: &serde_json::Value) -> DuffelError {
    let first = &body["errors"][0];
    let code = first["code"].as_str().unwrap_or("unknown").to_owned();
    let message = first["message"].as_str().or(first["title"].as_str()).unwrap_or("").to_owned();
    // 429 is a 4xx, yet we must not give up on a booking for it: leave it to the reconciler.
    if ((400..500).contains(&status) && status != 429) || code == "order_not_created" {
        DuffelError::Refused { status, code, message }
    } else {
        DuffelError::Unavailable(format!("{status} {code}: {message}"))
    }
}

fn order_of(data: &serde_json::Value) -> Option<DuffelOrder> {
    Some(DuffelOrder {
        id: data["id"].as_str()?.to_owned(),
        booking_reference: data["booking_reference"].as_str().map(str::to_owned),
    })
}

#[async_trait::async_trait]
impl DuffelPort for HttpDuffel {
    async fn create_order(&self, order: &OrderRequest<'_>) -> Result<DuffelOrder, DuffelError> {
        let body = json!({
            "data": {
                "type": "instant",
                "selected_offers": [order.offer_id],
                "passengers": order.passengers,
                "payments": [{
                    "type": "balance",
                    "amount": order.total.decimal(),
                    "currency": order.total.currency().to_ascii_uppercase(),
                }],
                "metadata": { "booking_id": order.booking_id.to_string() },
            }
        });
        let answer = self.call(hyper::Method::POST, "/air/orders", Some(body)).await?;
        order_of(&answer["data"]).ok_or_else(|| DuffelError::Unavailable("order answer without an id".into()))
    }

    async fn find_order(
        &self,
        booking_id: uuid::Uuid,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<DuffelOrder>, DuffelError> {
        let wanted = booking_id.to_string();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let query = match &after {
                Some(cursor) => format!("/air/orders?limit=200&after={cursor}"),
                None => "/air/orders?limit=200".to_owned(),
            };
            let page = self.call(hyper::Method::GET, &query, None).await?;
            let orders = page["data"].as_array().cloned().unwrap_or_default();
            let ours = |o: &&serde_json::Value| {
                let created = o["created_at"].as_str().and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok());
                o["metadata"]["booking_id"].as_str() == Some(wanted.as_str()) && created.is_none_or(|t| t >= since)
            };
            if let Some(found) = orders.iter().find(ours) {
                return Ok(order_of(found));
            }
            // Duffel documents no order for this list: read every page, never
            // stop early on the assumption that the newest come first.
            after = page["meta"]["after"].as_str().map(str::to_owned);
            if after.is_none() {
                return Ok(None);
            }
        }
        // Not having looked everywhere must not pass for "no order".
        Err(DuffelError::Unavailable(format!("more than {MAX_PAGES} pages of orders to search")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(code: &str) -> serde_json::Value {
        json!({"meta": {"status": 422, "request_id": "req_1"},
               "errors": [{"type": "invalid_state_error", "code": code, "title": "Offer gone", "message": "The offer is no longer available"}]})
    }

    #[test]
    fn four_hundreds_and_order_not_created_are_definite() {
        assert!(error_of(422, &envelope("offer_no_longer_available")).is_definite());
        assert!(error_of(404, &envelope("not_found")).is_definite());
        assert!(error_of(502, &envelope("order_not_created")).is_definite());
        match error_of(422, &envelope("offer_no_longer_available")) {
            DuffelError::Refused { code, message, .. } => {
                assert_eq!(code, "offer_no_longer_available");
                assert_eq!(message, "The offer is no longer available");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn server_errors_and_rate_limits_are_ambiguous() {
        assert!(!error_of(500, &envelope("internal_server_error")).is_definite());
        assert!(!error_of(503, &serde_json::Value::Null).is_definite());
        assert!(!error_of(429, &envelope("rate_limit_exceeded")).is_definite());
    }

    #[test]
    fn debug_hides_the_token() {
        let client =
            HttpDuffel::new("http://127.0.0.1:1", SecretString::from("duffel_test_secret"), Duration::from_secs(1))
                .unwrap();
        assert!(!format!("{client:?}").contains("duffel_test_secret"));
    }
}
