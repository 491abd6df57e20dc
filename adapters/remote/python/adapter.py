#!/usr/bin/env python3
"""A minimal Isthmus adapter in Python: a toy account ledger served over the adapter
protocol of ../PROTOCOL.md (Noise_XX over TCP with the static key bound to an ed25519
identity, msgpack requests and answers).

It answers describe, health, heads, events_since (one new_head event per block) and
balance; every other operation answers `unsupported`. It exists to show that the protocol
is language-neutral: standard Noise (noiseprotocol), ed25519 (pynacl) and msgpack.

    adapter.py --network 71 --dev-identity py-71 --fund alice=500 [--listen 127.0.0.1:0]

Prints one JSON line (listen, identity, network) once it listens; serves until killed.
"""

import argparse
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time

import msgpack
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey
from noise.connection import Keypair as NoiseKeypair
from noise.connection import NoiseConnection

PROTOCOL_VERSION = 1
WIRE_VERSION = 1
MAX_MESSAGE = 4 * 1024 * 1024
MAX_PLAIN = 65535 - 16
KEEPALIVE_SECS = 10
IDLE_SECS = 30
FRAME_DATA, FRAME_PING, FRAME_CLOSE = 0, 1, 2
SIG_PREFIX = b"isthmus-sig/v1\x00"
BINDING_TAG = b"transport-binding"
BINDING_LABEL = b"isthmus/noise-binding/v1"


class ProtocolError(Exception):
    pass


# ---- identity and the Noise handshake --------------------------------------------------


def signing_bytes(network, payload):
    return SIG_PREFIX + bytes([len(BINDING_TAG)]) + BINDING_TAG + struct.pack(">Q", network) + payload


def binding(role, noise_static, handshake_hash):
    return BINDING_LABEL + bytes([role]) + noise_static + handshake_hash


def encode_body(obj):
    body = bytes([WIRE_VERSION]) + msgpack.packb(obj, use_bin_type=True)
    if len(body) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(body)} bytes exceeds {MAX_MESSAGE}")
    return body


def decode_body(body):
    if len(body) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(body)} bytes exceeds {MAX_MESSAGE}")
    if not body or body[0] != WIRE_VERSION:
        raise ProtocolError("unsupported wire version")
    return msgpack.unpackb(body[1:], raw=False)


def read_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed the connection")
        buf.extend(chunk)
    return bytes(buf)


def read_record(sock):
    (n,) = struct.unpack(">H", read_exact(sock, 2))
    return read_exact(sock, n)


def write_record(sock, msg):
    sock.sendall(struct.pack(">H", len(msg)) + msg)


class Session:
    """One authenticated connection from a hub (we are the Noise responder)."""

    def __init__(self, sock, identity, network, allowed_hubs):
        self.sock = sock
        self.identity = identity
        self.network = network
        self.allowed = allowed_hubs
        self.write_lock = threading.Lock()
        self.plain = bytearray()
        self.last_sent = time.monotonic()
        self.noise = None
        self.hub = None

    def handshake(self):
        noise = NoiseConnection.from_name(b"Noise_XX_25519_ChaChaPoly_BLAKE2s")
        noise.set_as_responder()
        noise.set_keypair_from_private_bytes(NoiseKeypair.STATIC, os.urandom(32))
        noise.set_prologue(b"isthmus/noise/v1/tcp" + struct.pack(">Q", self.network))
        noise.start_handshake()
        hs = noise.noise_protocol.handshake_state
        if noise.read_message(read_record(self.sock)):
            raise ProtocolError("unexpected payload in handshake message 1")
        # Message 2 carries our identity, bound to this session's handshake hash.
        own_static = hs.s.public_bytes
        h_before = bytes(hs.symmetric_state.h)
        sig = self.identity.sign(signing_bytes(self.network, binding(1, own_static, h_before))).signature
        payload = encode_body({"node": bytes(self.identity.verify_key), "binding": sig})
        write_record(self.sock, noise.write_message(payload))
        # Message 3 carries the hub's.
        h_before = bytes(hs.symmetric_state.h)
        proof = decode_body(noise.read_message(read_record(self.sock)))
        node, sig = proof["node"], proof["binding"]
        remote_static = hs.rs.public_bytes
        try:
            VerifyKey(node).verify(signing_bytes(self.network, binding(0, remote_static, h_before)), sig)
        except (BadSignatureError, ValueError) as e:
            raise ProtocolError(f"hub identity binding does not verify: {e}") from e
        if self.allowed and node not in self.allowed:
            raise ProtocolError("hub is not on the allowlist")
        if not noise.handshake_finished:
            raise ProtocolError("handshake did not finish")
        self.noise = noise
        self.hub = node
        self.send_frame(FRAME_PING, b"")  # confirms that we accept the hub

    def send_frame(self, kind, body):
        frame = struct.pack(">I", 1 + len(body)) + bytes([kind]) + body
        with self.write_lock:
            out = bytearray()
            for i in range(0, len(frame), MAX_PLAIN):
                record = self.noise.encrypt(frame[i : i + MAX_PLAIN])
                out += struct.pack(">H", len(record)) + record
            self.sock.sendall(bytes(out))
            self.last_sent = time.monotonic()

    def next_frame(self):
        while True:
            if len(self.plain) >= 4:
                (n,) = struct.unpack(">I", self.plain[:4])
                if n == 0 or n > MAX_MESSAGE + 1:
                    raise ProtocolError(f"frame of {n} bytes refused")
                if len(self.plain) >= 4 + n:
                    frame = bytes(self.plain[4 : 4 + n])
                    del self.plain[: 4 + n]
                    return frame[0], frame[1:]
            self.plain += self.noise.decrypt(read_record(self.sock))


# ---- the toy ledger ---------------------------------------------------------------------


class Ledger:
    def __init__(self, network, name, balances):
        self.network = network
        self.name = name
        self.balances = balances
        self.start = time.time()

    def height(self):
        return int(time.time() - self.start) + 1

    def block(self, height):
        digest = hashlib.sha256(b"py-ledger" + struct.pack(">QQ", self.network, height)).digest()
        return {"height": height, "hash": digest}

    def descriptor(self):
        return {
            "network": self.network,
            "name": self.name,
            "kind": "external",
            "consensus": "poa",
            "capabilities": {
                "finality": {"model": "instant"},
                "contracts": "native_modules",
                "hash": "sha256",
                "signatures": ["ed25519"],
                "asset_model": "account",
                "two_phase": "unsupported",
                "htlc": False,
                "packets": False,
            },
        }

    def answer(self, call):
        op = call.get("op")
        if op == "describe":
            return {"describe": {"protocol": PROTOCOL_VERSION, "descriptor": self.descriptor()}}
        if op == "health":
            return {"health": {"status": "healthy"}}
        if op == "heads":
            head = self.block(self.height())
            return {"heads": {"head": head, "finalized": head, "time": int(time.time())}}
        if op == "events_since":
            after, limit = int(call["after"]), min(int(call["limit"]), 1000)
            last = min(self.height(), after + limit)
            events = [
                {"checkpoint": h, "kind": {"event": "new_head", "block": self.block(h)}}
                for h in range(after + 1, last + 1)
            ]
            return {"events": {"events": events, "next": max(after, last), "more": last < self.height()}}
        if op == "balance":
            if call["asset"] != "native":
                raise AdapterError({"code": "not_found", "network": self.network, "what": f"asset {call['asset']}"})
            return {"balance": str(self.balances.get(call["account"], 0))}
        raise AdapterError({"code": "unsupported", "network": self.network, "op": str(op)})


class AdapterError(Exception):
    def __init__(self, err):
        super().__init__(err.get("code"))
        self.err = err


def serve_connection(sock, identity, network, allowed, ledger):
    sock.settimeout(IDLE_SECS)
    session = Session(sock, identity, network, allowed)
    try:
        session.handshake()
    except (ProtocolError, ConnectionError, OSError, KeyError, TypeError, ValueError) as e:
        print(f"handshake failed: {e}", file=sys.stderr)
        sock.close()
        return
    stop = threading.Event()

    def keepalive():
        while not stop.wait(1):
            if time.monotonic() - session.last_sent >= KEEPALIVE_SECS:
                try:
                    session.send_frame(FRAME_PING, b"")
                except OSError:
                    return

    threading.Thread(target=keepalive, daemon=True).start()
    try:
        while True:
            kind, body = session.next_frame()
            if kind == FRAME_PING:
                continue
            if kind == FRAME_CLOSE:
                return
            if kind != FRAME_DATA:
                raise ProtocolError(f"unknown frame kind {kind}")
            try:
                req = decode_body(body)
                rid, call = req["id"], req["call"]
            except (ProtocolError, KeyError, TypeError, ValueError) as e:
                err = {"code": "invalid_request", "reason": f"request does not decode: {e}"}
                session.send_frame(FRAME_DATA, encode_body({"id": 0, "err": err}))
                continue
            try:
                resp = {"id": rid, "ok": ledger.answer(call)}
            except AdapterError as e:
                resp = {"id": rid, "err": e.err}
            except (KeyError, TypeError, ValueError) as e:
                resp = {"id": rid, "err": {"code": "invalid_request", "reason": f"bad arguments: {e}"}}
            session.send_frame(FRAME_DATA, encode_body(resp))
    except (ProtocolError, ConnectionError, OSError) as e:
        print(f"connection ended: {e}", file=sys.stderr)
    finally:
        stop.set()
        sock.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--network", type=int, required=True)
    p.add_argument("--name", default="py-ledger")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--identity-file", help="32-byte ed25519 seed as 64 hex digits")
    g.add_argument("--dev-identity", help="derive the identity from a label (tests only)")
    p.add_argument("--hub-key", action="append", default=[], help="allowed hub key, 0x + 64 hex")
    p.add_argument("--fund", action="append", default=[], help="ACCOUNT=AMOUNT of the native asset")
    args = p.parse_args()

    if args.dev_identity is not None:
        seed = hashlib.sha256(b"isthmus/dev-key/" + args.dev_identity.encode()).digest()
    else:
        with open(args.identity_file, encoding="ascii") as f:
            seed = bytes.fromhex(f.read().strip())
    identity = SigningKey(seed)
    allowed = {bytes.fromhex(k.removeprefix("0x")) for k in args.hub_key}
    balances = {}
    for item in args.fund:
        account, amount = item.rsplit("=", 1)
        balances[account] = int(amount)
    ledger = Ledger(args.network, args.name, balances)

    host, port = args.listen.rsplit(":", 1)
    srv = socket.create_server((host, int(port)))
    addr = srv.getsockname()
    ready = {
        "listen": f"{addr[0]}:{addr[1]}",
        "identity": "0x" + bytes(identity.verify_key).hex(),
        "network": args.network,
    }
    print(json.dumps(ready), flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(
            target=serve_connection, args=(conn, identity, args.network, allowed, ledger), daemon=True
        ).start()


if __name__ == "__main__":
    main()
