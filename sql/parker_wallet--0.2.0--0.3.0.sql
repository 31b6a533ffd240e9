-- parker_wallet 0.2.0 -> 0.3.0: decryption bound to who asks.
--
-- * wallet.encrypt and wallet.decrypt serve only records of the session's
--   wallet.uid(), unless the calling role is a member of the new NOLOGIN role
--   parker_wallet_system_decrypt, which a DBA grants explicitly (it has no
--   members at first). The check is in the library; this script adds the role,
--   exactly as the 0.3.0 install script's roles block does.
\echo Use "ALTER EXTENSION parker_wallet UPDATE TO '0.3.0'" to load this file. \quit

DO $roles$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'parker_wallet_system_decrypt') THEN
    CREATE ROLE parker_wallet_system_decrypt NOLOGIN NOINHERIT;
  ELSIF EXISTS (SELECT FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles r
                              ON r.oid OPERATOR(pg_catalog.=) m.roleid OR r.oid OPERATOR(pg_catalog.=) m.member
                 WHERE r.rolname OPERATOR(pg_catalog.=) 'parker_wallet_system_decrypt') THEN
    -- Its members decrypt every traveler's records: they must be granted after this, knowingly.
    RAISE EXCEPTION 'role parker_wallet_system_decrypt exists with members or memberships: it was not made by parker_wallet'
      USING HINT = 'Revoke them (or drop the role), then update the extension again.';
  END IF;
  ALTER ROLE parker_wallet_system_decrypt NOSUPERUSER NOCREATEDB NOCREATEROLE NOLOGIN NOREPLICATION NOBYPASSRLS NOINHERIT;
END
$roles$;
