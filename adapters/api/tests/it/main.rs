//! The conformance suite against the mock platform (directly, and through the handle and
//! the metering decorator), plus the handle's own behaviour.

// A test binary: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod handle;
mod mock;
