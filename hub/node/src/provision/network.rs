//! One provisioned network on disk and in processes. Its directory holds `network.json`
//! (the spec, the network id, each node's identity, key file and fixed addresses), the
//! generated `network.toml` its nodes run, one key file per node (mode 0600), and per node
//! a data directory and a log.
//!
//! The record is written whole (temporary file, fsync, rename) before any process starts,
//! so a hub that dies while provisioning finds on restart either no record (nothing was
//! started) or the complete one, and starts the same nodes with the same keys and
//! addresses.

use super::spec::NetworkSpec;
use super::supervisor::{NodeProcess, NodeView, ProcessState, Supervisor};
use crate::up::datadir::write_private;
use anyhow::{bail, Context as _};
use isthmus_chain::node::NodeError;
use isthmus_chain::rpc::{Failover, NodeApi, RemoteNode, RemoteNodeConfig};
use isthmus_chain::NetworkConfig;
use isthmus_core::{Keypair, NodeId};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One node of the record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRecord {
    pub index: usize,
    /// As its `isth_…` text.
    #[serde(with = "id_text")]
    pub id: NodeId,
    pub key_file: PathBuf,
    pub listen: SocketAddr,
    pub rpc: SocketAddr,
}

/// The durable record of a provisioned network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub spec: NetworkSpec,
    pub network_id: u64,
    pub nodes: Vec<NodeRecord>,
}

/// Who the network's escrow trusts and who may call its nodes.
#[derive(Debug, Clone)]
pub struct HubIdentities {
    /// The hub's attester keys' identities, and how many must sign.
    pub attesters: Vec<NodeId>,
    pub threshold: usize,
    /// The identity the hub calls the nodes' RPC with (admin: it may step mining).
    pub rpc_client: NodeId,
}

/// A provisioned network whose nodes run.
pub struct ProvisionedNetwork {
    pub record: NetworkRecord,
    pub config: Arc<NetworkConfig>,
    pub dir: PathBuf,
    supervisor: Supervisor,
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

impl ProvisionedNetwork {
    /// Open the network under `root/<name>` (its record says what to run) or create it from
    /// `spec`, then start its nodes. An existing record with another spec is refused,
    /// naming the difference, rather than silently changed.
    pub fn start(
        root: &Path,
        spec: &NetworkSpec,
        network_id: u64,
        hub: &HubIdentities,
        exe: &Path,
    ) -> anyhow::Result<ProvisionedNetwork> {
        let dir = root.join(&spec.name);
        let record_path = dir.join("network.json");
        let record = if record_path.exists() {
            let r: NetworkRecord = serde_json::from_slice(
                &std::fs::read(&record_path)
                    .with_context(|| format!("cannot read {}", record_path.display()))?,
            )
            .with_context(|| format!("{} is damaged", record_path.display()))?;
            if r.spec != *spec || r.network_id != network_id {
                bail!(
                    "network `{}` already exists in {} with another spec or network id; \
                     remove it or change the config back",
                    spec.name,
                    dir.display()
                );
            }
            r
        } else {
            create(&dir, spec, network_id)?
        };
        let keys: Vec<String> = record
            .nodes
            .iter()
            .map(|n| n.key_file.display().to_string())
            .collect();
        let ids: Vec<NodeId> = record.nodes.iter().map(|n| n.id).collect();
        let config = spec
            .to_config(network_id, &keys, &ids, &hub.attesters, hub.threshold)
            .map_err(|p| anyhow::anyhow!("network `{}`: {}", spec.name, p.join("; ")))?;
        let config_path = dir.join("network.toml");
        write_private(
            &config_path,
            toml::to_string(&config)
                .context("cannot write the network config")?
                .as_bytes(),
        )?;
        let processes = record
            .nodes
            .iter()
            .map(|n| NodeProcess {
                index: n.index,
                exe: exe.to_path_buf(),
                config: config_path.clone(),
                data: dir.join(format!("node-{}", n.index)),
                log: dir.join(format!("node-{}.log", n.index)),
                listen: n.listen,
                rpc: n.rpc,
                // Each node dials those before it; together they form one mesh.
                peers: record.nodes[..n.index].iter().map(|p| p.listen).collect(),
                rpc_admins: vec![hub.rpc_client],
                rpc_readers: Vec::new(),
            })
            .collect();
        Ok(ProvisionedNetwork {
            config: Arc::new(config),
            record,
            dir,
            supervisor: Supervisor::start(processes),
        })
    }

    pub fn name(&self) -> &str {
        &self.record.spec.name
    }

    /// The node processes as the supervisor sees them.
    pub fn nodes(&self) -> Vec<NodeView> {
        self.supervisor.nodes()
    }

    /// The pid of node `index` while it runs (for operators' tools and tests).
    pub fn pid(&self, index: usize) -> Option<u32> {
        self.supervisor.pid(index)
    }

    /// A client of every node (calls fail over between them), once the network has made
    /// its first block, or an error after `deadline`.
    pub async fn link(
        &self,
        key: &Keypair,
        deadline: Duration,
    ) -> anyhow::Result<Arc<dyn NodeApi>> {
        let nodes: Vec<_> = self.record.nodes.iter().map(|n| (n.rpc, n.id)).collect();
        let all = link_nodes(self.config.clone(), &nodes, key).await?;
        if let Err(reason) = wait_for_block(&all, self.name(), deadline).await {
            let states: Vec<String> = self
                .nodes()
                .iter()
                .map(|v| format!("node {}: {:?}", v.index, v.state))
                .collect();
            bail!(
                "{reason} ({}); see the node logs in {}",
                states.join(", "),
                self.dir.display()
            );
        }
        Ok(all)
    }

    /// Whether every node process runs.
    pub fn all_up(&self) -> bool {
        self.nodes()
            .iter()
            .all(|n| matches!(n.state, ProcessState::Up { .. }))
    }

    /// Stop every node process (their data stays).
    pub async fn stop(&mut self) {
        self.supervisor.stop().await;
    }
}

/// Make node keys, pick fixed addresses and write the record, before anything runs.
fn create(dir: &Path, spec: &NetworkSpec, network_id: u64) -> anyhow::Result<NetworkRecord> {
    let problems = spec.check();
    if !problems.is_empty() {
        bail!("network `{}`: {}", spec.name, problems.join("; "));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut nodes = Vec::with_capacity(spec.nodes);
    for index in 0..spec.nodes {
        let key = Keypair::generate();
        let key_file = dir.join(format!("node-{index}.key"));
        write_private(&key_file, key.to_hex_seed().as_bytes())?;
        nodes.push(NodeRecord {
            index,
            id: key.id(),
            key_file,
            listen: free_port()?,
            rpc: free_port()?,
        });
    }
    let record = NetworkRecord {
        spec: spec.clone(),
        network_id,
        nodes,
    };
    write_private(
        &dir.join("network.json"),
        serde_json::to_string_pretty(&record)?.as_bytes(),
    )?;
    Ok(record)
}

/// A client of every node at `(rpc, identity)` of the network `config`, calls failing over
/// between them; nothing is sent yet.
pub async fn link_nodes(
    config: Arc<NetworkConfig>,
    nodes: &[(SocketAddr, NodeId)],
    key: &Keypair,
) -> anyhow::Result<Arc<dyn NodeApi>> {
    let mut all: Vec<Arc<dyn NodeApi>> = Vec::new();
    for (rpc, id) in nodes {
        let cfg = RemoteNodeConfig::new(config.clone(), *rpc, *id);
        all.push(Arc::new(RemoteNode::new(cfg, key.clone()).await?));
    }
    Ok(Arc::new(Failover::new(all)?))
}

/// Wait until `node` answers with a chain past genesis, or say why not after `deadline`.
pub async fn wait_for_block(
    node: &Arc<dyn NodeApi>,
    name: &str,
    deadline: Duration,
) -> Result<(), String> {
    let t0 = Instant::now();
    loop {
        let reason = match node.status().await {
            Ok(s) if s.height >= 1 => return Ok(()),
            Ok(s) => format!("at height {}", s.height),
            Err(e @ NodeError::Setup(_)) => return Err(format!("network `{name}`: {e}")),
            Err(e) => e.to_string(),
        };
        if t0.elapsed() > deadline {
            return Err(format!(
                "network `{name}` made no block within {deadline:?} ({reason})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A node identity as its `isth_…` text in JSON (not an array of byte values).
mod id_text {
    use isthmus_core::NodeId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &NodeId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NodeId, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}
