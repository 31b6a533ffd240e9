#!/usr/bin/env bash
# Booking throughput and latency: POST /v1/bookings through the sidecar (the
# saga) against the bare Stripe and Duffel calls of a booking, in one run on a
# throwaway stack (localstripe, the Duffel fake) with release builds. Prints a
# table; asserts nothing.
#
#   bench/bookings.sh                  3 s per measurement
#   BENCH_SECONDS=10 bench/bookings.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

seconds=${BENCH_SECONDS:-3}
# The harness builds the test template and roles on first use (scripts/templates.sh).
bench_stack_up --release-extension booking-bench

BENCH_SECONDS=$seconds "$CARGO_TARGET_DIR/release/booking-bench"
