//! Ciphertext format v3, byte by byte (also in docs/ciphertext-format.md):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 1 | version, `0x03` (`0x02` records are still read) |
//! | 1 | 1 | key reference length `k` (1..=255) |
//! | 2 | k | key reference, UTF-8 (the KMS key ARN, or `local:<id>`) |
//! | 2+k | 4 | key epoch, big-endian (part of the KMS encryption context) |
//! | 6+k | 2 | wrapped data key length `w` (1..=1024), big-endian |
//! | 8+k | w | wrapped data key (KMS `CiphertextBlob`, or the local keyring's) |
//! | 8+k+w | 12 | AES-GCM nonce |
//! | 20+k+w | n+16 | AES-256-GCM ciphertext of the n-byte plaintext, then the tag |
//!
//! The additional authenticated data is every byte before the ciphertext (header
//! and nonce) followed by the record's context (`EncryptionContext::aad_bytes`),
//! which from v3 on includes the record's row id. v2 has the same layout and
//! binds no row; `rotate-keys` upgrades such records.

pub const FORMAT_VERSION: u8 = 3;
/// The last version without the row in its context: read, never written.
pub const UNBOUND_VERSION: u8 = 2;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
pub const MAX_WRAPPED_KEY_LEN: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("ciphertext is empty")]
    Empty,
    #[error("ciphertext version 1 predates envelope encryption and cannot be read; re-encrypt the record")]
    VersionOne,
    #[error("unsupported ciphertext version {0}")]
    UnknownVersion(u8),
    #[error("ciphertext is truncated in its {0}")]
    Truncated(&'static str),
    #[error("ciphertext has an invalid {0}")]
    Invalid(&'static str),
}

/// A parsed record, borrowing from the bytes it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub version: u8,
    pub key_ref: &'a str,
    pub key_epoch: u32,
    pub wrapped_key: &'a [u8],
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the tag.
    pub sealed: &'a [u8],
    /// Header and nonce: the first part of the additional data.
    pub header: &'a [u8],
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], FormatError> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.bytes.len()).ok_or(FormatError::Truncated(field))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }
}

pub fn parse(bytes: &[u8]) -> Result<Envelope<'_>, FormatError> {
    let mut reader = Reader { bytes, at: 0 };
    let version = match reader.take(1, "version").map_err(|_| FormatError::Empty)?[0] {
        version @ (UNBOUND_VERSION | FORMAT_VERSION) => version,
        1 => return Err(FormatError::VersionOne),
        other => return Err(FormatError::UnknownVersion(other)),
    };
    let key_ref_len = reader.take(1, "key reference length")?[0] as usize;
    if key_ref_len == 0 {
        return Err(FormatError::Invalid("key reference length"));
    }
    let key_ref = std::str::from_utf8(reader.take(key_ref_len, "key reference")?)
        .map_err(|_| FormatError::Invalid("key reference"))?;
    let epoch = reader.take(4, "key epoch")?;
    let key_epoch = u32::from_be_bytes([epoch[0], epoch[1], epoch[2], epoch[3]]);
    let wrapped_len = reader.take(2, "wrapped key length")?;
    let wrapped_len = u16::from_be_bytes([wrapped_len[0], wrapped_len[1]]) as usize;
    if wrapped_len == 0 || wrapped_len > MAX_WRAPPED_KEY_LEN {
        return Err(FormatError::Invalid("wrapped key length"));
    }
    let wrapped_key = reader.take(wrapped_len, "wrapped key")?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(reader.take(NONCE_LEN, "nonce")?);
    let header = &bytes[..reader.at];
    let sealed = &bytes[reader.at..];
    if sealed.len() < TAG_LEN {
        return Err(FormatError::Truncated("authentication tag"));
    }
    Ok(Envelope { version, key_ref, key_epoch, wrapped_key, nonce, sealed, header })
}

impl Envelope<'_> {
    /// Whether the record's context includes its row id.
    pub fn binds_record(&self) -> bool {
        self.version >= FORMAT_VERSION
    }
}

/// The header and nonce of a new record; the sealed bytes are appended to it.
pub fn encode_header(
    key_ref: &str,
    key_epoch: u32,
    wrapped_key: &[u8],
    nonce: &[u8; NONCE_LEN],
) -> Result<Vec<u8>, FormatError> {
    let key_ref_len =
        u8::try_from(key_ref.len()).ok().filter(|n| *n > 0).ok_or(FormatError::Invalid("key reference length"))?;
    let wrapped_len = u16::try_from(wrapped_key.len())
        .ok()
        .filter(|n| *n > 0 && (*n as usize) <= MAX_WRAPPED_KEY_LEN)
        .ok_or(FormatError::Invalid("wrapped key length"))?;
    let mut out = Vec::with_capacity(8 + key_ref.len() + wrapped_key.len() + NONCE_LEN);
    out.push(FORMAT_VERSION);
    out.push(key_ref_len);
    out.extend_from_slice(key_ref.as_bytes());
    out.extend_from_slice(&key_epoch.to_be_bytes());
    out.extend_from_slice(&wrapped_len.to_be_bytes());
    out.extend_from_slice(wrapped_key);
    out.extend_from_slice(nonce);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let mut bytes = encode_header("local:abc", 7, &[9; 60], &[1; 12]).unwrap();
        bytes.extend_from_slice(&[5; 40]);
        bytes
    }

    #[test]
    fn round_trips_the_header() {
        let bytes = sample();
        let envelope = parse(&bytes).unwrap();
        assert_eq!(envelope.key_ref, "local:abc");
        assert_eq!(envelope.key_epoch, 7);
        assert_eq!(envelope.wrapped_key, &[9; 60]);
        assert_eq!(envelope.nonce, [1; 12]);
        assert_eq!(envelope.sealed.len(), 40);
        assert_eq!(envelope.header.len(), bytes.len() - 40);
    }

    #[test]
    fn documented_offsets_hold() {
        let bytes = sample();
        assert_eq!(bytes[0], 3);
        assert_eq!(bytes[1], 9);
        assert_eq!(&bytes[2..11], b"local:abc");
        assert_eq!(&bytes[11..15], &7u32.to_be_bytes());
        assert_eq!(&bytes[15..17], &60u16.to_be_bytes());
    }

    #[test]
    fn old_and_unknown_versions_are_named() {
        assert_eq!(parse(&[]), Err(FormatError::Empty));
        assert_eq!(parse(&[1, 0, 0]), Err(FormatError::VersionOne));
        assert_eq!(parse(&[4]), Err(FormatError::UnknownVersion(4)));
    }

    #[test]
    fn version_two_records_parse_and_bind_no_row() {
        let mut bytes = sample();
        assert!(parse(&bytes).unwrap().binds_record());
        bytes[0] = UNBOUND_VERSION;
        let legacy = parse(&bytes).unwrap();
        assert_eq!(legacy.version, 2);
        assert!(!legacy.binds_record());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample();
        for end in 0..bytes.len() - 40 + TAG_LEN {
            assert!(parse(&bytes[..end]).is_err(), "prefix of {end} bytes parsed");
        }
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn version_two_garbage_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut bytes = vec![FORMAT_VERSION];
            bytes.extend(tail);
            let _ = parse(&bytes);
        }
    }
}
