//! Every JSON body the API answers with (errors aside: see `problem`), in one
//! place: the API's shape, serialised with serde from these types only.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, Serializer};
use uuid::Uuid;

use crate::bookings::store::{Booking, HistoryEntry};
use crate::phone::{Started, Verified};
use crate::privacy::erase::Erasure;
use crate::wallet::{Card, Consent, NewSetupIntent, Profile, Receipt};

/// A client secret in a body: shown to the traveler's device, never by `Debug`.
fn expose<S: Serializer>(secret: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose_secret())
}

fn expose_optional<S: Serializer>(secret: &Option<SecretString>, serializer: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => expose(secret, serializer),
        None => serializer.serialize_none(),
    }
}

/// `{"data": ...}`: the envelope of the wallet and booking answers.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Data<T> {
    pub data: T,
}

/// A saved card: never its ciphertext, never its number.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CardView {
    pub id: Uuid,
    pub brand: Option<String>,
    pub last4: Option<String>,
    pub exp_month: Option<i16>,
    pub exp_year: Option<i16>,
    pub is_default: bool,
    pub expired: bool,
    pub created_at: DateTime<Utc>,
    /// The consent to off-session charges in force: without one, the card is
    /// never charged while the traveler is away.
    pub off_session_consent: Option<CardConsentView>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CardConsentView {
    pub text_version: String,
    pub granted_at: DateTime<Utc>,
}

impl From<Card> for CardView {
    fn from(card: Card) -> Self {
        let Card {
            id,
            brand,
            last4,
            exp_month,
            exp_year,
            is_default,
            expired,
            created_at,
            consent_text_version,
            consent_granted_at,
        } = card;
        let off_session_consent = consent_text_version
            .zip(consent_granted_at)
            .map(|(text_version, granted_at)| CardConsentView { text_version, granted_at });
        Self { id, brand, last4, exp_month, exp_year, is_default, expired, created_at, off_session_consent }
    }
}

/// A consent record: granted, and withdrawn when it was.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ConsentView {
    pub id: Uuid,
    pub kind: String,
    pub subject_id: Option<Uuid>,
    pub text_version: String,
    pub granted_at: DateTime<Utc>,
    pub withdrawn_at: Option<DateTime<Utc>>,
}

impl From<Consent> for ConsentView {
    fn from(consent: Consent) -> Self {
        let Consent { id, kind, subject_id, text_version, granted_at, withdrawn_at } = consent;
        Self { id, kind, subject_id, text_version, granted_at, withdrawn_at }
    }
}

/// An account's erasure: where it stands.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErasureView {
    pub state: String,
    pub requested_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<Erasure> for ErasureView {
    fn from(erasure: Erasure) -> Self {
        Self { state: erasure.state, requested_at: erasure.requested_at, completed_at: erasure.completed_at }
    }
}

/// `POST /v1/profile/phone/verification`: a code on its way (`pending`), or
/// the number already verified (`approved`, nothing sent).
#[derive(Debug, Serialize, JsonSchema)]
pub struct PhoneVerificationView {
    pub verification_id: Option<Uuid>,
    pub phone_number: String,
    pub status: &'static str,
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<Started> for PhoneVerificationView {
    fn from(started: Started) -> Self {
        Self {
            verification_id: started.verification_id,
            phone_number: started.phone_number.as_e164().to_owned(),
            status: if started.already_verified { "approved" } else { "pending" },
            expires_at: started.expires_at,
        }
    }
}

/// `POST /v1/profile/phone/verification/check`: the phone is verified.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PhoneVerifiedView {
    pub phone_number: String,
    pub phone_verified: bool,
    pub completeness_score: Option<i32>,
}

impl From<Verified> for PhoneVerifiedView {
    fn from(verified: Verified) -> Self {
        Self {
            phone_number: verified.phone_number,
            phone_verified: true,
            completeness_score: verified.completeness_score,
        }
    }
}

/// `GET /v1/profile`: the traveler's profile as the app greets them, and
/// how complete it is (one recommendation per missing field, in order).
#[derive(Debug, Serialize, JsonSchema)]
pub struct ProfileView {
    pub first_name: Option<String>,
    pub phone_number: Option<String>,
    pub phone_verified: bool,
    /// 0..100.
    pub completeness_score: i32,
    pub missing_fields: Vec<String>,
    pub recommendations: Vec<String>,
}

impl From<Profile> for ProfileView {
    fn from(profile: Profile) -> Self {
        let Profile { first_name, phone_number, phone_verified, completeness_score, missing_fields, recommendations } =
            profile;
        Self { first_name, phone_number, phone_verified, completeness_score, missing_fields, recommendations }
    }
}

/// `POST /v1/wallet/setup-intents`: what Stripe.js needs to collect a card.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SetupIntentView {
    pub setup_intent_id: String,
    /// Handed to the traveler's device; a stored (replayable) answer has it redacted.
    #[serde(serialize_with = "expose")]
    #[schemars(with = "String")]
    pub client_secret: SecretString,
    pub customer_id: String,
}

impl From<&NewSetupIntent> for SetupIntentView {
    fn from(new: &NewSetupIntent) -> Self {
        Self {
            setup_intent_id: new.intent.id.clone(),
            client_secret: new.intent.client_secret.clone(),
            customer_id: new.customer_id.clone(),
        }
    }
}

/// `DELETE /v1/wallet/payment-methods/{id}`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DeletedView {
    pub deleted: Uuid,
}

/// `POST /v1/webhooks/stripe`: what Stripe hears back.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WebhookReceiptView {
    pub received: bool,
    pub duplicate: bool,
    pub applied: bool,
}

impl From<Receipt> for WebhookReceiptView {
    fn from(receipt: Receipt) -> Self {
        Self { received: true, duplicate: receipt.duplicate, applied: receipt.applied }
    }
}

/// The card a booking charges (or charged): which one, and which attempt.
#[derive(Debug, Serialize, JsonSchema)]
pub struct BookingCardView {
    pub brand: Option<String>,
    pub last4: String,
    pub attempt: i16,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FailureView {
    pub code: String,
    pub reason: Option<String>,
}

/// One state the booking entered.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HistoryView {
    pub state: String,
    pub failure_code: Option<String>,
    pub payment_intent_id: Option<String>,
    pub at: DateTime<Utc>,
}

/// While 3-D Secure is pending: what Stripe.js on the traveler's device needs
/// to confirm the PaymentIntent with the booking's card.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AuthenticationView {
    pub payment_intent_id: String,
    #[serde(serialize_with = "expose_optional")]
    #[schemars(with = "Option<String>")]
    pub client_secret: Option<SecretString>,
    pub payment_method: Option<String>,
}

/// A booking as the API shows it (never the sealed passengers).
#[derive(Debug, Serialize, JsonSchema)]
pub struct BookingView {
    pub id: Uuid,
    pub state: String,
    pub reconcile_from: Option<String>,
    pub campaign_id: Uuid,
    pub offer_id: String,
    pub route: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub card: Option<BookingCardView>,
    pub payment_intent_id: Option<String>,
    pub duffel_order_id: Option<String>,
    pub booking_reference: Option<String>,
    pub failure: Option<FailureView>,
    pub authorized_at: Option<DateTime<Utc>>,
    /// When the card network's authorization lapses: capture before this.
    pub capture_by: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub history: Vec<HistoryView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication: Option<AuthenticationView>,
}

impl BookingView {
    pub fn new(booking: &Booking, history: Vec<HistoryEntry>, capture_window: chrono::Duration) -> Self {
        let card = booking.card_last4.as_ref().map(|last4| BookingCardView {
            brand: booking.card_brand.clone(),
            last4: last4.clone(),
            attempt: booking.card_attempt,
        });
        let failure = booking
            .failure_code
            .as_ref()
            .map(|code| FailureView { code: code.clone(), reason: booking.failure_reason.clone() });
        let history = history
            .into_iter()
            .map(|entry| HistoryView {
                state: entry.state,
                failure_code: entry.failure_code,
                payment_intent_id: entry.payment_intent_id,
                at: entry.at,
            })
            .collect();
        Self {
            id: booking.id,
            state: booking.state.clone(),
            reconcile_from: booking.reconcile_from.clone(),
            campaign_id: booking.campaign_id,
            offer_id: booking.offer_id.clone(),
            route: booking.route.clone(),
            amount: booking.amount,
            currency: booking.currency.clone(),
            card,
            payment_intent_id: booking.stripe_payment_intent_id.clone(),
            duffel_order_id: booking.duffel_order_id.clone(),
            booking_reference: booking.duffel_booking_reference.clone(),
            failure,
            authorized_at: booking.authorized_at,
            capture_by: booking.authorized_at.map(|at| at + capture_window),
            created_at: booking.created_at,
            updated_at: booking.updated_at,
            history,
            authentication: None,
        }
    }
}

/// `POST /v1/crypto/*`: the output bytes, standard base64.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CryptoView {
    pub data: String,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HealthView {
    pub status: &'static str,
    pub version: &'static str,
}

/// `GET /readyz`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReadinessView {
    pub status: &'static str,
    pub key_provider: ProviderView,
    /// `ok` or `error`; absent when the sidecar has no `[database]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<&'static str>,
    /// `ok` or `error`; absent when the sidecar has no `[stripe]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stripe: Option<&'static str>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ProviderView {
    pub name: &'static str,
    pub status: &'static str,
}
