//! The data directory of `hub up`: an exclusive lock (one hub per directory), the secrets
//! made on the first run (API keys, the hub's attestation key, the wallet secret), and the
//! `up.json` file that tells tools and tests where the running hub listens.

use anyhow::{bail, Context as _};
use fs2::FileExt as _;
use isthmus_core::Keypair;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// A locked data directory. The lock is released when this is dropped (or the process dies,
/// `kill -9` included: the OS drops `flock`s with the process).
pub struct DataDir {
    pub root: PathBuf,
    _lock: File,
}

/// Secrets made once per data directory, kept in `secrets.json` (mode 0600).
#[derive(Clone, Serialize, Deserialize)]
pub struct Secrets {
    /// Dev API key with the customer role.
    pub customer_key: String,
    /// Dev API key with the provider role (no transfers; shows role checks).
    pub provider_key: String,
    /// Dev API key with the admin role (`hub keys ...`); made on the first run that lacks
    /// one.
    #[serde(default)]
    pub admin_key: String,
    /// Seed of the hub's attestation key (the escrows of `alpha` and `beta` trust it).
    attester_seed: String,
    /// The wallet secret HTLC secrets are derived from.
    wallet_secret: String,
    /// The passphrase of the hub wallet of this dev hub (kept beside it: `hub up` is a
    /// development hub whose demo keys are public anyway).
    pub wallet_passphrase: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

impl Secrets {
    fn generate() -> Secrets {
        let mut r = rand::thread_rng();
        let mut hex32 = || {
            let mut b = Zeroizing::new([0u8; 32]);
            r.fill_bytes(b.as_mut());
            hex::encode(b.as_ref())
        };
        Secrets {
            customer_key: format!("isk_dev_{}", &hex32()[..32]),
            provider_key: format!("isk_prov_{}", &hex32()[..32]),
            admin_key: format!("isk_admin_{}", &hex32()[..32]),
            attester_seed: hex32(),
            wallet_secret: hex32(),
            wallet_passphrase: hex32(),
        }
    }

    pub fn attester(&self) -> anyhow::Result<Keypair> {
        Keypair::from_hex_seed(&self.attester_seed)
            .map_err(|e| anyhow::anyhow!("secrets.json: attester seed: {e}"))
    }

    /// A key of the hub derived from this directory's secret (e.g. the key that records
    /// decisions on the hub chain), distinct per `label` and never a public dev key.
    pub fn derived_key(&self, label: &str) -> anyhow::Result<Keypair> {
        let seed = hex::decode(&self.attester_seed)
            .ok()
            .context("secrets.json: attester seed must be hex")?;
        let d = isthmus_core::HashAlgo::Sha256.digest_parts(&[
            b"isthmus/hub-up/key/v1\x00",
            label.as_bytes(),
            b"\x00",
            &seed,
        ]);
        Ok(Keypair::from_seed(d.0))
    }

    pub fn wallet_secret(&self) -> anyhow::Result<Zeroizing<[u8; 32]>> {
        let v = hex::decode(&self.wallet_secret)
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .context("secrets.json: wallet_secret must be 64 hex digits")?;
        Ok(Zeroizing::new(v))
    }
}

impl DataDir {
    /// Create (if needed) and lock `root`. Fails at once, naming the holder's pid, if
    /// another hub holds it.
    pub fn open(root: &Path) -> anyhow::Result<DataDir> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create data dir {}", root.display()))?;
        let path = root.join("hub.lock");
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        if f.try_lock_exclusive().is_err() {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = holder.trim();
            bail!(
                "data dir {} is locked by another hub (pid {}); stop it, or pass --data DIR",
                root.display(),
                if holder.is_empty() { "unknown" } else { holder }
            );
        }
        f.set_len(0)?;
        f.rewind()?;
        write!(f, "{}", std::process::id())?;
        f.sync_all()?;
        Ok(DataDir {
            root: root.to_path_buf(),
            _lock: f,
        })
    }

    pub fn chain_dir(&self, name: &str) -> PathBuf {
        self.root.join("chains").join(name)
    }

    pub fn interop_dir(&self) -> PathBuf {
        self.root.join("interop")
    }

    /// The in-process relayer's own database (its outboxes and source checkpoints), apart
    /// from the hub's, as a separate relayer process would keep it.
    pub fn relayer_dir(&self) -> PathBuf {
        self.root.join("relayer")
    }

    pub fn up_json(&self) -> PathBuf {
        self.root.join("up.json")
    }

    /// The secrets of this directory, made on the first run.
    pub fn secrets(&self) -> anyhow::Result<Secrets> {
        let path = self.root.join("secrets.json");
        if let Ok(s) = std::fs::read_to_string(&path) {
            let mut s: Secrets = serde_json::from_str(&s)
                .with_context(|| format!("{} is corrupt", path.display()))?;
            if s.admin_key.is_empty() {
                // A directory from before admin keys: give it one, kept like the others.
                s.admin_key = Secrets::generate().admin_key;
                write_private(&path, serde_json::to_string_pretty(&s)?.as_bytes())?;
            }
            return Ok(s);
        }
        let s = Secrets::generate();
        write_private(&path, serde_json::to_string_pretty(&s)?.as_bytes())?;
        Ok(s)
    }

    /// Write `contents` to `name` in the directory, whole (temp file, fsync, rename).
    pub fn write_atomic(&self, name: &str, contents: &[u8]) -> anyhow::Result<()> {
        let tmp = self.root.join(format!("{name}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.root.join(name))?;
        Ok(())
    }
}

/// Create `path` readable by its owner only, write it whole and sync it.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_is_refused_naming_the_holder_and_secrets_persist() {
        let d = tempfile::tempdir().unwrap();
        let first = DataDir::open(d.path()).unwrap();
        let err = DataDir::open(d.path()).err().unwrap().to_string();
        assert!(err.contains("locked by another hub"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        let s1 = first.secrets().unwrap();
        drop(first);
        let again = DataDir::open(d.path()).unwrap();
        let s2 = again.secrets().unwrap();
        assert_eq!(s1.customer_key, s2.customer_key);
        assert_eq!(s1.attester().unwrap().id(), s2.attester().unwrap().id());
        let k = |s: &Secrets, l: &str| s.derived_key(l).unwrap().id();
        assert_eq!(k(&s1, "recorder"), k(&s2, "recorder"));
        assert_ne!(k(&s2, "recorder"), k(&s2, "anchor"));
        assert_ne!(k(&s2, "recorder"), s2.attester().unwrap().id());
        assert!(!format!("{s2:?}").contains(&s2.customer_key));
    }
}
