//! What travels on a relayer ↔ hub link.

use isthmus_core::sign::{self, BatchItem};
use isthmus_core::{Domain, Keypair, NodeId, Signature};
use isthmus_lock_contracts::packet::{ChannelId, Packet};
use serde::{Deserialize, Serialize};

/// A signature by one of the source network's attestation keys over the packet's
/// commitment, under [`Domain::Packet`] and the source network's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketAttestation {
    pub signer: NodeId,
    pub signature: Signature,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayedPacket {
    pub packet: Packet,
    pub attestations: Vec<PacketAttestation>,
}

impl RelayedPacket {
    /// Attest `packet` with `keys` (what a source network's validators do when they commit it).
    pub fn attest(packet: Packet, keys: &[Keypair]) -> Self {
        let commitment = packet.commitment();
        let attestations = keys
            .iter()
            .map(|k| PacketAttestation {
                signer: k.id(),
                signature: k.sign(Domain::Packet, packet.channel.source, commitment.as_bytes()),
            })
            .collect();
        RelayedPacket {
            packet,
            attestations,
        }
    }

    /// The batch-verification items of this packet's attestations. `commitment` must be
    /// `self.packet.commitment()` and outlive the items.
    pub fn batch_items<'a>(&self, commitment: &'a [u8]) -> Vec<BatchItem<'a>> {
        self.attestations
            .iter()
            .map(|a| BatchItem {
                signer: a.signer,
                domain: Domain::Packet,
                network: self.packet.channel.source,
                payload: commitment,
                signature: a.signature,
            })
            .collect()
    }

    /// Verify singly (used by tools; the ingress verifies in batches).
    pub fn verify_one(&self, a: &PacketAttestation) -> bool {
        let c = self.packet.commitment();
        sign::verify(
            &a.signer,
            Domain::Packet,
            self.packet.channel.source,
            c.as_bytes(),
            &a.signature,
        )
        .is_ok()
    }
}

/// The hub's answer for one packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// First delivery; recorded and forwarded.
    Delivered,
    /// Already delivered earlier (another relayer, a retry); nothing happened.
    Duplicate,
    /// Refused for good; retrying the same packet cannot help.
    Rejected { code: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptMsg {
    pub channel: ChannelId,
    pub sequence: u64,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "msg")]
pub enum LinkMsg {
    Deliver {
        batch: u64,
        packets: Vec<RelayedPacket>,
    },
    Receipts {
        batch: u64,
        receipts: Vec<ReceiptMsg>,
    },
}
