//! A simulated world for the contract machines: two ledgers with escrows, a hub that persists
//! the machine (and may crash, in some worlds losing the observations it had not applied),
//! an inbox of chain observations delivered late, twice or out of order, and a fairness clock
//! that lets time pass only as far as a live hub would allow.

use isthmus_core::{Hash32, HashAlgo, NetworkId};
use isthmus_lock_contracts::*;
use std::collections::BTreeMap;

/// One leg's ledger: the owner's balance, the beneficiary's, and the escrow between them.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub leg: LegId,
    pub lock_id: LockId,
    pub amount: u128,
    pub beneficiary: Address,
    pub owner_balance: u128,
    pub beneficiary_balance: u128,
    pub escrow: u128,
    /// (tx, block, final)
    pub lock: Option<(TxId, Hash32, bool)>,
    pub settled: Option<(Settlement, TxId)>,
    pub payouts: u32,
    pub initial: u128,
    pub counter: u32,
    /// When the current lock was included, while it is not final.
    pub included_at: Option<Timestamp>,
    /// The escrow refuses a lock from this time on (as the native escrow does).
    pub timeout: Timestamp,
}

/// What the hub learns by re-reading an escrow (the adapter's lock state).
#[derive(Debug, Clone)]
pub struct EscrowRead {
    /// The lock, with its evidence once final.
    pub lock: Option<(LockObservation, Option<EvidenceRef>)>,
    pub settled: Option<(Settlement, TxId)>,
}

pub const INITIAL: u128 = 1_000_000;

impl Ledger {
    pub fn new(leg: LegId, lock_id: LockId, spec: &LegSpec) -> Self {
        Ledger {
            leg,
            lock_id,
            amount: spec.amount.0,
            beneficiary: spec.to.clone(),
            owner_balance: INITIAL,
            beneficiary_balance: 0,
            escrow: 0,
            lock: None,
            settled: None,
            payouts: 0,
            initial: INITIAL,
            counter: 0,
            included_at: None,
            timeout: spec.timeout,
        }
    }

    fn observation(&self, tx: &TxId, block: Hash32) -> LockObservation {
        LockObservation {
            lock_id: self.lock_id,
            tx: tx.clone(),
            block,
            height: u64::from(self.counter),
            asset: AssetId("native".into()),
            amount: Amount(self.amount),
            beneficiary: self.beneficiary.clone(),
        }
    }

    fn evidence(&self, tx: &TxId) -> EvidenceRef {
        EvidenceRef {
            height: u64::from(self.counter) + 6,
            digest: HashAlgo::Sha256.digest(tx.0.as_bytes()),
        }
    }

    /// The escrow's state, as an adapter's lock-state query reports it.
    pub fn read(&self) -> EscrowRead {
        EscrowRead {
            lock: self.lock.as_ref().map(|(tx, block, fin)| {
                let evidence = fin.then(|| self.evidence(tx));
                (self.observation(tx, *block), evidence)
            }),
            settled: self.settled.clone(),
        }
    }

    /// Include a lock tx; the escrow holds one lock per lock id and refuses one whose
    /// timeout has passed.
    pub fn include_lock(&mut self, now: Timestamp) -> Option<LockObservation> {
        if self.lock.is_some() || self.settled.is_some() || now >= self.timeout {
            return None;
        }
        self.counter += 1;
        let tx = TxId(format!("{}-lock-{}", self.leg, self.counter));
        let block =
            HashAlgo::Sha256.digest(format!("{}-block-{}", self.leg, self.counter).as_bytes());
        self.owner_balance -= self.amount;
        self.escrow += self.amount;
        self.lock = Some((tx.clone(), block, false));
        self.included_at = Some(now);
        Some(self.observation(&tx, block))
    }

    pub fn finalize(&mut self) -> Option<(LockObservation, EvidenceRef)> {
        let (tx, block, fin) = self.lock.as_mut()?;
        if *fin {
            return None;
        }
        *fin = true;
        self.included_at = None;
        let (tx, block) = (tx.clone(), *block);
        let ev = self.evidence(&tx);
        Some((self.observation(&tx, block), ev))
    }

    pub fn reorg(&mut self) -> Option<(TxId, Hash32)> {
        match &self.lock {
            Some((tx, block, false)) => {
                let out = (tx.clone(), *block);
                self.lock = None;
                self.included_at = None;
                self.escrow -= self.amount;
                self.owner_balance += self.amount;
                Some(out)
            }
            _ => None,
        }
    }

    pub fn is_final(&self) -> bool {
        matches!(self.lock, Some((_, _, true)))
    }

    /// Pay the escrow out once. A second payout of the same kind returns the first tx (the
    /// adapter's idempotent retry); a payout of the other kind is refused by the escrow.
    pub fn pay_out(&mut self, how: Settlement) -> Result<TxId, String> {
        if let Some((prev, tx)) = &self.settled {
            return if *prev == how {
                Ok(tx.clone())
            } else {
                Err(format!("leg {} already {prev}, cannot be {how}", self.leg))
            };
        }
        if !self.is_final() {
            return Err(format!("leg {} has no final lock to {how}", self.leg));
        }
        self.escrow -= self.amount;
        match how {
            Settlement::Refunded => self.owner_balance += self.amount,
            Settlement::Released | Settlement::Claimed => self.beneficiary_balance += self.amount,
        }
        self.payouts += 1;
        let tx = TxId(format!("{}-{how}", self.leg));
        self.settled = Some((how, tx.clone()));
        Ok(tx)
    }

    /// Escrowed equals locked, and value is conserved.
    pub fn check(&self) {
        let expected_escrow = match (&self.lock, &self.settled) {
            (Some(_), None) => self.amount,
            _ => 0,
        };
        assert_eq!(self.escrow, expected_escrow, "leg {} escrow", self.leg);
        assert_eq!(
            self.owner_balance + self.beneficiary_balance + self.escrow,
            self.initial,
            "leg {} conservation",
            self.leg
        );
        assert!(
            self.payouts <= 1,
            "leg {} paid out {} times",
            self.leg,
            self.payouts
        );
    }
}

pub fn leg_spec(net: u64, amount: u128, timeout: Timestamp, locker: Locker) -> LegSpec {
    LegSpec {
        network: NetworkId(net),
        asset: AssetId("native".into()),
        amount: Amount(amount),
        from: Address(format!("owner-{net}")),
        to: Address(format!("beneficiary-{net}")),
        timeout,
        locker,
    }
}

/// The hub: a durable copy of the machine plus a volatile action queue.
pub struct Hub<M: Machine> {
    /// What is on disk: the serialized machine.
    pub stored: Vec<u8>,
    pub live: M,
    pub actions: Vec<Action>,
    pub last_event: Option<M::Event>,
    pub emitted: Vec<Action>,
}

impl<M: Machine + PartialEq + std::fmt::Debug> Hub<M> {
    pub fn new(machine: M, initial: Vec<Action>) -> Self {
        let stored = rmp_serde::to_vec_named(&machine).unwrap();
        Hub {
            stored,
            live: machine,
            emitted: initial.clone(),
            actions: initial,
            last_event: None,
        }
    }

    /// Step, persist, then queue the actions (durable before acting).
    pub fn step(&mut self, ev: &M::Event) -> Result<(), Rejection> {
        let actions = self.live.step(ev)?;
        self.stored = rmp_serde::to_vec_named(&self.live).unwrap();
        self.last_event = Some(ev.clone());
        self.emitted.extend(actions.iter().cloned());
        self.actions.extend(actions);
        Ok(())
    }

    /// kill -9: the queue is lost; the machine comes back from disk; the last recorded event
    /// is replayed (the hub cannot know whether it was applied) and must change nothing; the
    /// outstanding actions are re-derived.
    pub fn crash_and_restart(&mut self) {
        let restored: M = rmp_serde::from_slice(&self.stored).unwrap();
        assert_eq!(restored, self.live, "state survives a restart");
        self.live = restored;
        self.actions.clear();
        if let Some(ev) = self.last_event.clone() {
            let before = self.live.clone();
            let again = self.live.step(&ev);
            assert_eq!(again, Ok(vec![]), "replaying the last event is a no-op");
            assert_eq!(self.live, before, "replay changed the state");
        }
        self.retry();
    }

    /// The hub's retry timer.
    pub fn retry(&mut self) {
        let pending = self.live.pending_actions();
        self.emitted.extend(pending.iter().cloned());
        self.actions = pending;
    }
}

/// Observations waiting to reach the hub, each stamped with when it happened.
pub struct Inbox<E> {
    pub queue: Vec<(Timestamp, E)>,
    pub history: Vec<E>,
}

impl<E> Default for Inbox<E> {
    fn default() -> Self {
        Inbox {
            queue: Vec::new(),
            history: Vec::new(),
        }
    }
}

impl<E: Clone> Inbox<E> {
    pub fn push(&mut self, now: Timestamp, ev: E) {
        self.history.push(ev.clone());
        self.queue.push((now, ev));
    }

    pub fn take(&mut self, pick: usize) -> Option<E> {
        if self.queue.is_empty() {
            return None;
        }
        let i = pick % self.queue.len();
        Some(self.queue.remove(i).1)
    }

    /// Re-send an old observation (a relayer retry, an adapter replay from a checkpoint).
    pub fn duplicate(&mut self, now: Timestamp, pick: usize) {
        if self.history.is_empty() {
            return;
        }
        let ev = self.history[pick % self.history.len()].clone();
        self.queue.push((now, ev));
    }

    pub fn oldest(&self) -> Option<Timestamp> {
        self.queue.iter().map(|(t, _)| *t).min()
    }
}

/// Fairness: a live hub handles every observation and every due action within `bound`.
/// Time may not run past the oldest unhandled item by more than that.
#[derive(Default)]
pub struct Fairness {
    pub due_since: BTreeMap<String, Timestamp>,
}

impl Fairness {
    pub fn update(&mut self, now: Timestamp, pending: &[Action]) {
        let keys: Vec<String> = pending.iter().map(|a| format!("{a:?}")).collect();
        self.due_since.retain(|k, _| keys.contains(k));
        for k in keys {
            self.due_since.entry(k).or_insert(now);
        }
    }

    pub fn horizon(&self, inbox_oldest: Option<Timestamp>, bound: u64) -> Timestamp {
        self.due_since
            .values()
            .copied()
            .chain(inbox_oldest)
            .min()
            .map_or(Timestamp::MAX, |t| t.saturating_add(bound))
    }
}

/// The chain observations both contracts' events carry.
pub trait SimEvent: Clone + std::fmt::Debug {
    fn observed(leg: LegId, lock: LockObservation) -> Self;
    fn finalized(leg: LegId, lock: LockObservation, evidence: EvidenceRef) -> Self;
    fn reorged(leg: LegId, tx: TxId, block: Hash32) -> Self;
    fn tick(now: Timestamp) -> Self;
}

macro_rules! sim_event {
    ($ty:ident) => {
        impl SimEvent for $ty {
            fn observed(leg: LegId, lock: LockObservation) -> Self {
                $ty::LockObserved { leg, lock }
            }
            fn finalized(leg: LegId, lock: LockObservation, evidence: EvidenceRef) -> Self {
                $ty::LockFinalized {
                    leg,
                    lock,
                    evidence,
                }
            }
            fn reorged(leg: LegId, tx: TxId, block: Hash32) -> Self {
                $ty::LockReorged { leg, tx, block }
            }
            fn tick(now: Timestamp) -> Self {
                $ty::Tick { now }
            }
        }
    };
}
sim_event!(TwoPhaseEvent);
sim_event!(HtlcEvent);

/// What the networks and the hub do in either contract's world.
#[derive(Debug, Clone)]
pub enum Common {
    Finalize(LegId),
    Reorg(LegId),
    Tick(u8),
    Deliver(usize),
    Duplicate(usize),
    /// kill -9 of the hub. With `lose_observations`, in a world whose hub re-reads the
    /// escrows ([`Core::lossy_crashes`]), the observations it had not applied are gone.
    Crash {
        lose_observations: bool,
    },
    Retry,
}

pub fn leg() -> impl proptest::strategy::Strategy<Value = LegId> {
    use proptest::prelude::*;
    prop_oneof![Just(LegId::A), Just(LegId::B)]
}

pub fn common() -> impl proptest::strategy::Strategy<Value = Common> {
    use proptest::prelude::*;
    prop_oneof![
        3 => leg().prop_map(Common::Finalize),
        1 => leg().prop_map(Common::Reorg),
        3 => any::<u8>().prop_map(Common::Tick),
        6 => any::<usize>().prop_map(Common::Deliver),
        2 => any::<usize>().prop_map(Common::Duplicate),
        1 => any::<bool>().prop_map(|lose_observations| Common::Crash { lose_observations }),
        1 => Just(Common::Retry),
    ]
}

/// Ledgers, hub, inbox and fair clock shared by both contracts' worlds.
pub struct Core<M: Machine> {
    pub now: Timestamp,
    pub ledgers: Legs<Ledger>,
    pub hub: Hub<M>,
    pub inbox: Inbox<M::Event>,
    pub fair: Fairness,
    pub lockers: Legs<Locker>,
    pub fair_bound: u64,
    /// Drop queued actions that are no longer due when their turn comes (what the hub's
    /// driver does); when false, stale actions run anyway (the worst case).
    pub revalidate: bool,
    /// Crashes may lose the queued observations: only for a hub whose sweep re-reads the
    /// escrows from their adapters, which are the truth.
    pub lossy_crashes: bool,
}

impl<M> Core<M>
where
    M: Machine + PartialEq + std::fmt::Debug,
    M::Event: SimEvent + std::fmt::Debug,
{
    pub fn new(
        machine: M,
        actions: Vec<Action>,
        ledgers: Legs<Ledger>,
        lockers: Legs<Locker>,
        fair_bound: u64,
    ) -> Self {
        Core {
            now: 0,
            ledgers,
            hub: Hub::new(machine, actions),
            inbox: Inbox::default(),
            fair: Fairness::default(),
            lockers,
            fair_bound,
            revalidate: false,
            lossy_crashes: false,
        }
    }

    /// A lock tx of `leg` lands in a block (by its party or the hub's wallet).
    pub fn include_lock(&mut self, leg: LegId) {
        if let Some(lock) = self.ledgers[leg].include_lock(self.now) {
            self.inbox.push(self.now, M::Event::observed(leg, lock));
        }
    }

    /// Take the `pick`-th queued action (wrapping), if any.
    pub fn take_action(&mut self, pick: usize) -> Option<Action> {
        if self.hub.actions.is_empty() {
            return None;
        }
        let i = pick % self.hub.actions.len();
        let action = self.hub.actions.remove(i);
        (!self.revalidate || self.hub.live.is_due(&action)).then_some(action)
    }

    pub fn apply(&mut self, op: Common) {
        let now = self.now;
        match op {
            Common::Finalize(leg) => {
                if let Some((lock, evidence)) = self.ledgers[leg].finalize() {
                    self.inbox
                        .push(now, M::Event::finalized(leg, lock, evidence));
                }
            }
            Common::Reorg(leg) => {
                if let Some((tx, block)) = self.ledgers[leg].reorg() {
                    self.inbox.push(now, M::Event::reorged(leg, tx, block));
                }
            }
            Common::Tick(dt) => {
                // Networks finalize an included lock within the bound too.
                let oldest = self
                    .ledgers
                    .iter()
                    .filter_map(|(_, l)| l.included_at)
                    .chain(self.inbox.oldest())
                    .min();
                let horizon = self.fair.horizon(oldest, self.fair_bound);
                let next = (now + u64::from(dt % 40)).min(horizon);
                if next > now {
                    self.now = next;
                    self.inbox.push(next, M::Event::tick(next));
                }
            }
            Common::Deliver(pick) => {
                if let Some(ev) = self.inbox.take(pick) {
                    if let Err(r) = self.hub.step(&ev) {
                        panic!("honest world event {ev:?} rejected: {r}");
                    }
                }
            }
            Common::Duplicate(pick) => self.inbox.duplicate(now, pick),
            Common::Crash { lose_observations } => {
                self.hub.crash_and_restart();
                if lose_observations && self.lossy_crashes {
                    self.inbox.queue.clear();
                    // The restarted hub reads its clock; the ticks it lost are not news.
                    let tick = M::Event::tick(now);
                    if let Err(r) = self.hub.step(&tick) {
                        panic!("tick {tick:?} rejected: {r}");
                    }
                }
            }
            Common::Retry => self.hub.retry(),
        }
    }

    /// Call after every operation.
    pub fn settle_fairness(&mut self) {
        self.fair.update(self.now, &self.hub.live.pending_actions());
    }

    /// One round of a live, fair hub on honest networks: everything final, every
    /// observation delivered and every action executed by `execute`. True once the machine
    /// is terminal with nothing left to do; otherwise time moves on.
    pub fn drain_round(&mut self, mut execute: impl FnMut(&mut Self, Action)) -> bool {
        for leg in LegId::BOTH {
            self.apply(Common::Finalize(leg));
        }
        self.apply(Common::Retry);
        while !self.inbox.queue.is_empty() || !self.hub.actions.is_empty() {
            self.apply(Common::Deliver(0));
            self.settle_fairness();
            if let Some(a) = self.take_action(0) {
                execute(self, a);
            }
            self.settle_fairness();
        }
        if self.hub.live.is_terminal() && self.hub.live.pending_actions().is_empty() {
            return true;
        }
        self.apply(Common::Tick(self.fair_bound as u8));
        self.settle_fairness();
        false
    }
}

/// 512 cases per property, or `PROPTEST_CASES` for a deeper run.
pub fn config() -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    proptest::test_runner::Config {
        cases,
        ..proptest::test_runner::Config::default()
    }
}
