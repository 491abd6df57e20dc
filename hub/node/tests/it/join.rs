//! A node joining an existing 1,000-block PoS network downloads and verifies every block
//! (signatures, Merkle roots, commit certificates), reports progress, and resumes after a
//! restart.

use crate::harness::{wait_for, write_config, NodeProc};
use crate::pos_toml;
use isthmus_chain::chain::Chain;
use isthmus_chain::pos::CommitCert;
use isthmus_chain::state::Modules;
use isthmus_chain::store::SledStore;
use isthmus_chain::Transaction;
use isthmus_core::Keypair;
use std::path::Path;
use std::sync::Arc;

const BLOCKS: u64 = 1_000;

/// Pre-generate the validator's chain offline: same code path as a live commit, with a
/// single-validator certificate per block and a transfer every tenth block.
fn pregenerate(cfg: &isthmus_chain::NetworkConfig, data: &Path) {
    let store = SledStore::open(&data.join("chain"), 1 << 30).unwrap();
    let mut chain =
        Chain::open(Arc::new(cfg.clone()), Box::new(store), Modules::builtin()).unwrap();
    let validator = cfg.node_key(0).unwrap();
    let alice = Keypair::dev("alice");
    let bob = Keypair::dev("bob").id();
    for n in 1..=BLOCKS {
        let algo = chain.head_algo();
        let txs = if n % 10 == 0 {
            let nonce = chain.state().account(&alice.id()).nonce;
            let t = Transaction::transfer(&alice, cfg.network(), nonce, bob, 1);
            vec![(t.id(algo), t)]
        } else {
            vec![]
        };
        let (b, skipped) = chain.build_block(txs, &validator, n * 10);
        assert!(skipped.is_empty());
        let hash = b.hash(algo);
        let cert = CommitCert::sign_offline(&[&validator], cfg.network(), n, hash);
        chain
            .commit_final(b, rmp_serde::to_vec(&cert).unwrap())
            .unwrap();
    }
}

#[test]
fn joining_node_syncs_and_verifies_1000_blocks_and_resumes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut toml = pos_toml("join", 1, 200, "");
    toml = toml.replace("nodes = 1", "nodes = 2");
    let (cfgp, cfg) = write_config(dir.path(), "join", &toml);
    let vdir = dir.path().join("validator");
    let t0 = std::time::Instant::now();
    pregenerate(&cfg, &vdir);
    eprintln!("pre-generated {BLOCKS} blocks in {:?}", t0.elapsed());
    let v = NodeProc::start(&cfgp, 0, &vdir, &[], &[]);
    assert!(v.height() >= BLOCKS);
    let mut j = NodeProc::start(&cfgp, 1, &dir.path().join("joiner"), &[v.listen], &[]);
    // Progress is visible while syncing; stop it part-way.
    let mid = wait_for(120, "sync past 200", || {
        let s = j.status();
        let h = s["height"].as_u64().unwrap();
        (h >= 200).then_some(h)
    });
    j.kill9();
    // Resume after restart from where it was, not from genesis.
    j.restart(&[v.listen]);
    assert!(j.height() >= mid, "resumed below {mid}");
    eprintln!("joiner at {mid} after {:?}, restarted", t0.elapsed());
    wait_for(180, "joiner reaches the 1000-block head", || {
        (j.height() >= BLOCKS).then_some(())
    });
    eprintln!("joiner synced after {:?}", t0.elapsed());
    for n in [1, 500, BLOCKS] {
        assert_eq!(j.block_hash(n), v.block_hash(n), "block {n}");
    }
    assert_eq!(j.balance("dev:bob"), 1_000_000 + BLOCKS / 10);
    let log = std::fs::read_to_string(j.data.join("node.log")).unwrap();
    assert!(log.contains("sync: height"), "progress is reported");
    // ...and follows the head as the validator keeps producing.
    let h = v.height() + 2;
    wait_for(60, "joiner follows the head", || {
        (j.height() >= h).then_some(())
    });
}
