//! Who is asking: `wallet.uid()`, `wallet.jwt()`, `wallet.request_header(name)`.

use std::cell::{Cell, RefCell};
use std::ffi::CStr;
use std::rc::Rc;
use std::thread::LocalKey;

use pgrx::prelude::*;
use pgrx::{JsonB, PgXactCallbackEvent};

use super::raise;
use super::settings::{setting_text, with_setting, PIN_JWT_SUBJECT};
use crate::claims;
use crate::subject_pin::{decide, PinDecision};

type JsonObject = serde_json::Map<String, serde_json::Value>;

/// One setting's JSON object, parsed, with the raw text it was parsed from.
type Parsed = Option<(Vec<u8>, Rc<Option<JsonObject>>)>;

thread_local! {
    /// The subject pinned in the current transaction; cleared when it ends.
    static PINNED_SUBJECT: Cell<Option<uuid::Uuid>> = const { Cell::new(None) };
    /// The claims and the headers as last parsed: every row an audited
    /// statement writes reads them, and they change per request, not per row.
    static CLAIMS: RefCell<Parsed> = const { RefCell::new(None) };
    static HEADERS: RefCell<Parsed> = const { RefCell::new(None) };
}

/// The JSON object setting `name` holds (None when unset, empty or not an
/// object), parsed again only when its text changed since the last call.
fn parsed_setting(name: &CStr, memo: &'static LocalKey<RefCell<Parsed>>) -> Rc<Option<JsonObject>> {
    with_setting(name, |raw| {
        let Some(raw) = raw else { return Rc::new(None) };
        memo.with(|memo| {
            let mut memo = memo.borrow_mut();
            if let Some((text, parsed)) = memo.as_ref() {
                if text.as_slice() == raw.to_bytes() {
                    return Rc::clone(parsed);
                }
            }
            let parsed = Rc::new(claims::parse_object(Some(&raw.to_string_lossy())));
            *memo = Some((raw.to_bytes().to_vec(), Rc::clone(&parsed)));
            parsed
        })
    })
}

/// The verified JWT claims of this transaction, parsed.
pub(crate) fn current_claims() -> Rc<Option<JsonObject>> {
    parsed_setting(c"request.jwt.claims", &CLAIMS)
}

/// The issuer of this transaction's claims (see [`claims::issuer`]).
pub(crate) fn current_issuer() -> Option<String> {
    claims::issuer(current_claims().as_ref().as_ref())
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
    let subject =
        claims::subject(current_claims().as_ref().as_ref(), setting_text(c"request.jwt.claim.sub").as_deref());
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
    current_claims().as_ref().clone().map(|object| JsonB(object.into()))
}

/// One header of the HTTP request PostgREST is serving (case-insensitive name);
/// NULL when absent.
#[pg_extern(stable, parallel_safe)]
pub(crate) fn request_header(name: &str) -> Option<String> {
    claims::header(parsed_setting(c"request.headers", &HEADERS).as_ref().as_ref(), name)
}

/// SQL behaviour of these wrappers, inside a real backend (`cargo pgrx test`);
/// each test runs in its own transaction, rolled back afterwards.
#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use pgrx::prelude::*;

    use crate::pg::test_support::*;

    fn uid() -> Option<String> {
        Spi::get_one::<String>("SELECT wallet.uid()::text").unwrap()
    }

    #[pg_test]
    fn uid_reads_postgrest_claims() {
        set_claims(&format!(r#"{{"sub":"{ALICE}","role":"authenticated"}}"#));
        assert_eq!(uid().as_deref(), Some(ALICE));
    }

    #[pg_test]
    fn uid_is_null_for_absent_empty_or_garbage_claims() {
        assert_eq!(uid(), None);
        for claims in ["", "garbage", r#"{"sub":"x'); drop table t; --"}"#, r#"{"sub":7}"#, "[1]"] {
            set_claims(claims);
            assert_eq!(uid(), None, "{claims}");
        }
    }

    #[pg_test(
        error = "request.jwt.claims changed its subject within a transaction; set the claims once, at the start of each transaction"
    )]
    fn uid_refuses_a_second_subject_in_one_transaction() {
        set_claims(&format!(r#"{{"sub":"{ALICE}"}}"#));
        assert_eq!(uid().as_deref(), Some(ALICE));
        set_claims(&format!(r#"{{"sub":"{BOB}"}}"#));
        uid();
    }

    #[pg_test]
    fn superuser_may_turn_the_pin_off() {
        Spi::run("SET LOCAL parker_wallet.pin_jwt_subject = off").unwrap();
        set_claims(&format!(r#"{{"sub":"{ALICE}"}}"#));
        assert_eq!(uid().as_deref(), Some(ALICE));
        set_claims(&format!(r#"{{"sub":"{BOB}"}}"#));
        assert_eq!(uid().as_deref(), Some(BOB));
    }

    #[pg_test]
    fn jwt_returns_the_claims_object_or_null() {
        set_claims(r#"{"sub":"x","app_metadata":{"provider":"email"}}"#);
        let provider = Spi::get_one::<String>("SELECT wallet.jwt() -> 'app_metadata' ->> 'provider'").unwrap();
        assert_eq!(provider.as_deref(), Some("email"));
        set_claims("not json");
        assert_eq!(Spi::get_one::<bool>("SELECT wallet.jwt() IS NULL").unwrap(), Some(true));
    }

    #[pg_test]
    fn request_header_reads_postgrest_headers() {
        Spi::run(
            r#"SELECT set_config('request.headers', '{"user-agent":"curl/8","x-forwarded-for":"203.0.113.9"}', true)"#,
        )
        .unwrap();
        let agent = Spi::get_one::<String>("SELECT wallet.request_header('User-Agent')").unwrap();
        assert_eq!(agent.as_deref(), Some("curl/8"));
        assert_eq!(Spi::get_one::<String>("SELECT wallet.request_header('nope')").unwrap(), None);
        Spi::run("SELECT set_config('request.headers', '{broken', true)").unwrap();
        assert_eq!(Spi::get_one::<String>("SELECT wallet.request_header('user-agent')").unwrap(), None);
    }
}
