//! The traveler's rights over their data (GDPR): a machine-readable export of
//! everything the wallet and Stripe hold on them ([`export`]), and erasure
//! ([`erase`]).

pub mod erase;
pub mod export;

use crate::crypto::CryptoError;
use crate::stripe::StripeError;

/// Why a privacy request did not complete; `routes::error` maps each once.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("the traveler has a Stripe customer but the sidecar has no [stripe] to ask what Stripe holds")]
    StripeNotConfigured,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Stripe(#[from] StripeError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// Bookings whose money is not settled yet: no erasure until they are.
    #[error("{} booking(s) still have money in flight: {}", .0.len(), .0.iter().map(uuid::Uuid::to_string).collect::<Vec<_>>().join(", "))]
    MoneyInFlight(Vec<uuid::Uuid>),
    #[error("the confirmation must be exactly {:?}", crate::privacy::erase::CONFIRMATION)]
    ConfirmationRequired,
    #[error("the account is being erased")]
    BeingErased,
    /// Erasure cannot be undone: it needs a sign-in of the last minutes.
    #[error("sign in again (within {} minutes) to erase the account", crate::privacy::erase::REAUTHENTICATION_WINDOW.as_secs() / 60)]
    ReauthenticationRequired,
    /// The erasure is done but for the `auth.users` row, which only
    /// Supabase Auth may delete here.
    #[error("the auth.users row remains: delete the user with Supabase Auth's admin API, then run the erasure again")]
    AuthUserRemains,
    /// Another run is carrying the same erasure out.
    #[error("another run is carrying this erasure out")]
    InProgress,
    #[error("no erasure was requested for this traveler")]
    NotRequested,
    /// The client went away while the export was being written.
    #[error("the reader went away")]
    Closed,
    /// The reader took too long (see `export::MAX_STALL`, `export::MAX_TIME`).
    #[error("the reader took too long")]
    TooSlow,
    #[error("{0}")]
    Internal(String),
}
