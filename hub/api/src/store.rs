//! Durable API state: idempotency records, the event log, named subscription cursors, the
//! API keys made at run time and each tenant's grants to partners.
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

/// What was answered to the first request under an idempotency key. Written twice: before
/// the operation is created (`status` 0, no response yet: the id it gets), and once it is
/// durable (the answer), so a retry after a crash in between finds the same operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// sha256 of the request body, hex.
    pub body_sha256: String,
    /// 0 while the operation is being created.
    pub status: u16,
    pub response: serde_json::Value,
    /// The (random) id given to the operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_id: Option<String>,
}

/// An API key made at run time. Only its sha256 is kept; the key itself was shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// `key_` and 16 hex digits; not secret.
    pub id: String,
    /// A label for logs and listings.
    pub name: String,
    pub tenant: String,
    pub role: crate::auth::Role,
    /// sha256 of the key, hex.
    pub key_sha256: String,
    pub created_at: u64,
    /// Unix seconds after which the key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// When it was revoked (or rotated away); refused from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
}

impl KeyRecord {
    /// Whether the key is accepted at `now`.
    pub fn usable(&self, now: u64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
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
    /// The tenant owning the subject; `None` for hub-wide events (only providers and
    /// admins see those).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Network names involved, for server-side filtering.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    pub data: serde_json::Value,
}

pub trait ApiStore: Send + Sync + 'static {
    fn get_idempotency(&self, scope: &str) -> Result<Option<IdempotencyRecord>, StoreError>;
    /// Store and flush. Called only after the operation itself is durable.
    fn put_idempotency(&self, scope: &str, rec: &IdempotencyRecord) -> Result<(), StoreError>;
    /// Forget a pending record whose operation was refused (nothing was created).
    fn delete_idempotency(&self, scope: &str) -> Result<(), StoreError>;
    /// Append and flush; returns the stored event with its sequence number.
    fn append_event(
        &self,
        tenant: Option<&str>,
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
    /// Store (or replace) a key record, indexed by its digest; flushed.
    fn put_key(&self, rec: &KeyRecord) -> Result<(), StoreError>;
    fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError>;
    fn key_by_digest(&self, digest: &[u8; 32]) -> Result<Option<KeyRecord>, StoreError>;
    /// Every key record, in id order.
    fn keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// The partner tenants `tenant` granted read access to, sorted.
    fn grants(&self, tenant: &str) -> Result<Vec<String>, StoreError>;
    fn put_grants(&self, tenant: &str, partners: &[String]) -> Result<(), StoreError>;
    /// The tenants that granted `partner` read access, sorted.
    fn grantors(&self, partner: &str) -> Result<Vec<String>, StoreError>;
}

/// sled-backed store. Trees: `idem`, `events` (u64 BE keys), `cursors`, `keys` (by id),
/// `keys.digest` (digest to id), `grants` (tenant to its partners).
pub struct SledApiStore {
    db: sled::Db,
    idem: sled::Tree,
    events: sled::Tree,
    cursors: sled::Tree,
    keys: sled::Tree,
    key_digests: sled::Tree,
    grants: sled::Tree,
    next_seq: AtomicU64,
    append_lock: std::sync::Mutex<()>,
}

impl SledApiStore {
    pub fn open(db: sled::Db) -> Result<Self, StoreError> {
        let idem = db.open_tree("api.idem")?;
        let events = db.open_tree("api.events")?;
        let cursors = db.open_tree("api.cursors")?;
        let keys = db.open_tree("api.keys")?;
        let key_digests = db.open_tree("api.keys.digest")?;
        let grants = db.open_tree("api.grants")?;
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
            keys,
            key_digests,
            grants,
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

    fn delete_idempotency(&self, scope: &str) -> Result<(), StoreError> {
        self.idem.remove(scope.as_bytes())?;
        self.flush()
    }

    fn append_event(
        &self,
        tenant: Option<&str>,
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
            tenant: tenant.map(str::to_owned),
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

    fn put_key(&self, rec: &KeyRecord) -> Result<(), StoreError> {
        let digest = hex::decode(&rec.key_sha256)
            .map_err(|_| StoreError::Corrupt(format!("key `{}`: digest is not hex", rec.id)))?;
        self.keys.insert(rec.id.as_bytes(), encode(rec)?)?;
        self.key_digests.insert(digest, rec.id.as_bytes())?;
        self.flush()
    }

    fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.keys
            .get(id.as_bytes())?
            .map(|v| decode(&v, "key record"))
            .transpose()
    }

    fn key_by_digest(&self, digest: &[u8; 32]) -> Result<Option<KeyRecord>, StoreError> {
        match self.key_digests.get(digest)? {
            Some(id) => self.get_key(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.keys
            .iter()
            .map(|kv| decode(&kv?.1, "key record"))
            .collect()
    }

    fn grants(&self, tenant: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .grants
            .get(tenant.as_bytes())?
            .map(|v| decode(&v, "grants"))
            .transpose()?
            .unwrap_or_default())
    }

    fn put_grants(&self, tenant: &str, partners: &[String]) -> Result<(), StoreError> {
        let mut sorted = partners.to_vec();
        sorted.sort();
        sorted.dedup();
        self.grants.insert(tenant.as_bytes(), encode(&sorted)?)?;
        self.flush()
    }

    fn grantors(&self, partner: &str) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for kv in self.grants.iter() {
            let (k, v) = kv?;
            let partners: Vec<String> = decode(&v, "grants")?;
            if partners.iter().any(|p| p == partner) {
                out.push(String::from_utf8_lossy(&k).into_owned());
            }
        }
        Ok(out)
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

    /// Durably record a hub-wide event (no tenant), then notify subscribers.
    pub fn publish(
        &self,
        kind: &str,
        subject: &str,
        networks: Vec<String>,
        data: serde_json::Value,
    ) -> Result<Event, StoreError> {
        self.publish_for(None, kind, subject, networks, data)
    }

    /// Durably record an event about an object of `tenant`, then notify subscribers.
    pub fn publish_for(
        &self,
        tenant: Option<&str>,
        kind: &str,
        subject: &str,
        networks: Vec<String>,
        data: serde_json::Value,
    ) -> Result<Event, StoreError> {
        let ev = self
            .store
            .append_event(tenant, kind, subject, networks, data)?;
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
                    .append_event(None, "t", &format!("s{i}"), vec![], serde_json::json!(i))
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
            .append_event(Some("acme"), "t", "s3", vec![], serde_json::json!(3))
            .unwrap();
        assert_eq!(e.seq, 4);
        assert_eq!(e.tenant.as_deref(), Some("acme"));
    }

    #[test]
    fn keys_and_grants_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let rec = KeyRecord {
            id: "key_1".into(),
            name: "ci".into(),
            tenant: "acme".into(),
            role: crate::auth::Role::Customer,
            key_sha256: hex::encode(crate::auth::key_digest("isk_x")),
            created_at: 10,
            expires_at: Some(20),
            revoked_at: None,
        };
        {
            let s = SledApiStore::open(sled::open(dir.path()).unwrap()).unwrap();
            s.put_key(&rec).unwrap();
            s.put_grants("acme", &["audit".into(), "audit".into()])
                .unwrap();
        }
        let s = SledApiStore::open(sled::open(dir.path()).unwrap()).unwrap();
        let found = s
            .key_by_digest(&crate::auth::key_digest("isk_x"))
            .unwrap()
            .unwrap();
        assert_eq!(found, rec);
        assert!(found.usable(19) && !found.usable(20));
        assert_eq!(s.grants("acme").unwrap(), vec!["audit".to_owned()]);
        assert_eq!(s.grantors("audit").unwrap(), vec!["acme".to_owned()]);
        assert!(s.grantors("acme").unwrap().is_empty());
    }
}
