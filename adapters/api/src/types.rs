//! What a platform is and what it reports: descriptors, capabilities, heads, events.

use isthmus_core::{Hash32, NetworkId};
use isthmus_lock_contracts::{
    packet::{Acknowledgement, Packet, TimeoutProof},
    LockId, LockObservation, Timestamp, TxId,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The platform families the hub knows. Closed: a new family is a new adapter crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlatformKind {
    /// The hub's own chain engine (PoS with commit certificates, or PoW).
    Native,
    /// Ethereum-style account chains with general contracts.
    Evm,
    /// Bitcoin-family UTXO chains with script.
    Utxo,
    /// An out-of-process adapter registered at run time; its capabilities say the rest.
    External,
}

/// When a block can no longer be reverted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "model")]
pub enum Finality {
    /// BFT: a block with a commit certificate is final.
    Instant,
    /// Nakamoto-style: a block is treated as final `confirmations` blocks deep.
    Probabilistic { confirmations: u32 },
}

/// How lock contracts can be expressed on the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContractSupport {
    /// Turing-complete contracts (EVM): escrows verify hub attestations on chain.
    General,
    /// Script only (Bitcoin family): HTLCs and multisig, no attestation checks.
    ScriptHtlcOnly,
    /// Built-in modules of the chain (the native escrow and HTLC modules).
    NativeModules,
}

/// The hash a platform uses for blocks and transaction ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashScheme {
    Sha256,
    /// Double sha256, as Bitcoin-family chains use.
    Sha256d,
    Keccak256,
    Blake3,
}

/// A signature scheme a platform verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureScheme {
    Ed25519,
    Secp256k1Ecdsa,
    Secp256k1Schnorr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetModel {
    Account,
    Utxo,
}

/// How (and whether) the two-phase lock is enforced on the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TwoPhaseSupport {
    Unsupported,
    /// An escrow contract or module that releases only on a verified hub attestation.
    AttestationEscrow,
    /// A multisig between the hub's key and the owner's, with a timelocked refund path:
    /// the chain cannot verify attestations, so the hub co-signs instead (a weaker trust
    /// model that the platform listing must show).
    HubCosignedMultisig,
}

/// What a platform can do. Declared by the adapter, never assumed by the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub finality: Finality,
    pub contracts: ContractSupport,
    pub hash: HashScheme,
    pub signatures: Vec<SignatureScheme>,
    pub asset_model: AssetModel,
    pub two_phase: TwoPhaseSupport,
    /// sha256 hashlocks with 32-byte preimages and timelocked refunds.
    pub htlc: bool,
    /// Generic packets can be committed and received (message relay).
    pub packets: bool,
}

impl Capabilities {
    /// Every inconsistency at once; empty when the declaration makes sense.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Finality::Probabilistic { confirmations: 0 } = self.finality {
            out.push("probabilistic finality needs at least 1 confirmation".to_owned());
        }
        if self.signatures.is_empty() {
            out.push("no signature scheme declared".to_owned());
        }
        if self.contracts == ContractSupport::ScriptHtlcOnly {
            if self.two_phase == TwoPhaseSupport::AttestationEscrow {
                out.push(
                    "a script-only platform cannot verify hub attestations (use hub_cosigned_multisig)"
                        .to_owned(),
                );
            }
            if !self.htlc {
                out.push("a script-only HTLC platform must declare htlc support".to_owned());
            }
        }
        if self.asset_model == AssetModel::Utxo && self.contracts == ContractSupport::General {
            out.push("general contracts on a utxo asset model are not supported".to_owned());
        }
        out
    }
}

/// What the hub lists for `GET /v1/platforms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformDescriptor {
    pub network: NetworkId,
    /// The operator's name for the network, e.g. `alpha`.
    pub name: String,
    pub kind: PlatformKind,
    /// The consensus algorithm, e.g. `pow`, `pos`, `clique`.
    pub consensus: String,
    pub capabilities: Capabilities,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlockRef {
    pub height: u64,
    pub hash: Hash32,
}

/// The tip and the newest final block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heads {
    pub head: BlockRef,
    pub finalized: BlockRef,
    /// The chain's time at `head`, mapped to hub time.
    pub time: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Health {
    Healthy,
    /// Working, with a problem worth showing (lagging peer, low fee reserve, ...).
    Degraded {
        reason: String,
    },
    Unhealthy {
        reason: String,
    },
}

impl Health {
    pub fn is_usable(&self) -> bool {
        !matches!(self, Health::Unhealthy { .. })
    }
}

/// A position in an adapter's event stream. Opaque and strictly increasing: reorgs append
/// `Reverted` events rather than rewinding, so a subscriber resumes from the last
/// checkpoint it durably handled and never sees an event twice.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub struct Checkpoint(pub u64);

impl Checkpoint {
    /// Before the first event.
    pub const START: Checkpoint = Checkpoint(0);
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Something a platform did that the hub may act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum EventKind {
    NewHead {
        block: BlockRef,
    },
    Finalized {
        block: BlockRef,
    },
    /// A block left the canonical chain; everything it included is withdrawn.
    Reverted {
        block: BlockRef,
        txs: Vec<TxId>,
    },
    TxIncluded {
        tx: TxId,
        block: BlockRef,
    },
    LockIncluded {
        lock: LockObservation,
    },
    /// A lock's block reached finality.
    LockFinal {
        lock: LockObservation,
    },
    Released {
        lock_id: LockId,
        tx: TxId,
    },
    Refunded {
        lock_id: LockId,
        tx: TxId,
    },
    /// An HTLC claim; the preimage is public from now on.
    Claimed {
        lock_id: LockId,
        tx: TxId,
        #[serde(with = "serde_bytes")]
        preimage: Vec<u8>,
    },
    PacketCommitted {
        packet: Packet,
    },
    PacketReceived {
        ack: Acknowledgement,
    },
    PacketTimedOut {
        proof: TimeoutProof,
    },
}

impl EventKind {
    /// A lock's spend: its release, refund or claim (what settles a leg).
    pub fn is_spend(&self) -> bool {
        matches!(
            self,
            EventKind::Released { .. } | EventKind::Refunded { .. } | EventKind::Claimed { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainEvent {
    pub checkpoint: Checkpoint,
    pub kind: EventKind,
}

/// One page of events after a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPage {
    pub events: Vec<ChainEvent>,
    /// Resume from here; equal to the request's checkpoint when nothing was new.
    pub next: Checkpoint,
    /// More events are already available after `next`.
    pub more: bool,
}

/// Where a transaction stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum TxStatus {
    Unknown,
    Pending,
    Included { block: BlockRef, confirmations: u64 },
    Final { block: BlockRef },
    Failed { reason: String },
}

impl TxStatus {
    pub fn is_final(&self) -> bool {
        matches!(self, TxStatus::Final { .. })
    }
}

/// A transaction already signed by its author, in the platform's own encoding (for
/// clients that keep their own keys).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTx(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl fmt::Debug for SignedTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignedTx({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> Capabilities {
        Capabilities {
            finality: Finality::Probabilistic { confirmations: 6 },
            contracts: ContractSupport::ScriptHtlcOnly,
            hash: HashScheme::Sha256d,
            signatures: vec![SignatureScheme::Secp256k1Ecdsa],
            asset_model: AssetModel::Utxo,
            two_phase: TwoPhaseSupport::HubCosignedMultisig,
            htlc: true,
            packets: false,
        }
    }

    #[test]
    fn a_utxo_platform_declares_consistently() {
        assert!(caps().problems().is_empty());
        let mut bad = caps();
        bad.two_phase = TwoPhaseSupport::AttestationEscrow;
        bad.finality = Finality::Probabilistic { confirmations: 0 };
        bad.signatures.clear();
        assert_eq!(bad.problems().len(), 3, "{:?}", bad.problems());
    }

    #[test]
    fn capabilities_serialise_for_the_platforms_endpoint() {
        let json = serde_json::to_value(caps()).unwrap();
        assert_eq!(json["finality"]["model"], "probabilistic");
        assert_eq!(json["finality"]["confirmations"], 6);
        assert_eq!(json["contracts"], "script_htlc_only");
        assert_eq!(json["two_phase"], "hub_cosigned_multisig");
    }
}
