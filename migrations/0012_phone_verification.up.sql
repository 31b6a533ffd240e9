-- Phone verification through Twilio Verify. Every code sent is a row here:
-- the wallet's own limits (per traveler, per number, across travelers) are
-- counted from these rows under locks, so a burst of requests, or a new number
-- every few seconds, cannot send SMS without limit. Twilio keeps the code.
DO $role$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'parker_wallet_phone_gate') THEN
    CREATE ROLE parker_wallet_phone_gate NOLOGIN NOINHERIT;
  ELSIF EXISTS (SELECT FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid OR r.oid = m.member
                 WHERE r.rolname = 'parker_wallet_phone_gate')
        OR EXISTS (SELECT FROM pg_roles WHERE rolname = 'parker_wallet_phone_gate'
                    AND (rolsuper OR rolcreatedb OR rolcreaterole OR rolcanlogin OR rolreplication
                         OR rolbypassrls OR rolinherit)) THEN
    -- Whoever holds, or is, such a role sees every traveler's phone verifications.
    RAISE EXCEPTION 'role parker_wallet_phone_gate exists with powers, members or memberships: it was not made by this migration'
      USING HINT = 'Drop the role (or make it NOLOGIN NOINHERIT with no members), then migrate again.';
  END IF;
END
$role$;

CREATE TABLE public.phone_verifications (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  -- Rate-limit bookkeeping only: it goes with the account.
  user_id      uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
  phone_number text NOT NULL CONSTRAINT phone_verifications_phone_e164
                 CHECK (phone_number ~ '^\+[1-9][0-9]{1,14}$'),
  -- sending: claimed, Twilio not yet answered (a crash leaves it: it still counts);
  -- pending: a code is out; approved; failed: Twilio refused the send, or the
  -- checks ran out; expired; superseded: a newer verification or another number.
  state        text NOT NULL DEFAULT 'sending'
                 CHECK (state IN ('sending', 'pending', 'approved', 'failed', 'expired', 'superseded')),
  twilio_sid   text CHECK (twilio_sid ~ '^VE[0-9a-fA-F]{32}$'),
  checks       smallint NOT NULL DEFAULT 0 CHECK (checks >= 0),
  started_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz NOT NULL,
  finished_at  timestamptz
);
-- States only move forward, from sending or pending; attempts only grow; the
-- Twilio id is set once. Whatever the sidecar's grants would allow.
CREATE FUNCTION wallet_internal.phone_verification_moves_forward() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF (NEW.id, NEW.user_id, NEW.phone_number, NEW.started_at, NEW.expires_at)
       IS DISTINCT FROM (OLD.id, OLD.user_id, OLD.phone_number, OLD.started_at, OLD.expires_at)
     OR (NEW.state IS DISTINCT FROM OLD.state
         AND NOT (OLD.state = 'sending' OR (OLD.state = 'pending' AND NEW.state <> 'sending')))
     OR NEW.checks < OLD.checks
     OR (OLD.twilio_sid IS NOT NULL AND NEW.twilio_sid IS DISTINCT FROM OLD.twilio_sid) THEN
    RAISE EXCEPTION 'phone verification %: % cannot become %', OLD.id, OLD.state, NEW.state
      USING ERRCODE = '23514';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER phone_verifications_forward BEFORE UPDATE ON public.phone_verifications
  FOR EACH ROW EXECUTE FUNCTION wallet_internal.phone_verification_moves_forward();
REVOKE ALL ON FUNCTION wallet_internal.phone_verification_moves_forward() FROM PUBLIC, anon, authenticated, service_role;

CREATE INDEX phone_verifications_by_number ON public.phone_verifications (phone_number, started_at);
CREATE INDEX phone_verifications_by_traveler ON public.phone_verifications (user_id, started_at);

-- The sidecar sees and finishes its traveler's verifications; only the gate
-- below starts one, and it alone sees every traveler's (for the per-number limit).
SELECT wallet.enable_owner_rls('public.phone_verifications', 'user_id', '{parker_wallet_sidecar}');
CREATE POLICY phone_verifications_parker_wallet_phone_gate ON public.phone_verifications
  FOR ALL TO parker_wallet_phone_gate USING (true) WITH CHECK (true);

REVOKE ALL ON public.phone_verifications FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON public.phone_verifications TO service_role;
GRANT SELECT, UPDATE (state, twilio_sid, checks, finished_at) ON public.phone_verifications
  TO parker_wallet_sidecar;
GRANT USAGE ON SCHEMA public TO parker_wallet_phone_gate;
GRANT SELECT, INSERT ON public.phone_verifications TO parker_wallet_phone_gate;

-- Claims a send for the request's traveler to `to_number`, or says why
-- not: resend_too_soon (within min_gap of their last), traveler_limit or
-- number_limit (per_traveler / per_number sends within send_window), with the
-- seconds until a send would be allowed. Serialised per traveler, then per
-- number (always in that order: no deadlock), so concurrent claims count each other.
CREATE FUNCTION wallet_internal.claim_phone_verification(
  to_number text, code_ttl interval, send_window interval, per_traveler integer, per_number integer,
  min_gap interval
) RETURNS TABLE (verification_id uuid, refused text, retry_after_secs integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  traveler uuid := wallet.uid();
  last_sent timestamptz;
  sends integer;
  oldest timestamptz;
BEGIN
  IF traveler IS NULL THEN
    RAISE EXCEPTION 'no traveler in the request''s claims' USING ERRCODE = '42501';
  END IF;
  -- The limits are the caller's settings, within bounds: a caller cannot make
  -- the per-number count a window onto other travelers' sending history.
  IF NOT (code_ttl BETWEEN interval '1 second' AND interval '1 hour'
          AND send_window BETWEEN interval '1 minute' AND interval '1 day'
          AND per_traveler BETWEEN 1 AND 100 AND per_number BETWEEN 1 AND 100
          AND min_gap BETWEEN interval '0' AND send_window) THEN
    RAISE EXCEPTION 'phone verification limits out of bounds' USING ERRCODE = '22023';
  END IF;
  PERFORM pg_advisory_xact_lock(hashtextextended('parker_wallet.phone-traveler:' || traveler::text, 0));
  PERFORM pg_advisory_xact_lock(hashtextextended('parker_wallet.phone-number:' || to_number, 0));
  -- clock_timestamp(): the lock may have been waited for.
  SELECT max(v.started_at) INTO last_sent FROM public.phone_verifications v WHERE v.user_id = traveler;
  IF last_sent > clock_timestamp() - min_gap THEN
    RETURN QUERY SELECT NULL::uuid, 'resend_too_soon',
      greatest(1, ceil(extract(epoch FROM last_sent + min_gap - clock_timestamp())))::integer;
    RETURN;
  END IF;
  SELECT count(*), min(v.started_at) INTO sends, oldest
    FROM public.phone_verifications v WHERE v.user_id = traveler AND v.started_at > clock_timestamp() - send_window;
  IF sends >= per_traveler THEN
    RETURN QUERY SELECT NULL::uuid, 'traveler_limit',
      greatest(1, ceil(extract(epoch FROM oldest + send_window - clock_timestamp())))::integer;
    RETURN;
  END IF;
  SELECT count(*), min(v.started_at) INTO sends, oldest
    FROM public.phone_verifications v
   WHERE v.phone_number = to_number AND v.started_at > clock_timestamp() - send_window;
  IF sends >= per_number THEN
    -- Rounded up to the minute: other travelers' send times are theirs.
    RETURN QUERY SELECT NULL::uuid, 'number_limit',
      (60 * ceil(extract(epoch FROM oldest + send_window - clock_timestamp()) / 60))::integer;
    RETURN;
  END IF;
  RETURN QUERY
    INSERT INTO public.phone_verifications AS v (user_id, phone_number, started_at, expires_at)
    VALUES (traveler, to_number, clock_timestamp(), clock_timestamp() + code_ttl)
    RETURNING v.id, NULL::text, NULL::integer;
END
$$;

DO $member$
BEGIN
  EXECUTE format('GRANT parker_wallet_phone_gate TO %I', current_user);
END
$member$;
GRANT USAGE, CREATE ON SCHEMA wallet_internal TO parker_wallet_phone_gate;
ALTER FUNCTION wallet_internal.claim_phone_verification(text, interval, interval, integer, integer, interval)
  OWNER TO parker_wallet_phone_gate;
REVOKE ALL ON FUNCTION wallet_internal.claim_phone_verification(text, interval, interval, integer, integer, interval)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION
  wallet_internal.claim_phone_verification(text, interval, interval, integer, integer, interval)
  TO parker_wallet_sidecar;
REVOKE CREATE ON SCHEMA wallet_internal FROM parker_wallet_phone_gate;
DO $member$
BEGIN
  EXECUTE format('REVOKE parker_wallet_phone_gate FROM %I', current_user);
END
$member$;
