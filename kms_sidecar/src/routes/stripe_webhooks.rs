//! `POST /v1/webhooks/stripe`: Stripe's events, forwarded byte for byte (raw body
//! and `Stripe-Signature`) by the public function that receives them. The
//! signature is checked on the raw bytes before anything is parsed; the event
//! is then applied by `wallet::events`.

use hyper::StatusCode;
use serde_json::Value;

use super::error::ApiError;
use super::views::WebhookReceiptView;
use super::{answer, Answer};
use crate::state::AppState;
use crate::stripe::signature;

pub async fn receive(state: &AppState, signature: Option<&str>, body: &[u8]) -> Result<Answer, ApiError> {
    let wallet = state.wallet().filter(|wallet| wallet.stripe.is_some()).ok_or(ApiError::NotConfigured)?;
    if state.webhook_secrets.is_empty() {
        return Err(ApiError::NotConfigured);
    }
    let tolerance = state.settings.stripe.as_ref().map_or(300, |s| s.webhook_tolerance_secs);
    let now = chrono::Utc::now().timestamp();
    signature::verify(signature, body, &state.webhook_secrets, tolerance, now).map_err(ApiError::InvalidSignature)?;

    let event: Value = serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("event: {e}")))?;
    let (Some(id), Some(kind)) = (event["id"].as_str(), event["type"].as_str()) else {
        return Err(ApiError::BadRequest("event without id or type".into()));
    };
    // Refused (400) before anything is done, rather than failing later (500) and
    // being retried by Stripe for days: what the table cannot hold.
    if !signature::is_event_id(id) {
        return Err(ApiError::BadRequest("the event id is not of the form evt_[A-Za-z0-9_]+".into()));
    }
    if signature::holds_nul(&event) {
        return Err(ApiError::BadRequest("the event holds a NUL character, which cannot be stored".into()));
    }
    let receipt = wallet.apply_stripe_event(id, kind, &event).await?;
    answer(StatusCode::OK, &WebhookReceiptView::from(receipt))
}
