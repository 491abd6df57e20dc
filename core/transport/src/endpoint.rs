//! The endpoint: one bound socket that both accepts and opens connections. Internally a
//! closed enum over the three transports; the application sees one type.

use crate::conn::Connection;
use crate::stats::{StatsSnapshot, TransportStats};
use crate::{quic, tcp, udp, TransportConfig, TransportError, TransportKind};
use isthmus_core::{Keypair, NodeId};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long `shutdown` waits for connection tasks before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Accepted connections waiting for `accept()`.
const ACCEPT_QUEUE: usize = 64;

/// State every transport implementation shares.
pub(crate) struct Shared {
    pub cfg: TransportConfig,
    pub keypair: Keypair,
    pub stats: Arc<TransportStats>,
    /// Cancelled on shutdown; every connection token is a child of it.
    pub token: CancellationToken,
    /// Owns every task the endpoint spawns.
    pub tracker: TaskTracker,
    slots: Arc<Semaphore>,
    pub accept_tx: mpsc::Sender<Connection>,
}

impl Shared {
    /// Take a connection slot, or count and refuse.
    pub(crate) fn slot(&self) -> Result<OwnedSemaphorePermit, TransportError> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            self.stats.connection_refused();
            TransportError::TooManyConnections(self.cfg.max_connections)
        })
    }

    /// Hand an accepted connection to `accept()`, unless the endpoint shuts down first.
    pub(crate) async fn deliver(&self, conn: Connection) {
        tokio::select! {
            _ = self.accept_tx.send(conn) => {}
            _ = self.token.cancelled() => {}
        }
    }

    /// Log and count a handshake that did not produce a connection.
    pub(crate) fn handshake_error(&self, peer: SocketAddr, e: &TransportError) {
        match e {
            TransportError::PeerNotAllowed(id) | TransportError::UnexpectedPeer { got: id, .. } => {
                self.stats.handshake_refused();
                tracing::warn!(transport = %self.cfg.kind, %peer, key = %id, "refused handshake: {e}");
            }
            _ => {
                self.stats.handshake_failed(e.reason());
                tracing::warn!(transport = %self.cfg.kind, %peer, "handshake failed: {e}");
            }
        }
    }
}

enum Inner {
    Tcp(tcp::TcpEndpoint),
    Udp(udp::UdpEndpoint),
    Quic(quic::QuicEndpoint),
}

/// A bound, authenticated transport endpoint.
pub struct Endpoint {
    inner: Inner,
    shared: Arc<Shared>,
    accept_rx: Mutex<mpsc::Receiver<Connection>>,
}

impl Endpoint {
    /// Validate `cfg`, bind, and start accepting in the background.
    pub async fn bind(cfg: TransportConfig, keypair: Keypair) -> Result<Endpoint, TransportError> {
        cfg.validate().map_err(TransportError::Config)?;
        let (accept_tx, accept_rx) = mpsc::channel(ACCEPT_QUEUE);
        let shared = Arc::new(Shared {
            stats: Arc::new(TransportStats::new(cfg.kind)),
            slots: Arc::new(Semaphore::new(cfg.max_connections)),
            cfg,
            keypair,
            token: CancellationToken::new(),
            tracker: TaskTracker::new(),
            accept_tx,
        });
        let inner = match shared.cfg.kind {
            TransportKind::Tcp => Inner::Tcp(tcp::TcpEndpoint::bind(shared.clone()).await?),
            TransportKind::Udp => Inner::Udp(udp::UdpEndpoint::bind(shared.clone()).await?),
            TransportKind::Quic => Inner::Quic(quic::QuicEndpoint::bind(shared.clone())?),
        };
        tracing::info!(
            transport = %shared.cfg.kind,
            id = %shared.keypair.id(),
            network = %shared.cfg.network,
            "endpoint bound"
        );
        Ok(Endpoint {
            inner,
            shared,
            accept_rx: Mutex::new(accept_rx),
        })
    }

    pub fn kind(&self) -> TransportKind {
        self.shared.cfg.kind
    }

    pub fn local_addr(&self) -> SocketAddr {
        match &self.inner {
            Inner::Tcp(e) => e.local_addr(),
            Inner::Udp(e) => e.local_addr(),
            Inner::Quic(e) => e.local_addr(),
        }
    }

    pub fn local_id(&self) -> NodeId {
        self.shared.keypair.id()
    }

    pub fn config(&self) -> &TransportConfig {
        &self.shared.cfg
    }

    /// Counters of this endpoint.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Open a connection to `addr`. With `expected`, any other identity is refused.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        expected: Option<NodeId>,
    ) -> Result<Connection, TransportError> {
        if self.shared.token.is_cancelled() {
            return Err(TransportError::Closed("endpoint is shut down".into()));
        }
        let res = match &self.inner {
            Inner::Tcp(e) => e.connect(addr, expected).await,
            Inner::Udp(e) => e.connect(addr, expected).await,
            Inner::Quic(e) => e.connect(addr, expected).await,
        };
        if let Err(e) = &res {
            if !matches!(e, TransportError::TooManyConnections(_)) {
                self.shared.handshake_error(addr, e);
            }
        }
        res
    }

    /// The next authenticated inbound connection; `None` after shutdown. Refused and
    /// failed handshakes are logged and counted, never returned.
    pub async fn accept(&self) -> Option<Connection> {
        let mut rx = self.accept_rx.lock().await;
        tokio::select! {
            c = rx.recv() => c,
            _ = self.shared.token.cancelled() => None,
        }
    }

    /// Accept connections until `shutdown` resolves or the endpoint shuts down, serving
    /// each on its own task with `serve`; the connections' tasks are cancelled and awaited
    /// before this returns.
    pub async fn serve_each<F, Fut>(
        &self,
        shutdown: impl std::future::Future<Output = ()>,
        mut serve: F,
    ) where
        F: FnMut(Connection) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        tokio::pin!(shutdown);
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                c = self.accept() => match c {
                    Some(conn) => {
                        conns.spawn(serve(conn));
                    }
                    None => break,
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        conns.shutdown().await;
    }

    /// Stop accepting, close every connection gracefully, and wait (bounded) for the
    /// endpoint's tasks to finish.
    pub async fn shutdown(&self) {
        self.shared.token.cancel();
        self.shared.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.shared.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(transport = %self.shared.cfg.kind, "endpoint tasks still running after shutdown grace");
        }
        if let Inner::Quic(e) = &self.inner {
            e.shutdown().await;
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.shared.token.cancel();
    }
}
