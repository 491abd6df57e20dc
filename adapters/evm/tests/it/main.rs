//! Integration tests of the EVM adapter against a real anvil (installed by
//! `scripts/install-peers.sh --only anvil,solc`), each started on a free loopback port.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns fail loudly by design

mod artifacts;
mod conformance;
mod flows;
mod resilience;
mod util;
