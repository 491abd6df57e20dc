//! Multi-node measurement on loopback: sustained signed-transfer TPS and commit latency for
//! 4 PoS validators and for 3 PoW nodes, each a full node runtime (TCP + Noise transport,
//! gossip, consensus, sled with flush per block) in this process, next to the ed25519
//! verify ceiling measured in the same run.
//!
//! Run: `cargo run --release -p isthmus-chain --example net_bench [-- SECONDS [OFFERED_TPS]]`
#![allow(clippy::print_stdout)] // a benchmark prints its figures on purpose

use isthmus_chain::node::{self, NodeOptions, RunningNode};
use isthmus_chain::{NetworkConfig, Transaction};
use isthmus_core::{sign, Domain, Hash32, Keypair};
use isthmus_transport::TransportKind;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SENDERS: usize = 400;
const BATCH: usize = 500;
const INTERVAL_MS: u64 = 500;

fn config(kind: &str, nodes: usize) -> Result<NetworkConfig, String> {
    let mut s = format!(
        "name = \"bench-{kind}\"\nnetwork_id = 4242\nnodes = {nodes}\nblock_interval_ms = {INTERVAL_MS}\n\
         max_block_txs = 20000\nmax_block_bytes = 16777216\n\
         [hardware]\nmemory_mb = 2048\nstorage_mb = 8192\ncpu_cores = 1\n"
    );
    if kind == "pos" {
        s.push_str(
            "[consensus]\ntype = \"pos\"\npropose_timeout_ms = 3000\nprevote_timeout_ms = 1000\nprecommit_timeout_ms = 1000\n",
        );
        for i in 0..nodes {
            s.push_str(&format!(
                "[[genesis.validator]]\nid = \"dev:bench-pos/node-{i}\"\nstake = 100\n"
            ));
        }
    } else {
        s.push_str("[consensus]\ntype = \"pow\"\ninitial_difficulty = 20000\nretarget_window = 8\nthreads = 1\n");
    }
    for i in 0..SENDERS {
        s.push_str(&format!(
            "[[genesis.allocation]]\naccount = \"dev:s{i}\"\nbalance = 1000000000\n"
        ));
    }
    NetworkConfig::from_toml_str(&s).map_err(|e| e.to_string())
}

fn verify_ceiling(cfg: &NetworkConfig, txs: &[Transaction]) -> (f64, f64) {
    let n = txs.len().min(5_000);
    let payloads: Vec<Vec<u8>> = txs[..n].iter().map(|t| t.body.canonical_bytes()).collect();
    let t0 = Instant::now();
    for (t, p) in txs[..n].iter().zip(&payloads) {
        if sign::verify(
            &t.body.from,
            Domain::Transaction,
            cfg.network(),
            p,
            &t.signature,
        )
        .is_err()
        {
            return (0.0, 0.0);
        }
    }
    let single = n as f64 / t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let ok = isthmus_chain::tx::verify_signatures(&txs[..n], cfg.network());
    let batch = ok.iter().filter(|r| r.is_ok()).count() as f64 / t0.elapsed().as_secs_f64();
    (single, batch)
}

struct Figures {
    tps: f64,
    rejected: usize,
    committed: usize,
    blocks: usize,
    p50_ms: f64,
    p95_ms: f64,
    mean_interval_ms: f64,
}

async fn run(
    kind: &str,
    nodes: usize,
    secs: u64,
    rate: usize,
    txs: Vec<Transaction>,
) -> Result<Figures, String> {
    let cfg = Arc::new(config(kind, nodes)?);
    let base = std::env::temp_dir().join(format!("isthmus-netbench-{kind}-{}", std::process::id()));
    let mut running: Vec<RunningNode> = Vec::new();
    for i in 0..nodes {
        let peers = running.iter().map(|r| r.handle.local_addr()).collect();
        let r = node::start(NodeOptions {
            cfg: cfg.clone(),
            index: i,
            data_dir: base.join(format!("n{i}")),
            listen: "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
            peers,
            mine: true,
            transport: TransportKind::Tcp,
        })
        .await
        .map_err(|e| e.to_string())?;
        running.push(r);
    }
    let handles: Vec<_> = running.iter().map(|r| r.handle.clone()).collect();
    let mut blocks = handles[0].subscribe();
    // Wait until the network produces blocks (every node connected).
    let t_ready = Instant::now();
    loop {
        let mut all = true;
        for h in &handles {
            let s = h.status().await.map_err(|e| e.to_string())?;
            all &= s.height >= 2 && s.peers.len() + 1 == nodes;
        }
        if all {
            break;
        }
        if t_ready.elapsed() > Duration::from_secs(60) {
            return Err("network did not start".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let algo = cfg.rules_at(1).hash;
    let mut sent_at: HashMap<Hash32, Instant> = HashMap::with_capacity(txs.len());
    // One submitter per node, each owning a disjoint set of senders (so nonces arrive in
    // order), together offering `rate` transactions per second in batches.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<(Vec<Hash32>, Instant)>(1024);
    let rejected = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut submitters = Vec::new();
    let per_node_rate = rate as f64 / nodes as f64;
    for (r, h) in handles.iter().enumerate() {
        let mine: Vec<Transaction> = txs
            .iter()
            .enumerate()
            .filter(|(i, _)| (i % SENDERS) % nodes == r)
            .map(|(_, t)| t.clone())
            .collect();
        let (h, done_tx, rejected) = (h.clone(), done_tx.clone(), rejected.clone());
        submitters.push(tokio::spawn(async move {
            let t0 = Instant::now();
            for (k, chunk) in mine.chunks(BATCH).enumerate() {
                let due = t0 + Duration::from_secs_f64(k as f64 * BATCH as f64 / per_node_rate);
                tokio::time::sleep_until(due.into()).await;
                let at = Instant::now();
                let ids: Vec<Hash32> = chunk.iter().map(|t| t.id(algo)).collect();
                let Ok(res) = h.submit(chunk.to_vec()).await else {
                    break;
                };
                let bad = res.iter().filter(|r| r.is_err()).count();
                rejected.fetch_add(bad, std::sync::atomic::Ordering::Relaxed);
                if done_tx.send((ids, at)).await.is_err() {
                    break;
                }
            }
        }));
    }
    drop(done_tx);
    let start = Instant::now();
    let mut latencies = Vec::new();
    let mut committed = 0usize;
    let mut nblocks = 0usize;
    let mut first_commit: Option<Instant> = None;
    let mut last_commit = start;
    let mut block_times = Vec::new();
    let deadline = start + Duration::from_secs(secs);
    while Instant::now() < deadline {
        while let Ok((ids, at)) = done_rx.try_recv() {
            for id in ids {
                sent_at.insert(id, at);
            }
        }
        let c = tokio::select! {
            c = blocks.recv() => c,
            _ = tokio::time::sleep_until(deadline.into()) => break,
        };
        let Ok(c) = c else { continue };
        let now = Instant::now();
        while let Ok((ids, at)) = done_rx.try_recv() {
            for id in ids {
                sent_at.insert(id, at);
            }
        }
        nblocks += 1;
        block_times.push(now);
        let n = c.block.txs.len();
        if n > 0 {
            first_commit.get_or_insert(now);
            last_commit = now;
            committed += n;
            for id in c.block.tx_ids(algo) {
                if let Some(at) = sent_at.get(&id) {
                    latencies.push(now.duration_since(*at).as_secs_f64() * 1000.0);
                }
            }
        }
    }
    for s in submitters {
        s.abort();
    }
    for r in running {
        r.shutdown().await;
    }
    // Best effort: the bench's own temporary directory.
    let _ = std::fs::remove_dir_all(&base);
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let span = first_commit.map_or(0.0, |f| last_commit.duration_since(f).as_secs_f64());
    let intervals: Vec<f64> = block_times
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_secs_f64() * 1000.0)
        .collect();
    Ok(Figures {
        // Transactions of the first committing block arrived before the span started.
        tps: if span > 0.0 {
            committed as f64 / span
        } else {
            0.0
        },
        committed,
        rejected: rejected.load(std::sync::atomic::Ordering::Relaxed),
        blocks: nblocks,
        p50_ms: pct(0.5),
        p95_ms: pct(0.95),
        mean_interval_ms: intervals.iter().sum::<f64>() / intervals.len().max(1) as f64,
    })
}

fn sign_txs(cfg: &NetworkConfig, total: usize) -> Vec<Transaction> {
    let keys: Vec<Keypair> = (0..SENDERS)
        .map(|i| Keypair::dev(&format!("s{i}")))
        .collect();
    let sink = Keypair::dev("sink").id();
    (0..total)
        .map(|i| {
            let k = &keys[i % SENDERS];
            Transaction::transfer(k, cfg.network(), (i / SENDERS) as u64, sink, 1)
        })
        .collect()
}

fn main() -> Result<(), String> {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let rate: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(6_000);
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let pos_cfg = config("pos", 4)?;
    let total = 120_000;
    let t0 = Instant::now();
    let txs = sign_txs(&pos_cfg, total);
    println!(
        "signed {total} transfers in {:.1}s (client cost, not measured below)",
        t0.elapsed().as_secs_f64()
    );
    let (single, batch) = verify_ceiling(&pos_cfg, &txs);
    println!("ed25519 verify ceiling (one core): {single:.0}/s single, {batch:.0}/s batch path");
    for (kind, nodes) in [("pos", 4), ("pow", 3)] {
        let f = rt.block_on(run(kind, nodes, secs, rate, txs.clone()))?;
        println!(
            "{kind} x{nodes}: offered {rate}/s, {:.0} TPS sustained ({} txs in {} blocks over {secs}s, {} refused at admission), commit latency p50 {:.0} ms p95 {:.0} ms, \
             mean block interval {:.0} ms (target {INTERVAL_MS}); TPS/verify-ceiling = {:.3} (single) {:.3} (batch); p50 latency/interval = {:.2}",
            f.tps,
            f.committed,
            f.blocks,
            f.rejected,
            f.p50_ms,
            f.p95_ms,
            f.mean_interval_ms,
            f.tps / single,
            f.tps / batch,
            f.p50_ms / INTERVAL_MS as f64
        );
    }
    Ok(())
}
