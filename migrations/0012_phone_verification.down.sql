-- Dropping the gate's function takes membership in its role, as handing it over did.
DO $member$
BEGIN
  EXECUTE format('GRANT parker_wallet_phone_gate TO %I', current_user);
END
$member$;
DROP FUNCTION wallet_internal.claim_phone_verification(text, interval, interval, integer, integer, interval);
DO $member$
BEGIN
  EXECUTE format('REVOKE parker_wallet_phone_gate FROM %I', current_user);
END
$member$;
DROP TABLE public.phone_verifications;
DROP FUNCTION wallet_internal.phone_verification_moves_forward();
REVOKE USAGE ON SCHEMA wallet_internal FROM parker_wallet_phone_gate;
REVOKE USAGE ON SCHEMA public FROM parker_wallet_phone_gate;
-- The role stays: roles are cluster-wide and other databases may use it.
