REVOKE USAGE ON SCHEMA wallet_internal FROM parker_wallet_sidecar;
DROP FUNCTION wallet_internal.traveler_of_stripe_object(text, text);
DROP FUNCTION wallet_internal.record_stripe_event(text, text, jsonb);
DROP TABLE public.stripe_events;
