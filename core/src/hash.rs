//! Hash functions selectable per network.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The hash function a network uses for block headers, Merkle trees and ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HashAlgo {
    #[default]
    Sha256,
    Keccak256,
    Blake3,
}

impl HashAlgo {
    pub const ALL: [HashAlgo; 3] = [HashAlgo::Sha256, HashAlgo::Keccak256, HashAlgo::Blake3];

    /// Hash the concatenation of `parts` (no separators are inserted: callers that need
    /// unambiguous input must length-prefix or tag it themselves).
    pub fn digest_parts(self, parts: &[&[u8]]) -> Hash32 {
        match self {
            HashAlgo::Sha256 => {
                use sha2::Digest;
                let mut h = sha2::Sha256::new();
                for p in parts {
                    h.update(p);
                }
                Hash32(h.finalize().into())
            }
            HashAlgo::Keccak256 => {
                use sha3::Digest;
                let mut h = sha3::Keccak256::new();
                for p in parts {
                    h.update(p);
                }
                Hash32(h.finalize().into())
            }
            HashAlgo::Blake3 => {
                let mut h = blake3::Hasher::new();
                for p in parts {
                    h.update(p);
                }
                Hash32(*h.finalize().as_bytes())
            }
        }
    }

    pub fn digest(self, data: &[u8]) -> Hash32 {
        self.digest_parts(&[data])
    }

    pub fn name(self) -> &'static str {
        match self {
            HashAlgo::Sha256 => "sha256",
            HashAlgo::Keccak256 => "keccak256",
            HashAlgo::Blake3 => "blake3",
        }
    }
}

impl fmt::Display for HashAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for HashAlgo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sha256" => Ok(HashAlgo::Sha256),
            "keccak256" => Ok(HashAlgo::Keccak256),
            "blake3" => Ok(HashAlgo::Blake3),
            other => Err(format!(
                "unknown hash function `{other}` (expected sha256, keccak256 or blake3)"
            )),
        }
    }
}

/// A 32-byte digest. Displayed as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Hash32(#[serde(with = "serde_bytes")] pub [u8; 32]);

impl Hash32 {
    pub const ZERO: Hash32 = Hash32([0u8; 32]);

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<Self, String> {
        let s = s.strip_prefix("0x").unwrap_or(s);
        let v = hex::decode(s).map_err(|e| format!("invalid hex hash `{s}`: {e}"))?;
        let arr: [u8; 32] = v
            .try_into()
            .map_err(|v: Vec<u8>| format!("hash `{s}` has {} bytes, expected 32", v.len()))?;
        Ok(Hash32(arr))
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash32({})", &self.to_hex()[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(
            HashAlgo::Sha256.digest(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            HashAlgo::Keccak256.digest(b"").to_hex(),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
        assert_eq!(
            HashAlgo::Blake3.digest(b"").to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn parts_equal_concatenation() {
        for a in HashAlgo::ALL {
            assert_eq!(a.digest_parts(&[b"ab", b"c"]), a.digest(b"abc"));
        }
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let h = HashAlgo::Blake3.digest(b"x");
        assert_eq!(Hash32::from_hex(&h.to_hex()), Ok(h));
        assert!(Hash32::from_hex("abcd").unwrap_err().contains("2 bytes"));
        assert!("md5".parse::<HashAlgo>().unwrap_err().contains("md5"));
    }
}
