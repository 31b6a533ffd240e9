//! The booking saga against a scripted fake of the Stripe port, for what
//! localstripe cannot do: charge-time declines with issuer decline codes,
//! off-session `authentication_required`, and Stripe's idempotent replay of a
//! request whose answer was lost. The database, RLS, the envelope encryption
//! and the saga code are the real ones.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use harness::TestDb;
use kms_sidecar::bookings::open::{self, Opened};
use kms_sidecar::bookings::{self, reconcile, Actor, BookingError, BookingLocks, Driver, Ports};
use kms_sidecar::config::BookingSettings;
use kms_sidecar::crypto::keys::LocalKeyring;
use kms_sidecar::crypto::{CachePolicy, EnvelopeCrypto, KeySchedule};
use kms_sidecar::db::Database;
use kms_sidecar::domain::{RequestMeta, Traveler};
use kms_sidecar::duffel::{DuffelError, DuffelOrder, DuffelPort, OrderRequest};
use kms_sidecar::metrics::Metrics;
use kms_sidecar::stripe::{
    CardDetails, CreatedSetupIntent, IntentStatus, OffSessionAuthorization, PaymentIntentView, SetupIntentView,
    StripeError, StripePort,
};
use secrecy::SecretString;
use serde_json::json;

/// What the next authorization does.
#[derive(Debug, Clone)]
enum Script {
    /// A PaymentIntent in this state (with the last error's codes, if any).
    Intent(IntentStatus, Option<&'static str>, Option<&'static str>),
    /// Stripe's 402, leaving a PaymentIntent behind (as Stripe does).
    Declined(&'static str, Option<&'static str>),
    /// Stripe made the PaymentIntent; the answer never arrived.
    LostAnswer,
}

#[derive(Debug, Clone)]
struct Made {
    id: String,
    status: IntentStatus,
    error_code: Option<String>,
    decline_code: Option<String>,
}

impl Made {
    fn view(&self) -> PaymentIntentView {
        PaymentIntentView {
            id: self.id.clone(),
            status: self.status.clone(),
            amount_capturable: 0,
            client_secret: Some(SecretString::from(format!("{}_secret_x", self.id))),
            error_code: self.error_code.clone(),
            decline_code: self.decline_code.clone(),
        }
    }
}

/// A Stripe that follows a script for authorizations and, like Stripe, answers
/// a repeated idempotency key with what the first request made.
#[derive(Default)]
struct ScriptedStripe {
    script: Mutex<VecDeque<Script>>,
    by_key: Mutex<HashMap<String, Made>>,
    intents: Mutex<HashMap<String, Made>>,
    /// Every authorization request: (idempotency key, payment method).
    calls: Mutex<Vec<(String, String)>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ScriptedStripe {
    fn new(script: Vec<Script>) -> Self {
        Self { script: Mutex::new(script.into()), ..Self::default() }
    }

    fn calls(&self) -> Vec<(String, String)> {
        lock(&self.calls).clone()
    }

    fn status(&self, id: &str) -> Option<IntentStatus> {
        lock(&self.intents).get(id).map(|m| m.status.clone())
    }

    /// The traveler's on-session attempt failed: the PaymentIntent wants another card.
    fn fail(&self, id: &str, code: &str) {
        if let Some(made) = lock(&self.intents).get_mut(id) {
            made.status = IntentStatus::RequiresPaymentMethod;
            made.error_code = Some(code.to_owned());
        }
    }

    fn set(&self, id: &str, status: IntentStatus) -> Result<PaymentIntentView, StripeError> {
        let mut intents = lock(&self.intents);
        let made = intents.get_mut(id).ok_or_else(|| refused(404, "resource_missing", None))?;
        made.status = status;
        Ok(made.view())
    }
}

fn refused(status: u16, code: &str, decline_code: Option<&str>) -> StripeError {
    StripeError::Refused {
        status,
        code: Some(code.to_owned()),
        decline_code: decline_code.map(str::to_owned),
        message: format!("scripted {code}"),
        payment_intent: None,
    }
}

#[async_trait::async_trait]
impl StripePort for ScriptedStripe {
    async fn create_customer(&self, _: uuid::Uuid, _: Option<&str>, _: &str) -> Result<String, StripeError> {
        unimplemented!("not used by bookings")
    }
    async fn create_setup_intent(&self, _: &str, _: Option<&str>) -> Result<CreatedSetupIntent, StripeError> {
        unimplemented!("not used by bookings")
    }
    async fn retrieve_setup_intent(&self, _: &str) -> Result<SetupIntentView, StripeError> {
        unimplemented!("not used by bookings")
    }
    async fn retrieve_card(&self, _: &str) -> Result<CardDetails, StripeError> {
        unimplemented!("not used by bookings")
    }
    async fn attach_payment_method(&self, _: &str, _: &str, _: &str) -> Result<(), StripeError> {
        unimplemented!("not used by bookings")
    }
    async fn detach_payment_method(&self, _: &str) -> Result<(), StripeError> {
        unimplemented!("not used by bookings")
    }
    async fn customer_deleted(&self, _: &str) -> Result<bool, StripeError> {
        unimplemented!("not used by bookings")
    }

    async fn authorize_off_session(
        &self,
        request: &OffSessionAuthorization<'_>,
    ) -> Result<PaymentIntentView, StripeError> {
        lock(&self.calls).push((request.idempotency_key.to_owned(), request.payment_method_id.to_owned()));
        if let Some(made) = lock(&self.by_key).get(request.idempotency_key) {
            return Ok(made.view());
        }
        let step = lock(&self.script).pop_front().unwrap_or(Script::Intent(IntentStatus::RequiresCapture, None, None));
        let id = format!("pi_{}", uuid::Uuid::new_v4().simple());
        let (made, answer) = match step {
            Script::Intent(status, code, decline) => {
                let made =
                    Made { id, status, error_code: code.map(str::to_owned), decline_code: decline.map(str::to_owned) };
                let view = made.view();
                (made, Ok(view))
            }
            Script::Declined(code, decline) => {
                let made = Made {
                    id: id.clone(),
                    status: IntentStatus::RequiresPaymentMethod,
                    error_code: Some(code.into()),
                    decline_code: decline.map(str::to_owned),
                };
                let error = StripeError::Refused {
                    status: 402,
                    code: Some(code.to_owned()),
                    decline_code: decline.map(str::to_owned),
                    message: "declined".into(),
                    payment_intent: Some(id),
                };
                (made, Err(error))
            }
            Script::LostAnswer => (
                Made { id, status: IntentStatus::RequiresCapture, error_code: None, decline_code: None },
                Err(StripeError::Timeout),
            ),
        };
        lock(&self.intents).insert(made.id.clone(), made.clone());
        lock(&self.by_key).insert(request.idempotency_key.to_owned(), made);
        answer
    }

    async fn capture_payment_intent(&self, id: &str, _: &str) -> Result<PaymentIntentView, StripeError> {
        match self.status(id) {
            Some(IntentStatus::RequiresCapture) => self.set(id, IntentStatus::Succeeded),
            _ => Err(refused(400, "payment_intent_unexpected_state", None)),
        }
    }

    async fn cancel_payment_intent(&self, id: &str, _: &str) -> Result<PaymentIntentView, StripeError> {
        match self.status(id) {
            Some(IntentStatus::Succeeded | IntentStatus::Canceled) => {
                Err(refused(400, "payment_intent_unexpected_state", None))
            }
            _ => self.set(id, IntentStatus::Canceled),
        }
    }

    async fn retrieve_payment_intent(&self, id: &str) -> Result<PaymentIntentView, StripeError> {
        lock(&self.intents).get(id).map(Made::view).ok_or_else(|| refused(404, "resource_missing", None))
    }

    /// Finds nothing: these tests lean on the idempotency key alone.
    async fn find_payment_intents(
        &self,
        _: &str,
        _: i64,
        _: &str,
        _: &str,
    ) -> Result<Vec<PaymentIntentView>, StripeError> {
        Ok(Vec::new())
    }

    async fn delete_customer(&self, _: &str) -> Result<(), StripeError> {
        Ok(())
    }

    async fn customer_record(&self, _: &str) -> Result<Option<kms_sidecar::stripe::CustomerRecord>, StripeError> {
        Ok(None)
    }

    async fn check(&self) -> Result<(), StripeError> {
        Ok(())
    }

    async fn refund_payment_intent(&self, _: &str, _: &str) -> Result<(), StripeError> {
        Ok(())
    }
}

/// Duffel that confirms every order, or (`refuse`) refuses every one as the
/// offer gone.
#[derive(Default)]
struct ScriptedDuffel {
    refuse: bool,
}

#[async_trait::async_trait]
impl DuffelPort for ScriptedDuffel {
    async fn create_order(&self, order: &OrderRequest<'_>) -> Result<DuffelOrder, DuffelError> {
        if self.refuse {
            return Err(DuffelError::Refused {
                status: 422,
                code: "offer_no_longer_available".into(),
                message: "The offer is no longer available".into(),
            });
        }
        Ok(DuffelOrder { id: format!("ord_{}", order.booking_id.simple()), booking_reference: Some("SCRIPT".into()) })
    }
    async fn find_order(
        &self,
        _: uuid::Uuid,
        _: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<DuffelOrder>, DuffelError> {
        Ok(None)
    }
}

struct Saga {
    db: TestDb,
    database: Database,
    crypto: EnvelopeCrypto,
    policy: BookingSettings,
    locks: BookingLocks,
    metrics: Metrics,
    stripe: ScriptedStripe,
    duffel: ScriptedDuffel,
    actor: Actor,
    campaign: uuid::Uuid,
    _keys: tempfile::TempDir,
}

impl Saga {
    /// A traveler with a default card (pm_default) and a backup (pm_backup).
    async fn new(script: Vec<Script>) -> anyhow::Result<Self> {
        let db = TestDb::migrated().await?;
        let user = uuid::Uuid::new_v4();
        let campaign: uuid::Uuid = sqlx::query_scalar(
            "WITH u AS (INSERT INTO auth.users (id, email) VALUES ($1, 'saga@example.com') RETURNING id),
                  c AS (INSERT INTO wallet_customers (user_id, stripe_customer_id) SELECT id, 'cus_saga' FROM u),
                  d AS (INSERT INTO payment_methods (user_id, stripe_customer_id, stripe_payment_method_id, encrypted_card_data,
                                                     brand, last4, exp_month, exp_year, is_default, created_at)
                        SELECT id, 'cus_saga', 'pm_default', '\\x02', 'visa', '4242', 12, 2031, true, now() - interval '1 day' FROM u
                        RETURNING id, user_id),
                  b AS (INSERT INTO payment_methods (user_id, stripe_customer_id, stripe_payment_method_id, encrypted_card_data,
                                                     brand, last4, exp_month, exp_year, is_default)
                        SELECT id, 'cus_saga', 'pm_backup', '\\x02', 'mastercard', '4444', 12, 2031, false FROM u
                        RETURNING id, user_id),
                  k AS (INSERT INTO consents (user_id, kind, subject_id, text_version, recorded_by)
                        SELECT user_id, 'card_off_session', id, 'card-mit-test', 'role:test' FROM d
                        UNION ALL SELECT user_id, 'card_off_session', id, 'card-mit-test', 'role:test' FROM b)
             INSERT INTO campaigns (user_id, name, consent_at, consent_text_version)
             SELECT id, 'Saga', now(), 'campaign-mit-test' FROM u RETURNING id",
        )
        .bind(user)
        .fetch_one(&mut db.admin().await?)
        .await?;
        let keys = tempfile::tempdir()?;
        let keyring = LocalKeyring::load_or_create(&keys.path().join("keyring"))?;
        Ok(Self {
            database: Database::connect_lazy(&SecretString::from(db.url("pw_test_sidecar")?), 4)?,
            db,
            crypto: EnvelopeCrypto::new(
                Arc::new(keyring),
                CachePolicy::default(),
                KeySchedule { epoch: 1, ..Default::default() },
                Arc::new(Metrics::default()),
            ),
            metrics: Metrics::default(),
            policy: BookingSettings { order_settle_secs: 0, ..BookingSettings::default() },
            locks: BookingLocks::default(),
            stripe: ScriptedStripe::new(script),
            duffel: ScriptedDuffel::default(),
            actor: Actor { traveler: Traveler::acting_for(user, "test"), meta: RequestMeta::default() },
            campaign,
            _keys: keys,
        })
    }

    fn ports(&self) -> Ports<'_> {
        Ports {
            database: &self.database,
            stripe: &self.stripe,
            duffel: &self.duffel,
            crypto: &self.crypto,
            policy: &self.policy,
            locks: &self.locks,
            metrics: &self.metrics,
        }
    }

    fn body(&self) -> Vec<u8> {
        json!({
            "campaign_id": self.campaign, "offer_id": "off_saga", "amount": 15_000, "currency": "gbp",
            "passengers": [{ "id": "pas_1", "given_name": "Grace", "family_name": "Hopper" }],
        })
        .to_string()
        .into_bytes()
    }

    /// What the route does: open (or find) the booking, then drive it.
    async fn book(&self, key: &str) -> anyhow::Result<kms_sidecar::bookings::store::Booking> {
        let (Opened::New(id) | Opened::Existing(id)) = open::open(self.ports(), &self.actor, key, &self.body()).await?;
        bookings::drive(self.ports(), &self.actor, id, Driver::Request).await?.ok_or_else(|| anyhow::anyhow!("busy"))
    }

    /// The states the booking entered, with their failure codes; checked to
    /// be in the traveler's audit chain too.
    async fn history(&self, id: uuid::Uuid) -> anyhow::Result<Vec<(String, Option<String>)>> {
        harness::assert_booking_in_audit_chain(&self.db, id).await?;
        Ok(sqlx::query_as("SELECT state, failure_code FROM booking_charge_events WHERE booking_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&mut self.db.admin().await?)
            .await?)
    }
}

fn states(history: &[(String, Option<String>)]) -> Vec<&str> {
    history.iter().map(|(s, _)| s.as_str()).collect()
}

#[tokio::test]
async fn a_hard_decline_moves_to_the_backup_card_with_its_own_key() -> anyhow::Result<()> {
    for decline in ["insufficient_funds", "expired_card", "do_not_honor"] {
        let saga = Saga::new(vec![Script::Declined("card_declined", Some(decline))]).await?;
        let booking = saga.book("k").await?;
        assert_eq!(
            (booking.state.as_str(), booking.card_attempt, booking.card_last4.as_deref()),
            ("captured", 2, Some("4444")),
            "{decline}"
        );
        let metrics = saga.metrics.render();
        assert!(metrics.contains("parker_wallet_booking_states_total{state=\"captured\"} 1"), "{metrics}");
        assert!(
            metrics.contains("parker_wallet_booking_states_total{state=\"authorizing\"} 1"),
            "the card switch: {metrics}"
        );
        let calls = saga.stripe.calls();
        assert_eq!(calls.len(), 2, "{decline}: one try per card");
        assert_eq!((calls[0].1.as_str(), calls[1].1.as_str()), ("pm_default", "pm_backup"));
        assert!(calls[0].0.ends_with(":authorize:1") && calls[1].0.ends_with(":authorize:2"), "{calls:?}");
        let history = saga.history(booking.id).await?;
        assert_eq!(states(&history), ["authorizing", "authorizing", "ordering", "capturing", "captured"]);
        assert_eq!(history[1].1.as_deref(), Some(decline), "the retry records the issuer's reason");
        let declined_intent: Option<String> =
            sqlx::query_scalar("SELECT stripe_payment_intent_id FROM booking_charge_events WHERE booking_id = $1 ORDER BY id OFFSET 1 LIMIT 1")
                .bind(booking.id)
                .fetch_one(&mut saga.db.admin().await?)
                .await?;
        assert!(
            declined_intent.is_some_and(|pi| Some(pi) != booking.stripe_payment_intent_id),
            "the first card's PaymentIntent stays in the history"
        );
    }
    Ok(())
}

#[tokio::test]
async fn fraud_declines_never_try_another_card() -> anyhow::Result<()> {
    for decline in ["fraudulent", "stolen_card", "lost_card"] {
        let saga = Saga::new(vec![Script::Declined("card_declined", Some(decline))]).await?;
        let booking = saga.book("k").await?;
        assert_eq!((booking.state.as_str(), booking.failure_code.as_deref()), ("declined", Some(decline)));
        assert_eq!(saga.stripe.calls().len(), 1, "{decline}: the backup card is not tried");
    }
    // A decline that leaves the PaymentIntent failed (not a 402) counts the same way.
    let saga = Saga::new(vec![Script::Intent(
        IntentStatus::RequiresPaymentMethod,
        Some("card_declined"),
        Some("stolen_card"),
    )])
    .await?;
    assert_eq!(saga.book("k").await?.state, "declined");
    assert_eq!(saga.stripe.calls().len(), 1);
    Ok(())
}

#[tokio::test]
async fn off_session_authentication_required_asks_the_traveler_not_the_backup() -> anyhow::Result<()> {
    let saga = Saga::new(vec![Script::Declined("authentication_required", None)]).await?;
    let booking = saga.book("k").await?;
    assert_eq!(booking.state, "requires_authentication");
    assert_eq!(saga.stripe.calls().len(), 1, "no backup card on an authentication decline");
    let intent = booking.stripe_payment_intent_id.clone().unwrap_or_default();
    assert!(intent.starts_with("pi_"), "the PaymentIntent left by the 402 is kept for on-session confirmation");
    let (kind, payload): (String, serde_json::Value) =
        sqlx::query_as("SELECT kind, payload FROM notification_outbox WHERE user_id = $1")
            .bind(saga.actor.traveler.user_id)
            .fetch_one(&mut saga.db.admin().await?)
            .await?;
    assert_eq!(kind, "complete_authentication");
    assert!(
        payload["link"].as_str().is_some_and(|l| l.ends_with(&format!("/bookings/{}/authenticate", booking.id))),
        "{payload}"
    );
    assert!(!payload.to_string().contains("secret"), "{payload}");

    // Not authenticated yet: the same error code stays; resume says to wait.
    let early = bookings::resume(saga.ports(), &saga.actor, booking.id).await;
    assert!(matches!(early, Err(BookingError::AuthenticationPending)), "{early:?}");
    // The traveler confirms on-session: Stripe holds the authorization.
    saga.stripe.set(&intent, IntentStatus::RequiresCapture)?;
    let resumed = bookings::resume(saga.ports(), &saga.actor, booking.id).await?;
    assert_eq!(resumed.state, "captured");
    assert_eq!(saga.stripe.status(&intent), Some(IntentStatus::Succeeded));
    harness::assert_booking_in_audit_chain(&saga.db, booking.id).await?;
    Ok(())
}

#[tokio::test]
async fn a_failed_authentication_declines_and_cancels_the_payment_intent() -> anyhow::Result<()> {
    let saga = Saga::new(vec![Script::Intent(IntentStatus::RequiresAction, None, None)]).await?;
    let booking = saga.book("k").await?;
    let intent = booking.stripe_payment_intent_id.clone().unwrap_or_default();
    saga.stripe.fail(&intent, "card_declined");
    let resumed = bookings::resume(saga.ports(), &saga.actor, booking.id).await?;
    assert_eq!((resumed.state.as_str(), resumed.failure_code.as_deref()), ("declined", Some("card_declined")));
    assert_eq!(saga.stripe.status(&intent), Some(IntentStatus::Canceled), "a late confirmation can hold nothing");
    harness::assert_booking_in_audit_chain(&saga.db, booking.id).await?;
    Ok(())
}

#[tokio::test]
async fn an_authentication_never_completed_expires_and_releases_the_card() -> anyhow::Result<()> {
    let mut saga = Saga::new(vec![Script::Intent(IntentStatus::RequiresAction, None, None)]).await?;
    let booking = saga.book("k").await?;
    assert_eq!(booking.state, "requires_authentication");
    let report = reconcile::run(saga.ports(), 0).await?;
    assert_eq!(
        (report.settled, report.lines[0].to.as_str()),
        (0, "requires_authentication"),
        "waiting is fine for a while"
    );
    saga.policy.authentication_expiry_hours = 0;
    let report = reconcile::run(saga.ports(), 0).await?;
    assert_eq!((report.settled, report.lines[0].to.as_str()), (1, "declined"), "{report:?}");
    let intent = booking.stripe_payment_intent_id.unwrap_or_default();
    assert_eq!(saga.stripe.status(&intent), Some(IntentStatus::Canceled));
    let settled = bookings::read(saga.ports(), &saga.actor, booking.id).await?;
    assert_eq!(settled.failure_code.as_deref(), Some("authentication_expired"));
    harness::assert_booking_in_audit_chain(&saga.db, booking.id).await?;
    Ok(())
}

#[tokio::test]
async fn an_authentication_completed_but_never_resumed_is_carried_on_not_canceled() -> anyhow::Result<()> {
    let mut saga = Saga::new(vec![Script::Intent(IntentStatus::RequiresAction, None, None)]).await?;
    let booking = saga.book("k").await?;
    let intent = booking.stripe_payment_intent_id.clone().unwrap_or_default();
    // Still processing at the issuer: resume says to wait (not an internal error).
    saga.stripe.set(&intent, IntentStatus::Processing)?;
    let processing = bookings::resume(saga.ports(), &saga.actor, booking.id).await;
    assert!(matches!(processing, Err(BookingError::AuthenticationPending)), "{processing:?}");
    // The traveler authenticated; the app never called resume. Expiry must not cancel a good authorization.
    saga.stripe.set(&intent, IntentStatus::RequiresCapture)?;
    saga.policy.authentication_expiry_hours = 0;
    let report = reconcile::run(saga.ports(), 0).await?;
    assert_eq!((report.lines[0].to.as_str(), report.alerts()), ("captured", 0), "{report:?}");
    assert_eq!(saga.stripe.status(&intent), Some(IntentStatus::Succeeded));
    harness::assert_booking_in_audit_chain(&saga.db, booking.id).await?;
    Ok(())
}

#[tokio::test]
async fn a_lost_answer_is_replayed_by_the_same_key_never_charged_twice() -> anyhow::Result<()> {
    let saga = Saga::new(vec![Script::LostAnswer]).await?;
    let booking = saga.book("k").await?;
    assert_eq!(
        (booking.state.as_str(), booking.reconcile_from.as_deref()),
        ("needs_reconciliation", Some("authorizing"))
    );
    assert!(booking.stripe_payment_intent_id.is_none(), "the answer was lost: no id known");

    // The reconciler asks Stripe again with the same key; Stripe replays the PaymentIntent it made.
    let report = reconcile::run(saga.ports(), 0).await?;
    assert_eq!((report.examined, report.settled, report.alerts()), (1, 1, 0), "{report:?}");
    let calls = saga.stripe.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].0, calls[1].0, "the retry reuses the idempotency key");
    assert_eq!(lock(&saga.stripe.intents).len(), 1, "one PaymentIntent at Stripe");
    let settled = bookings::read(saga.ports(), &saga.actor, booking.id).await?;
    assert_eq!(settled.state, "captured");

    // The client's own retry afterwards replays the final booking: no new call.
    assert_eq!(saga.book("k").await?.id, booking.id);
    assert_eq!(saga.stripe.calls().len(), 2);
    Ok(())
}

#[tokio::test]
async fn the_reconciler_flags_an_authorization_near_its_capture_deadline() -> anyhow::Result<()> {
    let mut saga = Saga::new(vec![]).await?;
    saga.policy.capture_window_hours = 120;
    let booking = saga.book("k").await?;
    assert_eq!(booking.state, "captured");
    // A booking stuck before capture, authorized four and a half days ago.
    sqlx::query(
        "UPDATE booking_charges SET state = 'needs_reconciliation', reconcile_from = 'capturing',
                authorized_at = now() - interval '108 hours' WHERE id = $1",
    )
    .bind(booking.id)
    .execute(&mut saga.db.admin().await?)
    .await?;
    // Stripe refuses the capture (the authorization expired meanwhile): a person must look.
    let intent = booking.stripe_payment_intent_id.clone().unwrap_or_default();
    saga.stripe.set(&intent, IntentStatus::Canceled)?;
    let report = reconcile::run(saga.ports(), 0).await?;
    assert_eq!(report.alerts(), 1, "{report:?}");
    let alert = report.lines[0].alert.clone().unwrap_or_default();
    assert!(alert.contains("capture deadline"), "{alert}");
    Ok(())
}

/// The refund path: a PaymentIntent Stripe captured at once (not the manual
/// capture asked for), then an order Duffel refuses. Voiding finds it captured
/// and refunds it; the money never stays taken, and every step is in the
/// traveler's audit chain (`Saga::history` checks).
#[tokio::test]
async fn a_payment_found_captured_when_the_order_fails_is_refunded() -> anyhow::Result<()> {
    let mut saga = Saga::new(vec![Script::Intent(IntentStatus::Succeeded, None, None)]).await?;
    saga.duffel = ScriptedDuffel { refuse: true };
    let booking = saga.book("k").await?;
    assert_eq!(booking.state, "refunded");
    let history = saga.history(booking.id).await?;
    assert_eq!(states(&history), ["authorizing", "ordering", "voiding", "refunding", "refunded"]);
    Ok(())
}

/// Withdrawing a consent stops a charge not yet asked for: a booking opened
/// before the campaign's consent (or every card's) was withdrawn is declined
/// without a call to Stripe. A charge already asked for (here: its answer
/// lost) is settled as usual: money in flight is never left half-done.
#[tokio::test]
async fn a_withdrawn_consent_stops_the_charges_not_yet_asked_for() -> anyhow::Result<()> {
    for withdraw in [
        "UPDATE campaigns SET consent_at = NULL",
        "UPDATE consents SET withdrawn_at = now() WHERE kind = 'card_off_session'",
    ] {
        let saga = Saga::new(vec![]).await?;
        let (Opened::New(id) | Opened::Existing(id)) = open::open(saga.ports(), &saga.actor, "k", &saga.body()).await?;
        sqlx::raw_sql(withdraw).execute(&mut saga.db.admin().await?).await?;
        let booking = bookings::drive(saga.ports(), &saga.actor, id, Driver::Request)
            .await?
            .ok_or_else(|| anyhow::anyhow!("busy"))?;
        let expected = if withdraw.contains("campaigns") { "consent_withdrawn" } else { "no_usable_card" };
        assert_eq!(
            (booking.state.as_str(), booking.failure_code.as_deref()),
            ("declined", Some(expected)),
            "{withdraw}"
        );
        assert!(saga.stripe.calls().is_empty(), "{withdraw}: Stripe was not asked");
    }

    let saga = Saga::new(vec![Script::LostAnswer]).await?;
    let booking = saga.book("k").await?;
    assert_eq!(booking.state, "needs_reconciliation");
    sqlx::raw_sql("UPDATE campaigns SET consent_at = NULL").execute(&mut saga.db.admin().await?).await?;
    reconcile::run(saga.ports(), 0).await?;
    let settled = bookings::read(saga.ports(), &saga.actor, booking.id).await?;
    assert_eq!(settled.state, "captured", "the authorization asked for before the withdrawal is settled");
    Ok(())
}
