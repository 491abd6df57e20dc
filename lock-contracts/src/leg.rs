//! The life of one leg's lock, shared by both contracts: seen, final, settled, or withdrawn
//! by a reorg before finality.

use crate::error::Rejection;
use crate::types::{
    EvidenceRef, InstanceId, LegId, LegPhase, LegSpec, Legs, LockId, LockObservation, Settlement,
    TxId,
};
use isthmus_core::Hash32;
use serde::{Deserialize, Serialize};

/// What the hub knows about one leg's escrow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum LegState {
    /// No lock known.
    #[default]
    Unlocked,
    /// A lock is included in a block but not final: it may still be reorged out.
    Seen { lock: LockObservation },
    /// The lock is final, with verified evidence. Funds are in escrow.
    Final {
        lock: LockObservation,
        evidence: EvidenceRef,
    },
    /// The escrow paid out. `lock` is `None` when the settlement was observed before the
    /// lock itself (an HTLC claimed by its recipient while the hub lagged).
    Settled {
        lock: Option<LockObservation>,
        how: Settlement,
        tx: TxId,
    },
}

impl LegState {
    pub fn phase(&self) -> LegPhase {
        match self {
            LegState::Unlocked => LegPhase::Unlocked,
            LegState::Seen { .. } => LegPhase::LockSeen,
            LegState::Final { .. } => LegPhase::Locked,
            LegState::Settled { how, .. } => match how {
                Settlement::Released => LegPhase::Released,
                Settlement::Claimed => LegPhase::Claimed,
                Settlement::Refunded => LegPhase::Refunded,
            },
        }
    }

    pub fn is_final(&self) -> bool {
        matches!(self, LegState::Final { .. })
    }

    pub fn settlement(&self) -> Option<Settlement> {
        match self {
            LegState::Settled { how, .. } => Some(*how),
            _ => None,
        }
    }

    fn lock(&self) -> Option<&LockObservation> {
        match self {
            LegState::Unlocked => None,
            LegState::Seen { lock } | LegState::Final { lock, .. } => Some(lock),
            LegState::Settled { lock, .. } => lock.as_ref(),
        }
    }

    /// A lock was included in a block.
    pub(crate) fn observe(
        &mut self,
        leg: LegId,
        spec: &LegSpec,
        lock_id: LockId,
        obs: LockObservation,
    ) -> Result<(), Rejection> {
        check_lock(leg, spec, lock_id, &obs)?;
        match self {
            LegState::Unlocked | LegState::Seen { .. } => {
                // A newer inclusion (e.g. the same tx re-mined after a reorg we never heard
                // of) replaces the old one.
                *self = LegState::Seen { lock: obs };
                Ok(())
            }
            // Already final or settled: an inclusion report is at best a replay, and one for
            // another tx is stale (the escrow holds one lock per lock id), so nothing changes.
            _ => Ok(()),
        }
    }

    /// A lock reached finality with verified evidence.
    pub(crate) fn finalize(
        &mut self,
        leg: LegId,
        spec: &LegSpec,
        lock_id: LockId,
        obs: LockObservation,
        evidence: EvidenceRef,
    ) -> Result<(), Rejection> {
        check_lock(leg, spec, lock_id, &obs)?;
        match self {
            LegState::Unlocked | LegState::Seen { .. } => {
                *self = LegState::Final {
                    lock: obs,
                    evidence,
                };
                Ok(())
            }
            LegState::Settled { lock: None, .. } => {
                if let LegState::Settled { lock, .. } = self {
                    *lock = Some(obs);
                }
                Ok(())
            }
            _ => same_tx_or_duplicate(leg, self.lock(), &obs.tx),
        }
    }

    /// The block that included a lock was reorged out.
    pub(crate) fn reorg(&mut self, leg: LegId, tx: &TxId, block: &Hash32) -> Result<(), Rejection> {
        match self {
            LegState::Seen { lock } if &lock.tx == tx && &lock.block == block => {
                *self = LegState::Unlocked;
                Ok(())
            }
            LegState::Final { lock, .. }
            | LegState::Settled {
                lock: Some(lock), ..
            } if &lock.tx == tx && &lock.block == block => Err(Rejection::ReorgAfterFinality {
                leg,
                tx: tx.clone(),
            }),
            // A stale report about an inclusion we no longer hold: nothing to withdraw.
            _ => Ok(()),
        }
    }

    /// The escrow paid out by `tx`. `from_final_only` is set by the two-phase lock, whose
    /// releases and refunds are only ever issued for final locks.
    pub(crate) fn settle(
        &mut self,
        leg: LegId,
        how: Settlement,
        tx: TxId,
        from_final_only: bool,
    ) -> Result<(), Rejection> {
        match self {
            LegState::Settled {
                how: prev,
                tx: existing,
                ..
            } => {
                if *prev == how && *existing == tx {
                    Ok(())
                } else {
                    Err(Rejection::SettlementConflict {
                        leg,
                        what: how,
                        got: tx,
                        previous: *prev,
                        existing: existing.clone(),
                    })
                }
            }
            LegState::Final { lock, .. } => {
                *self = LegState::Settled {
                    lock: Some(lock.clone()),
                    how,
                    tx,
                };
                Ok(())
            }
            LegState::Seen { .. } | LegState::Unlocked if from_final_only => {
                Err(Rejection::NotLocked { leg, what: how })
            }
            // The seen inclusion may be stale (reorged, replaced by another lock tx that
            // then settled), so which lock was paid out is learnt from its finality report.
            LegState::Seen { .. } | LegState::Unlocked => {
                *self = LegState::Settled {
                    lock: None,
                    how,
                    tx,
                };
                Ok(())
            }
        }
    }
}

fn same_tx_or_duplicate(
    leg: LegId,
    existing: Option<&LockObservation>,
    got: &TxId,
) -> Result<(), Rejection> {
    match existing {
        Some(lock) if &lock.tx != got => Err(Rejection::DuplicateLock {
            leg,
            existing: lock.tx.clone(),
            got: got.clone(),
        }),
        // Same tx (a replay, or a later block of the same inclusion): nothing new.
        _ => Ok(()),
    }
}

/// A lock counts only if it is exactly the one the spec asked for: escrowed equals locked.
fn check_lock(
    leg: LegId,
    spec: &LegSpec,
    lock_id: LockId,
    obs: &LockObservation,
) -> Result<(), Rejection> {
    if obs.lock_id != lock_id {
        return Err(Rejection::LockIdMismatch {
            leg,
            expected: lock_id.0,
            got: obs.lock_id.0,
        });
    }
    if obs.amount != spec.amount {
        return Err(Rejection::AmountMismatch {
            leg,
            expected: spec.amount,
            got: obs.amount,
        });
    }
    if obs.asset != spec.asset {
        return Err(Rejection::AssetMismatch {
            leg,
            expected: spec.asset.clone(),
            got: obs.asset.clone(),
        });
    }
    if obs.beneficiary != spec.to {
        return Err(Rejection::BeneficiaryMismatch {
            leg,
            expected: spec.to.0.clone(),
            got: obs.beneficiary.0.clone(),
        });
    }
    Ok(())
}

/// A chain observation about a lock, common to both contracts' event types.
pub(crate) enum LockUpdate<'a> {
    Observed(&'a LockObservation),
    Finalized(&'a LockObservation, &'a EvidenceRef),
    Reorged(&'a TxId, &'a Hash32),
}

/// Apply a lock observation to `legs[leg]`, checking it against that leg's spec.
pub(crate) fn update_lock(
    legs: &mut Legs<LegState>,
    instance: InstanceId,
    leg: LegId,
    spec: &LegSpec,
    update: LockUpdate<'_>,
) -> Result<(), Rejection> {
    let id = LockId::derive(instance, leg);
    let state = &mut legs[leg];
    match update {
        LockUpdate::Observed(lock) => state.observe(leg, spec, id, lock.clone()),
        LockUpdate::Finalized(lock, evidence) => {
            state.finalize(leg, spec, id, lock.clone(), evidence.clone())
        }
        LockUpdate::Reorged(tx, block) => state.reorg(leg, tx, block),
    }
}
