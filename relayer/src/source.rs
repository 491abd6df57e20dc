//! The adapter-fed packet source: watch a source network's events through an [`Adapter`]
//! and queue each committed packet, attested, in the link's durable outbox.
//!
//! The checkpoint of the event stream is stored only after the packets of a page are in the
//! outbox (both flushed), so a relayer killed at any point either re-reads a page (the hub
//! answers `duplicate` for what it already has) or resumes after it; nothing is skipped.
//! The relayer never vouches for a packet itself: an [`Attestor`] supplies the source
//! network's attestations, and the hub counts only those by keys it trusts.

use crate::outbox::{Outbox, OutboxError};
use async_trait::async_trait;
use isthmus_adapter_api::types::{Checkpoint, EventKind};
use isthmus_adapter_api::{Adapter, AdapterError};
use isthmus_core::{Domain, Keypair};
use isthmus_lock_contracts::packet::Packet;
use isthmus_relay_protocol::{Attestor, PacketAttestation, Prover, RelayedPacket};
use std::future::Future;
use std::time::Duration;

/// How a source vouches for the packets it queues.
enum Vouch {
    Attest(Box<dyn Attestor>),
    Prove(Box<dyn Prover>),
}

/// Attestation keys this process holds for the source network (an operator that runs the
/// source network's validators, as `hub up` does).
pub struct LocalAttestor(pub Vec<Keypair>);

#[async_trait]
impl Attestor for LocalAttestor {
    async fn attest(&self, packet: &Packet) -> Result<Vec<PacketAttestation>, AdapterError> {
        let c = packet.commitment();
        Ok(self
            .0
            .iter()
            .map(|k| PacketAttestation {
                signer: k.id(),
                signature: k.sign(Domain::Packet, packet.channel.source, c.as_bytes()),
            })
            .collect())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The adapter or the attestor failed; retryable when the cause is.
    #[error("source network: {0}")]
    Adapter(#[from] AdapterError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("checkpoint store failed: {0}")]
    Store(String),
}

impl SourceError {
    pub fn is_retryable(&self) -> bool {
        match self {
            SourceError::Adapter(e) => e.is_retryable(),
            SourceError::Outbox(_) | SourceError::Store(_) => true,
        }
    }
}

impl From<sled::Error> for SourceError {
    fn from(e: sled::Error) -> Self {
        SourceError::Store(e.to_string())
    }
}

pub struct AdapterSource<A> {
    adapter: A,
    vouch: Vouch,
    outbox: Outbox,
    db: sled::Db,
    checkpoints: sled::Tree,
    key: Vec<u8>,
    /// Events read per page.
    pub page: u32,
    /// Wait between polls when nothing is new.
    pub idle_poll: Duration,
}

impl<A: Adapter> AdapterSource<A> {
    /// A source for link `link` whose packets `attestor` attests, keeping its checkpoint in
    /// `db` next to the outbox.
    pub fn open(
        adapter: A,
        attestor: Box<dyn Attestor>,
        outbox: Outbox,
        db: sled::Db,
        link: &str,
    ) -> Result<Self, SourceError> {
        Self::with_vouch(adapter, Vouch::Attest(attestor), outbox, db, link)
    }

    /// A source for link `link` whose packets carry light-client proofs by `prover`.
    pub fn proving(
        adapter: A,
        prover: Box<dyn Prover>,
        outbox: Outbox,
        db: sled::Db,
        link: &str,
    ) -> Result<Self, SourceError> {
        Self::with_vouch(adapter, Vouch::Prove(prover), outbox, db, link)
    }

    fn with_vouch(
        adapter: A,
        vouch: Vouch,
        outbox: Outbox,
        db: sled::Db,
        link: &str,
    ) -> Result<Self, SourceError> {
        Ok(AdapterSource {
            checkpoints: db.open_tree("relayer.source.checkpoints")?,
            key: format!("{link}/{}", adapter.descriptor().network).into_bytes(),
            adapter,
            vouch,
            outbox,
            db,
            page: 500,
            idle_poll: Duration::from_millis(200),
        })
    }

    /// The last event durably handled.
    pub fn checkpoint(&self) -> Result<Checkpoint, SourceError> {
        Ok(match self.checkpoints.get(&self.key)? {
            Some(b) => {
                Checkpoint(u64::from_be_bytes(b.as_ref().try_into().map_err(|_| {
                    SourceError::Store("checkpoint is not 8 bytes".into())
                })?))
            }
            None => Checkpoint::START,
        })
    }

    /// Read one page of events; queue its packets, then store the checkpoint. Returns how
    /// many packets were queued and whether more events are waiting.
    pub async fn poll_once(&self) -> Result<(usize, bool), SourceError> {
        let after = self.checkpoint()?;
        let page = self.adapter.events_since(after, self.page).await?;
        let network = self.adapter.descriptor().network;
        let mut committed = Vec::new();
        for ev in &page.events {
            if let EventKind::PacketCommitted { packet } = &ev.kind {
                if packet.channel.source != network {
                    tracing::warn!(%network, claimed = %packet.channel.source, "packet event names another source; skipped");
                    continue;
                }
                committed.push((ev.checkpoint, packet.clone()));
            }
        }
        let mut relayed = Vec::with_capacity(committed.len());
        match &self.vouch {
            Vouch::Attest(a) => {
                for (_, packet) in committed {
                    relayed.push(RelayedPacket {
                        attestations: a.attest(&packet).await?,
                        packet,
                        proof: None,
                    });
                }
            }
            Vouch::Prove(p) => {
                let proofs = p.prove_all(&committed).await?;
                for ((_, packet), proof) in committed.into_iter().zip(proofs) {
                    relayed.push(RelayedPacket::proven(packet, proof));
                }
            }
        }
        if !relayed.is_empty() {
            self.outbox.push_all(&relayed)?;
        }
        if page.next > after {
            self.checkpoints
                .insert(&self.key, &page.next.0.to_be_bytes())?;
            self.db.flush()?;
        }
        Ok((relayed.len(), page.more))
    }

    /// Poll until `shutdown` resolves, backing off on errors.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = match self.poll_once().await {
                Ok((_, true)) => Duration::ZERO,
                Ok((_, false)) => self.idle_poll,
                // A proof waits for its transaction to become final: not worth a warning.
                Err(e @ SourceError::Adapter(AdapterError::NotFound { .. })) => {
                    tracing::debug!(%e, "packet source waits");
                    self.idle_poll
                }
                Err(e) => {
                    tracing::warn!(%e, retryable = e.is_retryable(), "packet source poll failed");
                    (self.idle_poll * 4).min(Duration::from_secs(5))
                }
            };
        }
    }
}
