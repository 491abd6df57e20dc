//! Flow 2: two-phase lock transfers between a native network (an in-process PoS node) and
//! anvil, created over the hub's HTTP API. The hub records its decision on its own native
//! chain; the native escrow releases on the hub's ed25519 attestation, the EVM escrow on its
//! secp256k1 one (checked with `ecrecover`). Both directions complete; a transfer whose
//! counterparty never locks is refunded on whichever side did lock.

use crate::hub::{every, hub_builder, API_KEY, ETH};
use crate::native_net::{hub_keys, pos, TestNet};
use isthmus_adapter_api::Adapter;
use isthmus_adapter_evm::anvil::{AnvilFixture, FixtureOptions};
use isthmus_adapter_native::ASSET;
use isthmus_adapter_testkit::conformance::Fixture;
use isthmus_chain::escrow::{decision_state_key, AttestedDecision, DecisionRecord};
use isthmus_core::{Keypair, NetworkId};
use isthmus_hub::builder::Hub;
use isthmus_hub::ledger::ChainLedger;
use isthmus_interop::Contract;
use isthmus_lock_contracts::{Address, AssetId, LegId, LegState, TwoPhase};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

// Flow 3 across a relayer restart reuses this hub, with anvil relayer-observed.
#[path = "relayed.rs"]
mod relayed;

const NATIVE: NetworkId = NetworkId(201);
const HUB_CHAIN: u64 = 100;
/// anvil mines each transaction at once and, besides, a block every `ETH_BLOCK` so that
/// confirmations accrue; the native PoS network makes a block every 100 ms on its own.
const ETH_BLOCK: Duration = Duration::from_millis(1_000);
const NATIVE_BLOCK: Duration = Duration::from_millis(100);
const ETH_CONFIRMATIONS: u32 = 2;
const NATIVE_CONFIRMATIONS: u32 = 2;
pub(crate) const NATIVE_AMOUNT: u128 = 1_000;
pub(crate) const ETH_AMOUNT: u128 = 100_000_000_000_000_000; // 0.1 ETH, in wei

/// A hub linking a native network and anvil, recording decisions on its own chain, with
/// its API on 127.0.0.1:0. Every node stops when this is dropped (anvil by pid).
pub(crate) struct TwoPhaseHub {
    native: Arc<TestNet>,
    hub_chain: TestNet,
    pub(crate) eth: Arc<AnvilFixture>,
    pub(crate) adapters: HashMap<NetworkId, Arc<dyn Adapter>>,
    /// The hub itself (driver, watchers, API): restartable over `db`.
    pub(crate) core: Hub,
    db: sled::Db,
    http: reqwest::Client,
    recorder: Keypair,
    alice: Keypair,
    bob: Keypair,
    /// When each new head of either chain was first seen (sampled every 10 ms).
    heads: Arc<Mutex<Vec<(NetworkId, u64, Instant)>>>,
    /// While set, anvil's block producer mines nothing (the test mines by hand).
    pub(crate) eth_paused: Arc<AtomicBool>,
    /// Networks the hub runs no watcher for (relayers carry their lock events).
    relayed: Vec<NetworkId>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TwoPhaseHub {
    pub(crate) async fn boot() -> TwoPhaseHub {
        Self::boot_observing(&[]).await
    }

    async fn boot_observing(relayed: &[NetworkId]) -> TwoPhaseHub {
        crate::hub::init_tracing();
        let (native, hub_chain, eth) = tokio::join!(
            TestNet::start(pos("native", NATIVE.0, &["alice", "bob"])),
            TestNet::start(pos("hub", HUB_CHAIN, &[])),
            AnvilFixture::start(FixtureOptions {
                network: ETH,
                confirmations: ETH_CONFIRMATIONS,
                ..FixtureOptions::default()
            })
        );
        native.until_height(1).await.expect("native chain starts");
        hub_chain.until_height(1).await.expect("hub chain starts");
        let native = Arc::new(native);
        let eth = Arc::new(eth.expect("anvil fixture"));
        let (alice, bob) = (Keypair::dev("alice"), Keypair::dev("bob"));
        let mut adapters: HashMap<NetworkId, Arc<dyn Adapter>> = HashMap::new();
        adapters.insert(
            NATIVE,
            Arc::new(native.adapter(&[&alice, &bob], NATIVE_CONFIRMATIONS)),
        );
        adapters.insert(ETH, eth.adapter.clone());
        let recorder = Keypair::dev("hub-recorder");
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path()).expect("sled");
        let core = start_core(&adapters, &eth, &hub_chain, &recorder, &db, relayed);
        // The chains' pace and the head sampler outlive hub restarts.
        let (stop, _) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        let eth_paused = Arc::new(AtomicBool::new(false));
        let (e, paused) = (eth.clone(), eth_paused.clone());
        tasks.push(every(ETH_BLOCK, &stop, move || {
            let (e, paused) = (e.clone(), paused.clone());
            async move {
                if !paused.load(Ordering::SeqCst) {
                    let _ = e.raw("evm_mine", json!([])).await;
                }
            }
        }));
        // Head sampler: when each block of either chain appeared, for the overhead split.
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (e, n, log) = (eth.clone(), native.node.clone(), heads.clone());
        tasks.push(every(Duration::from_millis(10), &stop, move || {
            let (e, n, log) = (e.clone(), n.clone(), log.clone());
            async move {
                let at = Instant::now();
                let eth_head = e
                    .raw("eth_blockNumber", json!([]))
                    .await
                    .ok()
                    .and_then(|v| {
                        u64::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok()
                    });
                let native_head = n.status().await.ok().map(|s| s.height);
                let mut log = log.lock().expect("head log");
                for (net, h) in [(ETH, eth_head), (NATIVE, native_head)] {
                    let Some(h) = h else { continue };
                    let newest = log.iter().rev().find(|(n, _, _)| *n == net).map(|x| x.1);
                    if newest.is_none_or(|old| h > old) {
                        log.push((net, h, at));
                    }
                }
            }
        }));
        TwoPhaseHub {
            native,
            hub_chain,
            eth,
            adapters,
            core,
            db,
            http: reqwest::Client::new(),
            recorder,
            alice,
            bob,
            heads,
            eth_paused,
            relayed: relayed.to_vec(),
            stop,
            tasks,
            _dir: dir,
        }
    }

    /// Stop the hub's driver, watchers and API (the chains go on), and start them again
    /// over the same database, as after a crash of the hub process.
    async fn restart(&mut self) {
        stop_core(&mut self.core).await;
        self.core = start_core(
            &self.adapters,
            &self.eth,
            &self.hub_chain,
            &self.recorder,
            &self.db,
            &self.relayed,
        );
    }

    /// Where the hub's API listens.
    pub(crate) fn api(&self) -> std::net::SocketAddr {
        self.core.api_addr().expect("api served")
    }

    pub(crate) async fn shutdown(mut self) {
        stop_core(&mut self.core).await;
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            t.await.expect("hub task ends cleanly");
        }
    }

    pub(crate) fn native_addr(k: &Keypair) -> String {
        k.id().to_string()
    }

    /// `POST /v1/transfers`; the status code and body.
    pub(crate) async fn post_transfer(&self, key: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("http://{}/v1/transfers", self.api()))
            .bearer_auth(API_KEY)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .expect("post transfer");
        let code = resp.status().as_u16();
        (code, resp.json().await.expect("json body"))
    }

    pub(crate) async fn get_transfer(&self, id: &str) -> Value {
        let resp = self
            .http
            .get(format!("http://{}/v1/transfers/{id}", self.api()))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("get transfer");
        assert_eq!(resp.status().as_u16(), 200);
        resp.json().await.expect("json body")
    }

    /// Alice's and Bob's native balances, then the two anvil accounts' ETH.
    pub(crate) async fn balances(&self) -> [u128; 4] {
        let native = AssetId(ASSET.into());
        let eth = AssetId("native".into());
        let [e0, e1] = self.eth.accounts();
        let n = |k: &Keypair| Address(Self::native_addr(k));
        let a = &self.adapters[&NATIVE];
        [
            a.balance(&n(&self.alice), &native)
                .await
                .expect("balance")
                .0,
            a.balance(&n(&self.bob), &native).await.expect("balance").0,
            self.eth
                .adapter
                .balance(&e0, &eth)
                .await
                .expect("balance")
                .0,
            self.eth
                .adapter
                .balance(&e1, &eth)
                .await
                .expect("balance")
                .0,
        ]
    }

    /// What anvil charged for `tx` (`gasUsed * effectiveGasPrice` from its receipt).
    pub(crate) async fn gas_paid(&self, tx: &str) -> u128 {
        gas_paid(&self.eth, tx).await
    }

    pub(crate) async fn eth_nonce(&self, who: &Address) -> u64 {
        let v = self
            .eth
            .raw("eth_getTransactionCount", json!([who.0, "latest"]))
            .await
            .expect("nonce");
        u64::from_str_radix(v.as_str().expect("hex").trim_start_matches("0x"), 16).expect("hex")
    }

    /// The escrow contract's ETH and the native escrow module's balance.
    pub(crate) async fn escrowed(&self) -> (u128, u128) {
        let escrow = format!("{}", self.eth.adapter.deployment().escrow);
        let v = self
            .eth
            .raw("eth_getBalance", json!([escrow, "latest"]))
            .await
            .expect("escrow balance");
        let eth = u128::from_str_radix(v.as_str().expect("hex").trim_start_matches("0x"), 16)
            .expect("hex");
        let module = isthmus_chain::state::module_account(isthmus_chain::escrow::MODULE);
        let native = self
            .native
            .node
            .account(module)
            .await
            .expect("escrow account")
            .balance;
        (eth, u128::from(native))
    }

    /// The decision the hub recorded on its chain for the instance behind `api_id`.
    pub(crate) async fn recorded(&self, api_id: &str) -> Option<DecisionRecord> {
        let inst = self.instance(api_id);
        let key = decision_state_key(&self.recorder.id(), &inst.id.0);
        let raw = self.hub_chain.node.state_get(key).await.expect("hub state");
        raw.map(|b| rmp_serde::from_slice(&b).expect("decision record"))
    }

    pub(crate) fn instance(&self, api_id: &str) -> TwoPhase {
        let stored = self
            .core
            .driver()
            .journal()
            .get_by_api_id(api_id)
            .expect("journal read")
            .expect("instance exists");
        match stored.contract {
            Contract::TwoPhase(m) => m,
            Contract::Htlc(_) => panic!("{api_id} is not a two-phase transfer"),
        }
    }

    /// The lock tx of `leg` once the hub has seen it.
    pub(crate) fn lock_tx(&self, api_id: &str, leg: LegId) -> Option<String> {
        match &self.instance(api_id).legs[leg] {
            LegState::Seen { lock } | LegState::Final { lock, .. } => Some(lock.tx.0.clone()),
            LegState::Settled { lock, .. } => lock.as_ref().map(|l| l.tx.0.clone()),
            LegState::Unlocked => None,
        }
    }

    /// When the newest block of `net` seen at or before `t` appeared.
    fn last_block_before(&self, net: NetworkId, t: Instant) -> Instant {
        self.heads
            .lock()
            .expect("head log")
            .iter()
            .filter(|(n, _, at)| *n == net && *at <= t)
            .map(|x| x.2)
            .max()
            .unwrap_or(t)
    }

    /// Poll `GET /v1/transfers/{id}` every 20 ms until it is terminal, noting when each leg
    /// first showed each state.
    pub(crate) async fn until_terminal(&self, api_id: &str, within: Duration) -> Timeline {
        let deadline = Instant::now() + within;
        let mut t = Timeline::default();
        loop {
            let v = self.get_transfer(api_id).await;
            let at = Instant::now();
            for leg in 0..2 {
                let state = v["legs"][leg]["state"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                t.first.entry((leg, state)).or_insert(at);
            }
            if v["terminal"] == true {
                t.end = at;
                t.last = v;
                return t;
            }
            assert!(Instant::now() < deadline, "transfer {api_id} stuck at {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// What anvil charged for `tx` (`gasUsed * effectiveGasPrice` from its receipt).
pub(crate) async fn gas_paid(eth: &AnvilFixture, tx: &str) -> u128 {
    let r = eth
        .raw("eth_getTransactionReceipt", json!([tx]))
        .await
        .expect("receipt");
    let word = |k: &str| {
        u128::from_str_radix(
            r[k].as_str()
                .unwrap_or_else(|| panic!("receipt {r} has no {k}"))
                .trim_start_matches("0x"),
            16,
        )
        .expect("hex quantity")
    };
    word("gasUsed") * word("effectiveGasPrice")
}

/// The hub over `adapters`, recording decisions on `hub_chain`. The native escrow trusts 2
/// of the hub's 3 ed25519 attesters; the EVM escrow 2 of the fixture's 3 secp256k1 ones.
fn start_core(
    adapters: &HashMap<NetworkId, Arc<dyn Adapter>>,
    eth: &AnvilFixture,
    hub_chain: &TestNet,
    recorder: &Keypair,
    db: &sled::Db,
    relayed: &[NetworkId],
) -> Hub {
    let ledger = ChainLedger::new(hub_chain.node.clone(), recorder.clone());
    let (evm_keys, escrow) = (eth.attesters.clone(), eth.adapter.escrow_domain());
    let mut b = hub_builder(db)
        .adapter("native", adapters[&NATIVE].clone())
        .adapter("anvil", adapters[&ETH].clone())
        .ledger(Arc::new(ledger))
        .attesters(hub_keys()[..2].to_vec())
        .executor_with(move |exec| {
            exec.with_evm_attesters(evm_keys)
                .with_evm_escrow(ETH, escrow)
        });
    for n in relayed {
        b = b.unwatched(*n);
    }
    b.start().expect("hub starts")
}

async fn stop_core(core: &mut Hub) {
    core.stop().await.expect("the hub stopped cleanly");
}

impl Drop for TwoPhaseHub {
    fn drop(&mut self) {
        // On a panic the tasks are told to stop; the fixture kills anvil by pid.
        let _ = self.stop.send(true);
        self.core.stop_token().cancel();
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub(crate) struct Timeline {
    /// When (leg index, state name) first showed in the API.
    first: HashMap<(usize, String), Instant>,
    end: Instant,
    pub(crate) last: Value,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            first: HashMap::new(),
            end: Instant::now(),
            last: Value::Null,
        }
    }
}

impl Timeline {
    fn at(&self, leg: usize, state: &str) -> Instant {
        self.seen(leg, state)
            .unwrap_or_else(|| panic!("leg {leg} never showed `{state}`: {}", self.last))
    }

    fn seen(&self, leg: usize, state: &str) -> Option<Instant> {
        self.first.get(&(leg, state.to_owned())).copied()
    }
}

/// The hub's reactions in a completed two-phase transfer between the native network (leg
/// `native_leg`) and anvil: each from the block that let the hub act (a lock's final
/// block, the last release's final block) to the API showing the result, in the order lock
/// seen native / eth, release seen native / eth. `None` when the poller never saw one of
/// those states (e.g. it started after a restart).
pub(crate) fn reactions(
    hub: &TwoPhaseHub,
    t: &Timeline,
    native_leg: usize,
) -> Option<[Duration; 4]> {
    let eth_leg = 1 - native_leg;
    let step = |net: NetworkId, leg: usize, state: &str| {
        let at = t.seen(leg, state)?;
        Some(at - hub.last_block_before(net, at))
    };
    Some([
        step(NATIVE, native_leg, "locked")?,
        step(ETH, eth_leg, "locked")?,
        step(NATIVE, native_leg, "released")?,
        step(ETH, eth_leg, "released")?,
    ])
}

/// `request->completion …s = confirmation waiting …s + hub overhead …s (… block intervals
/// of anvil)`, or the total alone when the reactions are unknown.
pub(crate) fn split_text(total: Duration, steps: Option<[Duration; 4]>) -> String {
    match steps {
        Some(steps) => {
            let overhead: Duration = steps.iter().sum();
            format!(
                "request->completion {:.2}s = confirmation waiting {:.2}s + hub overhead \
                 {:.2}s ({:.2} anvil block intervals; lock seen native/eth, release seen \
                 native/eth: {:?})",
                secs(total),
                secs(total.saturating_sub(overhead)),
                secs(overhead),
                secs(overhead) / secs(ETH_BLOCK),
                steps.map(secs),
            )
        }
        None => format!("request->completion {:.2}s", secs(total)),
    }
}

pub(crate) fn leg(
    network: &str,
    asset: &str,
    amount: u128,
    from: &str,
    to: &str,
    lock_by: &str,
) -> Value {
    json!({"network": network, "asset": asset, "amount": amount.to_string(),
           "from": from, "to": to, "lock_by": lock_by})
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Which way a transfer goes: `source` is the leg the customer pays on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Direction {
    NativeToAnvil,
    AnvilToNative,
}

impl Direction {
    pub(crate) fn legs(self, hub: &TwoPhaseHub, counter_lock_by: &str) -> Value {
        let [e0, e1] = hub.eth.accounts();
        let (alice, bob) = (
            TwoPhaseHub::native_addr(&hub.alice),
            TwoPhaseHub::native_addr(&hub.bob),
        );
        // Alice pays NATIVE_AMOUNT to Bob on the native network; Bob (e0) pays ETH_AMOUNT to
        // Alice (e1) on anvil. The direction says which of the two is the source leg.
        let native = leg("native", ASSET, NATIVE_AMOUNT, &alice, &bob, "hub_wallet");
        let eth = leg("anvil", "native", ETH_AMOUNT, &e0.0, &e1.0, "hub_wallet");
        let (mut source, mut counter) = match self {
            Direction::NativeToAnvil => (native, eth),
            Direction::AnvilToNative => (eth, native),
        };
        source["lock_by"] = json!("hub_wallet");
        counter["lock_by"] = json!(counter_lock_by);
        json!({"source": source, "counter": counter})
    }

    /// The leg (A = source, B = counter) on anvil.
    fn eth_leg(self) -> LegId {
        match self {
            Direction::NativeToAnvil => LegId::B,
            Direction::AnvilToNative => LegId::A,
        }
    }
}

/// Create a transfer in `dir` over HTTP and check it releases both legs, with exact balances.
async fn transfer_completes(dir: Direction) {
    let hub = TwoPhaseHub::boot().await;
    let [e0, _] = hub.eth.accounts();
    let before = hub.balances().await;
    let nonce_before = hub.eth_nonce(&e0).await;
    let mut body = dir.legs(&hub, "hub_wallet");
    body["timeout_secs"] = json!(240);

    let start = Instant::now();
    let (code, created) = hub.post_transfer(&format!("{dir:?}"), &body).await;
    assert_eq!(code, 202, "{created}");
    let api_id = created["id"].as_str().expect("id").to_owned();
    let t = hub.until_terminal(&api_id, Duration::from_secs(180)).await;
    let total = start.elapsed();
    let done = &t.last;
    assert_eq!(done["state"], "released", "{done}");
    for l in 0..2 {
        assert_eq!(done["legs"][l]["state"], "released", "{done}");
    }

    // The hub recorded Validated on its own chain before releasing.
    let rec = hub
        .recorded(&api_id)
        .await
        .expect("a decision on the hub chain");
    assert_eq!(rec.decision, AttestedDecision::Validated);
    let m = hub.instance(&api_id);
    assert_eq!(m.record.as_ref().map(|r| r.height), Some(rec.height));

    // Exact balances: the native chain charges no fee; on anvil e0 paid for its lock tx
    // (the relayer pays for the release), and sent nothing else.
    let lock_tx = hub
        .lock_tx(&api_id, dir.eth_leg())
        .expect("the eth lock tx");
    let gas = hub.gas_paid(&lock_tx).await;
    assert_eq!(hub.eth_nonce(&e0).await, nonce_before + 1, "e0 sent one tx");
    let after = hub.balances().await;
    assert_eq!(
        after,
        [
            before[0] - NATIVE_AMOUNT,
            before[1] + NATIVE_AMOUNT,
            before[2] - ETH_AMOUNT - gas,
            before[3] + ETH_AMOUNT,
        ],
        "native alice/bob, anvil e0/e1; lock gas {gas}"
    );
    assert_eq!(hub.escrowed().await, (0, 0), "both escrows are empty");

    // Split: the hub's reactions are timed from the block that let it act (a lock's
    // final block, the hub chain's record, the last release's final block) to the API
    // showing the result; everything else is waiting for blocks and confirmations.
    let (native_leg, eth_leg) = match dir {
        Direction::NativeToAnvil => (0, 1),
        Direction::AnvilToNative => (1, 0),
    };
    let locked_native = t.at(native_leg, "locked");
    let locked_eth = t.at(eth_leg, "locked");
    let steps = reactions(&hub, &t, native_leg).expect("the API showed every leg state");
    let overhead: Duration = steps.iter().sum();
    let waiting = total.saturating_sub(overhead);
    println!(
        "flow 2 two-phase {dir:?} over http: request->completion {:.2}s = confirmation \
         waiting {:.2}s + hub overhead {:.2}s (lock seen native/eth, release seen \
         native/eth: {:?}); locked both {:.2}s after the request, released {:.2}s after \
         that; {} eth / {} native confirmations, anvil block every {:.1}s, native every \
         {:.1}s; overhead is {:.2} block intervals of the slower chain (anvil); lock gas {gas} wei",
        secs(total),
        secs(waiting),
        secs(overhead),
        steps.map(secs),
        secs(locked_native.max(locked_eth) - start),
        secs(t.end - locked_native.max(locked_eth)),
        ETH_CONFIRMATIONS,
        NATIVE_CONFIRMATIONS,
        secs(ETH_BLOCK),
        secs(NATIVE_BLOCK),
        secs(overhead) / secs(ETH_BLOCK),
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phase_native_to_anvil_over_http_releases_both_escrows() {
    transfer_completes(Direction::NativeToAnvil).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phase_anvil_to_native_over_http_releases_both_escrows() {
    transfer_completes(Direction::AnvilToNative).await;
}

/// Two transfers at once whose counterparties never lock: one locked on the native network,
/// one on anvil. After the deadline the hub records Aborted on its chain and refunds each
/// locked escrow with its attestation (ed25519 on native, secp256k1 on anvil).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phase_counterparty_never_locks_and_both_sides_are_refunded() {
    let hub = TwoPhaseHub::boot().await;
    let [e0, _] = hub.eth.accounts();
    let before = hub.balances().await;
    let nonce_before = hub.eth_nonce(&e0).await;
    const TIMEOUT: u64 = 20;
    let mut ids = Vec::new();
    let start = Instant::now();
    for dir in [Direction::NativeToAnvil, Direction::AnvilToNative] {
        let mut body = dir.legs(&hub, "owner");
        body["timeout_secs"] = json!(TIMEOUT);
        let (code, created) = hub.post_transfer(&format!("refund-{dir:?}"), &body).await;
        assert_eq!(code, 202, "{created}");
        ids.push((dir, created["id"].as_str().expect("id").to_owned()));
    }
    // Both source locks go in (the hub's wallet locks them at once).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let b = hub.balances().await;
        if b[0] == before[0] - NATIVE_AMOUNT && b[2] < before[2] - ETH_AMOUNT {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "source locks missing: {before:?} -> {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut gas = 0;
    for (dir, api_id) in &ids {
        let t = hub.until_terminal(api_id, Duration::from_secs(180)).await;
        let done = &t.last;
        assert_eq!(done["state"], "refunded", "{dir:?}: {done}");
        assert_eq!(done["legs"][0]["state"], "refunded", "{dir:?}: {done}");
        assert_eq!(done["legs"][1]["state"], "unlocked", "{dir:?}: {done}");
        let rec = hub
            .recorded(api_id)
            .await
            .expect("a decision on the hub chain");
        assert_eq!(rec.decision, AttestedDecision::Aborted, "{dir:?}");
        // Nothing before the deadline.
        assert!(
            secs(t.end - start) >= TIMEOUT as f64 - 1.0,
            "{dir:?} refunded early"
        );
        if *dir == Direction::AnvilToNative {
            let lock_tx = hub.lock_tx(api_id, LegId::A).expect("the eth lock tx");
            gas = hub.gas_paid(&lock_tx).await;
        }
        println!(
            "flow 2 two-phase refund {dir:?}: request->refunded {:.2}s with a {TIMEOUT}s \
             timeout, {:.2}s after the deadline",
            secs(t.end - start),
            secs(t.end - start) - TIMEOUT as f64,
        );
    }
    assert_eq!(hub.eth_nonce(&e0).await, nonce_before + 1, "e0 sent one tx");
    assert_eq!(
        hub.balances().await,
        [before[0], before[1], before[2] - gas, before[3]],
        "everyone has what they had, less e0's lock gas {gas}"
    );
    assert_eq!(hub.escrowed().await, (0, 0), "both escrows are empty");
    hub.shutdown().await;
}

/// Flow 3: the test ERC-20 token from anvil to the native network, as a two-phase transfer
/// (the EVM escrow holds the token; the native leg pays the counter-value), with the hub's
/// driver, watchers and API stopped and restarted over the same database once the token
/// lock is on anvil. Delivered exactly once: each side locked once (e0 sent exactly its
/// approve and its lock), each escrow paid out once, balances exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erc20_anvil_to_native_is_delivered_exactly_once_across_a_hub_restart() {
    const TOKENS: u128 = 5_000_000_000_000_000_000; // 5 ITST
    let mut hub = TwoPhaseHub::boot().await;
    let [e0, e1] = hub.eth.accounts();
    let token = hub.eth.token_asset();
    let evm = hub.eth.adapter.clone();
    let tokens = |who: Address| {
        let (a, t) = (evm.clone(), token.clone());
        async move { a.balance(&who, &t).await.expect("token balance").0 }
    };
    let before = hub.balances().await;
    let tokens_before = [tokens(e0.clone()).await, tokens(e1.clone()).await];
    let nonce_before = hub.eth_nonce(&e0).await;
    let (alice, bob) = (
        TwoPhaseHub::native_addr(&hub.alice),
        TwoPhaseHub::native_addr(&hub.bob),
    );
    let body = json!({
        "source": leg("anvil", &token.0, TOKENS, &e0.0, &e1.0, "hub_wallet"),
        "counter": leg("native", ASSET, NATIVE_AMOUNT, &bob, &alice, "hub_wallet"),
        "timeout_secs": 240,
    });
    let start = Instant::now();
    let (code, created) = hub.post_transfer("erc20-restart", &body).await;
    assert_eq!(code, 202, "{created}");
    let api_id = created["id"].as_str().expect("id").to_owned();

    // The token lock (after its approve) is mined on anvil: now the hub goes down.
    let deadline = Instant::now() + Duration::from_secs(60);
    while hub.eth_nonce(&e0).await < nonce_before + 2 {
        assert!(Instant::now() < deadline, "the token lock never went out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let state_at_stop = hub.get_transfer(&api_id).await;
    let down = Instant::now();
    hub.restart().await;
    let restarted = down.elapsed();

    let t = hub.until_terminal(&api_id, Duration::from_secs(180)).await;
    let total = start.elapsed();
    assert_eq!(t.last["state"], "released", "{}", t.last);
    let rec = hub
        .recorded(&api_id)
        .await
        .expect("a decision on the hub chain");
    assert_eq!(rec.decision, AttestedDecision::Validated);
    assert_eq!(
        hub.eth_nonce(&e0).await,
        nonce_before + 2,
        "e0 sent one approve and one lock, nothing twice"
    );
    let after = hub.balances().await;
    assert_eq!(
        [after[0], after[1]],
        [before[0] + NATIVE_AMOUNT, before[1] - NATIVE_AMOUNT],
        "native alice/bob"
    );
    assert_eq!(
        [tokens(e0.clone()).await, tokens(e1.clone()).await],
        [tokens_before[0] - TOKENS, tokens_before[1] + TOKENS],
        "token e0/e1"
    );
    let escrow = Address(format!("{}", hub.eth.adapter.deployment().escrow));
    assert_eq!(tokens(escrow).await, 0, "the EVM escrow holds no token");
    assert_eq!(hub.escrowed().await, (0, 0), "both escrows are empty");
    println!(
        "flow 3 erc20 anvil->native across a hub restart: {} \
         (hub down and up again in {:.2}s, stopped at state {} / legs {} {}); released both",
        split_text(total, reactions(&hub, &t, 1)),
        secs(restarted),
        state_at_stop["state"],
        state_at_stop["legs"][0]["state"],
        state_at_stop["legs"][1]["state"],
    );
    hub.shutdown().await;
}
