//! Integration tests of the native adapter on real in-process networks (sled stores in
//! temporary directories): the adapter conformance suite on PoS and PoW networks, and
//! interop between two native networks through the hub.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns fail loudly by design

mod anchor_log;
mod conformance;
mod escrow;
mod ledger;
mod light;
mod messages;
mod net;
mod packets;
mod transfer;
