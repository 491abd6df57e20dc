//! kill -9 during block production: the node restarts from its last committed block with
//! consistent state and carries on.

use crate::harness::{wait_for, write_config, NodeProc};
use crate::pos_toml;
use isthmus_chain::Transaction;
use isthmus_core::Keypair;

#[test]
fn kill9_during_block_production_restarts_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let (cfgp, cfg) = write_config(dir.path(), "crash", &pos_toml("crash", 1, 50, ""));
    let mut n = NodeProc::start(&cfgp, 0, &dir.path().join("n0"), &[], &[]);
    let alice = Keypair::dev("alice");
    let bob = Keypair::dev("bob").id();
    let mut nonce = 0;
    for round in 0..3 {
        // Keep the node busy with blocks full of transfers, then kill it mid-stream.
        let h_start = n.height();
        let mut acked = 0u64;
        while n.height() < h_start + 5 {
            let txs: Vec<Transaction> = (0..50)
                .map(|i| Transaction::transfer(&alice, cfg.network(), nonce + i, bob, 1))
                .collect();
            let ok = n
                .submit(&txs)
                .iter()
                .filter(|r| r["id"].is_string())
                .count() as u64;
            nonce += ok;
            acked += ok;
            assert!(acked < 100_000);
        }
        let committed_before = n.height();
        n.kill9();
        n.restart(&[]);
        let h = n.height();
        assert!(
            h >= committed_before,
            "round {round}: height {h} < {committed_before}"
        );
        // Consistent state: supply conserved, nonce matches what the chain holds, and
        // every block up to the head is readable.
        let a = n.balance("dev:alice");
        let b = n.balance("dev:bob");
        assert_eq!(a + b, 2_000_000, "round {round}: supply");
        assert_eq!(
            n.nonce("dev:alice"),
            1_000_000 - a,
            "round {round}: nonce vs balance"
        );
        for k in 1..=h {
            assert!(n.block_hash(k).is_some(), "block {k} readable");
        }
        nonce = n.nonce("dev:alice");
        wait_for(60, "production resumes", || (n.height() > h).then_some(()));
    }
}
