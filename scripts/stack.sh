#!/usr/bin/env bash
# The local stack (tests/src/bin/dev/stack.rs): a throwaway PostgreSQL 15
# cluster, a second one shaped like Supabase's, localstripe, moto (KMS), the
# Duffel fake and the sidecar, all bound to loopback or to sockets inside one
# stack directory.
#
#   scripts/stack.sh up DIR     start everything; writes DIR/stack.env
#   scripts/stack.sh down DIR   stop everything started in DIR and remove DIR
#
# `up` assumes scripts/build.sh ran (extension installed, binaries built).
# PW_SUPABASE_CLUSTER=0 leaves the Supabase-shaped cluster out (it is for the
# tests; tests/supabase/README.md).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -eq 2 ] && { [ "$1" = up ] || [ "$1" = down ]; } || die "usage: $0 up|down DIR"
dev="$CARGO_TARGET_DIR/debug/dev"
[ -x "$dev" ] || die "the dev tool is not built (run scripts/build.sh)"
# Where scripts/bootstrap.sh put the tools.
PG_BIN=$PG_BIN PG_CONFIG=$PG_CONFIG PW_VENV=$PW_VENV PW_NODE=$PW_NODE exec "$dev" stack "$1" "$2"
