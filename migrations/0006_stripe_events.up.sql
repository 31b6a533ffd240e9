-- Stripe webhook events, one row per event id: recorded in the same transaction
-- as the work the event causes, so a redelivered event is recognised and a
-- failed one is retried by Stripe. Nobody reads the table through the API; the
-- sidecar reaches it only through the two functions below.
CREATE TABLE public.stripe_events (
  id          text PRIMARY KEY CHECK (id ~ '^evt_[A-Za-z0-9_]+$'),
  type        text NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  payload     jsonb NOT NULL
);
ALTER TABLE public.stripe_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.stripe_events FORCE ROW LEVEL SECURITY;
CREATE POLICY stripe_events_no_direct_access ON public.stripe_events FOR ALL TO public
  USING (false) WITH CHECK (false);
REVOKE ALL ON public.stripe_events FROM PUBLIC, anon, authenticated;
GRANT SELECT ON public.stripe_events TO service_role;

-- True when the event is new (and now recorded), false for a redelivery.
CREATE FUNCTION wallet_internal.record_stripe_event(event_id text, event_type text, event_payload jsonb)
RETURNS boolean LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
  WITH recorded AS (
    INSERT INTO public.stripe_events (id, type, payload) VALUES (event_id, event_type, event_payload)
    ON CONFLICT (id) DO NOTHING RETURNING 1)
  SELECT EXISTS (SELECT FROM recorded)
$$;

-- The traveler a Stripe object belongs to: by customer, else by saved card.
CREATE FUNCTION wallet_internal.traveler_of_stripe_object(customer_id text, payment_method_id text)
RETURNS uuid LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
  SELECT coalesce(
    (SELECT user_id FROM public.wallet_customers WHERE stripe_customer_id = customer_id),
    (SELECT user_id FROM public.payment_methods WHERE stripe_payment_method_id = payment_method_id))
$$;

REVOKE EXECUTE ON FUNCTION wallet_internal.record_stripe_event(text, text, jsonb),
  wallet_internal.traveler_of_stripe_object(text, text) FROM PUBLIC;
GRANT USAGE ON SCHEMA wallet_internal TO parker_wallet_sidecar;
GRANT EXECUTE ON FUNCTION wallet_internal.record_stripe_event(text, text, jsonb),
  wallet_internal.traveler_of_stripe_object(text, text) TO parker_wallet_sidecar;
