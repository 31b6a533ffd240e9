#!/usr/bin/env bash
# Builds the sidecar and installs the extension into the PostgreSQL 15 that the
# local stack runs (its share/ and lib/ directories: needs root or write access).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "$PW_ROOT"
say "building kms-sidecar"
cargo build --quiet -p kms-sidecar
say "installing the parker_wallet extension into $($PG_CONFIG --sharedir)"
[ -w "$($PG_CONFIG --pkglibdir)" ] || die "cannot write to $($PG_CONFIG --pkglibdir): run as root"
(cd pg_extension && cargo pgrx install --pg-config "$PG_CONFIG" >"$CARGO_TARGET_DIR/pgrx-install.log" 2>&1) \
  || { tail -30 "$CARGO_TARGET_DIR/pgrx-install.log" >&2; die "cargo pgrx install failed (log above)"; }
