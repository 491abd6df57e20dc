//! `hub up`: the whole hub in one process, on one data directory; and the same code under
//! `hub serve --config` (see [`crate::serve`]), which differs only in its [`Plan`]: where
//! the API keys and the wallet's passphrase come from, which accounts the wallet holds,
//! and which native networks are linked: embedded in this process (`hub up`'s `alpha` and
//! `beta`), provisioned as node processes the hub supervises, or attached over the nodes'
//! RPC where they already run.
//!
//! It starts the hub chain (one PoS validator, where every decision of a lock contract is
//! recorded), two native networks with different consensus (`alpha`: PoW sha256, `beta`:
//! PoS), a native adapter for each, the interop driver with its executor and watchers, and
//! the HTTP API; it funds two demo accounts whose keys the hub's wallet service keeps (sealed at rest). Everything
//! durable lives under the data directory, so a restart resumes every unfinished
//! transfer and swap where the journal left it.
//!
//! Messages travel the relayer path: an in-process relayer (its own key and database)
//! watches `alpha` and `beta` and carries every committed packet over QUIC to the hub's
//! packet ingress, whose verified packets the message relay delivers (see [`relay`]). The
//! hub delivers a message itself only when the relayer has not within a grace period.

pub mod datadir;
pub mod demo;
pub mod nets;
pub mod relay;

use crate::builder::{self, Hub, HubBuilder, StopError};
use crate::ledger::{ChainLedger, ChainTransitionLog};
use crate::provision::network::{wait_for_block, HubIdentities, ProvisionedNetwork};
use crate::provision::spec::NetworkSpec;
use crate::service::provisioner::{NativeLinks, Provisioner, ProvisionerApi, ProvisionerParts};
use anyhow::{bail, Context as _};
use datadir::{DataDir, Secrets};
use isthmus_adapter_api::{Adapter, SecretKey, Wallet};
use isthmus_adapter_native::NativePacketPort;
use isthmus_adapter_native::{NativeAdapter, NativeNetwork};
use isthmus_adapter_remote::{RemoteAdapter, RemoteConfig, RemoteError};
use isthmus_chain::node::{self, NodeOptions, RunningNode};
use isthmus_chain::rpc::{Failover, NodeApi, RemoteNode, RemoteNodeConfig};
use isthmus_chain::NetworkConfig;
use isthmus_core::Keypair;
use isthmus_core::NodeId;
use isthmus_hub_api::{ApiKeyConfig, KeyRing, Role};
use isthmus_interop::{Connect, ConnectError, Driver, DriverConfig, HubLedger};
use isthmus_lock_contracts::{Address, HtlcConfig, TwoPhaseConfig};
use isthmus_transport::TransportKind;
use isthmus_wallet::{KdfParams, SledSealedStore, WalletService};
use nets::{Net, DEMO_ACCOUNTS};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

/// The API's default address.
pub const DEFAULT_API: &str = "127.0.0.1:7780";

/// The tenant `hub up` makes: its dev keys and the demo accounts are this tenant's.
pub const DEMO_TENANT: &str = "demo";

/// How to run the embedded hub.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub data: PathBuf,
    /// Where the HTTP API listens (port 0: any free port).
    pub api: SocketAddr,
    /// Block interval of all three chains.
    pub block_ms: u64,
    /// Δ of HTLC swaps: T1 must exceed T2 by this much.
    pub htlc_delta_secs: u64,
    /// How long escrows stay locked after a transfer's deadline.
    pub release_window_secs: u64,
    /// How often the driver re-derives outstanding actions (crash recovery included).
    pub sweep: Duration,
    /// The relayer path: QUIC ingress and metrics addresses, fallback grace.
    pub relay: relay::RelayOptions,
    /// How the API is served: TLS, rate limits, CORS, WebSocket limits.
    pub api_settings: isthmus_hub_api::ApiSettings,
}

impl UpOptions {
    pub fn new(data: PathBuf, api: SocketAddr) -> UpOptions {
        UpOptions {
            data,
            api,
            block_ms: 250,
            htlc_delta_secs: 30,
            release_window_secs: 60,
            sweep: Duration::from_millis(500),
            relay: relay::RelayOptions::default(),
            api_settings: isthmus_hub_api::ApiSettings::default(),
        }
    }
}

/// What a running hub tells tools and tests (`up.json` in the data dir).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpInfo {
    pub pid: u32,
    pub api: SocketAddr,
    /// The dev API keys of `hub up`; empty under `hub serve`, whose keys the operator holds.
    #[serde(default)]
    pub customer_key: String,
    #[serde(default)]
    pub provider_key: String,
    /// The admin key of the dev hub (`hub keys`); empty under `hub serve`.
    #[serde(default)]
    pub admin_key: String,
    /// The tenant of the dev keys and the demo accounts (`hub up`).
    #[serde(default)]
    pub tenant: String,
    /// The local JSON-lines status endpoint of each chain that runs in this process (see
    /// `status.rs`).
    pub status: BTreeMap<String, SocketAddr>,
    /// Each linked native network's node RPC addresses (networks in other processes).
    #[serde(default)]
    pub rpc: BTreeMap<String, Vec<SocketAddr>>,
    /// Demo account label → address on `alpha` and `beta`.
    pub accounts: BTreeMap<String, String>,
    pub block_ms: u64,
    /// The data directory.
    pub data: String,
    /// The key whose anchors of every contract transition the hub chain's `audit` module
    /// holds.
    pub auditor: String,
    /// The hub's QUIC packet ingress, and the identity its certificate is pinned to.
    pub relay_ingress: SocketAddr,
    pub relay_ingress_id: String,
    /// The in-process relayer's identity (the only one the ingress admits).
    pub relayer: String,
    /// Prometheus metrics of the relayer and the ingress (`GET /metrics`).
    pub metrics: SocketAddr,
}

/// The hub's clock: unix seconds.
pub fn now_secs() -> u64 {
    builder::unix_secs()
}

/// A running embedded hub.
pub struct RunningHub {
    pub info: UpInfo,
    /// The adapters of `alpha` and `beta` by name (for balances in the demo and benches).
    pub adapters: BTreeMap<String, Arc<dyn Adapter>>,
    pub hub_chain: Arc<dyn NodeApi>,
    pub driver: Arc<Driver>,
    /// Where decisions are recorded (the hub chain), and the hub's attestation key: for
    /// in-process benchmarks that drive the chain steps without the hub. Never printed.
    pub ledger: Arc<dyn HubLedger>,
    pub attester: Keypair,
    /// The in-process relayer's counters per link (`alpha`, `beta`).
    pub relay_links: BTreeMap<String, Arc<isthmus_relayer::RelayerStats>>,
    /// Networks whose nodes the hub runs as processes, by name.
    pub provisioned: BTreeMap<String, ProvisionedNetwork>,
    /// Networks providers ordered through the API.
    pub provisioner: Arc<Provisioner>,
    /// The hub over the chains: every task of `hub up` runs in it.
    hub: Hub,
    nodes: Vec<RunningNode>,
    relayer_db: sled::Db,
    _dir: DataDir,
}

/// The address of a demo account (its `isth_…` id).
pub fn account_address(label: &str) -> Address {
    Address(nets::demo_key(label).id().to_string())
}

async fn start_chain(
    dir: &DataDir,
    net: Net,
    block_ms: u64,
    attester: &Keypair,
    stop: &CancellationToken,
) -> anyhow::Result<(RunningNode, SocketAddr)> {
    let cfg = Arc::new(net.config(block_ms, &attester.id())?);
    let opts = NodeOptions {
        cfg,
        index: 0,
        data_dir: dir.chain_dir(net.name()),
        listen: "127.0.0.1:0".parse()?,
        peers: vec![],
        mine: true,
        transport: TransportKind::Tcp,
    };
    let running = node::start(opts)
        .await
        .with_context(|| format!("cannot start the `{}` chain", net.name()))?;
    let status = crate::status::serve(
        "127.0.0.1:0".parse()?,
        running.handle.clone(),
        stop.child_token(),
    )
    .await?;
    Ok((running, status))
}

/// Refuse an API address that is taken before any chain starts, with a clear message.
fn check_api_addr(addr: SocketAddr) -> anyhow::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
            "api address {addr} is already in use (another `hub up`?); pass --api 127.0.0.1:0 \
             for any free port, or stop the other process"
        ),
        Err(e) => bail!("cannot listen on api address {addr}: {e}"),
    }
}

/// The hub's wallet service (keys sealed at rest in the interop database), holding the
/// plan's accounts' keys.
fn wallet(db: &sled::Db, secrets: &Secrets, plan: &Plan) -> anyhow::Result<Arc<WalletService>> {
    let store = Arc::new(SledSealedStore::new(db.open_tree("wallet")?));
    let w = match &plan.wallet {
        // Cheap KDF parameters: the passphrase of this dev wallet sits in secrets.json anyway.
        WalletUnlock::Dev => WalletService::open(
            store,
            secrets.wallet_passphrase.as_bytes(),
            KdfParams::INSECURE_FAST,
        ),
        WalletUnlock::Passphrase(p) => WalletService::open(store, p.as_bytes(), KdfParams::DEFAULT),
    }
    .context("cannot open the hub wallet (is the passphrase the one it was created with?)")?;
    let have = w.addresses().context("cannot list the hub wallet")?;
    for a in &plan.accounts {
        let addr = Address(a.key.id().to_string());
        let who = &a.label;
        if !have.iter().any(|(_, have)| *have == addr) {
            w.import(&addr, &SecretKey::Ed25519(a.key.clone()))
                .with_context(|| format!("cannot store {who}'s key in the hub wallet"))?;
        }
        match w.owner(&addr).context("cannot read the hub wallet")? {
            None => w
                .set_owner(&addr, &a.tenant)
                .with_context(|| format!("cannot record {who}'s tenant in the hub wallet"))?,
            Some(t) if t == a.tenant => {}
            // Moving an account between tenants is not a side effect of a config edit.
            Some(t) => bail!(
                "account `{who}` ({}) belongs to tenant `{t}` in the hub wallet, not `{}`",
                addr.0,
                a.tenant
            ),
        }
    }
    Ok(Arc::new(w))
}

/// An account whose key the hub wallet holds for a tenant.
pub struct WalletAccount {
    pub label: String,
    pub key: Keypair,
    pub tenant: String,
}

/// How the hub wallet is unlocked.
pub enum WalletUnlock {
    /// `hub up`: a passphrase kept in the data directory, a fast KDF (demo keys only).
    Dev,
    /// An operator's passphrase (from the environment or a file), the standard KDF.
    Passphrase(Zeroizing<String>),
}

/// Where the API keys come from.
pub enum ApiKeys {
    /// `hub up`: a customer and a provider key made once per data directory.
    Dev,
    Configured(Vec<ApiKeyConfig>),
}

/// One native network the hub links.
pub enum NetworkPlan {
    /// A node in this process, with `hub up`'s generated config of `alpha` or `beta`.
    Embedded(Net),
    /// Node processes the hub starts and supervises; the escrow trusts the hub's attester.
    Provisioned { spec: NetworkSpec, network_id: u64 },
    /// Nodes that run elsewhere, reached over their RPC; `config` is the genesis config the
    /// hub trusts, `nodes` their RPC addresses and identities.
    Attached {
        config: NetworkConfig,
        nodes: Vec<(SocketAddr, NodeId)>,
    },
}

/// What a hub runs: `hub up`'s preset ([`Plan::dev`]) or a hub config's.
pub struct Plan {
    pub opts: UpOptions,
    pub keys: ApiKeys,
    pub wallet: WalletUnlock,
    /// Keys the hub wallet holds: accounts a tenant's keys move through the hub.
    pub accounts: Vec<WalletAccount>,
    /// Native networks, by the names requests use.
    pub networks: Vec<(String, NetworkPlan)>,
    /// How long a provisioned or attached network may take to answer with a block.
    pub link_deadline: Duration,
    /// The hub chain: one validator in this process (`None`), or this many validator
    /// processes the hub supervises (BFT: `3f + 1` of them keep deciding with `f` down).
    pub hub_validators: Option<usize>,
}

impl Plan {
    /// `hub up`: networks `alpha` (PoW) and `beta` (PoS) in this process, demo accounts,
    /// dev keys.
    pub fn dev(opts: UpOptions) -> Plan {
        Plan {
            keys: ApiKeys::Dev,
            wallet: WalletUnlock::Dev,
            accounts: DEMO_ACCOUNTS
                .iter()
                .map(|w| WalletAccount {
                    label: (*w).to_owned(),
                    key: nets::demo_key(w),
                    tenant: DEMO_TENANT.to_owned(),
                })
                .collect(),
            networks: vec![
                ("alpha".into(), NetworkPlan::Embedded(Net::Alpha)),
                ("beta".into(), NetworkPlan::Embedded(Net::Beta)),
            ],
            link_deadline: Duration::from_secs(60),
            hub_validators: None,
            opts,
        }
    }
}

/// The provisioner of networks ordered through the API, over the hub's registry.
#[allow(clippy::too_many_arguments)] // one call site, in `wire`
async fn open_provisioner(
    plan: &Plan,
    dir: &DataDir,
    secrets: &Secrets,
    attester: &Keypair,
    hub: &Hub,
    links: Arc<NativeLinks>,
    port: Arc<NativePacketPort>,
    stop: &CancellationToken,
) -> anyhow::Result<Arc<Provisioner>> {
    let rpc_key = secrets.derived_key("node-rpc-client")?;
    Provisioner::open(ProvisionerParts {
        root: dir.root.join("networks"),
        exe: std::env::current_exe().context("cannot locate the hub binary")?,
        hub: HubIdentities {
            attesters: vec![attester.id()],
            threshold: 1,
            rpc_client: rpc_key.id(),
        },
        rpc_key,
        links,
        registry: hub
            .registry()
            .cloned()
            .context("the hub has no adapter registry")?,
        names: hub.names().clone(),
        journal: hub.driver().journal().clone(),
        relay: hub.relay().cloned(),
        port: Some(port),
        bus: hub.bus().clone(),
        deadline: plan.link_deadline,
        stop: stop.clone(),
    })
    .await
}

/// The registry's way to attach: a provisioned network (`native:NAME`) through its linked
/// nodes, anything else as a remote adapter.
fn connect_any(
    remote: Connect,
    links: Arc<NativeLinks>,
    wallet: Arc<dyn Wallet>,
    attester: Keypair,
) -> Connect {
    Arc::new(move |rec| match rec.endpoint.strip_prefix("native:") {
        Some(name) => {
            let attached = match links.get(name) {
                Some(node) => {
                    let network = NativeNetwork::new(node.config().clone());
                    let a = NativeAdapter::new(node, network, wallet.clone(), attester.clone());
                    Ok(Arc::new(a) as Arc<dyn Adapter>)
                }
                None => Err(ConnectError::Unreachable(format!(
                    "network `{name}` is not linked yet"
                ))),
            };
            Box::pin(async move { attached })
        }
        None => remote(rec),
    })
}

/// How the hub reaches an adapter a provider registered: Noise-TCP to its endpoint,
/// authenticated as the identity it was registered with.
fn remote_connect(hub_key: Keypair) -> Connect {
    Arc::new(move |rec| {
        let hub_key = hub_key.clone();
        Box::pin(async move {
            let endpoint: SocketAddr = rec
                .endpoint
                .parse()
                .map_err(|e| ConnectError::Refused(format!("endpoint `{}`: {e}", rec.endpoint)))?;
            let identity: isthmus_core::NodeId = rec
                .identity
                .parse()
                .map_err(|e| ConnectError::Refused(format!("identity `{}`: {e}", rec.identity)))?;
            let cfg = RemoteConfig::new(rec.network, &rec.name, endpoint, identity);
            match RemoteAdapter::connect(cfg, hub_key).await {
                Ok(a) => Ok(Arc::new(a) as Arc<dyn Adapter>),
                Err(e @ RemoteError::Unreachable { .. }) => {
                    Err(ConnectError::Unreachable(e.to_string()))
                }
                Err(e) => Err(ConnectError::Refused(e.to_string())),
            }
        })
    })
}

/// `hub up`: start everything of [`Plan::dev`]; returns once the API answers.
pub async fn start(opts: UpOptions) -> anyhow::Result<RunningHub> {
    start_plan(Plan::dev(opts)).await
}

/// A native network linked to the hub, however it runs.
struct Native {
    name: String,
    node: Arc<dyn NodeApi>,
}

/// What [`start_plan`] started before the hub itself, stopped again if a later step fails.
#[derive(Default)]
struct Started {
    nodes: Vec<RunningNode>,
    provisioned: BTreeMap<String, ProvisionedNetwork>,
    status: BTreeMap<String, SocketAddr>,
    rpc: BTreeMap<String, Vec<SocketAddr>>,
    natives: Vec<Native>,
}

impl Started {
    /// Run `net`'s chain in this process.
    async fn embed(
        &mut self,
        dir: &DataDir,
        name: &str,
        net: Net,
        block_ms: u64,
        attester: &Keypair,
        stop: &CancellationToken,
    ) -> anyhow::Result<Arc<dyn NodeApi>> {
        let (running, st) = start_chain(dir, net, block_ms, attester, stop).await?;
        self.status.insert(name.to_owned(), st);
        let handle = running.handle.clone();
        self.nodes.push(running);
        Ok(Arc::new(handle))
    }

    /// Run `spec`'s nodes as supervised processes and link them once they make blocks.
    async fn provision(
        &mut self,
        dir: &DataDir,
        spec: &NetworkSpec,
        network_id: u64,
        hub: &HubIdentities,
        rpc_key: &Keypair,
        deadline: Duration,
    ) -> anyhow::Result<Arc<dyn NodeApi>> {
        let exe = std::env::current_exe().context("cannot locate the hub binary")?;
        let net =
            ProvisionedNetwork::start(&dir.root.join("networks"), spec, network_id, hub, &exe)?;
        self.rpc.insert(
            spec.name.clone(),
            net.record.nodes.iter().map(|n| n.rpc).collect(),
        );
        // Kept before linking, so a network that never makes a block is still stopped.
        let net = self.provisioned.entry(spec.name.clone()).or_insert(net);
        net.link(rpc_key, deadline).await
    }

    async fn stop(mut self, stop: &CancellationToken) {
        stop.cancel();
        for n in self.nodes {
            n.shutdown().await;
        }
        for n in self.provisioned.values_mut() {
            n.stop().await;
        }
    }
}

/// Start everything `plan` asks for: the hub chain, each native network (in this process,
/// as supervised node processes, or reached where it runs), then the hub over them.
/// Returns once the API answers; on any failure, what was started is stopped again.
pub async fn start_plan(plan: Plan) -> anyhow::Result<RunningHub> {
    let opts = &plan.opts;
    check_api_addr(opts.api)?;
    let dir = DataDir::open(&opts.data)?;
    let _ = std::fs::remove_file(dir.up_json());
    let secrets: Secrets = dir.secrets()?;
    let attester = secrets.attester()?;
    let auditor_id = secrets.derived_key("auditor")?.id().to_string();
    let stop = CancellationToken::new();
    let mut started = Started::default();
    let hub_chain = match link_networks(&plan, &dir, &secrets, &attester, &stop, &mut started).await
    {
        Ok(h) => h,
        Err(e) => {
            started.stop(&stop).await;
            return Err(e);
        }
    };
    match wire(
        &plan,
        dir,
        &secrets,
        attester,
        hub_chain,
        &started.natives,
        stop.clone(),
    )
    .await
    {
        Ok(parts) => {
            let (customer_key, provider_key, admin_key, tenant) = match plan.keys {
                ApiKeys::Dev => (
                    secrets.customer_key.clone(),
                    secrets.provider_key.clone(),
                    secrets.admin_key.clone(),
                    DEMO_TENANT.to_owned(),
                ),
                ApiKeys::Configured(_) => Default::default(),
            };
            Ok(RunningHub {
                info: UpInfo {
                    pid: std::process::id(),
                    api: parts.api,
                    customer_key,
                    provider_key,
                    admin_key,
                    tenant,
                    status: std::mem::take(&mut started.status),
                    rpc: std::mem::take(&mut started.rpc),
                    accounts: plan
                        .accounts
                        .iter()
                        .map(|a| (a.label.clone(), a.key.id().to_string()))
                        .collect(),
                    block_ms: opts.block_ms,
                    data: opts.data.display().to_string(),
                    auditor: auditor_id,
                    relay_ingress: parts.relay.ingress,
                    relay_ingress_id: parts.relay.ingress_id.to_string(),
                    relayer: parts.relay.relayer_id.to_string(),
                    metrics: parts.relay.metrics,
                },
                adapters: parts.adapters,
                hub_chain: parts.hub_chain,
                driver: parts.hub.driver().clone(),
                ledger: parts.ledger,
                attester: parts.attester,
                hub: parts.hub,
                nodes: std::mem::take(&mut started.nodes),
                provisioned: std::mem::take(&mut started.provisioned),
                provisioner: parts.provisioner,
                relay_links: parts.relay.links,
                relayer_db: parts.relay.db,
                _dir: parts.dir,
            })
        }
        Err(e) => {
            started.stop(&stop).await;
            Err(e)
        }
    }
}

/// Start the hub chain and link every network of the plan; returns the hub chain.
async fn link_networks(
    plan: &Plan,
    dir: &DataDir,
    secrets: &Secrets,
    attester: &Keypair,
    stop: &CancellationToken,
    started: &mut Started,
) -> anyhow::Result<Arc<dyn NodeApi>> {
    let block_ms = plan.opts.block_ms;
    let rpc_key = secrets.derived_key("node-rpc-client")?;
    let hub_chain: Arc<dyn NodeApi> = match plan.hub_validators {
        None => {
            started
                .embed(dir, Net::Hub.name(), Net::Hub, block_ms, attester, stop)
                .await?
        }
        Some(n) => {
            let spec = NetworkSpec::hub_chain(n, block_ms);
            let hub = HubIdentities {
                attesters: Vec::new(),
                threshold: 0,
                rpc_client: rpc_key.id(),
            };
            started
                .provision(dir, &spec, spec.id(), &hub, &rpc_key, plan.link_deadline)
                .await?
        }
    };
    for (name, how) in &plan.networks {
        let node: Arc<dyn NodeApi> = match how {
            NetworkPlan::Embedded(net) => {
                started
                    .embed(dir, name, *net, block_ms, attester, stop)
                    .await?
            }
            NetworkPlan::Provisioned { spec, network_id } => {
                let hub = HubIdentities {
                    attesters: vec![attester.id()],
                    threshold: 1,
                    rpc_client: rpc_key.id(),
                };
                started
                    .provision(dir, spec, *network_id, &hub, &rpc_key, plan.link_deadline)
                    .await?
            }
            NetworkPlan::Attached { config, nodes } => {
                let config = Arc::new(config.clone());
                let mut all: Vec<Arc<dyn NodeApi>> = Vec::new();
                for (addr, id) in nodes {
                    let cfg = RemoteNodeConfig::new(config.clone(), *addr, *id);
                    all.push(Arc::new(RemoteNode::new(cfg, rpc_key.clone()).await?));
                }
                started
                    .rpc
                    .insert(name.clone(), nodes.iter().map(|(a, _)| *a).collect());
                let node: Arc<dyn NodeApi> = Arc::new(Failover::new(all)?);
                wait_for_block(&node, name, plan.link_deadline)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "{e}; is the hub's identity {} allowed to read its nodes?",
                            rpc_key.id()
                        )
                    })?;
                node
            }
        };
        started.natives.push(Native {
            name: name.clone(),
            node,
        });
    }
    Ok(hub_chain)
}

struct Wired {
    api: SocketAddr,
    hub: Hub,
    provisioner: Arc<Provisioner>,
    adapters: BTreeMap<String, Arc<dyn Adapter>>,
    hub_chain: Arc<dyn NodeApi>,
    ledger: Arc<dyn HubLedger>,
    attester: Keypair,
    relay: relay::RelayPath,
    dir: DataDir,
}

/// The hub's parts over the running chains (a native adapter per linked network, the hub
/// chain's ledger and transition log, the native packet port, the wallet's accounts), the
/// hub assembled from them by the [`HubBuilder`], then the relayer path and the API.
async fn wire(
    plan: &Plan,
    dir: DataDir,
    secrets: &Secrets,
    attester: Keypair,
    hub_chain: Arc<dyn NodeApi>,
    natives: &[Native],
    stop: CancellationToken,
) -> anyhow::Result<Wired> {
    let opts = &plan.opts;
    let db = sled::open(dir.interop_dir())
        .with_context(|| format!("cannot open {}", dir.interop_dir().display()))?;
    let wallet_service = wallet(&db, secrets, plan)?;
    let wallet: Arc<dyn Wallet> = wallet_service.clone();
    let mut named: BTreeMap<String, Arc<dyn Adapter>> = BTreeMap::new();
    for n in natives {
        // The hub's trusted copy of the network's genesis config (the one an in-process node
        // was started with, or the one it checked a remote node's genesis against); evidence
        // is verified as a light client against it.
        let network = NativeNetwork::new(n.node.config().clone());
        let a = NativeAdapter::new(n.node.clone(), network, wallet.clone(), attester.clone());
        named.insert(n.name.clone(), Arc::new(a));
    }
    let ledger: Arc<dyn HubLedger> = Arc::new(ChainLedger::new(
        hub_chain.clone(),
        secrets.derived_key("recorder")?,
    ));
    // Every instance and event is sealed at rest: a swap's state holds its secret before
    // the claim makes it public. The key is a data key kept by the wallet service.
    let journal_key = wallet_service
        .data_key("interop-journal")
        .context("cannot read the journal key from the hub wallet")?;
    // Message relay between alpha and beta: packets delivered under the hub attester's
    // signature, submitted with a key of their own so its nonces never race the adapters'.
    let port = Arc::new(NativePacketPort::new(
        natives.iter().map(|n| n.node.clone()),
        wallet.clone(),
        secrets.derived_key("packet-submitter")?,
        vec![attester.clone()],
    ));
    let every_block = Duration::from_millis(opts.block_ms.max(50));
    let links = Arc::new(NativeLinks::default());
    let mut builder = HubBuilder::new(db.clone())
        .ledger(ledger.clone())
        .attesters(vec![attester.clone()])
        .sealed_journal(journal_key)
        .wallet_secret(secrets.wallet_secret()?)
        // Only the demo tenant's keys move the demo accounts.
        .account_owners(wallet_service.clone())
        // Every journaled transition is anchored on the hub chain.
        .anchoring(
            Arc::new(ChainTransitionLog::new(
                hub_chain.clone(),
                secrets.derived_key("auditor")?,
            )),
            every_block,
        )
        .messages(port.clone(), every_block)
        .relayer_grace(opts.relay.fallback_secs)
        .driver_config(DriverConfig {
            sweep_interval: opts.sweep,
            ..builder::default_driver_config()
        })
        .two_phase(TwoPhaseConfig {
            release_window: opts.release_window_secs,
        })
        .htlc(HtlcConfig {
            delta: opts.htlc_delta_secs,
        })
        .clock(Arc::new(now_secs))
        // Watchers poll in-process adapters: cheap, so poll well within a block interval.
        .watchers(
            Duration::from_millis((opts.block_ms / 10).clamp(5, 100)),
            256,
        )
        // Providers may add platforms at run time (`POST /v1/adapters`), and networks the
        // hub provisions for them (`POST /v1/networks`) are attached the same way.
        .registry(
            connect_any(
                remote_connect(secrets.derived_key("adapter-client")?),
                links.clone(),
                wallet.clone(),
                attester.clone(),
            ),
            Duration::from_secs(2),
        )
        .stop(stop.clone());
    for (name, a) in &named {
        builder = builder.adapter(name.clone(), a.clone());
    }
    let mut hub = builder.start()?;
    let relay = hub.relay().cloned().context("the hub relays no messages")?;
    let mut sources = Vec::new();
    for n in natives {
        let adapter = named
            .get(&n.name)
            .cloned()
            .with_context(|| format!("no adapter for `{}`", n.name))?;
        sources.push(relay::Source {
            name: n.name.clone(),
            adapter,
            node: n.node.clone(),
        });
    }
    let relay_path = match relay::start(
        &opts.relay,
        &dir,
        secrets,
        &db,
        sources,
        relay,
        opts.block_ms,
        &stop,
        hub.tasks_mut(),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            if let Err(stop) = hub.shutdown().await {
                tracing::warn!(%stop, "while giving up on starting");
            }
            return Err(e);
        }
    };
    let provisioner =
        match open_provisioner(plan, &dir, secrets, &attester, &hub, links, port, &stop).await {
            Ok(p) => p,
            Err(e) => {
                if let Err(stop) = hub.shutdown().await {
                    tracing::warn!(%stop, "while giving up on starting");
                }
                return Err(e);
            }
        };
    hub.set_provisioning(Arc::new(ProvisionerApi(provisioner.clone())));
    let keys = match &plan.keys {
        ApiKeys::Dev => KeyRing::new(&[
            ApiKeyConfig::from_plaintext("dev-customer", Role::Customer, &secrets.customer_key)
                .in_tenant(DEMO_TENANT),
            ApiKeyConfig::from_plaintext("dev-provider", Role::Provider, &secrets.provider_key)
                .in_tenant(DEMO_TENANT),
            ApiKeyConfig::from_plaintext("dev-admin", Role::Admin, &secrets.admin_key)
                .in_tenant(DEMO_TENANT),
        ]),
        ApiKeys::Configured(keys) => KeyRing::new(keys),
    }
    .map_err(|p| anyhow::anyhow!("api keys: {}", p.join("; ")));
    let api = match keys.and_then(|keys| hub.serve(opts.api, keys, opts.api_settings.clone())) {
        Ok(api) => api,
        Err(e) => {
            if let Err(stop) = hub.shutdown().await {
                tracing::warn!(%stop, "while giving up on starting");
            }
            return Err(e);
        }
    };
    Ok(Wired {
        api,
        hub,
        provisioner,
        adapters: named,
        hub_chain,
        ledger,
        attester,
        relay: relay_path,
        dir,
    })
}

impl RunningHub {
    /// Write `up.json` (after everything listens, so its presence means "ready").
    pub fn publish(&self) -> anyhow::Result<()> {
        let dir = &self._dir;
        dir.write_atomic(
            "up.json",
            serde_json::to_string_pretty(&self.info)?.as_bytes(),
        )
    }

    /// A token that stops the hub when cancelled.
    pub fn stop_token(&self) -> CancellationToken {
        self.hub.stop_token()
    }

    /// Stop every task, then the chains (their last commits are already durable) and the
    /// provisioned networks' node processes, and flush the interop database. The chains
    /// are stopped whatever the hub's tasks report; their failures are returned after.
    pub async fn shutdown(mut self) -> Result<(), StopError> {
        let stopped = self.hub.stop().await;
        for n in self.nodes.drain(..) {
            n.shutdown().await;
        }
        for n in self.provisioned.values_mut() {
            n.stop().await;
        }
        self.provisioner.shutdown().await;
        if let Err(e) = self.relayer_db.flush_async().await {
            tracing::error!(%e, "relayer database flush at shutdown failed");
        }
        let _ = std::fs::remove_file(self._dir.up_json());
        stopped
    }
}
