-- Removes the shim's `auth` schema, and only the shim's: a Supabase `auth` schema
-- has no such comment and is left alone. The roles stay: they are cluster-wide
-- and other databases of the cluster may use them.
DO $shim$
BEGIN
  IF obj_description('auth'::regnamespace, 'pg_namespace') LIKE 'parker_wallet auth shim%' THEN
    DROP SCHEMA auth CASCADE;
  END IF;
EXCEPTION WHEN invalid_schema_name THEN
  NULL; -- no auth schema at all: nothing to undo
END
$shim$;
