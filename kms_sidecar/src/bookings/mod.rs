//! Booking charges: authorize on a saved card, order at Duffel, capture only
//! once Duffel confirms; never charge twice. See docs/bookings.md.
//! - [`saga`]: the rules (states, transitions, decline classes), pure.
//! - [`store`]: the row, its history and the outbox; every state write.
//! - [`open`]: a request checked and its row written (or found again).
//! - [`flow`]: drives a booking from step to step; [`steps`]: each step's one
//!   external call; [`hold`]: one driver at a time.
//! - [`authentication`]: 3-D Secure settled, or expired.
//! - [`reconcile`]: the operator's pass over bookings left unsettled.

pub mod authentication;
pub mod flow;
pub mod hold;
pub mod open;
pub mod reconcile;
pub mod saga;
mod steps;
pub mod store;

pub use authentication::{expire_authentication, resume};
pub use flow::{drive, history, read};
pub use hold::{BookingLocks, Driver};

use crate::config::BookingSettings;
use crate::crypto::{CryptoError, EnvelopeCrypto};
use crate::db::Database;
pub use crate::domain::Actor;
use crate::domain::InvalidMoney;
use crate::duffel::{DuffelError, DuffelPort};
use crate::metrics::Metrics;
use crate::stripe::{StripeError, StripePort};

/// Everything a step can reach: the database, the two providers, the crypto,
/// the policy, and the locks and counters of this process.
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

/// Why a booking operation did not complete. The HTTP boundary maps each to
/// its status and stable code (`routes::error`).
#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidBooking(String),
    #[error(transparent)]
    InvalidMoney(#[from] InvalidMoney),
    #[error("no such campaign for this traveler")]
    CampaignNotFound,
    #[error("the campaign has no consent (consent_at) for off-session charges")]
    ConsentRequired,
    #[error(
        "no card with the traveler's consent to off-session charges (POST /v1/wallet/payment-methods/{{id}}/consent)"
    )]
    CardConsentRequired,
    #[error("the account is being erased")]
    AccountBeingErased,
    #[error("the traveler has no usable (saved, unexpired) card")]
    NoUsableCard,
    #[error("no such booking for this traveler")]
    NotFound,
    #[error("another request is working on this booking; retry with the same Idempotency-Key")]
    InProgress,
    #[error("the issuer is still waiting for the traveler to authenticate")]
    AuthenticationPending,
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Stripe(#[from] StripeError),
    #[error("Duffel: {0}")]
    Duffel(#[from] DuffelError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("{0}")]
    Internal(String),
}
