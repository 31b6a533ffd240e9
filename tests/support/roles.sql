-- Cluster-wide roles of the test run. pw_test_traveler plays PostgREST's
-- authenticator for one role only: it logs in, has no privileges of its own
-- (NOINHERIT) and may become `authenticated`, nothing else.
CREATE ROLE pw_test_traveler LOGIN NOINHERIT;
GRANT authenticated TO pw_test_traveler;

-- pw_test_sidecar plays the sidecar's login role: it may become
-- parker_wallet_sidecar (migration 0004), nothing else.
CREATE ROLE pw_test_sidecar LOGIN NOINHERIT;
GRANT parker_wallet_sidecar TO pw_test_sidecar;
