//! The light client: finality evidence for a native-chain transaction, built from a node's
//! answers and checked against nothing but the network's trusted genesis facts.
//!
//! - PoS: the block header, a commit certificate whose signers must be validators of the
//!   genesis validator set holding more than 2/3 of the stake, and the transaction's Merkle
//!   path to the header's transaction root.
//! - PoW: the headers from the including block up, each linked to the one before, at least
//!   `confirmations` of them on top, and the Merkle path; and every header must extend the
//!   light client's own header chain, anchored at the network's genesis (the block the
//!   hub's trusted config fixes): linked to a header already there, carrying exactly the
//!   difficulty the retarget rule gives (never below the floor), meeting it, and timestamped
//!   past the median of the 11 before. The including block must lie on the chain with the
//!   most cumulative work the light client knows, `confirmations` deep. Cheap forged
//!   headers (a low difficulty, or a side branch with less work) are refused however they
//!   link. [`LightClient::extend`] feeds it headers (the adapter syncs it from its node;
//!   what a node serves is checked the same way).

use isthmus_adapter_api::{BlockRef, CommitVote, Evidence, MerkleProof, Verified};
use isthmus_chain::block::{self, meets_target, BlockHeader};
use isthmus_chain::chain::{self as chainmod, IndexEntry};
use isthmus_chain::config::{ConsensusConfig, NetworkConfig};
use isthmus_chain::merkle::MerkleProof as ChainProof;
use isthmus_chain::pos::{CommitCert, PosValidatorSet};
use isthmus_core::{Hash32, Signature};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Headers kept below the best tip; older ones are dropped and the anchor moves up.
const KEEP_DEPTH: u64 = 20_000;

/// What the light client trusts about a network: its genesis config (validators, hash
/// rules) and its finality policy, and (PoW) the header chain it has verified so far.
#[derive(Debug, Clone)]
pub struct LightClient {
    pub config: std::sync::Arc<NetworkConfig>,
    pub validators: PosValidatorSet,
    /// PoW: blocks on top of the including one before it counts as final.
    pub confirmations: u64,
    /// PoW: the lowest difficulty a header may claim (work below it is not counted).
    pub min_difficulty: u64,
    headers: Arc<Mutex<Anchored>>,
}

/// PoW: the verified header chain, from the anchor (genesis, later a deep ancestor of the
/// best tip) up, with every known branch and its cumulative work.
#[derive(Debug)]
struct Anchored {
    entries: HashMap<Hash32, IndexEntry>,
    anchor: Hash32,
    best: Hash32,
}

impl Anchored {
    fn best_entry(&self) -> Option<IndexEntry> {
        self.entries.get(&self.best).copied()
    }

    /// The hash of the block at `number` on the best chain, if known.
    fn best_at(&self, number: u64) -> Option<Hash32> {
        let mut cur = self.best;
        loop {
            let e = self.entries.get(&cur)?;
            if e.number == number {
                return Some(cur);
            }
            if e.number < number {
                return None;
            }
            cur = e.prev;
        }
    }

    /// Move the anchor to the best chain's block `KEEP_DEPTH` deep and drop what is below.
    fn prune(&mut self) {
        let Some(best) = self.best_entry() else {
            return;
        };
        let Some(new_anchor) = best
            .number
            .checked_sub(KEEP_DEPTH)
            .and_then(|n| self.best_at(n))
        else {
            return;
        };
        let Some(floor) = self.entries.get(&new_anchor).map(|e| e.number) else {
            return;
        };
        if new_anchor == self.anchor {
            return;
        }
        self.entries.retain(|_, e| e.number >= floor);
        self.anchor = new_anchor;
    }
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
    /// A light client for the network of `config`, trusting its genesis: the validator set
    /// (PoS) or the genesis block as the anchor of its header chain (PoW).
    pub fn new(config: Arc<NetworkConfig>, confirmations: u64, min_difficulty: u64) -> Self {
        let genesis = chainmod::genesis_block(&config);
        let hash = genesis.hash(config.rules_at(0).hash);
        let entry = IndexEntry {
            number: 0,
            prev: Hash32::ZERO,
            timestamp_ms: genesis.header.timestamp_ms,
            difficulty: genesis.header.difficulty,
            total_work: block::work(genesis.header.difficulty),
        };
        LightClient {
            validators: PosValidatorSet::new(&config.validators()),
            config,
            confirmations,
            min_difficulty,
            headers: Arc::new(Mutex::new(Anchored {
                entries: HashMap::from([(hash, entry)]),
                anchor: hash,
                best: hash,
            })),
        }
    }

    fn anchored(&self) -> std::sync::MutexGuard<'_, Anchored> {
        self.headers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the header chain holds the block `hash` (PoW).
    pub fn knows(&self, hash: &Hash32) -> bool {
        self.anchored().entries.contains_key(hash)
    }

    /// The height and hash of the best (most cumulative work) header known (PoW).
    pub fn best(&self) -> (u64, Hash32) {
        let a = self.anchored();
        (a.best_entry().map_or(0, |e| e.number), a.best)
    }

    /// Add `headers` (oldest first) to the anchored header chain. Each must link to a
    /// header already known (or to one before it in `headers`) and pass the PoW rules at
    /// its place; the first that does not stops the extension with the reason. Headers
    /// already known are skipped.
    pub fn extend(&self, headers: &[BlockHeader]) -> Result<(), String> {
        let ConsensusConfig::Pow(pow) = &self.config.consensus else {
            return Err("a proof-of-stake network has no header chain to extend".to_owned());
        };
        let mut a = self.anchored();
        for h in headers {
            let hash = self.block_ref(h).hash;
            if a.entries.contains_key(&hash) {
                continue;
            }
            let Some(parent) = a.entries.get(&h.prev_hash).copied() else {
                return Err(format!(
                    "header {} does not extend the header chain anchored at the trusted \
                     checkpoint (parent {} unknown)",
                    h.number, h.prev_hash
                ));
            };
            if h.number != parent.number + 1 {
                return Err(format!(
                    "header {} does not follow its parent {}",
                    h.number, parent.number
                ));
            }
            if h.difficulty < self.min_difficulty {
                return Err(format!(
                    "header {} claims difficulty {}, below the floor {}",
                    h.number, h.difficulty, self.min_difficulty
                ));
            }
            let lookup = |x: &Hash32| a.entries.get(x).copied();
            let expected = chainmod::expected_difficulty(&self.config, pow, &parent, lookup);
            if h.difficulty != expected {
                return Err(format!(
                    "header {} claims difficulty {}, the chain requires {expected}",
                    h.number, h.difficulty
                ));
            }
            if !meets_target(&hash, h.difficulty) {
                return Err(format!(
                    "header {} does not meet its difficulty target",
                    h.number
                ));
            }
            let median = chainmod::median_time_past(Some(parent), lookup);
            if h.timestamp_ms < parent.timestamp_ms || h.timestamp_ms <= median {
                return Err(format!(
                    "header {} has timestamp {}, before its parent's {} or not after the \
                     median {median}",
                    h.number, h.timestamp_ms, parent.timestamp_ms
                ));
            }
            let entry = IndexEntry {
                number: h.number,
                prev: h.prev_hash,
                timestamp_ms: h.timestamp_ms,
                difficulty: h.difficulty,
                total_work: parent.total_work + block::work(h.difficulty),
            };
            a.entries.insert(hash, entry);
            if a.best_entry()
                .is_none_or(|b| entry.total_work > b.total_work)
            {
                a.best = hash;
            }
        }
        a.prune();
        Ok(())
    }

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
                    prev = Some(here);
                }
                let shown = (hs.len() - 1) as u64;
                if shown < self.confirmations {
                    return Err(format!(
                        "{shown} confirmation(s), {} required",
                        self.confirmations
                    ));
                }
                self.extend(&hs)?;
                self.check_inclusion(tx, first, tx_proof)?;
                // Final only on the chain with the most work known, deep enough there.
                let a = self.anchored();
                let best = a.best_entry().map_or(0, |e| e.number);
                if a.best_at(r.height) != Some(r.hash) {
                    return Err(format!(
                        "block {} {} is not on the header chain with the most work (best \
                         tip at height {best})",
                        r.height, r.hash
                    ));
                }
                let confirmations = best - r.height;
                if confirmations < self.confirmations {
                    return Err(format!(
                        "{confirmations} confirmation(s) on the heaviest chain, {} required",
                        self.confirmations
                    ));
                }
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
