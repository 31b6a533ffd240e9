//! The Duffel order, made at most once: an order of unknown fate is looked
//! for, never sent again.

use super::failure;
use crate::bookings::flow::record;
use crate::bookings::saga::Outcome;
use crate::bookings::store::{Booking, Facts};
use crate::bookings::{Actor, BookingError, Ports};
use crate::db::Lease;
use crate::domain::sealed::PASSENGERS;
use crate::domain::Money;
use crate::duffel::{DuffelError, DuffelOrder, OrderRequest};

pub(in crate::bookings) async fn order(
    ports: Ports<'_>,
    actor: &Actor,
    booking: &Booking,
    fresh: bool,
    lease: &mut Lease,
) -> Result<Booking, BookingError> {
    let confirmed = |order: DuffelOrder| Facts {
        duffel_order_id: Some(order.id),
        booking_reference: order.booking_reference,
        ..Facts::default()
    };
    if let Some(id) = &booking.duffel_order_id {
        let order = DuffelOrder { id: id.clone(), booking_reference: booking.duffel_booking_reference.clone() };
        return record(ports, actor, booking, Outcome::DuffelConfirmed, false, confirmed(order)).await;
    }
    if !fresh {
        // An earlier holder may have sent the order; Duffel cannot dedupe a
        // create, so it is looked for, never sent again.
        let reason = match ports.duffel.find_order(booking.id, booking.search_from()).await {
            Ok(Some(order)) => {
                return record(ports, actor, booking, Outcome::DuffelConfirmed, false, confirmed(order)).await
            }
            Ok(None) => "an earlier attempt may have reached Duffel; its order is not listed (yet)".to_owned(),
            Err(error) => error.to_string(),
        };
        let facts = Facts { failure: failure("duffel_outcome_unknown", reason), ..Facts::default() };
        return record(ports, actor, booking, Outcome::Ambiguous, false, facts).await;
    }
    if !lease.is_held().await {
        return Err(BookingError::InProgress);
    }
    let sealed =
        ports.crypto.decrypt(&booking.passengers_sealed, &PASSENGERS.context(booking.user_id, booking.id)).await?;
    let passengers: serde_json::Value =
        serde_json::from_slice(&sealed).map_err(|e| BookingError::Internal(format!("sealed passengers: {e}")))?;
    let total = Money::new(booking.amount, &booking.currency)?;
    let request =
        OrderRequest { booking_id: booking.id, offer_id: &booking.offer_id, passengers: &passengers, total: &total };
    match ports.duffel.create_order(&request).await {
        Ok(order) => record(ports, actor, booking, Outcome::DuffelConfirmed, false, confirmed(order)).await,
        Err(DuffelError::Refused { code, message, .. }) => {
            let facts = Facts { failure: failure(format!("duffel_{code}"), message), ..Facts::default() };
            record(ports, actor, booking, Outcome::DuffelFailed, false, facts).await
        }
        Err(error) => {
            let facts = Facts { failure: failure("duffel_outcome_unknown", error.to_string()), ..Facts::default() };
            record(ports, actor, booking, Outcome::Ambiguous, false, facts).await
        }
    }
}
