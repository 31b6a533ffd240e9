-- parker_wallet 0.4.0 -> 0.5.0: notification preferences with a documented shape.
--
-- * wallet.check_notification_preferences(preferences, phone_verified): the
--   CHECK constraint of migration 0013; raises 23514 naming the bad field.
--   PUBLIC may execute it: every role that writes a profile evaluates it.
-- * The completion score counts preferences only when valid (in the library).
\echo Use "ALTER EXTENSION parker_wallet UPDATE TO '0.5.0'" to load this file. \quit

CREATE  FUNCTION "check_notification_preferences"(
	"preferences" jsonb, /* pgrx::datum::json::JsonB */
	"phone_verified" bool /* bool */
) RETURNS bool /* bool */
STABLE STRICT PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_notification_preferences_wrapper';

REVOKE ALL ON FUNCTION wallet.check_notification_preferences(jsonb, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wallet.check_notification_preferences(jsonb, boolean) TO PUBLIC;
