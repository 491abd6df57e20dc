#!/usr/bin/env bash
# Two nodes exchange signed messages over an authenticated transport on loopback; a third
# node that is not on the listener's allowlist is refused during the handshake.
#
#   scripts/demo.sh [quic|tcp|udp]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TRANSPORT="${1:-quic}"
# The refusal is expected: print its one-line cause, not a backtrace.
export RUST_LIB_BACKTRACE=0 RUST_BACKTRACE=0
PORT="${DEMO_PORT:-7000}"

echo "==> building the demo (release)"
cargo build --release -q -p isthmus-transport --bin isthmus-demo
DEMO="${CARGO_TARGET_DIR:-$ROOT/target}/release/isthmus-demo"

BOB="$("$DEMO" id --key-seed bob)"
echo "==> alice listens on 127.0.0.1:$PORT over $TRANSPORT and allows only bob ($BOB)"
"$DEMO" listen --transport "$TRANSPORT" --bind "127.0.0.1:$PORT" --key-seed alice --allow "$BOB" &
LISTENER=$!
trap 'kill "$LISTENER" 2>/dev/null || true' EXIT
sleep 1

echo "==> bob sends 3 signed messages"
"$DEMO" send --transport "$TRANSPORT" --to "127.0.0.1:$PORT" --key-seed bob --count 3

echo "==> carol, not on the allowlist, tries to connect"
if "$DEMO" send --transport "$TRANSPORT" --to "127.0.0.1:$PORT" --key-seed carol --count 1; then
  echo "unexpected: carol was accepted" >&2
  exit 1
fi
echo "==> carol was refused, as she should be"
