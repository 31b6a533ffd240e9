//! The per-record encryption context: whose record, in which table and column.
//! It is bound into every ciphertext as AES-GCM additional data, so a ciphertext
//! copied to another traveler, table or column no longer decrypts.

use serde::Deserialize;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidContext {
    #[error("context.{field} must be a lower-case SQL identifier (a-z, 0-9, _; at most 63 characters)")]
    BadIdentifier { field: &'static str },
    #[error("context.user_id must be a UUID")]
    BadUserId,
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
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EncryptionContext {
    pub user_id: uuid::Uuid,
    pub table: Identifier,
    pub column: Identifier,
}

/// The JSON shape clients send; unknown fields are refused, so a typo never
/// silently changes what a ciphertext is bound to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextInput {
    pub user_id: String,
    pub table: String,
    pub column: String,
}

impl TryFrom<ContextInput> for EncryptionContext {
    type Error = InvalidContext;

    fn try_from(input: ContextInput) -> Result<Self, Self::Error> {
        let user_id = uuid::Uuid::parse_str(input.user_id.trim()).map_err(|_| InvalidContext::BadUserId)?;
        Ok(Self {
            user_id,
            table: Identifier::parse(&input.table, "table")?,
            column: Identifier::parse(&input.column, "column")?,
        })
    }
}

impl EncryptionContext {
    /// The canonical bytes bound into the ciphertext: a tag, the user id's 16
    /// bytes, then table and column, each length-prefixed.
    pub fn aad_bytes(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(8 + 16 + 2 + self.table.0.len() + self.column.0.len());
        aad.extend_from_slice(b"pw-ctx\x01");
        aad.extend_from_slice(self.user_id.as_bytes());
        for part in [&self.table.0, &self.column.0] {
            aad.push(part.len() as u8); // identifiers are at most 63 bytes
            aad.extend_from_slice(part.as_bytes());
        }
        aad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(user: &str, table: &str, column: &str) -> ContextInput {
        ContextInput { user_id: user.into(), table: table.into(), column: column.into() }
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
        assert_ne!(base.aad_bytes(), moved.aad_bytes(), "length prefixes keep table/column apart");
        assert_ne!(base.aad_bytes(), other_user.aad_bytes());
    }
}
