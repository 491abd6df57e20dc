//! kill -9 a PoS validator in the middle of a height, restart it, again and again: with
//! its consensus write-ahead log it resumes where it stopped, no validator ever signs two
//! different votes for one (height, round, type), and the network keeps finalizing.
//!
//! Trials: 50 (the count), or `ISTHMUS_WAL_TRIALS`.

use crate::harness::{start_mesh, wait_for, write_config, NodeProc};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DEFAULT_TRIALS: usize = 50;

/// Four validators, short blocks and timeouts so a height takes a fraction of a second and
/// one down (its turn to propose) costs one short propose timeout.
fn toml() -> String {
    let mut s = String::from(
        "name = \"walk\"\nnetwork_id = 9441\nnodes = 4\nblock_interval_ms = 50\n\
         [consensus]\ntype = \"pos\"\npropose_timeout_ms = 500\nprevote_timeout_ms = 250\n\
         precommit_timeout_ms = 250\n\
         [[genesis.allocation]]\naccount = \"dev:alice\"\nbalance = 1000000\n",
    );
    for i in 0..4 {
        s.push_str(&format!(
            "[[genesis.validator]]\nid = \"dev:walk/node-{i}\"\nstake = 100\n"
        ));
    }
    s
}

/// `key=value` fields of a log line, colour codes removed.
fn fields(line: &str) -> BTreeMap<String, String> {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Every vote each validator signed, over all its runs: (node, height, round, precommit)
/// -> the values signed. Each node logs a vote when it signs it, before it can be sent.
type Signed = BTreeMap<(usize, u64, i64, bool), BTreeSet<String>>;

fn signed_votes(nodes: &[NodeProc]) -> (Signed, usize) {
    let mut out = Signed::new();
    let mut lines = 0;
    for n in nodes {
        let log = std::fs::read_to_string(n.data.join("node.log")).unwrap_or_default();
        for l in log.lines().filter(|l| l.contains("signed vote")) {
            let f = fields(l);
            let (Some(h), Some(r), Some(p), Some(v)) = (
                f.get("height").and_then(|x| x.parse().ok()),
                f.get("round").and_then(|x| x.parse().ok()),
                f.get("precommit").and_then(|x| x.parse().ok()),
                f.get("value"),
            ) else {
                panic!("unparsed vote line of node {}: {l}", n.index);
            };
            lines += 1;
            out.entry((n.index, h, r, p)).or_default().insert(v.clone());
        }
    }
    (out, lines)
}

/// Wait until node `n` signs a vote at a height above `committed` (it is then in the middle
/// of that height), polling its log.
fn wait_for_a_vote_above(n: &NodeProc, committed: u64) {
    let t0 = Instant::now();
    let log = n.data.join("node.log");
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let voted = text
            .lines()
            .rev()
            .take(50)
            .filter(|l| l.contains("signed vote"))
            .filter_map(|l| fields(l).get("height")?.parse::<u64>().ok())
            .any(|h| h > committed);
        if voted {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "node {} signed no vote above height {committed}\n{}",
            n.index,
            n.log_tail()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn count_in_logs(nodes: &[NodeProc], needle: &str) -> usize {
    nodes
        .iter()
        .map(|n| {
            std::fs::read_to_string(n.data.join("node.log"))
                .unwrap_or_default()
                .matches(needle)
                .count()
        })
        .sum()
}

#[test]
fn validators_killed_mid_height_never_equivocate_and_the_network_goes_on() {
    let trials = std::env::var("ISTHMUS_WAL_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_TRIALS);
    let dir = tempfile::tempdir().unwrap();
    let (cfgp, _) = write_config(dir.path(), "walk", &toml());
    let mut nodes = start_mesh(&cfgp, 4, dir.path());
    // A varying point inside the height for each kill; the seed is printed to replay a run.
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.subsec_nanos() as u64 | 1);
    eprintln!("kill -9 trials: {trials}, seed {seed}");
    let t0 = Instant::now();
    for t in 0..trials {
        // Every trial starts on a network that went on since the last kill, with the last
        // victim caught up.
        let target = nodes.iter().map(NodeProc::height).max().unwrap() + 1;
        wait_for(60, "every node at the next height", || {
            nodes.iter().all(|n| n.height() >= target).then_some(())
        });
        let v = t % nodes.len();
        let h = nodes[v].height();
        wait_for_a_vote_above(&nodes[v], h);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(seed % 40));
        nodes[v].kill9();
        let peers: Vec<_> = nodes
            .iter()
            .filter(|n| n.index != v)
            .map(|n| n.listen)
            .collect();
        nodes[v].restart(&peers);
    }
    let kills = t0.elapsed();
    // The network goes on, with every validator (each restarted at least once) on board.
    let top = nodes.iter().map(NodeProc::height).max().unwrap();
    wait_for(120, "all four finalize past the trials", || {
        nodes.iter().all(|n| n.height() >= top + 3).then_some(())
    });
    let h = top + 2;
    let hash = nodes[0].block_hash(h);
    for n in &nodes {
        assert_eq!(n.block_hash(h), hash, "node {} at height {h}", n.index);
        assert_eq!(n.status()["evidence"], 0, "node {} holds evidence", n.index);
    }
    // No validator signed two different votes for one height, round and type, over all its
    // runs; and no node ever saw one from another (Malachite's vote keeper).
    let (signed, lines) = signed_votes(&nodes);
    let conflicts: Vec<_> = signed.iter().filter(|(_, vals)| vals.len() > 1).collect();
    assert!(conflicts.is_empty(), "equivocations: {conflicts:?}");
    assert_eq!(count_in_logs(&nodes, "equivocation evidence recorded"), 0);
    // (at least the one vote each trial waited for)
    assert!(lines >= trials, "only {lines} signed votes in the logs");
    // Some restarts landed mid-height with votes in the log, which were replayed.
    let replays = count_in_logs(&nodes, "replaying the consensus wal");
    assert!(replays >= 1, "no restart replayed its log");
    eprintln!(
        "{trials} kill -9 trials in {:.1}s ({:.2}s each), {replays} replayed a wal, \
         {lines} signed votes checked, height {} after",
        kills.as_secs_f64(),
        kills.as_secs_f64() / trials.max(1) as f64,
        nodes[0].height()
    );
}
