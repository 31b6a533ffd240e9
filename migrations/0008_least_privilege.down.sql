-- Back to the privileges and owners of migrations 0002-0007. Kept on purpose,
-- since they cost nothing and undo nothing an earlier migration needs: search
-- paths ending in pg_temp, and TEMPORARY revoked from PUBLIC. Not given back:
-- the default-privilege grants (Supabase's) that 0008 revoked.

REVOKE ALL ON public.traveler_profiles, public.wallet_customers, public.payment_methods,
  public.profile_completion_tracking, public.traveler_data_audit, public.campaigns, public.feature_flags,
  public.idempotency_keys, public.stripe_events, public.booking_charges, public.booking_charge_events,
  public.notification_outbox
  FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON SEQUENCE public.profile_completion_tracking_id_seq, public.booking_charge_events_id_seq
  FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON public.traveler_profiles, public.wallet_customers, public.payment_methods,
  public.profile_completion_tracking, public.traveler_data_audit, public.campaigns
  TO authenticated;
GRANT SELECT ON public.booking_charge_events TO authenticated;
GRANT ALL ON public.traveler_profiles, public.wallet_customers, public.payment_methods,
  public.profile_completion_tracking, public.traveler_data_audit, public.campaigns, public.feature_flags
  TO service_role;
REVOKE UPDATE, DELETE, TRUNCATE ON public.traveler_data_audit FROM service_role;
GRANT USAGE ON SEQUENCE public.profile_completion_tracking_id_seq TO service_role;
GRANT SELECT ON public.stripe_events, public.booking_charges, public.booking_charge_events,
  public.notification_outbox TO service_role;
GRANT UPDATE (attempts, delivered_at) ON public.notification_outbox TO service_role;

DO $auth$
BEGIN
  IF has_table_privilege('auth.users', 'SELECT WITH GRANT OPTION')
     AND has_schema_privilege('auth', 'USAGE WITH GRANT OPTION') THEN
    REVOKE SELECT (id) ON auth.users FROM parker_wallet_scorer;
    REVOKE SELECT (id, created_at) ON auth.users FROM parker_wallet_lookup;
    REVOKE USAGE ON SCHEMA auth FROM parker_wallet_scorer, parker_wallet_lookup;
  END IF;
END
$auth$;

DROP POLICY booking_charges_parker_wallet_lookup ON public.booking_charges;
DROP POLICY campaigns_parker_wallet_lookup ON public.campaigns;
DROP POLICY payment_methods_parker_wallet_lookup ON public.payment_methods;
DROP POLICY wallet_customers_parker_wallet_lookup ON public.wallet_customers;
DROP POLICY stripe_events_parker_wallet_event_recorder ON public.stripe_events;
DROP POLICY feature_flags_parker_wallet_flag_reader ON public.feature_flags;
DROP POLICY profile_completion_tracking_parker_wallet_scorer ON public.profile_completion_tracking;
DROP POLICY payment_methods_parker_wallet_scorer ON public.payment_methods;
DROP POLICY traveler_profiles_parker_wallet_scorer ON public.traveler_profiles;
DROP POLICY traveler_data_audit_parker_wallet_auditor ON public.traveler_data_audit;

REVOKE ALL ON public.traveler_data_audit, public.traveler_profiles, public.payment_methods,
  public.profile_completion_tracking, public.feature_flags, public.stripe_events, public.wallet_customers,
  public.campaigns, public.booking_charges
  FROM parker_wallet_auditor, parker_wallet_scorer, parker_wallet_flag_reader, parker_wallet_lookup,
       parker_wallet_event_recorder;
REVOKE ALL ON SEQUENCE public.profile_completion_tracking_id_seq FROM parker_wallet_scorer;
REVOKE USAGE ON SCHEMA wallet_internal FROM parker_wallet_lookup, parker_wallet_event_recorder;
REVOKE USAGE ON SCHEMA public FROM parker_wallet_auditor, parker_wallet_scorer, parker_wallet_flag_reader,
  parker_wallet_lookup, parker_wallet_event_recorder;

-- Granting on the functions and taking them back needs membership in their
-- roles, for the moment.
-- (By name: supautils v2.5 crashes the backend on GRANT ... TO CURRENT_USER.)
DO $member$
BEGIN
  EXECUTE format('GRANT parker_wallet_lookup, parker_wallet_event_recorder TO %I', current_user);
END
$member$;
DROP FUNCTION wallet_internal.traveler_exists();
GRANT EXECUTE ON ALL ROUTINES IN SCHEMA wallet_internal TO PUBLIC;
REVOKE EXECUTE ON FUNCTION wallet_internal.record_stripe_event(text, text, jsonb),
  wallet_internal.traveler_of_stripe_object(text, text), wallet_internal.record_booking_event(),
  wallet_internal.bookings_to_reconcile(interval), wallet_internal.campaign_owner(uuid),
  wallet_internal.account_age_days(date)
  FROM PUBLIC;

ALTER FUNCTION wallet_internal.account_age_days(date) OWNER TO CURRENT_USER;
ALTER FUNCTION wallet_internal.campaign_owner(uuid) OWNER TO CURRENT_USER;
ALTER FUNCTION wallet_internal.bookings_to_reconcile(interval) OWNER TO CURRENT_USER;
ALTER FUNCTION wallet_internal.traveler_of_stripe_object(text, text) OWNER TO CURRENT_USER;
ALTER FUNCTION wallet_internal.record_stripe_event(text, text, jsonb) OWNER TO CURRENT_USER;
DO $member$
BEGIN
  EXECUTE format('REVOKE parker_wallet_lookup, parker_wallet_event_recorder FROM %I', current_user);
END
$member$;
