//! Runs the saga: each step reads the booking, makes its one external call and
//! records the outcome (see [`store::record`]). A booking is driven by one
//! holder at a time: in this process by [`BookingLocks`], across processes (the
//! sidecar and `kms-sidecar reconcile`) by a database lease that a crash frees.
//!
//! `fresh` tells a step whether the state it runs from was written under the
//! lease it holds now. When it was not (a restart, a retry, the reconciler), an
//! earlier holder may have reached Stripe or Duffel already, so the step first
//! looks for what that holder made; and a Duffel order of unknown fate is never
//! made again, it goes to the reconciler.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::json;

use super::saga::{idempotency_key, Outcome, State};
use super::store::{self, Booking, Facts, Outbox};
use crate::auth::Traveler;
use crate::config::BookingSettings;
use crate::crypto::EnvelopeCrypto;
use crate::database::{Database, Lease, RequestMeta};
use crate::domain::sealed::PASSENGERS;
use crate::domain::Money;
use crate::duffel::{DuffelPort, OrderRequest};
use crate::metrics::Metrics;
use crate::payments::{IntentStatus, OffSessionAuthorization, PaymentIntentView, StripeError, StripePort};
use crate::routes::ApiError;

/// In-process queue per booking, so concurrent requests for one booking wait
/// in memory rather than each holding a database connection.
#[derive(Debug, Default)]
pub struct BookingLocks(std::sync::Mutex<HashMap<uuid::Uuid, Weak<tokio::sync::Mutex<()>>>>);

impl BookingLocks {
    async fn hold(&self, id: uuid::Uuid) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            map.retain(|_, lock| lock.strong_count() > 0);
            match map.get(&id).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(id, Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

/// Everything a step can reach: the database and the two providers.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub database: &'a Database,
    pub stripe: &'a dyn StripePort,
    pub duffel: &'a dyn DuffelPort,
    pub crypto: &'a EnvelopeCrypto,
    pub policy: &'a BookingSettings,
    pub locks: &'a BookingLocks,
    pub metrics: &'a Metrics,
}

/// Who a booking is run for, and how they asked.
#[derive(Clone)]
pub struct Actor {
    pub traveler: Traveler,
    pub meta: RequestMeta,
}

/// Who drives: a request waits its turn; the reconciler skips busy bookings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Request,
    Reconciler,
}

/// How long a request queues behind another holder of its booking.
const REQUEST_WAIT: Duration = Duration::from_secs(60);
/// The reconciler does not queue behind a live request for long: next pass.
const RECONCILER_WAIT: Duration = Duration::from_secs(2);

fn lease_key(id: uuid::Uuid) -> String {
    format!("parker_wallet.booking:{id}")
}

/// The right to drive one booking: its place in this process's queue (for
/// requests) and its database lease. Released explicitly, lease first.
pub(crate) struct Hold {
    lease: Lease,
    _queued: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Hold {
    /// A request waits its turn (404 first, before any lock, when the booking
    /// is not the caller's); the reconciler waits briefly. `Ok(None)`: the
    /// reconciler found the booking busy.
    pub(crate) async fn take(
        ports: Ports<'_>,
        actor: &Actor,
        id: uuid::Uuid,
        driver: Driver,
    ) -> Result<Option<Self>, ApiError> {
        let (queued, wait) = match driver {
            Driver::Request => {
                read(ports, actor, id).await?;
                let queued = tokio::time::timeout(REQUEST_WAIT, ports.locks.hold(id))
                    .await
                    .map_err(|_| ApiError::BookingInProgress)?;
                (Some(queued), REQUEST_WAIT)
            }
            Driver::Reconciler => (None, RECONCILER_WAIT),
        };
        match ports.database.lease(&lease_key(id), Some(wait)).await? {
            Some(lease) => Ok(Some(Self { lease, _queued: queued })),
            None if driver == Driver::Request => Err(ApiError::BookingInProgress),
            None => Ok(None),
        }
    }

    pub(crate) async fn release(self) -> Result<(), ApiError> {
        Ok(self.lease.release().await?)
    }
}

/// Drives `id` until it is final or waits for someone (the traveler, the
/// reconciler). `Ok(None)`: the reconciler found it busy.
pub async fn drive(
    ports: Ports<'_>,
    actor: &Actor,
    id: uuid::Uuid,
    driver: Driver,
) -> Result<Option<Booking>, ApiError> {
    let Some(mut hold) = Hold::take(ports, actor, id, driver).await? else {
        return Ok(None);
    };
    let outcome = run_steps(ports, actor, id, &mut hold.lease, false).await;
    hold.release().await?;
    outcome.map(Some)
}

/// Runs steps until the booking is final or waits for someone.
async fn run_steps(
    ports: Ports<'_>,
    actor: &Actor,
    id: uuid::Uuid,
    lease: &mut Lease,
    mut fresh: bool,
) -> Result<Booking, ApiError> {
    loop {
        let booking = read(ports, actor, id).await?;
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
        tracing::info!(booking = %id, from = booking.state.as_str(), to = next.as_str(), "booking moved");
        fresh = true;
    }
}

pub async fn read(ports: Ports<'_>, actor: &Actor, id: uuid::Uuid) -> Result<Booking, ApiError> {
    let mut tx = ports.database.as_traveler(&actor.traveler, &actor.meta).await?;
    let booking = store::load(&mut tx, id).await?;
    tx.commit().await?;
    Ok(booking)
}

async fn record(
    ports: Ports<'_>,
    actor: &Actor,
    booking: &Booking,
    outcome: Outcome,
    backup_available: bool,
    facts: Facts,
) -> Result<State, ApiError> {
    let made_order = facts.duffel_order_id.clone().map(|id| (id, facts.booking_reference.clone()));
    let mut tx = ports.database.as_traveler(&actor.traveler, &actor.meta).await?;
    match store::record(&mut tx, booking, &outcome, backup_available, facts).await {
        Ok(to) => {
            tx.commit().await?;
            ports.metrics.booking_entered(to);
            Ok(to)
        }
        // The row moved under us (a lost lock): an order Duffel made is kept
        // all the same, so the reconciler finds it without searching.
        Err(ApiError::BookingInProgress) if made_order.is_some() => {
            tx.rollback().await?;
            if let Some((order, reference)) = made_order {
                let mut tx = ports.database.as_traveler(&actor.traveler, &actor.meta).await?;
                store::keep_order(&mut tx, booking.id, &order, reference.as_deref()).await?;
                tx.commit().await?;
            }
            Err(ApiError::BookingInProgress)
        }
        Err(other) => Err(other),
    }
}

/// The code a decline is recorded under: the issuer's reason, else Stripe's code.
fn decline_reason(code: &Option<String>, decline_code: &Option<String>, fallback: &str) -> String {
    decline_code.clone().or_else(|| code.clone()).unwrap_or_else(|| fallback.to_owned())
}

fn failure(code: impl Into<String>, reason: impl Into<String>) -> Option<(String, String)> {
    Some((code.into(), reason.into()))
}

/// What an authorization attempt's PaymentIntent says happened.
fn outcome_of_intent(intent: &PaymentIntentView) -> Outcome {
    match &intent.status {
        IntentStatus::RequiresCapture | IntentStatus::Succeeded => Outcome::Authorized,
        IntentStatus::RequiresAction => Outcome::NeedsAuthentication,
        IntentStatus::RequiresPaymentMethod | IntentStatus::Canceled => {
            Outcome::Declined { code: intent.error_code.clone(), decline_code: intent.decline_code.clone() }
        }
        IntentStatus::Processing | IntentStatus::Other(_) => Outcome::Ambiguous,
    }
}

async fn authorize(ports: Ports<'_>, actor: &Actor, booking: &Booking, fresh: bool) -> Result<State, ApiError> {
    let user_id = booking.user_id;
    let (customer, cards, account_age_days, first_booking) = {
        let mut tx = ports.database.as_traveler(&actor.traveler, &actor.meta).await?;
        let customer: Option<String> =
            sqlx::query_scalar("SELECT stripe_customer_id FROM public.wallet_customers WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        let cards = store::usable_cards(&mut tx, user_id).await?;
        // Both as of the booking's creation, so a retry sends Stripe the same
        // request (another body under the same idempotency key is refused).
        let age: Option<i32> = sqlx::query_scalar("SELECT wallet_internal.account_age_days($1::date)")
            .bind(booking.created_at)
            .fetch_one(&mut *tx)
            .await?;
        let first: bool = sqlx::query_scalar(
            "SELECT NOT EXISTS (SELECT FROM public.booking_charges WHERE user_id = $1 AND state = 'captured' AND created_at < $2)",
        )
        .bind(user_id)
        .bind(booking.created_at)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        (customer, cards, age, first)
    };
    let (Some(customer), Some(first_card)) = (customer, cards.first()) else {
        let facts =
            Facts { failure: failure("no_usable_card", "the traveler has no usable card on file"), ..Facts::default() };
        return record(
            ports,
            actor,
            booking,
            Outcome::Declined { code: Some("no_usable_card".into()), decline_code: None },
            false,
            facts,
        )
        .await;
    };
    // The card is chosen and stored before Stripe hears of it; a card chosen
    // under an earlier lease may have reached Stripe.
    let asked_before = !fresh && booking.card_attempt != 0;
    let booking = if booking.card_attempt == 0 {
        let mut tx = ports.database.as_traveler(&actor.traveler, &actor.meta).await?;
        store::choose_first_card(&mut tx, booking, first_card).await?;
        let chosen = store::load(&mut tx, booking.id).await?;
        tx.commit().await?;
        chosen
    } else {
        booking.clone()
    };
    let attempt = booking.card_attempt;
    let payment_method = booking.stripe_payment_method_id.clone().unwrap_or_default();
    let attempt_tag = format!("{}:{attempt}", booking.id);

    let earlier_intent = if asked_before { find_intent(ports, &booking, &customer, &attempt_tag).await? } else { None };
    let result = match earlier_intent {
        Some(intent) => Ok(intent),
        None => {
            let metadata = HashMap::from([
                ("booking_id".to_owned(), booking.id.to_string()),
                ("booking_attempt".to_owned(), attempt_tag.clone()),
                ("campaign_id".to_owned(), booking.campaign_id.to_string()),
                ("offer_id".to_owned(), booking.offer_id.clone()),
                ("route".to_owned(), booking.route.clone().unwrap_or_default()),
                ("traveler_account_age_days".to_owned(), account_age_days.unwrap_or(0).to_string()),
                ("first_booking".to_owned(), first_booking.to_string()),
                ("card_attempt".to_owned(), attempt.to_string()),
                ("merchant_initiated".to_owned(), "true".to_owned()),
            ]);
            let key = idempotency_key(booking.id, "authorize", attempt as u8);
            ports
                .stripe
                .authorize_off_session(&OffSessionAuthorization {
                    customer_id: &customer,
                    payment_method_id: &payment_method,
                    amount: booking.amount,
                    currency: &booking.currency,
                    metadata,
                    idempotency_key: &key,
                })
                .await
        }
    };
    let (outcome, mut facts) = match result {
        Ok(intent) => {
            let outcome = outcome_of_intent(&intent);
            let failure = match &outcome {
                Outcome::Declined { code, decline_code } => {
                    failure(decline_reason(code, decline_code, "card_declined"), "the card was declined")
                }
                Outcome::Ambiguous => failure("stripe_pending", "the PaymentIntent is still processing"),
                _ => None,
            };
            let authorized = matches!(outcome, Outcome::Authorized);
            (outcome, Facts { authorized, payment_intent_id: Some(intent.id), failure, ..Facts::default() })
        }
        // Our own retry under the key with another body: not the card's fault.
        Err(StripeError::Refused { code: Some(code), message, .. }) if code == "idempotency_error" => {
            (Outcome::Ambiguous, Facts { failure: failure("stripe_idempotency_error", message), ..Facts::default() })
        }
        Err(StripeError::Refused { code, decline_code, message, payment_intent, .. }) => {
            let reason = decline_reason(&code, &decline_code, "stripe_refused");
            (
                Outcome::Declined { code, decline_code },
                Facts { payment_intent_id: payment_intent, failure: failure(reason, message), ..Facts::default() },
            )
        }
        Err(error @ (StripeError::Unavailable(_) | StripeError::Timeout)) => (
            Outcome::Ambiguous,
            Facts { failure: failure("stripe_unreachable", error.to_string()), ..Facts::default() },
        ),
    };
    let backup = cards.iter().find(|card| {
        Some(card.id) != booking.payment_method_id
            && Some(&card.stripe_payment_method_id) != booking.stripe_payment_method_id.as_ref()
    });
    let backup_available = attempt == 1 && backup.is_some();
    facts.next_card = backup.cloned();
    // Written only if the outcome leads to `requires_authentication`.
    if facts.payment_intent_id.is_some() {
        facts.outbox =
            Some(authentication_email(ports.policy, &booking, facts.payment_intent_id.as_deref().unwrap_or("")));
    }
    record(ports, actor, &booking, outcome, backup_available, facts).await
}

/// The "Complete authentication" email: a link to the booking, never the
/// PaymentIntent's client secret (the app fetches that from GET /v1/bookings/{id}).
fn authentication_email(policy: &BookingSettings, booking: &Booking, payment_intent: &str) -> Outbox {
    let money = Money::new(booking.amount, &booking.currency).map(|m| m.to_string()).unwrap_or_default();
    Outbox {
        kind: "complete_authentication",
        dedup_key: format!("complete_authentication:{}:{payment_intent}", booking.id),
        payload: json!({
            "template": "complete_authentication",
            "booking_id": booking.id,
            "link": policy.authentication_url.replace("{booking_id}", &booking.id.to_string()),
            "amount": money,
            "route": booking.route,
        }),
    }
}

/// The PaymentIntent an earlier holder made for this attempt, if any: by the
/// id it recorded, else by the attempt tag in Stripe's metadata.
async fn find_intent(
    ports: Ports<'_>,
    booking: &Booking,
    customer: &str,
    attempt_tag: &str,
) -> Result<Option<PaymentIntentView>, ApiError> {
    if let Some(id) = &booking.stripe_payment_intent_id {
        return Ok(Some(ports.stripe.retrieve_payment_intent(id).await?));
    }
    let since = booking.search_from().timestamp();
    let mut found = ports.stripe.find_payment_intents(customer, since, "booking_attempt", attempt_tag).await?;
    Ok(found.pop())
}

async fn order(
    ports: Ports<'_>,
    actor: &Actor,
    booking: &Booking,
    fresh: bool,
    lease: &mut Lease,
) -> Result<State, ApiError> {
    let confirmed = |order: crate::duffel::DuffelOrder| Facts {
        duffel_order_id: Some(order.id),
        booking_reference: order.booking_reference,
        ..Facts::default()
    };
    if let Some(id) = &booking.duffel_order_id {
        let order =
            crate::duffel::DuffelOrder { id: id.clone(), booking_reference: booking.duffel_booking_reference.clone() };
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
        return Err(ApiError::BookingInProgress);
    }
    let sealed =
        ports.crypto.decrypt(&booking.passengers_sealed, &PASSENGERS.context(booking.user_id, booking.id)).await?;
    let passengers: serde_json::Value =
        serde_json::from_slice(&sealed).map_err(|e| ApiError::Internal(format!("sealed passengers: {e}")))?;
    let total = Money::new(booking.amount, &booking.currency)?;
    let request =
        OrderRequest { booking_id: booking.id, offer_id: &booking.offer_id, passengers: &passengers, total: &total };
    match ports.duffel.create_order(&request).await {
        Ok(order) => record(ports, actor, booking, Outcome::DuffelConfirmed, false, confirmed(order)).await,
        Err(crate::duffel::DuffelError::Refused { code, message, .. }) => {
            let facts = Facts { failure: failure(format!("duffel_{code}"), message), ..Facts::default() };
            record(ports, actor, booking, Outcome::DuffelFailed, false, facts).await
        }
        Err(error) => {
            let facts = Facts { failure: failure("duffel_outcome_unknown", error.to_string()), ..Facts::default() };
            record(ports, actor, booking, Outcome::Ambiguous, false, facts).await
        }
    }
}

fn intent_of(booking: &Booking) -> Result<&str, ApiError> {
    booking
        .stripe_payment_intent_id
        .as_deref()
        .ok_or_else(|| ApiError::Internal(format!("booking {} has no PaymentIntent in {}", booking.id, booking.state)))
}

/// Tries to capture a few times: the traveler holds a ticket, so a failed
/// capture is retried (here, then by the reconciler), never voided.
async fn capture(ports: Ports<'_>, actor: &Actor, booking: &Booking, fresh: bool) -> Result<State, ApiError> {
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
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
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

/// Releases the authorization; a PaymentIntent found captured is refunded instead.
async fn void(ports: Ports<'_>, actor: &Actor, booking: &Booking) -> Result<State, ApiError> {
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

async fn refund(ports: Ports<'_>, actor: &Actor, booking: &Booking) -> Result<State, ApiError> {
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

/// `resume`: the traveler says they authenticated. Continues when Stripe
/// agrees, declines when the PaymentIntent failed, else says to wait.
pub async fn resume(ports: Ports<'_>, actor: &Actor, id: uuid::Uuid) -> Result<Booking, ApiError> {
    let mut hold = Hold::take(ports, actor, id, Driver::Request).await?.ok_or(ApiError::BookingInProgress)?;
    let outcome = match settle_authentication(ports, actor, id).await {
        Ok(Some(booking)) => Ok(booking),
        // Recorded under this lease: the next step is fresh.
        Ok(None) => run_steps(ports, actor, id, &mut hold.lease, true).await,
        Err(error) => Err(error),
    };
    hold.release().await?;
    outcome
}

/// Cancels a PaymentIntent under the step's idempotency key; when Stripe
/// refuses (already canceled, or captured meanwhile), what it is now.
async fn cancel_intent(
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
async fn release_intent(ports: Ports<'_>, booking: &Booking, intent: &str, step: &str) -> Result<bool, ApiError> {
    let status = cancel_intent(ports, booking, intent, step).await?;
    Ok(!matches!(status, IntentStatus::RequiresCapture | IntentStatus::Succeeded | IntentStatus::Processing))
}

/// The traveler never authenticated: cancel the PaymentIntent, decline the
/// booking. `None` when busy or no longer waiting.
pub async fn expire_authentication(
    ports: Ports<'_>,
    actor: &Actor,
    id: uuid::Uuid,
) -> Result<Option<Booking>, ApiError> {
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
                    return Err(ApiError::Internal(format!(
                        "booking {id}: PaymentIntent {intent} is {:?} while the booking waits for 3-D Secure; a person must look",
                        view.status
                    )))
                }
                _ if !release_intent(ports, &booking, intent, "expire").await? => {
                    return Err(ApiError::Internal(format!("booking {id}: PaymentIntent {intent} could not be canceled; a person must look")))
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
async fn settle_authentication(ports: Ports<'_>, actor: &Actor, id: uuid::Uuid) -> Result<Option<Booking>, ApiError> {
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
        return Err(ApiError::AuthenticationPending);
    }
    let outcome = outcome_of_intent(&view);
    let failure = match &outcome {
        Outcome::Declined { code, decline_code } => {
            // The app still holds the client secret: a declined booking's
            // PaymentIntent is canceled, so a late confirmation holds nothing.
            if !release_intent(ports, &booking, &view.id, "decline").await? {
                return Err(ApiError::AuthenticationPending);
            }
            failure(decline_reason(code, decline_code, "authentication_failed"), "authentication did not succeed")
        }
        _ => None,
    };
    let facts = Facts { authorized: matches!(outcome, Outcome::Authorized), failure, ..Facts::default() };
    record(ports, actor, &booking, outcome, false, facts).await?;
    Ok(None)
}
