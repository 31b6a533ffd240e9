#!/usr/bin/env bash
# Builds the sidecar and installs the extension into the PostgreSQL 15 that the
# local stack runs (its share/ and lib/ directories: needs root or write access).
#
#   scripts/build.sh             debug extension (tests, demo)
#   scripts/build.sh --release   release extension (benchmarks)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

profile_flag=()
case "${1:-}" in --release) profile_flag=(--release) ;; "") ;; *) die "usage: $0 [--release]" ;; esac

cd "$PW_ROOT"
say "building kms-sidecar (and the dev tool and the Duffel fake the local stack runs)"
cargo build --quiet -p kms-sidecar
cargo build --quiet -p parker-wallet-e2e --bin duffel-fake --bin twilio-fake --bin dev
say "installing the parker_wallet extension${profile_flag[*]:+ (release)} into $($PG_CONFIG --sharedir)"
[ -w "$($PG_CONFIG --pkglibdir)" ] || die "cannot write to $($PG_CONFIG --pkglibdir): run as root"
log="$CARGO_TARGET_DIR/pgrx-install.log"
(cd pg_extension && cargo pgrx install "${profile_flag[@]}" --pg-config "$PG_CONFIG" >"$log" 2>&1) \
  || { tail -30 "$log" >&2; die "cargo pgrx install failed (log above)"; }
# pgrx writes the current version's install script; earlier versions' scripts
# and the upgrade scripts between them are kept in sql/.
install -m 0644 sql/parker_wallet--*.sql "$($PG_CONFIG --sharedir)/extension/"
