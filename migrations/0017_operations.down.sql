-- Dropping the role's functions takes membership in it.
DO $member$
BEGIN
  EXECUTE format('GRANT parker_wallet_operations TO %I', current_user);
END
$member$;
DROP FUNCTION wallet_internal.operations_figures(integer, integer);
DROP FUNCTION wallet_internal.record_job_run(text, timestamptz, integer);
DROP POLICY booking_charge_events_parker_wallet_operations ON public.booking_charge_events;
DROP POLICY booking_charges_parker_wallet_operations ON public.booking_charges;
REVOKE SELECT (booking_id, state) ON public.booking_charge_events FROM parker_wallet_operations;
REVOKE SELECT (id, state, card_attempt, authorized_at, failure_code) ON public.booking_charges FROM parker_wallet_operations;
DROP TABLE wallet_internal.job_runs;
REVOKE USAGE ON SCHEMA wallet_internal, public FROM parker_wallet_operations;
DO $member$
BEGIN
  EXECUTE format('REVOKE parker_wallet_operations FROM %I', current_user);
END
$member$;
-- The role stays (roles belong to the cluster, as with the other definer roles).
