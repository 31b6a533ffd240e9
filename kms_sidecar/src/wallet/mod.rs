//! The traveler's wallet: their Stripe customer ([`customers`]), the
//! SetupIntents that collect cards ([`setup_intents`]), their saved cards
//! ([`cards`]), their consents to off-session charges ([`consents`]), and what
//! Stripe's events change in them ([`events`]).
//!
//! Every query runs as the traveler (see `db`), so RLS applies to the sidecar
//! too; every change of one traveler's wallet runs under their wallet lock.
//! Stripe is called outside transactions.

pub mod cards;
pub mod consents;
pub mod customers;
pub mod events;
pub mod profile;
pub mod setup_intents;

pub use cards::{Card, SavedCard};
pub use consents::Consent;
pub use events::Receipt;
pub use profile::Profile;
pub use setup_intents::NewSetupIntent;

use crate::crypto::{CryptoError, EnvelopeCrypto};
use crate::db::{lock_traveler, Database};
use crate::domain::Actor;
use crate::stripe::{StripeError, StripePort};

/// Why a wallet operation did not complete. The HTTP boundary maps each to
/// its status and stable code (`routes::error`).
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("this operation needs [stripe] in the sidecar's configuration")]
    StripeNotConfigured,
    #[error("{0}")]
    InvalidRequest(String),
    #[error("no such card in this wallet")]
    CardNotFound,
    #[error("no consent in force for this card")]
    ConsentNotFound,
    #[error("no such SetupIntent for this traveler")]
    SetupIntentNotFound,
    #[error("the SetupIntent has not succeeded (no confirmed card yet)")]
    SetupIntentNotSucceeded,
    #[error("the token's user has no account (any more)")]
    TravelerNotFound,
    #[error("the account is being erased")]
    AccountBeingErased,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Stripe(#[from] StripeError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("{0}")]
    Internal(String),
}

/// What wallet work reaches. Stripe is optional: a wallet without it still
/// lists its cards.
#[derive(Clone, Copy)]
pub struct Wallet<'a> {
    pub database: &'a Database,
    pub stripe: Option<&'a dyn StripePort>,
    pub crypto: &'a EnvelopeCrypto,
}

impl<'a> Wallet<'a> {
    fn stripe(&self) -> Result<&'a dyn StripePort, WalletError> {
        self.stripe.ok_or(WalletError::StripeNotConfigured)
    }
}

/// The lock that serialises wallet changes of one traveler (default
/// switching, adds, deletes).
const WALLET_LOCK: &str = "wallet";

pub(crate) async fn lock_wallet(tx: &mut sqlx::PgConnection, user_id: uuid::Uuid) -> Result<(), sqlx::Error> {
    lock_traveler(tx, WALLET_LOCK, user_id).await
}

impl Wallet<'_> {
    /// A transaction acting for the traveler, holding their wallet lock.
    async fn locked(&self, actor: &Actor) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.database.as_traveler_locked(&actor.traveler, &actor.meta, WALLET_LOCK).await
    }
}
