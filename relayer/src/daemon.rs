//! One relayer link: outbox → hub, in pages, at least once, with backoff and jitter.

use crate::outbox::Outbox;
use crate::proto::{LinkMsg, Outcome, RelayedPacket};
use isthmus_core::NodeId;
use isthmus_transport::{Connection, Endpoint};
use rand::Rng;
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

fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16));
    exp.min(max)
        .mul_f64(rand::thread_rng().gen_range(0.5..1.5))
        .min(max)
}

enum Round {
    Idle,
    Sent,
}

impl Relayer {
    async fn connect(&self) -> Option<Connection> {
        match self
            .endpoint
            .connect(self.link.hub_addr, Some(self.link.hub_id))
            .await
        {
            Ok(c) => {
                tracing::info!(link = %self.link.name, hub = %self.link.hub_id, "connected to the hub");
                Some(c)
            }
            Err(e) => {
                tracing::warn!(link = %self.link.name, %e, "cannot reach the hub");
                None
            }
        }
    }

    /// Split `page` into chunks whose encoded size fits one transport message.
    fn chunks(page: Vec<(u64, RelayedPacket)>, max: usize) -> Vec<Vec<(u64, RelayedPacket)>> {
        let mut out = Vec::new();
        let mut cur: Vec<(u64, RelayedPacket)> = Vec::new();
        let mut size = 64usize;
        for item in page {
            let s = rmp_serde::to_vec_named(&item.1)
                .map(|v| v.len())
                .unwrap_or(max)
                + 8;
            if !cur.is_empty() && size + s > max {
                out.push(std::mem::take(&mut cur));
                size = 64;
            }
            size += s;
            cur.push(item);
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }

    async fn round(&self, conn: &mut Connection, batch_no: &mut u64) -> Result<Round, String> {
        let page = self
            .outbox
            .page(self.link.page)
            .map_err(|e| e.to_string())?;
        metrics::gauge!("relayer_backlog", "link" => self.link.name.clone())
            .set(self.outbox.len() as f64);
        metrics::gauge!("relayer_oldest_pending_seconds", "link" => self.link.name.clone())
            .set(self.outbox.oldest_age() as f64);
        if page.is_empty() {
            return Ok(Round::Idle);
        }
        // Pipelined: every chunk of the page is sent before the receipts are read, so the
        // hub verifies one batch while the next is on the wire and the last is flushed here.
        let mut in_flight: Vec<(u64, Vec<u64>)> = Vec::new();
        let max = conn.max_message().min(self.link.chunk_bytes);
        for chunk in Self::chunks(page, max) {
            *batch_no += 1;
            let batch = *batch_no;
            let ids: Vec<u64> = chunk.iter().map(|(id, _)| *id).collect();
            let packets: Vec<RelayedPacket> = chunk.into_iter().map(|(_, p)| p).collect();
            conn.send_msg(&LinkMsg::Deliver { batch, packets })
                .await
                .map_err(|e| e.to_string())?;
            in_flight.push((batch, ids));
        }
        let mut answers: std::collections::HashMap<u64, Vec<crate::proto::ReceiptMsg>> =
            std::collections::HashMap::new();
        for (batch, ids) in in_flight {
            let receipts = loop {
                if let Some(r) = answers.remove(&batch) {
                    break r;
                }
                let msg =
                    tokio::time::timeout(self.link.receipt_timeout, conn.recv_msg::<LinkMsg>())
                        .await
                        .map_err(|_| {
                            format!(
                                "no receipts for batch {batch} within {:?}",
                                self.link.receipt_timeout
                            )
                        })?;
                match msg {
                    Some(Ok(LinkMsg::Receipts { batch: b, receipts })) => {
                        answers.insert(b, receipts);
                    }
                    // Anything else is ignored; receipts of an earlier, abandoned round are
                    // dropped with `answers` (their packets were resent).
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
            self.outbox.complete(&done).map_err(|e| e.to_string())?;
            self.stats.batches.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("relayer_relayed_total", "link" => self.link.name.clone())
                .increment(n);
        }
        Ok(Round::Sent)
    }

    /// Relay until `shutdown` resolves. Resumes from the durable outbox.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut conn: Option<Connection> = None;
        let mut attempt = 0u32;
        let mut batch_no = 0u64;
        loop {
            let wait = match conn.as_mut() {
                None => match self.connect().await {
                    Some(c) => {
                        conn = Some(c);
                        attempt = 0;
                        Duration::ZERO
                    }
                    None => {
                        attempt += 1;
                        backoff(self.link.retry_base, self.link.retry_max, attempt)
                    }
                },
                Some(c) => match self.round(c, &mut batch_no).await {
                    Ok(Round::Sent) => {
                        attempt = 0;
                        Duration::ZERO
                    }
                    Ok(Round::Idle) => self.link.idle_poll,
                    Err(e) => {
                        attempt += 1;
                        self.stats.retries.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("relayer_retries_total", "link" => self.link.name.clone()).increment(1);
                        tracing::warn!(link = %self.link.name, %e, attempt, "relay round failed; reconnecting");
                        if let Some(c) = conn.take() {
                            c.close("relayer retrying").await;
                        }
                        backoff(self.link.retry_base, self.link.retry_max, attempt)
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
}
