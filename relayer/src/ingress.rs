//! The hub's packet ingress: strict batch verification of source attestations, then an
//! exactly-once receipt per (channel, sequence), flushed before the packet is forwarded or
//! any relayer is answered.

use crate::proto::{LinkMsg, Outcome, ReceiptMsg, RelayedPacket};
use isthmus_core::sign::verify_batch;
use isthmus_core::{NetworkId, NodeId};
use isthmus_lock_contracts::packet::{
    AckResult, ChannelId, Delivery, Packet, PacketRejection, Receipt, RecvChannel,
};
use isthmus_transport::{Connection, Endpoint};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Which keys attest packets of each source network, and how many must sign.
#[derive(Debug, Clone, Default)]
pub struct IngressConfig {
    pub trusted: BTreeMap<NetworkId, (BTreeSet<NodeId>, usize)>,
    /// Largest batch accepted in one message.
    pub max_batch: usize,
    /// Threads one batch's signatures are verified on (0 or 1: the calling thread only).
    pub verify_threads: usize,
}

/// Verify `items` strictly, split into `threads` batches verified at the same time (scoped
/// threads; results in input order, exactly as one [`verify_batch`] would return them).
pub fn verify_parallel(
    items: &[isthmus_core::sign::BatchItem<'_>],
    threads: usize,
) -> Vec<Result<(), isthmus_core::SignError>> {
    // Below this, a thread costs more than it saves.
    const MIN_PER_THREAD: usize = 64;
    let threads = threads.min(items.len() / MIN_PER_THREAD).max(1);
    if threads == 1 {
        return verify_batch(items);
    }
    let per = items.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(per)
            .map(|c| (c, s.spawn(move || verify_batch(c))))
            .collect();
        handles
            .into_iter()
            .flat_map(|(c, h)| match h.join() {
                Ok(r) => r,
                // Verification is total and cannot panic on input; if it ever did, that
                // part is refused (one result per item, order kept) rather than the hub
                // crashing.
                Err(_) => c
                    .iter()
                    .map(|i| {
                        Err(isthmus_core::SignError::BadSignature(
                            i.signer,
                            i.domain.tag(),
                            i.network,
                        ))
                    })
                    .collect(),
            })
            .collect()
    })
}

#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("receipt store failed: {0}")]
    Store(String),
    #[error("receipt for {0:?} #{1} is corrupt: {2}")]
    Corrupt(ChannelId, u64, String),
}

impl From<sled::Error> for IngressError {
    fn from(e: sled::Error) -> Self {
        IngressError::Store(e.to_string())
    }
}

pub struct PacketIngress {
    db: sled::Db,
    receipts: sled::Tree,
    cfg: IngressConfig,
    /// Serialises the receipt phase so two relayers cannot both deliver one sequence.
    receipt_lock: Mutex<()>,
    forward: mpsc::Sender<Packet>,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
}

fn receipt_key(c: &ChannelId, seq: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&c.source.0.to_be_bytes());
    k[8..16].copy_from_slice(&c.destination.0.to_be_bytes());
    k[16..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn rejected(code: &str, reason: String) -> Outcome {
    Outcome::Rejected {
        code: code.to_owned(),
        reason,
    }
}

impl PacketIngress {
    /// `forward` receives each packet once, after its receipt is durable.
    pub fn open(
        db: sled::Db,
        cfg: IngressConfig,
        forward: mpsc::Sender<Packet>,
        clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    ) -> Result<Self, IngressError> {
        Ok(PacketIngress {
            receipts: db.open_tree("relay.receipts")?,
            db,
            cfg,
            receipt_lock: Mutex::new(()),
            forward,
            clock,
        })
    }

    /// Which packets carry enough valid attestations by trusted keys.
    fn attested(&self, packets: &[RelayedPacket]) -> Vec<Result<(), Outcome>> {
        let commitments: Vec<_> = packets.iter().map(|p| p.packet.commitment()).collect();
        let mut items = Vec::new();
        let mut owner = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            let Some((keys, _)) = self.cfg.trusted.get(&p.packet.channel.source) else {
                continue;
            };
            for item in p.batch_items(commitments[i].as_bytes()) {
                if keys.contains(&item.signer) {
                    owner.push(i);
                    items.push(item);
                }
            }
        }
        let results = verify_parallel(&items, self.cfg.verify_threads);
        let mut signers: Vec<BTreeSet<NodeId>> = vec![BTreeSet::new(); packets.len()];
        for ((i, item), r) in owner.iter().zip(&items).zip(results) {
            if r.is_ok() {
                signers[*i].insert(item.signer);
            }
        }
        packets
            .iter()
            .zip(signers)
            .map(|(p, s)| {
                let net = p.packet.channel.source;
                match self.cfg.trusted.get(&net) {
                    None => Err(rejected(
                        "unknown_source",
                        format!("network {net} is not a source this hub accepts packets from"),
                    )),
                    Some((_, threshold)) if s.len() < *threshold => Err(rejected(
                        "bad_attestation",
                        format!(
                            "packet {} of network {net} has {} valid trusted attestation(s), {} needed",
                            p.packet.sequence,
                            s.len(),
                            threshold
                        ),
                    )),
                    Some(_) => Ok(()),
                }
            })
            .collect()
    }

    /// Verify, record (durably) and return one receipt per packet, in order, plus the
    /// packets delivered for the first time (to be forwarded).
    pub fn process(
        &self,
        packets: &[RelayedPacket],
    ) -> Result<(Vec<ReceiptMsg>, Vec<Packet>), IngressError> {
        let checks = self.attested(packets);
        self.record(packets, checks)
    }

    /// The receipt phase of [`process`](Self::process), given each packet's attestation
    /// check: decide, write the new receipts in one batch and flush.
    fn record(
        &self,
        packets: &[RelayedPacket],
        checks: Vec<Result<(), Outcome>>,
    ) -> Result<(Vec<ReceiptMsg>, Vec<Packet>), IngressError> {
        let now = (self.clock)();
        let _g = self.receipt_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = sled::Batch::default();
        let mut fresh: HashMap<[u8; 24], Receipt> = HashMap::new();
        let mut out = Vec::with_capacity(packets.len());
        let mut delivered = Vec::new();
        for (p, check) in packets.iter().zip(checks) {
            let pk = &p.packet;
            let key = receipt_key(&pk.channel, pk.sequence);
            let outcome = match check {
                Err(o) => o,
                Ok(()) => {
                    let existing = match fresh.get(&key) {
                        Some(r) => Some(r.clone()),
                        None => match self.receipts.get(key)? {
                            Some(b) => Some(rmp_serde::from_slice::<Receipt>(&b).map_err(|e| {
                                IngressError::Corrupt(pk.channel, pk.sequence, e.to_string())
                            })?),
                            None => None,
                        },
                    };
                    // The pure channel machine decides, on a view holding just this receipt.
                    let mut view = RecvChannel::new(pk.channel);
                    if let Some(r) = existing {
                        view.receipts.insert(pk.sequence, r);
                    }
                    match view.receive(pk, now, |_| AckResult::Ok { data: Vec::new() }) {
                        Ok(Delivery::New(_)) => {
                            if let Some(r) = view.receipts.get(&pk.sequence) {
                                let bytes = rmp_serde::to_vec_named(r).map_err(|e| {
                                    IngressError::Corrupt(pk.channel, pk.sequence, e.to_string())
                                })?;
                                batch.insert(&key, bytes);
                                fresh.insert(key, r.clone());
                            }
                            delivered.push(pk.clone());
                            Outcome::Delivered
                        }
                        Ok(Delivery::Duplicate(_)) => Outcome::Duplicate,
                        Err(e) => rejected(rejection_code(&e), e.to_string()),
                    }
                }
            };
            out.push(ReceiptMsg {
                channel: pk.channel,
                sequence: pk.sequence,
                outcome,
            });
        }
        if !delivered.is_empty() {
            self.receipts.apply_batch(batch)?;
            self.db.flush()?;
        }
        Ok((out, delivered))
    }

    /// Serve relayer connections from `endpoint` until `shutdown` resolves.
    pub async fn serve(self: Arc<Self>, endpoint: Endpoint, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    conns.shutdown().await;
                    return;
                }
                c = endpoint.accept() => match c {
                    Some(conn) => {
                        let me = self.clone();
                        conns.spawn(async move { me.serve_conn(conn).await });
                    }
                    None => return,
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    }

    async fn serve_conn(self: Arc<Self>, mut conn: Connection) {
        let peer = conn.remote_id();
        tracing::info!(relayer = %peer, "relayer connected");
        let sender = conn.sender();
        // Verification of the next batches runs on blocking threads while earlier ones are
        // recorded and answered, in arrival order; the bounded queue is the pipeline depth.
        let (tx, mut rx) = mpsc::channel::<Staged>(VERIFY_AHEAD);
        let me = self.clone();
        let recorder = async move {
            while let Some(st) = rx.recv().await {
                let (batch, receipts) = match st {
                    Staged::Refused(batch, receipts) => (batch, receipts),
                    Staged::Verifying(batch, packets, verifying) => {
                        let Ok(checks) = verifying.await else {
                            tracing::error!("packet verification task failed");
                            continue;
                        };
                        let recording = me.clone();
                        match tokio::task::spawn_blocking(move || {
                            recording.record(&packets, checks)
                        })
                        .await
                        {
                            Ok(Ok((receipts, delivered))) => {
                                for p in delivered {
                                    // Durable already: a full forward queue only slows the link.
                                    if me.forward.send(p).await.is_err() {
                                        tracing::warn!("packet forwarder stopped");
                                    }
                                }
                                (batch, receipts)
                            }
                            Ok(Err(e)) => {
                                // Nothing is answered, so the relayer retries the whole batch.
                                tracing::error!(%e, "receipt store failed");
                                continue;
                            }
                            Err(e) => {
                                tracing::error!(%e, "receipt task failed");
                                continue;
                            }
                        }
                    }
                };
                if sender
                    .send_msg(&LinkMsg::Receipts { batch, receipts })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        };
        let max = self.cfg.max_batch.max(1);
        let reader = async move {
            while let Some(msg) = conn.recv_msg::<LinkMsg>().await {
                let (batch, packets) = match msg {
                    Ok(LinkMsg::Deliver { batch, packets }) => (batch, packets),
                    Ok(other) => {
                        tracing::warn!(relayer = %peer, ?other, "unexpected message on a relay link");
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(relayer = %peer, %e, "relay link closed");
                        return;
                    }
                };
                let staged = if packets.len() > max {
                    let receipts = packets
                        .iter()
                        .map(|p| ReceiptMsg {
                            channel: p.packet.channel,
                            sequence: p.packet.sequence,
                            outcome: rejected(
                                "batch_too_large",
                                format!("batch of {} exceeds {max}", packets.len()),
                            ),
                        })
                        .collect();
                    Staged::Refused(batch, receipts)
                } else {
                    let packets = Arc::new(packets);
                    let me = self.clone();
                    let p = packets.clone();
                    let verifying = tokio::task::spawn_blocking(move || me.attested(&p));
                    Staged::Verifying(batch, packets, verifying)
                };
                if tx.send(staged).await.is_err() {
                    return;
                }
            }
        };
        tokio::join!(reader, recorder);
    }
}

/// Batches verified ahead of the one being recorded, per connection.
const VERIFY_AHEAD: usize = 4;

/// A batch on its way through a connection's pipeline.
enum Staged {
    Refused(u64, Vec<ReceiptMsg>),
    Verifying(
        u64,
        Arc<Vec<RelayedPacket>>,
        tokio::task::JoinHandle<Vec<Result<(), Outcome>>>,
    ),
}

/// The stable code of a packet rejection (the same as its serde tag).
fn rejection_code(e: &PacketRejection) -> &'static str {
    match e {
        PacketRejection::WrongChannel { .. } => "wrong_channel",
        PacketRejection::TimedOut { .. } => "timed_out",
        PacketRejection::NotTimedOut { .. } => "not_timed_out",
        PacketRejection::AlreadyDelivered { .. } => "already_delivered",
        PacketRejection::CommitmentMismatch { .. } => "commitment_mismatch",
        PacketRejection::UnknownSequence { .. } => "unknown_sequence",
        PacketRejection::Pruned { .. } => "pruned",
        PacketRejection::OutcomeConflict { .. } => "outcome_conflict",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_core::sign::BatchItem;
    use isthmus_core::{Domain, Keypair, NetworkId, Signature};

    #[test]
    fn parallel_verification_answers_exactly_like_one_batch() {
        let keys: Vec<Keypair> = (0..300).map(|i| Keypair::dev(&format!("k{i}"))).collect();
        let payloads: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let items: Vec<BatchItem<'_>> = keys
            .iter()
            .zip(&payloads)
            .enumerate()
            .map(|(i, (k, p))| BatchItem {
                signer: k.id(),
                domain: Domain::Packet,
                network: NetworkId(1),
                payload: p,
                // Every 7th signature is made for another network, so it must fail.
                signature: if i % 7 == 0 {
                    k.sign(Domain::Packet, NetworkId(2), p)
                } else {
                    k.sign(Domain::Packet, NetworkId(1), p)
                },
            })
            .collect();
        let one = verify_batch(&items);
        assert_eq!(one.iter().filter(|r| r.is_err()).count(), 43);
        for threads in [0, 1, 2, 3, 8] {
            let par = verify_parallel(&items, threads);
            let ok = |v: &[Result<(), isthmus_core::SignError>]| {
                v.iter().map(Result::is_ok).collect::<Vec<_>>()
            };
            assert_eq!(ok(&par), ok(&one), "{threads} threads");
        }
        // A zeroed signature in the second half (its own thread) fails alone.
        let mut forged = items[..160].to_vec();
        forged[159].signature = Signature([0u8; 64]);
        let r = verify_parallel(&forged, 2);
        assert!(r[159].is_err());
        assert_eq!(r[..159].iter().filter(|r| r.is_ok()).count(), 159 - 23);
    }
}
