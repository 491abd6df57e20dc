//! Bitcoin-family inclusion proofs: the Merkle branch of a txid, and the light-client check of
//! [`Evidence::UtxoConfirmations`] (header linkage, proof of work under the chain's own PoW
//! hash, confirmation depth, Merkle branch). Pure: it never asks a node.

use bitcoin::block::Header;
use bitcoin::consensus::encode::deserialize;
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::{BlockHash, CompactTarget, Target, Transaction};
use isthmus_adapter_api::{BlockRef, Evidence, MerkleProof};
use isthmus_core::Hash32;

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
