//! [`StripePort`] over async-stripe: timeouts, refusals told from outages, and
//! idempotency keys that always fit Stripe's limit.

use std::collections::HashMap;
use std::time::Duration;

use ::stripe::{IdempotencyKey, RequestStrategy, StripeRequest};
use secrecy::{ExposeSecret, SecretString};
use stripe_core::customer::{CreateCustomer, DeleteCustomer, ListCustomer, RetrieveCustomer, RetrieveCustomerReturned};
use stripe_core::payment_intent::{
    CancelPaymentIntent, CapturePaymentIntent, CreatePaymentIntent, CreatePaymentIntentOffSession, ListPaymentIntent,
    RetrievePaymentIntent,
};
use stripe_core::refund::CreateRefund;
use stripe_core::setup_intent::{CreateSetupIntent, CreateSetupIntentUsage, RetrieveSetupIntent};
use stripe_payment::payment_method::{
    AttachPaymentMethod, DetachPaymentMethod, ListPaymentMethod, ListPaymentMethodType, RetrievePaymentMethod,
};

use crate::metrics::CallOutcome;

use super::{
    CardDetails, CreatedSetupIntent, CustomerRecord, IntentStatus, OffSessionAuthorization, PaymentIntentView,
    SetupIntentView, StripeError, StripePort,
};

fn intent_view(intent: stripe_shared::PaymentIntent) -> PaymentIntentView {
    use stripe_shared::PaymentIntentStatus as S;
    let status = match intent.status {
        S::RequiresCapture => IntentStatus::RequiresCapture,
        S::Succeeded => IntentStatus::Succeeded,
        S::RequiresAction => IntentStatus::RequiresAction,
        S::RequiresPaymentMethod => IntentStatus::RequiresPaymentMethod,
        S::Processing => IntentStatus::Processing,
        S::Canceled => IntentStatus::Canceled,
        other => IntentStatus::Other(other.to_string()),
    };
    let error = intent.last_payment_error.as_deref();
    PaymentIntentView {
        id: intent.id.to_string(),
        status,
        amount_capturable: intent.amount_capturable,
        client_secret: intent.client_secret.map(SecretString::from),
        error_code: error.and_then(|e| e.code.as_ref()).map(|c| c.to_string()),
        decline_code: error.and_then(|e| e.decline_code.clone()),
    }
}

/// Pages of 100 a PaymentIntent search reads before giving up.
const MAX_LIST_PAGES: usize = 20;

pub struct AsyncStripe {
    client: ::stripe::Client,
    timeout: Duration,
}

impl std::fmt::Debug for AsyncStripe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncStripe").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl AsyncStripe {
    /// `api_base`: Stripe's API by default; another base (with a trailing slash)
    /// for an emulator.
    pub fn new(secret_key: &SecretString, api_base: Option<&str>, timeout: Duration) -> Result<Self, StripeError> {
        crate::tls::ensure_provider();
        let mut builder = ::stripe::ClientBuilder::new(secret_key.expose_secret());
        if let Some(base) = api_base {
            let base = if base.ends_with('/') { base.to_owned() } else { format!("{base}/") };
            builder = builder.url(base);
        }
        let client = builder.build().map_err(|e| StripeError::Unavailable(format!("client: {e}")))?;
        Ok(Self { client, timeout })
    }

    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, ::stripe::StripeError>>,
    ) -> Result<T, StripeError> {
        crate::metrics::timed("stripe", self.classified(call), |result| match result {
            Ok(_) => CallOutcome::Ok,
            Err(StripeError::Refused { .. }) => CallOutcome::Refused,
            Err(StripeError::Unavailable(_)) => CallOutcome::Failed,
            Err(StripeError::Timeout) => CallOutcome::Timeout,
        })
        .await
    }

    async fn classified<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, ::stripe::StripeError>>,
    ) -> Result<T, StripeError> {
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(StripeError::Timeout),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(::stripe::StripeError::Stripe(error, status))) if refusal_is_final(status) => {
                Err(StripeError::Refused {
                    status,
                    code: error.code.as_ref().map(|c| c.to_string()),
                    decline_code: error.decline_code.clone(),
                    message: error.message.clone().unwrap_or_default(),
                    payment_intent: error.payment_intent.as_ref().map(|intent| intent.id.to_string()),
                })
            }
            Ok(Err(::stripe::StripeError::Timeout)) => Err(StripeError::Timeout),
            Ok(Err(other)) => Err(StripeError::Unavailable(other.to_string())),
        }
    }
}

/// Stripe's answer as JSON (async-stripe parses with miniserde).
fn as_json(value: &miniserde::json::Value) -> Result<serde_json::Value, StripeError> {
    serde_json::from_str(&miniserde::json::to_string(value))
        .map_err(|e| StripeError::Unavailable(format!("an answer that is not JSON: {e}")))
}

/// Whether a 4xx from Stripe is its final word on the request. A rate limit
/// (429) and an idempotency key still in use by a concurrent request (409) are
/// not: the request may be made again, and must never read as a card decline.
fn refusal_is_final(status: u16) -> bool {
    status < 500 && status != 429 && status != 409
}

/// Stripe's idempotency key for ours: as it is when it fits Stripe's 255
/// characters (so keys already sent stay the same), else a digest of it, which
/// always fits and stays as unique.
fn fitting_idempotency_key(key: &str) -> std::borrow::Cow<'_, str> {
    const STRIPE_MAX_KEY_LEN: usize = 255;
    if key.len() <= STRIPE_MAX_KEY_LEN {
        return key.into();
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    format!("parker-wallet:sha256:{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>()).into()
}

fn strategy(key: &str) -> Result<RequestStrategy, StripeError> {
    IdempotencyKey::new(fitting_idempotency_key(key))
        .map(RequestStrategy::Idempotent)
        .map_err(|e| StripeError::invalid("idempotency_key", format!("idempotency key: {e}")))
}

#[async_trait::async_trait]
impl StripePort for AsyncStripe {
    async fn create_customer(
        &self,
        user_id: uuid::Uuid,
        email: Option<&str>,
        idempotency_key: &str,
    ) -> Result<String, StripeError> {
        let mut request = CreateCustomer::new().metadata(HashMap::from([("user_id".to_owned(), user_id.to_string())]));
        if let Some(email) = email {
            request = request.email(email);
        }
        let customer =
            self.bounded(request.customize().request_strategy(strategy(idempotency_key)?).send(&self.client)).await?;
        Ok(customer.id.to_string())
    }

    async fn create_setup_intent(
        &self,
        customer_id: &str,
        idempotency_key: Option<&str>,
    ) -> Result<CreatedSetupIntent, StripeError> {
        let request = CreateSetupIntent::new().customer(customer_id).usage(CreateSetupIntentUsage::OffSession);
        let mut customized = request.customize();
        if let Some(key) = idempotency_key {
            customized = customized.request_strategy(strategy(key)?);
        }
        let intent = self.bounded(customized.send(&self.client)).await?;
        let client_secret = intent
            .client_secret
            .ok_or_else(|| StripeError::Unavailable("SetupIntent without a client secret".into()))?;
        Ok(CreatedSetupIntent { id: intent.id.to_string(), client_secret: SecretString::from(client_secret) })
    }

    async fn retrieve_setup_intent(&self, id: &str) -> Result<SetupIntentView, StripeError> {
        let intent = self.bounded(RetrieveSetupIntent::new(id.to_owned()).send(&self.client)).await?;
        Ok(SetupIntentView {
            customer_id: intent.customer.as_ref().map(|c| c.id().to_string()),
            succeeded: intent.status == stripe_shared::SetupIntentStatus::Succeeded,
            payment_method_id: intent.payment_method.as_ref().map(|p| p.id().to_string()),
            client_secret: intent.client_secret.map(SecretString::from),
        })
    }

    async fn retrieve_card(&self, payment_method_id: &str) -> Result<CardDetails, StripeError> {
        let method = self.bounded(RetrievePaymentMethod::new(payment_method_id.to_owned()).send(&self.client)).await?;
        let card =
            method.card.ok_or_else(|| StripeError::invalid("not_a_card", "the payment method is not a card".into()))?;
        Ok(CardDetails {
            payment_method_id: method.id.to_string(),
            customer_id: method.customer.as_ref().map(|c| c.id().to_string()),
            brand: card.brand,
            last4: card.last4,
            exp_month: i16::try_from(card.exp_month).unwrap_or(0),
            exp_year: i16::try_from(card.exp_year).unwrap_or(0),
            fingerprint: card.fingerprint,
            country: card.country,
            funding: card.funding,
        })
    }

    async fn attach_payment_method(
        &self,
        payment_method_id: &str,
        customer_id: &str,
        idempotency_key: &str,
    ) -> Result<(), StripeError> {
        let request = AttachPaymentMethod::new(payment_method_id.to_owned()).customer(customer_id);
        self.bounded(request.customize().request_strategy(strategy(idempotency_key)?).send(&self.client))
            .await
            .map(drop)
    }

    async fn detach_payment_method(&self, payment_method_id: &str) -> Result<(), StripeError> {
        self.bounded(DetachPaymentMethod::new(payment_method_id.to_owned()).send(&self.client)).await.map(drop)
    }

    async fn delete_customer(&self, customer_id: &str) -> Result<(), StripeError> {
        match self.bounded(DeleteCustomer::new(customer_id.to_owned()).send(&self.client)).await {
            Ok(_) | Err(StripeError::Refused { status: 404, .. }) => Ok(()),
            Err(other) => Err(other),
        }
    }

    async fn check(&self) -> Result<(), StripeError> {
        self.bounded(ListCustomer::new().limit(1).send(&self.client)).await.map(drop)
    }

    async fn customer_record(&self, customer_id: &str) -> Result<Option<CustomerRecord>, StripeError> {
        let request = RetrieveCustomer::new(customer_id.to_owned()).build().customize::<miniserde::json::Value>();
        let customer = match self.bounded(request.send(&self.client)).await {
            Err(StripeError::Refused { status: 404, .. }) => return Ok(None),
            other => as_json(&other?)?,
        };
        if customer["deleted"] == true {
            return Ok(None);
        }
        let mut payment_methods = Vec::new();
        let mut after: Option<String> = None;
        loop {
            // The wallet saves cards only: a customer of ours holds no other kind.
            let mut list = ListPaymentMethod::new().customer(customer_id).type_(ListPaymentMethodType::Card).limit(100);
            if let Some(after) = after.take() {
                list = list.starting_after(after);
            }
            let page =
                as_json(&self.bounded(list.build().customize::<miniserde::json::Value>().send(&self.client)).await?)?;
            let data = page["data"].as_array().cloned().unwrap_or_default();
            after = data.last().and_then(|method| method["id"].as_str()).map(str::to_owned);
            payment_methods.extend(data);
            if page["has_more"] != true || after.is_none() {
                break;
            }
        }
        Ok(Some(CustomerRecord { customer, payment_methods }))
    }

    async fn customer_deleted(&self, customer_id: &str) -> Result<bool, StripeError> {
        match self.bounded(RetrieveCustomer::new(customer_id.to_owned()).send(&self.client)).await {
            Ok(RetrieveCustomerReturned::DeletedCustomer(_)) | Err(StripeError::Refused { status: 404, .. }) => {
                Ok(true)
            }
            Ok(RetrieveCustomerReturned::Customer(_)) => Ok(false),
            Err(other) => Err(other),
        }
    }

    async fn authorize_off_session(
        &self,
        authorization: &OffSessionAuthorization<'_>,
    ) -> Result<PaymentIntentView, StripeError> {
        let currency: stripe_types::Currency = authorization
            .currency
            .parse()
            .map_err(|_| StripeError::invalid("invalid_currency", authorization.currency.to_owned()))?;
        let request = CreatePaymentIntent::new(authorization.amount, currency)
            .customer(authorization.customer_id)
            .payment_method(authorization.payment_method_id)
            .confirm(true)
            .off_session(CreatePaymentIntentOffSession::Bool(true))
            .capture_method(stripe_shared::PaymentIntentCaptureMethod::Manual)
            .metadata(authorization.metadata.clone());
        let intent = self
            .bounded(request.customize().request_strategy(strategy(authorization.idempotency_key)?).send(&self.client))
            .await?;
        Ok(intent_view(intent))
    }

    async fn capture_payment_intent(&self, id: &str, idempotency_key: &str) -> Result<PaymentIntentView, StripeError> {
        let request = CapturePaymentIntent::new(id.to_owned());
        let intent =
            self.bounded(request.customize().request_strategy(strategy(idempotency_key)?).send(&self.client)).await?;
        Ok(intent_view(intent))
    }

    async fn cancel_payment_intent(&self, id: &str, idempotency_key: &str) -> Result<PaymentIntentView, StripeError> {
        let request = CancelPaymentIntent::new(id.to_owned());
        let intent =
            self.bounded(request.customize().request_strategy(strategy(idempotency_key)?).send(&self.client)).await?;
        Ok(intent_view(intent))
    }

    async fn retrieve_payment_intent(&self, id: &str) -> Result<PaymentIntentView, StripeError> {
        let intent = self.bounded(RetrievePaymentIntent::new(id.to_owned()).send(&self.client)).await?;
        Ok(intent_view(intent))
    }

    async fn find_payment_intents(
        &self,
        customer_id: &str,
        since: i64,
        key: &str,
        value: &str,
    ) -> Result<Vec<PaymentIntentView>, StripeError> {
        let mut found = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let mut request = ListPaymentIntent::new()
                .customer(customer_id)
                .created(stripe_types::RangeQueryTs::gte(since))
                .limit(100);
            if let Some(last) = &after {
                request = request.starting_after(last.as_str());
            }
            let page = self.bounded(request.send(&self.client)).await?;
            after = page.data.last().map(|intent| intent.id.to_string());
            found.extend(
                page.data
                    .into_iter()
                    .filter(|intent| intent.metadata.get(key).map(String::as_str) == Some(value))
                    .map(intent_view),
            );
            if !page.has_more || after.is_none() {
                return Ok(found);
            }
        }
        // Not having looked everywhere must not pass for "none".
        Err(StripeError::Unavailable(format!("more than {MAX_LIST_PAGES} pages of PaymentIntents to search")))
    }

    async fn refund_payment_intent(&self, id: &str, idempotency_key: &str) -> Result<(), StripeError> {
        let request = CreateRefund::new().payment_intent(id);
        self.bounded(request.customize().request_strategy(strategy(idempotency_key)?).send(&self.client))
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_always_fit_stripes_limit_and_short_ones_stay_as_they_are() {
        let short = "parker-wallet:setup-intent:a11ce000-0000-4000-8000-000000000001:k";
        assert_eq!(fitting_idempotency_key(short), short);
        let long = format!("parker-wallet:setup-intent:a11ce000-0000-4000-8000-000000000001:{}", "k".repeat(255));
        let fitted = fitting_idempotency_key(&long);
        assert!(fitted.len() <= 255 && strategy(&long).is_ok(), "{fitted}");
        assert_eq!(fitted, fitting_idempotency_key(&long), "the same key each time");
        assert_ne!(fitted, fitting_idempotency_key(&format!("{long}x")));
    }

    #[test]
    fn rate_limits_and_key_conflicts_are_not_refusals() {
        for status in [400, 402, 404] {
            assert!(refusal_is_final(status), "{status}");
        }
        for status in [409, 429, 500, 503] {
            assert!(!refusal_is_final(status), "{status}");
        }
    }
}
