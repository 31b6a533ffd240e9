//! The audit trail's rules, without Postgres: where a request came from, what is
//! redacted, how rows are chained by hash, and how a chain is checked.
//!
//! Each traveler's audit rows form one chain: row n stores the hash of row n-1
//! (`prev_hash`) and its own hash over its content and that link (`row_hash`).
//! Editing, deleting or reordering a row breaks the chain at that row. Per-user
//! chains keep concurrent travelers from queueing behind one global lock.

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

impl AuditRow {
    /// SHA-256 over a version tag, the link to the previous row, and every column.
    pub fn compute_hash(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(b"parker_wallet.audit.v1");
        feed(&mut hasher, Some(&self.prev_hash));
        feed(&mut hasher, Some(&self.id));
        feed(&mut hasher, Some(&self.user_id));
        feed(&mut hasher, Some(&self.chain_seq.to_be_bytes()));
        feed(&mut hasher, Some(self.action.as_bytes()));
        feed(&mut hasher, Some(self.table_name.as_bytes()));
        feed(&mut hasher, self.record_id.as_ref().map(|r| r.as_slice()));
        feed(&mut hasher, self.old_data.as_deref().map(str::as_bytes));
        feed(&mut hasher, self.new_data.as_deref().map(str::as_bytes));
        feed(&mut hasher, self.ip_address.as_deref().map(str::as_bytes));
        feed(&mut hasher, self.user_agent.as_deref().map(str::as_bytes));
        feed(&mut hasher, Some(&self.created_at_micros.to_be_bytes()));
        hasher.finalize().into()
    }
}

/// Why a row breaks its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainBreak {
    /// The row's content no longer matches its hash: it was edited.
    ContentChanged,
    /// The row does not point at the row before it: a row was removed or inserted.
    LinkBroken,
    /// The sequence skips or repeats: a row was removed or inserted.
    SequenceGap,
}

impl ChainBreak {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ContentChanged => "content_changed",
            Self::LinkBroken => "link_broken",
            Self::SequenceGap => "sequence_gap",
        }
    }
}

/// Checks one row against the row before it in the same chain (`None` for the first).
pub fn check_link(previous: Option<&AuditRow>, row: &AuditRow) -> Option<ChainBreak> {
    let (expected_seq, expected_prev): (i64, &[u8]) = match previous {
        None => (1, &GENESIS_HASH),
        Some(prev) => (prev.chain_seq + 1, &prev.row_hash),
    };
    if row.row_hash != row.compute_hash() {
        Some(ChainBreak::ContentChanged)
    } else if row.chain_seq != expected_seq {
        Some(ChainBreak::SequenceGap)
    } else if row.prev_hash != expected_prev {
        Some(ChainBreak::LinkBroken)
    } else {
        None
    }
}

/// Walks the whole trail in chain order (by traveler, then sequence) and names
/// the first broken row of every broken chain: one break must not hide another
/// traveler's (an erasure's redaction, say, would otherwise mask all tampering
/// after it). Rows after a chain's first break are not judged.
#[derive(Debug, Default)]
pub struct ChainScan {
    previous: Option<AuditRow>,
    current_chain_broken: bool,
}

impl ChainScan {
    /// The next row in chain order; `Some` when it is its chain's first break.
    pub fn push(&mut self, row: AuditRow) -> Option<(AuditRow, ChainBreak)> {
        let same_chain = self.previous.as_ref().filter(|p| p.user_id == row.user_id);
        if same_chain.is_none() {
            self.current_chain_broken = false;
        }
        let finding = if self.current_chain_broken {
            None
        } else {
            check_link(same_chain, &row).map(|reason| (row.clone(), reason))
        };
        self.current_chain_broken |= finding.is_some();
        self.previous = Some(row);
        finding
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
            };
            row.row_hash = row.compute_hash().to_vec();
            rows.push(row);
        }
        rows
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
        rows[2].row_hash = rows[2].compute_hash().to_vec();
        assert_eq!(first_break(&rows), Some((4, ChainBreak::LinkBroken)));
    }

    #[test]
    fn every_broken_chain_is_reported_once_and_intact_ones_not_at_all() {
        let chain_of = |user: u8, n: usize| {
            chain(n).into_iter().map(move |mut r| {
                r.user_id = [user; 16];
                r
            })
        };
        let mut rows: Vec<AuditRow> = chain_of(1, 4).collect();
        let mut second: Vec<AuditRow> = chain_of(2, 4).collect();
        let mut third: Vec<AuditRow> = chain_of(3, 3).collect();
        // Chain 1 is intact but its own hashes use user 7: recompute them.
        for rows in [&mut rows, &mut second, &mut third] {
            let mut previous = GENESIS_HASH.to_vec();
            for row in rows.iter_mut() {
                row.prev_hash = previous.clone();
                row.row_hash = row.compute_hash().to_vec();
                previous = row.row_hash.clone();
            }
        }
        second[1].new_data = Some("{}".into()); // edited: breaks at 2, and 3 no longer links
        third.remove(0); // truncated head: breaks at its new first row
        rows.extend(second);
        rows.extend(third);
        let mut scan = ChainScan::default();
        let found: Vec<(u8, i64, ChainBreak)> =
            rows.into_iter().filter_map(|r| scan.push(r)).map(|(r, b)| (r.user_id[0], r.chain_seq, b)).collect();
        assert_eq!(found, [(2, 2, ChainBreak::ContentChanged), (3, 2, ChainBreak::SequenceGap)]);
    }

    #[test]
    fn null_and_empty_fields_hash_differently() {
        let mut a = chain(1).remove(0);
        let before = a.compute_hash();
        a.user_agent = Some(String::new());
        assert_ne!(a.compute_hash(), before);
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
