-- The extension's machinery switched on for the wallet's tables: the audit trail
-- (append-only), profile completion tracking, and feature flags.

-- Audit rows are never rewritten: only the table's owner (a DBA, for instance
-- redacting an erased traveler) may update, delete or truncate them.
CREATE FUNCTION wallet_internal.refuse_audit_rewrite() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  IF NOT pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'MEMBER') THEN
    RAISE EXCEPTION 'traveler_data_audit is append-only: % refused', TG_OP
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF TG_LEVEL = 'STATEMENT' THEN
    RETURN NULL;
  END IF;
  RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$$;
CREATE TRIGGER traveler_data_audit_append_only BEFORE UPDATE OR DELETE ON public.traveler_data_audit
  FOR EACH ROW EXECUTE FUNCTION wallet_internal.refuse_audit_rewrite();
CREATE TRIGGER traveler_data_audit_no_truncate BEFORE TRUNCATE ON public.traveler_data_audit
  FOR EACH STATEMENT EXECUTE FUNCTION wallet_internal.refuse_audit_rewrite();
REVOKE UPDATE, DELETE, TRUNCATE ON public.traveler_data_audit FROM service_role;

-- Every table that records what a traveler did. profile_completion_tracking is
-- derived (recomputed from these) and is not audited; card ciphertext is
-- redacted by the extension wherever it appears.
SELECT wallet.enable_audit('public.traveler_profiles');
SELECT wallet.enable_audit('public.wallet_customers');
SELECT wallet.enable_audit('public.payment_methods');
SELECT wallet.enable_audit('public.campaigns');

CREATE TRIGGER traveler_profiles_completion AFTER INSERT OR UPDATE OR DELETE ON public.traveler_profiles
  FOR EACH ROW EXECUTE FUNCTION wallet.completion_trigger();
CREATE TRIGGER payment_methods_completion AFTER INSERT OR UPDATE OR DELETE ON public.payment_methods
  FOR EACH ROW EXECUTE FUNCTION wallet.completion_trigger();

-- Feature flags: read through wallet.flag_enabled(name, user_id) only; the allow
-- lists name travelers, so no API role reads the table directly.
CREATE TABLE public.feature_flags (
  name            text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
  description     text,
  enabled         boolean NOT NULL DEFAULT false,
  rollout_percent int NOT NULL DEFAULT 0 CHECK (rollout_percent BETWEEN 0 AND 100),
  allow_list      uuid[] NOT NULL DEFAULT '{}',
  updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER feature_flags_touch BEFORE UPDATE ON public.feature_flags
  FOR EACH ROW EXECUTE FUNCTION wallet_internal.touch_updated_at();
ALTER TABLE public.feature_flags ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.feature_flags FORCE ROW LEVEL SECURITY;
CREATE POLICY feature_flags_no_direct_access ON public.feature_flags FOR ALL TO public
  USING (false) WITH CHECK (false);
REVOKE ALL ON public.feature_flags FROM PUBLIC, anon, authenticated;
GRANT ALL ON public.feature_flags TO service_role;
