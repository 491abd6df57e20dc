//! One hub in a test, assembled by the hub node's `HubBuilder` (driver journalling into
//! sled, an executor over a litecoind adapter and an anvil adapter, a watcher per network,
//! the hub's clock, the API on 127.0.0.1:0), plus block producers for both chains.
//! Everything stops when dropped.

use crate::ltc_node::{self, LtcFixture};
use isthmus_adapter_evm::anvil::{AnvilFixture, FixtureOptions};
use isthmus_core::NetworkId;
use isthmus_hub::builder::HubBuilder;
use isthmus_hub_api::{ApiKeyConfig, ApiSettings, KeyRing, RateLimit, Role};
use isthmus_interop::{Driver, DriverConfig, StoredInstance};
use isthmus_lock_contracts::{HtlcConfig, TwoPhaseConfig};
use serde_json::{json, Value};
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
    /// The hub itself (driver, watchers, clock, API).
    core: isthmus_hub::builder::Hub,
    /// The block producers.
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

/// The hub these tests run over `db` (the adapters, ledger and executor are the test's):
/// quick driver retries, a sweep every 300 ms, the hub's clock every 200 ms, watchers
/// polling every 50 ms, and the API on 127.0.0.1:0 (customer key [`API_KEY`]).
pub fn hub_builder(db: &sled::Db) -> HubBuilder {
    HubBuilder::new(db.clone())
        .driver_config(DriverConfig {
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_millis(1_000),
            sweep_interval: Duration::from_millis(300),
            ..DriverConfig::default()
        })
        .clock(Arc::new(now_secs))
        .clock_tick(Some(Duration::from_millis(200)))
        .watchers(Duration::from_millis(50), 100)
        .two_phase(TwoPhaseConfig { release_window: 30 })
        .htlc(HtlcConfig { delta: DELTA })
        .wallet_secret(zeroize::Zeroizing::new([0x5a; 32]))
        .api(
            "127.0.0.1:0".parse().expect("loopback"),
            KeyRing::new(&[ApiKeyConfig::from_plaintext(
                "dapp",
                Role::Customer,
                API_KEY,
            )])
            .expect("key ring"),
        )
        // These tests poll many operations at once on one key, faster than a client
        // should; the limit itself is tested in hub/api.
        .api_settings(ApiSettings {
            rate_limit: RateLimit::OFF,
            ..ApiSettings::default()
        })
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
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path()).expect("sled");
        // HTLC swaps settle on hashlocks and timelocks alone: the hub has no ledger, so a
        // request for a decision is refused (a fault the test must see).
        let core = hub_builder(&db)
            // The hub node's own directory: `GET /v1/networks` reports each node up or down.
            .adapter("litecoin", ltc.adapter.clone())
            .adapter("anvil", eth.adapter.clone())
            .attesters(vec![ltc.attester.clone()])
            .start()
            .expect("hub starts");
        let (driver, addr) = (core.driver().clone(), core.api_addr().expect("api served"));
        let (stop, _) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
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
            core,
            stop,
            tasks,
            _dir: dir,
        }
    }

    pub async fn shutdown(mut self) {
        self.core.stop().await.expect("the hub stopped cleanly");
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
        self.core.stop_token().cancel();
        for t in &self.tasks {
            t.abort();
        }
    }
}
