//! Durable storage behind the [`ChainStore`] trait, with a sled implementation.
//!
//! A block is committed by one [`CommitBatch`]: the block bytes, the canonical-number
//! index, the transaction index, the state entries it changed, its undo record, its commit
//! certificate (PoS) and the new head are written in **one** atomic sled batch, then
//! `flush()`ed; only after the flush returns does the caller treat the block as committed.
//! The storage quota (from the node's hardware figure) is checked before every write.
//!
//! Key layout (one sled tree):
//! `b/<hash>` block · `i/<hash>` index entry · `n/<number BE>` canonical hash ·
//! `t/<tx id>` (number, index) · `s/<state key>` state value · `u/<hash>` undo record ·
//! `c/<number BE>` commit certificate · `head` head hash · `meta/<name>` metadata.

use isthmus_core::Hash32;
use std::path::Path;

/// Why storage failed. `QuotaExceeded` and `Corrupt` need an operator; `Io` may be retried.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "storage quota exceeded: {used} bytes used of {quota} allowed (raise hardware.storage_mb)"
    )]
    QuotaExceeded { used: u64, quota: u64 },
    #[error("storage i/o error: {0}")]
    Io(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn retryable(&self) -> bool {
        matches!(self, StoreError::Io(_))
    }
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Corruption { .. } => StoreError::Corrupt(e.to_string()),
            other => StoreError::Io(other.to_string()),
        }
    }
}

/// A raw key/value pair.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// Everything one commit writes, atomically.
#[derive(Debug, Default, Clone)]
pub struct CommitBatch {
    /// `(hash, encoded block, encoded index entry)` of blocks to store.
    pub blocks: Vec<(Hash32, Vec<u8>, Vec<u8>)>,
    /// Canonical chain: number → hash to set.
    pub canonical: Vec<(u64, Hash32)>,
    /// Canonical numbers to clear (a reorg to a shorter chain).
    pub canonical_remove: Vec<u64>,
    /// Transaction id → encoded location.
    pub tx_index: Vec<(Hash32, Vec<u8>)>,
    pub tx_index_remove: Vec<Hash32>,
    /// State key → new value (`None` deletes).
    pub state: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Block hash → encoded undo record.
    pub undo: Vec<(Hash32, Vec<u8>)>,
    /// Number → encoded commit certificate.
    pub certs: Vec<(u64, Vec<u8>)>,
    pub head: Option<Hash32>,
    pub meta: Vec<(String, Vec<u8>)>,
}

impl CommitBatch {
    fn approx_bytes(&self) -> u64 {
        let b: usize = self
            .blocks
            .iter()
            .map(|(_, b, i)| 40 + b.len() + i.len())
            .sum();
        let s: usize = self
            .state
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        let u: usize = self.undo.iter().map(|(_, v)| v.len() + 34).sum();
        let c: usize = self.certs.iter().map(|(_, v)| v.len() + 10).sum();
        (b + s + u + c + self.tx_index.len() * 48) as u64
    }
}

/// The storage a chain needs. Implementations must make [`ChainStore::commit`] atomic and
/// durable before it returns.
pub trait ChainStore: Send + 'static {
    fn commit(&self, batch: CommitBatch) -> Result<(), StoreError>;
    fn block(&self, hash: &Hash32) -> Result<Option<Vec<u8>>, StoreError>;
    fn index_entry(&self, hash: &Hash32) -> Result<Option<Vec<u8>>, StoreError>;
    fn all_index_entries(&self) -> Result<Vec<(Hash32, Vec<u8>)>, StoreError>;
    fn canonical(&self, number: u64) -> Result<Option<Hash32>, StoreError>;
    fn tx_location(&self, id: &Hash32) -> Result<Option<Vec<u8>>, StoreError>;
    fn undo(&self, hash: &Hash32) -> Result<Option<Vec<u8>>, StoreError>;
    fn cert(&self, number: u64) -> Result<Option<Vec<u8>>, StoreError>;
    fn head(&self) -> Result<Option<Hash32>, StoreError>;
    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn state_entries(&self) -> Result<Vec<KvPair>, StoreError>;
    /// Bytes used on disk.
    fn used_bytes(&self) -> Result<u64, StoreError>;
}

/// sled-backed [`ChainStore`].
pub struct SledStore {
    db: sled::Db,
    quota: u64,
}

fn key(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + rest.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(rest);
    k
}

fn hash_of(bytes: &[u8]) -> Result<Hash32, StoreError> {
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("hash of {} bytes", bytes.len())))?;
    Ok(Hash32(arr))
}

impl SledStore {
    /// Open (or create) the store in `dir` with a quota of `quota_bytes`.
    pub fn open(dir: &Path, quota_bytes: u64) -> Result<SledStore, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(16 * 1024 * 1024)
            .open()?;
        Ok(SledStore {
            db,
            quota: quota_bytes,
        })
    }

    /// A store that lives in memory and a temp file (tests).
    pub fn temporary(quota_bytes: u64) -> Result<SledStore, StoreError> {
        let db = sled::Config::new().temporary(true).open()?;
        Ok(SledStore {
            db,
            quota: quota_bytes,
        })
    }

    fn get(&self, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(k)?.map(|v| v.to_vec()))
    }
}

impl ChainStore for SledStore {
    fn commit(&self, b: CommitBatch) -> Result<(), StoreError> {
        let used = self.db.size_on_disk()?;
        let incoming = b.approx_bytes();
        if used + incoming > self.quota {
            return Err(StoreError::QuotaExceeded {
                used: used + incoming,
                quota: self.quota,
            });
        }
        let mut batch = sled::Batch::default();
        for (h, block, idx) in &b.blocks {
            batch.insert(key(b"b/", &h.0), block.as_slice());
            batch.insert(key(b"i/", &h.0), idx.as_slice());
        }
        for n in &b.canonical_remove {
            batch.remove(key(b"n/", &n.to_be_bytes()));
        }
        for (n, h) in &b.canonical {
            batch.insert(key(b"n/", &n.to_be_bytes()), &h.0[..]);
        }
        for id in &b.tx_index_remove {
            batch.remove(key(b"t/", &id.0));
        }
        for (id, loc) in &b.tx_index {
            batch.insert(key(b"t/", &id.0), loc.as_slice());
        }
        for (k, v) in &b.state {
            match v {
                Some(v) => batch.insert(key(b"s/", k), v.as_slice()),
                None => batch.remove(key(b"s/", k)),
            }
        }
        for (h, u) in &b.undo {
            batch.insert(key(b"u/", &h.0), u.as_slice());
        }
        for (n, c) in &b.certs {
            batch.insert(key(b"c/", &n.to_be_bytes()), c.as_slice());
        }
        for (name, v) in &b.meta {
            batch.insert(key(b"meta/", name.as_bytes()), v.as_slice());
        }
        if let Some(h) = b.head {
            batch.insert(&b"head"[..], &h.0[..]);
        }
        self.db.apply_batch(batch)?;
        // The durability point: nothing above counts until this returns.
        self.db.flush()?;
        Ok(())
    }

    fn block(&self, hash: &Hash32) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(&key(b"b/", &hash.0))
    }

    fn index_entry(&self, hash: &Hash32) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(&key(b"i/", &hash.0))
    }

    fn all_index_entries(&self) -> Result<Vec<(Hash32, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.db.scan_prefix(b"i/") {
            let (k, v) = kv?;
            out.push((hash_of(&k[2..])?, v.to_vec()));
        }
        Ok(out)
    }

    fn canonical(&self, number: u64) -> Result<Option<Hash32>, StoreError> {
        self.get(&key(b"n/", &number.to_be_bytes()))?
            .map(|v| hash_of(&v))
            .transpose()
    }

    fn tx_location(&self, id: &Hash32) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(&key(b"t/", &id.0))
    }

    fn undo(&self, hash: &Hash32) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(&key(b"u/", &hash.0))
    }

    fn cert(&self, number: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(&key(b"c/", &number.to_be_bytes()))
    }

    fn head(&self) -> Result<Option<Hash32>, StoreError> {
        self.get(b"head")?.map(|v| hash_of(&v)).transpose()
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(&key(b"meta/", name.as_bytes()))
    }

    fn state_entries(&self) -> Result<Vec<KvPair>, StoreError> {
        let mut out = Vec::new();
        for kv in self.db.scan_prefix(b"s/") {
            let (k, v) = kv?;
            out.push((k[2..].to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn used_bytes(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trip_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let h = Hash32([7; 32]);
        {
            let s = SledStore::open(dir.path(), 1 << 30).unwrap();
            s.commit(CommitBatch {
                blocks: vec![(h, b"block".to_vec(), b"idx".to_vec())],
                canonical: vec![(1, h)],
                state: vec![(b"a/x".to_vec(), Some(b"v".to_vec()))],
                head: Some(h),
                ..Default::default()
            })
            .unwrap();
        }
        let s = SledStore::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(s.head().unwrap(), Some(h));
        assert_eq!(s.canonical(1).unwrap(), Some(h));
        assert_eq!(s.block(&h).unwrap().unwrap(), b"block");
        assert_eq!(
            s.state_entries().unwrap(),
            vec![(b"a/x".to_vec(), b"v".to_vec())]
        );
        assert_eq!(s.all_index_entries().unwrap().len(), 1);
    }

    #[test]
    fn quota_is_enforced_with_a_clear_error() {
        let s = SledStore::temporary(64 * 1024).unwrap();
        let big = vec![0u8; 128 * 1024];
        let err = s
            .commit(CommitBatch {
                blocks: vec![(Hash32([1; 32]), big, vec![])],
                ..Default::default()
            })
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::QuotaExceeded { quota: 65536, .. }
        ));
        assert!(err.to_string().contains("storage_mb"));
        assert!(!err.retryable());
    }
}
