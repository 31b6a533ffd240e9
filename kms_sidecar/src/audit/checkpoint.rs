//! A checkpoint: every traveler's chain head, digested and signed through KMS,
//! written to the database and to the append-only log in one go.
//!
//! What the key signs (`Checkpoint::expected_digest`): SHA-256 over a tag and,
//! each length-prefixed, the checkpoint's number, its time (microseconds), the
//! number of heads, the digest of every head ([`heads_digest`]) and the digest
//! of the checkpoint before (zeros for the first). Chaining the checkpoints
//! makes one removed from the middle show; the log makes the newest ones
//! removed from the table show.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{tagged_digest, AuditError, AuditSigner, CheckpointLog, Signature};

/// The `prev_digest` of the first checkpoint.
pub const GENESIS_DIGEST: [u8; 32] = [0; 32];

/// Serialises checkpoint writers (`pg_advisory_xact_lock`): "PWCK".
const CHECKPOINT_LOCK: i64 = 0x5057_434B;

/// Heads are written this many to a statement.
const HEADS_PER_INSERT: usize = 50_000;

/// A chain's newest row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub user_id: Uuid,
    pub chain_seq: i64,
    #[serde(with = "hex::serde")]
    pub row_hash: Vec<u8>,
}

/// One checkpoint, as stored in `audit_checkpoints` and in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub created_at: DateTime<Utc>,
    pub head_count: i64,
    #[serde(with = "hex::serde")]
    pub heads_digest: Vec<u8>,
    #[serde(with = "hex::serde")]
    pub prev_digest: Vec<u8>,
    #[serde(with = "hex::serde")]
    pub digest: Vec<u8>,
    pub key_id: String,
    pub signing_algorithm: String,
    #[serde(with = "hex::serde")]
    pub signature: Vec<u8>,
}

/// The digest over every head, in user id order: a tag, then each head's user id
/// (16 bytes), sequence number (8, big-endian), and row hash with its length
/// (8, big-endian) before it, so no two sets of heads give one digest.
pub fn heads_digest<'a>(heads_in_user_order: impl IntoIterator<Item = &'a Head>) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"parker_wallet.audit.heads.v1");
    for head in heads_in_user_order {
        hasher.update(head.user_id.as_bytes());
        hasher.update(head.chain_seq.to_be_bytes());
        hasher.update((head.row_hash.len() as u64).to_be_bytes());
        hasher.update(&head.row_hash);
    }
    hasher.finalize().into()
}

impl Checkpoint {
    /// The digest its fields call for: what the key must have signed.
    pub fn expected_digest(&self) -> [u8; 32] {
        tagged_digest(
            b"parker_wallet.audit.checkpoint.v1",
            &[
                &self.seq.to_be_bytes(),
                &self.created_at.timestamp_micros().to_be_bytes(),
                &self.head_count.to_be_bytes(),
                &self.heads_digest,
                &self.prev_digest,
            ],
        )
    }

    pub fn signature(&self) -> Signature {
        Signature {
            key_id: self.key_id.clone(),
            algorithm: self.signing_algorithm.clone(),
            bytes: self.signature.clone(),
        }
    }

    /// Whether these heads (a full set, in user id order) are the ones it signed.
    pub fn covers(&self, heads: &[Head]) -> bool {
        heads.len() as i64 == self.head_count && heads_digest(heads).as_slice() == self.heads_digest
    }
}

/// Every head of a checkpoint from its own heads and the moved ones since:
/// each traveler's newest, in user id order.
pub fn fold_heads(mut heads: HashMap<Uuid, Head>, moved: impl IntoIterator<Item = Head>) -> Vec<Head> {
    for head in moved {
        heads.insert(head.user_id, head);
    }
    let mut all: Vec<Head> = heads.into_values().collect();
    all.sort_by_key(|h| h.user_id);
    all
}

/// What taking a checkpoint did.
#[derive(Debug)]
pub struct Taken {
    pub checkpoint: Checkpoint,
    /// Chains whose head moved since the checkpoint before (all, in the first).
    pub moved: usize,
    /// Checkpointed heads kept as they were because their chain no longer holds
    /// them (cut back, deleted or rewritten): `audit-verify` reports each.
    pub departed: Vec<Head>,
    /// A checkpoint found in the log but not in the table, put back first.
    pub restored: Option<i64>,
}

/// Whether `logged` is the checkpoint right after `newest` (the first, if none).
fn follows(logged: &Checkpoint, newest: Option<&Checkpoint>) -> bool {
    match newest {
        None => logged.seq == 1 && logged.prev_digest == GENESIS_DIGEST,
        Some(newest) => logged.seq == newest.seq + 1 && logged.prev_digest == newest.digest,
    }
}

/// A head as stored; a NULL where none belongs reads as a value that verifies
/// nothing (the digest then shows it), never as an error that stops the run.
fn head_of(row: &sqlx::postgres::PgRow) -> Result<Head, sqlx::Error> {
    Ok(Head {
        user_id: row.try_get::<Option<Uuid>, _>(0)?.unwrap_or_default(),
        chain_seq: row.try_get::<Option<i64>, _>(1)?.unwrap_or_default(),
        row_hash: row.try_get::<Option<Vec<u8>>, _>(2)?.unwrap_or_default(),
    })
}

pub(crate) async fn newest_in_table(conn: &mut PgConnection) -> Result<Option<Checkpoint>, AuditError> {
    Ok(all_in_table(conn, Some(1)).await?.pop())
}

/// The table's checkpoints in order (or only the newest `limit`, newest first).
pub(crate) async fn all_in_table(conn: &mut PgConnection, limit: Option<i64>) -> Result<Vec<Checkpoint>, AuditError> {
    // Every column as written, or a value that cannot verify: a NULL or a time
    // out of range (infinity) is the table's owner's doing, to be reported, and
    // must not stop the run.
    let rows = sqlx::query(
        "SELECT seq,
                CASE WHEN isfinite(created_at) AND abs(extract(epoch FROM created_at)) < 9e12
                     THEN (extract(epoch FROM created_at) * 1000000)::bigint END,
                head_count, heads_digest, prev_digest, digest, key_id, signing_algorithm, signature
           FROM public.audit_checkpoints
          WHERE seq IS NOT NULL
          ORDER BY CASE WHEN $1::bigint IS NULL THEN seq ELSE -seq END
          LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            let micros: Option<i64> = row.try_get(1)?;
            Ok(Checkpoint {
                seq: row.try_get(0)?,
                created_at: micros.and_then(DateTime::from_timestamp_micros).unwrap_or_default(),
                head_count: row.try_get::<Option<i64>, _>(2)?.unwrap_or(-1),
                heads_digest: row.try_get::<Option<Vec<u8>>, _>(3)?.unwrap_or_default(),
                prev_digest: row.try_get::<Option<Vec<u8>>, _>(4)?.unwrap_or_default(),
                digest: row.try_get::<Option<Vec<u8>>, _>(5)?.unwrap_or_default(),
                key_id: row.try_get::<Option<String>, _>(6)?.unwrap_or_default(),
                signing_algorithm: row.try_get::<Option<String>, _>(7)?.unwrap_or_default(),
                signature: row.try_get::<Option<Vec<u8>>, _>(8)?.unwrap_or_default(),
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(AuditError::from)
}

/// A checkpoint's heads as the table records them (see `wallet.audit_checkpoint_heads`).
pub(crate) async fn heads_in_table(conn: &mut PgConnection, seq: i64) -> Result<Vec<Head>, AuditError> {
    let rows = sqlx::query("SELECT user_id, chain_seq, row_hash FROM wallet.audit_checkpoint_heads($1)")
        .bind(seq)
        .fetch_all(&mut *conn)
        .await?;
    let mut heads = rows.iter().map(head_of).collect::<Result<Vec<_>, _>>()?;
    heads.sort_by_key(|h| h.user_id);
    Ok(heads)
}

/// Every chain's newest row now.
async fn current_heads(conn: &mut PgConnection) -> Result<Vec<Head>, AuditError> {
    let rows = sqlx::query(
        "SELECT DISTINCT ON (user_id) user_id, chain_seq, row_hash FROM public.traveler_data_audit
          ORDER BY user_id DESC, chain_seq DESC",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.iter().map(head_of).collect::<Result<Vec<_>, _>>()?)
}

/// Of these checkpointed heads, the ones whose row is gone or has another hash.
async fn no_longer_held(conn: &mut PgConnection, heads: &[&Head]) -> Result<Vec<Uuid>, AuditError> {
    let users: Vec<Uuid> = heads.iter().map(|h| h.user_id).collect();
    let seqs: Vec<i64> = heads.iter().map(|h| h.chain_seq).collect();
    let hashes: Vec<Vec<u8>> = heads.iter().map(|h| h.row_hash.clone()).collect();
    let rows = sqlx::query(
        "SELECT h.user_id FROM unnest($1::uuid[], $2::bigint[], $3::bytea[]) AS h(user_id, chain_seq, row_hash)
           LEFT JOIN public.traveler_data_audit a ON a.user_id = h.user_id AND a.chain_seq = h.chain_seq
          WHERE a.row_hash IS DISTINCT FROM h.row_hash",
    )
    .bind(users)
    .bind(seqs)
    .bind(hashes)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?)
}

/// Writes a checkpoint and the heads that moved since the one before.
pub async fn store(conn: &mut PgConnection, checkpoint: &Checkpoint, moved: &[Head]) -> Result<(), AuditError> {
    sqlx::query(
        "INSERT INTO public.audit_checkpoints
           (seq, created_at, head_count, heads_digest, prev_digest, digest, key_id, signing_algorithm, signature)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(checkpoint.seq)
    .bind(checkpoint.created_at)
    .bind(checkpoint.head_count)
    .bind(&checkpoint.heads_digest)
    .bind(&checkpoint.prev_digest)
    .bind(&checkpoint.digest)
    .bind(&checkpoint.key_id)
    .bind(&checkpoint.signing_algorithm)
    .bind(&checkpoint.signature)
    .execute(&mut *conn)
    .await?;
    for chunk in moved.chunks(HEADS_PER_INSERT) {
        sqlx::query(
            "INSERT INTO public.audit_checkpoint_heads (checkpoint_seq, user_id, chain_seq, row_hash)
             SELECT $1, * FROM unnest($2::uuid[], $3::bigint[], $4::bytea[])",
        )
        .bind(checkpoint.seq)
        .bind(chunk.iter().map(|h| h.user_id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|h| h.chain_seq).collect::<Vec<_>>())
        .bind(chunk.iter().map(|h| h.row_hash.clone()).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Takes the next checkpoint: checks the one before (its signature: one KMS
/// call; its heads), reads every chain's head, moves on only the heads that
/// grew from where the last checkpoint left them, signs the digest (one more
/// KMS call), writes the checkpoint to the table and the log, then commits.
/// Refuses when the table and the log disagree about the newest checkpoint, or
/// when that checkpoint is not what the key signed.
pub async fn take(conn: &mut PgConnection, signer: &dyn AuditSigner, log: &CheckpointLog) -> Result<Taken, AuditError> {
    // One checkpointer at a time, and its snapshot taken once it holds the lock:
    // every read (heads now, heads checked in place) then sees one trail.
    sqlx::query("SELECT pg_advisory_lock($1)").bind(CHECKPOINT_LOCK).execute(&mut *conn).await?;
    let taken = take_locked(conn, signer, log).await;
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(CHECKPOINT_LOCK).execute(&mut *conn).await?;
    taken
}

async fn take_locked(
    conn: &mut PgConnection,
    signer: &dyn AuditSigner,
    log: &CheckpointLog,
) -> Result<Taken, AuditError> {
    let mut tx = super::snapshot(conn, false).await?;

    let mut previous = newest_in_table(&mut tx).await?;
    let logged = log.newest()?;
    let mut restored = None;
    // A checkpoint logged whose transaction then failed (or that was deleted from
    // the table since): the log one ahead, following the table's newest. Put back;
    // it is then what the next one builds on, so the signature check below
    // covers it too (and a forged one rolls the restore back with the refusal).
    if let Some(logged) = logged.as_ref().filter(|l| follows(l, previous.as_ref())) {
        if let Some(line) = log.read_all()?.into_iter().find(|line| line.checkpoint == *logged) {
            store(&mut tx, &line.checkpoint, &line.heads).await?;
            restored = Some(logged.seq);
            previous = Some(line.checkpoint);
        }
    }
    match (&previous, &logged) {
        (None, None) => {}
        (Some(table), Some(logged)) if table.seq == logged.seq && table.digest == logged.digest => {}
        (table, logged) => {
            return Err(AuditError::Diverged(format!(
                "the newest checkpoint is {} in the table but {} in the log",
                table.as_ref().map_or("none".into(), |c| c.seq.to_string()),
                logged.as_ref().map_or("none".into(), |c| c.seq.to_string()),
            )))
        }
    }
    // What the new checkpoint builds on must be what the key signed: its
    // signature (a forged line in the log too buys no signed successor) and its
    // heads as the table keeps them (altered heads would be folded in).
    let previous_heads: HashMap<Uuid, Head> = match &previous {
        Some(checkpoint) => {
            let intact = checkpoint.digest == checkpoint.expected_digest()
                && signer.verify(&checkpoint.signature(), &checkpoint.digest).await?;
            if !intact {
                return Err(AuditError::Diverged(format!("checkpoint {} is not validly signed", checkpoint.seq)));
            }
            let heads = heads_in_table(&mut tx, checkpoint.seq).await?;
            if !checkpoint.covers(&heads) {
                return Err(AuditError::Diverged(format!(
                    "the table's heads of checkpoint {} are not the ones it signed",
                    checkpoint.seq
                )));
            }
            heads.into_iter().map(|h| (h.user_id, h)).collect()
        }
        None => HashMap::new(),
    };

    let current = current_heads(&mut tx).await?;
    let mut departed: Vec<Head> = Vec::new();
    let mut grown: Vec<Head> = Vec::new();
    let current_users: std::collections::HashSet<Uuid> = current.iter().map(|h| h.user_id).collect();
    departed.extend(previous_heads.values().filter(|h| !current_users.contains(&h.user_id)).cloned());
    for head in current {
        match previous_heads.get(&head.user_id) {
            None => grown.push(head),
            Some(before) if head.chain_seq > before.chain_seq => grown.push(head),
            Some(before) if head.chain_seq == before.chain_seq && head.row_hash == before.row_hash => {}
            Some(before) => departed.push(before.clone()),
        }
    }
    // A chain moves on only from its checkpointed head, still in place.
    let to_check: Vec<&Head> = grown.iter().filter_map(|h| previous_heads.get(&h.user_id)).collect();
    let rewritten: std::collections::HashSet<Uuid> = no_longer_held(&mut tx, &to_check).await?.into_iter().collect();
    departed.extend(rewritten.iter().filter_map(|user| previous_heads.get(user)).cloned());
    grown.retain(|h| !rewritten.contains(&h.user_id));
    grown.sort_by_key(|h| h.user_id);
    departed.sort_by_key(|h| h.user_id);

    let moved = grown.len();
    let all_heads = fold_heads(previous_heads, grown.iter().cloned());
    let now = Utc::now();
    let created_at = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
    let mut checkpoint = Checkpoint {
        seq: previous.as_ref().map_or(1, |p| p.seq + 1),
        created_at,
        head_count: all_heads.len() as i64,
        heads_digest: heads_digest(&all_heads).to_vec(),
        prev_digest: previous.as_ref().map_or(GENESIS_DIGEST.to_vec(), |p| p.digest.clone()),
        digest: Vec::new(),
        key_id: String::new(),
        signing_algorithm: String::new(),
        signature: Vec::new(),
    };
    checkpoint.digest = checkpoint.expected_digest().to_vec();
    let signature = signer.sign(&checkpoint.digest).await?;
    (checkpoint.key_id, checkpoint.signing_algorithm, checkpoint.signature) =
        (signature.key_id, signature.algorithm, signature.bytes);

    store(&mut tx, &checkpoint, &grown).await?;
    // Logged before the commit: a crash between leaves the log one ahead, which
    // audit-verify reports and the next run puts back (above), never hides.
    log.append(&checkpoint, &grown)?;
    tx.commit().await?;
    Ok(Taken { checkpoint, moved, departed, restored })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(user: u8, seq: i64) -> Head {
        Head { user_id: Uuid::from_bytes([user; 16]), chain_seq: seq, row_hash: vec![user; 32] }
    }

    #[test]
    fn the_heads_digest_depends_on_every_head_and_their_order() {
        let heads = [head(1, 3), head(2, 5)];
        let digest = heads_digest(&heads);
        assert_ne!(digest, heads_digest(&[head(1, 3), head(2, 4)]));
        assert_ne!(digest, heads_digest(&[head(2, 5), head(1, 3)]));
        assert_ne!(digest, heads_digest(&heads[..1]));
    }

    #[test]
    fn a_longer_hash_cannot_stand_in_for_the_heads_after_it() {
        // Without each hash's length, head 1 with head 2's bytes appended to its
        // hash would digest like heads 1 and 2: a traveler dropped unseen.
        let (first, second) = (head(1, 3), head(2, 5));
        let mut merged = first.clone();
        merged.row_hash.extend_from_slice(second.user_id.as_bytes());
        merged.row_hash.extend_from_slice(&second.chain_seq.to_be_bytes());
        merged.row_hash.extend_from_slice(&second.row_hash);
        assert_ne!(heads_digest(&[first, second]), heads_digest(&[merged]));
    }

    #[test]
    fn a_checkpoint_signs_its_number_time_heads_and_predecessor() {
        let heads = vec![head(1, 3)];
        let checkpoint = Checkpoint {
            seq: 2,
            created_at: DateTime::from_timestamp_micros(1_800_000_000_000_001).unwrap(),
            head_count: 1,
            heads_digest: heads_digest(&heads).to_vec(),
            prev_digest: vec![9; 32],
            digest: vec![],
            key_id: "k".into(),
            signing_algorithm: "ECDSA_SHA_256".into(),
            signature: vec![],
        };
        let digest = checkpoint.expected_digest();
        for changed in [
            Checkpoint { seq: 3, ..checkpoint.clone() },
            Checkpoint {
                created_at: DateTime::from_timestamp_micros(1_800_000_000_000_002).unwrap(),
                ..checkpoint.clone()
            },
            Checkpoint { head_count: 2, ..checkpoint.clone() },
            Checkpoint { prev_digest: vec![8; 32], ..checkpoint.clone() },
        ] {
            assert_ne!(changed.expected_digest(), digest);
        }
        assert!(checkpoint.covers(&heads));
        assert!(!checkpoint.covers(&[head(1, 2)]));
    }

    #[test]
    fn moved_heads_replace_their_travelers_own() {
        let before: HashMap<Uuid, Head> = [head(1, 3), head(3, 1)].into_iter().map(|h| (h.user_id, h)).collect();
        let all = fold_heads(before, [head(2, 1), head(1, 4)]);
        assert_eq!(all, [head(1, 4), head(2, 1), head(3, 1)]);
    }

    #[test]
    fn a_checkpoint_round_trips_through_json() {
        let checkpoint = Checkpoint {
            seq: 1,
            created_at: DateTime::from_timestamp_micros(1_800_000_000_123_456).unwrap(),
            head_count: 0,
            heads_digest: heads_digest(&[]).to_vec(),
            prev_digest: GENESIS_DIGEST.to_vec(),
            digest: vec![1; 32],
            key_id: "arn:aws:kms:us-east-1:1:key/x".into(),
            signing_algorithm: "ECDSA_SHA_256".into(),
            signature: vec![2; 70],
        };
        let json = serde_json::to_string(&checkpoint).unwrap();
        assert_eq!(serde_json::from_str::<Checkpoint>(&json).unwrap(), checkpoint);
    }
}
