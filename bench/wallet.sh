#!/usr/bin/env bash
# The wallet routes' own time in the sidecar (list, default, setup intent, add,
# delete), apart from the Stripe emulator's, against GET /healthz on the same
# socket, in one run on a throwaway stack (localstripe) with release builds.
# Prints a table; asserts nothing.
#
#   bench/wallet.sh                    3 s per measurement
#   BENCH_SECONDS=10 bench/wallet.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

seconds=${BENCH_SECONDS:-3}
bench_stack_up --release-extension wallet-bench

BENCH_SECONDS=$seconds "$CARGO_TARGET_DIR/release/wallet-bench"
