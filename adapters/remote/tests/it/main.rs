//! Integration tests of out-of-process adapters: the conformance suite through
//! `RemoteAdapter` against `adapter-host` run as a separate process, crashes and lies,
//! registration over HTTP and transfers through registered adapters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;
mod host;
mod hub;
mod misbehaviour;
mod python;
mod registry;
