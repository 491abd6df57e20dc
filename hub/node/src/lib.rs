//! The library half of the `hub` binary: the node status endpoint and `hub up`, the
//! one-process embedded hub (hub chain, two native networks, interop core, HTTP API), and
//! the hub's records on its own chain (`ledger`: two-phase decisions, transition anchors).
//!
//! It wires the other crates together and holds no rules of its own: chain rules live in
//! `isthmus-chain`, contract rules in `isthmus-lock-contracts`, their durable driving in
//! `isthmus-interop`, the HTTP edges in `isthmus-hub-api`; [`service`] maps the one to
//! the other. It must never act on a cross-chain decision except through the interop
//! driver.

pub mod builder;
pub mod ledger;
pub mod provision;
pub mod serve;
pub mod service;
pub mod status;
pub mod up;
