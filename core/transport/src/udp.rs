//! UDP: a Noise XX handshake carried in datagrams (retransmitted by the initiator), then
//! one encrypted frame per datagram with an explicit 64-bit nonce and a sliding replay
//! window.
//!
//! **Delivery is unreliable by contract**: a datagram can be lost, reordered, or dropped
//! because the application's receive queue is full. Replays and datagrams older than the
//! window are dropped and counted. A message larger than one datagram is refused with
//! [`TransportError::MessageTooLarge`] (no fragmentation). Use [`crate::reliable`] for
//! at-least-once delivery.
//!
//! ```text
//! init     := 1 | sender session (u32) | noise message 1
//! response := 2 | receiver session (u32) | sender session (u32) | noise message 2
//! finish   := 3 | receiver session (u32) | noise message 3
//! data     := 4 | receiver session (u32) | nonce (u64) | ciphertext of one frame
//! ```
//! All integers are big-endian. Session ids are random and chosen by their owner; the
//! receiver of a datagram finds the session by the id it chose itself. After message 3
//! the responder sends an encrypted ping (accepted) or close frame (refused), so the
//! initiator's `connect` ends with a clear result.

use crate::conn::{ConnIo, Connection, CLOSE_GRACE};
use crate::endpoint::Shared;
use crate::frame::Frame;
use crate::noise::{check_peer, NoiseHandshake, NoiseStatic, Role, MAX_NOISE_MSG, TAG_LEN};
use crate::stats::TransportStats;
use crate::{TransportError, TransportKind};
use bytes::{BufMut, Bytes, BytesMut};
use isthmus_core::Backoff;
use isthmus_core::{NodeId, WireError};
use rand::Rng;
use snow::StatelessTransportState;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio::time::Instant;

const TYPE_INIT: u8 = 1;
const TYPE_RESPONSE: u8 = 2;
const TYPE_FINISH: u8 = 3;
const TYPE_DATA: u8 = 4;
/// Bytes before the ciphertext of a data datagram.
pub const DATA_HEADER: usize = 1 + 4 + 8;

/// One parsed datagram. Parsing never allocates and never panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    Init {
        sender: u32,
        noise: &'a [u8],
    },
    Response {
        receiver: u32,
        sender: u32,
        noise: &'a [u8],
    },
    Finish {
        receiver: u32,
        noise: &'a [u8],
    },
    Data {
        receiver: u32,
        nonce: u64,
        ciphertext: &'a [u8],
    },
}

fn be_u32(b: &[u8], at: usize) -> Result<u32, WireError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or(WireError::Truncated("datagram header"))
}

fn be_u64(b: &[u8], at: usize) -> Result<u64, WireError> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or(WireError::Truncated("datagram header"))
}

fn noise_part(b: &[u8], at: usize) -> Result<&[u8], WireError> {
    let rest = b.get(at..).unwrap_or(&[]);
    if rest.is_empty() {
        return Err(WireError::Truncated("handshake message"));
    }
    if rest.len() > MAX_NOISE_MSG {
        return Err(WireError::FrameTooLarge {
            declared: rest.len(),
            max: MAX_NOISE_MSG,
        });
    }
    Ok(rest)
}

impl<'a> Packet<'a> {
    pub fn parse(b: &'a [u8]) -> Result<Packet<'a>, WireError> {
        let (&ty, _) = b.split_first().ok_or(WireError::EmptyFrame)?;
        match ty {
            TYPE_INIT => Ok(Packet::Init {
                sender: be_u32(b, 1)?,
                noise: noise_part(b, 5)?,
            }),
            TYPE_RESPONSE => Ok(Packet::Response {
                receiver: be_u32(b, 1)?,
                sender: be_u32(b, 5)?,
                noise: noise_part(b, 9)?,
            }),
            TYPE_FINISH => Ok(Packet::Finish {
                receiver: be_u32(b, 1)?,
                noise: noise_part(b, 5)?,
            }),
            TYPE_DATA => {
                let receiver = be_u32(b, 1)?;
                let nonce = be_u64(b, 5)?;
                let ciphertext = b.get(DATA_HEADER..).unwrap_or(&[]);
                if ciphertext.len() < TAG_LEN {
                    return Err(WireError::Truncated("ciphertext shorter than its tag"));
                }
                if ciphertext.len() > MAX_NOISE_MSG {
                    return Err(WireError::FrameTooLarge {
                        declared: ciphertext.len(),
                        max: MAX_NOISE_MSG,
                    });
                }
                Ok(Packet::Data {
                    receiver,
                    nonce,
                    ciphertext,
                })
            }
            _ => Err(WireError::Malformed {
                offset: 0,
                what: "unknown datagram type",
            }),
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Packet::Init { sender, noise } => {
                out.push(TYPE_INIT);
                out.extend_from_slice(&sender.to_be_bytes());
                out.extend_from_slice(noise);
            }
            Packet::Response {
                receiver,
                sender,
                noise,
            } => {
                out.push(TYPE_RESPONSE);
                out.extend_from_slice(&receiver.to_be_bytes());
                out.extend_from_slice(&sender.to_be_bytes());
                out.extend_from_slice(noise);
            }
            Packet::Finish { receiver, noise } => {
                out.push(TYPE_FINISH);
                out.extend_from_slice(&receiver.to_be_bytes());
                out.extend_from_slice(noise);
            }
            Packet::Data {
                receiver,
                nonce,
                ciphertext,
            } => {
                out.push(TYPE_DATA);
                out.extend_from_slice(&receiver.to_be_bytes());
                out.extend_from_slice(&nonce.to_be_bytes());
                out.extend_from_slice(ciphertext);
            }
        }
    }
}

/// Why the replay window refused a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// This nonce was already accepted.
    Duplicate,
    /// The nonce is older than the window; it cannot be told apart from a replay.
    TooOld,
}

/// A sliding window over the last `size` nonces (RFC 6479 style bitmap). Check before
/// decrypting, commit only after the datagram authenticated, so forged datagrams can
/// never move the window.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    highest: Option<u64>,
    bits: Vec<u64>,
}

impl ReplayWindow {
    /// `size` is rounded up to a multiple of 64 (at least 64).
    pub fn new(size: u64) -> Self {
        let words = size.div_ceil(64).max(1) as usize;
        ReplayWindow {
            highest: None,
            bits: vec![0; words],
        }
    }

    fn size(&self) -> u64 {
        self.bits.len() as u64 * 64
    }

    fn slot(&self, n: u64) -> (usize, u64) {
        let i = n % self.size();
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    pub fn check(&self, n: u64) -> Result<(), Replay> {
        let Some(h) = self.highest else { return Ok(()) };
        if n > h {
            return Ok(());
        }
        if h - n >= self.size() {
            return Err(Replay::TooOld);
        }
        let (w, bit) = self.slot(n);
        if self.bits[w] & bit != 0 {
            Err(Replay::Duplicate)
        } else {
            Ok(())
        }
    }

    /// Record `n` as received. Call only after [`ReplayWindow::check`] passed and the
    /// datagram authenticated.
    pub fn commit(&mut self, n: u64) {
        match self.highest {
            Some(h) if n <= h => {}
            Some(h) => {
                if n - h >= self.size() {
                    self.bits.iter_mut().for_each(|w| *w = 0);
                } else {
                    for m in h + 1..n {
                        let (w, bit) = self.slot(m);
                        self.bits[w] &= !bit;
                    }
                }
                self.highest = Some(n);
            }
            None => {
                self.bits.iter_mut().for_each(|w| *w = 0);
                self.highest = Some(n);
            }
        }
        let (w, bit) = self.slot(n);
        self.bits[w] |= bit;
    }
}

/// Sends encrypted frames to one peer. Shared by the driver and the connection task.
struct SendHalf {
    socket: Arc<UdpSocket>,
    addr: SocketAddr,
    peer_session: u32,
    transport: Arc<StatelessTransportState>,
    nonce: AtomicU64,
}

impl SendHalf {
    fn seal(&self, frame: &Frame) -> Result<Vec<u8>, TransportError> {
        let mut plain = BytesMut::with_capacity(frame.encoded_len());
        frame.encode_into(&mut plain);
        let nonce = self.nonce.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::with_capacity(DATA_HEADER + plain.len() + TAG_LEN);
        out.put_u8(TYPE_DATA);
        out.put_u32(self.peer_session);
        out.put_u64(nonce);
        out.resize(DATA_HEADER + plain.len() + TAG_LEN, 0);
        self.transport
            .write_message(nonce, &plain, &mut out[DATA_HEADER..])
            .map_err(|_| TransportError::MessageTooLarge {
                size: plain.len(),
                max: MAX_NOISE_MSG - TAG_LEN,
            })?;
        Ok(out)
    }

    async fn send(&self, frame: &Frame) -> Result<(), TransportError> {
        let pkt = self.seal(frame)?;
        self.socket.send_to(&pkt, self.addr).await?;
        Ok(())
    }
}

enum Cmd {
    Connect {
        addr: SocketAddr,
        expected: Option<NodeId>,
        permit: OwnedSemaphorePermit,
        reply: oneshot::Sender<Result<Connection, TransportError>>,
    },
    Remove {
        session: u32,
    },
}

pub(crate) struct UdpEndpoint {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    cmd_tx: mpsc::Sender<Cmd>,
}

impl UdpEndpoint {
    pub(crate) async fn bind(shared: Arc<Shared>) -> Result<Self, TransportError> {
        let socket = Arc::new(UdpSocket::bind(shared.cfg.bind).await?);
        let local_addr = socket.local_addr()?;
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let driver = Driver {
            noise_static: NoiseStatic::generate()?,
            shared: shared.clone(),
            socket,
            cmd_tx: cmd_tx.clone(),
            initiating: HashMap::new(),
            responding: HashMap::new(),
            init_index: HashMap::new(),
            sessions: HashMap::new(),
            epoch: Instant::now(),
        };
        shared.tracker.spawn(driver.run(cmd_rx));
        Ok(UdpEndpoint {
            local_addr,
            shared,
            cmd_tx,
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub(crate) async fn connect(
        &self,
        addr: SocketAddr,
        expected: Option<NodeId>,
    ) -> Result<Connection, TransportError> {
        let permit = self.shared.slot()?;
        let (reply, rx) = oneshot::channel();
        self.cmd_tx
            .send(Cmd::Connect {
                addr,
                expected,
                permit,
                reply,
            })
            .await
            .map_err(|_| TransportError::Closed("endpoint is shut down".into()))?;
        rx.await
            .map_err(|_| TransportError::Closed("endpoint is shut down".into()))?
    }
}

/// Largest application message in one datagram.
pub(crate) fn max_message(max_datagram: usize) -> usize {
    max_datagram.saturating_sub(DATA_HEADER + TAG_LEN + 1)
}

enum Stage {
    AwaitResponse(Box<NoiseHandshake>),
    AwaitConfirm {
        transport: Arc<StatelessTransportState>,
        remote: NodeId,
        peer_session: u32,
    },
}

struct Initiating {
    addr: SocketAddr,
    expected: Option<NodeId>,
    stage: Stage,
    /// The datagram to retransmit: init, then finish.
    packet: Vec<u8>,
    attempts: u32,
    next_retx: Instant,
    deadline: Instant,
    permit: OwnedSemaphorePermit,
    reply: oneshot::Sender<Result<Connection, TransportError>>,
}

struct Responding {
    hs: NoiseHandshake,
    addr: SocketAddr,
    peer_session: u32,
    init_key: (SocketAddr, u32),
    response: Vec<u8>,
    deadline: Instant,
}

struct Session {
    addr: SocketAddr,
    window: ReplayWindow,
    send: Arc<SendHalf>,
    in_tx: mpsc::Sender<Result<Bytes, TransportError>>,
    last_rx: Arc<AtomicU64>,
    state: Arc<crate::conn::ConnState>,
}

struct Driver {
    shared: Arc<Shared>,
    noise_static: NoiseStatic,
    socket: Arc<UdpSocket>,
    cmd_tx: mpsc::Sender<Cmd>,
    initiating: HashMap<u32, Initiating>,
    responding: HashMap<u32, Responding>,
    init_index: HashMap<(SocketAddr, u32), u32>,
    sessions: HashMap<u32, Session>,
    epoch: Instant,
}

/// Retransmit delays: doubling from the ack timeout, ±25%, at most 5 s.
fn backoff(base: Duration, attempt: u32) -> Duration {
    Backoff::new(base, Duration::from_secs(5))
        .with_jitter(0.25)
        .delay(attempt.min(10))
}

impl Driver {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn new_session_id(&self) -> u32 {
        let mut rng = rand::thread_rng();
        loop {
            let id: u32 = rng.gen();
            if id != 0
                && !self.sessions.contains_key(&id)
                && !self.initiating.contains_key(&id)
                && !self.responding.contains_key(&id)
            {
                return id;
            }
        }
    }

    async fn run(mut self, mut cmd_rx: mpsc::Receiver<Cmd>) {
        let mut buf = vec![0u8; 65_536];
        let tick_every = (self.shared.cfg.ack_timeout / 4).max(Duration::from_millis(5));
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let token = self.shared.token.clone();
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                cmd = cmd_rx.recv() => match cmd {
                    Some(Cmd::Connect { addr, expected, permit, reply }) => self.start_connect(addr, expected, permit, reply).await,
                    Some(Cmd::Remove { session }) => { self.sessions.remove(&session); }
                    None => break,
                },
                res = self.socket.recv_from(&mut buf) => match res {
                    Ok((n, from)) => self.on_datagram(&buf[..n], from).await,
                    // ICMP errors surface here on some platforms; they say nothing certain
                    Err(e) => tracing::debug!("udp recv error: {e}"),
                },
                _ = tick.tick() => self.on_tick().await,
            }
        }
        for (_, i) in self.initiating.drain() {
            let _ = i
                .reply
                .send(Err(TransportError::Closed("endpoint is shut down".into())));
        }
        // Give connection tasks (cancelled through the endpoint token) a moment to send
        // their close frames through the still-open socket.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    async fn send_raw(&self, pkt: &[u8], to: SocketAddr) {
        if let Err(e) = self.socket.send_to(pkt, to).await {
            tracing::debug!(peer = %to, "udp send failed: {e}");
        }
    }

    async fn start_connect(
        &mut self,
        addr: SocketAddr,
        expected: Option<NodeId>,
        permit: OwnedSemaphorePermit,
        reply: oneshot::Sender<Result<Connection, TransportError>>,
    ) {
        let cfg = &self.shared.cfg;
        let setup = NoiseHandshake::new(
            Role::Initiator,
            TransportKind::Udp,
            cfg.network,
            &self.shared.keypair,
            &self.noise_static,
            addr,
        )
        .and_then(|mut hs| hs.write().map(|m1| (hs, m1)));
        let (hs, m1) = match setup {
            Ok(x) => x,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let sid = self.new_session_id();
        let mut packet = Vec::with_capacity(5 + m1.len());
        Packet::Init {
            sender: sid,
            noise: &m1,
        }
        .encode(&mut packet);
        self.send_raw(&packet, addr).await;
        let now = Instant::now();
        self.initiating.insert(
            sid,
            Initiating {
                addr,
                expected,
                stage: Stage::AwaitResponse(Box::new(hs)),
                packet,
                attempts: 0,
                next_retx: now + backoff(cfg.ack_timeout, 0),
                deadline: now + cfg.handshake_timeout,
                permit,
                reply,
            },
        );
    }

    async fn on_tick(&mut self) {
        let now = Instant::now();
        let cfg = &self.shared.cfg;
        let mut failed = Vec::new();
        let mut resend = Vec::new();
        for (sid, i) in self.initiating.iter_mut() {
            if now >= i.deadline {
                failed.push((*sid, TransportError::Timeout("running the udp handshake")));
            } else if now >= i.next_retx {
                i.attempts += 1;
                if i.attempts > cfg.max_retries {
                    failed.push((
                        *sid,
                        TransportError::Handshake {
                            peer: i.addr,
                            reason: format!("no answer after {} attempts", cfg.max_retries),
                        },
                    ));
                } else {
                    i.next_retx = now + backoff(cfg.ack_timeout, i.attempts);
                    resend.push((i.packet.clone(), i.addr));
                }
            }
        }
        for (sid, e) in failed {
            if let Some(i) = self.initiating.remove(&sid) {
                let _ = i.reply.send(Err(e));
            }
        }
        for (pkt, addr) in resend {
            self.send_raw(&pkt, addr).await;
        }
        let expired: Vec<u32> = self
            .responding
            .iter()
            .filter(|(_, r)| now >= r.deadline)
            .map(|(sid, _)| *sid)
            .collect();
        for sid in expired {
            if let Some(r) = self.responding.remove(&sid) {
                self.init_index.remove(&r.init_key);
                self.shared.stats.handshake_failed("timeout");
                tracing::debug!(peer = %r.addr, "udp handshake expired");
            }
        }
    }

    async fn on_datagram(&mut self, raw: &[u8], from: SocketAddr) {
        let stats = self.shared.stats.clone();
        if raw.len() > self.shared.cfg.max_datagram {
            stats.frame_rejected("datagram_too_large");
            return;
        }
        let pkt = match Packet::parse(raw) {
            Ok(p) => p,
            Err(e) => {
                stats.frame_rejected(e.reason());
                return;
            }
        };
        match pkt {
            Packet::Init { sender, noise } => self.on_init(sender, noise, from).await,
            Packet::Response {
                receiver,
                sender,
                noise,
            } => self.on_response(receiver, sender, noise, from).await,
            Packet::Finish { receiver, noise } => self.on_finish(receiver, noise, from).await,
            Packet::Data {
                receiver,
                nonce,
                ciphertext,
            } => {
                self.on_data(receiver, nonce, ciphertext, from, &stats)
                    .await
            }
        }
    }

    async fn on_init(&mut self, sender: u32, noise: &[u8], from: SocketAddr) {
        if let Some(sid) = self.init_index.get(&(from, sender)) {
            // a retransmitted init: our response was lost
            if let Some(r) = self.responding.get(sid) {
                let pkt = r.response.clone();
                self.send_raw(&pkt, from).await;
            }
            return;
        }
        let cfg = &self.shared.cfg;
        if self.responding.len() >= cfg.max_connections {
            self.shared.stats.connection_refused();
            return;
        }
        let answer = NoiseHandshake::new(
            Role::Responder,
            TransportKind::Udp,
            cfg.network,
            &self.shared.keypair,
            &self.noise_static,
            from,
        )
        .and_then(|mut hs| {
            hs.read(noise)?;
            let m2 = hs.write()?;
            Ok((hs, m2))
        });
        let (hs, m2) = match answer {
            Ok(x) => x,
            Err(e) => {
                self.shared.handshake_error(from, &e);
                return;
            }
        };
        let sid = self.new_session_id();
        let mut response = Vec::with_capacity(9 + m2.len());
        Packet::Response {
            receiver: sender,
            sender: sid,
            noise: &m2,
        }
        .encode(&mut response);
        self.send_raw(&response, from).await;
        self.init_index.insert((from, sender), sid);
        self.responding.insert(
            sid,
            Responding {
                hs,
                addr: from,
                peer_session: sender,
                init_key: (from, sender),
                response,
                deadline: Instant::now() + cfg.handshake_timeout,
            },
        );
    }

    async fn on_response(&mut self, receiver: u32, sender: u32, noise: &[u8], from: SocketAddr) {
        let Some(mut init) = self.initiating.remove(&receiver) else {
            return;
        };
        if init.addr != from {
            self.initiating.insert(receiver, init);
            return;
        }
        let hs = match init.stage {
            Stage::AwaitResponse(hs) => hs,
            Stage::AwaitConfirm { .. } => {
                // a duplicate response (the responder answered a retransmitted init):
                // make sure our finish gets there
                let pkt = init.packet.clone();
                self.initiating.insert(receiver, init);
                self.send_raw(&pkt, from).await;
                return;
            }
        };
        let mut hs = *hs;
        let step = hs
            .read(noise)
            .and_then(|remote| {
                remote.ok_or_else(|| TransportError::Handshake {
                    peer: from,
                    reason: "no identity in message 2".into(),
                })
            })
            .and_then(|remote| {
                check_peer(&self.shared.cfg, init.expected, remote)?;
                let m3 = hs.write()?;
                Ok((remote, m3))
            });
        let (remote, m3) = match step {
            Ok(x) => x,
            Err(e) => {
                let _ = init.reply.send(Err(e));
                return;
            }
        };
        let transport = match hs.finish() {
            Ok(t) => Arc::new(t),
            Err(e) => {
                let _ = init.reply.send(Err(e));
                return;
            }
        };
        let mut packet = Vec::with_capacity(5 + m3.len());
        Packet::Finish {
            receiver: sender,
            noise: &m3,
        }
        .encode(&mut packet);
        self.send_raw(&packet, from).await;
        init.packet = packet;
        init.attempts = 0;
        init.next_retx = Instant::now() + backoff(self.shared.cfg.ack_timeout, 0);
        init.stage = Stage::AwaitConfirm {
            transport,
            remote,
            peer_session: sender,
        };
        self.initiating.insert(receiver, init);
    }

    async fn on_finish(&mut self, receiver: u32, noise: &[u8], from: SocketAddr) {
        if let Some(s) = self.sessions.get(&receiver) {
            if s.addr == from {
                // our confirmation was lost: confirm again
                let send = s.send.clone();
                let _ = send.send(&Frame::Ping).await;
            }
            return;
        }
        let Some(resp) = self.responding.remove(&receiver) else {
            return;
        };
        if resp.addr != from {
            self.responding.insert(receiver, resp);
            return;
        }
        self.init_index.remove(&resp.init_key);
        let Responding {
            mut hs,
            peer_session,
            ..
        } = resp;
        let remote = match hs.read(noise).and_then(|r| {
            r.ok_or_else(|| TransportError::Handshake {
                peer: from,
                reason: "no identity in message 3".into(),
            })
        }) {
            Ok(r) => r,
            Err(e) => {
                self.shared.handshake_error(from, &e);
                return;
            }
        };
        let transport = match hs.finish() {
            Ok(t) => Arc::new(t),
            Err(e) => {
                self.shared.handshake_error(from, &e);
                return;
            }
        };
        let send = Arc::new(SendHalf {
            socket: self.socket.clone(),
            addr: from,
            peer_session,
            transport: transport.clone(),
            nonce: AtomicU64::new(0),
        });
        match check_peer(&self.shared.cfg, None, remote).and_then(|()| self.shared.slot()) {
            Ok(permit) => {
                let _ = send.send(&Frame::Ping).await;
                let window = ReplayWindow::new(self.shared.cfg.replay_window);
                let conn = self.establish(receiver, remote, from, send, window, permit);
                tracing::info!(transport = "udp", peer = %from, key = %remote, "accepted connection");
                let shared = self.shared.clone();
                self.shared
                    .tracker
                    .spawn(async move { shared.deliver(conn).await });
            }
            Err(e) => {
                // authenticated refusal: the initiator's connect fails at once
                let _ = send.send(&Frame::close(&e.to_string())).await;
                if !matches!(e, TransportError::TooManyConnections(_)) {
                    self.shared.handshake_error(from, &e);
                }
            }
        }
    }

    fn establish(
        &mut self,
        sid: u32,
        remote: NodeId,
        addr: SocketAddr,
        send: Arc<SendHalf>,
        window: ReplayWindow,
        permit: OwnedSemaphorePermit,
    ) -> Connection {
        self.shared.stats.handshake_ok();
        let cfg = &self.shared.cfg;
        let (conn, io) = Connection::new(
            remote,
            addr,
            cfg,
            max_message(cfg.max_datagram),
            &self.shared.token,
        );
        let last_rx = Arc::new(AtomicU64::new(self.now_ms()));
        self.sessions.insert(
            sid,
            Session {
                addr,
                window,
                send: send.clone(),
                in_tx: io.in_tx.clone(),
                last_rx: last_rx.clone(),
                state: io.state.clone(),
            },
        );
        let task = ConnTask {
            send,
            io,
            keepalive: cfg.keepalive,
            idle_timeout: cfg.idle_timeout,
            last_rx,
            epoch: self.epoch,
            cmd_tx: self.cmd_tx.clone(),
            session: sid,
            remote,
        };
        self.shared.tracker.spawn(async move {
            task.run().await;
            drop(permit);
        });
        conn
    }

    async fn on_data(
        &mut self,
        receiver: u32,
        nonce: u64,
        ciphertext: &[u8],
        from: SocketAddr,
        stats: &TransportStats,
    ) {
        let mut plain = vec![0u8; ciphertext.len()];
        if let Some(s) = self.sessions.get_mut(&receiver) {
            if let Err(r) = s.window.check(nonce) {
                stats.udp_replay(r == Replay::TooOld);
                return;
            }
            let n = match s.send.transport.read_message(nonce, ciphertext, &mut plain) {
                Ok(n) => n,
                Err(_) => {
                    stats.decrypt_failed();
                    return;
                }
            };
            s.window.commit(nonce);
            s.last_rx
                .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
            plain.truncate(n);
            match Frame::decode(plain.into()) {
                Err(e) => stats.frame_rejected(e.reason()),
                Ok(Frame::Ping) => {}
                Ok(Frame::Data(b)) => match s.in_tx.try_send(Ok(b)) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => stats.udp_queue_full(),
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                },
                Ok(Frame::Close(r)) => {
                    s.state.set_reason(format!("closed by peer: {r}"));
                    s.state.cancel.cancel();
                    self.sessions.remove(&receiver);
                }
            }
            return;
        }
        // The first datagram of a session we initiated confirms (or refuses) it.
        let Some(init) = self.initiating.get(&receiver) else {
            return;
        };
        let Stage::AwaitConfirm {
            transport,
            remote,
            peer_session,
        } = &init.stage
        else {
            return;
        };
        if init.addr != from {
            return;
        }
        let n = match transport.read_message(nonce, ciphertext, &mut plain) {
            Ok(n) => n,
            Err(_) => {
                stats.decrypt_failed();
                return;
            }
        };
        plain.truncate(n);
        let (transport, remote, peer_session) = (transport.clone(), *remote, *peer_session);
        let Some(init) = self.initiating.remove(&receiver) else {
            return;
        };
        let frame = match Frame::decode(plain.into()) {
            Ok(f) => f,
            Err(e) => {
                stats.frame_rejected(e.reason());
                let _ = init.reply.send(Err(e.into()));
                return;
            }
        };
        if let Frame::Close(reason) = &frame {
            let _ = init.reply.send(Err(TransportError::Handshake {
                peer: from,
                reason: format!("{remote} refused the connection: {reason}"),
            }));
            return;
        }
        let mut window = ReplayWindow::new(self.shared.cfg.replay_window);
        window.commit(nonce);
        let send = Arc::new(SendHalf {
            socket: self.socket.clone(),
            addr: from,
            peer_session,
            transport: transport.clone(),
            nonce: AtomicU64::new(0),
        });
        let conn = self.establish(receiver, remote, from, send, window, init.permit);
        if let Frame::Data(b) = frame {
            if let Some(s) = self.sessions.get(&receiver) {
                let _ = s.in_tx.try_send(Ok(b));
            }
        }
        let _ = init.reply.send(Ok(conn));
    }
}

/// The task that owns one UDP connection's sending side, keepalive and idle timer.
struct ConnTask {
    send: Arc<SendHalf>,
    io: ConnIo,
    keepalive: Duration,
    idle_timeout: Duration,
    last_rx: Arc<AtomicU64>,
    epoch: Instant,
    cmd_tx: mpsc::Sender<Cmd>,
    session: u32,
    remote: NodeId,
}

impl ConnTask {
    async fn run(self) {
        let ConnTask {
            send,
            io,
            keepalive,
            idle_timeout,
            last_rx,
            epoch,
            cmd_tx,
            session,
            remote,
        } = self;
        let ConnIo {
            mut out_rx,
            in_tx,
            state,
        } = io;
        let mut ka = tokio::time::interval_at(Instant::now() + keepalive, keepalive);
        ka.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut idle_check =
            tokio::time::interval((idle_timeout / 4).max(Duration::from_millis(10)));
        let reason: String = loop {
            tokio::select! {
                biased;
                _ = state.cancel.cancelled() => {
                    let r = "connection dropped or endpoint shut down";
                    // a close frame from the peer sets the reason first: don't answer it
                    if !state.reason_is_set() {
                        let _ = tokio::time::timeout(CLOSE_GRACE, send.send(&Frame::close(r))).await;
                    }
                    break r.to_owned();
                }
                m = out_rx.recv() => match m {
                    Some(crate::conn::Outgoing::Data(b)) => {
                        // unreliable by contract: a failed send is a lost datagram
                        if let Err(e) = send.send(&Frame::Data(b)).await {
                            tracing::debug!(peer = %remote, "udp send failed: {e}");
                        }
                        ka.reset();
                    }
                    Some(crate::conn::Outgoing::Close(r)) => {
                        let _ = send.send(&Frame::close(&r)).await;
                        break r;
                    }
                    None => {
                        let r = "all senders dropped";
                        let _ = send.send(&Frame::close(r)).await;
                        break r.to_owned();
                    }
                },
                _ = ka.tick() => { let _ = send.send(&Frame::Ping).await; }
                _ = idle_check.tick() => {
                    let now = epoch.elapsed().as_millis() as u64;
                    if now.saturating_sub(last_rx.load(Ordering::Relaxed)) > idle_timeout.as_millis() as u64 {
                        let e = TransportError::Timeout("waiting for traffic from the peer (idle timeout)");
                        tracing::warn!(peer = %remote, "udp connection idle: {e}");
                        let text = e.to_string();
                        let _ = in_tx.try_send(Err(e));
                        let _ = send.send(&Frame::close("idle timeout")).await;
                        break text;
                    }
                }
            }
        };
        state.set_reason(reason);
        let _ = cmd_tx.try_send(Cmd::Remove { session });
        state.done.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn packet() -> impl Strategy<Value = (u8, u32, u32, u64, Vec<u8>)> {
        (
            1u8..=4,
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 16..300),
        )
    }

    proptest! {
        #[test]
        fn packets_round_trip((ty, a, b, n, body) in packet()) {
            let p = match ty {
                1 => Packet::Init { sender: a, noise: &body },
                2 => Packet::Response { receiver: a, sender: b, noise: &body },
                3 => Packet::Finish { receiver: a, noise: &body },
                _ => Packet::Data { receiver: a, nonce: n, ciphertext: &body },
            };
            let mut out = Vec::new();
            p.encode(&mut out);
            prop_assert_eq!(Packet::parse(&out).unwrap(), p);
        }

        #[test]
        fn parse_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = Packet::parse(&raw);
        }

        #[test]
        fn replay_window_matches_a_model(nonces in proptest::collection::vec(0u64..400, 1..300)) {
            let mut w = ReplayWindow::new(64);
            let mut seen = HashSet::new();
            let mut highest: Option<u64> = None;
            for n in nonces {
                let verdict = w.check(n);
                let expect = match highest {
                    Some(h) if n <= h && h - n >= 64 => Err(Replay::TooOld),
                    _ if seen.contains(&n) => Err(Replay::Duplicate),
                    _ => Ok(()),
                };
                prop_assert_eq!(verdict, expect, "nonce {}", n);
                if verdict.is_ok() {
                    w.commit(n);
                    seen.insert(n);
                    highest = Some(highest.map_or(n, |h| h.max(n)));
                }
            }
        }
    }

    #[test]
    fn short_and_unknown_datagrams_are_typed_errors() {
        assert!(matches!(Packet::parse(&[]), Err(WireError::EmptyFrame)));
        assert!(matches!(
            Packet::parse(&[9, 0, 0]),
            Err(WireError::Malformed { .. })
        ));
        assert!(matches!(
            Packet::parse(&[4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2]),
            Err(WireError::Truncated(_))
        ));
        assert!(matches!(
            Packet::parse(&[1, 0, 0, 0, 1]),
            Err(WireError::Truncated(_))
        ));
    }

    #[test]
    fn max_message_leaves_room_for_headers() {
        assert_eq!(max_message(1472), 1472 - 13 - 16 - 1);
    }
}
