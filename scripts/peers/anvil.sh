# shellcheck shell=bash
# anvil (Foundry's local EVM node), sourced by scripts/install-peers.sh with PEERS, ROOT, want and
# say in scope. Installs the npm package into $PEERS/node and links the binary to $PEERS/bin/anvil.
ANVIL_VERSION="1.7.1"
if want anvil; then
  anvil_pkg="$PEERS/node/node_modules/@foundry-rs/anvil-linux-amd64"
  if [[ -f "$anvil_pkg/package.json" ]] &&
     grep -q "\"version\": \"$ANVIL_VERSION\"" "$anvil_pkg/package.json"; then
    say "anvil $ANVIL_VERSION already installed"
  else
    say "installing anvil $ANVIL_VERSION (npm)"
    [[ -f "$PEERS/node/package.json" ]] || echo '{"name":"isthmus-peers","private":true}' > "$PEERS/node/package.json"
    (cd "$PEERS/node" && npm install --no-audit --no-fund --loglevel=error "@foundry-rs/anvil-linux-amd64@$ANVIL_VERSION")
  fi
  chmod +x "$anvil_pkg/bin/anvil"
  ln -sfn "$anvil_pkg/bin/anvil" "$PEERS/bin/anvil"
  "$PEERS/bin/anvil" --version >/dev/null
fi
