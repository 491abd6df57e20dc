//! Light-client proofs of committed packets: the hub checks a packet against the source
//! network's own finality rules instead of anyone's word.
//!
//! [`ProofVerifier`] is the per-network policy the ingress applies to a [`PacketProof`];
//! [`NativeProofVerifier`] implements it for networks of the hub's own engine over the
//! source adapter's [`Adapter::verify_evidence`] (the native light client: a commit
//! certificate against the genesis validator set, or linked headers with their work and N
//! confirmations, plus the Merkle path to the block's transaction root), then checks that
//! the transaction body hashes to the proven id, is a `packets.send` by the packet's sender
//! with exactly the packet's destination, receiver, payload and timeout, and that the
//! packet (with its sequence) is the entry that transaction wrote in the state right after
//! its block (a Merkle path to that block's state root). A refused `send` is included in
//! its block but writes no entry, so no path exists for it. `isthmus_adapter_native::NativeProver` builds such
//! proofs for a relayer's source.
//!
//! A block's light-client check (the certificate's signatures, or the header chain's work)
//! runs once per block: verified headers are cached by hash (bounded, oldest dropped
//! first), and every later packet of that block only has its two Merkle paths checked.

use isthmus_adapter_api::{Adapter, Evidence, MerkleProof};
use isthmus_chain::block::BlockHeader;
use isthmus_chain::config::NetworkConfig;
use isthmus_chain::merkle::MerkleProof as ChainProof;
use isthmus_chain::packets::{self, committed_packet_key, PacketCall};
use isthmus_chain::state::entry_leaf;
use isthmus_chain::{Transaction, TxKind};
use isthmus_core::{Hash32, NetworkId};
use isthmus_lock_contracts::packet::Packet;
use isthmus_lock_contracts::TxId;
use isthmus_relay_protocol::PacketProof;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Why a packet's proof was refused. Every variant but [`ProofError::Unavailable`] is
/// final: the same proof can never pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The network takes proofs and the packet carries none.
    #[error("packet {sequence} of network {network} carries no proof")]
    Missing { network: NetworkId, sequence: u64 },
    /// The proof is for another network's packet.
    #[error("proof verifier of network {verifier} cannot prove a packet of network {packet}")]
    WrongNetwork {
        verifier: NetworkId,
        packet: NetworkId,
    },
    /// The light client refused the finality evidence (certificate, work, depth, path).
    #[error("finality evidence for tx {tx} refused: {reason}")]
    Evidence { tx: String, reason: String },
    /// The transaction body is not the proven transaction.
    #[error("transaction body does not match tx {tx}: {reason}")]
    TxMismatch { tx: String, reason: String },
    /// The proven transaction is not a `packets.send`.
    #[error("tx {tx} is not a packets send: {reason}")]
    NotASend { tx: String, reason: String },
    /// The send does not carry this packet.
    #[error("tx {tx} sends another packet: {field} differs")]
    PacketMismatch { tx: String, field: &'static str },
    /// The source's state holds no such entry for the transaction: the call failed, or the
    /// packet (its sequence) is not the one it committed.
    #[error("tx {tx} did not commit packet {sequence} in block {height}: {reason}")]
    NotCommitted {
        tx: String,
        sequence: u64,
        height: u64,
        reason: String,
    },
    /// The source's adapter could not be asked; a later attempt may pass.
    #[error("proof for tx {tx} cannot be checked now: {reason}")]
    Unavailable { tx: String, reason: String },
}

impl ProofError {
    /// The stable code relayers see in the `rejected` outcome.
    pub fn code(&self) -> &'static str {
        match self {
            ProofError::Missing { .. } => "proof_missing",
            ProofError::WrongNetwork { .. } => "proof_wrong_network",
            ProofError::Evidence { .. } => "proof_evidence",
            ProofError::TxMismatch { .. } => "proof_tx_mismatch",
            ProofError::NotASend { .. } => "proof_not_send",
            ProofError::PacketMismatch { .. } => "proof_packet_mismatch",
            ProofError::NotCommitted { .. } => "proof_not_committed",
            ProofError::Unavailable { .. } => "proof_unavailable",
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, ProofError::Unavailable { .. })
    }
}

/// A source network's rule for proven packets. Called on blocking threads, never on the
/// async runtime's workers; must be total on any input.
pub trait ProofVerifier: Send + Sync + 'static {
    /// The network whose packets this verifier proves.
    fn network(&self) -> NetworkId;
    /// `Ok` only if `proof` shows the source network committed exactly `packet`.
    fn verify(&self, packet: &Packet, proof: &PacketProof) -> Result<(), ProofError>;
}

/// Verified block headers by hash, at most `cap`, the oldest dropped first.
struct HeaderCache {
    cap: usize,
    order: VecDeque<Hash32>,
    headers: HashMap<Hash32, Arc<BlockHeader>>,
}

impl HeaderCache {
    fn get(&self, h: &Hash32) -> Option<Arc<BlockHeader>> {
        self.headers.get(h).cloned()
    }

    fn insert(&mut self, h: Hash32, header: Arc<BlockHeader>) {
        if self.headers.insert(h, header).is_some() {
            return;
        }
        self.order.push_back(h);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.headers.remove(&old);
            }
        }
    }
}

/// Blocks whose light-client check is remembered by default.
pub const HEADER_CACHE: usize = 1_024;

/// The proof policy of a native network (see the module docs).
pub struct NativeProofVerifier {
    adapter: Arc<dyn Adapter>,
    config: Arc<NetworkConfig>,
    cache: Mutex<HeaderCache>,
    /// Blocks whose evidence went through the light client (not answered from the cache).
    light_checks: std::sync::atomic::AtomicU64,
}

impl NativeProofVerifier {
    /// `adapter` is the hub's adapter of the network described by `config` (the hub's
    /// trusted genesis copy): its `verify_evidence` is the light client. The adapter's
    /// `verify_evidence` must complete without the caller's runtime (the native one is
    /// pure computation).
    pub fn new(adapter: Arc<dyn Adapter>, config: Arc<NetworkConfig>) -> Self {
        NativeProofVerifier {
            adapter,
            config,
            cache: Mutex::new(HeaderCache {
                cap: HEADER_CACHE,
                order: VecDeque::new(),
                headers: HashMap::new(),
            }),
            light_checks: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many blocks' evidence the light client checked (the rest came from the cache).
    pub fn light_checks(&self) -> u64 {
        self.light_checks.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The header of the evidence's block, checked by the light client once per block.
    fn verified_header(
        &self,
        tx: &TxId,
        evidence: &Evidence,
    ) -> Result<Arc<BlockHeader>, ProofError> {
        let refused = |reason: String| ProofError::Evidence {
            tx: tx.0.clone(),
            reason,
        };
        let block = evidence.block();
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&block.hash);
        let (header_bytes, tx_proof) = match evidence {
            Evidence::CommitCertificate {
                header, tx_proof, ..
            } => (header.as_slice(), tx_proof),
            Evidence::PowConfirmations {
                headers, tx_proof, ..
            } => (
                headers.first().map(|h| h.as_slice()).unwrap_or_default(),
                tx_proof,
            ),
            other => {
                return Err(refused(format!(
                    "{} evidence is not native-chain evidence",
                    other.kind_name()
                )))
            }
        };
        if let Some(h) = cached {
            // The block is known final; only this transaction's path remains.
            self.check_tx_path(tx, &h, tx_proof).map_err(refused)?;
            return Ok(h);
        }
        let verified = futures::executor::block_on(self.adapter.verify_evidence(tx, evidence))
            .map_err(|e| match e {
                e if e.is_retryable() => ProofError::Unavailable {
                    tx: tx.0.clone(),
                    reason: e.to_string(),
                },
                e => refused(e.to_string()),
            })?;
        self.light_checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let header: BlockHeader = rmp_serde::from_slice(header_bytes)
            .map_err(|e| refused(format!("undecodable header: {e}")))?;
        let hash = header.hash(self.config.rules_at(header.number).hash);
        if hash != verified.block.hash || header.number != verified.block.height {
            return Err(refused(format!(
                "verified block {} is not the evidence's header",
                verified.block.hash
            )));
        }
        // The light client checked the path too; check it here as well so a cached and an
        // uncached packet pass exactly the same rules.
        self.check_tx_path(tx, &header, tx_proof).map_err(refused)?;
        let header = Arc::new(header);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash, header.clone());
        Ok(header)
    }

    fn check_tx_path(&self, tx: &TxId, h: &BlockHeader, p: &MerkleProof) -> Result<(), String> {
        let id = Hash32::from_hex(&tx.0).map_err(|_| format!("`{}` is not a tx id", tx.0))?;
        if p.leaf != id || p.root != h.tx_root {
            return Err("merkle path is for another transaction or block".to_owned());
        }
        ChainProof {
            index: p.leaf_index,
            leaf_count: u64::from(h.tx_count),
            siblings: p.siblings.clone(),
        }
        .verify(self.config.rules_at(h.number).hash, id, &h.tx_root)
        .map_err(|e| format!("merkle path: {e}"))
    }
}

impl ProofVerifier for NativeProofVerifier {
    fn network(&self) -> NetworkId {
        self.config.network()
    }

    fn verify(&self, packet: &Packet, proof: &PacketProof) -> Result<(), ProofError> {
        let net = self.config.network();
        if packet.channel.source != net {
            return Err(ProofError::WrongNetwork {
                verifier: net,
                packet: packet.channel.source,
            });
        }
        let tx = proof.tx.0.clone();
        let id = Hash32::from_hex(&tx).map_err(|_| ProofError::TxMismatch {
            tx: tx.clone(),
            reason: "not a transaction id".to_owned(),
        })?;
        let header = self.verified_header(&proof.tx, &proof.evidence)?;
        let algo = self.config.rules_at(header.number).hash;

        let body: Transaction =
            rmp_serde::from_slice(&proof.body).map_err(|e| ProofError::TxMismatch {
                tx: tx.clone(),
                reason: format!("undecodable body: {e}"),
            })?;
        if body.id(algo) != id {
            return Err(ProofError::TxMismatch {
                tx,
                reason: format!("the body hashes to {}", body.id(algo).to_hex()),
            });
        }
        let not_send = |reason: String| ProofError::NotASend {
            tx: tx.clone(),
            reason,
        };
        let args = match &body.body.kind {
            TxKind::ModuleCall {
                module,
                method,
                args,
            } if module == packets::MODULE => match packets::decode_call(method, args) {
                Some(PacketCall::Send(a)) => a,
                _ => return Err(not_send(format!("packets `{method}` call"))),
            },
            TxKind::ModuleCall { module, method, .. } => {
                return Err(not_send(format!("`{module}.{method}` call")))
            }
            TxKind::Transfer { .. } => return Err(not_send("a transfer".to_owned())),
        };
        let mismatch = |field| ProofError::PacketMismatch {
            tx: tx.clone(),
            field,
        };
        if args.destination != packet.channel.destination {
            return Err(mismatch("destination"));
        }
        if args.receiver != packet.receiver.0 {
            return Err(mismatch("receiver"));
        }
        if args.payload != packet.payload {
            return Err(mismatch("payload"));
        }
        if args.timeout != packet.timeout {
            return Err(mismatch("timeout"));
        }
        if body.body.from.to_string() != packet.sender.0 {
            return Err(mismatch("sender"));
        }
        // The entry the module writes for a send that took effect: the packet, positional
        // msgpack, under a key only this transaction can write.
        // (Plain data cannot fail to encode; an empty value would match no path.)
        let value = rmp_serde::to_vec(packet).unwrap_or_default();
        let leaf = entry_leaf(algo, &committed_packet_key(&id), &value);
        ChainProof {
            index: proof.state.index,
            leaf_count: proof.state.leaf_count,
            siblings: proof.state.siblings.clone(),
        }
        .verify(algo, leaf, &header.state_root)
        .map_err(|e| ProofError::NotCommitted {
            tx,
            sequence: packet.sequence,
            height: header.number,
            reason: e.to_string(),
        })
    }
}
