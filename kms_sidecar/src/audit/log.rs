//! The checkpoint log: one JSON line per checkpoint (its fields and the heads
//! that moved), appended and synced before the checkpoint's transaction
//! commits. Keep it where the database's owner cannot write (another host, a
//! file with the append-only attribute, an object store with object lock):
//! it is what shows checkpoints deleted from the table.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{AuditError, Checkpoint, Head};

#[derive(Debug, Clone)]
pub struct CheckpointLog {
    path: PathBuf,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LoggedCheckpoint {
    #[serde(flatten)]
    pub checkpoint: Checkpoint,
    /// The heads that moved since the checkpoint before.
    pub heads: Vec<Head>,
}

#[derive(Serialize)]
struct LogLine<'a> {
    #[serde(flatten)]
    checkpoint: &'a Checkpoint,
    heads: &'a [Head],
}

impl CheckpointLog {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn failed(&self, problem: impl std::fmt::Display) -> AuditError {
        AuditError::Log { path: self.path.display().to_string(), problem: problem.to_string() }
    }

    /// Appends one checkpoint in a single write, then syncs it to disk.
    pub fn append(&self, checkpoint: &Checkpoint, moved: &[Head]) -> Result<(), AuditError> {
        let mut line = serde_json::to_vec(&LogLine { checkpoint, heads: moved }).map_err(|e| self.failed(e))?;
        line.push(b'\n');
        let mut file =
            OpenOptions::new().create(true).append(true).mode(0o600).open(&self.path).map_err(|e| self.failed(e))?;
        file.write_all(&line).map_err(|e| self.failed(e))?;
        file.sync_all().map_err(|e| self.failed(e))
    }

    /// Every checkpoint in the log, oldest first; none when there is no log yet.
    pub fn read_all(&self) -> Result<Vec<LoggedCheckpoint>, AuditError> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.failed(e)),
        };
        let mut logged = Vec::new();
        for (number, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| self.failed(e))?;
            if line.trim().is_empty() {
                continue;
            }
            logged.push(serde_json::from_str(&line).map_err(|e| self.failed(format!("line {}: {e}", number + 1)))?);
        }
        Ok(logged)
    }

    /// The newest checkpoint (its heads not parsed), read from the end of the file.
    pub fn newest(&self) -> Result<Option<Checkpoint>, AuditError> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.failed(e)),
        };
        let Some(line) = last_line(&mut file).map_err(|e| self.failed(e))? else { return Ok(None) };
        serde_json::from_slice(&line)
            .map(Some)
            .map_err(|e| self.failed(format!("its last line is not a checkpoint (a write cut short?): {e}")))
    }
}

/// The last non-empty line, read backwards in growing chunks: the first
/// checkpoint of a large trail is a line of many megabytes.
fn last_line(file: &mut File) -> std::io::Result<Option<Vec<u8>>> {
    let mut start = file.metadata()?.len();
    let mut tail: Vec<u8> = Vec::new();
    let mut chunk: u64 = 64 * 1024;
    loop {
        let from = start.saturating_sub(chunk);
        let mut piece = vec![0; (start - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut piece)?;
        piece.extend_from_slice(&tail);
        (tail, start) = (piece, from);
        let end = tail.iter().rposition(|b| *b != b'\n').map_or(0, |p| p + 1);
        if let Some(newline) = tail[..end].iter().rposition(|b| *b == b'\n') {
            return Ok(Some(tail[newline + 1..end].to_vec()));
        }
        if start == 0 {
            return Ok((end > 0).then(|| tail[..end].to_vec()));
        }
        chunk *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(seq: i64) -> Checkpoint {
        Checkpoint {
            seq,
            created_at: chrono::DateTime::from_timestamp_micros(1_800_000_000_000_000 + seq).unwrap(),
            head_count: seq,
            heads_digest: vec![1; 32],
            prev_digest: vec![2; 32],
            digest: vec![3; 32],
            key_id: "arn:aws:kms:us-east-1:1:key/x".into(),
            signing_algorithm: "ECDSA_SHA_256".into(),
            signature: vec![4; 71],
        }
    }

    #[test]
    fn appended_checkpoints_read_back_in_order_and_the_newest_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let log = CheckpointLog::new(dir.path().join("checkpoints.jsonl"));
        assert_eq!(log.newest().unwrap(), None);
        assert!(log.read_all().unwrap().is_empty());
        let many: Vec<Head> = (0..5_000)
            .map(|i: u32| Head { user_id: uuid::Uuid::from_u128(i.into()), chain_seq: 1, row_hash: vec![7; 32] })
            .collect();
        log.append(&checkpoint(1), &many).unwrap();
        log.append(&checkpoint(2), &many[..1]).unwrap();
        assert_eq!(log.newest().unwrap(), Some(checkpoint(2)));
        let all = log.read_all().unwrap();
        assert_eq!(all.iter().map(|l| l.checkpoint.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(all[0].heads, many);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(log.path()).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_line_cut_short_is_an_error_not_a_missing_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let log = CheckpointLog::new(dir.path().join("checkpoints.jsonl"));
        log.append(&checkpoint(1), &[]).unwrap();
        std::fs::OpenOptions::new().append(true).open(log.path()).unwrap().write_all(b"{\"seq\": 2, \"creat").unwrap();
        assert!(matches!(log.newest(), Err(AuditError::Log { .. })));
    }
}
