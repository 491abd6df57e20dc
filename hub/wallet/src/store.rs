//! Where sealed entries live. Values handed to a store are already encrypted.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("wallet store i/o: {0}")]
    Io(String),
}

/// A durable key-value store for sealed entries. `put` returns only after the write is
/// on disk.
pub trait SealedStore: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError>;
}

/// A sled tree (the hub keeps its wallet in its own data directory).
pub struct SledSealedStore {
    tree: sled::Tree,
}

impl SledSealedStore {
    pub fn new(tree: sled::Tree) -> SledSealedStore {
        SledSealedStore { tree }
    }
}

fn io(e: sled::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

impl SealedStore for SledSealedStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key).map_err(io)?.map(|v| v.to_vec()))
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tree.insert(key, value).map_err(io)?;
        self.tree.flush().map_err(io)?;
        Ok(())
    }
    fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        self.tree
            .scan_prefix(prefix)
            .keys()
            .map(|k| k.map(|k| k.to_vec()).map_err(io))
            .collect()
    }
}

/// An in-memory store, for tests and throwaway demo wallets.
#[derive(Default)]
pub struct MemorySealedStore {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemorySealedStore {
    /// A copy of everything stored (tests compare before/after).
    pub fn snapshot(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.map.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

fn poisoned() -> StoreError {
    StoreError::Io("memory store lock poisoned".into())
}

impl SealedStore for MemorySealedStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map.lock().map_err(|_| poisoned())?.get(key).cloned())
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.map
            .lock()
            .map_err(|_| poisoned())?
            .insert(key.to_vec(), value.to_vec());
        Ok(())
    }
    fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self
            .map
            .lock()
            .map_err(|_| poisoned())?
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }
}
