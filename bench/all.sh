#!/usr/bin/env bash
# Every figure the performance table tracks, in one command: the audit
# trigger, completion tracking and its backfill, RLS (bench/run.sh), encryption
# and wallet.decrypt() from SQL (bench/crypto.sh), the booking saga
# (bench/bookings.sh) and the wallet routes (bench/wallet.sh), each beside its
# baseline from the same run, release builds. Prints each benchmark's own
# table, then one summary with the machine's load when the run began. Asserts
# nothing.
#
#   bench/all.sh                               the benchmarks' own defaults
#   BENCH_SECONDS=5 BENCH_ROUNDS=1 bench/all.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

BENCH_SUMMARY=$(mktemp /tmp/parker-wallet-bench-summary.XXXXXX)
export BENCH_SUMMARY
trap 'rm -f "$BENCH_SUMMARY"' EXIT
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load=$(cut -d' ' -f1-3 /proc/loadavg)

for bench in run crypto bookings wallet; do
  say "bench/$bench.sh"
  "$PW_ROOT/bench/$bench.sh"
done

printf '\nsummary: %s, %s cores, load average %s at the start (1, 5, 15 min)\n' "$started" "$(nproc)" "$load"
awk -F'|' '
  { what[NR] = $1; measured[NR] = $2; ratio[NR] = $3; target[NR] = $4
    for (i = 1; i <= 4; i++) if (length($i) > w[i]) w[i] = length($i) }
  END {
    if (w[1] < 4) w[1] = 4
    printf "%-" w[1] "s  %-" w[2] "s  %-" w[3] "s  %s\n", "what", "measured", "ratio", "target"
    for (n = 1; n <= NR; n++)
      printf "%-" w[1] "s  %-" w[2] "s  %-" w[3] "s  %s\n", what[n], measured[n], ratio[n], target[n]
  }' "$BENCH_SUMMARY"
