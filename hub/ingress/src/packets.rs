//! The hub's packet ingress: each packet is checked under its source network's policy
//! (strict batch verification of attestations, or a light-client proof through that
//! network's [`ProofVerifier`]), then gets an exactly-once receipt per (channel, sequence),
//! flushed before the packet is forwarded or any relayer is answered. The hand-off to the
//! forward sink is journalled in that same flush and cleared when the sink calls
//! [`Forwarded::done`], so a hub that dies in between hands the packet over again on restart.

use crate::proof::ProofVerifier;
use crate::receipts::ReceiptStore;
use isthmus_core::sign::verify_batch;
use isthmus_core::{NetworkId, NodeId};
use isthmus_lock_contracts::packet::{
    AckResult, ChannelId, Delivery, Packet, PacketRejection, RecvChannel,
};
use isthmus_relay_protocol::{LinkMsg, Outcome, ReceiptMsg, RelayedPacket};
use isthmus_transport::{Connection, Endpoint};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Each source network's policy: which keys attest its packets and how many must sign
/// (`trusted`), or which verifier checks their light-client proofs (`proofs`; a network
/// listed there is judged by proof alone, whatever attestations a packet carries).
#[derive(Clone, Default)]
pub struct IngressConfig {
    pub trusted: BTreeMap<NetworkId, (BTreeSet<NodeId>, usize)>,
    pub proofs: BTreeMap<NetworkId, Arc<dyn ProofVerifier>>,
    /// Largest batch accepted in one message.
    pub max_batch: usize,
    /// Threads one batch's signatures are verified on (0 or 1: the calling thread only).
    pub verify_threads: usize,
}

impl std::fmt::Debug for IngressConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngressConfig")
            .field("trusted", &self.trusted)
            .field("proofs", &self.proofs.keys().collect::<Vec<_>>())
            .field("max_batch", &self.max_batch)
            .field("verify_threads", &self.verify_threads)
            .finish()
    }
}

/// Per proof-checked source network: packets whose proof passed, and refused.
#[derive(Debug, Default)]
pub struct ProofCounts {
    pub proven: std::sync::atomic::AtomicU64,
    pub refused: std::sync::atomic::AtomicU64,
}

/// `check` over `items`, split into up to `threads` chunks of at least `min_per_thread`
/// checked at the same time (scoped threads), results in input order. Checks are total and
/// cannot panic on input; if one ever did, its chunk gets `refused` per item (order kept)
/// rather than the hub crashing.
fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    min_per_thread: usize,
    check: impl Fn(&[T]) -> Vec<R> + Sync,
    refused: impl Fn(&T) -> R,
) -> Vec<R> {
    let threads = threads.min(items.len() / min_per_thread.max(1)).max(1);
    if threads == 1 {
        return check(items);
    }
    let per = items.len().div_ceil(threads);
    let check = &check;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(per)
            .map(|c| (c, s.spawn(move || check(c))))
            .collect();
        handles
            .into_iter()
            .flat_map(|(c, h)| match h.join() {
                Ok(r) => r,
                Err(_) => c.iter().map(&refused).collect(),
            })
            .collect()
    })
}

/// Verify `items` strictly, split into `threads` batches verified at the same time (scoped
/// threads; results in input order, exactly as one [`verify_batch`] would return them).
pub fn verify_parallel(
    items: &[isthmus_core::sign::BatchItem<'_>],
    threads: usize,
) -> Vec<Result<(), isthmus_core::SignError>> {
    // Below this, a thread costs more than it saves.
    in_parallel(items, threads, 64, verify_batch, |i| {
        Err(isthmus_core::SignError::BadSignature(
            i.signer,
            i.domain.tag(),
            i.network,
        ))
    })
}

#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("receipt store failed: {0}")]
    Store(String),
    #[error("receipt for {0:?} #{1} is corrupt: {2}")]
    Corrupt(ChannelId, u64, String),
}

impl From<crate::receipts::ReceiptError> for IngressError {
    fn from(e: crate::receipts::ReceiptError) -> Self {
        IngressError::Store(e.to_string())
    }
}

impl From<sled::Error> for IngressError {
    fn from(e: sled::Error) -> Self {
        IngressError::Store(e.to_string())
    }
}

/// A packet delivered for the first time, handed to the forward sink. Its hand-off was
/// journalled in the flush that made its receipt durable; the sink calls [`done`](Self::done)
/// once it has acted on the packet durably, and until every packet of its journal entry is
/// done, a restarted ingress hands them over again. A sink must therefore be idempotent per
/// (channel, sequence); dropping a `Forwarded` without `done` leaves it to that replay.
#[derive(Debug)]
pub struct Forwarded {
    pub packet: Packet,
    ticket: Arc<ForwardTicket>,
}

/// One journal entry of forwards and how many of its packets are not done yet.
#[derive(Debug)]
struct ForwardTicket {
    journal: sled::Tree,
    key: [u8; 8],
    left: std::sync::atomic::AtomicUsize,
}

impl Forwarded {
    /// The sink has acted on this packet. The last one of a journal entry removes it
    /// (unflushed: a removal lost in a crash only brings an idempotent replay).
    pub fn done(self) {
        let t = &self.ticket;
        if t.left.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
            if let Err(e) = t.journal.remove(t.key) {
                tracing::warn!(%e, "forward journal entry not removed; it is replayed on restart");
            }
        }
    }
}

/// Forwards journalled per sled value (one value per this many packets of a group).
const FORWARD_CHUNK: usize = 256;

pub struct PacketIngress {
    db: sled::Db,
    /// Forwards whose sink has not called `done` yet, by journal id: each value is a run of
    /// packets, written in their receipts' flush.
    forwarding: sled::Tree,
    /// Set once the journal has been replayed into the sink (on the first `serve`).
    replayed: std::sync::atomic::AtomicBool,
    cfg: IngressConfig,
    /// Its lock serialises the receipt phase, so two relayers cannot both deliver one
    /// sequence.
    store: ReceiptStore,
    forward: mpsc::Sender<Forwarded>,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    proof_counts: BTreeMap<NetworkId, ProofCounts>,
    /// One permit per verify thread: pipelined batches are each checked whole on one thread
    /// (a batch verification gains from its size), at most this many at once across every
    /// connection, so the verifiers never outnumber the cores they were given.
    verifiers: Arc<tokio::sync::Semaphore>,
    /// Makes this many next groups fail just before their write, as a crash there would.
    #[cfg(test)]
    fail_commit: std::sync::atomic::AtomicUsize,
}

fn rejected(code: &str, reason: String) -> Outcome {
    Outcome::Rejected {
        code: code.to_owned(),
        reason,
    }
}

impl PacketIngress {
    /// `forward` receives each packet delivered through [`serve`](Self::serve) after its
    /// receipt is durable, and again after a restart until its [`Forwarded::done`].
    pub fn open(
        db: sled::Db,
        cfg: IngressConfig,
        forward: mpsc::Sender<Forwarded>,
        clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    ) -> Result<Self, IngressError> {
        Ok(PacketIngress {
            forwarding: db.open_tree("relay.forwarding")?,
            replayed: std::sync::atomic::AtomicBool::new(false),
            store: ReceiptStore::open(&db)?,
            db,
            proof_counts: cfg
                .proofs
                .keys()
                .map(|n| (*n, ProofCounts::default()))
                .collect(),
            verifiers: Arc::new(tokio::sync::Semaphore::new(cfg.verify_threads.max(1))),
            cfg,
            forward,
            clock,
            #[cfg(test)]
            fail_commit: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// The proof counters of source network `network` (`None`: not a proof-checked source).
    pub fn proof_counts(&self, network: NetworkId) -> Option<&ProofCounts> {
        self.proof_counts.get(&network)
    }

    /// The light-client check of one packet of a proof-checked network.
    fn proven(&self, verifier: &dyn ProofVerifier, p: &RelayedPacket) -> Result<(), Outcome> {
        let net = p.packet.channel.source;
        let checked = match &p.proof {
            None => Err(crate::proof::ProofError::Missing {
                network: net,
                sequence: p.packet.sequence,
            }),
            Some(proof) => verifier.verify(&p.packet, proof),
        };
        let counts = self.proof_counts.get(&net);
        match checked {
            Ok(()) => {
                if let Some(c) = counts {
                    c.proven.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(())
            }
            Err(e) => {
                if let Some(c) = counts {
                    c.refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                metrics::counter!("relay_ingress_proofs_refused_total", "source" => net.to_string(), "code" => e.code())
                    .increment(1);
                tracing::warn!(source = %net, sequence = p.packet.sequence, %e, "packet proof refused");
                Err(rejected(e.code(), e.to_string()))
            }
        }
    }

    /// The proof check of every packet of a proof-checked network (`None` for the others),
    /// split over the verify threads like signatures are.
    fn check_proofs(
        &self,
        packets: &[RelayedPacket],
        threads: usize,
    ) -> Vec<Option<Result<(), Outcome>>> {
        const MIN_PER_THREAD: usize = 32;
        let one = |p: &RelayedPacket| {
            self.cfg
                .proofs
                .get(&p.packet.channel.source)
                .map(|v| self.proven(v.as_ref(), p))
        };
        if self.cfg.proofs.is_empty() {
            return vec![None; packets.len()];
        }
        in_parallel(
            packets,
            threads,
            MIN_PER_THREAD,
            |c| c.iter().map(one).collect(),
            |p| {
                Some(Err(rejected(
                    "proof_unavailable",
                    format!("proof check of packet {} failed", p.packet.sequence),
                )))
            },
        )
    }

    /// Which packets pass their source network's policy: a valid light-client proof, or
    /// enough valid attestations by trusted keys. Checked on up to `threads` threads.
    fn attested(&self, packets: &[RelayedPacket], threads: usize) -> Vec<Result<(), Outcome>> {
        let mut proven = self.check_proofs(packets, threads).into_iter();
        let commitments: Vec<_> = packets.iter().map(|p| p.packet.commitment()).collect();
        let mut items = Vec::new();
        let mut owner = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            if self.cfg.proofs.contains_key(&p.packet.channel.source) {
                continue;
            }
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
        let results = verify_parallel(&items, threads);
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
                if let Some(checked) = proven.next().flatten() {
                    return checked;
                }
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
    /// packets delivered for the first time, which the caller hands on itself (no forward
    /// journal: the caller holds them when this returns).
    pub fn process(
        &self,
        packets: &[RelayedPacket],
    ) -> Result<(Vec<ReceiptMsg>, Vec<Packet>), IngressError> {
        let checks = self.attested(packets, self.cfg.verify_threads);
        let (mut recorded, _) = self.record_group(&[(packets, &checks)], false)?;
        let (receipts, fresh) = recorded.pop().unwrap_or_default();
        let delivered = fresh
            .into_iter()
            .map(|i| packets[i].packet.clone())
            .collect();
        Ok((receipts, delivered))
    }

    /// The receipt phase for a group of batches, given each packet's attestation check:
    /// decide every packet in order (a sequence seen earlier in the group is a duplicate),
    /// write all new receipts in one sled batch and flush once (group commit). Returns, per
    /// batch, its receipts and the indices of its packets delivered for the first time.
    /// Nothing is returned, so nothing can be acknowledged or forwarded, unless the flush
    /// succeeded. With `journal`, the packets delivered for the first time are also written,
    /// in the same flush, to the forward journal in runs of [`FORWARD_CHUNK`] (in group
    /// order); the runs' journal keys and lengths are returned.
    fn record_group(
        &self,
        group: &[CheckedBatch<'_>],
        journal: bool,
    ) -> Result<(Vec<Recorded>, Vec<JournalRun>), IngressError> {
        let now = (self.clock)();
        let mut receipts_of = self.store.lock();
        let mut out = Vec::with_capacity(group.len());
        for (packets, checks) in group {
            let mut receipts = Vec::with_capacity(packets.len());
            let mut delivered = Vec::new();
            for (i, (p, check)) in packets.iter().zip(checks.iter()).enumerate() {
                let pk = &p.packet;
                let outcome = match check {
                    Err(o) => o.clone(),
                    Ok(()) => {
                        // Earlier packets of the group are staged, and found the same way.
                        let existing = receipts_of.get(&pk.channel, pk.sequence)?;
                        // The pure channel machine decides, on a view holding just this receipt.
                        let mut view = RecvChannel::new(pk.channel);
                        if let Some(r) = existing {
                            view.receipts.insert(pk.sequence, r);
                        }
                        match view.receive(pk, now, |_| AckResult::Ok { data: Vec::new() }) {
                            Ok(Delivery::New(ack)) => {
                                receipts_of.stage(pk.channel, pk.sequence, ack.commitment);
                                delivered.push(i);
                                Outcome::Delivered
                            }
                            Ok(Delivery::Duplicate(_)) => Outcome::Duplicate,
                            Err(e) => rejected(rejection_code(&e), e.to_string()),
                        }
                    }
                };
                receipts.push(ReceiptMsg {
                    channel: pk.channel,
                    sequence: pk.sequence,
                    outcome,
                });
            }
            out.push((receipts, delivered));
        }
        let any_new = !receipts_of.is_empty();
        let mut runs = Vec::new();
        let mut forwards = sled::Batch::default();
        if journal && any_new {
            let fresh: Vec<&Packet> = out
                .iter()
                .zip(group)
                .flat_map(|((_, delivered), (packets, _))| {
                    delivered.iter().map(|&i| &packets[i].packet)
                })
                .collect();
            for run in fresh.chunks(FORWARD_CHUNK) {
                let key = self.db.generate_id()?.to_be_bytes();
                let bytes = rmp_serde::to_vec(run).map_err(|e| {
                    IngressError::Store(format!("forward journal entry not encoded: {e}"))
                })?;
                forwards.insert(&key, bytes);
                runs.push((key, run.len()));
            }
        }
        if any_new {
            #[cfg(test)]
            if self
                .fail_commit
                .fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    |n| n.checked_sub(1),
                )
                .is_ok()
            {
                return Err(IngressError::Store(
                    "injected crash before the flush".into(),
                ));
            }
            let mut batch = sled::Batch::default();
            let written = receipts_of.write(&mut batch)?;
            // One flush covers both trees: a receipt never exists without its hand-off.
            let stored = self
                .store
                .apply(batch)
                .map_err(IngressError::from)
                .and_then(|()| Ok(self.forwarding.apply_batch(forwards)?))
                .and_then(|()| Ok(self.db.flush().map(|_| ())?));
            if let Err(e) = stored {
                // What reached the trees is unknown: read the index again from them.
                receipts_of.forget();
                return Err(e);
            }
            receipts_of.committed(written);
        }
        Ok((out, runs))
    }

    /// Forwards journalled and not yet done (runs of packets).
    pub fn pending_forwards(&self) -> Result<usize, IngressError> {
        let mut n = 0;
        for entry in self.forwarding.iter() {
            let (_, v) = entry?;
            n += rmp_serde::from_slice::<Vec<Packet>>(&v).map_or(0, |run| run.len());
        }
        Ok(n)
    }

    /// Hand every journalled forward to the sink again (once per ingress: a previous run
    /// stopped before its sink was done with them).
    async fn replay_forwards(&self) {
        if self
            .replayed
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let mut replayed = 0usize;
        for entry in self.forwarding.iter() {
            let (k, v) = match entry {
                Ok(kv) => kv,
                Err(e) => {
                    tracing::error!(%e, "forward journal unreadable");
                    return;
                }
            };
            let (Ok(key), Ok(run)) = (
                <[u8; 8]>::try_from(k.as_ref()),
                rmp_serde::from_slice::<Vec<Packet>>(&v),
            ) else {
                tracing::error!(key = ?k, "forward journal entry is corrupt; left in place");
                continue;
            };
            let ticket = Arc::new(ForwardTicket {
                journal: self.forwarding.clone(),
                key,
                left: std::sync::atomic::AtomicUsize::new(run.len()),
            });
            for packet in run {
                replayed += 1;
                let f = Forwarded {
                    packet,
                    ticket: ticket.clone(),
                };
                if self.forward.send(f).await.is_err() {
                    tracing::warn!("packet forwarder stopped");
                    return;
                }
            }
        }
        if replayed > 0 {
            tracing::info!(replayed, "journalled forwards handed to the sink again");
        }
    }

    /// Serve relayer connections from `endpoint` until `shutdown` resolves. The first call
    /// also hands the sink, alongside, every journalled forward it was not done with.
    pub async fn serve(self: Arc<Self>, endpoint: Endpoint, shutdown: impl Future<Output = ()>) {
        let me = self.clone();
        tokio::spawn(async move { me.replay_forwards().await });
        endpoint
            .serve_each(shutdown, |conn| self.clone().serve_conn(conn))
            .await;
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
            // A staged batch taken from the queue whose verification had not finished when
            // the previous group was closed; it opens the next group.
            let mut next: Option<Staged> = None;
            loop {
                let first = match next.take() {
                    Some(s) => s,
                    None => match rx.recv().await {
                        Some(s) => s,
                        None => return,
                    },
                };
                let mut group = vec![first.ready().await];
                let mut size = group[0].len();
                // Group commit: every batch already verified joins this group's one flush.
                while size < GROUP_PACKETS {
                    match rx.try_recv() {
                        Ok(s) if s.is_ready() => {
                            let r = s.ready().await;
                            size += r.len();
                            group.push(r);
                        }
                        Ok(s) => {
                            next = Some(s);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let recording = me.clone();
                let answered =
                    tokio::task::spawn_blocking(move || recording.commit_group(group)).await;
                let answers = match answered {
                    Ok(Ok(a)) => a,
                    Ok(Err(e)) => {
                        // Nothing is answered, so the relayer retries these batches.
                        tracing::error!(%e, "receipt store failed");
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(%e, "receipt task failed");
                        continue;
                    }
                };
                for (batch, receipts, delivered) in answers {
                    for p in delivered {
                        // Durable already: a full forward queue only slows the link.
                        if me.forward.send(p).await.is_err() {
                            tracing::warn!("packet forwarder stopped");
                        }
                    }
                    if sender
                        .send_msg(&LinkMsg::Receipts { batch, receipts })
                        .await
                        .is_err()
                    {
                        return;
                    }
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
                    let verifying = tokio::spawn(async move {
                        let permit = me.verifiers.clone().acquire_owned().await.ok()?;
                        let checked = tokio::task::spawn_blocking(move || {
                            let checks = me.attested(&p, 1);
                            drop(permit);
                            checks
                        });
                        checked.await.ok()
                    });
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

/// A batch's packets with each one's attestation check.
type CheckedBatch<'a> = (&'a [RelayedPacket], &'a [Result<(), Outcome>]);
/// A forward journal entry written with a group: its key and how many packets it holds.
type JournalRun = ([u8; 8], usize);
/// A recorded batch: its receipts and the indices of its first-time deliveries.
type Recorded = (Vec<ReceiptMsg>, Vec<usize>);
/// A committed batch: its number, receipts and the packets to forward.
type Answered = (u64, Vec<ReceiptMsg>, Vec<Forwarded>);

/// Batches verified ahead of the group being recorded, per connection.
const VERIFY_AHEAD: usize = 16;

/// A group stops taking further verified batches at this many packets.
const GROUP_PACKETS: usize = 4_096;

/// A batch on its way through a connection's pipeline.
enum Staged {
    Refused(u64, Vec<ReceiptMsg>),
    /// `None` from the task: its check died, and the batch is left unanswered.
    Verifying(
        u64,
        Arc<Vec<RelayedPacket>>,
        tokio::task::JoinHandle<Option<Vec<Result<(), Outcome>>>>,
    ),
}

/// A batch ready to be recorded.
enum Ready {
    Refused(u64, Vec<ReceiptMsg>),
    Checked(u64, Arc<Vec<RelayedPacket>>, Vec<Result<(), Outcome>>),
    /// Its verification task died; it is left unanswered, so the relayer resends it.
    Lost,
}

impl Staged {
    fn is_ready(&self) -> bool {
        match self {
            Staged::Refused(..) => true,
            Staged::Verifying(_, _, h) => h.is_finished(),
        }
    }

    async fn ready(self) -> Ready {
        match self {
            Staged::Refused(b, r) => Ready::Refused(b, r),
            Staged::Verifying(b, p, h) => match h.await {
                Ok(Some(checks)) => Ready::Checked(b, p, checks),
                Ok(None) => {
                    tracing::error!(batch = b, "packet verification task failed");
                    Ready::Lost
                }
                Err(e) => {
                    tracing::error!(%e, "packet verification task failed");
                    Ready::Lost
                }
            },
        }
    }
}

impl Ready {
    fn len(&self) -> usize {
        match self {
            Ready::Refused(_, r) => r.len(),
            Ready::Checked(_, p, _) => p.len(),
            Ready::Lost => 0,
        }
    }
}

impl PacketIngress {
    /// Record a group durably, then hand back each batch's number, receipts and newly
    /// delivered packets (moved out of the batch, not copied, when nothing else holds it).
    fn commit_group(&self, group: Vec<Ready>) -> Result<Vec<Answered>, IngressError> {
        let checked: Vec<_> = group
            .iter()
            .filter_map(|r| match r {
                Ready::Checked(_, p, c) => Some((p.as_slice(), c.as_slice())),
                _ => None,
            })
            .collect();
        let (recorded, runs) = self.record_group(&checked, true)?;
        let mut recorded = recorded.into_iter();
        drop(checked);
        // Tickets in group order, one per journalled run, each shared by its packets.
        let mut tickets = runs.into_iter().flat_map(|(key, len)| {
            let t = Arc::new(ForwardTicket {
                journal: self.forwarding.clone(),
                key,
                left: std::sync::atomic::AtomicUsize::new(len),
            });
            std::iter::repeat_n(t, len)
        });
        let mut out = Vec::with_capacity(group.len());
        for r in group {
            match r {
                Ready::Refused(b, receipts) => out.push((b, receipts, Vec::new())),
                Ready::Checked(b, packets, _) => {
                    let (receipts, fresh) = recorded.next().unwrap_or_default();
                    let delivered = match Arc::try_unwrap(packets) {
                        Ok(owned) => take_indices(owned, &fresh),
                        Err(shared) => fresh.iter().map(|&i| shared[i].packet.clone()).collect(),
                    };
                    let mut forwards = Vec::with_capacity(delivered.len());
                    for packet in delivered {
                        let Some(ticket) = tickets.next() else {
                            return Err(IngressError::Store(
                                "forward journal runs do not cover the group".into(),
                            ));
                        };
                        forwards.push(Forwarded { packet, ticket });
                    }
                    out.push((b, receipts, forwards));
                }
                Ready::Lost => {}
            }
        }
        Ok(out)
    }
}

/// The packets at `indices` (ascending), moved out of `packets`.
fn take_indices(packets: Vec<RelayedPacket>, indices: &[usize]) -> Vec<Packet> {
    let mut want = indices.iter().peekable();
    packets
        .into_iter()
        .enumerate()
        .filter_map(|(i, p)| {
            if want.peek() == Some(&&i) {
                want.next();
                Some(p.packet)
            } else {
                None
            }
        })
        .collect()
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
    use isthmus_lock_contracts::Address;
    use isthmus_transport::{TransportConfig, TransportKind};
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    const SRC: NetworkId = NetworkId(1);
    const HUB: NetworkId = NetworkId(77);

    fn source_key() -> Keypair {
        Keypair::dev("group-source")
    }

    fn signed(seq: u64) -> RelayedPacket {
        RelayedPacket::attest(
            Packet {
                channel: ChannelId {
                    source: SRC,
                    destination: NetworkId(2),
                },
                sequence: seq,
                sender: Address("a".into()),
                receiver: Address("b".into()),
                payload: vec![seq as u8; 32],
                timeout: 1_000,
            },
            &[source_key()],
        )
    }

    fn open(dir: &std::path::Path) -> (Arc<PacketIngress>, mpsc::Receiver<Forwarded>) {
        let (tx, rx) = mpsc::channel(1_000);
        let mut trusted = BTreeMap::new();
        trusted.insert(SRC, (BTreeSet::from([source_key().id()]), 1));
        let cfg = IngressConfig {
            trusted,
            max_batch: 1_000,
            verify_threads: 2,
            ..IngressConfig::default()
        };
        let ing = PacketIngress::open(sled::open(dir).unwrap(), cfg, tx, Arc::new(|| 1)).unwrap();
        (Arc::new(ing), rx)
    }

    fn outcomes(r: &[ReceiptMsg]) -> Vec<Outcome> {
        r.iter().map(|x| x.outcome.clone()).collect()
    }

    #[test]
    fn duplicates_inside_one_group_are_delivered_once() {
        let dir = tempfile::tempdir().unwrap();
        let (ing, _rx) = open(dir.path());
        let batches = [
            vec![signed(1), signed(2)],
            vec![signed(2), signed(3), signed(3)],
            vec![signed(1)],
        ];
        let group: Vec<Ready> = batches
            .iter()
            .enumerate()
            .map(|(i, b)| Ready::Checked(i as u64, Arc::new(b.clone()), ing.attested(b, 2)))
            .collect();
        let answered = ing.commit_group(group).unwrap();
        let (d, dup) = (Outcome::Delivered, Outcome::Duplicate);
        let want = [
            (vec![d.clone(), d.clone()], vec![1, 2]),
            (vec![dup.clone(), d.clone(), dup.clone()], vec![3]),
            (vec![dup.clone()], vec![]),
        ];
        assert_eq!(answered.len(), 3);
        for ((batch, receipts, fwd), (i, (o, seqs))) in answered.iter().zip(want.iter().enumerate())
        {
            assert_eq!(*batch, i as u64);
            assert_eq!(&outcomes(receipts), o, "batch {i}");
            let got: Vec<u64> = fwd.iter().map(|f| f.packet.sequence).collect();
            assert_eq!(&got, seqs, "batch {i} forwards");
        }
        // The group's receipts are durable: reopened, every packet is a duplicate.
        drop(answered);
        drop(ing);
        let (ing, _rx) = open(dir.path());
        let (r, fwd) = ing.process(&[signed(1), signed(2), signed(3)]).unwrap();
        assert!(fwd.is_empty());
        assert_eq!(outcomes(&r), vec![dup.clone(), dup.clone(), dup]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crash_before_the_group_flush_answers_and_forwards_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (ing, mut forwarded) = open(dir.path());
        ing.fail_commit.store(1, Ordering::SeqCst);
        let ((_client, mut conn), stop, hub) = serve_on_tcp(&ing).await;
        let packets: Vec<RelayedPacket> = (1..=5).map(signed).collect();
        conn.send_msg(&LinkMsg::Deliver {
            batch: 1,
            packets: packets.clone(),
        })
        .await
        .unwrap();
        // Wait (bounded) until the injected crash has hit batch 1.
        let deadline = Instant::now() + Duration::from_secs(20);
        while ing.fail_commit.load(Ordering::SeqCst) != 0 {
            assert!(Instant::now() < deadline, "batch 1 was never recorded");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(forwarded.try_recv().is_err(), "forwarded before durable");
        conn.send_msg(&LinkMsg::Deliver { batch: 2, packets })
            .await
            .unwrap();
        // Receipts leave in batch order, so batch 1's would come first if it had any.
        let (batch, receipts) = next_receipts(&mut conn).await;
        assert_eq!(batch, 2);
        assert_eq!(outcomes(&receipts), vec![Outcome::Delivered; 5]);
        // Forwarded before the answer, each once.
        let seqs: Vec<u64> = std::iter::from_fn(|| forwarded.try_recv().ok())
            .map(|f| f.packet.sequence)
            .collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        let _ = stop.send(());
        hub.await.unwrap();
    }

    /// Serve `ing` on a fresh TCP endpoint: a relayer's connection to it (with the
    /// relayer's endpoint, which must outlive it), the switch that stops it and its task.
    async fn serve_on_tcp(
        ing: &Arc<PacketIngress>,
    ) -> (
        (Endpoint, Connection),
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let hub_key = Keypair::dev("test-hub");
        let cfg = TransportConfig {
            kind: TransportKind::Tcp,
            network: HUB,
            ..TransportConfig::default()
        };
        let ep = Endpoint::bind(cfg.clone(), hub_key.clone()).await.unwrap();
        let addr = ep.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let hub = tokio::spawn(ing.clone().serve(ep, async {
            let _ = stopped.await;
        }));
        let client = Endpoint::bind(cfg, Keypair::dev("test-relayer"))
            .await
            .unwrap();
        let conn = client.connect(addr, Some(hub_key.id())).await.unwrap();
        ((client, conn), stop, hub)
    }

    /// The next receipts message on `conn` (bounded wait): its batch and receipts.
    async fn next_receipts(conn: &mut Connection) -> (u64, Vec<ReceiptMsg>) {
        let msg = tokio::time::timeout(Duration::from_secs(20), conn.recv_msg::<LinkMsg>())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let LinkMsg::Receipts { batch, receipts } = msg else {
            panic!("unexpected {msg:?}");
        };
        (batch, receipts)
    }

    /// Serve `ing`, deliver `packets` as one batch and wait for their receipts; returns
    /// the outcomes.
    async fn deliver_once(ing: &Arc<PacketIngress>, packets: Vec<RelayedPacket>) -> Vec<Outcome> {
        let ((_client, mut conn), stop, hub) = serve_on_tcp(ing).await;
        conn.send_msg(&LinkMsg::Deliver { batch: 1, packets })
            .await
            .unwrap();
        let (_, receipts) = next_receipts(&mut conn).await;
        let _ = stop.send(());
        hub.await.unwrap();
        outcomes(&receipts)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hand_off_the_sink_never_finished_is_replayed_after_a_restart_until_done() {
        let dir = tempfile::tempdir().unwrap();
        // More packets than one journal run, so tickets shared by a run are covered.
        let n = FORWARD_CHUNK as u64 + 44;
        let packets: Vec<RelayedPacket> = (1..=n).map(signed).collect();
        {
            let (ing, mut sink) = open(dir.path());
            let got = deliver_once(&ing, packets.clone()).await;
            assert_eq!(got, vec![Outcome::Delivered; n as usize]);
            // The sink takes every packet but finishes only the first 10, then the hub dies.
            let taken: Vec<Forwarded> = std::iter::from_fn(|| sink.try_recv().ok()).collect();
            assert_eq!(taken.len(), n as usize);
            for f in taken.into_iter().take(10) {
                f.done();
            }
            assert_eq!(
                ing.pending_forwards().unwrap(),
                n as usize,
                "a run goes only when all of it is done"
            );
        }
        let (ing, mut sink) = open(dir.path());
        // A relayer resending the batch gets `duplicate` (nothing delivered twice) ...
        let again = deliver_once(&ing, packets.clone()).await;
        assert_eq!(again, vec![Outcome::Duplicate; n as usize]);
        // ... and the sink gets every packet of the unfinished runs again, once.
        let mut replayed = Vec::new();
        while replayed.len() < n as usize {
            let f = tokio::time::timeout(Duration::from_secs(20), sink.recv())
                .await
                .unwrap()
                .unwrap();
            replayed.push(f);
        }
        assert!(sink.try_recv().is_err(), "replayed once");
        let seqs: Vec<u64> = replayed.iter().map(|f| f.packet.sequence).collect();
        assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
        for f in replayed {
            f.done();
        }
        assert_eq!(ing.pending_forwards().unwrap(), 0);
        drop(ing);
        let (ing, mut sink) = open(dir.path());
        let third = deliver_once(&ing, packets).await;
        assert_eq!(third, vec![Outcome::Duplicate; n as usize]);
        // Nothing is left to replay: the journal is empty, and the sink got nothing.
        assert_eq!(ing.pending_forwards().unwrap(), 0);
        assert!(
            sink.try_recv().is_err(),
            "nothing replayed once the sink was done"
        );
    }

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
