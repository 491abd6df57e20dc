//! Property tests of the HTLC swap with the hub as watcher: atomicity (both claimed or both
//! refunded) under random interleavings, crashes, duplicates and reorgs, as long as the hub
//! keeps acting within a bound smaller than Δ; and refunds with the customer offline.

use crate::sim::*;
use isthmus_core::HashAlgo;
use isthmus_lock_contracts::*;
use proptest::prelude::*;

const T2: Timestamp = 100;
const DELTA: u64 = 100;
/// Networks finalize and the hub reacts within FAIR. From the participant's lock to the
/// watcher's claim the worst case is 5 × FAIR (lock final, hub sees it, refund at T2 races the
/// initiator's claim, reveal seen, claim made), which Δ must exceed.
const FAIR: u64 = 19;
const SECRET: [u8; 32] = [42; 32];

#[derive(Debug, Clone)]
enum Op {
    C(Common),
    PartyLock(LegId),
    Execute(usize),
    /// The initiator (if it runs its own wallet) claims leg B itself, revealing the secret.
    InitiatorClaims,
    /// The initiator hands its secret to the hub.
    ProvidePreimage,
    /// The participant claims leg A itself once the secret is public.
    ParticipantClaims,
    /// An owner refunds its own leg after the timelock.
    OwnerRefund(LegId),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        16 => common().prop_map(Op::C),
        3 => leg().prop_map(Op::PartyLock),
        4 => any::<usize>().prop_map(Op::Execute),
        2 => Just(Op::InitiatorClaims),
        1 => Just(Op::ProvidePreimage),
        1 => Just(Op::ParticipantClaims),
        1 => leg().prop_map(Op::OwnerRefund),
    ]
}

struct World {
    core: Core<Htlc>,
}

fn timelock(c: &Core<Htlc>, leg: LegId) -> Timestamp {
    c.hub.live.spec.leg(leg).timeout
}

/// First spend wins; a claim that loses the race to a refund does nothing.
fn claim(c: &mut Core<Htlc>, leg: LegId, preimage: &[u8]) {
    assert_eq!(HashAlgo::Sha256.digest(preimage), c.hub.live.spec.hashlock);
    if let Ok(tx) = c.ledgers[leg].pay_out(Settlement::Claimed) {
        let preimage = preimage.to_vec();
        c.inbox
            .push(c.now, HtlcEvent::Claimed { leg, tx, preimage });
    }
}

fn refund(c: &mut Core<Htlc>, leg: LegId) {
    if c.now < timelock(c, leg) {
        return;
    }
    if let Ok(tx) = c.ledgers[leg].pay_out(Settlement::Refunded) {
        c.inbox.push(c.now, HtlcEvent::Refunded { leg, tx });
    }
}

fn execute(c: &mut Core<Htlc>, action: Action) {
    match action {
        Action::SubmitLock { leg, .. } => c.include_lock(leg),
        Action::Claim { leg, preimage, .. } => {
            if leg == LegId::A {
                assert!(
                    matches!(c.ledgers.b.settled, Some((Settlement::Claimed, _))),
                    "the watcher claimed leg A before the secret was public"
                );
            }
            claim(c, leg, &preimage.0)
        }
        Action::Refund { leg, authority, .. } => {
            let after = timelock(c, leg);
            assert_eq!(authority, RefundAuthority::Timelock { after });
            assert!(c.now >= after, "refund before timelock");
            refund(c, leg)
        }
        other => panic!("an htlc never does {other:?}"),
    }
}

fn check(c: &Core<Htlc>) {
    for (_, l) in c.ledgers.iter() {
        l.check();
    }
    let a = c.ledgers.a.settled.as_ref().map(|s| s.0);
    let b = c.ledgers.b.settled.as_ref().map(|s| s.0);
    assert!(
        !matches!(
            (a, b),
            (Some(Settlement::Refunded), Some(Settlement::Claimed))
                | (Some(Settlement::Claimed), Some(Settlement::Refunded))
        ),
        "atomicity broken: a {a:?}, b {b:?}"
    );
}

impl World {
    fn new(lockers: Legs<Locker>, extra: u64) -> World {
        let spec = HtlcSpec {
            hashlock: HashAlgo::Sha256.digest(&SECRET),
            initiator: leg_spec(1, 10, T2 + DELTA + 1 + extra, lockers.a),
            participant: leg_spec(2, 30, T2, lockers.b),
        };
        let id = InstanceId::derive(&[b"htlc"]);
        let cfg = HtlcConfig { delta: DELTA };
        let (m, actions) = Htlc::create(id, spec.clone(), &cfg, 0).unwrap();
        let ledgers = Legs::new(
            Ledger::new(LegId::A, m.lock_id(LegId::A), &spec.initiator),
            Ledger::new(LegId::B, m.lock_id(LegId::B), &spec.participant),
        );
        let mut core = Core::new(m, actions, ledgers, lockers, FAIR);
        core.revalidate = true;
        World { core }
    }

    fn apply(&mut self, op: Op) {
        let c = &mut self.core;
        let revealed = matches!(c.ledgers.b.settled, Some((Settlement::Claimed, _)));
        match op {
            Op::C(common) => c.apply(common),
            Op::PartyLock(leg) => {
                // A rational participant locks only once the initiator's lock is final, and
                // never after its own timelock.
                let ready = leg == LegId::A || (c.ledgers.a.is_final() && c.now < T2);
                if c.lockers[leg] == Locker::External && ready {
                    c.include_lock(leg);
                }
            }
            Op::Execute(i) => {
                if let Some(a) = c.take_action(i) {
                    execute(c, a);
                }
            }
            Op::InitiatorClaims => {
                if c.lockers.a == Locker::External && c.ledgers.b.is_final() {
                    claim(c, LegId::B, &SECRET);
                }
            }
            Op::ProvidePreimage => {
                let preimage = SECRET.to_vec();
                c.inbox
                    .push(c.now, HtlcEvent::PreimageProvided { preimage });
            }
            Op::ParticipantClaims => {
                if revealed && c.ledgers.a.is_final() {
                    claim(c, LegId::A, &SECRET);
                }
            }
            Op::OwnerRefund(leg) => {
                if c.ledgers[leg].is_final() {
                    refund(c, leg);
                }
            }
        }
        c.settle_fairness();
        check(c);
    }

    fn drain(&mut self) {
        for _ in 0..500 {
            if self.core.drain_round(|c, a| {
                execute(c, a);
                check(c);
            }) {
                return;
            }
        }
        panic!(
            "not terminal: {:?} at {}",
            self.core.hub.live.status(),
            self.core.now
        );
    }
}

fn locker() -> impl Strategy<Value = Locker> {
    prop_oneof![Just(Locker::External), Just(Locker::HubWallet)]
}

proptest! {
    #![proptest_config(crate::sim::config())]

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
        let s = w.core.hub.live.status();
        let (a, b) = (&w.core.ledgers.a, &w.core.ledgers.b);
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
        w.apply(Op::C(Common::Finalize(leg)));
    }
    w.drain();
    let s = w.core.hub.live.status();
    assert_eq!((s.phase, s.reason), (Phase::Refunded, ReasonCode::Refunded));
    assert_eq!(w.core.ledgers.a.owner_balance, INITIAL);
    assert_eq!(w.core.ledgers.b.owner_balance, INITIAL);
}

/// The initiator claims B itself; the watcher claims A with the revealed secret.
#[test]
fn watcher_claims_with_the_revealed_preimage() {
    let mut w = World::new(Legs::new(Locker::External, Locker::HubWallet), 0);
    w.apply(Op::PartyLock(LegId::A));
    w.apply(Op::C(Common::Finalize(LegId::A)));
    w.apply(Op::C(Common::Deliver(0)));
    w.apply(Op::C(Common::Deliver(0)));
    assert_eq!(
        w.core.hub.live.status().reason,
        ReasonCode::AwaitingCounterpartyLock
    );
    w.apply(Op::Execute(0)); // the participant's vault locks B
    w.apply(Op::C(Common::Finalize(LegId::B)));
    w.apply(Op::C(Common::Deliver(0)));
    w.apply(Op::C(Common::Deliver(0)));
    assert_eq!(
        w.core.hub.live.status().reason,
        ReasonCode::AwaitingPreimage
    );
    w.apply(Op::InitiatorClaims);
    w.apply(Op::C(Common::Deliver(0)));
    assert!(w.core.hub.live.revealed);
    assert!(matches!(
        w.core.hub.actions[..],
        [Action::Claim { leg: LegId::A, .. }]
    ));
    assert_eq!(w.core.hub.live.status().reason, ReasonCode::Claiming);
    w.drain();
    assert_eq!(w.core.hub.live.status().phase, Phase::Completed);
}
