//! [`NativePacketPort`]: the adapter API's [`PacketPort`] for networks of the native chain
//! engine, through their `packets` module.
//!
//! The sender's `send` is signed with the key the hub's wallet keeps for the sender;
//! deliveries, timeout proofs and settlements are signed by the hub's submitter key and
//! carry a threshold of the hub's attester signatures (`Domain::Packet`, bound to the
//! network that executes the call). Every submission waits until it is included, so the
//! next read of the module's write-once records shows its effect.

use crate::submit::submit_kind;
use async_trait::async_trait;
use isthmus_adapter_api::port::{MessageSpec, PacketPort, PortError, SendTicket};
use isthmus_adapter_api::{SecretKey, SignatureScheme, Wallet};
use isthmus_chain::packets::{
    committed_packet_key, receipt_key, send_record_key, AckArgs, PacketCall, RecvArgs, SendArgs,
    SendRecord, TimeoutArgs,
};
use isthmus_chain::rpc::NodeApi;
use isthmus_chain::tx::{Transaction, TxError};
use isthmus_core::{Hash32, Keypair, NetworkId};
use isthmus_lock_contracts::packet::{
    Acknowledgement, Packet, Receipt, SourceOutcome, TimeoutProof,
};
use isthmus_lock_contracts::Address;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct NativePacketPort {
    /// Networks linked at start and those linked later ([`link`](Self::link)).
    nodes: std::sync::RwLock<BTreeMap<NetworkId, Arc<dyn NodeApi>>>,
    wallet: Arc<dyn Wallet>,
    submitter: Keypair,
    attesters: Vec<Keypair>,
    commit_timeout: Duration,
}

fn retry(what: &str, e: impl std::fmt::Display) -> PortError {
    PortError::Retryable(format!("{what}: {e}"))
}

impl NativePacketPort {
    /// A port over nodes of the linked native networks (in this process or over RPC). `submitter` signs
    /// hub submissions (it needs an account on each network); `attesters` are the hub's
    /// attester keys, of which the networks' `[escrow] hub_attesters` accept a threshold.
    pub fn new(
        nodes: impl IntoIterator<Item = Arc<dyn NodeApi>>,
        wallet: Arc<dyn Wallet>,
        submitter: Keypair,
        attesters: Vec<Keypair>,
    ) -> NativePacketPort {
        NativePacketPort {
            nodes: std::sync::RwLock::new(
                nodes
                    .into_iter()
                    .map(|n| (n.config().network(), n))
                    .collect(),
            ),
            wallet,
            submitter,
            attesters,
            commit_timeout: Duration::from_secs(30),
        }
    }

    /// Carry messages of one more network (a network provisioned while the hub runs).
    pub fn link(&self, node: Arc<dyn NodeApi>) {
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        nodes.insert(node.config().network(), node);
    }

    /// Stop carrying messages of `net` (its network was deleted).
    pub fn unlink(&self, net: NetworkId) {
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        nodes.remove(&net);
    }

    fn node(&self, net: NetworkId) -> Result<Arc<dyn NodeApi>, PortError> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        nodes.get(&net).cloned().ok_or_else(|| {
            PortError::Refused(format!("network {net} is not a linked native network"))
        })
    }

    async fn read(&self, net: NetworkId, key: Vec<u8>) -> Result<Option<Vec<u8>>, PortError> {
        self.node(net)?
            .state_get(key)
            .await
            .map_err(|e| retry(&format!("network {net}"), e))
    }

    /// Wait until transaction `id` is included on `net`.
    async fn included(&self, net: NetworkId, id: Hash32) -> Result<(), PortError> {
        let node = self.node(net)?;
        let deadline = Instant::now() + self.commit_timeout;
        loop {
            let got = node
                .tx_proof(id)
                .await
                .map_err(|e| retry(&format!("network {net}"), e))?;
            if got.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(PortError::Retryable(format!(
                    "transaction {} not included on network {net} within {:?}",
                    id.to_hex(),
                    self.commit_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Attest `call` for `net`, submit it with the hub's submitter key and wait for it.
    async fn hub_call(&self, net: NetworkId, call: PacketCall) -> Result<(), PortError> {
        let node = self.node(net)?;
        let kind = call.attest(net, &self.attesters).into_tx_kind();
        let id = submit_kind(node.as_ref(), &self.submitter, kind).await?;
        self.included(net, id).await
    }
}

#[async_trait]
impl PacketPort for NativePacketPort {
    async fn prepare_send(&self, spec: &MessageSpec) -> Result<SendTicket, PortError> {
        let node = self.node(spec.source)?;
        let key = match self
            .wallet
            .key_for(SignatureScheme::Ed25519, &Address(spec.sender.clone()))
            .map_err(|e| retry("wallet", e))?
        {
            Some(SecretKey::Ed25519(k)) if k.id().to_string() == spec.sender => k,
            _ => {
                return Err(PortError::Refused(format!(
                    "the hub keeps no native key for sender `{}`",
                    spec.sender
                )))
            }
        };
        let nonce = node
            .account(key.id())
            .await
            .map_err(|e| retry(&format!("network {}", spec.source), e))?
            .nonce;
        let call = PacketCall::Send(SendArgs {
            destination: spec.destination,
            receiver: spec.recipient.clone(),
            payload: spec.payload.clone(),
            timeout: spec.timeout,
        });
        let tx = Transaction::sign(&key, spec.source, nonce, call.into_tx_kind());
        Ok(SendTicket {
            id: tx.id(node.config().base_hash()),
            tx: rmp_serde::to_vec(&tx).map_err(|e| PortError::Refused(e.to_string()))?,
        })
    }

    async fn submit_send(&self, spec: &MessageSpec, ticket: &SendTicket) -> Result<(), PortError> {
        let node = self.node(spec.source)?;
        let tx: Transaction = rmp_serde::from_slice(&ticket.tx)
            .map_err(|e| PortError::Refused(format!("stored send does not decode: {e}")))?;
        let result = node
            .submit(vec![tx])
            .await
            .map_err(|e| retry(&format!("network {}", spec.source), e))?
            .pop();
        match result {
            Some(Ok(_)) | Some(Err(TxError::Duplicate(_))) => {
                self.included(spec.source, ticket.id).await
            }
            // Its nonce is spent: either by this transaction (the caller reads the packet)
            // or by another one, which `committed` then shows as no packet.
            Some(Err(TxError::BadNonce { .. })) => {
                if self.included(spec.source, ticket.id).await.is_ok() {
                    Ok(())
                } else {
                    Err(PortError::Refused(format!(
                        "the sender's nonce was spent by another transaction than send {}",
                        ticket.id.to_hex()
                    )))
                }
            }
            Some(Err(e @ TxError::MempoolFull(_))) => Err(retry("mempool", e)),
            Some(Err(e)) => Err(PortError::Refused(e.to_string())),
            None => Err(PortError::Retryable("the node answered nothing".into())),
        }
    }

    async fn committed(
        &self,
        source: NetworkId,
        ticket: &SendTicket,
    ) -> Result<Option<Packet>, PortError> {
        self.read(source, committed_packet_key(&ticket.id))
            .await?
            .map(|b| {
                rmp_serde::from_slice(&b)
                    .map_err(|e| PortError::Refused(format!("corrupt packet record: {e}")))
            })
            .transpose()
    }

    async fn receipt(&self, packet: &Packet) -> Result<Option<Receipt>, PortError> {
        self.read(
            packet.channel.destination,
            receipt_key(packet.channel, packet.sequence),
        )
        .await?
        .map(|b| {
            rmp_serde::from_slice(&b)
                .map_err(|e| PortError::Refused(format!("corrupt receipt: {e}")))
        })
        .transpose()
    }

    async fn time(&self, network: NetworkId) -> Result<u64, PortError> {
        let node = self.node(network)?;
        let what = format!("network {network}");
        let h = node.status().await.map_err(|e| retry(&what, e))?.height;
        let b = node
            .block_at(h)
            .await
            .map_err(|e| retry(&what, e))?
            .ok_or_else(|| PortError::Retryable(format!("{what} has no block {h}")))?;
        Ok(b.header.timestamp_ms / 1000)
    }

    async fn deliver(&self, packet: &Packet) -> Result<(), PortError> {
        let call = PacketCall::Recv(RecvArgs {
            packet: packet.clone(),
            attestations: vec![],
        });
        self.hub_call(packet.channel.destination, call).await
    }

    async fn prove_timeout(&self, packet: &Packet) -> Result<(), PortError> {
        let call = PacketCall::RecvTimeout(RecvArgs {
            packet: packet.clone(),
            attestations: vec![],
        });
        self.hub_call(packet.channel.destination, call).await
    }

    async fn settle_ack(&self, ack: &Acknowledgement) -> Result<(), PortError> {
        let call = PacketCall::Ack(AckArgs {
            ack: ack.clone(),
            attestations: vec![],
        });
        self.hub_call(ack.channel.source, call).await
    }

    async fn settle_timeout(&self, proof: &TimeoutProof) -> Result<(), PortError> {
        let call = PacketCall::Timeout(TimeoutArgs {
            proof: proof.clone(),
            attestations: vec![],
        });
        self.hub_call(proof.channel.source, call).await
    }

    async fn outcome(&self, packet: &Packet) -> Result<Option<SourceOutcome>, PortError> {
        let Some(b) = self
            .read(
                packet.channel.source,
                send_record_key(packet.channel, packet.sequence),
            )
            .await?
        else {
            return Ok(None);
        };
        let rec: SendRecord = rmp_serde::from_slice(&b)
            .map_err(|e| PortError::Refused(format!("corrupt send record: {e}")))?;
        Ok(rec.outcome)
    }
}
