//! Bitcoin-family inclusion proofs: the Merkle branch of a txid, and the light-client check of
//! [`Evidence::UtxoConfirmations`] (header linkage, proof of work under the chain's own PoW
//! hash, confirmation depth, Merkle branch). Pure: it never asks a node.
//!
//! [`HeaderChain`] is the light client's memory: headers from a checkpoint the hub trusts,
//! each joining only linked to one already there and meeting its target, with the
//! cumulative work of every branch. [`verify_anchored`] counts evidence only when its block
//! lies on the branch with the most work, deep enough there, so a relayer's cheaply mined
//! headers (a side branch, or a chain of its own) prove nothing.

use bitcoin::block::Header;
use bitcoin::consensus::encode::deserialize;
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::Work;
use bitcoin::{BlockHash, CompactTarget, Target, Transaction};
use isthmus_adapter_api::{BlockRef, Evidence, MerkleProof};
use isthmus_core::Hash32;
use std::collections::HashMap;

/// Headers kept below the best tip; older ones are dropped and the anchor moves up.
const KEEP_DEPTH: u64 = 20_000;

/// The hash a chain's proof of work is measured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowHash {
    /// Bitcoin: the block hash itself.
    Sha256d,
    /// Litecoin: scrypt(N=1024, r=1, p=1) of the header.
    Scrypt,
}

impl PowHash {
    fn of(self, header: &Header) -> Option<BlockHash> {
        match self {
            PowHash::Sha256d => Some(header.block_hash()),
            PowHash::Scrypt => {
                let bytes = bitcoin::consensus::encode::serialize(header);
                let params = scrypt::Params::new(10, 1, 1, 32).ok()?;
                let mut out = [0u8; 32];
                scrypt::scrypt(&bytes, &bytes, &params, &mut out).ok()?;
                Some(BlockHash::from_byte_array(out))
            }
        }
    }
}

fn combine(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(a);
    buf[32..].copy_from_slice(b);
    sha256d::Hash::hash(&buf).to_byte_array()
}

/// The Merkle branch of `txids[index]` (txids in internal byte order), Bitcoin style: an odd
/// level pairs its last node with itself.
pub fn branch(txids: &[[u8; 32]], index: usize) -> Option<MerkleProof> {
    let leaf = *txids.get(index)?;
    let mut level: Vec<[u8; 32]> = txids.to_vec();
    let mut at = index;
    let mut siblings = Vec::new();
    while level.len() > 1 {
        let sib = if at % 2 == 0 {
            *level.get(at + 1).unwrap_or(&level[at])
        } else {
            level[at - 1]
        };
        siblings.push(Hash32(sib));
        level = level
            .chunks(2)
            .map(|c| combine(&c[0], c.get(1).unwrap_or(&c[0])))
            .collect();
        at /= 2;
    }
    Some(MerkleProof {
        leaf_index: index as u64,
        leaf: Hash32(leaf),
        siblings,
        root: Hash32(level[0]),
    })
}

/// The root a branch leads to.
pub fn root_of(proof: &MerkleProof) -> [u8; 32] {
    let mut acc = proof.leaf.0;
    let mut at = proof.leaf_index;
    for s in &proof.siblings {
        acc = if at % 2 == 0 {
            combine(&acc, &s.0)
        } else {
            combine(&s.0, &acc)
        };
        at /= 2;
    }
    acc
}

/// What [`verify`] established: the including block and its depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub block: BlockRef,
    pub confirmations: u64,
}

/// Check `ev` proves `txid` (display hex) at least `min_confirmations` deep, with every
/// header meeting its target and no target easier than `pow_limit`.
pub fn verify(
    ev: &Evidence,
    txid: &str,
    min_confirmations: u64,
    pow: PowHash,
    pow_limit: CompactTarget,
) -> Result<Checked, String> {
    let Evidence::UtxoConfirmations {
        block,
        raw_tx,
        tx_proof,
        headers,
    } = ev
    else {
        return Err(format!("{} evidence on a utxo chain", ev.kind_name()));
    };
    let tx: Transaction =
        deserialize(raw_tx).map_err(|e| format!("raw transaction does not decode: {e}"))?;
    let id = tx.compute_txid();
    if id.to_string() != txid {
        return Err(format!("evidence proves tx {id}, not {txid}"));
    }
    if tx_proof.leaf.0 != id.to_byte_array() {
        return Err("merkle leaf is not the transaction's id".to_owned());
    }
    let limit = Target::from_compact(pow_limit);
    let mut prev: Option<BlockHash> = None;
    let mut first: Option<Header> = None;
    for (i, raw) in headers.iter().enumerate() {
        let h: Header =
            deserialize(raw.as_ref()).map_err(|e| format!("header {i} does not decode: {e}"))?;
        if let Some(p) = prev {
            if h.prev_blockhash != p {
                return Err(format!("header {i} does not extend header {}", i - 1));
            }
        }
        let target = h.target();
        if target > limit {
            return Err(format!(
                "header {i} claims a target easier than the chain allows"
            ));
        }
        let work = pow.of(&h).ok_or("proof-of-work hash failed")?;
        if !target.is_met_by(work) {
            return Err(format!("header {i} does not meet its target"));
        }
        prev = Some(h.block_hash());
        first.get_or_insert(h);
    }
    let first = first.ok_or("no headers")?;
    if first.block_hash().to_byte_array() != block.hash.0 {
        return Err("first header is not the including block".to_owned());
    }
    if root_of(tx_proof) != first.merkle_root.to_byte_array()
        || tx_proof.root.0 != first.merkle_root.to_byte_array()
    {
        return Err("merkle branch does not lead to the block's root".to_owned());
    }
    let confirmations = headers.len() as u64;
    if confirmations < min_confirmations {
        return Err(format!(
            "{confirmations} confirmations, {min_confirmations} needed"
        ));
    }
    Ok(Checked {
        block: *block,
        confirmations,
    })
}

/// A block the hub trusts as the start of a chain's headers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub height: u64,
    /// The block hash, display hex.
    pub hash: String,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    height: u64,
    prev: BlockHash,
    work: Work,
}

/// A header chain anchored at a trusted checkpoint (see the module docs).
#[derive(Debug, Clone)]
pub struct HeaderChain {
    pow: PowHash,
    pow_limit: CompactTarget,
    limit: Target,
    entries: HashMap<BlockHash, Entry>,
    anchor: BlockHash,
    best: BlockHash,
}

impl HeaderChain {
    /// A chain that trusts block `hash` at `height` and nothing else yet.
    pub fn new(height: u64, hash: BlockHash, pow: PowHash, pow_limit: CompactTarget) -> Self {
        let entry = Entry {
            height,
            prev: BlockHash::all_zeros(),
            work: Target::MAX.to_work(),
        };
        HeaderChain {
            pow,
            pow_limit,
            limit: Target::from_compact(pow_limit),
            entries: HashMap::from([(hash, entry)]),
            anchor: hash,
            best: hash,
        }
    }

    pub fn knows(&self, hash: &BlockHash) -> bool {
        self.entries.contains_key(hash)
    }

    /// Height and hash of the tip with the most cumulative work.
    pub fn best(&self) -> (u64, BlockHash) {
        (
            self.entries.get(&self.best).map_or(0, |e| e.height),
            self.best,
        )
    }

    /// Add `headers` (oldest first). Each must link to a known header (or the one before
    /// it here), claim no easier target than the limit and meet it; the first that fails
    /// stops the extension with the reason. Known headers are skipped.
    pub fn extend(&mut self, headers: &[Header]) -> Result<(), String> {
        for h in headers {
            let hash = h.block_hash();
            if self.entries.contains_key(&hash) {
                continue;
            }
            let Some(parent) = self.entries.get(&h.prev_blockhash).copied() else {
                return Err(format!(
                    "header {hash} does not extend the header chain anchored at the trusted \
                     checkpoint (parent {} unknown)",
                    h.prev_blockhash
                ));
            };
            let target = h.target();
            if target > self.limit {
                return Err(format!(
                    "header {hash} claims a target easier than the chain allows"
                ));
            }
            let pow = self.pow.of(h).ok_or("proof-of-work hash failed")?;
            if !target.is_met_by(pow) {
                return Err(format!("header {hash} does not meet its target"));
            }
            let entry = Entry {
                height: parent.height + 1,
                prev: h.prev_blockhash,
                work: parent.work + h.work(),
            };
            self.entries.insert(hash, entry);
            let best_work = self.entries.get(&self.best).map(|e| e.work);
            if best_work.is_none_or(|w| entry.work > w) {
                self.best = hash;
            }
        }
        self.prune();
        Ok(())
    }

    /// How deep `hash` lies on the branch of most work (the tip counts 1); `None` if it is
    /// not on it.
    pub fn depth_on_best(&self, hash: &BlockHash) -> Option<u64> {
        let target = self.entries.get(hash)?.height;
        let (best_height, _) = self.best();
        let mut cur = self.best;
        loop {
            let e = self.entries.get(&cur)?;
            if e.height == target {
                return (cur == *hash).then_some(best_height - target + 1);
            }
            if e.height < target {
                return None;
            }
            cur = e.prev;
        }
    }

    fn prune(&mut self) {
        let (best_height, _) = self.best();
        let Some(floor) = best_height.checked_sub(KEEP_DEPTH) else {
            return;
        };
        let mut cur = self.best;
        while let Some(e) = self.entries.get(&cur) {
            if e.height <= floor {
                break;
            }
            cur = e.prev;
        }
        if cur != self.anchor && self.entries.contains_key(&cur) {
            self.entries.retain(|_, e| e.height >= floor);
            self.anchor = cur;
        }
    }
}

/// [`verify`], and then: the evidence's headers must extend `chain` and its block lie on
/// the branch of most work, at least `min_confirmations` deep there.
pub fn verify_anchored(
    chain: &mut HeaderChain,
    ev: &Evidence,
    txid: &str,
    min_confirmations: u64,
) -> Result<Checked, String> {
    let checked = verify(ev, txid, min_confirmations, chain.pow, chain.pow_limit)?;
    let Evidence::UtxoConfirmations { headers, .. } = ev else {
        return Err(format!("{} evidence on a utxo chain", ev.kind_name()));
    };
    let hs = headers
        .iter()
        .map(|raw| deserialize::<Header>(raw.as_ref()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("header does not decode: {e}"))?;
    chain.extend(&hs)?;
    let hash = BlockHash::from_byte_array(checked.block.hash.0);
    let (best, _) = chain.best();
    let depth = chain.depth_on_best(&hash).ok_or_else(|| {
        format!(
            "block {hash} is not on the header chain with the most work (best tip at height \
             {best})"
        )
    })?;
    if depth < min_confirmations {
        return Err(format!(
            "{depth} confirmations on the heaviest chain, {min_confirmations} needed"
        ));
    }
    Ok(Checked {
        block: checked.block,
        confirmations: depth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u8) -> Vec<[u8; 32]> {
        (0..n).map(|i| [i; 32]).collect()
    }

    #[test]
    fn branches_lead_to_one_root_for_every_leaf() {
        for n in 1..=7u8 {
            let leaves = ids(n);
            let root = branch(&leaves, 0).unwrap().root;
            for i in 0..n as usize {
                let p = branch(&leaves, i).unwrap();
                assert_eq!(p.root, root, "n={n} i={i}");
                assert_eq!(root_of(&p), root.0, "n={n} i={i}");
                let mut bad = p.clone();
                bad.leaf_index ^= 1;
                if n > 1
                    && bad.leaf_index < u64::from(n)
                    && leaves[i] != leaves[bad.leaf_index as usize]
                {
                    assert_ne!(root_of(&bad), root.0);
                }
            }
        }
        assert!(branch(&ids(3), 3).is_none());
    }

    const REGTEST: u32 = 0x207f_ffff;

    /// A header chain of `n` blocks mined under scrypt at regtest difficulty, the first
    /// holding `tx` alone, as evidence for `tx`.
    fn evidence(tx: &Transaction, n: usize, bits: u32) -> Evidence {
        use bitcoin::block::Version;
        use bitcoin::TxMerkleNode;
        let txid = tx.compute_txid().to_byte_array();
        let mut headers = Vec::new();
        let mut prev = BlockHash::all_zeros();
        let mut first = None;
        for i in 0..n {
            let mut h = Header {
                version: Version::from_consensus(0x2000_0000),
                prev_blockhash: prev,
                merkle_root: TxMerkleNode::from_byte_array(if i == 0 {
                    txid
                } else {
                    [i as u8; 32]
                }),
                time: 1_700_000_000 + i as u32,
                bits: CompactTarget::from_consensus(bits),
                nonce: 0,
            };
            while !h.target().is_met_by(PowHash::Scrypt.of(&h).unwrap()) {
                h.nonce += 1;
            }
            prev = h.block_hash();
            first.get_or_insert(prev);
            headers.push(serde_bytes::ByteBuf::from(
                bitcoin::consensus::encode::serialize(&h),
            ));
        }
        Evidence::UtxoConfirmations {
            block: BlockRef {
                height: 500,
                hash: Hash32(first.unwrap().to_byte_array()),
            },
            raw_tx: bitcoin::consensus::encode::serialize(tx),
            tx_proof: branch(&[txid], 0).unwrap(),
            headers,
        }
    }

    #[test]
    fn evidence_needs_linked_work_at_depth_under_the_limit() {
        use bitcoin::{absolute, transaction, Amount, ScriptBuf, TxIn, TxOut};
        let tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn::default()],
            output: vec![TxOut {
                value: Amount::from_sat(5),
                script_pubkey: ScriptBuf::new(),
            }],
        };
        let id = tx.compute_txid().to_string();
        let limit = CompactTarget::from_consensus(REGTEST);
        let ev = evidence(&tx, 3, REGTEST);
        let ok = verify(&ev, &id, 3, PowHash::Scrypt, limit).unwrap();
        assert_eq!((ok.block.height, ok.confirmations), (500, 3));
        // Too shallow for the declared depth.
        assert!(verify(&ev, &id, 4, PowHash::Scrypt, limit).is_err());
        // Headers that do not chain.
        let mut swapped = ev.clone();
        if let Evidence::UtxoConfirmations { headers, .. } = &mut swapped {
            headers.swap(1, 2);
        }
        assert!(verify(&swapped, &id, 3, PowHash::Scrypt, limit).is_err());
        // Headers claiming a target easier than the chain allows; a proof for another tx.
        assert!(verify(
            &ev,
            &id,
            3,
            PowHash::Scrypt,
            CompactTarget::from_consensus(0x1e0f_fff0)
        )
        .is_err());
        let mut other = tx.clone();
        other.output[0].value = Amount::from_sat(6);
        assert!(verify(
            &ev,
            &other.compute_txid().to_string(),
            3,
            PowHash::Scrypt,
            limit
        )
        .is_err());
    }

    /// `n` regtest headers on `prev`, the first with merkle root `first_root`.
    fn mine(prev: BlockHash, n: usize, first_root: [u8; 32], salt: u8) -> Vec<Header> {
        use bitcoin::block::Version;
        use bitcoin::TxMerkleNode;
        let mut out: Vec<Header> = Vec::new();
        for i in 0..n {
            let mut h = Header {
                version: Version::from_consensus(0x2000_0000),
                prev_blockhash: out.last().map_or(prev, Header::block_hash),
                merkle_root: TxMerkleNode::from_byte_array(if i == 0 {
                    first_root
                } else {
                    [salt.wrapping_add(i as u8); 32]
                }),
                time: 1_700_000_000 + i as u32,
                bits: CompactTarget::from_consensus(REGTEST),
                nonce: 0,
            };
            while !h.target().is_met_by(PowHash::Scrypt.of(&h).unwrap()) {
                h.nonce += 1;
            }
            out.push(h);
        }
        out
    }

    fn evidence_of(tx: &Transaction, height: u64, hs: &[Header]) -> Evidence {
        Evidence::UtxoConfirmations {
            block: BlockRef {
                height,
                hash: Hash32(hs[0].block_hash().to_byte_array()),
            },
            raw_tx: bitcoin::consensus::encode::serialize(tx),
            tx_proof: branch(&[tx.compute_txid().to_byte_array()], 0).unwrap(),
            headers: hs
                .iter()
                .map(|h| serde_bytes::ByteBuf::from(bitcoin::consensus::encode::serialize(h)))
                .collect(),
        }
    }

    fn payment(sats: u64) -> Transaction {
        use bitcoin::{absolute, transaction, Amount, ScriptBuf, TxIn, TxOut};
        Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn::default()],
            output: vec![TxOut {
                value: Amount::from_sat(sats),
                script_pubkey: ScriptBuf::new(),
            }],
        }
    }

    #[test]
    fn anchored_chain_counts_only_the_branch_of_most_work_from_the_checkpoint() {
        let limit = CompactTarget::from_consensus(REGTEST);
        let checkpoint = BlockHash::from_byte_array([9; 32]);
        let mut chain = HeaderChain::new(100, checkpoint, PowHash::Scrypt, limit);
        // The real chain: six blocks on the checkpoint, the first paying 5.
        let real_tx = payment(5);
        let real = mine(checkpoint, 6, real_tx.compute_txid().to_byte_array(), 0);
        chain.extend(&real).unwrap();
        assert_eq!(chain.best(), (106, real[5].block_hash()));
        let ok = verify_anchored(
            &mut chain,
            &evidence_of(&real_tx, 101, &real[..3]),
            &real_tx.compute_txid().to_string(),
            3,
        )
        .unwrap();
        assert_eq!(ok.confirmations, 6, "depth on the heaviest chain");
        // A relayer forks off the real block 102 and mines three cheap headers of its own,
        // the first "including" a payment of 500 that never happened: linked, worked, three
        // deep as evidence, yet a branch with less work than the real one.
        let fake_tx = payment(500);
        let fake_id = fake_tx.compute_txid().to_string();
        let side = mine(
            real[1].block_hash(),
            3,
            fake_tx.compute_txid().to_byte_array(),
            50,
        );
        let side_ev = evidence_of(&fake_tx, 103, &side);
        assert!(verify(&side_ev, &fake_id, 3, PowHash::Scrypt, limit).is_ok());
        let e = verify_anchored(&mut chain, &side_ev, &fake_id, 3).unwrap_err();
        assert!(e.contains("most work"), "{e}");
        assert!(chain.knows(&side[2].block_hash()), "kept as a side branch");
        assert_eq!(chain.best(), (106, real[5].block_hash()));
        // A chain of its own, from nowhere the hub trusts: refused outright.
        let own = mine(
            BlockHash::all_zeros(),
            8,
            fake_tx.compute_txid().to_byte_array(),
            90,
        );
        let e =
            verify_anchored(&mut chain, &evidence_of(&fake_tx, 1, &own), &fake_id, 3).unwrap_err();
        assert!(e.contains("anchored at the trusted checkpoint"), "{e}");
        // A header on the real tip extends the heaviest chain: one deep itself, and the
        // real block 101 is seven deep now.
        let tip_tx = payment(7);
        let tip = mine(
            real[5].block_hash(),
            1,
            tip_tx.compute_txid().to_byte_array(),
            120,
        );
        let e = verify_anchored(
            &mut chain,
            &evidence_of(&tip_tx, 107, &tip),
            &tip_tx.compute_txid().to_string(),
            1,
        );
        assert_eq!(e.map(|c| c.confirmations), Ok(1));
        assert_eq!(chain.depth_on_best(&real[0].block_hash()), Some(7));
    }

    #[test]
    fn scrypt_pow_matches_litecoin_genesis() {
        // Litecoin mainnet genesis header: its scrypt hash meets the target.
        let raw = hex::decode(concat!(
            "01000000",
            "0000000000000000000000000000000000000000000000000000000000000000",
            "d9ced4ed1130f7b7faad9be25323ffafa33232a17c3edf6cfd97bee6bafbdd97",
            "b9aa8e4e",
            "f0ff0f1e",
            "cd513f7c"
        ))
        .unwrap();
        let h: Header = deserialize(&raw).unwrap();
        assert_eq!(
            h.block_hash().to_string(),
            "12a765e31ffd4059bada1e25190f6e98c99d9714d334efa41a195a7e7e04bfe2"
        );
        let work = PowHash::Scrypt.of(&h).unwrap();
        assert!(h.target().is_met_by(work));
        assert!(!h.target().is_met_by(PowHash::Sha256d.of(&h).unwrap()));
    }
}
