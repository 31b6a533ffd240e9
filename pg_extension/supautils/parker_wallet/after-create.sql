-- parker_wallet on Supabase. supautils runs this as its superuser right after
-- `postgres` runs CREATE EXTENSION parker_wallet (the extension is listed in
-- supautils.privileged_extensions). It grants what only a superuser may grant
-- there, and nothing more:
-- * the operator (`postgres`, who runs the migrations) may attach the extension's
--   triggers and RLS helpers and run its maintenance functions;
-- * the extension's NOLOGIN definer roles may read the auth.users columns they
--   need, past its row level security (Supabase's auth schema belongs to
--   supabase_auth_admin).
-- Safe to run again; run it by hand (as supabase_admin) after
-- ALTER EXTENSION parker_wallet UPDATE too, which has no such hook.
--
-- It runs as the superuser but in the caller's session, with the caller's
-- search_path: every name resolves through pg_catalog first (the caller's path
-- is put back at the end), or a function or temporary view the caller planted
-- would run as the superuser.
SELECT pg_catalog.set_config('parker_wallet_after_create.caller_search_path',
                             pg_catalog.current_setting('search_path'), true);
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

GRANT EXECUTE ON FUNCTION wallet.audit_trigger(), wallet.completion_trigger(),
  wallet.enable_audit(regclass, text[]), wallet.disable_audit(regclass),
  wallet.enable_owner_rls(regclass, text, text[]), wallet.verify_audit_chain(),
  wallet.refresh_completion_batch(uuid, int)
  TO postgres;
GRANT EXECUTE ON PROCEDURE wallet.refresh_all_completion(int) TO postgres;

DO $audit$
BEGIN
  -- The signed trail came with 0.4.0: checkpoints are verified, erasures redacted
  -- by the operator.
  IF pg_catalog.to_regprocedure('wallet.redact_audit(uuid, text)') IS NOT NULL THEN
    GRANT EXECUTE ON FUNCTION wallet.verify_audit_chain(uuid[], bigint[], bytea[]),
      wallet.audit_checkpoint_heads(bigint), wallet.redact_audit(uuid, text),
      wallet.audit_personal_digest(bytea, text, text, text, text),
      wallet.audit_row_hash_v2(bytea, uuid, uuid, bigint, text, text, uuid, text, bigint, bytea)
      TO postgres;
  END IF;
END
$audit$;

DO $auth$
BEGIN
  -- The roles came with 0.2.0: an older version installs without them.
  IF pg_catalog.to_regclass('auth.users') IS NOT NULL
     AND pg_catalog.to_regrole('parker_wallet_lookup') IS NOT NULL THEN
    GRANT USAGE ON SCHEMA auth TO parker_wallet_scorer, parker_wallet_lookup;
    GRANT SELECT (id) ON auth.users TO parker_wallet_scorer;
    GRANT SELECT (id, created_at) ON auth.users TO parker_wallet_lookup;
    -- Supabase Auth turns row level security on for its users table.
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_policy
                    WHERE polrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass('auth.users')
                      AND polname OPERATOR(pg_catalog.=) 'parker_wallet_definers_read') THEN
      CREATE POLICY parker_wallet_definers_read ON auth.users FOR SELECT
        TO parker_wallet_scorer, parker_wallet_lookup USING (true);
    END IF;
  END IF;
END
$auth$;

SELECT pg_catalog.set_config('search_path',
                             pg_catalog.current_setting('parker_wallet_after_create.caller_search_path'), true);
