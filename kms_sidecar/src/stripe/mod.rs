//! Stripe, as the wallet and the bookings need it: the port (a small trait and
//! the values it speaks in), its implementation over the official API client
//! ([`client`], async-stripe), and webhook signatures ([`signature`]). Tests can
//! put a scripted fake behind the same trait for what the emulator cannot do
//! (declines, idempotent replays).

mod client;
pub mod signature;

use std::collections::HashMap;

use secrecy::SecretString;

pub use client::AsyncStripe;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StripeError {
    /// Stripe refused the request (4xx): final for this request.
    /// `payment_intent`: the PaymentIntent a refused confirmation left behind.
    #[error("Stripe refused the request ({status}): {message}")]
    Refused {
        status: u16,
        code: Option<String>,
        decline_code: Option<String>,
        message: String,
        payment_intent: Option<String>,
    },
    /// Stripe could not be reached, or failed (5xx): may be retried.
    #[error("Stripe is unavailable: {0}")]
    Unavailable(String),
    #[error("Stripe did not answer in time")]
    Timeout,
}

impl StripeError {
    /// A refusal of our own making, before any request (bad input).
    fn invalid(code: &str, message: String) -> Self {
        Self::Refused { status: 400, code: Some(code.to_owned()), decline_code: None, message, payment_intent: None }
    }
}

/// A SetupIntent for the browser: its id, and the client secret Stripe.js needs.
#[derive(Debug)]
pub struct CreatedSetupIntent {
    pub id: String,
    pub client_secret: SecretString,
}

/// What the wallet needs to know of a SetupIntent.
#[derive(Debug)]
pub struct SetupIntentView {
    pub customer_id: Option<String>,
    pub succeeded: bool,
    pub payment_method_id: Option<String>,
    /// For Stripe.js; handed back to the traveler, never stored.
    pub client_secret: Option<SecretString>,
}

/// What replaces a secret in anything stored (idempotent answers, Stripe events).
pub const REDACTED: &str = "[redacted]";

/// Replaces, anywhere in `value`, the value of a `client_secret` field and any
/// string that holds a Stripe client secret (`..._secret_...`): stored answers
/// and events keep what a replay or an audit needs, never what lets someone
/// confirm a payment or read its details.
pub fn redact_client_secrets(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                if name == "client_secret" && !field.is_null() {
                    *field = serde_json::Value::from(REDACTED);
                } else {
                    redact_client_secrets(field);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_client_secrets),
        serde_json::Value::String(text) if text.contains("_secret_") => *text = REDACTED.to_owned(),
        _ => {}
    }
}

/// A card as Stripe describes it (never the number: Stripe keeps that).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CardDetails {
    pub payment_method_id: String,
    #[serde(skip)]
    pub customer_id: Option<String>,
    pub brand: String,
    pub last4: String,
    pub exp_month: i16,
    pub exp_year: i16,
    pub fingerprint: Option<String>,
    pub country: Option<String>,
    pub funding: String,
}

/// Where a PaymentIntent stands, as the booking saga reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntentStatus {
    RequiresCapture,
    Succeeded,
    RequiresAction,
    RequiresPaymentMethod,
    Processing,
    Canceled,
    Other(String),
}

#[derive(Debug)]
pub struct PaymentIntentView {
    pub id: String,
    pub status: IntentStatus,
    pub amount_capturable: i64,
    pub client_secret: Option<SecretString>,
    /// Why the last attempt failed (`card_declined`, `authentication_required`...).
    pub error_code: Option<String>,
    /// The issuer's reason (`insufficient_funds`, `stolen_card`...).
    pub decline_code: Option<String>,
}

/// A merchant-initiated authorization on a saved card, captured later.
#[derive(Debug)]
pub struct OffSessionAuthorization<'a> {
    pub customer_id: &'a str,
    pub payment_method_id: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub metadata: HashMap<String, String>,
    pub idempotency_key: &'a str,
}

#[async_trait::async_trait]
pub trait StripePort: Send + Sync {
    /// Creates the traveler's Stripe customer; `idempotency_key` makes a retry
    /// return the same customer.
    async fn create_customer(
        &self,
        user_id: uuid::Uuid,
        email: Option<&str>,
        idempotency_key: &str,
    ) -> Result<String, StripeError>;

    /// A SetupIntent for saving a card for off-session use.
    async fn create_setup_intent(
        &self,
        customer_id: &str,
        idempotency_key: Option<&str>,
    ) -> Result<CreatedSetupIntent, StripeError>;

    async fn retrieve_setup_intent(&self, id: &str) -> Result<SetupIntentView, StripeError>;

    /// The card behind a payment method; `Refused` (422-like) when it is not a card.
    async fn retrieve_card(&self, payment_method_id: &str) -> Result<CardDetails, StripeError>;

    async fn attach_payment_method(
        &self,
        payment_method_id: &str,
        customer_id: &str,
        idempotency_key: &str,
    ) -> Result<(), StripeError>;

    async fn detach_payment_method(&self, payment_method_id: &str) -> Result<(), StripeError>;

    /// Whether Stripe says the customer is deleted (or unknown).
    async fn customer_deleted(&self, customer_id: &str) -> Result<bool, StripeError>;

    /// PaymentIntent with `confirm`, `off_session` and `capture_method = manual`.
    async fn authorize_off_session(
        &self,
        authorization: &OffSessionAuthorization<'_>,
    ) -> Result<PaymentIntentView, StripeError>;

    async fn capture_payment_intent(&self, id: &str, idempotency_key: &str) -> Result<PaymentIntentView, StripeError>;

    async fn cancel_payment_intent(&self, id: &str, idempotency_key: &str) -> Result<PaymentIntentView, StripeError>;

    async fn retrieve_payment_intent(&self, id: &str) -> Result<PaymentIntentView, StripeError>;

    /// The customer's PaymentIntents created at or after `since` (unix seconds)
    /// whose metadata has `key` = `value`: how a booking finds the
    /// authorization a crash kept it from recording.
    async fn find_payment_intents(
        &self,
        customer_id: &str,
        since: i64,
        key: &str,
        value: &str,
    ) -> Result<Vec<PaymentIntentView>, StripeError>;

    /// Refunds a captured PaymentIntent in full.
    async fn refund_payment_intent(&self, id: &str, idempotency_key: &str) -> Result<(), StripeError>;

    /// Deletes the customer at Stripe (which detaches its payment methods);
    /// a customer already deleted, or unknown, is not an error.
    async fn delete_customer(&self, customer_id: &str) -> Result<(), StripeError>;

    /// What Stripe holds on a customer and their payment methods, as Stripe
    /// answers (a data subject's export); `None` when the customer is gone.
    async fn customer_record(&self, customer_id: &str) -> Result<Option<CustomerRecord>, StripeError>;

    /// Whether Stripe answers this key (readiness): the cheapest authenticated read.
    async fn check(&self) -> Result<(), StripeError>;
}

/// A customer and their payment methods as Stripe returns them.
#[derive(Debug, Clone)]
pub struct CustomerRecord {
    pub customer: serde_json::Value,
    pub payment_methods: Vec<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_secrets_are_redacted_wherever_they_are() {
        let mut event = serde_json::json!({
            "id": "evt_1",
            "data": { "object": { "id": "seti_1", "client_secret": "seti_1_secret_abc", "status": "succeeded",
                                  "next_action": { "redirect_to_url": { "url": "https://hooks/?pi=pi_1_secret_x" } } } },
            "list": [{ "client_secret": null }, "pi_2_secret_y"],
        });
        redact_client_secrets(&mut event);
        assert_eq!(event["data"]["object"]["client_secret"], REDACTED);
        assert_eq!(event["data"]["object"]["next_action"]["redirect_to_url"]["url"], REDACTED);
        assert_eq!(event["list"], serde_json::json!([{ "client_secret": null }, REDACTED]));
        assert_eq!(
            (event["id"].as_str(), event["data"]["object"]["status"].as_str()),
            (Some("evt_1"), Some("succeeded"))
        );
    }
}
