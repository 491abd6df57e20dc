//! Integration tests of isthmus-chain: config fixtures and multi-node networks.

#![allow(clippy::expect_used)] // test helpers outside #[test] fns fail loudly by design

mod configs;
mod miner;
