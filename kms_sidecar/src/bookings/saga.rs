//! The booking saga's rules, without I/O: which decline allows the backup card,
//! and where each outcome leads. Every state is written before the external call
//! it leads to, so a restart knows what was (maybe) asked of Stripe or Duffel.

/// Where a booking stands. Final states end with the card charged exactly once
/// (`Captured`), or not at all (`Voided`, `Refunded`, `Declined`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Row written; about to ask Stripe for an authorization.
    Authorizing,
    /// The issuer wants the traveler (3-D Secure): waiting for them, on-session.
    RequiresAuthentication,
    /// Authorized; about to create the Duffel order.
    Ordering,
    /// Duffel confirmed; about to capture.
    Capturing,
    /// Duffel failed for certain; about to release the authorization.
    Voiding,
    /// Money was captured but the booking failed; about to refund.
    Refunding,
    /// An outcome we cannot know without asking again: the reconciler's.
    NeedsReconciliation,
    Captured,
    Voided,
    Refunded,
    Declined,
}

impl State {
    pub fn is_final(self) -> bool {
        matches!(self, Self::Captured | Self::Voided | Self::Refunded | Self::Declined)
    }

    pub const ALL: [State; 11] = [
        Self::Authorizing,
        Self::RequiresAuthentication,
        Self::Ordering,
        Self::Capturing,
        Self::Voiding,
        Self::Refunding,
        Self::NeedsReconciliation,
        Self::Captured,
        Self::Voided,
        Self::Refunded,
        Self::Declined,
    ];

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorizing => "authorizing",
            Self::RequiresAuthentication => "requires_authentication",
            Self::Ordering => "ordering",
            Self::Capturing => "capturing",
            Self::Voiding => "voiding",
            Self::Refunding => "refunding",
            Self::NeedsReconciliation => "needs_reconciliation",
            Self::Captured => "captured",
            Self::Voided => "voided",
            Self::Refunded => "refunded",
            Self::Declined => "declined",
        }
    }
}

/// How a decline is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclineKind {
    /// The card cannot pay now (expired, no funds, issuer says no): the backup
    /// card may be tried, once.
    Hard,
    /// Suspected fraud: never retried on another card.
    Fraud,
    /// The issuer wants the cardholder: ask the traveler, never another card.
    Authentication,
}

/// Classifies a Stripe refusal by its `decline_code` (else its `code`).
pub fn classify_decline(code: Option<&str>, decline_code: Option<&str>) -> DeclineKind {
    const FRAUD: &[&str] = &[
        "fraudulent",
        "stolen_card",
        "lost_card",
        "pickup_card",
        "merchant_blacklist",
        "restricted_card",
        "security_violation",
    ];
    const AUTHENTICATION: &[&str] = &["authentication_required", "card_velocity_exceeded_authentication"];
    let reason = decline_code.or(code).unwrap_or("");
    if FRAUD.contains(&reason) {
        DeclineKind::Fraud
    } else if AUTHENTICATION.contains(&reason) || code == Some("authentication_required") {
        DeclineKind::Authentication
    } else {
        DeclineKind::Hard
    }
}

/// What happened at the step a state leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Authorized,
    NeedsAuthentication,
    Declined {
        code: Option<String>,
        decline_code: Option<String>,
    },
    DuffelConfirmed,
    /// Duffel said no for certain (4xx, `order_not_created`).
    DuffelFailed,
    Captured,
    Released,
    Refunded,
    /// Timeout, 5xx, crash: the external side may or may not have acted.
    Ambiguous,
}

/// The next state, and whether the backup card is to be tried now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub to: State,
    pub try_backup_card: bool,
}

const fn go(to: State) -> Transition {
    Transition { to, try_backup_card: false }
}

/// Where `outcome` leads from `state`; `backup_available` when a second card
/// exists and has not been tried. `None` for an outcome that cannot happen there.
pub fn next(state: State, outcome: &Outcome, backup_available: bool) -> Option<Transition> {
    use Outcome as O;
    use State as S;
    Some(match (state, outcome) {
        (S::Authorizing | S::RequiresAuthentication, O::Authorized) => go(S::Ordering),
        (S::Authorizing, O::NeedsAuthentication) => go(S::RequiresAuthentication),
        (S::Authorizing | S::RequiresAuthentication, O::Declined { code, decline_code }) => {
            match classify_decline(code.as_deref(), decline_code.as_deref()) {
                DeclineKind::Hard if backup_available && state == S::Authorizing => {
                    Transition { to: S::Authorizing, try_backup_card: true }
                }
                DeclineKind::Authentication if state == S::Authorizing => go(S::RequiresAuthentication),
                _ => go(S::Declined),
            }
        }
        (S::Authorizing, O::Ambiguous) => go(S::NeedsReconciliation),
        (S::Ordering, O::DuffelConfirmed) => go(S::Capturing),
        (S::Ordering, O::DuffelFailed) => go(S::Voiding),
        // Never a blind void: the order may exist.
        (S::Ordering, O::Ambiguous) => go(S::NeedsReconciliation),
        (S::Capturing, O::Captured) => go(S::Captured),
        // A capture that failed is retried (by the reconciler), never voided:
        // the traveler holds a ticket.
        (S::Capturing, O::Ambiguous) => go(S::NeedsReconciliation),
        (S::Voiding, O::Released) => go(S::Voided),
        // Money was taken after all (captured elsewhere): give it back.
        (S::Voiding, O::Captured) => go(S::Refunding),
        (S::Voiding, O::Ambiguous) => go(S::NeedsReconciliation),
        (S::Refunding, O::Refunded) => go(S::Refunded),
        (S::Refunding, O::Ambiguous) => go(S::NeedsReconciliation),
        _ => return None,
    })
}

/// The Stripe idempotency key of one step of one booking: a retry after a crash
/// repeats the same request, so Stripe answers it without acting twice.
pub fn idempotency_key(booking_id: uuid::Uuid, step: &str, card_attempt: u8) -> String {
    format!("parker-wallet:booking:{booking_id}:{step}:{card_attempt}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declined(decline_code: &str) -> Outcome {
        Outcome::Declined { code: Some("card_declined".into()), decline_code: Some(decline_code.into()) }
    }

    #[test]
    fn the_happy_path_captures_after_duffel_confirms() {
        let mut state = State::Authorizing;
        for outcome in [Outcome::Authorized, Outcome::DuffelConfirmed, Outcome::Captured] {
            state = next(state, &outcome, false).unwrap().to;
        }
        assert_eq!(state, State::Captured);
        assert!(state.is_final());
    }

    #[test]
    fn hard_declines_try_the_backup_card_once() {
        for code in ["expired_card", "insufficient_funds", "do_not_honor", "generic_decline"] {
            assert_eq!(
                next(State::Authorizing, &declined(code), true),
                Some(Transition { to: State::Authorizing, try_backup_card: true }),
                "{code}"
            );
            assert_eq!(
                next(State::Authorizing, &declined(code), false).unwrap().to,
                State::Declined,
                "{code}, no backup left"
            );
        }
    }

    #[test]
    fn fraud_and_authentication_never_fall_back() {
        for code in ["fraudulent", "stolen_card", "lost_card"] {
            assert_eq!(next(State::Authorizing, &declined(code), true).unwrap(), go(State::Declined), "{code}");
        }
        let auth = Outcome::Declined { code: Some("authentication_required".into()), decline_code: None };
        assert_eq!(next(State::Authorizing, &auth, true).unwrap(), go(State::RequiresAuthentication));
        assert_eq!(
            next(State::Authorizing, &Outcome::NeedsAuthentication, true).unwrap(),
            go(State::RequiresAuthentication)
        );
    }

    #[test]
    fn duffel_failure_releases_and_ambiguity_goes_to_the_reconciler() {
        assert_eq!(next(State::Ordering, &Outcome::DuffelFailed, false).unwrap().to, State::Voiding);
        assert_eq!(next(State::Voiding, &Outcome::Released, false).unwrap().to, State::Voided);
        for state in [State::Authorizing, State::Ordering, State::Capturing, State::Voiding, State::Refunding] {
            assert_eq!(next(state, &Outcome::Ambiguous, false).unwrap().to, State::NeedsReconciliation, "{state:?}");
        }
    }

    #[test]
    fn a_void_that_finds_money_taken_refunds_it() {
        assert_eq!(next(State::Voiding, &Outcome::Captured, false).unwrap().to, State::Refunding);
        assert_eq!(next(State::Refunding, &Outcome::Refunded, false).unwrap().to, State::Refunded);
    }

    #[test]
    fn states_read_back_from_their_names() {
        for state in State::ALL {
            assert_eq!(State::parse(state.as_str()), Some(state));
        }
        assert_eq!(State::parse("paid"), None);
    }

    #[test]
    fn impossible_outcomes_and_final_states_go_nowhere() {
        assert_eq!(next(State::Captured, &Outcome::Released, false), None);
        assert_eq!(next(State::Ordering, &Outcome::Captured, false), None);
        assert_eq!(next(State::Voided, &Outcome::Authorized, false), None);
    }

    #[test]
    fn idempotency_keys_name_booking_step_and_card() {
        let id = uuid::Uuid::from_u128(7);
        assert_eq!(idempotency_key(id, "authorize", 1), format!("parker-wallet:booking:{id}:authorize:1"));
        assert_ne!(idempotency_key(id, "authorize", 1), idempotency_key(id, "authorize", 2));
    }
}
