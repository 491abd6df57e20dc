//! Flow 1: an HTLC swap of LTC (litecoind regtest) for ETH (anvil) created over the hub's
//! HTTP API. Alice locks LTC for Bob, Bob locks ETH for Alice, Alice claims the ETH with her
//! secret, and the hub's watcher claims the LTC for Bob with the revealed preimage.

use crate::hub::*;
use isthmus_adapter_api::{Adapter, ClaimRequest};
use isthmus_adapter_testkit::conformance::Fixture;
use isthmus_core::HashAlgo;
use isthmus_interop::{ContractEvent, DriverError};
use isthmus_lock_contracts::{Address, AssetId, HtlcEvent, LegId, LockId, Preimage};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub(crate) const LTC_AMOUNT: u128 = 1_000_000; // 0.01 LTC, in litoshis
pub(crate) const ETH_AMOUNT: u128 = 100_000_000_000_000_000; // 0.1 ETH, in wei

pub(crate) struct Parties {
    pub(crate) alice_ltc: Address,
    pub(crate) bob_ltc: Address,
    pub(crate) bob_eth: Address,
    pub(crate) alice_eth: Address,
}

pub(crate) fn parties(hub: &Hub) -> Parties {
    let [alice_ltc, bob_ltc] = hub.ltc.accounts();
    let [bob_eth, alice_eth] = hub.eth.accounts();
    Parties {
        alice_ltc,
        bob_ltc,
        bob_eth,
        alice_eth,
    }
}

/// Alice's LTC, Bob's LTC, Bob's ETH, Alice's ETH.
pub(crate) async fn balances(hub: &Hub, p: &Parties) -> [u128; 4] {
    let ltc = AssetId("LTC".into());
    let eth = AssetId("native".into());
    let l = |a: &Address| {
        let a = a.clone();
        let ltc = ltc.clone();
        async move {
            hub.ltc
                .adapter
                .balance(&a, &ltc)
                .await
                .expect("ltc balance")
                .0
        }
    };
    let e = |a: &Address| {
        let a = a.clone();
        let eth = eth.clone();
        async move {
            hub.eth
                .adapter
                .balance(&a, &eth)
                .await
                .expect("eth balance")
                .0
        }
    };
    [
        l(&p.alice_ltc).await,
        l(&p.bob_ltc).await,
        e(&p.bob_eth).await,
        e(&p.alice_eth).await,
    ]
}

pub(crate) fn swap_body(p: &Parties, hashlock: &str, t1: u64, t2: u64, bob_locks: &str) -> Value {
    json!({
        "initiator": {"network": "litecoin", "asset": "LTC", "amount": LTC_AMOUNT.to_string(),
                      "from": p.alice_ltc.0, "to": p.bob_ltc.0},
        "participant": {"network": "anvil", "asset": "native", "amount": ETH_AMOUNT.to_string(),
                        "from": p.bob_eth.0, "to": p.alice_eth.0, "lock_by": bob_locks},
        "hashlock": hashlock,
        "initiator_timeout_secs": t1,
        "participant_timeout_secs": t2,
    })
}

/// Alice claims the ETH on anvil with her secret (revealing it there).
pub(crate) async fn alice_claims_eth(hub: &Hub, api_id: &str, secret: [u8; 32]) {
    let instance = hub.instance(api_id).contract.id();
    hub.eth
        .adapter
        .claim(&ClaimRequest {
            lock_id: LockId::derive(instance, LegId::B),
            preimage: Preimage(secret),
        })
        .await
        .expect("alice's claim on anvil");
}

pub(crate) fn leg_state(v: &Value, leg: usize) -> &str {
    v["legs"][leg]["state"].as_str().unwrap_or_default()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ltc_for_eth_swap_over_http_claims_both_legs_with_the_revealed_secret() {
    let hub = Hub::boot().await;
    let p = parties(&hub);
    let before = balances(&hub, &p).await;
    let secret = HashAlgo::Sha256
        .digest(b"alice's swap secret for the e2e run")
        .0;
    let hashlock = Preimage(secret).hashlock().to_hex();

    let start = Instant::now();
    let (api_id, created) = hub
        .create_swap(
            "swap-ltc-eth",
            &swap_body(&p, &hashlock, 600, 300, "hub_wallet"),
        )
        .await;
    assert_eq!(created["detail"]["hashlock"], hashlock.as_str());
    let instance = hub.instance(&api_id).contract.id();

    // A secret that is not 32 bytes is refused and changes nothing.
    for len in [31usize, 33] {
        let err = hub
            .driver
            .apply(
                instance,
                ContractEvent::Htlc(HtlcEvent::PreimageProvided {
                    preimage: vec![7; len],
                }),
                now_secs(),
            )
            .await
            .expect_err("a short or long preimage is refused");
        assert!(matches!(err, DriverError::Rejected(_)), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("preimage has {len} bytes")),
            "{err}"
        );
    }

    // Both locks become final on their chains.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut t_locked_a, mut t_locked_b) = (None, None);
    let locked = loop {
        let v = hub.get_swap(&api_id, 0).await;
        let at = Instant::now();
        if t_locked_a.is_none() && leg_state(&v, 0) == "locked" {
            t_locked_a = Some(at);
        }
        if t_locked_b.is_none() && leg_state(&v, 1) == "locked" {
            t_locked_b = Some(at);
        }
        if t_locked_a.is_some() && t_locked_b.is_some() {
            break v;
        }
        assert!(Instant::now() < deadline, "swap {api_id} never locked: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (t_locked_a, t_locked_b) = (
        t_locked_a.expect("leg a locked"),
        t_locked_b.expect("leg b locked"),
    );
    assert_eq!(locked["detail"]["secret_revealed"], false, "{locked}");

    // Alice claims the ETH herself, revealing the secret on anvil.
    let t_alice = Instant::now();
    alice_claims_eth(&hub, &api_id, secret).await;
    let alice_time = t_alice.elapsed();

    // The watcher sees the reveal and claims the LTC for Bob. Each step the API shows is
    // timed against the block that made it final.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen: [Option<Instant>; 2] = [None, None];
    let done = loop {
        let v = hub.get_swap(&api_id, 0).await;
        let at = Instant::now();
        if seen[0].is_none() && v["detail"]["secret_revealed"] == true {
            seen[0] = Some(at);
        }
        if v["terminal"] == true {
            seen[1] = Some(at);
            break v;
        }
        assert!(Instant::now() < deadline, "swap {api_id} stuck at {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let total = start.elapsed();
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(leg_state(&done, 0), "claimed", "{done}");
    assert_eq!(leg_state(&done, 1), "claimed", "{done}");
    assert_eq!(done["detail"]["secret_revealed"], true, "{done}");
    assert!(!done.to_string().contains(&hex::encode(secret)), "{done}");

    let after = balances(&hub, &p).await;
    // The beneficiaries receive exactly the swapped amounts; the lockers pay at least them.
    assert_eq!(after[1], before[1] + LTC_AMOUNT, "bob's LTC");
    assert_eq!(after[3], before[3] + ETH_AMOUNT, "alice's ETH");
    assert!(
        after[0] <= before[0] - LTC_AMOUNT,
        "alice's LTC {before:?} -> {after:?}"
    );
    assert!(
        after[2] <= before[2] - ETH_AMOUNT,
        "bob's ETH {before:?} -> {after:?}"
    );

    // Hub overhead: from the block that made a step final to the API showing the hub's
    // reaction, for the steps the hub acts on (both locks final, the reveal seen on anvil,
    // the LTC claim final). The rest of the wall time is waiting for blocks.
    let t_a = hub
        .last_block_before(LTC, t_locked_a)
        .expect("an ltc block");
    let t_b = hub
        .last_block_before(ETH, t_locked_b)
        .expect("an eth block");
    let reveal = seen[0].expect("reveal seen");
    let end = seen[1].expect("completion seen");
    let steps = [
        t_locked_a - t_a,
        t_locked_b - t_b,
        reveal - hub.last_block_before(ETH, reveal).expect("an eth block"),
        end - hub.last_block_before(LTC, end).expect("an ltc block"),
    ];
    let overhead: Duration = steps.iter().sum();
    let waiting = total.saturating_sub(overhead + alice_time);
    println!(
        "flow 1 htlc ltc->eth over http: request->completion {:.2}s = confirmation waiting \
         {:.2}s + hub overhead {:.2}s (steps {:?}) + alice's claim call {:.2}s; {} ltc / {} \
         eth confirmations, blocks every {:.1}s / {:.1}s; overhead is {:.2} block intervals \
         of the slower chain; balances before {before:?} after {after:?}",
        secs(total),
        secs(waiting),
        secs(overhead),
        steps.map(secs),
        secs(alice_time),
        LTC_CONFIRMATIONS,
        ETH_CONFIRMATIONS,
        secs(LTC_BLOCK),
        secs(ETH_BLOCK),
        secs(overhead) / secs(LTC_BLOCK.max(ETH_BLOCK)),
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_refuses_bad_timelocks_and_bad_hashlocks_and_creates_nothing() {
    let hub = Hub::boot().await;
    let p = parties(&hub);
    let hashlock = Preimage([3; 32]).hashlock().to_hex();

    // T1 <= T2 + delta: refused with the values named, nothing created.
    let (code, v) = hub
        .post_swap(
            "swap-bad-t1",
            &swap_body(&p, &hashlock, 300 + DELTA, 300, "owner"),
        )
        .await;
    assert_eq!(code, 400, "{v}");
    let msg = v["message"].as_str().expect("message");
    assert!(msg.contains("t1=") && msg.contains("t2="), "{v}");
    // A hashlock that is not 32 bytes of hex is refused as well.
    let (code, v) = hub
        .post_swap("swap-bad-hash", &swap_body(&p, "abcd", 600, 300, "owner"))
        .await;
    assert_eq!(code, 400, "{v}");
    assert!(hub.driver.journal().all().expect("journal").is_empty());
    hub.shutdown().await;
}

/// Confirmed coins of some litecoin addresses, read in one `scantxoutset` so they all belong
/// to one chain tip.
struct LtcCoins {
    height: u64,
    /// (txid, vout) -> (value, scriptPubKey hex).
    coins: HashMap<(String, u64), (u64, String)>,
}

impl LtcCoins {
    async fn read(hub: &Hub, who: &[&Address]) -> LtcCoins {
        let descs: Vec<String> = who
            .iter()
            .map(|a| format!("raw({})", script_hex(hub, a)))
            .collect();
        let res: Value = hub
            .ltc
            .node
            .call("scantxoutset", vec![json!("start"), json!(descs)])
            .await;
        let coins = res["unspents"]
            .as_array()
            .expect("unspents")
            .iter()
            .map(|u| {
                (
                    outpoint(u),
                    (
                        litoshis(&u["amount"]),
                        u["scriptPubKey"].as_str().expect("script").to_owned(),
                    ),
                )
            })
            .collect();
        LtcCoins {
            height: res["height"].as_u64().expect("scan height"),
            coins,
        }
    }

    fn balance(&self, hub: &Hub, who: &Address) -> u64 {
        let script = script_hex(hub, who);
        self.coins
            .values()
            .filter(|(_, s)| *s == script)
            .map(|(v, _)| v)
            .sum()
    }
}

fn script_hex(hub: &Hub, a: &Address) -> String {
    hex::encode(hub.ltc.codec.script_of(&a.0).expect("address").as_bytes())
}

/// The `(txid, vout)` a JSON coin or input names.
fn outpoint(v: &Value) -> (String, u64) {
    (
        v["txid"].as_str().expect("txid").to_owned(),
        v["vout"].as_u64().expect("vout"),
    )
}

fn litoshis(v: &Value) -> u64 {
    (v.as_f64().expect("amount") * 1e8).round() as u64
}

/// A transaction of the chain as the test reads it from its block.
pub(crate) struct ChainTx {
    pub(crate) txid: String,
    pub(crate) inputs: Vec<(String, u64)>,
    /// (value, scriptPubKey hex) per output.
    pub(crate) outputs: Vec<(u64, String)>,
}

/// Every non-coinbase transaction in blocks `from..=to`, in chain order.
pub(crate) async fn ltc_txs(hub: &Hub, from: u64, to: u64) -> Vec<ChainTx> {
    let mut out = Vec::new();
    for height in from..=to {
        let hash: String = hub.ltc.node.call("getblockhash", vec![json!(height)]).await;
        let block: Value = hub
            .ltc
            .node
            .call("getblock", vec![json!(hash), json!(2)])
            .await;
        for tx in block["tx"].as_array().expect("block txs").iter().skip(1) {
            out.push(ChainTx {
                txid: tx["txid"].as_str().expect("txid").to_owned(),
                inputs: tx["vin"]
                    .as_array()
                    .expect("vin")
                    .iter()
                    .map(outpoint)
                    .collect(),
                outputs: tx["vout"]
                    .as_array()
                    .expect("vout")
                    .iter()
                    .map(|o| {
                        (
                            litoshis(&o["value"]),
                            o["scriptPubKey"]["hex"]
                                .as_str()
                                .expect("script")
                                .to_owned(),
                        )
                    })
                    .collect(),
            });
        }
    }
    out
}

/// The litecoind block (mined by the test's producer) whose median time past first reached
/// `t`: from then on a CLTV spend locked to `t` is valid in the next block.
async fn first_block_with_mtp(hub: &Hub, t: u64) -> Option<Instant> {
    let mined = hub.ltc_blocks.lock().expect("block log").clone();
    for (at, hash) in mined {
        let header: Value = hub.ltc.node.call("getblockheader", vec![json!(hash)]).await;
        if header["mediantime"].as_u64().expect("mediantime") >= t {
            return Some(at);
        }
    }
    None
}

/// Swap timelocks for the refund path, seconds from creation. T2 leaves the hub ample time
/// to submit Alice's lock on a loaded machine (it stops trying at T2); T1 exceeds T2 + Δ.
const REFUND_T2: u64 = 20;
const REFUND_T1: u64 = REFUND_T2 + DELTA + 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ltc_for_eth_swap_refunds_alice_after_t1_when_bob_never_locks() {
    let hub = Hub::boot().await;
    let p = parties(&hub);
    let fee_payer = hub.ltc.adapter.config().fee_payer.clone();
    let tracked = [&p.alice_ltc, &p.bob_ltc, &fee_payer];
    let before = balances(&hub, &p).await;
    let coins_before = LtcCoins::read(&hub, &tracked).await;
    let hashlock = Preimage([3; 32]).hashlock().to_hex();

    // Alice's LTC is locked by the hub's wallet; Bob is to lock his ETH himself, and never
    // does. After the POST the customer is offline: the test only reads.
    let start = Instant::now();
    let start_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let (api_id, created) = hub
        .create_swap(
            "swap-refund",
            &swap_body(&p, &hashlock, REFUND_T1, REFUND_T2, "owner"),
        )
        .await;
    let t1 = created["detail"]["initiator_timelock"]
        .as_u64()
        .expect("t1");
    let t2 = created["detail"]["participant_timelock"]
        .as_u64()
        .expect("t2");
    assert!(t1 > t2 + DELTA, "{created}");

    // Deadlines are generous multiples of what each step needs on an idle machine, so a
    // loaded CI host is slow, not failing. Alice's lock must be final well before T1.
    let locked = hub
        .until(&api_id, Duration::from_secs(REFUND_T1), |v| {
            leg_state(v, 0) == "locked"
        })
        .await;
    let t_locked = Instant::now();
    assert_eq!(leg_state(&locked, 1), "unlocked", "{locked}");
    let lock_tx = locked["legs"][0]["evidence"]["lock"]["tx"]
        .as_str()
        .expect("lock tx")
        .to_owned();
    let lock_height = locked["legs"][0]["evidence"]["lock"]["height"]
        .as_u64()
        .expect("lock height");
    // The HTLC output: a P2WSH paying exactly the leg's amount.
    let lock_vout = ltc_txs(&hub, lock_height, lock_height)
        .await
        .into_iter()
        .find(|t| t.txid == lock_tx)
        .expect("lock tx in its block")
        .outputs
        .iter()
        .position(|(v, s)| *v == LTC_AMOUNT as u64 && s.starts_with("0020") && s.len() == 68)
        .expect("the lock pays the htlc exactly the amount") as u64;

    // Until terminal, also watch for the refund leaving the hub (the lock's coin spent in
    // the mempool) to time the hub's reaction to the block that made it valid.
    let deadline = Instant::now() + Duration::from_secs(REFUND_T1 + 120);
    let mut refund_sent: Option<Instant> = None;
    let done = loop {
        let v = hub.get_swap(&api_id, 0).await;
        let at = Instant::now();
        if v["terminal"] == true {
            break v;
        }
        if refund_sent.is_none() {
            let out: Value = hub
                .ltc
                .node
                .call(
                    "gettxout",
                    vec![json!(lock_tx), json!(lock_vout), json!(true)],
                )
                .await;
            if out.is_null() {
                refund_sent = Some(at);
            }
        }
        assert!(Instant::now() < deadline, "swap {api_id} stuck at {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let t_done = Instant::now();
    let total = start.elapsed();
    assert_eq!(done["state"], "refunded", "{done}");
    assert_eq!(done["reason"], "refunded", "{done}");
    assert_eq!(done["terminal"], true, "{done}");
    assert_eq!(leg_state(&done, 0), "refunded", "{done}");
    assert_eq!(leg_state(&done, 1), "unlocked", "{done}");
    assert!(now_secs() >= t1, "refunded before T1={t1}: {done}");
    let refund_tx = done["legs"][0]["evidence"]["tx"]
        .as_str()
        .expect("refund tx")
        .to_owned();

    // Balances, exactly: every transaction touching the parties' or the fee payer's coins
    // since the swap began is read from the chain and its fee computed from its inputs and
    // outputs. Alice gets back exactly what she had; the fee payer pays exactly the fees.
    let after = balances(&hub, &p).await;
    assert_eq!(after[2], before[2], "bob's ETH untouched");
    assert_eq!(after[3], before[3], "alice's ETH untouched");
    let coins_after = LtcCoins::read(&hub, &tracked).await;
    let tracked_scripts: Vec<String> = tracked.iter().map(|a| script_hex(&hub, a)).collect();
    let mut known = coins_before.coins.clone();
    let mut fees = 0u64;
    let mut touching = Vec::new();
    for tx in ltc_txs(&hub, coins_before.height + 1, coins_after.height).await {
        let spends_ours = tx.inputs.iter().any(|i| known.contains_key(i));
        let pays_ours = tx.outputs.iter().any(|(_, s)| tracked_scripts.contains(s));
        for (vout, out) in tx.outputs.iter().enumerate() {
            known.insert((tx.txid.clone(), vout as u64), out.clone());
        }
        if !(spends_ours || pays_ours) {
            continue;
        }
        let paid_in: u64 = tx
            .inputs
            .iter()
            .map(|i| {
                known
                    .get(i)
                    .unwrap_or_else(|| panic!("tx {} spends {i:?}, unknown to the test", tx.txid))
                    .0
            })
            .sum();
        let paid_out: u64 = tx.outputs.iter().map(|(v, _)| v).sum();
        fees += paid_in - paid_out;
        touching.push(tx);
    }
    let ids: Vec<&str> = touching.iter().map(|t| t.txid.as_str()).collect();
    assert!(
        ids.contains(&lock_tx.as_str()),
        "lock {lock_tx} not among {ids:?}"
    );
    assert!(
        ids.contains(&refund_tx.as_str()),
        "refund {refund_tx} not among {ids:?}"
    );
    let alice_script = script_hex(&hub, &p.alice_ltc);
    let payer_script = script_hex(&hub, &fee_payer);
    for tx in &touching {
        if tx.txid == refund_tx {
            // The refund spends the HTLC output and pays Alice all of it.
            assert!(tx.inputs.contains(&(lock_tx.clone(), lock_vout)), "{ids:?}");
            assert!(
                tx.outputs
                    .contains(&(LTC_AMOUNT as u64, alice_script.clone())),
                "refund outputs {:?}",
                tx.outputs
            );
        } else if tx.txid != lock_tx {
            // Anything else is the fee payer paying for a stuck spend (CPFP).
            assert!(
                tx.outputs.iter().all(|(_, s)| *s == payer_script),
                "unexpected tx {} touching the swap's parties",
                tx.txid
            );
        }
    }
    let bal = |c: &LtcCoins, a: &Address| c.balance(&hub, a);
    assert_eq!(
        bal(&coins_after, &p.alice_ltc),
        bal(&coins_before, &p.alice_ltc),
        "alice's LTC refunded in full"
    );
    assert_eq!(
        bal(&coins_after, &p.bob_ltc),
        bal(&coins_before, &p.bob_ltc),
        "bob's LTC untouched"
    );
    assert!(fees > 0, "{ids:?}");
    assert_eq!(
        bal(&coins_after, &fee_payer),
        bal(&coins_before, &fee_payer) - fees,
        "the fee payer pays exactly the fees of {ids:?}"
    );

    // Where the wall time went, on the producer's litecoind blocks: waiting for T1 on the
    // hub's clock, then for the chain's median time past to reach T1 (CLTV), then for the
    // block that settles the refund (the UTXO adapter reports a spend once included); hub
    // overhead is each step's delay after the block that allowed it. Alice's lock became
    // final long before T1, off the critical path.
    let t1_at = start + Duration::from_secs_f64((t1 as f64 - start_unix).max(0.0));
    let mtp_block = first_block_with_mtp(&hub, t1)
        .await
        .expect("a block past T1");
    let sent = refund_sent.expect("refund seen in the mempool");
    let refund_final = hub.last_block_before(LTC, t_done).expect("an ltc block");
    let lock_step = t_locked - hub.last_block_before(LTC, t_locked).expect("an ltc block");
    let refund_steps = [
        sent.saturating_duration_since(mtp_block),
        t_done - refund_final,
    ];
    let overhead: Duration = refund_steps.iter().sum();
    let until_t1 = t1_at - start;
    let mtp_lag = mtp_block.saturating_duration_since(t1_at);
    let confirming = refund_final.saturating_duration_since(sent);
    let blocks = |d: Duration| secs(d) / secs(LTC_BLOCK);
    println!(
        "flow 1 refund over http (T1={REFUND_T1}s, T2={REFUND_T2}s): request->refunded {:.2}s \
         = until T1 {:.2}s + median time past reaching T1 {:.2}s ({:.1} blocks) + refund \
         inclusion {:.2}s ({:.1} blocks) + hub overhead {:.2}s ({:.2} block intervals: \
         mtp block->refund sent {:.2}s, refund final->api {:.2}s); lock final->api {:.2}s \
         before T1; {LTC_CONFIRMATIONS} ltc confirmations, blocks every {:.1}s; fees {fees} \
         litoshis over {} txs",
        secs(total),
        secs(until_t1),
        secs(mtp_lag),
        blocks(mtp_lag),
        secs(confirming),
        blocks(confirming),
        secs(overhead),
        blocks(overhead),
        secs(refund_steps[0]),
        secs(refund_steps[1]),
        secs(lock_step),
        secs(LTC_BLOCK),
        touching.len(),
    );
    hub.shutdown().await;
}
