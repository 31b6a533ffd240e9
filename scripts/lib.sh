# Shared settings and helpers for the project's scripts. Sourced, never run.
# Everything the scripts install or build lives outside the clone, so a fresh
# clone reuses a warm cache and nothing generated ever lands in git.

PW_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PW_CACHE="${PARKER_WALLET_CACHE:-$HOME/.cache/parker-wallet}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PW_CACHE/target}"
PW_VENV="$PW_CACHE/venv"
PW_NODE="$PW_CACHE/node"
PW_TOOLS="$PW_CACHE/tools"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_CONFIG="$PG_BIN/pg_config"
[ -x "$PG_CONFIG" ] || PG_CONFIG=/usr/bin/pg_config

# Pinned tool versions. pgrx is 0.18.1: every pgrx 0.19 release needs a newer
# Rust (1.96) than the toolchain these machines carry (1.95).
PGRX_VERSION=0.18.1
LOCALSTRIPE_VERSION=1.15.10
MOTO_VERSION=5.2.5
DENO_VERSION=2.9.6
MURMURHASH_JS_VERSION=1.0.0
PLAYWRIGHT_CORE_VERSION=1.65.1
AXE_PLAYWRIGHT_VERSION=4.14.1

export PATH="$HOME/.cargo/bin:$PW_NODE/node_modules/.bin:$PW_TOOLS/bin:$PATH"

say()  { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die()  { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

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

# psql on the stack's Supabase-shaped cluster as a role of the caller's choosing
# (supabase_admin is its superuser; postgres, its operator, is not).
supabase_psql() { # role, psql arguments...
  local role=$1; shift
  psql -X -q -v ON_ERROR_STOP=1 -P pager=off -h "$PW_PGHOST" -p "$PW_SUPABASE_PGPORT" -U "$role" "$@"
}

# Stops on a failed step of the Supabase-shaped databases with the server's
# side of it: a crashed backend shows only there, and the stack directory may
# not outlive the run.
supabase_die() {
  printf '%s\n' "--- the server's last errors ($PW_STACK_DIR/supabase-postgres.log):" >&2
  grep -E -A1 'ERROR:|FATAL:|PANIC:|terminated by signal' "$PW_STACK_DIR/supabase-postgres.log" | tail -n 6 >&2 || true
  die "$*"
}

# Builds Supabase's base database in the Supabase-shaped cluster from the
# vendored upstream files (tests/supabase/README.md) the way Supabase builds it:
# supabase/postgres's migrate.sh (role postgres, init scripts as postgres,
# migrations as supabase_admin), then GoTrue's migrations as
# supabase_auth_admin; then freezes it as database `supabase_base`. The files
# are fed to psql as they are, minus two statements (below); psql names the
# file and line of any error.
supabase_base_database() {
  [ -n "${PW_SUPABASE_PGPORT:-}" ] || die "the stack has no Supabase-shaped cluster (PW_SUPABASE_PGPORT unset)"
  local vendor="$PW_ROOT/tests/supabase/vendor" work="$PW_STACK_DIR/supabase-sql"
  local db="$vendor/supabase-postgres/migrations/db" file name
  rm -rf "$work"
  mkdir -p "$work/postgres" "$work/auth"

  # What Debian's PostgreSQL cannot run: pgjwt is not packaged, and without
  # pgsodium its role pgsodium_keyholder does not exist. Commented out, so
  # psql's line numbers still match the vendored files.
  local skip='^(create extension if not exists pgjwt[[:space:]]+with schema extensions;|GRANT pgsodium_keyholder to service_role;)$'
  for file in "$db"/init-scripts/*.sql "$db"/migrations/*.sql; do
    name="$(basename "$(dirname "$file")")-$(basename "$file")"
    sed -E "s/$skip/-- skipped by scripts\/lib.sh: &/" "$file" >"$work/postgres/$name"
  done
  [ "$(cat "$work"/postgres/*.sql | grep -c '^-- skipped by scripts/lib.sh: ')" = 2 ] \
    || die "the vendored supabase-postgres SQL changed: review the statements supabase_base_database skips"

  # Each part in one psql session, as migrate.sh runs each file (autocommit).
  local part
  for part in init-scripts migrations; do
    { echo "SET client_min_messages = warning;"
      for file in "$work/postgres/$part"-*.sql; do echo "\\i '$file'"; done
    } >"$work/$part.sql"
  done
  supabase_psql supabase_admin -d postgres \
    -c "CREATE ROLE postgres SUPERUSER LOGIN" -c "ALTER DATABASE postgres OWNER TO postgres" \
    || supabase_die "Supabase base database: creating role postgres failed (error above)"
  supabase_psql postgres -d postgres -f "$work/init-scripts.sql" >/dev/null \
    || supabase_die "Supabase base database: an init script failed as postgres (error above)"
  supabase_psql supabase_admin -d postgres -f "$work/migrations.sql" >/dev/null \
    || supabase_die "Supabase base database: a migration failed as supabase_admin (error above)"
  # Supabase preloads safeupdate for PostgREST's logins; it is not installed here.
  supabase_psql supabase_admin -d postgres -c "ALTER ROLE authenticator RESET session_preload_libraries" \
    || supabase_die "Supabase base database: resetting authenticator's session_preload_libraries failed"

  # GoTrue's migrations, in filename order, one transaction each, recorded as
  # GoTrue records them; its templates name the schema, which is `auth`.
  { echo "SET client_min_messages = warning;"
    for file in "$vendor"/supabase-auth/migrations/*.up.sql; do
      name=$(basename "$file")
      sed -E 's/\{\{ *index \.Options "Namespace" *\}\}/auth/g' "$file" >"$work/auth/$name"
      echo "BEGIN;"
      echo "\\i '$work/auth/$name'"
      echo "INSERT INTO auth.schema_migrations (version) VALUES ('${name%%_*}') ON CONFLICT DO NOTHING;"
      echo "COMMIT;"
    done
  } >"$work/auth.sql"
  ! grep -q '{{' "$work"/auth/*.sql || die "a GoTrue migration has a template field other than the namespace: $(grep -l '{{' "$work"/auth/*.sql | head -1)"
  supabase_psql supabase_auth_admin -d postgres -f "$work/auth.sql" >/dev/null \
    || supabase_die "Supabase base database: a GoTrue migration failed as supabase_auth_admin (error above)"

  [ "$(supabase_psql supabase_admin -d postgres -tAc "SELECT rolsuper FROM pg_roles WHERE rolname = 'postgres'")" = f ] \
    || supabase_die "Supabase base database: postgres is still a superuser (the demote migration did not run?)"
  # Cloning needs the source to have no session: every psql above has ended.
  supabase_psql supabase_admin -d template1 -c "CREATE DATABASE supabase_base TEMPLATE postgres" \
    || supabase_die "Supabase base database: CREATE DATABASE supabase_base failed (error above)"
}

# A new database of the Supabase-shaped cluster, cloned from supabase_base and
# owned by postgres, in which the non-superuser postgres creates parker_wallet
# (supautils lets it) and, with `migrated`, applies migrations/ (the runner's
# report goes to stdout): what a Supabase project's operator does.
supabase_database() { # name [migrated]
  supabase_psql supabase_admin -d postgres -c "CREATE DATABASE $1 TEMPLATE supabase_base OWNER postgres" \
    || supabase_die "Supabase database $1: CREATE DATABASE failed (error above)"
  supabase_psql postgres -d "$1" -c "CREATE EXTENSION parker_wallet" \
    || supabase_die "Supabase database $1: CREATE EXTENSION parker_wallet as postgres failed (error above)"
  if [ "${2:-}" = migrated ]; then
    DATABASE_URL="postgres://postgres@$PW_PGHOST:$PW_SUPABASE_PGPORT/$1" \
      "$PW_SIDECAR_BIN" migrate --dir "$PW_ROOT/migrations" up \
      || supabase_die "Supabase database $1: kms-sidecar migrate up as postgres failed (error above)"
  fi
}

# Installs the Debian packages named that are missing (as root).
install_apt_packages() { # package...
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing Debian packages (${missing[*]}) and not root: run as root or install them"
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed: is the Debian package mirror reachable?"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed (see the output above)"
}

# One row of the summary `bench/all.sh` prints (what, measured, ratio to its
# baseline, target), when it collects them; nothing otherwise.
bench_summary() {
  if [ -n "${BENCH_SUMMARY:-}" ]; then printf '%s|%s|%s|%s\n' "$@" >> "$BENCH_SUMMARY"; fi
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
  # Benchmarks measure the plain cluster: no Supabase-shaped one to start. It
  # counts statements (pg_stat_statements) for the benchmarks that report them.
  PW_SUPABASE_CLUSTER=0 PW_STATEMENT_STATS=1 "$PW_ROOT/scripts/stack.sh" up "$bench_stack_dir" >/dev/null
  set -a; source "$bench_stack_dir/stack.env"; set +a
}
