//! Lock evidence carried by the relayer: a source network's lock events the hub acts on
//! (a lock final, a release, a refund, a claim), each with the adapter's finality evidence
//! for its transaction, read through an [`Adapter`] into a durable outbox and carried to
//! the hub's evidence ingress at least once.
//!
//! The relayer vouches for nothing: the hub checks every item against its own adapter for
//! that network (the escrow's state, and the evidence as a light client) before acting, so
//! a relayer can only delay lock evidence, never forge it. The outbox keeps an item until
//! the hub has answered for it; the hub's journal makes a second delivery a `duplicate`.

use crate::daemon::{drive, Link, LinkSettings, Round};
use crate::outbox::{Outbox, OutboxError};
use isthmus_adapter_api::types::{Checkpoint, EventKind};
use isthmus_adapter_api::{Adapter, AdapterError};
use isthmus_core::Backoff;
use isthmus_core::NetworkId;
use isthmus_lock_contracts::TxId;
use isthmus_relay_protocol::Outcome;
use isthmus_transport::{Connection, Endpoint};
use rand::Rng;
use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The tree prefix of evidence outboxes (packet outboxes use `relayer`).
pub const OUTBOX_KIND: &str = "relayer.evidence";

pub use isthmus_relay_protocol::evidence::{
    lock_event, EvidenceMsg, EvidenceOutcome, RelayedEvidence,
};

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The adapter failed; retryable when the cause is.
    #[error("source network: {0}")]
    Adapter(#[from] AdapterError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("evidence source store failed: {0}")]
    Store(String),
}

impl EvidenceError {
    pub fn is_retryable(&self) -> bool {
        match self {
            EvidenceError::Adapter(e) => e.is_retryable(),
            EvidenceError::Outbox(_) | EvidenceError::Store(_) => true,
        }
    }
}

impl From<sled::Error> for EvidenceError {
    fn from(e: sled::Error) -> Self {
        EvidenceError::Store(e.to_string())
    }
}

/// The durable key of one relayable event: which network, which lock, which transaction,
/// which kind. An event already queued under its key is never queued again by this relayer.
fn event_key(network: NetworkId, kind: &EventKind) -> Option<Vec<u8>> {
    let (lock, tx) = lock_event(kind)?;
    let tag = match kind {
        EventKind::LockFinal { .. } => "final",
        EventKind::Released { .. } => "released",
        EventKind::Refunded { .. } => "refunded",
        _ => "claimed",
    };
    Some(format!("{}/{tag}/{}/{}", network.0, lock, tx.0).into_bytes())
}

/// What one poll did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Polled {
    /// Items queued in the outbox.
    pub queued: usize,
    /// More events wait beyond this page.
    pub more: bool,
    /// An event's evidence is not ready yet (its transaction is not final): the page
    /// stopped before it and is read again from there.
    pub waiting: bool,
}

/// Watches a network through an adapter and queues the evidence of each lock event the
/// hub acts on.
///
/// Discipline: the items of a page are queued (and flushed) first, then their keys and the
/// checkpoint are stored (and flushed). A relayer killed in between queues them again on
/// restart, which the hub answers as `duplicate`; nothing is skipped.
pub struct EvidenceSource {
    adapter: Arc<dyn Adapter>,
    outbox: Outbox<RelayedEvidence>,
    db: sled::Db,
    checkpoints: sled::Tree,
    queued: sled::Tree,
    key: Vec<u8>,
    /// This process's session: a stored checkpoint of another session is ignored unless
    /// `durable_checkpoints` is set.
    session: u64,
    /// Whether the adapter's checkpoints stay valid across a restart of this process. The
    /// EVM adapter's do not: it rebuilds its event log from the deployment block, so a
    /// restarted relayer re-reads that log from the start and skips what it had queued.
    pub durable_checkpoints: bool,
    /// Events read per page.
    pub page: u32,
    /// Wait between polls when nothing is new (or evidence is not ready).
    pub idle_poll: Duration,
    pub stats: Arc<SourceStats>,
}

/// Counters of an evidence source.
#[derive(Debug, Default)]
pub struct SourceStats {
    pub queued: AtomicU64,
    /// Events already queued by an earlier run, skipped.
    pub skipped: AtomicU64,
    /// Events whose evidence the adapter refused to produce for good.
    pub unprovable: AtomicU64,
}

impl EvidenceSource {
    pub fn open(
        adapter: Arc<dyn Adapter>,
        outbox: Outbox<RelayedEvidence>,
        db: sled::Db,
        link: &str,
    ) -> Result<Self, EvidenceError> {
        let network = adapter.descriptor().network;
        Ok(EvidenceSource {
            checkpoints: db.open_tree("relayer.evidence.checkpoints")?,
            queued: db.open_tree(format!("relayer.evidence.queued.{link}"))?,
            key: format!("{link}/{network}").into_bytes(),
            session: rand::thread_rng().gen(),
            durable_checkpoints: false,
            adapter,
            outbox,
            db,
            page: 100,
            idle_poll: Duration::from_millis(500),
            stats: Arc::default(),
        })
    }

    /// The last event durably handled (in this session, unless checkpoints are durable).
    pub fn checkpoint(&self) -> Result<Checkpoint, EvidenceError> {
        let Some(b) = self.checkpoints.get(&self.key)? else {
            return Ok(Checkpoint::START);
        };
        let b: [u8; 16] = b
            .as_ref()
            .try_into()
            .map_err(|_| EvidenceError::Store("checkpoint is not 16 bytes".into()))?;
        let (session, cp) = b.split_at(8);
        let session = u64::from_be_bytes(session.try_into().unwrap_or_default());
        let cp = u64::from_be_bytes(cp.try_into().unwrap_or_default());
        Ok(if self.durable_checkpoints || session == self.session {
            Checkpoint(cp)
        } else {
            Checkpoint::START
        })
    }

    /// Read one page of events and queue the evidence of each relayable one not queued
    /// before; then store the checkpoint (up to the first event whose evidence is not
    /// ready).
    pub async fn poll_once(&self) -> Result<Polled, EvidenceError> {
        let after = self.checkpoint()?;
        let page = self.adapter.events_since(after, self.page).await?;
        let network = self.adapter.descriptor().network;
        // A transaction a later event of the page reverts is never waited for.
        let reverted: HashSet<&TxId> = page
            .events
            .iter()
            .flat_map(|e| match &e.kind {
                EventKind::Reverted { txs, .. } => txs.iter().collect(),
                _ => Vec::new(),
            })
            .collect();
        let mut items = Vec::new();
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut reached = after;
        let mut waiting = false;
        for ev in &page.events {
            if let (Some(key), Some((lock, tx))) =
                (event_key(network, &ev.kind), lock_event(&ev.kind))
            {
                let fresh = !keys.contains(&key) && !self.queued.contains_key(&key)?;
                if !fresh {
                    self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                } else if reverted.contains(tx) {
                    tracing::info!(%network, %lock, tx = %tx.0, "lock event reverted before it was final; not relayed");
                } else {
                    match self.adapter.evidence(tx).await {
                        Ok(evidence) => {
                            items.push(RelayedEvidence {
                                network,
                                event: ev.kind.clone(),
                                evidence,
                            });
                            keys.push(key);
                        }
                        // Not final yet: stop here and read the page again later.
                        Err(AdapterError::NotFound { .. }) => {
                            waiting = true;
                            break;
                        }
                        Err(e) if e.is_retryable() => return Err(e.into()),
                        Err(e) => {
                            self.stats.unprovable.fetch_add(1, Ordering::Relaxed);
                            metrics::counter!("relayer_evidence_unprovable_total").increment(1);
                            tracing::warn!(%network, %lock, tx = %tx.0, %e, "no evidence for a lock event; not relayed");
                        }
                    }
                }
            }
            reached = ev.checkpoint;
        }
        if !items.is_empty() {
            self.outbox.push_all(&items)?;
            self.stats
                .queued
                .fetch_add(items.len() as u64, Ordering::Relaxed);
            metrics::counter!("relayer_evidence_queued_total").increment(items.len() as u64);
        }
        let mut batch = sled::Batch::default();
        for k in &keys {
            batch.insert(k.as_slice(), &[]);
        }
        self.queued.apply_batch(batch)?;
        if reached > after {
            let mut v = [0u8; 16];
            v[..8].copy_from_slice(&self.session.to_be_bytes());
            v[8..].copy_from_slice(&reached.0.to_be_bytes());
            self.checkpoints.insert(&self.key, &v)?;
        }
        self.db.flush()?;
        Ok(Polled {
            queued: items.len(),
            more: page.more && !waiting,
            waiting,
        })
    }

    /// Poll until `shutdown` resolves, backing off on errors.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut wait = Duration::ZERO;
        let mut attempt = 0u32;
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = match self.poll_once().await {
                Ok(p) => {
                    attempt = 0;
                    if p.more {
                        Duration::ZERO
                    } else {
                        self.idle_poll
                    }
                }
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(%e, retryable = e.is_retryable(), attempt, "evidence source poll failed");
                    Backoff::new(self.idle_poll, Duration::from_secs(10)).delay(attempt)
                }
            };
        }
    }
}

/// Counters of an evidence link.
#[derive(Debug, Default)]
pub struct CarrierStats {
    pub applied: AtomicU64,
    pub duplicates: AtomicU64,
    pub ignored: AtomicU64,
    pub rejected: AtomicU64,
    /// Items the hub asked to resend, plus rounds that failed and were retried.
    pub retries: AtomicU64,
}

/// Carries an evidence outbox to the hub's evidence ingress over an authenticated
/// transport, one batch at a time, at least once.
pub struct EvidenceCarrier {
    pub link: LinkSettings,
    pub endpoint: Endpoint,
    pub outbox: Outbox<RelayedEvidence>,
    pub stats: Arc<CarrierStats>,
}

impl EvidenceCarrier {
    /// The first items of `page` whose encoding fits one message of `max` bytes (at least
    /// one; an item larger than `max` fails in the transport with a clear error).
    fn fitting(page: Vec<(u64, RelayedEvidence)>, max: usize) -> Vec<(u64, RelayedEvidence)> {
        let mut out = Vec::new();
        let mut size = 64usize;
        for item in page {
            let s = rmp_serde::to_vec_named(&item.1).map_or(max, |b| b.len() + 16);
            if !out.is_empty() && size + s > max {
                break;
            }
            size += s;
            out.push(item);
        }
        out
    }

    async fn round(&self, conn: &mut Connection, batch_no: &mut u64) -> Result<Round, String> {
        let page = self
            .outbox
            .page(self.link.page)
            .map_err(|e| e.to_string())?;
        metrics::gauge!("relayer_evidence_backlog", "link" => self.link.name.clone())
            .set(self.outbox.len() as f64);
        if page.is_empty() {
            return Ok(Round::Idle);
        }
        let chunk = Self::fitting(page, conn.max_message().min(self.link.chunk_bytes));
        *batch_no += 1;
        let batch = *batch_no;
        let ids: Vec<u64> = chunk.iter().map(|(id, _)| *id).collect();
        let items: Vec<RelayedEvidence> = chunk.into_iter().map(|(_, e)| e).collect();
        conn.send_msg(&EvidenceMsg::Deliver { batch, items })
            .await
            .map_err(|e| e.to_string())?;
        let outcomes = loop {
            let msg =
                tokio::time::timeout(self.link.receipt_timeout, conn.recv_msg::<EvidenceMsg>())
                    .await
                    .map_err(|_| {
                        format!(
                            "no answers for evidence batch {batch} within {:?}",
                            self.link.receipt_timeout
                        )
                    })?;
            match msg {
                Some(Ok(EvidenceMsg::Answers { batch: b, outcomes })) if b == batch => {
                    break outcomes
                }
                // Answers of an earlier, abandoned batch, or anything else: not ours.
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the hub closed the evidence link".into()),
            }
        };
        if outcomes.len() != ids.len() {
            return Err(format!(
                "hub answered {} outcomes for {} evidence items",
                outcomes.len(),
                ids.len()
            ));
        }
        let mut done = Vec::with_capacity(ids.len());
        let mut deferred = false;
        for (id, o) in ids.into_iter().zip(outcomes) {
            let (counter, settled) = match o {
                EvidenceOutcome::Applied => (&self.stats.applied, Some(Outcome::Delivered)),
                EvidenceOutcome::Duplicate => (&self.stats.duplicates, Some(Outcome::Duplicate)),
                EvidenceOutcome::Ignored => (&self.stats.ignored, Some(Outcome::Delivered)),
                EvidenceOutcome::Retry { code, reason } => {
                    tracing::info!(link = %self.link.name, %code, %reason, "hub asked to resend evidence later");
                    deferred = true;
                    (&self.stats.retries, None)
                }
                EvidenceOutcome::Rejected { code, reason } => {
                    tracing::warn!(link = %self.link.name, %code, %reason, "hub refused evidence");
                    (
                        &self.stats.rejected,
                        Some(Outcome::Rejected { code, reason }),
                    )
                }
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if let Some(s) = settled {
                done.push((id, s));
            }
        }
        metrics::counter!("relayer_evidence_relayed_total", "link" => self.link.name.clone())
            .increment(done.len() as u64);
        self.outbox.complete(&done).map_err(|e| e.to_string())?;
        Ok(if deferred {
            Round::Deferred
        } else {
            Round::Sent
        })
    }

    /// Carry until `shutdown` resolves. Resumes from the durable outbox.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        drive(
            EvidenceLink {
                carrier: self,
                batch_no: 0,
            },
            shutdown,
        )
        .await;
    }
}

/// An [`EvidenceCarrier`] with its batch numbering.
struct EvidenceLink {
    carrier: EvidenceCarrier,
    batch_no: u64,
}

impl Link for EvidenceLink {
    fn settings(&self) -> &LinkSettings {
        &self.carrier.link
    }
    fn endpoint(&self) -> &Endpoint {
        &self.carrier.endpoint
    }
    fn carries(&self) -> &'static str {
        "lock evidence"
    }
    fn round<'a>(
        &'a mut self,
        conn: &'a mut Connection,
    ) -> impl Future<Output = Result<Round, String>> + Send + 'a {
        self.carrier.round(conn, &mut self.batch_no)
    }
    fn reset(&mut self) {}
    fn count_retry(&self) {
        self.carrier.stats.retries.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_adapter_api::{Finality, LockRequest, LockTerms};
    use isthmus_adapter_testkit::mock::{MockAdapter, MockConfig};
    use isthmus_core::{Hash32, Keypair};
    use isthmus_lock_contracts::{Address, Amount, AssetId, LegSpec, LockId};
    use isthmus_transport::{TransportConfig, TransportKind};

    const NET: u64 = 5;

    fn mock() -> Arc<MockAdapter> {
        let a = MockAdapter::new(MockConfig::new(
            NET,
            Finality::Probabilistic { confirmations: 2 },
            vec![Keypair::dev("hub").id()],
        ));
        a.fund(&Address("alice".into()), &AssetId("native".into()), 1_000);
        Arc::new(a)
    }

    async fn lock(a: &MockAdapter, n: u8) -> LockId {
        let lock_id = LockId(Hash32([n; 32]));
        a.lock(&LockRequest {
            lock_id,
            leg: LegSpec {
                network: NetworkId(NET),
                asset: AssetId("native".into()),
                amount: Amount(10),
                from: Address("alice".into()),
                to: Address("bob".into()),
                timeout: 1_000_000,
                locker: Default::default(),
            },
            terms: LockTerms::TwoPhase,
        })
        .await
        .unwrap();
        lock_id
    }

    fn open(a: &Arc<MockAdapter>, db: &sled::Db) -> EvidenceSource {
        let outbox = Outbox::open_kind(db.clone(), OUTBOX_KIND, "l").unwrap();
        EvidenceSource::open(a.clone(), outbox, db.clone(), "l").unwrap()
    }

    #[tokio::test]
    async fn a_final_lock_is_queued_once_with_evidence_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let a = mock();
        let id = lock(&a, 1).await;
        let src = open(&a, &db);
        // Included, not final: nothing to relay yet.
        assert_eq!(src.poll_once().await.unwrap().queued, 0);
        a.mine(3);
        let p = src.poll_once().await.unwrap();
        assert_eq!(p.queued, 1, "{p:?}");
        let outbox: Outbox<RelayedEvidence> =
            Outbox::open_kind(db.clone(), OUTBOX_KIND, "l").unwrap();
        let page = outbox.page(10).unwrap();
        assert_eq!(page.len(), 1);
        let item = &page[0].1;
        assert_eq!(item.network, NetworkId(NET));
        assert!(matches!(&item.event, EventKind::LockFinal { lock } if lock.lock_id == id));
        // The relayed evidence is the adapter's own, and it verifies.
        let (_, tx) = item.lock().unwrap();
        a.verify_evidence(tx, &item.evidence).await.unwrap();

        // A restarted relayer (new session) reads the event log again from the start and
        // skips what it had queued.
        drop(src);
        let src = open(&a, &db);
        assert_eq!(src.checkpoint().unwrap(), Checkpoint::START);
        assert_eq!(src.poll_once().await.unwrap().queued, 0);
        assert_eq!(src.stats.skipped.load(Ordering::Relaxed), 1);
        assert_eq!(outbox.len(), 1);
        // Within a session the checkpoint moves on; a second lock is queued on its own.
        lock(&a, 2).await;
        a.mine(3);
        assert_eq!(src.poll_once().await.unwrap().queued, 1);
        assert_eq!(outbox.len(), 2);
    }

    /// A hub that answers the first delivery with `retry` and every later one with
    /// `applied`, counting deliveries.
    async fn fake_hub(ep: Endpoint, seen: Arc<AtomicU64>) {
        let mut conn = ep.accept().await.unwrap();
        while let Some(Ok(EvidenceMsg::Deliver { batch, items })) =
            conn.recv_msg::<EvidenceMsg>().await
        {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let o = if n == 0 {
                EvidenceOutcome::Retry {
                    code: "network_unavailable".into(),
                    reason: "test".into(),
                }
            } else {
                EvidenceOutcome::Applied
            };
            let outcomes = items.iter().map(|_| o.clone()).collect();
            conn.send_msg(&EvidenceMsg::Answers { batch, outcomes })
                .await
                .unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn items_leave_the_outbox_only_when_the_hub_answers_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let a = mock();
        lock(&a, 1).await;
        a.mine(3);
        let src = open(&a, &db);
        assert_eq!(src.poll_once().await.unwrap().queued, 1);
        let cfg = TransportConfig {
            kind: TransportKind::Tcp,
            network: NetworkId(100),
            ..TransportConfig::default()
        };
        let hub_key = Keypair::dev("fake-hub");
        let hub_ep = Endpoint::bind(cfg.clone(), hub_key.clone()).await.unwrap();
        let seen = Arc::new(AtomicU64::new(0));
        let link = LinkSettings {
            name: "l".into(),
            hub_addr: hub_ep.local_addr(),
            hub_id: hub_key.id(),
            page: 10,
            receipt_timeout: Duration::from_secs(10),
            retry_base: Duration::from_millis(20),
            retry_max: Duration::from_millis(100),
            idle_poll: Duration::from_millis(20),
            chunk_bytes: 256 * 1024,
        };
        let hub = tokio::spawn(fake_hub(hub_ep, seen.clone()));
        let outbox: Outbox<RelayedEvidence> =
            Outbox::open_kind(db.clone(), OUTBOX_KIND, "l").unwrap();
        let carrier = EvidenceCarrier {
            link,
            endpoint: Endpoint::bind(cfg, Keypair::dev("relayer")).await.unwrap(),
            outbox: outbox.clone(),
            stats: Arc::default(),
        };
        let stats = carrier.stats.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(carrier.run(async {
            let _ = stopped.await;
        }));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while stats.applied.load(Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline, "never applied");
            // Until the hub has answered `applied`, the item stays queued.
            if seen.load(Ordering::SeqCst) < 2 {
                assert_eq!(outbox.len(), 1);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            stats.retries.load(Ordering::SeqCst),
            1,
            "one `retry` answer"
        );
        assert_eq!(seen.load(Ordering::SeqCst), 2, "sent again after `retry`");
        assert!(outbox.is_empty());
        assert_eq!(outbox.failed_len(), 0);
        let _ = stop.send(());
        run.await.unwrap();
        hub.abort();
    }
}
