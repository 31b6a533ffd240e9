SELECT wallet.enable_owner_rls(t, 'user_id')
FROM unnest(ARRAY[
  'public.traveler_profiles', 'public.wallet_customers', 'public.payment_methods',
  'public.profile_completion_tracking', 'public.traveler_data_audit', 'public.campaigns'
]::regclass[]) AS t;

REVOKE UPDATE (phone_number, phone_verified) ON public.traveler_profiles FROM parker_wallet_sidecar;
REVOKE ALL ON public.traveler_profiles, public.wallet_customers, public.payment_methods,
  public.profile_completion_tracking, public.traveler_data_audit, public.campaigns
  FROM parker_wallet_sidecar;
-- The role stays: roles are cluster-wide and other databases may use it.
