-- A traveler's erasure (GDPR art. 17), one resumable state machine per
-- traveler (kms_sidecar::privacy::erase): requested (by the traveler's
-- DELETE /v1/privacy/account, or an operator), then the Stripe customer
-- deleted, the wallet's personal data deleted (bookings kept for the legal
-- retention, their passengers removed), the audit trail redacted with a signed
-- redaction row, and, once the auth user is gone too: completed. The row stays
-- as the proof.
DO $role$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'parker_wallet_erasure_guard') THEN
    CREATE ROLE parker_wallet_erasure_guard NOLOGIN NOINHERIT;
  ELSIF EXISTS (SELECT FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid OR r.oid = m.member
                 WHERE r.rolname = 'parker_wallet_erasure_guard')
        OR EXISTS (SELECT FROM pg_roles WHERE rolname = 'parker_wallet_erasure_guard'
                    AND (rolsuper OR rolcreatedb OR rolcreaterole OR rolcanlogin OR rolreplication
                         OR rolbypassrls OR rolinherit)) THEN
    RAISE EXCEPTION 'role parker_wallet_erasure_guard exists with powers, members or memberships: it was not made by this migration'
      USING HINT = 'Drop the role (or make it NOLOGIN NOINHERIT with no members), then migrate again.';
  END IF;
END
$role$;

CREATE TABLE public.erasures (
  -- No foreign key: the record outlives the account it erased.
  user_id            uuid PRIMARY KEY,
  state              text NOT NULL DEFAULT 'requested'
                       CHECK (state IN ('requested', 'stripe_deleted', 'data_deleted', 'audit_redacted', 'completed')),
  -- Remembered from the request until the erasure completes: the customer
  -- to delete, and every Stripe id (customer, cards, payments) whose events
  -- are emptied (the rows naming them may be gone by then).
  stripe_customer_id text,
  stripe_ids         text[] NOT NULL DEFAULT '{}',
  requested_by       text NOT NULL,
  requested_at       timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  completed_at       timestamptz
);

-- Bookings are kept for the legal retention (accounting, chargebacks), so they
-- outlive the account and its campaigns: their ids stay, as opaque references.
-- (A campaign deleted under a booking not yet authorized withdraws its consent:
-- the saga declines it.)
ALTER TABLE public.booking_charges DROP CONSTRAINT booking_charges_user_id_fkey;
ALTER TABLE public.booking_charges DROP CONSTRAINT booking_charges_campaign_id_fkey;

-- The traveler asks (through the sidecar) and sees where it stands; the
-- operator's `kms-sidecar erase` does the rest.
SELECT wallet.enable_owner_rls('public.erasures', 'user_id', '{authenticated,parker_wallet_sidecar}');
REVOKE ALL ON public.erasures FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON public.erasures TO authenticated, service_role;
GRANT SELECT, INSERT (user_id, stripe_customer_id, stripe_ids, requested_by) ON public.erasures TO parker_wallet_sidecar;

-- What is kept of a Stripe event from now on (kms_sidecar's wallet::events):
-- its ids, type and time, and the ids its object names; the objects' details
-- (names, emails, addresses) were never read back. Earlier records likewise.
UPDATE public.stripe_events SET payload = jsonb_strip_nulls(jsonb_build_object(
  'id', payload -> 'id', 'type', payload -> 'type', 'created', payload -> 'created',
  'livemode', payload -> 'livemode', 'api_version', payload -> 'api_version',
  'data', jsonb_build_object('object', jsonb_strip_nulls(jsonb_build_object(
    'id', payload #> '{data,object,id}', 'object', payload #> '{data,object,object}',
    'customer', payload #> '{data,object,customer}', 'payment_method', payload #> '{data,object,payment_method}',
    'status', payload #> '{data,object,status}')))));

-- Once asked for, nothing new is recorded about the traveler, whoever writes
-- (the sidecar, the app through PostgREST, service_role): a profile, card,
-- campaign or booking made meanwhile would outlive the erasure. SQLSTATE
-- PWE01 (the sidecar answers 409 account_being_erased).
CREATE FUNCTION wallet_internal.refuse_erased_traveler() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- Shared with other writers; the request takes it alone (lock_traveler's
  -- key), so it waits for writes in flight and they wait for it.
  PERFORM pg_advisory_xact_lock_shared(hashtextextended('parker_wallet.erasure:' || NEW.user_id::text, 0));
  -- Idempotent answers (TG_ARGV[0] = 'once_data_deleted') are refused only
  -- once step 3 deleted them: until then the request's own answer replays.
  IF EXISTS (SELECT FROM public.erasures
              WHERE user_id = NEW.user_id
                AND (TG_NARGS = 0 OR state NOT IN ('requested', 'stripe_deleted'))) THEN
    RAISE EXCEPTION 'the account is being erased: nothing new is recorded for it'
      USING ERRCODE = 'PWE01', TABLE = TG_TABLE_NAME;
  END IF;
  RETURN NEW;
END
$$;
DO $guard$
DECLARE
  guarded text;
BEGIN
  FOREACH guarded IN ARRAY ARRAY['traveler_profiles', 'wallet_customers', 'payment_methods', 'campaigns',
                                 'booking_charges', 'consents', 'phone_verifications'] LOOP
    EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OF user_id ON public.%I
                      FOR EACH ROW EXECUTE FUNCTION wallet_internal.refuse_erased_traveler()',
                   guarded || '_refuse_erased', guarded);
  END LOOP;
  CREATE TRIGGER idempotency_keys_refuse_erased BEFORE INSERT OR UPDATE OF user_id ON public.idempotency_keys
    FOR EACH ROW EXECUTE FUNCTION wallet_internal.refuse_erased_traveler('once_data_deleted');
END
$guard$;
REVOKE ALL ON FUNCTION wallet_internal.refuse_erased_traveler() FROM PUBLIC, anon, authenticated, service_role;
CREATE POLICY erasures_parker_wallet_erasure_guard ON public.erasures
  FOR SELECT TO parker_wallet_erasure_guard USING (true);
GRANT USAGE ON SCHEMA public TO parker_wallet_erasure_guard;
GRANT SELECT (user_id, state) ON public.erasures TO parker_wallet_erasure_guard;
DO $member$
BEGIN
  EXECUTE format('GRANT parker_wallet_erasure_guard TO %I', current_user);
END
$member$;
GRANT CREATE ON SCHEMA wallet_internal TO parker_wallet_erasure_guard;
ALTER FUNCTION wallet_internal.refuse_erased_traveler() OWNER TO parker_wallet_erasure_guard;
REVOKE CREATE ON SCHEMA wallet_internal FROM parker_wallet_erasure_guard;
DO $member$
BEGIN
  EXECUTE format('REVOKE parker_wallet_erasure_guard FROM %I', current_user);
END
$member$;
