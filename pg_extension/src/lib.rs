//! `parker_wallet`: Parker Wallet's Postgres extension (schema `wallet`).
//!
//! The map: plain Rust that knows nothing of Postgres lives at the top
//! ([`claims`], [`completion`], [`subject_pin`], [`rls`]) and has its own unit tests; [`pg`] holds
//! the thin `#[pg_extern]` wrappers that give it to SQL, with `#[pg_test]`s.

use pgrx::prelude::*;

pub mod claims;
pub mod completion;
pub mod pg;
pub mod rls;
pub mod subject_pin;

::pgrx::pg_module_magic!(name, version);

// Every role may call the request-context and scoring functions (RLS policies
// and PostgREST requests run as the traveler); only owners may change policies.
extension_sql!(
    r#"
GRANT USAGE ON SCHEMA wallet TO PUBLIC;
REVOKE EXECUTE ON FUNCTION wallet.enable_owner_rls(regclass, text, text[]) FROM PUBLIC;
"#,
    name = "privileges",
    finalize,
);

#[allow(non_snake_case)]
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    pg::settings::register();
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
