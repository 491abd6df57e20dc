//! Integration tests of the transports over loopback.

// Tests may unwrap (workspace rule); helpers outside #[test] fns need it spelled out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod demo;
mod faults;
mod lifecycle;
mod lossy;
mod proxy;
mod refusal;
mod roundtrip;
