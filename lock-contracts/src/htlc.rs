//! The HTLC atomic swap, as the hub's watcher runs it.
//!
//! The initiator locks on network A (leg A) to the participant, with hashlock
//! `sha256(preimage)` and timelock T1; the participant locks on network B (leg B) to the
//! initiator with the same hashlock and timelock T2, where T1 > T2 + Δ. The initiator claims
//! leg B, which reveals the preimage on B; the watcher then claims leg A for the participant
//! with it. After T2 an unclaimed leg B is refunded, after T1 an unclaimed leg A is refunded
//! unless the preimage was revealed, all without the customer being online. Preimages are
//! exactly 32 bytes, everywhere.

use crate::error::{InvalidSpec, Rejection, SpecProblem};
use crate::leg::{update_lock, LegState, LockUpdate};
use crate::types::*;
use crate::Machine;
use isthmus_core::Hash32;
use serde::{Deserialize, Serialize};

/// Hub-wide settings for HTLC swaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HtlcConfig {
    /// Δ: how much longer the initiator's timelock must be than the participant's. It covers
    /// the finality of the reveal, detection latency, fee spikes, median-time-past lag and
    /// clock skew.
    pub delta: u64,
}

impl Default for HtlcConfig {
    fn default() -> Self {
        HtlcConfig { delta: 3600 }
    }
}

/// An HTLC swap request. `initiator.timeout` is T1, `participant.timeout` is T2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HtlcSpec {
    pub hashlock: Hash32,
    pub initiator: LegSpec,
    pub participant: LegSpec,
}

impl HtlcSpec {
    pub fn leg(&self, leg: LegId) -> &LegSpec {
        match leg {
            LegId::A => &self.initiator,
            LegId::B => &self.participant,
        }
    }

    /// Every problem at once; in particular T1 > T2 + Δ.
    pub fn validate(&self, cfg: &HtlcConfig, now: Timestamp) -> Result<(), InvalidSpec> {
        let mut problems = Vec::new();
        let (t1, t2) = (self.initiator.timeout, self.participant.timeout);
        // checked: T2 + Δ overflowing u64 can never be exceeded.
        if t2.checked_add(cfg.delta).is_none_or(|min| t1 <= min) {
            problems.push(SpecProblem::TimelockMargin {
                t1,
                t2,
                delta: cfg.delta,
            });
        }
        if t2 <= now {
            problems.push(SpecProblem::TimelockInPast { t2, now });
        }
        for leg in LegId::BOTH {
            if self.leg(leg).amount.0 == 0 {
                problems.push(SpecProblem::ZeroAmount { leg });
            }
        }
        if self.initiator.locker == Locker::ProviderVault {
            problems.push(SpecProblem::InitiatorVault);
        }
        InvalidSpec::check(problems)
    }
}

/// Events that drive an HTLC swap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum HtlcEvent {
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
    /// The initiator hands the hub its secret so the hub claims leg B on its behalf.
    /// Raw bytes: the length is checked here.
    PreimageProvided {
        #[serde(with = "serde_bytes")]
        preimage: Vec<u8>,
    },
    /// A claim of `leg` reached finality on its network, revealing `preimage`.
    Claimed {
        leg: LegId,
        tx: TxId,
        #[serde(with = "serde_bytes")]
        preimage: Vec<u8>,
    },
    /// A refund of `leg` reached finality on its network.
    Refunded {
        leg: LegId,
        tx: TxId,
    },
    AdapterHealth {
        leg: LegId,
        healthy: bool,
    },
}

impl HtlcEvent {
    fn lock_update(&self) -> Option<(LegId, LockUpdate<'_>)> {
        match self {
            HtlcEvent::LockObserved { leg, lock } => Some((*leg, LockUpdate::Observed(lock))),
            HtlcEvent::LockFinalized {
                leg,
                lock,
                evidence,
            } => Some((*leg, LockUpdate::Finalized(lock, evidence))),
            HtlcEvent::LockReorged { leg, tx, block } => {
                Some((*leg, LockUpdate::Reorged(tx, block)))
            }
            _ => None,
        }
    }
}

/// One HTLC swap instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Htlc {
    pub id: InstanceId,
    pub spec: HtlcSpec,
    pub now: Timestamp,
    pub legs: Legs<LegState>,
    /// The secret, once known to the hub.
    pub preimage: Option<Preimage>,
    /// True once the secret is public on leg B's network: the participant is then owed leg A.
    pub revealed: bool,
    pub unhealthy: Legs<bool>,
}

impl Htlc {
    pub fn create(
        id: InstanceId,
        spec: HtlcSpec,
        cfg: &HtlcConfig,
        now: Timestamp,
    ) -> Result<(Self, Vec<Action>), InvalidSpec> {
        spec.validate(cfg, now)?;
        let machine = Htlc {
            id,
            spec,
            now,
            legs: Legs::default(),
            preimage: None,
            revealed: false,
            unhealthy: Legs::default(),
        };
        let actions = machine.pending_actions();
        Ok((machine, actions))
    }

    pub fn lock_id(&self, leg: LegId) -> LockId {
        LockId::derive(self.id, leg)
    }

    fn check_preimage(&self, raw: &[u8]) -> Result<Preimage, Rejection> {
        let p = Preimage::parse(raw)?;
        let got = p.hashlock();
        if got != self.spec.hashlock {
            return Err(Rejection::PreimageMismatch {
                expected: self.spec.hashlock,
                got,
            });
        }
        Ok(p)
    }

    fn expired(&self, leg: LegId) -> bool {
        self.now >= self.spec.leg(leg).timeout
    }
}

impl Machine for Htlc {
    type Event = HtlcEvent;

    fn apply(&mut self, event: &HtlcEvent) -> Result<(), Rejection> {
        if let Some((leg, update)) = event.lock_update() {
            update_lock(&mut self.legs, self.id, leg, self.spec.leg(leg), update)?;
        }
        match event {
            HtlcEvent::Tick { now } => self.now = self.now.max(*now),
            HtlcEvent::PreimageProvided { preimage } => {
                self.preimage = Some(self.check_preimage(preimage)?);
            }
            HtlcEvent::Claimed { leg, tx, preimage } => {
                let p = self.check_preimage(preimage)?;
                self.legs[*leg].settle(*leg, Settlement::Claimed, tx.clone(), false)?;
                self.preimage = Some(p);
                if *leg == LegId::B {
                    self.revealed = true;
                }
            }
            HtlcEvent::Refunded { leg, tx } => {
                self.legs[*leg].settle(*leg, Settlement::Refunded, tx.clone(), false)?;
            }
            HtlcEvent::AdapterHealth { leg, healthy } => self.unhealthy[*leg] = !healthy,
            HtlcEvent::LockObserved { .. }
            | HtlcEvent::LockFinalized { .. }
            | HtlcEvent::LockReorged { .. } => {}
        }
        Ok(())
    }

    fn pending_actions(&self) -> Vec<Action> {
        let mut out = Vec::new();
        let (a, b) = (LegId::A, LegId::B);
        // Locks the hub submits for custodied parties. The participant's lock waits for the
        // initiator's to be final, and neither starts once leg B could no longer complete.
        if !self.expired(b) {
            if self.spec.initiator.locker != Locker::External && self.legs.a == LegState::Unlocked {
                out.push(Action::SubmitLock {
                    leg: a,
                    lock_id: self.lock_id(a),
                });
            }
            if self.spec.participant.locker != Locker::External
                && self.legs.b == LegState::Unlocked
                && self.legs.a.is_final()
            {
                out.push(Action::SubmitLock {
                    leg: b,
                    lock_id: self.lock_id(b),
                });
            }
        }
        if self.legs.b.is_final() {
            match self.preimage {
                // The initiator's claim, before T2 only: after it the participant may refund.
                Some(preimage) if !self.expired(b) => out.push(Action::Claim {
                    leg: b,
                    lock_id: self.lock_id(b),
                    preimage,
                }),
                _ if self.expired(b) => out.push(Action::Refund {
                    leg: b,
                    lock_id: self.lock_id(b),
                    authority: RefundAuthority::Timelock {
                        after: self.spec.participant.timeout,
                    },
                }),
                _ => {}
            }
        }
        if self.legs.a.is_final() {
            match (self.revealed, self.preimage) {
                // The watcher's claim: the participant paid, so it is owed leg A at any time.
                (true, Some(preimage)) => out.push(Action::Claim {
                    leg: a,
                    lock_id: self.lock_id(a),
                    preimage,
                }),
                _ if self.expired(a) => out.push(Action::Refund {
                    leg: a,
                    lock_id: self.lock_id(a),
                    authority: RefundAuthority::Timelock {
                        after: self.spec.initiator.timeout,
                    },
                }),
                _ => {}
            }
        }
        out
    }

    fn status(&self) -> Status {
        let legs = Legs::new(self.legs.a.phase(), self.legs.b.phase());
        let open = |leg: LegId| match &self.legs[leg] {
            LegState::Settled { .. } => false,
            LegState::Final { .. } => true,
            // Nothing (final) in escrow: the leg is done once it can no longer lock usefully.
            LegState::Unlocked | LegState::Seen { .. } => !self.expired(leg),
        };
        let settled = |leg: LegId| self.legs[leg].settlement();
        let terminal = !open(LegId::A) && !open(LegId::B);
        let (phase, reason) = if terminal {
            match (settled(LegId::A), settled(LegId::B)) {
                (Some(Settlement::Claimed), Some(Settlement::Claimed)) => {
                    (Phase::Completed, ReasonCode::Completed)
                }
                (Some(Settlement::Claimed), _) | (_, Some(Settlement::Claimed)) => {
                    (Phase::Inconsistent, ReasonCode::AtomicityViolated)
                }
                (None, None) => (Phase::Expired, ReasonCode::Expired),
                _ => (Phase::Refunded, ReasonCode::Refunded),
            }
        } else if self
            .pending_actions()
            .iter()
            .any(|x| matches!(x, Action::Refund { .. }))
        {
            (Phase::Refunding, ReasonCode::TimelockExpiredRefunding)
        } else if self.revealed || settled(LegId::B) == Some(Settlement::Claimed) {
            (Phase::Claiming, ReasonCode::Claiming)
        } else {
            let reason = match (&self.legs.a, &self.legs.b) {
                (LegState::Seen { .. }, _) | (_, LegState::Seen { .. }) => {
                    ReasonCode::AwaitingFinality
                }
                (LegState::Unlocked, _) => ReasonCode::AwaitingInitiatorLock,
                (_, LegState::Unlocked) => ReasonCode::AwaitingCounterpartyLock,
                _ if self.preimage.is_some() => ReasonCode::Claiming,
                _ => ReasonCode::AwaitingPreimage,
            };
            (Phase::Locking, reason)
        };
        let reason = if !terminal && (self.unhealthy.a || self.unhealthy.b) {
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

    const SECRET: [u8; 32] = [7; 32];

    fn leg(net: u64, timeout: Timestamp, locker: Locker) -> LegSpec {
        LegSpec {
            network: NetworkId(net),
            asset: AssetId("native".into()),
            amount: Amount(5),
            from: Address(format!("from{net}")),
            to: Address(format!("to{net}")),
            timeout,
            locker,
        }
    }

    fn spec(t1: Timestamp, t2: Timestamp) -> HtlcSpec {
        HtlcSpec {
            hashlock: HashAlgo::Sha256.digest(&SECRET),
            initiator: leg(1, t1, Locker::External),
            participant: leg(2, t2, Locker::External),
        }
    }

    fn swap() -> Htlc {
        Htlc::create(
            InstanceId::derive(&[b"s"]),
            spec(500, 100),
            &HtlcConfig { delta: 300 },
            0,
        )
        .unwrap()
        .0
    }

    fn finalized(m: &Htlc, leg: LegId) -> HtlcEvent {
        let s = m.spec.leg(leg);
        HtlcEvent::LockFinalized {
            leg,
            lock: LockObservation {
                lock_id: m.lock_id(leg),
                tx: TxId(format!("lock-{leg}")),
                block: Hash32([1; 32]),
                height: 1,
                asset: s.asset.clone(),
                amount: s.amount,
                beneficiary: s.to.clone(),
            },
            evidence: EvidenceRef {
                height: 2,
                digest: Hash32([2; 32]),
            },
        }
    }

    #[test]
    fn timelock_margin_is_checked_at_creation_and_names_the_values() {
        let cfg = HtlcConfig { delta: 300 };
        let id = InstanceId::derive(&[b"x"]);
        for (t1, t2) in [(400, 100), (399, 100), (100, 100), (50, 100)] {
            let err = Htlc::create(id, spec(t1, t2), &cfg, 0).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "invalid contract: initiator timelock t1={t1} must exceed participant timelock t2={t2} by more than delta=300"
                )
            );
        }
        assert!(Htlc::create(id, spec(401, 100), &cfg, 0).is_ok());
        // T2 + Δ overflowing is refused, not wrapped.
        let big = HtlcConfig { delta: u64::MAX };
        assert_eq!(
            Htlc::create(id, spec(u64::MAX, 100), &big, 0)
                .unwrap_err()
                .problems[0]
                .to_string(),
            format!(
                "initiator timelock t1={} must exceed participant timelock t2=100 by more than delta={}",
                u64::MAX,
                u64::MAX
            )
        );
        let err = Htlc::create(id, spec(1000, 100), &cfg, 100).unwrap_err();
        assert_eq!(
            err.problems[0].to_string(),
            "participant timelock t2=100 is not after the creation time 100"
        );
    }

    #[test]
    fn preimages_must_be_32_bytes_and_match() {
        let mut m = swap();
        let before = m.clone();
        for len in [0usize, 16, 31, 33, 64] {
            let err = m
                .step(&HtlcEvent::PreimageProvided {
                    preimage: vec![7; len],
                })
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("preimage has {len} bytes, expected exactly 32")
            );
            assert_eq!(err.code(), "preimage_length");
        }
        let err = m
            .step(&HtlcEvent::Claimed {
                leg: LegId::B,
                tx: TxId("c".into()),
                preimage: vec![8; 32],
            })
            .unwrap_err();
        assert_eq!(err.code(), "preimage_mismatch");
        assert_eq!(m, before, "rejections change nothing");
    }

    #[test]
    fn reveal_on_b_makes_the_watcher_claim_a_never_refund_it() {
        let mut m = swap();
        m.step(&finalized(&m, LegId::A)).unwrap();
        m.step(&finalized(&m, LegId::B)).unwrap();
        assert_eq!(m.status().reason.as_str(), "awaiting_preimage");
        let actions = m
            .step(&HtlcEvent::Claimed {
                leg: LegId::B,
                tx: TxId("claim-b".into()),
                preimage: SECRET.to_vec(),
            })
            .unwrap();
        assert!(matches!(
            actions[..],
            [Action::Claim { leg: LegId::A, preimage, .. }] if preimage.0 == SECRET
        ));
        // Past T1 the watcher still claims and never refunds leg A.
        let actions = m.step(&HtlcEvent::Tick { now: 1000 }).unwrap();
        assert!(actions.is_empty());
        assert!(m
            .pending_actions()
            .iter()
            .all(|a| matches!(a, Action::Claim { .. })));
        m.step(&HtlcEvent::Claimed {
            leg: LegId::A,
            tx: TxId("claim-a".into()),
            preimage: SECRET.to_vec(),
        })
        .unwrap();
        let s = m.status();
        assert_eq!((s.phase, s.terminal), (Phase::Completed, true));
    }

    #[test]
    fn hub_claims_b_for_a_custodial_initiator_only_before_t2() {
        let mut m = swap();
        m.step(&finalized(&m, LegId::A)).unwrap();
        m.step(&finalized(&m, LegId::B)).unwrap();
        let actions = m
            .step(&HtlcEvent::PreimageProvided {
                preimage: SECRET.to_vec(),
            })
            .unwrap();
        assert!(matches!(actions[..], [Action::Claim { leg: LegId::B, .. }]));
        assert!(!m.revealed, "a secret handed to the hub is not yet public");
        let actions = m.step(&HtlcEvent::Tick { now: 100 }).unwrap();
        assert!(matches!(
            actions[..],
            [Action::Refund { leg: LegId::B, .. }]
        ));
        assert_eq!(m.status().reason.as_str(), "timelock_expired_refunding");
    }

    #[test]
    fn timeouts_refund_in_order_and_settlement_conflicts_are_alarms() {
        let mut m = swap();
        m.step(&finalized(&m, LegId::A)).unwrap();
        m.step(&finalized(&m, LegId::B)).unwrap();
        let a = m.step(&HtlcEvent::Tick { now: 100 }).unwrap();
        assert!(matches!(
            a[..],
            [Action::Refund {
                leg: LegId::B,
                authority: RefundAuthority::Timelock { after: 100 },
                ..
            }]
        ));
        let a = m.step(&HtlcEvent::Tick { now: 500 }).unwrap();
        assert!(matches!(a[..], [Action::Refund { leg: LegId::A, .. }]));
        for leg in LegId::BOTH {
            m.step(&HtlcEvent::Refunded {
                leg,
                tx: TxId(format!("r{leg}")),
            })
            .unwrap();
        }
        assert_eq!(m.status().phase, Phase::Refunded);
        let err = m
            .step(&HtlcEvent::Claimed {
                leg: LegId::A,
                tx: TxId("late".into()),
                preimage: SECRET.to_vec(),
            })
            .unwrap_err();
        assert!(err.is_alarm(), "{err}");
    }

    #[test]
    fn custodial_participant_locks_after_the_initiator_and_not_after_t2() {
        let mut s = spec(500, 100);
        s.participant.locker = Locker::ProviderVault;
        let (mut m, actions) = Htlc::create(
            InstanceId::derive(&[b"v"]),
            s,
            &HtlcConfig { delta: 300 },
            0,
        )
        .unwrap();
        assert!(actions.is_empty());
        assert_eq!(m.status().reason.as_str(), "awaiting_initiator_lock");
        let a = m.step(&finalized(&m, LegId::A)).unwrap();
        assert!(matches!(a[..], [Action::SubmitLock { leg: LegId::B, .. }]));
        assert_eq!(m.status().reason.as_str(), "awaiting_counterparty_lock");
        m.step(&HtlcEvent::Tick { now: 100 }).unwrap();
        assert!(m.pending_actions().is_empty(), "{:?}", m.pending_actions());
    }
}
