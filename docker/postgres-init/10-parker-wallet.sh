#!/usr/bin/env bash
# Run once by the postgres image on an empty data directory
# (/docker-entrypoint-initdb.d): the extension, where it finds the sidecar,
# and the sidecar's login role. The schema itself is the `migrate` service's.
set -euo pipefail

# The password goes to psql through its own file (\set with backticks), never
# on a command line that `ps` shows.
: "${SIDECAR_DB_PASSWORD_FILE:?the sidecar login role needs a password file}"
export SIDECAR_DB_PASSWORD_FILE

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
\set sidecar_password `cat "$SIDECAR_DB_PASSWORD_FILE"`
ALTER SYSTEM SET parker_wallet.sidecar_socket = '/run/parker-wallet/sidecar.sock';
SELECT pg_reload_conf();
CREATE EXTENSION parker_wallet;
-- The role migration 0004 would create, made here so the login role can join it.
CREATE ROLE parker_wallet_sidecar NOLOGIN NOINHERIT;
CREATE ROLE parker_wallet_sidecar_login LOGIN NOINHERIT PASSWORD :'sidecar_password';
GRANT parker_wallet_sidecar TO parker_wallet_sidecar_login;
SQL
