-- Bookings: the charge saga's state (one row per booking), its history, and the
-- transactional outbox for messages to the traveler. The sidecar writes each
-- state before the external call it leads to (see docs/bookings.md).

-- Non-final states are the step about to run (or running); needs_reconciliation
-- keeps in reconcile_from the step whose outcome is unknown.
CREATE TABLE public.booking_charges (
  id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  -- Money records outlive a careless delete: erasing a traveler must deal with them.
  user_id                  uuid NOT NULL REFERENCES auth.users (id) ON DELETE RESTRICT,
  campaign_id              uuid NOT NULL REFERENCES public.campaigns (id) ON DELETE RESTRICT,
  idempotency_key          text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
  request_fingerprint      bytea NOT NULL,
  offer_id                 text NOT NULL CHECK (offer_id ~ '^off_[A-Za-z0-9]{1,64}$'),
  route                    text CHECK (route ~ '^[A-Z]{3}(-[A-Z]{3}){1,5}$'),
  -- Passenger details for Duffel, sealed with the sidecar's envelope encryption.
  passengers_sealed        bytea NOT NULL,
  amount                   bigint NOT NULL CHECK (amount > 0),
  currency                 text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
  state                    text NOT NULL CHECK (state IN (
                             'authorizing', 'requires_authentication', 'ordering', 'capturing',
                             'voiding', 'refunding', 'needs_reconciliation',
                             'captured', 'voided', 'refunded', 'declined')),
  reconcile_from           text CHECK (reconcile_from IN ('authorizing', 'ordering', 'capturing', 'voiding', 'refunding')),
  -- 1 = the default card, 2 = the backup after a hard decline; 0 before either.
  card_attempt             smallint NOT NULL DEFAULT 0 CHECK (card_attempt BETWEEN 0 AND 2),
  payment_method_id        uuid REFERENCES public.payment_methods (id) ON DELETE SET NULL,
  stripe_payment_method_id text,
  card_brand               text,
  card_last4               text CHECK (card_last4 ~ '^[0-9]{4}$'),
  stripe_payment_intent_id text UNIQUE,
  duffel_order_id          text UNIQUE,
  duffel_booking_reference text,
  failure_code             text,
  failure_reason           text,
  authorized_at            timestamptz,
  created_at               timestamptz NOT NULL DEFAULT now(),
  updated_at               timestamptz NOT NULL DEFAULT now(),
  UNIQUE (user_id, idempotency_key),
  CHECK ((state = 'needs_reconciliation') = (reconcile_from IS NOT NULL))
);
CREATE INDEX booking_charges_open ON public.booking_charges (updated_at)
  WHERE state NOT IN ('captured', 'voided', 'refunded', 'declined');
CREATE INDEX booking_charges_campaign ON public.booking_charges (campaign_id);

-- Every state a booking passed through, written by trigger in the same
-- transaction as the state itself.
CREATE TABLE public.booking_charge_events (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  booking_id     uuid NOT NULL REFERENCES public.booking_charges (id) ON DELETE CASCADE,
  user_id        uuid NOT NULL,
  state          text NOT NULL,
  failure_code   text,
  failure_reason text,
  stripe_payment_intent_id text,
  at             timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX booking_charge_events_booking ON public.booking_charge_events (booking_id, id);

CREATE FUNCTION wallet_internal.record_booking_event() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  INSERT INTO public.booking_charge_events (booking_id, user_id, state, failure_code, failure_reason, stripe_payment_intent_id)
  VALUES (NEW.id, NEW.user_id, NEW.state, NEW.failure_code, NEW.failure_reason, NEW.stripe_payment_intent_id);
  RETURN NULL;
END
$$;
CREATE TRIGGER booking_charges_touch BEFORE UPDATE ON public.booking_charges
  FOR EACH ROW EXECUTE FUNCTION wallet_internal.touch_updated_at();
CREATE TRIGGER booking_charges_history AFTER INSERT OR UPDATE OF state ON public.booking_charges
  FOR EACH ROW EXECUTE FUNCTION wallet_internal.record_booking_event();

-- Messages for Parker Flight's notifier ("complete authentication" emails...).
-- Written in the same transaction as the state that causes them; dedup_key makes
-- a retried step write its message once. Payloads carry links, never secrets.
CREATE TABLE public.notification_outbox (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id      uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
  kind         text NOT NULL CHECK (kind ~ '^[a-z_]{1,64}$'),
  dedup_key    text NOT NULL UNIQUE,
  payload      jsonb NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  attempts     integer NOT NULL DEFAULT 0,
  delivered_at timestamptz
);
CREATE INDEX notification_outbox_pending ON public.notification_outbox (created_at) WHERE delivered_at IS NULL;

SELECT wallet.enable_owner_rls(t, 'user_id', '{authenticated,parker_wallet_sidecar}')
FROM unnest(ARRAY['public.booking_charges', 'public.booking_charge_events']::regclass[]) AS t;
SELECT wallet.enable_owner_rls('public.notification_outbox', 'user_id', '{parker_wallet_sidecar}');

REVOKE ALL ON public.booking_charges, public.booking_charge_events, public.notification_outbox
  FROM PUBLIC, anon, authenticated;
-- Travelers read their bookings (not the sealed passengers, not the fingerprint).
GRANT SELECT (id, user_id, campaign_id, offer_id, route, amount, currency, state, reconcile_from, card_attempt,
              payment_method_id, card_brand, card_last4, stripe_payment_intent_id, duffel_order_id,
              duffel_booking_reference, failure_code, failure_reason, authorized_at, created_at, updated_at)
  ON public.booking_charges TO authenticated;
GRANT SELECT ON public.booking_charge_events TO authenticated;
GRANT SELECT, INSERT, UPDATE ON public.booking_charges TO parker_wallet_sidecar;
GRANT SELECT, INSERT ON public.booking_charge_events TO parker_wallet_sidecar;
GRANT SELECT, INSERT ON public.notification_outbox TO parker_wallet_sidecar;
-- The notifier (service_role bypasses RLS) reads and marks delivery.
GRANT SELECT, UPDATE (attempts, delivered_at) ON public.notification_outbox TO service_role;
GRANT SELECT ON public.booking_charges, public.booking_charge_events TO service_role;

-- Bookings the reconciler should look at: not final, untouched for min_age.
-- The reconciler then acts as each booking's traveler, under RLS.
CREATE FUNCTION wallet_internal.bookings_to_reconcile(min_age interval)
RETURNS TABLE (booking_id uuid, user_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
  SELECT id, user_id FROM public.booking_charges
   WHERE state NOT IN ('captured', 'voided', 'refunded', 'declined')
     AND updated_at <= now() - min_age
   ORDER BY updated_at
$$;

-- The owner of a campaign, for a server-side booking made on the owner's behalf.
CREATE FUNCTION wallet_internal.campaign_owner(campaign uuid) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
  SELECT user_id FROM public.campaigns WHERE id = campaign
$$;

-- How long the current traveler (from the request's claims) had had an account
-- on a given day (the booking's): a Radar signal. Only ever about oneself.
-- PL/pgSQL so that the body is bound at call time: the migration also runs
-- beside an auth schema it does not own (Supabase's, whose users have created_at).
CREATE FUNCTION wallet_internal.account_age_days(on_day date) RETURNS integer
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
  RETURN (SELECT on_day - u.created_at::date FROM auth.users u WHERE u.id = wallet.uid());
END
$$;

REVOKE EXECUTE ON FUNCTION wallet_internal.record_booking_event(), wallet_internal.bookings_to_reconcile(interval),
  wallet_internal.campaign_owner(uuid), wallet_internal.account_age_days(date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wallet_internal.bookings_to_reconcile(interval),
  wallet_internal.campaign_owner(uuid), wallet_internal.account_age_days(date) TO parker_wallet_sidecar;
