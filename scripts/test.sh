#!/usr/bin/env bash
# The whole test suite, with all set-up, on a fresh Debian machine of ours:
# installs the real peers the tests run against, then checks formatting, lints and runs
# every test in the workspace. CI (.ci/run) runs exactly this.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export ISTHMUS_PEERS="${ISTHMUS_PEERS:-$ROOT/.peers}"
# A one-off build gains nothing from incremental caches, which would double the target size.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step() { printf '\n==> %s\n' "$*"; }

step "installing real peers (solc-js, vyper, slither, ...)"
scripts/install-peers.sh

if ! command -v cargo-nextest >/dev/null 2>&1; then
  step "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo nextest run --workspace"
df -h "${CARGO_TARGET_DIR:-$ROOT/target}" 2>/dev/null | tail -1 || true
cargo nextest run --workspace --locked --no-fail-fast
