//! Node and account identities.
//!
//! An identity is an ed25519 public key. Its one text form is `isth_` followed by the
//! base58 (Bitcoin alphabet) encoding of the 32 key bytes, e.g.
//! `isth_4zvwRjXUKGfvwnParsHAS3HuSVzV5cA4McphgmoCtajS`. Hex (`0x…`, 64 digits) is also
//! accepted on input for convenience, never produced.

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::Zeroizing;

/// Prefix of the text form of an identity.
pub const ID_PREFIX: &str = "isth_";

/// A node or account identity: the 32 bytes of an ed25519 public key.
///
/// The bytes are not checked on construction (so that foreign data can be carried and
/// rejected with a precise reason later); [`NodeId::verifying_key`] validates them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(#[serde(with = "serde_bytes")] pub [u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseIdError {
    #[error("identity `{0}` must start with `{ID_PREFIX}` (or be 0x-prefixed hex)")]
    Prefix(String),
    #[error("identity `{0}` is not valid base58 or hex")]
    Encoding(String),
    #[error("identity `{0}` has {1} bytes, expected 32")]
    Length(String, usize),
    #[error("identity `{0}` is not a valid ed25519 public key")]
    NotAKey(String),
}

impl NodeId {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Decode the key, rejecting byte strings that are not a curve point.
    pub fn verifying_key(&self) -> Result<VerifyingKey, ed25519_dalek::SignatureError> {
        VerifyingKey::from_bytes(&self.0)
    }

    /// A short form for logs: the first 10 characters of the base58 body.
    pub fn short(&self) -> String {
        let s = bs58::encode(self.0).into_string();
        s.chars().take(10).collect()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ID_PREFIX}{}", bs58::encode(self.0).into_string())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({ID_PREFIX}{})", self.short())
    }
}

impl std::str::FromStr for NodeId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bytes = if let Some(body) = s.strip_prefix(ID_PREFIX) {
            bs58::decode(body)
                .into_vec()
                .map_err(|_| ParseIdError::Encoding(s.to_owned()))?
        } else if let Some(body) = s.strip_prefix("0x") {
            hex::decode(body).map_err(|_| ParseIdError::Encoding(s.to_owned()))?
        } else {
            return Err(ParseIdError::Prefix(s.to_owned()));
        };
        let len = bytes.len();
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| ParseIdError::Length(s.to_owned(), len))?;
        let id = NodeId(arr);
        id.verifying_key()
            .map_err(|_| ParseIdError::NotAKey(s.to_owned()))?;
        Ok(id)
    }
}

impl From<VerifyingKey> for NodeId {
    fn from(k: VerifyingKey) -> Self {
        NodeId(k.to_bytes())
    }
}

/// An ed25519 signing key. Its secret half is never printed: `Debug` shows the public id.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    pub fn generate() -> Self {
        Keypair {
            signing: SigningKey::generate(&mut rand_core::OsRng),
        }
    }

    pub fn from_seed(seed: [u8; 32]) -> Self {
        Keypair {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// Deterministic test/dev key derived from a label. Never use for real funds.
    pub fn dev(label: &str) -> Self {
        let seed = crate::HashAlgo::Sha256.digest_parts(&[b"isthmus/dev-key/", label.as_bytes()]);
        Self::from_seed(seed.0)
    }

    pub fn id(&self) -> NodeId {
        NodeId(self.signing.verifying_key().to_bytes())
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The 32-byte secret seed, in a buffer that is wiped on drop.
    pub fn secret_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// Parse a secret seed written as 64 hex digits (the key-file format).
    pub fn from_hex_seed(s: &str) -> Result<Self, String> {
        let raw = Zeroizing::new(
            hex::decode(s.trim()).map_err(|_| "key file is not 64 hex digits".to_owned())?,
        );
        let seed: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| format!("key file holds {} bytes, expected 32", raw.len()))?;
        Ok(Self::from_seed(seed))
    }

    pub fn to_hex_seed(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.signing.to_bytes()))
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.signing
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({}, secret: <redacted>)", self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let k = Keypair::dev("alice");
        let s = k.id().to_string();
        assert!(s.starts_with(ID_PREFIX));
        assert_eq!(s.parse::<NodeId>().unwrap(), k.id());
        let hex_form = format!("0x{}", hex::encode(k.id().0));
        assert_eq!(hex_form.parse::<NodeId>().unwrap(), k.id());
    }

    #[test]
    fn bad_text_forms_name_the_value() {
        assert!(matches!("abc".parse::<NodeId>(), Err(ParseIdError::Prefix(v)) if v == "abc"));
        assert!(matches!(
            "isth_0OIl".parse::<NodeId>(),
            Err(ParseIdError::Encoding(_))
        ));
        assert!(matches!(
            "isth_2g".parse::<NodeId>(),
            Err(ParseIdError::Length(_, 1))
        ));
    }

    #[test]
    fn debug_never_shows_secret() {
        let k = Keypair::dev("bob");
        let dbg = format!("{k:?}");
        assert!(dbg.contains("redacted"));
        assert!(!dbg.contains(&*k.to_hex_seed()));
    }

    #[test]
    fn hex_seed_round_trip() {
        let k = Keypair::generate();
        let k2 = Keypair::from_hex_seed(&k.to_hex_seed()).unwrap();
        assert_eq!(k.id(), k2.id());
        assert!(Keypair::from_hex_seed("zz").is_err());
        assert!(Keypair::from_hex_seed("abcd")
            .unwrap_err()
            .contains("2 bytes"));
    }
}
