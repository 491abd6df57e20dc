//! Property tests of the HTLC swap with the hub as watcher: atomicity (both claimed or both
//! refunded) under random interleavings, crashes, duplicates and reorgs, as long as the hub
//! keeps acting within a bound smaller than Δ; and refunds with the customer offline.

use crate::sim::*;
use isthmus_core::HashAlgo;
use isthmus_lock_contracts::*;
use proptest::prelude::*;

const T2: Timestamp = 100;
const DELTA: u64 = 100;
/// The hub reacts within FAIR; the reveal-to-claim path needs at most 4 × FAIR < Δ.
const FAIR: u64 = 20;
const SECRET: [u8; 32] = [42; 32];

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
    /// The initiator (if it runs its own wallet) claims leg B itself, revealing the secret.
    InitiatorClaims,
    /// The initiator hands its secret to the hub.
    ProvidePreimage,
    /// The participant claims leg A itself once the secret is public.
    ParticipantClaims,
    /// An owner refunds its own leg after the timelock.
    OwnerRefund(LegId),
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
        2 => Just(Op::InitiatorClaims),
        1 => Just(Op::ProvidePreimage),
        1 => Just(Op::ParticipantClaims),
        1 => leg().prop_map(Op::OwnerRefund),
    ]
}

struct World {
    now: Timestamp,
    ledgers: Legs<Ledger>,
    hub: Hub<Htlc>,
    inbox: Inbox<HtlcEvent>,
    fair: Fairness,
    lockers: Legs<Locker>,
    hashlock: isthmus_core::Hash32,
}

impl World {
    fn new(lockers: Legs<Locker>, extra: u64) -> World {
        let hashlock = HashAlgo::Sha256.digest(&SECRET);
        let spec = HtlcSpec {
            hashlock,
            initiator: leg_spec(1, 10, T2 + DELTA + 1 + extra, lockers.a),
            participant: leg_spec(2, 30, T2, lockers.b),
        };
        let id = InstanceId::derive(&[b"htlc"]);
        let (m, actions) = Htlc::create(id, spec.clone(), &HtlcConfig { delta: DELTA }, 0).unwrap();
        let ledgers = Legs::new(
            Ledger::new(LegId::A, m.lock_id(LegId::A), &spec.initiator),
            Ledger::new(LegId::B, m.lock_id(LegId::B), &spec.participant),
        );
        World {
            now: 0,
            ledgers,
            hub: Hub::new(m, actions),
            inbox: Inbox::default(),
            fair: Fairness::default(),
            lockers,
            hashlock,
        }
    }

    fn timelock(&self, leg: LegId) -> Timestamp {
        self.hub.live.spec.leg(leg).timeout
    }

    fn claim(&mut self, leg: LegId, preimage: &[u8]) {
        assert_eq!(HashAlgo::Sha256.digest(preimage), self.hashlock);
        // First spend wins; a claim that loses the race to a refund does nothing.
        if let Ok(tx) = self.ledgers[leg].pay_out(Settlement::Claimed) {
            self.inbox.push(
                self.now,
                HtlcEvent::Claimed {
                    leg,
                    tx,
                    preimage: preimage.to_vec(),
                },
            );
        }
    }

    fn refund(&mut self, leg: LegId) {
        if self.now < self.timelock(leg) {
            return;
        }
        if let Ok(tx) = self.ledgers[leg].pay_out(Settlement::Refunded) {
            self.inbox.push(self.now, HtlcEvent::Refunded { leg, tx });
        }
    }

    fn apply(&mut self, op: Op) {
        let now = self.now;
        match op {
            Op::PartyLock(leg) => {
                // A rational participant locks only once the initiator's lock is final.
                let ready = leg == LegId::A || self.ledgers.a.is_final();
                if self.lockers[leg] == Locker::External && ready {
                    if let Some(lock) = self.ledgers[leg].include_lock() {
                        self.inbox.push(now, HtlcEvent::LockObserved { leg, lock });
                    }
                }
            }
            Op::Finalize(leg) => {
                if let Some((lock, evidence)) = self.ledgers[leg].finalize() {
                    self.inbox.push(
                        now,
                        HtlcEvent::LockFinalized {
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
                        .push(now, HtlcEvent::LockReorged { leg, tx, block });
                }
            }
            Op::Tick(dt) => {
                let horizon = self.fair.horizon(self.inbox.oldest(), FAIR);
                let next = (now + u64::from(dt % 40)).min(horizon);
                if next > now {
                    self.now = next;
                    self.inbox.push(next, HtlcEvent::Tick { now: next });
                }
            }
            Op::Deliver(i) => {
                if let Some(ev) = self.inbox.take(i) {
                    if let Err(r) = self.hub.step(&ev) {
                        panic!("honest world event {ev:?} rejected: {r}");
                    }
                }
            }
            Op::Duplicate(i) => self.inbox.duplicate(now, i),
            Op::Execute(i) => {
                if !self.hub.actions.is_empty() {
                    let i = i % self.hub.actions.len();
                    match self.hub.actions.remove(i) {
                        Action::SubmitLock { leg, .. } => {
                            if let Some(lock) = self.ledgers[leg].include_lock() {
                                self.inbox.push(now, HtlcEvent::LockObserved { leg, lock });
                            }
                        }
                        Action::Claim { leg, preimage, .. } => {
                            if leg == LegId::A {
                                assert!(
                                    matches!(
                                        self.ledgers.b.settled,
                                        Some((Settlement::Claimed, _))
                                    ),
                                    "the watcher claimed leg A before the secret was public"
                                );
                            }
                            self.claim(leg, &preimage.0)
                        }
                        Action::Refund { leg, authority, .. } => {
                            assert_eq!(
                                authority,
                                RefundAuthority::Timelock {
                                    after: self.timelock(leg)
                                }
                            );
                            assert!(now >= self.timelock(leg), "refund before timelock");
                            self.refund(leg)
                        }
                        other => panic!("an htlc never does {other:?}"),
                    }
                }
            }
            Op::Crash => self.hub.crash_and_restart(),
            Op::Retry => self.hub.retry(),
            Op::InitiatorClaims => {
                if self.lockers.a == Locker::External && self.ledgers.b.is_final() {
                    self.claim(LegId::B, &SECRET);
                }
            }
            Op::ProvidePreimage => self.inbox.push(
                now,
                HtlcEvent::PreimageProvided {
                    preimage: SECRET.to_vec(),
                },
            ),
            Op::ParticipantClaims => {
                let revealed = matches!(self.ledgers.b.settled, Some((Settlement::Claimed, _)));
                if revealed && self.ledgers.a.is_final() {
                    self.claim(LegId::A, &SECRET);
                }
            }
            Op::OwnerRefund(leg) => {
                if self.ledgers[leg].is_final() {
                    self.refund(leg);
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
        let a = self.ledgers.a.settled.as_ref().map(|s| s.0);
        let b = self.ledgers.b.settled.as_ref().map(|s| s.0);
        assert!(
            !matches!(
                (a, b),
                (Some(Settlement::Refunded), Some(Settlement::Claimed))
                    | (Some(Settlement::Claimed), Some(Settlement::Refunded))
            ),
            "atomicity broken: a {a:?}, b {b:?}"
        );
    }

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
        panic!("not terminal: {:?} at {}", self.hub.live.status(), self.now);
    }
}

fn locker() -> impl Strategy<Value = Locker> {
    prop_oneof![Just(Locker::External), Just(Locker::HubWallet)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn htlc_atomicity_and_liveness(
        la in locker(),
        lb in prop_oneof![Just(Locker::External), Just(Locker::HubWallet), Just(Locker::ProviderVault)],
        extra in 0u64..50,
        ops in prop::collection::vec(op(), 0..150),
    ) {
        let mut w = World::new(Legs::new(la, lb), extra);
        for op in ops {
            w.apply(op);
        }
        w.drain();
        let s = w.hub.live.status();
        let (a, b) = (&w.ledgers.a, &w.ledgers.b);
        match s.phase {
            Phase::Completed => {
                prop_assert_eq!(a.beneficiary_balance, a.amount);
                prop_assert_eq!(b.beneficiary_balance, b.amount);
            }
            Phase::Refunded | Phase::Expired => {
                prop_assert_eq!(a.owner_balance, INITIAL);
                prop_assert_eq!(b.owner_balance, INITIAL);
            }
            other => prop_assert!(false, "unexpected end {:?}", other),
        }
    }
}

/// Everyone offline after locking: the watcher refunds both legs at their timelocks.
#[test]
fn refunds_with_customer_offline() {
    let mut w = World::new(Legs::new(Locker::External, Locker::External), 0);
    for leg in LegId::BOTH {
        w.apply(Op::PartyLock(leg));
        w.apply(Op::Finalize(leg));
    }
    w.drain();
    let s = w.hub.live.status();
    assert_eq!((s.phase, s.reason), (Phase::Refunded, ReasonCode::Refunded));
    assert_eq!(w.ledgers.a.owner_balance, INITIAL);
    assert_eq!(w.ledgers.b.owner_balance, INITIAL);
}

/// The initiator claims B itself; the watcher claims A with the revealed secret.
#[test]
fn watcher_claims_with_the_revealed_preimage() {
    let mut w = World::new(Legs::new(Locker::External, Locker::HubWallet), 0);
    w.apply(Op::PartyLock(LegId::A));
    w.apply(Op::Finalize(LegId::A));
    w.apply(Op::Deliver(0));
    w.apply(Op::Deliver(0));
    assert_eq!(
        w.hub.live.status().reason,
        ReasonCode::AwaitingCounterpartyLock
    );
    w.apply(Op::Execute(0)); // the participant's vault locks B
    w.apply(Op::Finalize(LegId::B));
    w.apply(Op::Deliver(0));
    w.apply(Op::Deliver(0));
    assert_eq!(w.hub.live.status().reason, ReasonCode::AwaitingPreimage);
    w.apply(Op::InitiatorClaims);
    w.apply(Op::Deliver(0));
    assert!(w.hub.live.revealed);
    assert!(matches!(
        w.hub.actions[..],
        [Action::Claim { leg: LegId::A, .. }]
    ));
    assert_eq!(w.hub.live.status().reason, ReasonCode::Claiming);
    w.drain();
    assert_eq!(w.hub.live.status().phase, Phase::Completed);
}
