//! One subject per transaction.
//!
//! `request.jwt.claims` is an ordinary setting: any SQL session can change it. PostgREST
//! and the sidecar set it once, at the start of each transaction. A change of subject
//! later in the same transaction is therefore never legitimate, and it is the one way
//! a compromised or careless caller could act as two users in one transaction. The first
//! subject seen is pinned; a different one afterwards is an error.

use uuid::Uuid;

#[derive(Debug, PartialEq, Eq)]
pub enum PinDecision {
    /// Nothing to record: the subject matches the pin, or there is none yet.
    Keep,
    /// First subject of the transaction: remember it until the transaction ends.
    Pin(Uuid),
    /// The subject differs from the one pinned earlier in this transaction.
    Conflict,
}

/// Decides what a read of the subject means given what this transaction saw before.
/// An absent subject before any pin pins nothing: anonymous work may precede the
/// claims being set, and gains nothing that setting them first would not give.
pub fn decide(pinned: Option<Uuid>, current: Option<Uuid>) -> PinDecision {
    match (pinned, current) {
        (None, None) => PinDecision::Keep,
        (None, Some(subject)) => PinDecision::Pin(subject),
        (Some(pinned), Some(subject)) if pinned == subject => PinDecision::Keep,
        (Some(_), _) => PinDecision::Conflict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn first_subject_is_pinned() {
        assert_eq!(decide(None, Some(user(1))), PinDecision::Pin(user(1)));
        assert_eq!(decide(None, None), PinDecision::Keep);
    }

    #[test]
    fn same_subject_again_is_fine() {
        assert_eq!(decide(Some(user(1)), Some(user(1))), PinDecision::Keep);
    }

    #[test]
    fn another_or_vanished_subject_is_a_conflict() {
        assert_eq!(decide(Some(user(1)), Some(user(2))), PinDecision::Conflict);
        assert_eq!(decide(Some(user(1)), None), PinDecision::Conflict);
    }
}
