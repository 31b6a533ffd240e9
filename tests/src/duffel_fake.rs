//! A fake of Duffel's order API, following its documented shapes: requests need
//! `Authorization: Bearer`, `Duffel-Version: v2` and a `{"data": ...}` body;
//! orders come back as `{"data": order}`; errors as
//! `{"meta": {"status", "request_id"}, "errors": [{"type", "code", "title", "message", "documentation_url"}]}`.
//! `GET /air/orders` lists newest first with `meta.after` cursors.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{json, Value};

use crate::fake_http::{json_reply, serve_on, Fault, Faults, Reply, Seen};

pub const DUFFEL_TOKEN: &str = "duffel_test_parker_wallet_e2e";

#[derive(Clone)]
pub struct FakeDuffel {
    pub url: String,
    pub faults: Arc<Faults>,
    orders: Arc<Mutex<Vec<Value>>>,
    /// Offers that are "no longer available" (a definite 422).
    gone_offers: Arc<Mutex<Vec<String>>>,
}

fn error(status: u16, kind: &str, code: &str, message: &str) -> Reply {
    json_reply(
        status,
        &json!({
            "meta": { "status": status, "request_id": format!("req_{}", uuid::Uuid::new_v4().simple()) },
            "errors": [{
                "type": kind,
                "code": code,
                "title": message,
                "message": message,
                "documentation_url": format!("https://duffel.com/docs/api/overview/errors#{code}"),
            }],
        }),
    )
}

fn fault_reply(status: u16) -> Reply {
    match status {
        422 => error(422, "validation_error", "offer_no_longer_available", "The offer is no longer available"),
        429 => error(429, "rate_limit_error", "rate_limit_exceeded", "Too many requests"),
        502 | 503 => error(status, "airline_error", "airline_unavailable", "The airline did not respond"),
        other => error(other, "api_error", "internal_server_error", "Something went wrong"),
    }
}

impl FakeDuffel {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on(0).await
    }

    /// On a given port (0: any free one), as the local stack runs it.
    pub async fn start_on(port: u16) -> anyhow::Result<Self> {
        let faults = Arc::new(Faults::default());
        let orders = Arc::new(Mutex::new(Vec::new()));
        let gone_offers = Arc::new(Mutex::new(Vec::new()));
        let (f, o, g) = (Arc::clone(&faults), Arc::clone(&orders), Arc::clone(&gone_offers));
        let url = serve_on(port, move |seen| {
            let (faults, orders, gone) = (Arc::clone(&f), Arc::clone(&o), Arc::clone(&g));
            async move { handle(&faults, &orders, &gone, seen).await }
        })
        .await?;
        Ok(Self { url, faults, orders, gone_offers })
    }

    pub fn offer_gone(&self, offer_id: &str) {
        self.gone_offers.lock().unwrap_or_else(PoisonError::into_inner).push(offer_id.to_owned());
    }

    /// Orders made for `booking_id` (by their metadata).
    pub fn orders_for(&self, booking_id: &str) -> Vec<Value> {
        let orders = self.orders.lock().unwrap_or_else(PoisonError::into_inner);
        orders.iter().filter(|o| o["metadata"]["booking_id"] == booking_id).cloned().collect()
    }
}

async fn handle(faults: &Faults, orders: &Mutex<Vec<Value>>, gone: &Mutex<Vec<String>>, seen: Seen) -> Reply {
    if seen.header("authorization") != Some(&format!("Bearer {DUFFEL_TOKEN}")) {
        return error(401, "authentication_error", "invalid_token", "The access token is not valid");
    }
    if seen.header("duffel-version") != Some("v2") {
        return error(400, "invalid_request_error", "unsupported_version", "Duffel-Version must be v2");
    }
    let path = seen.target.split('?').next().unwrap_or_default().to_owned();
    match (seen.method.as_str(), path.as_str()) {
        ("POST", "/air/orders") => {
            let fault = faults.take(&seen);
            match fault {
                Some(Fault::Fail(status)) => return fault_reply(status),
                Some(Fault::Hang) => return faults.hang().await,
                Some(Fault::Slow(delay)) => tokio::time::sleep(delay).await,
                _ => {}
            }
            let body: Value = serde_json::from_slice(&seen.body).unwrap_or(Value::Null);
            let data = &body["data"];
            let offer = data["selected_offers"][0].as_str().unwrap_or_default().to_owned();
            let payment = &data["payments"][0];
            let valid = offer.starts_with("off_")
                && data["type"] == "instant"
                && data["passengers"].as_array().is_some_and(|p| !p.is_empty())
                && payment["type"] == "balance"
                && payment["amount"].as_str().is_some_and(|a| a.parse::<f64>().is_ok())
                && payment["currency"]
                    .as_str()
                    .is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()));
            if !valid {
                return error(
                    422,
                    "validation_error",
                    "invalid_order",
                    "The order request does not follow the documented shape",
                );
            }
            if gone.lock().unwrap_or_else(PoisonError::into_inner).contains(&offer) {
                return fault_reply(422);
            }
            let order = json!({
                "id": format!("ord_{}", uuid::Uuid::new_v4().simple()),
                "booking_reference": format!("RZ{:04}", orders.lock().unwrap_or_else(PoisonError::into_inner).len()),
                "created_at": chrono_now(),
                "live_mode": false,
                "type": "instant",
                "total_amount": payment["amount"],
                "total_currency": payment["currency"],
                "passengers": data["passengers"],
                "metadata": data["metadata"],
                "payment_status": { "awaiting_payment": false, "paid_at": chrono_now() },
            });
            orders.lock().unwrap_or_else(PoisonError::into_inner).push(order.clone());
            match fault {
                Some(Fault::ActThenFail(status)) => fault_reply(status),
                Some(Fault::ActThenHang) => faults.hang().await,
                _ => json_reply(201, &json!({ "data": order })),
            }
        }
        ("GET", "/air/orders") => {
            if let Some(Fault::Fail(status)) = faults.take(&seen) {
                return fault_reply(status);
            }
            let mut all = orders.lock().unwrap_or_else(PoisonError::into_inner).clone();
            all.reverse();
            json_reply(200, &json!({ "data": all, "meta": { "limit": 200, "after": null, "before": null } }))
        }
        _ => error(404, "invalid_request_error", "not_found", "No such resource"),
    }
}

fn chrono_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
