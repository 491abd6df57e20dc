//! Signed transactions and the reasons one is refused.
//!
//! A transaction is `(body, signature)`. The signature covers the canonical encoding of the
//! body under [`Domain::Transaction`] and the body's network id, so a transaction signed for
//! one network can never be replayed on another; the per-account `nonce` stops replays on
//! the same network.

use crate::merkle;
use isthmus_core::{
    sign, Domain, Hash32, HashAlgo, Keypair, NetworkId, NodeId, SignError, Signature,
};
use serde::{Deserialize, Serialize};

/// Largest `args` payload a module call may carry.
pub const MAX_MODULE_ARGS: usize = 64 * 1024;
/// Longest module or method name.
pub const MAX_NAME: usize = 64;

/// What a transaction does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxKind {
    /// Move `amount` units of the native asset from the sender to `to`.
    Transfer { to: NodeId, amount: u64 },
    /// Call `method` of the registered module `module` with opaque `args` (the interop core's
    /// lock contracts run this way).
    ModuleCall {
        module: String,
        method: String,
        #[serde(with = "serde_bytes")]
        args: Vec<u8>,
    },
}

/// The signed part of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxBody {
    pub network: NetworkId,
    pub from: NodeId,
    /// Must equal the sender's account nonce when the transaction executes.
    pub nonce: u64,
    pub kind: TxKind,
}

impl TxBody {
    /// The canonical bytes that are signed and hashed (positional msgpack).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        encode_canonical(self)
    }
}

/// A signed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub body: TxBody,
    pub signature: Signature,
}

/// Positional msgpack of a value; infallible for the plain data types of this crate.
pub(crate) fn encode_canonical<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising owned plain data into a Vec cannot fail (no maps with non-string keys,
    // no I/O); fall back to an empty encoding rather than panic if that ever changes.
    rmp_serde::to_vec(v).unwrap_or_default()
}

impl Transaction {
    pub fn sign(key: &Keypair, network: NetworkId, nonce: u64, kind: TxKind) -> Transaction {
        let body = TxBody {
            network,
            from: key.id(),
            nonce,
            kind,
        };
        let signature = key.sign(Domain::Transaction, network, &body.canonical_bytes());
        Transaction { body, signature }
    }

    pub fn transfer(
        key: &Keypair,
        network: NetworkId,
        nonce: u64,
        to: NodeId,
        amount: u64,
    ) -> Transaction {
        Self::sign(key, network, nonce, TxKind::Transfer { to, amount })
    }

    /// Encoded bytes of the whole transaction (its size on the wire and in a block).
    pub fn encoded(&self) -> Vec<u8> {
        encode_canonical(self)
    }

    /// The transaction id: the Merkle leaf hash of its encoding under the network's hash.
    pub fn id(&self, algo: HashAlgo) -> Hash32 {
        merkle::leaf_hash(algo, &self.encoded())
    }

    /// Stateless checks: shape, network id, strong key and a strict signature.
    pub fn check_stateless(&self, network: NetworkId) -> Result<(), TxError> {
        self.check_shape(network)?;
        let payload = self.body.canonical_bytes();
        sign::verify(
            &self.body.from,
            Domain::Transaction,
            network,
            &payload,
            &self.signature,
        )
        .map_err(TxError::from)
    }

    /// Everything [`check_stateless`](Self::check_stateless) checks except the signature.
    pub fn check_shape(&self, network: NetworkId) -> Result<(), TxError> {
        if self.body.network != network {
            return Err(TxError::WrongNetwork {
                expected: network,
                got: self.body.network,
            });
        }
        if let TxKind::ModuleCall {
            module,
            method,
            args,
        } = &self.body.kind
        {
            if module.is_empty() || module.len() > MAX_NAME || method.len() > MAX_NAME {
                return Err(TxError::Malformed(format!(
                    "module `{module}` / method `{method}` name is empty or longer than {MAX_NAME}"
                )));
            }
            if args.len() > MAX_MODULE_ARGS {
                return Err(TxError::Malformed(format!(
                    "module call args of {} bytes exceed {MAX_MODULE_ARGS}",
                    args.len()
                )));
            }
        }
        Ok(())
    }
}

/// Verify many transactions' signatures at once (strict semantics, weak keys refused, same
/// result as one-by-one). Returns one result per transaction.
pub fn verify_signatures(txs: &[Transaction], network: NetworkId) -> Vec<Result<(), TxError>> {
    let payloads: Vec<Vec<u8>> = txs.iter().map(|t| t.body.canonical_bytes()).collect();
    let items: Vec<sign::BatchItem<'_>> = txs
        .iter()
        .zip(&payloads)
        .map(|(t, p)| sign::BatchItem {
            signer: t.body.from,
            domain: Domain::Transaction,
            network,
            payload: p,
            signature: t.signature,
        })
        .collect();
    let sigs = sign::verify_batch(&items);
    txs.iter()
        .zip(sigs)
        .map(|(t, s)| {
            t.check_shape(network)?;
            s.map_err(TxError::from)
        })
        .collect()
}

/// Why a transaction was refused. Only [`TxError::retryable`] ones can succeed unchanged later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum TxError {
    #[error("bad signature from {0}")]
    BadSignature(NodeId),
    #[error("weak (small-order) key {0} refused")]
    WeakKey(NodeId),
    #[error("sender {0} is not a valid ed25519 key")]
    InvalidKey(NodeId),
    #[error("transaction is for network {got}, this is network {expected}")]
    WrongNetwork { expected: NetworkId, got: NetworkId },
    #[error("bad nonce {got} for {account}: expected {expected}")]
    BadNonce {
        account: NodeId,
        expected: u64,
        got: u64,
    },
    #[error("insufficient balance for {account}: has {have}, needs {need}")]
    InsufficientBalance {
        account: NodeId,
        have: u64,
        need: u64,
    },
    #[error("balance overflow crediting {0}")]
    Overflow(NodeId),
    #[error("zero-amount transfers are refused from protocol version {0}")]
    ZeroAmount(u32),
    #[error("unknown module `{0}`")]
    UnknownModule(String),
    #[error("malformed transaction: {0}")]
    Malformed(String),
    #[error("transaction {0} is already in the mempool")]
    Duplicate(Hash32),
    #[error("mempool is full ({0}); retry later")]
    MempoolFull(String),
    #[error("transaction of {size} bytes exceeds the block limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
}

impl TxError {
    /// Whether resubmitting the same transaction later can succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            TxError::MempoolFull(_) | TxError::InsufficientBalance { .. }
        ) || matches!(self, TxError::BadNonce { expected, got, .. } if got > expected)
    }

    /// Stable, low-cardinality reason code.
    pub fn code(&self) -> &'static str {
        match self {
            TxError::BadSignature(_) => "bad_signature",
            TxError::WeakKey(_) => "weak_key",
            TxError::InvalidKey(_) => "invalid_key",
            TxError::WrongNetwork { .. } => "wrong_network",
            TxError::BadNonce { .. } => "bad_nonce",
            TxError::InsufficientBalance { .. } => "insufficient_balance",
            TxError::Overflow(_) => "overflow",
            TxError::ZeroAmount(_) => "zero_amount",
            TxError::UnknownModule(_) => "unknown_module",
            TxError::Malformed(_) => "malformed",
            TxError::Duplicate(_) => "duplicate",
            TxError::MempoolFull(_) => "mempool_full",
            TxError::TooLarge { .. } => "too_large",
        }
    }
}

impl From<SignError> for TxError {
    fn from(e: SignError) -> Self {
        match e {
            SignError::InvalidKey(id) => TxError::InvalidKey(id),
            SignError::WeakKey(id) => TxError::WeakKey(id),
            SignError::BadSignature(id, _, _) => TxError::BadSignature(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NET: NetworkId = NetworkId(42);

    fn kind() -> impl Strategy<Value = TxKind> {
        prop_oneof![
            (any::<[u8; 32]>(), any::<u64>()).prop_map(|(b, amount)| TxKind::Transfer {
                to: NodeId(b),
                amount
            }),
            (
                "[a-z]{1,12}",
                "[a-z_]{0,12}",
                proptest::collection::vec(any::<u8>(), 0..200)
            )
                .prop_map(|(module, method, args)| TxKind::ModuleCall {
                    module,
                    method,
                    args
                }),
        ]
    }

    proptest! {
        #[test]
        fn codec_round_trip_keeps_signature_valid(k in kind(), nonce in any::<u64>(), seed in any::<[u8; 32]>()) {
            let key = Keypair::from_seed(seed);
            let tx = Transaction::sign(&key, NET, nonce, k);
            let bytes = tx.encoded();
            let back: Transaction = rmp_serde::from_slice(&bytes).unwrap();
            prop_assert_eq!(&back, &tx);
            prop_assert_eq!(back.id(HashAlgo::Sha256), tx.id(HashAlgo::Sha256));
            prop_assert!(back.check_stateless(NET).is_ok());
            // through the framed wire codec too
            let l = isthmus_core::WireLimits::default();
            let body = isthmus_core::codec::encode_body(&tx, &l).unwrap();
            let wire: Transaction = isthmus_core::codec::decode_body(&body, &l).unwrap();
            prop_assert_eq!(wire, tx);
        }

        #[test]
        fn any_bit_flip_in_body_breaks_signature(k in kind(), nonce in any::<u64>(), flip in any::<prop::sample::Index>()) {
            let key = Keypair::dev("flip");
            let tx = Transaction::sign(&key, NET, nonce, k);
            let mut bytes = tx.encoded();
            let i = flip.index(bytes.len());
            bytes[i] ^= 0x01;
            if let Ok(t) = rmp_serde::from_slice::<Transaction>(&bytes) {
                if t != tx {
                    prop_assert!(t.check_stateless(NET).is_err());
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = rmp_serde::from_slice::<Transaction>(&bytes).map(|t| t.check_stateless(NET));
        }
    }

    #[test]
    fn rejection_reasons_are_specific() {
        let key = Keypair::dev("a");
        let tx = Transaction::transfer(&key, NET, 0, Keypair::dev("b").id(), 5);
        assert!(tx.check_stateless(NET).is_ok());
        assert!(matches!(
            tx.check_stateless(NetworkId(1)),
            Err(TxError::WrongNetwork { .. })
        ));
        let mut bad = tx.clone();
        bad.signature.0[0] ^= 1;
        assert_eq!(
            bad.check_stateless(NET),
            Err(TxError::BadSignature(key.id()))
        );
        let mut weak_id = [0u8; 32];
        weak_id[0] = 1;
        let mut weak = tx.clone();
        weak.body.from = NodeId(weak_id);
        assert_eq!(
            weak.check_stateless(NET),
            Err(TxError::WeakKey(NodeId(weak_id)))
        );
        // signed for another network, relabelled: the signature does not carry over
        let other = Transaction::transfer(&key, NetworkId(1), 0, key.id(), 5);
        let mut relabelled = other;
        relabelled.body.network = NET;
        assert_eq!(
            relabelled.check_stateless(NET),
            Err(TxError::BadSignature(key.id()))
        );
        let batch = verify_signatures(&[tx, bad, weak], NET);
        assert!(batch[0].is_ok() && batch[1].is_err() && batch[2].is_err());
    }
}
