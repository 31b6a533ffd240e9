//! `parker_wallet`: Parker Wallet's Postgres extension (schema `wallet`).
//!
//! The map: plain Rust that knows nothing of Postgres lives at the top
//! ([`audit`], [`claims`], [`completion`], [`flags`],
//! [`sidecar`], [`subject_pin`], [`rls`]) and has its own unit tests; [`pg`] holds
//! the thin `#[pg_extern]` wrappers that give it to SQL, with `#[pg_test]`s.

use pgrx::prelude::*;

pub mod audit;
pub mod claims;
pub mod completion;
pub mod flags;
pub mod sidecar;
pub mod pg;
pub mod rls;
pub mod subject_pin;

::pgrx::pg_module_magic!(name, version);

// Every role may call the request-context and scoring functions (RLS policies
// and PostgREST requests run as the traveler). Triggers that write tables the
// traveler may not write, and the flag lookup, run as the extension's owner with
// a fixed search path. Only table owners may change policies or auditing.
// The functions that keep prepared statements use generic plans (Postgres would
// otherwise re-plan their statements on every call) with sequential scans off:
// a generic plan made while a table was still empty would otherwise keep
// scanning it for the life of the connection, however large it grows.
extension_sql!(
    r#"
GRANT USAGE ON SCHEMA wallet TO PUBLIC;
ALTER FUNCTION wallet.audit_trigger() SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
ALTER FUNCTION wallet.completion_trigger() SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
ALTER FUNCTION wallet.profile_completeness(uuid)
  SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
ALTER FUNCTION wallet.refresh_completion_batch(uuid, int)
  SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
ALTER FUNCTION wallet.flag_enabled(text, uuid) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
-- Attaching a trigger needs EXECUTE on its function: without these revokes any
-- role that can create a table could attach the SECURITY DEFINER audit trigger
-- to it and write audit rows in a traveler's name.
REVOKE EXECUTE ON FUNCTION wallet.audit_trigger() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION wallet.completion_trigger() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION wallet.enable_owner_rls(regclass, text, text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION wallet.enable_audit(regclass, text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION wallet.disable_audit(regclass) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION wallet.refresh_completion_batch(uuid, int) FROM PUBLIC;
REVOKE EXECUTE ON PROCEDURE wallet.refresh_all_completion(int) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION wallet.verify_audit_chain() FROM PUBLIC;
-- Decryption is for the roles the DBA grants it to (the sidecar's, a job's), not
-- for every traveler session.
REVOKE EXECUTE ON FUNCTION wallet.encrypt(bytea, jsonb) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION wallet.decrypt(bytea, jsonb) FROM PUBLIC;
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
