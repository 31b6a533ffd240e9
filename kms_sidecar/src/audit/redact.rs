//! `audit-redact`: an erasure's part in the audit trail. `wallet.redact_audit`
//! removes the traveler's personal data from their chain and appends a
//! redaction row naming each row it redacted; in the same transaction the row
//! is signed through KMS, so `audit-verify` tells an erasure from an edit
//! passed off as one (a redaction row nobody signed).

use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{tagged_digest, AuditError, AuditSigner};

/// What the key signs for a redaction row: its id, traveler, place and hash
/// (which covers what it redacted and why).
pub fn signed_message(audit_id: Uuid, user_id: Uuid, chain_seq: i64, row_hash: &[u8]) -> Vec<u8> {
    tagged_digest(
        b"parker_wallet.audit.redaction.v1",
        &[audit_id.as_bytes(), user_id.as_bytes(), &chain_seq.to_be_bytes(), row_hash],
    )
    .to_vec()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    /// The redaction row.
    pub audit_id: Uuid,
    pub chain_seq: i64,
    pub redacted_rows: i64,
}

/// Redacts `user_id`'s chain and signs the redaction; `None` when nothing was
/// left to redact. Nothing is kept unless the signature is.
pub async fn redact(
    conn: &mut PgConnection,
    signer: &dyn AuditSigner,
    user_id: Uuid,
    reason: &str,
) -> Result<Option<Redaction>, AuditError> {
    let mut tx = super::snapshot(conn, false).await?;
    let row = sqlx::query("SELECT audit_id, chain_seq, row_hash, redacted_rows FROM wallet.redact_audit($1, $2)")
        .bind(user_id)
        .bind(reason)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        tx.commit().await?;
        return Ok(None);
    };
    let (audit_id, chain_seq, row_hash, redacted_rows): (Uuid, i64, Vec<u8>, i64) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
    let signature = signer.sign(&signed_message(audit_id, user_id, chain_seq, &row_hash)).await?;
    sqlx::query(
        "INSERT INTO public.audit_redaction_signatures (audit_id, key_id, signing_algorithm, signature)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(audit_id)
    .bind(&signature.key_id)
    .bind(&signature.algorithm)
    .bind(&signature.bytes)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(Redaction { audit_id, chain_seq, redacted_rows }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_message_names_the_row_and_its_place() {
        let (id, user) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let message = signed_message(id, user, 3, &[4; 32]);
        assert_ne!(message, signed_message(user, id, 3, &[4; 32]));
        assert_ne!(message, signed_message(id, user, 4, &[4; 32]));
        assert_ne!(message, signed_message(id, user, 3, &[5; 32]));
    }
}
