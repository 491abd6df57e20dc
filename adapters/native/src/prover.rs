//! Light-client proofs of committed packets, built on the source side: [`NativeProver`]
//! reads a native node and its adapter and packs, for each packet, the send transaction,
//! its finality evidence and the Merkle path to its state entry. The hub's ingress checks
//! such a proof itself; a relayer that carries it is trusted for nothing.

use async_trait::async_trait;
use isthmus_adapter_api::{Adapter, AdapterError, Checkpoint, TxStatus};
use isthmus_chain::merkle::MerkleProof as ChainProof;
use isthmus_chain::packets::{self, committed_packet_key};
use isthmus_chain::rpc::NodeApi;
use isthmus_chain::{Transaction, TxKind};
use isthmus_core::Hash32;
use isthmus_lock_contracts::packet::Packet;
use isthmus_lock_contracts::TxId;
use isthmus_relay_protocol::{PacketProof, Prover, StatePath};
use std::collections::HashMap;
use std::sync::Arc;

/// Builds [`PacketProof`]s for a native source: the send transaction found in the event's
/// block, its evidence from the adapter (once final), and its state entry's path from the
/// node (the adapter API has no state proofs).
pub struct NativeProver {
    pub adapter: Arc<dyn Adapter>,
    pub node: Arc<dyn NodeApi>,
}

impl NativeProver {
    fn unavailable(&self, e: impl std::fmt::Display) -> AdapterError {
        AdapterError::Unavailable {
            network: self.node.config().network(),
            reason: e.to_string(),
        }
    }
}

#[async_trait]
impl Prover for NativeProver {
    async fn prove(&self, at: Checkpoint, packet: &Packet) -> Result<PacketProof, AdapterError> {
        let mut one = self.prove_all(&[(at, packet.clone())]).await?;
        one.pop().ok_or_else(|| self.unavailable("no proof built"))
    }

    /// One block read and one state-path request per block, whatever its packet count.
    async fn prove_all(
        &self,
        items: &[(Checkpoint, Packet)],
    ) -> Result<Vec<PacketProof>, AdapterError> {
        let mut out = Vec::with_capacity(items.len());
        let mut i = 0;
        while i < items.len() {
            // Native checkpoints are `height << 24 | i` (see the native adapter's events).
            let height = items[i].0 .0 >> 24;
            let n = items[i..]
                .iter()
                .take_while(|(cp, _)| cp.0 >> 24 == height)
                .count();
            out.extend(self.prove_block(height, &items[i..i + n]).await?);
            i += n;
        }
        Ok(out)
    }
}

impl NativeProver {
    async fn prove_block(
        &self,
        height: u64,
        items: &[(Checkpoint, Packet)],
    ) -> Result<Vec<PacketProof>, AdapterError> {
        let net = self.node.config().network();
        let not_found = |what: String| AdapterError::NotFound { network: net, what };
        let block = self
            .node
            .block_at(height)
            .await
            .map_err(|e| self.unavailable(e))?
            .ok_or_else(|| not_found(format!("block {height}")))?;
        let algo = self.node.config().rules_at(height).hash;
        // Every send in the block; the state entries decide which committed which packet.
        let sends: Vec<(Hash32, &Transaction)> = block
            .txs
            .iter()
            .filter(|t| {
                matches!(&t.body.kind, TxKind::ModuleCall { module, method, .. }
                    if module == packets::MODULE && method == packets::method::SEND)
            })
            .map(|t| (t.id(algo), t))
            .collect();
        let keys = sends
            .iter()
            .map(|(id, _)| committed_packet_key(id))
            .collect();
        let (_, entries) = self
            .node
            .state_proofs_at(height, keys)
            .await
            .map_err(|e| self.unavailable(e))?
            .ok_or_else(|| not_found(format!("state of block {height}")))?;
        let mut by_value: HashMap<Vec<u8>, (Hash32, &Transaction, ChainProof)> = HashMap::new();
        for ((id, t), e) in sends.into_iter().zip(entries) {
            if let Some((value, path)) = e {
                by_value.insert(value, (id, t, path));
            }
        }
        let mut out = Vec::with_capacity(items.len());
        for (_, packet) in items {
            let want = rmp_serde::to_vec(packet).unwrap_or_default();
            let (id, t, path) = by_value.get(&want).ok_or_else(|| {
                not_found(format!(
                    "the send of packet {} in block {height}",
                    packet.sequence
                ))
            })?;
            let tx = TxId(id.to_hex());
            if !matches!(self.adapter.tx_status(&tx).await?, TxStatus::Final { .. }) {
                return Err(not_found(format!("final transaction {}", tx.0)));
            }
            out.push(PacketProof {
                evidence: self.adapter.evidence(&tx).await?,
                tx,
                body: rmp_serde::to_vec(t).map_err(|e| self.unavailable(e))?,
                state: StatePath {
                    index: path.index,
                    leaf_count: path.leaf_count,
                    siblings: path.siblings.clone(),
                },
            });
        }
        Ok(out)
    }
}
