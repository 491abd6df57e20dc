//! Cross-chain flows through the hub's HTTP API against real foreign nodes: litecoind in
//! regtest and anvil, each started by the test on free loopback ports and killed by pid.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly by design
#![allow(clippy::print_stdout)] // the flow tests print their measured figures on purpose

mod faults;
mod hub;
mod layering;
// The litecoind regtest fixture is the UTXO adapter's own; one copy of node-starting code.
#[allow(dead_code)]
#[path = "../../adapters/utxo/tests/it/node.rs"]
mod ltc_node;
// The native networks are the native adapter's in-process test nodes; one copy of that code.
#[allow(dead_code)]
#[path = "../../adapters/native/tests/it/net.rs"]
mod native_net;
mod relay;
mod remote;
// Interop between two in-process native networks through the interop core (no foreign nodes).
mod messages;
mod swap;
mod transfer;
mod twophase;
