//! The adapter's view of the chain: the recent blocks it has applied, the locks it knows,
//! the transactions it watches, and the event log. Blocks are applied and reverted one at a
//! time, so a reorg appends `Reverted` events and withdraws what the lost blocks carried
//! instead of rewriting history. Pure bookkeeping: the adapter feeds it blocks from the node.

use crate::script::{self, Spend};
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, OutPoint, ScriptBuf, Transaction, Txid};
use isthmus_adapter_api::{
    BlockRef, ChainEvent, Checkpoint, EventKind, EventPage, LockRequest, LockStatus,
};
use isthmus_core::Hash32;
use isthmus_lock_contracts::{LockId, LockObservation, TxId};
use std::collections::{HashMap, HashSet, VecDeque};

/// How many recent blocks the view keeps to find a fork point; a deeper reorg is reported.
pub const WINDOW: usize = 2_000;

#[derive(Debug, Clone)]
pub struct Block {
    pub height: u64,
    pub hash: BlockHash,
    /// Median time past at this block: what CLTV compares against.
    pub mtp: u64,
    /// The transactions of interest it carried (watched, lock fundings and spends).
    pub txs: Vec<Txid>,
}

impl Block {
    pub fn reference(&self) -> BlockRef {
        block_ref(self.height, &self.hash)
    }
}

pub fn block_ref(height: u64, hash: &BlockHash) -> BlockRef {
    BlockRef {
        height,
        hash: Hash32(hash.to_byte_array()),
    }
}

/// A spend of a lock this adapter built and broadcast: what a retry returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Release,
    Refund,
    Claim,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Release => "release",
            Op::Refund => "refund",
            Op::Claim => "claim",
        }
    }
}

/// A spend this adapter broadcast and has not seen included yet.
#[derive(Debug, Clone)]
pub struct Pending {
    pub op: Op,
    pub tx: Transaction,
    /// The tip height when it was sent (or last bumped) and the fee rate its package pays:
    /// a spend still out after some blocks gets a child paying for it (CPFP).
    pub height: u64,
    pub rate: u64,
    /// Fees and virtual size of the spend plus the children paying for it.
    pub package_fee: u64,
    pub package_vsize: u64,
    /// The fee-payer output a next child spends (the newest change of the package).
    pub tail: Option<(bitcoin::OutPoint, u64)>,
}

/// One lock the adapter funded (or re-found after a restart).
#[derive(Debug, Clone)]
pub struct Lock {
    pub req: LockRequest,
    pub witness_script: ScriptBuf,
    pub script_pubkey: ScriptBuf,
    /// Where a release or claim pays, and where a refund pays.
    pub beneficiary_script: ScriptBuf,
    pub owner_script: ScriptBuf,
    /// The funding this adapter built; `None` for a lock its owner funds outside the hub,
    /// recognised by its output script alone.
    pub funding: Option<Transaction>,
    /// The escrow output on chain, once included: outpoint, value, block.
    pub funded: Option<(OutPoint, u64, BlockRef)>,
    pub final_reported: bool,
    /// The spend this adapter broadcast, if any.
    pub pending: Option<Pending>,
    /// The spend on chain, from its first inclusion (what a retry or a conflicting
    /// operation is answered with); reported only once it is `confirmations` deep.
    pub spent: Option<Spent>,
}

/// A spend of a lock seen in a block of the adapter's view.
///
/// The spend is known from its first inclusion, so the adapter never builds a second,
/// conflicting spend; it is *reported* (the `Released` / `Refunded` / `Claimed` event and
/// the status in `lock_state`) only once its block is `confirmations` deep, like a funding's
/// `LockFinal`. A spend reorged out before that depth leaves no settled event behind: the
/// hub's machines treat each of these events as a final settlement of the leg, and cannot
/// take one back.
///
/// That includes `Claimed`: its preimage is public (in the mempool and the block) as soon
/// as the claim is broadcast, but the event also settles the leg in the hub's HTLC machine,
/// so it waits for depth like the others. The hub's counter-claim on the other leg is
/// therefore issued up to `confirmations` blocks of this chain later; an HTLC pair's
/// timeout margin must cover that wait.
#[derive(Debug, Clone)]
pub struct Spent {
    pub txid: Txid,
    pub status: LockStatus,
    pub block: BlockRef,
    /// The event it is reported with once final.
    event: EventKind,
    pub reported: bool,
}

impl Lock {
    pub fn funding_txid(&self) -> Option<Txid> {
        self.funding.as_ref().map(Transaction::compute_txid)
    }

    /// The status a reader is told: a spend counts only once it has been reported final.
    pub fn status(&self) -> LockStatus {
        match &self.spent {
            Some(s) if s.reported => s.status.clone(),
            _ => LockStatus::Locked,
        }
    }

    pub fn observation(&self) -> Option<LockObservation> {
        let (outpoint, value, block) = self.funded?;
        Some(LockObservation {
            lock_id: self.req.lock_id,
            tx: txid_text(&outpoint.txid),
            block: block.hash,
            height: block.height,
            asset: self.req.leg.asset.clone(),
            amount: isthmus_lock_contracts::Amount(u128::from(value)),
            beneficiary: self.req.leg.to.clone(),
        })
    }
}

pub fn txid_text(t: &Txid) -> TxId {
    TxId(t.to_string())
}

/// One transaction of a block, as the node returned it.
pub struct BlockTx {
    pub txid: Txid,
    pub tx: Option<Transaction>,
}

#[derive(Default)]
pub struct View {
    pub blocks: VecDeque<Block>,
    events: Vec<ChainEvent>,
    pub watched: HashSet<Txid>,
    /// Transactions this adapter broadcast and has not yet seen included: their outputs
    /// (change) are spendable before a block confirms them.
    pub sent: HashMap<Txid, Transaction>,
    pub included: HashMap<Txid, BlockRef>,
    pub locks: HashMap<LockId, Lock>,
    /// Funding transactions seen on chain by their tag, for locks re-registered after a
    /// restart: lock id -> (tx, block).
    pub tagged: HashMap<[u8; 32], (Transaction, BlockRef)>,
    confirmations: u64,
}

impl View {
    pub fn new(confirmations: u32) -> Self {
        View {
            confirmations: u64::from(confirmations.max(1)),
            ..View::default()
        }
    }

    pub fn tip(&self) -> Option<&Block> {
        self.blocks.back()
    }

    fn push(&mut self, kind: EventKind) {
        let checkpoint = Checkpoint(self.events.len() as u64 + 1);
        self.events.push(ChainEvent { checkpoint, kind });
    }

    pub fn events_since(&self, after: Checkpoint, limit: u32) -> EventPage {
        let start = usize::try_from(after.0)
            .unwrap_or(usize::MAX)
            .min(self.events.len());
        let rest = &self.events[start..];
        let take = rest.len().min(limit as usize);
        let events: Vec<ChainEvent> = rest[..take].to_vec();
        EventPage {
            next: events.last().map_or(after, |e| e.checkpoint),
            more: rest.len() > take,
            events,
        }
    }

    /// Confirmations of a block at `height` under the current tip.
    pub fn depth(&self, height: u64) -> u64 {
        self.tip()
            .map_or(0, |t| (t.height + 1).saturating_sub(height))
    }

    pub fn is_final(&self, height: u64) -> bool {
        self.depth(height) >= self.confirmations
    }

    /// Apply the next block on top of the tip.
    pub fn apply(&mut self, height: u64, hash: BlockHash, mtp: u64, txs: Vec<BlockTx>) {
        let bref = block_ref(height, &hash);
        let mut interesting = Vec::new();
        for BlockTx { txid, tx } in txs {
            let mut hit = false;
            if self.watched.contains(&txid) {
                self.included.insert(txid, bref);
                self.push(EventKind::TxIncluded {
                    tx: txid_text(&txid),
                    block: bref,
                });
                hit = true;
            }
            let Some(tx) = tx else {
                if hit {
                    interesting.push(txid);
                }
                continue;
            };
            hit |= self.spends(&tx, txid, bref);
            hit |= self.fundings(&tx, txid, bref);
            if hit {
                interesting.push(txid);
            }
        }
        self.blocks.push_back(Block {
            height,
            hash,
            mtp,
            txs: interesting,
        });
        while self.blocks.len() > WINDOW {
            self.blocks.pop_front();
        }
        self.report_finality();
    }

    fn fundings(&mut self, tx: &Transaction, txid: Txid, bref: BlockRef) -> bool {
        let mut hit = false;
        for out in &tx.output {
            if let Some((_, id)) = script::read_tag(&out.script_pubkey) {
                self.tagged.insert(id, (tx.clone(), bref));
                hit = true;
            }
        }
        let mut found = Vec::new();
        for (vout, out) in tx.output.iter().enumerate() {
            for (id, lock) in &self.locks {
                if lock.funded.is_none()
                    && lock.funding_txid().is_none_or(|t| t == txid)
                    && lock.script_pubkey == out.script_pubkey
                {
                    found.push((*id, vout as u32, out.value.to_sat()));
                }
            }
        }
        for (id, vout, value) in found {
            // An owner-funded lock's transaction is known from here on, so its status and
            // evidence can be served like the hub's own.
            self.watched.insert(txid);
            self.included.insert(txid, bref);
            if let Some(lock) = self.locks.get_mut(&id) {
                lock.funded = Some((OutPoint { txid, vout }, value, bref));
                if let Some(lock) = lock.observation() {
                    self.push(EventKind::LockIncluded { lock });
                }
                hit = true;
            }
        }
        hit
    }

    fn spends(&mut self, tx: &Transaction, txid: Txid, bref: BlockRef) -> bool {
        let mut hit = false;
        for input in &tx.input {
            let Some((id, lock)) = self.locks.iter_mut().find(|(_, l)| {
                l.spent.is_none()
                    && l.funded
                        .is_some_and(|(op, _, _)| op == input.previous_output)
            }) else {
                continue;
            };
            let id = *id;
            let witness: Vec<Vec<u8>> = input.witness.iter().map(<[u8]>::to_vec).collect();
            let pays_beneficiary = tx
                .output
                .first()
                .is_some_and(|o| o.script_pubkey == lock.beneficiary_script);
            let t = txid_text(&txid);
            let (status, event) = match script::classify(&witness, &lock.witness_script) {
                Some(Spend::HtlcClaim { preimage }) => (
                    LockStatus::Claimed { tx: t.clone() },
                    EventKind::Claimed {
                        lock_id: id,
                        tx: t,
                        preimage,
                    },
                ),
                Some(Spend::Cosigned) if pays_beneficiary => (
                    LockStatus::Released { tx: t.clone() },
                    EventKind::Released { lock_id: id, tx: t },
                ),
                // A cosigned spend elsewhere is the owner's early refund; a spend we cannot
                // read still ends the lock, so it counts as the owner's.
                _ => (
                    LockStatus::Refunded { tx: t.clone() },
                    EventKind::Refunded { lock_id: id, tx: t },
                ),
            };
            lock.spent = Some(Spent {
                txid,
                status,
                block: bref,
                event,
                reported: false,
            });
            hit = true;
        }
        hit
    }

    /// Report what reached `confirmations` depth: lock fundings (`LockFinal`), then lock
    /// spends (their `Released` / `Refunded` / `Claimed`), each once, oldest block first.
    fn report_finality(&mut self) {
        let mut funded = Vec::new();
        let mut spent = Vec::new();
        for lock in self.locks.values() {
            if let Some((_, _, b)) = lock.funded {
                if !lock.final_reported && self.is_final(b.height) {
                    funded.push((b.height, lock.req.lock_id));
                }
            }
            if let Some(s) = &lock.spent {
                if !s.reported && self.is_final(s.block.height) {
                    spent.push((s.block.height, lock.req.lock_id));
                }
            }
        }
        funded.sort();
        spent.sort();
        for (_, id) in funded {
            if let Some(lock) = self.locks.get_mut(&id) {
                lock.final_reported = true;
                if let Some(obs) = lock.observation() {
                    self.push(EventKind::LockFinal { lock: obs });
                }
            }
        }
        for (_, id) in spent {
            let Some(s) = self.locks.get_mut(&id).and_then(|l| l.spent.as_mut()) else {
                continue;
            };
            s.reported = true;
            let event = s.event.clone();
            self.push(event);
        }
    }

    /// Take the tip off: everything it carried is withdrawn.
    pub fn revert_tip(&mut self) -> Option<Block> {
        let block = self.blocks.pop_back()?;
        let bref = block.reference();
        for txid in &block.txs {
            self.included.remove(txid);
        }
        for lock in self.locks.values_mut() {
            if lock.spent.as_ref().is_some_and(|s| s.block == bref) {
                lock.spent = None;
            }
            if lock.funded.is_some_and(|(_, _, b)| b == bref) {
                lock.funded = None;
                lock.final_reported = false;
            }
        }
        self.tagged.retain(|_, (_, b)| *b != bref);
        self.push(EventKind::Reverted {
            block: bref,
            txs: block.txs.iter().map(txid_text).collect(),
        });
        Some(block)
    }

    /// Know a lock from now on; if its funding is already on chain (seen by its tag), take
    /// that inclusion over.
    pub fn register(&mut self, lock: Lock) {
        let id = lock.req.lock_id;
        let txid = lock.funding_txid();
        if let Some(t) = txid {
            self.watched.insert(t);
        }
        let seen = self.tagged.get(&id.0 .0).cloned();
        self.locks.insert(id, lock);
        if let (Some(txid), Some((tx, bref))) = (txid, seen) {
            if tx.compute_txid() == txid {
                self.included.insert(txid, bref);
                self.fundings(&tx, txid, bref);
                self.report_finality();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::{absolute, transaction, Amount, TxOut};
    use isthmus_adapter_api::LockTerms;
    use isthmus_lock_contracts::{Address, AssetId, LegSpec, Locker};

    fn lock_with(id: u8) -> Lock {
        let ws = ScriptBuf::from_bytes(vec![0x51, id]);
        let spk = ScriptBuf::new_p2wsh(&ws.wscript_hash());
        let funding = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![],
            output: vec![
                TxOut {
                    value: Amount::from_sat(1_000),
                    script_pubkey: spk.clone(),
                },
                TxOut {
                    value: Amount::ZERO,
                    script_pubkey: script::tag(script::KIND_ESCROW, &LockId(Hash32([id; 32]))),
                },
            ],
        };
        Lock {
            req: LockRequest {
                lock_id: LockId(Hash32([id; 32])),
                leg: LegSpec {
                    network: isthmus_core::NetworkId(1),
                    asset: AssetId("LTC".into()),
                    amount: isthmus_lock_contracts::Amount(1_000),
                    from: Address("o".into()),
                    to: Address("b".into()),
                    timeout: 2_000_000_000,
                    locker: Locker::HubWallet,
                },
                terms: LockTerms::TwoPhase,
            },
            witness_script: ws,
            script_pubkey: spk,
            beneficiary_script: ScriptBuf::new(),
            owner_script: ScriptBuf::new(),
            funding: Some(funding),
            funded: None,
            final_reported: false,
            pending: None,
            spent: None,
        }
    }

    fn hash(n: u8) -> BlockHash {
        BlockHash::from_byte_array([n; 32])
    }

    #[test]
    fn a_reorged_lock_is_withdrawn_and_never_final() {
        let mut v = View::new(3);
        v.apply(10, hash(10), 100, vec![]);
        let lock = lock_with(1);
        let funding = lock.funding.clone().unwrap();
        let txid = funding.compute_txid();
        v.register(lock);
        v.apply(
            11,
            hash(11),
            101,
            vec![BlockTx {
                txid,
                tx: Some(funding),
            }],
        );
        assert!(v.locks[&LockId(Hash32([1; 32]))].funded.is_some());
        v.revert_tip();
        assert!(v.locks[&LockId(Hash32([1; 32]))].funded.is_none());
        for h in 11..20 {
            v.apply(h, hash(h as u8 + 100), 100 + h, vec![]);
        }
        let all = v.events_since(Checkpoint::START, 100).events;
        let kinds: Vec<&str> = all
            .iter()
            .map(|e| match &e.kind {
                EventKind::TxIncluded { .. } => "included",
                EventKind::LockIncluded { .. } => "lock",
                EventKind::Reverted { txs, .. } => {
                    assert_eq!(txs, &vec![txid_text(&txid)]);
                    "reverted"
                }
                EventKind::LockFinal { .. } => "final",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["included", "lock", "reverted"]);
    }

    #[test]
    fn locks_become_final_at_depth_once_and_pages_resume() {
        let mut v = View::new(2);
        let lock = lock_with(2);
        let funding = lock.funding.clone().unwrap();
        let txid = funding.compute_txid();
        v.register(lock);
        v.apply(
            1,
            hash(1),
            1,
            vec![BlockTx {
                txid,
                tx: Some(funding),
            }],
        );
        v.apply(2, hash(2), 2, vec![]);
        v.apply(3, hash(3), 3, vec![]);
        let all = v.events_since(Checkpoint::START, 100);
        assert_eq!(all.events.len(), 3, "{:?}", all.events);
        assert!(matches!(all.events[2].kind, EventKind::LockFinal { .. }));
        let one = v.events_since(Checkpoint::START, 1);
        assert!(one.more);
        let rest = v.events_since(one.next, 100);
        assert_eq!(rest.events, all.events[1..]);
        assert_eq!(v.events_since(all.next, 5).next, all.next);
    }

    /// A transaction spending lock `id`'s escrow output (funded by `lock_with(id)`) with a
    /// claim witness revealing `preimage`; `salt` makes distinct transactions.
    fn claim_of(lock: &Lock, preimage: [u8; 32], salt: u32) -> Transaction {
        let funding = lock.funding.as_ref().unwrap().compute_txid();
        let mut witness = bitcoin::Witness::new();
        for item in [
            vec![0x30],
            vec![0x02],
            preimage.to_vec(),
            vec![1],
            lock.witness_script.to_bytes(),
        ] {
            witness.push(item);
        }
        Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::from_consensus(salt),
            input: vec![bitcoin::TxIn {
                previous_output: OutPoint {
                    txid: funding,
                    vout: 0,
                },
                witness,
                ..bitcoin::TxIn::default()
            }],
            output: vec![TxOut {
                value: Amount::from_sat(900),
                script_pubkey: lock.beneficiary_script.clone(),
            }],
        }
    }

    fn block_tx(tx: &Transaction) -> Vec<BlockTx> {
        vec![BlockTx {
            txid: tx.compute_txid(),
            tx: Some(tx.clone()),
        }]
    }

    fn settled(v: &View) -> Vec<EventKind> {
        v.events_since(Checkpoint::START, 1_000)
            .events
            .into_iter()
            .map(|e| e.kind)
            .filter(EventKind::is_spend)
            .collect()
    }

    /// A view with confirmations 3 and lock `id` funded and final at height 1..=3.
    fn funded_view(id: u8) -> (View, Lock) {
        let mut v = View::new(3);
        let lock = lock_with(id);
        let funding = lock.funding.clone().unwrap();
        v.register(lock.clone());
        v.apply(1, hash(1), 1, block_tx(&funding));
        v.apply(2, hash(2), 2, vec![]);
        v.apply(3, hash(3), 3, vec![]);
        assert!(v.locks[&lock.req.lock_id].final_reported);
        (v, lock)
    }

    #[test]
    fn a_spend_is_reported_only_at_depth_and_once() {
        let (mut v, lock) = funded_view(4);
        let id = lock.req.lock_id;
        let claim = claim_of(&lock, [9; 32], 0);
        let claim_id = txid_text(&claim.compute_txid());
        v.apply(4, hash(4), 4, block_tx(&claim));
        // Included, one and two confirmations: known (so no second spend is built) but
        // neither reported nor visible in the status.
        assert!(v.locks[&id].spent.is_some());
        assert_eq!(v.locks[&id].status(), LockStatus::Locked);
        assert!(settled(&v).is_empty());
        v.apply(5, hash(5), 5, vec![]);
        assert_eq!(v.locks[&id].status(), LockStatus::Locked);
        assert!(settled(&v).is_empty());
        v.apply(6, hash(6), 6, vec![]);
        assert_eq!(
            v.locks[&id].status(),
            LockStatus::Claimed {
                tx: claim_id.clone()
            }
        );
        let want = EventKind::Claimed {
            lock_id: id,
            tx: claim_id,
            preimage: vec![9; 32],
        };
        assert_eq!(settled(&v), vec![want.clone()]);
        v.apply(7, hash(7), 7, vec![]);
        assert_eq!(settled(&v), vec![want], "reported once");
    }

    #[test]
    fn a_spend_reorged_out_before_depth_never_settles() {
        let (mut v, lock) = funded_view(5);
        let id = lock.req.lock_id;
        let first = claim_of(&lock, [9; 32], 1);
        v.apply(4, hash(4), 4, block_tx(&first));
        v.apply(5, hash(5), 5, vec![]);
        v.revert_tip();
        v.revert_tip();
        assert!(v.locks[&id].spent.is_none());
        assert_eq!(v.locks[&id].status(), LockStatus::Locked);
        // The other branch carries another spend; only that one is ever reported.
        let second = claim_of(&lock, [9; 32], 2);
        let second_id = txid_text(&second.compute_txid());
        v.apply(4, hash(104), 4, vec![]);
        v.apply(5, hash(105), 5, block_tx(&second));
        for h in 6..=9 {
            v.apply(h, hash(h as u8 + 100), h, vec![]);
        }
        assert_eq!(
            settled(&v),
            vec![EventKind::Claimed {
                lock_id: id,
                tx: second_id.clone(),
                preimage: vec![9; 32],
            }]
        );
        assert_eq!(v.locks[&id].status(), LockStatus::Claimed { tx: second_id });
    }

    #[test]
    fn a_reported_spend_reorged_out_is_reverted_and_the_lock_reopens() {
        let (mut v, lock) = funded_view(6);
        let id = lock.req.lock_id;
        let claim = claim_of(&lock, [9; 32], 3);
        let txid = claim.compute_txid();
        v.apply(4, hash(4), 4, block_tx(&claim));
        v.apply(5, hash(5), 5, vec![]);
        v.apply(6, hash(6), 6, vec![]);
        assert_eq!(settled(&v).len(), 1);
        for _ in 0..3 {
            v.revert_tip();
        }
        assert_eq!(v.locks[&id].status(), LockStatus::Locked);
        let reverted = v
            .events_since(Checkpoint::START, 1_000)
            .events
            .into_iter()
            .any(|e| matches!(&e.kind, EventKind::Reverted { block, txs } if block.height == 4 && txs == &vec![txid_text(&txid)]));
        assert!(reverted, "the reported spend's block is reported reverted");
    }

    #[test]
    fn a_funding_seen_before_registration_is_taken_over() {
        let mut v = View::new(1);
        let lock = lock_with(3);
        let funding = lock.funding.clone().unwrap();
        let txid = funding.compute_txid();
        v.apply(
            5,
            hash(5),
            5,
            vec![BlockTx {
                txid,
                tx: Some(funding),
            }],
        );
        v.register(lock);
        let l = &v.locks[&LockId(Hash32([3; 32]))];
        assert_eq!(l.funded.map(|f| f.2.height), Some(5));
        assert!(l.final_reported);
    }
}
