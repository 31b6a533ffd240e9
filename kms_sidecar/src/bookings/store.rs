//! The booking row and the queries on it. Every write of a state goes through
//! [`record`], which checks the transition against the saga's rules and writes
//! the row, its history (by trigger) and any outbox message in one transaction.

use sqlx::PgConnection;

use super::saga::{self, Outcome, State};
use super::BookingError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Booking {
    pub id: uuid::Uuid,
    pub user_id: uuid::Uuid,
    pub campaign_id: uuid::Uuid,
    pub idempotency_key: String,
    pub request_fingerprint: Vec<u8>,
    pub offer_id: String,
    pub route: Option<String>,
    pub passengers_sealed: Vec<u8>,
    pub amount: i64,
    pub currency: String,
    pub state: String,
    pub reconcile_from: Option<String>,
    pub card_attempt: i16,
    pub payment_method_id: Option<uuid::Uuid>,
    pub stripe_payment_method_id: Option<String>,
    pub card_brand: Option<String>,
    pub card_last4: Option<String>,
    pub stripe_payment_intent_id: Option<String>,
    pub duffel_order_id: Option<String>,
    pub duffel_booking_reference: Option<String>,
    pub failure_code: Option<String>,
    pub failure_reason: Option<String>,
    pub authorized_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl Booking {
    pub fn state(&self) -> State {
        // The table's CHECK allows only the saga's names.
        State::parse(&self.state).unwrap_or(State::NeedsReconciliation)
    }

    /// Where searches for what an earlier attempt made start (PaymentIntents,
    /// Duffel orders): a little before the booking, for clock skew.
    pub fn search_from(&self) -> chrono::DateTime<chrono::Utc> {
        self.created_at - chrono::Duration::minutes(5)
    }

    /// The booking's failure as it stands, to carry into its next state.
    pub fn failure(&self) -> Option<(String, String)> {
        self.failure_code.clone().zip(self.failure_reason.clone())
    }

    /// The step whose outcome a reconciler must find out.
    pub fn pending_step(&self) -> State {
        match self.state() {
            State::NeedsReconciliation => {
                self.reconcile_from.as_deref().and_then(State::parse).unwrap_or(State::Authorizing)
            }
            other => other,
        }
    }
}

const COLUMNS: &str =
    "id, user_id, campaign_id, idempotency_key, request_fingerprint, offer_id, route, passengers_sealed,
    amount, currency, state, reconcile_from, card_attempt, payment_method_id, stripe_payment_method_id, card_brand,
    card_last4, stripe_payment_intent_id, duffel_order_id, duffel_booking_reference, failure_code, failure_reason,
    authorized_at, created_at, updated_at";

pub async fn load(tx: &mut PgConnection, id: uuid::Uuid) -> Result<Booking, BookingError> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM public.booking_charges WHERE id = $1"))
        .bind(id)
        .fetch_optional(tx)
        .await?
        .ok_or(BookingError::NotFound)
}

pub async fn by_key(tx: &mut PgConnection, user_id: uuid::Uuid, key: &str) -> Result<Option<Booking>, BookingError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM public.booking_charges WHERE user_id = $1 AND idempotency_key = $2"
    ))
    .bind(user_id)
    .bind(key)
    .fetch_optional(tx)
    .await?)
}

/// A card the saga may charge: saved, not expired.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UsableCard {
    pub id: uuid::Uuid,
    pub stripe_payment_method_id: String,
    pub brand: Option<String>,
    pub last4: Option<String>,
}

/// The traveler's usable cards, default first, then newest: unexpired, with
/// the traveler's consent to off-session charges in force.
pub async fn usable_cards(tx: &mut PgConnection, user_id: uuid::Uuid) -> Result<Vec<UsableCard>, BookingError> {
    Ok(sqlx::query_as(
        "SELECT card.id, card.stripe_payment_method_id, card.brand, card.last4 FROM public.payment_methods card
          WHERE card.user_id = $1
            AND coalesce((card.exp_year, card.exp_month) >= (extract(year FROM current_date)::int,
                                                             extract(month FROM current_date)::int), true)
            AND EXISTS (SELECT FROM public.consents consent
                         WHERE consent.user_id = card.user_id AND consent.kind = 'card_off_session'
                           AND consent.subject_id = card.id AND consent.withdrawn_at IS NULL)
          ORDER BY card.is_default DESC, card.created_at DESC",
    )
    .bind(user_id)
    .fetch_all(tx)
    .await?)
}

/// What a step learned, to be stored with the state it leads to.
#[derive(Debug, Default)]
pub struct Facts {
    pub payment_intent_id: Option<String>,
    pub authorized: bool,
    pub duffel_order_id: Option<String>,
    pub booking_reference: Option<String>,
    pub failure: Option<(String, String)>,
    /// The card for the next attempt (backup after a hard decline).
    pub next_card: Option<UsableCard>,
    /// A message for the traveler, written with the state.
    pub outbox: Option<Outbox>,
}

#[derive(Debug)]
pub struct Outbox {
    pub kind: &'static str,
    pub dedup_key: String,
    pub payload: serde_json::Value,
}

/// Moves `booking` from its state by `outcome`, storing `facts`; answers the
/// row as written. Refuses an outcome the saga does not allow there, and a row
/// that moved meanwhile.
pub async fn record(
    tx: &mut PgConnection,
    booking: &Booking,
    outcome: &Outcome,
    backup_available: bool,
    facts: Facts,
) -> Result<Booking, BookingError> {
    let from = booking.state();
    let transition = saga::next(from, outcome, backup_available).ok_or_else(|| {
        BookingError::Internal(format!("booking {}: {outcome:?} cannot happen in {}", booking.id, from.as_str()))
    })?;
    let to = transition.to;
    let reconcile_from = (to == State::NeedsReconciliation).then(|| from.as_str());
    let (failure_code, failure_reason) = facts.failure.unzip();
    let card = transition.try_backup_card.then_some(facts.next_card).flatten();
    let written: Option<Booking> = sqlx::query_as(&format!(
        "UPDATE public.booking_charges
            SET state = $3, reconcile_from = $4,
                stripe_payment_intent_id = coalesce($5, stripe_payment_intent_id),
                authorized_at = CASE WHEN $6 THEN coalesce(authorized_at, now()) ELSE authorized_at END,
                duffel_order_id = coalesce($7, duffel_order_id),
                duffel_booking_reference = coalesce($8, duffel_booking_reference),
                failure_code = $9, failure_reason = $10
          WHERE id = $1 AND state = $2
      RETURNING {COLUMNS}"
    ))
    .bind(booking.id)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(reconcile_from)
    .bind(facts.payment_intent_id)
    .bind(facts.authorized)
    .bind(facts.duffel_order_id)
    .bind(facts.booking_reference)
    .bind(failure_code)
    .bind(failure_reason)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(mut written) = written else {
        return Err(BookingError::InProgress);
    };
    // The decline above is in the history with its PaymentIntent; the next
    // card gets a PaymentIntent of its own.
    if let Some(card) = card {
        written = sqlx::query_as(&format!(
            "UPDATE public.booking_charges
                SET card_attempt = card_attempt + 1, payment_method_id = $2, stripe_payment_method_id = $3,
                    card_brand = $4, card_last4 = $5, stripe_payment_intent_id = NULL
              WHERE id = $1
          RETURNING {COLUMNS}"
        ))
        .bind(booking.id)
        .bind(card.id)
        .bind(&card.stripe_payment_method_id)
        .bind(&card.brand)
        .bind(&card.last4)
        .fetch_one(&mut *tx)
        .await?;
    }
    if let Some(message) = facts.outbox.filter(|_| to == State::RequiresAuthentication) {
        sqlx::query(
            "INSERT INTO public.notification_outbox (user_id, kind, dedup_key, payload) VALUES ($1, $2, $3, $4)
             ON CONFLICT (dedup_key) DO NOTHING",
        )
        .bind(booking.user_id)
        .bind(message.kind)
        .bind(message.dedup_key)
        .bind(message.payload)
        .execute(&mut *tx)
        .await?;
    }
    Ok(written)
}

/// Chooses the first card of a booking (the default), before Stripe is asked;
/// answers the row as it stands then (as another holder left it, if one chose first).
pub async fn choose_first_card(
    tx: &mut PgConnection,
    booking: &Booking,
    card: &UsableCard,
) -> Result<Booking, BookingError> {
    let chosen: Option<Booking> = sqlx::query_as(&format!(
        "UPDATE public.booking_charges
            SET card_attempt = 1, payment_method_id = $2, stripe_payment_method_id = $3, card_brand = $4, card_last4 = $5
          WHERE id = $1 AND state = 'authorizing' AND card_attempt = 0
      RETURNING {COLUMNS}"
    ))
    .bind(booking.id)
    .bind(card.id)
    .bind(&card.stripe_payment_method_id)
    .bind(&card.brand)
    .bind(&card.last4)
    .fetch_optional(&mut *tx)
    .await?;
    match chosen {
        Some(chosen) => Ok(chosen),
        None => load(tx, booking.id).await,
    }
}

/// Keeps the order Duffel made for a booking whose row moved meanwhile.
pub async fn keep_order(
    tx: &mut PgConnection,
    id: uuid::Uuid,
    order: &str,
    reference: Option<&str>,
) -> Result<(), BookingError> {
    sqlx::query(
        "UPDATE public.booking_charges
            SET duffel_order_id = coalesce(duffel_order_id, $2),
                duffel_booking_reference = coalesce(duffel_booking_reference, $3)
          WHERE id = $1",
    )
    .bind(id)
    .bind(order)
    .bind(reference)
    .execute(tx)
    .await?;
    Ok(())
}

/// Puts a booking the reconciler took back to the step it will redo; with the
/// order Duffel turned out to have made, when there is one.
pub async fn reopen(
    tx: &mut PgConnection,
    booking: &Booking,
    step: State,
    duffel_order: Option<&crate::duffel::DuffelOrder>,
) -> Result<(), BookingError> {
    sqlx::query(
        "UPDATE public.booking_charges
            SET state = $2, reconcile_from = NULL,
                duffel_order_id = coalesce($3, duffel_order_id),
                duffel_booking_reference = coalesce($4, duffel_booking_reference)
          WHERE id = $1 AND state = 'needs_reconciliation'",
    )
    .bind(booking.id)
    .bind(step.as_str())
    .bind(duffel_order.map(|o| o.id.clone()))
    .bind(duffel_order.and_then(|o| o.booking_reference.clone()))
    .execute(tx)
    .await?;
    Ok(())
}

/// One state the booking entered (`booking_charge_events`).
#[derive(Debug, sqlx::FromRow)]
pub struct HistoryEntry {
    pub state: String,
    pub failure_code: Option<String>,
    pub payment_intent_id: Option<String>,
    pub at: chrono::DateTime<chrono::Utc>,
}

pub async fn history(tx: &mut PgConnection, id: uuid::Uuid) -> Result<Vec<HistoryEntry>, BookingError> {
    Ok(sqlx::query_as(
        "SELECT state, failure_code, stripe_payment_intent_id AS payment_intent_id, at
           FROM public.booking_charge_events WHERE booking_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(tx)
    .await?)
}
