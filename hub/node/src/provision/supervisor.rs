//! The node-process supervisor: every node of a provisioned network runs as its own
//! `hub node run` process, with its own data directory and log. The supervisor owns the
//! process: it restarts one that dies, waiting a growing, jittered delay between attempts,
//! and shows it `down` meanwhile; on stop it ends each process it started (and only those,
//! by pid) with SIGTERM, then SIGKILL if it does not stop in time.
//!
//! No node process outlives the hub: each asks the kernel to be stopped when the hub's
//! process ends, however it ends (`kill -9` included), so a restarted hub finds no orphans
//! and starts its nodes again on their data directories.
//!
//! A node process counts as `up` once it has written its `node.json` (it does so after its
//! RPC listens) with its own pid.

use isthmus_core::{Backoff, NodeId};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// How long a started process has to publish its `node.json`.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long a process has to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// A process that ran this long before dying restarts without the accumulated delay.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// How to run one node process.
#[derive(Debug, Clone)]
pub struct NodeProcess {
    pub index: usize,
    /// The `hub` binary.
    pub exe: PathBuf,
    /// The network config file the node runs.
    pub config: PathBuf,
    pub data: PathBuf,
    pub log: PathBuf,
    /// Fixed addresses, so peers and the hub find a restarted node where it was.
    pub listen: SocketAddr,
    pub rpc: SocketAddr,
    pub peers: Vec<SocketAddr>,
    pub rpc_admins: Vec<NodeId>,
    pub rpc_readers: Vec<NodeId>,
}

impl NodeProcess {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.exe);
        c.args(["node", "run", "--config"])
            .arg(&self.config)
            .args(["--index", &self.index.to_string(), "--data"])
            .arg(&self.data)
            .args(["--listen", &self.listen.to_string()])
            .args(["--rpc", &self.rpc.to_string()]);
        for p in &self.peers {
            c.args(["--peer", &p.to_string()]);
        }
        for a in &self.rpc_admins {
            c.args(["--rpc-admin", &a.to_string()]);
        }
        for r in &self.rpc_readers {
            c.args(["--rpc-reader", &r.to_string()]);
        }
        // Its own process group, so a Ctrl-C meant for the hub does not reach it first: the
        // hub stops its nodes in order. Should the hub die without stopping them, the
        // kernel stops them (`--parent-pid`), and the next hub starts them again.
        c.args(["--parent-pid", &std::process::id().to_string()])
            .process_group(0)
            .kill_on_drop(true);
        c
    }
}

/// What the supervisor knows of one node process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ProcessState {
    Starting,
    Up { pid: u32 },
    Down { restarts: u32, reason: String },
    Stopped,
}

/// One supervised node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub index: usize,
    pub rpc: SocketAddr,
    pub listen: SocketAddr,
    #[serde(flatten)]
    pub state: ProcessState,
}

/// The processes of one network.
pub struct Supervisor {
    nodes: Vec<(NodeProcess, Arc<Mutex<ProcessState>>)>,
    stop: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Supervisor {
    /// Start every node and keep it running until [`stop`](Self::stop).
    pub fn start(nodes: Vec<NodeProcess>) -> Supervisor {
        let stop = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        let mut all = Vec::new();
        for n in nodes {
            let state = Arc::new(Mutex::new(ProcessState::Starting));
            tasks.spawn(supervise(n.clone(), state.clone(), stop.clone()));
            all.push((n, state));
        }
        Supervisor {
            nodes: all,
            stop,
            tasks,
        }
    }

    pub fn nodes(&self) -> Vec<NodeView> {
        self.nodes
            .iter()
            .map(|(n, s)| NodeView {
                index: n.index,
                rpc: n.rpc,
                listen: n.listen,
                state: lock(s).clone(),
            })
            .collect()
    }

    /// The pid of node `index`, while it runs.
    pub fn pid(&self, index: usize) -> Option<u32> {
        self.nodes.iter().find_map(|(n, s)| match *lock(s) {
            ProcessState::Up { pid } if n.index == index => Some(pid),
            _ => None,
        })
    }

    /// Stop every process (SIGTERM, then SIGKILL after a grace period) and wait.
    pub async fn stop(&mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Processes are spawned with kill_on_drop: aborting the tasks drops them.
        self.stop.cancel();
        self.tasks.abort_all();
    }
}

async fn supervise(n: NodeProcess, state: Arc<Mutex<ProcessState>>, stop: CancellationToken) {
    let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut restarts = 0u32;
    let mut failures = 0u32;
    loop {
        if stop.is_cancelled() {
            break;
        }
        let started = Instant::now();
        let reason = match run_once(&n, &state, &stop).await {
            Ok(None) => break,
            Ok(Some(reason)) | Err(reason) => reason,
        };
        if started.elapsed() > STABLE_AFTER {
            failures = 0;
        }
        restarts += 1;
        tracing::warn!(node = n.index, %reason, restarts, "node process is down; restarting");
        *lock(&state) = ProcessState::Down {
            restarts,
            reason: reason.clone(),
        };
        let delay = backoff.delay(failures);
        failures = failures.saturating_add(1);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    *lock(&state) = ProcessState::Stopped;
}

/// Run the process once: `Ok(None)` when stopped on purpose, `Ok(Some(why))` when it ended
/// by itself, `Err(why)` when it could not start.
async fn run_once(
    n: &NodeProcess,
    state: &Mutex<ProcessState>,
    stop: &CancellationToken,
) -> Result<Option<String>, String> {
    std::fs::create_dir_all(&n.data).map_err(|e| format!("data dir: {e}"))?;
    let info = n.data.join("node.json");
    let _ = std::fs::remove_file(&info);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&n.log)
        .map_err(|e| format!("log {}: {e}", n.log.display()))?;
    let err = log.try_clone().map_err(|e| format!("log: {e}"))?;
    let mut child = n
        .command()
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start `hub node run`: {e}"))?;
    let pid = child.id().unwrap_or(0);
    let deadline = Instant::now() + START_DEADLINE;
    let mut up = false;
    loop {
        if !up && published_by(&info, pid) {
            up = true;
            *lock(state) = ProcessState::Up { pid };
            tracing::info!(node = n.index, pid, "node process is up");
        }
        if !up && Instant::now() > deadline {
            end(&mut child, pid).await;
            return Err(format!("did not start within {START_DEADLINE:?}"));
        }
        tokio::select! {
            _ = stop.cancelled() => {
                end(&mut child, pid).await;
                return Ok(None);
            }
            status = child.wait() => {
                return Ok(Some(match status {
                    Ok(s) => format!("exited: {s}"),
                    Err(e) => format!("lost: {e}"),
                }));
            }
            _ = tokio::time::sleep(Duration::from_millis(if up { 500 } else { 50 })) => {}
        }
    }
}

fn published_by(info: &std::path::Path, pid: u32) -> bool {
    std::fs::read_to_string(info)
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["pid"].as_u64())
        == Some(u64::from(pid))
}

/// SIGTERM, then SIGKILL after the grace period; always reaped.
async fn end(child: &mut Child, pid: u32) {
    // The child is not reaped yet, so its pid cannot have been reused.
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}
