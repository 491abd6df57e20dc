//! The connection handle the application holds, and the driver task of stream transports.
//!
//! A connection is a task that owns the socket (or QUIC stream). The application talks to
//! it through two bounded queues: `send` waits when the outgoing queue is full
//! (backpressure), and the task stops reading from the network when the incoming queue is
//! full (TCP/QUIC: the peer's sends then wait in turn; UDP: datagrams are dropped and
//! counted). Dropping the [`Connection`] closes it.

use crate::frame::Frame;
use crate::noise::{NoiseReader, NoiseWriter};
use crate::quic::{QuicReader, QuicWriter};
use crate::stats::TransportStats;
use crate::{TransportConfig, TransportError, TransportKind};
use bytes::Bytes;
use isthmus_core::{codec, NodeId, WireLimits};
use serde::{de::DeserializeOwned, Serialize};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a closing connection waits for its close frame to go out.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Frames written in one batch (one syscall for TCP) at most.
const BATCH_FRAMES: usize = 64;
const BATCH_BYTES: usize = 256 * 1024;

pub(crate) enum Outgoing {
    Data(Bytes),
    Close(String),
}

/// Shared between the handle and the driver task.
#[derive(Debug)]
pub(crate) struct ConnState {
    reason: OnceLock<String>,
    /// Cancelled to make the driver stop (drop, endpoint shutdown).
    pub cancel: CancellationToken,
    /// Cancelled by the driver when it has finished.
    pub done: CancellationToken,
}

impl ConnState {
    pub(crate) fn set_reason(&self, reason: String) {
        let _ = self.reason.set(reason);
    }

    pub(crate) fn reason_is_set(&self) -> bool {
        self.reason.get().is_some()
    }

    fn closed_error(&self) -> TransportError {
        TransportError::Closed(
            self.reason
                .get()
                .cloned()
                .unwrap_or_else(|| "connection closed".to_owned()),
        )
    }
}

/// The driver's side of a connection's queues.
pub(crate) struct ConnIo {
    pub out_rx: mpsc::Receiver<Outgoing>,
    pub in_tx: mpsc::Sender<Result<Bytes, TransportError>>,
    pub state: Arc<ConnState>,
}

/// A cloneable handle for sending on a connection.
#[derive(Clone, Debug)]
pub struct ConnSender {
    tx: mpsc::Sender<Outgoing>,
    max_message: usize,
    limits: WireLimits,
    state: Arc<ConnState>,
}

impl ConnSender {
    /// Queue one message. Waits while the send queue is full.
    pub async fn send(&self, msg: Bytes) -> Result<(), TransportError> {
        if msg.len() > self.max_message {
            return Err(TransportError::MessageTooLarge {
                size: msg.len(),
                max: self.max_message,
            });
        }
        self.tx
            .send(Outgoing::Data(msg))
            .await
            .map_err(|_| self.state.closed_error())
    }

    /// Encode `msg` with the wire codec (version byte + msgpack) and queue it.
    pub async fn send_msg<T: Serialize>(&self, msg: &T) -> Result<(), TransportError> {
        let body = codec::encode_body(msg, &self.limits)?;
        self.send(body).await
    }

    /// Largest message this connection accepts.
    pub fn max_message(&self) -> usize {
        self.max_message
    }
}

/// An authenticated connection to one peer.
#[derive(Debug)]
pub struct Connection {
    remote_id: NodeId,
    remote_addr: SocketAddr,
    kind: TransportKind,
    sender: ConnSender,
    inbound: mpsc::Receiver<Result<Bytes, TransportError>>,
    state: Arc<ConnState>,
}

impl Connection {
    /// Build the handle and the driver's half. `parent` is the endpoint's shutdown token.
    pub(crate) fn new(
        remote_id: NodeId,
        remote_addr: SocketAddr,
        cfg: &TransportConfig,
        max_message: usize,
        parent: &CancellationToken,
    ) -> (Connection, ConnIo) {
        let (out_tx, out_rx) = mpsc::channel(cfg.send_queue);
        let (in_tx, in_rx) = mpsc::channel(cfg.recv_queue);
        let state = Arc::new(ConnState {
            reason: OnceLock::new(),
            cancel: parent.child_token(),
            done: CancellationToken::new(),
        });
        let conn = Connection {
            remote_id,
            remote_addr,
            kind: cfg.kind,
            sender: ConnSender {
                tx: out_tx,
                max_message,
                limits: cfg.limits,
                state: state.clone(),
            },
            inbound: in_rx,
            state: state.clone(),
        };
        (
            conn,
            ConnIo {
                out_rx,
                in_tx,
                state,
            },
        )
    }

    /// The peer's proven node identity.
    pub fn remote_id(&self) -> NodeId {
        self.remote_id
    }

    pub fn remote_addr(&self) -> SocketAddr {
        self.remote_addr
    }

    pub fn kind(&self) -> TransportKind {
        self.kind
    }

    /// A cloneable sender; it fails with [`TransportError::Closed`] once the connection is
    /// closed (including when this `Connection` is dropped).
    pub fn sender(&self) -> ConnSender {
        self.sender.clone()
    }

    /// Largest message [`Connection::send`] accepts.
    pub fn max_message(&self) -> usize {
        self.sender.max_message
    }

    pub async fn send(&self, msg: Bytes) -> Result<(), TransportError> {
        self.sender.send(msg).await
    }

    pub async fn send_msg<T: Serialize>(&self, msg: &T) -> Result<(), TransportError> {
        self.sender.send_msg(msg).await
    }

    /// The next message. `None` once the connection is closed; an error (bad frame,
    /// failed decryption, idle timeout) is returned once, then `None`.
    pub async fn recv(&mut self) -> Option<Result<Bytes, TransportError>> {
        self.inbound.recv().await
    }

    /// A message if one is already queued.
    pub fn try_recv(&mut self) -> Option<Result<Bytes, TransportError>> {
        self.inbound.try_recv().ok()
    }

    /// The next message decoded with the wire codec.
    pub async fn recv_msg<T: DeserializeOwned>(&mut self) -> Option<Result<T, TransportError>> {
        let limits = self.sender.limits;
        Some(
            self.recv()
                .await?
                .and_then(|b| Ok(codec::decode_body(&b, &limits)?)),
        )
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<String> {
        self.state.reason.get().cloned()
    }

    pub fn is_closed(&self) -> bool {
        self.state.done.is_cancelled()
    }

    /// Close gracefully: messages already queued are sent, then a close frame with
    /// `reason`; waits (bounded) until the connection task has finished.
    pub async fn close(&self, reason: &str) {
        let queued = tokio::time::timeout(
            CLOSE_GRACE,
            self.sender.tx.send(Outgoing::Close(reason.to_owned())),
        )
        .await;
        if !matches!(queued, Ok(Ok(()))) {
            self.state.cancel.cancel();
        }
        if tokio::time::timeout(CLOSE_GRACE * 2, self.state.done.cancelled())
            .await
            .is_err()
        {
            self.state.cancel.cancel();
            self.state.done.cancelled().await;
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.state.cancel.cancel();
    }
}

/// Reading half of a stream transport: yields raw frames (`kind | body`).
pub(crate) enum FrameReader {
    Noise(NoiseReader),
    Quic(QuicReader),
}

impl FrameReader {
    async fn next(&mut self) -> Option<Result<Bytes, TransportError>> {
        match self {
            FrameReader::Noise(r) => r.next().await,
            FrameReader::Quic(r) => r.next().await,
        }
    }
}

/// Writing half of a stream transport.
pub(crate) enum FrameWriter {
    Noise(NoiseWriter),
    Quic(QuicWriter),
}

impl FrameWriter {
    async fn write(&mut self, frames: &[Frame]) -> Result<(), TransportError> {
        match self {
            FrameWriter::Noise(w) => w.write(frames).await,
            FrameWriter::Quic(w) => w.write(frames).await,
        }
    }

    /// Send a close frame and end our direction of the stream.
    async fn close(&mut self, reason: &str) {
        match self {
            FrameWriter::Noise(w) => w.close(reason).await,
            FrameWriter::Quic(w) => w.close(reason).await,
        }
    }

    /// Release the transport once the driver is done (QUIC closes the connection).
    fn teardown(&mut self, reason: &str) {
        match self {
            FrameWriter::Noise(_) => {}
            FrameWriter::Quic(w) => w.teardown(reason),
        }
    }
}

enum End {
    LocalClose(String),
    PeerClose(String),
    Failed(TransportError),
}

/// Timing knobs of the driver.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub keepalive: Duration,
    pub idle_timeout: Duration,
}

impl From<&TransportConfig> for Timing {
    fn from(cfg: &TransportConfig) -> Self {
        Timing {
            keepalive: cfg.keepalive,
            idle_timeout: cfg.idle_timeout,
        }
    }
}

/// Run a stream connection (Noise-TCP or QUIC) until it closes. Reading and writing run
/// concurrently in this one task, so neither side can block the other.
pub(crate) async fn drive_stream(
    mut reader: FrameReader,
    mut writer: FrameWriter,
    io: ConnIo,
    timing: Timing,
    stats: Arc<TransportStats>,
    remote: NodeId,
) {
    let ConnIo {
        mut out_rx,
        in_tx,
        state,
    } = io;
    // Set once we are sending our close frame: the peer then tears the transport down,
    // and the reader's view of that is not a failure.
    let closing = std::sync::atomic::AtomicBool::new(false);
    let end = {
        let read_side = async {
            let end = loop {
                let next = match tokio::time::timeout(timing.idle_timeout, reader.next()).await {
                    Err(_) => {
                        return End::Failed(TransportError::Timeout(
                            "waiting for traffic from the peer (idle timeout)",
                        ))
                    }
                    Ok(next) => next,
                };
                let raw = match next {
                    None => {
                        break End::Failed(TransportError::Closed(
                            "peer ended the stream without a close frame".into(),
                        ))
                    }
                    Some(Err(e)) => break End::Failed(e),
                    Some(Ok(raw)) => raw,
                };
                match Frame::decode(raw) {
                    Err(e) => break End::Failed(e.into()),
                    Ok(Frame::Data(b)) => {
                        if in_tx.send(Ok(b)).await.is_err() {
                            break End::LocalClose("connection dropped".into());
                        }
                    }
                    Ok(Frame::Ping) => {}
                    Ok(Frame::Close(r)) => break End::PeerClose(r),
                }
            };
            if closing.load(std::sync::atomic::Ordering::Relaxed) && matches!(end, End::Failed(_)) {
                // let the writer finish its close and report it
                std::future::pending::<()>().await;
            }
            end
        };
        let write_side = async {
            let start = tokio::time::Instant::now() + timing.keepalive;
            let mut keepalive = tokio::time::interval_at(start, timing.keepalive);
            keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut batch: Vec<Frame> = Vec::with_capacity(BATCH_FRAMES);
            loop {
                tokio::select! {
                    biased;
                    _ = state.cancel.cancelled() => {
                        let reason = "connection dropped or endpoint shut down";
                        closing.store(true, std::sync::atomic::Ordering::Relaxed);
                        let _ = tokio::time::timeout(CLOSE_GRACE, writer.close(reason)).await;
                        return End::LocalClose(reason.into());
                    }
                    msg = out_rx.recv() => {
                        let mut closing_reason = None;
                        let mut bytes = 0usize;
                        match msg {
                            None => closing_reason = Some("all senders dropped".to_owned()),
                            Some(Outgoing::Close(r)) => closing_reason = Some(r),
                            Some(Outgoing::Data(b)) => {
                                bytes += b.len();
                                batch.push(Frame::Data(b));
                                while batch.len() < BATCH_FRAMES && bytes < BATCH_BYTES {
                                    match out_rx.try_recv() {
                                        Ok(Outgoing::Data(b)) => {
                                            bytes += b.len();
                                            batch.push(Frame::Data(b));
                                        }
                                        Ok(Outgoing::Close(r)) => {
                                            closing_reason = Some(r);
                                            break;
                                        }
                                        Err(_) => break,
                                    }
                                }
                            }
                        }
                        if !batch.is_empty() {
                            let res = writer.write(&batch).await;
                            batch.clear();
                            if let Err(e) = res {
                                return End::Failed(e);
                            }
                            keepalive.reset();
                        }
                        if let Some(reason) = closing_reason {
                            closing.store(true, std::sync::atomic::Ordering::Relaxed);
                            let _ = tokio::time::timeout(CLOSE_GRACE, writer.close(&reason)).await;
                            return End::LocalClose(reason);
                        }
                    }
                    _ = keepalive.tick() => {
                        if let Err(e) = writer.write(&[Frame::Ping]).await {
                            return End::Failed(e);
                        }
                    }
                }
            }
        };
        tokio::select! {
            e = read_side => e,
            e = write_side => e,
        }
    };
    let reason = match end {
        End::LocalClose(r) => {
            tracing::debug!(peer = %remote, reason = %r, "connection closed locally");
            r
        }
        End::PeerClose(r) => {
            tracing::debug!(peer = %remote, reason = %r, "connection closed by peer");
            format!("closed by peer: {r}")
        }
        End::Failed(e) => {
            match &e {
                TransportError::Wire(w) => stats.frame_rejected(w.reason()),
                TransportError::Decrypt(_) => stats.decrypt_failed(),
                _ => {}
            }
            tracing::warn!(peer = %remote, reason = e.reason(), "connection failed: {e}");
            let text = e.to_string();
            let _ = in_tx.try_send(Err(e));
            text
        }
    };
    writer.teardown(&reason);
    state.set_reason(reason);
    state.done.cancel();
}
