#!/usr/bin/env bash
# Brings up the whole local stack and walks a traveler through it.
#
#   scripts/demo.sh          run the walk, then tear the stack down
#   scripts/demo.sh --keep   leave the stack running and print how to reach it
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

keep=false
case "${1:-}" in --keep) keep=true ;; "") ;; *) die "usage: $0 [--keep]" ;; esac

"$PW_ROOT/scripts/bootstrap.sh"
"$PW_ROOT/scripts/build.sh"

stack_dir=$(mktemp -d /tmp/parker-wallet-demo.XXXXXX)
if $keep; then
  trap 'echo; say "stack left running in $stack_dir; stop it with: scripts/stack.sh down $stack_dir"' EXIT
else
  trap '"$PW_ROOT/scripts/stack.sh" down "$stack_dir"' EXIT INT TERM
fi
# The demo walks the plain cluster only: no Supabase-shaped one to start.
PW_SUPABASE_CLUSTER=0 "$PW_ROOT/scripts/stack.sh" up "$stack_dir"
set -a; source "$stack_dir/stack.env"; set +a

db=parker_demo
export DATABASE_URL="postgres://postgres@$PW_PGHOST:$PW_PGPORT/$db"
step() { printf '\n\033[1;36m## %s\033[0m\n' "$*"; }

# As PostgREST serves a request: role `authenticated`, the traveler's verified
# claims and request headers, all local to one transaction.
as_traveler() { # user-id, sql
  stack_psql -d "$db" <<SQL
BEGIN;
SELECT set_config('role', 'authenticated', true),
       set_config('request.jwt.claims', '{"sub":"$1","role":"authenticated"}', true),
       set_config('request.headers', '{"user-agent":"parker-demo/1.0","x-forwarded-for":"203.0.113.7"}', true) \gset
$2
COMMIT;
SQL
}

ADA=a11ce000-0000-4000-8000-00000000ada1
BOB=b0b00000-0000-4000-8000-000000000b0b

step "Install: CREATE EXTENSION parker_wallet, then the migrations"
stack_database "$db" migrated
"$PW_SIDECAR_BIN" migrate --dir "$PW_ROOT/migrations" status

step "Sign-up: Supabase Auth creates two travelers"
stack_psql -d "$db" -c "INSERT INTO auth.users (id, email) VALUES ('$ADA', 'ada@example.com'), ('$BOB', 'bob@example.com')"
echo "ada = $ADA"
echo "bob = $BOB"

step "Ada creates her profile through PostgREST (RLS applies)"
as_traveler "$ADA" "INSERT INTO traveler_profiles (user_id, first_name, last_name, date_of_birth, phone_number)
                    VALUES ('$ADA', 'Ada', 'Lovelace', '1990-12-10', '+447700900123');"
as_traveler "$ADA" "SELECT first_name, last_name, phone_number, phone_verified FROM traveler_profiles;"

step "Ada's completion score"
as_traveler "$ADA" "SELECT score, array_to_string(missing_fields, ', ') AS missing FROM wallet.profile_completeness('$ADA');
                    SELECT unnest(recommendations) AS next_steps FROM wallet.profile_completeness('$ADA');"

step "Ada chooses her notifications: the tracked score follows (trigger)"
as_traveler "$ADA" "UPDATE traveler_profiles SET notification_preferences = '{\"email\": true, \"sms\": false}';
                    SELECT completeness_score, array_to_string(missing_fields, ', ') AS missing, last_calculated
                      FROM profile_completion_tracking;"

step "RLS check: Bob sees none of Ada's rows and cannot change them"
as_traveler "$BOB" "SELECT count(*) AS ada_profiles_visible_to_bob FROM traveler_profiles WHERE user_id = '$ADA';
                    WITH changed AS (UPDATE traveler_profiles SET first_name = 'Mallory' WHERE user_id = '$ADA' RETURNING 1)
                    SELECT count(*) AS ada_rows_bob_updated FROM changed;"
stack_psql -d "$db" -c "SELECT first_name AS ada_first_name_after_bob FROM traveler_profiles WHERE user_id = '$ADA'"

step "Ada's audit trail, as she can read it (one hash chain per traveler)"
as_traveler "$ADA" "SELECT chain_seq, action, table_name, host(ip_address) AS ip, user_agent,
                           coalesce(new_data ->> 'first_name', '') AS first_name,
                           encode(substr(row_hash, 1, 6), 'hex') AS hash_prefix
                      FROM traveler_data_audit ORDER BY chain_seq;"

step "The audit chain verifies (no broken row), then a tampered row is caught"
stack_psql -d "$db" -c "SELECT count(*) AS broken_rows FROM wallet.verify_audit_chain()"
stack_psql -d "$db" -c "UPDATE traveler_data_audit SET new_data = jsonb_set(new_data, '{first_name}', '\"Eve\"') WHERE user_id = '$ADA' AND chain_seq = 1"
stack_psql -d "$db" -c "SELECT user_id, chain_seq, reason FROM wallet.verify_audit_chain()"

step "Feature flag at 10% rollout: same buckets as Parker Flight's userInBucket()"
stack_psql -d "$db" -c "INSERT INTO feature_flags (name, enabled, rollout_percent) VALUES ('auto_booking', true, 10)"
stack_psql -d "$db" -c "SELECT who, wallet.flag_bucket(id) AS bucket, wallet.flag_enabled('auto_booking', id) AS sees_auto_booking
                       FROM (VALUES ('ada', '$ADA'::uuid), ('bob', '$BOB'::uuid)) AS t(who, id)"

step "Ada saves a card: Edge Function -> sidecar -> Stripe (localstripe), card data never touches us"
# The sidecar as Edge Functions reach it: wallet routes on, RLS-bound login role.
stack_psql -d "$db" -c "CREATE ROLE pw_demo_sidecar LOGIN NOINHERIT" -c "GRANT parker_wallet_sidecar TO pw_demo_sidecar"
wallet_socket="$PW_STACK_DIR/wallet.sock"
jwt_secret="parker-demo-jwt-secret-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
cat >"$PW_STACK_DIR/wallet-sidecar.toml" <<TOML
[socket]
path = "$wallet_socket"
[callers]
edge = [$(id -u)]
[keys]
provider = "local"
local_key_file = "$PW_STACK_DIR/local-keyring"
[database]
[auth]
[stripe]
api_base = "$PW_LOCALSTRIPE_URL/"
[duffel]
api_base = "$PW_DUFFEL_URL"
TOML
# The Duffel fake of the local stack accepts this test token.
PW_DATABASE_URL="postgres://pw_demo_sidecar@$PW_PGHOST:$PW_PGPORT/$db" PW_JWT_SECRET="$jwt_secret" \
  PW_STRIPE_SECRET_KEY=sk_test_parker_demo PW_DUFFEL_ACCESS_TOKEN=duffel_test_parker_wallet_e2e PW_LOG=warn \
  "$PW_SIDECAR_BIN" serve --config "$PW_STACK_DIR/wallet-sidecar.toml" 2>"$PW_STACK_DIR/wallet-sidecar.log" &
echo $! >>"$PW_STACK_DIR/sidecar.pid.extra"
for _ in $(seq 100); do [ -S "$wallet_socket" ] && break; sleep 0.1; done

# Ada's access token, as Supabase Auth would sign it (HS256, project secret).
ada_token=$(JWT_SECRET="$jwt_secret" SUB="$ADA" python3 - <<'PY'
import base64, hashlib, hmac, json, os, time
b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
claims = b64(json.dumps({"sub": os.environ["SUB"], "role": "authenticated", "aud": "authenticated",
                         "email": "ada@example.com", "exp": int(time.time()) + 3600}).encode())
signature = hmac.new(os.environ["JWT_SECRET"].encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
print(f"{header}.{claims}.{b64(signature)}")
PY
)
wallet() { # method path [json]
  curl -sS --unix-socket "$wallet_socket" -X "$1" "http://sidecar$2" -H "authorization: Bearer $ada_token" \
       -H "user-agent: parker-flight-app/3.2" -H "x-forwarded-for: 203.0.113.7" \
       -H "idempotency-key: demo-$RANDOM$RANDOM" ${3:+-H "content-type: application/json" --data "$3"}
}
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
intent=$(wallet POST /v1/wallet/setup-intents)
intent_id=$(echo "$intent" | json_field "['setup_intent_id']")
client_secret=$(echo "$intent" | json_field "['client_secret']")
echo "SetupIntent $intent_id for customer $(echo "$intent" | json_field "['customer_id']") (client secret goes to Stripe.js only)"
# What Stripe.js does in Ada's browser: the card goes to Stripe, never to us.
pm=$(curl -sS -u sk_test_parker_demo: "$PW_LOCALSTRIPE_URL/v1/payment_methods" -d type=card \
       -d "card[number]=4242424242424242" -d "card[exp_month]=12" -d "card[exp_year]=2031" -d "card[cvc]=123" | json_field "['id']")
curl -sS -u sk_test_parker_demo: "$PW_LOCALSTRIPE_URL/v1/setup_intents/$intent_id/confirm" \
     -d "payment_method=$pm" -d "client_secret=$client_secret" | json_field "['status']" | sed 's/^/SetupIntent confirmed in the browser: /'
wallet POST /v1/wallet/payment-methods "{\"setup_intent_id\":\"$intent_id\"}" >/dev/null
echo "Ada's wallet:"
wallet GET /v1/wallet/payment-methods | python3 -m json.tool
as_traveler "$ADA" "SELECT completeness_score AS score_with_a_card FROM profile_completion_tracking;
                    SELECT chain_seq, table_name, action, new_data ->> 'encrypted_card_data' AS card_ciphertext_in_audit,
                           host(ip_address) AS ip, user_agent
                      FROM traveler_data_audit WHERE table_name IN ('wallet_customers', 'payment_methods') ORDER BY chain_seq;"

step "Ada books a flight: authorize off-session (manual capture) -> Duffel order -> capture"
campaign=$(stack_psql -d "$db" -tA -c "INSERT INTO campaigns (user_id, name, consent_at) VALUES ('$ADA', 'Lisbon in spring', now()) RETURNING id" | head -1)
echo "Campaign $campaign, with Ada's consent to merchant-initiated charges (PSD2)"
book() { # key offer -> the booking as JSON
  curl -sS --unix-socket "$wallet_socket" -X POST http://sidecar/v1/bookings -H "authorization: Bearer $ada_token" \
       -H "idempotency-key: $1" -H "content-type: application/json" \
       --data "{\"campaign_id\":\"$campaign\",\"offer_id\":\"$2\",\"amount\":42000,\"currency\":\"eur\",\"route\":\"LIS-JFK\",
                \"passengers\":[{\"id\":\"pas_1\",\"given_name\":\"Ada\",\"family_name\":\"Lovelace\",\"born_on\":\"1990-12-10\"}]}"
}
summary() { python3 -c "
import json, sys
b = json.load(sys.stdin)['data']
print(f\"booking {b['id']}: {b['state']}, {b['amount']} {b['currency']} on {b['card']['brand']} ..{b['card']['last4']}\"
      + (f\", Duffel order {b['duffel_order_id']} ({b['booking_reference']})\" if b['duffel_order_id'] else '')
      + (f\", failure {b['failure']['code']}\" if b['failure'] else ''))
print('history: ' + ' -> '.join(h['state'] for h in b['history']))"; }
intent_status() { curl -sS -u sk_test_parker_demo: "$PW_LOCALSTRIPE_URL/v1/payment_intents/$1" | json_field "['status']"; }
booked=$(book demo-booking-1 off_0000DemoLisbon1)
echo "$booked" | grep -q "\"data\"" || die "booking failed: $booked"
echo "$booked" | summary
echo "PaymentIntent at Stripe: $(intent_status "$(echo "$booked" | json_field "['data']['payment_intent_id']")")"
echo "The same request again (same Idempotency-Key) is the same booking, charged once:"
book demo-booking-1 off_0000DemoLisbon1 | summary

step "A booking Duffel cannot fulfil (offer sold out): the authorization is released, nothing charged"
voided=$(book demo-booking-2 off_0000DemoSoldOut)
echo "$voided" | summary
echo "PaymentIntent at Stripe: $(intent_status "$(echo "$voided" | json_field "['data']['payment_intent_id']")")"

step "A card whose issuer wants 3-D Secure: the booking waits for Ada, then resumes"
three_ds_intent=$(wallet POST /v1/wallet/setup-intents)
three_ds_id=$(echo "$three_ds_intent" | json_field "['setup_intent_id']")
three_ds_secret=$(echo "$three_ds_intent" | json_field "['client_secret']")
pm=$(curl -sS -u sk_test_parker_demo: "$PW_LOCALSTRIPE_URL/v1/payment_methods" -d type=card \
       -d "card[number]=4000002760003184" -d "card[exp_month]=12" -d "card[exp_year]=2031" -d "card[cvc]=123" | json_field "['id']")
for _ in 1 2; do # confirm, then complete 3-D Secure at set-up, as Stripe.js would
  curl -sS -u sk_test_parker_demo: "$PW_LOCALSTRIPE_URL/v1/setup_intents/$three_ds_id/confirm" \
       -d "client_secret=$three_ds_secret" ${pm:+-d "payment_method=$pm"} >/dev/null
  pm=
done
card=$(wallet POST /v1/wallet/payment-methods "{\"setup_intent_id\":\"$three_ds_id\"}" | json_field "['data']['id']")
wallet POST "/v1/wallet/payment-methods/$card/default" >/dev/null
book demo-booking-3 off_0000DemoLisbon3 | summary
three_ds_booking=$(stack_psql -d "$db" -tA -c "SELECT id FROM booking_charges WHERE idempotency_key = 'demo-booking-3'" | head -1)
echo "Outbox message for Parker Flight's notifier (a link, no secret):"
stack_psql -d "$db" -c "SELECT kind, payload FROM notification_outbox WHERE user_id = '$ADA'"
shown=$(wallet GET "/v1/bookings/$three_ds_booking")
pi=$(echo "$shown" | json_field "['data']['authentication']['payment_intent_id']")
pi_secret=$(echo "$shown" | json_field "['data']['authentication']['client_secret']")
# What Stripe.js does when Ada opens the link and completes the challenge.
curl -sS -u sk_test_parker_demo: -X POST "$PW_LOCALSTRIPE_URL/v1/payment_intents/$pi/_authenticate?client_secret=$pi_secret&success=true" >/dev/null
wallet POST "/v1/bookings/$three_ds_booking/resume" | summary

step "kms-sidecar reconcile (cron): nothing left unsettled"
PW_DATABASE_URL="postgres://pw_demo_sidecar@$PW_PGHOST:$PW_PGPORT/$db" PW_JWT_SECRET="$jwt_secret" \
  PW_STRIPE_SECRET_KEY=sk_test_parker_demo PW_DUFFEL_ACCESS_TOKEN=duffel_test_parker_wallet_e2e PW_LOG=warn \
  "$PW_SIDECAR_BIN" reconcile --config "$PW_STACK_DIR/wallet-sidecar.toml" --min-age-secs 0

step "Card metadata sealed by the sidecar (envelope encryption; the database sees ciphertext; bound to traveler, table, column and row)"
stack_psql -d "$db" <<SQL
CREATE TEMP TABLE sealed AS
  SELECT wallet.encrypt(convert_to('{"brand":"visa","last4":"4242"}', 'UTF8'),
         '{"user_id":"$ADA","table":"payment_methods","column":"encrypted_card_data","record_id":"00000000-0000-4000-8000-0000000000c1"}') AS record;
SELECT get_byte(record, 0) AS format_version, length(record) AS bytes,
       encode(substr(record, 1, 16), 'hex') || '...' AS first_bytes FROM sealed;
SELECT convert_from(wallet.decrypt(record,
         '{"user_id":"$ADA","table":"payment_methods","column":"encrypted_card_data","record_id":"00000000-0000-4000-8000-0000000000c1"}'), 'UTF8') AS decrypted_for_ada
  FROM sealed;
DO \$\$
BEGIN
  PERFORM wallet.decrypt(record, '{"user_id":"$BOB","table":"payment_methods","column":"encrypted_card_data","record_id":"00000000-0000-4000-8000-0000000000c1"}')
    FROM sealed;
EXCEPTION WHEN data_exception THEN
  RAISE NOTICE 'decrypting as bob fails: %', SQLERRM;
END
\$\$;
SELECT wallet.sidecar_health() ->> 'ready' AS sidecar_ready;
SQL

step "RLS report for the public schema (no findings expected)"
stack_psql -d "$db" -c "SELECT table_name, rls_enabled, rls_forced, policy_count, policy_columns_indexed,
                            cardinality(findings) AS findings
                       FROM wallet.rls_report(ARRAY['public'])"

step "Sidecar health over its Unix socket"
curl -sS --unix-socket "$PW_SIDECAR_SOCKET" http://sidecar/healthz
echo

if $keep; then
  echo
  echo "psql:     psql -h $PW_PGHOST -p $PW_PGPORT -U postgres $db"
  echo "sidecar:  curl --unix-socket $PW_SIDECAR_SOCKET http://sidecar/healthz"
fi
say "demo finished"
