//! SetupIntents: how Stripe.js collects a card for off-session use.

use secrecy::SecretString;

use super::{Wallet, WalletError};
use crate::domain::Actor;
use crate::stripe::CreatedSetupIntent;

/// A SetupIntent for the traveler's customer.
#[derive(Debug)]
pub struct NewSetupIntent {
    pub intent: CreatedSetupIntent,
    pub customer_id: String,
}

impl Wallet<'_> {
    /// A SetupIntent for the traveler's customer (created lazily). The
    /// request's `Idempotency-Key`, when it has one, makes Stripe's key too.
    pub async fn create_setup_intent(
        &self,
        actor: &Actor,
        idempotency_key: Option<&str>,
    ) -> Result<NewSetupIntent, WalletError> {
        let stripe = self.stripe()?;
        let stripe_key =
            idempotency_key.map(|key| format!("parker-wallet:setup-intent:{}:{key}", actor.traveler.user_id));
        let customer_id = self.ensure_customer(actor).await?;
        let intent = stripe.create_setup_intent(&customer_id, stripe_key.as_deref()).await?;
        Ok(NewSetupIntent { intent, customer_id })
    }

    /// A SetupIntent's client secret, fetched again from Stripe (stored
    /// answers never keep it).
    pub async fn setup_intent_client_secret(&self, id: &str) -> Result<SecretString, WalletError> {
        let intent = self.stripe()?.retrieve_setup_intent(id).await?;
        intent.client_secret.ok_or_else(|| WalletError::Internal(format!("SetupIntent {id} has no client secret")))
    }
}
