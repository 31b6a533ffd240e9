CREATE OR REPLACE FUNCTION wallet_internal.reset_phone_verification() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NEW.phone_number IS DISTINCT FROM OLD.phone_number
     AND NEW.phone_verified IS NOT DISTINCT FROM OLD.phone_verified THEN
    NEW.phone_verified := false;
  END IF;
  RETURN NEW;
END
$$;
DROP TRIGGER traveler_profiles_phone ON public.traveler_profiles;
CREATE TRIGGER traveler_profiles_phone BEFORE UPDATE OF phone_number ON public.traveler_profiles
  FOR EACH ROW EXECUTE FUNCTION wallet_internal.reset_phone_verification();
-- The values stay in their checked shape: still objects, as 0002 requires.
ALTER TABLE public.traveler_profiles DROP CONSTRAINT traveler_profiles_notification_preferences_valid;
