-- parker_wallet 0.2.0 -> 0.3.0: decryption bound to who asks.
--
-- * wallet.encrypt and wallet.decrypt serve only records of the session's
--   wallet.uid(), unless the calling role is a member of the new NOLOGIN role
--   parker_wallet_system_decrypt, which a DBA grants explicitly (it has no
--   members at first). The check is in the library; this script adds the role,
--   with the 0.3.0 install script's own block.
\echo Use "ALTER EXTENSION parker_wallet UPDATE TO '0.3.0'" to load this file. \quit

DO $system_decrypt$
DECLARE
  member_name text;
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'parker_wallet_system_decrypt') THEN
    CREATE ROLE parker_wallet_system_decrypt NOLOGIN NOINHERIT;
  END IF;
  IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'parker_wallet_system_decrypt'
               AND (rolsuper OR rolcreatedb OR rolcreaterole OR rolcanlogin OR rolreplication OR rolbypassrls OR rolinherit)) THEN
    ALTER ROLE parker_wallet_system_decrypt NOSUPERUSER NOCREATEDB NOCREATEROLE NOLOGIN NOREPLICATION NOBYPASSRLS NOINHERIT;
  END IF;
  FOR member_name IN
    SELECT pg_catalog.pg_get_userbyid(m.member) FROM pg_catalog.pg_auth_members m
      JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) m.roleid
     WHERE r.rolname OPERATOR(pg_catalog.=) 'parker_wallet_system_decrypt'
  LOOP
    RAISE NOTICE 'role % may decrypt every traveler''s records (a member of parker_wallet_system_decrypt)', member_name;
  END LOOP;
END
$system_decrypt$;
