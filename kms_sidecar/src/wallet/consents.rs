//! Card consents for off-session charges (PSD2): recorded with the request's
//! place (as the audit trail reads it), withdrawn, never deleted. Campaign and
//! marketing consents are recorded by the database's triggers from the rows
//! the traveler writes; a deleted card's consent is withdrawn by one too.

use chrono::{DateTime, Utc};

use super::{Wallet, WalletError};
use crate::db::BeforeCommit;
use crate::domain::{Actor, ConsentVersion};

/// A consent record as the traveler may see it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Consent {
    pub id: uuid::Uuid,
    pub kind: String,
    pub subject_id: Option<uuid::Uuid>,
    pub text_version: String,
    pub granted_at: DateTime<Utc>,
    pub withdrawn_at: Option<DateTime<Utc>>,
}

const CONSENT_COLUMNS: &str = "id, kind, subject_id, text_version, granted_at, withdrawn_at";

/// Withdraws the card's consent in force ($1 traveler, $2 card), unless it is
/// to the text $3 (NULL: whatever its text). withdrawn_at is the database's
/// clock (the table's trigger sets it, and who withdrew).
const WITHDRAW_CARD_CONSENT: &str = "UPDATE public.consents
    SET withdrawn_at = now(), withdrawn_ip_address = wallet.client_ip(),
        withdrawn_user_agent = left(wallet.request_header('user-agent'), 512)
  WHERE user_id = $1 AND kind = 'card_off_session' AND subject_id = $2 AND withdrawn_at IS NULL
    AND text_version IS DISTINCT FROM $3
  RETURNING id, kind, subject_id, text_version, granted_at, withdrawn_at";

/// Records the traveler's consent to off-session charges on `card_id`, unless
/// one to the same text is in force already (one to another text ends: the
/// new text is a new consent); returns the one in force and whether it is new.
/// The caller holds the wallet lock and knows the card is the traveler's.
pub(super) async fn record_card_consent(
    tx: &mut sqlx::PgConnection,
    user_id: uuid::Uuid,
    card_id: uuid::Uuid,
    version: &ConsentVersion,
) -> Result<(Consent, bool), sqlx::Error> {
    sqlx::query(WITHDRAW_CARD_CONSENT).bind(user_id).bind(card_id).bind(version.as_str()).execute(&mut *tx).await?;
    let inserted: Option<Consent> = sqlx::query_as(&format!(
        "INSERT INTO public.consents (user_id, kind, subject_id, text_version, ip_address, user_agent, recorded_by)
         VALUES ($1, 'card_off_session', $2, $3, wallet.client_ip(), left(wallet.request_header('user-agent'), 512),
                 wallet_internal.consent_writer())
         ON CONFLICT (user_id, kind, coalesce(subject_id, '00000000-0000-0000-0000-000000000000'::uuid))
           WHERE withdrawn_at IS NULL DO NOTHING
         RETURNING {CONSENT_COLUMNS}"
    ))
    .bind(user_id)
    .bind(card_id)
    .bind(version.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    match inserted {
        Some(consent) => Ok((consent, true)),
        None => Ok((card_consent_in_force(tx, user_id, card_id).await?.ok_or(sqlx::Error::RowNotFound)?, false)),
    }
}

async fn card_consent_in_force(
    tx: &mut sqlx::PgConnection,
    user_id: uuid::Uuid,
    card_id: uuid::Uuid,
) -> Result<Option<Consent>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {CONSENT_COLUMNS} FROM public.consents
          WHERE user_id = $1 AND kind = 'card_off_session' AND subject_id = $2 AND withdrawn_at IS NULL"
    ))
    .bind(user_id)
    .bind(card_id)
    .fetch_optional(tx)
    .await
}

/// Whether `card_id` is one of the traveler's cards (locked for the change).
async fn own_card(tx: &mut sqlx::PgConnection, user_id: uuid::Uuid, card_id: uuid::Uuid) -> Result<(), WalletError> {
    let found: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM public.payment_methods WHERE user_id = $1 AND id = $2 FOR UPDATE")
            .bind(user_id)
            .bind(card_id)
            .fetch_optional(tx)
            .await?;
    found.map(drop).ok_or(WalletError::CardNotFound)
}

impl Wallet<'_> {
    /// The traveler consents to off-session charges on one of their cards.
    pub async fn consent_to_card(
        &self,
        actor: &Actor,
        card_id: uuid::Uuid,
        version: &ConsentVersion,
        before_commit: &dyn BeforeCommit<(Consent, bool)>,
    ) -> Result<(Consent, bool), WalletError> {
        let user_id = actor.traveler.user_id;
        let mut tx = self.locked(actor).await?;
        own_card(&mut tx, user_id, card_id).await?;
        let recorded = record_card_consent(&mut tx, user_id, card_id, version).await?;
        before_commit.write(&mut tx, &recorded).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    /// The traveler withdraws it: no new off-session charge on that card.
    pub async fn withdraw_card_consent(
        &self,
        actor: &Actor,
        card_id: uuid::Uuid,
        before_commit: &dyn BeforeCommit<Consent>,
    ) -> Result<Consent, WalletError> {
        let user_id = actor.traveler.user_id;
        let mut tx = self.locked(actor).await?;
        own_card(&mut tx, user_id, card_id).await?;
        let withdrawn: Option<Consent> = sqlx::query_as(WITHDRAW_CARD_CONSENT)
            .bind(user_id)
            .bind(card_id)
            .bind(None::<&str>)
            .fetch_optional(&mut *tx)
            .await?;
        let withdrawn = withdrawn.ok_or(WalletError::ConsentNotFound)?;
        before_commit.write(&mut tx, &withdrawn).await?;
        tx.commit().await?;
        Ok(withdrawn)
    }
}
