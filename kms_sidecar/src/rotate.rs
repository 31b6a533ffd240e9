//! `kms-sidecar rotate-keys`: re-encrypts a column's records under the current
//! key-encryption key and epoch, in batches, each batch its own transaction.
//! Resumable: an interrupted run is simply started again; records already
//! current are skipped, and a record changed meanwhile is left to the next run.

use sqlx::{Connection, PgConnection};

use crate::crypto::format;
use crate::crypto::{CryptoError, EnvelopeCrypto};
use crate::domain::{EncryptionContext, Identifier, InvalidContext};

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("{0}")]
    Target(#[from] InvalidContext),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("record {id}: {source}")]
    Record { id: uuid::Uuid, source: CryptoError },
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct RotationReport {
    pub examined: u64,
    pub rewrapped: u64,
    pub skipped_changed: u64,
}

/// The format version `encryption_version` records for rewrapped rows.
const ENCRYPTION_VERSION: i16 = format::FORMAT_VERSION as i16;

pub async fn rotate_column(
    conn: &mut PgConnection,
    crypto: &EnvelopeCrypto,
    table: &str,
    column: &str,
    batch_size: i64,
) -> Result<RotationReport, RotateError> {
    let table = Identifier::parse(table, "table")?;
    let column = Identifier::parse(column, "column")?;
    let select = format!(
        "SELECT id, user_id, {c} FROM public.{t} WHERE id > $1 ORDER BY id LIMIT $2",
        t = table.as_str(),
        c = column.as_str()
    );
    let update = format!(
        "UPDATE public.{t} SET {c} = $1, encryption_version = $2 WHERE id = $3 AND {c} = $4",
        t = table.as_str(),
        c = column.as_str()
    );
    let mut report = RotationReport::default();
    let mut after = uuid::Uuid::nil();
    loop {
        let rows: Vec<(uuid::Uuid, uuid::Uuid, Vec<u8>)> =
            sqlx::query_as(&select).bind(after).bind(batch_size.max(1)).fetch_all(&mut *conn).await?;
        let Some(last) = rows.last() else { break };
        after = last.0;
        let mut tx = conn.begin().await?;
        for (id, user_id, record) in rows {
            report.examined += 1;
            let current = crypto.is_current(&record).await.map_err(|source| RotateError::Record { id, source })?;
            if current {
                continue;
            }
            let context = EncryptionContext { user_id, table: table.clone(), column: column.clone() };
            let rewrapped = crypto.rewrap(&record, &context).await.map_err(|source| RotateError::Record { id, source })?;
            let changed = sqlx::query(&update)
                .bind(&rewrapped)
                .bind(ENCRYPTION_VERSION)
                .bind(id)
                .bind(&record)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if changed == 1 {
                report.rewrapped += 1;
            } else {
                report.skipped_changed += 1;
            }
        }
        tx.commit().await?;
        tracing::info!(examined = report.examined, rewrapped = report.rewrapped, "rotate-keys batch committed");
    }
    Ok(report)
}
