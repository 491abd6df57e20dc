//! QUIC (quinn + rustls, TLS 1.3 only) with certificates derived from the node key.
//!
//! Each endpoint makes a self-signed certificate whose key *is* the node's ed25519
//! identity key (rcgen), so the certificate's public key is the node id. Both sides
//! present certificates (mutual TLS) and each checks the other's by pinning: the
//! verifier extracts the ed25519 key from the certificate, refuses it if it is not the
//! expected id or not on the allowlist, and verifies the TLS 1.3 handshake signature with
//! that same key. No CA, names or validity dates are involved. The ALPN value names the
//! network, so nodes of another network fail the handshake.
//!
//! A connection is one bidirectional stream carrying the length-delimited frames of
//! [`crate::frame`]. The client opens it with a ping; the server confirms with a ping once
//! it has accepted the client, so a refused client gets an error from `connect`.

use crate::conn::{drive_stream, Connection, FrameReader, FrameWriter, Timing, CLOSE_GRACE};
use crate::endpoint::Shared;
use crate::frame::Frame;
use crate::noise::check_peer;
use crate::stats::TransportStats;
use crate::{TransportConfig, TransportError};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use isthmus_core::{FrameCodec, Keypair, NetworkId, NodeId, WireLimits};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::codec::FramedRead;

/// DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410); the key's 32 bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
const SERVER_NAME: &str = "isthmus.invalid";

fn alpn(network: NetworkId) -> Vec<u8> {
    format!("isthmus/1/{network}").into_bytes()
}

/// The node id a certificate's key stands for. Only ed25519 keys are accepted.
pub fn node_id_from_cert(cert: &CertificateDer<'_>) -> Result<NodeId, rustls::Error> {
    let parsed = rustls::server::ParsedCertificate::try_from(cert)?;
    let spki = parsed.subject_public_key_info();
    let raw: &[u8] = spki.as_ref();
    let key = raw
        .strip_prefix(&ED25519_SPKI_PREFIX[..])
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or(rustls::Error::InvalidCertificate(
            CertificateError::BadEncoding,
        ))?;
    Ok(NodeId(key))
}

/// Self-signed certificate and private key, both from the node key.
fn node_certificate(
    keypair: &Keypair,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TransportError> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let signing = ed25519_dalek::SigningKey::from_bytes(&keypair.secret_seed());
    let pkcs8 = signing
        .to_pkcs8_der()
        .map_err(|e| TransportError::Tls(format!("encoding the node key: {e}")))?;
    let key_der = PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec());
    let rc_key = rcgen::KeyPair::try_from(&key_der)
        .map_err(|e| TransportError::Tls(format!("loading the node key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()])
        .map_err(|e| TransportError::Tls(format!("certificate params: {e}")))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, keypair.id().to_string());
    let cert = params
        .self_signed(&rc_key)
        .map_err(|e| TransportError::Tls(format!("self-signing: {e}")))?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(key_der)))
}

#[derive(Debug, Clone, Copy)]
enum Refusal {
    NotAllowed(NodeId),
    Unexpected { expected: NodeId, got: NodeId },
}

impl From<Refusal> for TransportError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NotAllowed(id) => TransportError::PeerNotAllowed(id),
            Refusal::Unexpected { expected, got } => {
                TransportError::UnexpectedPeer { expected, got }
            }
        }
    }
}

/// Pins the peer's certificate key to the expected id and the allowlist.
#[derive(Debug)]
struct PinnedPeer {
    cfg: TransportConfig,
    expected: Option<NodeId>,
    algs: WebPkiSupportedAlgorithms,
    /// Server side: refusals are logged and counted here, where the key is known.
    stats: Option<Arc<TransportStats>>,
    /// Client side: the refusal, turned into the typed error `connect` returns.
    refused: Mutex<Option<Refusal>>,
}

impl PinnedPeer {
    fn new(
        cfg: &TransportConfig,
        expected: Option<NodeId>,
        provider: &CryptoProvider,
        stats: Option<Arc<TransportStats>>,
    ) -> Self {
        PinnedPeer {
            cfg: cfg.clone(),
            expected,
            algs: provider.signature_verification_algorithms,
            stats,
            refused: Mutex::new(None),
        }
    }

    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let got = node_id_from_cert(end_entity)?;
        let refusal = match check_peer(&self.cfg, self.expected, got) {
            Ok(()) => return Ok(()),
            Err(TransportError::UnexpectedPeer { expected, got }) => {
                Refusal::Unexpected { expected, got }
            }
            Err(_) => Refusal::NotAllowed(got),
        };
        if let Some(stats) = &self.stats {
            stats.handshake_refused();
            tracing::warn!(transport = "quic", key = %got, "refused handshake: {}", TransportError::from(refusal));
        }
        if let Ok(mut slot) = self.refused.lock() {
            *slot = Some(refusal);
        }
        Err(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ))
    }

    fn refusal(&self) -> Option<Refusal> {
        self.refused.lock().ok().and_then(|r| *r)
    }
}

impl ServerCertVerifier for PinnedPeer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for PinnedPeer {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

fn tls_err(e: impl std::fmt::Display) -> TransportError {
    TransportError::Tls(e.to_string())
}

fn quinn_transport(cfg: &TransportConfig) -> Result<Arc<quinn::TransportConfig>, TransportError> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(cfg.keepalive));
    t.max_idle_timeout(Some(cfg.idle_timeout.try_into().map_err(tls_err)?));
    t.max_concurrent_bidi_streams(1u32.into());
    t.max_concurrent_uni_streams(0u32.into());
    // room for a few maximum-size messages in flight
    let window = (cfg.limits.max_frame as u64)
        .saturating_mul(2)
        .clamp(1 << 20, 1 << 28);
    t.stream_receive_window(quinn::VarInt::from_u64(window).map_err(tls_err)?);
    t.receive_window(quinn::VarInt::from_u64(window * 2).map_err(tls_err)?);
    t.send_window(window * 2);
    Ok(Arc::new(t))
}

pub(crate) struct QuicEndpoint {
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    provider: Arc<CryptoProvider>,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    transport: Arc<quinn::TransportConfig>,
}

impl QuicEndpoint {
    pub(crate) fn bind(shared: Arc<Shared>) -> Result<Self, TransportError> {
        let cfg = &shared.cfg;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (cert, key) = node_certificate(&shared.keypair)?;
        let verifier = Arc::new(PinnedPeer::new(
            cfg,
            None,
            &provider,
            Some(shared.stats.clone()),
        ));
        let mut tls = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert.clone()], key.clone_key())
            .map_err(tls_err)?;
        tls.alpn_protocols = vec![alpn(cfg.network)];
        let transport = quinn_transport(cfg)?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(
            QuicServerConfig::try_from(tls).map_err(tls_err)?,
        ));
        server.transport_config(transport.clone());
        let endpoint = quinn::Endpoint::server(server, cfg.bind)?;
        let ep = QuicEndpoint {
            endpoint: endpoint.clone(),
            shared: shared.clone(),
            provider,
            cert,
            key,
            transport,
        };
        shared.tracker.clone().spawn(accept_loop(endpoint, shared));
        Ok(ep)
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .unwrap_or_else(|_| self.shared.cfg.bind)
    }

    pub(crate) async fn connect(
        &self,
        addr: SocketAddr,
        expected: Option<NodeId>,
    ) -> Result<Connection, TransportError> {
        let permit = self.shared.slot()?;
        let cfg = &self.shared.cfg;
        let verifier = Arc::new(PinnedPeer::new(cfg, expected, &self.provider, None));
        let mut tls = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_err)?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_client_auth_cert(vec![self.cert.clone()], self.key.clone_key())
            .map_err(tls_err)?;
        tls.alpn_protocols = vec![alpn(cfg.network)];
        let mut client =
            quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).map_err(tls_err)?));
        client.transport_config(self.transport.clone());
        let fail = |reason: String| TransportError::Handshake { peer: addr, reason };
        let handshake = async {
            let connecting = self
                .endpoint
                .connect_with(client, addr, SERVER_NAME)
                .map_err(|e| fail(e.to_string()))?;
            let conn = connecting.await.map_err(|e| match verifier.refusal() {
                Some(r) => r.into(),
                None => client_failure(addr, &e),
            })?;
            let remote = peer_id(&conn).ok_or_else(|| fail("no peer certificate".into()))?;
            // Under TLS 1.3 the server judges our certificate after our side of the
            // handshake is done: a refusal may surface at any step below, as whatever the
            // stream saw ("connection lost"). The connection's close reason names it.
            let closed = |fallback: TransportError| match conn.close_reason() {
                Some(reason) => client_failure(addr, &reason),
                None => fallback,
            };
            let (send, recv) = conn.open_bi().await.map_err(|e| client_failure(addr, &e))?;
            let mut writer = QuicWriter::new(conn.clone(), send);
            let mut reader = QuicReader::new(recv, cfg.limits);
            writer.write(&[Frame::Ping]).await.map_err(closed)?;
            match reader.next().await {
                Some(Ok(raw)) if Frame::decode(raw.clone()).ok() == Some(Frame::Ping) => {}
                Some(Ok(_)) => return Err(fail("peer sent data before confirming".into())),
                Some(Err(e)) => {
                    return Err(closed(fail(format!(
                        "{remote} did not confirm the connection (refused by its allowlist?): {e}"
                    ))))
                }
                None => {
                    return Err(closed(fail(format!(
                        "{remote} closed instead of confirming"
                    ))))
                }
            }
            Ok((remote, reader, writer))
        };
        let (remote, reader, writer) = tokio::time::timeout(cfg.handshake_timeout, handshake)
            .await
            .map_err(|_| TransportError::Timeout("running the quic handshake"))??;
        Ok(start(&self.shared, remote, addr, reader, writer, permit))
    }

    pub(crate) async fn shutdown(&self) {
        self.endpoint.close(0u32.into(), b"endpoint shutdown");
        let _ = tokio::time::timeout(CLOSE_GRACE, self.endpoint.wait_idle()).await;
    }
}

/// The client's view of a failed handshake, naming a refusal by the server's verifier
/// (TLS 1.3 clients may only learn of it after their side of the handshake completed).
fn client_failure(addr: SocketAddr, e: &quinn::ConnectionError) -> TransportError {
    let reason = if refused_certificate(e, false) {
        format!("the peer refused our certificate (are we on its allowlist?): {e}")
    } else {
        e.to_string()
    };
    TransportError::Handshake { peer: addr, reason }
}

fn peer_id(conn: &quinn::Connection) -> Option<NodeId> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    node_id_from_cert(certs.first()?).ok()
}

fn start(
    shared: &Arc<Shared>,
    remote: NodeId,
    addr: SocketAddr,
    reader: QuicReader,
    writer: QuicWriter,
    permit: OwnedSemaphorePermit,
) -> Connection {
    shared.stats.handshake_ok();
    let cfg = &shared.cfg;
    let (conn, io) = Connection::new(remote, addr, cfg, cfg.limits.max_frame, &shared.token);
    let stats = shared.stats.clone();
    let timing = Timing::from(cfg);
    shared.tracker.spawn(async move {
        drive_stream(
            FrameReader::Quic(reader),
            FrameWriter::Quic(writer),
            io,
            timing,
            stats,
            remote,
        )
        .await;
        drop(permit);
    });
    conn
}

/// True when a certificate was refused: by our own verifier (`local`, already logged and
/// counted there) or by the peer's.
fn refused_certificate(e: &quinn::ConnectionError, local: bool) -> bool {
    let refusal = |code: quinn::TransportErrorCode| {
        [
            rustls::AlertDescription::AccessDenied,
            rustls::AlertDescription::BadCertificate,
        ]
        .iter()
        .any(|a| code == quinn::TransportErrorCode::crypto(u8::from(*a)))
    };
    match e {
        quinn::ConnectionError::TransportError(t) if local => refusal(t.code),
        quinn::ConnectionError::ConnectionClosed(c) if !local => refusal(c.error_code),
        _ => false,
    }
}

async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    loop {
        let incoming = tokio::select! {
            _ = shared.token.cancelled() => return,
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => return,
            },
        };
        let addr = incoming.remote_address();
        let Ok(permit) = shared.slot() else {
            tracing::warn!(peer = %addr, limit = shared.cfg.max_connections, "refused quic connection: connection limit reached");
            incoming.refuse();
            continue;
        };
        let shared2 = shared.clone();
        shared.tracker.spawn(async move {
            let cfg = &shared2.cfg;
            let handshake = async {
                let fail = |reason: String| TransportError::Handshake { peer: addr, reason };
                let conn = match incoming.await {
                    Ok(c) => c,
                    Err(e) if refused_certificate(&e, true) => return Ok(None),
                    Err(e) => return Err(fail(e.to_string())),
                };
                let remote = peer_id(&conn).ok_or_else(|| fail("no peer certificate".into()))?;
                let (send, recv) = conn.accept_bi().await.map_err(|e| fail(e.to_string()))?;
                let mut reader = QuicReader::new(recv, cfg.limits);
                let mut writer = QuicWriter::new(conn, send);
                match reader.next().await {
                    Some(Ok(raw)) if Frame::decode(raw.clone()).ok() == Some(Frame::Ping) => {}
                    _ => return Err(fail("client did not open the stream with a ping".into())),
                }
                writer.write(&[Frame::Ping]).await?;
                Ok(Some((remote, reader, writer)))
            };
            let res = tokio::time::timeout(cfg.handshake_timeout, handshake)
                .await
                .map_err(|_| TransportError::Timeout("running the quic handshake"))
                .and_then(|r| r);
            match res {
                Ok(Some((remote, reader, writer))) => {
                    let conn = start(&shared2, remote, addr, reader, writer, permit);
                    tracing::info!(transport = "quic", peer = %addr, key = %remote, "accepted connection");
                    shared2.deliver(conn).await;
                }
                Ok(None) => {}
                Err(e) => shared2.handshake_error(addr, &e),
            }
        });
    }
}

pub(crate) struct QuicReader {
    frames: FramedRead<quinn::RecvStream, FrameCodec>,
}

impl QuicReader {
    fn new(recv: quinn::RecvStream, limits: WireLimits) -> Self {
        QuicReader {
            frames: FramedRead::new(
                recv,
                FrameCodec::new(WireLimits {
                    max_frame: limits.max_frame.saturating_add(1),
                    max_depth: limits.max_depth,
                }),
            ),
        }
    }

    pub(crate) async fn next(&mut self) -> Option<Result<Bytes, TransportError>> {
        match self.frames.next().await? {
            Ok(f) => Some(Ok(f.freeze())),
            Err(isthmus_core::WireError::Io(e)) => Some(Err(TransportError::Closed(e.to_string()))),
            Err(e) => Some(Err(e.into())),
        }
    }
}

pub(crate) struct QuicWriter {
    conn: quinn::Connection,
    send: quinn::SendStream,
    buf: BytesMut,
}

impl QuicWriter {
    fn new(conn: quinn::Connection, send: quinn::SendStream) -> Self {
        QuicWriter {
            conn,
            send,
            buf: BytesMut::new(),
        }
    }

    pub(crate) async fn write(&mut self, frames: &[Frame]) -> Result<(), TransportError> {
        self.buf.clear();
        for f in frames {
            f.encode_length_delimited(&mut self.buf);
        }
        self.send
            .write_all(&self.buf)
            .await
            .map_err(|e| TransportError::Closed(e.to_string()))?;
        if self.buf.capacity() > 1 << 20 {
            self.buf = BytesMut::new();
        }
        Ok(())
    }

    pub(crate) async fn close(&mut self, reason: &str) {
        if self.write(&[Frame::close(reason)]).await.is_ok() {
            let _ = self.send.finish();
            // the peer closes the connection once it has read our close frame
            let _ = tokio::time::timeout(CLOSE_GRACE, self.conn.closed()).await;
        }
    }

    pub(crate) fn teardown(&mut self, reason: &str) {
        self.conn.close(0u32.into(), reason.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_key_is_the_node_key() {
        let k = Keypair::dev("quic");
        let (cert, _) = node_certificate(&k).unwrap();
        assert_eq!(node_id_from_cert(&cert).unwrap(), k.id());
    }

    #[test]
    fn garbage_certificate_is_refused() {
        let junk = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(node_id_from_cert(&junk).is_err());
    }
}
