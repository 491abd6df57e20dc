//! Watches one network through its adapter and turns what it sees into contract events:
//! locks included and final (with verified evidence), reorgs, releases, refunds, claims.
//!
//! The subscription is durable: the checkpoint is stored only after every event of a page
//! has been applied (and journalled) by the driver, so a crash replays at most one page,
//! and replayed events are no-ops.

use crate::contract::{Contract, ContractEvent};
use crate::driver::Driver;
use isthmus_adapter_api::{Adapter, AdapterError, Checkpoint, EventKind};
use isthmus_core::NetworkId;
use isthmus_lock_contracts::{
    HtlcEvent, InstanceId, LegId, LegState, LockId, LockObservation, TwoPhaseEvent, TxId,
};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

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

struct Target {
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
        let mut out = HashMap::new();
        let Ok(all) = self.driver.journal().all() else {
            return out;
        };
        for inst in all.iter().filter(|i| !i.contract.status().terminal) {
            for leg in LegId::BOTH {
                let (spec_net, two_phase, state) = match &inst.contract {
                    Contract::TwoPhase(m) => (m.spec.leg(leg).network, true, &m.legs[leg]),
                    Contract::Htlc(m) => (m.spec.leg(leg).network, false, &m.legs[leg]),
                };
                if spec_net != self.network {
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
        let r = evidence.to_ref();
        if let Ok(tree) = self.db.open_tree("interop.evidence") {
            if let Ok(bytes) = rmp_serde::to_vec_named(&evidence) {
                let _ = tree.insert(r.digest.0, bytes);
            }
        }
        Ok(r)
    }

    /// The contract events one chain event produces.
    async fn translate(
        &self,
        kind: &EventKind,
        targets: &HashMap<LockId, Target>,
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
                    let evidence = self.evidence_for(lock).await?;
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
        let mut backoff = self.idle_poll;
        loop {
            let wait = match self.adapter.events_since(cp, self.page).await {
                Ok(page) => {
                    let targets = self.targets();
                    let mut ok = true;
                    for e in &page.events {
                        match self.translate(&e.kind, &targets).await {
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
                        backoff = self.idle_poll;
                        if page.more {
                            Duration::ZERO
                        } else {
                            self.idle_poll
                        }
                    } else {
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        backoff
                    }
                }
                Err(e) => {
                    tracing::warn!(network = %self.network, %e, "adapter unreachable; backing off");
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    backoff
                }
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
