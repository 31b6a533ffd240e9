-- parker_wallet on Supabase. supautils runs this as its superuser right after the
-- non-superuser `postgres` runs CREATE EXTENSION parker_wallet (the extension is
-- listed in supautils.privileged_extensions). It grants what only a superuser
-- may grant there, and nothing more:
-- * the operator (`postgres`, who runs the migrations) may attach the extension's
--   triggers and RLS helpers and run its maintenance functions;
-- * the extension's NOLOGIN definer roles may read the auth.users columns they
--   need (Supabase's auth schema belongs to supabase_auth_admin).
-- Safe to run again; run it by hand (as supabase_admin) after
-- ALTER EXTENSION parker_wallet UPDATE too, which has no such hook.
GRANT EXECUTE ON FUNCTION wallet.audit_trigger(), wallet.completion_trigger(),
  wallet.enable_audit(regclass, text[]), wallet.disable_audit(regclass),
  wallet.enable_owner_rls(regclass, text, text[]), wallet.verify_audit_chain(),
  wallet.refresh_completion_batch(uuid, int)
  TO postgres;
GRANT EXECUTE ON PROCEDURE wallet.refresh_all_completion(int) TO postgres;

DO $auth$
BEGIN
  IF to_regclass('auth.users') IS NOT NULL THEN
    GRANT USAGE ON SCHEMA auth TO parker_wallet_scorer, parker_wallet_lookup;
    GRANT SELECT (id) ON auth.users TO parker_wallet_scorer;
    GRANT SELECT (id, created_at) ON auth.users TO parker_wallet_lookup;
  END IF;
END
$auth$;
