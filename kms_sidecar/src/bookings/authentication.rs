//! 3-D Secure: the traveler's authentication settled when they come back
//! ([`resume`]), or the booking declined when they never do
//! ([`expire_authentication`], from the reconciler).

use super::flow::{read, record, run_steps};
use super::hold::{Driver, Hold};
use super::saga::{Outcome, State};
use super::steps::{decline_reason, failure, intent_of, outcome_of_intent, release_intent};
use super::store::{Booking, Facts};
use super::{Actor, BookingError, Ports};
use crate::stripe::IntentStatus;

/// `resume`: the traveler says they authenticated. Continues when Stripe
/// agrees, declines when the PaymentIntent failed, else says to wait.
pub async fn resume(ports: Ports<'_>, actor: &Actor, id: uuid::Uuid) -> Result<Booking, BookingError> {
    let mut hold = Hold::take(ports, actor, id, Driver::Request).await?.ok_or(BookingError::InProgress)?;
    let outcome = match settle_authentication(ports, actor, id).await {
        Ok(Some(booking)) => Ok(booking),
        // Recorded under this lease: the next step is fresh.
        Ok(None) => run_steps(ports, actor, id, &mut hold.lease, true).await,
        Err(error) => Err(error),
    };
    hold.release().await?;
    outcome
}

/// The traveler never authenticated: cancel the PaymentIntent, decline the
/// booking. `None` when busy or no longer waiting.
pub async fn expire_authentication(
    ports: Ports<'_>,
    actor: &Actor,
    id: uuid::Uuid,
) -> Result<Option<Booking>, BookingError> {
    let Some(mut hold) = Hold::take(ports, actor, id, Driver::Reconciler).await? else {
        return Ok(None);
    };
    let lease = &mut hold.lease;
    let expired = async {
        let booking = read(ports, actor, id).await?;
        if booking.state() != State::RequiresAuthentication {
            return Ok(Some(booking));
        }
        if let Some(intent) = &booking.stripe_payment_intent_id {
            let view = ports.stripe.retrieve_payment_intent(intent).await?;
            match view.status {
                // Authenticated, but the app never said so: go on with the booking.
                IntentStatus::RequiresCapture => {
                    let facts = Facts { authorized: true, ..Facts::default() };
                    record(ports, actor, &booking, Outcome::Authorized, false, facts).await?;
                    return run_steps(ports, actor, id, lease, true).await.map(Some);
                }
                IntentStatus::Succeeded | IntentStatus::Processing => {
                    return Err(BookingError::Internal(format!(
                        "booking {id}: PaymentIntent {intent} is {:?} while the booking waits for 3-D Secure; a person must look",
                        view.status
                    )))
                }
                _ if !release_intent(ports, &booking, intent, "expire").await? => {
                    return Err(BookingError::Internal(format!("booking {id}: PaymentIntent {intent} could not be canceled; a person must look")))
                }
                _ => {}
            }
        }
        let outcome = Outcome::Declined { code: Some("authentication_expired".into()), decline_code: None };
        let facts = Facts { failure: failure("authentication_expired", "the traveler did not complete 3-D Secure in time"), ..Facts::default() };
        record(ports, actor, &booking, outcome, false, facts).await?;
        read(ports, actor, id).await.map(Some)
    }
    .await;
    hold.release().await?;
    expired
}

/// Records what Stripe says of the traveler's authentication; `Some` when the
/// booking was not waiting for it (nothing to do).
async fn settle_authentication(
    ports: Ports<'_>,
    actor: &Actor,
    id: uuid::Uuid,
) -> Result<Option<Booking>, BookingError> {
    let booking = read(ports, actor, id).await?;
    if booking.state() != State::RequiresAuthentication {
        return Ok(Some(booking));
    }
    let view = ports.stripe.retrieve_payment_intent(intent_of(&booking)?).await?;
    let pending = match &view.status {
        IntentStatus::RequiresAction | IntentStatus::Processing | IntentStatus::Other(_) => true,
        // Off-session `authentication_required` leaves it here until the traveler confirms.
        IntentStatus::RequiresPaymentMethod => {
            matches!(view.error_code.as_deref(), None | Some("authentication_required"))
        }
        _ => false,
    };
    if pending {
        return Err(BookingError::AuthenticationPending);
    }
    let outcome = outcome_of_intent(&view);
    let failure = match &outcome {
        Outcome::Declined { code, decline_code } => {
            // The app still holds the client secret: a declined booking's
            // PaymentIntent is canceled, so a late confirmation holds nothing.
            if !release_intent(ports, &booking, &view.id, "decline").await? {
                return Err(BookingError::AuthenticationPending);
            }
            failure(decline_reason(code, decline_code, "authentication_failed"), "authentication did not succeed")
        }
        _ => None,
    };
    let facts = Facts { authorized: matches!(outcome, Outcome::Authorized), failure, ..Facts::default() };
    record(ports, actor, &booking, outcome, false, facts).await?;
    Ok(None)
}
