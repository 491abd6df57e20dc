//! A hub wired as in production (API → the hub's resource services → interop service and
//! registry → driver → executor over the registry; watchers), with one configured
//! in-process mock network `alpha` and adapters registered over HTTP.

use async_trait::async_trait;
use isthmus_adapter_api::{Adapter, Finality};
use isthmus_adapter_remote::{RemoteAdapter, RemoteConfig, RemoteError};
use isthmus_adapter_testkit::mock::{MockAdapter, MockConfig};
use isthmus_core::{Keypair, NetworkId, NodeId};
use isthmus_hub::service::{InteropOperations, RegistryAdapters, WithRegistered};
use isthmus_hub_api::model::{NetworkInfo, PlatformInfo};
use isthmus_hub_api::{
    ApiKeyConfig, ApiState, BackendError, Backends, Directory, EventBus, KeyRing, NoMessages, Role,
    SledApiStore,
};

use isthmus_interop::{
    AdapterExecutor, AdapterLookup, AdapterRegistry, Connect, ConnectError, Driver, DriverConfig,
    ExecError, HubLedger, InteropService, NetworkDirectory, RegistryHooks, SledJournal, Watcher,
};
use isthmus_lock_contracts::{
    Address, AssetId, Decision, HtlcConfig, HubRecord, InstanceId, TwoPhaseConfig, TxId,
};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const PROVIDER: &str = "provider-key-1";
pub const CUSTOMER: &str = "customer-key-1";

/// The keys the mock served by `adapter-host` trusts and funds.
pub fn attester() -> Keypair {
    Keypair::dev("mock-hub-attestation")
}
pub fn alice() -> String {
    Keypair::dev("mock-alice").id().to_string()
}
pub fn bob() -> String {
    Keypair::dev("mock-bob").id().to_string()
}

struct Alpha;

impl NetworkDirectory for Alpha {
    fn resolve(&self, name: &str) -> Option<NetworkId> {
        (name == "alpha").then_some(NetworkId(1))
    }
    fn name_of(&self, id: NetworkId) -> String {
        format!("network-{id}")
    }
}

#[async_trait]
impl Directory for Alpha {
    async fn platforms(&self) -> Result<Vec<PlatformInfo>, BackendError> {
        Ok(vec![PlatformInfo {
            name: "alpha".into(),
            kind: "native".into(),
            healthy: true,
            capabilities: Value::Null,
        }])
    }
    async fn networks(&self) -> Result<Vec<NetworkInfo>, BackendError> {
        Ok(vec![])
    }
}

#[derive(Default)]
struct MemLedger {
    records: Mutex<HashMap<(InstanceId, Decision), HubRecord>>,
}

#[async_trait]
impl HubLedger for MemLedger {
    async fn record_decision(&self, i: InstanceId, d: Decision) -> Result<HubRecord, ExecError> {
        let mut r = self.records.lock().unwrap();
        let n = r.len() as u64 + 1;
        Ok(r.entry((i, d))
            .or_insert_with(|| HubRecord {
                height: n,
                tx: TxId(format!("hub-{i}-{d:?}")),
            })
            .clone())
    }
}

/// How the hub attaches a registered adapter: `RemoteAdapter` over Noise-TCP.
pub fn remote_connect() -> Connect {
    Arc::new(|rec| {
        Box::pin(async move {
            let endpoint: SocketAddr = rec
                .endpoint
                .parse()
                .map_err(|e| ConnectError::Refused(format!("endpoint `{}`: {e}", rec.endpoint)))?;
            let identity: NodeId = rec
                .identity
                .parse()
                .map_err(|e| ConnectError::Refused(format!("identity `{}`: {e}", rec.identity)))?;
            let mut cfg = RemoteConfig::new(rec.network, &rec.name, endpoint, identity);
            cfg.connect_timeout = Duration::from_secs(3);
            cfg.call_timeout = Duration::from_secs(5);
            cfg.backoff_min = Duration::from_millis(20);
            cfg.backoff_max = Duration::from_millis(200);
            match RemoteAdapter::connect(cfg, Keypair::dev("test-hub")).await {
                Ok(a) => Ok(Arc::new(a) as Arc<dyn Adapter>),
                Err(e @ RemoteError::Unreachable { .. }) => {
                    Err(ConnectError::Unreachable(e.to_string()))
                }
                Err(e) => Err(ConnectError::Refused(e.to_string())),
            }
        })
    })
}

pub struct Hub {
    pub url: String,
    pub alpha: Arc<MockAdapter>,
    pub registry: Arc<AdapterRegistry>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    http: reqwest::Client,
}

pub async fn boot(dir: &std::path::Path) -> Hub {
    let db = sled::open(dir).unwrap();
    let alpha = Arc::new(MockAdapter::new(MockConfig::new(
        1,
        Finality::Instant,
        vec![attester().id()],
    )));
    for who in [alice(), bob()] {
        alpha.fund(&Address(who), &AssetId("native".into()), 1_000_000);
    }
    let clock = Arc::new(AtomicU64::new(1_000));
    let now = {
        let c = clock.clone();
        Arc::new(move || c.load(Ordering::SeqCst)) as Arc<dyn Fn() -> u64 + Send + Sync>
    };
    let journal = Arc::new(SledJournal::open(db.clone()).unwrap());
    let driver = Driver::new(
        journal,
        Arc::new(()),
        DriverConfig {
            sweep_interval: Duration::from_millis(50),
            retry_base: Duration::from_millis(20),
            retry_max: Duration::from_millis(200),
            ..DriverConfig::default()
        },
    );
    let mut fixed: HashMap<NetworkId, Arc<dyn Adapter>> = HashMap::new();
    fixed.insert(NetworkId(1), alpha.clone());
    let registry = AdapterRegistry::open(
        fixed,
        db.clone(),
        remote_connect(),
        Some(RegistryHooks {
            driver: driver.clone(),
            db: db.clone(),
            clock: now.clone(),
        }),
        Duration::from_millis(100),
    )
    .unwrap();
    let exec = Arc::new(AdapterExecutor::new(
        registry.clone() as Arc<dyn AdapterLookup>,
        Arc::new(MemLedger::default()),
        vec![attester()],
    ));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let until_stop = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut tasks = Vec::new();
    {
        let (d, now, s) = (driver.clone(), now.clone(), until_stop.clone());
        tasks.push(tokio::spawn(async move {
            d.run(exec, move || now(), s()).await.unwrap();
        }));
    }
    let w = Watcher {
        network: NetworkId(1),
        adapter: alpha.clone(),
        driver: driver.clone(),
        db: db.clone(),
        clock: now.clone(),
        page: 100,
        idle_poll: Duration::from_millis(10),
    };
    tasks.push(tokio::spawn(w.run(until_stop())));
    let interop = InteropService {
        driver: driver.clone(),
        two_phase: TwoPhaseConfig {
            release_window: 600,
        },
        htlc: HtlcConfig { delta: 60 },
        clock: now,
        wallet_secret: Arc::new(zeroize::Zeroizing::new([3u8; 32])),
    };
    let backends = Backends {
        directory: Arc::new(WithRegistered {
            configured: Arc::new(Alpha),
            registry: registry.clone(),
        }),
        operations: Arc::new(InteropOperations {
            interop: Arc::new(interop),
            directory: registry.directory(Arc::new(Alpha)),
        }),
        messages: Arc::new(NoMessages),
        adapters: Arc::new(RegistryAdapters {
            registry: registry.clone(),
        }),
    };
    let keys = KeyRing::new(&[
        ApiKeyConfig::from_plaintext("ops", Role::Provider, PROVIDER),
        ApiKeyConfig::from_plaintext("dapp", Role::Customer, CUSTOMER),
    ])
    .unwrap();
    let bus = EventBus::new(Arc::new(SledApiStore::open(db.clone()).unwrap()));
    let state = ApiState::new(backends, keys, bus);
    let (addr, server) =
        isthmus_hub_api::serve("127.0.0.1:0".parse().unwrap(), state, until_stop()).unwrap();
    tasks.push(tokio::spawn(server));
    Hub {
        url: format!("http://{addr}"),
        alpha,
        registry,
        stop,
        tasks,
        http: reqwest::Client::new(),
    }
}

impl Hub {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.await.unwrap();
        }
        self.registry.shutdown().await;
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url))
            .bearer_auth(key);
        if let Some(b) = body {
            req = req
                .header("idempotency-key", format!("k-{}", rand::random::<u64>()))
                .json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let v = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, v)
    }

    /// Poll an operation until `pred` holds.
    pub async fn wait_op(&self, path: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (st, v) = self.call("GET", path, CUSTOMER, None).await;
            assert_eq!(st, 200, "{v}");
            if pred(&v) {
                return v;
            }
            assert!(tokio::time::Instant::now() < deadline, "last status {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
