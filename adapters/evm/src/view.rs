//! The adapter's own view of the chain: a hash-linked window of recent headers, the locks
//! seen in them, and the append-only event log. Pure (no I/O): the syncer feeds it blocks and
//! decoded logs, and it decides what a reorg withdraws, when a lock becomes final and when a
//! lock's release, refund or claim is reported (only once its block is final, too).

use isthmus_adapter_api::{
    BlockRef, ChainEvent, Checkpoint, EventKind, EventPage, LockStatus, LockTerms, OnChainLock,
};
use isthmus_core::Hash32;
use isthmus_lock_contracts::{LockId, LockObservation, TxId};
use std::collections::{BTreeMap, HashMap, HashSet};

/// One block as the syncer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenBlock {
    pub height: u64,
    pub hash: Hash32,
    pub parent: Hash32,
    pub time: u64,
    /// Every transaction hash in the block (to find the ones the adapter tracks).
    pub txs: Vec<Hash32>,
}

/// A lock-contract log, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContractLog {
    Locked {
        observation: LockObservation,
        terms: LockTerms,
        owner: isthmus_lock_contracts::Address,
        timeout: u64,
    },
    Released {
        lock_id: LockId,
        tx: TxId,
    },
    Refunded {
        lock_id: LockId,
        tx: TxId,
    },
    Claimed {
        lock_id: LockId,
        tx: TxId,
        preimage: [u8; 32],
    },
}

/// A release, refund or claim log seen in a block that is not final yet.
///
/// It is held back until its block is `confirmations` deep: only then is its event
/// (`Released` / `Refunded` / `Claimed`) appended and the lock's status changed, so a spend
/// reorged out before that depth leaves no settled event and no settled status behind. The
/// hub's machines treat each of these events as a final settlement of the leg.
///
/// That includes `Claimed`: the preimage is public as soon as the claim is sent, but the
/// event also settles the leg in the hub's HTLC machine, so it waits for depth like the
/// others. The hub's counter-claim on the other leg is therefore issued up to
/// `confirmations` blocks of this chain later; an HTLC pair's timeout margin must cover it.
#[derive(Debug, Clone)]
struct HeldSpend {
    lock_id: LockId,
    status: LockStatus,
    event: EventKind,
}

/// What the view refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("block {height} does not extend the tip {tip}")]
    NotExtending { height: u64, tip: u64 },
    #[error("reorg below the final block {finalized} (to height {to})")]
    BelowFinality { finalized: u64, to: u64 },
}

/// The window of headers, the locks and the event log.
#[derive(Debug, Default)]
pub struct ChainView {
    blocks: BTreeMap<u64, SeenBlock>,
    /// Locks seen per height, to withdraw on a reorg.
    locks_at: BTreeMap<u64, Vec<LockId>>,
    /// Spends seen per height above the final block, reported when it becomes final.
    spends_at: BTreeMap<u64, Vec<HeldSpend>>,
    locks: HashMap<LockId, OnChainLock>,
    tracked: HashSet<Hash32>,
    events: Vec<ChainEvent>,
    finalized: Option<u64>,
    confirmations: u64,
    window: u64,
}

impl ChainView {
    /// `confirmations`: depth at which a block is final. `window`: how many headers to keep
    /// below the final one (evidence needs them); at least `confirmations`.
    pub fn new(confirmations: u64, window: u64) -> ChainView {
        ChainView {
            confirmations,
            window: window.max(confirmations + 1),
            ..ChainView::default()
        }
    }

    pub fn tip(&self) -> Option<&SeenBlock> {
        self.blocks.values().next_back()
    }

    pub fn block_at(&self, height: u64) -> Option<&SeenBlock> {
        self.blocks.get(&height)
    }

    pub fn finalized(&self) -> Option<&SeenBlock> {
        self.finalized.and_then(|h| self.blocks.get(&h))
    }

    pub fn confirmations(&self) -> u64 {
        self.confirmations
    }

    /// Report inclusions (and reversions) of `tx` from now on. A transaction is tracked
    /// after it was sent, so a block carrying it may already be in the view (the node mined
    /// it and a sync applied it in between): that inclusion is reported now.
    pub fn track(&mut self, tx: Hash32) {
        if !self.tracked.insert(tx) {
            return;
        }
        let seen = self
            .blocks
            .values()
            .find(|b| b.txs.contains(&tx))
            .map(Self::block_ref);
        if let Some(block) = seen {
            self.push(EventKind::TxIncluded {
                tx: tx_id(&tx),
                block,
            });
        }
    }

    fn push(&mut self, kind: EventKind) {
        let checkpoint = Checkpoint(self.events.len() as u64 + 1);
        self.events.push(ChainEvent { checkpoint, kind });
    }

    fn block_ref(b: &SeenBlock) -> BlockRef {
        BlockRef {
            height: b.height,
            hash: b.hash,
        }
    }

    /// Append `block` on top of the tip with its contract logs (in log order).
    pub fn apply(&mut self, block: SeenBlock, logs: Vec<ContractLog>) -> Result<(), ViewError> {
        if let Some(tip) = self.tip() {
            if tip.height + 1 != block.height || tip.hash != block.parent {
                return Err(ViewError::NotExtending {
                    height: block.height,
                    tip: tip.height,
                });
            }
        }
        let at = Self::block_ref(&block);
        self.push(EventKind::NewHead { block: at });
        for tx in &block.txs {
            if self.tracked.contains(tx) {
                self.push(EventKind::TxIncluded {
                    tx: tx_id(tx),
                    block: at,
                });
            }
        }
        for log in logs {
            self.apply_log(block.height, log);
        }
        self.blocks.insert(block.height, block);
        self.advance_finality();
        Ok(())
    }

    fn apply_log(&mut self, height: u64, log: ContractLog) {
        match log {
            ContractLog::Locked {
                observation,
                terms,
                owner,
                timeout,
            } => {
                let id = observation.lock_id;
                if self.locks.contains_key(&id) {
                    return; // a contract refuses a used id; a node that says otherwise lies
                }
                self.locks_at.entry(height).or_default().push(id);
                self.push(EventKind::LockIncluded {
                    lock: observation.clone(),
                });
                self.locks.insert(
                    id,
                    OnChainLock {
                        observation,
                        terms,
                        owner,
                        timeout,
                        status: LockStatus::Locked,
                        is_final: false,
                    },
                );
            }
            ContractLog::Released { lock_id, tx } => self.hold(
                height,
                lock_id,
                LockStatus::Released { tx: tx.clone() },
                EventKind::Released { lock_id, tx },
            ),
            ContractLog::Refunded { lock_id, tx } => self.hold(
                height,
                lock_id,
                LockStatus::Refunded { tx: tx.clone() },
                EventKind::Refunded { lock_id, tx },
            ),
            ContractLog::Claimed {
                lock_id,
                tx,
                preimage,
            } => self.hold(
                height,
                lock_id,
                LockStatus::Claimed { tx: tx.clone() },
                EventKind::Claimed {
                    lock_id,
                    tx,
                    preimage: preimage.to_vec(),
                },
            ),
        }
    }

    /// Keep a spend until its block is final (see [`HeldSpend`]).
    fn hold(&mut self, height: u64, lock_id: LockId, status: LockStatus, event: EventKind) {
        self.spends_at.entry(height).or_default().push(HeldSpend {
            lock_id,
            status,
            event,
        });
    }

    fn advance_finality(&mut self) {
        let Some(tip) = self.tip().map(|b| b.height) else {
            return;
        };
        let Some(target) = tip.checked_sub(self.confirmations) else {
            return;
        };
        let first = self.blocks.keys().next().copied().unwrap_or(target);
        let from = self.finalized.map_or(first, |f| f + 1);
        if target < from {
            return;
        }
        for h in from..=target {
            let Some(b) = self.blocks.get(&h) else {
                continue;
            };
            let block = Self::block_ref(b);
            self.push(EventKind::Finalized { block });
            let ids = self.locks_at.get(&h).cloned().unwrap_or_default();
            for id in ids {
                let Some(l) = self.locks.get_mut(&id) else {
                    continue;
                };
                if l.observation.height == h && !l.is_final {
                    l.is_final = true;
                    let lock = l.observation.clone();
                    self.push(EventKind::LockFinal { lock });
                }
            }
            for spend in self.spends_at.remove(&h).unwrap_or_default() {
                match self.locks.get_mut(&spend.lock_id) {
                    // A contract settles a lock once; a node that says otherwise lies.
                    Some(l) if l.status != LockStatus::Locked => continue,
                    Some(l) => l.status = spend.status,
                    // Locked before the view's first block: the event still tells the hub.
                    None => {}
                }
                self.push(spend.event);
            }
        }
        self.finalized = Some(target);
        // Keep `window` headers below the final one; older ones cannot be reorged.
        let keep_from = target.saturating_sub(self.window);
        self.blocks = self.blocks.split_off(&keep_from);
        self.locks_at = self.locks_at.split_off(&keep_from);
    }

    /// Drop every block above `height`, newest first, emitting `Reverted` and withdrawing what
    /// they included. Refuses to go below the final block.
    pub fn rollback_to(&mut self, height: u64) -> Result<Vec<BlockRef>, ViewError> {
        if let Some(f) = self.finalized {
            if height < f {
                return Err(ViewError::BelowFinality {
                    finalized: f,
                    to: height,
                });
            }
        }
        let mut dropped = Vec::new();
        while let Some((&h, _)) = self.blocks.iter().next_back() {
            if h <= height {
                break;
            }
            let Some(b) = self.blocks.remove(&h) else {
                break;
            };
            let mut txs: Vec<TxId> = b
                .txs
                .iter()
                .filter(|t| self.tracked.contains(*t))
                .map(tx_id)
                .collect();
            // Spends above the final block were never reported: they vanish without a trace
            // beyond this `Reverted`.
            for spend in self.spends_at.remove(&h).unwrap_or_default() {
                if let LockStatus::Released { tx }
                | LockStatus::Refunded { tx }
                | LockStatus::Claimed { tx } = spend.status
                {
                    txs.push(tx);
                }
            }
            for id in self.locks_at.remove(&h).unwrap_or_default() {
                if self
                    .locks
                    .get(&id)
                    .is_some_and(|l| l.observation.height == h)
                {
                    if let Some(l) = self.locks.remove(&id) {
                        txs.push(l.observation.tx);
                    }
                }
            }
            txs.sort();
            txs.dedup();
            let block = Self::block_ref(&b);
            self.push(EventKind::Reverted { block, txs });
            dropped.push(block);
        }
        Ok(dropped)
    }

    pub fn lock(&self, id: &LockId) -> Option<OnChainLock> {
        self.locks.get(id).cloned()
    }

    /// The checkpoint of the newest event (`START` when there is none).
    pub fn last_checkpoint(&self) -> Checkpoint {
        self.events
            .last()
            .map_or(Checkpoint::START, |e| e.checkpoint)
    }

    /// Up to `limit` events strictly after `after`.
    pub fn events_since(&self, after: Checkpoint, limit: u32) -> EventPage {
        let start = usize::try_from(after.0)
            .unwrap_or(usize::MAX)
            .min(self.events.len());
        let end = start.saturating_add(limit as usize).min(self.events.len());
        let events = self.events[start..end].to_vec();
        let next = events.last().map_or(after, |e| e.checkpoint);
        EventPage {
            events,
            next,
            more: end < self.events.len(),
        }
    }
}

/// The text form of an EVM transaction hash.
pub fn tx_id(h: &Hash32) -> TxId {
    TxId(format!("0x{}", hex::encode(h.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_lock_contracts::{Address, Amount, AssetId};

    fn h(n: u64, fork: u8) -> Hash32 {
        let mut b = [fork; 32];
        b[..8].copy_from_slice(&n.to_be_bytes());
        Hash32(b)
    }

    fn block(n: u64, fork: u8, parent_fork: u8) -> SeenBlock {
        SeenBlock {
            height: n,
            hash: h(n, fork),
            parent: h(n.wrapping_sub(1), parent_fork),
            time: n * 2,
            txs: vec![h(n, 0xaa ^ fork)],
        }
    }

    fn locked(n: u64, fork: u8) -> ContractLog {
        ContractLog::Locked {
            observation: LockObservation {
                lock_id: LockId(Hash32([7; 32])),
                tx: tx_id(&h(n, 0xaa ^ fork)),
                block: h(n, fork),
                height: n,
                asset: AssetId("native".into()),
                amount: Amount(5),
                beneficiary: Address("0xb".into()),
            },
            terms: LockTerms::TwoPhase,
            owner: Address("0xa".into()),
            timeout: 100,
        }
    }

    #[test]
    fn a_tx_tracked_after_its_block_was_applied_is_reported_once() {
        let mut v = ChainView::new(2, 4);
        v.apply(block(1, 1, 1), vec![]).unwrap();
        v.apply(block(2, 1, 1), vec![]).unwrap();
        let tx = h(2, 0xaa ^ 1);
        v.track(tx);
        v.track(tx);
        v.apply(block(3, 1, 1), vec![]).unwrap();
        let included: Vec<_> = v
            .events_since(Checkpoint(0), 100)
            .events
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::TxIncluded { tx, block } => Some((tx, block.height)),
                _ => None,
            })
            .collect();
        assert_eq!(included, vec![(tx_id(&tx), 2)]);
    }

    #[test]
    fn a_lock_is_final_only_at_depth_and_a_reorg_withdraws_it_before() {
        let mut v = ChainView::new(2, 4);
        v.apply(block(1, 1, 1), vec![]).unwrap();
        v.track(h(2, 0xaa ^ 1));
        v.apply(block(2, 1, 1), vec![locked(2, 1)]).unwrap();
        v.apply(block(3, 1, 1), vec![]).unwrap();
        let id = LockId(Hash32([7; 32]));
        assert!(!v.lock(&id).unwrap().is_final);
        // A fork replaces blocks 2 and 3 before the lock reaches depth 2.
        let dropped = v.rollback_to(1).unwrap();
        assert_eq!(dropped.len(), 2);
        assert!(v.lock(&id).is_none());
        v.apply(block(2, 2, 1), vec![]).unwrap();
        assert!(v.apply(block(4, 2, 2), vec![]).is_err(), "a gap is refused");
        let all = v.events_since(Checkpoint::START, 1000).events;
        let reverted: Vec<_> = all
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Reverted { txs, .. } => Some(txs.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(reverted.len(), 2);
        assert_eq!(reverted[1], vec![tx_id(&h(2, 0xaa ^ 1))]);
        assert!(!all
            .iter()
            .any(|e| matches!(e.kind, EventKind::LockFinal { .. })));
        // A lock that stays reaches finality exactly once.
        v.apply(block(3, 2, 2), vec![locked(3, 2)]).unwrap();
        v.apply(block(4, 2, 2), vec![]).unwrap();
        v.apply(block(5, 2, 2), vec![]).unwrap();
        v.apply(block(6, 2, 2), vec![]).unwrap();
        assert!(v.lock(&id).unwrap().is_final);
        let finals = v
            .events_since(Checkpoint::START, 1000)
            .events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::LockFinal { .. }))
            .count();
        assert_eq!(finals, 1);
        assert!(matches!(
            v.rollback_to(2),
            Err(ViewError::BelowFinality { .. })
        ));
    }

    fn settled(v: &ChainView) -> Vec<EventKind> {
        v.events_since(Checkpoint::START, 1_000)
            .events
            .into_iter()
            .map(|e| e.kind)
            .filter(EventKind::is_spend)
            .collect()
    }

    #[test]
    fn a_spend_is_reported_only_once_its_block_is_final() {
        let mut v = ChainView::new(2, 4);
        v.apply(block(1, 1, 1), vec![locked(1, 1)]).unwrap();
        let id = LockId(Hash32([7; 32]));
        let tx = TxId("0xclaim".into());
        let claim = ContractLog::Claimed {
            lock_id: id,
            tx: tx.clone(),
            preimage: [5; 32],
        };
        v.apply(block(2, 1, 1), vec![claim]).unwrap();
        v.apply(block(3, 1, 1), vec![]).unwrap();
        // The lock (block 1) is final; the claim (block 2) has one block on top, not two.
        assert!(v.lock(&id).unwrap().is_final);
        assert_eq!(v.lock(&id).unwrap().status, LockStatus::Locked);
        assert!(settled(&v).is_empty());
        v.apply(block(4, 1, 1), vec![]).unwrap();
        assert_eq!(
            v.lock(&id).unwrap().status,
            LockStatus::Claimed { tx: tx.clone() }
        );
        let want = EventKind::Claimed {
            lock_id: id,
            tx,
            preimage: vec![5; 32],
        };
        assert_eq!(settled(&v), vec![want.clone()]);
        v.apply(block(5, 1, 1), vec![]).unwrap();
        assert_eq!(settled(&v), vec![want], "reported once");
    }

    #[test]
    fn a_release_reorged_out_before_depth_never_settles() {
        let mut v = ChainView::new(3, 4);
        v.apply(block(1, 1, 1), vec![locked(1, 1)]).unwrap();
        let id = LockId(Hash32([7; 32]));
        let gone = TxId("0xrel".into());
        v.apply(
            block(2, 1, 1),
            vec![ContractLog::Released {
                lock_id: id,
                tx: gone.clone(),
            }],
        )
        .unwrap();
        v.apply(block(3, 1, 1), vec![]).unwrap();
        assert_eq!(v.lock(&id).unwrap().status, LockStatus::Locked);
        let mark = v.last_checkpoint();
        v.rollback_to(1).unwrap();
        assert_eq!(v.lock(&id).unwrap().status, LockStatus::Locked);
        let reverted = v.events_since(mark, 100).events;
        assert!(
            reverted
                .iter()
                .any(|e| matches!(&e.kind, EventKind::Reverted { txs, .. } if txs.contains(&gone))),
            "the dropped release is named in a Reverted: {reverted:?}"
        );
        // The new branch refunds instead; only the refund is ever reported.
        let refund = TxId("0xref".into());
        v.apply(
            block(2, 2, 1),
            vec![ContractLog::Refunded {
                lock_id: id,
                tx: refund.clone(),
            }],
        )
        .unwrap();
        for n in 3..=5 {
            v.apply(block(n, 2, 2), vec![]).unwrap();
        }
        assert_eq!(
            settled(&v),
            vec![EventKind::Refunded {
                lock_id: id,
                tx: refund.clone()
            }]
        );
        assert_eq!(
            v.lock(&id).unwrap().status,
            LockStatus::Refunded { tx: refund }
        );
    }

    #[test]
    fn pages_resume_exactly_after_their_checkpoint() {
        let mut v = ChainView::new(1, 2);
        for n in 1..=5 {
            v.apply(block(n, 1, 1), vec![]).unwrap();
        }
        let all = v.events_since(Checkpoint::START, 100);
        let mut at = Checkpoint::START;
        let mut paged = Vec::new();
        loop {
            let p = v.events_since(at, 2);
            if p.events.is_empty() {
                assert_eq!(p.next, at);
                break;
            }
            paged.extend(p.events);
            at = p.next;
        }
        assert_eq!(paged, all.events);
    }
}
