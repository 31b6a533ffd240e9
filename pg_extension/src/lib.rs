//! `parker_wallet`: Parker Wallet's Postgres extension (schema `wallet`).
//!
//! The map: plain Rust that knows nothing of Postgres lives at the top
//! ([`audit`]: the `audit_chain` crate, which the sidecar shares; [`claims`], [`completion`], [`flags`], [`preferences`],
//! [`sidecar`], [`subject_pin`], [`rls`], [`security`]) and has its own unit tests; [`pg`] holds
//! the thin `#[pg_extern]` wrappers that give it to SQL, with `#[pg_test]`s.

use pgrx::prelude::*;

pub use audit_chain as audit;
pub mod claims;
pub mod completion;
pub mod decryption;
pub mod flags;
pub mod pg;
pub mod preferences;
pub mod rls;
pub mod security;
pub mod sidecar;
pub mod subject_pin;

::pgrx::pg_module_magic!(name, version);

// Runs before anything else in the install script. Its search path is the
// extension's schema first (pg_catalog implicit): a schema named `wallet` that
// someone else created beforehand could hold functions that beat pg_catalog's
// (a `wallet.format(text, text)`) and run as the installing superuser. So the
// schema must be a superuser's, and everything here names pg_catalog outright.
extension_sql!(
    r#"
DO $schema$
BEGIN
  IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_namespace n
            JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
           WHERE n.nspname OPERATOR(pg_catalog.=) 'wallet') THEN
    RAISE EXCEPTION 'schema wallet exists and belongs to a role that is not a superuser'
      USING HINT = 'parker_wallet installs into its own schema: drop or rename that one first.';
  END IF;
END
$schema$;
"#,
    name = "schema_owner_check",
    bootstrap,
);

// Privileges, stated in full rather than left to defaults (see docs/roles.md).
// Every role may call the request-context, scoring and flag functions (RLS
// policies and PostgREST requests run as the traveler); nothing else is PUBLIC.
// No code of the extension runs as a superuser: each SECURITY DEFINER function
// belongs to a NOLOGIN role of its own that the migrations grant exactly what it
// writes, so a trigger someone attaches to those tables runs with that little.
// The functions that keep prepared statements use generic plans (Postgres would
// otherwise re-plan their statements on every call) with sequential scans off:
// a generic plan made while a table was still empty would otherwise keep
// scanning it for the life of the connection, however large it grows.
extension_sql!(
    r#"
DO $roles$
DECLARE
  role_name text;
BEGIN
  FOREACH role_name IN ARRAY ARRAY['parker_wallet_auditor', 'parker_wallet_scorer', 'parker_wallet_flag_reader',
                                   'parker_wallet_lookup', 'parker_wallet_event_recorder'] LOOP
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) role_name) THEN
      EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN NOINHERIT', role_name);
    ELSIF EXISTS (SELECT FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles r
                                ON r.oid OPERATOR(pg_catalog.=) m.roleid OR r.oid OPERATOR(pg_catalog.=) m.member
                   WHERE r.rolname OPERATOR(pg_catalog.=) role_name) THEN
      -- Whoever holds such a role acts as the wallet's definer functions.
      RAISE EXCEPTION 'role % exists with members or memberships: it was not made by parker_wallet', role_name
        USING HINT = 'Revoke them (or drop the role), then create the extension again.';
    END IF;
    -- Whoever created a role of that name first, it ends up with no powers of its own.
    -- Written only when needed: concurrent installs in other databases of the
    -- cluster would otherwise update the same pg_authid row and fail.
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) role_name
               AND (rolsuper OR rolcreatedb OR rolcreaterole OR rolcanlogin OR rolreplication OR rolbypassrls OR rolinherit)) THEN
      EXECUTE pg_catalog.format(
        'ALTER ROLE %I NOSUPERUSER NOCREATEDB NOCREATEROLE NOLOGIN NOREPLICATION NOBYPASSRLS NOINHERIT', role_name);
    END IF;
  END LOOP;
END
$roles$;

-- parker_wallet_system_decrypt owns nothing: a DBA grants it to the roles that may
-- decrypt any traveler's records through wallet.decrypt (docs/sidecar.md). Its
-- members are those grants, kept across DROP and CREATE EXTENSION (roles belong to
-- the cluster): named here, not refused; security_report flags API roles among them.
DO $system_decrypt$
DECLARE
  member_name text;
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'parker_wallet_system_decrypt') THEN
    CREATE ROLE parker_wallet_system_decrypt NOLOGIN NOINHERIT;
  END IF;
  IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'parker_wallet_system_decrypt'
               AND (rolsuper OR rolcreatedb OR rolcreaterole OR rolcanlogin OR rolreplication OR rolbypassrls OR rolinherit)) THEN
    ALTER ROLE parker_wallet_system_decrypt NOSUPERUSER NOCREATEDB NOCREATEROLE NOLOGIN NOREPLICATION NOBYPASSRLS NOINHERIT;
  END IF;
  FOR member_name IN
    SELECT pg_catalog.pg_get_userbyid(m.member) FROM pg_catalog.pg_auth_members m
      JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) m.roleid
     WHERE r.rolname OPERATOR(pg_catalog.=) 'parker_wallet_system_decrypt'
  LOOP
    RAISE NOTICE 'role % may decrypt every traveler''s records (a member of parker_wallet_system_decrypt)', member_name;
  END LOOP;
END
$system_decrypt$;

GRANT USAGE ON SCHEMA wallet TO PUBLIC;
-- Attaching a trigger needs EXECUTE on its function, so nobody else can attach the
-- audit trigger to a table of their own and write rows in a traveler's name;
-- decryption is for the roles a DBA grants it to, not for every session.
REVOKE ALL ON ALL ROUTINES IN SCHEMA wallet FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wallet.uid(), wallet.jwt(), wallet.request_header(text), wallet.client_ip(),
  wallet.profile_completeness(uuid), wallet.flag_enabled(text, uuid), wallet.flag_bucket(uuid),
  wallet.rls_report(text[]), wallet.security_report(text[]),
  wallet.check_notification_preferences(jsonb, boolean) TO PUBLIC;

ALTER FUNCTION wallet.audit_trigger() OWNER TO parker_wallet_auditor;
-- No other setting on the audit trigger: its statement is generic and planned
-- without sequential scans by the library itself (pg/generic_plan.rs).
ALTER FUNCTION wallet.audit_trigger() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
GRANT EXECUTE ON FUNCTION wallet.audit_row_hash(bytea, uuid, uuid, bigint, text, text, uuid, text, text, text, text, bigint)
  TO parker_wallet_auditor;
GRANT EXECUTE ON FUNCTION wallet.audit_row_hash_v2(bytea, uuid, uuid, bigint, text, text, uuid, text, bigint, bytea),
  wallet.audit_personal_digest(bytea, text, text, text, text)
  TO parker_wallet_auditor;
ALTER FUNCTION wallet.completion_trigger() OWNER TO parker_wallet_scorer;
ALTER FUNCTION wallet.completion_trigger() SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
ALTER FUNCTION wallet.flag_enabled(text, uuid) OWNER TO parker_wallet_flag_reader;
ALTER FUNCTION wallet.flag_enabled(text, uuid) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION wallet.profile_completeness(uuid)
  SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
ALTER FUNCTION wallet.refresh_completion_batch(uuid, int)
  SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
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
