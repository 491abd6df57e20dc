//! The ingress's durable receipts: which (channel, sequence) were delivered, with the
//! packet's commitment (a replay is a duplicate, a different packet under a delivered
//! sequence a conflict).
//!
//! Receipts are stored in **runs**: one sled value per channel per recorded group holding
//! that group's new sequences with their commitments (`seq u64 BE | commitment 32 B`,
//! ascending), keyed by `channel | first sequence`. The runs of a channel never overlap in
//! span: a group's sequences are cut wherever an existing run starts between them. Each
//! channel's spans (first → last) and highest sequence are kept in memory once the channel
//! is first seen, so a sequence above the highest is new without a read, and any other is
//! found with one index step and one value read. A group of 4,096 packets on one channel is
//! one tree insert instead of 4,096.
//!
//! Receipts written one per key by earlier versions (`relay.receipts`) are still read.

use isthmus_core::Hash32;
use isthmus_lock_contracts::packet::{AckResult, Acknowledgement, ChannelId, Receipt};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

/// Bytes of one run entry.
const ENTRY: usize = 8 + 32;

#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("receipt store failed: {0}")]
    Store(#[from] sled::Error),
    #[error("receipt of {0:?} #{1} is corrupt: {2}")]
    Corrupt(ChannelId, u64, String),
}

fn prefix(c: &ChannelId) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&c.source.0.to_be_bytes());
    k[8..].copy_from_slice(&c.destination.0.to_be_bytes());
    k
}

fn key(c: &ChannelId, seq: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(&prefix(c));
    k[16..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn seq_at(run: &[u8], i: usize) -> Option<u64> {
    run.get(i * ENTRY..i * ENTRY + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

/// The commitment stored for `seq` in `run`, by binary search.
fn find(run: &[u8], seq: u64) -> Option<Hash32> {
    if run.len() % ENTRY != 0 {
        return None;
    }
    let (mut lo, mut hi) = (0, run.len() / ENTRY);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let s = seq_at(run, mid)?;
        if s == seq {
            let c: [u8; 32] = run
                .get(mid * ENTRY + 8..(mid + 1) * ENTRY)?
                .try_into()
                .ok()?;
            return Some(Hash32(c));
        }
        if s < seq {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    None
}

/// What is known in memory of one channel's receipts.
#[derive(Debug, Default)]
struct ChannelRuns {
    /// first → last sequence of every run.
    spans: BTreeMap<u64, u64>,
    /// Highest sequence with a receipt (runs or the per-key tree).
    top: Option<u64>,
    /// Highest sequence in the per-key tree of earlier versions.
    legacy_top: Option<u64>,
}

/// The receipt store. [`lock`](Self::lock) serialises the receipt phase.
pub struct ReceiptStore {
    runs: sled::Tree,
    legacy: sled::Tree,
    channels: Mutex<HashMap<[u8; 16], ChannelRuns>>,
}

impl ReceiptStore {
    pub fn open(db: &sled::Db) -> Result<Self, ReceiptError> {
        Ok(ReceiptStore {
            runs: db.open_tree("relay.receipt_runs")?,
            legacy: db.open_tree("relay.receipts")?,
            channels: Mutex::new(HashMap::new()),
        })
    }

    /// Apply a batch of runs from [`ReceiptGroup::write`] (the caller flushes).
    pub fn apply(&self, batch: sled::Batch) -> Result<(), ReceiptError> {
        Ok(self.runs.apply_batch(batch)?)
    }

    /// Exclusive access for one group: look receipts up, stage new ones, write them.
    pub fn lock(&self) -> ReceiptGroup<'_> {
        ReceiptGroup {
            store: self,
            channels: self.channels.lock().unwrap_or_else(|p| p.into_inner()),
            staged: HashMap::new(),
        }
    }

    fn load(&self, p: &[u8; 16]) -> Result<ChannelRuns, ReceiptError> {
        let mut ch = ChannelRuns::default();
        for item in self.runs.scan_prefix(p) {
            let (k, v) = item?;
            let first = k
                .get(16..24)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes);
            let last = v.len().checked_div(ENTRY).and_then(|n| n.checked_sub(1));
            if let (Some(first), Some(last)) = (first, last.and_then(|i| seq_at(&v, i))) {
                ch.spans.insert(first, last);
                ch.top = Some(ch.top.map_or(last, |t| t.max(last)));
            }
        }
        if let Some(last) = self.legacy.scan_prefix(p).next_back() {
            let (k, _) = last?;
            ch.legacy_top = k
                .get(16..24)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes);
            if let Some(l) = ch.legacy_top {
                ch.top = Some(ch.top.map_or(l, |t| t.max(l)));
            }
        }
        Ok(ch)
    }
}

/// The receipt phase of one group, holding the store's lock.
pub struct ReceiptGroup<'a> {
    store: &'a ReceiptStore,
    channels: MutexGuard<'a, HashMap<[u8; 16], ChannelRuns>>,
    /// New receipts of this group per channel: sequence → commitment.
    staged: HashMap<ChannelId, BTreeMap<u64, Hash32>>,
}

impl ReceiptGroup<'_> {
    /// The durable or staged receipt of `(channel, seq)`.
    pub fn get(&mut self, channel: &ChannelId, seq: u64) -> Result<Option<Receipt>, ReceiptError> {
        if let Some(c) = self.staged.get(channel).and_then(|m| m.get(&seq)) {
            return Ok(Some(delivered(channel, seq, *c)));
        }
        let p = prefix(channel);
        if !self.channels.contains_key(&p) {
            let loaded = self.store.load(&p)?;
            self.channels.insert(p, loaded);
        }
        let Some(ch) = self.channels.get(&p) else {
            return Ok(None);
        };
        if ch.top.is_none_or(|t| seq > t) {
            return Ok(None);
        }
        if let Some((first, last)) = ch.spans.range(..=seq).next_back() {
            if *last >= seq {
                let run = self.store.runs.get(key(channel, *first))?.ok_or_else(|| {
                    ReceiptError::Corrupt(*channel, seq, "indexed run is missing".into())
                })?;
                return match find(&run, seq) {
                    Some(c) => Ok(Some(delivered(channel, seq, c))),
                    None if run.len() % ENTRY != 0 => Err(ReceiptError::Corrupt(
                        *channel,
                        seq,
                        format!("run of {} bytes", run.len()),
                    )),
                    None => Ok(None),
                };
            }
        }
        if ch.legacy_top.is_some_and(|t| seq <= t) {
            if let Some(b) = self.store.legacy.get(key(channel, seq))? {
                return rmp_serde::from_slice::<Receipt>(&b)
                    .map(Some)
                    .map_err(|e| ReceiptError::Corrupt(*channel, seq, e.to_string()));
            }
        }
        Ok(None)
    }

    /// Stage the receipt of a packet delivered for the first time.
    pub fn stage(&mut self, channel: ChannelId, seq: u64, commitment: Hash32) {
        self.staged
            .entry(channel)
            .or_default()
            .insert(seq, commitment);
    }

    /// Whether anything was staged.
    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    /// The staged receipts as runs, in `batch`; [`committed`](Self::committed) once the
    /// batch is durable.
    pub fn write(
        &mut self,
        batch: &mut sled::Batch,
    ) -> Result<Vec<(ChannelId, u64, u64)>, ReceiptError> {
        // Cutting runs needs each channel's spans.
        for channel in self.staged.keys() {
            let p = prefix(channel);
            if !self.channels.contains_key(&p) {
                let loaded = self.store.load(&p)?;
                self.channels.insert(p, loaded);
            }
        }
        let mut written = Vec::new();
        for (channel, seqs) in &self.staged {
            let spans = self.channels.get(&prefix(channel)).map(|c| &c.spans);
            // A sequence inside an existing run's span (a gap filled late) joins that run,
            // rewritten; the others form new runs, cut wherever an existing run starts
            // between two of them. Either way spans never overlap.
            let mut joins: BTreeMap<u64, Vec<(u64, Hash32)>> = BTreeMap::new();
            let mut outside = Vec::new();
            for (&seq, c) in seqs {
                match spans.and_then(|s| s.range(..=seq).next_back()) {
                    Some((&first, &last)) if last >= seq => {
                        joins.entry(first).or_default().push((seq, *c));
                    }
                    _ => outside.push((seq, *c)),
                }
            }
            for (first, add) in joins {
                let run = self.store.runs.get(key(channel, first))?.ok_or_else(|| {
                    ReceiptError::Corrupt(*channel, first, "indexed run is missing".into())
                })?;
                let mut merged: BTreeMap<u64, [u8; 32]> = BTreeMap::new();
                for e in run.chunks_exact(ENTRY) {
                    let (s, c) = e.split_at(8);
                    if let (Ok(s), Ok(c)) = (s.try_into(), c.try_into()) {
                        merged.insert(u64::from_be_bytes(s), c);
                    }
                }
                for (s, c) in add {
                    merged.insert(s, c.0);
                }
                let mut bytes = Vec::with_capacity(merged.len() * ENTRY);
                for (s, c) in &merged {
                    bytes.extend_from_slice(&s.to_be_bytes());
                    bytes.extend_from_slice(c);
                }
                let last = merged.keys().next_back().copied().unwrap_or(first);
                batch.insert(&key(channel, first), bytes);
                written.push((*channel, first, last));
            }
            let mut run: Vec<u8> = Vec::new();
            let mut first = None;
            let mut prev = 0u64;
            let mut flush = |first: u64, prev: u64, run: &mut Vec<u8>| {
                batch.insert(&key(channel, first), std::mem::take(run));
                written.push((*channel, first, prev));
            };
            for (seq, c) in outside {
                if let Some(f) = first {
                    if spans.is_some_and(|s| s.range(prev + 1..seq).next().is_some()) {
                        flush(f, prev, &mut run);
                        first = None;
                    }
                }
                first.get_or_insert(seq);
                run.extend_from_slice(&seq.to_be_bytes());
                run.extend_from_slice(&c.0);
                prev = seq;
            }
            if let Some(f) = first {
                flush(f, prev, &mut run);
            }
        }
        Ok(written)
    }

    /// Writing failed part-way: drop what is known in memory (it is loaded from the trees
    /// again) and what was staged.
    pub fn forget(&mut self) {
        self.channels.clear();
        self.staged.clear();
    }

    /// The runs `written` are durable: index them.
    pub fn committed(&mut self, written: Vec<(ChannelId, u64, u64)>) {
        for (channel, first, last) in written {
            let ch = self.channels.entry(prefix(&channel)).or_default();
            ch.spans.insert(first, last);
            ch.top = Some(ch.top.map_or(last, |t| t.max(last)));
        }
        self.staged.clear();
    }
}

/// The receipt the ingress gives a packet delivered with `commitment` (its ack carries no
/// data).
fn delivered(channel: &ChannelId, sequence: u64, commitment: Hash32) -> Receipt {
    Receipt::Delivered {
        ack: Acknowledgement {
            channel: *channel,
            sequence,
            commitment,
            result: AckResult::Ok { data: Vec::new() },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_core::NetworkId;

    const CH: ChannelId = ChannelId {
        source: NetworkId(1),
        destination: NetworkId(2),
    };

    fn c(seq: u64) -> Hash32 {
        Hash32([seq as u8; 32])
    }

    fn record(store: &ReceiptStore, db: &sled::Db, seqs: &[u64]) {
        let mut g = store.lock();
        for &s in seqs {
            assert!(g.get(&CH, s).unwrap().is_none(), "#{s} already there");
            g.stage(CH, s, c(s));
        }
        let mut batch = sled::Batch::default();
        let written = g.write(&mut batch).unwrap();
        store.runs.apply_batch(batch).unwrap();
        db.flush().unwrap();
        g.committed(written);
    }

    fn commitment(r: Option<Receipt>) -> Option<Hash32> {
        match r {
            Some(Receipt::Delivered { ack }) => Some(ack.commitment),
            _ => None,
        }
    }

    #[test]
    fn out_of_order_groups_keep_disjoint_runs_and_every_receipt_is_found_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let groups: [&[u64]; 4] = [
            &[10, 11, 12, 20],
            &[1, 2, 15, 30],
            &[3, 13, 14, 16, 25],
            &[4, 5, 6, 7, 8, 9, 17, 18, 19, 21, 40],
        ];
        let all: Vec<u64> = groups.iter().flat_map(|g| g.iter().copied()).collect();
        {
            let db = sled::open(dir.path()).unwrap();
            let store = ReceiptStore::open(&db).unwrap();
            for g in groups {
                record(&store, &db, g);
            }
        }
        let db = sled::open(dir.path()).unwrap();
        let store = ReceiptStore::open(&db).unwrap();
        let mut g = store.lock();
        for s in 0..=45u64 {
            let want = all.contains(&s).then(|| c(s));
            assert_eq!(commitment(g.get(&CH, s).unwrap()), want, "#{s}");
        }
        let ch = g.channels.get(&prefix(&CH)).unwrap();
        let spans: Vec<(u64, u64)> = ch.spans.iter().map(|(a, b)| (*a, *b)).collect();
        for w in spans.windows(2) {
            assert!(w[0].1 < w[1].0, "runs overlap: {spans:?}");
        }
        assert_eq!(ch.top, Some(40));
        // Another channel is independent.
        let other = ChannelId {
            source: NetworkId(2),
            destination: NetworkId(1),
        };
        assert!(g.get(&other, 10).unwrap().is_none());
    }

    #[test]
    fn receipts_of_the_per_key_layout_are_still_found() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let store = ReceiptStore::open(&db).unwrap();
        let old = delivered(&CH, 7, c(7));
        store
            .legacy
            .insert(key(&CH, 7), rmp_serde::to_vec_named(&old).unwrap())
            .unwrap();
        record(&store, &db, &[8, 9]);
        drop(store);
        let store = ReceiptStore::open(&db).unwrap();
        let mut g = store.lock();
        assert_eq!(g.get(&CH, 7).unwrap(), Some(old));
        assert_eq!(commitment(g.get(&CH, 9).unwrap()), Some(c(9)));
        assert!(g.get(&CH, 6).unwrap().is_none());
        assert!(g.get(&CH, 10).unwrap().is_none());
    }
}
