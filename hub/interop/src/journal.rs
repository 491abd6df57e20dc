//! The durable journal of contract instances: the current state of each instance and the
//! ordered list of events that produced it. Behind the [`Journal`] trait; [`SledJournal`]
//! writes state and event in one sled transaction and flushes before returning.

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

/// An instance as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredInstance {
    pub contract: Contract,
    /// Number of events applied since creation.
    pub seq: u64,
    /// The id the API shows (`tr_…`, `sw_…`).
    pub api_id: String,
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
}

impl From<sled::Error> for JournalError {
    fn from(e: sled::Error) -> Self {
        JournalError::Io(e.to_string())
    }
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, JournalError> {
    rmp_serde::to_vec_named(v).map_err(|e| JournalError::Corrupt("encode".into(), e.to_string()))
}

fn dec<T: for<'de> Deserialize<'de>>(what: &str, b: &[u8]) -> Result<T, JournalError> {
    rmp_serde::from_slice(b).map_err(|e| JournalError::Corrupt(what.to_owned(), e.to_string()))
}

fn event_key(id: &InstanceId, seq: u64) -> Vec<u8> {
    let mut k = id.0 .0.to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

impl SledJournal {
    pub fn open(db: sled::Db) -> Result<Self, JournalError> {
        Ok(SledJournal {
            instances: db.open_tree("interop.instances")?,
            events: db.open_tree("interop.events")?,
            by_api: db.open_tree("interop.by_api")?,
            db,
        })
    }
}

type TxResult<T> = Result<T, sled::transaction::ConflictableTransactionError<JournalError>>;

impl Journal for SledJournal {
    fn create(&self, inst: &StoredInstance) -> Result<(), JournalError> {
        use sled::Transactional;
        let id = inst.contract.id();
        let value = enc(inst)?;
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
        let value = enc(inst)?;
        let ev = enc(event)?;
        let key = event_key(&id, inst.seq);
        (&self.instances, &self.events)
            .transaction(|(instances, events)| -> TxResult<()> {
                let found = match instances.get(id.0 .0)? {
                    Some(b) => {
                        dec::<StoredInstance>("instance", &b)
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
            .map(|b| dec("instance", &b))
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
            let (_, v) = item?;
            out.push(dec("instance", &v)?);
        }
        Ok(out)
    }

    fn events(&self, id: &InstanceId) -> Result<Vec<ContractEvent>, JournalError> {
        let mut out = Vec::new();
        for item in self.events.scan_prefix(id.0 .0) {
            let (_, v) = item?;
            out.push(dec("event", &v)?);
        }
        Ok(out)
    }
}
