//! `kms-sidecar reconcile`: one pass over bookings that are not final and have
//! not moved for a while (a crash, a timeout, an unknown outcome). Each is
//! re-queried at Stripe and Duffel and driven to a final state, or reported.
//! Authorizations close to the card network's capture deadline are flagged.

use serde::Serialize;

use super::hold::{Driver, Hold};
use super::saga::State;
use super::store::{self, Booking};
use super::{flow, Actor, BookingError, Ports};
use crate::domain::{RequestMeta, Traveler};

#[derive(Debug, Serialize)]
pub struct Line {
    pub booking_id: uuid::Uuid,
    pub from: String,
    pub to: String,
    /// Needs a person: a capture deadline close, a lost authorization, an error.
    pub alert: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub examined: usize,
    pub settled: usize,
    pub busy: usize,
    pub lines: Vec<Line>,
}

impl Report {
    pub fn alerts(&self) -> usize {
        self.lines.iter().filter(|line| line.alert.is_some()).count()
    }
}

/// One pass. `min_age_secs`: leave younger bookings to their live requests.
pub async fn run(ports: Ports<'_>, min_age_secs: i64) -> Result<Report, BookingError> {
    let candidates: Vec<(uuid::Uuid, uuid::Uuid)> = {
        let mut tx = ports.database.as_system().await?;
        let rows = sqlx::query_as(
            "SELECT booking_id, user_id FROM wallet_internal.bookings_to_reconcile(make_interval(secs => $1))",
        )
        .bind(min_age_secs as f64)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows
    };
    let mut report = Report { examined: candidates.len(), ..Report::default() };
    for (booking_id, user_id) in candidates {
        let actor =
            Actor { traveler: Traveler::acting_for(user_id, "parker-wallet/reconciler"), meta: RequestMeta::default() };
        let line = match settle(ports, &actor, booking_id).await {
            Ok(Some(line)) => line,
            Ok(None) => {
                report.busy += 1;
                continue;
            }
            Err(error) => {
                Line { booking_id, from: "?".into(), to: "?".into(), alert: Some(format!("reconcile failed: {error}")) }
            }
        };
        if State::parse(&line.to).is_some_and(State::is_final) {
            report.settled += 1;
        }
        report.lines.push(line);
    }
    Ok(report)
}

async fn settle(ports: Ports<'_>, actor: &Actor, id: uuid::Uuid) -> Result<Option<Line>, BookingError> {
    let before = flow::read(ports, actor, id).await?;
    let from = before.state.clone();
    let step = before.pending_step();
    if step == State::RequiresAuthentication {
        // The traveler's move, until it expires.
        let expiry = chrono::Duration::hours(ports.policy.authentication_expiry_hours);
        if chrono::Utc::now() - before.updated_at < expiry {
            return Ok(Some(Line { booking_id: id, from: from.clone(), to: from, alert: None }));
        }
        let Some(after) = super::expire_authentication(ports, actor, id).await? else {
            return Ok(None);
        };
        return Ok(Some(Line { booking_id: id, from, to: after.state, alert: None }));
    }
    if before.state() == State::NeedsReconciliation {
        let Some(ready) = reopen(ports, actor, &before, step).await? else {
            return Ok(Some(Line { booking_id: id, from: from.clone(), to: from, alert: None }));
        };
        if !ready {
            return Ok(None);
        }
    }
    let Some(after) = flow::drive(ports, actor, id, Driver::Reconciler).await? else {
        return Ok(None);
    };
    let alert = alert_for(ports, &after);
    Ok(Some(Line { booking_id: id, from, to: after.state.clone(), alert }))
}

/// Puts a `needs_reconciliation` booking back on its step, after finding out
/// what Duffel did when the step was the order. `Ok(None)`: too early to tell;
/// `Ok(Some(false))`: busy.
async fn reopen(ports: Ports<'_>, actor: &Actor, booking: &Booking, step: State) -> Result<Option<bool>, BookingError> {
    let Some(hold) = Hold::take(ports, actor, booking.id, Driver::Reconciler).await? else {
        return Ok(Some(false));
    };
    let reopened = reopen_held(ports, actor, booking, step).await;
    hold.release().await?;
    reopened
}

async fn reopen_held(
    ports: Ports<'_>,
    actor: &Actor,
    booking: &Booking,
    step: State,
) -> Result<Option<bool>, BookingError> {
    let mut tx = ports.database.as_traveler(&actor.traveler, &actor.meta).await?;
    let current = store::load(&mut tx, booking.id).await?;
    if current.state() != State::NeedsReconciliation {
        return Ok(Some(true));
    }
    if step == State::Ordering && current.duffel_order_id.is_some() {
        store::reopen(&mut tx, &current, State::Ordering, None).await?;
    } else if step == State::Ordering {
        let found = ports.duffel.find_order(booking.id, booking.search_from()).await?;
        match found {
            Some(order) => store::reopen(&mut tx, &current, State::Ordering, Some(&order)).await?,
            None => {
                let settled =
                    chrono::Utc::now() - current.updated_at > chrono::Duration::seconds(ports.policy.order_settle_secs);
                if !settled {
                    return Ok(None);
                }
                // Duffel has no order for it, long after the attempt: release the card.
                store::reopen(&mut tx, &current, State::Voiding, None).await?;
                sqlx::query("UPDATE public.booking_charges SET failure_code = 'duffel_order_not_found', failure_reason = $2 WHERE id = $1")
                    .bind(booking.id)
                    .bind("Duffel lists no order for this booking")
                    .execute(&mut *tx)
                    .await?;
            }
        }
    } else {
        store::reopen(&mut tx, &current, step, None).await?;
    }
    tx.commit().await?;
    Ok(Some(true))
}

/// An authorization left uncaptured near the network's deadline, or a booking
/// the pass could not settle.
fn alert_for(ports: Ports<'_>, booking: &Booking) -> Option<String> {
    let state = booking.state();
    if state.is_final() {
        return None;
    }
    let policy = ports.policy;
    if let Some(authorized_at) = booking.authorized_at {
        let deadline = authorized_at + chrono::Duration::hours(policy.capture_window_hours);
        if deadline - chrono::Utc::now() < chrono::Duration::hours(policy.alert_before_hours) {
            return Some(format!("capture deadline {deadline} is near; still {}", booking.state));
        }
    }
    (state == State::NeedsReconciliation).then(|| {
        format!(
            "still unsettled at {}: {}",
            booking.reconcile_from.as_deref().unwrap_or("?"),
            booking.failure_reason.as_deref().unwrap_or("")
        )
    })
}
