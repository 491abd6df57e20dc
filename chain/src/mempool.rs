//! The bounded pool of admitted, not yet committed transactions.
//!
//! **Bounds:** at most `max_txs` transactions and `max_bytes` encoded bytes (both derived
//! from the node's memory figure, see [`crate::config::NodeBudget`]).
//!
//! **Admission:** the caller has verified the signature; the pool then requires the nonce
//! to continue the sender's sequence (account nonce, or one past the sender's last pooled
//! transaction) and the sender to afford the transaction now.
//!
//! **Eviction (documented policy):** a full pool refuses the *newcomer* with the retryable
//! [`TxError::MempoolFull`]; admitted transactions are never displaced by new ones, so a
//! flood cannot push out honest traffic already queued, and no sender's nonce sequence is
//! ever broken by eviction. Transactions leave the pool only when (a) a committed block
//! includes them, (b) a committed block makes their nonce stale (then the sender's later
//! pooled transactions are dropped too, as they can no longer execute in order), or
//! (c) block building finds they no longer execute (e.g. the balance was spent).

use crate::state::{ExecRules, Modules, State};
use crate::tx::{Transaction, TxError};
use isthmus_core::{Hash32, NodeId};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

struct Entry {
    tx: Transaction,
    size: usize,
}

pub struct Mempool {
    max_txs: usize,
    max_bytes: usize,
    bytes: usize,
    entries: HashMap<Hash32, Entry>,
    /// Arrival order; ids no longer in `entries` are skipped lazily.
    order: VecDeque<Hash32>,
    by_sender: HashMap<NodeId, BTreeMap<u64, Hash32>>,
}

impl Mempool {
    pub fn new(max_txs: usize, max_bytes: usize) -> Mempool {
        Mempool {
            max_txs,
            max_bytes,
            bytes: 0,
            entries: HashMap::new(),
            order: VecDeque::new(),
            by_sender: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn contains(&self, id: &Hash32) -> bool {
        self.entries.contains_key(id)
    }

    /// The nonce the sender's next pooled transaction must carry, if it has any pooled.
    pub fn pending_nonce(&self, sender: &NodeId) -> Option<u64> {
        self.by_sender
            .get(sender)
            .and_then(|m| m.keys().next_back())
            .map(|n| n + 1)
    }

    /// Admit a transaction whose signature the caller already verified.
    pub fn insert(
        &mut self,
        tx: Transaction,
        id: Hash32,
        state: &State,
        rules: &ExecRules,
        modules: &Modules,
    ) -> Result<(), TxError> {
        if self.entries.contains_key(&id) {
            return Err(TxError::Duplicate(id));
        }
        let size = tx.encoded().len();
        if self.entries.len() + 1 > self.max_txs {
            return Err(TxError::MempoolFull(format!(
                "{} transactions",
                self.max_txs
            )));
        }
        if self.bytes + size > self.max_bytes {
            return Err(TxError::MempoolFull(format!("{} bytes", self.max_bytes)));
        }
        state.check_admission(&tx, self.pending_nonce(&tx.body.from), rules, modules)?;
        self.by_sender
            .entry(tx.body.from)
            .or_default()
            .insert(tx.body.nonce, id);
        self.bytes += size;
        self.order.push_back(id);
        self.entries.insert(id, Entry { tx, size });
        Ok(())
    }

    /// Up to `max_txs` transactions totalling at most `max_bytes`, in arrival order (which
    /// is nonce order per sender).
    pub fn select(&self, max_txs: usize, max_bytes: u64) -> Vec<(Hash32, Transaction)> {
        let mut out = Vec::new();
        let mut total = 0u64;
        for id in &self.order {
            if out.len() >= max_txs {
                break;
            }
            let Some(e) = self.entries.get(id) else {
                continue;
            };
            if total + e.size as u64 > max_bytes {
                break;
            }
            total += e.size as u64;
            out.push((*id, e.tx.clone()));
        }
        out
    }

    fn remove(&mut self, id: &Hash32) -> Option<Transaction> {
        let e = self.entries.remove(id)?;
        self.bytes -= e.size;
        if let Some(m) = self.by_sender.get_mut(&e.tx.body.from) {
            m.remove(&e.tx.body.nonce);
            if m.is_empty() {
                self.by_sender.remove(&e.tx.body.from);
            }
        }
        Some(e.tx)
    }

    /// Drop `id` and every later pooled transaction of the same sender.
    pub fn drop_with_successors(&mut self, id: &Hash32) {
        let Some(e) = self.entries.get(id) else {
            return;
        };
        let (from, nonce) = (e.tx.body.from, e.tx.body.nonce);
        let later: Vec<Hash32> = self
            .by_sender
            .get(&from)
            .map(|m| m.range(nonce..).map(|(_, h)| *h).collect())
            .unwrap_or_default();
        for h in later {
            self.remove(&h);
        }
    }

    /// A block was committed: remove what it included and whatever it made stale.
    pub fn on_commit(&mut self, included: &[Hash32], state: &State) {
        let mut senders = HashSet::new();
        for id in included {
            if let Some(tx) = self.remove(id) {
                senders.insert(tx.body.from);
            }
        }
        // Any sender may have been affected through another node's block; only senders
        // with pooled transactions matter.
        let stale: Vec<Hash32> = self
            .by_sender
            .iter()
            .filter_map(|(from, m)| {
                let acct = state.account(from).nonce;
                let first = *m.keys().next()?;
                (first != acct).then(|| m.values().copied().collect::<Vec<_>>())
            })
            .flatten()
            .collect();
        for h in stale {
            self.remove(&h);
        }
        if self.order.len() > 2 * self.entries.len() + 1024 {
            let entries = &self.entries;
            self.order.retain(|h| entries.contains_key(h));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_core::{HashAlgo, Keypair, NetworkId};

    const NET: NetworkId = NetworkId(5);
    const R: ExecRules = ExecRules {
        version: 1,
        forbid_zero_transfers: false,
    };

    fn tx(k: &Keypair, nonce: u64) -> (Transaction, Hash32) {
        let t = Transaction::transfer(k, NET, nonce, Keypair::dev("sink").id(), 1);
        let id = t.id(HashAlgo::Sha256);
        (t, id)
    }

    #[test]
    fn nonce_sequence_duplicates_and_bounds() {
        let a = Keypair::dev("a");
        let s = State::genesis([(a.id(), 1000)]);
        let m = Modules::builtin();
        let mut p = Mempool::new(3, 1 << 20);
        let (t0, i0) = tx(&a, 0);
        p.insert(t0.clone(), i0, &s, &R, &m).unwrap();
        assert_eq!(p.insert(t0, i0, &s, &R, &m), Err(TxError::Duplicate(i0)));
        let (t2, i2) = tx(&a, 2);
        assert!(matches!(
            p.insert(t2, i2, &s, &R, &m),
            Err(TxError::BadNonce {
                expected: 1,
                got: 2,
                ..
            })
        ));
        for n in 1..3 {
            let (t, i) = tx(&a, n);
            p.insert(t, i, &s, &R, &m).unwrap();
        }
        let (t3, i3) = tx(&a, 3);
        let full = p.insert(t3, i3, &s, &R, &m).unwrap_err();
        assert!(matches!(full, TxError::MempoolFull(_)) && full.retryable());
        assert_eq!(p.select(2, u64::MAX).len(), 2);
    }

    #[test]
    fn byte_bound_refuses_newcomer() {
        let a = Keypair::dev("a");
        let s = State::genesis([(a.id(), 1000)]);
        let (t0, i0) = tx(&a, 0);
        let size = t0.encoded().len();
        let mut p = Mempool::new(100, size + size / 2);
        p.insert(t0, i0, &s, &R, &Modules::builtin()).unwrap();
        let (t1, i1) = tx(&a, 1);
        assert!(matches!(
            p.insert(t1, i1, &s, &R, &Modules::builtin()),
            Err(TxError::MempoolFull(m)) if m.contains("bytes")
        ));
        assert_eq!(p.bytes(), size);
    }

    #[test]
    fn commit_removes_included_and_stale() {
        let a = Keypair::dev("a");
        let b = Keypair::dev("b");
        let s = State::genesis([(a.id(), 1000), (b.id(), 1000)]);
        let m = Modules::builtin();
        let mut p = Mempool::new(100, 1 << 20);
        let (a0, ia0) = tx(&a, 0);
        let (a1, ia1) = tx(&a, 1);
        let (b0, ib0) = tx(&b, 0);
        for (t, i) in [(a0.clone(), ia0), (a1, ia1), (b0, ib0)] {
            p.insert(t, i, &s, &R, &m).unwrap();
        }
        // a block from elsewhere consumed b's nonce 0 with another transaction
        let other_b0 = Transaction::transfer(&b, NET, 0, a.id(), 2);
        let ids = [ia0, other_b0.id(HashAlgo::Sha256)];
        let (diff, _) = s.execute(&[a0, other_b0], &ids, 1, 0, &R, &m).unwrap();
        let mut s2 = s.clone();
        s2.apply(&diff);
        p.on_commit(&ids, &s2);
        assert_eq!(p.len(), 1);
        assert!(p.contains(&ia1));
        assert!(!p.contains(&ib0));
        assert_eq!(p.pending_nonce(&a.id()), Some(2));
    }
}
