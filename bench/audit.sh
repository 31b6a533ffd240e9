#!/usr/bin/env bash
# Signed audit checkpoints at scale: `audit-checkpoint` and `audit-verify` on a
# million travelers' chains (release builds, moto's KMS), each beside the bare
# read it cannot avoid, measured in the same run. Prints a table; asserts nothing.
#
#   bench/audit.sh                        1,000,000 travelers, 1% of them active between checkpoints
#   BENCH_TRAVELERS=100000 bench/audit.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

travelers=${BENCH_TRAVELERS:-1000000}
active=$((travelers / 100))
bench_stack_up --release-extension
say "building the release sidecar"
cargo build --quiet --release -p kms-sidecar --bin kms-sidecar
sidecar="$CARGO_TARGET_DIR/release/kms-sidecar"

db=bench
stack_database "$db" migrated >/dev/null
say "loading $travelers travelers, one audit row each"
stack_psql -d "$db" -v travelers="$travelers" -f "$PW_ROOT/bench/sql/audit_chains.sql" >/dev/null

signing_key=$("$PW_VENV/bin/python" - "$PW_MOTO_URL" <<'PY'
import sys, boto3
kms = boto3.client("kms", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
print(kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"])
PY
)
work=$(mktemp -d /tmp/parker-wallet-audit-bench.XXXXXX)
cat > "$work/sidecar.toml" <<TOML
[socket]
path = "$work/unused.sock"
[keys]
provider = "aws-kms"
[keys.aws_kms]
key_id = "alias/unused-by-the-audit-commands"
region = "us-east-1"
endpoint_url = "$PW_MOTO_URL"
[audit]
signing_key_id = "$signing_key"
checkpoint_log = "$work/checkpoints.jsonl"
TOML
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export DATABASE_URL="postgres://postgres@$PW_PGHOST:$PW_PGPORT/$db"

now() { date +%s.%N; }
seconds_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }
timed_sql() { local start; start=$(now); stack_psql -d "$db" -c "$1" >/dev/null; seconds_since "$start"; }
kms_calls() { grep -o '[0-9]* KMS call' | grep -o '^[0-9]*'; }
declare -A took calls

say "baselines: the reads each command cannot avoid"
took[heads]=$(timed_sql "SELECT count(*) FROM (SELECT DISTINCT ON (user_id) user_id, chain_seq, row_hash
                           FROM traveler_data_audit ORDER BY user_id DESC, chain_seq DESC) AS h")
took[rows]=$(timed_sql "SELECT count(*) FROM (SELECT * FROM traveler_data_audit ORDER BY user_id, chain_seq) AS r")

say "first checkpoint (every head)"
start=$(now); out=$("$sidecar" audit-checkpoint --config "$work/sidecar.toml"); took[first]=$(seconds_since "$start")
calls[first]=$(echo "$out" | kms_calls)

say "$active travelers write once more"
stack_psql -d "$db" -c "INSERT INTO traveler_profiles (user_id, first_name)
  SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, 'Ada' FROM generate_series(1, $active) AS n" >/dev/null

say "second checkpoint ($active heads moved)"
start=$(now); out=$("$sidecar" audit-checkpoint --config "$work/sidecar.toml"); took[second]=$(seconds_since "$start")
calls[second]=$(echo "$out" | kms_calls)

say "verification"
start=$(now); out=$("$sidecar" audit-verify --config "$work/sidecar.toml"); took[verify]=$(seconds_since "$start")
calls[verify]=$(echo "$out" | kms_calls)
echo "$out" | tail -1 >&2
took[in_db]=$(timed_sql "SELECT count(*) FROM wallet.verify_audit_chain()")
log_size=$(du -h "$work/checkpoints.jsonl" | cut -f1)
rm -rf "$work"

printf '\n%-58s %9s %9s %9s\n' "$travelers travelers, one chain each" "seconds" "ratio" "KMS calls"
row() { printf '%-58s %9s %9s %9s\n' "$1" "$2" "${3:-}" "${4:-}"; }
row "baseline: read every chain head (one SQL statement)" "${took[heads]}"
row "audit-checkpoint, first (all heads written)" "${took[first]}" "$(ratio "${took[first]}" "${took[heads]}")x" "${calls[first]}"
row "audit-checkpoint, next ($active heads moved)" "${took[second]}" "$(ratio "${took[second]}" "${took[heads]}")x" "${calls[second]}"
row "baseline: read every audit row in chain order" "${took[rows]}"
row "audit-verify (log, signatures, every chain)" "${took[verify]}" "$(ratio "${took[verify]}" "${took[rows]}")x" "${calls[verify]}"
row "wallet.verify_audit_chain() in the database" "${took[in_db]}" "$(ratio "${took[in_db]}" "${took[rows]}")x"
row "checkpoint log after two checkpoints" "$log_size"
