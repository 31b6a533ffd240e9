DROP FUNCTION wallet_internal.claim_phone_verification(text, interval, interval, integer, integer, interval);
DROP TABLE public.phone_verifications;
REVOKE USAGE ON SCHEMA wallet_internal FROM parker_wallet_phone_gate;
REVOKE USAGE ON SCHEMA public FROM parker_wallet_phone_gate;
-- The role stays: roles are cluster-wide and other databases may use it.
