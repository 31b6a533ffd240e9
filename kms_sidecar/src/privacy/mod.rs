//! The traveler's rights over their data (GDPR): a machine-readable export of
//! everything the wallet and Stripe hold on them ([`export`]).

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
    /// The client went away while the export was being written.
    #[error("the reader went away")]
    Closed,
    #[error("{0}")]
    Internal(String),
}
