-- Cluster-wide roles of the test run. pw_test_traveler plays PostgREST's
-- authenticator for one role only: it logs in, has no privileges of its own
-- (NOINHERIT) and may become `authenticated`, nothing else.
CREATE ROLE pw_test_traveler LOGIN NOINHERIT;
GRANT authenticated TO pw_test_traveler;
