-- Kill switches: rows of feature_flags named kill_switch.<feature>. A switch
-- that is enabled turns its feature OFF; the sidecar reads them every few
-- seconds (kms_sidecar::kill_switches), without a restart. An operator (or
-- service_role, from the dashboard) throws one with
--   UPDATE feature_flags SET enabled = true WHERE name = 'kill_switch.auto_booking';
-- An unknown or missing switch is not thrown: the features are on by default.
INSERT INTO public.feature_flags (name, description, enabled) VALUES
  ('kill_switch.wallet_writes', 'Off: every wallet write (cards, default, consents, setup intents) answers 503.', false),
  ('kill_switch.card_saves', 'Off: saving a new card (setup intents, add) answers 503.', false),
  ('kill_switch.auto_booking', 'Off: new bookings answer 503; bookings in flight finish their saga.', false),
  ('kill_switch.phone_verification', 'Off: phone verification (start and check) answers 503.', false)
ON CONFLICT (name) DO NOTHING;

-- The sidecar sees the switches, and nothing else of the flags table.
GRANT SELECT (name, enabled) ON public.feature_flags TO parker_wallet_sidecar;
CREATE POLICY feature_flags_kill_switches_parker_wallet_sidecar ON public.feature_flags
  FOR SELECT TO parker_wallet_sidecar USING (name LIKE 'kill\_switch.%');
