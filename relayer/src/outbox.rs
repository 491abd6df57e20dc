//! The relayer's durable outbox: attested packets waiting to reach the hub. Entries leave
//! it only when the hub has answered for them, so a relayer killed at any point resends
//! what might not have arrived (the hub answers `duplicate` for what did).

use isthmus_relay_protocol::{Outcome, RelayedPacket};
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
    /// How many entries `pending` holds, under [`COUNT_KEY`], kept by every push and
    /// settle (atomically, so outboxes opened twice on one tree agree) and recounted on
    /// open: the backlog gauge without a scan of the tree.
    count: sled::Tree,
    item: std::marker::PhantomData<fn() -> T>,
}

const COUNT_KEY: &[u8] = b"pending";

impl<T> Clone for Outbox<T> {
    fn clone(&self) -> Self {
        Outbox {
            db: self.db.clone(),
            pending: self.pending.clone(),
            failed: self.failed.clone(),
            count: self.count.clone(),
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
        let pending = db.open_tree(format!("{kind}.outbox.{link}"))?;
        let count = db.open_tree(format!("{kind}.count.{link}"))?;
        // A crash between an entry write and its count update leaves the count off: the
        // one scan of the tree is here.
        count.insert(COUNT_KEY, &(pending.len() as u64).to_be_bytes())?;
        Ok(Outbox {
            pending,
            failed: db.open_tree(format!("{kind}.failed.{link}"))?,
            count,
            db,
            item: std::marker::PhantomData,
        })
    }

    fn add_to_count(&self, delta: i64) -> Result<(), OutboxError> {
        self.count.fetch_and_update(COUNT_KEY, |old| {
            let n = old
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes);
            Some(n.saturating_add_signed(delta).to_be_bytes().to_vec())
        })?;
        Ok(())
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
        self.add_to_count(packets.len() as i64)?;
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
        self.entries_after(after, limit, |id, v| {
            let e: Entry<T> =
                rmp_serde::from_slice(v).map_err(|er| OutboxError::Corrupt(id, er.to_string()))?;
            Ok(e.packet)
        })
    }

    /// The oldest `limit` entries above `after`, each read by `read` (given its id and bytes).
    fn entries_after<R>(
        &self,
        after: Option<u64>,
        limit: usize,
        read: impl Fn(u64, &[u8]) -> Result<R, OutboxError>,
    ) -> Result<Vec<(u64, R)>, OutboxError> {
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
            out.push((id, read(id, &v)?));
        }
        Ok(out)
    }

    /// Like [`page_after`](Self::page_after), but each item comes as its own named msgpack
    /// encoding, cut out of the stored entry without decoding it: a relayer forwards
    /// packets as they were queued, so it need not decode and encode each one again.
    pub fn page_encoded_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, OutboxError> {
        self.entries_after(after, limit, |id, v| match entry_item_bytes(v) {
            Some(bytes) => Ok(bytes.to_vec()),
            // Not laid out as this version writes entries: decode and encode it.
            None => {
                let e: Entry<T> = rmp_serde::from_slice(v)
                    .map_err(|er| OutboxError::Corrupt(id, er.to_string()))?;
                rmp_serde::to_vec_named(&e.packet)
                    .map_err(|er| OutboxError::Corrupt(id, er.to_string()))
            }
        })
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
        let mut failed = sled::Batch::default();
        for (id, outcome) in done {
            let key = id.to_be_bytes();
            if let Outcome::Rejected { .. } = outcome {
                if let Some(v) = self.pending.get(key)? {
                    failed.insert(&key, v);
                }
            }
        }
        self.failed.apply_batch(failed)?;
        // One by one, so the count drops by exactly what was there.
        let mut removed = 0i64;
        for (id, _) in done {
            if self.pending.remove(id.to_be_bytes())?.is_some() {
                removed += 1;
            }
        }
        self.add_to_count(-removed)
    }

    /// Pending entries (a kept count: no scan).
    pub fn len(&self) -> usize {
        self.count
            .get(COUNT_KEY)
            .ok()
            .flatten()
            .and_then(|b| b.as_ref().try_into().ok())
            .map_or(0, |b: [u8; 8]| u64::from_be_bytes(b) as usize)
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

/// The item's bytes inside a stored entry, as [`Outbox::push_all`] writes it: a named map of
/// exactly `queued_at` (an integer) then `packet` (the item, to the end). `None` for any
/// other layout.
fn entry_item_bytes(entry: &[u8]) -> Option<&[u8]> {
    let mut rd = entry;
    if rmp::decode::read_map_len(&mut rd).ok()? != 2 {
        return None;
    }
    let key = |rd: &mut &[u8], want: &str| -> Option<()> {
        let len = rmp::decode::read_str_len(rd).ok()? as usize;
        let (name, rest) = (rd.get(..len)?, rd.get(len..)?);
        *rd = rest;
        (name == want.as_bytes()).then_some(())
    };
    key(&mut rd, "queued_at")?;
    let _: u64 = rmp::decode::read_int(&mut rd).ok()?;
    key(&mut rd, "packet")?;
    (!rd.is_empty()).then_some(rd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_pages_carry_each_item_exactly_as_serde_encodes_it() {
        let dir = tempfile::tempdir().unwrap();
        let outbox: Outbox<Vec<String>> =
            Outbox::open_kind(sled::open(dir.path()).unwrap(), "t", "l").unwrap();
        let items: Vec<Vec<String>> = (0..5).map(|i| vec!["x".repeat(i * 40); i]).collect();
        outbox.push_all(&items).unwrap();
        // An entry written in another layout (positional) is re-encoded, not refused.
        let odd = rmp_serde::to_vec(&Entry {
            queued_at: u64::MAX,
            packet: vec!["odd".to_owned()],
        })
        .unwrap();
        assert!(entry_item_bytes(&odd).is_none());
        outbox.pending.insert(u64::MAX.to_be_bytes(), odd).unwrap();
        let page = outbox.page_encoded_after(None, 100).unwrap();
        let want: Vec<Vec<u8>> = items
            .iter()
            .chain([&vec!["odd".to_owned()]])
            .map(|i| rmp_serde::to_vec_named(i).unwrap())
            .collect();
        assert_eq!(
            page.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(),
            want
        );
        let first = page[0].0;
        let rest = outbox.page_encoded_after(Some(first), 100).unwrap();
        assert_eq!(rest.len(), page.len() - 1);
        // The kept count follows pushes and settles (a settled id twice counts once), and
        // a reopened outbox recounts (the entry inserted behind its back is counted).
        assert_eq!(outbox.len(), 5);
        let again = Outbox::<Vec<String>>::open_kind(outbox.db.clone(), "t", "l").unwrap();
        assert_eq!(again.len(), 6);
        let done = [(first, Outcome::Delivered), (first, Outcome::Delivered)];
        again.settle(&done).unwrap();
        assert_eq!((outbox.len(), again.len()), (5, 5));
        assert_eq!(outbox.len(), outbox.pending.len());
        assert!(entry_item_bytes(&[0x82, 0xa1, b'q']).is_none());
    }
}
