-- Cluster-wide roles of the test run. pw_test_traveler plays PostgREST's
-- authenticator for one role only: it logs in, has no privileges of its own
-- (NOINHERIT) and may become `authenticated`, nothing else.
CREATE ROLE pw_test_traveler LOGIN NOINHERIT;
GRANT authenticated TO pw_test_traveler;

-- pw_test_sidecar plays the sidecar's login role: it may become
-- parker_wallet_sidecar (migration 0004), nothing else.
CREATE ROLE pw_test_sidecar LOGIN NOINHERIT;
GRANT parker_wallet_sidecar TO pw_test_sidecar;

-- pw_test_api plays PostgREST's authenticator in full: it may become any of the
-- three API roles, and holds nothing itself.
CREATE ROLE pw_test_api LOGIN NOINHERIT;
GRANT anon, authenticated, service_role TO pw_test_api;

-- pw_test_owner: a table owner that is not a superuser (on plain PostgreSQL,
-- where the operator is one), for attacks that need the owner's rights.
CREATE ROLE pw_test_owner NOLOGIN NOSUPERUSER;
