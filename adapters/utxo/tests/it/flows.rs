use crate::node::{LtcFixture, NETWORK};
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::Secp256k1;
use bitcoin::{absolute, Amount as Sats, OutPoint, ScriptBuf, TxOut, Txid};
use isthmus_adapter_api::*;
use isthmus_adapter_testkit::conformance::Fixture;
use isthmus_adapter_utxo::build::{self, Coin, Input, Unlock};
use isthmus_adapter_utxo::{script, UtxoAdapter};
use isthmus_core::{Hash32, HashAlgo};
use isthmus_lock_contracts::{Amount, AssetId, LegSpec, LockId, Locker, Preimage, TxId};
use serde_json::{json, Value};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn id(tag: &str) -> LockId {
    LockId(HashAlgo::Sha256.digest_parts(&[b"utxo-it/", tag.as_bytes()]))
}

async fn request(f: &LtcFixture, tag: &str, terms: LockTerms, timeout_after: u64) -> LockRequest {
    let now = f.adapter.heads().await.unwrap().time;
    LockRequest {
        lock_id: id(tag),
        leg: LegSpec {
            network: NETWORK,
            asset: AssetId("LTC".into()),
            amount: Amount(100_000),
            from: f.accounts[0].clone(),
            to: f.accounts[1].clone(),
            timeout: now + timeout_after,
            locker: Locker::HubWallet,
        },
        terms,
    }
}

/// An HTLC request on `secret`'s sha256 (an hour to run) and the claim that opens it.
async fn htlc(f: &LtcFixture, tag: &str, secret: [u8; 32]) -> (LockRequest, ClaimRequest) {
    let terms = LockTerms::Htlc {
        hashlock: HashAlgo::Sha256.digest(&secret),
    };
    let req = request(f, tag, terms, 3_600).await;
    let claim = ClaimRequest {
        lock_id: req.lock_id,
        preimage: Preimage(secret),
    };
    (req, claim)
}

async fn balance(f: &LtcFixture, who: usize) -> u128 {
    f.adapter
        .balance(&f.accounts[who], &AssetId("LTC".into()))
        .await
        .unwrap()
        .0
}

/// Time spent in adapter calls and in waiting for blocks, kept apart.
#[derive(Default, Debug)]
struct Clock {
    adapter: Duration,
    mining: Duration,
    blocks: u64,
}

impl Clock {
    async fn call<T>(&mut self, fut: impl std::future::Future<Output = T>) -> T {
        let t = Instant::now();
        let out = fut.await;
        self.adapter += t.elapsed();
        out
    }

    /// Mine one block at a time until `tx` is final.
    async fn until_final(&mut self, f: &LtcFixture, tx: &TxId) {
        for _ in 0..20 {
            if self.call(f.adapter.tx_status(tx)).await.unwrap().is_final() {
                return;
            }
            let t = Instant::now();
            f.node.generate(1, &f.miner).await;
            self.mining += t.elapsed();
            self.blocks += 1;
        }
        panic!("{tx} not final after 20 blocks");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htlc_lock_then_claim_reveals_the_preimage_and_pays_exactly() {
    let f = LtcFixture::new().await;
    let a = f.adapter.clone();
    let secret = [0x5a; 32];
    let (req, claim) = htlc(&f, "htlc", secret).await;
    let (owner0, bene0) = (balance(&f, 0).await, balance(&f, 1).await);
    let mark = a
        .events_since(Checkpoint::START, 100_000)
        .await
        .unwrap()
        .next;
    let mut clock = Clock::default();
    let started = Instant::now();
    let lock_tx = clock.call(a.lock(&req)).await.unwrap();
    clock.until_final(&f, &lock_tx).await;
    let state = clock
        .call(a.lock_state(&req.lock_id))
        .await
        .unwrap()
        .unwrap();
    assert!(
        state.is_final && state.status == LockStatus::Locked,
        "{state:?}"
    );
    let claim_tx = clock.call(a.claim(&claim)).await.unwrap();
    clock.until_final(&f, &claim_tx).await;
    let total = started.elapsed();
    eprintln!(
        "htlc lock->claim on litecoind regtest: total {total:?}; adapter calls {:?}; mining {} blocks {:?} \
         (at Litecoin's 150 s block interval the confirmation wait would be {} s)",
        clock.adapter,
        clock.blocks,
        clock.mining,
        clock.blocks * 150
    );
    assert_eq!(
        balance(&f, 0).await,
        owner0 - 100_000,
        "owner pays the amount, no fee"
    );
    assert_eq!(
        balance(&f, 1).await,
        bene0 + 100_000,
        "beneficiary gets the amount"
    );
    let events = a.events_since(mark, 100_000).await.unwrap().events;
    let kinds: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::LockIncluded { lock } if lock.lock_id == req.lock_id => Some("included"),
            EventKind::LockFinal { lock } if lock.lock_id == req.lock_id => Some("final"),
            EventKind::Claimed {
                lock_id,
                preimage,
                tx,
            } if *lock_id == req.lock_id => {
                assert_eq!(preimage.as_slice(), secret);
                assert_eq!(*tx, claim_tx);
                Some("claimed")
            }
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["included", "final", "claimed"]);
    let state = a.lock_state(&req.lock_id).await.unwrap().unwrap();
    assert_eq!(state.status, LockStatus::Claimed { tx: claim_tx });
}

/// The witness script and outpoint of a funded lock, rebuilt from its request.
fn htlc_coin(
    f: &LtcFixture,
    req: &LockRequest,
    lock_tx: &TxId,
    hashlock: [u8; 32],
) -> (ScriptBuf, Coin) {
    let bene = f.keys[1].public.wpubkey_hash().unwrap();
    let owner = f.keys[0].public.wpubkey_hash().unwrap();
    let lt = absolute::LockTime::from_time((req.leg.timeout - 1) as u32).unwrap();
    let ws = script::htlc(&hashlock, &bene, &owner, lt);
    let coin = Coin {
        outpoint: OutPoint {
            txid: Txid::from_str(&lock_tx.0).unwrap(),
            vout: 0,
        },
        value: 100_000,
        script: ScriptBuf::new_p2wsh(&ws.wscript_hash()),
    };
    (ws, coin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_by_someone_else_is_read_from_its_witness_and_long_preimages_fail_in_script() {
    let f = LtcFixture::new().await;
    let a = f.adapter.clone();
    let secp = Secp256k1::new();
    let to = f.codec.script_of(&f.accounts[1].0).unwrap();
    // A 33-byte secret: its sha256 is a valid hashlock, but the script's size check refuses it.
    let long = [0x33u8; 33];
    let long_lock = HashAlgo::Sha256.digest(&long).0;
    let secret = [0x44u8; 32];
    let short_lock = HashAlgo::Sha256.digest(&secret).0;
    let mut txs = Vec::new();
    for (tag, hashlock) in [("long", long_lock), ("external", short_lock)] {
        let req = request(
            &f,
            tag,
            LockTerms::Htlc {
                hashlock: Hash32(hashlock),
            },
            3_600,
        )
        .await;
        let tx = a.lock(&req).await.unwrap();
        txs.push((req, tx, hashlock));
    }
    f.mine(3).await.unwrap();
    let mark = a
        .events_since(Checkpoint::START, 100_000)
        .await
        .unwrap()
        .next;
    let spend = |req: &LockRequest, tx: &TxId, hashlock: [u8; 32], preimage: &[u8]| {
        let (ws, coin) = htlc_coin(&f, req, tx, hashlock);
        let mut t = build::sign(
            &secp,
            &[Input {
                coin,
                unlock: Unlock::HtlcClaim {
                    key: f.keys[1].clone(),
                    preimage: [0; 32],
                    script: ws,
                },
            }],
            vec![TxOut {
                value: Sats::from_sat(100_000 - 5_000),
                script_pubkey: to.clone(),
            }],
            absolute::LockTime::ZERO,
        )
        .unwrap();
        // The witness is outside the signature: swap the real preimage in.
        let mut w: Vec<Vec<u8>> = t.input[0].witness.iter().map(<[u8]>::to_vec).collect();
        w[2] = preimage.to_vec();
        t.input[0].witness = bitcoin::Witness::from_slice(&w);
        SignedTx(bitcoin::consensus::encode::serialize(&t))
    };
    let (req, tx, hl) = &txs[0];
    match a.submit(spend(req, tx, *hl, &long)).await {
        Err(AdapterError::Rejected { reason, .. }) => {
            assert!(reason.contains("script"), "{reason}")
        }
        other => panic!("a 33-byte preimage was not refused by the script: {other:?}"),
    }
    let (req, tx, hl) = &txs[1];
    let claim = a.submit(spend(req, tx, *hl, &secret)).await.unwrap();
    // A spend is reported once it is `confirmations` (3) deep.
    f.mine(3).await.unwrap();
    let events = a.events_since(mark, 100_000).await.unwrap().events;
    assert!(
        events.iter().any(|e| matches!(&e.kind,
            EventKind::Claimed { lock_id, preimage, tx }
                if *lock_id == req.lock_id && preimage.as_slice() == secret && *tx == claim)),
        "{events:?}"
    );
    let state = a.lock_state(&req.lock_id).await.unwrap().unwrap();
    assert_eq!(state.status, LockStatus::Claimed { tx: claim });
    // The long-secret lock is still locked and refundable only by its owner later.
    let long_state = a.lock_state(&txs[0].0.lock_id).await.unwrap().unwrap();
    assert_eq!(long_state.status, LockStatus::Locked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorged_out_lock_is_withdrawn_and_never_counted_final() {
    let f = LtcFixture::new().await;
    let a = f.adapter.clone();
    let owner0 = balance(&f, 0).await;
    let mark = a
        .events_since(Checkpoint::START, 100_000)
        .await
        .unwrap()
        .next;
    let req = request(&f, "reorged", LockTerms::TwoPhase, 3_600).await;
    let tx = a.lock(&req).await.unwrap();
    f.mine(1).await.unwrap();
    let seen = a
        .lock_state(&req.lock_id)
        .await
        .unwrap()
        .expect("lock seen");
    assert!(!seen.is_final);
    assert!(f.reorg(1).await.unwrap());
    let events = a.events_since(mark, 100_000).await.unwrap().events;
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::Reverted { txs, .. } if txs.contains(&tx))),
        "{events:?}"
    );
    assert_eq!(a.lock_state(&req.lock_id).await.unwrap(), None);
    // Well past the confirmation depth, the withdrawn lock never turns final.
    f.mine(6).await.unwrap();
    assert_eq!(a.lock_state(&req.lock_id).await.unwrap(), None);
    assert!(!a.tx_status(&tx).await.unwrap().is_final());
    let events = a.events_since(mark, 100_000).await.unwrap().events;
    assert!(
        !events.iter().any(
            |e| matches!(&e.kind, EventKind::LockFinal { lock } if lock.lock_id == req.lock_id)
        ),
        "{events:?}"
    );
    assert_eq!(balance(&f, 0).await, owner0);
    // A release of the withdrawn lock is refused, not co-signed.
    assert!(matches!(
        a.release(&validated(&f, req.lock_id)).await,
        Err(AdapterError::Conflict { .. })
    ));
}

/// A release carrying a `Validated` attestation by the hub keys the adapter trusts.
fn validated(f: &LtcFixture, lock_id: LockId) -> ReleaseRequest {
    ReleaseRequest {
        lock_id,
        attestation: f.attest(
            lock_id,
            isthmus_lock_contracts::Decision::Validated,
            record(),
        ),
    }
}

fn record() -> isthmus_lock_contracts::HubRecord {
    isthmus_lock_contracts::HubRecord {
        height: 7,
        tx: TxId("hub-record".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escrow_refunds_to_its_owner_alone_after_the_timelock() {
    let f = LtcFixture::new().await;
    let a = f.adapter.clone();
    let owner0 = balance(&f, 0).await;
    let req = request(&f, "escrow-timeout", LockTerms::TwoPhase, 120).await;
    let tx = a.lock(&req).await.unwrap();
    f.mine(3).await.unwrap();
    assert!(a.tx_status(&tx).await.unwrap().is_final());
    let timeout = RefundRequest {
        lock_id: req.lock_id,
        authorisation: RefundAuthorisation::Timeout,
    };
    assert!(matches!(
        a.refund(&timeout).await,
        Err(AdapterError::Rejected { .. })
    ));
    f.advance_time_to(req.leg.timeout).await.unwrap();
    let refund = a.refund(&timeout).await.unwrap();
    assert_eq!(
        a.refund(&timeout).await.unwrap(),
        refund,
        "retry returns the same tx"
    );
    f.mine(3).await.unwrap();
    let state = a.lock_state(&req.lock_id).await.unwrap().unwrap();
    assert_eq!(state.status, LockStatus::Refunded { tx: refund });
    assert_eq!(
        balance(&f, 0).await,
        owner0,
        "the owner gets all of it back"
    );
    assert!(matches!(
        a.release(&validated(&f, req.lock_id)).await,
        Err(AdapterError::Conflict { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_adapter_finds_its_funding_by_tag_and_never_locks_twice() {
    let f = LtcFixture::new().await;
    let start: u64 = f.node.call("getblockcount", vec![]).await;
    let owner0 = balance(&f, 0).await;
    let mut req = request(&f, "restart", LockTerms::TwoPhase, 3_600).await;
    // Most of the owner's coins: a second funding could not even be built.
    req.leg.amount = Amount(450_000_000);
    let tx = f.adapter.lock(&req).await.unwrap();
    f.mine(1).await.unwrap();
    let mut cfg = f.adapter.config().clone();
    cfg.start_height = Some(start);
    let again = Arc::new(UtxoAdapter::new(cfg, f.wallet.clone()).unwrap());
    assert_eq!(again.lock(&req).await.unwrap(), tx);
    f.node.generate(2, &f.miner).await;
    let state = again.lock_state(&req.lock_id).await.unwrap().unwrap();
    assert!(
        state.is_final && state.status == LockStatus::Locked,
        "{state:?}"
    );
    assert_eq!(balance(&f, 0).await, owner0 - 450_000_000, "locked once");
    // The restarted adapter can release it.
    let released = again.release(&validated(&f, req.lock_id)).await.unwrap();
    f.node.generate(3, &f.miner).await;
    assert!(again.tx_status(&released).await.unwrap().is_final());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_transfer_is_retried_after_it_restarts_and_the_claim_completes() {
    let mut f = LtcFixture::new().await;
    let a = f.adapter.clone();
    let secret = [0x6b; 32];
    let (req, claim) = htlc(&f, "node-crash", secret).await;
    let owner0 = balance(&f, 0).await;
    let lock_tx = a.lock(&req).await.unwrap();
    // The node dies with the funding only in its mempool, which a crash loses.
    f.node.kill();
    let down = a.lock_state(&req.lock_id).await.unwrap_err();
    assert!(down.is_retryable(), "{down}");
    assert!(matches!(
        a.health().await.unwrap(),
        Health::Unhealthy { .. }
    ));
    f.node.restart().await;
    assert_eq!(a.health().await.unwrap(), Health::Healthy);
    // The retry re-sends the same funding instead of locking twice.
    assert_eq!(a.lock(&req).await.unwrap(), lock_tx);
    f.mine(3).await.unwrap();
    assert!(a.lock_state(&req.lock_id).await.unwrap().unwrap().is_final);
    // Blocks the node has not flushed are lost in a crash (a rollback the view reverts);
    // flush first so this crash only interrupts the claim.
    let _: serde_json::Value = f.node.call("gettxoutsetinfo", vec![]).await;
    f.node.kill();
    assert!(a.claim(&claim).await.unwrap_err().is_retryable());
    f.node.restart().await;
    let claim_tx = a.claim(&claim).await.unwrap();
    f.mine(3).await.unwrap();
    assert!(a.tx_status(&claim_tx).await.unwrap().is_final());
    assert_eq!(
        balance(&f, 0).await,
        owner0 - 100_000,
        "locked exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_go_out_back_to_back_on_unconfirmed_change_without_waiting_for_blocks() {
    let f = LtcFixture::new().await;
    let a = f.adapter.clone();
    let owner0 = balance(&f, 0).await;
    // More locks than the owner (10) or the fee payer (10) has confirmed coins.
    let mut txs = Vec::new();
    for i in 0..14 {
        let req = request(&f, &format!("burst-{i}"), LockTerms::TwoPhase, 3_600).await;
        txs.push((req.lock_id, a.lock(&req).await.unwrap()));
    }
    f.mine(3).await.unwrap();
    for (lock_id, tx) in &txs {
        assert!(a.tx_status(tx).await.unwrap().is_final(), "{tx}");
        let state = a.lock_state(lock_id).await.unwrap().unwrap();
        assert!(state.is_final && state.observation.amount == Amount(100_000));
    }
    assert_eq!(balance(&f, 0).await, owner0 - 14 * 100_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balances_from_two_adapters_on_one_node_wait_out_each_others_scans() {
    let f = LtcFixture::new().await;
    let second = Arc::new(UtxoAdapter::new(f.adapter.config().clone(), f.wallet.clone()).unwrap());
    let expected = balance(&f, 0).await;
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..16 {
        let a = if i % 2 == 0 {
            f.adapter.clone()
        } else {
            second.clone()
        };
        let who = f.accounts[0].clone();
        calls.spawn(async move { a.balance(&who, &AssetId("LTC".into())).await });
    }
    while let Some(r) = calls.join_next().await {
        assert_eq!(r.unwrap().unwrap().0, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_shows_an_empty_fee_payer_and_a_missing_cosigner_key() {
    let f = LtcFixture::new().await;
    assert_eq!(f.adapter.health().await.unwrap(), Health::Healthy);
    let mut poor = f.adapter.config().clone();
    poor.fee_payer = f.accounts[1].clone();
    poor.min_fee_reserve = 10_000_000_000;
    let a = UtxoAdapter::new(poor, f.wallet.clone()).unwrap();
    match a.health().await.unwrap() {
        Health::Degraded { reason } => assert!(reason.contains("reserve"), "{reason}"),
        other => panic!("a fee payer below its reserve reads {other:?}"),
    }
    let mut keyless = f.adapter.config().clone();
    keyless.cosigner = f
        .codec
        .address_of(&ScriptBuf::new_p2wpkh(
            &bitcoin::WPubkeyHash::from_byte_array([7; 20]),
        ))
        .map(isthmus_lock_contracts::Address)
        .unwrap();
    let a = UtxoAdapter::new(keyless, f.wallet.clone()).unwrap();
    match a.health().await.unwrap() {
        Health::Degraded { reason } => assert!(reason.contains("co-signer"), "{reason}"),
        other => panic!("a missing co-signer key reads {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_htlc_its_owner_funds_outside_the_hub_is_watched_and_claimed() {
    let f = LtcFixture::new().await;
    let a = f.adapter.clone();
    let secret = [0x21; 32];
    let (mut req, claim) = htlc(&f, "external", secret).await;
    req.leg.locker = Locker::External;
    let mark = a
        .events_since(Checkpoint::START, 100_000)
        .await
        .unwrap()
        .next;
    let address = a.watch(&req).await.unwrap();
    assert_eq!(
        a.watch(&req).await.unwrap(),
        address,
        "watching is idempotent"
    );
    assert!(address.0.starts_with("rltc1q"), "{address}");
    // The owner pays the address from their own wallet (here: signed by the test).
    let coin = f.coins_of(&f.accounts[0]).await.remove(0);
    let change = coin.value - 100_000 - 2_000;
    let owner_script = coin.script.clone();
    let funding = build::sign(
        &Secp256k1::new(),
        &[Input {
            coin,
            unlock: Unlock::P2wpkh(f.keys[0].clone()),
        }],
        vec![
            TxOut {
                value: Sats::from_sat(100_000),
                script_pubkey: f.codec.script_of(&address.0).unwrap(),
            },
            TxOut {
                value: Sats::from_sat(change),
                script_pubkey: owner_script,
            },
        ],
        absolute::LockTime::ZERO,
    )
    .unwrap();
    // Sent through the owner's own node connection: the adapter never sees it go out.
    let sent: String = f
        .node
        .call(
            "sendrawtransaction",
            vec![json!(hex::encode(bitcoin::consensus::encode::serialize(
                &funding
            )))],
        )
        .await;
    let funding_id = TxId(sent);
    // The hub does not fund an owner's lock.
    assert!(matches!(
        a.lock(&req).await,
        Err(AdapterError::InvalidRequest { .. })
    ));
    f.mine(3).await.unwrap();
    let state = a.lock_state(&req.lock_id).await.unwrap().unwrap();
    assert!(
        state.is_final && state.observation.tx == funding_id,
        "{state:?}"
    );
    // Its finality evidence is served and verifies, as the hub's watcher asks for it.
    assert!(a.tx_status(&funding_id).await.unwrap().is_final());
    let ev = a.evidence(&funding_id).await.unwrap();
    a.verify_evidence(&funding_id, &ev).await.unwrap();
    let bene0 = balance(&f, 1).await;
    let claim = a.claim(&claim).await.unwrap();
    f.mine(3).await.unwrap();
    assert_eq!(balance(&f, 1).await, bene0 + 100_000);
    let events = a.events_since(mark, 100_000).await.unwrap().events;
    let seen: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::LockIncluded { lock } if lock.lock_id == req.lock_id => Some("included"),
            EventKind::LockFinal { lock } if lock.lock_id == req.lock_id => Some("final"),
            EventKind::Claimed { lock_id, tx, .. } if *lock_id == req.lock_id && *tx == claim => {
                Some("claimed")
            }
            _ => None,
        })
        .collect();
    assert_eq!(seen, ["included", "final", "claimed"]);
    // An escrow cannot be watched: its script needs the owner's public key.
    let mut escrow = request(&f, "external-escrow", LockTerms::TwoPhase, 3_600).await;
    escrow.leg.locker = Locker::External;
    assert!(matches!(
        a.watch(&escrow).await,
        Err(AdapterError::Unsupported { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_stuck_for_blocks_gets_a_child_paying_twice_its_rate() {
    let f = LtcFixture::new().await;
    let a = f.adapter.clone();
    let secret = [0x77; 32];
    let (req, claim) = htlc(&f, "stuck", secret).await;
    a.lock(&req).await.unwrap();
    f.mine(3).await.unwrap();
    let bene0 = balance(&f, 1).await;
    let first = a.claim(&claim).await.unwrap();
    // Miners ignore it (as a too-low fee would make them).
    assert_eq!(f.withhold_mempool().await, vec![first.0.clone()]);
    let entry = |txid: String| {
        let node = &f.node;
        async move {
            let e: Value = node.call("getmempoolentry", vec![json!(txid)]).await;
            e
        }
    };
    let sats = |v: &Value| (v.as_f64().unwrap() * 1e8).round() as u64;
    let parent = entry(first.0.clone()).await;
    let rate = sats(&parent["fees"]["base"]) / parent["vsize"].as_u64().unwrap();
    assert_eq!(
        a.claim(&claim).await.unwrap(),
        first,
        "no bump before its time"
    );
    assert_eq!(entry(first.0.clone()).await["descendantcount"], 1);
    f.mine(3).await.unwrap();
    assert_eq!(a.tx_status(&first).await.unwrap(), TxStatus::Pending);
    // The retry keeps the claim's id and adds a child paying for it.
    assert_eq!(a.claim(&claim).await.unwrap(), first);
    let parent = entry(first.0.clone()).await;
    let children = parent["spentby"].as_array().unwrap().clone();
    assert_eq!(children.len(), 1, "{parent}");
    let child = entry(children[0].as_str().unwrap().to_owned()).await;
    let package_fee = sats(&parent["fees"]["base"]) + sats(&child["fees"]["base"]);
    let package_vsize = parent["vsize"].as_u64().unwrap() + child["vsize"].as_u64().unwrap();
    assert!(
        package_fee >= 2 * rate * package_vsize,
        "package pays {package_fee} for {package_vsize} vB, rate was {rate}"
    );
    // Miners take the package (stop ignoring the parent): the claim lands under its own id.
    let _: bool = f
        .node
        .call(
            "prioritisetransaction",
            vec![json!(first.0), json!(0), json!(100_000_000)],
        )
        .await;
    f.mine(3).await.unwrap();
    assert!(a.tx_status(&first).await.unwrap().is_final());
    let state = a.lock_state(&req.lock_id).await.unwrap().unwrap();
    assert_eq!(state.status, LockStatus::Claimed { tx: first });
    assert_eq!(balance(&f, 1).await, bene0 + 100_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorged_out_claim_reopens_the_lock_until_it_is_mined_again() {
    let f = LtcFixture::new().await;
    let a = f.adapter.clone();
    let secret = [0x3c; 32];
    let (req, claim) = htlc(&f, "claim-reorged", secret).await;
    a.lock(&req).await.unwrap();
    f.mine(3).await.unwrap();
    let tx = a.claim(&claim).await.unwrap();
    let mark = a
        .events_since(Checkpoint::START, 100_000)
        .await
        .unwrap()
        .next;
    assert!(f.reorg(1).await.unwrap());
    let order = |events: Vec<ChainEvent>| -> Vec<&'static str> {
        events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Claimed { tx: t, .. } if *t == tx => Some("claimed"),
                EventKind::Reverted { txs, .. } if txs.contains(&tx) => Some("reverted"),
                _ => None,
            })
            .collect()
    };
    // The claim was one block deep when its block left: never reported, only withdrawn.
    let events = a.events_since(mark, 100_000).await.unwrap().events;
    assert_eq!(order(events), ["reverted"]);
    // The lock is open again, and still final: the reorg only took the claim's block.
    let state = a.lock_state(&req.lock_id).await.unwrap().unwrap();
    assert!(
        state.is_final && state.status == LockStatus::Locked,
        "{state:?}"
    );
    assert_eq!(
        a.claim(&claim).await.unwrap(),
        tx,
        "the retry is the same claim"
    );
    let _: bool = f
        .node
        .call(
            "prioritisetransaction",
            vec![json!(tx.0), json!(0), json!(100_000_000)],
        )
        .await;
    f.mine(2).await.unwrap();
    assert!(!a.tx_status(&tx).await.unwrap().is_final());
    let state = a.lock_state(&req.lock_id).await.unwrap().unwrap();
    assert_eq!(state.status, LockStatus::Locked, "two deep is not settled");
    f.mine(1).await.unwrap();
    let state = a.lock_state(&req.lock_id).await.unwrap().unwrap();
    assert_eq!(state.status, LockStatus::Claimed { tx: tx.clone() });
    let events = a.events_since(mark, 100_000).await.unwrap().events;
    assert_eq!(order(events), ["reverted", "claimed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_invalidated_before_depth_is_never_reported_and_the_remined_one_is() {
    let f = LtcFixture::new().await;
    let a = f.adapter.clone();
    let req = request(&f, "release-reorged", LockTerms::TwoPhase, 3_600).await;
    let lock_tx = a.lock(&req).await.unwrap();
    f.mine(3).await.unwrap();
    assert!(a.tx_status(&lock_tx).await.unwrap().is_final());
    let mark = a
        .events_since(Checkpoint::START, 100_000)
        .await
        .unwrap()
        .next;
    let rel = a.release(&validated(&f, req.lock_id)).await.unwrap();
    let released = |events: &[ChainEvent]| {
        events
            .iter()
            .filter(|e| matches!(&e.kind, EventKind::Released { lock_id, .. } if *lock_id == req.lock_id))
            .count()
    };
    // Two blocks deep (of 3): known to the node and the adapter, not yet acted on.
    f.mine(2).await.unwrap();
    let status = a.tx_status(&rel).await.unwrap();
    assert!(
        matches!(
            status,
            TxStatus::Included {
                confirmations: 2,
                ..
            }
        ),
        "{status:?}"
    );
    let state = a.lock_state(&req.lock_id).await.unwrap().unwrap();
    assert_eq!(state.status, LockStatus::Locked, "{state:?}");
    assert_eq!(
        released(&a.events_since(mark, 100_000).await.unwrap().events),
        0
    );
    // `invalidateblock` on the release's block: a longer branch without it replaces both.
    assert!(f.reorg(2).await.unwrap());
    let events = a.events_since(mark, 100_000).await.unwrap().events;
    assert_eq!(released(&events), 0, "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::Reverted { txs, .. } if txs.contains(&rel))),
        "{events:?}"
    );
    let state = a.lock_state(&req.lock_id).await.unwrap().unwrap();
    assert!(
        state.is_final && state.status == LockStatus::Locked,
        "{state:?}"
    );
    // The retry is the same co-signed spend; mined again, it is reported at depth, once.
    assert_eq!(a.release(&validated(&f, req.lock_id)).await.unwrap(), rel);
    let _: bool = f
        .node
        .call(
            "prioritisetransaction",
            vec![json!(rel.0), json!(0), json!(100_000_000)],
        )
        .await;
    f.mine(2).await.unwrap();
    let state = a.lock_state(&req.lock_id).await.unwrap().unwrap();
    assert_eq!(state.status, LockStatus::Locked, "{state:?}");
    assert_eq!(
        released(&a.events_since(mark, 100_000).await.unwrap().events),
        0
    );
    f.mine(1).await.unwrap();
    let state = a.lock_state(&req.lock_id).await.unwrap().unwrap();
    assert_eq!(state.status, LockStatus::Released { tx: rel.clone() });
    let events = a.events_since(mark, 100_000).await.unwrap().events;
    assert_eq!(released(&events), 1, "{events:?}");
    assert!(a.tx_status(&rel).await.unwrap().is_final());
}
