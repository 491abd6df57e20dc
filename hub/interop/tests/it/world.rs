//! The interop core tests' world: a simulated pair of escrows (shared across driver
//! restarts: it is "the chain") behind an [`ActionExecutor`], and a fast driver config.
//! The hub node's service tests include this file by path, so both suites share one world.

use async_trait::async_trait;
use isthmus_core::{Hash32, HashAlgo};
use isthmus_interop::*;
use isthmus_lock_contracts::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Escrow state per lock id, shared across driver restarts (it is "the chain").
#[derive(Default, Debug)]
pub(crate) struct Escrows {
    /// lock id -> (locked amount, settlement)
    pub(crate) locks: HashMap<LockId, (u128, Option<Settlement>)>,
    /// Every effective settlement, to catch double release or release+refund.
    pub(crate) settlements: Vec<(LockId, Settlement)>,
    pub(crate) violations: Vec<String>,
    pub(crate) hub_decision: Option<Decision>,
}

pub(crate) struct World {
    pub(crate) escrows: Mutex<Escrows>,
    /// Fail roughly one in `flaky` executions with a retryable error (0 = never).
    pub(crate) flaky: u64,
    pub(crate) calls: AtomicU64,
}

#[async_trait]
impl ActionExecutor for World {
    async fn execute(
        &self,
        contract: &Contract,
        action: &Action,
    ) -> Result<Vec<ContractEvent>, ExecError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.flaky > 0 && n % self.flaky == 0 {
            return Err(ExecError::Retryable("simulated node outage".into()));
        }
        let Contract::TwoPhase(m) = contract else {
            return Err(ExecError::Refused(
                "test world drives two-phase only".into(),
            ));
        };
        let mut w = self.escrows.lock().unwrap();
        let settle = |w: &mut Escrows, lock_id: LockId, how: Settlement| {
            let entry = w.locks.get(&lock_id).cloned();
            match entry {
                None => Err(ExecError::Refused(format!("no escrow {lock_id}"))),
                Some((_, Some(prev))) if prev == how => Ok(()), // idempotent repeat
                Some((_, Some(prev))) => {
                    w.violations.push(format!("{lock_id}: {how} after {prev}"));
                    Err(ExecError::Refused("already settled".into()))
                }
                Some((amt, None)) => {
                    w.locks.insert(lock_id, (amt, Some(how)));
                    w.settlements.push((lock_id, how));
                    Ok(())
                }
            }
        };
        match action {
            Action::RecordDecision { decision } => {
                if let Some(prev) = w.hub_decision {
                    if prev != *decision {
                        w.violations
                            .push(format!("decision {decision:?} after {prev:?}"));
                    }
                }
                w.hub_decision = Some(*decision);
                Ok(vec![ContractEvent::TwoPhase(
                    TwoPhaseEvent::DecisionRecorded {
                        decision: *decision,
                        record: HubRecord {
                            height: 7,
                            tx: TxId(format!("hub-{decision:?}")),
                        },
                    },
                )])
            }
            Action::Release { leg, lock_id, .. } => {
                settle(&mut w, *lock_id, Settlement::Released)?;
                Ok(vec![ContractEvent::TwoPhase(TwoPhaseEvent::Released {
                    leg: *leg,
                    tx: TxId(format!("rel-{leg}")),
                })])
            }
            Action::Refund { leg, lock_id, .. } => {
                settle(&mut w, *lock_id, Settlement::Refunded)?;
                Ok(vec![ContractEvent::TwoPhase(TwoPhaseEvent::Refunded {
                    leg: *leg,
                    tx: TxId(format!("ref-{leg}")),
                })])
            }
            Action::SubmitLock { .. } | Action::Claim { .. } => {
                let _ = m;
                Err(ExecError::Refused("not used in this world".into()))
            }
        }
    }
}

pub(crate) fn observation(m: &TwoPhase, l: LegId) -> LockObservation {
    let s = m.spec.leg(l);
    LockObservation {
        lock_id: m.lock_id(l),
        tx: TxId(format!("lock-{l}")),
        block: HashAlgo::Sha256.digest(format!("b-{l}").as_bytes()),
        height: 3,
        asset: s.asset.clone(),
        amount: s.amount,
        beneficiary: s.to.clone(),
    }
}

pub(crate) fn lock_events(m: &TwoPhase, l: LegId) -> Vec<ContractEvent> {
    let obs = observation(m, l);
    vec![
        ContractEvent::TwoPhase(TwoPhaseEvent::LockObserved {
            leg: l,
            lock: obs.clone(),
        }),
        ContractEvent::TwoPhase(TwoPhaseEvent::LockFinalized {
            leg: l,
            lock: obs,
            evidence: EvidenceRef {
                height: 5,
                digest: Hash32([l as u8; 32]),
            },
        }),
    ]
}

pub(crate) fn fast() -> DriverConfig {
    DriverConfig {
        retry_base: Duration::from_millis(5),
        retry_max: Duration::from_millis(50),
        sweep_interval: Duration::from_millis(40),
        concurrency: 4,
        queue: 64,
        retrying_after: 3,
    }
}

pub(crate) fn register_escrows(world: &World, m: &TwoPhase) {
    let mut w = world.escrows.lock().unwrap();
    for l in LegId::BOTH {
        w.locks.entry(m.lock_id(l)).or_insert((100, None));
    }
}
