//! Noise (`Noise_XX_25519_ChaChaPoly_BLAKE2s`, via `snow`) with the static key bound to the
//! node's ed25519 identity, shared by the TCP and UDP transports.
//!
//! Each endpoint draws a fresh x25519 static key at bind time. In the XX pattern the
//! responder reveals its static key in message 2 and the initiator in message 3; each of
//! those messages carries a [`HandshakePayload`]: the sender's node id and an ed25519
//! signature (domain [`Domain::TransportBinding`], the endpoint's network) over
//!
//! ```text
//! "isthmus/noise-binding/v1" | role (0 initiator, 1 responder) | noise static key (32)
//!   | handshake hash before this message (32)
//! ```
//!
//! The handshake hash ties the binding to this session (both ephemeral keys are in it for
//! message 3, the initiator's for message 2), so a binding cannot be replayed into another
//! handshake; the role byte stops reflection. The receiver verifies strictly, then checks
//! the expected id and the allowlist before the handshake completes. The prologue names
//! the transport and the network, so peers of another network fail at message 2.
//!
//! On TCP every Noise message (handshake or transport) travels as a record:
//! `length (u16 BE) | ciphertext`, the ciphertext at most 65535 bytes. Application frames
//! (see [`crate::frame`]) are written as a plaintext *stream* of length-delimited frames
//! that is cut into records of at most 65519 plaintext bytes, so a 4 MiB message spans 65
//! records and the frame limit is checked from the decrypted length prefix before the
//! body is buffered.

use crate::frame::Frame;
use crate::{TransportConfig, TransportError, TransportKind};
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use isthmus_core::sign::{self, Domain};
use isthmus_core::{codec, FrameCodec, Keypair, NetworkId, NodeId, Signature, WireLimits};
use serde::{Deserialize, Serialize};
use snow::{HandshakeState, StatelessTransportState};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, FramedRead, LengthDelimitedCodec};

pub(crate) const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
/// Largest Noise message.
pub(crate) const MAX_NOISE_MSG: usize = 65_535;
/// AEAD tag length.
pub(crate) const TAG_LEN: usize = 16;
/// Largest plaintext in one Noise message.
pub(crate) const MAX_PLAIN: usize = MAX_NOISE_MSG - TAG_LEN;
const BINDING_LABEL: &[u8] = b"isthmus/noise-binding/v1";
/// Handshake payloads are tiny; anything larger is refused before decoding.
const PAYLOAD_LIMITS: WireLimits = WireLimits {
    max_frame: 512,
    max_depth: 4,
};

/// The identity proof carried by Noise handshake messages 2 and 3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakePayload {
    /// The sender's node identity (ed25519 public key).
    pub node: NodeId,
    /// Signature by `node` over the binding (see the module docs).
    pub binding: Signature,
}

impl HandshakePayload {
    pub fn encode(&self) -> Result<Bytes, TransportError> {
        Ok(codec::encode_body(self, &PAYLOAD_LIMITS)?)
    }

    pub fn decode(raw: &[u8]) -> Result<Self, TransportError> {
        Ok(codec::decode_body(raw, &PAYLOAD_LIMITS)?)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Initiator,
    Responder,
}

fn binding_bytes(role: Role, noise_static: &[u8], handshake_hash: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(BINDING_LABEL.len() + 1 + 64);
    m.extend_from_slice(BINDING_LABEL);
    m.push(match role {
        Role::Initiator => 0,
        Role::Responder => 1,
    });
    m.extend_from_slice(noise_static);
    m.extend_from_slice(handshake_hash);
    m
}

fn prologue(kind: TransportKind, network: NetworkId) -> Vec<u8> {
    let mut p = b"isthmus/noise/v1/".to_vec();
    p.extend_from_slice(kind.as_str().as_bytes());
    p.extend_from_slice(&network.0.to_be_bytes());
    p
}

fn params() -> Result<snow::params::NoiseParams, TransportError> {
    NOISE_PARAMS
        .parse()
        .map_err(|e| TransportError::Tls(format!("noise params `{NOISE_PARAMS}`: {e}")))
}

/// The endpoint's Noise static key pair. The private half never leaves this struct.
pub(crate) struct NoiseStatic {
    private: zeroize::Zeroizing<Vec<u8>>,
    public: Vec<u8>,
}

impl NoiseStatic {
    pub(crate) fn generate() -> Result<Self, TransportError> {
        let kp = snow::Builder::new(params()?)
            .generate_keypair()
            .map_err(|e| TransportError::Tls(format!("noise key generation: {e}")))?;
        Ok(NoiseStatic {
            private: zeroize::Zeroizing::new(kp.private),
            public: kp.public,
        })
    }
}

/// The peer check every transport applies once the remote identity is proven.
pub(crate) fn check_peer(
    cfg: &TransportConfig,
    expected: Option<NodeId>,
    got: NodeId,
) -> Result<(), TransportError> {
    if let Some(expected) = expected {
        if expected != got {
            return Err(TransportError::UnexpectedPeer { expected, got });
        }
    }
    if !cfg.is_allowed(&got) {
        return Err(TransportError::PeerNotAllowed(got));
    }
    Ok(())
}

/// A sans-I/O XX handshake with identity binding. Messages are produced and consumed in
/// order: initiator `write` (1), responder `read` (1) and `write` (2), initiator `read`
/// (2) and `write` (3), responder `read` (3); then both call [`NoiseHandshake::finish`].
pub(crate) struct NoiseHandshake {
    hs: HandshakeState,
    role: Role,
    network: NetworkId,
    keypair: Keypair,
    local_static: Vec<u8>,
    peer: SocketAddr,
    remote: Option<NodeId>,
}

impl NoiseHandshake {
    pub(crate) fn new(
        role: Role,
        kind: TransportKind,
        network: NetworkId,
        keypair: &Keypair,
        noise_static: &NoiseStatic,
        peer: SocketAddr,
    ) -> Result<Self, TransportError> {
        let prologue = prologue(kind, network);
        let builder = snow::Builder::new(params()?)
            .local_private_key(&noise_static.private)
            .prologue(&prologue);
        let hs = match role {
            Role::Initiator => builder.build_initiator(),
            Role::Responder => builder.build_responder(),
        }
        .map_err(|e| TransportError::Tls(format!("noise setup: {e}")))?;
        Ok(NoiseHandshake {
            hs,
            role,
            network,
            keypair: keypair.clone(),
            local_static: noise_static.public.clone(),
            peer,
            remote: None,
        })
    }

    fn fail(&self, reason: impl Into<String>) -> TransportError {
        TransportError::Handshake {
            peer: self.peer,
            reason: reason.into(),
        }
    }

    /// The peer's proven identity, once its identity message has been read.
    pub(crate) fn remote(&self) -> Option<NodeId> {
        self.remote
    }

    /// Write the next handshake message; messages 2 and 3 carry our identity proof.
    pub(crate) fn write(&mut self) -> Result<Vec<u8>, TransportError> {
        // The responder's only message is 2; the initiator's identity goes in 3, which it
        // writes after it has read (and proven) the responder's identity.
        let sends_identity = match self.role {
            Role::Initiator => self.remote.is_some(),
            Role::Responder => true,
        };
        let payload = if sends_identity {
            let msg = binding_bytes(self.role, &self.local_static, self.hs.get_handshake_hash());
            HandshakePayload {
                node: self.keypair.id(),
                binding: self
                    .keypair
                    .sign(Domain::TransportBinding, self.network, &msg),
            }
            .encode()?
            .to_vec()
        } else {
            Vec::new()
        };
        let mut out = vec![0u8; MAX_NOISE_MSG];
        let n = self
            .hs
            .write_message(&payload, &mut out)
            .map_err(|e| self.fail(format!("writing handshake message: {e}")))?;
        out.truncate(n);
        Ok(out)
    }

    /// Read the peer's next handshake message. Returns the peer's identity when this
    /// message carried (and strictly proved) it.
    pub(crate) fn read(&mut self, msg: &[u8]) -> Result<Option<NodeId>, TransportError> {
        let hash_before = self.hs.get_handshake_hash().to_vec();
        let mut buf = vec![0u8; msg.len()];
        let n = self
            .hs
            .read_message(msg, &mut buf)
            .map_err(|e| self.fail(format!("reading handshake message: {e}")))?;
        let carries_identity = match self.role {
            Role::Initiator => true,
            Role::Responder => self.hs.is_handshake_finished(),
        };
        if !carries_identity {
            if n != 0 {
                return Err(self.fail("unexpected payload in handshake message 1"));
            }
            return Ok(None);
        }
        let payload = HandshakePayload::decode(&buf[..n])
            .map_err(|e| self.fail(format!("identity payload: {e}")))?;
        let remote_static = self
            .hs
            .get_remote_static()
            .ok_or_else(|| self.fail("peer sent no static key"))?;
        let peer_role = match self.role {
            Role::Initiator => Role::Responder,
            Role::Responder => Role::Initiator,
        };
        let signed = binding_bytes(peer_role, remote_static, &hash_before);
        sign::verify(
            &payload.node,
            Domain::TransportBinding,
            self.network,
            &signed,
            &payload.binding,
        )
        .map_err(|e| self.fail(format!("identity binding of {}: {e}", payload.node)))?;
        self.remote = Some(payload.node);
        Ok(Some(payload.node))
    }

    #[cfg(test)]
    fn is_finished(&self) -> bool {
        self.hs.is_handshake_finished()
    }

    pub(crate) fn finish(self) -> Result<StatelessTransportState, TransportError> {
        let peer = self.peer;
        self.hs
            .into_stateless_transport_mode()
            .map_err(|e| TransportError::Handshake {
                peer,
                reason: format!("handshake incomplete: {e}"),
            })
    }
}

async fn write_record(stream: &mut TcpStream, msg: &[u8]) -> Result<(), TransportError> {
    let mut out = Vec::with_capacity(2 + msg.len());
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
    stream.write_all(&out).await?;
    Ok(())
}

async fn read_record(stream: &mut TcpStream) -> Result<Vec<u8>, TransportError> {
    let len = stream.read_u16().await? as usize;
    // at most 64 KiB: the u16 length bounds the allocation
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

/// What a finished TCP handshake hands to the connection driver.
pub(crate) struct NoiseSession {
    pub remote: NodeId,
    pub reader: NoiseReader,
    pub writer: NoiseWriter,
}

/// Run the handshake on a fresh TCP stream. On the responder side the first transport
/// frame is a ping that confirms acceptance; the initiator waits for it, so `connect`
/// fails (instead of yielding a dead connection) when the responder refuses us.
pub(crate) async fn tcp_handshake(
    mut stream: TcpStream,
    role: Role,
    cfg: &TransportConfig,
    keypair: &Keypair,
    noise_static: &NoiseStatic,
    expected: Option<NodeId>,
) -> Result<NoiseSession, TransportError> {
    let peer = stream.peer_addr()?;
    let mut hs = NoiseHandshake::new(
        role,
        TransportKind::Tcp,
        cfg.network,
        keypair,
        noise_static,
        peer,
    )?;
    match role {
        Role::Initiator => {
            let m1 = hs.write()?;
            write_record(&mut stream, &m1).await?;
            let m2 = read_record(&mut stream).await?;
            let remote = hs
                .read(&m2)?
                .ok_or_else(|| hs.fail("no identity in message 2"))?;
            check_peer(cfg, expected, remote)?;
            let m3 = hs.write()?;
            write_record(&mut stream, &m3).await?;
        }
        Role::Responder => {
            let m1 = read_record(&mut stream).await?;
            hs.read(&m1)?;
            let m2 = hs.write()?;
            write_record(&mut stream, &m2).await?;
            let m3 = read_record(&mut stream).await?;
            let remote = hs
                .read(&m3)?
                .ok_or_else(|| hs.fail("no identity in message 3"))?;
            if let Err(e) = check_peer(cfg, expected, remote) {
                // The session is authenticated both ways by now: tell the initiator why,
                // so its connect fails with a reason instead of a bare disconnect.
                let state = Arc::new(hs.finish()?);
                let (_, w) = stream.into_split();
                let mut writer = NoiseWriter::new(w, state);
                let _ = writer.write(&[Frame::close(&e.to_string())]).await;
                return Err(e);
            }
        }
    }
    let remote = hs
        .remote()
        .ok_or_else(|| hs.fail("handshake ended without a peer identity"))?;
    let state = Arc::new(hs.finish()?);
    let (r, w) = stream.into_split();
    let mut reader = NoiseReader::new(r, state.clone(), cfg.limits);
    let mut writer = NoiseWriter::new(w, state);
    match role {
        Role::Responder => writer.write(&[Frame::Ping]).await?,
        Role::Initiator => match reader.next().await.map(|r| r.and_then(|raw| Ok(Frame::decode(raw)?))) {
            Some(Ok(Frame::Ping)) => {}
            Some(Ok(Frame::Close(reason))) => {
                return Err(TransportError::Handshake {
                    peer,
                    reason: format!("{remote} refused the connection: {reason}"),
                })
            }
            Some(Ok(_)) => {
                return Err(TransportError::Handshake {
                    peer,
                    reason: "peer sent data before confirming the handshake".into(),
                })
            }
            Some(Err(e)) => return Err(e),
            None => {
                return Err(TransportError::Handshake {
                    peer,
                    reason: format!("{remote} closed the connection instead of confirming (refused by its allowlist?)"),
                })
            }
        },
    }
    Ok(NoiseSession {
        remote,
        reader,
        writer,
    })
}

/// Reads records, decrypts them in order and yields the frames of the plaintext stream.
pub(crate) struct NoiseReader {
    records: FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    state: Arc<StatelessTransportState>,
    nonce: u64,
    plain: BytesMut,
    frames: FrameCodec,
}

impl NoiseReader {
    fn new(io: OwnedReadHalf, state: Arc<StatelessTransportState>, limits: WireLimits) -> Self {
        let records = LengthDelimitedCodec::builder()
            .length_field_length(2)
            .max_frame_length(MAX_NOISE_MSG)
            .new_codec();
        NoiseReader {
            records: FramedRead::new(io, records),
            state,
            nonce: 0,
            plain: BytesMut::new(),
            // one byte more than the message limit for the frame kind
            frames: FrameCodec::new(WireLimits {
                max_frame: limits.max_frame.saturating_add(1),
                max_depth: limits.max_depth,
            }),
        }
    }

    /// The next frame (`kind | body`), `None` at a clean end of stream.
    pub(crate) async fn next(&mut self) -> Option<Result<Bytes, TransportError>> {
        loop {
            match self.frames.decode(&mut self.plain) {
                Ok(Some(frame)) => return Some(Ok(frame.freeze())),
                Ok(None) => {}
                Err(e) => return Some(Err(e.into())),
            }
            let record = match self.records.next().await {
                None if self.plain.is_empty() => return None,
                None => {
                    return Some(Err(isthmus_core::WireError::Truncated(
                        "stream ended inside a frame",
                    )
                    .into()))
                }
                Some(Err(e)) => return Some(Err(e.into())),
                Some(Ok(r)) => r,
            };
            let start = self.plain.len();
            self.plain.resize(start + record.len(), 0);
            match self
                .state
                .read_message(self.nonce, &record, &mut self.plain[start..])
            {
                Ok(n) => self.plain.truncate(start + n),
                Err(_) => return Some(Err(TransportError::Decrypt("noise record"))),
            }
            self.nonce += 1;
        }
    }
}

/// Encrypts batches of frames into records and writes them.
pub(crate) struct NoiseWriter {
    io: OwnedWriteHalf,
    state: Arc<StatelessTransportState>,
    nonce: u64,
    plain: BytesMut,
    out: BytesMut,
}

impl NoiseWriter {
    fn new(io: OwnedWriteHalf, state: Arc<StatelessTransportState>) -> Self {
        NoiseWriter {
            io,
            state,
            nonce: 0,
            plain: BytesMut::new(),
            out: BytesMut::new(),
        }
    }

    pub(crate) async fn write(&mut self, frames: &[Frame]) -> Result<(), TransportError> {
        self.plain.clear();
        self.out.clear();
        for f in frames {
            f.encode_length_delimited(&mut self.plain);
        }
        let records = self.plain.len().div_ceil(MAX_PLAIN);
        self.out.reserve(self.plain.len() + records * (2 + TAG_LEN));
        for chunk in self.plain.chunks(MAX_PLAIN) {
            let ct_len = chunk.len() + TAG_LEN;
            self.out.put_u16(ct_len as u16);
            let start = self.out.len();
            self.out.resize(start + ct_len, 0);
            self.state
                .write_message(self.nonce, chunk, &mut self.out[start..])
                .map_err(|_| TransportError::Closed("noise nonce space exhausted".into()))?;
            self.nonce += 1;
        }
        self.io.write_all(&self.out).await?;
        // a 4 MiB message should not pin 8 MiB per idle connection
        if self.plain.capacity() > 1 << 20 {
            self.plain = BytesMut::new();
            self.out = BytesMut::new();
        }
        Ok(())
    }

    pub(crate) async fn close(&mut self, reason: &str) {
        let _ = self.write(&[Frame::close(reason)]).await;
        let _ = self.io.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9))
    }

    fn pair(
        a: &Keypair,
        b: &Keypair,
        net_a: NetworkId,
        net_b: NetworkId,
    ) -> (NoiseHandshake, NoiseHandshake) {
        let sa = NoiseStatic::generate().unwrap();
        let sb = NoiseStatic::generate().unwrap();
        (
            NoiseHandshake::new(Role::Initiator, TransportKind::Tcp, net_a, a, &sa, addr())
                .unwrap(),
            NoiseHandshake::new(Role::Responder, TransportKind::Tcp, net_b, b, &sb, addr())
                .unwrap(),
        )
    }

    #[test]
    fn xx_handshake_proves_both_identities() {
        let (a, b) = (Keypair::dev("a"), Keypair::dev("b"));
        let (mut i, mut r) = pair(&a, &b, NetworkId(1), NetworkId(1));
        let m1 = i.write().unwrap();
        assert_eq!(r.read(&m1).unwrap(), None);
        let m2 = r.write().unwrap();
        assert_eq!(i.read(&m2).unwrap(), Some(b.id()));
        let m3 = i.write().unwrap();
        assert_eq!(r.read(&m3).unwrap(), Some(a.id()));
        assert!(i.is_finished() && r.is_finished());
        let (ti, tr) = (i.finish().unwrap(), r.finish().unwrap());
        let mut ct = [0u8; 64];
        let n = ti.write_message(0, b"hello", &mut ct).unwrap();
        let mut pt = [0u8; 64];
        let m = tr.read_message(0, &ct[..n], &mut pt).unwrap();
        assert_eq!(&pt[..m], b"hello");
    }

    #[test]
    fn other_network_fails_at_message_2() {
        let (a, b) = (Keypair::dev("a"), Keypair::dev("b"));
        let (mut i, mut r) = pair(&a, &b, NetworkId(1), NetworkId(2));
        let m1 = i.write().unwrap();
        r.read(&m1).unwrap();
        let m2 = r.write().unwrap();
        assert!(matches!(i.read(&m2), Err(TransportError::Handshake { .. })));
    }

    #[test]
    fn binding_from_another_session_is_refused() {
        // Splice b's identity payload from one handshake into another: the handshake hash
        // differs, so the signature must not verify.
        let (a, b) = (Keypair::dev("a"), Keypair::dev("b"));
        let (_, mut r1) = pair(&a, &b, NetworkId(1), NetworkId(1));
        let (mut i2, _) = pair(&a, &b, NetworkId(1), NetworkId(1));
        let stale_hash = r1.hs.get_handshake_hash().to_vec();
        let msg = binding_bytes(Role::Responder, &r1.local_static, &stale_hash);
        let forged = HandshakePayload {
            node: b.id(),
            binding: b.sign(Domain::TransportBinding, NetworkId(1), &msg),
        };
        // a responder whose payload is the stale binding
        let m1 = i2.write().unwrap();
        r1.read(&m1).unwrap();
        let mut out = vec![0u8; MAX_NOISE_MSG];
        let n = r1
            .hs
            .write_message(&forged.encode().unwrap(), &mut out)
            .unwrap();
        assert!(matches!(
            i2.read(&out[..n]),
            Err(TransportError::Handshake { .. })
        ));
    }

    proptest! {
        #[test]
        fn handshake_payload_round_trips(seed in any::<[u8; 32]>(), sig in proptest::collection::vec(any::<u8>(), 64)) {
            let p = HandshakePayload {
                node: Keypair::from_seed(seed).id(),
                binding: Signature(sig.try_into().unwrap()),
            };
            prop_assert_eq!(HandshakePayload::decode(&p.encode().unwrap()).unwrap(), p);
        }

        #[test]
        fn handshake_payload_decode_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = HandshakePayload::decode(&raw);
        }
    }
}
