#!/usr/bin/env bash
# Prepares one cluster's test templates, from scratch: run by the test harness
# the first time a test needs them (tests/src/lib.rs, `ensure_templates`), so
# `cargo test` works against any stack named by the PW_* variables.
#
#   scripts/templates.sh plain MARK      pw_template (migrated) and the test roles
#   scripts/templates.sh supabase MARK   supabase_base, pw_template and the test roles
#
# MARK is written as pw_template's comment: the harness compares it with what
# it expects (a digest of migrations/ and sql/) and rebuilds a stale template.
# Needs PW_PGHOST, PW_PGPORT (plain) or PW_SUPABASE_PGPORT, and PW_SIDECAR_BIN.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -eq 2 ] || die "usage: $0 plain|supabase MARK"
cluster=$1 mark=$2
# supabase_base_database's scratch files: the stack directory when there is one.
if [ -z "${PW_STACK_DIR:-}" ]; then
  PW_STACK_DIR=$(mktemp -d /tmp/parker-wallet-templates.XXXXXX)
  trap 'rm -rf "$PW_STACK_DIR"' EXIT
fi
export PW_STACK_DIR

has_role() { # psql command..., role
  local role=${*: -1}
  [ "$("${@:1:$#-1}" -d postgres -tAc "SELECT count(*) FROM pg_roles WHERE rolname = '$role'")" = 1 ]
}

case "$cluster" in
  plain)
    stack_psql -d postgres -c "DROP DATABASE IF EXISTS pw_template"
    stack_database pw_template migrated >/dev/null
    has_role stack_psql pw_test_traveler || stack_psql -d postgres -f "$PW_ROOT/tests/support/roles.sql" >/dev/null
    stack_psql -d postgres -c "COMMENT ON DATABASE pw_template IS '$mark'"
    ;;
  supabase)
    supabase_psql supabase_admin -d postgres -c "DROP DATABASE IF EXISTS pw_template" -c "DROP DATABASE IF EXISTS supabase_base"
    supabase_base_database
    supabase_database pw_template migrated >/dev/null
    has_role supabase_psql supabase_admin pw_test_traveler \
      || supabase_psql supabase_admin -d postgres -f "$PW_ROOT/tests/support/roles.sql" >/dev/null \
      || supabase_die "tests/support/roles.sql failed on the Supabase-shaped cluster (error above)"
    supabase_psql supabase_admin -d postgres -c "COMMENT ON DATABASE pw_template IS '$mark'"
    ;;
  *) die "usage: $0 plain|supabase MARK" ;;
esac
