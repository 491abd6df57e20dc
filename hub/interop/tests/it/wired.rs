//! The whole interop core wired as in the hub: API backend → driver → adapter executor,
//! and watchers feeding chain events back, over two mock platforms (one with instant
//! finality, one probabilistic with confirmations) that verify hub attestations.

use super::*;
use isthmus_adapter_api::mock::{MockAdapter, MockConfig};
use isthmus_adapter_api::{Adapter, Finality};
use isthmus_core::Keypair;
use isthmus_hub_api::model::{
    CreateSwap, CreateTransfer, LegSpec as ApiLeg, LockBy, NetworkInfo, PlatformInfo, SwapSide,
};
use isthmus_hub_api::{BackendError, HubBackend, OpId, Principal, Role};
use isthmus_interop::{AdapterExecutor, HubLedger, InteropBackend, NetworkDirectory, Watcher};

struct Dir;

#[async_trait]
impl NetworkDirectory for Dir {
    fn resolve(&self, name: &str) -> Option<NetworkId> {
        match name {
            "alpha" => Some(NetworkId(1)),
            "beta" => Some(NetworkId(2)),
            _ => None,
        }
    }
    fn name_of(&self, id: NetworkId) -> String {
        if id.0 == 1 {
            "alpha".into()
        } else {
            "beta".into()
        }
    }
    async fn platforms(&self) -> Result<Vec<PlatformInfo>, BackendError> {
        Ok(vec![])
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
    async fn record_decision(
        &self,
        instance: InstanceId,
        decision: Decision,
    ) -> Result<HubRecord, ExecError> {
        let mut r = self.records.lock().unwrap();
        let n = r.len() as u64 + 1;
        Ok(r.entry((instance, decision))
            .or_insert_with(|| HubRecord {
                height: n,
                tx: TxId(format!("hub-{instance}-{decision:?}")),
            })
            .clone())
    }
}

struct Hub {
    backend: InteropBackend,
    driver: Arc<Driver>,
    alpha: Arc<MockAdapter>,
    beta: Arc<MockAdapter>,
    clock: Arc<AtomicU64>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

fn boot_hub() -> Hub {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let attester = Keypair::dev("hub-attester");
    let alpha = Arc::new(MockAdapter::new(MockConfig::new(
        1,
        Finality::Instant,
        vec![attester.id()],
    )));
    let beta = Arc::new(MockAdapter::new(MockConfig::new(
        2,
        Finality::Probabilistic { confirmations: 2 },
        vec![attester.id()],
    )));
    for (m, who) in [(&alpha, "alice"), (&beta, "bob")] {
        m.fund(&Address(who.into()), &AssetId("native".into()), 1_000);
    }
    let clock = Arc::new(AtomicU64::new(1_000));
    let journal = Arc::new(SledJournal::open(db.clone()).unwrap());
    let driver = Driver::new(journal, Arc::new(()), fast());
    let mut adapters: HashMap<NetworkId, Arc<dyn Adapter>> = HashMap::new();
    adapters.insert(NetworkId(1), alpha.clone());
    adapters.insert(NetworkId(2), beta.clone());
    let exec = Arc::new(AdapterExecutor::new(
        Arc::new(adapters),
        Arc::new(MemLedger::default()),
        vec![attester],
    ));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let until_stop = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut tasks = Vec::new();
    let c = clock.clone();
    let d = driver.clone();
    let s = until_stop.clone();
    tasks.push(tokio::spawn(async move {
        d.run(exec, move || c.load(Ordering::SeqCst), s())
            .await
            .unwrap();
    }));
    for (net, adapter) in [
        (1u64, alpha.clone() as Arc<dyn Adapter>),
        (2, beta.clone() as Arc<dyn Adapter>),
    ] {
        let c = clock.clone();
        let w = Watcher {
            network: NetworkId(net),
            adapter,
            driver: driver.clone(),
            db: db.clone(),
            clock: Arc::new(move || c.load(Ordering::SeqCst)),
            page: 100,
            idle_poll: Duration::from_millis(10),
        };
        let s = until_stop.clone();
        tasks.push(tokio::spawn(async move { w.run(s()).await }));
    }
    // beta produces blocks on its own so confirmations accrue
    let b = beta.clone();
    let s = until_stop.clone();
    tasks.push(tokio::spawn(async move {
        let stop = s();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(Duration::from_millis(15)) => b.mine(1),
            }
        }
    }));
    let c = clock.clone();
    let backend = InteropBackend {
        driver: driver.clone(),
        directory: Arc::new(Dir),
        two_phase: TwoPhaseConfig {
            release_window: 600,
        },
        htlc: HtlcConfig { delta: 60 },
        clock: Arc::new(move || c.load(Ordering::SeqCst)),
        wallet_secret: Arc::new(zeroize::Zeroizing::new([3u8; 32])),
    };
    Hub {
        backend,
        driver,
        alpha,
        beta,
        clock,
        stop,
        tasks,
        _dir: dir,
    }
}

impl Hub {
    async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.await.unwrap();
        }
    }
    async fn bal(&self, net: &MockAdapter, who: &str) -> u128 {
        net.balance(&Address(who.into()), &AssetId("native".into()))
            .await
            .unwrap()
            .0
    }
}

fn customer() -> Principal {
    Principal {
        name: "dapp".into(),
        role: Role::Customer,
    }
}

fn api_leg(network: &str, amount: &str, from: &str, to: &str, lock_by: LockBy) -> ApiLeg {
    ApiLeg {
        network: network.into(),
        asset: "native".into(),
        amount: amount.into(),
        from: from.into(),
        to: to.into(),
        lock_by,
    }
}

async fn wait_done(hub: &Hub, api_id: &str) -> StoredInstance {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let i = hub.driver.journal().get_by_api_id(api_id).unwrap().unwrap();
        if i.contract.status().terminal {
            return i;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck: {:?}",
            i.contract.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn two_phase_transfer_alpha_to_beta_completes_with_balances() {
    let hub = boot_hub();
    let st = hub
        .backend
        .create_transfer(
            &OpId("tr_wired_1".into()),
            &customer(),
            CreateTransfer {
                source: api_leg("alpha", "100", "alice", "bob", LockBy::HubWallet),
                counter: api_leg("beta", "40", "bob", "alice", LockBy::HubWallet),
                timeout_secs: 300,
            },
        )
        .await
        .unwrap();
    let done = wait_done(&hub, &st.id).await;
    assert_eq!(done.contract.status().phase, Phase::Released);
    assert_eq!(hub.bal(&hub.alpha, "alice").await, 900);
    assert_eq!(hub.bal(&hub.alpha, "bob").await, 100);
    assert_eq!(hub.bal(&hub.beta, "bob").await, 960);
    assert_eq!(hub.bal(&hub.beta, "alice").await, 40);
    hub.shutdown().await;
}

#[tokio::test]
async fn counterparty_never_locks_both_sides_refunded() {
    let hub = boot_hub();
    let st = hub
        .backend
        .create_transfer(
            &OpId("tr_wired_2".into()),
            &customer(),
            CreateTransfer {
                source: api_leg("alpha", "100", "alice", "bob", LockBy::HubWallet),
                // bob must lock himself, and never does
                counter: api_leg("beta", "40", "bob", "alice", LockBy::Owner),
                timeout_secs: 300,
            },
        )
        .await
        .unwrap();
    // alice's lock goes in and becomes final
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while hub.bal(&hub.alpha, "alice").await != 900 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "source never locked"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // time passes beyond the deadline
    hub.clock.store(1_000 + 301, Ordering::SeqCst);
    hub.driver.tick_all(1_301).await.unwrap();
    let done = wait_done(&hub, &st.id).await;
    assert_eq!(done.contract.status().phase, Phase::Refunded);
    assert_eq!(hub.bal(&hub.alpha, "alice").await, 1_000);
    assert_eq!(hub.bal(&hub.alpha, "bob").await, 0);
    assert_eq!(hub.bal(&hub.beta, "bob").await, 1_000);
    hub.shutdown().await;
}

#[tokio::test]
async fn htlc_swap_with_hub_made_secret_completes() {
    let hub = boot_hub();
    let st = hub
        .backend
        .create_swap(
            &OpId("sw_wired_1".into()),
            &customer(),
            CreateSwap {
                initiator: SwapSide {
                    network: "alpha".into(),
                    asset: "native".into(),
                    amount: "5".into(),
                    from: "alice".into(),
                    to: "bob".into(),
                    lock_by: LockBy::HubWallet,
                },
                participant: SwapSide {
                    network: "beta".into(),
                    asset: "native".into(),
                    amount: "7".into(),
                    from: "bob".into(),
                    to: "alice".into(),
                    lock_by: LockBy::HubWallet,
                },
                hashlock: None,
                initiator_timeout_secs: 400,
                participant_timeout_secs: 200,
            },
        )
        .await
        .unwrap();
    let done = wait_done(&hub, &st.id).await;
    assert_eq!(
        done.contract.status().phase,
        Phase::Completed,
        "{:?}",
        done.contract.status()
    );
    assert_eq!(hub.bal(&hub.alpha, "bob").await, 5);
    assert_eq!(hub.bal(&hub.beta, "alice").await, 7);
    assert_eq!(hub.bal(&hub.alpha, "alice").await, 995);
    assert_eq!(hub.bal(&hub.beta, "bob").await, 993);
    hub.shutdown().await;
}
