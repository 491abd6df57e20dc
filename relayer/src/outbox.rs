//! The relayer's durable outbox: attested packets waiting to reach the hub. Entries leave
//! it only when the hub has answered for them, so a relayer killed at any point resends
//! what might not have arrived (the hub answers `duplicate` for what did).

use crate::proto::{Outcome, RelayedPacket};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox store failed: {0}")]
    Store(String),
    #[error("outbox entry {0} is corrupt: {1}")]
    Corrupt(u64, String),
}

impl From<sled::Error> for OutboxError {
    fn from(e: sled::Error) -> Self {
        OutboxError::Store(e.to_string())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry<T> {
    /// When it entered the outbox (unix seconds), for the "oldest pending" metric.
    queued_at: u64,
    packet: T,
}

/// Items of type `T` waiting to reach the hub: attested packets by default, relayed lock
/// evidence for an evidence link ([`crate::evidence`]).
pub struct Outbox<T = RelayedPacket> {
    db: sled::Db,
    pending: sled::Tree,
    failed: sled::Tree,
    item: std::marker::PhantomData<fn() -> T>,
}

impl<T> Clone for Outbox<T> {
    fn clone(&self) -> Self {
        Outbox {
            db: self.db.clone(),
            pending: self.pending.clone(),
            failed: self.failed.clone(),
            item: std::marker::PhantomData,
        }
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Outbox {
    /// The outbox of link `link` in `db`.
    pub fn open(db: sled::Db, link: &str) -> Result<Self, OutboxError> {
        Self::open_kind(db, "relayer", link)
    }
}

impl<T: Serialize + DeserializeOwned + Clone> Outbox<T> {
    /// The outbox of link `link` in `db` under the tree prefix `kind`, so that outboxes of
    /// different item types never share a tree.
    pub fn open_kind(db: sled::Db, kind: &str, link: &str) -> Result<Self, OutboxError> {
        Ok(Outbox {
            pending: db.open_tree(format!("{kind}.outbox.{link}"))?,
            failed: db.open_tree(format!("{kind}.failed.{link}"))?,
            db,
            item: std::marker::PhantomData,
        })
    }

    /// Queue packets durably (flushed before returning).
    pub fn push_all(&self, packets: &[T]) -> Result<(), OutboxError> {
        let mut batch = sled::Batch::default();
        for p in packets {
            let id = self.db.generate_id()?;
            let e = Entry {
                queued_at: now_secs(),
                packet: p.clone(),
            };
            let bytes = rmp_serde::to_vec_named(&e)
                .map_err(|er| OutboxError::Corrupt(id, er.to_string()))?;
            batch.insert(&id.to_be_bytes(), bytes);
        }
        self.pending.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// The oldest `limit` entries.
    pub fn page(&self, limit: usize) -> Result<Vec<(u64, T)>, OutboxError> {
        self.page_after(None, limit)
    }

    /// The oldest `limit` entries whose id is above `after` (all of them for `None`): the
    /// next page for a link that already has entries up to `after` in flight.
    pub fn page_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, T)>, OutboxError> {
        let mut out = Vec::with_capacity(limit.min(4_096));
        let entries = match after {
            None => self.pending.iter(),
            Some(a) => match a.checked_add(1) {
                Some(from) => self.pending.range(from.to_be_bytes()..),
                None => return Ok(out),
            },
        };
        for item in entries.take(limit) {
            let (k, v) = item?;
            let id = k
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| OutboxError::Corrupt(0, "key is not 8 bytes".into()))?;
            let e: Entry<T> =
                rmp_serde::from_slice(&v).map_err(|er| OutboxError::Corrupt(id, er.to_string()))?;
            out.push((id, e.packet));
        }
        Ok(out)
    }

    /// The hub answered for these entries: drop them (keeping refused ones, with the
    /// reason, in the failed list) and flush.
    pub fn complete(&self, done: &[(u64, Outcome)]) -> Result<(), OutboxError> {
        self.settle(done)?;
        self.db.flush()?;
        Ok(())
    }

    /// [`complete`](Self::complete) without waiting for the disk. Safe for answered
    /// entries: the hub's receipt, not this removal, is what makes delivery exactly-once, so
    /// a removal lost in a crash only brings a resend that the hub answers `duplicate` (or
    /// refuses again). sled writes it out within its own flush interval.
    pub fn settle(&self, done: &[(u64, Outcome)]) -> Result<(), OutboxError> {
        let mut remove = sled::Batch::default();
        let mut failed = sled::Batch::default();
        for (id, outcome) in done {
            let key = id.to_be_bytes();
            if let Outcome::Rejected { .. } = outcome {
                if let Some(v) = self.pending.get(key)? {
                    failed.insert(&key, v);
                }
            }
            remove.remove(&key);
        }
        self.failed.apply_batch(failed)?;
        self.pending.apply_batch(remove)?;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn failed_len(&self) -> usize {
        self.failed.len()
    }

    /// Age in seconds of the oldest pending entry.
    pub fn oldest_age(&self) -> u64 {
        match self.pending.first() {
            Ok(Some((_, v))) => rmp_serde::from_slice::<Entry<T>>(&v)
                .map(|e| now_secs().saturating_sub(e.queued_at))
                .unwrap_or(0),
            _ => 0,
        }
    }
}
