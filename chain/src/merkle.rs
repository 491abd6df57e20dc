//! Binary Merkle tree over transaction ids (or any byte strings), with inclusion proofs.
//!
//! Node hashes are domain-separated so that a leaf can never be passed off as an inner
//! node (the second-preimage attack on naive trees):
//!
//! ```text
//! leaf  = H(0x00 | data)
//! inner = H(0x01 | left | right)
//! empty = H(0x02)                       (root of a tree with no leaves)
//! ```
//!
//! **Odd-node rule:** when a level has an odd number of nodes, the last node is *promoted*
//! unchanged to the next level. It is never duplicated, so two different leaf lists can
//! never share a root (unlike Bitcoin's duplicate-last rule, CVE-2012-2459).

use isthmus_core::{Hash32, HashAlgo};
use serde::{Deserialize, Serialize};

const LEAF: u8 = 0x00;
const INNER: u8 = 0x01;
const EMPTY: u8 = 0x02;

/// Hash of a leaf holding `data`.
pub fn leaf_hash(algo: HashAlgo, data: &[u8]) -> Hash32 {
    algo.digest_parts(&[&[LEAF], data])
}

fn inner_hash(algo: HashAlgo, left: &Hash32, right: &Hash32) -> Hash32 {
    algo.digest_parts(&[&[INNER], &left.0, &right.0])
}

/// Root of the tree with no leaves.
pub fn empty_root(algo: HashAlgo) -> Hash32 {
    algo.digest(&[EMPTY])
}

/// Root over already-hashed leaves (see [`leaf_hash`]).
pub fn root_of_leaves(algo: HashAlgo, leaves: &[Hash32]) -> Hash32 {
    if leaves.is_empty() {
        return empty_root(algo);
    }
    let mut level: Vec<Hash32> = leaves.to_vec();
    while level.len() > 1 {
        level = next_level(algo, &level);
    }
    level[0]
}

fn next_level(algo: HashAlgo, level: &[Hash32]) -> Vec<Hash32> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [l, r] => inner_hash(algo, l, r),
            // the odd last node (chunks never yields an empty slice)
            _ => pair[0],
        })
        .collect()
}

/// Root over raw leaf data.
pub fn root(algo: HashAlgo, items: &[&[u8]]) -> Hash32 {
    let leaves: Vec<Hash32> = items.iter().map(|d| leaf_hash(algo, d)).collect();
    root_of_leaves(algo, &leaves)
}

/// Proof that the leaf at `index` is in a tree of `leaf_count` leaves.
///
/// `siblings` lists the sibling hashes from the leaf level upwards; levels where the node
/// was promoted (odd-node rule) contribute no sibling. Verification recomputes the path
/// from `index` and `leaf_count`, so a proof cannot claim a different position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerkleProof {
    pub index: u64,
    pub leaf_count: u64,
    pub siblings: Vec<Hash32>,
}

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is outside a tree of {leaf_count} leaves")]
    IndexOutOfRange { index: u64, leaf_count: u64 },
    #[error("proof has {got} siblings, the path needs {expected}")]
    WrongLength { got: usize, expected: usize },
    #[error("proof leads to root {got}, expected {expected}")]
    RootMismatch { got: Hash32, expected: Hash32 },
}

impl MerkleProof {
    /// Build the proof for leaf `index` over already-hashed leaves. `None` if out of range.
    pub fn build(algo: HashAlgo, leaves: &[Hash32], index: usize) -> Option<MerkleProof> {
        if index >= leaves.len() {
            return None;
        }
        let mut siblings = Vec::new();
        let mut level: Vec<Hash32> = leaves.to_vec();
        let mut i = index;
        while level.len() > 1 {
            let sib = i ^ 1;
            if let Some(h) = level.get(sib) {
                siblings.push(*h);
            }
            level = next_level(algo, &level);
            i /= 2;
        }
        Some(MerkleProof {
            index: index as u64,
            leaf_count: leaves.len() as u64,
            siblings,
        })
    }

    /// Proofs for several leaves at once, hashing the tree once (one per index; `None` if
    /// out of range). Each equals what [`MerkleProof::build`] returns for its index.
    pub fn build_many(
        algo: HashAlgo,
        leaves: &[Hash32],
        indices: &[usize],
    ) -> Vec<Option<MerkleProof>> {
        let mut levels = vec![leaves.to_vec()];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let next = next_level(algo, levels.last().map_or(&[][..], |l| l.as_slice()));
            levels.push(next);
        }
        indices
            .iter()
            .map(|&index| {
                if index >= leaves.len() {
                    return None;
                }
                let mut siblings = Vec::new();
                let mut i = index;
                for level in levels.iter().take(levels.len().saturating_sub(1)) {
                    if let Some(h) = level.get(i ^ 1) {
                        siblings.push(*h);
                    }
                    i /= 2;
                }
                Some(MerkleProof {
                    index: index as u64,
                    leaf_count: leaves.len() as u64,
                    siblings,
                })
            })
            .collect()
    }

    /// Recompute the root from `leaf` (an already-hashed leaf) and compare with `root`.
    pub fn verify(&self, algo: HashAlgo, leaf: Hash32, root: &Hash32) -> Result<(), ProofError> {
        if self.index >= self.leaf_count {
            return Err(ProofError::IndexOutOfRange {
                index: self.index,
                leaf_count: self.leaf_count,
            });
        }
        let mut acc = leaf;
        let mut i = self.index;
        let mut width = self.leaf_count;
        let mut used = 0usize;
        while width > 1 {
            let is_right = i % 2 == 1;
            let promoted = !is_right && i == width - 1;
            if !promoted {
                let sib = self.siblings.get(used).ok_or(ProofError::WrongLength {
                    got: self.siblings.len(),
                    expected: used + 1,
                })?;
                used += 1;
                acc = if is_right {
                    inner_hash(algo, sib, &acc)
                } else {
                    inner_hash(algo, &acc, sib)
                };
            }
            i /= 2;
            width = width.div_ceil(2);
        }
        if used != self.siblings.len() {
            return Err(ProofError::WrongLength {
                got: self.siblings.len(),
                expected: used,
            });
        }
        if &acc != root {
            return Err(ProofError::RootMismatch {
                got: acc,
                expected: *root,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Hash32> {
        (0..n)
            .map(|i| leaf_hash(HashAlgo::Sha256, &(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn build_many_equals_build_for_every_index() {
        for n in 1..40 {
            let l = leaves(n);
            let idx: Vec<usize> = (0..=n).collect();
            let many = MerkleProof::build_many(HashAlgo::Sha256, &l, &idx);
            for (i, p) in idx.iter().zip(many) {
                assert_eq!(
                    p,
                    MerkleProof::build(HashAlgo::Sha256, &l, *i),
                    "{n} leaves, #{i}"
                );
            }
        }
    }

    #[test]
    fn odd_node_is_promoted_not_duplicated() {
        let a = HashAlgo::Blake3;
        let l = leaves(3);
        let expected = inner_hash(a, &inner_hash(a, &l[0], &l[1]), &l[2]);
        assert_eq!(root_of_leaves(a, &l), expected);
        // duplicating the last leaf gives a different root (no CVE-2012-2459 collision)
        let dup = [l[0], l[1], l[2], l[2]];
        assert_ne!(root_of_leaves(a, &dup), root_of_leaves(a, &l));
    }

    #[test]
    fn leaf_and_inner_are_domain_separated() {
        let a = HashAlgo::Sha256;
        let l = leaves(2);
        let mut concat = Vec::new();
        concat.extend_from_slice(&l[0].0);
        concat.extend_from_slice(&l[1].0);
        // a one-leaf tree whose data is the two children is not the two-leaf tree
        assert_ne!(root(a, &[&concat]), root_of_leaves(a, &l));
        assert_ne!(root(a, &[]), Hash32::ZERO);
    }

    #[test]
    fn bad_proofs_are_refused() {
        let a = HashAlgo::Keccak256;
        let l = leaves(5);
        let r = root_of_leaves(a, &l);
        let p = MerkleProof::build(a, &l, 4).unwrap();
        assert!(p.verify(a, l[4], &r).is_ok());
        assert!(matches!(
            p.verify(a, l[3], &r),
            Err(ProofError::RootMismatch { .. })
        ));
        let mut moved = p.clone();
        moved.index = 3;
        assert!(moved.verify(a, l[4], &r).is_err());
        let mut short = p.clone();
        short.siblings.pop();
        assert!(matches!(
            short.verify(a, l[4], &r),
            Err(ProofError::WrongLength { .. })
        ));
        let mut out = p;
        out.index = 9;
        assert!(matches!(
            out.verify(a, l[4], &r),
            Err(ProofError::IndexOutOfRange { .. })
        ));
        assert!(MerkleProof::build(a, &l, 5).is_none());
    }

    proptest! {
        #[test]
        fn every_leaf_proves_and_no_other(n in 1usize..70, pick in any::<prop::sample::Index>(), algo in 0usize..3) {
            let a = HashAlgo::ALL[algo];
            let l: Vec<Hash32> = (0..n).map(|i| leaf_hash(a, &(i as u32).to_le_bytes())).collect();
            let r = root_of_leaves(a, &l);
            let i = pick.index(n);
            let p = MerkleProof::build(a, &l, i).unwrap();
            prop_assert!(p.verify(a, l[i], &r).is_ok());
            // round trip through the wire form other crates use
            let back: MerkleProof = rmp_serde::from_slice(&rmp_serde::to_vec(&p).unwrap()).unwrap();
            prop_assert_eq!(&back, &p);
            for (j, other) in l.iter().enumerate() {
                if j != i {
                    prop_assert!(p.verify(a, *other, &r).is_err());
                }
            }
        }

        #[test]
        fn tampered_sibling_fails(n in 2usize..40, i in 0usize..40, bit in 0usize..256) {
            let a = HashAlgo::Sha256;
            let l = leaves(n);
            let i = i % n;
            let r = root_of_leaves(a, &l);
            let mut p = MerkleProof::build(a, &l, i).unwrap();
            prop_assume!(!p.siblings.is_empty());
            let s = bit % p.siblings.len();
            p.siblings[s].0[bit / 8 % 32] ^= 1 << (bit % 8);
            prop_assert!(p.verify(a, l[i], &r).is_err());
        }
    }
}
