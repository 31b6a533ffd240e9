//! Giving the money back when the booking cannot go on: void an uncaptured
//! authorization, refund a captured one.

use super::{cancel_intent, failure, intent_of};
use crate::bookings::flow::record;
use crate::bookings::saga::{idempotency_key, Outcome};
use crate::bookings::store::{Booking, Facts};
use crate::bookings::{Actor, BookingError, Ports};
use crate::stripe::{IntentStatus, StripeError};

/// Releases the authorization; a PaymentIntent found captured is refunded instead.
pub(in crate::bookings) async fn void(
    ports: Ports<'_>,
    actor: &Actor,
    booking: &Booking,
) -> Result<Booking, BookingError> {
    let keep = || Facts { failure: booking.failure(), ..Facts::default() };
    let Some(intent) = booking.stripe_payment_intent_id.as_deref() else {
        return record(ports, actor, booking, Outcome::Released, false, keep()).await;
    };
    match cancel_intent(ports, booking, intent, "void").await {
        Ok(IntentStatus::Canceled) => record(ports, actor, booking, Outcome::Released, false, keep()).await,
        Ok(IntentStatus::Succeeded) => record(ports, actor, booking, Outcome::Captured, false, keep()).await,
        Ok(other) => {
            let facts = Facts {
                failure: failure("void_failed", format!("PaymentIntent {other:?} after cancel")),
                ..Facts::default()
            };
            record(ports, actor, booking, Outcome::Ambiguous, false, facts).await
        }
        Err(error) => {
            let facts = Facts { failure: failure("void_failed", error.to_string()), ..Facts::default() };
            record(ports, actor, booking, Outcome::Ambiguous, false, facts).await
        }
    }
}

pub(in crate::bookings) async fn refund(
    ports: Ports<'_>,
    actor: &Actor,
    booking: &Booking,
) -> Result<Booking, BookingError> {
    let keep = Facts { failure: booking.failure(), ..Facts::default() };
    let intent = intent_of(booking)?;
    let key = idempotency_key(booking.id, "refund", booking.card_attempt as u8);
    match ports.stripe.refund_payment_intent(intent, &key).await {
        Ok(()) => record(ports, actor, booking, Outcome::Refunded, false, keep).await,
        // A retry after a lost answer: the money is back already.
        Err(StripeError::Refused { code: Some(code), .. }) if code == "charge_already_refunded" => {
            record(ports, actor, booking, Outcome::Refunded, false, keep).await
        }
        Err(error) => {
            let facts = Facts { failure: failure("refund_failed", error.to_string()), ..Facts::default() };
            record(ports, actor, booking, Outcome::Ambiguous, false, facts).await
        }
    }
}
