//! The audit trail's rules, without Postgres: where a request came from, what is
//! redacted, how rows are chained by hash, and how a chain is checked.
//!
//! Each traveler's audit rows form one chain: row n stores the hash of row n-1
//! (`prev_hash`) and its own hash over its content and that link (`row_hash`).
//! Editing, deleting or reordering a row breaks the chain at that row. Per-user
//! chains keep concurrent travelers from queueing behind one global lock.
//!
//! What a chain cannot show by itself (its newest rows dropped, the whole chain
//! deleted, a row edited and the chain re-hashed to its end) is caught against
//! the heads of a signed checkpoint ([`Head`]). Redaction (an erased traveler's
//! personal fields removed) keeps each row's hash verifiable through the stored
//! digest of what was removed, and is itself a row of the chain naming what it
//! redacted ([`RedactionEntry`]).

/// One SQL expression for a timestamp's microseconds, used both where a row is
/// hashed and where it is checked, so both see the same number.
#[macro_export]
macro_rules! micros {
    ($column:literal) => {
        concat!("(extract(epoch FROM ", $column, ") * 1000000)::bigint")
    };
}

/// Every audit row in chain order (or one traveler's, `$1`), each field in the
/// form its hash takes: jsonb and inet as Postgres prints them, the time in
/// microseconds. The extension and the sidecar walk the trail through it. A time
/// no row could have been written at reads as NULL (a broken row), not as an
/// error that would stop the whole verification.
macro_rules! chain_sql {
    ($second_format_columns:literal) => {
        concat!(
            "SELECT id, user_id, chain_seq, action, table_name, record_id, old_data::text, new_data::text,
                    ip_address::text, user_agent,
                    CASE WHEN isfinite(created_at) AND abs(extract(epoch FROM created_at)) < 9e12
                         THEN ",
            micros!("created_at"),
            " END, prev_hash, row_hash, ",
            $second_format_columns,
            " FROM public.traveler_data_audit WHERE $1::uuid IS NULL OR user_id = $1
             ORDER BY user_id, chain_seq"
        )
    };
}
/// See [`chain_sql`]: id, user_id, chain_seq, action, table_name, record_id,
/// old_data, new_data, ip_address, user_agent, created_at (µs), prev_hash,
/// row_hash, hash_version, actor, personal_salt, redacted_digest.
pub const CHAIN_SQL: &str = chain_sql!("hash_version, actor, personal_salt, redacted_digest");
/// [`CHAIN_SQL`] before migration 0011: every row is of the first format.
pub const CHAIN_V1_SQL: &str = chain_sql!("1::smallint, NULL::text, NULL::bytea, NULL::bytea");

use std::net::IpAddr;

use sha2::{Digest, Sha256};

/// What a redacted column's value becomes in `old_data` / `new_data`.
pub const REDACTED_MARKER: &str = "[redacted]";

/// Columns redacted wherever they appear, whatever `enable_audit` was told.
pub const ALWAYS_REDACTED: &[&str] = &["encrypted_card_data"];

/// The `prev_hash` of the first row of a chain.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// Longest user agent kept; the rest is cut (on a character boundary).
pub const MAX_USER_AGENT_BYTES: usize = 512;

/// The actor of a change made outside any traveler's request (jobs, operators).
pub const SYSTEM_ACTOR: [u8; 16] = [0; 16];

/// Rows written before 0.4.0: every column hashed directly.
pub const HASH_V1: i16 = 1;
/// Rows written since 0.4.0 (migration 0011): the actor is hashed, and the
/// personal fields enter through their own digest ([`personal_digest`]), which a
/// redaction keeps when it removes them.
pub const HASH_V2: i16 = 2;

/// The `action` of the row a redaction appends to the chain.
pub const REDACT_ACTION: &str = "REDACT";

/// Issuers of the claims the sidecar sets when it acts for a traveler on another
/// authority than their own token (the reconciler, a signed Stripe event).
const SYSTEM_ISSUER_PREFIX: &str = "parker-wallet/";

/// Who made a change, as the audit trail records it: `system:<issuer>` when the
/// sidecar acted on its own authority, `user:<id>` for a traveler's own request,
/// `None` when no claims were set (the caller then records the database role).
pub fn actor(subject: Option<uuid::Uuid>, issuer: Option<&str>) -> Option<String> {
    match (subject, issuer) {
        (_, Some(issuer)) if issuer.starts_with(SYSTEM_ISSUER_PREFIX) => Some(format!("system:{issuer}")),
        (Some(subject), _) => Some(format!("user:{subject}")),
        (None, _) => None,
    }
}

/// Where the client address of an audited change comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientIp {
    /// A proxy header was present; `None` when its value was not an address.
    FromHeader(Option<IpAddr>),
    /// No proxy header: use the database connection's peer address.
    FromConnection,
}

/// The first hop of `x-forwarded-for`, else `x-real-ip`, else the connection.
/// A header that is present but malformed yields no address, never an error.
pub fn client_ip(forwarded_for: Option<&str>, real_ip: Option<&str>) -> ClientIp {
    let header = forwarded_for.map(|list| list.split(',').next().unwrap_or("")).or(real_ip);
    match header {
        Some(value) => ClientIp::FromHeader(parse_ip(value)),
        None => ClientIp::FromConnection,
    }
}

/// An address, tolerating IPv6 brackets; ports and zone ids are refused.
fn parse_ip(value: &str) -> Option<IpAddr> {
    let value = value.trim();
    let unbracketed = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')).unwrap_or(value);
    unbracketed.parse().ok()
}

/// Cuts a user agent to [`MAX_USER_AGENT_BYTES`].
pub fn bounded_user_agent(agent: &str) -> &str {
    let mut end = agent.len().min(MAX_USER_AGENT_BYTES);
    while !agent.is_char_boundary(end) {
        end -= 1;
    }
    &agent[..end]
}

/// The redacted columns of a table: what was asked for plus [`ALWAYS_REDACTED`]
/// columns the table has; sorted, each once.
pub fn redacted_columns(requested: &[String], table_columns: &[String]) -> Vec<String> {
    let mut columns: Vec<String> = requested
        .iter()
        .cloned()
        .chain(ALWAYS_REDACTED.iter().filter(|c| table_columns.iter().any(|t| t == *c)).map(|c| (*c).to_owned()))
        .collect();
    columns.sort();
    columns.dedup();
    columns
}

/// A jsonb object that, concatenated onto a row (`row || overlay`), replaces each
/// redacted column's value with the marker.
pub fn redaction_overlay(columns: &[String]) -> String {
    let overlay: serde_json::Map<String, serde_json::Value> =
        columns.iter().map(|c| (c.clone(), serde_json::Value::String(REDACTED_MARKER.to_owned()))).collect();
    serde_json::Value::Object(overlay).to_string()
}

/// One audit row as the hash sees it: text fields exactly as Postgres prints them.
#[derive(Debug, Clone, Default)]
pub struct AuditRow {
    pub id: [u8; 16],
    pub user_id: [u8; 16],
    pub chain_seq: i64,
    pub action: String,
    pub table_name: String,
    pub record_id: Option<[u8; 16]>,
    pub old_data: Option<String>,
    pub new_data: Option<String>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub created_at_micros: i64,
    pub prev_hash: Vec<u8>,
    pub row_hash: Vec<u8>,
    pub hash_version: i16,
    pub actor: Option<String>,
    /// Random, per row of the second format; removed by a redaction.
    pub personal_salt: Option<Vec<u8>>,
    /// Set by a redaction: the [`personal_digest`] of the fields it removed.
    pub redacted_digest: Option<Vec<u8>>,
}

/// Feeds one optional field, length-prefixed so no two rows hash the same input.
fn feed(hasher: &mut Sha256, field: Option<&[u8]>) {
    match field {
        None => hasher.update([0u8]),
        Some(bytes) => {
            hasher.update([1u8]);
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        }
    }
}

/// The fields every row hash starts with, in this order: the link, then what
/// and where the row is.
#[allow(clippy::too_many_arguments)]
fn feed_link_and_place(
    hasher: &mut Sha256,
    prev_hash: &[u8],
    id: &[u8; 16],
    user_id: &[u8; 16],
    chain_seq: i64,
    action: &str,
    table_name: &str,
    record_id: Option<&[u8; 16]>,
) {
    feed(hasher, Some(prev_hash));
    feed(hasher, Some(id));
    feed(hasher, Some(user_id));
    feed(hasher, Some(&chain_seq.to_be_bytes()));
    feed(hasher, Some(action.as_bytes()));
    feed(hasher, Some(table_name.as_bytes()));
    feed(hasher, record_id.map(|r| r.as_slice()));
}

/// SHA-256 over the fields a redaction removes (old and new row, address, user
/// agent) and the row's random salt. A redaction keeps the digest and drops the
/// salt: without it, the digest cannot confirm a guess at what was erased.
pub fn personal_digest(
    salt: Option<&[u8]>,
    old_data: Option<&str>,
    new_data: Option<&str>,
    ip_address: Option<&str>,
    user_agent: Option<&str>,
) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"parker_wallet.audit.personal.v2");
    feed(&mut hasher, salt);
    for field in [old_data, new_data, ip_address, user_agent] {
        feed(&mut hasher, field.map(str::as_bytes));
    }
    hasher.finalize().into()
}

/// The v2 row hash: a version tag, the link, the row's own fields and the digest
/// of its personal fields.
#[allow(clippy::too_many_arguments)]
pub fn row_hash_v2(
    prev_hash: &[u8],
    id: &[u8; 16],
    user_id: &[u8; 16],
    chain_seq: i64,
    action: &str,
    table_name: &str,
    record_id: Option<&[u8; 16]>,
    actor: Option<&str>,
    created_at_micros: i64,
    personal_digest: &[u8],
) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"parker_wallet.audit.v2");
    feed_link_and_place(&mut hasher, prev_hash, id, user_id, chain_seq, action, table_name, record_id);
    feed(&mut hasher, actor.map(str::as_bytes));
    feed(&mut hasher, Some(&created_at_micros.to_be_bytes()));
    feed(&mut hasher, Some(personal_digest));
    hasher.finalize().into()
}

impl AuditRow {
    /// The digest of the personal fields as they are now.
    pub fn personal_digest(&self) -> [u8; 32] {
        personal_digest(
            self.personal_salt.as_deref(),
            self.old_data.as_deref(),
            self.new_data.as_deref(),
            self.ip_address.as_deref(),
            self.user_agent.as_deref(),
        )
    }

    /// The hash this row's content calls for; `None` when it cannot be known: a
    /// v1 row after redaction (its removed fields were hashed directly), or a
    /// version this code does not know.
    pub fn expected_hash(&self) -> Option<[u8; 32]> {
        match (self.hash_version, &self.redacted_digest) {
            (HASH_V1, None) => Some(self.compute_hash_v1()),
            (HASH_V2, redacted) => {
                let personal = redacted.clone().unwrap_or_else(|| self.personal_digest().to_vec());
                Some(row_hash_v2(
                    &self.prev_hash,
                    &self.id,
                    &self.user_id,
                    self.chain_seq,
                    &self.action,
                    &self.table_name,
                    self.record_id.as_ref(),
                    self.actor.as_deref(),
                    self.created_at_micros,
                    &personal,
                ))
            }
            _ => None,
        }
    }

    fn feed_link_and_place(&self, hasher: &mut Sha256) {
        feed_link_and_place(
            hasher,
            &self.prev_hash,
            &self.id,
            &self.user_id,
            self.chain_seq,
            &self.action,
            &self.table_name,
            self.record_id.as_ref(),
        );
    }

    /// SHA-256 over a version tag, the link to the previous row, and every column.
    pub fn compute_hash_v1(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(b"parker_wallet.audit.v1");
        self.feed_link_and_place(&mut hasher);
        feed(&mut hasher, self.old_data.as_deref().map(str::as_bytes));
        feed(&mut hasher, self.new_data.as_deref().map(str::as_bytes));
        feed(&mut hasher, self.ip_address.as_deref().map(str::as_bytes));
        feed(&mut hasher, self.user_agent.as_deref().map(str::as_bytes));
        feed(&mut hasher, Some(&self.created_at_micros.to_be_bytes()));
        hasher.finalize().into()
    }
}

/// What verification found wrong; `as_str` is the stable reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainBreak {
    /// The row's content no longer matches its hash: it was edited.
    ContentChanged,
    /// The row does not point at the row before it: a row was removed or inserted.
    LinkBroken,
    /// The sequence skips or repeats: a row was removed or inserted.
    SequenceGap,
    /// A row marked redacted that no later redaction row of its chain names
    /// (with its hash and digest): content replaced and passed off as an erasure.
    RedactionUnrecorded,
    /// A redaction row names a row that is no longer as it redacted it
    /// (un-redacted, moved, or edited where the hash cannot show it).
    RedactionReverted,
    /// The chain no longer reaches its checkpointed head: its newest rows are gone.
    ChainTruncated,
    /// The row at the checkpointed head has another hash: the chain was rewritten.
    HeadRehashed,
    /// A checkpointed traveler has no chain at all any more.
    ChainVanished,
}

impl ChainBreak {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ContentChanged => "content_changed",
            Self::LinkBroken => "link_broken",
            Self::SequenceGap => "sequence_gap",
            Self::RedactionUnrecorded => "redaction_unrecorded",
            Self::RedactionReverted => "redaction_reverted",
            Self::ChainTruncated => "chain_truncated",
            Self::HeadRehashed => "head_rehashed",
            Self::ChainVanished => "chain_vanished",
        }
    }
}

/// Checks one row against the row before it in the same chain (`None` for the first).
pub fn check_link(previous: Option<&AuditRow>, row: &AuditRow) -> Option<ChainBreak> {
    let (expected_seq, expected_prev): (i64, &[u8]) = match previous {
        None => (1, &GENESIS_HASH),
        Some(prev) => (prev.chain_seq + 1, &prev.row_hash),
    };
    // A redacted first-format row cannot be re-hashed (its removed fields were
    // hashed directly): the signed redaction row that names it pins its hash and
    // its place (see `RedactionEntry`). Redacted rows of either format must hold
    // nothing but what a redaction leaves.
    let content_intact = match row.expected_hash() {
        Some(hash) => row.row_hash == hash,
        None => row.hash_version == HASH_V1 && row.redacted_digest.is_some(),
    };
    let redacted_shape = row.redacted_digest.is_none() || has_redacted_shape(row);
    // The first format hashes neither: on such a row they can only be forged.
    let first_format_clean = row.hash_version != HASH_V1 || (row.actor.is_none() && row.personal_salt.is_none());
    // Once a chain has rows of the second format, a first-format row after them
    // is a downgrade, never a write.
    let format_regressed = previous.is_some_and(|p| p.hash_version == HASH_V2 && row.hash_version == HASH_V1);
    if !content_intact || !redacted_shape || format_regressed || !first_format_clean {
        Some(ChainBreak::ContentChanged)
    } else if row.chain_seq != expected_seq {
        Some(ChainBreak::SequenceGap)
    } else if row.prev_hash != expected_prev {
        Some(ChainBreak::LinkBroken)
    } else {
        None
    }
}

/// What a redaction leaves of a row's personal fields: no salt, address or user
/// agent, and every value of the old and new row replaced by the marker.
fn has_redacted_shape(row: &AuditRow) -> bool {
    let only_markers = |data: &Option<String>| match data.as_deref().map(serde_json::from_str::<serde_json::Value>) {
        None => true,
        Some(Ok(serde_json::Value::Object(values))) => values.values().all(|v| v == REDACTED_MARKER),
        Some(_) => false,
    };
    row.personal_salt.is_none()
        && row.ip_address.is_none()
        && row.user_agent.is_none()
        && only_markers(&row.old_data)
        && only_markers(&row.new_data)
}

/// A chain's newest row as a signed checkpoint saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub user_id: [u8; 16],
    pub chain_seq: i64,
    pub row_hash: Vec<u8>,
}

/// One row a redaction names, as its redaction row's `new_data` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RedactionEntry {
    pub chain_seq: i64,
    pub hash_version: i16,
    /// Hex of the row's hash (unchanged by the redaction).
    pub row_hash: String,
    /// Hex of the digest of the fields removed.
    pub personal_digest: String,
    /// Hex of the digest of everything else the row holds (`place_digest`):
    /// what pins a first-format row, whose hash cannot be recomputed.
    pub place_digest: String,
    /// Hex of the digest of what the redaction left of the old and new row
    /// (their keys): pinned, so nothing can be written into them afterwards.
    pub redacted_data: String,
}

/// The `new_data` of a redaction row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RedactionRecord {
    pub reason: String,
    pub redacted: Vec<RedactionEntry>,
}

impl RedactionEntry {
    pub fn of(row: &AuditRow) -> Option<Self> {
        Some(Self {
            chain_seq: row.chain_seq,
            hash_version: row.hash_version,
            row_hash: hex::encode(&row.row_hash),
            personal_digest: hex::encode(row.redacted_digest.as_ref()?),
            place_digest: hex::encode(place_digest(row)),
            redacted_data: hex::encode(redacted_data_digest(row)),
        })
    }
}

/// SHA-256 over the old and new row as a redaction left them.
fn redacted_data_digest(row: &AuditRow) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"parker_wallet.audit.redacted-data.v1");
    feed(&mut hasher, row.old_data.as_deref().map(str::as_bytes));
    feed(&mut hasher, row.new_data.as_deref().map(str::as_bytes));
    hasher.finalize().into()
}

/// SHA-256 over a row's fields that a redaction leaves alone, its link included.
pub fn place_digest(row: &AuditRow) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"parker_wallet.audit.place.v1");
    row.feed_link_and_place(&mut hasher);
    feed(&mut hasher, row.actor.as_deref().map(str::as_bytes));
    feed(&mut hasher, Some(&row.created_at_micros.to_be_bytes()));
    hasher.finalize().into()
}

/// One finding of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The audit row at fault; `None` when it is missing.
    pub id: Option<[u8; 16]>,
    pub user_id: [u8; 16],
    pub chain_seq: i64,
    pub reason: ChainBreak,
}

/// The chain being read.
#[derive(Debug)]
struct OpenChain {
    previous: AuditRow,
    broken: bool,
    head: Option<Head>,
    head_seen: bool,
    /// The chain's redacted rows so far, as a redaction row would name them, by
    /// sequence number; taken out once one names them exactly.
    unrecorded_redactions: std::collections::BTreeMap<i64, (RedactionEntry, [u8; 16])>,
}

/// Walks the whole trail in chain order (by traveler, then sequence) and, with
/// the heads of a checkpoint (sorted or not), finds: the first broken row of
/// every broken chain (one break must not hide another traveler's: rows after a
/// chain's first break are not judged), its first redaction no redaction row
/// names, and each way it departs from its checkpointed head.
#[derive(Debug, Default)]
pub struct ChainScan {
    heads: std::collections::VecDeque<Head>,
    chain: Option<OpenChain>,
    findings: Vec<Finding>,
}

impl ChainScan {
    pub fn new(mut heads: Vec<Head>) -> Self {
        heads.sort_by_key(|h| h.user_id);
        Self { heads: heads.into(), ..Self::default() }
    }

    /// The next row in chain order.
    pub fn push(&mut self, row: AuditRow) {
        let same_chain = self.chain.as_ref().is_some_and(|c| c.previous.user_id == row.user_id);
        if !same_chain {
            self.close_chain();
            let head = self.head_for(&row.user_id);
            let broken = self.judge(None, &row);
            self.chain = Some(OpenChain {
                previous: row.clone(),
                broken,
                head,
                head_seen: false,
                unrecorded_redactions: Default::default(),
            });
        } else if let Some(mut chain) = self.chain.take() {
            if !chain.broken {
                chain.broken = self.judge(Some(&chain.previous), &row);
            }
            chain.previous = row.clone();
            self.chain = Some(chain);
        }
        self.follow(&row);
    }

    /// Everything found, once every row has been pushed.
    pub fn finish(mut self) -> Vec<Finding> {
        self.close_chain();
        while let Some(head) = self.heads.pop_front() {
            self.found(None, head.user_id, head.chain_seq, ChainBreak::ChainVanished);
        }
        self.findings
    }

    fn found(&mut self, id: Option<[u8; 16]>, user_id: [u8; 16], chain_seq: i64, reason: ChainBreak) {
        self.findings.push(Finding { id, user_id, chain_seq, reason });
    }

    /// Records the row's break, if any; true when there is one.
    fn judge(&mut self, previous: Option<&AuditRow>, row: &AuditRow) -> bool {
        let broken = check_link(previous, row);
        if let Some(reason) = broken {
            self.found(Some(row.id), row.user_id, row.chain_seq, reason);
        }
        broken.is_some()
    }

    /// The checkpointed head of `user`; heads of travelers before it have vanished.
    fn head_for(&mut self, user: &[u8; 16]) -> Option<Head> {
        while self.heads.front().is_some_and(|h| h.user_id < *user) {
            if let Some(head) = self.heads.pop_front() {
                self.found(None, head.user_id, head.chain_seq, ChainBreak::ChainVanished);
            }
        }
        let is_theirs = self.heads.front().is_some_and(|h| h.user_id == *user);
        if is_theirs {
            self.heads.pop_front()
        } else {
            None
        }
    }

    /// The head and redaction bookkeeping of the open chain.
    fn follow(&mut self, row: &AuditRow) {
        let Some(mut chain) = self.chain.take() else { return };
        if let Some(head) = chain.head.as_ref().filter(|h| h.chain_seq == row.chain_seq) {
            chain.head_seen = true;
            if head.row_hash != row.row_hash {
                self.found(Some(row.id), row.user_id, row.chain_seq, ChainBreak::HeadRehashed);
            }
        }
        if let Some(entry) = RedactionEntry::of(row) {
            chain.unrecorded_redactions.insert(row.chain_seq, (entry, row.id));
        }
        if row.action == REDACT_ACTION && row.redacted_digest.is_none() && !chain.broken {
            let named = row
                .new_data
                .as_deref()
                .and_then(|data| serde_json::from_str::<RedactionRecord>(data).ok())
                .map(|record| record.redacted)
                .unwrap_or_default();
            // Every row it names must still be exactly as it left it.
            for entry in named {
                match chain.unrecorded_redactions.get(&entry.chain_seq) {
                    Some((redacted, _)) if *redacted == entry => {
                        chain.unrecorded_redactions.remove(&entry.chain_seq);
                    }
                    _ if !chain.broken => {
                        chain.broken = true;
                        self.found(Some(row.id), row.user_id, entry.chain_seq, ChainBreak::RedactionReverted);
                    }
                    _ => {}
                }
            }
        }
        self.chain = Some(chain);
    }

    fn close_chain(&mut self) {
        let Some(chain) = self.chain.take() else { return };
        // A chain already broken has its one finding; coverage is judged on intact chains.
        if let Some((seq, (_, id))) = chain.unrecorded_redactions.first_key_value().filter(|_| !chain.broken) {
            self.found(Some(*id), chain.previous.user_id, *seq, ChainBreak::RedactionUnrecorded);
        }
        if let Some(head) = chain.head.filter(|_| !chain.head_seen) {
            self.found(None, head.user_id, head.chain_seq, ChainBreak::ChainTruncated);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<AuditRow> {
        let mut rows: Vec<AuditRow> = Vec::new();
        for i in 0..n {
            let mut row = AuditRow {
                id: [i as u8 + 1; 16],
                user_id: [7; 16],
                chain_seq: i as i64 + 1,
                action: "UPDATE".into(),
                table_name: "traveler_profiles".into(),
                record_id: Some([9; 16]),
                old_data: Some(r#"{"first_name": "Ada"}"#.into()),
                new_data: Some(format!(r#"{{"first_name": "Ada {i}"}}"#)),
                ip_address: Some("203.0.113.7".into()),
                user_agent: None,
                created_at_micros: 1_700_000_000_000_000 + i as i64,
                prev_hash: rows.last().map_or(GENESIS_HASH.to_vec(), |p| p.row_hash.clone()),
                row_hash: vec![],
                hash_version: HASH_V2,
                actor: Some("user:0707".into()),
                personal_salt: Some(vec![i as u8; 16]),
                redacted_digest: None,
            };
            rehash(&mut row);
            rows.push(row);
        }
        rows
    }

    fn rehash(row: &mut AuditRow) {
        row.row_hash = row.expected_hash().unwrap().to_vec();
    }

    /// Re-links a chain after its rows changed, as a forger with write access would.
    fn relink(rows: &mut [AuditRow]) {
        let mut previous = GENESIS_HASH.to_vec();
        for row in rows.iter_mut() {
            row.prev_hash = previous.clone();
            rehash(row);
            previous = row.row_hash.clone();
        }
    }

    fn chain_of(user: u8, n: usize) -> Vec<AuditRow> {
        let mut rows: Vec<AuditRow> = chain(n)
            .into_iter()
            .map(|mut r| {
                r.user_id = [user; 16];
                r
            })
            .collect();
        relink(&mut rows);
        rows
    }

    fn head_of(row: &AuditRow) -> Head {
        Head { user_id: row.user_id, chain_seq: row.chain_seq, row_hash: row.row_hash.clone() }
    }

    fn scan(rows: Vec<AuditRow>, heads: Vec<Head>) -> Vec<(u8, i64, ChainBreak)> {
        let mut scan = ChainScan::new(heads);
        rows.into_iter().for_each(|row| scan.push(row));
        scan.finish().into_iter().map(|f| (f.user_id[0], f.chain_seq, f.reason)).collect()
    }

    /// What `wallet.redact_audit` does to a chain: each row's personal fields
    /// replaced, their digest kept, and a redaction row naming them appended.
    fn redact(rows: &mut Vec<AuditRow>) {
        for row in rows.iter_mut() {
            row.redacted_digest = Some(row.personal_digest().to_vec());
            row.new_data = Some(r#"{"first_name": "[redacted]"}"#.into());
            (row.old_data, row.ip_address, row.personal_salt) = (None, None, None);
        }
        let record = RedactionRecord {
            reason: "erasure".into(),
            redacted: rows.iter().filter_map(RedactionEntry::of).collect(),
        };
        let last = rows.last().unwrap().clone();
        let mut event = AuditRow {
            id: [0xee; 16],
            chain_seq: last.chain_seq + 1,
            action: REDACT_ACTION.into(),
            table_name: "traveler_data_audit".into(),
            record_id: None,
            old_data: None,
            new_data: Some(serde_json::to_string(&record).unwrap()),
            ip_address: None,
            prev_hash: last.row_hash.clone(),
            personal_salt: None,
            redacted_digest: None,
            ..last
        };
        rehash(&mut event);
        rows.push(event);
    }

    fn first_break(rows: &[AuditRow]) -> Option<(i64, ChainBreak)> {
        rows.iter()
            .enumerate()
            .find_map(|(i, row)| check_link(i.checked_sub(1).map(|p| &rows[p]), row).map(|b| (row.chain_seq, b)))
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(first_break(&chain(5)), None);
    }

    #[test]
    fn an_edit_is_found_at_the_edited_row() {
        let mut rows = chain(5);
        rows[2].new_data = Some(r#"{"first_name": "Mallory"}"#.into());
        assert_eq!(first_break(&rows), Some((3, ChainBreak::ContentChanged)));
    }

    #[test]
    fn a_deleted_row_is_found_at_its_successor() {
        let mut rows = chain(5);
        rows.remove(1);
        assert_eq!(first_break(&rows), Some((3, ChainBreak::SequenceGap)));
    }

    #[test]
    fn a_rehashed_edit_still_breaks_the_next_link() {
        let mut rows = chain(5);
        rows[2].user_agent = Some("forged".into());
        rehash(&mut rows[2]);
        assert_eq!(first_break(&rows), Some((4, ChainBreak::LinkBroken)));
    }

    #[test]
    fn every_broken_chain_is_reported_once_and_intact_ones_not_at_all() {
        let mut rows = chain_of(1, 4);
        let mut second = chain_of(2, 4);
        let mut third = chain_of(3, 3);
        second[1].new_data = Some("{}".into()); // edited: breaks at 2, and 3 no longer links
        third.remove(0); // truncated head: breaks at its new first row
        rows.extend(second);
        rows.extend(third);
        assert_eq!(scan(rows, vec![]), [(2, 2, ChainBreak::ContentChanged), (3, 2, ChainBreak::SequenceGap)]);
    }

    /// A chain as written before 0.4.0: first format, no actor.
    fn first_format_chain(n: usize) -> Vec<AuditRow> {
        let mut rows = chain(n);
        let mut previous = GENESIS_HASH.to_vec();
        for row in rows.iter_mut() {
            (row.hash_version, row.actor, row.personal_salt, row.prev_hash) = (HASH_V1, None, None, previous.clone());
            row.row_hash = row.compute_hash_v1().to_vec();
            previous = row.row_hash.clone();
        }
        rows
    }

    #[test]
    fn rows_written_before_the_second_format_still_verify() {
        let mut rows = first_format_chain(3);
        assert_eq!(first_break(&rows), None);
        rows[1].hash_version = 3;
        assert_eq!(first_break(&rows), Some((2, ChainBreak::ContentChanged)), "an unknown format is not trusted");
    }

    #[test]
    fn the_actor_is_hashed() {
        let mut rows = chain(2);
        rows[1].actor = Some("user:someone-else".into());
        assert_eq!(first_break(&rows), Some((2, ChainBreak::ContentChanged)));
    }

    #[test]
    fn the_checkpointed_heads_catch_what_the_chain_alone_cannot() {
        let (one, two, three) = (chain_of(1, 4), chain_of(2, 3), chain_of(3, 2));
        let heads = vec![head_of(&three[1]), head_of(&one[2]), head_of(&two[2])];
        let all = |a: &[AuditRow], b: &[AuditRow], c: &[AuditRow]| [a, b, c].concat();
        assert_eq!(scan(all(&one, &two, &three), heads.clone()), [], "grown past its head is fine");

        let truncated = &two[..2];
        assert_eq!(scan(all(&one, truncated, &three), heads.clone()), [(2, 3, ChainBreak::ChainTruncated)]);

        assert_eq!(scan(all(&one, &[], &three), heads.clone()), [(2, 3, ChainBreak::ChainVanished)]);
        assert_eq!(scan(all(&one, &two, &[]), heads.clone()), [(3, 2, ChainBreak::ChainVanished)]);

        let mut rewritten = one.clone();
        rewritten[1].new_data = Some(r#"{"first_name": "Mallory"}"#.into());
        relink(&mut rewritten);
        assert_eq!(scan(all(&rewritten, &two, &three), heads), [(1, 3, ChainBreak::HeadRehashed)]);
    }

    #[test]
    fn a_recorded_redaction_verifies_and_tampering_after_it_does_not() {
        let mut rows = chain(3);
        redact(&mut rows);
        assert_eq!(first_break(&rows), None);
        assert_eq!(scan(rows.clone(), vec![head_of(&rows[3])]), []);

        let mut edited = rows.clone();
        edited[1].action = "DELETE".into();
        assert_eq!(scan(edited, vec![]), [(7, 2, ChainBreak::ContentChanged)]);

        let mut redigested = rows.clone();
        redigested[0].redacted_digest = Some(vec![0; 32]);
        assert_eq!(scan(redigested, vec![]), [(7, 1, ChainBreak::ContentChanged)]);
    }

    #[test]
    fn a_redaction_no_redaction_row_names_is_reported() {
        let mut rows = chain(3);
        // Passed off as an erasure: content replaced, digest of the original kept.
        rows[1].redacted_digest = Some(rows[1].personal_digest().to_vec());
        rows[1].new_data = Some(r#"{"first_name": "[redacted]"}"#.into());
        (rows[1].old_data, rows[1].ip_address, rows[1].personal_salt) = (None, None, None);
        assert_eq!(scan(rows, vec![]), [(7, 2, ChainBreak::RedactionUnrecorded)]);
    }

    #[test]
    fn the_digest_a_redaction_keeps_confirms_no_guess_without_the_salt() {
        let original = chain(1).remove(0);
        let mut rows = vec![original.clone()];
        redact(&mut rows);
        let kept = rows[0].redacted_digest.clone().unwrap();
        // Whoever reads the kept digest and guesses the content exactly still
        // cannot confirm it: the salt is gone with the content.
        let guessed = personal_digest(
            None,
            original.old_data.as_deref(),
            original.new_data.as_deref(),
            original.ip_address.as_deref(),
            original.user_agent.as_deref(),
        );
        assert_ne!(kept, guessed.to_vec());
        assert_eq!(rows[0].personal_salt, None);
    }

    #[test]
    fn a_redacted_row_must_hold_only_what_a_redaction_leaves() {
        let mut rows = chain(2);
        redact(&mut rows);
        let mut refilled = rows.clone();
        refilled[0].ip_address = Some("203.0.113.7".into());
        assert_eq!(scan(refilled, vec![]), [(7, 1, ChainBreak::ContentChanged)]);
        let mut rewritten = rows.clone();
        rewritten[1].new_data = Some(r#"{"first_name": "Ada"}"#.into());
        assert_eq!(scan(rewritten, vec![]), [(7, 2, ChainBreak::ContentChanged)]);
    }

    #[test]
    fn a_row_a_redaction_names_cannot_be_unredacted_or_moved() {
        let original = chain(2);
        let mut rows = original.clone();
        redact(&mut rows);
        // Un-redacted: the original content put back; its own hash holds again.
        let mut restored = rows.clone();
        restored[0] = original[0].clone();
        assert_eq!(scan(restored, vec![]), [(7, 1, ChainBreak::RedactionReverted)]);

        // A first-format row, once redacted, is pinned by the entry's place digest.
        let mut old = first_format_chain(2);
        redact(&mut old);
        old[0].action = "DELETE".into();
        assert_eq!(scan(old, vec![]), [(7, 1, ChainBreak::RedactionReverted)]);
    }

    #[test]
    fn what_a_redaction_left_cannot_be_rewritten() {
        let mut rows = chain(2);
        redact(&mut rows);
        rows[0].new_data = Some(r#"{"born 1815 in London": "[redacted]"}"#.into());
        assert_eq!(scan(rows, vec![]), [(7, 1, ChainBreak::RedactionReverted)]);
    }

    #[test]
    fn a_first_format_row_has_no_actor_or_salt_to_forge() {
        let mut rows = first_format_chain(2);
        rows[0].actor = Some("user:someone-else".into());
        assert_eq!(first_break(&rows), Some((1, ChainBreak::ContentChanged)));
    }

    #[test]
    fn a_first_format_row_after_the_second_is_a_downgrade() {
        let mut rows = chain(3);
        (rows[2].hash_version, rows[2].actor) = (HASH_V1, None);
        rows[2].row_hash = rows[2].compute_hash_v1().to_vec();
        assert_eq!(first_break(&rows), Some((3, ChainBreak::ContentChanged)));
    }

    #[test]
    fn a_redacted_first_format_row_keeps_its_place_and_must_be_named() {
        let mut redacted = first_format_chain(2);
        redact(&mut redacted);
        assert_eq!(scan(redacted.clone(), vec![]), []);
        redacted.pop();
        assert_eq!(scan(redacted, vec![]), [(7, 1, ChainBreak::RedactionUnrecorded)]);
    }

    #[test]
    fn the_actor_names_the_authority_that_acted() {
        let user = uuid::Uuid::from_bytes([7; 16]);
        assert_eq!(actor(Some(user), Some("https://x.supabase.co/auth/v1")), Some(format!("user:{user}")));
        assert_eq!(actor(Some(user), None), Some(format!("user:{user}")));
        assert_eq!(
            actor(Some(user), Some("parker-wallet/reconciler")).as_deref(),
            Some("system:parker-wallet/reconciler")
        );
        assert_eq!(actor(None, None), None);
    }

    #[test]
    fn null_and_empty_fields_hash_differently() {
        let mut a = chain(1).remove(0);
        let before = a.expected_hash();
        a.user_agent = Some(String::new());
        assert_ne!(a.expected_hash(), before);
    }

    #[test]
    fn client_ip_prefers_the_first_forwarded_hop() {
        let ip = |s: &str| ClientIp::FromHeader(Some(s.parse().unwrap()));
        assert_eq!(client_ip(Some("203.0.113.7, 10.0.0.1"), Some("198.51.100.1")), ip("203.0.113.7"));
        assert_eq!(client_ip(None, Some("198.51.100.1")), ip("198.51.100.1"));
        assert_eq!(client_ip(Some(" 2001:db8::1 "), None), ip("2001:db8::1"));
        assert_eq!(client_ip(Some("[2001:db8::2]"), None), ip("2001:db8::2"));
        assert_eq!(client_ip(None, None), ClientIp::FromConnection);
    }

    #[test]
    fn a_malformed_header_gives_no_address_not_the_connection() {
        for bad in ["", "unknown", "203.0.113.7:443", "999.1.1.1", "'; drop table x; --", "fe80::1%eth0"] {
            assert_eq!(client_ip(Some(bad), None), ClientIp::FromHeader(None), "{bad}");
        }
    }

    #[test]
    fn user_agents_are_bounded_on_a_character_boundary() {
        assert_eq!(bounded_user_agent("curl/8"), "curl/8");
        let long = "é".repeat(400);
        let cut = bounded_user_agent(&long);
        assert!(cut.len() <= MAX_USER_AGENT_BYTES && cut.len() >= MAX_USER_AGENT_BYTES - 1);
    }

    #[test]
    fn card_ciphertext_is_always_redacted() {
        let table = vec!["id".to_owned(), "encrypted_card_data".to_owned(), "last4".to_owned()];
        assert_eq!(redacted_columns(&[], &table), ["encrypted_card_data"]);
        assert_eq!(redacted_columns(&["last4".to_owned()], &table), ["encrypted_card_data", "last4"]);
        assert!(redacted_columns(&[], &["id".to_owned()]).is_empty());
        assert_eq!(redaction_overlay(&["a".into(), "b".into()]), r#"{"a":"[redacted]","b":"[redacted]"}"#);
    }
}
