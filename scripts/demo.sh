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

# The walk itself (tests/src/bin/dev/demo.rs) reuses the test harness: the
# traveler's token, the card saved as Stripe.js saves it, the wallet sidecar's
# settings exist once, in Rust.
walk_args=()
$keep && walk_args+=(--keep)
"$CARGO_TARGET_DIR/debug/dev" demo "${walk_args[@]}"
say "demo finished"
