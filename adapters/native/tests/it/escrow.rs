//! The escrow module on a real network refuses what an untrusted submitter sends it
//! directly, past the adapter's own checks: forged or misdirected attestations and a second
//! settlement fail on chain and change nothing.

use crate::net::{hub_keys, now_ms, pos, pow, TestNet};
use isthmus_adapter_api::{
    Adapter, Checkpoint, EventKind, HubAttestation, LockRequest, LockStatus, LockTerms,
    ReleaseRequest, SignedTx, TxStatus,
};
use isthmus_adapter_native::{escrow_attestation, NativeAdapter, ASSET};
use isthmus_chain::escrow::{EscrowCall, RefundArgs, ReleaseArgs};
use isthmus_chain::tx::Transaction;
use isthmus_core::{HashAlgo, Keypair, NetworkId};
use isthmus_lock_contracts::{
    Address, Amount, AssetId, Decision, HubRecord, LegSpec, LockId, Locker, TxId,
};
use std::time::{Duration, Instant};

async fn settled(a: &NativeAdapter, id: &TxId) -> TxStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = a.tx_status(id).await.unwrap();
        if matches!(s, TxStatus::Final { .. } | TxStatus::Failed { .. }) {
            return s;
        }
        assert!(Instant::now() < deadline, "tx {id} not settled: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_submissions_of_forged_or_repeated_settlements_fail_on_chain() {
    let net = TestNet::start(pos("beta", 202, &["alice"])).await;
    net.until_height(1).await.unwrap();
    let alice = Keypair::dev("alice");
    let bob = Keypair::dev("bob");
    let a = net.adapter(&[&alice], 3);
    let addr = |k: &Keypair| Address(k.id().to_string());
    let lock_id = LockId(HashAlgo::Sha256.digest(b"direct"));
    let lock = a
        .lock(&LockRequest {
            lock_id,
            leg: LegSpec {
                network: net.cfg.network(),
                asset: AssetId(ASSET.into()),
                amount: Amount(1_000),
                from: addr(&alice),
                to: addr(&bob),
                timeout: now_ms() / 1000 + 600,
                locker: Locker::HubWallet,
            },
            terms: LockTerms::TwoPhase,
        })
        .await
        .unwrap();
    assert!(settled(&a, &lock).await.is_final());
    let balances = || async {
        (
            a.balance(&addr(&alice), &AssetId(ASSET.into()))
                .await
                .unwrap(),
            a.balance(&addr(&bob), &AssetId(ASSET.into()))
                .await
                .unwrap(),
        )
    };
    let before = balances().await;
    let record = HubRecord {
        height: 3,
        tx: TxId("hub-record".into()),
    };
    let mallory = Keypair::dev("mallory");
    let mut nonce = 0;
    let mut direct = |call: EscrowCall| {
        let tx = Transaction::sign(&mallory, net.cfg.network(), nonce, call.to_kind());
        nonce += 1;
        SignedTx(rmp_serde::to_vec(&tx).unwrap())
    };
    let release = |att: &HubAttestation| {
        EscrowCall::Release(ReleaseArgs {
            lock_id: lock_id.0,
            attestation: escrow_attestation(att),
        })
    };
    let hub = hub_keys();
    let forged = HubAttestation::sign_ed25519(
        net.cfg.network(),
        lock_id,
        Decision::Validated,
        record.clone(),
        &[Keypair::dev("x"), Keypair::dev("y")],
    );
    let elsewhere = HubAttestation::sign_ed25519(
        NetworkId(201),
        lock_id,
        Decision::Validated,
        record.clone(),
        &hub[..2],
    );
    let one_signer = HubAttestation::sign_ed25519(
        net.cfg.network(),
        lock_id,
        Decision::Validated,
        record.clone(),
        &hub[..1],
    );
    for (what, att) in [
        ("untrusted signers", &forged),
        ("another network", &elsewhere),
        ("below threshold", &one_signer),
    ] {
        let id = a.submit(direct(release(att))).await.unwrap();
        let s = settled(&a, &id).await;
        assert!(matches!(s, TxStatus::Failed { .. }), "{what}: {s:?}");
        assert_eq!(balances().await, before, "{what} moved funds");
        let st = a.lock_state(&lock_id).await.unwrap().unwrap();
        assert_eq!(st.status, LockStatus::Locked, "{what}");
    }
    // The hub's release goes through once.
    let good = HubAttestation::sign_ed25519(
        net.cfg.network(),
        lock_id,
        Decision::Validated,
        record.clone(),
        &hub[1..],
    );
    let rel = a
        .release(&ReleaseRequest {
            lock_id,
            attestation: good.clone(),
        })
        .await
        .unwrap();
    assert!(settled(&a, &rel).await.is_final());
    let after = balances().await;
    assert_eq!(after, (before.0, Amount(before.1 .0 + 1_000)));
    // Replaying it, or refunding after it, fails on chain and changes nothing.
    let abort = HubAttestation::sign_ed25519(
        net.cfg.network(),
        lock_id,
        Decision::Aborted,
        record,
        &hub[..2],
    );
    for (what, call) in [
        ("replayed release", release(&good)),
        (
            "refund after release",
            EscrowCall::Refund(RefundArgs {
                lock_id: lock_id.0,
                attestation: Some(escrow_attestation(&abort)),
            }),
        ),
    ] {
        let id = a.submit(direct(call)).await.unwrap();
        let s = settled(&a, &id).await;
        assert!(matches!(s, TxStatus::Failed { .. }), "{what}: {s:?}");
        assert_eq!(balances().await, after, "{what} moved funds");
    }
    assert!(matches!(
        a.lock_state(&lock_id).await.unwrap().unwrap().status,
        LockStatus::Released { tx } if tx == rel
    ));
}

/// Under PoW a release counts only once its block is `confirmations` deep: before that the
/// event stream carries no `Released` and `lock_state` still says Locked, so a reorg of the
/// release can never have been settled on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pow_release_is_reported_only_once_its_block_is_final() {
    const DEPTH: u64 = 6;
    let net = TestNet::start(pow("alpha", 201, &["alice"])).await;
    net.until_height(1).await.unwrap();
    let alice = Keypair::dev("alice");
    let bob = Keypair::dev("bob");
    let a = net.adapter(&[&alice], DEPTH as u32);
    let lock_id = LockId(HashAlgo::Sha256.digest(b"pow-depth"));
    a.lock(&LockRequest {
        lock_id,
        leg: LegSpec {
            network: net.cfg.network(),
            asset: AssetId(ASSET.into()),
            amount: Amount(1_000),
            from: Address(alice.id().to_string()),
            to: Address(bob.id().to_string()),
            timeout: now_ms() / 1000 + 600,
            locker: Locker::HubWallet,
        },
        terms: LockTerms::TwoPhase,
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !a
        .lock_state(&lock_id)
        .await
        .unwrap()
        .is_some_and(|l| l.is_final)
    {
        assert!(Instant::now() < deadline, "the lock never became final");
        net.mine(1).await.unwrap();
    }
    let attestation = HubAttestation::sign_ed25519(
        net.cfg.network(),
        lock_id,
        Decision::Validated,
        HubRecord {
            height: 3,
            tx: TxId("hub-record".into()),
        },
        &hub_keys()[..2],
    );
    let rel = a
        .release(&ReleaseRequest {
            lock_id,
            attestation,
        })
        .await
        .unwrap();
    let included = loop {
        assert!(Instant::now() < deadline, "the release was never included");
        net.mine(1).await.unwrap();
        match a.tx_status(&rel).await.unwrap() {
            TxStatus::Included { block, .. } => break block.height,
            TxStatus::Final { .. } => panic!("the release was final at once: mine fewer blocks"),
            _ => {}
        }
    };
    let released = || async {
        let page = a.events_since(Checkpoint(0), 10_000).await.unwrap().events;
        page.into_iter()
            .filter(|e| matches!(&e.kind, EventKind::Released { lock_id: l, .. } if *l == lock_id))
            .count()
    };
    let head = net.height().await;
    assert!(
        head < included + DEPTH,
        "precondition: head {head}, release at {included}"
    );
    assert_eq!(
        released().await,
        0,
        "released reported at depth {}",
        head + 1 - included
    );
    assert_eq!(
        a.lock_state(&lock_id).await.unwrap().unwrap().status,
        LockStatus::Locked
    );
    net.until_height(included + DEPTH).await.unwrap();
    assert_eq!(released().await, 1);
    assert_eq!(
        a.lock_state(&lock_id).await.unwrap().unwrap().status,
        LockStatus::Released { tx: rel }
    );
}
