//! The adapter conformance suite, written once and run against every adapter: the mock,
//! the native chain, anvil, litecoind and out-of-process adapters.
//!
//! An adapter crate implements [`Fixture`] (how to make blocks, let time pass, fund accounts
//! and sign a transfer on its platform, and sign hub attestations its escrows trust) and calls
//! [`run`] with a factory. Each check gets a fresh fixture and returns a precise failure;
//! checks of contract operations follow the declared capabilities (an adapter that declares no
//! HTLC support must answer `Unsupported`, one that declares it must pass the HTLC checks).

use async_trait::async_trait;
use futures::future::BoxFuture;
use isthmus_adapter_api::adapter::*;
use isthmus_adapter_api::error::AdapterError;
use isthmus_adapter_api::evidence::{Evidence, HubAttestation};
use isthmus_adapter_api::types::*;
use isthmus_core::{Hash32, HashAlgo, Keypair};
use isthmus_lock_contracts::{
    Address, Amount, AssetId, Decision, HubRecord, LegSpec, LockId, Locker, Preimage, Timestamp,
    TxId,
};
use std::sync::Arc;

/// A platform prepared for the suite.
#[async_trait]
pub trait Fixture: Send + Sync {
    /// The adapter under test (may be an [`isthmus_adapter_api::AdapterHandle`]).
    fn adapter(&self) -> Arc<dyn Adapter>;

    /// Make the platform produce `n` blocks and return once the adapter has seen them.
    async fn mine(&self, n: u64) -> Result<(), AdapterError>;

    /// Make the platform's time (as the adapter maps it to hub time) reach `t`.
    async fn advance_time_to(&self, t: Timestamp) -> Result<(), AdapterError>;

    /// Two accounts funded with at least 1_000_000 units of [`Fixture::asset`], able to lock.
    fn accounts(&self) -> [Address; 2];

    fn asset(&self) -> AssetId;

    /// A transfer of `amount` from `accounts()[from]` to `to`, signed in the platform's format
    /// with the next nonce. Calling it twice gives two distinct transfers.
    async fn signed_transfer(
        &self,
        from: usize,
        to: &Address,
        amount: Amount,
    ) -> Result<SignedTx, AdapterError>;

    /// An attestation signed by keys this platform's escrows trust.
    fn attest(&self, lock_id: LockId, decision: Decision, record: HubRecord) -> HubAttestation;

    /// Replace the newest `depth` blocks with others (anvil_reorg, invalidateblock, ...),
    /// returning once the adapter has seen it. `Ok(false)`: this platform cannot reorg.
    async fn reorg(&self, depth: u64) -> Result<bool, AdapterError> {
        let _ = depth;
        Ok(false)
    }
}

/// Makes a fresh fixture per check.
pub type Factory<'a> =
    &'a (dyn Fn() -> BoxFuture<'static, Result<Box<dyn Fixture>, String>> + Send + Sync);

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub name: &'static str,
    pub outcome: Result<(), String>,
    /// Wall time of the check, its fixture's creation included.
    pub elapsed: std::time::Duration,
}

/// The outcome of the whole suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub platform: String,
    pub results: Vec<CheckResult>,
}

impl Report {
    pub fn failures(&self) -> Vec<&CheckResult> {
        self.results.iter().filter(|r| r.outcome.is_err()).collect()
    }

    /// Panics with every failure listed: for use inside a `#[test]`.
    pub fn assert_passed(&self) {
        let failures = self.failures();
        assert!(
            failures.is_empty(),
            "{} failed {} of {} conformance checks:\n{}",
            self.platform,
            failures.len(),
            self.results.len(),
            failures
                .iter()
                .map(|f| format!(
                    "  {}: {}",
                    f.name,
                    f.outcome.as_ref().err().map_or("", |s| s)
                ))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

type Check = for<'a> fn(&'a dyn Fixture) -> BoxFuture<'a, Result<(), String>>;

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), |f| Box::pin($name(f)))),*]
    };
}

/// Every check, by name.
pub const CHECKS: &[(&str, Check)] = checks![
    capabilities_are_consistent,
    healthy_and_heads_monotonic,
    submit_reaches_finality_with_verified_evidence,
    bad_transactions_rejected_without_state_change,
    submit_is_idempotent,
    events_page_and_resume_exactly_once,
    two_phase_release,
    two_phase_refund,
    htlc_claim_reveals_preimage,
    htlc_refund_only_after_timeout,
    reorg_withdraws_an_unfinal_lock,
];

/// A fixture whose adapter is replaced by another view of the same platform (a handle, a
/// decorator, a deliberately broken wrapper), so the suite can run through it.
pub struct Rewrapped<F> {
    pub inner: F,
    pub adapter: Arc<dyn Adapter>,
}

#[async_trait]
impl<F: Fixture> Fixture for Rewrapped<F> {
    fn adapter(&self) -> Arc<dyn Adapter> {
        self.adapter.clone()
    }
    async fn mine(&self, n: u64) -> Result<(), AdapterError> {
        self.inner.mine(n).await
    }
    async fn advance_time_to(&self, t: Timestamp) -> Result<(), AdapterError> {
        self.inner.advance_time_to(t).await
    }
    fn accounts(&self) -> [Address; 2] {
        self.inner.accounts()
    }
    fn asset(&self) -> AssetId {
        self.inner.asset()
    }
    async fn signed_transfer(
        &self,
        from: usize,
        to: &Address,
        amount: Amount,
    ) -> Result<SignedTx, AdapterError> {
        self.inner.signed_transfer(from, to, amount).await
    }
    fn attest(&self, lock_id: LockId, decision: Decision, record: HubRecord) -> HubAttestation {
        self.inner.attest(lock_id, decision, record)
    }
    async fn reorg(&self, depth: u64) -> Result<bool, AdapterError> {
        self.inner.reorg(depth).await
    }
}

/// Run every check, each on a fresh fixture. Each outcome is printed to stderr as it ends
/// (the test harness shows it for a failing or hanging test).
pub async fn run(factory: Factory<'_>) -> Report {
    let mut results = Vec::new();
    let mut platform = String::new();
    for (name, check) in CHECKS {
        let started = std::time::Instant::now();
        let outcome = match factory().await {
            Ok(fixture) => {
                platform = fixture.adapter().descriptor().name.clone();
                check(fixture.as_ref()).await
            }
            Err(e) => Err(format!("fixture could not be created: {e}")),
        };
        let elapsed = started.elapsed();
        eprintln!("conformance {name}: {outcome:?} ({elapsed:.1?})");
        results.push(CheckResult {
            name,
            outcome,
            elapsed,
        });
    }
    Report { platform, results }
}

// ---- helpers --------------------------------------------------------------------------

fn fail<T>(msg: impl Into<String>) -> Result<T, String> {
    Err(msg.into())
}

fn ctx<T>(what: &str, r: Result<T, AdapterError>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(msg())
    }
}

/// Mine until `tx` is final, within the declared finality depth plus slack.
async fn until_final(f: &dyn Fixture, tx: &TxId) -> Result<(), String> {
    let a = f.adapter();
    let depth = match a.descriptor().capabilities.finality {
        Finality::Instant => 0,
        Finality::Probabilistic { confirmations } => u64::from(confirmations),
    };
    for _ in 0..=depth + 3 {
        if ctx("tx_status", a.tx_status(tx).await)?.is_final() {
            return Ok(());
        }
        ctx("mine", f.mine(1).await)?;
    }
    fail(format!(
        "tx {tx} not final after {} blocks (declared depth {depth})",
        depth + 3
    ))
}

async fn balance(f: &dyn Fixture, who: &Address) -> Result<u128, String> {
    Ok(ctx("balance", f.adapter().balance(who, &f.asset()).await)?.0)
}

fn expect_refused<T: std::fmt::Debug>(
    what: &str,
    r: Result<T, AdapterError>,
) -> Result<AdapterError, String> {
    match r {
        Ok(v) => fail(format!("{what} was accepted ({v:?}), expected a refusal")),
        Err(e) if e.is_retryable() => fail(format!("{what} refused as retryable: {e}")),
        Err(e) => Ok(e),
    }
}

fn lock_id(tag: &str) -> LockId {
    LockId(HashAlgo::Sha256.digest_parts(&[b"conformance/", tag.as_bytes()]))
}

async fn lock_request(
    f: &dyn Fixture,
    tag: &str,
    terms: LockTerms,
    timeout_after: u64,
) -> Result<LockRequest, String> {
    let a = f.adapter();
    let [owner, beneficiary] = f.accounts();
    let now = ctx("heads", a.heads().await)?.time;
    Ok(LockRequest {
        lock_id: lock_id(tag),
        leg: LegSpec {
            network: a.descriptor().network,
            asset: f.asset(),
            amount: Amount(1_000),
            from: owner,
            to: beneficiary,
            timeout: now + timeout_after,
            locker: Locker::HubWallet,
        },
        terms,
    })
}

fn record() -> HubRecord {
    HubRecord {
        height: 1,
        tx: TxId("conformance-record".to_owned()),
    }
}

/// Lock and wait for finality; checks idempotent retry and the escrowed amount.
async fn locked(f: &dyn Fixture, req: &LockRequest) -> Result<TxId, String> {
    let a = f.adapter();
    let before = balance(f, &req.leg.from).await?;
    let tx = ctx("lock", a.lock(req).await)?;
    let again = ctx("lock retry", a.lock(req).await)?;
    ensure(again == tx, || {
        format!("lock retry gave tx {again}, first was {tx}")
    })?;
    until_final(f, &tx).await?;
    let after = balance(f, &req.leg.from).await?;
    ensure(before - after == req.leg.amount.0, || {
        format!(
            "owner paid {} for a lock of {}",
            before - after,
            req.leg.amount
        )
    })?;
    let state = ctx("lock_state", a.lock_state(&req.lock_id).await)?
        .ok_or("lock_state is empty after a final lock")?;
    ensure(state.is_final && state.status == LockStatus::Locked, || {
        format!("lock state after finality is {state:?}")
    })?;
    ensure(
        state.observation.amount == req.leg.amount && state.observation.beneficiary == req.leg.to,
        || {
            format!(
                "observed lock {:?} differs from the request",
                state.observation
            )
        },
    )?;
    Ok(tx)
}

/// What a platform that does not support a contract must answer.
async fn expect_unsupported(f: &dyn Fixture, req: &LockRequest) -> Result<(), String> {
    match f.adapter().lock(req).await {
        Err(AdapterError::Unsupported { .. }) => Ok(()),
        other => fail(format!(
            "undeclared contract: expected unsupported, got {other:?}"
        )),
    }
}

// ---- checks ---------------------------------------------------------------------------

async fn capabilities_are_consistent(f: &dyn Fixture) -> Result<(), String> {
    let d = f.adapter().descriptor().clone();
    let problems = d.capabilities.problems();
    ensure(problems.is_empty(), || problems.join("; "))?;
    ensure(!d.name.is_empty() && !d.consensus.is_empty(), || {
        "descriptor needs a name and a consensus".to_owned()
    })?;
    let utxo_kind = d.kind == PlatformKind::Utxo;
    ensure(
        !utxo_kind || d.capabilities.asset_model == AssetModel::Utxo,
        || "a utxo platform must declare the utxo asset model".to_owned(),
    )
}

async fn healthy_and_heads_monotonic(f: &dyn Fixture) -> Result<(), String> {
    let a = f.adapter();
    let h = ctx("health", a.health().await)?;
    ensure(h.is_usable(), || format!("fresh platform reports {h:?}"))?;
    let mut prev = ctx("heads", a.heads().await)?;
    for i in 0..4 {
        ctx("mine", f.mine(1).await)?;
        let now = ctx("heads", a.heads().await)?;
        ensure(now.head.height > prev.head.height, || {
            format!(
                "head did not advance after mining: {:?} then {:?}",
                prev.head, now.head
            )
        })?;
        ensure(now.finalized.height >= prev.finalized.height, || {
            format!(
                "finalized went back: {:?} then {:?}",
                prev.finalized, now.finalized
            )
        })?;
        ensure(now.finalized.height <= now.head.height, || {
            format!("finalized {:?} above head {:?}", now.finalized, now.head)
        })?;
        ensure(now.time >= prev.time, || {
            format!("time went back at step {i}")
        })?;
        if let Finality::Probabilistic { confirmations } = a.descriptor().capabilities.finality {
            let lag = now.head.height - now.finalized.height;
            ensure(lag <= u64::from(confirmations), || {
                format!("finalized lags the head by {lag}, more than the declared {confirmations}")
            })?;
        }
        prev = now;
    }
    if a.descriptor().capabilities.finality == Finality::Instant {
        ensure(prev.finalized == prev.head, || {
            format!(
                "instant finality, yet finalized {:?} != head {:?}",
                prev.finalized, prev.head
            )
        })?;
    }
    Ok(())
}

async fn submit_reaches_finality_with_verified_evidence(f: &dyn Fixture) -> Result<(), String> {
    let a = f.adapter();
    let [from, to] = f.accounts();
    let (b0, c0) = (balance(f, &from).await?, balance(f, &to).await?);
    let tx = ctx("sign", f.signed_transfer(0, &to, Amount(25)).await)?;
    let id = ctx("submit", a.submit(tx).await)?;
    until_final(f, &id).await?;
    let (b1, c1) = (balance(f, &from).await?, balance(f, &to).await?);
    ensure(c1 == c0 + 25 && b1 + 25 <= b0, || {
        format!("balances moved {b0}->{b1} and {c0}->{c1} for a transfer of 25")
    })?;
    let ev = ctx("evidence", a.evidence(&id).await)?;
    let v = ctx("verify_evidence", a.verify_evidence(&id, &ev).await)?;
    let status = ctx("tx_status", a.tx_status(&id).await)?;
    ensure(
        matches!(status, TxStatus::Final { block } if block == v.block),
        || {
            format!(
                "verified block {:?} differs from tx status {status:?}",
                v.block
            )
        },
    )?;
    ensure(v.digest == ev.digest(), || {
        "verified digest differs".to_owned()
    })?;
    // The same evidence does not prove another transaction.
    let other = TxId("not-this-tx".to_owned());
    expect_refused(
        "evidence for another tx",
        a.verify_evidence(&other, &ev).await,
    )?;
    // Tampered evidence does not verify.
    for bad in tampered(&ev) {
        expect_refused(
            &format!("tampered {} evidence", bad.kind_name()),
            a.verify_evidence(&id, &bad).await,
        )?;
    }
    Ok(())
}

/// Variants of `ev` with one field altered.
pub fn tampered(ev: &Evidence) -> Vec<Evidence> {
    let flip = |h: &Hash32| {
        let mut b = h.0;
        b[0] ^= 1;
        Hash32(b)
    };
    let mut out = Vec::new();
    let mut e = ev.clone();
    match &mut e {
        Evidence::CommitCertificate { block, .. }
        | Evidence::PowConfirmations { block, .. }
        | Evidence::EvmReceipt { block, .. }
        | Evidence::UtxoConfirmations { block, .. }
        | Evidence::Opaque { block, .. } => block.hash = flip(&block.hash),
    }
    out.push(e);
    let mut e = ev.clone();
    match &mut e {
        Evidence::CommitCertificate { tx_proof, .. }
        | Evidence::PowConfirmations { tx_proof, .. }
        | Evidence::UtxoConfirmations { tx_proof, .. } => tx_proof.leaf = flip(&tx_proof.leaf),
        Evidence::EvmReceipt { receipt_rlp: b, .. } | Evidence::Opaque { bytes: b, .. } => {
            if let Some(x) = b.last_mut() {
                *x ^= 1;
            }
        }
    }
    out.push(e);
    if let Evidence::CommitCertificate { .. } = ev {
        let mut e = ev.clone();
        if let Evidence::CommitCertificate { votes, .. } = &mut e {
            let forger = Keypair::generate().id();
            for vote in votes.iter_mut() {
                vote.validator = forger;
            }
        }
        out.push(e);
    }
    out
}

async fn bad_transactions_rejected_without_state_change(f: &dyn Fixture) -> Result<(), String> {
    let a = f.adapter();
    let [from, to] = f.accounts();
    let before = (balance(f, &from).await?, balance(f, &to).await?);
    expect_refused(
        "garbage bytes",
        a.submit(SignedTx(vec![0xde, 0xad, 0xbe, 0xef])).await,
    )?;
    expect_refused("empty tx", a.submit(SignedTx(vec![])).await)?;
    let huge = Amount(before.0 + 1_000_000_000);
    if let Ok(tx) = f.signed_transfer(0, &to, huge).await {
        expect_refused("overspending transfer", a.submit(tx).await)?;
    }
    let mut req = lock_request(f, "overdraw", LockTerms::TwoPhase, 100).await?;
    req.leg.amount = huge;
    if a.descriptor().capabilities.two_phase != TwoPhaseSupport::Unsupported {
        expect_refused("lock above the balance", a.lock(&req).await)?;
        let mut wrong_net = lock_request(f, "wrong-net", LockTerms::TwoPhase, 100).await?;
        wrong_net.leg.network.0 ^= 0xffff;
        expect_refused("lock for another network", a.lock(&wrong_net).await)?;
        ensure(
            ctx("lock_state", a.lock_state(&req.lock_id).await)?.is_none(),
            || "a refused lock left a lock behind".to_owned(),
        )?;
    }
    let unknown = lock_id("never-locked");
    let att = f.attest(unknown, Decision::Validated, record());
    expect_refused(
        "release of an unknown lock",
        a.release(&ReleaseRequest {
            lock_id: unknown,
            attestation: att,
        })
        .await,
    )?;
    let after = (balance(f, &from).await?, balance(f, &to).await?);
    ensure(before == after, || {
        format!("balances changed from {before:?} to {after:?}")
    })
}

async fn submit_is_idempotent(f: &dyn Fixture) -> Result<(), String> {
    let a = f.adapter();
    let [_, to] = f.accounts();
    let c0 = balance(f, &to).await?;
    let tx = ctx("sign", f.signed_transfer(0, &to, Amount(7)).await)?;
    let first = ctx("submit", a.submit(tx.clone()).await)?;
    let second = ctx("resubmit", a.submit(tx).await)?;
    ensure(first == second, || {
        format!("resubmission gave {second}, first {first}")
    })?;
    until_final(f, &first).await?;
    let c1 = balance(f, &to).await?;
    ensure(c1 == c0 + 7, || {
        format!("recipient got {} for one transfer of 7", c1 - c0)
    })
}

async fn events_page_and_resume_exactly_once(f: &dyn Fixture) -> Result<(), String> {
    let a = f.adapter();
    let [_, to] = f.accounts();
    let start = ctx("events", a.events_since(Checkpoint::START, 10_000).await)?.next;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let tx = ctx("sign", f.signed_transfer(0, &to, Amount(1)).await)?;
        ids.push(ctx("submit", a.submit(tx).await)?);
    }
    until_final(f, &ids[2]).await?;
    let all = ctx("events", a.events_since(start, 10_000).await)?;
    ensure(!all.more, || {
        "a 10000-event page says more is left".to_owned()
    })?;
    // Page one at a time, as a subscriber resuming from durable checkpoints would.
    let mut paged = Vec::new();
    let mut at = start;
    for _ in 0..=all.events.len() + 1 {
        let page = ctx("events page", a.events_since(at, 1).await)?;
        ensure(page.events.len() <= 1, || {
            "page exceeds its limit".to_owned()
        })?;
        paged.extend(page.events.iter().cloned());
        if page.events.is_empty() {
            break;
        }
        at = page.next;
    }
    ensure(paged == all.events, || {
        format!(
            "paging gave {} events, one page {}",
            paged.len(),
            all.events.len()
        )
    })?;
    ensure(
        all.events
            .windows(2)
            .all(|w| w[0].checkpoint < w[1].checkpoint),
        || "checkpoints are not strictly increasing".to_owned(),
    )?;
    for id in &ids {
        let seen = all
            .events
            .iter()
            .filter(|e| matches!(&e.kind, EventKind::TxIncluded { tx, .. } if tx == id))
            .count();
        ensure(seen == 1, || {
            format!("tx {id} included {seen} times in the events")
        })?;
    }
    let tail = ctx("events at the end", a.events_since(at, 10).await)?;
    ensure(tail.events.is_empty() && tail.next == at, || {
        format!("resuming at the end gave {:?}", tail.events)
    })
}

async fn two_phase_release(f: &dyn Fixture) -> Result<(), String> {
    let a = f.adapter();
    let req = lock_request(f, "release", LockTerms::TwoPhase, 10_000).await?;
    if a.descriptor().capabilities.two_phase == TwoPhaseSupport::Unsupported {
        return expect_unsupported(f, &req).await;
    }
    locked(f, &req).await?;
    let b0 = balance(f, &req.leg.to).await?;
    // Forged, wrong-decision and wrong-lock attestations change nothing.
    let forged = HubAttestation::sign_ed25519(
        a.descriptor().network,
        req.lock_id,
        Decision::Validated,
        record(),
        &[Keypair::generate()],
    );
    let bad = [
        ("forged attestation", forged),
        (
            "aborted attestation",
            f.attest(req.lock_id, Decision::Aborted, record()),
        ),
        (
            "attestation for another lock",
            f.attest(lock_id("other"), Decision::Validated, record()),
        ),
    ];
    for (what, attestation) in bad {
        let r = a
            .release(&ReleaseRequest {
                lock_id: req.lock_id,
                attestation,
            })
            .await;
        expect_refused(what, r)?;
    }
    ensure(balance(f, &req.leg.to).await? == b0, || {
        "a refused release paid out".to_owned()
    })?;
    let good = ReleaseRequest {
        lock_id: req.lock_id,
        attestation: f.attest(req.lock_id, Decision::Validated, record()),
    };
    let tx = ctx("release", a.release(&good).await)?;
    let again = ctx("release retry", a.release(&good).await)?;
    ensure(tx == again, || {
        format!("release retry gave {again}, first {tx}")
    })?;
    until_final(f, &tx).await?;
    let b1 = balance(f, &req.leg.to).await?;
    ensure(b1 == b0 + req.leg.amount.0, || {
        format!(
            "beneficiary got {} for a release of {}",
            b1 - b0,
            req.leg.amount
        )
    })?;
    let state = ctx("lock_state", a.lock_state(&req.lock_id).await)?;
    ensure(
        matches!(&state, Some(s) if matches!(s.status, LockStatus::Released { .. })),
        || format!("lock state after release is {state:?}"),
    )?;
    let refund = RefundRequest {
        lock_id: req.lock_id,
        authorisation: RefundAuthorisation::Attestation(f.attest(
            req.lock_id,
            Decision::Aborted,
            record(),
        )),
    };
    expect_refused("refund after release", a.refund(&refund).await)?;
    ensure(balance(f, &req.leg.to).await? == b1, || {
        "refund after release moved funds".to_owned()
    })
}

async fn two_phase_refund(f: &dyn Fixture) -> Result<(), String> {
    let a = f.adapter();
    let req = lock_request(f, "refund", LockTerms::TwoPhase, 10_000).await?;
    if a.descriptor().capabilities.two_phase == TwoPhaseSupport::Unsupported {
        return expect_unsupported(f, &req).await;
    }
    let start = balance(f, &req.leg.from).await?;
    locked(f, &req).await?;
    expect_refused(
        "timeout refund before the timeout",
        a.refund(&RefundRequest {
            lock_id: req.lock_id,
            authorisation: RefundAuthorisation::Timeout,
        })
        .await,
    )?;
    let refund = RefundRequest {
        lock_id: req.lock_id,
        authorisation: RefundAuthorisation::Attestation(f.attest(
            req.lock_id,
            Decision::Aborted,
            record(),
        )),
    };
    let tx = ctx("refund", a.refund(&refund).await)?;
    ensure(ctx("refund retry", a.refund(&refund).await)? == tx, || {
        "refund retry gave another tx".to_owned()
    })?;
    until_final(f, &tx).await?;
    let end = balance(f, &req.leg.from).await?;
    ensure(end == start, || {
        format!("owner has {end} after the refund, had {start}")
    })?;
    let release = ReleaseRequest {
        lock_id: req.lock_id,
        attestation: f.attest(req.lock_id, Decision::Validated, record()),
    };
    expect_refused("release after refund", a.release(&release).await)?;
    Ok(())
}

const SECRET: [u8; 32] = *b"isthmus conformance htlc secret!";

async fn htlc_claim_reveals_preimage(f: &dyn Fixture) -> Result<(), String> {
    let a = f.adapter();
    let hashlock = HashAlgo::Sha256.digest(&SECRET);
    let req = lock_request(f, "claim", LockTerms::Htlc { hashlock }, 10_000).await?;
    if !a.descriptor().capabilities.htlc {
        return expect_unsupported(f, &req).await;
    }
    locked(f, &req).await?;
    let from = ctx("events", a.events_since(Checkpoint::START, 100_000).await)?.next;
    let b0 = balance(f, &req.leg.to).await?;
    let wrong = ClaimRequest {
        lock_id: req.lock_id,
        preimage: Preimage([1; 32]),
    };
    expect_refused("claim with the wrong preimage", a.claim(&wrong).await)?;
    ensure(balance(f, &req.leg.to).await? == b0, || {
        "a refused claim paid out".to_owned()
    })?;
    let good = ClaimRequest {
        lock_id: req.lock_id,
        preimage: Preimage(SECRET),
    };
    let tx = ctx("claim", a.claim(&good).await)?;
    ensure(ctx("claim retry", a.claim(&good).await)? == tx, || {
        "claim retry gave another tx".to_owned()
    })?;
    until_final(f, &tx).await?;
    ensure(
        balance(f, &req.leg.to).await? == b0 + req.leg.amount.0,
        || "beneficiary not paid by the claim".to_owned(),
    )?;
    let events = ctx("events", a.events_since(from, 100_000).await)?.events;
    let revealed = events.iter().any(|e| {
        matches!(&e.kind, EventKind::Claimed { lock_id, preimage, .. }
            if *lock_id == req.lock_id && preimage.as_slice() == SECRET)
    });
    ensure(revealed, || {
        "no Claimed event reveals the preimage".to_owned()
    })?;
    expect_refused(
        "refund after claim",
        a.refund(&RefundRequest {
            lock_id: req.lock_id,
            authorisation: RefundAuthorisation::Timeout,
        })
        .await,
    )?;
    Ok(())
}

async fn htlc_refund_only_after_timeout(f: &dyn Fixture) -> Result<(), String> {
    let a = f.adapter();
    let hashlock = HashAlgo::Sha256.digest(&SECRET);
    let req = lock_request(f, "htlc-refund", LockTerms::Htlc { hashlock }, 50).await?;
    if !a.descriptor().capabilities.htlc {
        return expect_unsupported(f, &req).await;
    }
    let start = balance(f, &req.leg.from).await?;
    locked(f, &req).await?;
    let refund = RefundRequest {
        lock_id: req.lock_id,
        authorisation: RefundAuthorisation::Timeout,
    };
    expect_refused("refund before the timelock", a.refund(&refund).await)?;
    ctx("advance time", f.advance_time_to(req.leg.timeout).await)?;
    let tx = ctx("refund after the timelock", a.refund(&refund).await)?;
    until_final(f, &tx).await?;
    let end = balance(f, &req.leg.from).await?;
    ensure(end == start, || {
        format!("owner has {end} after the refund, had {start}")
    })
}

async fn reorg_withdraws_an_unfinal_lock(f: &dyn Fixture) -> Result<(), String> {
    let a = f.adapter();
    let caps = a.descriptor().capabilities.clone();
    let req = lock_request(f, "reorged", LockTerms::TwoPhase, 10_000).await?;
    // Instant finality has nothing unfinal to revert; platforms without the two-phase lock
    // are covered by `two_phase_release`.
    if caps.finality == Finality::Instant || caps.two_phase == TwoPhaseSupport::Unsupported {
        return Ok(());
    }
    let before = balance(f, &req.leg.from).await?;
    let mark = ctx("events", a.events_since(Checkpoint::START, 100_000).await)?.next;
    let tx = ctx("lock", a.lock(&req).await)?;
    ensure(
        !ctx("tx_status", a.tx_status(&tx).await)?.is_final(),
        || "a fresh lock is already final under probabilistic finality".to_owned(),
    )?;
    if !ctx("reorg", f.reorg(1).await)? {
        return Ok(());
    }
    let events = ctx("events", a.events_since(mark, 100_000).await)?.events;
    let reverted = events
        .iter()
        .any(|e| matches!(&e.kind, EventKind::Reverted { txs, .. } if txs.contains(&tx)));
    ensure(reverted, || format!("no Reverted event names lock tx {tx}"))?;
    // The chain may have mined the tx again in the new branch; then it is a new inclusion.
    let state = ctx("lock_state", a.lock_state(&req.lock_id).await)?;
    let after = balance(f, &req.leg.from).await?;
    match state {
        None => ensure(after == before, || {
            format!("owner has {after} after the lock was reorged out, had {before}")
        }),
        Some(s) => ensure(!s.is_final && after + req.leg.amount.0 == before, || {
            format!("re-included lock {s:?} with owner balance {after}, had {before}")
        }),
    }
}
