//! The audit trail made provable to an auditor who trusts only KMS.
//!
//! The database keeps each traveler's hash chain (the extension writes and
//! checks it). What its owner could still do unseen (drop a chain's newest rows,
//! delete a chain, rewrite one and re-hash it to its end, pass an edit off as an
//! erasure) is caught here: [`checkpoint`] signs every chain's head through KMS
//! and writes the checkpoint to the database and to an append-only [`log`];
//! [`verify`] checks the checkpoints' signatures and the chains against the
//! newest valid one; [`redact`] signs each erasure's redaction row.

pub mod checkpoint;
pub mod log;
pub mod redact;
pub mod signer;
pub mod verify;

pub use checkpoint::{Checkpoint, Head};
pub use log::CheckpointLog;
pub use signer::{AuditSigner, KmsSigner, Signature};
pub use verify::{Finding, Report};

/// Why an audit command could not do its work (not what it found: that is a [`Finding`]).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("KMS: {0}")]
    Signing(String),
    #[error("checkpoint log {path}: {problem}")]
    Log { path: String, problem: String },
    /// The table and the log disagree about the newest checkpoint: signing a
    /// new one on top of either would hide the difference.
    #[error("{0}; run audit-verify")]
    Diverged(String),
    #[error("{0}")]
    Invalid(String),
}

/// A transaction in which every read of an audit command sees one snapshot of
/// the trail (REPEATABLE READ: what the chains were checked on is what the
/// signatures are checked on, and what a checkpoint signs), with a search path
/// no session setting can bend (the owner's `ALTER ROLE ... SET search_path`
/// could otherwise plant operators ahead of pg_catalog's).
pub(crate) async fn snapshot(
    conn: &mut sqlx::PgConnection,
    read_only: bool,
) -> Result<sqlx::Transaction<'_, sqlx::Postgres>, AuditError> {
    use sqlx::Connection;
    let mut tx = conn.begin().await?;
    let mode = if read_only { ", READ ONLY" } else { "" };
    sqlx::query(&format!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ{mode}")).execute(&mut *tx).await?;
    sqlx::query("SET LOCAL search_path = pg_catalog, pg_temp").execute(&mut *tx).await?;
    Ok(tx)
}

/// SHA-256 over a domain tag and fields, each length-prefixed.
pub(crate) fn tagged_digest(tag: &[u8], fields: &[&[u8]]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(tag);
    for field in fields {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field);
    }
    hasher.finalize().into()
}
