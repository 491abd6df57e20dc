//! Finality evidence for a transaction, in each platform family's own terms, and the hub's
//! attestations that escrows verify.

use crate::types::{BlockRef, SignatureScheme};
use isthmus_core::{Hash32, HashAlgo, Keypair, NetworkId, NodeId};
use isthmus_lock_contracts::{Decision, EvidenceRef, HubRecord, LockId};
use serde::{Deserialize, Serialize};

/// A Merkle path from a leaf to a root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerkleProof {
    pub leaf_index: u64,
    pub leaf: Hash32,
    pub siblings: Vec<Hash32>,
    pub root: Hash32,
}

/// One validator's vote in a commit certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitVote {
    pub validator: NodeId,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// Proof that a transaction is included and final. The hub verifies it as a light client
/// through [`crate::Adapter::verify_evidence`]; it never takes a node's word for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Evidence {
    /// Instant finality: the block header, a quorum of validator signatures over it, and the
    /// tx's Merkle path to the header's transaction root.
    CommitCertificate {
        block: BlockRef,
        #[serde(with = "serde_bytes")]
        header: Vec<u8>,
        round: u64,
        votes: Vec<CommitVote>,
        tx_proof: MerkleProof,
    },
    /// Proof of work: the headers from the including block to the tip (each checked for work
    /// and linkage) and the tx's Merkle path.
    PowConfirmations {
        block: BlockRef,
        headers: Vec<serde_bytes::ByteBuf>,
        tx_proof: MerkleProof,
    },
    /// An EVM receipt (RLP), its block and the confirming headers.
    EvmReceipt {
        block: BlockRef,
        #[serde(with = "serde_bytes")]
        receipt_rlp: Vec<u8>,
        log_index: Option<u32>,
        confirmations: u64,
        headers: Vec<serde_bytes::ByteBuf>,
    },
    /// A Bitcoin-family transaction with its Merkle branch and confirming headers.
    UtxoConfirmations {
        block: BlockRef,
        #[serde(with = "serde_bytes")]
        raw_tx: Vec<u8>,
        tx_proof: MerkleProof,
        headers: Vec<serde_bytes::ByteBuf>,
    },
    /// From an out-of-process adapter: opaque to the hub, verified by that adapter.
    Opaque {
        scheme: String,
        block: BlockRef,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
}

impl Evidence {
    pub fn block(&self) -> BlockRef {
        match self {
            Evidence::CommitCertificate { block, .. }
            | Evidence::PowConfirmations { block, .. }
            | Evidence::EvmReceipt { block, .. }
            | Evidence::UtxoConfirmations { block, .. }
            | Evidence::Opaque { block, .. } => *block,
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self {
            Evidence::CommitCertificate { .. } => "commit_certificate",
            Evidence::PowConfirmations { .. } => "pow_confirmations",
            Evidence::EvmReceipt { .. } => "evm_receipt",
            Evidence::UtxoConfirmations { .. } => "utxo_confirmations",
            Evidence::Opaque { .. } => "opaque",
        }
    }

    /// sha256 of the canonical msgpack encoding: what the hub records and the contract
    /// machines keep.
    pub fn digest(&self) -> Hash32 {
        // Encoding plain serde data structures to msgpack cannot fail.
        let bytes = rmp_serde::to_vec_named(self).unwrap_or_default();
        HashAlgo::Sha256.digest_parts(&[b"isthmus/evidence/v1\x00", &bytes])
    }

    pub fn to_ref(&self) -> EvidenceRef {
        EvidenceRef {
            height: self.block().height,
            digest: self.digest(),
        }
    }
}

/// What verification established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    pub block: BlockRef,
    /// Blocks on top of the including one (0 for instant finality).
    pub confirmations: u64,
    pub digest: Hash32,
}

/// A signature over an attestation, in a scheme the target escrow verifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemeSignature {
    pub scheme: SignatureScheme,
    #[serde(with = "serde_bytes")]
    pub signer: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// The hub's statement that it recorded `decision` for the lock `lock_id` at `record`: what a
/// release (or an early refund) presents to the escrow on the leg's network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubAttestation {
    /// The network whose escrow this is for: signatures bind it, so an attestation for one
    /// network cannot be replayed on another.
    pub network: NetworkId,
    pub lock_id: LockId,
    pub decision: Decision,
    pub record: HubRecord,
    pub signatures: Vec<SchemeSignature>,
}

impl HubAttestation {
    /// The bytes every scheme signs (under `Domain::Attestation` for ed25519).
    pub fn payload(
        network: NetworkId,
        lock_id: &LockId,
        decision: Decision,
        record: &HubRecord,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(96 + record.tx.0.len());
        out.extend_from_slice(b"isthmus/attestation/v1\x00");
        out.extend_from_slice(&network.0.to_be_bytes());
        out.extend_from_slice(lock_id.0.as_bytes());
        out.push(match decision {
            Decision::Validated => 1,
            Decision::Aborted => 2,
        });
        out.extend_from_slice(&record.height.to_be_bytes());
        out.extend_from_slice(&(record.tx.0.len() as u64).to_be_bytes());
        out.extend_from_slice(record.tx.0.as_bytes());
        out
    }

    /// An attestation signed with ed25519 by `keys` (the hub's attestation keys).
    pub fn sign_ed25519(
        network: NetworkId,
        lock_id: LockId,
        decision: Decision,
        record: HubRecord,
        keys: &[Keypair],
    ) -> Self {
        let payload = Self::payload(network, &lock_id, decision, &record);
        let signatures = keys
            .iter()
            .map(|k| SchemeSignature {
                scheme: SignatureScheme::Ed25519,
                signer: k.id().0.to_vec(),
                signature: k
                    .sign(isthmus_core::Domain::Attestation, network, &payload)
                    .0
                    .to_vec(),
            })
            .collect();
        HubAttestation {
            network,
            lock_id,
            decision,
            record,
            signatures,
        }
    }

    /// Whether this attestation authorises `want` on lock `lock_id` of `network`: the right
    /// network, lock and decision, signed by at least `threshold` distinct `trusted` ed25519
    /// keys. What an escrow (or a co-signer standing in for one) checks before acting.
    pub fn check_ed25519(
        &self,
        network: NetworkId,
        lock_id: &LockId,
        want: Decision,
        trusted: &[NodeId],
        threshold: usize,
    ) -> Result<(), crate::AdapterError> {
        let bad = |reason: String| Err(crate::AdapterError::InvalidEvidence { reason });
        if self.network != network {
            return bad(format!(
                "attestation is for network {}, this is {network}",
                self.network
            ));
        }
        if self.lock_id != *lock_id {
            return bad(format!(
                "attestation is for lock {}, not {lock_id}",
                self.lock_id
            ));
        }
        if self.decision != want {
            return bad(format!(
                "attestation says {:?}, {want:?} needed",
                self.decision
            ));
        }
        let signers = self.ed25519_signers(trusted);
        if signers < threshold.max(1) {
            return bad(format!(
                "{signers} trusted hub signatures, {} needed",
                threshold.max(1)
            ));
        }
        Ok(())
    }

    /// How many distinct `trusted` ed25519 keys validly signed this attestation.
    pub fn ed25519_signers(&self, trusted: &[NodeId]) -> usize {
        let payload = Self::payload(self.network, &self.lock_id, self.decision, &self.record);
        let mut seen: Vec<NodeId> = Vec::new();
        for s in &self.signatures {
            if s.scheme != SignatureScheme::Ed25519 {
                continue;
            }
            let (Ok(signer), Ok(sig)) = (
                <[u8; 32]>::try_from(s.signer.as_slice()),
                <[u8; 64]>::try_from(s.signature.as_slice()),
            ) else {
                continue;
            };
            let signer = NodeId(signer);
            if !trusted.contains(&signer) || seen.contains(&signer) {
                continue;
            }
            let ok = isthmus_core::sign::verify(
                &signer,
                isthmus_core::Domain::Attestation,
                self.network,
                &payload,
                &isthmus_core::Signature(sig),
            )
            .is_ok();
            if ok {
                seen.push(signer);
            }
        }
        seen.len()
    }
}

/// Where an EVM escrow checks attestations: secp256k1 attesters sign
/// `keccak256(abi.encode(keccak256("isthmus/evm-escrow/v1"), chain_id, escrow, lock_id, decision))`
/// (raw, no personal-message prefix), so a signature is bound to one chain, one escrow
/// contract, one lock and one decision. The hub record is not part of it: the escrow acts on the
/// decision alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EvmEscrowDomain {
    pub chain_id: u64,
    pub escrow: [u8; 20],
}

impl EvmEscrowDomain {
    /// The digest the escrow's `digest(id, decision)` computes.
    pub fn digest(&self, lock_id: &LockId, decision: Decision) -> [u8; 32] {
        use sha3::{Digest, Keccak256};
        let word = |tail: &[u8]| {
            let mut w = [0u8; 32];
            w[32 - tail.len()..].copy_from_slice(tail);
            w
        };
        let domain: [u8; 32] = Keccak256::digest(b"isthmus/evm-escrow/v1").into();
        let mut h = Keccak256::new();
        h.update(domain);
        h.update(word(&self.chain_id.to_be_bytes()));
        h.update(word(&self.escrow));
        h.update(lock_id.0.as_bytes());
        h.update(word(&[match decision {
            Decision::Validated => 1,
            Decision::Aborted => 2,
        }]));
        h.finalize().into()
    }

    /// The EVM address of a secp256k1 key: the last 20 bytes of keccak256 of the public point.
    pub fn address_of(key: &k256::ecdsa::VerifyingKey) -> [u8; 20] {
        use sha3::{Digest, Keccak256};
        let point = key.to_encoded_point(false);
        let hash = Keccak256::digest(&point.as_bytes()[1..]);
        let mut out = [0u8; 20];
        out.copy_from_slice(&hash[12..]);
        out
    }
}

impl HubAttestation {
    /// An attestation signed with secp256k1 by `keys` for the escrow at `domain`: each
    /// signature is 65 bytes `r || s || v` (low s, v = 27 or 28), its signer the 20-byte address.
    pub fn sign_secp256k1_evm(
        network: NetworkId,
        lock_id: LockId,
        decision: Decision,
        record: HubRecord,
        domain: &EvmEscrowDomain,
        keys: &[k256::ecdsa::SigningKey],
    ) -> Self {
        let digest = domain.digest(&lock_id, decision);
        let signatures = keys
            .iter()
            .filter_map(|k| {
                let (sig, recid) = k.sign_prehash_recoverable(&digest).ok()?;
                let (sig, recid) = match sig.normalize_s() {
                    Some(low) => (
                        low,
                        k256::ecdsa::RecoveryId::new(!recid.is_y_odd(), recid.is_x_reduced()),
                    ),
                    None => (sig, recid),
                };
                let mut bytes = sig.to_bytes().to_vec();
                bytes.push(27 + recid.to_byte());
                Some(SchemeSignature {
                    scheme: SignatureScheme::Secp256k1Ecdsa,
                    signer: EvmEscrowDomain::address_of(k.verifying_key()).to_vec(),
                    signature: bytes,
                })
            })
            .collect();
        HubAttestation {
            network,
            lock_id,
            decision,
            record,
            signatures,
        }
    }

    /// The distinct `trusted` addresses whose secp256k1 signatures recover correctly for
    /// `domain`, in ascending order (the order the escrow requires), each with its signature.
    pub fn secp256k1_evm_signers(
        &self,
        domain: &EvmEscrowDomain,
        trusted: &[[u8; 20]],
    ) -> Vec<([u8; 20], Vec<u8>)> {
        let digest = domain.digest(&self.lock_id, self.decision);
        let mut out: Vec<([u8; 20], Vec<u8>)> = Vec::new();
        for s in &self.signatures {
            if s.scheme != SignatureScheme::Secp256k1Ecdsa || s.signature.len() != 65 {
                continue;
            }
            let Ok(sig) = k256::ecdsa::Signature::from_slice(&s.signature[..64]) else {
                continue;
            };
            if sig.normalize_s().is_some() {
                continue; // a high-s twin: the escrow refuses those
            }
            let Some(recid) = s.signature[64]
                .checked_sub(27)
                .and_then(k256::ecdsa::RecoveryId::from_byte)
            else {
                continue;
            };
            let Ok(key) = k256::ecdsa::VerifyingKey::recover_from_prehash(&digest, &sig, recid)
            else {
                continue;
            };
            let addr = EvmEscrowDomain::address_of(&key);
            if trusted.contains(&addr) && !out.iter().any(|(a, _)| *a == addr) {
                out.push((addr, s.signature.clone()));
            }
        }
        out.sort_by_key(|a| a.0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_lock_contracts::TxId;

    fn record() -> HubRecord {
        HubRecord {
            height: 9,
            tx: TxId("r".into()),
        }
    }

    #[test]
    fn attestation_counts_distinct_trusted_signers_for_its_network_only() {
        let keys = [Keypair::dev("h1"), Keypair::dev("h2"), Keypair::dev("h3")];
        let trusted: Vec<NodeId> = keys[..2].iter().map(Keypair::id).collect();
        let lock = LockId(Hash32([3; 32]));
        let mut att =
            HubAttestation::sign_ed25519(NetworkId(1), lock, Decision::Validated, record(), &keys);
        assert_eq!(
            att.ed25519_signers(&trusted),
            2,
            "the untrusted third is ignored"
        );
        let dup = att.signatures[0].clone();
        att.signatures.push(dup);
        assert_eq!(
            att.ed25519_signers(&trusted),
            2,
            "a repeated signer counts once"
        );
        // Replaying on another network, or flipping the decision, voids every signature.
        let mut other = att.clone();
        other.network = NetworkId(2);
        assert_eq!(other.ed25519_signers(&trusted), 0);
        let mut flipped = att.clone();
        flipped.decision = Decision::Aborted;
        assert_eq!(flipped.ed25519_signers(&trusted), 0);
    }

    #[test]
    fn secp256k1_attestation_recovers_distinct_trusted_signers_for_its_domain_only() {
        let keys: Vec<k256::ecdsa::SigningKey> = (1u8..=3)
            .map(|i| k256::ecdsa::SigningKey::from_slice(&[i; 32]).unwrap())
            .collect();
        let addrs: Vec<[u8; 20]> = keys
            .iter()
            .map(|k| EvmEscrowDomain::address_of(k.verifying_key()))
            .collect();
        let domain = EvmEscrowDomain {
            chain_id: 31337,
            escrow: [9; 20],
        };
        let lock = LockId(Hash32([3; 32]));
        let mut att = HubAttestation::sign_secp256k1_evm(
            NetworkId(1),
            lock,
            Decision::Validated,
            record(),
            &domain,
            &keys,
        );
        let dup = att.signatures[0].clone();
        att.signatures.push(dup);
        let got = att.secp256k1_evm_signers(&domain, &addrs[..2]);
        let mut want = addrs[..2].to_vec();
        want.sort();
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), want);
        let other = EvmEscrowDomain {
            chain_id: 1,
            ..domain
        };
        assert!(att.secp256k1_evm_signers(&other, &addrs).is_empty());
        let mut flipped = att.clone();
        flipped.decision = Decision::Aborted;
        assert!(flipped.secp256k1_evm_signers(&domain, &addrs).is_empty());
        // The ed25519 path ignores secp256k1 signatures and vice versa.
        assert_eq!(att.ed25519_signers(&[]), 0);
        // The address of the private key 0x0101…01 is the well-known one.
        assert_eq!(
            hex_addr(&addrs[0]),
            "1a642f0e3c3af545e7acbd38b07251b3990914f1"
        );
    }

    fn hex_addr(a: &[u8; 20]) -> String {
        a.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn evidence_digest_changes_with_any_field_and_round_trips() {
        let ev = Evidence::Opaque {
            scheme: "x".into(),
            block: BlockRef {
                height: 4,
                hash: Hash32([1; 32]),
            },
            bytes: vec![1, 2],
        };
        let mut other = ev.clone();
        if let Evidence::Opaque { bytes, .. } = &mut other {
            bytes.push(3);
        }
        assert_ne!(ev.digest(), other.digest());
        assert_eq!(ev.to_ref().height, 4);
        let json = serde_json::to_string(&ev).unwrap();
        assert!(json.contains("\"kind\":\"opaque\""), "{json}");
        assert_eq!(serde_json::from_str::<Evidence>(&json).unwrap(), ev);
    }
}
