//! The mock platform passes the same conformance suite as the real adapters (with instant
//! and probabilistic finality, and without contract support, where it must answer
//! `Unsupported`); the suite catches a broken adapter; the mock's reorgs, and machine actions
//! run through `LegOp` against it.

// A test binary: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::FutureExt;
use isthmus_adapter_api::*;
use isthmus_adapter_testkit::conformance::{self, Fixture};
use isthmus_adapter_testkit::mock::{self, MockFixture};

fn factory(
    finality: Finality,
) -> impl Fn() -> futures::future::BoxFuture<'static, Result<Box<dyn Fixture>, String>> {
    move || async move { Ok(Box::new(MockFixture::new(7, finality)) as Box<dyn Fixture>) }.boxed()
}

#[tokio::test]
async fn mock_with_instant_finality_passes_the_suite() {
    let report = conformance::run(&factory(Finality::Instant)).await;
    assert_eq!(report.results.len(), conformance::CHECKS.len());
    report.assert_passed();
}

#[tokio::test]
async fn mock_with_six_confirmations_passes_the_suite() {
    let f = factory(Finality::Probabilistic { confirmations: 6 });
    conformance::run(&f).await.assert_passed();
}

#[tokio::test]
async fn mock_without_contracts_must_answer_unsupported() {
    let f = || {
        async {
            let fx = MockFixture::new(9, Finality::Instant);
            let mut cfg = mock::MockConfig::new(
                9,
                Finality::Instant,
                fx.hub_keys.iter().map(|k| k.id()).collect(),
            );
            cfg.two_phase = TwoPhaseSupport::Unsupported;
            cfg.htlc = false;
            let adapter = std::sync::Arc::new(mock::MockAdapter::new(cfg));
            for a in fx.accounts() {
                adapter.fund(&a, &fx.asset(), 1_000_000_000);
            }
            Ok(Box::new(MockFixture { adapter, ..fx }) as Box<dyn Fixture>)
        }
        .boxed()
    };
    conformance::run(&f).await.assert_passed();
}

/// The suite is not vacuous: a platform that breaks idempotency or accepts forged
/// attestations fails it.
#[tokio::test]
async fn the_suite_catches_a_broken_adapter() {
    /// Claims every piece of evidence verifies.
    struct Lying(std::sync::Arc<mock::MockAdapter>);
    #[async_trait::async_trait]
    impl Adapter for Lying {
        fn descriptor(&self) -> &PlatformDescriptor {
            self.0.descriptor()
        }
        async fn health(&self) -> Result<Health, AdapterError> {
            self.0.health().await
        }
        async fn heads(&self) -> Result<Heads, AdapterError> {
            self.0.heads().await
        }
        async fn events_since(&self, a: Checkpoint, l: u32) -> Result<EventPage, AdapterError> {
            self.0.events_since(a, l).await
        }
        async fn submit(&self, tx: SignedTx) -> Result<isthmus_lock_contracts::TxId, AdapterError> {
            self.0.submit(tx).await
        }
        async fn tx_status(
            &self,
            tx: &isthmus_lock_contracts::TxId,
        ) -> Result<TxStatus, AdapterError> {
            self.0.tx_status(tx).await
        }
        async fn evidence(
            &self,
            tx: &isthmus_lock_contracts::TxId,
        ) -> Result<Evidence, AdapterError> {
            self.0.evidence(tx).await
        }
        async fn verify_evidence(
            &self,
            _: &isthmus_lock_contracts::TxId,
            e: &Evidence,
        ) -> Result<Verified, AdapterError> {
            Ok(Verified {
                block: e.block(),
                confirmations: 99,
                digest: e.digest(),
            })
        }
        async fn balance(
            &self,
            a: &isthmus_lock_contracts::Address,
            s: &isthmus_lock_contracts::AssetId,
        ) -> Result<isthmus_lock_contracts::Amount, AdapterError> {
            self.0.balance(a, s).await
        }
        async fn lock(
            &self,
            r: &LockRequest,
        ) -> Result<isthmus_lock_contracts::TxId, AdapterError> {
            self.0.lock(r).await
        }
        async fn release(
            &self,
            r: &ReleaseRequest,
        ) -> Result<isthmus_lock_contracts::TxId, AdapterError> {
            self.0.release(r).await
        }
        async fn refund(
            &self,
            r: &RefundRequest,
        ) -> Result<isthmus_lock_contracts::TxId, AdapterError> {
            self.0.refund(r).await
        }
        async fn claim(
            &self,
            r: &ClaimRequest,
        ) -> Result<isthmus_lock_contracts::TxId, AdapterError> {
            self.0.claim(r).await
        }
        async fn lock_state(
            &self,
            l: &isthmus_lock_contracts::LockId,
        ) -> Result<Option<OnChainLock>, AdapterError> {
            self.0.lock_state(l).await
        }
    }
    let f = || {
        async {
            let inner = MockFixture::new(3, Finality::Instant);
            let adapter = std::sync::Arc::new(Lying(inner.adapter.clone()));
            Ok(Box::new(conformance::Rewrapped { inner, adapter }) as Box<dyn Fixture>)
        }
        .boxed()
    };
    let report = conformance::run(&f).await;
    let failed: Vec<_> = report.failures().iter().map(|r| r.name).collect();
    assert_eq!(
        failed,
        vec!["submit_reaches_finality_with_verified_evidence"]
    );
}

#[tokio::test]
async fn reorg_withdraws_an_unfinal_lock_and_reports_it() {
    let fx = MockFixture::new(5, Finality::Probabilistic { confirmations: 3 });
    let a = fx.adapter.clone();
    let [owner, to] = fx.accounts();
    let req = LockRequest {
        lock_id: isthmus_lock_contracts::LockId(isthmus_core::Hash32([5; 32])),
        leg: isthmus_lock_contracts::LegSpec {
            network: isthmus_core::NetworkId(5),
            asset: fx.asset(),
            amount: isthmus_lock_contracts::Amount(10),
            from: owner.clone(),
            to,
            timeout: 5_000,
            locker: isthmus_lock_contracts::Locker::HubWallet,
        },
        terms: LockTerms::TwoPhase,
    };
    let before = a.balance(&owner, &fx.asset()).await.unwrap();
    let tx = a.lock(&req).await.unwrap();
    let mark = a.events_since(Checkpoint::START, 1000).await.unwrap().next;
    a.reorg(1).unwrap();
    assert_eq!(a.tx_status(&tx).await.unwrap(), TxStatus::Unknown);
    assert!(a.lock_state(&req.lock_id).await.unwrap().is_none());
    assert_eq!(a.balance(&owner, &fx.asset()).await.unwrap(), before);
    let events = a.events_since(mark, 10).await.unwrap().events;
    assert!(
        matches!(&events[..], [ChainEvent { kind: EventKind::Reverted { txs, .. }, .. }] if txs == &vec![tx.clone()])
    );
    // Final blocks cannot be reorged.
    a.lock(&req).await.unwrap();
    a.mine(3);
    let err = a.reorg(4).unwrap_err();
    assert!(
        err.to_string().contains("would revert final block"),
        "{err}"
    );
}

/// A two-phase machine's actions, carried out through `LegOp` on two mock networks, end in
/// both releases; re-executing every action afterwards changes nothing.
#[tokio::test]
async fn machine_actions_execute_through_leg_ops_idempotently() {
    use isthmus_lock_contracts::*;
    let (fa, fb) = (
        MockFixture::new(21, Finality::Instant),
        MockFixture::new(22, Finality::Instant),
    );
    let keys = fa.hub_keys.clone();
    let attest = move |n, l, d, r| HubAttestation::sign_ed25519(n, l, d, r, &keys);
    let [a_owner, a_to] = fa.accounts();
    let [b_owner, b_to] = fb.accounts();
    let leg = |net, from: &Address, to: &Address| LegSpec {
        network: isthmus_core::NetworkId(net),
        asset: fa.asset(),
        amount: Amount(100),
        from: from.clone(),
        to: to.clone(),
        timeout: 10_000,
        locker: Locker::HubWallet,
    };
    let spec = TwoPhaseSpec {
        a: leg(21, &a_owner, &a_to),
        b: leg(22, &b_owner, &b_to),
        deadline: 5_000,
    };
    let (mut m, mut actions) = TwoPhase::create(
        InstanceId::derive(&[b"legop"]),
        spec.clone(),
        &TwoPhaseConfig::default(),
        1_000,
    )
    .unwrap();
    let adapters: [&mock::MockAdapter; 2] = [&fa.adapter, &fb.adapter];
    let mut done = Vec::new();
    for _ in 0..10 {
        let mut next = Vec::new();
        for action in actions.drain(..) {
            done.push(action.clone());
            let Some(leg) = action.leg() else {
                let Action::RecordDecision { decision } = action else {
                    unreachable!()
                };
                let record = HubRecord {
                    height: 1,
                    tx: TxId("hub-1".into()),
                };
                next.extend(
                    m.step(&TwoPhaseEvent::DecisionRecorded { decision, record })
                        .unwrap(),
                );
                continue;
            };
            let ad = adapters[usize::from(leg == LegId::B)];
            let op =
                LegOp::from_action(&action, spec.leg(leg), &LockTerms::TwoPhase, &attest).unwrap();
            let tx = op.execute(ad).await.unwrap();
            let ev = match op {
                LegOp::Lock(_) => {
                    let state = ad.lock_state(&op.lock_id()).await.unwrap().unwrap();
                    assert_eq!(state.observation.tx, tx);
                    let proof = ad.evidence(&tx).await.unwrap();
                    ad.verify_evidence(&tx, &proof).await.unwrap();
                    TwoPhaseEvent::LockFinalized {
                        leg,
                        lock: state.observation,
                        evidence: proof.to_ref(),
                    }
                }
                LegOp::Release(_) => TwoPhaseEvent::Released { leg, tx },
                other => panic!("unexpected {other:?}"),
            };
            next.extend(m.step(&ev).unwrap());
        }
        actions = next;
    }
    assert_eq!(m.status().phase, Phase::Released);
    let balances = (
        fa.adapter.balance(&a_to, &fa.asset()).await.unwrap(),
        fb.adapter.balance(&b_to, &fb.asset()).await.unwrap(),
    );
    assert_eq!(balances, (Amount(1_000_000_100), Amount(1_000_000_100)));
    // A crashed hub re-executes everything it ever emitted: nothing moves again.
    for action in &done {
        if let Some(leg) = action.leg() {
            let ad = adapters[usize::from(leg == LegId::B)];
            let op =
                LegOp::from_action(action, spec.leg(leg), &LockTerms::TwoPhase, &attest).unwrap();
            op.execute(ad).await.unwrap();
        }
    }
    assert_eq!(
        fa.adapter.balance(&a_to, &fa.asset()).await.unwrap(),
        balances.0
    );
    assert_eq!(
        fb.adapter.balance(&b_to, &fb.asset()).await.unwrap(),
        balances.1
    );
}
