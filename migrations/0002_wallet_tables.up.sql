-- Parker Wallet's tables: the playbook's four, plus campaigns (PSD2 consent) and
-- wallet_customers (one Stripe customer per traveler). Row-level security is
-- enabled and forced on each by the extension's wallet.enable_owner_rls().
--
-- Travelers (role `authenticated`, through PostgREST) read their own rows and edit
-- their own profile and campaigns; everything that touches Stripe is written by
-- the sidecar. No card number or CVC is ever stored: Stripe ids and ciphertext only.

DO $check$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'parker_wallet') THEN
    RAISE EXCEPTION 'extension parker_wallet is not installed'
      USING HINT = 'Run CREATE EXTENSION parker_wallet; as a superuser first.';
  END IF;
END
$check$;

-- Helpers private to the schema: not in `public`, so PostgREST never exposes them.
CREATE SCHEMA wallet_internal;

-- An UPDATE that changes nothing keeps its timestamp (and so is not audited).
CREATE FUNCTION wallet_internal.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  IF NEW IS DISTINCT FROM OLD THEN
    NEW.updated_at := now();
  END IF;
  RETURN NEW;
END
$$;

-- A changed phone number is unverified until Twilio Verify says otherwise,
-- unless the same statement sets the verification itself (the sidecar does).
CREATE FUNCTION wallet_internal.reset_phone_verification() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  IF NEW.phone_number IS DISTINCT FROM OLD.phone_number
     AND NEW.phone_verified IS NOT DISTINCT FROM OLD.phone_verified THEN
    NEW.phone_verified := false;
  END IF;
  RETURN NEW;
END
$$;

-- Consent is stamped with the server's clock: a client cannot backdate it.
CREATE FUNCTION wallet_internal.stamp_consent() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  IF NEW.consent_at IS NOT NULL
     AND (TG_OP = 'INSERT' OR OLD.consent_at IS NULL) THEN
    NEW.consent_at := now();
  ELSIF TG_OP = 'UPDATE' AND NEW.consent_at IS NOT NULL THEN
    NEW.consent_at := OLD.consent_at;
  END IF;
  RETURN NEW;
END
$$;

CREATE TABLE public.traveler_profiles (
  id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id                  uuid NOT NULL UNIQUE REFERENCES auth.users (id) ON DELETE CASCADE,
  first_name               text CHECK (length(first_name) BETWEEN 1 AND 100),
  last_name                text CHECK (length(last_name) BETWEEN 1 AND 100),
  date_of_birth            date,
  -- E.164 as Twilio Verify documents it: '+', country code, at most 15 digits.
  phone_number             text CONSTRAINT traveler_profiles_phone_e164
                             CHECK (phone_number ~ '^\+[1-9][0-9]{1,14}$'),
  phone_verified           boolean NOT NULL DEFAULT false,
  notification_preferences jsonb NOT NULL DEFAULT '{}'
                             CHECK (jsonb_typeof(notification_preferences) = 'object'),
  created_at               timestamptz NOT NULL DEFAULT now(),
  updated_at               timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER traveler_profiles_touch BEFORE UPDATE ON public.traveler_profiles
  FOR EACH ROW EXECUTE FUNCTION wallet_internal.touch_updated_at();
CREATE TRIGGER traveler_profiles_phone BEFORE UPDATE OF phone_number ON public.traveler_profiles
  FOR EACH ROW EXECUTE FUNCTION wallet_internal.reset_phone_verification();

-- No cascade from auth.users: a traveler's Stripe customer must be deleted at
-- Stripe before the row goes (the erasure flow does both).
CREATE TABLE public.wallet_customers (
  id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id            uuid NOT NULL UNIQUE REFERENCES auth.users (id),
  stripe_customer_id text NOT NULL UNIQUE CHECK (stripe_customer_id ~ '^cus_[A-Za-z0-9_]+$'),
  created_at         timestamptz NOT NULL DEFAULT now(),
  -- Target of payment_methods' composite key: a card's customer is its owner's.
  UNIQUE (user_id, stripe_customer_id)
);

CREATE TABLE public.payment_methods (
  id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id                  uuid NOT NULL REFERENCES auth.users (id),
  stripe_customer_id       text NOT NULL,
  stripe_payment_method_id text NOT NULL UNIQUE CHECK (stripe_payment_method_id ~ '^pm_[A-Za-z0-9_]+$'),
  encrypted_card_data      bytea NOT NULL,
  card_fingerprint         text,
  brand                    text,
  last4                    text CHECK (last4 ~ '^[0-9]{4}$'),
  exp_month                smallint CHECK (exp_month BETWEEN 1 AND 12),
  exp_year                 smallint CHECK (exp_year BETWEEN 2000 AND 2200),
  is_default               boolean NOT NULL DEFAULT false,
  encryption_version       smallint NOT NULL DEFAULT 2,
  created_at               timestamptz NOT NULL DEFAULT now(),
  updated_at               timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (user_id, stripe_customer_id)
    REFERENCES public.wallet_customers (user_id, stripe_customer_id)
);
-- At most one default card per traveler; the same card (fingerprint) once.
CREATE UNIQUE INDEX payment_methods_one_default_per_user
  ON public.payment_methods (user_id) WHERE is_default;
CREATE UNIQUE INDEX payment_methods_user_fingerprint
  ON public.payment_methods (user_id, card_fingerprint) WHERE card_fingerprint IS NOT NULL;
CREATE INDEX payment_methods_customer ON public.payment_methods (user_id, stripe_customer_id);
CREATE TRIGGER payment_methods_touch BEFORE UPDATE ON public.payment_methods
  FOR EACH ROW EXECUTE FUNCTION wallet_internal.touch_updated_at();

CREATE TABLE public.profile_completion_tracking (
  id                 serial PRIMARY KEY,
  user_id            uuid NOT NULL UNIQUE REFERENCES auth.users (id) ON DELETE CASCADE,
  completeness_score int NOT NULL DEFAULT 0 CHECK (completeness_score BETWEEN 0 AND 100),
  missing_fields     text[] NOT NULL DEFAULT ARRAY[]::text[],
  recommendations    text[] NOT NULL DEFAULT ARRAY[]::text[],
  last_calculated    timestamptz NOT NULL DEFAULT now()
);

-- No foreign key to auth.users: the audit trail outlives an erased account
-- (with personal data redacted), which a reference would forbid.
-- Each traveler's rows form a hash chain (chain_seq 1, 2, ...; prev_hash links to
-- the row before): written by the extension's audit trigger, checked by
-- wallet.verify_audit_chain(), which also catches a bad sequence number or hash
-- length (so those need no CHECK constraint, which would cost every audited
-- write). user_id 00000000-... is the system actor.
CREATE TABLE public.traveler_data_audit (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id     uuid NOT NULL,
  chain_seq   bigint NOT NULL,
  action      text NOT NULL CHECK (action IN ('INSERT', 'UPDATE', 'DELETE')),
  table_name  text NOT NULL,
  record_id   uuid,
  old_data    jsonb,
  new_data    jsonb,
  ip_address  inet,
  user_agent  text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  prev_hash   bytea NOT NULL,
  row_hash    bytea NOT NULL
);
-- Serves the chain (next link, verification) and the owner policy alike.
CREATE UNIQUE INDEX traveler_data_audit_chain ON public.traveler_data_audit (user_id, chain_seq);

-- A booking campaign; consent_at is the traveler's PSD2 mandate for
-- merchant-initiated (off-session) charges.
CREATE TABLE public.campaigns (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id    uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
  name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  consent_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER campaigns_consent BEFORE INSERT OR UPDATE OF consent_at ON public.campaigns
  FOR EACH ROW EXECUTE FUNCTION wallet_internal.stamp_consent();

-- Row-level security: enabled, forced, one owner policy each, owner column indexed.
SELECT wallet.enable_owner_rls(t, 'user_id')
FROM unnest(ARRAY[
  'public.traveler_profiles', 'public.wallet_customers', 'public.payment_methods',
  'public.profile_completion_tracking', 'public.traveler_data_audit', 'public.campaigns'
]::regclass[]) AS t;

-- Privileges: the policies choose the rows, these grants choose the operations.
REVOKE ALL ON public.traveler_profiles, public.wallet_customers, public.payment_methods,
  public.profile_completion_tracking, public.traveler_data_audit, public.campaigns
  FROM PUBLIC, anon, authenticated;
GRANT SELECT ON public.traveler_profiles, public.wallet_customers, public.payment_methods,
  public.profile_completion_tracking, public.traveler_data_audit, public.campaigns
  TO authenticated;
GRANT INSERT (user_id, first_name, last_name, date_of_birth, phone_number, notification_preferences),
      UPDATE (first_name, last_name, date_of_birth, phone_number, notification_preferences),
      DELETE
  ON public.traveler_profiles TO authenticated;
GRANT INSERT (user_id, name, consent_at), UPDATE (name, consent_at), DELETE
  ON public.campaigns TO authenticated;
GRANT ALL ON public.traveler_profiles, public.wallet_customers, public.payment_methods,
  public.profile_completion_tracking, public.traveler_data_audit, public.campaigns
  TO service_role;
GRANT USAGE ON SEQUENCE public.profile_completion_tracking_id_seq TO service_role;
