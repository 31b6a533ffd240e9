//! Saved cards: listed, added from a succeeded SetupIntent, made the default,
//! deleted. Never zero or two defaults while the traveler has cards; the card's
//! metadata is sealed (bound to its row) and never shown, only brand, last 4
//! and expiry.

use super::consents::record_card_consent;
use super::customers::customer_of;
use super::{Wallet, WalletError};
use crate::crypto::EnvelopeCrypto;
use crate::db::BeforeCommit;
use crate::domain::sealed::CARD_METADATA;
use crate::domain::{Actor, ConsentVersion};
use crate::stripe::{CardDetails, StripeError, StripePort};

/// A saved card as the traveler may see it (never ciphertext).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Card {
    pub id: uuid::Uuid,
    pub brand: Option<String>,
    pub last4: Option<String>,
    pub exp_month: Option<i16>,
    pub exp_year: Option<i16>,
    pub is_default: bool,
    pub expired: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The consent to off-session charges in force, if any: its text's version and when.
    pub consent_text_version: Option<String>,
    pub consent_granted_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A card stored from a SetupIntent: new, or the same card (payment method or
/// fingerprint) seen again and updated.
#[derive(Debug)]
pub struct SavedCard {
    pub card: Card,
    pub created: bool,
}

/// A card's public columns, for one traveler ($1).
const CARD_SELECT: &str = "SELECT card.id, card.brand, card.last4, card.exp_month, card.exp_year, card.is_default,
        card.created_at,
        coalesce((card.exp_year, card.exp_month) < (extract(year FROM current_date)::int,
                                                    extract(month FROM current_date)::int), false) AS expired,
        consent.text_version AS consent_text_version, consent.granted_at AS consent_granted_at
   FROM public.payment_methods card
   LEFT JOIN public.consents consent
     ON consent.user_id = card.user_id AND consent.kind = 'card_off_session'
    AND consent.subject_id = card.id AND consent.withdrawn_at IS NULL
  WHERE card.user_id = $1";

async fn card_by_id(
    tx: &mut sqlx::PgConnection,
    user_id: uuid::Uuid,
    card_id: uuid::Uuid,
) -> Result<Card, WalletError> {
    sqlx::query_as(&format!("{CARD_SELECT} AND card.id = $2"))
        .bind(user_id)
        .bind(card_id)
        .fetch_optional(tx)
        .await?
        .ok_or(WalletError::CardNotFound)
}

/// Whether `text` is a Stripe id of the kind `prefix` names (`seti_`, `pm_`...).
fn is_stripe_id(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix).is_some_and(|rest| {
        !rest.is_empty() && rest.len() <= 250 && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

impl Wallet<'_> {
    /// The traveler's cards, default first, then newest; expired cards flagged.
    pub async fn cards(&self, actor: &Actor) -> Result<Vec<Card>, WalletError> {
        let mut tx = self.database.as_traveler(&actor.traveler, &actor.meta).await?;
        let cards = sqlx::query_as(&format!("{CARD_SELECT} ORDER BY card.is_default DESC, card.created_at DESC"))
            .bind(actor.traveler.user_id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(cards)
    }

    /// Stores the card a succeeded SetupIntent of this traveler's customer
    /// collected, with the traveler's consent to off-session charges when they
    /// gave it. The same card (fingerprint) again updates its row; the first
    /// card becomes the default.
    pub async fn add_card(
        &self,
        actor: &Actor,
        setup_intent_id: &str,
        consent: Option<&ConsentVersion>,
        before_commit: &dyn BeforeCommit<SavedCard>,
    ) -> Result<SavedCard, WalletError> {
        let (traveler, meta) = (&actor.traveler, &actor.meta);
        let stripe = self.stripe()?;
        if !is_stripe_id(setup_intent_id, "seti_") {
            return Err(WalletError::InvalidRequest("setup_intent_id is not a SetupIntent id".into()));
        }
        let customer = {
            let mut tx = self.database.as_traveler(traveler, meta).await?;
            customer_of(&mut tx, traveler.user_id).await?
        };
        // Another customer's SetupIntent, or none at all, is "not found": no leak.
        let customer = customer.ok_or(WalletError::SetupIntentNotFound)?;
        let details = card_of_setup_intent(stripe, &customer, setup_intent_id).await?;
        let mut tx = self.locked(actor).await?;
        let stored = store_card(self.crypto, &mut tx, traveler.user_id, &customer, &details).await?;
        if let Some(version) = consent {
            record_card_consent(&mut tx, traveler.user_id, stored.id, version).await?;
        }
        let saved =
            SavedCard { card: card_by_id(&mut tx, traveler.user_id, stored.id).await?, created: stored.created };
        before_commit.write(&mut tx, &saved).await?;
        tx.commit().await?;
        detach_replaced(stripe, stored.replaced).await;
        Ok(saved)
    }

    /// Makes one card the default. Under the wallet lock, in one transaction:
    /// never zero or two defaults.
    pub async fn make_default(
        &self,
        actor: &Actor,
        card_id: uuid::Uuid,
        before_commit: &dyn BeforeCommit<Card>,
    ) -> Result<Card, WalletError> {
        let user_id = actor.traveler.user_id;
        let mut tx = self.locked(actor).await?;
        // No card by that id: nothing changes, and the read below says so.
        sqlx::query(
            "UPDATE public.payment_methods SET is_default = false
              WHERE user_id = $1 AND is_default AND id <> $2
                AND EXISTS (SELECT FROM public.payment_methods WHERE user_id = $1 AND id = $2)",
        )
        .bind(user_id)
        .bind(card_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE public.payment_methods SET is_default = true WHERE user_id = $1 AND id = $2 AND NOT is_default",
        )
        .bind(user_id)
        .bind(card_id)
        .execute(&mut *tx)
        .await?;
        let card = card_by_id(&mut tx, user_id, card_id).await?;
        before_commit.write(&mut tx, &card).await?;
        tx.commit().await?;
        Ok(card)
    }

    /// Detaches the card at Stripe, deletes it, and promotes the most recently
    /// added remaining card if it was the default.
    pub async fn delete_card(
        &self,
        actor: &Actor,
        card_id: uuid::Uuid,
        before_commit: &dyn BeforeCommit<()>,
    ) -> Result<(), WalletError> {
        let user_id = actor.traveler.user_id;
        let stripe = self.stripe()?;
        let mut tx = self.locked(actor).await?;
        let payment_method: String = sqlx::query_scalar(
            "SELECT stripe_payment_method_id FROM public.payment_methods WHERE user_id = $1 AND id = $2",
        )
        .bind(user_id)
        .bind(card_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(WalletError::CardNotFound)?;
        match stripe.detach_payment_method(&payment_method).await {
            // Already detached (or gone) at Stripe: nothing left to undo there.
            Ok(()) | Err(StripeError::Refused { status: 400 | 404, .. }) => {}
            Err(other) => return Err(other.into()),
        }
        remove_card(&mut tx, user_id, card_id).await?;
        before_commit.write(&mut tx, &()).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The card a succeeded SetupIntent of `customer` collected, attached to the
/// customer (Stripe's real API attaches it already; emulators may not).
pub(super) async fn card_of_setup_intent(
    stripe: &dyn StripePort,
    customer: &str,
    setup_intent_id: &str,
) -> Result<CardDetails, WalletError> {
    let intent = match stripe.retrieve_setup_intent(setup_intent_id).await {
        Err(StripeError::Refused { status: 404, .. }) => return Err(WalletError::SetupIntentNotFound),
        other => other?,
    };
    if intent.customer_id.as_deref() != Some(customer) {
        return Err(WalletError::SetupIntentNotFound);
    }
    let payment_method = match (intent.succeeded, intent.payment_method_id) {
        (true, Some(id)) => id,
        _ => return Err(WalletError::SetupIntentNotSucceeded),
    };
    let card = stripe.retrieve_card(&payment_method).await?;
    match card.customer_id.as_deref() {
        None => {
            stripe
                .attach_payment_method(&payment_method, customer, &format!("parker-wallet:attach:{payment_method}"))
                .await?
        }
        Some(owner) if owner == customer => {}
        Some(_) => return Err(WalletError::SetupIntentNotFound),
    }
    Ok(card)
}

/// Where [`store_card`] put a card.
pub(super) struct StoredCard {
    pub id: uuid::Uuid,
    /// The payment method the same card had before, to detach after commit.
    pub replaced: Option<String>,
    pub created: bool,
}

/// Stores `card` for the traveler, under the wallet lock the caller holds: the
/// same payment method or the same card (fingerprint) updates its row, else a
/// new row (default when the traveler has none).
pub(super) async fn store_card(
    crypto: &EnvelopeCrypto,
    tx: &mut sqlx::PgConnection,
    user_id: uuid::Uuid,
    customer: &str,
    card: &CardDetails,
) -> Result<StoredCard, WalletError> {
    let payment_method = &card.payment_method_id;
    let existing: Option<(uuid::Uuid, String)> = sqlx::query_as(
        "SELECT id, stripe_payment_method_id FROM public.payment_methods
          WHERE user_id = $1 AND (stripe_payment_method_id = $2 OR card_fingerprint = $3)
          ORDER BY stripe_payment_method_id = $2 DESC LIMIT 1",
    )
    .bind(user_id)
    .bind(payment_method)
    .bind(&card.fingerprint)
    .fetch_optional(&mut *tx)
    .await?;
    // The row id is known before the insert: the sealed metadata is bound to it.
    let id = existing.as_ref().map_or_else(uuid::Uuid::new_v4, |(id, _)| *id);
    let metadata = zeroize::Zeroizing::new(
        serde_json::to_vec(card).map_err(|e| WalletError::Internal(format!("card metadata: {e}")))?,
    );
    let sealed = crypto.encrypt(&metadata, &CARD_METADATA.context(user_id, id)).await?;
    let version = i16::from(crate::crypto::format::FORMAT_VERSION);
    Ok(match existing {
        Some((id, previous)) => {
            sqlx::query(
                "UPDATE public.payment_methods
                    SET stripe_payment_method_id = $2, encrypted_card_data = $3, brand = $4, last4 = $5,
                        exp_month = $6, exp_year = $7, card_fingerprint = $8, encryption_version = $9
                  WHERE id = $1",
            )
            .bind(id)
            .bind(payment_method)
            .bind(&sealed)
            .bind(&card.brand)
            .bind(&card.last4)
            .bind(card.exp_month)
            .bind(card.exp_year)
            .bind(&card.fingerprint)
            .bind(version)
            .execute(&mut *tx)
            .await?;
            StoredCard { id, replaced: (previous != *payment_method).then_some(previous), created: false }
        }
        None => {
            sqlx::query(
                "INSERT INTO public.payment_methods
                   (id, user_id, stripe_customer_id, stripe_payment_method_id, encrypted_card_data, card_fingerprint,
                    brand, last4, exp_month, exp_year, is_default, encryption_version)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                         NOT EXISTS (SELECT FROM public.payment_methods WHERE user_id = $2 AND is_default), $11)",
            )
            .bind(id)
            .bind(user_id)
            .bind(customer)
            .bind(payment_method)
            .bind(&sealed)
            .bind(&card.fingerprint)
            .bind(&card.brand)
            .bind(&card.last4)
            .bind(card.exp_month)
            .bind(card.exp_year)
            .bind(version)
            .execute(&mut *tx)
            .await?;
            StoredCard { id, replaced: None, created: true }
        }
    })
}

/// The same card saved again: the older Stripe copy is no longer ours to keep.
pub(super) async fn detach_replaced(stripe: &dyn StripePort, replaced: Option<String>) {
    if let Some(previous) = replaced {
        if let Err(error) = stripe.detach_payment_method(&previous).await {
            tracing::warn!(%error, payment_method = %previous, "could not detach a replaced card; its webhook will");
        }
    }
}

/// Deletes a card row and, when it was the default, promotes the newest remaining card.
pub(super) async fn remove_card(
    tx: &mut sqlx::PgConnection,
    user_id: uuid::Uuid,
    card_id: uuid::Uuid,
) -> Result<(), sqlx::Error> {
    let was_default: bool = sqlx::query_scalar("DELETE FROM public.payment_methods WHERE id = $1 RETURNING is_default")
        .bind(card_id)
        .fetch_optional(&mut *tx)
        .await?
        .unwrap_or(false);
    if was_default {
        sqlx::query(
            "UPDATE public.payment_methods SET is_default = true
              WHERE id = (SELECT id FROM public.payment_methods WHERE user_id = $1 ORDER BY created_at DESC LIMIT 1)",
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}
