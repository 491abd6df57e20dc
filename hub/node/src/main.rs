//! The `hub` binary: validates network configs, runs one chain node, starts a local
//! multi-node network as separate processes, reads node status and submits transfers.
//!
//! It only wires the `isthmus-chain` library to the command line and the process
//! environment; it must never implement chain rules itself, and `hub net up` only ever
//! stops the child processes it started, by pid.
#![allow(clippy::print_stdout)] // a CLI prints addresses, tables and ids on purpose

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use isthmus_chain::config::parse_identity;
use isthmus_chain::node::{self, NodeOptions};
use isthmus_chain::rpc::{RpcAccess, RpcServer};
use isthmus_chain::{NetworkConfig, Transaction};
use isthmus_core::{Keypair, NodeId};
use isthmus_hub::serve::HubConfig;
use isthmus_hub::{status, up};
use isthmus_logs::LogFormat;
use isthmus_transport::TransportKind;

mod keys_cmd;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "hub",
    version,
    about = "Isthmus hub: chain nodes and local networks",
    long_about = "Isthmus hub: run chain nodes (PoW or PoS), start a local multi-process network \
                  on loopback, read node status and submit transfers.\n\n\
                  Quick start:\n  hub config check configs/pos-4.toml\n  \
                  hub net up configs/pos-4.toml --data /tmp/pos4\n  \
                  hub net status --data /tmp/pos4\n  \
                  hub tx transfer --config configs/pos-4.toml --node 127.0.0.1:PORT \
                  --from dev:alice --to dev:bob --amount 5 --wait"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Log lines as human text or JSON (one object per line, for log shippers); to stderr
    #[arg(long, global = true, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the whole hub in one process: hub chain, networks `alpha` (PoW) and `beta` (PoS),
    /// interop core, an in-process relayer on QUIC and the HTTP API, with funded demo
    /// accounts
    Up(UpArgs),
    /// Run the hub from a hub config file: its API keys, wallet, and the native networks
    /// it provisions (as supervised node processes) or attaches (over their nodes' RPC)
    Serve {
        /// Hub config (TOML); see configs/hub.toml
        #[arg(long)]
        config: PathBuf,
    },
    /// Check a hub config or a network config and list every problem
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Make a new ed25519 key: write its seed to FILE (mode 0600, never overwritten) and
    /// print its identity (`isth_…`), for node keys and accounts the hub wallet holds
    Keygen {
        /// Where to write the seed (64 hex digits)
        #[arg(long)]
        out: PathBuf,
    },
    /// Run one node
    Node {
        #[command(subcommand)]
        cmd: NodeCmd,
    },
    /// Local multi-process networks on loopback
    Net {
        #[command(subcommand)]
        cmd: NetCmd,
    },
    /// Build, sign and submit transactions through a node's status endpoint
    Tx {
        #[command(subcommand)]
        cmd: TxCmd,
    },
    /// API keys of a running hub (admin key): create, list, revoke, rotate
    Keys(keys_cmd::KeysArgs),
}

#[derive(clap::Args)]
struct UpArgs {
    /// Also run one transfer and one swap over the API, printing every step
    #[arg(long)]
    demo: bool,
    /// Data directory (chains, interop journal, API store, dev secrets)
    #[arg(long, default_value = ".isthmus")]
    data: PathBuf,
    /// HTTP API address (port 0: any free port)
    #[arg(long, default_value = up::DEFAULT_API)]
    api: SocketAddr,
    /// Block interval of the three chains, in milliseconds
    #[arg(long, default_value_t = 250)]
    block_ms: u64,
    /// HTLC margin: the initiator's timelock must exceed the participant's by this much
    #[arg(long, default_value_t = 30)]
    htlc_delta_secs: u64,
    /// How long escrows stay locked after a transfer's deadline (release window)
    #[arg(long, default_value_t = 60)]
    release_window_secs: u64,
    /// The hub's QUIC packet ingress, where the in-process relayer delivers (port 0: any
    /// free port)
    #[arg(long, default_value = "127.0.0.1:0")]
    relay_listen: SocketAddr,
    /// Prometheus metrics of the relayer and the ingress, served as `GET /metrics` (port 0:
    /// any free port)
    #[arg(long, default_value = "127.0.0.1:0")]
    metrics: SocketAddr,
    /// Seconds a message waits for the relayer before the hub delivers it itself
    #[arg(long, default_value_t = 10)]
    relay_fallback_secs: u64,
    /// Serve the API over HTTPS with this PEM certificate chain (with --tls-key)
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Check a hub config (`hub serve --config`) or a network config and list every
    /// problem at once; reads the secrets and genesis configs a hub config names
    Check {
        /// Path to the TOML file
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum NodeCmd {
    /// Run node INDEX of the network in CONFIG until Ctrl-C / SIGTERM
    Run {
        /// Network TOML file
        #[arg(long)]
        config: PathBuf,
        /// This node's index in the network (selects its key and hardware budget)
        #[arg(long)]
        index: usize,
        /// Data directory (chain database; `node.json` with the bound addresses)
        #[arg(long)]
        data: PathBuf,
        /// Peer-to-peer listen address
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Peer to dial and keep connected (repeatable)
        #[arg(long = "peer")]
        peers: Vec<SocketAddr>,
        /// Local JSON-lines status endpoint
        #[arg(long, default_value = "127.0.0.1:0")]
        status_addr: SocketAddr,
        /// The node's authenticated RPC (Noise over TCP, this node's key), through which a
        /// hub or a relayer on another machine links the network
        #[arg(long, default_value = "127.0.0.1:0")]
        rpc: SocketAddr,
        /// Identity (`isth_…` or `dev:LABEL`) that may also make admin calls over the RPC
        /// (dial a peer, pause or step mining); repeatable
        #[arg(long = "rpc-admin")]
        rpc_admins: Vec<String>,
        /// Identity that may read and submit over the RPC; repeatable. Without any, a
        /// public network admits every authenticated caller and a private one only its
        /// allowlist
        #[arg(long = "rpc-reader")]
        rpc_readers: Vec<String>,
        /// Transport between nodes: tcp (Noise) or quic
        #[arg(long, default_value = "tcp")]
        transport: TransportKind,
        /// PoW: do not mine (follow only)
        #[arg(long)]
        no_mine: bool,
        /// Stop when the process PID ends (set by the hub for the nodes it supervises, so
        /// none outlives a hub killed with SIGKILL)
        #[arg(long, hide = true)]
        parent_pid: Option<i32>,
    },
}

#[derive(Subcommand)]
enum NetCmd {
    /// Start every node of CONFIG as a separate process; Ctrl-C stops them
    Up {
        /// Network TOML file
        config: PathBuf,
        /// Directory for per-node data dirs and logs (default ./net-NAME)
        #[arg(long)]
        data: Option<PathBuf>,
        /// Transport between nodes: tcp (Noise) or quic
        #[arg(long, default_value = "tcp")]
        transport: TransportKind,
    },
    /// Show the status of every node of a network started with `hub net up`
    Status {
        /// The directory given to `hub net up --data`
        #[arg(long)]
        data: PathBuf,
    },
}

#[derive(Subcommand)]
enum TxCmd {
    /// Transfer the native asset
    Transfer {
        /// Network TOML file (for the network id)
        #[arg(long)]
        config: PathBuf,
        /// Status endpoint of the node to submit to
        #[arg(long)]
        node: SocketAddr,
        /// Sender key: `dev:LABEL` or a file with a 64-hex-digit seed
        #[arg(long)]
        from: String,
        /// Recipient: `dev:LABEL` or an `isth_…` id
        #[arg(long)]
        to: String,
        #[arg(long)]
        amount: u64,
        /// Wait (up to 60 s) until the transaction is in a committed block
        #[arg(long)]
        wait: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Up(args) => {
            init_logs_quiet(cli.log_format);
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(hub_up(args))
        }
        Cmd::Keygen { out } => {
            let key = Keypair::generate();
            write_new_secret(&out, key.to_hex_seed().as_bytes())?;
            println!("{}", key.id());
            eprintln!("seed written to {} (mode 0600)", out.display());
            Ok(())
        }
        Cmd::Serve { config } => {
            init_logs(cli.log_format);
            let plan = hub_plan(&config)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(hub_serve(plan))
        }
        Cmd::Config {
            cmd: ConfigCmd::Check { file },
        } if std::fs::read_to_string(&file).is_ok_and(|t| HubConfig::looks_like(&t)) => {
            let plan = hub_plan(&file)?;
            eprintln!(
                "hub config {} is valid: data {}, api {}, {} network(s): {}",
                file.display(),
                plan.opts.data.display(),
                plan.opts.api,
                plan.networks.len(),
                plan.networks
                    .iter()
                    .map(|(n, how)| format!(
                        "{n} ({})",
                        match how {
                            up::NetworkPlan::Embedded(_) => "embedded",
                            up::NetworkPlan::Provisioned { .. } => "provisioned",
                            up::NetworkPlan::Attached { .. } => "attached",
                        }
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(())
        }
        Cmd::Config {
            cmd: ConfigCmd::Check { file },
        } => {
            let cfg = load(&file)?;
            eprintln!(
                "config {} is valid: network `{}` (id {}), {} node(s)",
                file.display(),
                cfg.name,
                cfg.network_id,
                cfg.nodes
            );
            Ok(())
        }
        Cmd::Node {
            cmd:
                NodeCmd::Run {
                    config,
                    index,
                    data,
                    listen,
                    peers,
                    status_addr,
                    rpc,
                    rpc_admins,
                    rpc_readers,
                    transport,
                    no_mine,
                    parent_pid,
                },
        } => {
            init_logs(cli.log_format);
            if let Some(parent) = parent_pid {
                exit_with_parent(parent)?;
            }
            let cfg = Arc::new(load(&config)?);
            let access = rpc_access(&cfg, &rpc_admins, &rpc_readers)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(run_node(
                NodeOptions {
                    cfg,
                    index,
                    data_dir: data,
                    listen,
                    peers,
                    mine: !no_mine,
                    transport,
                },
                status_addr,
                (rpc, access),
            ))
        }
        Cmd::Net {
            cmd:
                NetCmd::Up {
                    config,
                    data,
                    transport,
                },
        } => net_up(&config, data, transport),
        Cmd::Net {
            cmd: NetCmd::Status { data },
        } => net_status(&data),
        Cmd::Tx {
            cmd:
                TxCmd::Transfer {
                    config,
                    node,
                    from,
                    to,
                    amount,
                    wait,
                },
        } => transfer(&config, node, &from, &to, amount, wait),
        Cmd::Keys(args) => keys_cmd::run(args),
    }
}

fn load(file: &Path) -> anyhow::Result<NetworkConfig> {
    NetworkConfig::load(file).with_context(|| format!("config {} is not usable", file.display()))
}

/// Logs of long-running commands: info, but not every consensus step (`RUST_LOG`
/// overrides).
fn init_logs(format: LogFormat) {
    isthmus_logs::init(
        format,
        "info,informalsystems_malachitebft_core_consensus=warn",
    );
}

/// Logs for `hub up`: warnings only by default, so the printed tour stays readable.
fn init_logs_quiet(format: LogFormat) {
    isthmus_logs::init(
        format,
        "warn,informalsystems_malachitebft_core_consensus=off",
    );
}

async fn hub_up(args: UpArgs) -> anyhow::Result<()> {
    let mut opts = up::UpOptions::new(args.data, args.api);
    opts.block_ms = args.block_ms.max(20);
    opts.htlc_delta_secs = args.htlc_delta_secs;
    opts.release_window_secs = args.release_window_secs;
    opts.relay = up::relay::RelayOptions {
        listen: args.relay_listen,
        metrics: args.metrics,
        fallback_secs: args.relay_fallback_secs,
        ..up::relay::RelayOptions::default()
    };
    if args.demo && args.tls_cert.is_some() {
        anyhow::bail!("--demo speaks plain HTTP to the API: run it without --tls-cert");
    }
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        opts.api_settings.tls = Some(isthmus_hub_api::ApiTls { cert, key });
    }
    let problems = opts.api_settings.validate();
    if !problems.is_empty() {
        anyhow::bail!("api settings: {}", problems.join("; "));
    }
    let hub = up::start(opts).await?;
    hub.publish()?;
    println!("{}", up::demo::banner(&hub, args.htlc_delta_secs));
    run_until_stopped(hub, args.demo.then_some(args.htlc_delta_secs)).await
}

/// Create `path` (it must not exist) readable by its owner only, and write `contents`.
fn write_new_secret(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    Ok(())
}

/// Read a hub config and turn it into a plan, or fail listing every problem.
fn hub_plan(file: &Path) -> anyhow::Result<up::Plan> {
    HubConfig::load(file).and_then(|c| c.plan()).map_err(|p| {
        anyhow::anyhow!(
            "hub config {} has {} problem(s):\n  - {}",
            file.display(),
            p.len(),
            p.join("\n  - ")
        )
    })
}

async fn hub_serve(plan: up::Plan) -> anyhow::Result<()> {
    let names: Vec<String> = plan.networks.iter().map(|(n, _)| n.clone()).collect();
    let scheme = if plan.opts.api_settings.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let hub = up::start_plan(plan).await?;
    hub.publish()?;
    println!(
        "hub serving: api {scheme}://{}  networks: hub, {}  metrics http://{}/metrics",
        hub.info.api,
        names.join(", "),
        hub.info.metrics
    );
    for (name, net) in &hub.provisioned {
        for n in net.nodes() {
            println!("  {name} node {}: rpc {} ({:?})", n.index, n.rpc, n.state);
        }
    }
    println!("Ctrl-C or SIGTERM stops the hub and the node processes it started");
    run_until_stopped(hub, None).await
}

/// Serve until Ctrl-C, SIGTERM or the hub's own stop; with `demo` (the HTLC margin), run
/// the demo meanwhile. Then stop cleanly.
async fn run_until_stopped(hub: up::RunningHub, demo: Option<u64>) -> anyhow::Result<()> {
    let stop = hub.stop_token();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let outcome = {
        let demo_run = async {
            match demo {
                Some(delta) => up::demo::run(&hub, delta).await.map(|_| ()),
                None => std::future::pending().await,
            }
        };
        tokio::pin!(demo_run);
        let mut demo_done = demo.is_none();
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break Ok(()),
                _ = term.recv() => break Ok(()),
                _ = stop.cancelled() => break Ok(()),
                r = &mut demo_run, if !demo_done => {
                    demo_done = true;
                    if let Err(e) = r {
                        break Err(e.context("the demo failed"));
                    }
                }
            }
        }
    };
    println!("stopping: finishing in-flight work, flushing the data dir");
    let stopped = hub.shutdown().await;
    println!("hub stopped");
    // The run's own outcome comes first; a clean run that stopped badly still fails.
    outcome.and(stopped.map_err(anyhow::Error::from))
}

/// Ask the kernel for SIGTERM when the parent ends, then make sure it has not already.
fn exit_with_parent(parent: i32) -> anyhow::Result<()> {
    use rustix::process::{getppid, set_parent_process_death_signal, Pid, Signal};
    set_parent_process_death_signal(Some(Signal::TERM))
        .context("cannot ask to stop with the parent process")?;
    if getppid() != Pid::from_raw(parent) {
        bail!("the supervising process {parent} has already ended");
    }
    Ok(())
}

/// Who may call the node's RPC: the named admins, and the named readers, or (without any)
/// everyone on a public network and the allowlist on a private one.
fn rpc_access(
    cfg: &NetworkConfig,
    admins: &[String],
    readers: &[String],
) -> anyhow::Result<RpcAccess> {
    let parse = |what: &str, list: &[String]| -> anyhow::Result<BTreeSet<NodeId>> {
        list.iter()
            .map(|s| parse_identity(s).map_err(|e| anyhow::anyhow!("{what} `{s}`: {e}")))
            .collect()
    };
    let admins = parse("--rpc-admin", admins)?;
    let named = parse("--rpc-reader", readers)?;
    let readers = match (cfg.allowlist_ids(), named.is_empty()) {
        (None, true) => None,
        (allow, _) => Some(allow.unwrap_or_default().union(&named).copied().collect()),
    };
    Ok(RpcAccess { readers, admins })
}

async fn run_node(
    opts: NodeOptions,
    status_addr: SocketAddr,
    (rpc_addr, access): (SocketAddr, RpcAccess),
) -> anyhow::Result<()> {
    let data = opts.data_dir.clone();
    let index = opts.index;
    let key = opts
        .cfg
        .node_key(index)
        .map_err(|e| anyhow::anyhow!("node {index}: {e}"))?;
    let running = node::start(opts).await?;
    let stop = running.stop_token();
    let status = status::serve(status_addr, running.handle.clone(), stop.clone()).await?;
    let rpc = RpcServer::start(running.handle.clone(), key, rpc_addr, access).await?;
    let p2p = running.handle.local_addr();
    let info = json!({
        "index": index,
        "id": running.handle.id().to_string(),
        "p2p": p2p.to_string(),
        "status": status.to_string(),
        "rpc": rpc.local_addr().to_string(),
        "pid": std::process::id(),
    });
    // Written whole then renamed, so readers never see half a file.
    let tmp = data.join("node.json.tmp");
    std::fs::write(&tmp, info.to_string())?;
    std::fs::rename(&tmp, data.join("node.json"))?;
    println!(
        "node {index}: p2p={p2p} status={status} rpc={}",
        rpc.local_addr()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = stop.cancelled() => {}
    }
    rpc.stop().await;
    running.shutdown().await;
    Ok(())
}

/// Ask the OS for a free loopback port (released at once; the node binds it right after).
fn free_port() -> anyhow::Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

fn wait_for_file(path: &Path, deadline: Duration) -> anyhow::Result<Value> {
    let t0 = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if let Ok(v) = serde_json::from_str(&s) {
                return Ok(v);
            }
        }
        if t0.elapsed() > deadline {
            bail!("{} did not appear within {deadline:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn net_up(config: &Path, data: Option<PathBuf>, transport: TransportKind) -> anyhow::Result<()> {
    let cfg = load(config)?;
    let data = data.unwrap_or_else(|| PathBuf::from(format!("net-{}", cfg.name)));
    std::fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    let mut addrs: Vec<SocketAddr> = Vec::new();
    let result = (|| -> anyhow::Result<Vec<Value>> {
        let mut infos = Vec::new();
        for i in 0..cfg.nodes {
            let dir = data.join(format!("node-{i}"));
            std::fs::create_dir_all(&dir)?;
            // A stale file from an earlier run must not be mistaken for this one.
            let _ = std::fs::remove_file(dir.join("node.json"));
            let log = std::fs::File::create(data.join(format!("node-{i}.log")))?;
            let listen = free_port()?;
            let mut cmd = std::process::Command::new(&exe);
            cmd.args(["node", "run", "--config"])
                .arg(config)
                .args(["--index", &i.to_string(), "--data"])
                .arg(&dir)
                .args([
                    "--listen",
                    &listen.to_string(),
                    "--transport",
                    transport.as_str(),
                ]);
            for a in &addrs {
                cmd.args(["--peer", &a.to_string()]);
            }
            cmd.stdout(log.try_clone()?).stderr(log);
            let child = cmd.spawn().context("cannot start a node process")?;
            children.push(child);
            let info = wait_for_file(&dir.join("node.json"), Duration::from_secs(20))?;
            addrs.push(listen);
            infos.push(info);
        }
        Ok(infos)
    })();
    let infos = match result {
        Ok(i) => i,
        Err(e) => {
            stop_children(&mut children);
            return Err(e);
        }
    };
    std::fs::write(
        data.join("net.json"),
        Value::Array(infos.clone()).to_string(),
    )?;
    println!(
        "network `{}`: {} node(s), data and logs in {}",
        cfg.name,
        cfg.nodes,
        data.display()
    );
    for v in &infos {
        println!(
            "  node {}  pid {}  p2p {}  status {}  rpc {}  id {}",
            v["index"], v["pid"], v["p2p"], v["status"], v["rpc"], v["id"]
        );
    }
    println!("Ctrl-C stops the network");
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
        anyhow::Ok(())
    })?;
    stop_children(&mut children);
    println!("network stopped");
    Ok(())
}

/// Stop the processes this command started (and only those), by their pid.
fn stop_children(children: &mut [std::process::Child]) {
    for c in children.iter_mut() {
        if let Err(e) = c.kill() {
            eprintln!("cannot stop pid {}: {e}", c.id());
        }
    }
    for c in children.iter_mut() {
        let _ = c.wait();
    }
}

/// One JSON-lines request to a node's status endpoint.
fn call(addr: SocketAddr, req: &Value) -> anyhow::Result<Value> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .with_context(|| format!("node status endpoint {addr} is not reachable"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = req.to_string();
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut r = BufReader::new(s);
    let mut out = String::new();
    r.read_line(&mut out)?;
    let v: Value = serde_json::from_str(&out).context("status endpoint answered garbage")?;
    if let Some(e) = v.get("error") {
        bail!("node {addr}: {}", e.as_str().unwrap_or("error"));
    }
    Ok(v["ok"].clone())
}

fn net_status(data: &Path) -> anyhow::Result<()> {
    let net: Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("net.json"))
            .with_context(|| format!("no network was started in {}", data.display()))?,
    )?;
    let nodes = net.as_array().cloned().unwrap_or_default();
    println!(
        "{:>4} {:>8} {:>8} {:>6} {:>7} {:>16}  sync",
        "node", "height", "final", "peers", "mempool", "head"
    );
    for n in nodes {
        let addr: SocketAddr = n["status"].as_str().unwrap_or_default().parse()?;
        match call(addr, &json!({"cmd": "status"})) {
            Ok(s) => println!(
                "{:>4} {:>8} {:>8} {:>6} {:>7} {:>16}  {}",
                n["index"],
                s["height"],
                s["finalized"],
                s["peers"].as_array().map_or(0, Vec::len),
                s["mempool"],
                s["head_hash"]
                    .as_str()
                    .unwrap_or("")
                    .get(..16)
                    .unwrap_or(""),
                if s["sync"].is_null() {
                    "-".to_owned()
                } else {
                    format!(
                        "{:.1}% {:.0} blk/s",
                        s["sync"]["percent"].as_f64().unwrap_or(0.0),
                        s["sync"]["blocks_per_sec"].as_f64().unwrap_or(0.0)
                    )
                }
            ),
            Err(e) => println!("{:>4} down ({e:#})", n["index"]),
        }
    }
    Ok(())
}

fn load_key(s: &str) -> anyhow::Result<Keypair> {
    if let Some(label) = s.strip_prefix("dev:") {
        return Ok(Keypair::dev(label));
    }
    let seed = std::fs::read_to_string(s).with_context(|| format!("cannot read key file {s}"))?;
    Keypair::from_hex_seed(seed.trim()).map_err(|e| anyhow::anyhow!("key file {s}: {e}"))
}

fn transfer(
    config: &Path,
    node: SocketAddr,
    from: &str,
    to: &str,
    amount: u64,
    wait: bool,
) -> anyhow::Result<()> {
    let cfg = load(config)?;
    let key = load_key(from)?;
    let to = parse_identity(to).map_err(|e| anyhow::anyhow!("recipient `{to}`: {e}"))?;
    let acct = call(node, &json!({"cmd": "account", "id": key.id().to_string()}))?;
    let nonce = acct["nonce"].as_u64().unwrap_or(0);
    let tx = Transaction::transfer(&key, cfg.network(), nonce, to, amount);
    let res = call(
        node,
        &json!({"cmd": "submit", "txs": [hex::encode(tx.encoded())]}),
    )?;
    let first = &res[0];
    let Some(id) = first["id"].as_str() else {
        bail!(
            "transaction refused: {}",
            first["rejected"].as_str().unwrap_or("unknown reason")
        );
    };
    println!("submitted {id} (nonce {nonce})");
    if wait {
        let t0 = Instant::now();
        loop {
            let r = call(node, &json!({"cmd": "tx", "id": id}))?;
            if !r.is_null() {
                println!(
                    "committed in block {} (Merkle proof verifies: {})",
                    r["number"], r["proof_verifies"]
                );
                break;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("transaction {id} not committed within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}
