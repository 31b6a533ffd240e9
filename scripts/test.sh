#!/usr/bin/env bash
# Runs every test: the extension's unit and #[pg_test] tests, the sidecar's unit
# tests, and the end-to-end tests against a throwaway stack.
#
#   scripts/test.sh               everything
#   scripts/test.sh e2e [FILTER]  only the workspace tests (optionally filtered by name)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

only=${1:-all}
filter=${2:-}
case "$only" in all|e2e) ;; *) die "usage: $0 [e2e [FILTER]]" ;; esac

"$PW_ROOT/scripts/bootstrap.sh"
cd "$PW_ROOT"

if [ "$only" = all ]; then
  say "extension: unit and #[pg_test] tests"
  pgrx_args=(pg15)
  # As root the test cluster must run as postgres, in a directory it can create.
  [ "$(id -u)" = 0 ] && pgrx_args+=(--runas postgres --pgdata "/tmp/parker-wallet-pgrx-$(id -u)")
  (cd pg_extension && cargo pgrx test "${pgrx_args[@]}")
fi

# After `cargo pgrx test`, which installs a test build: the stack gets the real one.
"$PW_ROOT/scripts/build.sh"

stack_dir=$(mktemp -d /tmp/parker-wallet-test.XXXXXX)
trap '"$PW_ROOT/scripts/stack.sh" down "$stack_dir"' EXIT INT TERM
"$PW_ROOT/scripts/stack.sh" up "$stack_dir"
set -a; source "$stack_dir/stack.env"; set +a

say "preparing the template database"
psql_admin() { psql -X -q -v ON_ERROR_STOP=1 -h "$PW_PGHOST" -p "$PW_PGPORT" -U postgres "$@"; }
psql_admin -d postgres -c "CREATE DATABASE pw_template"
psql_admin -d pw_template -c "CREATE EXTENSION parker_wallet"
DATABASE_URL="postgres://postgres@$PW_PGHOST:$PW_PGPORT/pw_template" \
  "$PW_SIDECAR_BIN" migrate --dir "$PW_ROOT/migrations" up >/dev/null
psql_admin -d postgres -f "$PW_ROOT/tests/support/roles.sql"

say "workspace tests (sidecar unit tests and end-to-end tests)"
cargo test -p kms-sidecar -p parker-wallet-e2e -- ${filter:+"$filter"}
