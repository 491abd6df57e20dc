//! The Python example adapter (`python/adapter.py`) as a child process: support for the
//! Python tests here and in the top-level tests package (which includes this file by path).
//!
//! Needs the repo venv with the adapter's packages: `scripts/install-peers.sh --only
//! python-adapter` (or `ISTHMUS_PEERS` pointing at a peers folder that has them).

use isthmus_adapter_testkit::peers;
use isthmus_core::{Keypair, NodeId};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn python() -> PathBuf {
    peers::tool("venv/bin/python", "python-adapter").unwrap_or_else(|e| panic!("{e}"))
}

pub struct PyAdapter {
    _child: Child,
    pub listen: SocketAddr,
    pub identity: NodeId,
}

pub async fn start_python(network: u64) -> PyAdapter {
    let script = peers::repo_root().join("adapters/remote/python/adapter.py");
    let mut child = Command::new(python())
        .arg(script)
        .args(["--network", &network.to_string(), "--name", "py-ledger"])
        .args(["--dev-identity", &format!("py-{network}")])
        .args(["--fund", "alice=500", "--fund", "bob=7"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn python adapter");
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(20),
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line),
    )
    .await
    .expect("python ready line in time")
    .unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line is json");
    let identity: NodeId = ready["identity"].as_str().unwrap().parse().unwrap();
    // Same derivation as `Keypair::dev`, in another language.
    assert_eq!(identity, Keypair::dev(&format!("py-{network}")).id());
    PyAdapter {
        listen: ready["listen"].as_str().unwrap().parse().unwrap(),
        identity,
        _child: child,
    }
}
