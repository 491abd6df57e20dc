//! The handle's own behaviour, and the conformance suite (from `isthmus-adapter-testkit`)
//! through the handle and the metering decorator over the mock platform.

// A test binary: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod handle;
