//! Lock-contract flows on anvil with ETH and the test ERC-20, the attestation threshold, and the
//! HTLC.

use crate::util::*;
use isthmus_adapter_api::*;
use isthmus_adapter_evm::anvil::FixtureOptions;
use isthmus_adapter_testkit::conformance::Fixture;
use isthmus_core::HashAlgo;
use isthmus_lock_contracts::{Amount, AssetId, Decision, Preimage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eth_two_phase_release_pays_the_beneficiary_exactly() {
    let f = fixture(FixtureOptions::default()).await;
    let a = f.adapter();
    let native = AssetId("native".into());
    let [owner, to] = f.accounts();
    let req = lock_req(
        &f,
        "eth-release",
        native.clone(),
        5_000_000,
        LockTerms::TwoPhase,
        3_600,
    )
    .await;
    let o0 = a.balance(&owner, &native).await.unwrap().0;
    let b0 = a.balance(&to, &native).await.unwrap().0;
    let tx = a.lock(&req).await.unwrap();
    let gas = gas_paid(&f, &tx).await;
    final_after_mining(&f, &tx).await;
    let o1 = a.balance(&owner, &native).await.unwrap().0;
    assert_eq!(
        o0 - o1,
        5_000_000 + gas,
        "owner pays the amount and the gas"
    );
    let att = f.attest(req.lock_id, Decision::Validated, record());
    let rel = a
        .release(&ReleaseRequest {
            lock_id: req.lock_id,
            attestation: att,
        })
        .await
        .unwrap();
    final_after_mining(&f, &rel).await;
    assert_eq!(a.balance(&to, &native).await.unwrap().0, b0 + 5_000_000);
    let state = a.lock_state(&req.lock_id).await.unwrap().unwrap();
    assert_eq!(state.status, LockStatus::Released { tx: rel });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eth_refund_after_the_deadline_needs_no_attestation() {
    let f = fixture(FixtureOptions::default()).await;
    let a = f.adapter();
    let native = AssetId("native".into());
    let [owner, _] = f.accounts();
    let req = lock_req(
        &f,
        "eth-refund",
        native.clone(),
        7_000,
        LockTerms::TwoPhase,
        60,
    )
    .await;
    let tx = a.lock(&req).await.unwrap();
    final_after_mining(&f, &tx).await;
    let timeout = RefundRequest {
        lock_id: req.lock_id,
        authorisation: RefundAuthorisation::Timeout,
    };
    let early = a.refund(&timeout).await.unwrap_err();
    assert!(!early.is_retryable(), "{early}");
    f.advance_time_to(req.leg.timeout).await.unwrap();
    let o0 = a.balance(&owner, &native).await.unwrap().0;
    let r = a.refund(&timeout).await.unwrap();
    final_after_mining(&f, &r).await;
    // The relayer paid the gas; the owner gets the whole amount back.
    assert_eq!(a.balance(&owner, &native).await.unwrap().0, o0 + 7_000);
    let rel = a
        .release(&ReleaseRequest {
            lock_id: req.lock_id,
            attestation: f.attest(req.lock_id, Decision::Validated, record()),
        })
        .await
        .unwrap_err();
    assert_eq!(rel.code(), "conflict", "{rel}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_needs_the_threshold_of_distinct_configured_attesters() {
    let f = fixture(FixtureOptions::default()).await;
    let a = f.adapter();
    let req = lock_req(
        &f,
        "threshold",
        f.token_asset(),
        1_000,
        LockTerms::TwoPhase,
        3_600,
    )
    .await;
    let tx = a.lock(&req).await.unwrap();
    final_after_mining(&f, &tx).await;
    let domain = f.adapter.escrow_domain();
    let sign = |keys: &[k256::ecdsa::SigningKey]| {
        HubAttestation::sign_secp256k1_evm(
            f.config.network,
            req.lock_id,
            Decision::Validated,
            record(),
            &domain,
            keys,
        )
    };
    // One attester of the required two, even repeated, is not enough.
    let mut one = sign(&f.attesters[..1]);
    one.signatures.push(one.signatures[0].clone());
    // A stranger's key does not count.
    let stranger = k256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let with_stranger = sign(&[f.attesters[0].clone(), stranger]);
    // Signed for another escrow address: void here.
    let other_domain = EvmEscrowDomain {
        escrow: [1; 20],
        ..domain
    };
    let elsewhere = HubAttestation::sign_secp256k1_evm(
        f.config.network,
        req.lock_id,
        Decision::Validated,
        record(),
        &other_domain,
        &f.attesters,
    );
    for (what, attestation) in [
        ("one", one),
        ("stranger", with_stranger),
        ("elsewhere", elsewhere),
    ] {
        let e = a
            .release(&ReleaseRequest {
                lock_id: req.lock_id,
                attestation,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), "invalid_request", "{what}: {e}");
    }
    // Two of three, in any order, release.
    let two = sign(&[f.attesters[2].clone(), f.attesters[0].clone()]);
    let rel = a
        .release(&ReleaseRequest {
            lock_id: req.lock_id,
            attestation: two,
        })
        .await
        .unwrap();
    final_after_mining(&f, &rel).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eth_htlc_claim_reveals_the_preimage_and_a_second_htlc_refunds_after_timeout() {
    let f = fixture(FixtureOptions::default()).await;
    let a = f.adapter();
    let native = AssetId("native".into());
    let [owner, to] = f.accounts();
    let secret = [42u8; 32];
    let hashlock = HashAlgo::Sha256.digest(&secret);
    let claim = lock_req(
        &f,
        "htlc-claim",
        native.clone(),
        9_000,
        LockTerms::Htlc { hashlock },
        600,
    )
    .await;
    let tx = a.lock(&claim).await.unwrap();
    final_after_mining(&f, &tx).await;
    let b0 = a.balance(&to, &native).await.unwrap().0;
    let mark = a
        .events_since(Checkpoint::START, u32::MAX)
        .await
        .unwrap()
        .next;
    let c = a
        .claim(&ClaimRequest {
            lock_id: claim.lock_id,
            preimage: Preimage(secret),
        })
        .await
        .unwrap();
    final_after_mining(&f, &c).await;
    assert_eq!(a.balance(&to, &native).await.unwrap().0, b0 + 9_000);
    let events = a.events_since(mark, u32::MAX).await.unwrap().events;
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::Claimed { lock_id, preimage, .. } if *lock_id == claim.lock_id && preimage.as_slice() == secret)));

    let refund = lock_req(
        &f,
        "htlc-refund",
        native.clone(),
        3_000,
        LockTerms::Htlc { hashlock },
        60,
    )
    .await;
    let tx = a.lock(&refund).await.unwrap();
    final_after_mining(&f, &tx).await;
    f.advance_time_to(refund.leg.timeout).await.unwrap();
    // After the timeout the preimage no longer claims.
    let late = a
        .claim(&ClaimRequest {
            lock_id: refund.lock_id,
            preimage: Preimage(secret),
        })
        .await
        .unwrap_err();
    assert!(!late.is_retryable(), "{late}");
    let o0 = a.balance(&owner, &native).await.unwrap().0;
    let r = a
        .refund(&RefundRequest {
            lock_id: refund.lock_id,
            authorisation: RefundAuthorisation::Timeout,
        })
        .await
        .unwrap();
    final_after_mining(&f, &r).await;
    assert_eq!(a.balance(&owner, &native).await.unwrap().0, o0 + 3_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erc20_refund_on_an_aborted_attestation_returns_the_tokens() {
    let f = fixture(FixtureOptions::default()).await;
    let a = f.adapter();
    let [owner, _] = f.accounts();
    let asset = f.token_asset();
    let t0 = a.balance(&owner, &asset).await.unwrap().0;
    let req = lock_req(
        &f,
        "erc20-abort",
        asset.clone(),
        123_456,
        LockTerms::TwoPhase,
        3_600,
    )
    .await;
    let tx = a.lock(&req).await.unwrap();
    final_after_mining(&f, &tx).await;
    assert_eq!(
        a.balance(&owner, &asset).await.unwrap(),
        Amount(t0 - 123_456)
    );
    let r = a
        .refund(&RefundRequest {
            lock_id: req.lock_id,
            authorisation: RefundAuthorisation::Attestation(f.attest(
                req.lock_id,
                Decision::Aborted,
                record(),
            )),
        })
        .await
        .unwrap();
    final_after_mining(&f, &r).await;
    assert_eq!(a.balance(&owner, &asset).await.unwrap(), Amount(t0));
    let ev = a.evidence(&r).await.unwrap();
    let v = a.verify_evidence(&r, &ev).await.unwrap();
    assert!(v.confirmations >= u64::from(f.config.confirmations));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contracts_are_deployed_once_and_found_again_through_the_record() {
    let f = fixture(FixtureOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = f.config.clone();
    cfg.contracts_record = Some(dir.path().join("contracts.json"));
    let wallet = std::sync::Arc::new(f.wallet.clone());
    let first = isthmus_adapter_evm::EvmAdapter::open(cfg.clone(), wallet.clone())
        .await
        .unwrap();
    // The fixture's adapter deployed its own pair; this one deployed and recorded another.
    assert_ne!(first.deployment().escrow, f.adapter.deployment().escrow);
    let second = isthmus_adapter_evm::EvmAdapter::open(cfg, wallet)
        .await
        .unwrap();
    assert_eq!(
        second.deployment(),
        first.deployment(),
        "the record was reused"
    );
    let recorded = std::fs::read_to_string(dir.path().join("contracts.json")).unwrap();
    assert!(
        recorded.contains(&format!("{}", f.config.chain_id)),
        "{recorded}"
    );
}
