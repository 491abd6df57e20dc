//! The light client: finality evidence for a native-chain transaction, built from a node's
//! answers and checked against nothing but the network's trusted genesis facts.
//!
//! - PoS: the block header, a commit certificate whose signers must be validators of the
//!   genesis validator set holding more than 2/3 of the stake, and the transaction's Merkle
//!   path to the header's transaction root.
//! - PoW: the headers from the including block up, each linked to the one before, each
//!   meeting its own difficulty target, every difficulty at or above the configured floor,
//!   at least `confirmations` of them on top, and the Merkle path.

use isthmus_adapter_api::{BlockRef, CommitVote, Evidence, MerkleProof, Verified};
use isthmus_chain::block::{meets_target, BlockHeader};
use isthmus_chain::config::{ConsensusConfig, NetworkConfig};
use isthmus_chain::merkle::MerkleProof as ChainProof;
use isthmus_chain::pos::{CommitCert, PosValidatorSet};
use isthmus_core::{Hash32, Signature};

/// What the light client trusts about a network: its genesis config (validators, hash
/// rules) and its finality policy.
#[derive(Debug, Clone)]
pub struct LightClient {
    pub config: std::sync::Arc<NetworkConfig>,
    pub validators: PosValidatorSet,
    /// PoW: blocks on top of the including one before it counts as final.
    pub confirmations: u64,
    /// PoW: the lowest difficulty a header may claim (work below it is not counted).
    pub min_difficulty: u64,
}

/// The header's positional msgpack, as [`BlockHeader::hash`] hashes it.
pub fn encode_header(h: &BlockHeader) -> Vec<u8> {
    rmp_serde::to_vec(h).unwrap_or_default()
}

fn decode_header(bytes: &[u8]) -> Result<BlockHeader, String> {
    rmp_serde::from_slice(bytes).map_err(|e| format!("undecodable header: {e}"))
}

/// The API form of a chain Merkle proof for `leaf` under `root`.
pub fn api_proof(p: &ChainProof, leaf: Hash32, root: Hash32) -> MerkleProof {
    MerkleProof {
        leaf_index: p.index,
        leaf,
        siblings: p.siblings.clone(),
        root,
    }
}

/// The commit certificate as evidence votes.
pub fn votes(cert: &CommitCert) -> Vec<CommitVote> {
    cert.signatures
        .iter()
        .map(|(id, sig)| CommitVote {
            validator: *id,
            signature: sig.0.to_vec(),
        })
        .collect()
}

impl LightClient {
    pub fn is_pos(&self) -> bool {
        matches!(self.config.consensus, ConsensusConfig::Pos(_))
    }

    /// The hash of `h` under the rules at its height, and its block ref.
    pub fn block_ref(&self, h: &BlockHeader) -> BlockRef {
        BlockRef {
            height: h.number,
            hash: h.hash(self.config.rules_at(h.number).hash),
        }
    }

    fn check_inclusion(&self, tx: Hash32, h: &BlockHeader, p: &MerkleProof) -> Result<(), String> {
        if p.leaf != tx {
            return Err(format!(
                "proof is for leaf {}, not tx {}",
                p.leaf.to_hex(),
                tx.to_hex()
            ));
        }
        if p.root != h.tx_root {
            return Err("proof root differs from the header's transaction root".to_owned());
        }
        let chain = ChainProof {
            index: p.leaf_index,
            leaf_count: u64::from(h.tx_count),
            siblings: p.siblings.clone(),
        };
        chain
            .verify(self.config.rules_at(h.number).hash, tx, &h.tx_root)
            .map_err(|e| format!("merkle proof: {e}"))
    }

    /// Verify `ev` as proof that `tx` is final.
    pub fn verify(&self, tx: Hash32, ev: &Evidence) -> Result<Verified, String> {
        match ev {
            Evidence::CommitCertificate {
                block,
                header,
                round,
                votes,
                tx_proof,
            } => {
                if !self.is_pos() {
                    return Err("a proof-of-work network has no commit certificates".to_owned());
                }
                let h = decode_header(header)?;
                let r = self.block_ref(&h);
                if r != *block {
                    return Err(format!(
                        "header is block {} {}, evidence names {} {}",
                        r.height, r.hash, block.height, block.hash
                    ));
                }
                let signatures = votes
                    .iter()
                    .map(|v| {
                        let sig: [u8; 64] = v.signature.as_slice().try_into().map_err(|_| {
                            format!("vote of {} is not a 64-byte signature", v.validator)
                        })?;
                        Ok((v.validator, Signature(sig)))
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                let cert = CommitCert {
                    height: h.number,
                    round: i64::try_from(*round).map_err(|_| format!("round {round} too large"))?,
                    block_hash: r.hash,
                    signatures,
                };
                cert.verify(self.config.network(), &self.validators, &r.hash)?;
                self.check_inclusion(tx, &h, tx_proof)?;
                Ok(Verified {
                    block: r,
                    confirmations: 0,
                    digest: ev.digest(),
                })
            }
            Evidence::PowConfirmations {
                block,
                headers,
                tx_proof,
            } => {
                if self.is_pos() {
                    return Err(
                        "a proof-of-stake network proves finality by certificate".to_owned()
                    );
                }
                let hs = headers
                    .iter()
                    .map(|b| decode_header(b))
                    .collect::<Result<Vec<_>, String>>()?;
                let Some(first) = hs.first() else {
                    return Err("no headers".to_owned());
                };
                let r = self.block_ref(first);
                if r != *block {
                    return Err(format!(
                        "first header is block {} {}, evidence names {} {}",
                        r.height, r.hash, block.height, block.hash
                    ));
                }
                let mut prev: Option<BlockRef> = None;
                for h in &hs {
                    let here = self.block_ref(h);
                    if let Some(p) = prev {
                        if h.prev_hash != p.hash || h.number != p.height + 1 {
                            return Err(format!(
                                "header {} does not extend {}",
                                h.number, p.height
                            ));
                        }
                    }
                    if h.difficulty < self.min_difficulty {
                        return Err(format!(
                            "header {} claims difficulty {}, below the floor {}",
                            h.number, h.difficulty, self.min_difficulty
                        ));
                    }
                    if !meets_target(&here.hash, h.difficulty) {
                        return Err(format!(
                            "header {} does not meet its difficulty target",
                            h.number
                        ));
                    }
                    prev = Some(here);
                }
                let confirmations = (hs.len() - 1) as u64;
                if confirmations < self.confirmations {
                    return Err(format!(
                        "{confirmations} confirmation(s), {} required",
                        self.confirmations
                    ));
                }
                self.check_inclusion(tx, first, tx_proof)?;
                Ok(Verified {
                    block: r,
                    confirmations,
                    digest: ev.digest(),
                })
            }
            other => Err(format!(
                "{} evidence is not native-chain evidence",
                other.kind_name()
            )),
        }
    }
}
