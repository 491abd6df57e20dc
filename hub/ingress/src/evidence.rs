//! The hub's ingress for lock evidence carried by relayers.
//!
//! A network can be *relayer-observed*: the hub runs no event-polling watcher for it, and
//! its lock events (a lock final, a release, a refund, a claim) arrive from relayers with
//! the evidence for their transactions. Relayers are untrusted, so each item is checked
//! with the hub's own adapter for that network before anything changes:
//!
//! 1. the escrow's state as the hub's adapter reads it ([`Adapter::lock_state`]) must say
//!    what the event says: the same observation and final, or spent by the same
//!    transaction;
//! 2. the evidence must verify as a light client would ([`Adapter::verify_evidence`]: for
//!    EVM, the receipt against the adapter's own header chain at depth), and for a lock,
//!    in the block the observation names.
//!
//! Only then is the event turned into contract events exactly as the [`Watcher`] turns its
//! own (one translation), and applied through the [`Driver`], which journals (and flushes)
//! before the relayer is answered. A replay, a second relayer or a restarted one therefore
//! only gets `duplicate`. Bad evidence, a wrong network or a forged event gets a typed
//! refusal and changes nothing.
//!
//! [`Watcher`]: isthmus_interop::Watcher

use isthmus_adapter_api::{Adapter, AdapterError, EventKind, Evidence, LockStatus, OnChainLock};
use isthmus_core::NetworkId;
use isthmus_interop::driver::{Driver, DriverError};
use isthmus_interop::watcher::{store_evidence, FinalityEvidence, Watcher};
use isthmus_lock_contracts::{EvidenceRef, LockObservation};
use isthmus_relay_protocol::evidence::{EvidenceMsg, EvidenceOutcome, RelayedEvidence};
use isthmus_transport::{Connection, Endpoint};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counters of the ingress, by outcome.
#[derive(Debug, Default)]
pub struct EvidenceStats {
    pub applied: AtomicU64,
    pub duplicates: AtomicU64,
    pub ignored: AtomicU64,
    pub retries: AtomicU64,
    pub rejected: AtomicU64,
    /// Refusals by code (`unknown_network`, `event_mismatch`, `bad_evidence`, ...).
    pub rejected_by_code: std::sync::Mutex<HashMap<String, u64>>,
}

impl EvidenceStats {
    fn count(&self, o: &EvidenceOutcome) {
        let c = match o {
            EvidenceOutcome::Applied => &self.applied,
            EvidenceOutcome::Duplicate => &self.duplicates,
            EvidenceOutcome::Ignored => &self.ignored,
            EvidenceOutcome::Retry { .. } => &self.retries,
            EvidenceOutcome::Rejected { code, .. } => {
                *self
                    .rejected_by_code
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(code.clone())
                    .or_default() += 1;
                &self.rejected
            }
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// How many items were refused with `code`.
    pub fn rejected_with(&self, code: &str) -> u64 {
        self.rejected_by_code
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(code)
            .copied()
            .unwrap_or(0)
    }
}

pub struct EvidenceIngress {
    /// The relayer-observed networks and the hub's own adapter for each.
    networks: HashMap<NetworkId, Arc<dyn Adapter>>,
    driver: Arc<Driver>,
    /// Where verified evidence is stored (the hub's store, as the watcher does).
    db: sled::Db,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// Items are decided one at a time, so an instance's change is attributed to exactly
    /// one delivery (two relayers racing get `applied` and `duplicate`).
    decide: tokio::sync::Mutex<()>,
    /// Largest batch accepted in one message.
    pub max_batch: usize,
    pub stats: Arc<EvidenceStats>,
}

fn rejected(code: &str, reason: String) -> EvidenceOutcome {
    EvidenceOutcome::Rejected {
        code: code.to_owned(),
        reason,
    }
}

/// An adapter failure: resend later when it can clear up, otherwise refused under `code`.
fn adapter_outcome(code: &str, e: &AdapterError) -> EvidenceOutcome {
    if e.is_retryable() {
        EvidenceOutcome::Retry {
            code: "network_unavailable".into(),
            reason: e.to_string(),
        }
    } else {
        rejected(code, e.to_string())
    }
}

/// Evidence that has been verified already: stored, then referenced.
struct Verified<'a> {
    db: &'a sled::Db,
    evidence: &'a Evidence,
}

#[async_trait::async_trait]
impl FinalityEvidence for Verified<'_> {
    async fn evidence_ref(&self, _: &LockObservation) -> Result<EvidenceRef, AdapterError> {
        Ok(store_evidence(self.db, self.evidence))
    }
}

/// Whether the escrow's state (as the hub reads it) says what `event` says.
fn state_says(event: &EventKind, state: Option<&OnChainLock>) -> Result<(), String> {
    let Some(state) = state else {
        return Err("the hub's adapter sees no such lock".into());
    };
    match (event, &state.status) {
        (EventKind::LockFinal { lock }, _) => {
            if state.observation != *lock {
                return Err(format!(
                    "the escrow holds {:?}, the event claims {lock:?}",
                    state.observation
                ));
            }
            if !state.is_final {
                return Err(format!("lock {} is not final yet", lock.lock_id));
            }
            Ok(())
        }
        (EventKind::Released { tx, .. }, LockStatus::Released { tx: t })
        | (EventKind::Refunded { tx, .. }, LockStatus::Refunded { tx: t })
        | (EventKind::Claimed { tx, .. }, LockStatus::Claimed { tx: t })
            if t == tx =>
        {
            Ok(())
        }
        (_, status) => Err(format!("the escrow is {status:?}")),
    }
}

impl EvidenceIngress {
    pub fn new(
        networks: HashMap<NetworkId, Arc<dyn Adapter>>,
        driver: Arc<Driver>,
        db: sled::Db,
        clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    ) -> Self {
        EvidenceIngress {
            networks,
            driver,
            db,
            clock,
            decide: tokio::sync::Mutex::new(()),
            max_batch: 256,
            stats: Arc::default(),
        }
    }

    /// Verify one item and apply it; the answer for the relayer.
    pub async fn process(&self, item: &RelayedEvidence) -> EvidenceOutcome {
        let _one_at_a_time = self.decide.lock().await;
        let o = self.decide_one(item).await;
        self.stats.count(&o);
        if let EvidenceOutcome::Rejected { code, reason } = &o {
            tracing::warn!(network = %item.network, %code, %reason, "relayed evidence refused");
        }
        o
    }

    async fn decide_one(&self, item: &RelayedEvidence) -> EvidenceOutcome {
        let net = item.network;
        let Some(adapter) = self.networks.get(&net) else {
            return rejected(
                "unknown_network",
                format!("network {net} is not relayer-observed by this hub"),
            );
        };
        if adapter.descriptor().network != net {
            return rejected(
                "unknown_network",
                format!("the hub's adapter for {net} serves another network"),
            );
        }
        let Some((lock_id, tx)) = item.lock() else {
            return rejected(
                "unsupported_event",
                "only lock final, released, refunded and claimed events are relayed".into(),
            );
        };
        // 1. The hub's own reading of the escrow (this also catches its view up).
        let state = match adapter.lock_state(&lock_id).await {
            Ok(s) => s,
            Err(e) => return adapter_outcome("lock_state_failed", &e),
        };
        if let Err(why) = state_says(&item.event, state.as_ref()) {
            return rejected("event_mismatch", format!("lock {lock_id}: {why}"));
        }
        // 2. The evidence, as a light client.
        let verified = match adapter.verify_evidence(tx, &item.evidence).await {
            Ok(v) => v,
            Err(e) => return adapter_outcome("bad_evidence", &e),
        };
        if let EventKind::LockFinal { lock } = &item.event {
            if verified.block.hash != lock.block || verified.block.height != lock.height {
                return rejected(
                    "bad_evidence",
                    format!(
                        "evidence is for block {} {}, lock {lock_id} is in {} {}",
                        verified.block.height, verified.block.hash, lock.height, lock.block
                    ),
                );
            }
        }
        // 3. The same translation as the watcher's, then the driver (journal first).
        let targets = Watcher::targets_on(&self.driver, net);
        let finality = Verified {
            db: &self.db,
            evidence: &item.evidence,
        };
        let events = match Watcher::translate(&item.event, &targets, &finality).await {
            Ok(e) => e,
            Err(e) => return adapter_outcome("bad_evidence", &e),
        };
        if events.is_empty() {
            return EvidenceOutcome::Ignored;
        }
        let mut changed = false;
        for (id, ev) in events {
            let before = match self.driver.journal().get(&id) {
                Ok(i) => i.map(|i| i.seq),
                Err(e) => {
                    return EvidenceOutcome::Retry {
                        code: "journal".into(),
                        reason: e.to_string(),
                    }
                }
            };
            match self.driver.apply(id, ev, (self.clock)()).await {
                Ok(after) => changed |= Some(after.seq) != before,
                Err(e @ DriverError::Rejected(_)) | Err(e @ DriverError::WrongKind(_)) => {
                    return rejected("refused_by_contract", format!("instance {id}: {e}"))
                }
                Err(e) => {
                    return EvidenceOutcome::Retry {
                        code: "journal".into(),
                        reason: e.to_string(),
                    }
                }
            }
        }
        if changed {
            tracing::info!(network = %net, lock = %lock_id, tx = %tx.0, "relayed lock evidence applied");
            EvidenceOutcome::Applied
        } else {
            EvidenceOutcome::Duplicate
        }
    }

    /// Serve relayer connections from `endpoint` until `shutdown` resolves.
    pub async fn serve(self: Arc<Self>, endpoint: Endpoint, shutdown: impl Future<Output = ()>) {
        endpoint
            .serve_each(shutdown, |conn| self.clone().serve_conn(conn))
            .await;
    }

    async fn serve_conn(self: Arc<Self>, mut conn: Connection) {
        let peer = conn.remote_id();
        tracing::info!(relayer = %peer, "evidence relayer connected");
        while let Some(msg) = conn.recv_msg::<EvidenceMsg>().await {
            let (batch, items) = match msg {
                Ok(EvidenceMsg::Deliver { batch, items }) => (batch, items),
                Ok(_) => {
                    tracing::warn!(relayer = %peer, "unexpected message on an evidence link");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(relayer = %peer, %e, "evidence link closed");
                    return;
                }
            };
            let outcomes = if items.len() > self.max_batch {
                let o = rejected(
                    "batch_too_large",
                    format!("batch of {} exceeds {}", items.len(), self.max_batch),
                );
                items.iter().map(|_| o.clone()).collect()
            } else {
                let mut out = Vec::with_capacity(items.len());
                for item in &items {
                    out.push(self.process(item).await);
                }
                out
            };
            // Every change was journalled (and flushed) by the driver before this answer.
            if conn
                .send_msg(&EvidenceMsg::Answers { batch, outcomes })
                .await
                .is_err()
            {
                return;
            }
        }
    }
}
