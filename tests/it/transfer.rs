//! Two-phase transfers and HTLC swaps between two real native networks (PoW `alpha`, PoS
//! `beta`) through the interop core: the driver journals every step, the adapter executor
//! locks and releases through the native adapters, the decision is recorded on a
//! single-validator hub chain by the `ChainLedger`, and watchers feed the adapters'
//! light-client-verified events back.

use crate::native_net::{hub_keys, now_ms, pos, pow, TestNet};
use isthmus_adapter_api::Adapter;
use isthmus_adapter_native::ASSET;
use isthmus_core::{Keypair, NetworkId};
use isthmus_hub::builder::HubBuilder;
use isthmus_hub::ledger::ChainLedger;
use isthmus_interop::{Contract, ContractEvent, Driver, DriverConfig, StoredInstance};
use isthmus_lock_contracts::{
    Address, Amount, AssetId, Htlc, HtlcConfig, HtlcEvent, HtlcSpec, InstanceId, LegSpec, Locker,
    Phase, TwoPhase, TwoPhaseConfig, TwoPhaseSpec,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const ALPHA: u64 = 201;
const BETA: u64 = 202;
const RELEASE_WINDOW: u64 = 5;
const HTLC_DELTA: u64 = 2;

fn hub_secs() -> u64 {
    now_ms() / 1000
}

struct Hub {
    alpha: Arc<TestNet>,
    beta: Arc<TestNet>,
    _hub_chain: TestNet,
    adapters: HashMap<NetworkId, Arc<dyn Adapter>>,
    driver: Arc<Driver>,
    /// The hub itself (driver, watchers, clock), and alpha's miner.
    core: isthmus_hub::builder::Hub,
    alice: Keypair,
    bob: Keypair,
    _db_dir: tempfile::TempDir,
}

impl Hub {
    async fn boot() -> Hub {
        let alice = Keypair::dev("alice");
        let bob = Keypair::dev("bob");
        let alpha = Arc::new(TestNet::start(pow("alpha", ALPHA, &["alice", "bob"])).await);
        let beta = Arc::new(TestNet::start(pos("beta", BETA, &["alice", "bob"])).await);
        let hub_chain = TestNet::start(pos("hub", 100, &[])).await;
        alpha.until_height(1).await.unwrap();
        beta.until_height(1).await.unwrap();
        hub_chain.until_height(1).await.unwrap();
        let mut adapters: HashMap<NetworkId, Arc<dyn Adapter>> = HashMap::new();
        adapters.insert(
            NetworkId(ALPHA),
            Arc::new(alpha.adapter(&[&alice, &bob], 3)),
        );
        adapters.insert(NetworkId(BETA), Arc::new(beta.adapter(&[&alice, &bob], 3)));
        let ledger = ChainLedger::new(hub_chain.node.clone(), Keypair::dev("hub-recorder"));
        let db_dir = tempfile::tempdir().unwrap();
        let db = sled::open(db_dir.path()).unwrap();
        let mut core = HubBuilder::new(db)
            .adapter("alpha", adapters[&NetworkId(ALPHA)].clone())
            .adapter("beta", adapters[&NetworkId(BETA)].clone())
            .ledger(Arc::new(ledger))
            .attesters(hub_keys()[..2].to_vec())
            .driver_config(DriverConfig {
                retry_base: Duration::from_millis(50),
                retry_max: Duration::from_millis(500),
                sweep_interval: Duration::from_millis(300),
                ..DriverConfig::default()
            })
            // The hub's clock reaches every instance.
            .clock(Arc::new(hub_secs))
            .clock_tick(Some(Duration::from_millis(200)))
            .watchers(Duration::from_millis(50), 100)
            .start()
            .unwrap();
        let driver = core.driver().clone();
        // alpha's miner: a block every 100 ms, so confirmations accrue.
        let (a, stop) = (alpha.clone(), core.stop_token());
        core.spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {
                        let _ = a.mine(1).await;
                    }
                }
            }
        });
        Hub {
            alpha,
            beta,
            _hub_chain: hub_chain,
            adapters,
            driver,
            core,
            alice,
            bob,
            _db_dir: db_dir,
        }
    }

    async fn shutdown(self) {
        self.core.shutdown().await.expect("the hub stopped cleanly");
    }

    async fn balance(&self, net: u64, who: &Keypair) -> u128 {
        self.adapters[&NetworkId(net)]
            .balance(&addr(who), &AssetId(ASSET.into()))
            .await
            .unwrap()
            .0
    }

    async fn balances(&self) -> [u128; 4] {
        [
            self.balance(ALPHA, &self.alice).await,
            self.balance(ALPHA, &self.bob).await,
            self.balance(BETA, &self.bob).await,
            self.balance(BETA, &self.alice).await,
        ]
    }

    async fn create(&self, tag: &str, deadline_in: u64, b_locker: Locker) -> InstanceId {
        let now = hub_secs();
        let deadline = now + deadline_in;
        let leg = |net: u64, from: &Keypair, to: &Keypair, amount: u128, locker| LegSpec {
            network: NetworkId(net),
            asset: AssetId(ASSET.into()),
            amount: Amount(amount),
            from: addr(from),
            to: addr(to),
            timeout: deadline + RELEASE_WINDOW + 5,
            locker,
        };
        let spec = TwoPhaseSpec {
            a: leg(ALPHA, &self.alice, &self.bob, 1_000, Locker::HubWallet),
            b: leg(BETA, &self.bob, &self.alice, 2_000, b_locker),
            deadline,
        };
        let id = InstanceId::derive(&[tag.as_bytes(), &now_ms().to_be_bytes()]);
        let (m, actions) = TwoPhase::create(
            id,
            spec,
            &TwoPhaseConfig {
                release_window: RELEASE_WINDOW,
            },
            now,
        )
        .unwrap();
        self.driver
            .create(Contract::TwoPhase(m), actions, tag.into(), now)
            .await
            .unwrap();
        id
    }

    /// An HTLC swap: alice locks 1_000 on alpha for bob until `t1_in` seconds from now, bob
    /// locks 2_000 on beta for alice until `t2_in`.
    async fn create_swap(
        &self,
        tag: &str,
        t1_in: u64,
        t2_in: u64,
        b_locker: Locker,
        secret: &[u8; 32],
    ) -> InstanceId {
        let now = hub_secs();
        let leg = |net: u64, from: &Keypair, to: &Keypair, amount: u128, timeout, locker| LegSpec {
            network: NetworkId(net),
            asset: AssetId(ASSET.into()),
            amount: Amount(amount),
            from: addr(from),
            to: addr(to),
            timeout,
            locker,
        };
        let spec = HtlcSpec {
            hashlock: isthmus_core::HashAlgo::Sha256.digest(secret),
            initiator: leg(
                ALPHA,
                &self.alice,
                &self.bob,
                1_000,
                now + t1_in,
                Locker::HubWallet,
            ),
            participant: leg(BETA, &self.bob, &self.alice, 2_000, now + t2_in, b_locker),
        };
        let id = InstanceId::derive(&[tag.as_bytes(), &now_ms().to_be_bytes()]);
        let (m, actions) = Htlc::create(id, spec, &HtlcConfig { delta: HTLC_DELTA }, now).unwrap();
        self.driver
            .create(Contract::Htlc(m), actions, tag.into(), now)
            .await
            .unwrap();
        id
    }

    async fn until_terminal(&self, id: InstanceId, within: Duration) -> StoredInstance {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let i = self.driver.journal().get(&id).unwrap().unwrap();
            if i.contract.status().terminal {
                return i;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "stuck: {:?}",
                i.contract.status()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn addr(k: &Keypair) -> Address {
    Address(k.id().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phase_transfer_from_pow_alpha_to_pos_beta_releases_both_legs() {
    let hub = Hub::boot().await;
    let before = hub.balances().await;
    let id = hub.create("transfer-1", 120, Locker::HubWallet).await;
    let done = hub.until_terminal(id, Duration::from_secs(90)).await;
    assert!(
        matches!(
            done.contract.status().phase,
            Phase::Released | Phase::Completed
        ),
        "{:?}",
        done.contract.status()
    );
    let Contract::TwoPhase(m) = &done.contract else {
        panic!("not a two-phase instance")
    };
    // The decision was recorded on the hub chain before anything was released.
    let record = m.record.clone().expect("a hub record");
    assert!(record.height >= 1);
    let after = hub.balances().await;
    assert_eq!(
        after,
        [
            before[0] - 1_000,
            before[1] + 1_000,
            before[2] - 2_000,
            before[3] + 2_000
        ],
        "alpha alice/bob, beta bob/alice"
    );
    // Nothing is left in either escrow.
    for net in [&hub.alpha, &hub.beta] {
        let escrow = isthmus_chain::state::module_account(isthmus_chain::escrow::MODULE);
        assert_eq!(net.node.account(escrow).await.unwrap().balance, 0);
    }
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counterparty_never_locks_and_the_locked_side_is_refunded() {
    let hub = Hub::boot().await;
    let before = hub.balances().await;
    // bob must lock on beta himself, and never does.
    let id = hub.create("transfer-2", 8, Locker::External).await;
    // alice's lock goes in on alpha.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while hub.balance(ALPHA, &hub.alice).await != before[0] - 1_000 {
        assert!(tokio::time::Instant::now() < deadline, "alpha never locked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = hub.until_terminal(id, Duration::from_secs(90)).await;
    assert!(
        matches!(done.contract.status().phase, Phase::Refunded),
        "{:?}",
        done.contract.status()
    );
    assert_eq!(hub.balances().await, before, "everyone has what they had");
    let escrow = isthmus_chain::state::module_account(isthmus_chain::escrow::MODULE);
    assert_eq!(hub.alpha.node.account(escrow).await.unwrap().balance, 0);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htlc_swap_between_pow_alpha_and_pos_beta_completes_with_the_revealed_secret() {
    let hub = Hub::boot().await;
    let before = hub.balances().await;
    let secret = *b"native htlc swap secret, 32 b!!!";
    let id = hub
        .create_swap("swap-1", 120, 60, Locker::HubWallet, &secret)
        .await;
    // The initiator hands the hub its secret; the hub claims beta for alice, which reveals
    // it on beta, and then claims alpha for bob with it.
    hub.driver
        .apply(
            id,
            ContractEvent::Htlc(HtlcEvent::PreimageProvided {
                preimage: secret.to_vec(),
            }),
            hub_secs(),
        )
        .await
        .unwrap();
    let done = hub.until_terminal(id, Duration::from_secs(90)).await;
    assert!(
        matches!(done.contract.status().phase, Phase::Completed),
        "{:?}",
        done.contract.status()
    );
    assert_eq!(
        hub.balances().await,
        [
            before[0] - 1_000,
            before[1] + 1_000,
            before[2] - 2_000,
            before[3] + 2_000
        ],
        "alpha alice/bob, beta bob/alice"
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htlc_swap_refunds_the_initiator_after_its_timelock_when_the_participant_never_locks() {
    let hub = Hub::boot().await;
    let before = hub.balances().await;
    let secret = [5u8; 32];
    let id = hub
        .create_swap("swap-2", 6, 3, Locker::External, &secret)
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while hub.balance(ALPHA, &hub.alice).await != before[0] - 1_000 {
        assert!(tokio::time::Instant::now() < deadline, "alpha never locked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = hub.until_terminal(id, Duration::from_secs(90)).await;
    assert!(
        matches!(done.contract.status().phase, Phase::Refunded),
        "{:?}",
        done.contract.status()
    );
    assert_eq!(hub.balances().await, before, "everyone has what they had");
    hub.shutdown().await;
}
