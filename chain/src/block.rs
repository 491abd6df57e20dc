//! Blocks and headers.
//!
//! The header hash is the network's [`HashAlgo`] (at that height, see
//! [`crate::config::NetworkConfig::rules_at`]) over the positional msgpack of
//! [`BlockHeader`]. The proposer (PoS) or miner (PoW) signs the header hash under
//! [`Domain::BlockHeader`]; PoW additionally requires the hash to meet the difficulty target.

use crate::merkle::{self, MerkleProof};
use crate::tx::{encode_canonical, Transaction};
use isthmus_core::{
    sign, Domain, Hash32, HashAlgo, Keypair, NetworkId, NodeId, SignError, Signature,
};
use serde::{Deserialize, Serialize};

/// Everything about a block except its transactions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    /// Protocol version the block was built under.
    pub version: u32,
    pub number: u64,
    pub prev_hash: Hash32,
    /// Merkle root of the transaction ids.
    pub tx_root: Hash32,
    /// State root after executing the block.
    pub state_root: Hash32,
    pub timestamp_ms: u64,
    pub proposer: NodeId,
    /// PoW difficulty the hash must meet (0 under PoS).
    pub difficulty: u64,
    /// PoW nonce (0 under PoS).
    pub nonce: u64,
    pub tx_count: u32,
    /// Total encoded size of the transactions, in bytes.
    pub size: u64,
}

impl BlockHeader {
    pub fn hash(&self, algo: HashAlgo) -> Hash32 {
        algo.digest(&encode_canonical(self))
    }
}

/// A block: header, transactions and the proposer's signature over the header hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub header: BlockHeader,
    pub txs: Vec<Transaction>,
    pub signature: Signature,
}

impl Block {
    /// Compute `tx_count`, `size` and `tx_root` from `txs` into `header`, then sign.
    pub fn seal(
        mut header: BlockHeader,
        txs: Vec<Transaction>,
        algo: HashAlgo,
        network: NetworkId,
        key: &Keypair,
    ) -> Block {
        header.tx_count = txs.len() as u32;
        header.size = txs.iter().map(|t| t.encoded().len() as u64).sum();
        header.tx_root = tx_root(algo, &txs);
        header.proposer = key.id();
        let signature = key.sign(Domain::BlockHeader, network, &header.hash(algo).0);
        Block {
            header,
            txs,
            signature,
        }
    }

    /// Re-sign after the header changed (the PoW nonce search).
    pub fn resign(&mut self, algo: HashAlgo, network: NetworkId, key: &Keypair) {
        self.signature = key.sign(Domain::BlockHeader, network, &self.header.hash(algo).0);
    }

    pub fn hash(&self, algo: HashAlgo) -> Hash32 {
        self.header.hash(algo)
    }

    pub fn verify_signature(&self, algo: HashAlgo, network: NetworkId) -> Result<(), SignError> {
        sign::verify(
            &self.header.proposer,
            Domain::BlockHeader,
            network,
            &self.hash(algo).0,
            &self.signature,
        )
    }

    pub fn tx_ids(&self, algo: HashAlgo) -> Vec<Hash32> {
        self.txs.iter().map(|t| t.id(algo)).collect()
    }

    /// Inclusion proof of the transaction at `index`, against `header.tx_root`.
    pub fn tx_proof(&self, algo: HashAlgo, index: usize) -> Option<MerkleProof> {
        MerkleProof::build(algo, &self.tx_ids(algo), index)
    }

    pub fn encoded(&self) -> Vec<u8> {
        encode_canonical(self)
    }
}

/// Merkle root of a transaction list.
pub fn tx_root(algo: HashAlgo, txs: &[Transaction]) -> Hash32 {
    let ids: Vec<Hash32> = txs.iter().map(|t| t.id(algo)).collect();
    merkle::root_of_leaves(algo, &ids)
}

/// Work represented by a block of `difficulty` (expected number of hashes).
pub fn work(difficulty: u64) -> u128 {
    u128::from(difficulty)
}

/// Whether `hash` meets `difficulty`: its first 8 bytes, read big-endian, must not exceed
/// `u64::MAX / difficulty`, so on average `difficulty` hashes are needed.
pub fn meets_target(hash: &Hash32, difficulty: u64) -> bool {
    let mut head = [0u8; 8];
    head.copy_from_slice(&hash.0[..8]);
    difficulty > 0 && u64::from_be_bytes(head) <= u64::MAX / difficulty
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_sign_and_prove() {
        let k = Keypair::dev("p");
        let net = NetworkId(3);
        let txs: Vec<_> = (0..5)
            .map(|i| Transaction::transfer(&k, net, i, k.id(), 1))
            .collect();
        let h = BlockHeader {
            version: 1,
            number: 1,
            prev_hash: Hash32::ZERO,
            tx_root: Hash32::ZERO,
            state_root: Hash32::ZERO,
            timestamp_ms: 1,
            proposer: NodeId([0; 32]),
            difficulty: 0,
            nonce: 0,
            tx_count: 0,
            size: 0,
        };
        for algo in HashAlgo::ALL {
            let b = Block::seal(h.clone(), txs.clone(), algo, net, &k);
            assert_eq!(b.header.tx_count, 5);
            assert!(b.verify_signature(algo, net).is_ok());
            let p = b.tx_proof(algo, 3).unwrap();
            assert!(p.verify(algo, txs[3].id(algo), &b.header.tx_root).is_ok());
            let mut t = b.clone();
            t.header.number = 2;
            assert!(t.verify_signature(algo, net).is_err());
        }
    }

    #[test]
    fn target_scales_with_difficulty() {
        let mut h = Hash32::ZERO;
        assert!(meets_target(&h, u64::MAX));
        h.0[0] = 0x80;
        assert!(meets_target(&h, 1));
        assert!(!meets_target(&h, 2));
        assert!(!meets_target(&h, 0));
    }
}
