#!/usr/bin/env bash
# Checks formatting and lints, then runs every test: the extension's unit and
# #[pg_test] tests, the sidecar's unit tests, and the end-to-end tests against a
# throwaway stack.
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

# Style and lints first (the full run only): seconds once built, and a failure
# here says what to fix.
if [ "$only" = all ]; then
  say "cargo fmt --check and cargo clippy -D warnings"
  cargo fmt --all --check
  cargo clippy --quiet --workspace --all-targets -- -D warnings
fi

# Every runner's output also goes to a log, so the run can end with one total.
results=$(mktemp /tmp/parker-wallet-results.XXXXXX)
trap 'rm -f "$results"' EXIT INT TERM
run_tests() { "$@" 2>&1 | tee -a "$results"; }

if [ "$only" = all ]; then
  say "extension: unit and #[pg_test] tests"
  pgrx_args=(pg15)
  # As root the test cluster must run as postgres, in a directory it can create.
  [ "$(id -u)" = 0 ] && pgrx_args+=(--runas postgres --pgdata "/tmp/parker-wallet-pgrx-$(id -u)")
  (cd pg_extension && run_tests cargo pgrx test "${pgrx_args[@]}")
fi

# After `cargo pgrx test`, which installs a test build: the stack gets the real one.
"$PW_ROOT/scripts/build.sh"

stack_dir=$(mktemp -d /tmp/parker-wallet-test.XXXXXX)
trap '"$PW_ROOT/scripts/stack.sh" down "$stack_dir"; rm -f "$results"' EXIT INT TERM
# The tests need both clusters, whatever the caller's environment says.
PW_SUPABASE_CLUSTER=1 "$PW_ROOT/scripts/stack.sh" up "$stack_dir"
set -a; source "$stack_dir/stack.env"; set +a

# The test templates and roles are built by the harness on first use
# (scripts/templates.sh), so `cargo test` also runs against any stack.
say "workspace tests (audit rules, sidecar unit tests and end-to-end tests)"
run_tests cargo test -p audit_chain -p kms-sidecar -p parker-wallet-e2e -- ${filter:+"$filter"}

# One closing line for the whole run (any failure has already stopped the script).
sed 's/\x1b\[[0-9;]*m//g' "$results" | awk '
  /^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
  END { printf "all tests: %d passed, %d failed\n", p, f; if (p == 0) exit 1 }'

