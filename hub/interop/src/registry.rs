//! Adapters registered at run time by providers (the API's `POST /v1/adapters`), next to
//! the ones the hub was configured with.
//!
//! A registration is durable (flushed before it is acknowledged) and reattached at start.
//! Each registered adapter has a monitor task that health-checks it and reconnects it; when
//! an adapter becomes unhealthy (crashed, caught lying) or is retired, every unfinished
//! instance with a leg on its network is told so (`AdapterHealth`), which pauses it with the
//! reason code `adapter_unhealthy`; it resumes when the adapter is healthy again. Nothing
//! here names a concrete adapter: the hub plugs in a [`Connect`] function.

use crate::contract::{Contract, ContractEvent};
use crate::driver::Driver;
use crate::service::NetworkDirectory;
use crate::watcher::Watcher;
use isthmus_adapter_api::{Adapter, Health};
use isthmus_core::NetworkId;
use isthmus_lock_contracts::{HtlcEvent, LegId, TwoPhaseEvent};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Looks up the adapter of a network. The executor holds one; a plain map is one, and so
/// is the [`AdapterRegistry`] (configured plus registered adapters).
pub trait AdapterLookup: Send + Sync + 'static {
    fn adapter(&self, network: &NetworkId) -> Option<Arc<dyn Adapter>>;
}

impl AdapterLookup for HashMap<NetworkId, Arc<dyn Adapter>> {
    fn adapter(&self, network: &NetworkId) -> Option<Arc<dyn Adapter>> {
        self.get(network).cloned()
    }
}

/// A provider's registration, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterRecord {
    pub name: String,
    pub network: NetworkId,
    pub endpoint: String,
    /// The adapter's ed25519 identity key, as the provider wrote it.
    pub identity: String,
    pub registered_by: String,
    pub registered_at: u64,
    /// The tenant of the provider that registered it; only that tenant may retire it.
    #[serde(default = "crate::journal::default_tenant")]
    pub tenant: String,
}

/// What a provider asks to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub name: String,
    pub network: NetworkId,
    /// `ip:port` where the adapter listens.
    pub endpoint: String,
    /// The adapter's ed25519 identity key, as the provider wrote it.
    pub identity: String,
}

/// A registered adapter as it stands.
#[derive(Clone)]
pub struct RegisteredAdapter {
    pub record: AdapterRecord,
    /// `None` until it is attached (connected and checked).
    pub adapter: Option<Arc<dyn Adapter>>,
    pub health: Health,
}

/// Why the registry refused or failed a registration or a retirement.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// Another registration has the name: retire it first. Not retryable.
    #[error("an adapter named `{0}` is already registered")]
    NameTaken(String),
    /// A registered adapter (`name`) already serves the network. Not retryable.
    #[error("network {network} already has the adapter `{name}`")]
    NetworkTaken { network: NetworkId, name: String },
    /// A configured adapter serves the network. Not retryable.
    #[error("network {0} is served by a configured adapter")]
    Configured(NetworkId),
    /// The adapter was reached but refused: wrong identity, a lying descriptor,
    /// unhealthy. Not retryable as is.
    #[error("adapter `{name}` refused: {reason}")]
    Refused { name: String, reason: String },
    /// The adapter is not reachable now; retrying may help.
    #[error("{0}")]
    Unreachable(String),
    /// No adapter is registered under the name.
    #[error("adapter `{0}` is not registered")]
    NotFound(String),
    /// The registry's store failed (a bug or a failing disk).
    #[error("{0}")]
    Store(String),
}

impl RegistryError {
    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RegistryError::Unreachable(_))
    }
}

/// Why an adapter could not be attached.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    /// Not reachable now; a later attempt may work.
    #[error("{0}")]
    Unreachable(String),
    /// Reached but refused: wrong identity, a lying descriptor, unhealthy, bad endpoint.
    #[error("{0}")]
    Refused(String),
}

/// Attach to a registered adapter: connect, authenticate, describe, health-check.
pub type Connect = Arc<
    dyn Fn(
            AdapterRecord,
        ) -> Pin<Box<dyn Future<Output = Result<Arc<dyn Adapter>, ConnectError>> + Send>>
        + Send
        + Sync,
>;

/// What the registry needs to pause instances and to watch registered networks.
#[derive(Clone)]
pub struct RegistryHooks {
    pub driver: Arc<Driver>,
    pub db: sled::Db,
    pub clock: Arc<dyn Fn() -> u64 + Send + Sync>,
}

struct Live {
    record: AdapterRecord,
    adapter: Option<Arc<dyn Adapter>>,
    health: Health,
    /// Dropping it stops the monitor (and its watcher).
    _stop: tokio::sync::watch::Sender<bool>,
}

/// Configured adapters plus the ones providers registered.
pub struct AdapterRegistry {
    fixed: HashMap<NetworkId, Arc<dyn Adapter>>,
    live: RwLock<BTreeMap<String, Live>>,
    tree: sled::Tree,
    db: sled::Db,
    connect: Connect,
    hooks: Option<RegistryHooks>,
    /// How often a registered adapter is health-checked.
    pub probe_every: Duration,
    /// The monitor tasks, awaited by [`AdapterRegistry::shutdown`].
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

const TREE: &str = "interop.adapters";

fn store(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Store(e.to_string())
}

impl AdapterRegistry {
    /// Open the registry and reattach every stored registration (in the background: an
    /// adapter that is down at start is retried by its monitor).
    pub fn open(
        fixed: HashMap<NetworkId, Arc<dyn Adapter>>,
        db: sled::Db,
        connect: Connect,
        hooks: Option<RegistryHooks>,
        probe_every: Duration,
    ) -> Result<Arc<Self>, sled::Error> {
        let tree = db.open_tree(TREE)?;
        let reg = Arc::new(AdapterRegistry {
            fixed,
            live: RwLock::new(BTreeMap::new()),
            tree,
            db,
            connect,
            hooks,
            probe_every,
            tasks: std::sync::Mutex::new(Vec::new()),
        });
        for item in reg.tree.iter() {
            let (_, v) = item?;
            match serde_json::from_slice::<AdapterRecord>(&v) {
                Ok(rec) => reg.attach(rec, None),
                Err(e) => tracing::error!(%e, "unreadable adapter registration skipped"),
            }
        }
        Ok(reg)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Live>> {
        self.live.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Live>> {
        self.live.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Start monitoring `rec` (with `adapter` if already attached).
    fn attach(self: &Arc<Self>, rec: AdapterRecord, adapter: Option<Arc<dyn Adapter>>) {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let health = match adapter {
            Some(_) => Health::Healthy,
            None => Health::Unhealthy {
                reason: "not attached yet".into(),
            },
        };
        self.write().insert(
            rec.name.clone(),
            Live {
                record: rec.clone(),
                adapter,
                health,
                _stop: stop,
            },
        );
        let me = Arc::downgrade(self);
        let task = tokio::spawn(monitor(me, rec, stopped));
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Stop every monitor and watcher of registered adapters and wait for them (the
    /// registrations stay stored and are reattached by the next `open`).
    pub async fn shutdown(&self) {
        let live = std::mem::take(&mut *self.write());
        drop(live);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Register an adapter: attach (connect, authenticate, describe, health-check), then
    /// store durably, then answer. Nothing is stored when attaching fails. The same
    /// registration again returns the stored one.
    pub async fn register(
        self: &Arc<Self>,
        by: &str,
        req: Registration,
    ) -> Result<RegisteredAdapter, RegistryError> {
        self.register_for(crate::journal::DEFAULT_TENANT, by, req)
            .await
    }

    /// [`register`](Self::register) for a provider of `tenant`, which owns the
    /// registration.
    pub async fn register_for(
        self: &Arc<Self>,
        tenant: &str,
        by: &str,
        req: Registration,
    ) -> Result<RegisteredAdapter, RegistryError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let network = req.network;
        {
            let live = self.read();
            if let Some(l) = live.get(&req.name) {
                let r = &l.record;
                if r.network == network
                    && r.endpoint == req.endpoint
                    && r.identity == req.identity
                    && r.tenant == tenant
                {
                    return Ok(registered(l));
                }
                return Err(RegistryError::NameTaken(req.name));
            }
            if let Some(l) = live.values().find(|l| l.record.network == network) {
                return Err(RegistryError::NetworkTaken {
                    network,
                    name: l.record.name.clone(),
                });
            }
        }
        if self.fixed.contains_key(&network) {
            return Err(RegistryError::Configured(network));
        }
        let rec = AdapterRecord {
            name: req.name,
            network,
            endpoint: req.endpoint,
            identity: req.identity,
            registered_by: by.to_owned(),
            registered_at: now,
            tenant: tenant.to_owned(),
        };
        let adapter = (self.connect)(rec.clone()).await.map_err(|e| match e {
            ConnectError::Unreachable(m) => RegistryError::Unreachable(m),
            ConnectError::Refused(reason) => RegistryError::Refused {
                name: rec.name.clone(),
                reason,
            },
        })?;
        let bytes = serde_json::to_vec(&rec).map_err(store)?;
        self.tree
            .insert(rec.name.as_bytes(), bytes)
            .map_err(store)?;
        self.db.flush_async().await.map_err(store)?;
        tracing::info!(name = %rec.name, network = %rec.network, endpoint = %rec.endpoint, %by, "adapter registered");
        self.attach(rec.clone(), Some(adapter));
        self.set_health(&rec.name, Health::Healthy).await;
        let live = self.read();
        live.get(&rec.name)
            .map(registered)
            .ok_or_else(|| store("registration vanished"))
    }

    /// Retire an adapter: forget it durably, stop its monitor, pause the instances on its
    /// network (they keep their state and wait for an adapter for that network). Returns
    /// the registration as it was when retired.
    pub async fn retire(&self, name: &str) -> Result<RegisteredAdapter, RegistryError> {
        self.retire_owned(name, None).await
    }

    /// [`retire`](Self::retire), only if `tenant` (when given) owns the registration;
    /// another tenant's answers `NotFound`, as a missing one, and changes nothing.
    pub async fn retire_owned(
        &self,
        name: &str,
        tenant: Option<&str>,
    ) -> Result<RegisteredAdapter, RegistryError> {
        let removed = {
            let mut live = self.write();
            match live.get(name) {
                Some(l) if tenant.is_none_or(|t| l.record.tenant == t) => live.remove(name),
                _ => None,
            }
        };
        let Some(live) = removed else {
            return Err(RegistryError::NotFound(name.to_owned()));
        };
        self.tree.remove(name.as_bytes()).map_err(store)?;
        self.db.flush_async().await.map_err(store)?;
        tracing::info!(%name, network = %live.record.network, "adapter retired");
        self.propagate(live.record.network, false).await;
        Ok(registered(&live))
    }

    /// Every registered adapter, in name order.
    pub fn list(&self) -> Vec<RegisteredAdapter> {
        self.read().values().map(registered).collect()
    }

    fn by_network(&self, network: &NetworkId) -> Option<(AdapterRecord, Option<Arc<dyn Adapter>>)> {
        self.read()
            .values()
            .find(|l| l.record.network == *network)
            .map(|l| (l.record.clone(), l.adapter.clone()))
    }

    /// Record a health change and tell the instances on that network about it.
    async fn set_health(&self, name: &str, health: Health) {
        let changed = {
            let mut live = self.write();
            let Some(l) = live.get_mut(name) else { return };
            let was = l.health.is_usable();
            let network = l.record.network;
            l.health = health.clone();
            (was != health.is_usable()).then_some(network)
        };
        // Applied on every probe while unhealthy too: an instance created meanwhile is
        // paused as well (a repeated event changes nothing).
        let network = match changed {
            Some(n) => Some(n),
            None if !health.is_usable() => self.read().get(name).map(|l| l.record.network),
            None => None,
        };
        if let Some(n) = network {
            if changed.is_some() {
                tracing::warn!(%name, network = %n, ?health, "adapter health changed");
            }
            self.propagate(n, health.is_usable()).await;
        }
    }

    /// Apply `AdapterHealth` to every unfinished instance with a leg on `network`.
    async fn propagate(&self, network: NetworkId, healthy: bool) {
        let Some(h) = &self.hooks else { return };
        let Ok(all) = h.driver.journal().all() else {
            return;
        };
        for inst in all.iter().filter(|i| !i.contract.status().terminal) {
            for leg in LegId::BOTH {
                let ev = match &inst.contract {
                    Contract::TwoPhase(m) if m.spec.leg(leg).network == network => {
                        ContractEvent::TwoPhase(TwoPhaseEvent::AdapterHealth { leg, healthy })
                    }
                    Contract::Htlc(m) if m.spec.leg(leg).network == network => {
                        ContractEvent::Htlc(HtlcEvent::AdapterHealth { leg, healthy })
                    }
                    _ => continue,
                };
                if let Err(e) = h.driver.apply(inst.contract.id(), ev, (h.clock)()).await {
                    tracing::warn!(instance = %inst.contract.id(), %e, "adapter health not applied");
                }
            }
        }
    }

    /// A [`NetworkDirectory`] that knows the registered networks too.
    pub fn directory(
        self: &Arc<Self>,
        configured: Arc<dyn NetworkDirectory>,
    ) -> Arc<dyn NetworkDirectory> {
        Arc::new(RegistryDirectory {
            registry: self.clone(),
            configured,
        })
    }
}

impl AdapterLookup for AdapterRegistry {
    fn adapter(&self, network: &NetworkId) -> Option<Arc<dyn Adapter>> {
        if let Some(a) = self.fixed.get(network) {
            return Some(a.clone());
        }
        self.by_network(network).and_then(|(_, a)| a)
    }
}

fn registered(l: &Live) -> RegisteredAdapter {
    RegisteredAdapter {
        record: l.record.clone(),
        adapter: l.adapter.clone(),
        health: l.health.clone(),
    }
}

/// Probe one registration until it is retired (its `Live` dropped) or the registry goes.
async fn monitor(
    registry: std::sync::Weak<AdapterRegistry>,
    rec: AdapterRecord,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut watcher: Option<(
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    )> = None;
    loop {
        let Some(reg) = registry.upgrade() else {
            return;
        };
        let every = reg.probe_every;
        let current = reg.read().get(&rec.name).and_then(|l| l.adapter.clone());
        let adapter = match current {
            Some(a) => Some(a),
            None => match (reg.connect)(rec.clone()).await {
                Ok(a) => {
                    if let Some(l) = reg.write().get_mut(&rec.name) {
                        l.adapter = Some(a.clone());
                    }
                    Some(a)
                }
                Err(e) => {
                    reg.set_health(
                        &rec.name,
                        Health::Unhealthy {
                            reason: e.to_string(),
                        },
                    )
                    .await;
                    None
                }
            },
        };
        if let Some(a) = adapter {
            if watcher.is_none() {
                if let Some(h) = &reg.hooks {
                    let (tx, mut rx) = tokio::sync::watch::channel(false);
                    let w = Watcher {
                        network: rec.network,
                        adapter: a.clone(),
                        driver: h.driver.clone(),
                        db: h.db.clone(),
                        clock: h.clock.clone(),
                        page: 100,
                        idle_poll: every.min(Duration::from_millis(200)),
                    };
                    let task = tokio::spawn(w.run(async move {
                        let _ = rx.wait_for(|s| *s).await;
                    }));
                    watcher = Some((tx, task));
                }
            }
            let health = match a.health().await {
                Ok(h) => h,
                Err(e) => Health::Unhealthy {
                    reason: e.to_string(),
                },
            };
            reg.set_health(&rec.name, health).await;
        }
        drop(reg);
        tokio::select! {
            // The sender is dropped when the registration is retired.
            r = stopped.changed() => if r.is_err() {
                if let Some((stop, task)) = watcher.take() {
                    let _ = stop.send(true);
                    let _ = task.await;
                }
                return;
            },
            _ = tokio::time::sleep(every) => {}
        }
    }
}

struct RegistryDirectory {
    registry: Arc<AdapterRegistry>,
    configured: Arc<dyn NetworkDirectory>,
}

impl NetworkDirectory for RegistryDirectory {
    fn resolve(&self, name: &str) -> Option<NetworkId> {
        self.configured
            .resolve(name)
            .or_else(|| self.registry.read().get(name).map(|l| l.record.network))
    }

    fn name_of(&self, id: NetworkId) -> String {
        match self.registry.by_network(&id) {
            Some((rec, _)) => rec.name,
            None => self.configured.name_of(id),
        }
    }
}
