//! The hub's wallet service: signing keys the hub keeps for customers (legs locked by
//! `HubWallet`) and provider vaults, encrypted at rest, as a BaaS provider keeps them.
//!
//! Every secret is sealed with XChaCha20-Poly1305 under a key-encryption key derived from
//! the operator's passphrase with Argon2id; the associated data binds each ciphertext to its
//! (scheme, address) or blob label, so an entry copied onto another address does not open.
//! A wrong passphrase is refused at open time by a sealed check value, before anything is
//! written. Adapters get keys through the [`isthmus_adapter_api::Wallet`] trait, one signing
//! at a time; this crate never logs or prints a secret, and `Debug` shows addresses only.
//! Storage sits behind [`SealedStore`]; every write is flushed before it is acknowledged.

mod store;

pub use store::{MemorySealedStore, SealedStore, SledSealedStore, StoreError};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use isthmus_adapter_api::{AdapterError, SecretKey, SignatureScheme, Wallet};
use isthmus_core::Keypair;
use isthmus_lock_contracts::Address;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use zeroize::Zeroizing;

const META_KEY: &[u8] = b"meta/kdf";
const CHECK_PLAINTEXT: &[u8] = b"isthmus wallet check v1";
const AAD_PREFIX: &[u8] = b"isthmus/wallet/v1\x00";
const NONCE_LEN: usize = 24;

/// Why a wallet operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// The passphrase does not open this wallet. Retrying with the same one cannot help.
    #[error("the wallet passphrase is wrong (the stored check value does not open)")]
    WrongPassphrase,
    #[error("the wallet passphrase is empty")]
    EmptyPassphrase,
    /// A sealed entry failed authentication: the store was tampered with or corrupted.
    #[error("wallet entry `{0}` does not authenticate (tampered or corrupt)")]
    Corrupt(String),
    #[error("address {address} already holds a different {scheme:?} key")]
    Conflict {
        address: String,
        scheme: SignatureScheme,
    },
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("key derivation failed: {0}")]
    Kdf(String),
    /// The storage layer failed; a retry may help.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Argon2id cost parameters, fixed when the wallet is created and stored beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

impl KdfParams {
    /// The production default: Argon2id with 19 MiB, 2 passes, 1 lane.
    pub const DEFAULT: KdfParams = KdfParams {
        m_cost: 19 * 1024,
        t_cost: 2,
        p_cost: 1,
    };
    /// Cheap parameters for tests and throwaway demo wallets only.
    pub const INSECURE_FAST: KdfParams = KdfParams {
        m_cost: 64,
        t_cost: 1,
        p_cost: 1,
    };
}

#[derive(Serialize, Deserialize)]
struct Meta {
    version: u32,
    salt: [u8; 16],
    params: KdfParams,
    #[serde(with = "serde_bytes")]
    check: Vec<u8>,
}

/// A sealed secret as stored: the scheme tag and the raw secret bytes.
#[derive(Serialize, Deserialize)]
struct Entry {
    scheme: u8,
    #[serde(with = "serde_bytes")]
    secret: Vec<u8>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

fn scheme_tag(s: SignatureScheme) -> u8 {
    match s {
        SignatureScheme::Ed25519 => 1,
        SignatureScheme::Secp256k1Ecdsa => 2,
        SignatureScheme::Secp256k1Schnorr => 3,
    }
}

fn key_slot(scheme: SignatureScheme, address: &Address) -> Vec<u8> {
    let mut k = b"k/".to_vec();
    k.push(scheme_tag(scheme));
    k.push(b'/');
    k.extend_from_slice(address.0.as_bytes());
    k
}

fn blob_slot(label: &str) -> Vec<u8> {
    let mut k = b"b/".to_vec();
    k.extend_from_slice(label.as_bytes());
    k
}

fn owner_label(address: &Address) -> String {
    format!("owner/{}", address.0)
}

fn aad(slot: &[u8]) -> Vec<u8> {
    let mut a = AAD_PREFIX.to_vec();
    a.extend_from_slice(slot);
    a
}

/// The EVM address of a secp256k1 secret: `0x` + the last 20 bytes of keccak256 of the
/// uncompressed public key, lowercase hex.
pub fn evm_address(secret: &[u8; 32]) -> Result<Address, WalletError> {
    use sha3::{Digest, Keccak256};
    let sk = k256::SecretKey::from_slice(secret)
        .map_err(|_| WalletError::InvalidKey("not a valid secp256k1 scalar".into()))?;
    let point =
        k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&sk.public_key(), false);
    let hash = Keccak256::digest(&point.as_bytes()[1..]);
    Ok(Address(format!("0x{}", hex::encode(&hash[12..]))))
}

/// The compressed (33-byte) public key of a secp256k1 secret.
pub fn secp256k1_public(secret: &[u8; 32]) -> Result<[u8; 33], WalletError> {
    let sk = k256::SecretKey::from_slice(secret)
        .map_err(|_| WalletError::InvalidKey("not a valid secp256k1 scalar".into()))?;
    let point =
        k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&sk.public_key(), true);
    let mut out = [0u8; 33];
    out.copy_from_slice(point.as_bytes());
    Ok(out)
}

/// The wallet service. Cheap to clone; share one per hub.
#[derive(Clone)]
pub struct WalletService {
    store: Arc<dyn SealedStore>,
    cipher: Arc<XChaCha20Poly1305>,
}

impl std::fmt::Debug for WalletService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WalletService(<sealed>)")
    }
}

fn derive_kek(
    passphrase: &[u8],
    salt: &[u8; 16],
    p: KdfParams,
) -> Result<Zeroizing<[u8; 32]>, WalletError> {
    let params = argon2::Params::new(p.m_cost, p.t_cost, p.p_cost, Some(32))
        .map_err(|e| WalletError::Kdf(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase, salt, out.as_mut())
        .map_err(|e| WalletError::Kdf(e.to_string()))?;
    Ok(out)
}

impl WalletService {
    /// Open the wallet in `store`, creating it with `params` on first use. A wrong
    /// passphrase is refused before anything is written.
    pub fn open(
        store: Arc<dyn SealedStore>,
        passphrase: &[u8],
        params: KdfParams,
    ) -> Result<WalletService, WalletError> {
        if passphrase.is_empty() {
            return Err(WalletError::EmptyPassphrase);
        }
        match store.get(META_KEY)? {
            Some(raw) => {
                let meta: Meta = rmp_serde::from_slice(&raw)
                    .map_err(|_| WalletError::Corrupt("meta/kdf".into()))?;
                let kek = derive_kek(passphrase, &meta.salt, meta.params)?;
                let svc = WalletService {
                    store,
                    cipher: Arc::new(XChaCha20Poly1305::new(kek.as_ref().into())),
                };
                let check = svc
                    .open_sealed(META_KEY, &meta.check)
                    .map_err(|_| WalletError::WrongPassphrase)?;
                if check.as_slice() != CHECK_PLAINTEXT {
                    return Err(WalletError::WrongPassphrase);
                }
                Ok(svc)
            }
            None => {
                let mut salt = [0u8; 16];
                OsRng.fill_bytes(&mut salt);
                let kek = derive_kek(passphrase, &salt, params)?;
                let svc = WalletService {
                    store,
                    cipher: Arc::new(XChaCha20Poly1305::new(kek.as_ref().into())),
                };
                let check = svc.seal(META_KEY, CHECK_PLAINTEXT)?;
                let meta = Meta {
                    version: 1,
                    salt,
                    params,
                    check,
                };
                let raw = rmp_serde::to_vec(&meta)
                    .map_err(|e| WalletError::Corrupt(format!("meta encoding: {e}")))?;
                svc.store.put(META_KEY, &raw)?;
                tracing::info!("created a new encrypted wallet");
                Ok(svc)
            }
        }
    }

    fn seal(&self, slot: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, WalletError> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let ad = aad(slot);
        let ct = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &ad,
                },
            )
            .map_err(|_| WalletError::Corrupt(String::from_utf8_lossy(slot).into_owned()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn open_sealed(&self, slot: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, WalletError> {
        let corrupt = || WalletError::Corrupt(String::from_utf8_lossy(slot).into_owned());
        if sealed.len() < NONCE_LEN {
            return Err(corrupt());
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(nonce);
        let ad = aad(slot);
        self.cipher
            .decrypt(&XNonce::from(n), Payload { msg: ct, aad: &ad })
            .map(Zeroizing::new)
            .map_err(|_| corrupt())
    }

    fn secret_bytes(key: &SecretKey) -> Zeroizing<Vec<u8>> {
        match key {
            SecretKey::Ed25519(k) => Zeroizing::new(k.secret_seed().to_vec()),
            SecretKey::Secp256k1(s) => Zeroizing::new(s.to_vec()),
        }
    }

    /// Keep `key` for `address`. Idempotent for the same key; a different key for an
    /// address that already has one is refused and changes nothing.
    pub fn import(&self, address: &Address, key: &SecretKey) -> Result<(), WalletError> {
        if let SecretKey::Secp256k1(s) = key {
            secp256k1_public(s)?;
        }
        let scheme = key.scheme();
        if let Some(existing) = self.load(scheme, address)? {
            if Self::secret_bytes(&existing) == Self::secret_bytes(key) {
                return Ok(());
            }
            return Err(WalletError::Conflict {
                address: address.0.clone(),
                scheme,
            });
        }
        let slot = key_slot(scheme, address);
        let entry = Entry {
            scheme: scheme_tag(scheme),
            secret: Self::secret_bytes(key).to_vec(),
        };
        let plain = Zeroizing::new(
            rmp_serde::to_vec(&entry).map_err(|e| WalletError::InvalidKey(e.to_string()))?,
        );
        let sealed = self.seal(&slot, &plain)?;
        self.store.put(&slot, &sealed)?;
        Ok(())
    }

    /// Create a fresh ed25519 account key; returns its address (the `isth_` id).
    pub fn generate_ed25519(&self) -> Result<Address, WalletError> {
        let k = Keypair::generate();
        let address = Address(k.id().to_string());
        self.import(&address, &SecretKey::Ed25519(k))?;
        Ok(address)
    }

    /// Create a fresh secp256k1 key for an EVM account; returns its `0x` address.
    pub fn generate_evm(&self) -> Result<Address, WalletError> {
        let secret = loop {
            let mut s = Zeroizing::new([0u8; 32]);
            OsRng.fill_bytes(s.as_mut());
            if secp256k1_public(&s).is_ok() {
                break s;
            }
        };
        let address = evm_address(&secret)?;
        self.import(&address, &SecretKey::Secp256k1(secret))?;
        Ok(address)
    }

    fn load(
        &self,
        scheme: SignatureScheme,
        address: &Address,
    ) -> Result<Option<SecretKey>, WalletError> {
        let slot = key_slot(scheme, address);
        let Some(sealed) = self.store.get(&slot)? else {
            return Ok(None);
        };
        let plain = self.open_sealed(&slot, &sealed)?;
        let entry: Entry = rmp_serde::from_slice(&plain)
            .map_err(|_| WalletError::Corrupt(String::from_utf8_lossy(&slot).into_owned()))?;
        if entry.scheme != scheme_tag(scheme) || entry.secret.len() != 32 {
            return Err(WalletError::Corrupt(
                String::from_utf8_lossy(&slot).into_owned(),
            ));
        }
        let mut s = Zeroizing::new([0u8; 32]);
        s.copy_from_slice(&entry.secret);
        Ok(Some(match scheme {
            SignatureScheme::Ed25519 => SecretKey::Ed25519(Keypair::from_seed(*s)),
            _ => SecretKey::Secp256k1(s),
        }))
    }

    /// Every address the wallet keeps a key for, with its scheme.
    pub fn addresses(&self) -> Result<Vec<(SignatureScheme, Address)>, WalletError> {
        let mut out = Vec::new();
        for key in self.store.keys_with_prefix(b"k/")? {
            if key.len() < 4 {
                continue;
            }
            let scheme = match key[2] {
                1 => SignatureScheme::Ed25519,
                2 => SignatureScheme::Secp256k1Ecdsa,
                3 => SignatureScheme::Secp256k1Schnorr,
                _ => continue,
            };
            out.push((
                scheme,
                Address(String::from_utf8_lossy(&key[4..]).into_owned()),
            ));
        }
        Ok(out)
    }

    /// Seal an arbitrary secret (e.g. an HTLC preimage the hub made for a customer) under
    /// `label`. Overwrites an earlier blob with the same label.
    pub fn seal_blob(&self, label: &str, secret: &[u8]) -> Result<(), WalletError> {
        let slot = blob_slot(label);
        let sealed = self.seal(&slot, secret)?;
        self.store.put(&slot, &sealed)?;
        Ok(())
    }

    /// A 32-byte data-encryption key for another store (e.g. the interop journal), made
    /// at random on first use and kept sealed under `label`.
    pub fn data_key(&self, label: &str) -> Result<Zeroizing<[u8; 32]>, WalletError> {
        let slot = format!("data-key/{label}");
        let raw = match self.open_blob(&slot)? {
            Some(raw) => raw,
            None => {
                let mut fresh = Zeroizing::new([0u8; 32]);
                OsRng.fill_bytes(fresh.as_mut());
                self.seal_blob(&slot, fresh.as_ref())?;
                Zeroizing::new(fresh.to_vec())
            }
        };
        let mut out = Zeroizing::new([0u8; 32]);
        if raw.len() != 32 {
            return Err(WalletError::Corrupt(slot));
        }
        out.copy_from_slice(&raw);
        Ok(out)
    }

    /// Record that the hub holds `address`'s key for `tenant` (replacing an earlier
    /// owner): only that tenant's requests may move the account. Sealed like a key, so an
    /// owner entry copied onto another address does not open.
    pub fn set_owner(&self, address: &Address, tenant: &str) -> Result<(), WalletError> {
        self.seal_blob(&owner_label(address), tenant.as_bytes())
    }

    /// The tenant `address`'s key is held for, if one was recorded.
    pub fn owner(&self, address: &Address) -> Result<Option<String>, WalletError> {
        Ok(self
            .open_blob(&owner_label(address))?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Open the blob sealed under `label`.
    pub fn open_blob(&self, label: &str) -> Result<Option<Zeroizing<Vec<u8>>>, WalletError> {
        let slot = blob_slot(label);
        match self.store.get(&slot)? {
            None => Ok(None),
            Some(sealed) => self.open_sealed(&slot, &sealed).map(Some),
        }
    }
}

impl Wallet for WalletService {
    fn key_for(
        &self,
        scheme: SignatureScheme,
        address: &Address,
    ) -> Result<Option<SecretKey>, AdapterError> {
        self.load(scheme, address)
            .map_err(|e| AdapterError::Wallet {
                reason: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_mem(store: &Arc<MemorySealedStore>, pass: &[u8]) -> Result<WalletService, WalletError> {
        WalletService::open(store.clone(), pass, KdfParams::INSECURE_FAST)
    }

    #[test]
    fn evm_address_matches_the_known_vector() {
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(
            evm_address(&one).unwrap().0,
            "0x7e5f4552091a69125d5dfcb7b8c2659029395bdf"
        );
        assert!(evm_address(&[0u8; 32]).is_err(), "zero is not a secret key");
    }

    #[test]
    fn keys_survive_reopen_and_wrong_passphrase_changes_nothing() {
        let store = Arc::new(MemorySealedStore::default());
        let w = open_mem(&store, b"correct horse").unwrap();
        let ed = w.generate_ed25519().unwrap();
        let evm = w.generate_evm().unwrap();
        let before = store.snapshot();

        let err = open_mem(&store, b"wrong").unwrap_err();
        assert!(matches!(err, WalletError::WrongPassphrase), "{err}");
        assert_eq!(store.snapshot(), before, "a refused open wrote something");
        assert!(matches!(
            open_mem(&store, b"").unwrap_err(),
            WalletError::EmptyPassphrase
        ));

        let w2 = open_mem(&store, b"correct horse").unwrap();
        let k = w2.key_for(SignatureScheme::Ed25519, &ed).unwrap().unwrap();
        assert!(matches!(k, SecretKey::Ed25519(ref kp) if kp.id().to_string() == ed.0));
        let s = w2
            .key_for(SignatureScheme::Secp256k1Ecdsa, &evm)
            .unwrap()
            .unwrap();
        let SecretKey::Secp256k1(s) = s else {
            panic!("wrong scheme")
        };
        assert_eq!(evm_address(&s).unwrap(), evm);
        let mut listed = w2.addresses().unwrap();
        listed.sort_by(|a, b| a.1 .0.cmp(&b.1 .0));
        assert_eq!(listed.len(), 2);
    }

    #[test]
    fn secrets_never_sit_in_the_store_in_clear() {
        let store = Arc::new(MemorySealedStore::default());
        let w = open_mem(&store, b"pw").unwrap();
        let k = Keypair::generate();
        let addr = Address(k.id().to_string());
        w.import(&addr, &SecretKey::Ed25519(k.clone())).unwrap();
        w.seal_blob("htlc/1", &[0xAB; 32]).unwrap();
        let seed = k.secret_seed();
        for (_, v) in store.snapshot() {
            assert!(
                !v.windows(32).any(|win| win == seed.as_slice()),
                "ed25519 seed stored in clear"
            );
            assert!(
                !v.windows(32).any(|win| win == [0xAB; 32]),
                "blob stored in clear"
            );
        }
        assert_eq!(
            w.open_blob("htlc/1").unwrap().unwrap().as_slice(),
            &[0xAB; 32]
        );
        assert!(w.open_blob("htlc/2").unwrap().is_none());
        let dk = w.data_key("journal").unwrap();
        assert_eq!(w.data_key("journal").unwrap(), dk, "stable across calls");
        assert_ne!(w.data_key("other").unwrap(), dk);
        assert!(!format!("{w:?}").contains(&hex::encode(seed.as_slice())));
    }

    #[test]
    fn tampered_or_moved_entries_do_not_open() {
        let store = Arc::new(MemorySealedStore::default());
        let w = open_mem(&store, b"pw").unwrap();
        let a = w.generate_ed25519().unwrap();
        let b = w.generate_ed25519().unwrap();
        let slot_a = key_slot(SignatureScheme::Ed25519, &a);
        let slot_b = key_slot(SignatureScheme::Ed25519, &b);
        // Copy a's sealed key onto b: the associated data binds it to a.
        let sealed_a = store.get(&slot_a).unwrap().unwrap();
        store.put(&slot_b, &sealed_a).unwrap();
        let err = w.key_for(SignatureScheme::Ed25519, &b).unwrap_err();
        assert_eq!(err.code(), "wallet_unavailable");
        // Flip one ciphertext bit.
        let mut bad = sealed_a.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        store.put(&slot_a, &bad).unwrap();
        assert!(w.key_for(SignatureScheme::Ed25519, &a).is_err());
        // Truncated.
        store.put(&slot_a, &sealed_a[..10]).unwrap();
        assert!(w.key_for(SignatureScheme::Ed25519, &a).is_err());
    }

    #[test]
    fn owners_survive_reopen_and_do_not_move_between_addresses() {
        let store = Arc::new(MemorySealedStore::default());
        let w = open_mem(&store, b"pass").unwrap();
        let a = w.generate_ed25519().unwrap();
        let b = w.generate_ed25519().unwrap();
        assert_eq!(w.owner(&a).unwrap(), None);
        w.set_owner(&a, "acme").unwrap();
        let w = open_mem(&store, b"pass").unwrap();
        assert_eq!(w.owner(&a).unwrap().as_deref(), Some("acme"));
        assert_eq!(w.owner(&b).unwrap(), None);
        // An owner entry copied onto another address does not open there.
        let snap = store.snapshot();
        let from = [b"b/owner/".as_slice(), a.0.as_bytes()].concat();
        let to = [b"b/owner/".as_slice(), b.0.as_bytes()].concat();
        store.put(&to, &snap[&from]).unwrap();
        assert!(matches!(w.owner(&b), Err(WalletError::Corrupt(_))));
    }

    #[test]
    fn import_is_idempotent_and_refuses_a_different_key() {
        let store = Arc::new(MemorySealedStore::default());
        let w = open_mem(&store, b"pw").unwrap();
        let k = Keypair::generate();
        let addr = Address(k.id().to_string());
        w.import(&addr, &SecretKey::Ed25519(k.clone())).unwrap();
        w.import(&addr, &SecretKey::Ed25519(k)).unwrap();
        let before = store.snapshot();
        let err = w
            .import(&addr, &SecretKey::Ed25519(Keypair::generate()))
            .unwrap_err();
        assert!(matches!(err, WalletError::Conflict { .. }), "{err}");
        assert_eq!(store.snapshot(), before);
        let bad = w.import(
            &Address("0xdead".into()),
            &SecretKey::Secp256k1(Zeroizing::new([0u8; 32])),
        );
        assert!(matches!(bad, Err(WalletError::InvalidKey(_))));
    }
}
