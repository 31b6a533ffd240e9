-- Supabase-compatible auth shim, for plain PostgreSQL only.
--
-- On Supabase the `auth` schema, its functions and the three API roles already
-- exist and belong to Supabase: this migration then changes nothing. Elsewhere it
-- creates them exactly as Supabase defines them, so every later migration and
-- policy runs unchanged on both. The schema comment marks the shim as ours, so
-- the down migration never touches a real Supabase `auth` schema.

DO $shim$
BEGIN
  -- Roles are cluster-wide: create the missing ones, never alter existing ones.
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'anon') THEN
    CREATE ROLE anon NOLOGIN NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'authenticated') THEN
    CREATE ROLE authenticated NOLOGIN NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'service_role') THEN
    CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
  END IF;

  IF EXISTS (SELECT FROM pg_namespace WHERE nspname = 'auth') THEN
    RAISE NOTICE 'auth schema exists (Supabase): the shim is not needed';
    RETURN;
  END IF;

  CREATE SCHEMA auth;
  COMMENT ON SCHEMA auth IS 'parker_wallet auth shim (plain PostgreSQL stand-in for Supabase Auth)';
  GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;

  -- The columns Parker Wallet relies on; Supabase's table has more.
  CREATE TABLE auth.users (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email              text UNIQUE,
    phone              text UNIQUE,
    raw_user_meta_data jsonb,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
  );
  GRANT ALL ON auth.users TO service_role;

  -- Verbatim from Supabase Auth's migrations.
  CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $f$
    SELECT coalesce(
      nullif(current_setting('request.jwt.claim.sub', true), ''),
      (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
    )::uuid
  $f$;
  CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $f$
    SELECT coalesce(
      nullif(current_setting('request.jwt.claim.role', true), ''),
      (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
    )::text
  $f$;
  CREATE FUNCTION auth.email() RETURNS text LANGUAGE sql STABLE AS $f$
    SELECT coalesce(
      nullif(current_setting('request.jwt.claim.email', true), ''),
      (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
    )::text
  $f$;
  CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $f$
    SELECT coalesce(
      nullif(current_setting('request.jwt.claim', true), ''),
      nullif(current_setting('request.jwt.claims', true), '')
    )::jsonb
  $f$;
END
$shim$;
