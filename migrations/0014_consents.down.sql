-- Consents are evidence: the table goes only when it holds none.
DO $evidence$
BEGIN
  IF EXISTS (SELECT FROM public.consents) THEN
    RAISE EXCEPTION 'public.consents holds consent records: export them before going below migration 0014'
      USING HINT = 'Copy the table elsewhere (COPY public.consents TO ...), delete its rows as the owner, then migrate down.';
  END IF;
END
$evidence$;
-- Dropping the recorder's function takes membership in its role.
DO $member$
BEGIN
  EXECUTE format('GRANT parker_wallet_consent_recorder TO %I', current_user);
END
$member$;
DROP TRIGGER campaigns_consent_record ON public.campaigns;
DROP TRIGGER traveler_profiles_marketing_consent ON public.traveler_profiles;
DROP TRIGGER payment_methods_consent_record ON public.payment_methods;
DROP FUNCTION wallet_internal.record_consent();
DO $member$
BEGIN
  EXECUTE format('REVOKE parker_wallet_consent_recorder FROM %I', current_user);
END
$member$;
ALTER TABLE public.campaigns DROP CONSTRAINT campaigns_consent_names_its_text;
ALTER TABLE public.campaigns DROP COLUMN consent_text_version;
DROP TABLE public.consents;
DROP FUNCTION wallet_internal.consent_only_withdrawn();
DROP FUNCTION wallet_internal.consent_writer();
REVOKE USAGE ON SCHEMA public, wallet_internal FROM parker_wallet_consent_recorder;
-- The role stays: roles are cluster-wide and other databases may use it.
