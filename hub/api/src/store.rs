//! Durable API state: idempotency records, the event log and named subscription cursors.
//!
//! Storage sits behind [`ApiStore`]; [`SledApiStore`] is the implementation. Every write is
//! flushed before the caller is told it happened.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("api store i/o failed: {0}")]
    Io(String),
    #[error("api store record is corrupt: {0}")]
    Corrupt(String),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

/// What was answered to the first request under an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// sha256 of the request body, hex.
    pub body_sha256: String,
    pub status: u16,
    pub response: serde_json::Value,
}

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the log; strictly increasing, starting at 1.
    pub seq: u64,
    /// E.g. `transfer.updated`, `swap.updated`, `message.updated`, `alert.tps`.
    pub kind: String,
    /// The id of the object the event is about.
    pub subject: String,
    /// Network names involved, for server-side filtering.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    pub data: serde_json::Value,
}

pub trait ApiStore: Send + Sync + 'static {
    fn get_idempotency(&self, scope: &str) -> Result<Option<IdempotencyRecord>, StoreError>;
    /// Store and flush. Called only after the operation itself is durable.
    fn put_idempotency(&self, scope: &str, rec: &IdempotencyRecord) -> Result<(), StoreError>;
    /// Append and flush; returns the stored event with its sequence number.
    fn append_event(
        &self,
        kind: &str,
        subject: &str,
        networks: Vec<String>,
        data: serde_json::Value,
    ) -> Result<Event, StoreError>;
    /// Events with `seq >= from`, at most `limit`.
    fn events_from(&self, from: u64, limit: usize) -> Result<Vec<Event>, StoreError>;
    fn last_seq(&self) -> u64;
    fn get_cursor(&self, name: &str) -> Result<Option<u64>, StoreError>;
    fn put_cursor(&self, name: &str, seq: u64) -> Result<(), StoreError>;
}

/// sled-backed store. Trees: `idem`, `events` (u64 BE keys), `cursors`.
pub struct SledApiStore {
    db: sled::Db,
    idem: sled::Tree,
    events: sled::Tree,
    cursors: sled::Tree,
    next_seq: AtomicU64,
    append_lock: std::sync::Mutex<()>,
}

impl SledApiStore {
    pub fn open(db: sled::Db) -> Result<Self, StoreError> {
        let idem = db.open_tree("api.idem")?;
        let events = db.open_tree("api.events")?;
        let cursors = db.open_tree("api.cursors")?;
        let last = match events.last()? {
            Some((k, _)) => u64::from_be_bytes(
                k.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("event key is not 8 bytes".into()))?,
            ),
            None => 0,
        };
        Ok(SledApiStore {
            db,
            idem,
            events,
            cursors,
            next_seq: AtomicU64::new(last + 1),
            append_lock: std::sync::Mutex::new(()),
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl ApiStore for SledApiStore {
    fn get_idempotency(&self, scope: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.idem
            .get(scope.as_bytes())?
            .map(|v| decode(&v, "idempotency record"))
            .transpose()
    }

    fn put_idempotency(&self, scope: &str, rec: &IdempotencyRecord) -> Result<(), StoreError> {
        self.idem.insert(scope.as_bytes(), encode(rec)?)?;
        self.flush()
    }

    fn append_event(
        &self,
        kind: &str,
        subject: &str,
        networks: Vec<String>,
        data: serde_json::Value,
    ) -> Result<Event, StoreError> {
        // Sequence numbers must be gap-free in commit order for replay to be exact.
        let _guard = self
            .append_lock
            .lock()
            .map_err(|_| StoreError::Io("event log lock poisoned".into()))?;
        let seq = self.next_seq.load(Ordering::SeqCst);
        let ev = Event {
            seq,
            kind: kind.to_owned(),
            subject: subject.to_owned(),
            networks,
            data,
        };
        self.events.insert(seq.to_be_bytes(), encode(&ev)?)?;
        self.flush()?;
        self.next_seq.store(seq + 1, Ordering::SeqCst);
        Ok(ev)
    }

    fn events_from(&self, from: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let mut out = Vec::new();
        for item in self.events.range(from.max(1).to_be_bytes()..).take(limit) {
            let (_, v) = item?;
            out.push(decode(&v, "event")?);
        }
        Ok(out)
    }

    fn last_seq(&self) -> u64 {
        self.next_seq.load(Ordering::SeqCst) - 1
    }

    fn get_cursor(&self, name: &str) -> Result<Option<u64>, StoreError> {
        match self.cursors.get(name.as_bytes())? {
            Some(v) => Ok(Some(u64::from_be_bytes(v.as_ref().try_into().map_err(
                |_| StoreError::Corrupt(format!("cursor `{name}` is not 8 bytes")),
            )?))),
            None => Ok(None),
        }
    }

    fn put_cursor(&self, name: &str, seq: u64) -> Result<(), StoreError> {
        self.cursors.insert(name.as_bytes(), &seq.to_be_bytes())?;
        self.flush()
    }
}

/// The event log as the rest of the hub sees it: durable append, then broadcast to live
/// WebSocket subscribers.
#[derive(Clone)]
pub struct EventBus {
    store: Arc<dyn ApiStore>,
    live: broadcast::Sender<Event>,
}

impl EventBus {
    pub fn new(store: Arc<dyn ApiStore>) -> Self {
        let (live, _) = broadcast::channel(1024);
        EventBus { store, live }
    }

    /// Durably record an event, then notify subscribers.
    pub fn publish(
        &self,
        kind: &str,
        subject: &str,
        networks: Vec<String>,
        data: serde_json::Value,
    ) -> Result<Event, StoreError> {
        let ev = self.store.append_event(kind, subject, networks, data)?;
        // No receivers is fine: subscribers replay from the log.
        let _ = self.live.send(ev.clone());
        Ok(ev)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.live.subscribe()
    }

    pub fn store(&self) -> &Arc<dyn ApiStore> {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_reopen_and_sequence_continues() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledApiStore::open(sled::open(dir.path()).unwrap()).unwrap();
            for i in 0..3 {
                let e = s
                    .append_event("t", &format!("s{i}"), vec![], serde_json::json!(i))
                    .unwrap();
                assert_eq!(e.seq, i + 1);
            }
            s.put_cursor("c", 2).unwrap();
        }
        let s = SledApiStore::open(sled::open(dir.path()).unwrap()).unwrap();
        assert_eq!(s.last_seq(), 3);
        assert_eq!(s.events_from(2, 10).unwrap().len(), 2);
        assert_eq!(s.get_cursor("c").unwrap(), Some(2));
        let e = s
            .append_event("t", "s3", vec![], serde_json::json!(3))
            .unwrap();
        assert_eq!(e.seq, 4);
    }
}
