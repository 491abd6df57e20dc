//! The two lock scripts (BIP-199 HTLC and the hub-cosigned escrow), segwit addresses under
//! any bech32 prefix, and reading a spend's witness back. Pure: no I/O.

use bitcoin::bech32::{self, Fe32, Hrp};
use bitcoin::hashes::Hash;
use bitcoin::opcodes::all::{
    OP_CHECKMULTISIG, OP_CHECKSIG, OP_CLTV, OP_DROP, OP_DUP, OP_ELSE, OP_ENDIF, OP_EQUALVERIFY,
    OP_HASH160, OP_IF, OP_PUSHNUM_2, OP_RETURN, OP_SHA256, OP_SIZE,
};
use bitcoin::script::{Builder, PushBytesBuf};
use bitcoin::{absolute, PublicKey, Script, ScriptBuf, WPubkeyHash, WitnessProgram};
use isthmus_lock_contracts::LockId;

/// The marker of the OP_RETURN output every funding transaction carries, followed by the
/// kind byte and the lock id: a restarted adapter finds its earlier fundings by it.
pub const TAG: &[u8; 4] = b"ISTH";
pub const KIND_HTLC: u8 = 1;
pub const KIND_ESCROW: u8 = 2;

/// The P2WSH HTLC: the beneficiary spends with a 32-byte preimage of `hashlock` and a
/// signature; the owner spends with a signature once the median time past passes
/// `locktime` (BIP-199, with the preimage size pinned so a longer secret can never strand
/// the other chain's leg).
pub fn htlc(
    hashlock: &[u8; 32],
    beneficiary: &WPubkeyHash,
    owner: &WPubkeyHash,
    locktime: absolute::LockTime,
) -> ScriptBuf {
    Builder::new()
        .push_opcode(OP_IF)
        .push_opcode(OP_SIZE)
        .push_int(32)
        .push_opcode(OP_EQUALVERIFY)
        .push_opcode(OP_SHA256)
        .push_slice(hashlock)
        .push_opcode(OP_EQUALVERIFY)
        .push_opcode(OP_DUP)
        .push_opcode(OP_HASH160)
        .push_slice(beneficiary.to_byte_array())
        .push_opcode(OP_ELSE)
        .push_lock_time(locktime)
        .push_opcode(OP_CLTV)
        .push_opcode(OP_DROP)
        .push_opcode(OP_DUP)
        .push_opcode(OP_HASH160)
        .push_slice(owner.to_byte_array())
        .push_opcode(OP_ENDIF)
        .push_opcode(OP_EQUALVERIFY)
        .push_opcode(OP_CHECKSIG)
        .into_script()
}

/// The two-phase escrow: a 2-of-2 of the hub's co-signing key and the owner's key, or the
/// owner alone once the median time past passes `locktime`.
pub fn escrow(hub: &PublicKey, owner: &PublicKey, locktime: absolute::LockTime) -> ScriptBuf {
    Builder::new()
        .push_opcode(OP_IF)
        .push_opcode(OP_PUSHNUM_2)
        .push_key(hub)
        .push_key(owner)
        .push_opcode(OP_PUSHNUM_2)
        .push_opcode(OP_CHECKMULTISIG)
        .push_opcode(OP_ELSE)
        .push_lock_time(locktime)
        .push_opcode(OP_CLTV)
        .push_opcode(OP_DROP)
        .push_key(owner)
        .push_opcode(OP_CHECKSIG)
        .push_opcode(OP_ENDIF)
        .into_script()
}

/// The funding's OP_RETURN output: `ISTH || kind || lock id`.
pub fn tag(kind: u8, lock_id: &LockId) -> ScriptBuf {
    let mut data = PushBytesBuf::new();
    // 37 bytes always fit a push.
    let _ = data.extend_from_slice(TAG);
    let _ = data.push(kind);
    let _ = data.extend_from_slice(lock_id.0.as_bytes());
    Builder::new()
        .push_opcode(OP_RETURN)
        .push_slice(data)
        .into_script()
}

/// The lock id an OP_RETURN output names, if it is one of ours.
pub fn read_tag(script: &Script) -> Option<(u8, [u8; 32])> {
    let b = script.as_bytes();
    // OP_RETURN, push of 37 bytes, then the payload.
    if b.len() != 39 || b[0] != OP_RETURN.to_u8() || b[1] != 37 || &b[2..6] != TAG {
        return None;
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(&b[7..39]);
    Some((b[6], id))
}

/// How a lock output was spent, read from the witness alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spend {
    /// HTLC claim path, with the revealed preimage.
    HtlcClaim { preimage: Vec<u8> },
    /// HTLC or escrow timelock path.
    TimeoutRefund,
    /// Escrow 2-of-2 path (a release or an early refund: the outputs tell which).
    Cosigned,
}

/// Classify the witness that spends a lock output whose witness script is `script`.
pub fn classify(witness: &[Vec<u8>], script: &Script) -> Option<Spend> {
    let last = witness.last()?;
    if last.as_slice() != script.as_bytes() {
        return None;
    }
    match witness.len() {
        // <sig> <pubkey> <preimage> 1 <script>
        5 if witness[3] == [1] && witness[0].is_empty() => Some(Spend::Cosigned),
        5 if witness[3] == [1] => Some(Spend::HtlcClaim {
            preimage: witness[2].clone(),
        }),
        // <sig> <pubkey> <> <script>
        4 if witness[2].is_empty() => Some(Spend::TimeoutRefund),
        // <sig> <> <script>
        3 if witness[1].is_empty() => Some(Spend::TimeoutRefund),
        _ => None,
    }
}

/// Segwit v0 addresses (P2WPKH, P2WSH) under a chain's bech32 prefix (`rltc`, `ltc`,
/// `bcrt`, ...): the bitcoin crate only knows Bitcoin's prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressCodec {
    hrp: Hrp,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("`{0}` is not a bech32 prefix")]
    Prefix(String),
    #[error("`{address}` is not a segwit address: {reason}")]
    Malformed { address: String, reason: String },
    #[error("`{address}` has prefix `{found}`, this chain uses `{expected}`")]
    WrongChain {
        address: String,
        found: String,
        expected: String,
    },
}

impl AddressCodec {
    pub fn new(hrp: &str) -> Result<Self, AddressError> {
        Hrp::parse(hrp)
            .map(|hrp| AddressCodec { hrp })
            .map_err(|_| AddressError::Prefix(hrp.to_owned()))
    }

    pub fn script_of(&self, address: &str) -> Result<ScriptBuf, AddressError> {
        let malformed = |reason: String| AddressError::Malformed {
            address: address.to_owned(),
            reason,
        };
        let (hrp, version, program) =
            bech32::segwit::decode(address).map_err(|e| malformed(e.to_string()))?;
        if hrp != self.hrp {
            return Err(AddressError::WrongChain {
                address: address.to_owned(),
                found: hrp.to_string(),
                expected: self.hrp.to_string(),
            });
        }
        let version = bitcoin::WitnessVersion::try_from(version.to_u8())
            .map_err(|e| malformed(e.to_string()))?;
        let program =
            WitnessProgram::new(version, &program).map_err(|e| malformed(e.to_string()))?;
        Ok(ScriptBuf::new_witness_program(&program))
    }

    /// The address of a witness output script; `None` for other scripts.
    pub fn address_of(&self, script: &Script) -> Option<String> {
        let version = script.witness_version()?;
        let program = script.as_bytes().get(2..)?;
        let fe = Fe32::try_from(version.to_num()).ok()?;
        bech32::segwit::encode(self.hrp, fe, program).ok()
    }

    pub fn p2wpkh(&self, key: &PublicKey) -> Option<String> {
        let hash = key.wpubkey_hash().ok()?;
        self.address_of(&ScriptBuf::new_p2wpkh(&hash))
    }
}

/// The key hash a P2WPKH output script pays to.
pub fn wpkh_of(script: &Script) -> Option<WPubkeyHash> {
    if !script.is_p2wpkh() {
        return None;
    }
    WPubkeyHash::from_slice(&script.as_bytes()[2..]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::secp256k1::{Secp256k1, SecretKey};

    fn key(b: u8) -> PublicKey {
        let secp = Secp256k1::new();
        PublicKey::new(SecretKey::from_slice(&[b; 32]).unwrap().public_key(&secp))
    }

    #[test]
    fn litecoin_regtest_addresses_round_trip() {
        let codec = AddressCodec::new("rltc").unwrap();
        let addr = codec.p2wpkh(&key(1)).unwrap();
        assert!(addr.starts_with("rltc1q"), "{addr}");
        let script = codec.script_of(&addr).unwrap();
        assert!(script.is_p2wpkh());
        assert_eq!(codec.address_of(&script).unwrap(), addr);
        let btc = AddressCodec::new("bcrt").unwrap().p2wpkh(&key(1)).unwrap();
        assert!(matches!(
            codec.script_of(&btc),
            Err(AddressError::WrongChain { .. })
        ));
        assert!(codec.script_of("rltc1qnotanaddress").is_err());
        let wsh = ScriptBuf::new_p2wsh(
            &escrow(&key(1), &key(2), absolute::LockTime::ZERO).wscript_hash(),
        );
        let a = codec.address_of(&wsh).unwrap();
        assert_eq!(codec.script_of(&a).unwrap(), wsh);
    }

    #[test]
    fn tags_round_trip_and_ignore_others() {
        let id = LockId(isthmus_core::Hash32([9; 32]));
        let t = tag(KIND_HTLC, &id);
        assert_eq!(read_tag(&t), Some((KIND_HTLC, [9; 32])));
        assert_eq!(read_tag(&ScriptBuf::new()), None);
        let mut other = t.to_bytes();
        other[3] = b'X';
        assert_eq!(read_tag(Script::from_bytes(&other)), None);
    }

    #[test]
    fn htlc_pins_sha256_of_32_bytes_and_the_timelock() {
        let lt = absolute::LockTime::from_time(1_800_000_000).unwrap();
        let s = htlc(
            &[7; 32],
            &key(1).wpubkey_hash().unwrap(),
            &key(2).wpubkey_hash().unwrap(),
            lt,
        );
        let asm = s.to_asm_string();
        assert!(
            asm.starts_with("OP_IF OP_SIZE OP_PUSHBYTES_1 20 OP_EQUALVERIFY OP_SHA256"),
            "{asm}"
        );
        assert!(asm.contains("OP_CLTV"), "{asm}");
        // Witnesses read back to the path they took.
        let claim = vec![
            vec![0x30; 71],
            vec![2; 33],
            vec![5; 32],
            vec![1],
            s.to_bytes(),
        ];
        assert_eq!(
            classify(&claim, &s),
            Some(Spend::HtlcClaim {
                preimage: vec![5; 32]
            })
        );
        let refund = vec![vec![0x30; 71], vec![2; 33], vec![], s.to_bytes()];
        assert_eq!(classify(&refund, &s), Some(Spend::TimeoutRefund));
        let other = escrow(&key(1), &key(2), lt);
        assert_eq!(classify(&refund, &other), None);
    }

    #[test]
    fn escrow_paths_classify() {
        let s = escrow(
            &key(1),
            &key(2),
            absolute::LockTime::from_time(1_800_000_000).unwrap(),
        );
        let cosigned = vec![
            vec![],
            vec![0x30; 71],
            vec![0x30; 71],
            vec![1],
            s.to_bytes(),
        ];
        assert_eq!(classify(&cosigned, &s), Some(Spend::Cosigned));
        let refund = vec![vec![0x30; 71], vec![], s.to_bytes()];
        assert_eq!(classify(&refund, &s), Some(Spend::TimeoutRefund));
    }
}
