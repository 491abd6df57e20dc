//! The adapter-fed packet source: committed packets are queued once across restarts, and
//! the hub's ingress accepts them once.
use async_trait::async_trait;
use isthmus_adapter_api::evidence::{Evidence, Verified};
use isthmus_adapter_api::types::*;
use isthmus_adapter_api::*;
use isthmus_adapter_api::{Adapter, AdapterError};
use isthmus_core::Keypair;
use isthmus_core::NetworkId;
use isthmus_hub_ingress::{IngressConfig, PacketIngress};
use isthmus_lock_contracts::packet::ChannelId;
use isthmus_lock_contracts::packet::Packet;
use isthmus_lock_contracts::{Address, Amount, AssetId, LockId, TxId};
use isthmus_relay_protocol::Outcome;
use isthmus_relayer::{AdapterSource, Attestor, LocalAttestor, Outbox, RelayedPacket};
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
    async fn events_since(&self, after: Checkpoint, limit: u32) -> Result<EventPage, AdapterError> {
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
        let mut src = src;
        src.page = 2;
        src
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
    assert!(matches!(&r[0].outcome, Outcome::Rejected { code, .. } if code == "bad_attestation"));
    assert!(fresh.is_empty());
}
