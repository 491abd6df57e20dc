//! One way to assemble a hub: [`HubBuilder`] takes the parts (adapters by name, the hub
//! ledger, the transition log, the packet port, keys, the database, configs, the clock, the
//! API's address and key ring) and [`HubBuilder::start`] wires the interop core under
//! them and spawns every task into one [`JoinSet`] owned by the returned [`Hub`].
//!
//! It names no concrete adapter, ledger or port: `hub up` passes its native adapters and
//! its chain ledger, tests pass mocks and fixtures. What a caller does not set has the
//! value `hub up` uses (driver retries and sweep, clock tick, watcher page, timeouts).
//!
//! The order of the wiring is the order of durability: the journal is the first durable
//! record of every transition (the driver writes it before anyone is told), the anchorer
//! follows the journal, the API is served last, over parts that are all running.

use crate::service::{
    AccountOwners, ApiNotifier, Directory, InteropOperations, RegistryAdapters, RelayMessages,
    SingleTenant, WithRegistered,
};
use anyhow::Context as _;
use async_trait::async_trait;
use isthmus_adapter_api::port::PacketPort;
use isthmus_adapter_api::Adapter;
use isthmus_core::{Keypair, NetworkId};
use isthmus_hub_api::{
    ApiSettings, ApiState, Backends, Directory as ApiDirectory, EventBus, KeyRing, SledApiStore,
};
use isthmus_interop::{
    ActionExecutor, AdapterExecutor, AdapterLookup, AdapterRegistry, Anchorer, Clock, Connect,
    Driver, DriverConfig, ExecError, HubLedger, InteropService, Journal, MessageRelay,
    NetworkDirectory, RegistryHooks, SledJournal, TransitionLog, Watcher,
};
use isthmus_lock_contracts::{Decision, HtlcConfig, HubRecord, InstanceId, TwoPhaseConfig};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

/// The hub's clock by default: unix seconds.
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The driver's configuration of `hub up`: quick retries, capped at 5 s, and a sweep every
/// 500 ms.
pub fn default_driver_config() -> DriverConfig {
    DriverConfig {
        retry_base: Duration::from_millis(100),
        retry_max: Duration::from_secs(5),
        sweep_interval: Duration::from_millis(500),
        ..DriverConfig::default()
    }
}

/// Adjusts the default executor (e.g. adds EVM attestation keys and escrow domains).
type ExecutorFn = Box<dyn FnOnce(AdapterExecutor) -> AdapterExecutor + Send>;

enum Executor {
    /// An [`AdapterExecutor`] over the adapters (or the registry), adjusted by the hook.
    Adapters(Option<ExecutorFn>),
    /// The caller's executor.
    Custom(Arc<dyn ActionExecutor>),
}

/// A hub's parts and settings; [`start`](HubBuilder::start) wires and runs them.
pub struct HubBuilder {
    db: sled::Db,
    adapters: Vec<(String, Arc<dyn Adapter>)>,
    unwatched: HashSet<NetworkId>,
    ledger: Option<Arc<dyn HubLedger>>,
    attesters: Vec<Keypair>,
    anchoring: Option<(Arc<dyn TransitionLog>, Duration)>,
    packets: Option<(Arc<dyn PacketPort>, Duration)>,
    relayer_grace: Option<u64>,
    journal_key: Option<Zeroizing<[u8; 32]>>,
    wallet_secret: Option<Zeroizing<[u8; 32]>>,
    driver: DriverConfig,
    two_phase: TwoPhaseConfig,
    htlc: HtlcConfig,
    clock: Clock,
    tick: Option<Duration>,
    watch_poll: Duration,
    watch_page: u32,
    directory: Option<(Arc<dyn NetworkDirectory>, Arc<dyn ApiDirectory>)>,
    registry: Option<(Connect, Duration)>,
    executor: Executor,
    api: Option<(SocketAddr, KeyRing)>,
    api_settings: ApiSettings,
    owners: Option<Arc<dyn AccountOwners>>,
    stop: CancellationToken,
}

impl HubBuilder {
    /// A hub whose durable state (journal, checkpoints, API events, registrations,
    /// messages) lives in `db`.
    pub fn new(db: sled::Db) -> HubBuilder {
        HubBuilder {
            db,
            adapters: Vec::new(),
            unwatched: HashSet::new(),
            ledger: None,
            attesters: Vec::new(),
            anchoring: None,
            packets: None,
            relayer_grace: None,
            journal_key: None,
            wallet_secret: None,
            driver: default_driver_config(),
            two_phase: TwoPhaseConfig { release_window: 60 },
            htlc: HtlcConfig { delta: 30 },
            clock: Arc::new(unix_secs),
            tick: Some(Duration::from_millis(250)),
            watch_poll: Duration::from_millis(100),
            watch_page: 256,
            directory: None,
            registry: None,
            executor: Executor::Adapters(None),
            api: None,
            api_settings: ApiSettings::default(),
            owners: None,
            stop: CancellationToken::new(),
        }
    }

    /// A network the hub links, by the name requests use (listing order is call order).
    /// A watcher follows it unless [`unwatched`](Self::unwatched).
    pub fn adapter(mut self, name: impl Into<String>, adapter: Arc<dyn Adapter>) -> Self {
        self.adapters.push((name.into(), adapter));
        self
    }

    /// Run no watcher for `network`: its lock events reach the hub some other way
    /// (relayers through an evidence ingress, or the sweep's re-reads).
    pub fn unwatched(mut self, network: NetworkId) -> Self {
        self.unwatched.insert(network);
        self
    }

    /// Where the hub records its decisions. Without one every decision is refused (a hub
    /// of HTLC swaps only).
    pub fn ledger(mut self, ledger: Arc<dyn HubLedger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// The hub's attestation keys (escrows trust a threshold of them).
    pub fn attesters(mut self, keys: Vec<Keypair>) -> Self {
        self.attesters = keys;
        self
    }

    /// Anchor every journaled transition in `log`, checking every `every`.
    pub fn anchoring(mut self, log: Arc<dyn TransitionLog>, every: Duration) -> Self {
        self.anchoring = Some((log, every));
        self
    }

    /// Relay messages through `port`, stepping them every `every` (`/v1/messages`).
    pub fn messages(mut self, port: Arc<dyn PacketPort>, every: Duration) -> Self {
        self.packets = Some((port, every));
        self
    }

    /// Relayers deliver packets; the hub delivers one itself only after `secs`.
    pub fn relayer_grace(mut self, secs: u64) -> Self {
        self.relayer_grace = Some(secs);
        self
    }

    /// Seal every journaled instance and event with `key` (a swap's state holds its
    /// secret before the claim makes it public).
    pub fn sealed_journal(mut self, key: Zeroizing<[u8; 32]>) -> Self {
        self.journal_key = Some(key);
        self
    }

    /// The wallet's secret for HTLC secrets the hub makes on a customer's behalf. Without
    /// one, a random secret of this run: a secret already made lives in its swap's journal
    /// record (seal the journal with [`sealed_journal`](Self::sealed_journal)), so a new
    /// one per run loses nothing, it only makes the next secrets unrelated to the last.
    pub fn wallet_secret(mut self, secret: Zeroizing<[u8; 32]>) -> Self {
        self.wallet_secret = Some(secret);
        self
    }

    pub fn driver_config(mut self, cfg: DriverConfig) -> Self {
        self.driver = cfg;
        self
    }

    pub fn two_phase(mut self, cfg: TwoPhaseConfig) -> Self {
        self.two_phase = cfg;
        self
    }

    pub fn htlc(mut self, cfg: HtlcConfig) -> Self {
        self.htlc = cfg;
        self
    }

    /// The hub's clock (unix seconds by default).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// How often every instance sees the hub's clock (deadlines and timelocks move with
    /// it, not only with chain events); `None`: never (the test ticks by hand).
    pub fn clock_tick(mut self, every: Option<Duration>) -> Self {
        self.tick = every;
        self
    }

    /// The watchers' idle poll interval and page size.
    pub fn watchers(mut self, idle_poll: Duration, page: u32) -> Self {
        self.watch_poll = idle_poll;
        self.watch_page = page;
        self
    }

    /// How requests' network names resolve and what `GET /v1/platforms` and
    /// `/v1/networks` list (by default: the adapters by name, from their own reports).
    pub fn directory<D: NetworkDirectory + ApiDirectory>(mut self, directory: Arc<D>) -> Self {
        self.directory = Some((directory.clone(), directory));
        self
    }

    /// Providers may register adapters at run time (`POST /v1/adapters`): attached with
    /// `connect`, health-checked every `probe_every`.
    pub fn registry(mut self, connect: Connect, probe_every: Duration) -> Self {
        self.registry = Some((connect, probe_every));
        self
    }

    /// Adjust the executor built over the adapters.
    pub fn executor_with(
        mut self,
        f: impl FnOnce(AdapterExecutor) -> AdapterExecutor + Send + 'static,
    ) -> Self {
        self.executor = Executor::Adapters(Some(Box::new(f)));
        self
    }

    /// Execute actions with `exec` instead of an executor over the adapters.
    pub fn executor(mut self, exec: Arc<dyn ActionExecutor>) -> Self {
        self.executor = Executor::Custom(exec);
        self
    }

    /// Which tenant owns each hub-wallet account (`hub up`: the wallet's own record).
    /// Without it every account is tenant `default`'s, and no other tenant moves any.
    pub fn account_owners(mut self, owners: Arc<dyn AccountOwners>) -> Self {
        self.owners = Some(owners);
        self
    }

    /// Serve the HTTP API on `addr` (port 0: any free port) to the keys of `keys`.
    pub fn api(mut self, addr: SocketAddr, keys: KeyRing) -> Self {
        self.api = Some((addr, keys));
        self
    }

    /// How the API is served: TLS, rate limits, CORS, WebSocket limits (defaults otherwise).
    pub fn api_settings(mut self, settings: ApiSettings) -> Self {
        self.api_settings = settings;
        self
    }

    /// Stop the hub when `stop` is cancelled (a fresh token by default).
    pub fn stop(mut self, stop: CancellationToken) -> Self {
        self.stop = stop;
        self
    }

    /// Wire and start everything; the API (if any) answers when this returns. Must run
    /// within a tokio runtime.
    pub fn start(self) -> anyhow::Result<Hub> {
        let HubBuilder {
            db,
            adapters,
            unwatched,
            ledger,
            attesters,
            anchoring,
            packets,
            relayer_grace,
            journal_key,
            wallet_secret,
            driver: driver_cfg,
            two_phase,
            htlc,
            clock,
            tick,
            watch_poll,
            watch_page,
            directory,
            registry,
            executor,
            api,
            api_settings,
            owners,
            stop,
        } = self;
        let owners: Arc<dyn AccountOwners> = owners
            .unwrap_or_else(|| Arc::new(SingleTenant(isthmus_hub_api::DEFAULT_TENANT.to_owned())));
        let by_id: HashMap<NetworkId, Arc<dyn Adapter>> = adapters
            .iter()
            .map(|(_, a)| (a.descriptor().network, a.clone()))
            .collect();
        let (names, listing) = match directory {
            Some(d) => d,
            None => {
                let d = Arc::new(Directory { nets: adapters });
                (
                    d.clone() as Arc<dyn NetworkDirectory>,
                    d as Arc<dyn ApiDirectory>,
                )
            }
        };
        let bus = EventBus::new(Arc::new(
            SledApiStore::open(db.clone()).context("cannot open the api event store")?,
        ));
        let journal: Arc<dyn Journal> = Arc::new(match &journal_key {
            Some(key) => SledJournal::open_sealed(db.clone(), key).context(
                "cannot open the interop journal (is the wallet the one it was sealed with?)",
            )?,
            None => SledJournal::open(db.clone()).context("cannot open the interop journal")?,
        });
        let driver = Driver::new(
            journal.clone(),
            Arc::new(ApiNotifier {
                bus: bus.clone(),
                directory: names.clone(),
            }),
            driver_cfg,
        );
        let registry = match registry {
            Some((connect, probe_every)) => Some(
                AdapterRegistry::open(
                    by_id.clone(),
                    db.clone(),
                    connect,
                    Some(RegistryHooks {
                        driver: driver.clone(),
                        db: db.clone(),
                        clock: clock.clone(),
                    }),
                    probe_every,
                )
                .context("cannot open the adapter registry")?,
            ),
            None => None,
        };
        let exec: Arc<dyn ActionExecutor> = match executor {
            Executor::Custom(e) => e,
            Executor::Adapters(adjust) => {
                let lookup: Arc<dyn AdapterLookup> = match &registry {
                    Some(r) => r.clone(),
                    None => Arc::new(by_id.clone()),
                };
                let ledger = ledger.unwrap_or_else(|| Arc::new(NoLedger));
                let e = AdapterExecutor::new(lookup, ledger, attesters);
                Arc::new(match adjust {
                    Some(f) => f(e),
                    None => e,
                })
            }
        };
        let relay = match packets {
            Some((port, every)) => {
                let r = MessageRelay::open(db.clone(), port)
                    .context("cannot open the message relay")?;
                let r = match relayer_grace {
                    Some(secs) => r.with_relayer(secs),
                    None => r,
                };
                Some((Arc::new(r), every))
            }
            None => None,
        };
        let anchor_progress = match &anchoring {
            Some(_) => Some(db.open_tree("interop.anchor_progress")?),
            None => None,
        };

        // Everything opened: from here on, only tasks.
        let mut tasks = JoinSet::new();
        if let (Some((log, every)), Some(progress)) = (anchoring, anchor_progress) {
            // Every journaled transition is anchored (after the journal, which stays the
            // first durable record), so the history is replicated and auditable.
            let anchorer = Arc::new(Anchorer::new(journal, log, progress));
            tasks.spawn(anchorer.run(every, stop.clone().cancelled_owned()));
        }
        let failures: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        {
            let (d, s, c) = (driver.clone(), stop.clone(), clock.clone());
            let failed = failures.clone();
            tasks.spawn(async move {
                if let Err(e) = d.run(exec, move || c(), s.cancelled_owned()).await {
                    tracing::error!(%e, "interop driver stopped");
                    failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("the interop driver stopped: {e}"));
                }
            });
        }
        let mut watched: Vec<_> = by_id
            .iter()
            .filter(|(n, _)| !unwatched.contains(n))
            .collect();
        watched.sort_by_key(|(n, _)| n.0);
        for (network, adapter) in watched {
            let w = Watcher {
                network: *network,
                adapter: adapter.clone(),
                driver: driver.clone(),
                db: db.clone(),
                clock: clock.clone(),
                page: watch_page,
                idle_poll: watch_poll,
            };
            tasks.spawn(w.run(stop.clone().cancelled_owned()));
        }
        if let Some(period) = tick {
            let (d, s, c) = (driver.clone(), stop.clone(), clock.clone());
            tasks.spawn(async move {
                let mut every = tokio::time::interval(period);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = s.cancelled() => return,
                        _ = every.tick() => {
                            if let Err(e) = d.tick_all(c()).await {
                                tracing::warn!(%e, "clock tick refused");
                            }
                        }
                    }
                }
            });
        }
        if let Some((r, every)) = &relay {
            let (r, c, s, every) = (r.clone(), clock.clone(), stop.clone(), *every);
            tasks.spawn(async move { r.run(c, every, s.cancelled_owned()).await });
        }
        let interop = Arc::new(InteropService {
            driver: driver.clone(),
            two_phase,
            htlc,
            clock: clock.clone(),
            wallet_secret: Arc::new(
                wallet_secret.unwrap_or_else(|| Zeroizing::new(rand::random())),
            ),
        });
        let api_names = match &registry {
            Some(r) => r.directory(names.clone()),
            None => names.clone(),
        };
        let operations = Arc::new(InteropOperations {
            interop: interop.clone(),
            directory: api_names.clone(),
            owners: owners.clone(),
        });
        let mut backends = match &registry {
            Some(r) => Backends::new(
                Arc::new(WithRegistered {
                    configured: listing,
                    registry: r.clone(),
                }),
                operations.clone(),
            )
            .with_adapters(Arc::new(RegistryAdapters {
                registry: r.clone(),
            })),
            None => Backends::new(listing, operations.clone()),
        };
        if let Some((r, _)) = &relay {
            backends = backends.with_messages(Arc::new(RelayMessages {
                relay: r.clone(),
                directory: api_names.clone(),
                clock: clock.clone(),
                owners,
            }));
        }
        let mut hub = Hub {
            api: None,
            driver,
            registry,
            relay: relay.map(|(r, _)| r),
            interop,
            operations,
            backends,
            bus,
            clock,
            adapters: by_id,
            db,
            stop,
            tasks,
            failures,
            names: api_names,
        };
        if let Some((addr, keys)) = api {
            if let Err(e) = hub.serve(addr, keys, api_settings) {
                hub.stop.cancel();
                return Err(e);
            }
        }
        Ok(hub)
    }
}

/// The ledger of a hub that was given none: every decision is refused, named.
struct NoLedger;

#[async_trait]
impl HubLedger for NoLedger {
    async fn record_decision(
        &self,
        instance: InstanceId,
        decision: Decision,
    ) -> Result<HubRecord, ExecError> {
        Err(ExecError::Refused(format!(
            "this hub records no decisions (no ledger): {decision:?} for {instance}"
        )))
    }
}

/// A running hub: every task it spawned is in its [`JoinSet`]; [`Hub::shutdown`] cancels
/// and joins them all. Dropped without a shutdown, it cancels its token and aborts them.
pub struct Hub {
    api: Option<SocketAddr>,
    driver: Arc<Driver>,
    registry: Option<Arc<AdapterRegistry>>,
    relay: Option<Arc<MessageRelay>>,
    interop: Arc<InteropService>,
    operations: Arc<InteropOperations>,
    backends: Backends,
    bus: EventBus,
    clock: Clock,
    adapters: HashMap<NetworkId, Arc<dyn Adapter>>,
    db: sled::Db,
    stop: CancellationToken,
    tasks: JoinSet<()>,
    /// What went wrong in the hub's own tasks, reported by [`Hub::stop`].
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    /// How names resolve, registered adapters included.
    names: Arc<dyn NetworkDirectory>,
}

/// A hub that stopped, but not cleanly: each failure of its tasks (a panic, the driver
/// ending with an error) or of its final flush, in the order seen.
#[derive(Debug, thiserror::Error)]
#[error("the hub stopped with {} failure(s): {}", .0.len(), .0.join("; "))]
pub struct StopError(pub Vec<String>);

impl Hub {
    /// Serve the HTTP API on `addr` over this hub (done by [`HubBuilder::start`] when
    /// [`HubBuilder::api`] was set; a caller that starts parts of its own first serves
    /// afterwards). Returns where it listens.
    pub fn serve(
        &mut self,
        addr: SocketAddr,
        keys: KeyRing,
        settings: ApiSettings,
    ) -> anyhow::Result<SocketAddr> {
        let state = ApiState::new(self.backends.clone(), keys, self.bus.clone());
        let (bound, server) =
            isthmus_hub_api::serve_with(addr, state, settings, self.stop.clone().cancelled_owned())
                .with_context(|| format!("cannot serve the api on {addr}"))?;
        self.tasks.spawn(server);
        self.api = Some(bound);
        Ok(bound)
    }

    /// Where the API listens (`None` when it is not served).
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api
    }

    pub fn driver(&self) -> &Arc<Driver> {
        &self.driver
    }

    /// The adapter registry, when providers may register adapters.
    pub fn registry(&self) -> Option<&Arc<AdapterRegistry>> {
        self.registry.as_ref()
    }

    /// The message relay, when the hub relays messages.
    pub fn relay(&self) -> Option<&Arc<MessageRelay>> {
        self.relay.as_ref()
    }

    pub fn interop(&self) -> &Arc<InteropService> {
        &self.interop
    }

    /// The API's `Operations` over this hub.
    pub fn operations(&self) -> &Arc<InteropOperations> {
        &self.operations
    }

    /// Every API resource over this hub.
    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// Serve provisioned networks through `p` (before [`serve`](Self::serve)).
    pub fn set_provisioning(&mut self, p: Arc<dyn isthmus_hub_api::networks::Provisioning>) {
        self.backends = self.backends.clone().with_provisioning(p);
    }

    /// How network names resolve (configured and registered networks).
    pub fn names(&self) -> &Arc<dyn NetworkDirectory> {
        &self.names
    }

    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The configured adapters by network.
    pub fn adapters(&self) -> &HashMap<NetworkId, Arc<dyn Adapter>> {
        &self.adapters
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// A token that stops the hub when cancelled.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Run `task` with the hub's own: it must end when the stop token is cancelled.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// The hub's tasks, for parts that spawn several of their own.
    pub fn tasks_mut(&mut self) -> &mut JoinSet<()> {
        &mut self.tasks
    }

    /// Cancel the stop token, wait for every task and the registry's monitors, and flush
    /// the database. Idempotent. Every failure seen on the way (a task that panicked, the
    /// driver that ended with an error, a failed flush) is returned, so a caller, and a
    /// test above all, cannot miss it.
    pub async fn stop(&mut self) -> Result<(), StopError> {
        self.stop.cancel();
        let mut failed = Vec::new();
        while let Some(r) = self.tasks.join_next().await {
            if let Err(e) = r {
                if e.is_panic() {
                    tracing::error!(%e, "hub task panicked");
                    failed.push(format!("a hub task panicked: {e}"));
                }
            }
        }
        if let Some(r) = &self.registry {
            r.shutdown().await;
        }
        if let Err(e) = self.db.flush_async().await {
            tracing::error!(%e, "interop database flush at shutdown failed");
            failed.push(format!("the interop database flush failed: {e}"));
        }
        let mut all = std::mem::take(&mut *self.failures.lock().unwrap_or_else(|p| p.into_inner()));
        all.extend(failed);
        if all.is_empty() {
            Ok(())
        } else {
            Err(StopError(all))
        }
    }

    /// [`stop`](Self::stop), consuming the hub.
    pub async fn shutdown(mut self) -> Result<(), StopError> {
        self.stop().await
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        // The JoinSet aborts what is left; the token stops what else listens to it.
        self.stop.cancel();
    }
}
