//! How a packet source vouches for what it queues: the source network's attestations, or
//! a light-client proof. Both ends name these traits: a relayer's source calls them, and
//! each platform's prover (in its adapter crate) implements [`Prover`].

use crate::packet::{PacketAttestation, PacketProof};
use async_trait::async_trait;
use isthmus_adapter_api::types::Checkpoint;
use isthmus_adapter_api::AdapterError;
use isthmus_lock_contracts::packet::Packet;

/// Where a committed packet's source attestations come from.
#[async_trait]
pub trait Attestor: Send + Sync + 'static {
    async fn attest(&self, packet: &Packet) -> Result<Vec<PacketAttestation>, AdapterError>;
}

/// Where a committed packet's light-client proof comes from. `at` is the checkpoint of the
/// event that reported the packet. A packet whose transaction is not final yet is
/// `NotFound`: the page is read again later.
#[async_trait]
pub trait Prover: Send + Sync + 'static {
    async fn prove(&self, at: Checkpoint, packet: &Packet) -> Result<PacketProof, AdapterError>;

    /// Proofs for a page's packets, in order (a prover may share work per block).
    async fn prove_all(
        &self,
        items: &[(Checkpoint, Packet)],
    ) -> Result<Vec<PacketProof>, AdapterError> {
        let mut out = Vec::with_capacity(items.len());
        for (at, p) in items {
            out.push(self.prove(*at, p).await?);
        }
        Ok(out)
    }
}
