#!/usr/bin/env bash
# Benchmarks of the extension against baselines measured in the same run, on a
# throwaway cluster. Prints a table; no number here is asserted anywhere.
#
#   bench/run.sh                 defaults: 10 s per pgbench run, 2 rounds
#   BENCH_SECONDS=30 BENCH_ROUNDS=3 bench/run.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

seconds=${BENCH_SECONDS:-10}
rounds=${BENCH_ROUNDS:-2}
bench_dir="$PW_ROOT/bench"

bench_stack_up --release-extension

db=bench
stack_database "$db" migrated >/dev/null
say "loading fixtures (2M travelers, 1M of them with a profile)"
stack_psql -d "$db" -f "$bench_dir/sql/setup.sql" >/dev/null

# Requests carry PostgREST's headers, so every variant does the full work.
export PGOPTIONS='-c request.headers={"x-forwarded-for":"203.0.113.7,10.0.0.1","user-agent":"parker-bench/1.0"}'

tps() { # script -> transactions per second of one pgbench run
  local out
  out=$("$PG_BIN/pgbench" -n -M prepared -c 1 -j 1 -T "$seconds" -f "$bench_dir/sql/$1" \
      -h "$PW_PGHOST" -p "$PW_PGPORT" -U postgres "$db" 2>&1) \
    || { echo "$out" >&2; die "pgbench $1 failed (output above)"; }
  echo "$out" | awk '/^tps = / { printf "%.0f", $3 }'
}
triggers() { # enable|disable trigger...
  local action=$1; shift
  for trigger in "$@"; do
    stack_psql -d "$db" -c "ALTER TABLE traveler_profiles ${action^^} TRIGGER $trigger"
  done
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }

declare -A runs
say "audit trigger: $rounds round(s) of ${seconds}s per variant and statement"
triggers disable traveler_profiles_completion
for round in $(seq "$rounds"); do
  for statement in insert update; do
    triggers disable parker_wallet_audit bench_plpgsql_audit
    runs[$statement,none]+="$(tps "$statement.sql") "
    triggers enable parker_wallet_audit
    runs[$statement,ours]+="$(tps "$statement.sql") "
    triggers disable parker_wallet_audit
    triggers enable bench_plpgsql_audit
    runs[$statement,plpgsql]+="$(tps "$statement.sql") "
    triggers disable bench_plpgsql_audit
  done
  say "round $round done"
done

say "completion tracking: single-profile UPDATE with and without the trigger"
for round in $(seq "$rounds"); do
  triggers disable traveler_profiles_completion
  runs[completion,off]+="$(tps update.sql) "
  triggers enable traveler_profiles_completion
  runs[completion,on]+="$(tps update.sql) "
done

say "completion backfill of 1M profiles: ours vs one set-based SQL statement"
seconds_of() { # sql -> wall-clock seconds
  local start end
  start=$(date +%s.%N)
  stack_psql -d "$db" -c "$1" >/dev/null
  end=$(date +%s.%N)
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }'
}
stack_psql -d "$db" -c "TRUNCATE profile_completion_tracking"
backfill_ours=$(seconds_of "CALL wallet.refresh_all_completion(10000)")
stack_psql -d "$db" -c "TRUNCATE profile_completion_tracking"
backfill_sql=$(seconds_of "SELECT bench_sql_refresh_all()")
tracked=$(stack_psql -d "$db" -Atc "SELECT count(*) FROM profile_completion_tracking")

m() { echo "${runs[$1]}" | tr ' ' '\n' | grep . | median; }
printf '\n%-44s %12s %10s\n' "benchmark (median of $rounds x ${seconds}s, 1 client)" "rows/s" "ratio"
for statement in insert update; do
  none=$(m "$statement,none"); ours=$(m "$statement,ours"); plpgsql=$(m "$statement,plpgsql")
  printf '%-44s %12s %10s\n' "$statement: no audit trigger (a)" "$none" "1.00"
  printf '%-44s %12s %10s\n' "$statement: parker_wallet audit trigger (b)" "$ours" "$(ratio "$ours" "$none")"
  printf '%-44s %12s %10s\n' "$statement: PL/pgSQL audit trigger (c)" "$plpgsql" "$(ratio "$plpgsql" "$none")"
  printf '%-44s %12s %10s\n' "$statement: (b) / (c)" "" "$(ratio "$ours" "$plpgsql")"
done
off=$(m completion,off); on=$(m completion,on)
printf '%-44s %12s %10s\n' "profile update, no completion trigger" "$off" "1.00"
printf '%-44s %12s %10s\n' "profile update, completion trigger" "$on" "$(ratio "$on" "$off")"
printf '\n%-44s %12s %10s\n' "backfill of $tracked travelers" "seconds" "ratio"
printf '%-44s %12s %10s\n' "set-based SQL statement (baseline)" "$backfill_sql" "1.00"
printf '%-44s %12s %10s\n' "CALL wallet.refresh_all_completion()" "$backfill_ours" "$(ratio "$backfill_ours" "$backfill_sql")"
