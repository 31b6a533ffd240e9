//! Capture once Duffel confirmed the order.

use std::time::Duration;

use super::{failure, intent_of};
use crate::bookings::flow::record;
use crate::bookings::saga::{idempotency_key, Outcome};
use crate::bookings::store::{Booking, Facts};
use crate::bookings::{Actor, BookingError, Ports};
use crate::stripe::{IntentStatus, StripeError};

/// Tries to capture a few times: the traveler holds a ticket, so a failed
/// capture is retried (here, then by the reconciler), never voided.
pub(in crate::bookings) async fn capture(
    ports: Ports<'_>,
    actor: &Actor,
    booking: &Booking,
    fresh: bool,
) -> Result<Booking, BookingError> {
    let intent = intent_of(booking)?;
    let key = idempotency_key(booking.id, "capture", booking.card_attempt as u8);
    if !fresh {
        if let Ok(view) = ports.stripe.retrieve_payment_intent(intent).await {
            if view.status == IntentStatus::Succeeded {
                return record(ports, actor, booking, Outcome::Captured, false, Facts::default()).await;
            }
        }
    }
    let mut last_error = String::new();
    for pause_ms in [0_u64, 250, 1000] {
        // Not even a zero sleep on the first try: a timer rounds it up to a tick.
        if pause_ms > 0 {
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        }
        match ports.stripe.capture_payment_intent(intent, &key).await {
            Ok(view) if view.status == IntentStatus::Succeeded => {
                return record(ports, actor, booking, Outcome::Captured, false, Facts::default()).await
            }
            Ok(view) => last_error = format!("capture left the PaymentIntent {:?}", view.status),
            Err(StripeError::Refused { message, .. }) => {
                // Maybe captured already (a retry after a lost answer): ask.
                match ports.stripe.retrieve_payment_intent(intent).await {
                    Ok(view) if view.status == IntentStatus::Succeeded => {
                        return record(ports, actor, booking, Outcome::Captured, false, Facts::default()).await
                    }
                    _ => {
                        last_error = message;
                        break;
                    }
                }
            }
            Err(error) => last_error = error.to_string(),
        }
    }
    let facts = Facts { failure: failure("capture_failed", last_error), ..Facts::default() };
    record(ports, actor, booking, Outcome::Ambiguous, false, facts).await
}
