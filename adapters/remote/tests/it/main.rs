//! Integration tests of out-of-process adapters: the conformance suite through
//! `RemoteAdapter` against `adapter-host` run as a separate process, crashes and lies,
//! (registration over HTTP and transfers through registered adapters run in the
//! top-level tests package, which includes this package's `host.rs` and `liar.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;
mod host;
mod liar;
mod litecoind;
// Only part of the shared litecoind fixture is used here.
#[allow(dead_code)]
#[path = "../../../utxo/tests/it/node.rs"]
mod ltc_node;
mod misbehaviour;
mod pyhost;
mod python;
