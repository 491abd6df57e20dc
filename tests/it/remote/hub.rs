//! A hub wired as in production (API → the hub's resource services → interop service and
//! registry → driver → executor over the registry; watchers), with one configured
//! in-process mock network `alpha` and adapters registered over HTTP.

use async_trait::async_trait;
use isthmus_adapter_api::{Adapter, Finality};
use isthmus_adapter_remote::{RemoteAdapter, RemoteConfig, RemoteError};
use isthmus_adapter_testkit::mock::{MockAdapter, MockConfig};
use isthmus_core::{Keypair, NetworkId, NodeId};
use isthmus_hub::builder::HubBuilder;
use isthmus_hub_api::model::{NetworkInfo, PlatformInfo};
use isthmus_hub_api::{ApiKeyConfig, BackendError, Directory, KeyRing, Role};
use isthmus_interop::{
    AdapterRegistry, Connect, ConnectError, DriverConfig, ExecError, HubLedger, NetworkDirectory,
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
    hub: isthmus_hub::builder::Hub,
    http: reqwest::Client,
}

/// A hub assembled by the hub node's `HubBuilder` over the mock `alpha`, with a registry
/// for adapters registered over HTTP.
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
    let keys = KeyRing::new(&[
        ApiKeyConfig::from_plaintext("ops", Role::Provider, PROVIDER),
        ApiKeyConfig::from_plaintext("dapp", Role::Customer, CUSTOMER),
    ])
    .unwrap();
    let hub = HubBuilder::new(db)
        .adapter("alpha", alpha.clone())
        .directory(Arc::new(Alpha))
        .ledger(Arc::new(MemLedger::default()))
        .attesters(vec![attester()])
        .registry(remote_connect(), Duration::from_millis(100))
        .driver_config(DriverConfig {
            sweep_interval: Duration::from_millis(50),
            retry_base: Duration::from_millis(20),
            retry_max: Duration::from_millis(200),
            ..DriverConfig::default()
        })
        .two_phase(TwoPhaseConfig {
            release_window: 600,
        })
        .htlc(HtlcConfig { delta: 60 })
        .wallet_secret(zeroize::Zeroizing::new([3u8; 32]))
        .clock(now)
        .clock_tick(None)
        .watchers(Duration::from_millis(10), 100)
        .api("127.0.0.1:0".parse().unwrap(), keys)
        .start()
        .unwrap();
    Hub {
        url: format!("http://{}", hub.api_addr().unwrap()),
        alpha,
        registry: hub.registry().unwrap().clone(),
        hub,
        http: reqwest::Client::new(),
    }
}

impl Hub {
    pub async fn shutdown(self) {
        self.hub.shutdown().await.expect("the hub stopped cleanly");
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
