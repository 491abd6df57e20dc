//! I.3 end to end on PoS and PoW networks, liveness with a validator down, PoW fork choice.

use crate::harness::{start_mesh, wait_for, write_config, NodeProc};
use crate::{pos_toml, pow_toml};
use serde_json::json;

/// The transaction is in the same block (same number and hash) on every node.
fn same_block_everywhere(nodes: &[&NodeProc], id: &str) -> u64 {
    wait_for(90, "transaction on every node in the same block", || {
        let mut at = None;
        for n in nodes {
            let b = n.tx_block(id)?;
            let h = n.block_hash(b)?;
            match &at {
                None => at = Some((b, h)),
                Some(x) if *x == (b, h) => {}
                Some(_) => return None,
            }
        }
        at.map(|(b, _)| b)
    })
}

#[test]
fn pos4_transfer_is_final_everywhere_and_survives_one_validator_down() {
    let dir = tempfile::tempdir().unwrap();
    let (cfgp, cfg) = write_config(dir.path(), "pos4", &pos_toml("pos4", 4, 300, ""));
    let mut nodes = start_mesh(&cfgp, 4, dir.path());
    // I.3: a transfer submitted to one node lands in the same final block everywhere.
    let id = nodes[2].transfer(&cfg, "dev:alice", "dev:bob", 7);
    let refs: Vec<&NodeProc> = nodes.iter().collect();
    let b = same_block_everywhere(&refs, &id);
    for n in &nodes {
        let cert = n.call(json!({"cmd": "cert", "number": b}));
        assert!(cert["signers"].as_array().unwrap().len() >= 3, "{cert}");
        assert_eq!(n.balance("dev:bob"), 1_000_007);
    }
    // One of four validators down (kill -9): the other three keep finalizing.
    nodes[3].kill9();
    let h0 = nodes[0].height();
    wait_for(90, "finality with 3 of 4 validators", || {
        nodes[..3]
            .iter()
            .all(|n| n.height() >= h0 + 3)
            .then_some(())
    });
    let id2 = nodes[1].transfer(&cfg, "dev:bob", "dev:alice", 3);
    let refs: Vec<&NodeProc> = nodes[..3].iter().collect();
    same_block_everywhere(&refs, &id2);
    // The killed validator restarts and catches up.
    let peers: Vec<_> = nodes[..3].iter().map(|n| n.listen).collect();
    nodes[3].restart(&peers);
    let target = nodes[0].height();
    wait_for(90, "restarted validator catches up", || {
        (nodes[3].height() >= target).then_some(())
    });
    assert_eq!(nodes[3].block_hash(target), nodes[0].block_hash(target));
    assert_eq!(nodes[3].balance("dev:alice"), nodes[0].balance("dev:alice"));
    // ...and takes part again: all four advance together.
    let t2 = nodes[0].height() + 2;
    wait_for(90, "all four advance", || {
        nodes.iter().all(|n| n.height() >= t2).then_some(())
    });
}

#[test]
fn pow3_transfer_lands_in_the_same_block_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let (cfgp, cfg) = write_config(dir.path(), "pow3", &pow_toml("pow3", 3, "", ""));
    let nodes = start_mesh(&cfgp, 3, dir.path());
    let id = nodes[1].transfer(&cfg, "dev:alice", "dev:bob", 11);
    let refs: Vec<&NodeProc> = nodes.iter().collect();
    let b = same_block_everywhere(&refs, &id);
    // Buried under a few more blocks it stays there.
    wait_for(90, "confirmations", || {
        nodes.iter().all(|n| n.height() >= b + 3).then_some(())
    });
    let b2 = same_block_everywhere(&refs, &id);
    assert_eq!(b, b2);
    for n in &nodes {
        assert_eq!(n.balance("dev:bob"), 1_000_011);
    }
}

#[test]
fn pow_fork_between_two_miners_resolves_to_more_work() {
    let dir = tempfile::tempdir().unwrap();
    let (cfgp, _) = write_config(dir.path(), "fork", &pow_toml("fork", 2, "", ""));
    // Two isolated miners build competing branches.
    let a = NodeProc::start(&cfgp, 0, &dir.path().join("a"), &[], &[]);
    let b = NodeProc::start(&cfgp, 1, &dir.path().join("b"), &[], &[]);
    wait_for(90, "B mines 3 blocks", || (b.height() >= 3).then_some(()));
    let work =
        |n: &NodeProc| -> u128 { n.status()["total_work"].as_str().unwrap().parse().unwrap() };
    let head = |n: &NodeProc| -> String { n.status()["head_hash"].as_str().unwrap().to_owned() };
    // Pausing a miner may still let a block it was finishing land: wait until the head has
    // stayed put for a second before reading it.
    let settle = |n: &NodeProc, who: &str| {
        let mut last = String::new();
        let mut same = 0;
        wait_for(60, &format!("{who}'s miner to stop"), || {
            let h = head(n);
            if h == last {
                same += 1;
            } else {
                same = 0;
                last = h;
            }
            (same >= 10).then_some(())
        });
    };
    b.call(json!({"cmd": "mine", "on": false}));
    settle(&b, "B");
    let wb = work(&b);
    wait_for(90, "A out-works B", || (work(&a) > wb).then_some(()));
    a.call(json!({"cmd": "mine", "on": false}));
    settle(&a, "A");
    let (wa, a_head) = (work(&a), head(&a));
    let b_head = head(&b);
    assert_ne!(a_head, b_head, "two branches");
    assert!(wa > wb);
    // Connect them: B reorgs to A's heavier branch, A keeps it.
    b.call(json!({"cmd": "connect", "addr": a.listen.to_string()}));
    wait_for(90, "B adopts the heavier chain", || {
        (head(&b) == a_head).then_some(())
    });
    assert_eq!(head(&a), a_head);
    assert_eq!(work(&b), wa);
}
