//! [`Provisioner`]: the API's `Provisioning` over provisioned networks. A provider's order
//! becomes node processes the supervisor runs, linked to the hub through the adapter
//! registry (endpoint `native:NAME`, attached by [`NativeLinks`]), so the network's adapter
//! is health-checked, watched and listed like every registered one.
//!
//! Crash safety: `order.json` (the spec, who ordered it, `active` or `stopping`/`stopped`)
//! is written whole before anything runs, and the network's own record before any process
//! starts. A hub that restarts reads every order: an active one is started again (same keys,
//! same addresses) and linked, finishing what was under way; a `stopping` one is stopped.
//! A network that makes no block within the deadline is rolled back: its processes stop and
//! its directory is removed.

use crate::provision::network::{HubIdentities, ProvisionedNetwork};
use crate::provision::spec::NetworkSpec;
use crate::provision::supervisor::ProcessState;
use crate::up::datadir::write_private;
use async_trait::async_trait;
use isthmus_chain::rpc::NodeApi;
use isthmus_core::{Keypair, NetworkId};
use isthmus_hub_api::model::{NetworkResource, NodeResource};
use isthmus_hub_api::networks::Provisioning;
use isthmus_hub_api::{BackendError, EventBus, Principal};
use isthmus_interop::{AdapterRegistry, MessageRelay, NetworkDirectory, Registration};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Provisioned networks the adapter registry attaches (`native:NAME` endpoints), by name.
#[derive(Default)]
pub struct NativeLinks(Mutex<HashMap<String, Arc<dyn NodeApi>>>);

impl NativeLinks {
    pub fn get(&self, name: &str) -> Option<Arc<dyn NodeApi>> {
        lock(&self.0).get(name).cloned()
    }
    fn insert(&self, name: &str, node: Arc<dyn NodeApi>) {
        lock(&self.0).insert(name.to_owned(), node);
    }
    fn remove(&self, name: &str) {
        lock(&self.0).remove(name);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The endpoint under which a provisioned network's adapter is registered.
pub fn native_endpoint(name: &str) -> String {
    format!("native:{name}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OrderState {
    Active,
    Stopping,
    Stopped,
}

/// A provider's order, as stored (`order.json` in the network's directory).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    spec: NetworkSpec,
    network_id: u64,
    tenant: String,
    by: String,
    state: OrderState,
}

struct Managed {
    order: Order,
    /// Running processes (none once stopped or failed).
    net: Option<ProvisionedNetwork>,
    /// `provisioning` until the first block, then the node processes tell; `failed`.
    phase: &'static str,
    reason: Option<String>,
}

/// What the provisioner needs from the hub.
pub struct ProvisionerParts {
    pub root: PathBuf,
    pub exe: PathBuf,
    pub hub: HubIdentities,
    pub rpc_key: Keypair,
    pub links: Arc<NativeLinks>,
    pub registry: Arc<AdapterRegistry>,
    pub names: Arc<dyn NetworkDirectory>,
    pub journal: Arc<dyn isthmus_interop::Journal>,
    pub relay: Option<Arc<MessageRelay>>,
    /// Where messages to and from provisioned networks are carried.
    pub port: Option<Arc<isthmus_adapter_native::NativePacketPort>>,
    pub bus: EventBus,
    pub deadline: Duration,
    pub stop: CancellationToken,
}

/// Networks providers order through the API.
pub struct Provisioner {
    parts: ProvisionerParts,
    nets: tokio::sync::Mutex<BTreeMap<String, Managed>>,
}

fn internal(e: impl std::fmt::Display) -> BackendError {
    BackendError::Internal(e.to_string())
}

impl Provisioner {
    /// The provisioner, with every stored order taken up again (active ones started and
    /// linked in the background, stopping ones stopped).
    pub async fn open(parts: ProvisionerParts) -> anyhow::Result<Arc<Provisioner>> {
        let me = Arc::new(Provisioner {
            parts,
            nets: tokio::sync::Mutex::new(BTreeMap::new()),
        });
        let mut orders = Vec::new();
        if let Ok(dir) = std::fs::read_dir(&me.parts.root) {
            for e in dir.flatten() {
                let path = e.path().join("order.json");
                if let Ok(bytes) = std::fs::read(&path) {
                    match serde_json::from_slice::<Order>(&bytes) {
                        Ok(o) => orders.push(o),
                        Err(e) => {
                            tracing::error!(path = %path.display(), %e, "unreadable network order skipped")
                        }
                    }
                }
            }
        }
        for mut order in orders {
            let name = order.spec.name.clone();
            if order.state == OrderState::Stopping {
                // The stop was under way: finish it (its processes ended with the last hub).
                order.state = OrderState::Stopped;
                me.write_order(&order)?;
            }
            let active = order.state == OrderState::Active;
            me.nets.lock().await.insert(
                name.clone(),
                Managed {
                    order,
                    net: None,
                    phase: if active { "provisioning" } else { "stopped" },
                    reason: None,
                },
            );
            if active {
                me.launch(&name).await?;
            }
        }
        Ok(me)
    }

    /// Stop every node process it runs (orders stay as they are: the next hub takes them
    /// up again).
    pub async fn shutdown(&self) {
        for m in self.nets.lock().await.values_mut() {
            if let Some(net) = m.net.as_mut() {
                net.stop().await;
            }
        }
    }

    /// The pid of node `index` of network `name`, while it runs (for tools and tests).
    pub async fn pid(&self, name: &str, index: usize) -> Option<u32> {
        self.nets
            .lock()
            .await
            .get(name)
            .and_then(|m| m.net.as_ref())
            .and_then(|n| n.pid(index))
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.parts.root.join(name)
    }

    fn write_order(&self, o: &Order) -> anyhow::Result<()> {
        let dir = self.dir(&o.spec.name);
        std::fs::create_dir_all(&dir)?;
        write_private(
            &dir.join("order.json"),
            serde_json::to_string_pretty(o)?.as_bytes(),
        )
    }

    fn event(&self, o: &Order, status: &str, reason: Option<&str>) {
        let data = serde_json::json!({
            "name": o.spec.name, "status": status, "reason": reason,
            "network_id": o.network_id,
        });
        if let Err(e) = self.parts.bus.publish_for(
            Some(&o.tenant),
            "network",
            &o.spec.name,
            vec![o.spec.name.clone()],
            data,
        ) {
            tracing::error!(%e, network = %o.spec.name, "network event not recorded");
        }
    }

    /// Start the processes of an active order and link it in the background.
    async fn launch(self: &Arc<Self>, name: &str) -> anyhow::Result<()> {
        let mut nets = self.nets.lock().await;
        let m = nets
            .get_mut(name)
            .ok_or_else(|| anyhow::anyhow!("no network `{name}`"))?;
        let net = ProvisionedNetwork::start(
            &self.parts.root,
            &m.order.spec,
            m.order.network_id,
            &self.parts.hub,
            &self.parts.exe,
        )?;
        m.net = Some(net);
        m.phase = "provisioning";
        self.event(&m.order, "provisioning", None);
        let me = self.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            tokio::select! {
                _ = me.parts.stop.cancelled() => {}
                _ = me.link(&name) => {}
            }
        });
        Ok(())
    }

    /// Wait for the first block, then register the adapter; roll back on failure. A network
    /// deleted meanwhile is left alone: the decision and the registration happen under the
    /// lock that deletion takes.
    async fn link(self: &Arc<Self>, name: &str) {
        let linked = {
            let nets = self.nets.lock().await;
            // The wait below must not hold the lock: take what it needs.
            nets.get(name).and_then(|m| m.net.as_ref()).map(|net| {
                (
                    net.config.clone(),
                    net.record
                        .nodes
                        .iter()
                        .map(|n| (n.rpc, n.id))
                        .collect::<Vec<_>>(),
                )
            })
        };
        let Some((config, nodes)) = linked else {
            return;
        };
        let reached = async {
            let node =
                crate::provision::network::link_nodes(config, &nodes, &self.parts.rpc_key).await?;
            crate::provision::network::wait_for_block(&node, name, self.parts.deadline)
                .await
                .map_err(anyhow::Error::msg)?;
            anyhow::Ok(node)
        }
        .await;
        let mut nets = self.nets.lock().await;
        let Some(m) = nets
            .get_mut(name)
            .filter(|m| m.order.state == OrderState::Active && m.net.is_some())
        else {
            return;
        };
        let result = match reached {
            Ok(node) => self.register(m, &nodes, node).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                m.phase = "running";
                self.event(&m.order, "up", None);
                tracing::info!(network = %name, "network provisioned and linked");
            }
            Err(e) => {
                // Roll back to nothing: no process, no record, no link.
                tracing::warn!(network = %name, %e, "provisioning failed; rolling back");
                if let Some(mut net) = m.net.take() {
                    net.stop().await;
                }
                self.parts.links.remove(name);
                if let Some(port) = &self.parts.port {
                    port.unlink(NetworkId(m.order.network_id));
                }
                let _ = std::fs::remove_dir_all(self.dir(name));
                m.phase = "failed";
                m.reason = Some(e.to_string());
                self.event(&m.order, "failed", Some(&e.to_string()));
            }
        }
    }

    /// Make the linked network reachable: its nodes for the registry's attach and the packet
    /// port, then its adapter's registration (kept from an earlier hub if there is one).
    async fn register(
        &self,
        m: &Managed,
        nodes: &[(std::net::SocketAddr, isthmus_core::NodeId)],
        node: Arc<dyn NodeApi>,
    ) -> anyhow::Result<()> {
        let name = &m.order.spec.name;
        self.parts.links.insert(name, node.clone());
        if let Some(port) = &self.parts.port {
            port.link(node);
        }
        if self
            .parts
            .registry
            .list()
            .iter()
            .any(|r| &r.record.name == name)
        {
            return Ok(());
        }
        self.parts
            .registry
            .register_for(
                &m.order.tenant,
                &m.order.by,
                Registration {
                    name: name.clone(),
                    network: NetworkId(m.order.network_id),
                    endpoint: native_endpoint(name),
                    identity: nodes
                        .first()
                        .map(|(_, id)| id.to_string())
                        .unwrap_or_default(),
                },
            )
            .await?;
        Ok(())
    }

    fn resource(m: &Managed) -> NetworkResource {
        let views = m.net.as_ref().map(|n| n.nodes()).unwrap_or_default();
        let ids: Vec<String> = m
            .net
            .as_ref()
            .map(|n| n.record.nodes.iter().map(|r| r.id.to_string()).collect())
            .unwrap_or_default();
        let up = views
            .iter()
            .filter(|v| matches!(v.state, ProcessState::Up { .. }))
            .count();
        let (status, reason) = match m.phase {
            "running" if up == views.len() => ("up", None),
            "running" if up == 0 => ("down", Some("no node process runs".to_owned())),
            "running" => (
                "degraded",
                Some(format!("{} of {} node processes run", up, views.len())),
            ),
            other => (other, m.reason.clone()),
        };
        NetworkResource {
            name: m.order.spec.name.clone(),
            platform: "native".into(),
            status: status.into(),
            network_id: m.order.network_id,
            spec: serde_json::to_value(&m.order.spec).unwrap_or_default(),
            nodes: views
                .iter()
                .zip(ids.iter().chain(std::iter::repeat(&String::new())))
                .map(|(v, id)| {
                    let (process, pid, restarts) = match &v.state {
                        ProcessState::Starting => ("starting", None, 0),
                        ProcessState::Up { pid } => ("up", Some(*pid), 0),
                        ProcessState::Down { restarts, .. } => ("down", None, *restarts),
                        ProcessState::Stopped => ("stopped", None, 0),
                    };
                    NodeResource {
                        index: v.index,
                        id: id.clone(),
                        rpc: v.rpc.to_string(),
                        p2p: v.listen.to_string(),
                        process: process.into(),
                        pid,
                        restarts,
                    }
                })
                .collect(),
            reason,
            tenant: m.order.tenant.clone(),
        }
    }

    /// Open transfers, swaps and messages that use `network`.
    fn users_of(&self, network: NetworkId) -> Result<Vec<String>, BackendError> {
        let mut users: Vec<String> = self
            .parts
            .journal
            .all()
            .map_err(internal)?
            .into_iter()
            .filter(|i| !i.contract.status().terminal && i.contract.networks().contains(&network))
            .map(|i| i.api_id)
            .collect();
        if let Some(relay) = &self.parts.relay {
            users.extend(
                relay
                    .all()
                    .map_err(internal)?
                    .into_iter()
                    .filter(|m| {
                        !m.phase.terminal()
                            && (m.spec.source == network || m.spec.destination == network)
                    })
                    .map(|m| m.api_id),
            );
        }
        Ok(users)
    }
}

/// The API's view of a [`Provisioner`].
pub struct ProvisionerApi(pub Arc<Provisioner>);

#[async_trait]
impl Provisioning for ProvisionerApi {
    async fn create(
        &self,
        by: &Principal,
        spec: serde_json::Value,
    ) -> Result<NetworkResource, BackendError> {
        let spec: NetworkSpec =
            serde_json::from_value(spec).map_err(|e| BackendError::Rejected {
                message: format!("the network spec does not parse: {e}"),
                details: vec![e.to_string()],
            })?;
        let problems = spec.check();
        if !problems.is_empty() {
            return Err(BackendError::Rejected {
                message: format!("the network spec has {} problem(s)", problems.len()),
                details: problems,
            });
        }
        let network_id = spec.id();
        let mut nets = self.0.nets.lock().await;
        let taken_by_order = nets.get(&spec.name).is_some_and(|m| m.phase != "failed");
        if taken_by_order || spec.name == "hub" || self.0.parts.names.resolve(&spec.name).is_some()
        {
            return Err(BackendError::Conflict {
                message: format!("a network named `{}` exists already", spec.name),
                details: vec![spec.name.clone()],
            });
        }
        // A directory names an id it does not know `network-ID`.
        if self.0.parts.names.name_of(NetworkId(network_id)) != format!("network-{network_id}")
            || nets.values().any(|m| {
                m.order.network_id == network_id
                    && m.phase != "failed"
                    && m.order.spec.name != spec.name
            })
        {
            return Err(BackendError::Conflict {
                message: format!("network id {network_id} is in use; set `network_id`"),
                details: vec![network_id.to_string()],
            });
        }
        let order = Order {
            spec: spec.clone(),
            network_id,
            tenant: by.tenant.clone(),
            by: by.name.clone(),
            state: OrderState::Active,
        };
        // Durable before anything runs.
        self.0.write_order(&order).map_err(internal)?;
        nets.insert(
            spec.name.clone(),
            Managed {
                order,
                net: None,
                phase: "provisioning",
                reason: None,
            },
        );
        drop(nets);
        self.0.launch(&spec.name).await.map_err(|e| {
            BackendError::Internal(format!("cannot start network `{}`: {e}", spec.name))
        })?;
        let nets = self.0.nets.lock().await;
        let m = nets
            .get(&spec.name)
            .ok_or_else(|| internal("the order vanished"))?;
        Ok(Provisioner::resource(m))
    }

    async fn get(&self, name: &str) -> Result<Option<NetworkResource>, BackendError> {
        Ok(self
            .0
            .nets
            .lock()
            .await
            .get(name)
            .map(Provisioner::resource))
    }

    async fn delete(
        &self,
        by: &Principal,
        name: &str,
        purge: bool,
    ) -> Result<NetworkResource, BackendError> {
        let mut nets = self.0.nets.lock().await;
        let Some(m) = nets.get_mut(name) else {
            return Err(BackendError::NotFound(format!("network `{name}`")));
        };
        if m.order.tenant != by.tenant {
            // Another provider's network reads as missing.
            return Err(BackendError::NotFound(format!("network `{name}`")));
        }
        let users = self.0.users_of(NetworkId(m.order.network_id))?;
        if !users.is_empty() {
            return Err(BackendError::Conflict {
                message: format!(
                    "network `{name}` is used by {} open operation(s)",
                    users.len()
                ),
                details: users,
            });
        }
        m.order.state = OrderState::Stopping;
        self.0.write_order(&m.order).map_err(internal)?;
        self.0.event(&m.order, "stopping", None);
        if self
            .0
            .parts
            .registry
            .list()
            .iter()
            .any(|r| r.record.name == name)
        {
            self.0
                .parts
                .registry
                .retire_owned(name, Some(&m.order.tenant))
                .await
                .map_err(internal)?;
        }
        self.0.parts.links.remove(name);
        if let Some(port) = &self.0.parts.port {
            port.unlink(NetworkId(m.order.network_id));
        }
        if let Some(mut net) = m.net.take() {
            net.stop().await;
        }
        m.order.state = OrderState::Stopped;
        m.phase = "stopped";
        if purge {
            std::fs::remove_dir_all(self.0.dir(name)).map_err(internal)?;
        } else {
            self.0.write_order(&m.order).map_err(internal)?;
        }
        self.0.event(&m.order, "stopped", None);
        let view = Provisioner::resource(m);
        if purge {
            nets.remove(name);
        }
        Ok(view)
    }
}

/// Where the provisioner keeps API-ordered networks under a data directory.
pub fn orders_root(data: &Path) -> PathBuf {
    data.join("networks")
}
