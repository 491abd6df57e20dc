//! Drives real `hub node run` processes: spawn, restart, kill -9 (by pid), talk to their
//! JSON-lines status endpoint, and poll with deadlines.

use isthmus_chain::{NetworkConfig, Transaction};
use isthmus_core::Keypair;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const HUB: &str = env!("CARGO_BIN_EXE_hub");

/// Poll `f` until it returns `Some`, or fail with `what` after `secs`.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Write a config file into `dir` and parse it (so tests sign with the right network id).
pub fn write_config(dir: &Path, name: &str, toml: &str) -> (PathBuf, NetworkConfig) {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, toml).unwrap();
    let cfg = NetworkConfig::load(&p).unwrap();
    (p, cfg)
}

/// One request to a node's JSON-lines status endpoint at `addr`.
pub fn status_call(addr: SocketAddr, req: &Value) -> Result<Value, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut line = req.to_string();
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = String::new();
    BufReader::new(s)
        .read_line(&mut out)
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
    match v.get("error") {
        Some(e) => Err(e.to_string()),
        None => Ok(v["ok"].clone()),
    }
}

/// Start `n` nodes, each dialing the ones before it, and wait for their first blocks.
pub fn start_mesh(cfgp: &Path, n: usize, dir: &Path) -> Vec<NodeProc> {
    let mut nodes: Vec<NodeProc> = Vec::new();
    for i in 0..n {
        let peers: Vec<_> = nodes.iter().map(|n| n.listen).collect();
        let data = dir.join(format!("n{i}"));
        nodes.push(NodeProc::start(cfgp, i, &data, &peers, &[]));
    }
    wait_for(90, "first blocks on every node", || {
        nodes.iter().all(|n| n.height() >= 2).then_some(())
    });
    nodes
}

pub struct NodeProc {
    pub index: usize,
    pub config: PathBuf,
    pub data: PathBuf,
    pub listen: SocketAddr,
    pub peers: Vec<SocketAddr>,
    pub extra: Vec<String>,
    pub status: SocketAddr,
    child: Option<Child>,
}

impl NodeProc {
    pub fn start(
        config: &Path,
        index: usize,
        data: &Path,
        peers: &[SocketAddr],
        extra: &[&str],
    ) -> NodeProc {
        let mut n = NodeProc {
            index,
            config: config.to_path_buf(),
            data: data.to_path_buf(),
            listen: free_addr(),
            peers: peers.to_vec(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            status: free_addr(),
            child: None,
        };
        n.spawn();
        n
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.data).unwrap();
        let _ = std::fs::remove_file(self.data.join("node.json"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.join("node.log"))
            .unwrap();
        let mut cmd = Command::new(HUB);
        cmd.args(["node", "run", "--config"])
            .arg(&self.config)
            .args(["--index", &self.index.to_string(), "--data"])
            .arg(&self.data)
            .args(["--listen", &self.listen.to_string()])
            .args(["--status-addr", &self.status.to_string()]);
        for p in &self.peers {
            cmd.args(["--peer", &p.to_string()]);
        }
        cmd.args(&self.extra)
            .env(
                "RUST_LOG",
                "info,informalsystems_malachitebft_core_consensus=warn",
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(cmd.spawn().unwrap());
        let f = self.data.join("node.json");
        wait_for(30, "node.json", || {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!(
                        "node {} exited early: {st}\n{}",
                        self.index,
                        self.log_tail()
                    );
                }
            }
            std::fs::read_to_string(&f)
                .ok()
                .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        });
    }

    /// SIGKILL this node's process (by its pid) and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Start again on the same data dir and addresses, dialing `peers`.
    pub fn restart(&mut self, peers: &[SocketAddr]) {
        self.kill9();
        self.peers = peers.to_vec();
        self.spawn();
    }

    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(self.data.join("node.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn try_call(&self, req: &Value) -> Result<Value, String> {
        status_call(self.status, req)
    }

    pub fn call(&self, req: Value) -> Value {
        self.try_call(&req)
            .unwrap_or_else(|e| panic!("node {}: {e}\n{}", self.index, self.log_tail()))
    }

    pub fn status(&self) -> Value {
        self.call(json!({"cmd": "status"}))
    }

    pub fn height(&self) -> u64 {
        self.status()["height"].as_u64().unwrap()
    }

    pub fn balance(&self, who: &str) -> u64 {
        self.call(json!({"cmd": "account", "id": who}))["balance"]
            .as_u64()
            .unwrap()
    }

    pub fn nonce(&self, who: &str) -> u64 {
        self.call(json!({"cmd": "account", "id": who}))["nonce"]
            .as_u64()
            .unwrap()
    }

    pub fn block(&self, n: u64) -> Value {
        self.call(json!({"cmd": "block", "number": n}))
    }

    pub fn block_hash(&self, n: u64) -> Option<String> {
        self.block(n)["hash"].as_str().map(str::to_owned)
    }

    /// Submit signed transactions; one result object per transaction.
    pub fn submit(&self, txs: &[Transaction]) -> Vec<Value> {
        let hexes: Vec<String> = txs.iter().map(|t| hex::encode(t.encoded())).collect();
        self.call(json!({"cmd": "submit", "txs": hexes}))
            .as_array()
            .unwrap()
            .clone()
    }

    /// Sign and submit one transfer with the sender's next nonce; returns the tx id.
    pub fn transfer(&self, cfg: &NetworkConfig, from: &str, to: &str, amount: u64) -> String {
        let key = Keypair::dev(from.strip_prefix("dev:").unwrap());
        let to = isthmus_chain::config::parse_identity(to).unwrap();
        let nonce = self.nonce(from);
        let tx = Transaction::transfer(&key, cfg.network(), nonce, to, amount);
        let r = self.submit(&[tx]);
        r[0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("transfer refused: {}", r[0]))
            .to_owned()
    }

    /// Block number holding transaction `id`, if committed (and its proof verifies).
    pub fn tx_block(&self, id: &str) -> Option<u64> {
        let r = self.call(json!({"cmd": "tx", "id": id}));
        if r.is_null() {
            return None;
        }
        assert_eq!(r["proof_verifies"], json!(true), "merkle proof of {id}");
        r["number"].as_u64()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill9();
    }
}
