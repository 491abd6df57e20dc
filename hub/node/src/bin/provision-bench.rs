//! Provisioning time and idle node memory: a PoS network of 4 validators and a PoW network
//! of 3 nodes, each provisioned as `hub node run` processes the way `hub serve` does it
//! (record, keys, config, supervisor), timed from the start of provisioning to the first
//! block any node reports, and to `up` (every process running, every node past genesis and
//! at most one block behind the best). Times are given in block intervals of the new
//! network, and against the same run's baseline: one bare node process, from spawn to its
//! published `node.json`. Then the resident memory of each idle node process, read from
//! `/proc`.
//!
//! `cargo build --release -p isthmus-hub --bins && target/release/provision-bench [--trials N]`
#![allow(clippy::print_stdout)] // a benchmark report goes to stdout

use anyhow::Context as _;
use isthmus_chain::rpc::{NodeApi, RemoteNode, RemoteNodeConfig};
use isthmus_core::Keypair;
use isthmus_hub::provision::network::{HubIdentities, ProvisionedNetwork};
use isthmus_hub::provision::spec::NetworkSpec;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const INTERVAL_MS: u64 = 500;

fn hub_exe() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let exe = me.with_file_name("hub");
    anyhow::ensure!(
        exe.exists(),
        "{} is missing: build it with `cargo build --release -p isthmus-hub --bins`",
        exe.display()
    );
    Ok(exe)
}

fn spec(name: &str, consensus: &str, nodes: usize) -> anyhow::Result<NetworkSpec> {
    Ok(serde_json::from_value(serde_json::json!({
        "name": name, "consensus": consensus, "nodes": nodes,
        "block_interval_ms": INTERVAL_MS,
    }))?)
}

/// Resident memory of `pid` in MiB, from `/proc/PID/status`.
fn rss_mib(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

struct Trial {
    first_block: Duration,
    up: Duration,
    rss: Vec<f64>,
}

async fn heights(net: &ProvisionedNetwork, key: &Keypair) -> Vec<Option<u64>> {
    let mut out = Vec::new();
    for n in &net.record.nodes {
        let cfg = RemoteNodeConfig::new(net.config.clone(), n.rpc, n.id);
        let h = match RemoteNode::connect(cfg, key.clone()).await {
            Ok(r) => {
                let h = r.status().await.ok().map(|s| s.height);
                r.close().await;
                h
            }
            Err(_) => None,
        };
        out.push(h);
    }
    out
}

async fn trial(root: &Path, spec: &NetworkSpec, exe: &Path) -> anyhow::Result<Trial> {
    let key = Keypair::generate();
    let hub = HubIdentities {
        attesters: vec![Keypair::generate().id()],
        threshold: 1,
        rpc_client: key.id(),
    };
    let t0 = Instant::now();
    let mut net = ProvisionedNetwork::start(root, spec, spec.id(), &hub, exe)?;
    let result = async {
        let _all = net.link(&key, Duration::from_secs(120)).await?;
        let first_block = t0.elapsed();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let hs = heights(&net, &key).await;
            let best = hs.iter().flatten().max().copied().unwrap_or(0);
            if net.all_up()
                && hs
                    .iter()
                    .all(|h| h.is_some_and(|h| h >= 1 && h + 1 >= best))
            {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "network never up: {hs:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let up = t0.elapsed();
        // Idle: no transactions, blocks keep coming.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let rss = (0..spec.nodes)
            .filter_map(|i| net.pid(i).and_then(rss_mib))
            .collect();
        anyhow::Ok(Trial {
            first_block,
            up,
            rss,
        })
    }
    .await;
    net.stop().await;
    result
}

/// The baseline: one node process from spawn to its published `node.json`.
fn bare_node(dir: &Path, exe: &Path) -> anyhow::Result<Duration> {
    let cfg = dir.join("bare.toml");
    std::fs::write(
        &cfg,
        "name = \"bare\"\nnetwork_id = 4242\nnodes = 1\nblock_interval_ms = 500\n\
         [consensus]\ntype = \"pos\"\n[[genesis.validator]]\nid = \"dev:bare/node-0\"\nstake = 1\n",
    )?;
    let data = dir.join("bare");
    let t0 = Instant::now();
    let mut child = std::process::Command::new(exe)
        .args(["node", "run", "--config"])
        .arg(&cfg)
        .args(["--index", "0", "--data"])
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let info = data.join("node.json");
    let took = loop {
        if info.exists() {
            break t0.elapsed();
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            anyhow::bail!("the bare node never started");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    child.kill()?;
    child.wait()?;
    Ok(took)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let trials: usize = match std::env::args().skip_while(|a| a != "--trials").nth(1) {
        Some(t) => t.parse().context("--trials N")?,
        None => 3,
    };
    let exe = hub_exe()?;
    let interval = INTERVAL_MS as f64 / 1000.0;
    println!(
        "provisioning: {trials} trial(s) per network, block interval {INTERVAL_MS} ms, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for (name, consensus, nodes) in [("pos4", "pos", 4), ("pow3", "pow", 3)] {
        let mut firsts = Vec::new();
        let mut ups = Vec::new();
        let mut rss = Vec::new();
        let mut bases = Vec::new();
        for t in 0..trials {
            let dir = std::env::temp_dir()
                .join(format!("provision-bench-{}-{name}-{t}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let r = async {
                bases.push(bare_node(&dir, &exe)?.as_secs_f64());
                trial(&dir, &spec(name, consensus, nodes)?, &exe).await
            }
            .await
            .with_context(|| format!("{name} trial {t}"));
            let _ = std::fs::remove_dir_all(&dir);
            let r = r?;
            firsts.push(r.first_block.as_secs_f64());
            ups.push(r.up.as_secs_f64());
            rss.extend(r.rss);
        }
        let (first, up, base) = (median(firsts), median(ups), median(bases));
        println!(
            "{name}: first block {first:.2} s = {:.1} intervals ({:.1}x a bare node start); \
             up {up:.2} s = {:.1} intervals ({:.1}x); idle node RSS median {:.1} MiB (max {:.1}) \
             [bare node start {:.0} ms]",
            first / interval,
            first / base,
            up / interval,
            up / base,
            median(rss.clone()),
            rss.iter().copied().fold(0.0, f64::max),
            base * 1000.0
        );
    }
    Ok(())
}
