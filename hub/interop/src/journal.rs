//! The durable journal of contract instances: the current state of each instance and the
//! ordered list of events that produced it. Behind the [`Journal`] trait; [`SledJournal`]
//! writes state and event in one sled transaction and flushes before returning.
//!
//! A journal opened with [`SledJournal::open_sealed`] encrypts every instance and event at
//! rest (XChaCha20-Poly1305, the record's tree and key as associated data), because a
//! swap's state holds its preimage before the claim makes it public. The api-id index
//! (public ids to instance ids) stays in clear.

use crate::contract::{Contract, ContractEvent};
use isthmus_lock_contracts::InstanceId;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal i/o failed: {0}")]
    Io(String),
    #[error("journal record for {0} is corrupt: {1}")]
    Corrupt(String, String),
    /// Another writer advanced the instance first; reload and retry.
    #[error("instance {id} moved from sequence {expected} to {found}")]
    Conflict {
        id: InstanceId,
        expected: u64,
        found: u64,
    },
    #[error("instance {0} already exists")]
    Exists(InstanceId),
}

impl JournalError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, JournalError::Io(_) | JournalError::Conflict { .. })
    }
}

/// The tenant of objects that name none: made before tenants existed, or through the
/// service directly rather than the API.
pub const DEFAULT_TENANT: &str = "default";

pub(crate) fn default_tenant() -> String {
    DEFAULT_TENANT.to_owned()
}

/// An instance as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredInstance {
    pub contract: Contract,
    /// Number of events applied since creation.
    pub seq: u64,
    /// The id the API shows (`tr_…`, `sw_…`).
    pub api_id: String,
    /// The tenant that owns the operation; only its keys (and its partners') read it.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    pub created_at: u64,
    pub updated_at: u64,
}

pub trait Journal: Send + Sync + 'static {
    /// Store a new instance (sequence 0). Refuses an existing id.
    fn create(&self, inst: &StoredInstance) -> Result<(), JournalError>;
    /// Store `inst` (whose `seq` is one more than before) and `event`, atomically, only if
    /// the stored sequence is still `inst.seq - 1`. Durable when it returns.
    fn append(&self, inst: &StoredInstance, event: &ContractEvent) -> Result<(), JournalError>;
    fn get(&self, id: &InstanceId) -> Result<Option<StoredInstance>, JournalError>;
    fn get_by_api_id(&self, api_id: &str) -> Result<Option<StoredInstance>, JournalError>;
    /// Every instance, in id order.
    fn all(&self) -> Result<Vec<StoredInstance>, JournalError>;
    /// The events of one instance, in order.
    fn events(&self, id: &InstanceId) -> Result<Vec<ContractEvent>, JournalError>;
}

pub struct SledJournal {
    db: sled::Db,
    instances: sled::Tree,
    events: sled::Tree,
    by_api: sled::Tree,
    codec: Codec,
}

impl From<sled::Error> for JournalError {
    fn from(e: sled::Error) -> Self {
        JournalError::Io(e.to_string())
    }
}

const SEAL_AAD: &[u8] = b"isthmus/journal/v1\x00";
const NONCE_LEN: usize = 24;

/// Encodes records, sealing them when the journal has a key.
#[derive(Clone)]
struct Codec {
    cipher: Option<std::sync::Arc<chacha20poly1305::XChaCha20Poly1305>>,
}

impl Codec {
    fn aad(tree: &str, key: &[u8]) -> Vec<u8> {
        let mut a = SEAL_AAD.to_vec();
        a.extend_from_slice(tree.as_bytes());
        a.push(0);
        a.extend_from_slice(key);
        a
    }

    fn enc<T: Serialize>(&self, tree: &str, key: &[u8], v: &T) -> Result<Vec<u8>, JournalError> {
        use chacha20poly1305::aead::{Aead, Payload};
        use rand::RngCore;
        let plain = zeroize::Zeroizing::new(
            rmp_serde::to_vec_named(v)
                .map_err(|e| JournalError::Corrupt("encode".into(), e.to_string()))?,
        );
        let Some(cipher) = &self.cipher else {
            return Ok(plain.to_vec());
        };
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = Self::aad(tree, key);
        let ct = cipher
            .encrypt(
                &chacha20poly1305::XNonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .map_err(|_| JournalError::Corrupt(tree.to_owned(), "sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn dec<T: for<'de> Deserialize<'de>>(
        &self,
        tree: &str,
        key: &[u8],
        b: &[u8],
    ) -> Result<T, JournalError> {
        use chacha20poly1305::aead::{Aead, Payload};
        let corrupt = |why: &str| JournalError::Corrupt(tree.to_owned(), why.to_owned());
        let plain = match &self.cipher {
            None => zeroize::Zeroizing::new(b.to_vec()),
            Some(cipher) => {
                if b.len() < NONCE_LEN {
                    return Err(corrupt("sealed record too short"));
                }
                let (n, ct) = b.split_at(NONCE_LEN);
                let mut nonce = [0u8; NONCE_LEN];
                nonce.copy_from_slice(n);
                let aad = Self::aad(tree, key);
                zeroize::Zeroizing::new(
                    cipher
                        .decrypt(
                            &chacha20poly1305::XNonce::from(nonce),
                            Payload { msg: ct, aad: &aad },
                        )
                        .map_err(|_| {
                            corrupt("sealed record does not authenticate (wrong key or tampered)")
                        })?,
                )
            }
        };
        rmp_serde::from_slice(&plain).map_err(|e| corrupt(&e.to_string()))
    }
}

const INSTANCES: &str = "interop.instances";
const EVENTS: &str = "interop.events";

fn event_key(id: &InstanceId, seq: u64) -> Vec<u8> {
    let mut k = id.0 .0.to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

impl SledJournal {
    /// A journal that stores records in clear (tests, tools).
    pub fn open(db: sled::Db) -> Result<Self, JournalError> {
        Self::with_codec(db, Codec { cipher: None })
    }

    /// A journal that seals every instance and event under `key` (the hub derives it from
    /// its wallet service). Opening an existing journal with another key fails on the first
    /// read with a `Corrupt` error; nothing is overwritten.
    pub fn open_sealed(db: sled::Db, key: &[u8; 32]) -> Result<Self, JournalError> {
        use chacha20poly1305::KeyInit;
        let cipher = chacha20poly1305::XChaCha20Poly1305::new(key.into());
        let j = Self::with_codec(
            db,
            Codec {
                cipher: Some(std::sync::Arc::new(cipher)),
            },
        )?;
        // Refuse a wrong key up front: the first stored instance must open.
        if let Some(item) = j.instances.iter().next() {
            let (k, v) = item?;
            j.codec.dec::<StoredInstance>(INSTANCES, &k, &v)?;
        }
        Ok(j)
    }

    fn with_codec(db: sled::Db, codec: Codec) -> Result<Self, JournalError> {
        Ok(SledJournal {
            instances: db.open_tree(INSTANCES)?,
            events: db.open_tree(EVENTS)?,
            by_api: db.open_tree("interop.by_api")?,
            db,
            codec,
        })
    }
}

type TxResult<T> = Result<T, sled::transaction::ConflictableTransactionError<JournalError>>;

impl Journal for SledJournal {
    fn create(&self, inst: &StoredInstance) -> Result<(), JournalError> {
        use sled::Transactional;
        let id = inst.contract.id();
        let value = self.codec.enc(INSTANCES, &id.0 .0, inst)?;
        (&self.instances, &self.by_api)
            .transaction(|(instances, by_api)| -> TxResult<()> {
                if instances.get(id.0 .0)?.is_some() {
                    return Err(sled::transaction::ConflictableTransactionError::Abort(
                        JournalError::Exists(id),
                    ));
                }
                instances.insert(&id.0 .0, value.clone())?;
                by_api.insert(inst.api_id.as_bytes(), &id.0 .0)?;
                Ok(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Abort(e) => e,
                sled::transaction::TransactionError::Storage(e) => e.into(),
            })?;
        self.db.flush()?;
        Ok(())
    }

    fn append(&self, inst: &StoredInstance, event: &ContractEvent) -> Result<(), JournalError> {
        use sled::Transactional;
        let id = inst.contract.id();
        let expected = inst.seq.saturating_sub(1);
        let value = self.codec.enc(INSTANCES, &id.0 .0, inst)?;
        let key = event_key(&id, inst.seq);
        let ev = self.codec.enc(EVENTS, &key, event)?;
        (&self.instances, &self.events)
            .transaction(|(instances, events)| -> TxResult<()> {
                let found = match instances.get(id.0 .0)? {
                    Some(b) => {
                        self.codec
                            .dec::<StoredInstance>(INSTANCES, &id.0 .0, &b)
                            .map_err(sled::transaction::ConflictableTransactionError::Abort)?
                            .seq
                    }
                    None => u64::MAX,
                };
                if found != expected {
                    return Err(sled::transaction::ConflictableTransactionError::Abort(
                        JournalError::Conflict {
                            id,
                            expected,
                            found,
                        },
                    ));
                }
                instances.insert(&id.0 .0, value.clone())?;
                events.insert(key.clone(), ev.clone())?;
                Ok(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Abort(e) => e,
                sled::transaction::TransactionError::Storage(e) => e.into(),
            })?;
        self.db.flush()?;
        Ok(())
    }

    fn get(&self, id: &InstanceId) -> Result<Option<StoredInstance>, JournalError> {
        self.instances
            .get(id.0 .0)?
            .map(|b| self.codec.dec(INSTANCES, &id.0 .0, &b))
            .transpose()
    }

    fn get_by_api_id(&self, api_id: &str) -> Result<Option<StoredInstance>, JournalError> {
        match self.by_api.get(api_id.as_bytes())? {
            Some(raw) => {
                let arr: [u8; 32] = raw.as_ref().try_into().map_err(|_| {
                    JournalError::Corrupt(api_id.to_owned(), "index entry is not 32 bytes".into())
                })?;
                self.get(&InstanceId(isthmus_core::Hash32(arr)))
            }
            None => Ok(None),
        }
    }

    fn all(&self) -> Result<Vec<StoredInstance>, JournalError> {
        let mut out = Vec::new();
        for item in self.instances.iter() {
            let (k, v) = item?;
            out.push(self.codec.dec(INSTANCES, &k, &v)?);
        }
        Ok(out)
    }

    fn events(&self, id: &InstanceId) -> Result<Vec<ContractEvent>, JournalError> {
        let mut out = Vec::new();
        for item in self.events.scan_prefix(id.0 .0) {
            let (k, v) = item?;
            out.push(self.codec.dec(EVENTS, &k, &v)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(api_id: &str) -> StoredInstance {
        StoredInstance {
            contract: Contract::sample_two_phase(api_id.as_bytes()),
            seq: 0,
            api_id: api_id.into(),
            tenant: DEFAULT_TENANT.into(),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn sealed_journal_keeps_nothing_in_clear_and_refuses_a_wrong_key_or_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let key = [9u8; 32];
        let j = SledJournal::open_sealed(db.clone(), &key).unwrap();
        let mut inst = instance("tr_markermarker");
        let id = inst.contract.id();
        j.create(&inst).unwrap();
        inst.seq = 1;
        let ev = ContractEvent::tick(inst.contract.kind(), 42);
        j.append(&inst, &ev).unwrap();
        assert_eq!(j.get(&id).unwrap().unwrap(), inst);
        assert_eq!(j.events(&id).unwrap(), vec![ev]);
        assert_eq!(j.get_by_api_id("tr_markermarker").unwrap().unwrap(), inst);

        for tree in [INSTANCES, EVENTS] {
            for item in db.open_tree(tree).unwrap().iter() {
                let (_, v) = item.unwrap();
                assert!(
                    !v.windows(6).any(|w| w == b"marker" || w == b"from1\0"),
                    "clear text in {tree}"
                );
                assert!(!v.windows(5).any(|w| w == b"from1"), "leg data in clear");
            }
        }

        // Wrong key: refused at open, nothing written.
        let before: Vec<_> = db.open_tree(INSTANCES).unwrap().iter().collect();
        assert!(matches!(
            SledJournal::open_sealed(db.clone(), &[8u8; 32]),
            Err(JournalError::Corrupt(..))
        ));
        let after: Vec<_> = db.open_tree(INSTANCES).unwrap().iter().collect();
        assert_eq!(before.len(), after.len());

        // A record moved to another key does not open (associated data binds it).
        let tree = db.open_tree(INSTANCES).unwrap();
        let raw = tree.get(id.0 .0).unwrap().unwrap();
        let other = instance("tr_other");
        j.create(&other).unwrap();
        tree.insert(other.contract.id().0 .0, raw.clone()).unwrap();
        assert!(j.get(&other.contract.id()).is_err());
        // A flipped bit does not open.
        let mut bad = raw.to_vec();
        bad[30] ^= 1;
        tree.insert(id.0 .0, bad).unwrap();
        assert!(matches!(j.get(&id), Err(JournalError::Corrupt(..))));
    }

    #[test]
    fn clear_journal_still_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let j = SledJournal::open(sled::open(dir.path()).unwrap()).unwrap();
        let inst = instance("tr_plain");
        j.create(&inst).unwrap();
        assert_eq!(j.all().unwrap(), vec![inst]);
    }
}
