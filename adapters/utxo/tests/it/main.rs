//! Integration tests against a real litecoind in regtest (installed by
//! `scripts/install-peers.sh --only litecoind`); each test starts its own node.

// A test binary: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;
mod flows;
mod node;
