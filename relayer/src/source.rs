//! The adapter-fed packet source: watch a source network's events through an [`Adapter`]
//! and queue each committed packet, attested, in the link's durable outbox.
//!
//! The checkpoint of the event stream is stored only after the packets of a page are in the
//! outbox (both flushed), so a relayer killed at any point either re-reads a page (the hub
//! answers `duplicate` for what it already has) or resumes after it; nothing is skipped.
//! The relayer never vouches for a packet itself: an [`Attestor`] supplies the source
//! network's attestations, and the hub counts only those by keys it trusts.

use crate::outbox::{Outbox, OutboxError};
use crate::proto::{PacketAttestation, PacketProof, RelayedPacket};
use async_trait::async_trait;
use isthmus_adapter_api::types::{Checkpoint, EventKind};
use isthmus_adapter_api::{Adapter, AdapterError};
use isthmus_core::{Domain, Keypair};
use isthmus_lock_contracts::packet::Packet;
use std::future::Future;
use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::{IngressConfig, PacketIngress};
    use crate::proto::Outcome;
    use isthmus_adapter_api::evidence::{Evidence, Verified};
    use isthmus_adapter_api::types::*;
    use isthmus_adapter_api::*;
    use isthmus_core::NetworkId;
    use isthmus_lock_contracts::packet::ChannelId;
    use isthmus_lock_contracts::{Address, Amount, AssetId, LockId, TxId};
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    const SRC: NetworkId = NetworkId(5);

    /// A source network that serves a fixed event log.
    struct Scripted {
        desc: PlatformDescriptor,
        events: Vec<ChainEvent>,
    }

    fn unsupported<T>(op: &str) -> Result<T, AdapterError> {
        Err(AdapterError::Unsupported {
            network: SRC,
            op: op.into(),
        })
    }

    #[async_trait]
    impl Adapter for Scripted {
        fn descriptor(&self) -> &PlatformDescriptor {
            &self.desc
        }
        async fn health(&self) -> Result<Health, AdapterError> {
            Ok(Health::Healthy)
        }
        async fn heads(&self) -> Result<Heads, AdapterError> {
            unsupported("heads")
        }
        async fn events_since(
            &self,
            after: Checkpoint,
            limit: u32,
        ) -> Result<EventPage, AdapterError> {
            let events: Vec<ChainEvent> = self
                .events
                .iter()
                .filter(|e| e.checkpoint > after)
                .take(limit as usize)
                .cloned()
                .collect();
            let next = events.last().map(|e| e.checkpoint).unwrap_or(after);
            let more = self.events.iter().any(|e| e.checkpoint > next);
            Ok(EventPage { events, next, more })
        }
        async fn submit(&self, _: SignedTx) -> Result<TxId, AdapterError> {
            unsupported("submit")
        }
        async fn tx_status(&self, _: &TxId) -> Result<TxStatus, AdapterError> {
            unsupported("tx_status")
        }
        async fn evidence(&self, _: &TxId) -> Result<Evidence, AdapterError> {
            unsupported("evidence")
        }
        async fn verify_evidence(&self, _: &TxId, _: &Evidence) -> Result<Verified, AdapterError> {
            unsupported("verify_evidence")
        }
        async fn balance(&self, _: &Address, _: &AssetId) -> Result<Amount, AdapterError> {
            unsupported("balance")
        }
        async fn lock(&self, _: &LockRequest) -> Result<TxId, AdapterError> {
            unsupported("lock")
        }
        async fn release(&self, _: &ReleaseRequest) -> Result<TxId, AdapterError> {
            unsupported("release")
        }
        async fn refund(&self, _: &RefundRequest) -> Result<TxId, AdapterError> {
            unsupported("refund")
        }
        async fn claim(&self, _: &ClaimRequest) -> Result<TxId, AdapterError> {
            unsupported("claim")
        }
        async fn lock_state(&self, _: &LockId) -> Result<Option<OnChainLock>, AdapterError> {
            unsupported("lock_state")
        }
    }

    fn packet(source: NetworkId, seq: u64) -> Packet {
        Packet {
            channel: ChannelId {
                source,
                destination: NetworkId(6),
            },
            sequence: seq,
            sender: Address("a".into()),
            receiver: Address("b".into()),
            payload: vec![seq as u8],
            timeout: 1_000,
        }
    }

    fn scripted() -> Scripted {
        let committed = |cp, p| ChainEvent {
            checkpoint: Checkpoint(cp),
            kind: EventKind::PacketCommitted { packet: p },
        };
        Scripted {
            desc: PlatformDescriptor {
                network: SRC,
                name: "alpha".into(),
                kind: PlatformKind::Native,
                consensus: "pos".into(),
                capabilities: Capabilities {
                    finality: Finality::Instant,
                    contracts: ContractSupport::NativeModules,
                    hash: HashScheme::Sha256,
                    signatures: vec![SignatureScheme::Ed25519],
                    asset_model: AssetModel::Account,
                    two_phase: TwoPhaseSupport::AttestationEscrow,
                    htlc: true,
                    packets: true,
                },
            },
            events: vec![
                ChainEvent {
                    checkpoint: Checkpoint(1),
                    kind: EventKind::NewHead {
                        block: BlockRef {
                            height: 1,
                            hash: Default::default(),
                        },
                    },
                },
                committed(2, packet(SRC, 1)),
                // A packet event naming another source is not this network's to relay.
                committed(3, packet(NetworkId(9), 1)),
                committed(4, packet(SRC, 2)),
            ],
        }
    }

    #[tokio::test]
    async fn committed_packets_reach_the_hub_once_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("relayer")).unwrap();
        let keys = vec![Keypair::dev("alpha-validator")];
        let open = || {
            let outbox = Outbox::open(db.clone(), "l").unwrap();
            let src = AdapterSource::open(
                scripted(),
                Box::new(LocalAttestor(keys.clone())),
                outbox,
                db.clone(),
                "l",
            )
            .unwrap();
            AdapterSource { page: 2, ..src }
        };
        let src = open();
        assert_eq!(src.poll_once().await.unwrap(), (1, true));
        assert_eq!(src.poll_once().await.unwrap(), (1, false));
        assert_eq!(src.checkpoint().unwrap(), Checkpoint(4));
        // A restarted relayer resumes after the checkpoint: nothing is queued twice.
        drop(src);
        let src = open();
        assert_eq!(src.poll_once().await.unwrap(), (0, false));
        let outbox = Outbox::open(db.clone(), "l").unwrap();
        let page = outbox.page(10).unwrap();
        let seqs: Vec<u64> = page.iter().map(|(_, p)| p.packet.sequence).collect();
        assert_eq!(seqs, vec![1, 2]);

        // The hub accepts them once: a replay of the same page is only `duplicate`.
        let (tx, _rx) = tokio::sync::mpsc::channel(8);
        let mut trusted = BTreeMap::new();
        trusted.insert(SRC, (BTreeSet::from([keys[0].id()]), 1));
        let hub = PacketIngress::open(
            sled::open(dir.path().join("hub")).unwrap(),
            IngressConfig {
                trusted,
                max_batch: 100,
                verify_threads: 1,
                ..IngressConfig::default()
            },
            tx,
            Arc::new(|| 10),
        )
        .unwrap();
        let packets: Vec<RelayedPacket> = page.into_iter().map(|(_, p)| p).collect();
        let (first, fresh) = hub.process(&packets).unwrap();
        assert!(first.iter().all(|r| r.outcome == Outcome::Delivered));
        assert_eq!(fresh.len(), 2);
        let (again, fresh) = hub.process(&packets).unwrap();
        assert!(again.iter().all(|r| r.outcome == Outcome::Duplicate));
        assert!(fresh.is_empty());
        // Attestations by a key the hub does not trust are refused.
        let forged = RelayedPacket {
            proof: None,
            packet: packet(SRC, 3),
            attestations: LocalAttestor(vec![Keypair::dev("mallory")])
                .attest(&packet(SRC, 3))
                .await
                .unwrap(),
        };
        let (r, fresh) = hub.process(&[forged]).unwrap();
        assert!(
            matches!(&r[0].outcome, Outcome::Rejected { code, .. } if code == "bad_attestation")
        );
        assert!(fresh.is_empty());
    }
}
