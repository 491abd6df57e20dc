//! Property tests of the two-phase lock over random interleavings, duplicated and reordered
//! observations, reorgs before finality, hub crashes with replay, and delays.

use crate::sim::*;
use isthmus_lock_contracts::*;
use proptest::prelude::*;

const DEADLINE: Timestamp = 100;
const WINDOW: u64 = 100;
/// A live hub handles any observation or due action within this time (less than WINDOW).
const FAIR: u64 = 20;

#[derive(Debug, Clone)]
enum Op {
    PartyLock(LegId),
    Finalize(LegId),
    Reorg(LegId),
    Tick(u8),
    Deliver(usize),
    Duplicate(usize),
    Execute(usize),
    Crash,
    Retry,
    OwnerTimeoutRefund(LegId),
}

fn leg() -> impl Strategy<Value = LegId> {
    prop_oneof![Just(LegId::A), Just(LegId::B)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => leg().prop_map(Op::PartyLock),
        3 => leg().prop_map(Op::Finalize),
        1 => leg().prop_map(Op::Reorg),
        3 => any::<u8>().prop_map(Op::Tick),
        6 => any::<usize>().prop_map(Op::Deliver),
        2 => any::<usize>().prop_map(Op::Duplicate),
        4 => any::<usize>().prop_map(Op::Execute),
        1 => Just(Op::Crash),
        1 => Just(Op::Retry),
        1 => leg().prop_map(Op::OwnerTimeoutRefund),
    ]
}

fn locker() -> impl Strategy<Value = Locker> {
    prop_oneof![
        Just(Locker::External),
        Just(Locker::HubWallet),
        Just(Locker::ProviderVault)
    ]
}

struct World {
    now: Timestamp,
    ledgers: Legs<Ledger>,
    hub: Hub<TwoPhase>,
    inbox: Inbox<TwoPhaseEvent>,
    hub_chain: Option<(Decision, HubRecord)>,
    fair: Fairness,
    lockers: Legs<Locker>,
}

impl World {
    fn new(lockers: Legs<Locker>, amounts: (u128, u128), extra: (u64, u64)) -> World {
        let spec = TwoPhaseSpec {
            a: leg_spec(1, amounts.0, DEADLINE + WINDOW + extra.0, lockers.a),
            b: leg_spec(2, amounts.1, DEADLINE + WINDOW + extra.1, lockers.b),
            deadline: DEADLINE,
        };
        let cfg = TwoPhaseConfig {
            release_window: WINDOW,
        };
        let id = InstanceId::derive(&[b"prop"]);
        let (m, actions) = TwoPhase::create(id, spec.clone(), &cfg, 0).unwrap();
        let ledgers = Legs::new(
            Ledger::new(LegId::A, m.lock_id(LegId::A), &spec.a),
            Ledger::new(LegId::B, m.lock_id(LegId::B), &spec.b),
        );
        World {
            now: 0,
            ledgers,
            hub: Hub::new(m, actions),
            inbox: Inbox::default(),
            hub_chain: None,
            fair: Fairness::default(),
            lockers,
        }
    }

    fn deliver(&mut self, pick: usize) {
        if let Some(ev) = self.inbox.take(pick) {
            if let Err(r) = self.hub.step(&ev) {
                panic!("honest world event {ev:?} rejected: {r}");
            }
        }
    }

    fn execute(&mut self, pick: usize) {
        if self.hub.actions.is_empty() {
            return;
        }
        let i = pick % self.hub.actions.len();
        let action = self.hub.actions.remove(i);
        let now = self.now;
        match action {
            Action::SubmitLock { leg, .. } => {
                if let Some(lock) = self.ledgers[leg].include_lock() {
                    self.inbox
                        .push(now, TwoPhaseEvent::LockObserved { leg, lock });
                }
            }
            Action::RecordDecision { decision } => {
                let (d, record) = self
                    .hub_chain
                    .get_or_insert_with(|| {
                        (
                            decision,
                            HubRecord {
                                height: now,
                                tx: TxId(format!("hub-{decision:?}")),
                            },
                        )
                    })
                    .clone();
                assert_eq!(d, decision, "the hub changed its decision");
                self.inbox.push(
                    now,
                    TwoPhaseEvent::DecisionRecorded {
                        decision: d,
                        record,
                    },
                );
            }
            Action::Release { leg, record, .. } => {
                // The escrow verifies the hub record before paying out.
                let recorded = self.hub_chain.clone().unwrap();
                assert_eq!(recorded, (Decision::Validated, record));
                let tx = self.ledgers[leg].pay_out(Settlement::Released).unwrap();
                self.inbox.push(now, TwoPhaseEvent::Released { leg, tx });
            }
            Action::Refund { leg, authority, .. } => {
                let recorded = self.hub_chain.clone().unwrap();
                assert_eq!(RefundAuthority::HubRecord(recorded.1.clone()), authority);
                assert_eq!(recorded.0, Decision::Aborted);
                let tx = self.ledgers[leg].pay_out(Settlement::Refunded).unwrap();
                self.inbox.push(now, TwoPhaseEvent::Refunded { leg, tx });
            }
            Action::Claim { .. } => panic!("a two-phase lock never claims"),
        }
    }

    fn tick(&mut self, dt: u64) {
        let horizon = self.fair.horizon(self.inbox.oldest(), FAIR);
        let next = (self.now + dt).min(horizon);
        if next > self.now {
            self.now = next;
            self.inbox.push(next, TwoPhaseEvent::Tick { now: next });
        }
    }

    fn apply(&mut self, op: Op) {
        let now = self.now;
        match op {
            Op::PartyLock(leg) => {
                if self.lockers[leg] == Locker::External {
                    if let Some(lock) = self.ledgers[leg].include_lock() {
                        self.inbox
                            .push(now, TwoPhaseEvent::LockObserved { leg, lock });
                    }
                }
            }
            Op::Finalize(leg) => {
                if let Some((lock, evidence)) = self.ledgers[leg].finalize() {
                    self.inbox.push(
                        now,
                        TwoPhaseEvent::LockFinalized {
                            leg,
                            lock,
                            evidence,
                        },
                    );
                }
            }
            Op::Reorg(leg) => {
                if let Some((tx, block)) = self.ledgers[leg].reorg() {
                    self.inbox
                        .push(now, TwoPhaseEvent::LockReorged { leg, tx, block });
                }
            }
            Op::Tick(dt) => self.tick(u64::from(dt % 40)),
            Op::Deliver(i) => self.deliver(i),
            Op::Duplicate(i) => self.inbox.duplicate(now, i),
            Op::Execute(i) => self.execute(i),
            Op::Crash => self.hub.crash_and_restart(),
            Op::Retry => self.hub.retry(),
            Op::OwnerTimeoutRefund(leg) => {
                // The escrow lets the owner take a final, unsettled lock back after its timeout.
                let l = &mut self.ledgers[leg];
                if now >= self.hub.live.spec.leg(leg).timeout && l.is_final() && l.settled.is_none()
                {
                    let tx = l.pay_out(Settlement::Refunded).unwrap();
                    self.inbox.push(now, TwoPhaseEvent::Refunded { leg, tx });
                }
            }
        }
        self.fair.update(self.now, &self.hub.live.pending_actions());
        self.check();
    }

    fn check(&self) {
        for (_, l) in self.ledgers.iter() {
            l.check();
        }
        let released = self
            .hub
            .emitted
            .iter()
            .any(|a| matches!(a, Action::Release { .. }));
        let refunded = self
            .hub
            .emitted
            .iter()
            .any(|a| matches!(a, Action::Refund { .. }));
        assert!(!(released && refunded), "released and refunded");
        let kinds: Vec<_> = self
            .ledgers
            .iter()
            .filter_map(|(_, l)| l.settled.as_ref().map(|s| s.0))
            .collect();
        assert!(
            !(kinds.contains(&Settlement::Released) && kinds.contains(&Settlement::Refunded)),
            "one leg released and the other refunded: {kinds:?}"
        );
        let m = &self.hub.live;
        for leg in LegId::BOTH {
            if let Some(how) = m.legs[leg].settlement() {
                assert_eq!(self.ledgers[leg].settled.as_ref().map(|s| s.0), Some(how));
                assert!(
                    m.pending_actions().iter().all(|a| a.leg() != Some(leg)),
                    "action pending for settled leg {leg}"
                );
            }
            if m.legs[leg].is_final() {
                assert!(self.ledgers[leg].is_final(), "machine final, ledger not");
            }
        }
    }

    /// A live, fair hub and honest networks: everything reaches finality, every observation
    /// is delivered, every action executed, time moves on.
    fn drain(&mut self) {
        for _ in 0..500 {
            for leg in LegId::BOTH {
                self.apply(Op::Finalize(leg));
            }
            self.apply(Op::Retry);
            while !self.inbox.queue.is_empty() || !self.hub.actions.is_empty() {
                self.apply(Op::Deliver(0));
                self.apply(Op::Execute(0));
            }
            if self.hub.live.is_terminal() && self.hub.live.pending_actions().is_empty() {
                return;
            }
            self.apply(Op::Tick(FAIR as u8));
        }
        panic!(
            "not terminal after draining: {:?} at {}",
            self.hub.live.status(),
            self.now
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn two_phase_invariants_and_liveness(
        la in locker(),
        lb in locker(),
        amounts in (1u128..1000, 1u128..1000),
        extra in (0u64..50, 0u64..50),
        ops in prop::collection::vec(op(), 0..120),
    ) {
        prop_assume!(!(la == Locker::ProviderVault && lb == Locker::ProviderVault));
        let mut w = World::new(Legs::new(la, lb), amounts, extra);
        for op in ops {
            w.apply(op);
        }
        w.drain();
        let status = w.hub.live.status();
        prop_assert!(status.terminal);
        match status.phase {
            Phase::Released => {
                for (_, l) in w.ledgers.iter() {
                    prop_assert_eq!(l.beneficiary_balance, l.amount);
                    prop_assert_eq!(l.escrow, 0);
                }
            }
            Phase::Refunded | Phase::Expired => {
                for (_, l) in w.ledgers.iter() {
                    prop_assert_eq!(l.owner_balance, INITIAL);
                    prop_assert_eq!(l.beneficiary_balance, 0);
                }
            }
            other => prop_assert!(false, "unexpected end phase {:?}", other),
        }
    }
}

/// Both legs lock promptly: the transfer releases, and only after the hub record.
#[test]
fn happy_path_releases_after_record() {
    let mut w = World::new(
        Legs::new(Locker::External, Locker::HubWallet),
        (10, 20),
        (0, 0),
    );
    w.apply(Op::PartyLock(LegId::A));
    w.apply(Op::Execute(0)); // hub wallet locks B
    w.apply(Op::Deliver(0));
    w.apply(Op::Deliver(0));
    assert_eq!(w.hub.live.status().reason, ReasonCode::AwaitingFinality);
    w.apply(Op::Finalize(LegId::A));
    w.apply(Op::Finalize(LegId::B));
    w.apply(Op::Deliver(0));
    w.apply(Op::Deliver(0));
    assert_eq!(w.hub.live.decision, Some(Decision::Validated));
    assert!(w
        .hub
        .actions
        .iter()
        .all(|a| matches!(a, Action::RecordDecision { .. })));
    w.drain();
    assert_eq!(w.hub.live.status().phase, Phase::Released);
}

/// The counterparty never locks: after the deadline the one lock is refunded.
#[test]
fn counterparty_never_locks_refunds_after_deadline() {
    let mut w = World::new(
        Legs::new(Locker::External, Locker::External),
        (5, 5),
        (0, 0),
    );
    w.apply(Op::PartyLock(LegId::A));
    w.apply(Op::Finalize(LegId::A));
    w.apply(Op::Deliver(0));
    w.apply(Op::Deliver(0));
    assert_eq!(
        w.hub.live.status().reason,
        ReasonCode::AwaitingCounterpartyLock
    );
    for _ in 0..10 {
        w.apply(Op::Tick(FAIR as u8));
        w.apply(Op::Deliver(0));
    }
    assert_eq!(w.hub.live.decision, Some(Decision::Aborted));
    w.drain();
    let s = w.hub.live.status();
    assert_eq!((s.phase, s.reason), (Phase::Refunded, ReasonCode::Refunded));
    assert_eq!(w.ledgers.a.owner_balance, INITIAL);
}
