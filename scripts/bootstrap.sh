#!/usr/bin/env bash
# Installs every prerequisite the demo and the tests need, idempotently.
# Each step records a stamp only after it succeeds, so an interrupted run is
# simply repeated by the next one instead of leaving a half-installed state.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# make and gcc: PGXS builds supautils with them (postgresql-server-dev-15 pulls neither).
# systemd (systemd-analyze) and shellcheck check the deploy/ files statically.
APT_PACKAGES=(postgresql-15 postgresql-server-dev-15
  libclang-dev clang make gcc pkg-config libssl-dev sudo ca-certificates curl chromium
  systemd shellcheck)
STAMPS="$PW_CACHE/stamps"
mkdir -p "$STAMPS"

step_done() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
mark_done() { printf '%s' "$2" >"$STAMPS/$1"; }

install_cargo_pgrx() {
  have cargo || die "cargo not found: install the Rust toolchain (rustup) first"
  if [ "$(cargo pgrx --version 2>/dev/null)" != "cargo-pgrx $PGRX_VERSION" ]; then
    say "installing cargo-pgrx $PGRX_VERSION (takes a few minutes, once per machine)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked \
      || die "cargo install cargo-pgrx failed: is the crate registry reachable?"
  fi
  # `init` with an explicit pg_config never downloads anything.
  if ! grep -qs "^pg15 = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    say "registering PostgreSQL 15 with pgrx"
    cargo pgrx init --pg15 "$PG_CONFIG" >/dev/null
  fi
}

install_python_emulators() {
  local want="localstripe==$LOCALSTRIPE_VERSION moto[server]==$MOTO_VERSION"
  step_done venv "$want" && [ -x "$PW_VENV/bin/python" ] && return 0
  have python3 || die "python3 not found"
  say "creating the emulator venv ($want)"
  # No stamp until pip succeeds: a half-built venv is removed and rebuilt next run.
  rm -rf "$PW_VENV"
  python3 -m venv "$PW_VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  # shellcheck disable=SC2086
  "$PW_VENV/bin/pip" install -q --disable-pip-version-check $want \
    || { rm -rf "$PW_VENV"; die "pip install $want failed: is the Python package index reachable?"; }
  mark_done venv "$want"
}

# Deno runs the Edge Functions and bundles the reference page (its first
# `deno bundle` fetches esbuild from npm: done here, once); murmurhash-js is
# what Parker Flight's TypeScript buckets users with, for the cross-check of
# wallet.flag_enabled; playwright-core drives Debian's Chromium in the browser
# tests, where @axe-core/playwright checks the page against WCAG 2.1.
install_node_packages() {
  local want="deno@$DENO_VERSION murmurhash-js@$MURMURHASH_JS_VERSION playwright-core@$PLAYWRIGHT_CORE_VERSION"
  want="$want @axe-core/playwright@$AXE_PLAYWRIGHT_VERSION"
  step_done node "$want" && [ -x "$PW_NODE/node_modules/.bin/deno" ] && return 0
  have npm || die "npm not found: install Node.js and npm first"
  say "installing $want from npm"
  mkdir -p "$PW_NODE"
  # shellcheck disable=SC2086
  (cd "$PW_NODE" && npm install --silent --no-audit --no-fund $want >/dev/null) \
    || die "npm install $want failed: is the npm registry reachable?"
  "$PW_NODE/node_modules/.bin/deno" --version >/dev/null || die "deno was installed but does not run"
  local probe
  probe=$(mktemp -d)
  echo 'document.title = "bundled";' >"$probe/probe.ts"
  NO_COLOR=1 "$PW_NODE/node_modules/.bin/deno" bundle --quiet --platform=browser --output="$probe/probe.js" "$probe/probe.ts" \
    || die "deno bundle does not work (it fetches esbuild from npm on first use)"
  rm -rf "$probe"
  mark_done node "$want"
}

# supautils, the C library Supabase loads into every session, for the tests'
# Supabase-shaped cluster (tests/supabase/README.md). Built from the vendored
# source in a copy outside the clone, so the tree never holds build outputs.
install_supautils() {
  local src="$PW_ROOT/tests/supabase/vendor/supautils"
  local pkglibdir want
  pkglibdir=$("$PG_CONFIG" --pkglibdir)
  want="$(head -n1 "$src/COMMIT") for $("$PG_CONFIG" --version)"
  step_done supautils "$want" && [ -f "$pkglibdir/supautils.so" ] && return 0
  have make || die "make not found (Debian: apt-get install make)"
  [ -w "$pkglibdir" ] || die "cannot write to $pkglibdir to install supautils: run as root"
  say "building supautils ($want)"
  local build="$PW_CACHE/build/supautils"
  rm -rf "$build"
  mkdir -p "$build"
  cp -R "$src/." "$build/"
  # with_llvm=no: no JIT bitcode; a library of hooks has nothing to inline.
  (cd "$build" && make PG_CONFIG="$PG_CONFIG" with_llvm=no \
     && make install PG_CONFIG="$PG_CONFIG" with_llvm=no) >"$build.log" 2>&1 \
    || { tail -30 "$build.log" >&2; die "building supautils failed (log above, in full in $build.log)"; }
  mark_done supautils "$want"
}

# promtool checks and unit-tests the alerting rules (deploy/prometheus). Only
# the tool is taken from Debian's prometheus package: installing the package
# would also start a Prometheus server.
install_promtool() {
  local want tmp
  want=$(apt-cache policy prometheus | awk '/Candidate:/ {print $2}')
  [ -n "$want" ] && [ "$want" != "(none)" ] || die "Debian's prometheus package is not available (apt-get update?)"
  step_done promtool "$want" && [ -x "$PW_TOOLS/bin/promtool" ] && return 0
  say "installing promtool from Debian's prometheus $want"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq "prometheus=$want" 2>/dev/null) \
    || { rm -rf "$tmp"; die "apt-get download prometheus failed: is the Debian package mirror reachable?"; }
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root" && install -D -m 755 "$tmp/root/usr/bin/promtool" "$PW_TOOLS/bin/promtool" \
    || { rm -rf "$tmp"; die "cannot unpack promtool from the prometheus package"; }
  rm -rf "$tmp"
  "$PW_TOOLS/bin/promtool" --version >/dev/null 2>&1 || die "promtool was installed but does not run"
  mark_done promtool "$want"
}

install_apt_packages "${APT_PACKAGES[@]}"
install_promtool
install_supautils
install_cargo_pgrx
install_python_emulators
install_node_packages
say "prerequisites ready (cache: $PW_CACHE)"
