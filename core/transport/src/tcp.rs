//! TCP with the Noise handshake of [`crate::noise`].

use crate::conn::{drive_stream, Connection, FrameReader, FrameWriter, Timing};
use crate::endpoint::Shared;
use crate::noise::{tcp_handshake, NoiseStatic, Role};
use crate::TransportError;
use isthmus_core::NodeId;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;

pub(crate) struct TcpEndpoint {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    noise_static: Arc<NoiseStatic>,
}

impl TcpEndpoint {
    pub(crate) async fn bind(shared: Arc<Shared>) -> Result<Self, TransportError> {
        let listener = TcpListener::bind(shared.cfg.bind).await?;
        let local_addr = listener.local_addr()?;
        let noise_static = Arc::new(NoiseStatic::generate()?);
        let ep = TcpEndpoint {
            local_addr,
            shared: shared.clone(),
            noise_static: noise_static.clone(),
        };
        shared
            .tracker
            .clone()
            .spawn(accept_loop(listener, shared, noise_static));
        Ok(ep)
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
        let cfg = &self.shared.cfg;
        let stream = tokio::time::timeout(cfg.handshake_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| TransportError::Timeout("connecting"))??;
        stream.set_nodelay(true)?;
        let session = tokio::time::timeout(
            cfg.handshake_timeout,
            tcp_handshake(
                stream,
                Role::Initiator,
                cfg,
                &self.shared.keypair,
                &self.noise_static,
                expected,
            ),
        )
        .await
        .map_err(|_| TransportError::Timeout("running the noise handshake"))??;
        Ok(start(&self.shared, session, addr, permit))
    }
}

fn start(
    shared: &Arc<Shared>,
    session: crate::noise::NoiseSession,
    addr: SocketAddr,
    permit: OwnedSemaphorePermit,
) -> Connection {
    shared.stats.handshake_ok();
    let cfg = &shared.cfg;
    let (conn, io) = Connection::new(
        session.remote,
        addr,
        cfg,
        cfg.limits.max_frame,
        &shared.token,
    );
    let stats = shared.stats.clone();
    let timing = Timing::from(cfg);
    shared.tracker.spawn(async move {
        drive_stream(
            FrameReader::Noise(session.reader),
            FrameWriter::Noise(session.writer),
            io,
            timing,
            stats,
            session.remote,
        )
        .await;
        drop(permit);
    });
    conn
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, noise_static: Arc<NoiseStatic>) {
    loop {
        let (stream, addr) = tokio::select! {
            _ = shared.token.cancelled() => return,
            res = listener.accept() => match res {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning
                    tracing::warn!("tcp accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = shared.slot() else {
            tracing::warn!(peer = %addr, limit = shared.cfg.max_connections, "refused tcp connection: connection limit reached");
            continue;
        };
        let shared2 = shared.clone();
        let noise_static = noise_static.clone();
        shared.tracker.spawn(async move {
            let _ = stream.set_nodelay(true);
            let cfg = &shared2.cfg;
            let res = tokio::time::timeout(
                cfg.handshake_timeout,
                tcp_handshake(stream, Role::Responder, cfg, &shared2.keypair, &noise_static, None),
            )
            .await
            .map_err(|_| TransportError::Timeout("running the noise handshake"))
            .and_then(|r| r);
            match res {
                Ok(session) => {
                    let conn = start(&shared2, session, addr, permit);
                    tracing::info!(transport = "tcp", peer = %addr, key = %conn.remote_id(), "accepted connection");
                    shared2.deliver(conn).await;
                }
                Err(e) => shared2.handshake_error(addr, &e),
            }
        });
    }
}
