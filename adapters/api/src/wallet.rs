//! The keys an adapter may sign with on someone's behalf.
//!
//! A leg locked by [`isthmus_lock_contracts::Locker::HubWallet`] or
//! [`isthmus_lock_contracts::Locker::ProviderVault`] is signed by the hub, with a key the hub's
//! wallet service keeps (encrypted at rest, in `hub/wallet`). Adapters never own key
//! material: they ask a [`Wallet`] for the key of an address when they need to sign, and
//! drop it after. A leg locked by `External` is signed by its owner, outside the hub.

use crate::error::AdapterError;
use crate::types::SignatureScheme;
use isthmus_core::Keypair;
use isthmus_lock_contracts::Address;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use zeroize::Zeroizing;

/// A secret the wallet hands to an adapter for one signing operation. `Debug` never shows
/// the secret.
#[derive(Clone)]
pub enum SecretKey {
    Ed25519(Keypair),
    /// A secp256k1 secret scalar (EVM accounts, Bitcoin-family keys).
    Secp256k1(Zeroizing<[u8; 32]>),
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretKey::Ed25519(k) => write!(f, "SecretKey::Ed25519({})", k.id()),
            SecretKey::Secp256k1(_) => f.write_str("SecretKey::Secp256k1(<redacted>)"),
        }
    }
}

impl SecretKey {
    pub fn scheme(&self) -> SignatureScheme {
        match self {
            SecretKey::Ed25519(_) => SignatureScheme::Ed25519,
            SecretKey::Secp256k1(_) => SignatureScheme::Secp256k1Ecdsa,
        }
    }
}

/// Where adapters get signing keys. Implementations: the hub's encrypted wallet service,
/// and [`MemoryWallet`] for tests and `hub up`'s throwaway demo accounts.
pub trait Wallet: Send + Sync + 'static {
    /// The key that controls `address` under `scheme`, or `None` when the hub does not
    /// keep it (the owner signs for themselves). An error means the wallet could not be
    /// read (locked, corrupt), not that the key is absent.
    fn key_for(
        &self,
        scheme: SignatureScheme,
        address: &Address,
    ) -> Result<Option<SecretKey>, AdapterError>;
}

impl<W: Wallet + ?Sized> Wallet for Arc<W> {
    fn key_for(
        &self,
        scheme: SignatureScheme,
        address: &Address,
    ) -> Result<Option<SecretKey>, AdapterError> {
        (**self).key_for(scheme, address)
    }
}

/// An in-memory wallet: keys by (scheme, address). Holds secrets in process memory only.
#[derive(Default, Clone)]
pub struct MemoryWallet {
    keys: Arc<RwLock<HashMap<(SignatureScheme, Address), SecretKey>>>,
}

impl MemoryWallet {
    pub fn new() -> MemoryWallet {
        MemoryWallet::default()
    }

    /// Keep `key` for `address`.
    pub fn insert(&self, address: Address, key: SecretKey) {
        let scheme = key.scheme();
        if let Ok(mut m) = self.keys.write() {
            m.insert((scheme, address), key);
        }
    }
}

impl Wallet for MemoryWallet {
    fn key_for(
        &self,
        scheme: SignatureScheme,
        address: &Address,
    ) -> Result<Option<SecretKey>, AdapterError> {
        let m = self.keys.read().map_err(|_| AdapterError::Wallet {
            reason: "wallet lock poisoned".into(),
        })?;
        Ok(m.get(&(scheme, address.clone())).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_wallet_finds_keys_by_scheme_and_address() {
        let w = MemoryWallet::new();
        let k = Keypair::dev("alice");
        let addr = Address(k.id().to_string());
        w.insert(addr.clone(), SecretKey::Ed25519(k.clone()));
        let got = w.key_for(SignatureScheme::Ed25519, &addr).unwrap();
        assert!(matches!(got, Some(SecretKey::Ed25519(ref g)) if g.id() == k.id()));
        assert!(w
            .key_for(SignatureScheme::Secp256k1Ecdsa, &addr)
            .unwrap()
            .is_none());
        assert!(w
            .key_for(SignatureScheme::Ed25519, &Address("other".into()))
            .unwrap()
            .is_none());
        let dbg = format!("{:?}", SecretKey::Secp256k1(Zeroizing::new([7u8; 32])));
        assert!(!dbg.contains('7'), "secret leaked into Debug: {dbg}");
    }
}
