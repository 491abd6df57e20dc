//! Integration and property tests of the lock machines, one binary.

// A test binary: its harness helpers panic on purpose when the world breaks an invariant.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod htlc;
mod packet;
mod sim;
mod two_phase;
