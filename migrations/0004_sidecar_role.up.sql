-- The sidecar's database role. The sidecar writes what travelers may not (their
-- Stripe customer, their cards, a verified phone), but only ever for the
-- traveler whose JWT it verified: it sets that traveler's claims per transaction
-- and runs as this role, which the owner policies cover like `authenticated`.
-- A DBA grants it to the sidecar's login role: GRANT parker_wallet_sidecar TO ...;
DO $role$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'parker_wallet_sidecar') THEN
    CREATE ROLE parker_wallet_sidecar NOLOGIN NOINHERIT;
  END IF;
END
$role$;

GRANT SELECT ON public.traveler_profiles, public.wallet_customers, public.payment_methods,
  public.profile_completion_tracking, public.traveler_data_audit, public.campaigns
  TO parker_wallet_sidecar;
GRANT INSERT, UPDATE, DELETE ON public.wallet_customers, public.payment_methods TO parker_wallet_sidecar;
GRANT UPDATE (phone_number, phone_verified) ON public.traveler_profiles TO parker_wallet_sidecar;

SELECT wallet.enable_owner_rls(t, 'user_id', '{authenticated,parker_wallet_sidecar}')
FROM unnest(ARRAY[
  'public.traveler_profiles', 'public.wallet_customers', 'public.payment_methods',
  'public.profile_completion_tracking', 'public.traveler_data_audit', 'public.campaigns'
]::regclass[]) AS t;
