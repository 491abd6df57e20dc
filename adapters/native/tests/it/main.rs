//! Integration tests of the native adapter on real in-process networks (sled stores in
//! temporary directories): the adapter conformance suite on PoS and PoW networks, escrow,
//! light-client evidence, packets, and the node's authenticated RPC (the conformance suite
//! also runs over it). Interop between two native networks through the hub
//! is tested in the top-level `tests/` (`transfer`, `messages`), the hub's own ledger in `hub/node`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns fail loudly by design

mod conformance;
mod escrow;
mod light;
mod net;
mod packets;
mod rpc;
