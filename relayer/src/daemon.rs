//! One relayer link: outbox → hub, in pages, at least once, with backoff and jitter.

use crate::outbox::Outbox;
use isthmus_core::Backoff;
use isthmus_core::NodeId;
use isthmus_relay_protocol::{LinkMsg, Outcome};
use isthmus_transport::{Connection, Endpoint};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct LinkSettings {
    pub name: String,
    pub hub_addr: SocketAddr,
    pub hub_id: NodeId,
    /// Packets read from the outbox per round.
    pub page: usize,
    /// How long to wait for the hub's receipts before resending.
    pub receipt_timeout: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Wait between outbox polls when it is empty.
    pub idle_poll: Duration,
    /// Largest encoded batch sent as one message; a page is cut into such batches, which
    /// travel pipelined.
    pub chunk_bytes: usize,
}

/// Counters of one link (also exported as Prometheus metrics).
#[derive(Debug, Default)]
pub struct RelayerStats {
    pub delivered: AtomicU64,
    pub duplicates: AtomicU64,
    pub failed: AtomicU64,
    pub retries: AtomicU64,
    pub batches: AtomicU64,
}

pub struct Relayer {
    pub link: LinkSettings,
    pub endpoint: Endpoint,
    pub outbox: Outbox,
    pub stats: Arc<RelayerStats>,
}

/// What one round of a link came to.
pub(crate) enum Round {
    /// Nothing to send: poll again after `idle_poll`.
    Idle,
    /// Sent and answered: go on at once.
    Sent,
    /// The hub asked for some items again later: back off.
    Deferred,
}

/// A link carried over one connection to the hub at a time, round after round: the
/// relayer's packet link and the evidence link share [`drive`].
pub(crate) trait Link: Send {
    fn settings(&self) -> &LinkSettings;
    fn endpoint(&self) -> &Endpoint;
    /// What the link carries, for logs ("packets", "lock evidence").
    fn carries(&self) -> &'static str;
    /// One round on `conn`; an error drops the connection.
    fn round<'a>(
        &'a mut self,
        conn: &'a mut Connection,
    ) -> impl Future<Output = Result<Round, String>> + Send + 'a;
    /// The connection was dropped: whatever was in flight on it is resent on the next.
    fn reset(&mut self);
    /// Count a failed round in the link's own statistics.
    fn count_retry(&self);
}

/// Run `link` until `shutdown` resolves: connect (with backoff and jitter), run rounds,
/// reconnect after a failed one.
pub(crate) async fn drive(mut link: impl Link, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut conn: Option<Connection> = None;
    let mut attempt = 0u32;
    loop {
        let s = link.settings().clone();
        let wait = match conn.as_mut() {
            None => match link.endpoint().connect(s.hub_addr, Some(s.hub_id)).await {
                Ok(c) => {
                    tracing::info!(link = %s.name, hub = %s.hub_id, carries = link.carries(), "connected to the hub");
                    conn = Some(c);
                    attempt = 0;
                    Duration::ZERO
                }
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(link = %s.name, %e, attempt, carries = link.carries(), "cannot reach the hub");
                    Backoff::new(s.retry_base, s.retry_max).delay(attempt)
                }
            },
            Some(c) => match link.round(c).await {
                Ok(Round::Sent) => {
                    attempt = 0;
                    Duration::ZERO
                }
                Ok(Round::Idle) => s.idle_poll,
                Ok(Round::Deferred) => {
                    attempt += 1;
                    Backoff::new(s.retry_base, s.retry_max).delay(attempt)
                }
                Err(e) => {
                    attempt += 1;
                    link.count_retry();
                    metrics::counter!("relayer_retries_total", "link" => s.name.clone())
                        .increment(1);
                    tracing::warn!(link = %s.name, %e, attempt, carries = link.carries(), "round failed; reconnecting");
                    if let Some(c) = conn.take() {
                        c.close("relayer retrying").await;
                    }
                    link.reset();
                    Backoff::new(s.retry_base, s.retry_max).delay(attempt)
                }
            },
        };
        tokio::select! {
            biased;
            _ = &mut shutdown => {
                if let Some(c) = conn.take() {
                    c.close("relayer shutting down").await;
                }
                return;
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The batches one connection has sent and the hub has not yet answered, oldest first.
#[derive(Default)]
struct Flight {
    batches: std::collections::VecDeque<(u64, Vec<u64>)>,
    packets: usize,
    /// Highest outbox id sent on this connection and not yet drained.
    cursor: Option<u64>,
    /// Receipts that arrived ahead of their turn.
    answers: std::collections::HashMap<u64, Vec<isthmus_relay_protocol::ReceiptMsg>>,
    gauges_at: Option<std::time::Instant>,
}

impl Flight {
    /// The backlog gauges cost a scan of the outbox: refresh them at most once a second.
    fn gauges_due(&mut self) -> bool {
        let now = std::time::Instant::now();
        let due = self
            .gauges_at
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
        if due {
            self.gauges_at = Some(now);
        }
        due
    }
}

/// The wire body (version byte + named msgpack) of `LinkMsg::Deliver { batch, packets }`,
/// built from each packet's own named encoding: the same bytes `codec::encode_body` writes
/// for that message, without encoding the packets again.
pub(crate) fn deliver_body(batch: u64, packets: &[&[u8]]) -> Vec<u8> {
    let len: usize = packets.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(DELIVER_HEADER_MAX + len);
    out.push(isthmus_core::codec::WIRE_VERSION);
    // Writing into a Vec cannot fail.
    let _ = rmp::encode::write_map_len(&mut out, 3);
    let _ = rmp::encode::write_str(&mut out, "msg");
    let _ = rmp::encode::write_str(&mut out, "deliver");
    let _ = rmp::encode::write_str(&mut out, "batch");
    let _ = rmp::encode::write_uint(&mut out, batch);
    let _ = rmp::encode::write_str(&mut out, "packets");
    let _ = rmp::encode::write_array_len(&mut out, packets.len() as u32);
    for p in packets {
        out.extend_from_slice(p);
    }
    out
}

/// The most bytes [`deliver_body`] adds around the packets.
const DELIVER_HEADER_MAX: usize = 64;

/// Cut `page` into runs whose [`deliver_body`] fits `max` bytes (a packet larger than that
/// alone goes in a run of its own, and the transport refuses it with a clear error).
fn chunks(page: Vec<(u64, Vec<u8>)>, max: usize) -> Vec<Vec<(u64, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut cur: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut size = DELIVER_HEADER_MAX;
    for item in page {
        let s = item.1.len();
        if !cur.is_empty() && size + s > max {
            out.push(std::mem::take(&mut cur));
            size = DELIVER_HEADER_MAX;
        }
        size += s;
        cur.push(item);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl Relayer {
    /// One step of a connection: top the window of unanswered packets up to `page` from the
    /// outbox (sent as pipelined batches), then take the hub's receipts for the oldest batch
    /// in flight. The hub therefore always has the next batches queued while it records
    /// one, across page boundaries.
    async fn round(
        &self,
        conn: &mut Connection,
        batch_no: &mut u64,
        flight: &mut Flight,
    ) -> Result<Round, String> {
        if flight.packets < self.link.page {
            let page = self
                .outbox
                .page_encoded_after(flight.cursor, self.link.page - flight.packets)
                .map_err(|e| e.to_string())?;
            if flight.gauges_due() {
                metrics::gauge!("relayer_backlog", "link" => self.link.name.clone())
                    .set(self.outbox.len() as f64);
                metrics::gauge!("relayer_oldest_pending_seconds", "link" => self.link.name.clone())
                    .set(self.outbox.oldest_age() as f64);
            }
            if let Some((id, _)) = page.last() {
                flight.cursor = Some(*id);
            }
            let max = conn.max_message().min(self.link.chunk_bytes);
            for chunk in chunks(page, max) {
                *batch_no += 1;
                let batch = *batch_no;
                let ids: Vec<u64> = chunk.iter().map(|(id, _)| *id).collect();
                let packets: Vec<&[u8]> = chunk.iter().map(|(_, p)| p.as_slice()).collect();
                conn.send(deliver_body(batch, &packets).into())
                    .await
                    .map_err(|e| e.to_string())?;
                flight.packets += ids.len();
                flight.batches.push_back((batch, ids));
            }
        }
        let Some((batch, ids)) = flight.batches.pop_front() else {
            flight.cursor = None;
            return Ok(Round::Idle);
        };
        flight.packets -= ids.len();
        let receipts = loop {
            if let Some(r) = flight.answers.remove(&batch) {
                break r;
            }
            let msg = tokio::time::timeout(self.link.receipt_timeout, conn.recv_msg::<LinkMsg>())
                .await
                .map_err(|_| {
                    format!(
                        "no receipts for batch {batch} within {:?}",
                        self.link.receipt_timeout
                    )
                })?;
            match msg {
                Some(Ok(LinkMsg::Receipts { batch: b, receipts })) => {
                    flight.answers.insert(b, receipts);
                }
                // Anything else is ignored; receipts of an abandoned connection's batches
                // never arrive here (the window is dropped with the connection).
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the hub closed the link".into()),
            }
        };
        if receipts.len() != ids.len() {
            return Err(format!(
                "hub answered {} receipts for {} packets",
                receipts.len(),
                ids.len()
            ));
        }
        let mut done = Vec::with_capacity(ids.len());
        for (id, r) in ids.into_iter().zip(receipts) {
            let counter = match &r.outcome {
                Outcome::Delivered => &self.stats.delivered,
                Outcome::Duplicate => &self.stats.duplicates,
                Outcome::Rejected { code, reason } => {
                    tracing::warn!(link = %self.link.name, seq = r.sequence, %code, %reason, "hub refused a packet");
                    &self.stats.failed
                }
            };
            counter.fetch_add(1, Ordering::Relaxed);
            done.push((id, r.outcome));
        }
        let n = done.len() as u64;
        self.outbox.settle(&done).map_err(|e| e.to_string())?;
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("relayer_relayed_total", "link" => self.link.name.clone()).increment(n);
        if flight.batches.is_empty() {
            // The window drained: the next page starts again from the oldest entry, so an
            // entry that reached the outbox below the cursor is not passed over.
            flight.cursor = None;
        }
        Ok(Round::Sent)
    }

    /// Relay until `shutdown` resolves. Resumes from the durable outbox.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let link = PacketLink {
            relayer: self,
            batch_no: 0,
            flight: Flight::default(),
        };
        drive(link, shutdown).await;
    }
}

/// A [`Relayer`] with its connection's state.
struct PacketLink {
    relayer: Relayer,
    batch_no: u64,
    flight: Flight,
}

impl Link for PacketLink {
    fn settings(&self) -> &LinkSettings {
        &self.relayer.link
    }
    fn endpoint(&self) -> &Endpoint {
        &self.relayer.endpoint
    }
    fn carries(&self) -> &'static str {
        "packets"
    }
    fn round<'a>(
        &'a mut self,
        conn: &'a mut Connection,
    ) -> impl Future<Output = Result<Round, String>> + Send + 'a {
        self.relayer
            .round(conn, &mut self.batch_no, &mut self.flight)
    }
    fn reset(&mut self) {
        self.flight = Flight::default();
    }
    fn count_retry(&self) {
        self.relayer.stats.retries.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_core::{Keypair, NetworkId};
    use isthmus_lock_contracts::packet::{ChannelId, Packet};
    use isthmus_lock_contracts::Address;
    use isthmus_relay_protocol::RelayedPacket;

    #[test]
    fn deliver_bodies_equal_the_codec_encoding_and_chunks_fit() {
        let keys: Vec<Keypair> = (0..5).map(|i| Keypair::dev(&format!("v{i}"))).collect();
        let mut page = Vec::new();
        let mut packets = Vec::new();
        for (i, (payload, name, signers)) in [
            (0usize, 0usize, 0usize),
            (1, 1, 1),
            (256, 5, 1),
            (70_000, 300, 5),
            (3, 4_000, 2),
        ]
        .into_iter()
        .enumerate()
        {
            let p = RelayedPacket::attest(
                Packet {
                    channel: ChannelId {
                        source: NetworkId(u64::MAX),
                        destination: NetworkId(u64::MAX - 1),
                    },
                    sequence: u64::MAX - i as u64,
                    sender: Address("s".repeat(name)),
                    receiver: Address("r".repeat(name)),
                    payload: vec![0xff; payload],
                    timeout: u64::MAX,
                },
                &keys[..signers],
            );
            page.push((i as u64, rmp_serde::to_vec_named(&p).unwrap()));
            packets.push(p);
        }
        let limits = isthmus_core::codec::WireLimits::default();
        for batch in [0, 1, 200, u64::MAX] {
            let raw: Vec<&[u8]> = page.iter().map(|(_, b)| b.as_slice()).collect();
            let msg = LinkMsg::Deliver {
                batch,
                packets: packets.clone(),
            };
            let body = deliver_body(batch, &raw);
            assert_eq!(
                body,
                isthmus_core::codec::encode_body(&msg, &limits)
                    .unwrap()
                    .to_vec()
            );
            let back: LinkMsg = isthmus_core::codec::decode_body(&body, &limits).unwrap();
            assert_eq!(back, msg);
        }
        let max = 80_000;
        let mut seen = 0;
        for chunk in chunks(page, max) {
            let raw: Vec<&[u8]> = chunk.iter().map(|(_, b)| b.as_slice()).collect();
            let len = deliver_body(u64::MAX, &raw).len();
            assert!(len <= max, "chunk of {len} bytes");
            seen += chunk.len();
        }
        assert_eq!(seen, 5);
    }
}
