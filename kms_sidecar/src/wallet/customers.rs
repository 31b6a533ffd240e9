//! The traveler's Stripe customer: one per traveler, made on first use.

use super::{Wallet, WalletError};
use crate::db::lock_traveler;
use crate::domain::Actor;

/// The traveler's Stripe customer, if they have one yet.
pub async fn customer_of(tx: &mut sqlx::PgConnection, user_id: uuid::Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT stripe_customer_id FROM public.wallet_customers WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(tx)
        .await
}

impl Wallet<'_> {
    /// The traveler's Stripe customer, created on first use. A per-traveler
    /// transaction lock makes concurrent first calls wait for one creation
    /// instead of racing (the unique row would refuse the loser, but only after
    /// Stripe had made a second customer); the Stripe idempotency key derived
    /// from the user id makes a retry after a crash return the same customer.
    pub async fn ensure_customer(&self, actor: &Actor) -> Result<String, WalletError> {
        let stripe = self.stripe()?;
        let traveler = &actor.traveler;
        let mut tx = self.database.as_traveler(traveler, &actor.meta).await?;
        lock_traveler(&mut tx, "customer", traveler.user_id).await?;
        // Under the same lock as an erasure's request, which reads the customer to delete.
        if crate::privacy::erase::requested(&mut tx, traveler.user_id).await? {
            return Err(WalletError::AccountBeingErased);
        }
        if let Some(customer) = customer_of(&mut tx, traveler.user_id).await? {
            return Ok(customer);
        }
        if !sqlx::query_scalar::<_, bool>("SELECT wallet_internal.traveler_exists()").fetch_one(&mut *tx).await? {
            return Err(WalletError::TravelerNotFound);
        }
        let email = traveler.claims["email"].as_str();
        let customer = stripe
            .create_customer(traveler.user_id, email, &format!("parker-wallet:customer:{}", traveler.user_id))
            .await?;
        sqlx::query("INSERT INTO public.wallet_customers (user_id, stripe_customer_id) VALUES ($1, $2)")
            .bind(traveler.user_id)
            .bind(&customer)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(customer)
    }
}
