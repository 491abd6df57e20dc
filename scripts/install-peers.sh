#!/usr/bin/env bash
# Installs the real external tools the test suite runs against, into the repo-local
# .peers/ folder (gitignored), plus Debian packages where a tool only ships that way.
# Idempotent: a tool that is already at the pinned version is left alone.
#
#   .peers/node/node_modules/solc           solc-js (Solidity compiler)
#   .peers/bin/solc                         shim: `solc --version` / `solc --standard-json`
#   .peers/venv/bin/vyper                   vyper
#   .peers/venv/bin/slither                 Slither (Solidity auditor)
#
# Usage: scripts/install-peers.sh [--only solc,vyper,slither]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="${ISTHMUS_PEERS:-$ROOT/.peers}"
SOLC_VERSION="0.8.28"
VYPER_VERSION="0.4.3"
SLITHER_VERSION="0.11.6"
ONLY="all"
if [[ "${1:-}" == "--only" ]]; then ONLY="${2:?--only needs a comma-separated list}"; fi

want() { [[ "$ONLY" == "all" || ",$ONLY," == *",$1,"* ]]; }
say() { printf '[install-peers] %s\n' "$*"; }

mkdir -p "$PEERS/bin" "$PEERS/node"

if want solc; then
  if [[ -f "$PEERS/node/node_modules/solc/package.json" ]] &&
     grep -q "\"version\": \"$SOLC_VERSION\"" "$PEERS/node/node_modules/solc/package.json"; then
    say "solc-js $SOLC_VERSION already installed"
  else
    say "installing solc-js $SOLC_VERSION (npm)"
    [[ -f "$PEERS/node/package.json" ]] || echo '{"name":"isthmus-peers","private":true}' > "$PEERS/node/package.json"
    (cd "$PEERS/node" && npm install --no-audit --no-fund --loglevel=error "solc@$SOLC_VERSION")
  fi
  cat > "$PEERS/bin/solc" <<SHIM
#!/usr/bin/env node
// A solc-compatible front for solc-js: answers --version and --standard-json (stdin->stdout).
const solc = require('$PEERS/node/node_modules/solc');
const args = process.argv.slice(2);
if (args.includes('--version')) {
  process.stdout.write('solc, the solidity compiler commandline interface\nVersion: ' + solc.version() + '\n');
  process.exit(0);
}
if (args.includes('--standard-json')) {
  let input = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (c) => { input += c; });
  process.stdin.on('end', () => {
    const out = solc.compile(input);
    process.stdout.write(out.split('\n').filter((l) => !l.startsWith('>>> Cannot retry')).join('\n'));
  });
} else {
  process.stderr.write('solc shim: only --version and --standard-json are supported\n');
  process.exit(2);
}
SHIM
  chmod +x "$PEERS/bin/solc"
fi

if want vyper || want slither; then
  if [[ ! -x "$PEERS/venv/bin/python" ]]; then
    say "creating python venv"
    python3 -m venv "$PEERS/venv"
  fi
fi

if want vyper; then
  if "$PEERS/venv/bin/vyper" --version 2>/dev/null | grep -q "^$VYPER_VERSION"; then
    say "vyper $VYPER_VERSION already installed"
  else
    say "installing vyper $VYPER_VERSION (pip)"
    "$PEERS/venv/bin/pip" install --quiet --disable-pip-version-check "vyper==$VYPER_VERSION"
  fi
fi

if want slither; then
  if [[ -x "$PEERS/venv/bin/slither" ]]; then
    say "slither already installed"
  else
    say "installing slither-analyzer $SLITHER_VERSION (pip)"
    "$PEERS/venv/bin/pip" install --quiet --disable-pip-version-check "slither-analyzer==$SLITHER_VERSION"
  fi
fi

# Each external chain node has its own installer in scripts/peers/<name>.sh; it is sourced
# here with PEERS, ROOT, want and say in scope, so `--only anvil` works the same way.
for extra in "$ROOT"/scripts/peers/*.sh; do
  [[ -e "$extra" ]] || continue
  # shellcheck source=/dev/null
  source "$extra"
done

say "done: peers in $PEERS"
