-- Consent records (PSD2 mandates for merchant-initiated charges, marketing):
-- who agreed to what text, when, from where; withdrawals are recorded on the
-- row, never by deleting it.
-- * card_off_session: a saved card may be charged while the traveler is away;
--   recorded by the sidecar when the card is saved with the consent (or later).
-- * campaign_off_session: a campaign may book on its own; recorded from
--   campaigns.consent_at by a trigger, whoever writes the campaign.
-- * marketing: recorded from the preferences' topics.marketing by a trigger.
-- An off-session booking needs the campaign's and the card's (the sidecar checks).
DO $role$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'parker_wallet_consent_recorder') THEN
    CREATE ROLE parker_wallet_consent_recorder NOLOGIN NOINHERIT;
  ELSIF EXISTS (SELECT FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid OR r.oid = m.member
                 WHERE r.rolname = 'parker_wallet_consent_recorder')
        OR EXISTS (SELECT FROM pg_roles WHERE rolname = 'parker_wallet_consent_recorder'
                    AND (rolsuper OR rolcreatedb OR rolcreaterole OR rolcanlogin OR rolreplication
                         OR rolbypassrls OR rolinherit)) THEN
    RAISE EXCEPTION 'role parker_wallet_consent_recorder exists with powers, members or memberships: it was not made by this migration'
      USING HINT = 'Drop the role (or make it NOLOGIN NOINHERIT with no members), then migrate again.';
  END IF;
END
$role$;

CREATE TABLE public.consents (
  id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  -- They go with the account (Supabase's "delete user", or the erasure).
  user_id              uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
  kind                 text NOT NULL CHECK (kind IN ('card_off_session', 'campaign_off_session', 'marketing')),
  -- The card (payment_methods.id) or the campaign; none for marketing. Not a
  -- foreign key: the record outlives the card or campaign.
  subject_id           uuid,
  -- The version of the text the traveler was shown, as the app names it.
  text_version         text NOT NULL CHECK (text_version ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
  granted_at           timestamptz NOT NULL DEFAULT now(),
  ip_address           inet,
  user_agent           text CHECK (length(user_agent) <= 512),
  withdrawn_at         timestamptz,
  withdrawn_ip_address inet,
  withdrawn_user_agent text CHECK (length(withdrawn_user_agent) <= 512),
  -- Who wrote the record: `user:<id>` for the traveler's own request (their
  -- token), `role:<name>` otherwise (service_role, an operator).
  recorded_by          text NOT NULL,
  withdrawn_by         text,
  CHECK ((kind = 'marketing') = (subject_id IS NULL)),
  CHECK (withdrawn_at IS NULL OR withdrawn_at >= granted_at)
);
-- One consent in force per traveler and subject.
CREATE UNIQUE INDEX consents_in_force ON public.consents
  (user_id, kind, coalesce(subject_id, '00000000-0000-0000-0000-000000000000'::uuid)) WHERE withdrawn_at IS NULL;

-- Who is writing: the traveler (their verified claims), or a role.
CREATE FUNCTION wallet_internal.consent_writer() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT CASE WHEN wallet.jwt() ->> 'role' = 'authenticated' AND wallet.uid() IS NOT NULL
              THEN 'user:' || wallet.uid()::text
              ELSE 'role:' || coalesce(wallet.jwt() ->> 'role', session_user::text) END
$$;

-- Granted once, withdrawn once, never rewritten.
CREATE FUNCTION wallet_internal.consent_only_withdrawn() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF (NEW.id, NEW.user_id, NEW.kind, NEW.subject_id, NEW.text_version, NEW.granted_at, NEW.ip_address, NEW.user_agent,
      NEW.recorded_by)
       IS DISTINCT FROM
     (OLD.id, OLD.user_id, OLD.kind, OLD.subject_id, OLD.text_version, OLD.granted_at, OLD.ip_address, OLD.user_agent,
      OLD.recorded_by)
     OR OLD.withdrawn_at IS NOT NULL THEN
    RAISE EXCEPTION 'consent %: a consent is only ever withdrawn, once', OLD.id USING ERRCODE = '23514';
  END IF;
  NEW.withdrawn_at := now();
  NEW.withdrawn_by := wallet_internal.consent_writer();
  RETURN NEW;
END
$$;
CREATE TRIGGER consents_only_withdrawn BEFORE UPDATE ON public.consents
  FOR EACH ROW EXECUTE FUNCTION wallet_internal.consent_only_withdrawn();

-- Campaigns name the text their consent was given to.
ALTER TABLE public.campaigns ADD COLUMN consent_text_version text
  CHECK (consent_text_version ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$');
UPDATE public.campaigns SET consent_text_version = 'unrecorded-before-0014' WHERE consent_at IS NOT NULL;
ALTER TABLE public.campaigns ADD CONSTRAINT campaigns_consent_names_its_text
  CHECK (consent_at IS NULL OR consent_text_version IS NOT NULL);

-- The recorder: the request's place (as the audit trail reads it) with each
-- grant and withdrawal. Runs as its own role, whoever writes the campaign,
-- profile or card.
CREATE FUNCTION wallet_internal.record_consent() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  consent_kind text;
  traveler uuid;
  subject uuid;
  consent_version text;
  was_version text;
  was boolean;
  now_given boolean;
BEGIN
  IF TG_TABLE_NAME = 'campaigns' THEN
    consent_kind := 'campaign_off_session';
    traveler := coalesce(NEW.user_id, OLD.user_id);
    subject := coalesce(NEW.id, OLD.id);
    was := TG_OP <> 'INSERT' AND OLD.consent_at IS NOT NULL;
    now_given := TG_OP <> 'DELETE' AND NEW.consent_at IS NOT NULL;
    consent_version := CASE WHEN TG_OP <> 'DELETE' THEN NEW.consent_text_version END;
    was_version := CASE WHEN TG_OP <> 'INSERT' THEN OLD.consent_text_version END;
  ELSIF TG_TABLE_NAME = 'traveler_profiles' THEN
    consent_kind := 'marketing';
    traveler := coalesce(NEW.user_id, OLD.user_id);
    was := TG_OP <> 'INSERT' AND OLD.notification_preferences #> '{topics,marketing}' = 'true';
    now_given := TG_OP <> 'DELETE' AND NEW.notification_preferences #> '{topics,marketing}' = 'true';
    consent_version := CASE WHEN TG_OP <> 'DELETE' THEN NEW.notification_preferences ->> 'marketing_consent_version' END;
    was_version := CASE WHEN TG_OP <> 'INSERT' THEN OLD.notification_preferences ->> 'marketing_consent_version' END;
  ELSE -- payment_methods, deleted: its card consent ends with it
    consent_kind := 'card_off_session';
    traveler := OLD.user_id;
    subject := OLD.id;
    was := true;
    now_given := false;
  END IF;
  -- Agreeing to another version of the text is a new consent: the old one ends.
  IF was AND (NOT now_given OR consent_version IS DISTINCT FROM was_version) THEN
    UPDATE public.consents c
       SET withdrawn_at = now(), withdrawn_ip_address = wallet.client_ip(),
           withdrawn_user_agent = left(wallet.request_header('user-agent'), 512)
     WHERE c.user_id = traveler AND c.kind = consent_kind
       AND c.subject_id IS NOT DISTINCT FROM subject AND c.withdrawn_at IS NULL;
  END IF;
  IF now_given AND (NOT was OR consent_version IS DISTINCT FROM was_version) THEN
    INSERT INTO public.consents (user_id, kind, subject_id, text_version, ip_address, user_agent, recorded_by)
    VALUES (traveler, consent_kind, subject, consent_version, wallet.client_ip(),
            left(wallet.request_header('user-agent'), 512), wallet_internal.consent_writer());
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER campaigns_consent_record
  AFTER INSERT OR UPDATE OF consent_at, consent_text_version OR DELETE ON public.campaigns
  FOR EACH ROW EXECUTE FUNCTION wallet_internal.record_consent();
CREATE TRIGGER traveler_profiles_marketing_consent
  AFTER INSERT OR UPDATE OF notification_preferences OR DELETE ON public.traveler_profiles
  FOR EACH ROW EXECUTE FUNCTION wallet_internal.record_consent();
CREATE TRIGGER payment_methods_consent_record AFTER DELETE ON public.payment_methods
  FOR EACH ROW EXECUTE FUNCTION wallet_internal.record_consent();

-- Consents already given: campaigns', and marketing's since migration 0013.
INSERT INTO public.consents (user_id, kind, subject_id, text_version, granted_at, recorded_by)
SELECT user_id, 'campaign_off_session', id, consent_text_version, consent_at, 'role:migration-0014'
  FROM public.campaigns WHERE consent_at IS NOT NULL;
INSERT INTO public.consents (user_id, kind, subject_id, text_version, recorded_by)
SELECT user_id, 'marketing', NULL, notification_preferences ->> 'marketing_consent_version', 'role:migration-0014'
  FROM public.traveler_profiles WHERE notification_preferences #> '{topics,marketing}' = 'true';

SELECT wallet.enable_owner_rls('public.consents', 'user_id', '{authenticated,parker_wallet_sidecar}');
CREATE POLICY consents_parker_wallet_consent_recorder ON public.consents
  FOR ALL TO parker_wallet_consent_recorder USING (true) WITH CHECK (true);

REVOKE ALL ON public.consents FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON public.consents TO authenticated, service_role;
GRANT SELECT, INSERT (user_id, kind, subject_id, text_version, ip_address, user_agent, recorded_by),
      UPDATE (withdrawn_at, withdrawn_ip_address, withdrawn_user_agent)
  ON public.consents TO parker_wallet_sidecar;
GRANT INSERT (consent_text_version), UPDATE (consent_text_version) ON public.campaigns TO authenticated;
GRANT USAGE ON SCHEMA public, wallet_internal TO parker_wallet_consent_recorder;
GRANT SELECT, INSERT (user_id, kind, subject_id, text_version, ip_address, user_agent, recorded_by),
      UPDATE (withdrawn_at, withdrawn_ip_address, withdrawn_user_agent)
  ON public.consents TO parker_wallet_consent_recorder;

DO $member$
BEGIN
  EXECUTE format('GRANT parker_wallet_consent_recorder TO %I', current_user);
END
$member$;
GRANT CREATE ON SCHEMA wallet_internal TO parker_wallet_consent_recorder;
ALTER FUNCTION wallet_internal.record_consent() OWNER TO parker_wallet_consent_recorder;
REVOKE ALL ON FUNCTION wallet_internal.record_consent(), wallet_internal.consent_only_withdrawn(),
  wallet_internal.consent_writer()
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION wallet_internal.consent_writer() TO parker_wallet_consent_recorder, parker_wallet_sidecar;
REVOKE CREATE ON SCHEMA wallet_internal FROM parker_wallet_consent_recorder;
DO $member$
BEGIN
  EXECUTE format('REVOKE parker_wallet_consent_recorder FROM %I', current_user);
END
$member$;
