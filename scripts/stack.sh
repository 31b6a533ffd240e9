#!/usr/bin/env bash
# The local stack: a throwaway PostgreSQL 15 cluster, a second one shaped like
# Supabase's, localstripe, moto (KMS) and the sidecar, all bound to loopback or
# to sockets inside one stack directory.
#
#   scripts/stack.sh up DIR     start everything; writes DIR/stack.env
#   scripts/stack.sh down DIR   stop everything started in DIR and remove DIR
#
# `up` assumes scripts/build.sh ran (extension installed, sidecar built).
# PW_SUPABASE_CLUSTER=0 leaves the Supabase-shaped cluster out (it is for the
# tests; tests/supabase/README.md).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { die "usage: $0 up|down DIR"; }
[ $# -eq 2 ] || usage
action=$1 dir=$2

wait_for() { # description, attempts, command...
  local what=$1 tries=$2; shift 2
  for _ in $(seq "$tries"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  die "$what did not come up (logs in $dir)"
}

http_ok() { python3 - "$1" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=1)
except urllib.error.HTTPError:
    pass  # any HTTP answer means the server is up
PY
}

# The Supabase-shaped cluster: bootstrap superuser supabase_admin, as on
# Supabase, and supautils in every session with Supabase's own settings, plus
# parker_wallet as an extension the non-superuser `postgres` may create (its
# after-create script, shipped in pg_extension/supautils/, then runs as
# supabase_admin). Otherwise as fast and as private as the plain one. Its
# databases are built by the test harness on first use (scripts/templates.sh).
supabase_cluster_up() { # owner, sidecar socket, port
  local owner=$1 socket=$2 pgport=$3
  local pgdata="$dir/supabase-pgdata" pgsock="$dir/supabase-pgsocket" scripts="$dir/supabase-extension-scripts"
  mkdir -p "$pgsock"
  chown "$owner" "$pgsock"
  # A copy the backends (the cluster user) can read wherever the clone lives.
  mkdir -p "$scripts"
  cp -R "$PW_ROOT/pg_extension/supautils/." "$scripts/"
  chmod -R a+rX "$scripts"

  say "Supabase-shaped PostgreSQL 15 on 127.0.0.1:$pgport (data in $pgdata)"
  as_cluster_user "$PG_BIN/initdb" -D "$pgdata" -U supabase_admin --auth=trust -E UTF8 --no-sync \
    >"$dir/supabase-initdb.log" 2>&1 || die "initdb failed: see $dir/supabase-initdb.log"

  # Supabase's supautils.conf as is, but for two settings: parker_wallet joins
  # the privileged extensions, and the custom scripts are ours.
  local conf="$PW_ROOT/tests/supabase/vendor/supabase-postgres/ansible/files/postgresql_config/supautils.conf.j2"
  ! grep -q '{[{%]' "$conf" || die "$conf now has Jinja in it: render it here before use"
  sed -E -e "s|^(supautils\.privileged_extensions = '[^']*)'\$|\1, parker_wallet'|" \
         -e "s|^(supautils\.privileged_extensions_custom_scripts_path = ).*\$|\1'$scripts'|" \
         "$conf" >"$pgdata/supautils.conf"
  grep -q "^supautils\.privileged_extensions = '.*, parker_wallet'\$" "$pgdata/supautils.conf" \
    && grep -qF "supautils.privileged_extensions_custom_scripts_path = '$scripts'" "$pgdata/supautils.conf" \
    || die "could not adapt $conf (did its format change?)"
  cat >>"$pgdata/postgresql.conf" <<CONF

# Supabase-shaped, for the tests (scripts/stack.sh). Logical WAL as on Supabase,
# whose init script creates the supabase_realtime publication.
wal_level = logical
session_preload_libraries = 'supautils'
include 'supautils.conf'
CONF
  chown "$owner" "$pgdata/supautils.conf"

  as_cluster_user "$PG_BIN/pg_ctl" -D "$pgdata" -l "$dir/supabase-postgres.log" -w -t 30 start \
    -o "-c listen_addresses=127.0.0.1 -p $pgport -c unix_socket_directories=$pgsock -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c parker_wallet.sidecar_socket=$socket" \
    >/dev/null || die "the Supabase-shaped PostgreSQL did not start: see $dir/supabase-postgres.log"
  # pg_ctl only pings the postmaster: a session proves supautils loads.
  psql -X -q -h 127.0.0.1 -p "$pgport" -U supabase_admin -d postgres -c "SELECT" >/dev/null \
    || die "no session on the Supabase-shaped PostgreSQL (supautils?): see $dir/supabase-postgres.log"
}

stack_up() {
  [ -x "$PG_BIN/initdb" ] || die "PostgreSQL 15 server binaries not found in $PG_BIN (run scripts/bootstrap.sh)"
  [ -x "$PW_VENV/bin/moto_server" ] || die "emulator venv missing (run scripts/bootstrap.sh)"
  local sidecar_bin="${PW_SIDECAR_BIN:-$CARGO_TARGET_DIR/debug/kms-sidecar}"
  [ -x "$sidecar_bin" ] || die "sidecar not built (run scripts/build.sh)"
  mkdir -p "$dir"
  local owner; owner=$(cluster_user)
  local pgdata="$dir/pgdata" pgsock="$dir/pgsocket"
  mkdir -p "$pgsock"
  chown "$owner" "$dir" "$pgsock"
  chmod 0755 "$dir"

  local socket="$dir/sidecar.sock"
  local pgport="${PW_PGPORT:-$(free_port)}"
  require_free_port "$pgport"

  # In the background (a subshell: errexit and die hold there), so that its
  # initdb overlaps the plain cluster's and the emulators' start-up; waited
  # for before stack.env is written.
  local supabase_port="" supabase_pid=""
  if [ "${PW_SUPABASE_CLUSTER:-1}" != 0 ]; then
    [ -f "$("$PG_CONFIG" --pkglibdir)/supautils.so" ] || die "supautils is not installed (run scripts/bootstrap.sh)"
    supabase_port="${PW_SUPABASE_PGPORT:-$(free_port)}"
    require_free_port "$supabase_port"
    supabase_cluster_up "$owner" "$socket" "$supabase_port" &
    supabase_pid=$!
  fi
  say "PostgreSQL 15 on 127.0.0.1:$pgport (data in $pgdata)"
  as_cluster_user "$PG_BIN/initdb" -D "$pgdata" -U postgres --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
    || die "initdb failed: see $dir/initdb.log"
  as_cluster_user "$PG_BIN/pg_ctl" -D "$pgdata" -l "$dir/postgres.log" -w -t 30 start \
    -o "-c listen_addresses=127.0.0.1 -p $pgport -c unix_socket_directories=$pgsock -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c parker_wallet.sidecar_socket=$socket" \
    >/dev/null || die "PostgreSQL did not start: see $dir/postgres.log"

  local moto_port; moto_port=$(free_port)
  "$PW_VENV/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$dir/moto.log" 2>&1 &
  echo $! >"$dir/moto.pid"
  local stripe_port; stripe_port=$(free_port)
  "$PW_VENV/bin/python" "$PW_ROOT/tests/support/localstripe_server.py" --port "$stripe_port" >"$dir/localstripe.log" 2>&1 &
  echo $! >"$dir/localstripe.pid"
  local duffel_bin="$CARGO_TARGET_DIR/debug/duffel-fake"
  [ -x "$duffel_bin" ] || die "Duffel fake not built (run scripts/build.sh)"
  local duffel_port; duffel_port=$(free_port)
  # One offer the fake refuses as sold out, for the demo's failed booking.
  "$duffel_bin" --port "$duffel_port" --refuse-offer off_0000DemoSoldOut >"$dir/duffel.log" 2>&1 &
  echo $! >"$dir/duffel.pid"
  wait_for "moto (KMS) on port $moto_port" 100 http_ok "http://127.0.0.1:$moto_port/moto-api/"
  wait_for "localstripe on port $stripe_port" 100 http_ok "http://127.0.0.1:$stripe_port/v1/customers"
  wait_for "Duffel fake on port $duffel_port" 100 http_ok "http://127.0.0.1:$duffel_port/air/orders"
  say "moto (KMS) on 127.0.0.1:$moto_port, localstripe on 127.0.0.1:$stripe_port, Duffel fake on 127.0.0.1:$duffel_port"

  # The database's backends (the cluster user) may use the crypto routes; we,
  # who run the stack, are the operator. One uid cannot be both: alone, we are both.
  local callers="admin = [$(id -u)]"
  [ "$(id -u "$owner")" != "$(id -u)" ] && callers="database = [$(id -u "$owner")]
$callers"
  cat >"$dir/sidecar.toml" <<TOML
[socket]
path = "$socket"
mode = "660"
group = "$(id -gn "$owner")"

[callers]
$callers

[keys]
provider = "local"
local_key_file = "$dir/local-keyring"
TOML
  PW_LOG_FORMAT=json "$sidecar_bin" serve --config "$dir/sidecar.toml" >"$dir/sidecar.log" 2>&1 &
  echo $! >"$dir/sidecar.pid"
  wait_for "sidecar on $socket" 100 test -S "$socket"
  say "sidecar on $socket"

  if [ -n "$supabase_pid" ]; then
    wait "$supabase_pid" || die "the Supabase-shaped PostgreSQL did not come up (error above)"
  fi

  cat >"$dir/stack.env" <<ENV
PW_STACK_DIR=$dir
PW_PGHOST=127.0.0.1
PW_PGPORT=$pgport
PW_PGSOCKET=$pgsock
PW_MOTO_URL=http://127.0.0.1:$moto_port
PW_LOCALSTRIPE_URL=http://127.0.0.1:$stripe_port
PW_DUFFEL_URL=http://127.0.0.1:$duffel_port
PW_SIDECAR_SOCKET=$socket
PW_SIDECAR_BIN=$sidecar_bin
PW_NODE_MODULES=$PW_NODE/node_modules
ENV
  if [ -n "$supabase_port" ]; then
    cat >>"$dir/stack.env" <<ENV
PW_SUPABASE_PGPORT=$supabase_port
PW_SUPABASE_PGSOCKET=$dir/supabase-pgsocket
ENV
  fi
}

stack_down() {
  [ -d "$dir" ] || return 0
  # Processes started on top of the stack (the demo's wallet sidecar).
  if [ -f "$dir/sidecar.pid.extra" ]; then
    xargs -r kill <"$dir/sidecar.pid.extra" 2>/dev/null || true
  fi
  for service in sidecar localstripe moto duffel; do
    if [ -f "$dir/$service.pid" ]; then
      kill "$(cat "$dir/$service.pid")" 2>/dev/null || true
      rm -f "$dir/$service.pid"
    fi
  done
  for pgdata in "$dir/pgdata" "$dir/supabase-pgdata"; do
    if [ -f "$pgdata/postmaster.pid" ]; then
      as_cluster_user "$PG_BIN/pg_ctl" -D "$pgdata" -m immediate -w stop >/dev/null 2>&1 || true
    fi
  done
  rm -rf "$dir"
}

case "$action" in
  up) stack_up ;;
  down) stack_down ;;
  *) usage ;;
esac
