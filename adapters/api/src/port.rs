//! The packet port: what the hub asks of a network pair to carry a generic cross-network
//! message (the interop core's message relay drives it; each platform implements it).
//!
//! Domain types only: the packets, receipts and acknowledgements are the lock contracts'
//! (`isthmus_lock_contracts::packet`), and a send is an opaque signed transaction.

use async_trait::async_trait;
use isthmus_core::{Hash32, NetworkId};
use isthmus_lock_contracts::packet::{
    Acknowledgement, Packet, Receipt, SourceOutcome, TimeoutProof,
};
use serde::{Deserialize, Serialize};

/// What the hub asks of a network pair to carry a message. Every submission is checked by
/// the chain (receipts and sequence records are write-once), so calling one twice changes
/// nothing; implementations return once the submission is included or refused.
#[async_trait]
pub trait PacketPort: Send + Sync + 'static {
    /// Sign the sender's `send` for `spec` without submitting it. The ticket is stored
    /// before it is submitted, so a retry submits the same transaction.
    async fn prepare_send(&self, spec: &MessageSpec) -> Result<SendTicket, PortError>;
    /// Submit a prepared send (again); a duplicate is not an error.
    async fn submit_send(&self, spec: &MessageSpec, ticket: &SendTicket) -> Result<(), PortError>;
    /// The packet the ticket's transaction committed on the source, once it has.
    async fn committed(
        &self,
        source: NetworkId,
        ticket: &SendTicket,
    ) -> Result<Option<Packet>, PortError>;
    /// The destination's receipt for `packet`, if it has one.
    async fn receipt(&self, packet: &Packet) -> Result<Option<Receipt>, PortError>;
    /// The destination network's time in seconds (its head block's timestamp).
    async fn time(&self, network: NetworkId) -> Result<u64, PortError>;
    /// Deliver `packet` on its destination under the hub's attestation.
    async fn deliver(&self, packet: &Packet) -> Result<(), PortError>;
    /// Prove on the destination that `packet` was not delivered before its timeout.
    async fn prove_timeout(&self, packet: &Packet) -> Result<(), PortError>;
    /// Settle the acknowledgement on the packet's source.
    async fn settle_ack(&self, ack: &Acknowledgement) -> Result<(), PortError>;
    /// Settle the timeout on the packet's source.
    async fn settle_timeout(&self, proof: &TimeoutProof) -> Result<(), PortError>;
    /// How the source settled `packet`'s sequence, if it has.
    async fn outcome(&self, packet: &Packet) -> Result<Option<SourceOutcome>, PortError>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// A network is unreachable or slow; the step is retried.
    #[error("retryable: {0}")]
    Retryable(String),
    /// The network refused the request; retrying as is cannot help.
    #[error("refused: {0}")]
    Refused(String),
}

/// What to carry: resolved networks, accounts and the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSpec {
    pub source: NetworkId,
    pub destination: NetworkId,
    pub sender: String,
    pub recipient: String,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Destination time (seconds) from which the packet can no longer be delivered.
    pub timeout: u64,
}

/// A signed, not yet necessarily submitted, source transaction and its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendTicket {
    pub id: Hash32,
    #[serde(with = "serde_bytes")]
    pub tx: Vec<u8>,
}
