#!/usr/bin/env bash
# The load test against the SLO (p95 < 200 ms, errors < 0.1 %): an open model
# (a fixed arrival rate per step, whatever the sidecar's pace) over the socket,
# a realistic mix (cards listed, added and made default, setup intents,
# encrypt/decrypt, bookings shown and made) against localstripe and the Duffel
# fake, release builds, on a throwaway stack. Prints per-route p50/p95/p99,
# the sidecar's own time (without its waits on Stripe, Duffel, KMS and the
# pool), errors, RSS, and the highest rate that held the SLO. Asserts nothing.
#
#   bench/load.sh                                   20 s at each of 10, 25, 50, 100, 150 req/s
#   LOAD_SECONDS=30 LOAD_RATES=20,40,80 bench/load.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

bench_stack_up --release-extension load-test
printf 'machine: %s cores, load average %s\n' "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
"$CARGO_TARGET_DIR/release/load-test"
