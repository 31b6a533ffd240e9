//! The per-record encryption context: whose record, in which table, column and
//! row. It is bound into every ciphertext as AES-GCM additional data, so a
//! ciphertext copied to another traveler, table, column or row no longer decrypts.

use serde::Deserialize;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidContext {
    #[error("context.{field} must be a lower-case SQL identifier (a-z, 0-9, _; at most 63 characters)")]
    BadIdentifier { field: &'static str },
    #[error("context.user_id must be a UUID")]
    BadUserId,
    #[error("context.record_id must be a UUID (the row's primary key)")]
    BadRecordId,
    #[error("context.record_id is required: a new record is bound to its row")]
    RecordIdRequired,
}

/// A lower-case SQL identifier: `[a-z_][a-z0-9_]{0,62}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identifier(String);

impl Identifier {
    pub fn parse(text: &str, field: &'static str) -> Result<Self, InvalidContext> {
        let bytes = text.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= 63
            && (bytes[0].is_ascii_lowercase() || bytes[0] == b'_')
            && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(InvalidContext::BadIdentifier { field })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A name from the sealed-column list (checked by that list's test).
    pub(super) fn listed(name: &'static str) -> Self {
        Self(name.to_owned())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EncryptionContext {
    pub user_id: uuid::Uuid,
    pub table: Identifier,
    pub column: Identifier,
    /// The row's primary key. Records sealed before it was bound (format v2)
    /// open without it; every new record needs it.
    pub record_id: Option<uuid::Uuid>,
}

/// The JSON shape clients send; unknown fields are refused, so a typo never
/// silently changes what a ciphertext is bound to.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "EncryptionContextInput")]
pub struct ContextInput {
    pub user_id: String,
    pub table: String,
    pub column: String,
    #[serde(default)]
    pub record_id: Option<String>,
}

impl TryFrom<ContextInput> for EncryptionContext {
    type Error = InvalidContext;

    fn try_from(input: ContextInput) -> Result<Self, Self::Error> {
        let user_id = uuid::Uuid::parse_str(input.user_id.trim()).map_err(|_| InvalidContext::BadUserId)?;
        let record_id = match input.record_id {
            Some(id) => Some(uuid::Uuid::parse_str(id.trim()).map_err(|_| InvalidContext::BadRecordId)?),
            None => None,
        };
        Ok(Self {
            user_id,
            table: Identifier::parse(&input.table, "table")?,
            column: Identifier::parse(&input.column, "column")?,
            record_id,
        })
    }
}

impl EncryptionContext {
    /// The canonical bytes bound into a record: a tag, the user id's 16 bytes,
    /// table and column (each length-prefixed) and, from format v3 on, the
    /// record id's 16 bytes under its own tag. `bind_record` is the format's
    /// choice; a v3 record cannot be opened or sealed without a record id.
    pub fn aad_bytes(&self, bind_record: bool) -> Result<Vec<u8>, InvalidContext> {
        let mut aad = Vec::with_capacity(8 + 16 + 2 + self.table.0.len() + self.column.0.len() + 16);
        aad.extend_from_slice(if bind_record { b"pw-ctx\x02" } else { b"pw-ctx\x01" });
        aad.extend_from_slice(self.user_id.as_bytes());
        for part in [&self.table.0, &self.column.0] {
            aad.push(part.len() as u8); // identifiers are at most 63 bytes
            aad.extend_from_slice(part.as_bytes());
        }
        if bind_record {
            aad.extend_from_slice(self.record_id.ok_or(InvalidContext::RecordIdRequired)?.as_bytes());
        }
        Ok(aad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(user: &str, table: &str, column: &str) -> ContextInput {
        ContextInput { user_id: user.into(), table: table.into(), column: column.into(), record_id: None }
    }

    const USER: &str = "6f9619ff-8b86-d011-b42d-00c04fc964ff";

    #[test]
    fn accepts_identifiers_and_uuid() {
        let ctx = EncryptionContext::try_from(input(USER, "payment_methods", "encrypted_card_data")).unwrap();
        assert_eq!(ctx.table.as_str(), "payment_methods");
    }

    #[test]
    fn refuses_bad_identifiers() {
        for bad in ["", "Payment", "1table", "pay-ments", "t;drop", &"a".repeat(64), "é"] {
            assert_eq!(
                EncryptionContext::try_from(input(USER, bad, "c")).unwrap_err(),
                InvalidContext::BadIdentifier { field: "table" },
                "{bad:?}"
            );
        }
        assert_eq!(EncryptionContext::try_from(input("nope", "t", "c")).unwrap_err(), InvalidContext::BadUserId);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let json = format!(r#"{{"user_id":"{USER}","table":"t","column":"c","tenant":"x"}}"#);
        assert!(serde_json::from_str::<ContextInput>(&json).is_err());
    }

    #[test]
    fn aad_differs_when_any_part_differs() {
        let base = EncryptionContext::try_from(input(USER, "ab", "c")).unwrap();
        let moved = EncryptionContext::try_from(input(USER, "a", "bc")).unwrap();
        let other_user = EncryptionContext::try_from(input("00000000-0000-4000-8000-000000000001", "ab", "c")).unwrap();
        let aad = |ctx: &EncryptionContext| ctx.aad_bytes(false).unwrap();
        assert_ne!(aad(&base), aad(&moved), "length prefixes keep table/column apart");
        assert_ne!(aad(&base), aad(&other_user));
    }

    #[test]
    fn the_record_id_is_bound_from_v3_on() {
        let row = |id: &str| {
            EncryptionContext::try_from(ContextInput { record_id: Some(id.into()), ..input(USER, "t", "c") }).unwrap()
        };
        let (one, two) = (row("00000000-0000-4000-8000-000000000001"), row("00000000-0000-4000-8000-000000000002"));
        assert_ne!(one.aad_bytes(true).unwrap(), two.aad_bytes(true).unwrap(), "another row");
        assert_eq!(one.aad_bytes(false).unwrap(), two.aad_bytes(false).unwrap(), "v2 records bind no row");
        let unbound = EncryptionContext::try_from(input(USER, "t", "c")).unwrap();
        assert_eq!(unbound.aad_bytes(true), Err(InvalidContext::RecordIdRequired));
        assert_eq!(
            EncryptionContext::try_from(ContextInput { record_id: Some("7".into()), ..input(USER, "t", "c") })
                .unwrap_err(),
            InvalidContext::BadRecordId
        );
    }
}
