#!/usr/bin/env bash
# Where the database's time goes for one benchmark statement: perf samples of
# the backends while pgbench runs it (release extension, the bench/run.sh
# fixtures, PostgREST's headers set, the completion trigger off as in
# bench/run.sh). Prints the hottest functions by their own time. Asserts nothing.
#
#   bench/profile.sh                                          INSERT with the audit trigger, 1 client
#   bench/profile.sh update.sql 1
#   bench/profile.sh insert_campaign.sql 2 -D travelers=10000
#   BENCH_SECONDS=20 bench/profile.sh ...
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

script=${1:-insert.sql}
clients=${2:-1}
shift $(($# < 2 ? $# : 2))
seconds=${BENCH_SECONDS:-10}

install_apt_packages linux-perf
bench_stack_up --release-extension

db=bench
stack_database "$db" migrated >/dev/null
say "loading fixtures (2M travelers, 1M of them with a profile)"
stack_psql -d "$db" -f "$PW_ROOT/bench/sql/setup.sql" >/dev/null
stack_psql -d "$db" -c "ALTER TABLE traveler_profiles DISABLE TRIGGER traveler_profiles_completion" >/dev/null
export PGOPTIONS='-c request.headers={"x-forwarded-for":"203.0.113.7,10.0.0.1","user-agent":"parker-bench/1.0"}'

work=$(mktemp -d /tmp/parker-wallet-profile.XXXXXX)
say "profiling $script, $clients client(s), ${seconds}s"
perf record -q -F 2999 -a -o "$work/perf.data" -- \
  "$PG_BIN/pgbench" -n -M prepared -c "$clients" -j "$clients" -T "$seconds" "$@" -f "$PW_ROOT/bench/sql/$script" \
  -h "$PW_PGHOST" -p "$PW_PGPORT" -U postgres "$db" 2>&1 | grep -E '^(tps|latency average)'
report() { perf report -q -i "$work/perf.data" --comm postgres --stdio "$@" 2>/dev/null | grep -v '^$'; }
printf '\nthe backends (postgres processes) by library: postgres itself, the kernel, our extension\n'
report --sort dso --percent-limit 1
printf '\nthe backends by function (own time; unnamed addresses are in the stripped postgres binary)\n'
report --sort dso,symbol --percent-limit 0.6 | head -45
rm -rf "$work"
