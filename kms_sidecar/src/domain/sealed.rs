//! Every column that holds sealed records, in one list: the code that seals
//! them, `rotate-keys` and the tests all read it. Each such table has a UUID
//! primary key `id` (bound into the record) and the owner in `user_id`.

use super::context::{EncryptionContext, Identifier};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedColumn {
    pub table: &'static str,
    pub column: &'static str,
    /// A column recording the format version of the record, where the table has one.
    pub version_column: Option<&'static str>,
}

/// The card metadata Stripe gave for a saved card.
pub const CARD_METADATA: SealedColumn = SealedColumn {
    table: "payment_methods",
    column: "encrypted_card_data",
    version_column: Some("encryption_version"),
};

/// The passengers of a booking, for Duffel.
pub const PASSENGERS: SealedColumn =
    SealedColumn { table: "booking_charges", column: "passengers_sealed", version_column: None };

pub const SEALED_COLUMNS: &[SealedColumn] = &[CARD_METADATA, PASSENGERS];

impl SealedColumn {
    pub fn find(table: &str, column: &str) -> Option<SealedColumn> {
        SEALED_COLUMNS.iter().copied().find(|sealed| sealed.table == table && sealed.column == column)
    }

    /// The context of the record in row `record_id`, owned by `user_id`.
    pub fn context(&self, user_id: uuid::Uuid, record_id: uuid::Uuid) -> EncryptionContext {
        EncryptionContext {
            user_id,
            table: Identifier::listed(self.table),
            column: Identifier::listed(self.column),
            record_id: Some(record_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_is_an_identifier() {
        for sealed in SEALED_COLUMNS {
            for name in [Some(sealed.table), Some(sealed.column), sealed.version_column].into_iter().flatten() {
                assert!(Identifier::parse(name, "listed").is_ok(), "{name}");
            }
        }
        assert_eq!(SealedColumn::find("booking_charges", "passengers_sealed"), Some(PASSENGERS));
        assert_eq!(SealedColumn::find("booking_charges", "route"), None);
    }
}
