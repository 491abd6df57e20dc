//! Reorgs, nonce drift, stuck transactions and a node that goes away, against anvil; and the
//! measured wall time of a transfer on a chain with a real block interval.

use crate::util::*;
use alloy::network::TransactionBuilder;
use alloy::primitives::U256;
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use isthmus_adapter_api::*;
use isthmus_adapter_evm::anvil::FixtureOptions;
use isthmus_adapter_testkit::conformance::Fixture;
use isthmus_lock_contracts::{AssetId, Decision};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anvil_reorg_withdraws_a_seen_lock_and_it_never_becomes_final() {
    let f = fixture(FixtureOptions {
        confirmations: 3,
        ..FixtureOptions::default()
    })
    .await;
    let a = f.adapter();
    let mark = a
        .events_since(Checkpoint::START, u32::MAX)
        .await
        .unwrap()
        .next;
    let req = lock_req(
        &f,
        "reorged",
        AssetId("native".into()),
        1_000,
        LockTerms::TwoPhase,
        3_600,
    )
    .await;
    let tx = a.lock(&req).await.unwrap();
    f.mine(1).await.unwrap();
    let seen = a
        .lock_state(&req.lock_id)
        .await
        .unwrap()
        .expect("lock seen");
    assert!(!seen.is_final, "one block deep is not final at depth 3");
    // Replace the two newest blocks (the lock's and the one on top) with empty ones.
    assert!(f.reorg(2).await.unwrap());
    assert_eq!(
        a.lock_state(&req.lock_id).await.unwrap(),
        None,
        "the lock state drops"
    );
    // Whatever anvil does with the dropped tx, it never pays out on our view's say-so: mine
    // past the depth and check the lock never became final while it was gone.
    let status = a.tx_status(&tx).await.unwrap();
    assert!(!status.is_final(), "{status:?}");
    f.mine(5).await.unwrap();
    let events = a.events_since(mark, u32::MAX).await.unwrap().events;
    let included_at: Vec<u64> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::LockIncluded { lock } if lock.lock_id == req.lock_id => Some(lock.height),
            _ => None,
        })
        .collect();
    let reverted = events
        .iter()
        .position(|e| matches!(&e.kind, EventKind::Reverted { txs, .. } if txs.contains(&tx)))
        .expect("a Reverted event names the lock tx");
    let finals: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(&e.kind, EventKind::LockFinal { lock } if lock.lock_id == req.lock_id))
        .map(|(i, _)| i)
        .collect();
    assert!(!included_at.is_empty());
    // No LockFinal before the reversion; one after is only possible for a re-inclusion.
    assert!(finals.iter().all(|&i| i > reverted), "{events:#?}");
    match a.lock_state(&req.lock_id).await.unwrap() {
        None => assert!(finals.is_empty()),
        Some(s) => assert_ne!(
            s.observation.block, seen.observation.block,
            "re-included elsewhere"
        ),
    }
    // The adapter's nonce survived the dropped transaction: a new lock goes through.
    let again = lock_req(
        &f,
        "after-reorg",
        AssetId("native".into()),
        1_000,
        LockTerms::TwoPhase,
        3_600,
    )
    .await;
    let tx2 = a.lock(&again).await.unwrap();
    final_after_mining(&f, &tx2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anvil_reorg_of_a_release_before_depth_never_reports_it_and_the_resent_one_settles() {
    let f = fixture(FixtureOptions {
        confirmations: 3,
        ..FixtureOptions::default()
    })
    .await;
    let a = f.adapter();
    let req = lock_req(
        &f,
        "release-reorged",
        AssetId("native".into()),
        1_000,
        LockTerms::TwoPhase,
        3_600,
    )
    .await;
    let tx = a.lock(&req).await.unwrap();
    final_after_mining(&f, &tx).await;
    let mark = a
        .events_since(Checkpoint::START, u32::MAX)
        .await
        .unwrap()
        .next;
    let release = ReleaseRequest {
        lock_id: req.lock_id,
        attestation: f.attest(req.lock_id, Decision::Validated, record()),
    };
    let rel = a.release(&release).await.unwrap();
    f.adapter
        .wait_mined(&rel, Duration::from_secs(10))
        .await
        .unwrap();
    // Mined with two blocks on top of it (final needs three): not acted on yet.
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
    let released = |events: &[ChainEvent]| {
        events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Released { lock_id, tx } if *lock_id == req.lock_id => Some(tx.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let state = a.lock_state(&req.lock_id).await.unwrap().unwrap();
    assert_eq!(state.status, LockStatus::Locked, "{state:?}");
    let events = a.events_since(mark, u32::MAX).await.unwrap().events;
    assert!(released(&events).is_empty(), "{events:#?}");
    // The release's block and the two on top are replaced by empty ones.
    assert!(f.reorg(3).await.unwrap());
    let events = a.events_since(mark, u32::MAX).await.unwrap().events;
    assert!(released(&events).is_empty(), "{events:#?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::Reverted { txs, .. } if txs.contains(&rel))),
        "a Reverted event names the release: {events:#?}"
    );
    let state = a.lock_state(&req.lock_id).await.unwrap().unwrap();
    assert!(
        state.is_final && state.status == LockStatus::Locked,
        "{state:?}"
    );
    // The retry sends the release again; it is reported once, when final.
    let again = a.release(&release).await.unwrap();
    final_after_mining(&f, &again).await;
    let state = a.lock_state(&req.lock_id).await.unwrap().unwrap();
    assert_eq!(
        state.status,
        LockStatus::Released { tx: again.clone() },
        "{state:?}"
    );
    let events = a.events_since(mark, u32::MAX).await.unwrap().events;
    assert_eq!(released(&events), vec![again], "{events:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonce_resyncs_after_a_transaction_sent_behind_the_adapters_back() {
    let f = fixture(FixtureOptions::default()).await;
    let a = f.adapter();
    let native = AssetId("native".into());
    let first = lock_req(
        &f,
        "nonce-1",
        native.clone(),
        10,
        LockTerms::TwoPhase,
        3_600,
    )
    .await;
    let tx1 = a.lock(&first).await.unwrap();
    final_after_mining(&f, &tx1).await;
    // The same key sends a transfer the adapter knows nothing about, taking its next nonce.
    let key = f.account_key(0).address();
    let nonce = f
        .adapter
        .provider()
        .get_transaction_count(key)
        .pending()
        .await
        .unwrap();
    let behind = TransactionRequest::default()
        .with_to(f.account_key(1).address())
        .with_value(U256::from(1u64));
    let env = f.sign_as(0, behind, nonce).await.unwrap();
    let raw = alloy::eips::eip2718::Encodable2718::encoded_2718(&env);
    let _pending = f
        .adapter
        .provider()
        .send_raw_transaction(&raw)
        .await
        .unwrap();
    f.mine(1).await.unwrap();
    // The adapter's cached nonce is now stale; its next send resyncs and succeeds.
    let second = lock_req(&f, "nonce-2", native, 20, LockTerms::TwoPhase, 3_600).await;
    let tx2 = a.lock(&second).await.unwrap();
    final_after_mining(&f, &tx2).await;
    let state = a.lock_state(&second.lock_id).await.unwrap().unwrap();
    assert!(state.is_final);
    let r = f
        .adapter
        .wait_mined(&tx2, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(r.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_transaction_is_replaced_with_bumped_fees_up_to_the_cap() {
    let f = fixture(FixtureOptions::default()).await;
    f.raw("evm_setAutomine", serde_json::json!([false]))
        .await
        .unwrap();
    // A second adapter over the same node with a short stuck timer and a low cap.
    let mut cfg = f.config.clone();
    cfg.stuck_after_ms = 1;
    // Bumps come from this test's calls only, not the background syncer.
    cfg.poll_interval_ms = 600_000;
    cfg.escrow = Some(f.adapter.deployment().escrow.to_string());
    cfg.htlc = Some(f.adapter.deployment().htlc.to_string());
    let base = f
        .adapter
        .provider()
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .unwrap()
        .unwrap()
        .header
        .base_fee_per_gas
        .unwrap();
    cfg.max_fee_per_gas = u128::from(base) * 2 + 4_000_000_000;
    let adapter = isthmus_adapter_evm::EvmAdapter::open(cfg, std::sync::Arc::new(f.wallet.clone()))
        .await
        .unwrap();
    let [from, to] = f.accounts();
    let to = to.0.parse().unwrap();
    let tx = adapter
        .transact(&from, Some(to), Default::default(), U256::from(5u64))
        .await
        .unwrap();
    assert_eq!(adapter.tx_status(&tx).await.unwrap(), TxStatus::Pending);
    let mut replaced = Vec::new();
    let mut capped = false;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let r = adapter.bump_stuck().await.unwrap();
        replaced.extend(r.replaced);
        if !r.at_cap.is_empty() {
            capped = true;
            break;
        }
    }
    assert!(!replaced.is_empty(), "no replacement was sent");
    assert!(capped, "bumping never reached the cap");
    let newest = replaced.last().unwrap().1;
    let pending = f
        .adapter
        .provider()
        .get_transaction_by_hash(newest)
        .await
        .unwrap()
        .unwrap();
    assert!(
        alloy::consensus::Transaction::max_fee_per_gas(&pending)
            <= u128::from(base) * 2 + 4_000_000_000
    );
    f.raw("anvil_mine", serde_json::json!([1])).await.unwrap();
    // The original id follows its replacement.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let TxStatus::Included { .. } | TxStatus::Final { .. } =
            adapter.tx_status(&tx).await.unwrap()
        {
            break;
        }
        assert!(Instant::now() < deadline, "replacement never mined");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_killed_and_restarted_mid_transfer_the_adapter_reconnects_and_completes() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("anvil-state.json");
    let mut f = fixture(FixtureOptions {
        anvil_args: vec!["--state".into(), state.display().to_string()],
        ..FixtureOptions::default()
    })
    .await;
    let a = f.adapter();
    let req = lock_req(
        &f,
        "restart",
        f.token_asset(),
        777,
        LockTerms::TwoPhase,
        3_600,
    )
    .await;
    let tx = a.lock(&req).await.unwrap();
    f.adapter
        .wait_mined(&tx, Duration::from_secs(10))
        .await
        .unwrap();
    // The node goes away mid-transfer: calls fail as retryable, health says so.
    f.anvil.stop();
    let e = a.heads().await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(!a.health().await.unwrap().is_usable());
    f.anvil.restart().unwrap();
    // Blocks the adapter has not seen yet pile up; once reconnected it backfills every one of
    // them, in order, exactly once.
    let before = a.heads().await.unwrap().head.height;
    let mark = a
        .events_since(Checkpoint::START, u32::MAX)
        .await
        .unwrap()
        .next;
    f.raw("anvil_mine", serde_json::json!([20])).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let healthy = a.health().await.unwrap() == Health::Healthy;
        if healthy && a.heads().await.unwrap().head.height >= before + 20 {
            break;
        }
        assert!(Instant::now() < deadline, "adapter did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let heads: Vec<u64> = a
        .events_since(mark, u32::MAX)
        .await
        .unwrap()
        .events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::NewHead { block } => Some(block.height),
            _ => None,
        })
        .collect();
    assert_eq!(heads, (before + 1..=before + 20).collect::<Vec<_>>());
    // Reconnected: the transfer carries on to finality and release.
    final_after_mining(&f, &tx).await;
    let rel = a
        .release(&ReleaseRequest {
            lock_id: req.lock_id,
            attestation: f.attest(req.lock_id, Decision::Validated, record()),
        })
        .await
        .unwrap();
    final_after_mining(&f, &rel).await;
    let [_, to] = f.accounts();
    let got = a.balance(&to, &f.token_asset()).await.unwrap().0;
    assert_eq!(got, isthmus_adapter_evm::anvil::TOKEN_FUNDING + 777);
}

/// Request -> final lock -> release final, on anvil mining a block every second at depth 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measured_transfer_wall_time_on_a_one_second_chain() {
    let conf = 3u32;
    let f = fixture(FixtureOptions {
        confirmations: conf,
        anvil_args: vec!["--block-time".into(), "1".into()],
        ..FixtureOptions::default()
    })
    .await;
    let a = f.adapter();
    let req = lock_req(
        &f,
        "timed",
        f.token_asset(),
        1_000,
        LockTerms::TwoPhase,
        3_600,
    )
    .await;
    // Start on a block boundary, so the block count below is what the chain had to make.
    let h0 = a.heads().await.unwrap().head.height;
    while a.heads().await.unwrap().head.height == h0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let start = a.heads().await.unwrap().head.height;
    let t0 = Instant::now();
    let tx = a.lock(&req).await.unwrap();
    let sent = t0.elapsed();
    let lock_block = until_final(&f, &tx, Duration::from_secs(60)).await;
    let locked = t0.elapsed();
    let t1 = Instant::now();
    let rel = a
        .release(&ReleaseRequest {
            lock_id: req.lock_id,
            attestation: f.attest(req.lock_id, Decision::Validated, record()),
        })
        .await
        .unwrap();
    let rel_sent = t1.elapsed();
    let rel_block = until_final(&f, &rel, Duration::from_secs(60)).await;
    let total = t0.elapsed();
    let end = a.heads().await.unwrap().head.height;
    // Confirmation waiting: the blocks the chain made meanwhile, one second each (this includes
    // the ERC-20 approve's inclusion); adapter overhead is the rest of the wall time.
    let waiting = Duration::from_secs(end - start);
    let overhead = total.saturating_sub(waiting);
    eprintln!(
        "evm transfer (erc20, depth {conf}, 1 s blocks): total {total:?} = confirmation wait {waiting:?} ({} blocks) + adapter overhead {overhead:?}; lock submit {sent:?} (approve included), lock final after {locked:?} (block {}), release submit {rel_sent:?}, release final at block {}",
        end - start,
        lock_block.height,
        rel_block.height
    );
    assert!(rel_block.height >= lock_block.height + u64::from(conf));
    assert!(total < Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_pending_from_an_earlier_run_is_not_sent_twice() {
    let f = fixture(FixtureOptions::default()).await;
    f.raw("evm_setAutomine", serde_json::json!([false]))
        .await
        .unwrap();
    let req = lock_req(
        &f,
        "pending",
        AssetId("native".into()),
        500,
        LockTerms::TwoPhase,
        3_600,
    )
    .await;
    let tx = f.adapter.lock(&req).await.unwrap();
    // A fresh adapter (as after a restart) over the same contracts and wallet.
    let mut cfg = f.config.clone();
    cfg.escrow = Some(f.adapter.deployment().escrow.to_string());
    cfg.htlc = Some(f.adapter.deployment().htlc.to_string());
    let fresh = isthmus_adapter_evm::EvmAdapter::open(cfg, std::sync::Arc::new(f.wallet.clone()))
        .await
        .unwrap();
    let e = fresh.lock(&req).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    f.raw("anvil_mine", serde_json::json!([1])).await.unwrap();
    // Once mined, the retry names the one lock transaction.
    assert_eq!(fresh.lock(&req).await.unwrap(), tx);
}
