# shellcheck shell=bash
# The Python example adapter's packages (adapters/remote/python/adapter.py), sourced by
# scripts/install-peers.sh with PEERS, ROOT, want and say in scope: noiseprotocol (the Noise
# handshake), pynacl (ed25519 identity) and msgpack, installed into the repo venv.
PY_NOISE_VERSION="0.3.1"
PY_NACL_VERSION="1.6.2"
PY_MSGPACK_VERSION="1.2.4"
if want python-adapter; then
  if [[ ! -x "$PEERS/venv/bin/python" ]]; then
    say "creating python venv"
    python3 -m venv "$PEERS/venv"
  fi
  if "$PEERS/venv/bin/python" - <<PY 2>/dev/null
import importlib.metadata as m
want = {"noiseprotocol": "$PY_NOISE_VERSION", "pynacl": "$PY_NACL_VERSION", "msgpack": "$PY_MSGPACK_VERSION"}
raise SystemExit(0 if all(m.version(k) == v for k, v in want.items()) else 1)
PY
  then
    say "python adapter packages already installed"
  else
    say "installing python adapter packages (pip)"
    "$PEERS/venv/bin/pip" install --quiet --disable-pip-version-check \
      "noiseprotocol==$PY_NOISE_VERSION" "pynacl==$PY_NACL_VERSION" "msgpack==$PY_MSGPACK_VERSION"
  fi
fi
