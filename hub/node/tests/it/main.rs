//! Multi-process tests: every node is a real `hub node run` process on loopback; and the
//! hub's records on its own chain (`ledger`, `anchor_log`) against an in-process node.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns fail loudly by design

mod anchor_log;
mod crash;
mod forks;
mod harness;
mod join;
mod ledger;
// In-process native networks are the native adapter's test nodes; one copy of that code.
#[allow(dead_code)]
#[path = "../../../../adapters/native/tests/it/net.rs"]
mod net;
mod network;
mod provisioning;
mod serve;
mod service;
mod tamper;
mod up;
mod upcrash;
mod uphub;
mod wal;

/// A PoS network of `n` validators (`dev:NAME/node-i`), fast timeouts.
pub fn pos_toml(name: &str, n: usize, interval_ms: u64, extra: &str) -> String {
    let mut s = format!(
        "name = \"{name}\"\nnetwork_id = 9{n}1\nnodes = {n}\nblock_interval_ms = {interval_ms}\n{extra}\n\
         [consensus]\ntype = \"pos\"\npropose_timeout_ms = 1500\nprevote_timeout_ms = 600\nprecommit_timeout_ms = 600\n\
         [[genesis.allocation]]\naccount = \"dev:alice\"\nbalance = 1000000\n\
         [[genesis.allocation]]\naccount = \"dev:bob\"\nbalance = 1000000\n"
    );
    for i in 0..n {
        s.push_str(&format!(
            "[[genesis.validator]]\nid = \"dev:{name}/node-{i}\"\nstake = 100\n"
        ));
    }
    s
}

/// A PoW network of `n` nodes with a low difficulty.
pub fn pow_toml(name: &str, n: usize, extra_top: &str, extra_tail: &str) -> String {
    format!(
        "name = \"{name}\"\nnetwork_id = 7{n}7\nnodes = {n}\nblock_interval_ms = 300\n{extra_top}\n\
         [consensus]\ntype = \"pow\"\ninitial_difficulty = 2000\nretarget_window = 8\nthreads = 1\n\
         [[genesis.allocation]]\naccount = \"dev:alice\"\nbalance = 1000000\n\
         [[genesis.allocation]]\naccount = \"dev:bob\"\nbalance = 1000000\n{extra_tail}\n"
    )
}
