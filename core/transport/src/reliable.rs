//! At-least-once delivery on the wire, exactly-once delivery to the application, over any
//! [`Connection`] (meant for UDP, whose connections are unreliable by contract).
//!
//! The sender numbers messages (`u64` ids from 0), keeps each in flight until it is
//! acknowledged, and retransmits with exponential backoff and jitter, up to
//! `max_retries` times; then the channel fails with [`TransportError::DeliveryFailed`].
//! New ids are issued only below `oldest unacknowledged + max_in_flight`, so `send` waits
//! when the window is full (backpressure) and the receiver's memory stays bounded.
//! The receiver delivers each id once (in arrival order, not id order), remembers what it
//! delivered (a cumulative floor plus the ids above it, at most the window), and
//! acknowledges every copy it receives, duplicates included, because the previous
//! acknowledgement may have been lost. A message is acknowledged only after it has been
//! handed to the application's queue.
//!
//! ```text
//! data := 1 | id (u64) | payload
//! ack  := 2 | floor (u64: every id below it was received) | count (u16) | count x id (u64)
//! ```

use crate::{Connection, TransportError};
use bytes::{BufMut, Bytes, BytesMut};
use isthmus_core::{NodeId, WireError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

const TAG_DATA: u8 = 1;
const TAG_ACK: u8 = 2;
/// Bytes a data message adds to its payload.
pub const DATA_OVERHEAD: usize = 9;
/// Selective ids carried by one acknowledgement at most.
pub const MAX_ACK_IDS: usize = 64;

/// One reliability message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelFrame {
    Data { id: u64, payload: Bytes },
    Ack { floor: u64, ids: Vec<u64> },
}

impl RelFrame {
    pub fn encode(&self) -> Bytes {
        match self {
            RelFrame::Data { id, payload } => {
                let mut b = BytesMut::with_capacity(DATA_OVERHEAD + payload.len());
                b.put_u8(TAG_DATA);
                b.put_u64(*id);
                b.extend_from_slice(payload);
                b.freeze()
            }
            RelFrame::Ack { floor, ids } => {
                let ids = &ids[..ids.len().min(MAX_ACK_IDS)];
                let mut b = BytesMut::with_capacity(11 + 8 * ids.len());
                b.put_u8(TAG_ACK);
                b.put_u64(*floor);
                b.put_u16(ids.len() as u16);
                for id in ids {
                    b.put_u64(*id);
                }
                b.freeze()
            }
        }
    }

    /// Parse one message. Never panics; the id count is checked against the bytes present
    /// before anything is allocated.
    pub fn decode(raw: Bytes) -> Result<RelFrame, WireError> {
        let u64_at = |at: usize| -> Result<u64, WireError> {
            raw.get(at..at + 8)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or(WireError::Truncated("reliability header"))
        };
        match raw.first() {
            None => Err(WireError::EmptyFrame),
            Some(&TAG_DATA) => Ok(RelFrame::Data {
                id: u64_at(1)?,
                payload: raw.slice(DATA_OVERHEAD.min(raw.len())..),
            }),
            Some(&TAG_ACK) => {
                let floor = u64_at(1)?;
                let count = raw
                    .get(9..11)
                    .map(|s| u16::from_be_bytes([s[0], s[1]]) as usize)
                    .ok_or(WireError::Truncated("ack count"))?;
                if count > MAX_ACK_IDS {
                    return Err(WireError::Malformed {
                        offset: 9,
                        what: "too many ids in an ack",
                    });
                }
                let need = 11 + 8 * count;
                if raw.len() < need {
                    return Err(WireError::Truncated("ack ids"));
                }
                if raw.len() > need {
                    return Err(WireError::TrailingBytes(raw.len() - need));
                }
                let ids = (0..count)
                    .map(|i| u64_at(11 + 8 * i))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(RelFrame::Ack { floor, ids })
            }
            Some(_) => Err(WireError::Malformed {
                offset: 0,
                what: "unknown reliability tag",
            }),
        }
    }
}

/// Settings of a [`ReliableChannel`].
#[derive(Debug, Clone)]
pub struct ReliableConfig {
    /// Messages sent and not yet acknowledged, at most.
    pub max_in_flight: usize,
    /// First retransmission delay; doubles on each retry.
    pub ack_timeout: Duration,
    /// Cap on the retransmission delay.
    pub max_backoff: Duration,
    /// Retransmissions before the channel fails.
    pub max_retries: u32,
    /// Delivered messages the application has not read yet.
    pub recv_queue: usize,
    /// Seed for the jitter (tests); `None` draws one from the OS.
    pub seed: Option<u64>,
}

impl Default for ReliableConfig {
    fn default() -> Self {
        ReliableConfig {
            max_in_flight: 64,
            ack_timeout: Duration::from_millis(200),
            max_backoff: Duration::from_secs(3),
            max_retries: 8,
            recv_queue: 1024,
            seed: None,
        }
    }
}

impl ReliableConfig {
    /// Take the timing from a transport config.
    pub fn from_transport(cfg: &crate::TransportConfig) -> Self {
        ReliableConfig {
            ack_timeout: cfg.ack_timeout,
            max_retries: cfg.max_retries,
            recv_queue: cfg.recv_queue,
            ..Default::default()
        }
    }
}

/// Counters of one channel.
#[derive(Debug, Default)]
pub struct ReliableStats {
    pub sent: AtomicU64,
    pub retransmitted: AtomicU64,
    pub acked: AtomicU64,
    pub delivered: AtomicU64,
    pub duplicates_dropped: AtomicU64,
}

enum Cmd {
    Send(Bytes, oneshot::Sender<u64>),
    Flush(oneshot::Sender<Result<(), TransportError>>),
}

/// A reliable channel over one connection. Owns the connection through its task.
pub struct ReliableChannel {
    cmd_tx: mpsc::Sender<Cmd>,
    deliver_rx: mpsc::Receiver<Bytes>,
    remote: NodeId,
    max_payload: usize,
    stats: Arc<ReliableStats>,
    task: tokio::task::JoinHandle<()>,
}

impl ReliableChannel {
    pub fn new(conn: Connection, cfg: ReliableConfig) -> Self {
        let (cmd_tx, cmd_rx) = mpsc::channel(cfg.max_in_flight.max(1));
        let (deliver_tx, deliver_rx) = mpsc::channel(cfg.recv_queue.max(1));
        let stats = Arc::new(ReliableStats::default());
        let remote = conn.remote_id();
        let max_payload = conn.max_message().saturating_sub(DATA_OVERHEAD);
        let rng = match cfg.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_entropy(),
        };
        let worker = Worker {
            conn,
            cfg,
            rng,
            stats: stats.clone(),
            deliver_tx,
            next_id: 0,
            in_flight: BTreeMap::new(),
            floor: 0,
            above_floor: BTreeSet::new(),
            flush_waiters: Vec::new(),
        };
        let task = tokio::spawn(worker.run(cmd_rx));
        ReliableChannel {
            cmd_tx,
            deliver_rx,
            remote,
            max_payload,
            stats,
            task,
        }
    }

    pub fn remote_id(&self) -> NodeId {
        self.remote
    }

    pub fn stats(&self) -> &ReliableStats {
        &self.stats
    }

    /// Largest payload one message may carry.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Queue a message for reliable delivery and return its id. Waits while the window is
    /// full. Fails once the channel has failed or closed.
    pub async fn send(&self, payload: Bytes) -> Result<u64, TransportError> {
        if payload.len() > self.max_payload {
            return Err(TransportError::MessageTooLarge {
                size: payload.len(),
                max: self.max_payload,
            });
        }
        let (tx, rx) = oneshot::channel();
        let closed = || TransportError::Closed("reliable channel stopped".into());
        self.cmd_tx
            .send(Cmd::Send(payload, tx))
            .await
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())
    }

    /// Wait until every message sent so far is acknowledged, or the first failure.
    pub async fn flush(&self) -> Result<(), TransportError> {
        let (tx, rx) = oneshot::channel();
        let closed = || TransportError::Closed("reliable channel stopped".into());
        self.cmd_tx
            .send(Cmd::Flush(tx))
            .await
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// The next message, each delivered exactly once. `None` once the channel stopped.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.deliver_rx.recv().await
    }
}

impl Drop for ReliableChannel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct InFlight {
    payload: Bytes,
    attempts: u32,
    due: Instant,
}

struct Worker {
    conn: Connection,
    cfg: ReliableConfig,
    rng: StdRng,
    stats: Arc<ReliableStats>,
    deliver_tx: mpsc::Sender<Bytes>,
    next_id: u64,
    in_flight: BTreeMap<u64, InFlight>,
    /// Receiver side: every id below `floor` was delivered.
    floor: u64,
    above_floor: BTreeSet<u64>,
    flush_waiters: Vec<oneshot::Sender<Result<(), TransportError>>>,
}

impl Worker {
    fn rto(&mut self, attempts: u32) -> Duration {
        let base = self
            .cfg
            .ack_timeout
            .saturating_mul(1u32 << attempts.min(16))
            .min(self.cfg.max_backoff);
        base.mul_f64(self.rng.gen_range(0.75..1.25))
    }

    /// The sender may issue a new id only inside the window.
    fn window_open(&self) -> bool {
        let oldest = self
            .in_flight
            .keys()
            .next()
            .copied()
            .unwrap_or(self.next_id);
        self.next_id < oldest + self.cfg.max_in_flight as u64
    }

    async fn run(mut self, mut cmd_rx: mpsc::Receiver<Cmd>) {
        let failure = loop {
            let due = self.in_flight.values().map(|f| f.due).min();
            let open = self.window_open();
            tokio::select! {
                cmd = cmd_rx.recv(), if open => match cmd {
                    None => break None,
                    Some(Cmd::Send(payload, reply)) => {
                        let id = self.next_id;
                        self.next_id += 1;
                        let _ = reply.send(id);
                        let frame = RelFrame::Data { id, payload: payload.clone() }.encode();
                        if let Err(e) = self.conn.send(frame).await {
                            break Some(e);
                        }
                        self.stats.sent.fetch_add(1, Ordering::Relaxed);
                        let due = Instant::now() + self.rto(0);
                        self.in_flight.insert(id, InFlight { payload, attempts: 0, due });
                    }
                    Some(Cmd::Flush(reply)) => {
                        if self.in_flight.is_empty() {
                            let _ = reply.send(Ok(()));
                        } else {
                            self.flush_waiters.push(reply);
                        }
                    }
                },
                msg = self.conn.recv() => match msg {
                    None => break Some(TransportError::Closed(self.conn.close_reason().unwrap_or_else(|| "connection closed".into()))),
                    Some(Err(e)) => break Some(e),
                    Some(Ok(first)) => {
                        if let Err(e) = self.on_burst(first).await {
                            break Some(e);
                        }
                    }
                },
                _ = sleep_until(due) => {
                    if let Err(e) = self.retransmit().await {
                        break Some(e);
                    }
                }
            }
        };
        if let Some(e) = failure {
            tracing::warn!(peer = %self.conn.remote_id(), "reliable channel stopped: {e}");
            let text = e.to_string();
            let retryable = e.is_retryable();
            let mut first = Some(e);
            for w in self.flush_waiters.drain(..) {
                let err = first.take().unwrap_or_else(|| {
                    if retryable {
                        TransportError::Closed(text.clone())
                    } else {
                        TransportError::Closed(format!("reliable channel failed: {text}"))
                    }
                });
                let _ = w.send(Err(err));
            }
        }
    }

    /// Handle one received message and whatever else is already queued, then send one
    /// acknowledgement for all the data among them.
    async fn on_burst(&mut self, first: Bytes) -> Result<(), TransportError> {
        let mut to_ack: Vec<u64> = Vec::new();
        let mut next = Some(first);
        let mut handled = 0;
        while let Some(raw) = next.take() {
            handled += 1;
            match RelFrame::decode(raw) {
                Err(e) => {
                    tracing::debug!(peer = %self.conn.remote_id(), "bad reliability frame: {e}")
                }
                Ok(RelFrame::Ack { floor, ids }) => self.on_ack(floor, &ids),
                Ok(RelFrame::Data { id, payload }) => {
                    if self.on_data(id, payload).await? {
                        to_ack.push(id);
                    }
                }
            }
            if handled < MAX_ACK_IDS && to_ack.len() < MAX_ACK_IDS {
                next = match self.conn.try_recv() {
                    Some(Ok(b)) => Some(b),
                    Some(Err(e)) => return Err(e),
                    None => None,
                };
            }
        }
        if !to_ack.is_empty() {
            to_ack.retain(|id| *id >= self.floor);
            let ack = RelFrame::Ack {
                floor: self.floor,
                ids: to_ack,
            };
            self.conn.send(ack.encode()).await?;
        }
        Ok(())
    }

    /// Returns whether the id should be acknowledged.
    async fn on_data(&mut self, id: u64, payload: Bytes) -> Result<bool, TransportError> {
        if id < self.floor || self.above_floor.contains(&id) {
            self.stats
                .duplicates_dropped
                .fetch_add(1, Ordering::Relaxed);
            return Ok(true);
        }
        // An honest sender stays inside its window; anything further is refused unacked
        // so a peer cannot make us remember unbounded ids.
        if id >= self.floor + 2 * self.cfg.max_in_flight as u64 {
            return Ok(false);
        }
        // durable (queued for the application) before acknowledged
        self.deliver_tx
            .send(payload)
            .await
            .map_err(|_| TransportError::Closed("application dropped the channel".into()))?;
        self.stats.delivered.fetch_add(1, Ordering::Relaxed);
        self.above_floor.insert(id);
        while self.above_floor.remove(&self.floor) {
            self.floor += 1;
        }
        Ok(true)
    }

    fn on_ack(&mut self, floor: u64, ids: &[u64]) {
        let before = self.in_flight.len();
        let below: Vec<u64> = self.in_flight.range(..floor).map(|(k, _)| *k).collect();
        for id in below.iter().chain(ids) {
            self.in_flight.remove(id);
        }
        let acked = before - self.in_flight.len();
        self.stats.acked.fetch_add(acked as u64, Ordering::Relaxed);
        if self.in_flight.is_empty() {
            for w in self.flush_waiters.drain(..) {
                let _ = w.send(Ok(()));
            }
        }
    }

    async fn retransmit(&mut self) -> Result<(), TransportError> {
        let now = Instant::now();
        let due: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.due <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let attempts = match self.in_flight.get(&id) {
                Some(f) => f.attempts + 1,
                None => continue,
            };
            if attempts > self.cfg.max_retries {
                return Err(TransportError::DeliveryFailed { id, attempts });
            }
            let rto = self.rto(attempts);
            let Some(f) = self.in_flight.get_mut(&id) else {
                continue;
            };
            f.attempts = attempts;
            f.due = now + rto;
            let frame = RelFrame::Data {
                id,
                payload: f.payload.clone(),
            }
            .encode();
            self.conn.send(frame).await?;
            self.stats.retransmitted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rel_frame() -> impl Strategy<Value = RelFrame> {
        prop_oneof![
            (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..500)).prop_map(|(id, p)| {
                RelFrame::Data {
                    id,
                    payload: p.into(),
                }
            }),
            (
                any::<u64>(),
                proptest::collection::vec(any::<u64>(), 0..=MAX_ACK_IDS)
            )
                .prop_map(|(floor, ids)| RelFrame::Ack { floor, ids }),
        ]
    }

    proptest! {
        #[test]
        fn frames_round_trip(f in rel_frame()) {
            prop_assert_eq!(RelFrame::decode(f.encode()).unwrap(), f);
        }

        #[test]
        fn decode_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = RelFrame::decode(raw.into());
        }
    }

    #[test]
    fn ack_count_beyond_bytes_is_refused_before_allocating() {
        let mut raw = vec![TAG_ACK];
        raw.extend_from_slice(&0u64.to_be_bytes());
        raw.extend_from_slice(&60u16.to_be_bytes());
        assert!(matches!(
            RelFrame::decode(raw.into()),
            Err(WireError::Truncated(_))
        ));
        let mut raw = vec![TAG_ACK];
        raw.extend_from_slice(&0u64.to_be_bytes());
        raw.extend_from_slice(&u16::MAX.to_be_bytes());
        assert!(matches!(
            RelFrame::decode(raw.into()),
            Err(WireError::Malformed { .. })
        ));
    }
}
