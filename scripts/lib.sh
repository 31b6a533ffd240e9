# Shared settings and helpers for the project's scripts. Sourced, never run.
# Everything the scripts install or build lives outside the clone, so a fresh
# clone reuses a warm cache and nothing generated ever lands in git.

PW_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PW_CACHE="${PARKER_WALLET_CACHE:-$HOME/.cache/parker-wallet}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PW_CACHE/target}"
PW_VENV="$PW_CACHE/venv"
PW_NODE="$PW_CACHE/node"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_CONFIG="$PG_BIN/pg_config"
[ -x "$PG_CONFIG" ] || PG_CONFIG=/usr/bin/pg_config

# Pinned tool versions: TOOLCHAIN.md explains why pgrx is 0.18.1 here.
PGRX_VERSION=0.18.1
LOCALSTRIPE_VERSION=1.15.10
MOTO_VERSION=5.2.5
DENO_VERSION=2.9.6
MURMURHASH_JS_VERSION=1.0.0
PLAYWRIGHT_CORE_VERSION=1.65.1

export PATH="$HOME/.cargo/bin:$PW_NODE/node_modules/.bin:$PATH"

say()  { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die()  { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# The OS user that owns throwaway clusters: initdb and the postmaster refuse root,
# so root hands them to `postgres`; anyone else runs them as themselves.
cluster_user() {
  if [ "$(id -u)" = 0 ]; then echo postgres; else id -un; fi
}

# Runs a command as cluster_user.
as_cluster_user() {
  if [ "$(id -u)" != 0 ]; then "$@"
  elif id postgres >/dev/null 2>&1; then runuser -u postgres -- "$@"
  else die "running as root needs a 'postgres' OS user (apt-get install postgresql-15 creates it)"
  fi
}

# psql as the superuser of the stack's cluster (after sourcing its stack.env).
stack_psql() {
  psql -X -q -v ON_ERROR_STOP=1 -P pager=off -h "$PW_PGHOST" -p "$PW_PGPORT" -U postgres "$@"
}

# A new database of the stack with parker_wallet installed; with `migrated`,
# migrations/ are applied too (the runner's report goes to stdout).
stack_database() { # name [migrated]
  stack_psql -d postgres -c "CREATE DATABASE $1"
  stack_psql -d "$1" -c "CREATE EXTENSION parker_wallet"
  if [ "${2:-}" = migrated ]; then
    DATABASE_URL="postgres://postgres@$PW_PGHOST:$PW_PGPORT/$1" \
      "$PW_SIDECAR_BIN" migrate --dir "$PW_ROOT/migrations" up
  fi
}

# A free TCP port on the loopback interface, chosen by the kernel.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Fails with a clear message when a TCP port on loopback is already taken.
require_free_port() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    die "port $1 on 127.0.0.1 is already in use; pick another (e.g. PW_PGPORT=...)"
  fi
}

# For benchmarks: release builds of the sidecar and of the named benchmark
# binaries (the stack then runs that sidecar), and a throwaway stack for this
# run (its stack.env sourced), torn down on exit. With --release-extension the
# release build of the extension is installed for the run and the debug one,
# which tests and the demo expect, put back afterwards.
bench_stack_up() { # [--release-extension] [BENCH_BIN...]
  local restore="" extension_build=()
  if [ "${1:-}" = --release-extension ]; then
    extension_build=(--release)
    restore='; "$PW_ROOT/scripts/build.sh" >/dev/null 2>&1 || true'
    shift
  fi
  "$PW_ROOT/scripts/bootstrap.sh"
  cd "$PW_ROOT"
  if [ $# -gt 0 ]; then
    say "building release binaries"
    cargo build --quiet --release -p kms-sidecar -p parker-wallet-e2e --bin kms-sidecar ${*/#/--bin }
    export PW_SIDECAR_BIN="$CARGO_TARGET_DIR/release/kms-sidecar"
  fi
  "$PW_ROOT/scripts/build.sh" "${extension_build[@]}"
  bench_stack_dir=$(mktemp -d /tmp/parker-wallet-bench.XXXXXX)
  # shellcheck disable=SC2064 # expanded now, on purpose: the directory is fixed
  trap "\"\$PW_ROOT/scripts/stack.sh\" down \"$bench_stack_dir\"$restore" EXIT INT TERM
  "$PW_ROOT/scripts/stack.sh" up "$bench_stack_dir" >/dev/null
  set -a; source "$bench_stack_dir/stack.env"; set +a
}
