//! Runs the saga: each step reads the booking, makes its one external call and
//! records the outcome (see [`store::record`]); the steps are in [`super::steps`].
//! A booking is driven by one holder at a time (see [`super::hold`]).
//!
//! `fresh` tells a step whether the state it runs from was written under the
//! lease it holds now. When it was not (a restart, a retry, the reconciler), an
//! earlier holder may have reached Stripe or Duffel already, so the step first
//! looks for what that holder made; and a Duffel order of unknown fate is never
//! made again, it goes to the reconciler.

use super::hold::{Driver, Hold};
use super::saga::{Outcome, State};
use super::steps::{authorize, capture, order, refund, void};
use super::store::{self, Booking, Facts, HistoryEntry};
use super::{Actor, BookingError, Ports};
use crate::db::Lease;

/// Drives `id` until it is final or waits for someone (the traveler, the
/// reconciler). `Ok(None)`: the reconciler found it busy.
pub async fn drive(
    ports: Ports<'_>,
    actor: &Actor,
    id: uuid::Uuid,
    driver: Driver,
) -> Result<Option<Booking>, BookingError> {
    let Some(mut hold) = Hold::take(ports, actor, id, driver).await? else {
        return Ok(None);
    };
    let outcome = run_steps(ports, actor, id, &mut hold.lease, false).await;
    hold.release().await?;
    outcome.map(Some)
}

/// Runs steps until the booking is final or waits for someone.
pub(in crate::bookings) async fn run_steps(
    ports: Ports<'_>,
    actor: &Actor,
    id: uuid::Uuid,
    lease: &mut Lease,
    mut fresh: bool,
) -> Result<Booking, BookingError> {
    // Read once: each step answers the row as it wrote it, so the next step
    // starts from that without reading it back.
    let mut booking = read(ports, actor, id).await?;
    loop {
        let next = match booking.state() {
            State::Authorizing => authorize(ports, actor, &booking, fresh).await?,
            State::Ordering => order(ports, actor, &booking, fresh, lease).await?,
            State::Capturing => capture(ports, actor, &booking, fresh).await?,
            State::Voiding => void(ports, actor, &booking).await?,
            State::Refunding => refund(ports, actor, &booking).await?,
            State::RequiresAuthentication
            | State::NeedsReconciliation
            | State::Captured
            | State::Voided
            | State::Refunded
            | State::Declined => return Ok(booking),
        };
        tracing::info!(booking = %id, from = booking.state.as_str(), to = next.state.as_str(), "booking moved");
        booking = next;
        fresh = true;
    }
}

/// The booking as it stands, read as the actor (RLS: theirs only).
pub async fn read(ports: Ports<'_>, actor: &Actor, id: uuid::Uuid) -> Result<Booking, BookingError> {
    let mut tx = ports.database.as_traveler(&actor.traveler, &actor.meta).await?;
    let booking = store::load(&mut tx, id).await?;
    tx.commit().await?;
    Ok(booking)
}

pub(in crate::bookings) async fn record(
    ports: Ports<'_>,
    actor: &Actor,
    booking: &Booking,
    outcome: Outcome,
    backup_available: bool,
    facts: Facts,
) -> Result<Booking, BookingError> {
    let made_order = facts.duffel_order_id.clone().map(|id| (id, facts.booking_reference.clone()));
    let mut tx = ports.database.as_traveler(&actor.traveler, &actor.meta).await?;
    match store::record(&mut tx, booking, &outcome, backup_available, facts).await {
        Ok(written) => {
            tx.commit().await?;
            ports.metrics.booking_entered(written.state().as_str());
            Ok(written)
        }
        // The row moved under us (a lost lock): an order Duffel made is kept
        // all the same, so the reconciler finds it without searching.
        Err(BookingError::InProgress) if made_order.is_some() => {
            tx.rollback().await?;
            if let Some((order, reference)) = made_order {
                let mut tx = ports.database.as_traveler(&actor.traveler, &actor.meta).await?;
                store::keep_order(&mut tx, booking.id, &order, reference.as_deref()).await?;
                tx.commit().await?;
            }
            Err(BookingError::InProgress)
        }
        Err(other) => Err(other),
    }
}

/// The states the booking entered, oldest first, read as the actor.
pub async fn history(ports: Ports<'_>, actor: &Actor, id: uuid::Uuid) -> Result<Vec<HistoryEntry>, BookingError> {
    let mut tx = ports.database.as_traveler(&actor.traveler, &actor.meta).await?;
    let history = store::history(&mut tx, id).await?;
    tx.commit().await?;
    Ok(history)
}
