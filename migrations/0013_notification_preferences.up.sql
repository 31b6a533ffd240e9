-- Notification preferences get a documented shape (docs/notification-preferences.md),
-- checked by the extension on every write: channels (email, sms, push), topics
-- (price_drops, booking_confirmations, authentication_needed, marketing) and
-- quiet hours with a time zone; SMS on needs a verified phone. A bad value is
-- refused with SQLSTATE 23514 and a message naming the field.
DO $$
BEGIN
  IF to_regprocedure('wallet.check_notification_preferences(jsonb, boolean)') IS NULL THEN
    RAISE EXCEPTION 'migration 0013 needs parker_wallet 0.5.0 (wallet.check_notification_preferences)'
      USING HINT = 'ALTER EXTENSION parker_wallet UPDATE, then migrate again.';
  END IF;
END
$$;

-- What was written before: a flat object of channels ({"email": true, "sms": false}).
UPDATE public.traveler_profiles
   SET notification_preferences = jsonb_build_object('channels', notification_preferences)
 WHERE notification_preferences <> '{}'
   AND NOT EXISTS (SELECT FROM jsonb_object_keys(notification_preferences) AS k(key)
                    WHERE k.key NOT IN ('email', 'sms', 'push'));
-- SMS to a phone nobody verified was never possible: off.
UPDATE public.traveler_profiles
   SET notification_preferences = jsonb_set(notification_preferences, '{channels,sms}', 'false')
 WHERE NOT phone_verified AND notification_preferences #> '{channels,sms}' = 'true';

-- Any other value that does not fit stops the migration here, naming its field.
ALTER TABLE public.traveler_profiles ADD CONSTRAINT traveler_profiles_notification_preferences_valid
  CHECK (wallet.check_notification_preferences(notification_preferences, phone_verified));

-- A new number is unverified; SMS stops whenever the phone is not verified
-- (a new number, or a writer unverifying it), rather than the constraint
-- refusing the write. Turning SMS on in the same statement is refused: verify first.
CREATE OR REPLACE FUNCTION wallet_internal.reset_phone_verification() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NEW.phone_number IS DISTINCT FROM OLD.phone_number
     AND NEW.phone_verified IS NOT DISTINCT FROM OLD.phone_verified THEN
    NEW.phone_verified := false;
  END IF;
  IF NOT NEW.phone_verified
     AND OLD.notification_preferences #> '{channels,sms}' = 'true'
     AND NEW.notification_preferences #> '{channels,sms}' = 'true' THEN
    NEW.notification_preferences := jsonb_set(NEW.notification_preferences, '{channels,sms}', 'false');
  END IF;
  RETURN NEW;
END
$$;
DROP TRIGGER traveler_profiles_phone ON public.traveler_profiles;
CREATE TRIGGER traveler_profiles_phone BEFORE UPDATE OF phone_number, phone_verified ON public.traveler_profiles
  FOR EACH ROW EXECUTE FUNCTION wallet_internal.reset_phone_verification();
