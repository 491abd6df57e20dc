//! The wallet service on a real sled database: keys survive a process-style reopen, the
//! files on disk never hold a secret in clear, and a wrong passphrase opens nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use isthmus_adapter_api::{SecretKey, SignatureScheme, Wallet};
use isthmus_core::Keypair;
use isthmus_lock_contracts::Address;
use isthmus_wallet::{KdfParams, SledSealedStore, WalletError, WalletService};
use std::sync::Arc;

fn open(dir: &std::path::Path, pass: &[u8]) -> Result<WalletService, WalletError> {
    let db = sled::open(dir).unwrap();
    let store = Arc::new(SledSealedStore::new(db.open_tree("wallet").unwrap()));
    WalletService::open(store, pass, KdfParams::INSECURE_FAST)
}

#[test]
fn sled_wallet_reopens_with_its_passphrase_only_and_keeps_no_clear_secret_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let k = Keypair::generate();
    let addr = Address(k.id().to_string());
    {
        let w = open(dir.path(), b"operator passphrase").unwrap();
        w.import(&addr, &SecretKey::Ed25519(k.clone())).unwrap();
    }
    // Every byte sled wrote: the seed must not appear.
    let seed = k.secret_seed();
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(32).any(|w| w == seed.as_slice()),
            "seed found in clear in {}",
            entry.display()
        );
    }
    assert!(matches!(
        open(dir.path(), b"guess").unwrap_err(),
        WalletError::WrongPassphrase
    ));
    let w = open(dir.path(), b"operator passphrase").unwrap();
    let got = w.key_for(SignatureScheme::Ed25519, &addr).unwrap();
    assert!(matches!(got, Some(SecretKey::Ed25519(ref g)) if g.id() == k.id()));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
