//! The two-phase lock: lock until both validated.
//!
//! Party P locks on network A for Q, Q locks on network B for P. When both locks are final
//! before the deadline the machine decides `Validated`; the hub records that on its chain and
//! only then releases each escrow by presenting the record's commit evidence. If the deadline
//! passes first it decides `Aborted`, records it, and refunds every lock, including locks
//! that become final later. The decision is write-once, so no instance can see a release on
//! one leg and a refund on the other. A one-sided transfer is leg B locked by a provider
//! vault ([`Locker::ProviderVault`]).
//!
//! An aborted instance ends only on the chains' word: a lock the hub has seen stays open
//! until its escrow is reported refunded (however late it becomes final), and a leg with no
//! lock ends only once its network, re-read by the hub's sweep ([`TwoPhase::legs_to_reread`],
//! [`TwoPhaseEvent::LockAbsent`]), reports no lock at or after the leg's escrow timeout, from
//! which the escrow refuses new locks. Chain events may be lost (an adapter restart, an unreported shallow reorg, a
//! report that arrived after the instance ended); the adapter's lock state is the truth.

use crate::error::{InvalidSpec, Rejection, SpecProblem};
use crate::leg::{update_lock, LegState, LockUpdate};
use crate::types::*;
use crate::Machine;
use isthmus_core::Hash32;
use serde::{Deserialize, Serialize};

/// Hub-wide settings for two-phase locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwoPhaseConfig {
    /// Time every escrow must stay locked after the deadline, so that a `Validated` decided
    /// just before the deadline can still be recorded and released before the escrow lets
    /// its owner refund on its own.
    pub release_window: u64,
}

impl Default for TwoPhaseConfig {
    fn default() -> Self {
        TwoPhaseConfig {
            release_window: 600,
        }
    }
}

/// A two-phase lock request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwoPhaseSpec {
    pub a: LegSpec,
    pub b: LegSpec,
    /// Both locks must be final by this hub time, or everything is refunded.
    pub deadline: Timestamp,
}

impl TwoPhaseSpec {
    pub fn leg(&self, leg: LegId) -> &LegSpec {
        match leg {
            LegId::A => &self.a,
            LegId::B => &self.b,
        }
    }

    /// Every problem at once.
    pub fn validate(&self, cfg: &TwoPhaseConfig, now: Timestamp) -> Result<(), InvalidSpec> {
        let mut problems = Vec::new();
        if self.deadline <= now {
            problems.push(SpecProblem::DeadlineInPast {
                deadline: self.deadline,
                now,
            });
        }
        for leg in LegId::BOTH {
            let spec = self.leg(leg);
            if spec.amount.0 == 0 {
                problems.push(SpecProblem::ZeroAmount { leg });
            }
            if spec.timeout < self.deadline.saturating_add(cfg.release_window) {
                problems.push(SpecProblem::EscrowTimeoutTooEarly {
                    leg,
                    timeout: spec.timeout,
                    deadline: self.deadline,
                    window: cfg.release_window,
                });
            }
        }
        if self.a.locker == Locker::ProviderVault && self.b.locker == Locker::ProviderVault {
            problems.push(SpecProblem::TwoVaults);
        }
        InvalidSpec::check(problems)
    }
}

/// Events that drive a two-phase lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum TwoPhaseEvent {
    /// Hub time advanced. Older or equal times are ignored.
    Tick {
        now: Timestamp,
    },
    LockObserved {
        leg: LegId,
        lock: LockObservation,
    },
    LockFinalized {
        leg: LegId,
        lock: LockObservation,
        evidence: EvidenceRef,
    },
    LockReorged {
        leg: LegId,
        tx: TxId,
        block: Hash32,
    },
    /// The hub chain committed the decision.
    DecisionRecorded {
        decision: Decision,
        record: HubRecord,
    },
    /// A release reached finality on the leg's network.
    Released {
        leg: LegId,
        tx: TxId,
    },
    /// A refund reached finality on the leg's network.
    Refunded {
        leg: LegId,
        tx: TxId,
    },
    AdapterHealth {
        leg: LegId,
        healthy: bool,
    },
    /// A re-read of the leg's escrow at hub time `at` found no lock under its lock id. A
    /// lock only seen is withdrawn (its inclusion is gone, reported or not); after an abort
    /// this is what lets a leg without a lock end.
    LockAbsent {
        leg: LegId,
        at: Timestamp,
    },
}

impl TwoPhaseEvent {
    fn lock_update(&self) -> Option<(LegId, LockUpdate<'_>)> {
        match self {
            TwoPhaseEvent::LockObserved { leg, lock } => Some((*leg, LockUpdate::Observed(lock))),
            TwoPhaseEvent::LockFinalized {
                leg,
                lock,
                evidence,
            } => Some((*leg, LockUpdate::Finalized(lock, evidence))),
            TwoPhaseEvent::LockReorged { leg, tx, block } => {
                Some((*leg, LockUpdate::Reorged(tx, block)))
            }
            _ => None,
        }
    }
}

/// One two-phase lock instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwoPhase {
    pub id: InstanceId,
    pub spec: TwoPhaseSpec,
    pub now: Timestamp,
    pub legs: Legs<LegState>,
    /// Write-once.
    pub decision: Option<Decision>,
    pub record: Option<HubRecord>,
    pub unhealthy: Legs<bool>,
    /// Per leg, the latest hub time at which a re-read found no lock, since the leg's last
    /// lock observation.
    #[serde(default)]
    pub absent_at: Legs<Option<Timestamp>>,
}

impl TwoPhase {
    /// Validate the request and create the instance; the returned actions are due at once.
    pub fn create(
        id: InstanceId,
        spec: TwoPhaseSpec,
        cfg: &TwoPhaseConfig,
        now: Timestamp,
    ) -> Result<(Self, Vec<Action>), InvalidSpec> {
        spec.validate(cfg, now)?;
        let machine = TwoPhase {
            id,
            spec,
            now,
            legs: Legs::default(),
            decision: None,
            record: None,
            unhealthy: Legs::default(),
            absent_at: Legs::default(),
        };
        let actions = machine.pending_actions();
        Ok((machine, actions))
    }

    pub fn lock_id(&self, leg: LegId) -> LockId {
        LockId::derive(self.id, leg)
    }

    /// Legs whose escrow the hub should re-read from its network (the adapter's lock
    /// state) on its sweep: a lock only seen (its finality or its reorg may never be
    /// reported), a lock the hub keeps submitting (a resubmission finds it already there
    /// and reports nothing new), and once decided every leg not yet settled, so that the
    /// instance ends on the chain's word rather than on the absence of news. None once
    /// terminal.
    pub fn legs_to_reread(&self) -> Vec<LegId> {
        if self.status().terminal {
            return Vec::new();
        }
        let pending = self.pending_actions();
        let submitting = |leg: LegId| {
            pending
                .iter()
                .any(|a| matches!(a, Action::SubmitLock { leg: l, .. } if *l == leg))
        };
        LegId::BOTH
            .into_iter()
            .filter(|leg| match &self.legs[*leg] {
                LegState::Seen { .. } => true,
                LegState::Settled { .. } => false,
                LegState::Unlocked => self.decision.is_some() || submitting(*leg),
                LegState::Final { .. } => self.decision.is_some(),
            })
            .collect()
    }

    /// Whether an aborted instance still owes `leg` something: a refund of a lock it saw,
    /// or the chain's word that no lock is coming. A lock under the leg's id can appear
    /// until the escrow timeout (escrows refuse one past it), whoever submits it: the hub's
    /// wallet or a vault (submitted before the abort, surfacing late) or a party locking
    /// after the deadline. The hub refunds each of them, so only a read at or after the
    /// timeout that finds no lock lets the leg end.
    fn owes_refund(&self, leg: LegId) -> bool {
        match &self.legs[leg] {
            LegState::Seen { .. } | LegState::Final { .. } => true,
            LegState::Settled { .. } => false,
            LegState::Unlocked => {
                self.absent_at[leg].is_none_or(|at| at < self.spec.leg(leg).timeout)
            }
        }
    }

    fn decide_if_due(&mut self) {
        if self.decision.is_some() {
            return;
        }
        if self.now >= self.spec.deadline {
            self.decision = Some(Decision::Aborted);
        } else if self.legs.a.is_final() && self.legs.b.is_final() {
            self.decision = Some(Decision::Validated);
        }
    }

    fn settle(&mut self, leg: LegId, how: Settlement, tx: &TxId) -> Result<(), Rejection> {
        let needed = match how {
            Settlement::Released => Decision::Validated,
            _ => Decision::Aborted,
        };
        match (self.decision, &self.record) {
            (Some(d), Some(_)) if d == needed => {}
            // The escrow timed out on its own network while the hub had decided nothing (it
            // was down past the deadline): the owner took the funds back, which is an abort.
            (None, _) if how == Settlement::Refunded => {
                self.decision = Some(Decision::Aborted);
            }
            _ => {
                return Err(Rejection::SettlementWithoutDecision {
                    leg,
                    what: how,
                    needed,
                })
            }
        }
        // The hub releases only final locks, so a release report for anything else is bogus.
        // A refund is the chain's word that the owner has its funds back (possibly by the
        // escrow's own timeout, reported before the lock's finality): accept it from any state.
        let final_only = how == Settlement::Released;
        self.legs[leg].settle(leg, how, tx.clone(), final_only)
    }

    fn lock_absent(&mut self, leg: LegId, at: Timestamp) -> Result<(), Rejection> {
        match &self.legs[leg] {
            // The hub holds verified evidence of finality: a chain that lost the lock has
            // been rewritten below finality, which is an alarm, not news to act on.
            LegState::Final { lock, .. } => {
                return Err(Rejection::ReorgAfterFinality {
                    leg,
                    tx: lock.tx.clone(),
                })
            }
            LegState::Settled { .. } => return Ok(()),
            LegState::Seen { .. } => self.legs[leg] = LegState::Unlocked,
            LegState::Unlocked => {}
        }
        let latest = self.absent_at[leg].map_or(at, |t| t.max(at));
        self.absent_at[leg] = Some(latest);
        Ok(())
    }
}

impl Machine for TwoPhase {
    type Event = TwoPhaseEvent;

    fn apply(&mut self, event: &TwoPhaseEvent) -> Result<(), Rejection> {
        if let Some((leg, update)) = event.lock_update() {
            update_lock(&mut self.legs, self.id, leg, self.spec.leg(leg), update)?;
            if !matches!(event, TwoPhaseEvent::LockReorged { .. }) {
                // A lock appeared after the last "no lock": that word is stale now.
                self.absent_at[leg] = None;
            }
        }
        match event {
            TwoPhaseEvent::Tick { now } => {
                self.now = self.now.max(*now);
            }
            TwoPhaseEvent::DecisionRecorded { decision, record } => {
                if self.decision != Some(*decision) {
                    return Err(Rejection::RecordMismatch {
                        expected: self.decision,
                        got: *decision,
                    });
                }
                // A retried record may land twice on the hub chain; the first one counts.
                if self.record.is_none() {
                    self.record = Some(record.clone());
                }
            }
            TwoPhaseEvent::Released { leg, tx } => self.settle(*leg, Settlement::Released, tx)?,
            TwoPhaseEvent::Refunded { leg, tx } => self.settle(*leg, Settlement::Refunded, tx)?,
            TwoPhaseEvent::AdapterHealth { leg, healthy } => {
                self.unhealthy[*leg] = !healthy;
            }
            TwoPhaseEvent::LockAbsent { leg, at } => self.lock_absent(*leg, *at)?,
            TwoPhaseEvent::LockObserved { .. }
            | TwoPhaseEvent::LockFinalized { .. }
            | TwoPhaseEvent::LockReorged { .. } => {}
        }
        self.decide_if_due();
        Ok(())
    }

    fn pending_actions(&self) -> Vec<Action> {
        let mut out = Vec::new();
        match (self.decision, &self.record) {
            (None, _) => {
                for leg in LegId::BOTH {
                    let due = match self.spec.leg(leg).locker {
                        Locker::External => false,
                        Locker::HubWallet => true,
                        Locker::ProviderVault => self.legs[leg.other()].is_final(),
                    };
                    if due && self.legs[leg] == LegState::Unlocked {
                        out.push(Action::SubmitLock {
                            leg,
                            lock_id: self.lock_id(leg),
                        });
                    }
                }
            }
            (Some(decision), None) => out.push(Action::RecordDecision { decision }),
            (Some(decision), Some(record)) => {
                for leg in LegId::BOTH {
                    if !self.legs[leg].is_final() {
                        continue;
                    }
                    let lock_id = self.lock_id(leg);
                    out.push(match decision {
                        Decision::Validated => Action::Release {
                            leg,
                            lock_id,
                            record: record.clone(),
                        },
                        Decision::Aborted => Action::Refund {
                            leg,
                            lock_id,
                            authority: RefundAuthority::HubRecord(record.clone()),
                        },
                    });
                }
            }
        }
        out
    }

    fn status(&self) -> Status {
        let legs = Legs::new(self.legs.a.phase(), self.legs.b.phase());
        let any = |p: LegPhase| legs.a == p || legs.b == p;
        let (phase, reason, terminal) = match (self.decision, &self.record) {
            (None, _) => {
                let reason = if any(LegPhase::LockSeen) {
                    ReasonCode::AwaitingFinality
                } else if any(LegPhase::Locked) {
                    ReasonCode::AwaitingCounterpartyLock
                } else {
                    ReasonCode::AwaitingLocks
                };
                (Phase::Locking, reason, false)
            }
            (Some(Decision::Validated), None) => (
                Phase::RecordingValidation,
                ReasonCode::RecordingValidation,
                false,
            ),
            (Some(Decision::Aborted), None) => (
                Phase::RecordingAbort,
                ReasonCode::DeadlinePassedRefunding,
                false,
            ),
            (Some(Decision::Validated), Some(_)) => {
                if legs.a == LegPhase::Released && legs.b == LegPhase::Released {
                    (Phase::Released, ReasonCode::Released, true)
                } else {
                    (Phase::Releasing, ReasonCode::Releasing, false)
                }
            }
            (Some(Decision::Aborted), Some(_)) => {
                // Every lock the hub saw is refunded by the hub, even one that becomes final
                // after its escrow timeout (the customer may be offline); a leg without a
                // lock ends only on its network's word that none is coming.
                if self.owes_refund(LegId::A) || self.owes_refund(LegId::B) {
                    (Phase::Refunding, ReasonCode::DeadlinePassedRefunding, false)
                } else if any(LegPhase::Refunded) {
                    (Phase::Refunded, ReasonCode::Refunded, true)
                } else {
                    (Phase::Expired, ReasonCode::Expired, true)
                }
            }
        };
        let stuck_on_adapter = LegId::BOTH.iter().any(|l| self.unhealthy[*l]);
        let reason = if stuck_on_adapter && !terminal {
            ReasonCode::AdapterUnhealthy
        } else {
            reason
        };
        Status {
            phase,
            reason,
            terminal,
            legs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_core::{HashAlgo, NetworkId};

    fn leg(net: u64, amount: u128, timeout: Timestamp, locker: Locker) -> LegSpec {
        LegSpec {
            network: NetworkId(net),
            asset: AssetId("native".into()),
            amount: Amount(amount),
            from: Address(format!("from{net}")),
            to: Address(format!("to{net}")),
            timeout,
            locker,
        }
    }

    const CFG: TwoPhaseConfig = TwoPhaseConfig { release_window: 50 };

    fn machine(a: Locker, b: Locker) -> (TwoPhase, Vec<Action>) {
        let spec = TwoPhaseSpec {
            a: leg(1, 10, 200, a),
            b: leg(2, 20, 200, b),
            deadline: 100,
        };
        TwoPhase::create(InstanceId::derive(&[b"t"]), spec, &CFG, 0).unwrap()
    }

    fn obs(m: &TwoPhase, leg: LegId, tx: &str) -> LockObservation {
        let spec = m.spec.leg(leg);
        LockObservation {
            lock_id: m.lock_id(leg),
            tx: TxId(tx.into()),
            block: HashAlgo::Sha256.digest(tx.as_bytes()),
            height: 1,
            asset: spec.asset.clone(),
            amount: spec.amount,
            beneficiary: spec.to.clone(),
        }
    }

    fn ev() -> EvidenceRef {
        EvidenceRef {
            height: 7,
            digest: Hash32([7; 32]),
        }
    }

    fn finalized(m: &TwoPhase, leg: LegId, tx: &str) -> TwoPhaseEvent {
        TwoPhaseEvent::LockFinalized {
            leg,
            lock: obs(m, leg, tx),
            evidence: ev(),
        }
    }

    fn record() -> HubRecord {
        HubRecord {
            height: 3,
            tx: TxId("hub".into()),
        }
    }

    #[test]
    fn creation_reports_every_problem_with_values() {
        let spec = TwoPhaseSpec {
            a: leg(1, 0, 120, Locker::ProviderVault),
            b: leg(2, 5, 500, Locker::ProviderVault),
            deadline: 100,
        };
        let err = TwoPhase::create(InstanceId::derive(&[b"x"]), spec, &CFG, 150).unwrap_err();
        assert_eq!(err.problems.len(), 4, "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("deadline 100 is not after the creation time 150"),
            "{msg}"
        );
        assert!(msg.contains("leg a amount must be positive"), "{msg}");
        assert!(msg.contains("leg a escrow timeout 120"), "{msg}");
        assert!(msg.contains("both legs are provider vaults"), "{msg}");
    }

    #[test]
    fn releases_only_after_the_hub_record() {
        let (mut m, actions) = machine(Locker::External, Locker::External);
        assert!(actions.is_empty());
        assert_eq!(m.status().reason, ReasonCode::AwaitingLocks);
        let a = finalized(&m, LegId::A, "ta");
        assert_eq!(m.step(&a).unwrap(), vec![]);
        assert_eq!(m.status().reason, ReasonCode::AwaitingCounterpartyLock);
        let b = finalized(&m, LegId::B, "tb");
        assert_eq!(
            m.step(&b).unwrap(),
            vec![Action::RecordDecision {
                decision: Decision::Validated
            }]
        );
        assert_eq!(m.status().reason, ReasonCode::RecordingValidation);
        // A release reported before the record is forged or premature.
        let early = TwoPhaseEvent::Released {
            leg: LegId::A,
            tx: TxId("r".into()),
        };
        let err = m.step(&early).unwrap_err();
        assert_eq!(err.code(), "settlement_without_decision");
        assert!(err.is_alarm());
        let rec = TwoPhaseEvent::DecisionRecorded {
            decision: Decision::Validated,
            record: record(),
        };
        let actions = m.step(&rec).unwrap();
        assert_eq!(actions.len(), 2);
        assert!(actions
            .iter()
            .all(|a| matches!(a, Action::Release { record: r, .. } if *r == record())));
        assert_eq!(m.step(&rec).unwrap(), vec![], "replay is a no-op");
        m.step(&early).unwrap();
        assert_eq!(m.status().reason, ReasonCode::Releasing);
        m.step(&TwoPhaseEvent::Released {
            leg: LegId::B,
            tx: TxId("r2".into()),
        })
        .unwrap();
        let s = m.status();
        assert!(s.terminal);
        assert_eq!(s.reason.as_str(), "released");
        assert!(m.pending_actions().is_empty());
        // A second, different release of the same leg is an alarm, not a state change.
        let before = m.clone();
        let err = m
            .step(&TwoPhaseEvent::Released {
                leg: LegId::A,
                tx: TxId("other".into()),
            })
            .unwrap_err();
        assert_eq!(err.code(), "settlement_conflict");
        assert_eq!(m, before);
        // A refund report after validation is refused.
        let err = m
            .step(&TwoPhaseEvent::Refunded {
                leg: LegId::A,
                tx: TxId("f".into()),
            })
            .unwrap_err();
        assert_eq!(err.code(), "settlement_without_decision");
    }

    #[test]
    fn finality_after_the_deadline_aborts() {
        let (mut m, _) = machine(Locker::External, Locker::External);
        m.step(&finalized(&m, LegId::A, "ta")).unwrap();
        let actions = m.step(&TwoPhaseEvent::Tick { now: 100 }).unwrap();
        assert_eq!(
            actions,
            vec![Action::RecordDecision {
                decision: Decision::Aborted
            }]
        );
        assert_eq!(m.status().reason.as_str(), "deadline_passed_refunding");
        m.step(&finalized(&m, LegId::B, "tb")).unwrap();
        assert_eq!(m.decision, Some(Decision::Aborted), "write-once");
        let err = m
            .step(&TwoPhaseEvent::DecisionRecorded {
                decision: Decision::Validated,
                record: record(),
            })
            .unwrap_err();
        assert_eq!(err.code(), "record_mismatch");
        let actions = m
            .step(&TwoPhaseEvent::DecisionRecorded {
                decision: Decision::Aborted,
                record: record(),
            })
            .unwrap();
        assert_eq!(actions.len(), 2);
        assert!(actions.iter().all(|a| matches!(a, Action::Refund { .. })));
        // An older tick is ignored.
        assert_eq!(m.step(&TwoPhaseEvent::Tick { now: 5 }).unwrap(), vec![]);
        assert_eq!(m.now, 100);
    }

    fn absent(leg: LegId, at: Timestamp) -> TwoPhaseEvent {
        TwoPhaseEvent::LockAbsent { leg, at }
    }

    fn aborted_and_recorded(a: Locker, b: Locker, now: Timestamp) -> TwoPhase {
        let (mut m, _) = machine(a, b);
        m.step(&TwoPhaseEvent::Tick { now }).unwrap();
        m.step(&TwoPhaseEvent::DecisionRecorded {
            decision: Decision::Aborted,
            record: record(),
        })
        .unwrap();
        m
    }

    #[test]
    fn nothing_locked_expires_on_the_chains_word() {
        let mut m = aborted_and_recorded(Locker::External, Locker::External, 150);
        // No news is not news: the instance waits for a re-read of both escrows.
        let s = m.status();
        assert_eq!((s.phase, s.terminal), (Phase::Refunding, false));
        assert_eq!(m.legs_to_reread(), vec![LegId::A, LegId::B]);
        // A read from before the escrow timeout (200) does not count: a lock could still
        // come then, and the hub would owe it a refund.
        m.step(&absent(LegId::A, 199)).unwrap();
        m.step(&absent(LegId::B, 200)).unwrap();
        assert!(!m.status().terminal);
        m.step(&absent(LegId::A, 200)).unwrap();
        let s = m.status();
        assert_eq!((s.phase, s.terminal), (Phase::Expired, true));
        assert!(m.legs_to_reread().is_empty());
        assert!(m.pending_actions().is_empty());
        // Replaying the read changes nothing; an older one does not move it back.
        let before = m.clone();
        m.step(&absent(LegId::A, 200)).unwrap();
        m.step(&absent(LegId::A, 150)).unwrap();
        assert_eq!(m, before);
        // A late lock reopens the instance while it waits for finality, and is refunded.
        m.step(&TwoPhaseEvent::LockObserved {
            leg: LegId::B,
            lock: obs(&m, LegId::B, "late"),
        })
        .unwrap();
        assert_eq!(m.absent_at.b, None, "the earlier read is stale now");
        let s = m.status();
        assert_eq!((s.phase, s.terminal), (Phase::Refunding, false));
        let actions = m.step(&finalized(&m, LegId::B, "late")).unwrap();
        assert!(matches!(
            actions[..],
            [Action::Refund { leg: LegId::B, .. }]
        ));
        assert_eq!(m.status().phase, Phase::Refunding);
    }

    #[test]
    fn a_lock_made_after_the_abort_is_refunded_too() {
        let mut m = aborted_and_recorded(Locker::HubWallet, Locker::External, 150);
        // The party locks after the deadline, before the escrow timeout: too late to take
        // part, but the hub still gives it back.
        m.step(&finalized(&m, LegId::B, "tb")).unwrap();
        let actions = m.pending_actions();
        assert!(matches!(
            actions[..],
            [Action::Refund { leg: LegId::B, .. }]
        ));
        m.step(&TwoPhaseEvent::Refunded {
            leg: LegId::B,
            tx: TxId("rb".into()),
        })
        .unwrap();
        // The wallet's lock on A never surfaced; a read at A's timeout ends the instance.
        m.step(&absent(LegId::A, 199)).unwrap();
        assert_eq!(m.status().phase, Phase::Refunding);
        m.step(&absent(LegId::A, 200)).unwrap();
        assert_eq!(m.status().phase, Phase::Refunded);
    }

    /// The gap found by the kill -9 trials: after the abort, leg B's lock is seen, and it
    /// becomes final only after B's escrow timeout (the hub was down, the network slow).
    /// The hub still refunds it, and the instance ends refunded, not expired.
    #[test]
    fn a_lock_seen_final_after_its_escrow_timeout_is_refunded() {
        let (mut m, _) = machine(Locker::External, Locker::External);
        m.step(&finalized(&m, LegId::A, "ta")).unwrap();
        m.step(&TwoPhaseEvent::Tick { now: 100 }).unwrap();
        let actions = m
            .step(&TwoPhaseEvent::DecisionRecorded {
                decision: Decision::Aborted,
                record: record(),
            })
            .unwrap();
        assert!(matches!(
            actions[..],
            [Action::Refund { leg: LegId::A, .. }]
        ));
        m.step(&TwoPhaseEvent::Refunded {
            leg: LegId::A,
            tx: TxId("ra".into()),
        })
        .unwrap();
        m.step(&TwoPhaseEvent::LockObserved {
            leg: LegId::B,
            lock: obs(&m, LegId::B, "tb"),
        })
        .unwrap();
        // Past B's escrow timeout (200) with B's lock seen but not final: still open.
        m.step(&TwoPhaseEvent::Tick { now: 260 }).unwrap();
        let s = m.status();
        assert_eq!((s.phase, s.terminal), (Phase::Refunding, false), "{s:?}");
        assert_eq!(m.legs_to_reread(), vec![LegId::B]);
        let actions = m.step(&finalized(&m, LegId::B, "tb")).unwrap();
        let lock_id = m.lock_id(LegId::B);
        assert_eq!(
            actions,
            vec![Action::Refund {
                leg: LegId::B,
                lock_id,
                authority: RefundAuthority::HubRecord(record()),
            }]
        );
        assert!(!m.status().terminal);
        m.step(&TwoPhaseEvent::Refunded {
            leg: LegId::B,
            tx: TxId("rb".into()),
        })
        .unwrap();
        let s = m.status();
        assert_eq!(
            (s.phase, s.reason, s.terminal),
            (Phase::Refunded, ReasonCode::Refunded, true)
        );
        assert!(m.pending_actions().is_empty());
        assert!(m.legs_to_reread().is_empty());
    }

    /// A seen lock whose reorg is never reported does not keep the instance open forever:
    /// the sweep's re-read finds no lock, which withdraws it.
    #[test]
    fn a_seen_lock_the_chain_no_longer_holds_is_withdrawn_by_a_reread() {
        let (mut m, _) = machine(Locker::External, Locker::External);
        m.step(&TwoPhaseEvent::LockObserved {
            leg: LegId::A,
            lock: obs(&m, LegId::A, "ta"),
        })
        .unwrap();
        assert_eq!(m.legs_to_reread(), vec![LegId::A], "seen legs are re-read");
        m.step(&absent(LegId::A, 50)).unwrap();
        assert_eq!(m.legs.a, LegState::Unlocked);
        assert!(
            m.legs_to_reread().is_empty(),
            "nothing to re-read before a decision"
        );
        m.step(&TwoPhaseEvent::Tick { now: 120 }).unwrap();
        m.step(&TwoPhaseEvent::DecisionRecorded {
            decision: Decision::Aborted,
            record: record(),
        })
        .unwrap();
        assert!(
            !m.status().terminal,
            "the read at 50 predates the escrow timeout"
        );
        m.step(&absent(LegId::A, 200)).unwrap();
        m.step(&absent(LegId::B, 200)).unwrap();
        assert_eq!(m.status().phase, Phase::Expired);
    }

    #[test]
    fn a_final_lock_the_chain_no_longer_holds_is_an_alarm() {
        let (mut m, _) = machine(Locker::External, Locker::External);
        m.step(&finalized(&m, LegId::A, "ta")).unwrap();
        let before = m.clone();
        let err = m.step(&absent(LegId::A, 10)).unwrap_err();
        assert_eq!(err.code(), "reorg_after_finality");
        assert!(err.is_alarm());
        assert_eq!(m, before);
    }

    #[test]
    fn state_stored_before_rereads_existed_still_loads() {
        let (m, _) = machine(Locker::External, Locker::External);
        let mut json = serde_json::to_value(&m).unwrap();
        json.as_object_mut().unwrap().remove("absent_at");
        let back: TwoPhase = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn reorg_before_finality_goes_back_and_after_is_an_alarm() {
        let (mut m, _) = machine(Locker::External, Locker::External);
        let o = obs(&m, LegId::A, "ta");
        m.step(&TwoPhaseEvent::LockObserved {
            leg: LegId::A,
            lock: o.clone(),
        })
        .unwrap();
        assert_eq!(m.status().reason, ReasonCode::AwaitingFinality);
        // A stale reorg of another block changes nothing.
        m.step(&TwoPhaseEvent::LockReorged {
            leg: LegId::A,
            tx: o.tx.clone(),
            block: Hash32::ZERO,
        })
        .unwrap();
        assert_eq!(m.legs.a.phase(), LegPhase::LockSeen);
        let reorg = TwoPhaseEvent::LockReorged {
            leg: LegId::A,
            tx: o.tx.clone(),
            block: o.block,
        };
        m.step(&reorg).unwrap();
        assert_eq!(m.legs.a, LegState::Unlocked);
        m.step(&finalized(&m, LegId::A, "ta")).unwrap();
        let before = m.clone();
        let err = m.step(&reorg).unwrap_err();
        assert_eq!(err.code(), "reorg_after_finality");
        assert!(err.is_alarm());
        assert_eq!(m, before);
        // A second finalized lock tx for the same lock id cannot exist on an honest chain.
        let err = m.step(&finalized(&m, LegId::A, "tz")).unwrap_err();
        assert_eq!(err.code(), "duplicate_lock");
    }

    #[test]
    fn a_lock_other_than_the_spec_is_refused_unchanged() {
        let (mut m, _) = machine(Locker::External, Locker::External);
        let before = m.clone();
        let mut o = obs(&m, LegId::A, "ta");
        o.amount = Amount(9);
        let err = m
            .step(&TwoPhaseEvent::LockObserved {
                leg: LegId::A,
                lock: o,
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "lock on leg a has amount 9, expected 10");
        let mut o = obs(&m, LegId::A, "ta");
        o.asset = AssetId("erc20:0xdead".into());
        assert_eq!(
            m.step(&TwoPhaseEvent::LockObserved {
                leg: LegId::A,
                lock: o
            })
            .unwrap_err()
            .code(),
            "asset_mismatch"
        );
        let mut o = obs(&m, LegId::A, "ta");
        o.beneficiary = Address("mallory".into());
        assert!(m
            .step(&TwoPhaseEvent::LockObserved {
                leg: LegId::A,
                lock: o
            })
            .unwrap_err()
            .to_string()
            .contains("`mallory`"));
        let o = obs(&m, LegId::B, "tb");
        assert_eq!(
            m.step(&TwoPhaseEvent::LockObserved {
                leg: LegId::A,
                lock: o
            })
            .unwrap_err()
            .code(),
            "lock_id_mismatch",
            "a lock of the other leg"
        );
        assert_eq!(m, before);
    }

    #[test]
    fn vault_locks_only_after_the_customer_lock_is_final() {
        let (mut m, actions) = machine(Locker::HubWallet, Locker::ProviderVault);
        assert_eq!(
            m.legs_to_reread(),
            vec![LegId::A],
            "a lock the hub keeps submitting is re-read: its report may be lost"
        );
        assert_eq!(
            actions,
            vec![Action::SubmitLock {
                leg: LegId::A,
                lock_id: m.lock_id(LegId::A)
            }]
        );
        let seen = TwoPhaseEvent::LockObserved {
            leg: LegId::A,
            lock: obs(&m, LegId::A, "ta"),
        };
        assert_eq!(m.step(&seen).unwrap(), vec![]);
        let actions = m.step(&finalized(&m, LegId::A, "ta")).unwrap();
        assert_eq!(
            actions,
            vec![Action::SubmitLock {
                leg: LegId::B,
                lock_id: m.lock_id(LegId::B)
            }]
        );
    }

    #[test]
    fn escrow_timeout_refund_while_hub_was_down_aborts() {
        let (mut m, _) = machine(Locker::External, Locker::External);
        m.step(&finalized(&m, LegId::A, "ta")).unwrap();
        let actions = m
            .step(&TwoPhaseEvent::Refunded {
                leg: LegId::A,
                tx: TxId("self".into()),
            })
            .unwrap();
        assert_eq!(m.decision, Some(Decision::Aborted));
        assert_eq!(
            actions,
            vec![Action::RecordDecision {
                decision: Decision::Aborted
            }]
        );
    }

    #[test]
    fn a_refund_reported_before_the_lock_finality_is_accepted_but_a_release_is_not() {
        let (mut m, _) = machine(Locker::External, Locker::External);
        let seen = TwoPhaseEvent::LockObserved {
            leg: LegId::B,
            lock: obs(&m, LegId::B, "tb"),
        };
        m.step(&seen).unwrap();
        let err = m
            .step(&TwoPhaseEvent::Released {
                leg: LegId::B,
                tx: TxId("r".into()),
            })
            .unwrap_err();
        assert_eq!(err.code(), "settlement_without_decision");
        m.step(&TwoPhaseEvent::Refunded {
            leg: LegId::B,
            tx: TxId("self-refund".into()),
        })
        .unwrap();
        assert_eq!(m.legs.b.phase(), LegPhase::Refunded);
        // Its finality report arriving afterwards only fills in the lock.
        m.step(&finalized(&m, LegId::B, "tb")).unwrap();
        assert_eq!(m.legs.b.phase(), LegPhase::Refunded);
    }

    #[test]
    fn unhealthy_adapter_is_the_reason_until_terminal() {
        let (mut m, _) = machine(Locker::External, Locker::External);
        m.step(&TwoPhaseEvent::AdapterHealth {
            leg: LegId::B,
            healthy: false,
        })
        .unwrap();
        let s = m.status();
        assert_eq!(s.reason, ReasonCode::AdapterUnhealthy);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["reason"], "adapter_unhealthy");
        assert_eq!(json["legs"]["a"], "unlocked");
    }

    #[test]
    fn serde_round_trips_state_events_and_actions() {
        let (mut m, _) = machine(Locker::External, Locker::HubWallet);
        m.step(&finalized(&m, LegId::A, "ta")).unwrap();
        let bytes = rmp_serde::to_vec_named(&m).unwrap();
        let back: TwoPhase = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, m);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<TwoPhase>(&json).unwrap(), m);
        assert!(json.contains("\"amount\":\"10\""), "{json}");
        let e = finalized(&m, LegId::B, "tb");
        let s = serde_json::to_string(&e).unwrap();
        assert!(s.contains("\"event\":\"lock_finalized\""), "{s}");
        assert_eq!(serde_json::from_str::<TwoPhaseEvent>(&s).unwrap(), e);
    }
}
