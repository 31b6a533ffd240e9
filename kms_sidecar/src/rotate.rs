//! `kms-sidecar rotate-keys`: re-encrypts sealed records under the current
//! key-encryption key, epoch and format, in batches, each batch its own
//! transaction. Every column in `domain::SEALED_COLUMNS` is rotated, or the one
//! named. Resumable: an interrupted run is simply started again; records
//! already current are skipped, and a record changed meanwhile is left to the
//! next run.

use sqlx::{Connection, PgConnection};

use crate::crypto::format;
use crate::crypto::{CryptoError, EnvelopeCrypto};
use crate::domain::{SealedColumn, SEALED_COLUMNS};

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("{table}.{column} is not a sealed column; the sealed columns are: {known}")]
    NotSealed { table: String, column: String, known: String },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{table}.{column}, record {id}: {source}")]
    Record { table: &'static str, column: &'static str, id: uuid::Uuid, source: CryptoError },
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct RotationReport {
    pub examined: u64,
    pub rewrapped: u64,
    pub skipped_changed: u64,
}

/// The columns a run covers: the one named (which must be listed), or all.
pub fn columns(table: Option<&str>, column: Option<&str>) -> Result<Vec<SealedColumn>, RotateError> {
    match (table, column) {
        (None, None) => Ok(SEALED_COLUMNS.to_vec()),
        (table, column) => {
            let (table, column) = (table.unwrap_or_default(), column.unwrap_or_default());
            SealedColumn::find(table, column).map(|sealed| vec![sealed]).ok_or_else(|| RotateError::NotSealed {
                table: table.to_owned(),
                column: column.to_owned(),
                known: SEALED_COLUMNS
                    .iter()
                    .map(|s| format!("{}.{}", s.table, s.column))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }
}

pub async fn rotate_column(
    conn: &mut PgConnection,
    crypto: &EnvelopeCrypto,
    sealed: SealedColumn,
    batch_size: i64,
) -> Result<RotationReport, RotateError> {
    // Names from the compiled-in list only, never from input.
    let (table, column) = (sealed.table, sealed.column);
    // An empty value seals nothing: an erasure empties the passengers it kept.
    let select = format!(
        "SELECT id, user_id, {column} FROM public.{table}
          WHERE id > $1 AND octet_length({column}) > 0 ORDER BY id LIMIT $2"
    );
    let set_version = sealed.version_column.map(|v| format!(", {v} = $4")).unwrap_or_default();
    let update = format!("UPDATE public.{table} SET {column} = $1{set_version} WHERE id = $2 AND {column} = $3");
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
            let failed = |source| RotateError::Record { table, column, id, source };
            if crypto.is_current(&record).await.map_err(failed)? {
                continue;
            }
            let rewrapped = crypto.rewrap(&record, &sealed.context(user_id, id)).await.map_err(failed)?;
            let mut query = sqlx::query(&update).bind(&rewrapped).bind(id).bind(&record);
            if sealed.version_column.is_some() {
                query = query.bind(i16::from(format::FORMAT_VERSION));
            }
            if query.execute(&mut *tx).await?.rows_affected() == 1 {
                report.rewrapped += 1;
            } else {
                report.skipped_changed += 1;
            }
        }
        tx.commit().await?;
        tracing::info!(
            table,
            column,
            examined = report.examined,
            rewrapped = report.rewrapped,
            "rotate-keys batch committed"
        );
    }
    Ok(report)
}
