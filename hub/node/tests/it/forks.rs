//! Protocol upgrades at a height (hard and soft fork, both sides) and private networks.

use crate::harness::{wait_for, write_config, NodeProc};
use crate::pow_toml;
use isthmus_chain::Transaction;
use isthmus_core::Keypair;

#[test]
fn hard_fork_splits_upgraded_from_old_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let h = 6;
    let upgrade = format!("[[upgrade]]\nheight = {h}\nversion = 2\nhash = \"blake3\"\n");
    let (newp, _) = write_config(dir.path(), "new", &pow_toml("hf", 3, "", &upgrade));
    let (oldp, _) = write_config(dir.path(), "old", &pow_toml("hf", 3, "", ""));
    let miner = NodeProc::start(&newp, 0, &dir.path().join("miner"), &[], &[]);
    let upgraded = NodeProc::start(
        &newp,
        1,
        &dir.path().join("up"),
        &[miner.listen],
        &["--no-mine"],
    );
    let old = NodeProc::start(
        &oldp,
        2,
        &dir.path().join("old"),
        &[miner.listen],
        &["--no-mine"],
    );
    wait_for(120, "upgraded nodes pass the fork height", || {
        (miner.height() >= h + 3 && upgraded.height() >= h + 3).then_some(())
    });
    assert_eq!(upgraded.block_hash(h + 2), miner.block_hash(h + 2));
    assert_eq!(upgraded.status()["protocol_version"], 2);
    // The old node follows up to the fork, then refuses the new blocks and stops there.
    // It syncs at its own pace (a loaded machine may start it late), so wait for it to
    // refuse a block; by then it must stand exactly at the last block before the fork.
    let s = wait_for(120, "the old node refuses a block past the fork", || {
        let s = old.status();
        (s["rejected_blocks"].as_u64().unwrap_or(0) >= 1).then_some(s)
    });
    assert_eq!(s["height"].as_u64(), Some(h - 1), "{s}");
    assert_eq!(old.block_hash(h - 1), miner.block_hash(h - 1));
    let reason = s["last_rejection"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("root mismatch"), "{reason}");
    let later = miner.height() + 2;
    wait_for(60, "miner moves on", || {
        (miner.height() >= later).then_some(())
    });
    assert_eq!(old.height(), h - 1, "old node stays behind the fork");
}

#[test]
fn soft_fork_tightens_a_rule_old_nodes_still_follow() {
    let dir = tempfile::tempdir().unwrap();
    let h = 4;
    let upgrade = format!("[[upgrade]]\nheight = {h}\nversion = 2\nforbid_zero_transfers = true\n");
    let (newp, cfg) = write_config(dir.path(), "new", &pow_toml("sf", 2, "", &upgrade));
    let (oldp, _) = write_config(dir.path(), "old", &pow_toml("sf", 2, "", ""));
    let miner = NodeProc::start(&newp, 0, &dir.path().join("miner"), &[], &[]);
    let old = NodeProc::start(
        &oldp,
        1,
        &dir.path().join("old"),
        &[miner.listen],
        &["--no-mine"],
    );
    wait_for(120, "both past the soft fork", || {
        (old.height() > h && miner.height() > h).then_some(())
    });
    let alice = Keypair::dev("alice");
    let bob = Keypair::dev("bob").id();
    let nonce = miner.nonce("dev:alice");
    let zero = Transaction::transfer(&alice, cfg.network(), nonce, bob, 0);
    // Upgraded node: refused with a reason.
    let r = miner.submit(std::slice::from_ref(&zero));
    assert!(
        r[0]["rejected"].as_str().unwrap().contains("zero"),
        "{}",
        r[0]
    );
    // Old node: still valid under its rules (it only follows, it never mines it in).
    let r = old.submit(&[zero]);
    assert!(r[0]["id"].is_string(), "{}", r[0]);
    let zid = r[0]["id"].as_str().unwrap().to_owned();
    // A normal transfer goes through and the old node keeps following the new blocks.
    let id = miner.transfer(&cfg, "dev:bob", "dev:alice", 5);
    let b = wait_for(90, "old node follows the upgraded chain", || {
        let b = old.tx_block(&id)?;
        (old.block_hash(b) == miner.block_hash(b)).then_some(b)
    });
    assert!(b > h);
    assert_eq!(old.status()["rejected_blocks"], 0);
    assert!(
        miner.tx_block(&zid).is_none(),
        "the zero transfer never lands"
    );
}

#[test]
fn private_network_refuses_a_node_outside_the_allowlist() {
    let dir = tempfile::tempdir().unwrap();
    let allow = "visibility = \"private\"\nallowlist = [\"dev:priv/node-0\", \"dev:priv/node-1\", \"dev:priv/node-2\"]";
    let (cfgp, _) = write_config(dir.path(), "priv", &pow_toml("priv", 3, allow, ""));
    // The intruder believes it may join: its own copy lists it and gives node 2 its key.
    let intruder_allow = allow.replace("]", ", \"dev:intruder\"]");
    let (intp, _) = write_config(
        dir.path(),
        "intruder",
        &pow_toml(
            "priv",
            3,
            &intruder_allow,
            "[[node]]\nindex = 2\nkey = \"dev:intruder\"\n",
        ),
    );
    let a = NodeProc::start(&cfgp, 0, &dir.path().join("a"), &[], &[]);
    let member = NodeProc::start(&cfgp, 1, &dir.path().join("m"), &[a.listen], &["--no-mine"]);
    let intruder = NodeProc::start(&intp, 2, &dir.path().join("x"), &[a.listen], &["--no-mine"]);
    wait_for(90, "member syncs", || (member.height() >= 3).then_some(()));
    let s = intruder.status();
    assert_eq!(s["height"], 0, "{s}");
    assert_eq!(s["peers"].as_array().unwrap().len(), 0, "{s}");
    assert_eq!(a.status()["peers"].as_array().unwrap().len(), 1);
}
