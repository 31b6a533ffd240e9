-- Erasures are records of what was erased: the table goes only when empty.
DO $records$
BEGIN
  IF EXISTS (SELECT FROM public.erasures) THEN
    RAISE EXCEPTION 'public.erasures holds erasure records: export them before going below migration 0015';
  END IF;
  IF EXISTS (SELECT FROM public.booking_charges b WHERE NOT EXISTS (SELECT FROM auth.users u WHERE u.id = b.user_id))
     OR EXISTS (SELECT FROM public.booking_charges b
                 WHERE NOT EXISTS (SELECT FROM public.campaigns c WHERE c.id = b.campaign_id)) THEN
    RAISE EXCEPTION 'bookings outlive their account or campaign: migration 0015 cannot be reverted';
  END IF;
END
$records$;
DO $guard$
DECLARE
  guarded text;
BEGIN
  FOREACH guarded IN ARRAY ARRAY['traveler_profiles', 'wallet_customers', 'payment_methods', 'campaigns',
                                 'booking_charges', 'consents', 'phone_verifications', 'idempotency_keys'] LOOP
    EXECUTE format('DROP TRIGGER %I ON public.%I', guarded || '_refuse_erased', guarded);
  END LOOP;
END
$guard$;
-- Dropping the guard's function takes membership in its role.
DO $member$
BEGIN
  EXECUTE format('GRANT parker_wallet_erasure_guard TO %I', current_user);
END
$member$;
DROP FUNCTION wallet_internal.refuse_erased_traveler();
DO $member$
BEGIN
  EXECUTE format('REVOKE parker_wallet_erasure_guard FROM %I', current_user);
END
$member$;
ALTER TABLE public.booking_charges ADD CONSTRAINT booking_charges_campaign_id_fkey
  FOREIGN KEY (campaign_id) REFERENCES public.campaigns (id) ON DELETE RESTRICT;
ALTER TABLE public.booking_charges ADD CONSTRAINT booking_charges_user_id_fkey
  FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE RESTRICT;
DROP TABLE public.erasures;
REVOKE USAGE ON SCHEMA public FROM parker_wallet_erasure_guard;
-- The role stays: roles are cluster-wide and other databases may use it.
