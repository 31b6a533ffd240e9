#!/usr/bin/env bash
# Encryption throughput: the sidecar over its socket (1/8/64 clients), the same
# through wallet.decrypt() from SQL, and a per-record KMS baseline (moto), all in
# one run on a throwaway stack with release builds. Prints tables; asserts nothing.
#
#   bench/crypto.sh                    3 s per measurement
#   BENCH_SECONDS=10 bench/crypto.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

seconds=${BENCH_SECONDS:-3}
bench_stack_up --release-extension crypto-bench

BENCH_SECONDS=$seconds "$CARGO_TARGET_DIR/release/crypto-bench" | grep -v '^CIPHERTEXT='

db=bench
stack_database "$db"
stack_psql -d "$db" -c "CREATE TABLE bench_record AS SELECT wallet.encrypt(decode(repeat('07', 256), 'hex'),
  '{\"user_id\":\"a11ce000-0000-4000-8000-000000000001\",\"table\":\"payment_methods\",\"column\":\"encrypted_card_data\",\"record_id\":\"0000000a-0000-4000-8000-000000000001\"}'::jsonb) AS record"
printf '\n%-52s %10s %10s\n' "wallet.decrypt() from SQL (pgbench, ${seconds} s)" "ops/s" "avg µs"
for clients in 1 8; do
  out=$("$PG_BIN/pgbench" -n -M prepared -c "$clients" -j "$clients" -T "$seconds" -f "$PW_ROOT/bench/sql/decrypt.sql" \
        -h "$PW_PGHOST" -p "$PW_PGPORT" -U postgres "$db" 2>&1) || { echo "$out" >&2; die "pgbench failed"; }
  tps=$(echo "$out" | awk '/^tps = / { printf "%.0f", $3 }')
  latency=$(echo "$out" | awk '/^latency average = / { printf "%.0f", $4 * 1000 }')
  printf '%-52s %10s %10s\n' "SELECT wallet.decrypt(...), $clients clients" "$tps" "$latency"
done
