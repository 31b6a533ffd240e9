DROP POLICY feature_flags_kill_switches_parker_wallet_sidecar ON public.feature_flags;
REVOKE SELECT (name, enabled) ON public.feature_flags FROM parker_wallet_sidecar;
DELETE FROM public.feature_flags WHERE name IN
  ('kill_switch.wallet_writes', 'kill_switch.card_saves', 'kill_switch.auto_booking', 'kill_switch.phone_verification');
