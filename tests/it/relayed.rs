//! Flow 3 with the relayer in the path: the ERC-20 two-phase transfer from anvil to the
//! native network, where anvil is *relayer-observed*. The hub runs no watcher for anvil;
//! its lock events (the token lock final, the escrow's release) reach the hub only from
//! `relayer` OS processes (the built binary), which watch anvil through their own EVM
//! adapter and carry each event with its receipt evidence over TCP to the hub's evidence
//! ingress. The hub checks every item with its own adapter before acting.
//!
//! Killed with SIGKILL between the lock and its finality and restarted on the same data
//! dir, the relayer still gets the transfer delivered exactly once; two relayers serving
//! the same link deliver it once too.

use super::*;
use crate::hub::now_secs;
use isthmus_hub_ingress::EvidenceIngress;
use isthmus_relayer::evidence::{EvidenceOutcome, RelayedEvidence};
use isthmus_transport::{Endpoint, TransportConfig, TransportKind};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;

/// The hub network id relay links are bound to.
const HUB_NET: NetworkId = NetworkId(HUB_CHAIN);
const TOKENS: u128 = 5_000_000_000_000_000_000; // 5 ITST

/// The `relayer` binary of this workspace (see [`isthmus_tests::workspace_bin`]).
fn relayer_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| isthmus_tests::workspace_bin("isthmus-relayer-cli", "relayer", &["relayer"]))
        .clone()
}

/// A `relayer start` process, killed (SIGKILL) and reaped when dropped.
struct RelayerProc {
    child: Child,
}

impl RelayerProc {
    fn start(config: &Path, log: &Path) -> RelayerProc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("relayer log");
        let child = Command::new(relayer_bin())
            .arg("start")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the relayer");
        RelayerProc { child }
    }

    /// `kill -9`, as a crash would.
    fn kill9(mut self) {
        self.child.kill().expect("SIGKILL the relayer");
        self.child.wait().expect("reap the relayer");
    }
}

impl Drop for RelayerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The hub of flow 2 with anvil relayer-observed, plus its evidence ingress on TCP.
struct RelayedHub {
    hub: TwoPhaseHub,
    ingress: Arc<EvidenceIngress>,
    ingress_addr: std::net::SocketAddr,
    ingress_id: isthmus_core::NodeId,
    /// The anvil contracts' deployment record, which relayers read (they never deploy).
    record: PathBuf,
    dir: tempfile::TempDir,
}

impl RelayedHub {
    async fn boot() -> RelayedHub {
        let hub = TwoPhaseHub::boot_observing(&[ETH]).await;
        let ingress_key = Keypair::dev("hub-evidence-ingress");
        let endpoint = Endpoint::bind(
            TransportConfig {
                kind: TransportKind::Tcp,
                network: HUB_NET,
                ..TransportConfig::default()
            },
            ingress_key.clone(),
        )
        .await
        .expect("evidence ingress endpoint");
        let ingress_addr = endpoint.local_addr();
        let mut networks: HashMap<NetworkId, Arc<dyn Adapter>> = HashMap::new();
        networks.insert(ETH, hub.adapters[&ETH].clone());
        let ingress = Arc::new(EvidenceIngress::new(
            networks,
            hub.core.driver().clone(),
            hub.db.clone(),
            Arc::new(now_secs),
        ));
        let stop = hub.core.stop_token();
        let serving = ingress.clone().serve(endpoint, stop.cancelled_owned());
        let mut hub = hub;
        hub.core.spawn(serving);

        let dir = tempfile::tempdir().expect("tempdir");
        let genesis = hub
            .eth
            .raw("eth_getBlockByNumber", json!(["0x0", false]))
            .await
            .expect("genesis block");
        let key = format!(
            "{}:{}",
            hub.eth.config.chain_id,
            genesis["hash"].as_str().expect("genesis hash")
        );
        let record = dir.path().join("deployments.json");
        let deployment = serde_json::to_value(hub.eth.adapter.deployment()).expect("deployment");
        std::fs::write(&record, json!({ key: deployment }).to_string()).expect("write record");
        RelayedHub {
            hub,
            ingress,
            ingress_addr,
            ingress_id: ingress_key.id(),
            record,
            dir,
        }
    }

    /// Write the config of relayer `name` (its own key and data dir) for the anvil link.
    fn relayer_config(&self, name: &str) -> (PathBuf, PathBuf) {
        let base = self.dir.path().join(name);
        std::fs::create_dir_all(&base).expect("relayer dir");
        let key_file = base.join("relayer.key");
        let seed: Vec<u8> = name.bytes().cycle().take(32).collect();
        std::fs::write(&key_file, hex::encode(seed)).expect("key file");
        let cfg = &self.hub.eth.config;
        let attesters: Vec<String> = cfg.attesters.iter().map(|a| format!("{a:?}")).collect();
        let text = format!(
            r#"key_file = {key:?}
data_dir = {data:?}

[[link]]
name = "anvil-evidence"
transport = "tcp"
network = {hub_net}
hub_addr = "{addr}"
hub_id = "{hub_id}"
receipt_timeout_ms = 5000
retry_base_ms = 100
retry_max_ms = 1000
idle_poll_ms = 100

[link.source]
kind = "evm"
page = 100
poll_ms = 100

[link.source.evm]
network = {eth}
name = "anvil"
rpc_url = {rpc:?}
chain_id = {chain}
confirmations = {conf}
poll_interval_ms = 200
attesters = [{attesters}]
threshold = {threshold}
relayer = {relayer:?}
contracts_record = {record:?}
"#,
            key = key_file.display().to_string(),
            data = base.join("data").display().to_string(),
            hub_net = HUB_NET.0,
            addr = self.ingress_addr,
            hub_id = self.ingress_id,
            eth = ETH.0,
            rpc = cfg.rpc_url,
            chain = cfg.chain_id,
            conf = ETH_CONFIRMATIONS,
            attesters = attesters.join(", "),
            threshold = cfg.threshold,
            relayer = cfg.relayer,
            record = self.record.display().to_string(),
        );
        let path = base.join("relayer.toml");
        std::fs::write(&path, text).expect("relayer config");
        (path, base.join("relayer.log"))
    }

    /// The journal sequence of the instance behind `api_id`.
    fn seq(&self, api_id: &str) -> u64 {
        self.hub
            .core
            .driver()
            .journal()
            .get_by_api_id(api_id)
            .expect("journal read")
            .expect("instance exists")
            .seq
    }

    /// The lock observations (seen or final) applied to the instance behind `api_id`
    /// after journal sequence `seq`: what a wrongly accepted relayed item would add. Other
    /// events (the hub's own clock and action results) may land meanwhile and are not
    /// counted.
    fn lock_events_since(&self, api_id: &str, seq: u64) -> Vec<String> {
        let journal = self.hub.core.driver().journal();
        let inst = journal
            .get_by_api_id(api_id)
            .expect("journal read")
            .expect("instance exists");
        journal
            .events(&inst.contract.id())
            .expect("journal events")
            .into_iter()
            .skip(usize::try_from(seq).expect("seq fits"))
            .filter(|e| {
                matches!(
                    e,
                    isthmus_interop::ContractEvent::TwoPhase(
                        isthmus_lock_contracts::TwoPhaseEvent::LockObserved { .. }
                            | isthmus_lock_contracts::TwoPhaseEvent::LockFinalized { .. }
                    )
                )
            })
            .map(|e| format!("{e:?}"))
            .collect()
    }

    fn applied(&self) -> u64 {
        self.ingress.stats.applied.load(Ordering::Relaxed)
    }

    /// Post the ERC-20 transfer (e0's tokens to e1 on anvil against Bob's native coins to
    /// Alice); its API id.
    async fn post_erc20(&self, key: &str) -> String {
        let [e0, e1] = self.hub.eth.accounts();
        let token = self.hub.eth.token_asset();
        let (alice, bob) = (
            TwoPhaseHub::native_addr(&self.hub.alice),
            TwoPhaseHub::native_addr(&self.hub.bob),
        );
        let body = json!({
            "source": leg("anvil", &token.0, TOKENS, &e0.0, &e1.0, "hub_wallet"),
            "counter": leg("native", ASSET, NATIVE_AMOUNT, &bob, &alice, "hub_wallet"),
            "timeout_secs": 240,
        });
        let (code, created) = self.hub.post_transfer(key, &body).await;
        assert_eq!(code, 202, "{created}");
        created["id"].as_str().expect("id").to_owned()
    }

    async fn tokens(&self, who: &Address) -> u128 {
        self.hub
            .eth
            .adapter
            .balance(who, &self.hub.eth.token_asset())
            .await
            .expect("token balance")
            .0
    }

    async fn eth_head(&self) -> u64 {
        let v = self
            .hub
            .eth
            .raw("eth_blockNumber", json!([]))
            .await
            .expect("head");
        u64::from_str_radix(v.as_str().expect("hex").trim_start_matches("0x"), 16).expect("hex")
    }
}

/// Balances before a transfer, to check the exact outcome after it.
struct Before {
    native: [u128; 4],
    tokens: [u128; 2],
    nonce: u64,
}

impl Before {
    async fn take(r: &RelayedHub) -> Before {
        let [e0, e1] = r.hub.eth.accounts();
        Before {
            native: r.hub.balances().await,
            tokens: [r.tokens(&e0).await, r.tokens(&e1).await],
            nonce: r.hub.eth_nonce(&e0).await,
        }
    }

    /// Released both ways, each side locked and paid out once, escrows empty.
    async fn check_delivered_once(&self, r: &RelayedHub, api_id: &str) {
        let [e0, e1] = r.hub.eth.accounts();
        let rec = r
            .hub
            .recorded(api_id)
            .await
            .expect("a decision on the hub chain");
        assert_eq!(rec.decision, AttestedDecision::Validated);
        assert_eq!(
            r.hub.eth_nonce(&e0).await,
            self.nonce + 2,
            "e0 sent one approve and one lock, nothing twice"
        );
        let after = r.hub.balances().await;
        assert_eq!(
            [after[0], after[1]],
            [
                self.native[0] + NATIVE_AMOUNT,
                self.native[1] - NATIVE_AMOUNT
            ],
            "native alice/bob: one release on the native chain"
        );
        assert_eq!(
            [r.tokens(&e0).await, r.tokens(&e1).await],
            [self.tokens[0] - TOKENS, self.tokens[1] + TOKENS],
            "token e0/e1"
        );
        let escrow = Address(format!("{}", r.hub.eth.adapter.deployment().escrow));
        assert_eq!(r.tokens(&escrow).await, 0, "the EVM escrow holds no token");
        assert_eq!(r.hub.escrowed().await, (0, 0), "both escrows are empty");
    }
}

/// Flow 3 across a relayer restart: the relayer process is SIGKILLed after the token lock
/// is mined and before it is final; while it is down the lock becomes final on anvil and
/// the hub learns nothing (no watcher); restarted on the same data dir, it carries the
/// lock's evidence and later the release's, and the transfer completes exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erc20_anvil_to_native_is_delivered_exactly_once_across_a_relayer_restart() {
    let r = RelayedHub::boot().await;
    let before = Before::take(&r).await;
    let (config, log) = r.relayer_config("relayer-a");
    let relayer = RelayerProc::start(&config, &log);

    let start = Instant::now();
    let api_id = r.post_erc20("erc20-relayer-restart").await;
    let [e0, _] = r.hub.eth.accounts();
    let deadline = Instant::now() + Duration::from_secs(60);
    while r.hub.eth_nonce(&e0).await < before.nonce + 2 {
        assert!(Instant::now() < deadline, "the token lock never went out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The lock is mined, not final (it needs ETH_CONFIRMATIONS more blocks): kill -9.
    let mined_at = r.eth_head().await;
    assert_eq!(r.applied(), 0, "nothing relayed before the lock is final");
    relayer.kill9();
    let killed = Instant::now();
    assert!(
        !r.hub.instance(&api_id).legs[LegId::A].is_final(),
        "the hub saw the lock final before it could be"
    );

    // The lock becomes final on anvil while no relayer runs: the hub has no other source.
    let deadline = Instant::now() + Duration::from_secs(60);
    while r.eth_head().await < mined_at + u64::from(ETH_CONFIRMATIONS) + 1 {
        assert!(Instant::now() < deadline, "anvil stopped mining");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !r.hub.instance(&api_id).legs[LegId::A].is_final(),
        "the anvil lock reached the hub without a relayer"
    );
    assert_eq!(r.applied(), 0);

    let relayer = RelayerProc::start(&config, &log);
    let down = killed.elapsed();
    let t = r
        .hub
        .until_terminal(&api_id, Duration::from_secs(180))
        .await;
    let total = start.elapsed();
    assert_eq!(t.last["state"], "released", "{}", t.last);
    before.check_delivered_once(&r, &api_id).await;

    // The restarted relayer delivered the anvil leg's lock final and its release; whatever
    // came twice was answered as a duplicate (or, once the transfer ended, ignored), and
    // nothing was refused.
    let s = &r.ingress.stats;
    let (applied, dups, ignored, rejected) = (
        s.applied.load(Ordering::Relaxed),
        s.duplicates.load(Ordering::Relaxed),
        s.ignored.load(Ordering::Relaxed),
        s.rejected.load(Ordering::Relaxed),
    );
    assert_eq!(
        applied, 2,
        "lock final + release of the anvil leg, each once"
    );
    assert_eq!(rejected, 0, "no relayed item was refused");
    drop(relayer);
    println!(
        "flow 3 erc20 anvil->native across a relayer restart (SIGKILL between lock and \
         finality, down {:.2}s): {}; evidence ingress: {applied} \
         applied, {dups} duplicate, {ignored} ignored, {rejected} refused",
        secs(down),
        split_text(total, reactions(&r.hub, &t, 1)),
    );
    r.hub.shutdown().await;
}

/// Two relayer processes (own keys, own data dirs) serve the same anvil link: every
/// event reaches the hub twice, and the transfer is still delivered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relayers_on_one_link_deliver_the_erc20_transfer_once() {
    let r = RelayedHub::boot().await;
    let before = Before::take(&r).await;
    let relayers: Vec<RelayerProc> = ["relayer-a", "relayer-b"]
        .iter()
        .map(|n| {
            let (config, log) = r.relayer_config(n);
            RelayerProc::start(&config, &log)
        })
        .collect();
    let start = Instant::now();
    let api_id = r.post_erc20("erc20-two-relayers").await;
    let t = r
        .hub
        .until_terminal(&api_id, Duration::from_secs(180))
        .await;
    assert_eq!(t.last["state"], "released", "{}", t.last);
    before.check_delivered_once(&r, &api_id).await;
    // Both relayers carry both events; wait (bounded) until the second copies are answered.
    let s = &r.ingress.stats;
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.duplicates.load(Ordering::Relaxed) + s.ignored.load(Ordering::Relaxed) < 2 {
        assert!(
            Instant::now() < deadline,
            "the second relayer's copies were never answered: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.applied.load(Ordering::Relaxed), 2, "{s:?}");
    assert_eq!(s.rejected.load(Ordering::Relaxed), 0, "{s:?}");
    println!(
        "flow 3 erc20 anvil->native through two relayers: {}; \
         evidence ingress: {} applied, {} duplicate, {} ignored",
        split_text(t.end - start, reactions(&r.hub, &t, 1)),
        s.applied.load(Ordering::Relaxed),
        s.duplicates.load(Ordering::Relaxed),
        s.ignored.load(Ordering::Relaxed),
    );
    drop(relayers);
    r.hub.shutdown().await;
}

/// What the ingress refuses, with the real anvil adapter: a network it does not observe,
/// a forged event (the lock's amount changed), and evidence of another transaction. Each
/// refusal is typed, counted, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_misdirected_evidence_is_refused_and_changes_nothing() {
    let r = RelayedHub::boot().await;
    let api_id = r.post_erc20("erc20-forged").await;
    // The lock (hub wallet) goes out and becomes final; no relayer runs, so the hub waits.
    let mut lock = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while lock.is_none() {
        assert!(Instant::now() < deadline, "the token lock never went final");
        let id = r.hub.instance(&api_id).lock_id(LegId::A);
        if let Some(s) = r.hub.adapters[&ETH]
            .lock_state(&id)
            .await
            .expect("lock state")
        {
            if s.is_final {
                lock = Some(s.observation);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lock = lock.expect("final lock");
    let adapter = &r.hub.adapters[&ETH];
    let evidence = adapter.evidence(&lock.tx).await.expect("evidence");
    let seq = r.seq(&api_id);
    let item = |network, event| RelayedEvidence {
        network,
        event,
        evidence: evidence.clone(),
    };
    let code = |o: EvidenceOutcome| match o {
        EvidenceOutcome::Rejected { code, .. } => code,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let final_event = |l: &isthmus_lock_contracts::LockObservation| {
        isthmus_adapter_api::EventKind::LockFinal { lock: l.clone() }
    };
    // Another network.
    let o = r.ingress.process(&item(NATIVE, final_event(&lock))).await;
    assert_eq!(code(o), "unknown_network");
    // A forged amount.
    let mut forged = lock.clone();
    forged.amount = isthmus_lock_contracts::Amount(lock.amount.0 * 2);
    let o = r.ingress.process(&item(ETH, final_event(&forged))).await;
    assert_eq!(code(o), "event_mismatch");
    // Evidence that does not prove the lock: its first header (the lock's block) is cut.
    let mut wrong = item(ETH, final_event(&lock));
    match &mut wrong.evidence {
        isthmus_adapter_api::Evidence::EvmReceipt { headers, .. } => {
            headers.remove(0);
        }
        other => panic!("anvil gave {} evidence", other.kind_name()),
    }
    let o = r.ingress.process(&wrong).await;
    assert_eq!(code(o), "bad_evidence");
    assert_eq!(r.ingress.stats.rejected.load(Ordering::Relaxed), 3);
    assert_eq!(r.ingress.stats.rejected_with("event_mismatch"), 1);
    assert_eq!(r.applied(), 0);
    assert_eq!(
        r.lock_events_since(&api_id, seq),
        Vec::<String>::new(),
        "nothing changed"
    );
    assert!(!r.hub.instance(&api_id).legs[LegId::A].is_final());
    // The genuine item is applied, once.
    let o = r.ingress.process(&item(ETH, final_event(&lock))).await;
    assert_eq!(o, EvidenceOutcome::Applied);
    let o = r.ingress.process(&item(ETH, final_event(&lock))).await;
    assert_eq!(o, EvidenceOutcome::Duplicate);
    assert!(r.hub.instance(&api_id).legs[LegId::A].is_final());
    r.hub.shutdown().await;
}
