#!/usr/bin/env bash
# The whole test suite, with all set-up, on a fresh Debian machine of ours:
# installs the real peers the tests run against, then checks formatting, lints and runs
# every test in the workspace. CI (.ci/run) runs exactly this.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export ISTHMUS_PEERS="${ISTHMUS_PEERS:-$ROOT/.peers}"

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
cargo nextest run --workspace --locked --no-fail-fast
