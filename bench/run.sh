#!/usr/bin/env bash
# Benchmarks of the extension against baselines measured in the same run, on a
# throwaway cluster: the audit trigger (1 client; 2 clients over 10k travelers
# and over one), completion tracking and its backfill, RLS on 1M cards. Prints
# a table; no number here is asserted anywhere.
#
#   bench/run.sh                 every part; 10 s per pgbench run, 2 rounds
#   bench/run.sh backfill rls    only those parts (audit, completion, backfill, rls)
#   BENCH_SECONDS=30 BENCH_ROUNDS=3 bench/run.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

seconds=${BENCH_SECONDS:-10}
rounds=${BENCH_ROUNDS:-2}
bench_dir="$PW_ROOT/bench"
parts=${*:-audit completion backfill rls}
part() { [[ " $parts " == *" $1 "* ]]; }

bench_stack_up --release-extension

db=bench
stack_database "$db" migrated >/dev/null
say "loading fixtures (2M travelers, 1M of them with a profile)"
stack_psql -d "$db" -f "$bench_dir/sql/setup.sql" >/dev/null

# Requests carry PostgREST's headers, so every variant does the full work.
export PGOPTIONS='-c request.headers={"x-forwarded-for":"203.0.113.7,10.0.0.1","user-agent":"parker-bench/1.0"}'

tps() { # clients script [pgbench option...] -> transactions per second of one pgbench run
  local clients=$1 script=$2 out
  shift 2
  out=$("$PG_BIN/pgbench" -n -M prepared -c "$clients" -j "$clients" -T "$seconds" "$@" -f "$bench_dir/sql/$script" \
      -h "$PW_PGHOST" -p "$PW_PGPORT" -U postgres "$db" 2>&1) \
    || { echo "$out" >&2; die "pgbench $script failed (output above)"; }
  echo "$out" | awk '/^tps = / { printf "%.0f", $3 }'
}
triggers() { # table enable|disable trigger...
  local table=$1 action=$2; shift 2
  for trigger in "$@"; do
    stack_psql -d "$db" -c "ALTER TABLE $table ${action^^} TRIGGER $trigger"
  done
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }

declare -A runs
# variant name -> runs[$name,none|ours|plpgsql] with the same statement
audit_variants() { # name table clients script [pgbench option...]
  local name=$1 table=$2; shift 2
  triggers "$table" disable parker_wallet_audit bench_plpgsql_audit
  runs[$name,none]+="$(tps "$@") "
  triggers "$table" enable parker_wallet_audit
  runs[$name,ours]+="$(tps "$@") "
  triggers "$table" disable parker_wallet_audit
  triggers "$table" enable bench_plpgsql_audit
  runs[$name,plpgsql]+="$(tps "$@") "
  triggers "$table" disable bench_plpgsql_audit
}
# The completion trigger is measured on its own (below), and off elsewhere.
triggers traveler_profiles disable traveler_profiles_completion
if part audit; then
  say "audit trigger: $rounds round(s) of ${seconds}s per variant and statement"
  for round in $(seq "$rounds"); do
    audit_variants insert traveler_profiles 1 insert.sql
    audit_variants update traveler_profiles 1 update.sql
    audit_variants insert2 campaigns 2 insert_campaign.sql -D travelers=10000
    audit_variants insert2one campaigns 2 insert_campaign.sql -D travelers=1
    say "round $round done"
  done
fi
# The other parts measure without the audit trigger.
triggers traveler_profiles disable parker_wallet_audit

if part completion; then
  say "completion tracking: single-profile UPDATE with and without the trigger"
  for round in $(seq "$rounds"); do
    triggers traveler_profiles disable traveler_profiles_completion
    runs[completion,off]+="$(tps 1 update.sql) "
    triggers traveler_profiles enable traveler_profiles_completion
    runs[completion,on]+="$(tps 1 update.sql) "
  done
fi

if part backfill; then
  say "completion backfill of 2M travelers: ours vs one set-based SQL statement"
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
  stack_psql -d "$db" -c "TRUNCATE profile_completion_tracking"
  backfill_scores=$(seconds_of "SELECT bench_sql_refresh_scores()")
fi

# Last: its 1M cards would weigh on the other parts' figures.
if part rls; then
  say "loading 1M cards (100k travelers, 10 each)"
  stack_psql -d "$db" -f "$bench_dir/sql/rls_setup.sql" >/dev/null
  say "RLS: a traveler's cards out of 1M, as authenticated under RLS and as the owner with a WHERE"
  for round in $(seq "$rounds"); do
    runs[rls,none]+="$(tps 1 rls_none.sql) "
    runs[rls,ours]+="$(tps 1 rls_own.sql) "
  done
fi

m() { echo "${runs[$1]}" | tr ' ' '\n' | grep . | median; }
row() { printf '%-58s %12s %10s\n' "$@"; }
printf '\n'
row "benchmark (median of $rounds x ${seconds}s)" "rows/s" "ratio"
if part audit; then
  for variant in "insert:INSERT, 1 client" "update:UPDATE, 1 client" \
                 "insert2:INSERT, 2 clients, 10k travelers" "insert2one:INSERT, 2 clients, one traveler"; do
    name=${variant%%:*} label=${variant#*:}
    none=$(m "$name,none"); ours=$(m "$name,ours"); plpgsql=$(m "$name,plpgsql")
    row "$label: no audit trigger (a)" "$none" "1.00"
    row "$label: parker_wallet audit trigger (b)" "$ours" "$(ratio "$ours" "$none")"
    row "$label: PL/pgSQL audit trigger (c)" "$plpgsql" "$(ratio "$plpgsql" "$none")"
    row "$label: (b) / (c)" "" "$(ratio "$ours" "$plpgsql")"
    bench_summary "audit trigger, $label" "$ours/s vs $none/s without" "$(ratio "$ours" "$none")x" \
      "$([ "$name" = insert2one ] && echo '≥ 0.5x' || echo '≥ 0.7x')"
  done
fi
if part completion; then
  off=$(m completion,off); on=$(m completion,on)
  row "profile update, no completion trigger" "$off" "1.00"
  row "profile update, completion trigger" "$on" "$(ratio "$on" "$off")"
fi
if part rls; then
  none=$(m rls,none); ours=$(m rls,ours)
  row "own cards of 1M: table owner, explicit WHERE (baseline)" "$none" "1.00"
  row "own cards of 1M: authenticated under RLS" "$ours" "$(ratio "$ours" "$none")"
  bench_summary "RLS own-rows SELECT on 1M cards, 1 client" "$ours/s vs $none/s without RLS" \
    "$(ratio "$ours" "$none")x" "keep (≈ 1x)"
fi
if part backfill; then
  printf '\n'
  row "backfill of $tracked travelers" "seconds" "ratio"
  row "set-based SQL statement, the same rows (baseline)" "$backfill_sql" "1.00"
  row "CALL wallet.refresh_all_completion()" "$backfill_ours" "$(ratio "$backfill_ours" "$backfill_sql")"
  row "set-based SQL, scores only (lists left empty)" "$backfill_scores" "$(ratio "$backfill_scores" "$backfill_sql")"
  row "CALL wallet.refresh_all_completion() / scores only" "" "$(ratio "$backfill_ours" "$backfill_scores")"
  bench_summary "completion backfill, $tracked travelers" \
    "${backfill_ours} s vs ${backfill_sql} s set-based SQL (${backfill_scores} s scores only)" \
    "$(ratio "$backfill_ours" "$backfill_sql")x ($(ratio "$backfill_ours" "$backfill_scores")x scores only)" "≤ 1.2x"
fi
