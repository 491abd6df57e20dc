//! In-process native networks for the tests: one node each, real sled storage in a
//! temporary directory, TCP bound to 127.0.0.1:0. Dropping a [`TestNet`] stops its node.

use isthmus_adapter_api::{MemoryWallet, SecretKey};
use isthmus_adapter_native::{NativeAdapter, NativeNetwork};
use isthmus_chain::config::NetworkConfig;
use isthmus_chain::node::{self, NodeHandle, NodeOptions, RunningNode};
use isthmus_chain::rpc::NodeApi;
use isthmus_core::Keypair;
use isthmus_lock_contracts::Address;
use isthmus_transport::TransportKind;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// Balance of every funded account.
pub const FUNDS: u64 = 10_000_000;

/// The hub's attester keys every test network's escrow trusts (2 of 3).
pub fn hub_keys() -> Vec<Keypair> {
    (0..3)
        .map(|i| Keypair::dev(&format!("hub-attester-{i}")))
        .collect()
}

fn common(accounts: &[&str]) -> String {
    let mut s = String::new();
    for a in accounts {
        s.push_str(&format!(
            "[[genesis.allocation]]\naccount = \"dev:{a}\"\nbalance = {FUNDS}\n"
        ));
    }
    let attesters: Vec<String> = (0..3)
        .map(|i| format!("\"dev:hub-attester-{i}\""))
        .collect();
    s.push_str(&format!(
        "[escrow]\nhub_attesters = [{}]\nthreshold = 2\n",
        attesters.join(", ")
    ));
    s
}

/// A single-validator PoS network.
pub fn pos(name: &str, id: u64, accounts: &[&str]) -> NetworkConfig {
    let s = format!(
        "name = \"{name}\"\nnetwork_id = {id}\nnodes = 1\nblock_interval_ms = 100\n\
         [consensus]\ntype = \"pos\"\n\
         [[genesis.validator]]\nid = \"dev:{name}/node-0\"\nstake = 100\n{}",
        common(accounts)
    );
    NetworkConfig::from_toml_str(&s).expect("valid pos config")
}

/// A one-node PoW network (sha256) that mines only when asked.
pub fn pow(name: &str, id: u64, accounts: &[&str]) -> NetworkConfig {
    let s = format!(
        "name = \"{name}\"\nnetwork_id = {id}\nnodes = 1\nblock_interval_ms = 50\n\
         [consensus]\ntype = \"pow\"\ninitial_difficulty = 256\nretarget_window = 1000000\n{}",
        common(accounts)
    );
    NetworkConfig::from_toml_str(&s).expect("valid pow config")
}

pub struct TestNet {
    pub cfg: Arc<NetworkConfig>,
    pub node: NodeHandle,
    stop: CancellationToken,
    _running: RunningNode,
    _dir: tempfile::TempDir,
}

impl Drop for TestNet {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl TestNet {
    pub async fn start(cfg: NetworkConfig) -> TestNet {
        let cfg = Arc::new(cfg);
        let dir = tempfile::tempdir().expect("tempdir");
        let running = node::start(NodeOptions {
            cfg: cfg.clone(),
            index: 0,
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            peers: vec![],
            mine: false,
            transport: TransportKind::Tcp,
        })
        .await
        .expect("node starts");
        TestNet {
            cfg,
            node: running.handle.clone(),
            stop: running.stop_token(),
            _running: running,
            _dir: dir,
        }
    }

    pub fn is_pow(&self) -> bool {
        matches!(
            self.cfg.consensus,
            isthmus_chain::config::ConsensusConfig::Pow(_)
        )
    }

    pub async fn height(&self) -> u64 {
        self.node.status().await.expect("status").height
    }

    /// Wait until the head is at least `target` (PoW: mining meanwhile, then paused).
    pub async fn until_height(&self, target: u64) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        if self.is_pow() {
            self.node
                .set_mining(true)
                .await
                .map_err(|e| e.to_string())?;
        }
        let result = loop {
            let h = self.node.status().await.map_err(|e| e.to_string())?.height;
            if h >= target {
                break Ok(());
            }
            if Instant::now() > deadline {
                break Err(format!("head stuck at {h}, waiting for {target}"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        if self.is_pow() {
            self.node
                .set_mining(false)
                .await
                .map_err(|e| e.to_string())?;
            // Requests are handled in order: once this answers, mining is off.
            self.node.status().await.map_err(|e| e.to_string())?;
        }
        result
    }

    /// Mine exactly `n` blocks (PoW), however fast the search, and wait for them; on PoS,
    /// wait for `n` more blocks.
    pub async fn mine(&self, n: u64) -> Result<(), String> {
        let h = self.node.status().await.map_err(|e| e.to_string())?.height;
        if !self.is_pow() {
            return self.until_height(h + n).await;
        }
        self.node.mine_blocks(n).await.map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = self.node.status().await.map_err(|e| e.to_string())?.height;
            if now >= h + n {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("head stuck at {now}, mining {n} blocks from {h}"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Produce blocks until one is stamped at or after `t_ms` (chain time).
    pub async fn until_time_ms(&self, t_ms: u64) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let h = self.height().await;
            let b = self
                .node
                .block_at(h)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("head block missing")?;
            if b.header.timestamp_ms >= t_ms {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("chain time stuck at {} ms", b.header.timestamp_ms));
            }
            if self.is_pow() && now_ms() >= t_ms {
                self.mine(1).await?;
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// An adapter over this network's node with a wallet holding `owners`' keys.
    pub fn adapter(&self, owners: &[&Keypair], confirmations: u32) -> NativeAdapter {
        self.adapter_over(Arc::new(self.node.clone()), owners, confirmations)
    }

    /// An adapter talking to this network through `node` (the in-process handle or a
    /// client of the node's RPC).
    pub fn adapter_over(
        &self,
        node: Arc<dyn NodeApi>,
        owners: &[&Keypair],
        confirmations: u32,
    ) -> NativeAdapter {
        let wallet = MemoryWallet::new();
        for k in owners {
            wallet.insert(
                Address(k.id().to_string()),
                SecretKey::Ed25519((*k).clone()),
            );
        }
        NativeAdapter::new(
            node,
            NativeNetwork::new(self.cfg.clone()).with_confirmations(confirmations),
            Arc::new(wallet),
            Keypair::dev("hub-submitter"),
        )
    }
}
