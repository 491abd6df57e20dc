//! One hub in a test: a Driver journalling into sled, an AdapterExecutor over a litecoind
//! adapter and an anvil adapter, a Watcher per network, the hub's clock, block producers for
//! both chains, and the warp API served on 127.0.0.1:0. Everything stops when dropped.

use crate::ltc_node::{self, LtcFixture};
use async_trait::async_trait;
use isthmus_adapter_api::Adapter;
use isthmus_adapter_evm::anvil::{AnvilFixture, FixtureOptions};
use isthmus_core::NetworkId;
use isthmus_hub::service::{ApiNotifier, Directory, InteropOperations};
use isthmus_hub_api::model::{NetworkInfo, PlatformInfo};
use isthmus_hub_api::{
    ApiKeyConfig, ApiState, BackendError, Backends, Directory as ApiDirectory, EventBus, KeyRing,
    Role, SledApiStore,
};
use isthmus_interop::{
    AdapterExecutor, Driver, DriverConfig, ExecError, HubLedger, InteropService, NetworkDirectory,
    SledJournal, StoredInstance, Watcher,
};
use isthmus_lock_contracts::{Decision, HtlcConfig, HubRecord, InstanceId, TwoPhaseConfig};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::JoinHandle;

pub const LTC: NetworkId = ltc_node::NETWORK;
pub const ETH: NetworkId = NetworkId(31337);
/// The hub's Δ between the two HTLC timelocks, seconds.
pub const DELTA: u64 = 10;
/// Block intervals of the two chains' producers.
pub const LTC_BLOCK: Duration = Duration::from_millis(1_000);
pub const ETH_BLOCK: Duration = Duration::from_millis(1_000);
pub const LTC_CONFIRMATIONS: u32 = 2;
pub const ETH_CONFIRMATIONS: u32 = 2;
pub const API_KEY: &str = "e2e-dapp-key";

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The networks the hub links, by name.
pub struct Nets(pub Vec<(&'static str, NetworkId)>);

impl NetworkDirectory for Nets {
    fn resolve(&self, name: &str) -> Option<NetworkId> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, id)| *id)
    }
    fn name_of(&self, id: NetworkId) -> String {
        match self.0.iter().find(|(_, i)| *i == id) {
            Some((name, _)) => (*name).to_owned(),
            None => format!("network-{}", id.0),
        }
    }
}

#[async_trait]
impl ApiDirectory for Nets {
    async fn platforms(&self) -> Result<Vec<PlatformInfo>, BackendError> {
        Ok(vec![])
    }
    async fn networks(&self) -> Result<Vec<NetworkInfo>, BackendError> {
        Ok(vec![])
    }
}

/// HTLC swaps settle on hashlocks and timelocks alone: no hub decision is ever recorded, and
/// a request for one is a fault the test must see.
struct NoDecisions;

#[async_trait]
impl HubLedger for NoDecisions {
    async fn record_decision(
        &self,
        instance: InstanceId,
        decision: Decision,
    ) -> Result<HubRecord, ExecError> {
        Err(ExecError::Refused(format!(
            "htlc-only hub asked to record {decision:?} for {instance}"
        )))
    }
}

pub struct Hub {
    /// Owned (not shared with the block producer), so a test can kill and restart the node.
    pub ltc: LtcFixture,
    pub eth: Arc<AnvilFixture>,
    pub driver: Arc<Driver>,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    /// When each block producer's block was mined, by network.
    pub blocks: Arc<std::sync::Mutex<Vec<(NetworkId, Instant)>>>,
    /// The hashes of the litecoind blocks the producer mined, with when.
    pub ltc_blocks: Arc<std::sync::Mutex<Vec<(Instant, String)>>>,
    /// While set, the litecoind block producer mines nothing (the test mines by hand, or
    /// the node is down).
    pub ltc_paused: Arc<AtomicBool>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// RUST_LOG=debug shows the driver's, watchers' and adapters' decisions per test.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Run `f` every `period` until `stop` is set.
pub fn every<F, Fut>(
    period: Duration,
    stop: &tokio::sync::watch::Sender<bool>,
    f: F,
) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let mut rx = stop.subscribe();
    tokio::spawn(async move {
        let stopped = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                _ = tokio::time::sleep(period) => f().await,
            }
        }
    })
}

/// The hub's moving parts over a set of adapters, without block producers: the driver
/// journalling into `db`, a watcher per network, the hub's clock, and the API on
/// 127.0.0.1:0 (customer key [`API_KEY`]). Tests add their chains' block producers to
/// `tasks` under `stop`.
pub struct HubCore {
    pub driver: Arc<Driver>,
    pub addr: SocketAddr,
    pub stop: tokio::sync::watch::Sender<bool>,
    pub tasks: Vec<JoinHandle<()>>,
}

impl HubCore {
    /// `directory` names the networks and lists them for the API.
    pub fn start<D: NetworkDirectory + ApiDirectory>(
        adapters: &HashMap<NetworkId, Arc<dyn Adapter>>,
        exec: Arc<AdapterExecutor>,
        directory: Arc<D>,
        db: &sled::Db,
    ) -> HubCore {
        Self::start_observing(adapters, exec, directory, db, &[])
    }

    /// [`start`](Self::start), with no watcher for the `relayed` networks: their lock
    /// events reach the hub only from relayers (through an evidence ingress the test adds).
    pub fn start_observing<D: NetworkDirectory + ApiDirectory>(
        adapters: &HashMap<NetworkId, Arc<dyn Adapter>>,
        exec: Arc<AdapterExecutor>,
        directory: Arc<D>,
        db: &sled::Db,
        relayed: &[NetworkId],
    ) -> HubCore {
        let listing: Arc<dyn ApiDirectory> = directory.clone();
        let directory: Arc<dyn NetworkDirectory> = directory;
        let bus = EventBus::new(Arc::new(SledApiStore::open(db.clone()).expect("api store")));
        let driver = Driver::new(
            Arc::new(SledJournal::open(db.clone()).expect("journal")),
            Arc::new(ApiNotifier {
                bus: bus.clone(),
                directory: directory.clone(),
            }),
            DriverConfig {
                retry_base: Duration::from_millis(100),
                retry_max: Duration::from_millis(1_000),
                sweep_interval: Duration::from_millis(300),
                ..DriverConfig::default()
            },
        );
        let (stop, _) = tokio::sync::watch::channel(false);
        let until_stop = {
            let stop = stop.clone();
            move || {
                let mut rx = stop.subscribe();
                async move {
                    let _ = rx.wait_for(|s| *s).await;
                }
            }
        };
        let mut tasks = Vec::new();
        let d = driver.clone();
        let s = until_stop.clone();
        tasks.push(tokio::spawn(async move {
            d.run(exec, now_secs, s()).await.expect("driver runs");
        }));
        for (net, adapter) in adapters.iter().filter(|(n, _)| !relayed.contains(n)) {
            let w = Watcher {
                network: *net,
                adapter: adapter.clone(),
                driver: driver.clone(),
                db: db.clone(),
                clock: Arc::new(now_secs),
                page: 100,
                idle_poll: Duration::from_millis(50),
            };
            let s = until_stop.clone();
            tasks.push(tokio::spawn(async move { w.run(s()).await }));
        }
        let d = driver.clone();
        tasks.push(every(Duration::from_millis(200), &stop, move || {
            let d = d.clone();
            async move {
                let _ = d.tick_all(now_secs()).await;
            }
        }));
        let operations = Arc::new(InteropOperations {
            interop: Arc::new(InteropService {
                driver: driver.clone(),
                two_phase: TwoPhaseConfig { release_window: 30 },
                htlc: HtlcConfig { delta: DELTA },
                clock: Arc::new(now_secs),
                wallet_secret: Arc::new(zeroize::Zeroizing::new([0x5a; 32])),
            }),
            directory,
        });
        let keys = KeyRing::new(&[ApiKeyConfig::from_plaintext(
            "dapp",
            Role::Customer,
            API_KEY,
        )])
        .expect("key ring");
        let state = ApiState::new(Backends::new(listing, operations), keys, bus);
        let (addr, server) = isthmus_hub_api::serve(
            "127.0.0.1:0".parse().expect("loopback"),
            state,
            until_stop(),
        )
        .expect("api serves");
        tasks.push(tokio::spawn(server));
        HubCore {
            driver,
            addr,
            stop,
            tasks,
        }
    }
}

impl Hub {
    pub async fn boot() -> Hub {
        init_tracing();
        let (ltc, eth) = tokio::join!(
            LtcFixture::with_confirmations(LTC_CONFIRMATIONS),
            AnvilFixture::start(FixtureOptions {
                network: ETH,
                confirmations: ETH_CONFIRMATIONS,
                ..FixtureOptions::default()
            })
        );
        let eth = Arc::new(eth.expect("anvil fixture"));
        let mut adapters: HashMap<NetworkId, Arc<dyn Adapter>> = HashMap::new();
        adapters.insert(LTC, ltc.adapter.clone());
        adapters.insert(ETH, eth.adapter.clone());
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path()).expect("sled");
        let exec = Arc::new(AdapterExecutor::new(
            Arc::new(adapters.clone()),
            Arc::new(NoDecisions),
            vec![ltc.attester.clone()],
        ));
        let HubCore {
            driver,
            addr,
            stop,
            mut tasks,
        } = HubCore::start(
            &adapters,
            exec,
            // The hub node's own directory: `GET /v1/networks` reports each node up or down.
            Arc::new(Directory {
                nets: vec![
                    (
                        "litecoin".to_owned(),
                        ltc.adapter.clone() as Arc<dyn Adapter>,
                    ),
                    ("anvil".to_owned(), eth.adapter.clone() as Arc<dyn Adapter>),
                ],
            }),
            &db,
        );
        // Block producers: both chains mine on demand only, so the test sets the pace.
        let blocks = Arc::new(std::sync::Mutex::new(Vec::new()));
        let ltc_blocks = Arc::new(std::sync::Mutex::new(Vec::new()));
        let ltc_paused = Arc::new(AtomicBool::new(false));
        // Over its own RPC client: a node the test has killed fails a call, not the producer.
        let (rpc, miner) = (ltc.node.rpc.clone(), ltc.miner.clone());
        let (log, hashes, paused) = (blocks.clone(), ltc_blocks.clone(), ltc_paused.clone());
        tasks.push(every(LTC_BLOCK, &stop, move || {
            let (rpc, miner) = (rpc.clone(), miner.clone());
            let (log, hashes, paused) = (log.clone(), hashes.clone(), paused.clone());
            async move {
                if paused.load(Ordering::SeqCst) {
                    return;
                }
                let mined: Vec<String> = rpc
                    .call("generatetoaddress", vec![json!(1), json!(miner)])
                    .await
                    .unwrap_or_default();
                if let [hash] = &mined[..] {
                    let at = Instant::now();
                    log.lock().expect("block log").push((LTC, at));
                    hashes.lock().expect("block log").push((at, hash.clone()));
                }
            }
        }));
        let (e, log) = (eth.clone(), blocks.clone());
        tasks.push(every(ETH_BLOCK, &stop, move || {
            let (e, log) = (e.clone(), log.clone());
            async move {
                if e.raw("evm_mine", serde_json::json!([])).await.is_ok() {
                    log.lock().expect("block log").push((ETH, Instant::now()));
                }
            }
        }));
        Hub {
            ltc,
            eth,
            driver,
            addr,
            http: reqwest::Client::new(),
            blocks,
            ltc_blocks,
            ltc_paused,
            stop,
            tasks,
            _dir: dir,
        }
    }

    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            t.await.expect("hub task ends cleanly");
        }
    }

    /// `POST /v1/swaps`; the status code and body.
    pub async fn post_swap(&self, key: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("http://{}/v1/swaps", self.addr))
            .bearer_auth(API_KEY)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .expect("post swap");
        let code = resp.status().as_u16();
        (code, resp.json().await.expect("json body"))
    }

    /// `POST /v1/swaps`, which must be accepted; the new swap's id and the answer.
    pub async fn create_swap(&self, key: &str, body: &Value) -> (String, Value) {
        let (code, created) = self.post_swap(key, body).await;
        assert_eq!(code, 202, "{created}");
        let id = created["id"].as_str().expect("id").to_owned();
        (id, created)
    }

    /// `GET /v1/{path}`, which must answer 200; its JSON body.
    async fn get_ok(&self, path: &str) -> Value {
        let resp = self
            .http
            .get(format!("http://{}/v1/{path}", self.addr))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get {path}: {e}"));
        assert_eq!(resp.status().as_u16(), 200, "get {path}");
        resp.json().await.expect("json body")
    }

    /// `GET /v1/swaps/{id}`, long-polling up to `wait` seconds for a change.
    pub async fn get_swap(&self, id: &str, wait: u64) -> Value {
        self.get_ok(&format!("swaps/{id}?wait={wait}")).await
    }

    /// `GET /v1/networks`: each linked network, `up` or `down` (with a reason).
    pub async fn networks(&self) -> Value {
        self.get_ok("networks").await
    }

    /// Poll the API every 20 ms until `done` holds for the swap; fail with its last status
    /// once `within` has passed.
    pub async fn until(&self, id: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.get_swap(id, 0).await;
            if done(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "swap {id} stuck after {within:?} at {v}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The newest block `net`'s producer mined at or before `t`.
    pub fn last_block_before(&self, net: NetworkId, t: Instant) -> Option<Instant> {
        self.blocks
            .lock()
            .expect("block log")
            .iter()
            .filter(|(n, at)| *n == net && *at <= t)
            .map(|(_, at)| *at)
            .max()
    }

    pub fn instance(&self, api_id: &str) -> StoredInstance {
        self.driver
            .journal()
            .get_by_api_id(api_id)
            .expect("journal read")
            .expect("instance exists")
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        // On a panic the tasks are told to stop; the fixtures kill their nodes by pid.
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}
