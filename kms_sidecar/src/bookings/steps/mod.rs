//! The saga's steps, one external call each: [`authorize`] (Stripe, on the
//! default card, then the backup), [`order`] (Duffel), [`capture`], and
//! [`void`] / [`refund`] when the booking cannot go on. Each returns the state
//! it recorded (through [`flow::record`](super::flow::record)).

mod authorize;
mod capture;
mod order;
mod release;

pub(in crate::bookings) use authorize::authorize;
pub(in crate::bookings) use capture::capture;
pub(in crate::bookings) use order::order;
pub(in crate::bookings) use release::{refund, void};

use super::saga::{idempotency_key, Outcome};
use super::store::Booking;
use super::{BookingError, Ports};
use crate::stripe::{IntentStatus, PaymentIntentView, StripeError};

/// The code a decline is recorded under: the issuer's reason, else Stripe's code.
pub(in crate::bookings) fn decline_reason(
    code: &Option<String>,
    decline_code: &Option<String>,
    fallback: &str,
) -> String {
    decline_code.clone().or_else(|| code.clone()).unwrap_or_else(|| fallback.to_owned())
}

pub(in crate::bookings) fn failure(code: impl Into<String>, reason: impl Into<String>) -> Option<(String, String)> {
    Some((code.into(), reason.into()))
}

/// What an authorization attempt's PaymentIntent says happened.
pub(in crate::bookings) fn outcome_of_intent(intent: &PaymentIntentView) -> Outcome {
    match &intent.status {
        IntentStatus::RequiresCapture | IntentStatus::Succeeded => Outcome::Authorized,
        IntentStatus::RequiresAction => Outcome::NeedsAuthentication,
        IntentStatus::RequiresPaymentMethod | IntentStatus::Canceled => {
            Outcome::Declined { code: intent.error_code.clone(), decline_code: intent.decline_code.clone() }
        }
        IntentStatus::Processing | IntentStatus::Other(_) => Outcome::Ambiguous,
    }
}

pub(in crate::bookings) fn intent_of(booking: &Booking) -> Result<&str, BookingError> {
    booking.stripe_payment_intent_id.as_deref().ok_or_else(|| {
        BookingError::Internal(format!("booking {} has no PaymentIntent in {}", booking.id, booking.state))
    })
}

/// Cancels a PaymentIntent under the step's idempotency key; when Stripe
/// refuses (already canceled, or captured meanwhile), what it is now.
pub(in crate::bookings) async fn cancel_intent(
    ports: Ports<'_>,
    booking: &Booking,
    intent: &str,
    step: &str,
) -> Result<IntentStatus, StripeError> {
    let key = idempotency_key(booking.id, step, booking.card_attempt as u8);
    match ports.stripe.cancel_payment_intent(intent, &key).await {
        Ok(view) => Ok(view.status),
        Err(StripeError::Refused { .. }) => ports.stripe.retrieve_payment_intent(intent).await.map(|view| view.status),
        Err(error) => Err(error),
    }
}

/// Cancels a PaymentIntent that must hold nothing (a declined booking's):
/// `false` when Stripe says it is authorized or paid after all.
pub(in crate::bookings) async fn release_intent(
    ports: Ports<'_>,
    booking: &Booking,
    intent: &str,
    step: &str,
) -> Result<bool, BookingError> {
    let status = cancel_intent(ports, booking, intent, step).await?;
    Ok(!matches!(status, IntentStatus::RequiresCapture | IntentStatus::Succeeded | IntentStatus::Processing))
}
