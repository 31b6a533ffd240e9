//! Who is asking: `wallet.uid()`, `wallet.jwt()`, `wallet.request_header(name)`.

use std::cell::Cell;

use pgrx::prelude::*;
use pgrx::{JsonB, PgXactCallbackEvent};

use super::raise;
use super::settings::{setting_text, PIN_JWT_SUBJECT};
use crate::claims;
use crate::subject_pin::{decide, PinDecision};

thread_local! {
    /// The subject pinned in the current transaction; cleared when it ends.
    static PINNED_SUBJECT: Cell<Option<uuid::Uuid>> = const { Cell::new(None) };
}

fn current_claims() -> Option<String> {
    setting_text(c"request.jwt.claims")
}

/// The traveler's user id from the verified JWT claims PostgREST (or the sidecar)
/// set for this transaction; NULL when absent or malformed. Within one transaction
/// the subject cannot change (see `parker_wallet.pin_jwt_subject`).
#[pg_extern(stable, parallel_restricted)]
fn uid() -> Option<pgrx::Uuid> {
    current_subject().map(|subject| pgrx::Uuid::from_bytes(*subject.as_bytes()))
}

/// [`uid`] for Rust callers.
pub(crate) fn current_subject() -> Option<uuid::Uuid> {
    let subject = claims::subject(current_claims().as_deref(), setting_text(c"request.jwt.claim.sub").as_deref());
    if PIN_JWT_SUBJECT.get() {
        match decide(PINNED_SUBJECT.get(), subject) {
            PinDecision::Keep => {}
            PinDecision::Pin(pinned) => {
                PINNED_SUBJECT.set(Some(pinned));
                for event in [PgXactCallbackEvent::Commit, PgXactCallbackEvent::Abort] {
                    pgrx::register_xact_callback(event, || PINNED_SUBJECT.set(None));
                }
            }
            PinDecision::Conflict => raise(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                "request.jwt.claims changed its subject within a transaction; \
                 set the claims once, at the start of each transaction",
            ),
        }
    }
    subject
}

/// The verified JWT claims of this request as jsonb; NULL when absent or malformed.
#[pg_extern(stable, parallel_safe)]
fn jwt() -> Option<JsonB> {
    claims::parse_object(current_claims().as_deref()).map(|object| JsonB(object.into()))
}

/// One header of the HTTP request PostgREST is serving (case-insensitive name);
/// NULL when absent.
#[pg_extern(stable, parallel_safe)]
pub(crate) fn request_header(name: &str) -> Option<String> {
    claims::header(setting_text(c"request.headers").as_deref(), name)
}
