-- No path to superuser. Every SECURITY DEFINER function pins its search path to
-- pg_catalog, pg_temp and belongs to a NOLOGIN role that holds only what it
-- needs (the roles come with parker_wallet 0.2.0; docs/roles.md has the map);
-- every table, sequence and routine states its privileges for each API role,
-- whatever the database's default privileges granted (Supabase grants ALL in
-- schema public); no API role holds TRIGGER, TRUNCATE or REFERENCES.

DO $check$
BEGIN
  IF (SELECT string_to_array(extversion, '.')::int[] FROM pg_extension WHERE extname = 'parker_wallet')
     < ARRAY[0, 2, 0] THEN
    RAISE EXCEPTION 'parker_wallet 0.2.0 or later is needed (it creates the roles this migration grants to)'
      USING HINT = 'ALTER EXTENSION parker_wallet UPDATE; (as a superuser, or as postgres through supautils)';
  END IF;
END
$check$;

-- The definer functions of earlier migrations: pinned path, and handed to their
-- roles. Handing a function to a role takes membership in it and the role's
-- CREATE on the schema, which the migration holds only for the moment.
-- (By name: supautils v2.5 crashes the backend on GRANT ... TO CURRENT_USER.)
DO $member$
BEGIN
  EXECUTE format('GRANT parker_wallet_lookup, parker_wallet_event_recorder TO %I', current_user);
END
$member$;
GRANT CREATE ON SCHEMA wallet_internal TO parker_wallet_lookup, parker_wallet_event_recorder;
ALTER FUNCTION wallet_internal.record_stripe_event(text, text, jsonb)
  OWNER TO parker_wallet_event_recorder;
ALTER FUNCTION wallet_internal.record_stripe_event(text, text, jsonb)
  SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION wallet_internal.traveler_of_stripe_object(text, text) OWNER TO parker_wallet_lookup;
ALTER FUNCTION wallet_internal.traveler_of_stripe_object(text, text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION wallet_internal.bookings_to_reconcile(interval) OWNER TO parker_wallet_lookup;
ALTER FUNCTION wallet_internal.bookings_to_reconcile(interval) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION wallet_internal.campaign_owner(uuid) OWNER TO parker_wallet_lookup;
ALTER FUNCTION wallet_internal.campaign_owner(uuid) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION wallet_internal.account_age_days(date) OWNER TO parker_wallet_lookup;
ALTER FUNCTION wallet_internal.account_age_days(date) SET search_path = pg_catalog, pg_temp;

-- Whether the current traveler (from the request's claims) still has an
-- account: a valid token can outlive its user, and nothing may be created at
-- Stripe for a user the database would then refuse.
CREATE FUNCTION wallet_internal.traveler_exists() RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN EXISTS (SELECT FROM auth.users u WHERE u.id = wallet.uid());
END
$$;
ALTER FUNCTION wallet_internal.traveler_exists() OWNER TO parker_wallet_lookup;

-- Invoker functions too: a caller's temporary objects never shadow their names.
ALTER FUNCTION wallet_internal.touch_updated_at() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION wallet_internal.reset_phone_verification() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION wallet_internal.stamp_consent() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION wallet_internal.refuse_audit_rewrite() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION wallet_internal.purge_expired_idempotency_keys() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION wallet_internal.record_booking_event() SET search_path = pg_catalog, pg_temp;

-- Routines: nobody but the sidecar calls these (triggers need no EXECUTE to fire).
REVOKE ALL ON ALL ROUTINES IN SCHEMA wallet_internal FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION wallet_internal.record_stripe_event(text, text, jsonb),
  wallet_internal.traveler_of_stripe_object(text, text), wallet_internal.bookings_to_reconcile(interval),
  wallet_internal.campaign_owner(uuid), wallet_internal.account_age_days(date),
  wallet_internal.traveler_exists()
  TO parker_wallet_sidecar;
-- (Granting on them still took their owners' membership.)
REVOKE CREATE ON SCHEMA wallet_internal FROM parker_wallet_lookup, parker_wallet_event_recorder;
DO $member$
BEGIN
  EXECUTE format('REVOKE parker_wallet_lookup, parker_wallet_event_recorder FROM %I', current_user);
END
$member$;

-- What each definer role reads and writes. Policies let these roles past RLS
-- on their tables; the grants say which operations (and columns).
GRANT USAGE ON SCHEMA public TO parker_wallet_auditor, parker_wallet_scorer, parker_wallet_flag_reader,
  parker_wallet_lookup, parker_wallet_event_recorder;
GRANT USAGE ON SCHEMA wallet_internal TO parker_wallet_lookup, parker_wallet_event_recorder;
GRANT SELECT, INSERT ON public.traveler_data_audit TO parker_wallet_auditor;
GRANT SELECT (user_id, first_name, last_name, date_of_birth, phone_number, phone_verified, notification_preferences)
  ON public.traveler_profiles TO parker_wallet_scorer;
GRANT SELECT (user_id, exp_month, exp_year) ON public.payment_methods TO parker_wallet_scorer;
GRANT SELECT, INSERT, UPDATE ON public.profile_completion_tracking TO parker_wallet_scorer;
GRANT USAGE ON SEQUENCE public.profile_completion_tracking_id_seq TO parker_wallet_scorer;
GRANT SELECT (name, enabled, rollout_percent, allow_list) ON public.feature_flags TO parker_wallet_flag_reader;
-- (ON CONFLICT (id) reads the id; RETURNING needs a policy that lets rows be seen.)
GRANT INSERT, SELECT (id) ON public.stripe_events TO parker_wallet_event_recorder;
GRANT SELECT (user_id, stripe_customer_id) ON public.wallet_customers TO parker_wallet_lookup;
GRANT SELECT (user_id, stripe_payment_method_id) ON public.payment_methods TO parker_wallet_lookup;
GRANT SELECT (id, user_id) ON public.campaigns TO parker_wallet_lookup;
GRANT SELECT (id, user_id, state, updated_at) ON public.booking_charges TO parker_wallet_lookup;

CREATE POLICY traveler_data_audit_parker_wallet_auditor ON public.traveler_data_audit
  FOR ALL TO parker_wallet_auditor USING (true) WITH CHECK (true);
CREATE POLICY traveler_profiles_parker_wallet_scorer ON public.traveler_profiles
  FOR SELECT TO parker_wallet_scorer USING (true);
CREATE POLICY payment_methods_parker_wallet_scorer ON public.payment_methods
  FOR SELECT TO parker_wallet_scorer USING (true);
CREATE POLICY profile_completion_tracking_parker_wallet_scorer ON public.profile_completion_tracking
  FOR ALL TO parker_wallet_scorer USING (true) WITH CHECK (true);
CREATE POLICY feature_flags_parker_wallet_flag_reader ON public.feature_flags
  FOR SELECT TO parker_wallet_flag_reader USING (true);
CREATE POLICY stripe_events_parker_wallet_event_recorder ON public.stripe_events
  FOR ALL TO parker_wallet_event_recorder USING (true) WITH CHECK (true);
CREATE POLICY wallet_customers_parker_wallet_lookup ON public.wallet_customers
  FOR SELECT TO parker_wallet_lookup USING (true);
CREATE POLICY payment_methods_parker_wallet_lookup ON public.payment_methods
  FOR SELECT TO parker_wallet_lookup USING (true);
CREATE POLICY campaigns_parker_wallet_lookup ON public.campaigns
  FOR SELECT TO parker_wallet_lookup USING (true);
CREATE POLICY booking_charges_parker_wallet_lookup ON public.booking_charges
  FOR SELECT TO parker_wallet_lookup USING (true);

-- Supabase Auth's users: the completion trigger skips travelers being deleted,
-- the Radar facts read an account's age. Granted here where the migration may
-- (plain PostgreSQL: the shim is ours); on Supabase only a superuser may, which
-- parker_wallet's supautils after-create script does.
DO $auth$
BEGIN
  IF has_table_privilege('auth.users', 'SELECT WITH GRANT OPTION')
     AND has_schema_privilege('auth', 'USAGE WITH GRANT OPTION') THEN
    GRANT USAGE ON SCHEMA auth TO parker_wallet_scorer, parker_wallet_lookup;
    GRANT SELECT (id) ON auth.users TO parker_wallet_scorer;
    GRANT SELECT (id, created_at) ON auth.users TO parker_wallet_lookup;
  END IF;
  IF NOT (has_schema_privilege('parker_wallet_scorer', 'auth', 'USAGE')
          AND has_column_privilege('parker_wallet_scorer', 'auth.users', 'id', 'SELECT')
          AND has_schema_privilege('parker_wallet_lookup', 'auth', 'USAGE')
          AND has_column_privilege('parker_wallet_lookup', 'auth.users', 'created_at', 'SELECT')) THEN
    RAISE EXCEPTION 'parker_wallet_scorer and parker_wallet_lookup cannot read auth.users'
      USING HINT = 'Run pg_extension/supautils/parker_wallet/after-create.sql as a superuser '
                   '(supautils runs it when postgres creates the extension).';
  END IF;
END
$auth$;

-- Tables and sequences: every API role's privileges stated in full. REVOKE ALL
-- clears what default privileges gave; column grants below are re-stated.
REVOKE ALL ON public.traveler_profiles, public.wallet_customers, public.payment_methods,
  public.profile_completion_tracking, public.traveler_data_audit, public.campaigns, public.feature_flags,
  public.idempotency_keys, public.stripe_events, public.booking_charges, public.booking_charge_events,
  public.notification_outbox
  FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON SEQUENCE public.profile_completion_tracking_id_seq, public.booking_charge_events_id_seq
  FROM PUBLIC, anon, authenticated, service_role;

-- anon: nothing. authenticated (a traveler, under RLS): reads their rows, edits
-- their profile and campaigns.
GRANT SELECT ON public.traveler_profiles, public.wallet_customers, public.payment_methods,
  public.profile_completion_tracking, public.traveler_data_audit, public.campaigns,
  public.booking_charge_events
  TO authenticated;
GRANT INSERT (user_id, first_name, last_name, date_of_birth, phone_number, notification_preferences),
      UPDATE (first_name, last_name, date_of_birth, phone_number, notification_preferences),
      DELETE
  ON public.traveler_profiles TO authenticated;
GRANT INSERT (user_id, name, consent_at), UPDATE (name, consent_at), DELETE ON public.campaigns TO authenticated;
GRANT SELECT (id, user_id, campaign_id, offer_id, route, amount, currency, state, reconcile_from, card_attempt,
              payment_method_id, card_brand, card_last4, stripe_payment_intent_id, duffel_order_id,
              duffel_booking_reference, failure_code, failure_reason, authorized_at, created_at, updated_at)
  ON public.booking_charges TO authenticated;

-- service_role (server code holding the service key; bypasses RLS): reads what
-- the wallet holds, edits what has neither Stripe nor the audit trail behind it.
-- Cards, customers, bookings and webhook events are written by the sidecar only.
GRANT SELECT ON public.traveler_profiles, public.wallet_customers, public.payment_methods,
  public.profile_completion_tracking, public.traveler_data_audit, public.campaigns, public.feature_flags,
  public.stripe_events, public.booking_charges, public.booking_charge_events, public.notification_outbox
  TO service_role;
GRANT INSERT, UPDATE, DELETE ON public.traveler_profiles, public.campaigns, public.feature_flags TO service_role;
GRANT UPDATE (attempts, delivered_at) ON public.notification_outbox TO service_role;

-- Temporary objects are what a search-path attack is made of: only roles granted
-- TEMPORARY explicitly (and the database owner) may create them. Needs the
-- database owner; security_report names it when it could not be done.
DO $temp$
BEGIN
  IF pg_has_role((SELECT datdba FROM pg_database WHERE datname = current_database()), 'MEMBER') THEN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
  ELSE
    RAISE NOTICE 'TEMPORARY on this database stays granted to PUBLIC: only its owner may revoke it';
  END IF;
END
$temp$;
