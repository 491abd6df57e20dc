//! The whole interop core wired as in the hub: API operations → interop service → driver →
//! adapter executor,
//! and watchers feeding chain events back, over two mock platforms (one with instant
//! finality, one probabilistic with confirmations) that verify hub attestations.

use super::refusal::{Refusals, Refusing};
use super::*;
use isthmus_adapter_api::{Adapter, Finality};
use isthmus_adapter_testkit::mock::{MockAdapter, MockConfig};
use isthmus_core::Keypair;
use isthmus_hub::builder::HubBuilder;
use isthmus_hub::service::InteropOperations;
use isthmus_hub_api::model::{
    CreateSwap, CreateTransfer, LegSpec as ApiLeg, LockBy, NetworkInfo, PlatformInfo, SwapSide,
};
use isthmus_hub_api::{BackendError, Directory, EventBus, OpId, Operations, Principal, Role};
use isthmus_interop::{HubLedger, NetworkDirectory, Watcher};

pub(super) struct Dir;

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
}

#[async_trait]
impl Directory for Dir {
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

pub(super) struct Hub {
    pub(super) backend: Arc<InteropOperations>,
    pub(super) driver: Arc<Driver>,
    pub(super) alpha: Arc<MockAdapter>,
    pub(super) beta: Arc<MockAdapter>,
    /// Makes beta's adapter refuse releases while set (the hub reaches beta through it).
    pub(super) beta_refusals: Arc<Refusals>,
    /// Where the API events of every durable change (and diagnosis) are published.
    pub(super) bus: EventBus,
    pub(super) clock: Arc<AtomicU64>,
    db: sled::Db,
    hub: isthmus_hub::builder::Hub,
    _dir: tempfile::TempDir,
}

pub(super) fn boot_hub() -> Hub {
    boot_hub_with(true, true)
}

/// `beta_mines`: beta produces blocks on its own; `watch_beta`: a watcher follows beta's
/// events (without one the hub learns about beta only from its sweep's re-reads).
pub(super) fn boot_hub_with(beta_mines: bool, watch_beta: bool) -> Hub {
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
    let beta_refusals = Arc::new(Refusals::default());
    let beta_seen: Arc<dyn Adapter> = Arc::new(Refusing {
        inner: beta.clone(),
        refusals: beta_refusals.clone(),
    });
    let c = clock.clone();
    let mut builder = HubBuilder::new(db.clone())
        .adapter("alpha", alpha.clone())
        .adapter("beta", beta_seen)
        .directory(Arc::new(Dir))
        .ledger(Arc::new(MemLedger::default()))
        .attesters(vec![attester])
        .driver_config(fast())
        .two_phase(TwoPhaseConfig {
            release_window: 600,
        })
        .htlc(HtlcConfig { delta: 60 })
        .wallet_secret(zeroize::Zeroizing::new([3u8; 32]))
        .clock(Arc::new(move || c.load(Ordering::SeqCst)))
        // the tests move the clock and tick by hand
        .clock_tick(None)
        .watchers(Duration::from_millis(10), 100);
    if !watch_beta {
        builder = builder.unwatched(NetworkId(2));
    }
    let mut hub = builder.start().unwrap();
    // beta produces blocks on its own so confirmations accrue
    if beta_mines {
        let (b, stop) = (beta.clone(), hub.stop_token());
        hub.spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(15)) => b.mine(1),
                }
            }
        });
    }
    Hub {
        backend: hub.operations().clone(),
        driver: hub.driver().clone(),
        alpha,
        beta,
        beta_refusals,
        bus: hub.bus().clone(),
        clock,
        db,
        hub,
        _dir: dir,
    }
}

fn watcher(
    driver: &Arc<Driver>,
    db: &sled::Db,
    clock: &Arc<AtomicU64>,
    net: u64,
    adapter: Arc<dyn Adapter>,
) -> Watcher {
    let c = clock.clone();
    Watcher {
        network: NetworkId(net),
        adapter,
        driver: driver.clone(),
        db: db.clone(),
        clock: Arc::new(move || c.load(Ordering::SeqCst)),
        page: 100,
        idle_poll: Duration::from_millis(10),
    }
}

impl Hub {
    pub(super) async fn shutdown(self) {
        self.hub.shutdown().await.expect("the hub stopped cleanly");
    }
    pub(super) async fn bal(&self, net: &MockAdapter, who: &str) -> u128 {
        net.balance(&Address(who.into()), &AssetId("native".into()))
            .await
            .unwrap()
            .0
    }
}

pub(super) fn customer() -> Principal {
    Principal {
        name: "dapp".into(),
        role: Role::Customer,
        tenant: isthmus_hub_api::DEFAULT_TENANT.into(),
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

pub(super) async fn wait_done(hub: &Hub, api_id: &str) -> StoredInstance {
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

pub(super) async fn wait_balance(hub: &Hub, net: &MockAdapter, who: &str, want: u128) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let have = hub.bal(net, who).await;
        if have == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{who} has {have}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Alice pays bob 100 on alpha (locked by the hub's wallet) for 40 of bob's on beta,
/// within 300 s.
pub(super) async fn alice_pays_bob(
    hub: &Hub,
    op: &str,
    counter_by: LockBy,
) -> isthmus_hub_api::model::OperationStatus {
    hub.backend
        .create_transfer(
            &OpId(op.into()),
            &customer(),
            CreateTransfer {
                source: api_leg("alpha", "100", "alice", "bob", LockBy::HubWallet),
                counter: api_leg("beta", "40", "bob", "alice", counter_by),
                timeout_secs: 300,
            },
        )
        .await
        .unwrap()
}

pub(super) fn two_phase(hub: &Hub, api_id: &str) -> TwoPhase {
    match hub
        .driver
        .journal()
        .get_by_api_id(api_id)
        .unwrap()
        .unwrap()
        .contract
    {
        Contract::TwoPhase(m) => m,
        Contract::Htlc(_) => panic!("{api_id} is a swap"),
    }
}

/// The gap the kill -9 trials found: after the abort, bob's lock on beta is seen, and it
/// becomes final only after his escrow's timeout (beta stalled). The hub refunds it all
/// the same, and the transfer ends refunded, not expired with bob's funds in escrow.
#[tokio::test]
async fn a_lock_seen_after_the_abort_and_final_after_its_timeout_is_refunded() {
    let hub = boot_hub_with(false, true);
    let st = alice_pays_bob(&hub, "tr_wired_late", LockBy::Owner).await;
    wait_balance(&hub, &hub.alpha, "alice", 900).await;
    hub.clock.store(1_301, Ordering::SeqCst);
    hub.driver.tick_all(1_301).await.unwrap();
    wait_balance(&hub, &hub.alpha, "alice", 1_000).await;
    // bob locks late; beta mines no more blocks, so the lock stays seen, not final
    let m = two_phase(&hub, &st.id);
    hub.beta
        .lock(&isthmus_adapter_api::LockRequest {
            lock_id: m.lock_id(LegId::B),
            leg: m.spec.b.clone(),
            terms: isthmus_adapter_api::LockTerms::TwoPhase,
        })
        .await
        .unwrap();
    assert_eq!(hub.bal(&hub.beta, "bob").await, 960);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while two_phase(&hub, &st.id).legs.b.phase() != LegPhase::LockSeen {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob's lock never seen"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // past bob's escrow timeout, with several sweeps: still open, still owed a refund
    let past = m.spec.b.timeout + 50;
    hub.clock.store(past, Ordering::SeqCst);
    hub.driver.tick_all(past).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = two_phase(&hub, &st.id).status();
    assert_eq!((s.phase, s.terminal), (Phase::Refunding, false), "{s:?}");
    assert_eq!(s.legs.b, LegPhase::LockSeen);
    // beta moves on: the lock is final, and the hub refunds it
    hub.beta.mine(3);
    let done = wait_done(&hub, &st.id).await;
    let s = done.contract.status();
    assert_eq!(
        (s.phase, s.legs.b),
        (Phase::Refunded, LegPhase::Refunded),
        "{s:?}"
    );
    assert_eq!(hub.bal(&hub.beta, "bob").await, 1_000);
    assert_eq!(hub.bal(&hub.beta, "alice").await, 0);
    assert_eq!(hub.bal(&hub.alpha, "bob").await, 0);
    hub.shutdown().await;
}

/// Nothing of beta's event stream reaches the hub (as after an adapter restart that lost
/// its event log): the sweep's re-reads of beta's escrows alone carry the transfer through
/// validation and release.
#[tokio::test]
async fn the_sweep_recovers_a_transfer_whose_chain_events_were_lost() {
    let hub = boot_hub_with(true, false);
    let st = alice_pays_bob(&hub, "tr_wired_lost", LockBy::HubWallet).await;
    let beta_sweep = watcher(
        &hub.driver,
        &hub.db,
        &hub.clock,
        2,
        hub.beta.clone() as Arc<dyn Adapter>,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut sweeps = 0;
    let done = loop {
        let inst = hub.driver.journal().get_by_api_id(&st.id).unwrap().unwrap();
        if inst.contract.status().terminal {
            break inst;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck: {:?}",
            inst.contract.status()
        );
        sweeps += 1;
        beta_sweep.reread().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(done.contract.status().phase, Phase::Released);
    assert!(sweeps >= 2, "the lock and its release each needed a sweep");
    assert_eq!(hub.bal(&hub.beta, "bob").await, 960);
    assert_eq!(hub.bal(&hub.beta, "alice").await, 40);
    assert_eq!(hub.bal(&hub.alpha, "bob").await, 100);
    hub.shutdown().await;
}

#[tokio::test]
async fn two_phase_transfer_alpha_to_beta_completes_with_balances() {
    let hub = boot_hub();
    let st = alice_pays_bob(&hub, "tr_wired_1", LockBy::HubWallet).await;
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
    // bob must lock himself, and never does
    let st = alice_pays_bob(&hub, "tr_wired_2", LockBy::Owner).await;
    // alice's lock goes in and becomes final
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while hub.bal(&hub.alpha, "alice").await != 900 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "source never locked"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // time passes beyond the deadline: alice is refunded
    hub.clock.store(1_000 + 301, Ordering::SeqCst);
    hub.driver.tick_all(1_301).await.unwrap();
    wait_balance(&hub, &hub.alpha, "alice", 1_000).await;
    // bob could still lock until his escrow times out (deadline + release window), and the
    // hub would refund that too, so the transfer stays open until then
    let open = hub.driver.journal().get_by_api_id(&st.id).unwrap().unwrap();
    assert_eq!(open.contract.status().phase, Phase::Refunding);
    hub.clock.store(1_301 + 600, Ordering::SeqCst);
    hub.driver.tick_all(1_901).await.unwrap();
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
