//! Watches one network through its adapter and turns what it sees into contract events:
//! locks included and final (with verified evidence), reorgs, releases, refunds, claims.
//!
//! The subscription is durable: the checkpoint is stored only after every event of a page
//! has been applied (and journalled) by the driver, so a crash replays at most one page,
//! and replayed events are no-ops.
//!
//! The event stream is not the only source: an adapter restarted with its event log in
//! memory, a shallow reorg that is never reported, or a lock that surfaces while the hub
//! is down can leave an instance without news. So the watcher also sweeps: every few polls
//! it re-reads, through [`Adapter::lock_state`], the escrow of each leg a two-phase
//! instance asks about ([`TwoPhase::legs_to_reread`]) and applies what the chain says. An
//! aborted transfer ends only on that word.
//!
//! [`TwoPhase::legs_to_reread`]: isthmus_lock_contracts::TwoPhase::legs_to_reread

use crate::contract::{Contract, ContractEvent};
use crate::driver::Driver;
use isthmus_adapter_api::{Adapter, AdapterError, Checkpoint, EventKind, LockStatus, OnChainLock};
use isthmus_core::NetworkId;
use isthmus_lock_contracts::{
    HtlcEvent, InstanceId, LegId, LegState, LockId, LockObservation, TwoPhaseEvent, TxId,
};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The sweep re-reads escrows once per this many idle polls.
const REREAD_EVERY_POLLS: u32 = 10;

pub struct Watcher {
    pub network: NetworkId,
    pub adapter: Arc<dyn Adapter>,
    pub driver: Arc<Driver>,
    /// Checkpoints and verified evidence live here.
    pub db: sled::Db,
    pub clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    pub page: u32,
    pub idle_poll: Duration,
}

/// An unfinished instance's leg that a lock event of a network may concern.
pub struct Target {
    id: InstanceId,
    leg: LegId,
    two_phase: bool,
    /// The lock's observation, when the instance holds one (for reorg matching).
    observed_tx: Option<TxId>,
}

impl Watcher {
    fn checkpoint_key(&self) -> Vec<u8> {
        format!("watcher/{}", self.network.0).into_bytes()
    }

    fn load_checkpoint(&self) -> Result<Checkpoint, sled::Error> {
        Ok(
            match self
                .db
                .open_tree("interop.checkpoints")?
                .get(self.checkpoint_key())?
            {
                Some(v) if v.len() == 8 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&v);
                    Checkpoint(u64::from_be_bytes(b))
                }
                _ => Checkpoint::START,
            },
        )
    }

    fn store_checkpoint(&self, cp: Checkpoint) -> Result<(), sled::Error> {
        self.db
            .open_tree("interop.checkpoints")?
            .insert(self.checkpoint_key(), &cp.0.to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// Lock ids of every unfinished instance with a leg on this network.
    fn targets(&self) -> HashMap<LockId, Target> {
        Self::targets_on(&self.driver, self.network)
    }

    /// Lock ids of every unfinished instance with a leg on `network`.
    pub fn targets_on(driver: &Driver, network: NetworkId) -> HashMap<LockId, Target> {
        let mut out = HashMap::new();
        let Ok(all) = driver.journal().all() else {
            return out;
        };
        for inst in all.iter().filter(|i| !i.contract.status().terminal) {
            for leg in LegId::BOTH {
                let (spec_net, two_phase, state) = match &inst.contract {
                    Contract::TwoPhase(m) => (m.spec.leg(leg).network, true, &m.legs[leg]),
                    Contract::Htlc(m) => (m.spec.leg(leg).network, false, &m.legs[leg]),
                };
                if spec_net != network {
                    continue;
                }
                let observed_tx = match state {
                    LegState::Seen { lock } | LegState::Final { lock, .. } => Some(lock.tx.clone()),
                    _ => None,
                };
                out.insert(
                    LockId::derive(inst.contract.id(), leg),
                    Target {
                        id: inst.contract.id(),
                        leg,
                        two_phase,
                        observed_tx,
                    },
                );
            }
        }
        out
    }

    async fn evidence_for(
        &self,
        lock: &LockObservation,
    ) -> Result<isthmus_lock_contracts::EvidenceRef, AdapterError> {
        let evidence = self.adapter.evidence(&lock.tx).await?;
        // The hub never takes a node's word: the adapter verifies the evidence as a light
        // client (commit certificate, work + confirmations, receipt + headers, ...).
        self.adapter.verify_evidence(&lock.tx, &evidence).await?;
        Ok(store_evidence(&self.db, &evidence))
    }

    /// The contract events one chain event produces (the relayed-evidence ingress uses the
    /// same translation, with evidence it has verified already).
    pub async fn translate(
        kind: &EventKind,
        targets: &HashMap<LockId, Target>,
        finality: &dyn FinalityEvidence,
    ) -> Result<Vec<(InstanceId, ContractEvent)>, AdapterError> {
        let ev = |t: &Target, two: TwoPhaseEvent, htlc: HtlcEvent| {
            (
                t.id,
                if t.two_phase {
                    ContractEvent::TwoPhase(two)
                } else {
                    ContractEvent::Htlc(htlc)
                },
            )
        };
        Ok(match kind {
            EventKind::LockIncluded { lock } => match targets.get(&lock.lock_id) {
                Some(t) => vec![ev(
                    t,
                    TwoPhaseEvent::LockObserved {
                        leg: t.leg,
                        lock: lock.clone(),
                    },
                    HtlcEvent::LockObserved {
                        leg: t.leg,
                        lock: lock.clone(),
                    },
                )],
                None => vec![],
            },
            EventKind::LockFinal { lock } => match targets.get(&lock.lock_id) {
                Some(t) => {
                    let evidence = finality.evidence_ref(lock).await?;
                    vec![ev(
                        t,
                        TwoPhaseEvent::LockFinalized {
                            leg: t.leg,
                            lock: lock.clone(),
                            evidence: evidence.clone(),
                        },
                        HtlcEvent::LockFinalized {
                            leg: t.leg,
                            lock: lock.clone(),
                            evidence,
                        },
                    )]
                }
                None => vec![],
            },
            EventKind::Reverted { block, txs } => targets
                .values()
                .filter(|t| t.observed_tx.as_ref().is_some_and(|tx| txs.contains(tx)))
                .filter_map(|t| {
                    let tx = t.observed_tx.clone()?;
                    Some(ev(
                        t,
                        TwoPhaseEvent::LockReorged {
                            leg: t.leg,
                            tx: tx.clone(),
                            block: block.hash,
                        },
                        HtlcEvent::LockReorged {
                            leg: t.leg,
                            tx,
                            block: block.hash,
                        },
                    ))
                })
                .collect(),
            EventKind::Released { lock_id, tx } => match targets.get(lock_id) {
                Some(t) if t.two_phase => vec![(
                    t.id,
                    ContractEvent::TwoPhase(TwoPhaseEvent::Released {
                        leg: t.leg,
                        tx: tx.clone(),
                    }),
                )],
                _ => vec![],
            },
            EventKind::Refunded { lock_id, tx } => match targets.get(lock_id) {
                Some(t) => vec![ev(
                    t,
                    TwoPhaseEvent::Refunded {
                        leg: t.leg,
                        tx: tx.clone(),
                    },
                    HtlcEvent::Refunded {
                        leg: t.leg,
                        tx: tx.clone(),
                    },
                )],
                None => vec![],
            },
            EventKind::Claimed {
                lock_id,
                tx,
                preimage,
            } => match targets.get(lock_id) {
                Some(t) if !t.two_phase => vec![(
                    t.id,
                    ContractEvent::Htlc(HtlcEvent::Claimed {
                        leg: t.leg,
                        tx: tx.clone(),
                        preimage: preimage.clone(),
                    }),
                )],
                _ => vec![],
            },
            _ => vec![],
        })
    }

    /// The sweep: re-read the escrow of every leg on this network that an unfinished
    /// two-phase instance asks about, and apply what the chain says. Returns how many
    /// instances changed. An unreachable adapter is left for the next sweep.
    pub async fn reread(&self) -> usize {
        let Ok(all) = self.driver.journal().all() else {
            return 0;
        };
        let mut changed = 0;
        for inst in all {
            let Contract::TwoPhase(m) = &inst.contract else {
                continue;
            };
            for leg in m.legs_to_reread() {
                if m.spec.leg(leg).network != self.network {
                    continue;
                }
                let at = (self.clock)();
                let events = match self.adapter.lock_state(&m.lock_id(leg)).await {
                    Ok(state) => self.reread_events(m, leg, state, at).await,
                    Err(e) => Err(e),
                };
                let events = match events {
                    Ok(evs) => evs,
                    Err(err) => {
                        tracing::warn!(network = %self.network, instance = %m.id, %leg, %err, "escrow re-read failed; will retry");
                        continue;
                    }
                };
                for ev in events {
                    match self
                        .driver
                        .apply(m.id, ContractEvent::TwoPhase(ev), at)
                        .await
                    {
                        Ok(after) if after.seq != inst.seq => changed += 1,
                        Ok(_) => {}
                        Err(err) => {
                            tracing::warn!(network = %self.network, instance = %m.id, %leg, %err, "re-read refused")
                        }
                    }
                }
            }
        }
        changed
    }

    /// What an escrow's on-chain state says to the machine. A refund goes first (it is
    /// accepted before the lock's finality and aborts an undecided instance), a release
    /// last (only a final lock is released); finality comes with verified evidence.
    async fn reread_events(
        &self,
        m: &isthmus_lock_contracts::TwoPhase,
        leg: LegId,
        state: Option<OnChainLock>,
        at: u64,
    ) -> Result<Vec<TwoPhaseEvent>, AdapterError> {
        let Some(state) = state else {
            return Ok(vec![TwoPhaseEvent::LockAbsent { leg, at }]);
        };
        let mut out = Vec::new();
        if let LockStatus::Refunded { tx } = &state.status {
            out.push(TwoPhaseEvent::Refunded {
                leg,
                tx: tx.clone(),
            });
        }
        let lock = state.observation;
        if !state.is_final {
            out.push(TwoPhaseEvent::LockObserved { leg, lock });
        } else if !m.legs[leg].is_final() && m.legs[leg].settlement().is_none() {
            let evidence = self.evidence_for(&lock).await?;
            out.push(TwoPhaseEvent::LockFinalized {
                leg,
                lock,
                evidence,
            });
        }
        if let LockStatus::Released { tx } = &state.status {
            out.push(TwoPhaseEvent::Released {
                leg,
                tx: tx.clone(),
            });
        }
        Ok(out)
    }

    /// Follow the network until `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut cp = match self.load_checkpoint() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(network = %self.network, %e, "cannot read the watcher checkpoint");
                return;
            }
        };
        let backoff = isthmus_core::Backoff::new(self.idle_poll * 2, Duration::from_secs(10));
        let mut failures = 0u32;
        // The first sweep runs at once: after a restart, that is the recovery.
        let reread_every = (self.idle_poll * REREAD_EVERY_POLLS).max(Duration::from_millis(50));
        let mut next_reread = Instant::now();
        loop {
            if Instant::now() >= next_reread {
                self.reread().await;
                next_reread = Instant::now() + reread_every;
            }
            let wait = match self.adapter.events_since(cp, self.page).await {
                Ok(page) => {
                    let targets = self.targets();
                    let mut ok = true;
                    for e in &page.events {
                        match Self::translate(&e.kind, &targets, &self).await {
                            Ok(evs) => {
                                for (id, ev) in evs {
                                    if let Err(err) =
                                        self.driver.apply(id, ev, (self.clock)()).await
                                    {
                                        // A refused observation (e.g. a lock with the wrong
                                        // amount) is logged and skipped: it changes nothing.
                                        tracing::warn!(network = %self.network, instance = %id, %err, "observation refused");
                                    }
                                }
                            }
                            Err(err) => {
                                tracing::warn!(network = %self.network, %err, "could not process a chain event; will retry");
                                ok = false;
                                break;
                            }
                        }
                    }
                    if ok {
                        if page.next != cp {
                            if let Err(e) = self.store_checkpoint(page.next) {
                                tracing::error!(%e, "cannot store the watcher checkpoint");
                            }
                            cp = page.next;
                        }
                        failures = 0;
                        if page.more {
                            Duration::ZERO
                        } else {
                            self.idle_poll
                        }
                    } else {
                        failures = failures.saturating_add(1);
                        backoff.delay(failures - 1)
                    }
                }
                Err(e) => {
                    tracing::warn!(network = %self.network, %e, "adapter unreachable; backing off");
                    failures = failures.saturating_add(1);
                    backoff.delay(failures - 1)
                }
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Where the finality evidence of a lock reported to the driver comes from: fetched and
/// verified through the adapter (the watcher), or relayed and verified already (the
/// relayed-evidence ingress). Either way it is stored and referenced by digest.
#[async_trait::async_trait]
pub trait FinalityEvidence: Send + Sync {
    async fn evidence_ref(
        &self,
        lock: &LockObservation,
    ) -> Result<isthmus_lock_contracts::EvidenceRef, AdapterError>;
}

#[async_trait::async_trait]
impl FinalityEvidence for Watcher {
    async fn evidence_ref(
        &self,
        lock: &LockObservation,
    ) -> Result<isthmus_lock_contracts::EvidenceRef, AdapterError> {
        self.evidence_for(lock).await
    }
}

/// Keep verified evidence in the hub store, under its digest.
pub fn store_evidence(
    db: &sled::Db,
    evidence: &isthmus_adapter_api::Evidence,
) -> isthmus_lock_contracts::EvidenceRef {
    let r = evidence.to_ref();
    if let Ok(tree) = db.open_tree("interop.evidence") {
        if let Ok(bytes) = rmp_serde::to_vec_named(evidence) {
            let _ = tree.insert(r.digest.0, bytes);
        }
    }
    r
}
