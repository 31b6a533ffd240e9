//! `audit-verify`: everything an auditor who trusts only KMS needs checked.
//!
//! 1. The checkpoints: each one's digest against its fields, each one chained to
//!    the one before, the table against the log (deleted, altered, unlogged).
//! 2. The newest checkpoint whose signature KMS confirms (from the log when
//!    there is one): its heads must be the ones it signed, and it must be
//!    younger than two checkpoint intervals.
//! 3. Every chain against those heads, walked here with the extension's own
//!    rules (`audit_chain`) over the rows the database holds.
//! 4. Every redaction row's signature.
//!
//! Each finding has a stable `reason`; none means the trail is intact up to the
//! newest valid checkpoint, and internally consistent since.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::checkpoint::{all_in_table, fold_heads, heads_in_table, GENESIS_DIGEST};
use super::log::LoggedCheckpoint;
use super::redact::signed_message;
use super::{AuditError, AuditSigner, Checkpoint, CheckpointLog, Head, Signature};

/// At most this many checkpoints, newest first, are offered to KMS before
/// giving up: forged rows must not buy unlimited KMS calls.
const SIGNATURE_ATTEMPTS: usize = 10;

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable: see docs/extension.md, "What the trail proves".
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_seq: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_seq: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<Uuid>,
    pub detail: String,
}

impl Finding {
    fn checkpoint(reason: &str, seq: i64, detail: impl Into<String>) -> Self {
        Self {
            reason: reason.to_owned(),
            checkpoint_seq: Some(seq),
            user_id: None,
            chain_seq: None,
            audit_id: None,
            detail: detail.into(),
        }
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// The checkpoint the chains were checked against.
    pub checkpoint: Option<Checkpoint>,
    pub heads: usize,
    pub redactions: usize,
}

/// Each checkpoint's digest against its fields, and its link to the one before.
fn check_sequence(checkpoints: &[&Checkpoint], source: &str, findings: &mut Vec<Finding>) {
    let mut previous: Option<&Checkpoint> = None;
    for checkpoint in checkpoints {
        if checkpoint.digest != checkpoint.expected_digest() {
            findings.push(Finding::checkpoint(
                "checkpoint_altered",
                checkpoint.seq,
                format!("in the {source}: its digest does not match its fields"),
            ));
        }
        let (expected_seq, expected_prev) = match previous {
            None => (1, GENESIS_DIGEST.as_slice()),
            Some(p) => (p.seq + 1, p.digest.as_slice()),
        };
        if checkpoint.seq != expected_seq || checkpoint.prev_digest != expected_prev {
            findings.push(Finding::checkpoint(
                "checkpoint_missing",
                checkpoint.seq,
                format!("in the {source}: the checkpoint before it (expected {expected_seq}) is missing or altered"),
            ));
        }
        previous = Some(checkpoint);
    }
}

/// The table against the log, which the database's owner cannot rewrite.
fn cross_check(table: &[Checkpoint], logged: &[LoggedCheckpoint], findings: &mut Vec<Finding>) {
    let in_table: HashMap<i64, &Checkpoint> = table.iter().map(|c| (c.seq, c)).collect();
    let in_log: HashMap<i64, &Checkpoint> = logged.iter().map(|l| (l.checkpoint.seq, &l.checkpoint)).collect();
    for logged in logged.iter().map(|l| &l.checkpoint) {
        match in_table.get(&logged.seq) {
            None => {
                findings.push(Finding::checkpoint("checkpoint_deleted", logged.seq, "in the log, not in the table"))
            }
            Some(stored) if *stored != logged => findings.push(Finding::checkpoint(
                "checkpoint_altered",
                logged.seq,
                "the table's row differs from the log's",
            )),
            Some(_) => {}
        }
    }
    for stored in table.iter().filter(|c| !in_log.contains_key(&c.seq)) {
        findings.push(Finding::checkpoint(
            "checkpoint_unlogged",
            stored.seq,
            "in the table, not in the log: not written by audit-checkpoint",
        ));
    }
}

/// The newest of `candidates` (oldest first) whose signature KMS confirms.
async fn newest_signed<'a>(
    signer: &dyn AuditSigner,
    candidates: &[&'a Checkpoint],
    findings: &mut Vec<Finding>,
) -> Result<Option<&'a Checkpoint>, AuditError> {
    for checkpoint in candidates.iter().rev().take(SIGNATURE_ATTEMPTS) {
        let intact = checkpoint.digest == checkpoint.expected_digest();
        if intact && signer.verify(&checkpoint.signature(), &checkpoint.digest).await? {
            return Ok(Some(checkpoint));
        }
        if intact {
            findings.push(Finding::checkpoint(
                "checkpoint_signature_invalid",
                checkpoint.seq,
                "KMS does not confirm its signature by the audit signing key",
            ));
        }
    }
    Ok(None)
}

/// Rows read from the database a batch at a time (a cursor).
const FETCH_ROWS: usize = 10_000;

/// Walks every chain against `heads`, here, with the extension's own rules
/// (`audit_chain`) over the rows as the database holds them: nothing the
/// database runs (a function its superuser could replace) takes part.
async fn check_chains(conn: &mut PgConnection, heads: &[Head]) -> Result<Vec<Finding>, AuditError> {
    let mut scan = audit_chain::ChainScan::new(
        heads
            .iter()
            .map(|h| audit_chain::Head {
                user_id: *h.user_id.as_bytes(),
                chain_seq: h.chain_seq,
                row_hash: h.row_hash.clone(),
            })
            .collect(),
    );
    sqlx::query(&format!("DECLARE audit_rows NO SCROLL CURSOR FOR {}", audit_chain::CHAIN_SQL))
        .bind(None::<Uuid>)
        .execute(&mut *conn)
        .await?;
    loop {
        let rows = sqlx::query(&format!("FETCH {FETCH_ROWS} FROM audit_rows")).fetch_all(&mut *conn).await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            scan.push(audit_row(row)?);
        }
    }
    sqlx::query("CLOSE audit_rows").execute(&mut *conn).await?;
    Ok(scan
        .finish()
        .into_iter()
        .map(|f| Finding {
            reason: f.reason.as_str().to_owned(),
            checkpoint_seq: None,
            user_id: Some(Uuid::from_bytes(f.user_id)),
            chain_seq: Some(f.chain_seq),
            audit_id: f.id.map(Uuid::from_bytes),
            detail: "the audit chain".into(),
        })
        .collect())
}

/// One row of `audit_chain::CHAIN_SQL`; a NULL where none belongs reads as a
/// value that cannot verify, never as an error that stops the run.
fn audit_row(row: &sqlx::postgres::PgRow) -> Result<audit_chain::AuditRow, sqlx::Error> {
    let uuid = |i: usize| row.try_get::<Option<Uuid>, _>(i).map(|u| u.map(|u| *u.as_bytes()));
    Ok(audit_chain::AuditRow {
        id: uuid(0)?.unwrap_or_default(),
        user_id: uuid(1)?.unwrap_or_default(),
        chain_seq: row.try_get::<Option<i64>, _>(2)?.unwrap_or_default(),
        action: row.try_get::<Option<String>, _>(3)?.unwrap_or_default(),
        table_name: row.try_get::<Option<String>, _>(4)?.unwrap_or_default(),
        record_id: uuid(5)?,
        old_data: row.try_get(6)?,
        new_data: row.try_get(7)?,
        ip_address: row.try_get(8)?,
        user_agent: row.try_get(9)?,
        created_at_micros: row.try_get::<Option<i64>, _>(10)?.unwrap_or_default(),
        prev_hash: row.try_get::<Option<Vec<u8>>, _>(11)?.unwrap_or_default(),
        row_hash: row.try_get::<Option<Vec<u8>>, _>(12)?.unwrap_or_default(),
        hash_version: row.try_get::<Option<i16>, _>(13)?.unwrap_or_default(),
        actor: row.try_get(14)?,
        personal_salt: row.try_get(15)?,
        redacted_digest: row.try_get(16)?,
    })
}

/// Every redaction row's signature, whatever else its chain shows (an early
/// break must not hide a forged redaction); returns how many there are. KMS
/// failing part-way (throttled by a flood of forged rows, say) is itself a
/// finding: what was found so far is reported, never lost to an error.
async fn check_redactions(
    conn: &mut PgConnection,
    signer: &dyn AuditSigner,
    findings: &mut Vec<Finding>,
) -> Result<usize, AuditError> {
    let rows = sqlx::query(
        "SELECT a.id, a.user_id, a.chain_seq, a.row_hash, s.key_id, s.signing_algorithm, s.signature
           FROM public.traveler_data_audit a
           LEFT JOIN public.audit_redaction_signatures s ON s.audit_id = a.id
          WHERE a.action = 'REDACT' ORDER BY a.user_id, a.chain_seq",
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in &rows {
        let (id, user_id, chain_seq, row_hash): (Option<Uuid>, Option<Uuid>, Option<i64>, Option<Vec<u8>>) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
        let (id, user_id, chain_seq, row_hash) = (
            id.unwrap_or_default(),
            user_id.unwrap_or_default(),
            chain_seq.unwrap_or_default(),
            row_hash.unwrap_or_default(),
        );
        let finding = |reason: &str, detail: &str| Finding {
            reason: reason.to_owned(),
            checkpoint_seq: None,
            user_id: Some(user_id),
            chain_seq: Some(chain_seq),
            audit_id: Some(id),
            detail: detail.to_owned(),
        };
        let key_id: Option<String> = row.try_get(4)?;
        let Some(key_id) = key_id else {
            findings.push(finding("redaction_unsigned", "a redaction row without its KMS signature"));
            continue;
        };
        let signature = Signature {
            key_id,
            algorithm: row.try_get::<Option<String>, _>(5)?.unwrap_or_default(),
            bytes: row.try_get::<Option<Vec<u8>>, _>(6)?.unwrap_or_default(),
        };
        match signer.verify(&signature, &signed_message(id, user_id, chain_seq, &row_hash)).await {
            Ok(true) => {}
            Ok(false) => {
                findings.push(finding("redaction_signature_invalid", "KMS does not confirm the redaction's signature"))
            }
            Err(error) => {
                findings.push(finding("redactions_not_checked", &format!("this and later redaction rows: {error}")));
                break;
            }
        }
    }
    Ok(rows.len())
}

/// Runs every check; `max_age` is two checkpoint intervals.
pub async fn run(
    conn: &mut PgConnection,
    signer: &dyn AuditSigner,
    log: Option<&CheckpointLog>,
    max_age: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<Report, AuditError> {
    let mut findings = Vec::new();
    let mut tx = super::snapshot(conn, true).await?;
    let conn = &mut *tx;
    let table = all_in_table(conn, None).await?;
    let logged = match log {
        Some(log) => log.read_all()?,
        None => Vec::new(),
    };
    check_sequence(&table.iter().collect::<Vec<_>>(), "table", &mut findings);
    if log.is_some() {
        check_sequence(&logged.iter().map(|l| &l.checkpoint).collect::<Vec<_>>(), "log", &mut findings);
        cross_check(&table, &logged, &mut findings);
    }

    let candidates: Vec<&Checkpoint> = match log {
        Some(_) => logged.iter().map(|l| &l.checkpoint).collect(),
        None => table.iter().collect(),
    };
    let authority = newest_signed(signer, &candidates, &mut findings).await?.cloned();
    let mut heads: Vec<Head> = Vec::new();
    match &authority {
        None => findings.push(Finding {
            reason: "no_valid_checkpoint".into(),
            checkpoint_seq: None,
            user_id: None,
            chain_seq: None,
            audit_id: None,
            detail: "no checkpoint with a valid signature: the chains are checked only against themselves".into(),
        }),
        Some(checkpoint) => {
            let from_table = heads_in_table(conn, checkpoint.seq).await?;
            let table_intact = checkpoint.covers(&from_table);
            if !table_intact {
                findings.push(Finding::checkpoint(
                    "checkpoint_heads_altered",
                    checkpoint.seq,
                    "the table's heads for it are not the ones it signed",
                ));
            }
            heads = if log.is_some() {
                let moved =
                    logged.iter().take_while(|l| l.checkpoint.seq <= checkpoint.seq).flat_map(|l| l.heads.clone());
                let logged_heads = fold_heads(HashMap::new(), moved);
                if !checkpoint.covers(&logged_heads) {
                    findings.push(Finding::checkpoint(
                        "checkpoint_heads_altered",
                        checkpoint.seq,
                        "the log's heads for it are not the ones it signed",
                    ));
                }
                logged_heads
            } else if table_intact {
                from_table
            } else {
                Vec::new()
            };
            if now - checkpoint.created_at > max_age {
                findings.push(Finding::checkpoint(
                    "checkpoint_overdue",
                    checkpoint.seq,
                    format!("the newest valid checkpoint was taken at {}", checkpoint.created_at.to_rfc3339()),
                ));
            }
        }
    }
    findings.extend(check_chains(conn, &heads).await?);
    let redactions = check_redactions(conn, signer, &mut findings).await?;
    tx.commit().await?;
    Ok(Report { findings, checkpoint: authority, heads: heads.len(), redactions })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checkpoint::heads_digest;

    fn chain_of_checkpoints(n: i64) -> Vec<Checkpoint> {
        let mut all: Vec<Checkpoint> = Vec::new();
        for seq in 1..=n {
            let mut checkpoint = Checkpoint {
                seq,
                created_at: DateTime::from_timestamp_micros(1_800_000_000_000_000 + seq).unwrap(),
                head_count: 0,
                heads_digest: heads_digest(&[]).to_vec(),
                prev_digest: all.last().map_or(GENESIS_DIGEST.to_vec(), |p| p.digest.clone()),
                digest: vec![],
                key_id: "fake".into(),
                signing_algorithm: "ECDSA_SHA_256".into(),
                signature: vec![],
            };
            checkpoint.digest = checkpoint.expected_digest().to_vec();
            all.push(checkpoint);
        }
        all
    }

    fn reasons(findings: &[Finding]) -> Vec<(String, Option<i64>)> {
        findings.iter().map(|f| (f.reason.clone(), f.checkpoint_seq)).collect()
    }

    #[test]
    fn a_checkpoint_removed_from_the_middle_or_edited_breaks_the_sequence() {
        let mut all = chain_of_checkpoints(4);
        let mut findings = Vec::new();
        check_sequence(&all.iter().collect::<Vec<_>>(), "table", &mut findings);
        assert!(findings.is_empty());
        all.remove(1);
        all[2].head_count = 9;
        check_sequence(&all.iter().collect::<Vec<_>>(), "table", &mut findings);
        assert_eq!(
            reasons(&findings),
            [("checkpoint_missing".into(), Some(3)), ("checkpoint_altered".into(), Some(4))]
        );
    }

    #[test]
    fn the_table_is_held_to_the_log() {
        let logged: Vec<LoggedCheckpoint> = chain_of_checkpoints(3)
            .into_iter()
            .map(|checkpoint| LoggedCheckpoint { checkpoint, heads: vec![] })
            .collect();
        let mut table: Vec<Checkpoint> = logged.iter().map(|l| l.checkpoint.clone()).collect();
        table.pop(); // the newest deleted
        table[0].key_id = "forged".into();
        let mut forged = table[1].clone();
        forged.seq = 7;
        table.push(forged);
        let mut findings = Vec::new();
        cross_check(&table, &logged, &mut findings);
        assert_eq!(
            reasons(&findings),
            [
                ("checkpoint_altered".into(), Some(1)),
                ("checkpoint_deleted".into(), Some(3)),
                ("checkpoint_unlogged".into(), Some(7))
            ]
        );
    }

    #[tokio::test]
    async fn the_newest_checkpoint_kms_confirms_is_the_authority() {
        let signer = crate::audit::signer::fake::FakeSigner::default();
        let mut all = chain_of_checkpoints(3);
        for checkpoint in all.iter_mut() {
            checkpoint.signature = signer.sign(&checkpoint.digest).await.unwrap().bytes;
        }
        all[2].signature = vec![0; 64]; // forged without the key
        let mut findings = Vec::new();
        let authority = newest_signed(&signer, &all.iter().collect::<Vec<_>>(), &mut findings).await.unwrap();
        assert_eq!(authority.map(|c| c.seq), Some(2));
        assert_eq!(reasons(&findings), [("checkpoint_signature_invalid".into(), Some(3))]);
    }
}
