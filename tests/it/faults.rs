//! Chain faults through the hub's HTTP API, against the real nodes: an anvil lock reorged
//! out before its confirmation depth, a litecoind lock block invalidated before its depth, a
//! transaction sent from a hub key behind its adapter's back, and litecoind killed and
//! restarted in the middle of a swap. Each test asserts what the API showed (and never
//! showed), the balances, the escrows, and which transactions the chains hold.

use crate::hub::*;
use crate::swap::{
    alice_claims_eth, balances, leg_state, ltc_txs, parties, swap_body, Parties, LTC_AMOUNT,
};
use crate::twophase::{gas_paid, Direction, TwoPhaseHub, ETH_AMOUNT as TRANSFER_ETH};
use alloy::eips::eip2718::Encodable2718;
use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address as EvmAddress, B256, U256};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use isthmus_adapter_api::{Adapter, LockRequest, LockTerms, SecretKey, SignatureScheme, Wallet};
use isthmus_adapter_evm::anvil::AnvilFixture;
use isthmus_adapter_testkit::conformance::Fixture;
use isthmus_chain::escrow::AttestedDecision;
use isthmus_core::HashAlgo;
use isthmus_lock_contracts::{Address, LegId, Preimage};
use serde_json::{json, Value};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Every distinct status the API showed for one operation (state, reason, leg states,
/// decision), polled every 20 ms in the background until dropped: what the hub never said
/// is part of what these tests assert.
struct StatusLog {
    seen: Arc<Mutex<Vec<Value>>>,
    task: JoinHandle<()>,
}

impl StatusLog {
    /// Follow `GET /v1/{path}` (e.g. `transfers/{id}`).
    fn follow(addr: SocketAddr, path: String) -> StatusLog {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            let url = format!("http://{addr}/v1/{path}");
            loop {
                let got = http.get(&url).bearer_auth(API_KEY).send().await;
                if let Ok(v) = match got {
                    Ok(resp) => resp.json::<Value>().await,
                    Err(e) => Err(e),
                } {
                    let snap = json!({
                        "state": v["state"],
                        "reason": v["reason"],
                        "legs": [v["legs"][0]["state"], v["legs"][1]["state"]],
                        "decision": v["detail"]["decision"],
                    });
                    let mut log = log.lock().expect("status log");
                    if log.last() != Some(&snap) {
                        log.push(snap);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        StatusLog { seen, task }
    }

    fn seen(&self) -> Vec<Value> {
        self.seen.lock().expect("status log").clone()
    }

    /// The statuses in one line: `state/reason[leg a, leg b]` each.
    fn summary(&self) -> String {
        self.seen()
            .iter()
            .map(|s| {
                let t = |v: &Value| v.as_str().unwrap_or("-").to_owned();
                format!(
                    "{}/{}[{},{}]",
                    t(&s["state"]),
                    t(&s["reason"]),
                    t(&s["legs"][0]),
                    t(&s["legs"][1])
                )
            })
            .collect::<Vec<_>>()
            .join(" -> ")
    }

    /// Whether any status showed leg `leg` in `state`.
    fn leg_ever(&self, leg: usize, state: &str) -> bool {
        self.seen().iter().any(|s| s["legs"][leg] == state)
    }
}

impl Drop for StatusLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Poll `probe` every 20 ms until it yields a value; fail naming `what` after `within`.
async fn until<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn quantity(v: &Value) -> u64 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{v} is not a hex quantity"));
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex quantity")
}

async fn eth_height(eth: &AnvilFixture) -> u64 {
    quantity(
        &eth.raw("eth_blockNumber", json!([]))
            .await
            .expect("block number"),
    )
}

/// Every transaction `from` sent in anvil blocks `blocks`, in chain order.
async fn eth_txs_from(
    eth: &AnvilFixture,
    from: &Address,
    blocks: std::ops::RangeInclusive<u64>,
) -> Vec<Value> {
    let mut out = Vec::new();
    for n in blocks {
        let b = eth
            .raw("eth_getBlockByNumber", json!([format!("{n:#x}"), true]))
            .await
            .expect("block");
        for tx in b["transactions"].as_array().expect("full transactions") {
            if tx["from"]
                .as_str()
                .is_some_and(|f| f.eq_ignore_ascii_case(&from.0))
            {
                out.push(tx.clone());
            }
        }
    }
    out
}

/// Sign a 1-wei transfer with `who`'s key straight from the fixture's wallet, with `nonce`,
/// and send it to anvil raw: the adapter that normally signs for `who` knows nothing of it.
async fn send_behind_the_adapters_back(eth: &AnvilFixture, who: &Address, nonce: u64) -> String {
    let Some(SecretKey::Secp256k1(secret)) = eth
        .wallet
        .key_for(SignatureScheme::Secp256k1Ecdsa, who)
        .expect("wallet readable")
    else {
        panic!("the fixture's wallet holds no secp256k1 key for {who}");
    };
    let signer = PrivateKeySigner::from_bytes(&B256::from(*secret)).expect("a valid key");
    let latest = eth
        .raw("eth_getBlockByNumber", json!(["latest", false]))
        .await
        .expect("latest block");
    let base = u128::from(quantity(&latest["baseFeePerGas"]));
    let env = TransactionRequest::default()
        .with_to(EvmAddress::repeat_byte(0x42))
        .with_value(U256::from(1u64))
        .with_nonce(nonce)
        .with_chain_id(eth.config.chain_id)
        .with_gas_limit(21_000)
        .with_max_fee_per_gas(base * 2 + 1_000_000_000)
        .with_max_priority_fee_per_gas(1_000_000_000)
        .build(&EthereumWallet::from(signer))
        .await
        .expect("signed");
    let raw = format!("0x{}", hex::encode(env.encoded_2718()));
    eth.raw("eth_sendRawTransaction", json!([raw]))
        .await
        .expect("anvil takes the raw transaction")
        .as_str()
        .expect("tx hash")
        .to_owned()
}

/// Issue #5: "a lock seen and then reorged out must never lead to a release on the other
/// chain". Alice's native counter-value is locked by the hub's wallet and final; the
/// customer's own anvil lock is included and, one block deep (depth 2 needed), reorged out
/// with `anvil_reorg`. The hub shows the lock seen, then withdrawn; it never records
/// Validated, never releases, and at the deadline records Aborted and refunds Alice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anvil_lock_reorged_out_before_depth_is_never_validated_and_the_native_leg_is_refunded() {
    const TIMEOUT: u64 = 20;
    let hub = TwoPhaseHub::boot().await;
    let [e0, _] = hub.eth.accounts();
    let before = hub.balances().await;
    let nonce_before = hub.eth_nonce(&e0).await;
    // Source: anvil, e0 -> e1, locked by its owner; counter: native, Alice -> Bob, locked
    // by the hub's wallet at once.
    let mut body = Direction::AnvilToNative.legs(&hub, "hub_wallet");
    body["source"]["lock_by"] = json!("owner");
    body["timeout_secs"] = json!(TIMEOUT);
    let start = Instant::now();
    let (code, created) = hub.post_transfer("evm-reorg", &body).await;
    assert_eq!(code, 202, "{created}");
    let api_id = created["id"].as_str().expect("id").to_owned();
    let log = StatusLog::follow(hub.api(), format!("transfers/{api_id}"));

    // The native lock is final first, so a lock on anvil counted as final would be enough
    // for the hub to validate.
    until(Duration::from_secs(60), "native lock final", || async {
        let v = hub.get_transfer(&api_id).await;
        (v["legs"][1]["state"] == "locked").then_some(())
    })
    .await;
    let native_final = start.elapsed();

    // anvil stops making blocks; e0 locks (anvil mines the lock alone, one block deep).
    hub.eth_paused.store(true, Ordering::SeqCst);
    let m = hub.instance(&api_id);
    let req = LockRequest {
        lock_id: m.lock_id(LegId::A),
        leg: m.spec.leg(LegId::A).clone(),
        terms: LockTerms::TwoPhase,
    };
    let lock_tx = hub.eth.adapter.lock(&req).await.expect("e0 locks").0;
    let lock_height = quantity(
        &hub.eth
            .raw("eth_getTransactionReceipt", json!([lock_tx]))
            .await
            .expect("lock receipt")["blockNumber"],
    );
    assert_eq!(eth_height(&hub.eth).await, lock_height, "one block deep");
    let seen = until(Duration::from_secs(30), "anvil lock seen", || async {
        let v = hub.get_transfer(&api_id).await;
        (v["legs"][0]["state"] == "lock_seen").then_some(v)
    })
    .await;
    assert_eq!(seen["legs"][0]["evidence"]["lock"]["tx"], lock_tx.as_str());
    assert_eq!(seen["reason"], "awaiting_finality", "{seen}");

    // The lock's block is replaced by an empty one: the lock is gone from the chain.
    let t_reorg = Instant::now();
    hub.eth
        .raw("anvil_reorg", json!([1, []]))
        .await
        .expect("anvil_reorg");
    assert_eq!(
        hub.eth
            .raw("eth_getTransactionReceipt", json!([lock_tx]))
            .await
            .expect("receipt query"),
        Value::Null,
        "the reorged lock has no receipt"
    );
    let withdrawn = until(Duration::from_secs(30), "lock withdrawn", || async {
        let v = hub.get_transfer(&api_id).await;
        (v["legs"][0]["state"] == "unlocked").then_some(v)
    })
    .await;
    let reaction = t_reorg.elapsed();
    assert_eq!(withdrawn["terminal"], false, "{withdrawn}");
    hub.eth_paused.store(false, Ordering::SeqCst);

    let t = hub
        .until_terminal(&api_id, Duration::from_secs(TIMEOUT + 120))
        .await;
    let total = start.elapsed();
    let done = &t.last;
    assert_eq!(done["state"], "refunded", "{done}");
    assert_eq!(done["legs"][0]["state"], "unlocked", "{done}");
    assert_eq!(done["legs"][1]["state"], "refunded", "{done}");
    assert!(total >= Duration::from_secs(TIMEOUT - 1), "refunded early");
    let rec = hub
        .recorded(&api_id)
        .await
        .expect("a decision on the hub chain");
    assert_eq!(rec.decision, AttestedDecision::Aborted);
    // Never validated, never released, never showed the anvil lock final.
    let statuses = log.seen();
    assert!(
        statuses.iter().all(|s| s["decision"] != "validated"
            && s["state"] != "releasing"
            && s["state"] != "released"),
        "{statuses:#?}"
    );
    assert!(!log.leg_ever(0, "locked"), "{statuses:#?}");
    assert!(!log.leg_ever(1, "released"), "{statuses:#?}");
    // On anvil the lock never happened: e0 sent nothing that stuck and paid nothing.
    assert_eq!(hub.eth_nonce(&e0).await, nonce_before, "e0's lock is gone");
    assert_eq!(
        hub.balances().await,
        before,
        "native alice/bob and anvil e0/e1 exactly as before"
    );
    assert_eq!(hub.escrowed().await, (0, 0), "both escrows are empty");
    println!(
        "fault evm reorg over http: request->refunded {:.2}s with a {TIMEOUT}s timeout \
         ({:.2}s after the deadline); native lock final after {:.2}s; reorg->api shows the \
         lock withdrawn {:.2}s; api showed {}",
        secs(total),
        secs(total) - TIMEOUT as f64,
        secs(native_final),
        secs(reaction),
        log.summary(),
    );
    drop(log);
    hub.shutdown().await;
}

/// The hub's EVM relayer key sends a transaction the adapter knows nothing about, taking
/// the nonce the adapter has cached for its next transaction (the release). The release
/// hits "nonce too low", the adapter resyncs from the chain, and the transfer completes
/// with exactly one release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_from_the_relayer_key_behind_the_adapters_back_is_resynced_and_released_once()
{
    let hub = TwoPhaseHub::boot().await;
    let relayer = hub.eth.relayer.clone();
    let before = hub.balances().await;
    let relayer_nonce = hub.eth_nonce(&relayer).await;
    let first_block = eth_height(&hub.eth).await + 1;
    let mut body = Direction::NativeToAnvil.legs(&hub, "hub_wallet");
    body["timeout_secs"] = json!(240);
    let start = Instant::now();
    let (code, created) = hub.post_transfer("nonce-resync", &body).await;
    assert_eq!(code, 202, "{created}");
    let api_id = created["id"].as_str().expect("id").to_owned();
    let log = StatusLog::follow(hub.api(), format!("transfers/{api_id}"));

    let behind = send_behind_the_adapters_back(&hub.eth, &relayer, relayer_nonce).await;
    let now = hub.get_transfer(&api_id).await;
    assert_ne!(
        now["legs"][1]["state"], "released",
        "the release must come after the stray transaction: {now}"
    );

    let t = hub.until_terminal(&api_id, Duration::from_secs(180)).await;
    let total = start.elapsed();
    let done = &t.last;
    assert_eq!(done["state"], "released", "{done}");
    assert_eq!(done["legs"][0]["state"], "released", "{done}");
    assert_eq!(done["legs"][1]["state"], "released", "{done}");
    let release_tx = done["legs"][1]["evidence"]["tx"]
        .as_str()
        .expect("release tx")
        .to_owned();

    // On chain, the relayer key sent exactly two transactions since the request: the stray
    // one with the nonce the adapter had cached, then the one release with the next.
    let txs = eth_txs_from(&hub.eth, &relayer, first_block..=eth_height(&hub.eth).await).await;
    let summary: Vec<(String, u64)> = txs
        .iter()
        .map(|tx| {
            (
                tx["hash"].as_str().expect("hash").to_owned(),
                quantity(&tx["nonce"]),
            )
        })
        .collect();
    assert_eq!(summary.len(), 2, "{summary:?}");
    assert_eq!(summary[0], (behind.clone(), relayer_nonce), "{summary:?}");
    assert!(
        summary[1].0.eq_ignore_ascii_case(&release_tx) && summary[1].1 == relayer_nonce + 1,
        "release {release_tx} with nonce {}: {summary:?}",
        relayer_nonce + 1
    );
    let escrow = format!("{}", hub.eth.adapter.deployment().escrow);
    assert!(
        txs[1]["to"]
            .as_str()
            .is_some_and(|to| to.eq_ignore_ascii_case(&escrow)),
        "the release calls the escrow {escrow}: {}",
        txs[1]
    );
    assert_eq!(hub.eth_nonce(&relayer).await, relayer_nonce + 2);
    let receipt = hub
        .eth
        .raw("eth_getTransactionReceipt", json!([release_tx]))
        .await
        .expect("release receipt");
    assert_eq!(receipt["status"], "0x1", "{receipt}");

    // Exactly one payout each way; e0 paid its lock's gas.
    let lock_tx = hub.lock_tx(&api_id, LegId::B).expect("the eth lock tx");
    let gas = hub.gas_paid(&lock_tx).await;
    assert_eq!(
        hub.balances().await,
        [
            before[0] - crate::twophase::NATIVE_AMOUNT,
            before[1] + crate::twophase::NATIVE_AMOUNT,
            before[2] - TRANSFER_ETH - gas,
            before[3] + TRANSFER_ETH,
        ],
        "native alice/bob, anvil e0/e1; e0's lock gas {gas}"
    );
    assert_eq!(hub.escrowed().await, (0, 0), "both escrows are empty");
    assert!(!log.leg_ever(0, "refunded") && !log.leg_ever(1, "refunded"));
    println!(
        "fault nonce resync over http: request->released {:.2}s; a stray transaction from \
         the relayer key took nonce {relayer_nonce} right after the request, the release went \
         out with nonce {}; api showed {}",
        secs(total),
        relayer_nonce + 1,
        log.summary(),
    );
    drop(log);
    hub.shutdown().await;
}

/// Alice's secret and its hashlock, for the swaps below.
fn secret(tag: &str) -> ([u8; 32], String) {
    let secret = HashAlgo::Sha256.digest(tag.as_bytes()).0;
    (secret, Preimage(secret).hashlock().to_hex())
}

async fn ltc_mempool(hub: &Hub) -> Vec<String> {
    hub.ltc.node.call("getrawmempool", vec![]).await
}

async fn ltc_height(hub: &Hub) -> u64 {
    hub.ltc.node.call("getblockcount", vec![]).await
}

/// Balances after a completed swap, exactly: Alice's LTC and Bob's ETH went to each other
/// (the hub's fee payer pays the LTC fees; Bob pays his ETH lock's gas, the relayer the
/// claims').
async fn assert_swapped_exactly(hub: &Hub, p: &Parties, before: &[u128; 4], done: &Value) {
    let eth_lock = done["legs"][1]["evidence"]["lock"]["tx"]
        .as_str()
        .expect("the eth lock tx");
    let gas = gas_paid(&hub.eth, eth_lock).await;
    let swapped_eth = crate::swap::ETH_AMOUNT;
    assert_eq!(
        balances(hub, p).await,
        [
            before[0] - LTC_AMOUNT,
            before[1] + LTC_AMOUNT,
            before[2] - swapped_eth - gas,
            before[3] + swapped_eth,
        ],
        "alice/bob LTC, bob/alice ETH; bob's lock gas {gas}"
    );
}

/// An LTC -> ETH swap whose LTC lock block is invalidated one block deep (depth 2 needed):
/// the hub shows the lock seen, then withdrawn, and Bob's ETH is not locked on its account.
/// The funding transaction is then mined again in a block of the new branch; once that
/// block is deep enough the swap proceeds and completes, with one funding on chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ltc_lock_block_invalidated_before_depth_locks_nothing_on_anvil_until_it_is_mined_again() {
    let hub = Hub::boot().await;
    let p = parties(&hub);
    let before = balances(&hub, &p).await;
    let (secret, hashlock) = secret("ltc reorg swap secret");
    // litecoind makes blocks only when this test says.
    hub.ltc_paused.store(true, Ordering::SeqCst);
    let h0 = ltc_height(&hub).await;
    let start = Instant::now();
    let (api_id, _) = hub
        .create_swap(
            "ltc-reorg",
            &swap_body(&p, &hashlock, 600, 300, "hub_wallet"),
        )
        .await;
    let log = StatusLog::follow(hub.addr, format!("swaps/{api_id}"));

    // The hub's wallet funds the HTLC; the funding is mined one block deep (block X).
    let pool = until(
        Duration::from_secs(30),
        "ltc funding in the mempool",
        || async {
            let pool = ltc_mempool(&hub).await;
            (!pool.is_empty()).then_some(pool)
        },
    )
    .await;
    assert_eq!(pool.len(), 1, "one funding: {pool:?}");
    let funding = pool[0].clone();
    let x = hub.ltc.node.generate(1, &hub.ltc.miner).await[0].clone();
    let seen = hub
        .until(&api_id, Duration::from_secs(30), |v| {
            leg_state(v, 0) == "lock_seen"
        })
        .await;
    assert_eq!(seen["legs"][0]["evidence"]["lock"]["tx"], funding.as_str());
    assert_eq!(seen["legs"][0]["evidence"]["lock"]["height"], h0 + 1);

    // Block X is invalidated and a longer branch without the funding is mined (the funding
    // is kept out of it, as a competing miner would).
    let t_reorg = Instant::now();
    let _: Value = hub.ltc.node.call("invalidateblock", vec![json!(x)]).await;
    let withheld = hub.ltc.withhold_mempool().await;
    assert!(withheld.contains(&funding), "{withheld:?}");
    hub.ltc.node.generate(2, &hub.ltc.other_miner).await;
    let withdrawn = hub
        .until(&api_id, Duration::from_secs(30), |v| {
            leg_state(v, 0) == "unlocked"
        })
        .await;
    let reaction = t_reorg.elapsed();
    assert_eq!(leg_state(&withdrawn, 1), "unlocked", "{withdrawn}");
    // Nothing happened on anvil on the withdrawn lock's account.
    assert_eq!(
        &balances(&hub, &p).await[2..],
        &before[2..],
        "bob's and alice's ETH"
    );
    let x_header: Value = hub.ltc.node.call("getblockheader", vec![json!(x)]).await;
    assert_eq!(x_header["confirmations"], -1, "block X is off the chain");

    // The funding goes into a block of the new branch (Y, at h0 + 3); blocks resume.
    let _: bool = hub
        .ltc
        .node
        .call(
            "prioritisetransaction",
            vec![json!(funding), json!(0), json!(100_000_000)],
        )
        .await;
    let y = hub.ltc.node.generate(1, &hub.ltc.miner).await[0].clone();
    let y_block: Value = hub.ltc.node.call("getblock", vec![json!(y)]).await;
    assert!(
        y_block["tx"]
            .as_array()
            .expect("txs")
            .iter()
            .any(|t| t == funding.as_str()),
        "the funding is mined again in Y: {y_block}"
    );
    let t_remined = Instant::now();
    hub.ltc_paused.store(false, Ordering::SeqCst);
    let locked = hub
        .until(&api_id, Duration::from_secs(60), |v| {
            leg_state(v, 0) == "locked" && leg_state(v, 1) == "locked"
        })
        .await;
    let relocked = t_remined.elapsed();
    assert_eq!(
        locked["legs"][0]["evidence"]["lock"]["tx"],
        funding.as_str()
    );
    assert_eq!(locked["legs"][0]["evidence"]["lock"]["height"], h0 + 3);

    alice_claims_eth(&hub, &api_id, secret).await;
    let done = hub
        .until(&api_id, Duration::from_secs(120), |v| v["terminal"] == true)
        .await;
    let total = start.elapsed();
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(leg_state(&done, 0), "claimed", "{done}");
    assert_eq!(leg_state(&done, 1), "claimed", "{done}");
    // Bob's ETH was locked only after the LTC lock was final (in Y): until the API first
    // showed the LTC leg locked, the ETH leg showed unlocked.
    let statuses = log.seen();
    let first_final = statuses
        .iter()
        .position(|s| s["legs"][0] == "locked")
        .expect("the ltc leg showed locked");
    assert!(
        statuses[..first_final]
            .iter()
            .all(|s| s["legs"][1] == "unlocked"),
        "{statuses:#?}"
    );
    assert_swapped_exactly(&hub, &p, &before, &done).await;
    // One funding of the HTLC on the chain (the same transaction, mined once in Y).
    let fundings: Vec<String> = ltc_txs(&hub, h0 + 1, ltc_height(&hub).await)
        .await
        .into_iter()
        .filter(|t| {
            t.outputs
                .iter()
                .any(|(v, s)| *v == LTC_AMOUNT as u64 && s.starts_with("0020") && s.len() == 68)
        })
        .map(|t| t.txid)
        .collect();
    assert_eq!(fundings, vec![funding.clone()]);
    println!(
        "fault ltc reorg over http: request->completed {:.2}s; invalidate->api shows the \
         lock withdrawn {:.2}s; re-mined->both legs locked {:.2}s ({LTC_CONFIRMATIONS} ltc / \
         {ETH_CONFIRMATIONS} eth confirmations, blocks every {:.1}s); api showed {}",
        secs(total),
        secs(reaction),
        secs(relocked),
        secs(LTC_BLOCK),
        log.summary(),
    );
    drop(log);
    hub.shutdown().await;
}

/// litecoind is SIGKILLed once both swap legs are locked; Alice then claims the ETH. While
/// the node is down the hub cannot claim the LTC for Bob: the API shows the swap claiming,
/// not terminal, and `GET /v1/networks` shows litecoin down with a reason. litecoind is
/// restarted on the same port and datadir; the adapter reconnects and the swap completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litecoind_killed_mid_swap_and_restarted_the_swap_completes() {
    let mut hub = Hub::boot().await;
    let p = parties(&hub);
    let before = balances(&hub, &p).await;
    let (secret, hashlock) = secret("ltc restart swap secret");
    let start = Instant::now();
    let (api_id, _) = hub
        .create_swap(
            "ltc-restart",
            &swap_body(&p, &hashlock, 600, 300, "hub_wallet"),
        )
        .await;
    let log = StatusLog::follow(hub.addr, format!("swaps/{api_id}"));
    hub.until(&api_id, Duration::from_secs(120), |v| {
        leg_state(v, 0) == "locked" && leg_state(v, 1) == "locked"
    })
    .await;
    let locked = start.elapsed();

    // litecoind dies (SIGKILL by pid); then Alice reveals her secret on anvil. A lone
    // regtest node loses every block it has not flushed when killed (a node with peers
    // would fetch them again): the chain state is flushed first (`gettxoutsetinfo` does),
    // with no block made after it, so the node comes back with the chain it had.
    hub.ltc_paused.store(true, Ordering::SeqCst);
    until(
        Duration::from_secs(30),
        "litecoind chain flushed",
        || async {
            let h = ltc_height(&hub).await;
            let _: Value = hub.ltc.node.call("gettxoutsetinfo", vec![]).await;
            (ltc_height(&hub).await == h).then_some(())
        },
    )
    .await;
    let height_at_kill = ltc_height(&hub).await;
    hub.ltc.node.kill();
    let t_down = Instant::now();
    alice_claims_eth(&hub, &api_id, secret).await;
    let stuck = hub
        .until(&api_id, Duration::from_secs(60), |v| {
            leg_state(v, 1) == "claimed" && v["detail"]["secret_revealed"] == true
        })
        .await;
    assert_eq!(leg_state(&stuck, 0), "locked", "{stuck}");
    assert_eq!(stuck["terminal"], false, "{stuck}");
    assert_eq!(stuck["state"], "claiming", "{stuck}");
    // The machine's own reason; a hub that diagnoses a failing action may name that instead.
    let reason = stuck["reason"].as_str().expect("reason");
    assert!(["claiming", "action_retrying"].contains(&reason), "{stuck}");
    let nets = hub.networks().await;
    let net = |name: &str| {
        nets.as_array()
            .expect("networks")
            .iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {nets}"))
            .clone()
    };
    assert_eq!(net("litecoin")["status"], "down", "{nets}");
    assert!(
        net("litecoin")["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{nets}"
    );
    assert_eq!(net("anvil")["status"], "up", "{nets}");
    // Still claiming a moment later: nothing moved while the node was away.
    let again = hub.get_swap(&api_id, 0).await;
    assert_eq!(leg_state(&again, 0), "locked", "{again}");

    // Back on the same port and datadir; blocks resume.
    hub.ltc.node.restart().await;
    let down_for = t_down.elapsed();
    assert_eq!(
        ltc_height(&hub).await,
        height_at_kill,
        "litecoind kept its chain"
    );
    hub.ltc_paused.store(false, Ordering::SeqCst);
    let t_up = Instant::now();
    let done = hub
        .until(&api_id, Duration::from_secs(120), |v| v["terminal"] == true)
        .await;
    let recovery = t_up.elapsed();
    let total = start.elapsed();
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(leg_state(&done, 0), "claimed", "{done}");
    assert_eq!(leg_state(&done, 1), "claimed", "{done}");
    let nets = hub.networks().await;
    assert!(
        nets.as_array()
            .expect("networks")
            .iter()
            .all(|n| n["status"] == "up"),
        "{nets}"
    );
    assert_swapped_exactly(&hub, &p, &before, &done).await;
    let statuses = log.seen();
    assert!(
        statuses
            .iter()
            .all(|s| s["legs"][0] != "refunded" && s["legs"][1] != "refunded"),
        "{statuses:#?}"
    );
    println!(
        "fault litecoind killed and restarted over http: request->completed {:.2}s; both \
         legs locked after {:.2}s; node down {:.2}s (kill, alice's claim, restart); \
         restart->completed {:.2}s ({LTC_CONFIRMATIONS} ltc confirmations, blocks every \
         {:.1}s); api showed {}",
        secs(total),
        secs(locked),
        secs(down_for),
        secs(recovery),
        secs(LTC_BLOCK),
        log.summary(),
    );
    drop(log);
    hub.shutdown().await;
}
