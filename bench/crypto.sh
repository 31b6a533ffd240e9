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
printf '\n%-52s %10s %10s %8s\n' "wallet.decrypt() from SQL (pgbench, ${seconds} s)" "ops/s" "avg µs" "ratio"
# Baseline: the same one-row SELECT without the decryption, in the same run.
pgbench_tps() { # clients script
  local out
  out=$("$PG_BIN/pgbench" -n -M prepared -c "$1" -j "$1" -T "$seconds" -f "$2" \
        -h "$PW_PGHOST" -p "$PW_PGPORT" -U postgres "$db" 2>&1) || { echo "$out" >&2; die "pgbench failed"; }
  echo "$out" | awk '/^tps = / { tps = $3 } /^latency average = / { lat = $4 * 1000 } END { printf "%.0f %.0f\n", tps, lat }'
}
for clients in 1 8; do
  read -r base_tps base_latency < <(pgbench_tps "$clients" "$PW_ROOT/bench/sql/select_record.sql")
  read -r tps latency < <(pgbench_tps "$clients" "$PW_ROOT/bench/sql/decrypt.sql")
  printf '%-52s %10s %10s %8s\n' "SELECT length(record) (baseline), $clients clients" "$base_tps" "$base_latency" "1.00x"
  decrypt_ratio=$(awk -v a="$tps" -v b="$base_tps" 'BEGIN { printf "%.2fx", a / b }')
  printf '%-52s %10s %10s %8s\n' "SELECT wallet.decrypt(...), $clients clients" "$tps" "$latency" "$decrypt_ratio"
  bench_summary "SELECT wallet.decrypt(...), $clients client(s)" "$tps/s vs $base_tps/s plain one-row SELECT" \
    "$decrypt_ratio" "$([ "$clients" = 1 ] && echo '≥ 0.7x' || echo '(no target)')"
done
