-- parker_wallet 0.1.0 -> 0.2.0: no code of the extension runs as a superuser.
--
-- * The SECURITY DEFINER functions (audit trigger, completion trigger, flag
--   lookup) now belong to NOLOGIN roles of their own, created here, which the
--   migrations (0008) grant exactly the tables they write.
-- * Every routine's privileges are stated: PUBLIC may call only the request-context,
--   scoring, flag and report functions; audit_row_hash and sidecar_health are no
--   longer PUBLIC.
-- * It refuses a schema `wallet` that is not a superuser's, and definer roles that
--   someone else made (with members).
-- * The report functions pin search_path to pg_catalog, pg_temp; the new
--   wallet.security_report(schemas) lints a schema's security.
-- Its first and last parts are the 0.2.0 install script's own, in the same order,
-- so that an updated database and a fresh 0.2.0 install have the same catalog (tested).
\echo Use "ALTER EXTENSION parker_wallet UPDATE TO '0.2.0'" to load this file. \quit

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

ALTER FUNCTION wallet.verify_audit_chain() SET search_path TO pg_catalog, pg_temp;
ALTER FUNCTION wallet.rls_report(text[]) SET search_path TO pg_catalog, pg_temp;

CREATE  FUNCTION "security_report"(
	"schemas" TEXT[] DEFAULT ARRAY['public', 'wallet', 'wallet_internal'] /* Vec < Option < String > > */
) RETURNS TABLE (
	"code" TEXT,  /* String */
	"level" TEXT,  /* String */
	"object_type" TEXT,  /* String */
	"object_name" TEXT,  /* String */
	"detail" TEXT  /* String */
)
STRICT STABLE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'security_report_wrapper';

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
    EXECUTE pg_catalog.format(
      'ALTER ROLE %I NOSUPERUSER NOCREATEDB NOCREATEROLE NOLOGIN NOREPLICATION NOBYPASSRLS NOINHERIT', role_name);
  END LOOP;
END
$roles$;

GRANT USAGE ON SCHEMA wallet TO PUBLIC;
-- Attaching a trigger needs EXECUTE on its function, so nobody else can attach the
-- audit trigger to a table of their own and write rows in a traveler's name;
-- decryption is for the roles a DBA grants it to, not for every session.
REVOKE ALL ON ALL ROUTINES IN SCHEMA wallet FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wallet.uid(), wallet.jwt(), wallet.request_header(text), wallet.client_ip(),
  wallet.profile_completeness(uuid), wallet.flag_enabled(text, uuid), wallet.flag_bucket(uuid),
  wallet.rls_report(text[]), wallet.security_report(text[]) TO PUBLIC;

ALTER FUNCTION wallet.audit_trigger() OWNER TO parker_wallet_auditor;
ALTER FUNCTION wallet.audit_trigger() SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
GRANT EXECUTE ON FUNCTION wallet.audit_row_hash(bytea, uuid, uuid, bigint, text, text, uuid, text, text, text, text, bigint)
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
