//! Whose records a crypto request may touch. A traveler (the verified token's
//! `sub`, or the `wallet.uid()` the database attests) opens only records whose
//! context names them; a database role granted system decryption opens any.

use super::EncryptionContext;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Traveler(uuid::Uuid),
    /// A database role the extension found holding `parker_wallet_system_decrypt`.
    System {
        role: String,
    },
}

/// The header the extension sends with every crypto call: `traveler <uuid>`
/// or `system <role>`.
pub const SUBJECT_HEADER: &str = "parker-wallet-subject";

impl Subject {
    /// Reads the database's attestation; `None` when it names nobody.
    pub fn attested(header: &str) -> Option<Self> {
        match header.split_once(' ')? {
            ("traveler", id) => uuid::Uuid::parse_str(id).ok().map(Self::Traveler),
            ("system", role) if !role.is_empty() && role.len() <= 63 && role.chars().all(|c| !c.is_control()) => {
                Some(Self::System { role: role.to_owned() })
            }
            _ => None,
        }
    }

    pub fn may_use(&self, context: &EncryptionContext) -> bool {
        match self {
            Self::Traveler(user_id) => *user_id == context.user_id,
            Self::System { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::context::ContextInput;

    const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";

    fn context(user: &str) -> EncryptionContext {
        EncryptionContext::try_from(ContextInput {
            user_id: user.into(),
            table: "t".into(),
            column: "c".into(),
            record_id: None,
        })
        .unwrap()
    }

    #[test]
    fn a_traveler_uses_only_their_own_records() {
        let alice = Subject::attested(&format!("traveler {ALICE}")).unwrap();
        assert!(alice.may_use(&context(ALICE)));
        assert!(!alice.may_use(&context("b0b00000-0000-4000-8000-000000000002")));
        assert!(Subject::attested("system service_role").unwrap().may_use(&context(ALICE)));
    }

    #[test]
    fn an_attestation_that_names_nobody_is_none() {
        for header in [
            "",
            "traveler",
            "traveler not-a-uuid",
            "system ",
            "admin x",
            &format!("system {}", "r".repeat(64)),
            "system a\nb",
        ] {
            assert_eq!(Subject::attested(header), None, "{header:?}");
        }
    }
}
