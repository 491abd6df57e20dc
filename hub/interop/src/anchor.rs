//! Anchoring: every state transition of every contract instance becomes a transaction on
//! the hub chain (its `audit` module), so the history is replicated by the hub's validators
//! and auditable against the journal.
//!
//! The journal stays the first durable record (journal first, then act); the [`Anchorer`]
//! follows it. Each transition `seq` of an instance gets a digest that chains the previous
//! one, `d(0) = H(tag | instance | api id | created_at)` and
//! `d(n) = H(tag | d(n-1) | n | event n)`, so one anchored digest commits to the whole
//! history before it. Events stay off-chain (an HTLC preimage must not be public before its
//! claim); only digests go on chain. Progress is kept in a sled tree, flushed after the
//! chain has the anchors; after a crash the same anchors are sent again, which the chain
//! module accepts as a no-op.

use crate::contract::ContractEvent;
use crate::journal::{Journal, StoredInstance};
use async_trait::async_trait;
use isthmus_core::{Hash32, HashAlgo};
use isthmus_lock_contracts::InstanceId;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

const TAG: &[u8] = b"isthmus/transition/v1";

/// One transition to anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransitionAnchor {
    pub instance: InstanceId,
    pub seq: u64,
    pub digest: Hash32,
}

#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// The chain is unreachable or slow; the anchorer retries.
    #[error("anchoring is not possible now: {0}")]
    Unavailable(String),
    /// The chain refused the anchors (a different digest is already recorded): the journal
    /// and the chain disagree, which needs an operator.
    #[error("the hub chain refused the anchors: {0}")]
    Refused(String),
    #[error("anchor progress store: {0}")]
    Store(String),
}

/// Where anchors go: the hub chain's `audit` module in production (see
/// `ChainTransitionLog` in `isthmus-hub`); tests may use memory.
#[async_trait]
pub trait TransitionLog: Send + Sync + 'static {
    /// Record `anchors` (contiguous per instance, in order); return once they are committed.
    /// Idempotent for anchors already recorded with the same digest.
    async fn anchor(&self, anchors: &[TransitionAnchor]) -> Result<(), AnchorError>;
}

/// The digest of the creation of `inst` (sequence 0).
pub fn creation_digest(inst: &StoredInstance) -> Hash32 {
    HashAlgo::Sha256.digest_parts(&[
        TAG,
        b"create",
        inst.contract.id().0.as_bytes(),
        inst.api_id.as_bytes(),
        &inst.created_at.to_be_bytes(),
    ])
}

/// The digest of transition `seq` (≥ 1), chaining `prev`.
pub fn transition_digest(prev: &Hash32, seq: u64, event: &ContractEvent) -> Hash32 {
    // Events are plain data; encoding cannot fail, but an empty encoding would still be
    // bound by seq and prev.
    let enc = rmp_serde::to_vec(event).unwrap_or_default();
    HashAlgo::Sha256.digest_parts(&[TAG, prev.as_bytes(), &seq.to_be_bytes(), &enc])
}

/// The digests of an instance's whole history, sequence 0 first.
pub fn history_digests(inst: &StoredInstance, events: &[ContractEvent]) -> Vec<Hash32> {
    let mut out = Vec::with_capacity(events.len() + 1);
    let mut d = creation_digest(inst);
    out.push(d);
    for (i, e) in events.iter().enumerate() {
        d = transition_digest(&d, i as u64 + 1, e);
        out.push(d);
    }
    out
}

/// Follows the journal and anchors every transition not anchored yet.
pub struct Anchorer {
    journal: Arc<dyn Journal>,
    log: Arc<dyn TransitionLog>,
    /// instance id → next sequence to anchor (u64 BE).
    progress: sled::Tree,
    /// Most anchors sent in one call.
    pub batch: usize,
}

fn store_err(e: sled::Error) -> AnchorError {
    AnchorError::Store(e.to_string())
}

impl Anchorer {
    pub fn new(
        journal: Arc<dyn Journal>,
        log: Arc<dyn TransitionLog>,
        progress: sled::Tree,
    ) -> Anchorer {
        Anchorer {
            journal,
            log,
            progress,
            batch: 256,
        }
    }

    fn next_seq(&self, id: &InstanceId) -> Result<u64, AnchorError> {
        Ok(self
            .progress
            .get(id.0.as_bytes())
            .map_err(store_err)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    /// Transitions journaled but not yet anchored (all instances).
    pub fn lag(&self) -> Result<u64, AnchorError> {
        let mut lag = 0;
        for inst in self
            .journal
            .all()
            .map_err(|e| AnchorError::Store(e.to_string()))?
        {
            lag += (inst.seq + 1).saturating_sub(self.next_seq(&inst.contract.id())?);
        }
        Ok(lag)
    }

    /// Anchor everything the journal holds that is not anchored yet; returns how many
    /// transitions were anchored.
    pub async fn anchor_pending(&self) -> Result<usize, AnchorError> {
        let mut pending: Vec<TransitionAnchor> = Vec::new();
        let mut done: Vec<(InstanceId, u64)> = Vec::new();
        let mut total = 0;
        for inst in self
            .journal
            .all()
            .map_err(|e| AnchorError::Store(e.to_string()))?
        {
            let id = inst.contract.id();
            let next = self.next_seq(&id)?;
            if next > inst.seq {
                continue;
            }
            let events = self
                .journal
                .events(&id)
                .map_err(|e| AnchorError::Store(e.to_string()))?;
            let digests = history_digests(&inst, &events);
            for (seq, digest) in digests.iter().enumerate().skip(next as usize) {
                pending.push(TransitionAnchor {
                    instance: id,
                    seq: seq as u64,
                    digest: *digest,
                });
            }
            done.push((id, digests.len() as u64));
            if pending.len() >= self.batch {
                total += self.flush(&mut pending, &mut done).await?;
            }
        }
        total += self.flush(&mut pending, &mut done).await?;
        Ok(total)
    }

    async fn flush(
        &self,
        pending: &mut Vec<TransitionAnchor>,
        done: &mut Vec<(InstanceId, u64)>,
    ) -> Result<usize, AnchorError> {
        if pending.is_empty() {
            return Ok(0);
        }
        for chunk in pending.chunks(self.batch.max(1)) {
            self.log.anchor(chunk).await?;
        }
        for (id, next) in done.drain(..) {
            self.progress
                .insert(id.0.as_bytes(), &next.to_be_bytes())
                .map_err(store_err)?;
        }
        self.progress.flush_async().await.map_err(store_err)?;
        let n = pending.len();
        pending.clear();
        Ok(n)
    }

    /// Anchor every `interval` until `shutdown`; errors are logged and retried.
    pub async fn run(self: Arc<Self>, interval: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.anchor_pending().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(anchored = n, "anchored transitions on the hub chain"),
                Err(AnchorError::Refused(e)) => {
                    tracing::error!(error = %e, "the hub chain refused transition anchors")
                }
                Err(e) => tracing::warn!(error = %e, "anchoring postponed"),
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Contract;
    use crate::journal::SledJournal;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// The chain module's rules, in memory: contiguous, idempotent, never rewritten.
    #[derive(Default)]
    struct MemLog {
        anchored: Mutex<BTreeMap<(InstanceId, u64), Hash32>>,
        calls: Mutex<usize>,
        fail_next: Mutex<bool>,
    }

    #[async_trait]
    impl TransitionLog for MemLog {
        async fn anchor(&self, anchors: &[TransitionAnchor]) -> Result<(), AnchorError> {
            *self.calls.lock().unwrap() += 1;
            if std::mem::take(&mut *self.fail_next.lock().unwrap()) {
                return Err(AnchorError::Unavailable("chain down".into()));
            }
            let mut m = self.anchored.lock().unwrap();
            for a in anchors {
                match m.get(&(a.instance, a.seq)) {
                    Some(d) if *d == a.digest => continue,
                    Some(_) => return Err(AnchorError::Refused("rewrite".into())),
                    None => {}
                }
                if a.seq > 0 && !m.contains_key(&(a.instance, a.seq - 1)) {
                    return Err(AnchorError::Refused("gap".into()));
                }
                m.insert((a.instance, a.seq), a.digest);
            }
            Ok(())
        }
    }

    fn two_phase_instance(n: u8) -> Contract {
        Contract::sample_two_phase(&[n])
    }

    #[tokio::test]
    async fn every_transition_is_anchored_once_in_order_and_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let journal: Arc<dyn Journal> = Arc::new(SledJournal::open(db.clone()).unwrap());
        let log = Arc::new(MemLog::default());
        let anchorer = Anchorer::new(
            journal.clone(),
            log.clone(),
            db.open_tree("anchors").unwrap(),
        );

        let c = two_phase_instance(1);
        let id = c.id();
        let mut inst = StoredInstance {
            contract: c,
            seq: 0,
            api_id: "tr_1".into(),
            tenant: "acme".into(),
            created_at: 5,
            updated_at: 5,
        };
        journal.create(&inst).unwrap();
        assert_eq!(anchorer.lag().unwrap(), 1);
        assert_eq!(anchorer.anchor_pending().await.unwrap(), 1);
        assert_eq!(anchorer.anchor_pending().await.unwrap(), 0, "nothing twice");

        let kind = inst.contract.kind();
        for t in [10, 20] {
            let ev = ContractEvent::tick(kind, t);
            inst.seq += 1;
            journal.append(&inst, &ev).unwrap();
        }
        *log.fail_next.lock().unwrap() = true;
        assert!(anchorer.anchor_pending().await.is_err());
        assert_eq!(
            anchorer.lag().unwrap(),
            2,
            "a failed call records no progress"
        );
        assert_eq!(anchorer.anchor_pending().await.unwrap(), 2);

        // A restarted anchorer with lost progress re-sends; the log accepts it as a no-op.
        let fresh = Anchorer::new(journal.clone(), log.clone(), db.open_tree("other").unwrap());
        assert_eq!(fresh.anchor_pending().await.unwrap(), 3);
        let m = log.anchored.lock().unwrap();
        assert_eq!(m.len(), 3);
        let events = journal.events(&id).unwrap();
        let want = history_digests(&journal.get(&id).unwrap().unwrap(), &events);
        for (seq, d) in want.iter().enumerate() {
            assert_eq!(m.get(&(id, seq as u64)), Some(d));
        }
    }

    #[test]
    fn digests_chain_the_history() {
        let c = two_phase_instance(2);
        let inst = StoredInstance {
            contract: c.clone(),
            seq: 2,
            api_id: "tr_2".into(),
            tenant: "acme".into(),
            created_at: 1,
            updated_at: 1,
        };
        let e1 = ContractEvent::tick(c.kind(), 1);
        let e2 = ContractEvent::tick(c.kind(), 2);
        let a = history_digests(&inst, &[e1.clone(), e2.clone()]);
        let b = history_digests(&inst, &[e2, e1]);
        assert_eq!(a[0], b[0]);
        assert_ne!(a[2], b[2], "reordered history must not match");
    }
}
