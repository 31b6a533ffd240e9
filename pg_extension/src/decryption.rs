//! Whose records `wallet.encrypt` and `wallet.decrypt` may touch: those of the
//! session's `wallet.uid()`, or any traveler's when the calling role was
//! granted `parker_wallet_system_decrypt`. The answer travels to the sidecar as
//! an attestation (`parker-wallet-subject`), which the sidecar checks again
//! against the record's context.

/// The role a DBA grants for system decryption (created by the extension).
pub const SYSTEM_DECRYPT_ROLE: &str = "parker_wallet_system_decrypt";
/// The same, for the catalog lookup.
pub const SYSTEM_DECRYPT_ROLE_C: &std::ffi::CStr = c"parker_wallet_system_decrypt";

#[derive(Debug, PartialEq, Eq)]
pub enum Attestation {
    Traveler(uuid::Uuid),
    System { role: String },
}

#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The context's `user_id` is missing or not a UUID.
    NoRecordOwner,
    /// The session names no traveler and the role has no system decryption.
    NoSubject,
    /// The record is another traveler's.
    NotYours,
    /// A system role whose name HTTP cannot carry as is.
    UnsendableRole,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoRecordOwner => write!(f, "context.user_id must be the record owner's UUID"),
            Self::NoSubject => write!(
                f,
                "no traveler in this session (wallet.uid() is NULL) and the role is not granted {SYSTEM_DECRYPT_ROLE}"
            ),
            Self::NotYours => write!(
                f,
                "the record belongs to another traveler than wallet.uid(), and the role is not granted {SYSTEM_DECRYPT_ROLE}"
            ),
            Self::UnsendableRole => write!(f, "the role's name holds characters the sidecar protocol cannot carry"),
        }
    }
}

/// Decides for one call. `system_role` is the current role when it holds
/// system decryption, found only when the traveler check did not suffice.
pub fn attest(
    record_owner: Option<&str>,
    uid: Option<uuid::Uuid>,
    system_role: impl FnOnce() -> Option<String>,
) -> Result<Attestation, Refusal> {
    let owner = record_owner.and_then(|text| uuid::Uuid::parse_str(text.trim()).ok()).ok_or(Refusal::NoRecordOwner)?;
    if uid == Some(owner) {
        return Ok(Attestation::Traveler(owner));
    }
    match system_role() {
        Some(role)
            if !role.is_empty() && role.len() <= 63 && role.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) =>
        {
            Ok(Attestation::System { role })
        }
        Some(_) => Err(Refusal::UnsendableRole),
        None if uid.is_none() => Err(Refusal::NoSubject),
        None => Err(Refusal::NotYours),
    }
}

impl Attestation {
    /// The `parker-wallet-subject` header's value.
    pub fn header_value(&self) -> String {
        match self {
            Self::Traveler(id) => format!("traveler {id}"),
            Self::System { role } => format!("system {role}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
    const BOB: &str = "b0b00000-0000-4000-8000-000000000002";

    fn id(text: &str) -> Option<uuid::Uuid> {
        uuid::Uuid::parse_str(text).ok()
    }

    #[test]
    fn both_spellings_of_the_role_agree() {
        assert_eq!(SYSTEM_DECRYPT_ROLE_C.to_str(), Ok(SYSTEM_DECRYPT_ROLE));
    }

    #[test]
    fn a_traveler_opens_their_own_records_without_a_role_lookup() {
        let attested = attest(Some(ALICE), id(ALICE), || panic!("no lookup needed")).unwrap();
        assert_eq!(attested.header_value(), format!("traveler {ALICE}"));
    }

    #[test]
    fn another_travelers_record_needs_system_decryption() {
        assert_eq!(attest(Some(BOB), id(ALICE), || None), Err(Refusal::NotYours));
        assert_eq!(attest(Some(BOB), None, || None), Err(Refusal::NoSubject));
        let system = attest(Some(BOB), None, || Some("billing_job".into())).unwrap();
        assert_eq!(system.header_value(), "system billing_job");
    }

    #[test]
    fn bad_owners_and_unsendable_roles_are_refused() {
        assert_eq!(attest(None, id(ALICE), || None), Err(Refusal::NoRecordOwner));
        assert_eq!(attest(Some("alice"), id(ALICE), || None), Err(Refusal::NoRecordOwner));
        assert_eq!(
            attest(Some(BOB), None, || Some("evil\r\nparker-wallet-subject: x".into())),
            Err(Refusal::UnsendableRole)
        );
    }
}
