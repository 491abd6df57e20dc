# litecoind (Litecoin Core 0.21, regtest) for the UTXO adapter's tests: a Debian package.
# Sourced by scripts/install-peers.sh with PEERS, ROOT, want and say in scope.
if want litecoind; then
  if command -v litecoind >/dev/null 2>&1 && command -v litecoin-cli >/dev/null 2>&1; then
    say "litecoind already installed ($(litecoind -version | head -n1))"
  else
    say "installing litecoind (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq litecoind
  fi
fi
