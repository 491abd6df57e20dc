//! Calls and answers over one authenticated connection: a [`RpcClient`] sends a request
//! framed with an id of its choosing, a [`serve`]d [`Service`] answers it with the same id,
//! so calls on one connection may be answered out of order and many may be in flight.
//!
//! Both sides sit on an [`Endpoint`], so every call travels over the transport's handshake:
//! the client talks only to the identity it expects, and the service learns the proven
//! identity of every caller (its access decisions use it). A frame that does not decode
//! closes the connection; a request body that does not decode is answered with the
//! service's own refusal, naming the reason.
//!
//! The client connects lazily and reconnects after a failure, waiting a growing, jittered
//! delay between attempts, so a peer that restarts is found again without the caller
//! managing connections.

use crate::{ConnSender, Connection, Endpoint, TransportError};
use bytes::Bytes;
use futures::future::BoxFuture;
use isthmus_core::{Backoff, NodeId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Semaphore};
use tokio::time::Instant;

/// Requests one connection may have in flight at the service; more wait for a slot.
pub const MAX_IN_FLIGHT: usize = 64;

/// One request or answer on the wire: the caller's id and the encoded body.
#[derive(Debug, Serialize, Deserialize)]
struct Frame {
    id: u64,
    body: ByteBuf,
}

/// Why a call got no answer. Only [`RpcError::Unreachable`] and [`RpcError::Timeout`] may
/// clear up by themselves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    #[error("{peer} at {addr} is unreachable: {reason}")]
    Unreachable {
        peer: NodeId,
        addr: SocketAddr,
        reason: String,
    },
    #[error("{peer} at {addr} did not answer within {after:?}")]
    Timeout {
        peer: NodeId,
        addr: SocketAddr,
        after: Duration,
    },
    /// The request could not be encoded, or the answer did not decode as the call's answer.
    #[error("call to {peer}: {reason}")]
    Protocol { peer: NodeId, reason: String },
}

impl RpcError {
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            RpcError::Unreachable { .. } | RpcError::Timeout { .. }
        )
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Bytes>>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Session {
    sender: ConnSender,
    pending: Pending,
    alive: Arc<AtomicBool>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[derive(Default)]
struct Retry {
    failures: u32,
    at: Option<Instant>,
    last_error: String,
}

/// The calling side: one peer, one connection at a time, reconnected on demand. Cheap to
/// clone.
#[derive(Clone)]
pub struct RpcClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    endpoint: Endpoint,
    addr: SocketAddr,
    peer: NodeId,
    call_timeout: Duration,
    backoff: Backoff,
    session: tokio::sync::Mutex<Option<Session>>,
    next_id: AtomicU64,
    retry: Mutex<Retry>,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RpcClient({} at {})", self.inner.peer, self.inner.addr)
    }
}

impl RpcClient {
    /// A client of `peer` at `addr`, calling from `endpoint` (which should admit only
    /// `peer`). Nothing is sent until the first call.
    pub fn new(endpoint: Endpoint, addr: SocketAddr, peer: NodeId, call_timeout: Duration) -> Self {
        RpcClient {
            inner: Arc::new(ClientInner {
                endpoint,
                addr,
                peer,
                call_timeout,
                backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
                session: tokio::sync::Mutex::new(None),
                next_id: AtomicU64::new(1),
                retry: Mutex::new(Retry::default()),
            }),
        }
    }

    pub fn peer(&self) -> NodeId {
        self.inner.peer
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Send `req` and wait (bounded by the call timeout) for its answer.
    pub async fn call<Q: Serialize, A: DeserializeOwned>(&self, req: &Q) -> Result<A, RpcError> {
        let i = &self.inner;
        let body = rmp_serde::to_vec_named(req).map_err(|e| RpcError::Protocol {
            peer: i.peer,
            reason: format!("cannot encode the request: {e}"),
        })?;
        let (id, rx) = {
            let mut slot = i.session.lock().await;
            let session = i.session(&mut slot).await?;
            let id = i.next_id.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            lock(&session.pending).insert(id, tx);
            let frame = Frame {
                id,
                body: ByteBuf::from(body),
            };
            if let Err(e) = session.sender.send_msg(&frame).await {
                lock(&session.pending).remove(&id);
                *slot = None;
                return Err(i.unreachable(e.to_string()));
            }
            (id, rx)
        };
        let raw = match tokio::time::timeout(i.call_timeout, rx).await {
            Ok(Ok(raw)) => raw,
            Ok(Err(_)) => return Err(i.unreachable("the connection closed".into())),
            Err(_) => {
                if let Some(s) = i.session.lock().await.as_ref() {
                    lock(&s.pending).remove(&id);
                }
                return Err(RpcError::Timeout {
                    peer: i.peer,
                    addr: i.addr,
                    after: i.call_timeout,
                });
            }
        };
        rmp_serde::from_slice(&raw).map_err(|e| RpcError::Protocol {
            peer: i.peer,
            reason: format!("the answer does not decode: {e}"),
        })
    }

    /// Close the connection and the local endpoint.
    pub async fn close(&self) {
        *self.inner.session.lock().await = None;
        self.inner.endpoint.shutdown().await;
    }
}

impl ClientInner {
    fn unreachable(&self, reason: String) -> RpcError {
        RpcError::Unreachable {
            peer: self.peer,
            addr: self.addr,
            reason,
        }
    }

    /// The live session, opening one if there is none (not before the backoff allows).
    async fn session<'a>(&self, slot: &'a mut Option<Session>) -> Result<&'a Session, RpcError> {
        if slot
            .as_ref()
            .is_some_and(|s| !s.alive.load(Ordering::Acquire))
        {
            *slot = None;
        }
        if slot.is_none() {
            {
                let r = lock(&self.retry);
                if let Some(at) = r.at {
                    if Instant::now() < at {
                        return Err(self.unreachable(format!(
                            "{} (next attempt in {:?})",
                            r.last_error,
                            at - Instant::now()
                        )));
                    }
                }
            }
            match self.endpoint.connect(self.addr, Some(self.peer)).await {
                Ok(conn) => {
                    *lock(&self.retry) = Retry::default();
                    *slot = Some(open(conn));
                }
                Err(e) => {
                    let mut r = lock(&self.retry);
                    r.failures = r.failures.saturating_add(1);
                    r.at = Some(Instant::now() + self.backoff.delay(r.failures - 1));
                    r.last_error = e.to_string();
                    return Err(self.unreachable(e.to_string()));
                }
            }
        }
        slot.as_ref()
            .ok_or_else(|| self.unreachable("no connection".into()))
    }
}

/// Start reading answers on `conn`; each wakes the call waiting for its id.
fn open(mut conn: Connection) -> Session {
    let pending: Pending = Arc::default();
    let alive = Arc::new(AtomicBool::new(true));
    let sender = conn.sender();
    let reader = {
        let (pending, alive) = (pending.clone(), alive.clone());
        tokio::spawn(async move {
            while let Some(msg) = conn.recv_msg::<Frame>().await {
                match msg {
                    Ok(f) => {
                        if let Some(tx) = lock(&pending).remove(&f.id) {
                            let _ = tx.send(Bytes::from(f.body.into_vec()));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(peer = %conn.remote_id(), "rpc answer refused: {e}");
                        conn.close("malformed answer").await;
                        break;
                    }
                }
            }
            alive.store(false, Ordering::Release);
            // Every call still waiting learns at once that no answer will come.
            lock(&pending).clear();
        })
    };
    Session {
        sender,
        pending,
        alive,
        reader,
    }
}

/// The answering side of a protocol.
pub trait Service: Send + Sync + 'static {
    type Request: DeserializeOwned + Send + 'static;
    type Answer: Serialize + Send + 'static;

    /// Answer `req` from the authenticated `caller`.
    fn call(&self, caller: NodeId, req: Self::Request) -> BoxFuture<'static, Self::Answer>;

    /// The answer to a request whose body does not decode.
    fn malformed(&self, reason: String) -> Self::Answer;
}

/// Answer calls on every connection `endpoint` accepts until `shutdown` resolves; each
/// connection may have [`MAX_IN_FLIGHT`] calls in progress.
pub async fn serve<S: Service>(
    endpoint: &Endpoint,
    service: Arc<S>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    endpoint
        .serve_each(shutdown, |conn| connection(conn, service.clone()))
        .await;
}

async fn connection<S: Service>(mut conn: Connection, service: Arc<S>) {
    let caller = conn.remote_id();
    let sender = conn.sender();
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut calls = tokio::task::JoinSet::new();
    while let Some(msg) = conn.recv_msg::<Frame>().await {
        let frame = match msg {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(%caller, "rpc request refused: {e}");
                conn.close("malformed frame").await;
                break;
            }
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let (service, sender) = (service.clone(), sender.clone());
        calls.spawn(async move {
            let answer = match rmp_serde::from_slice::<S::Request>(&frame.body) {
                Ok(req) => service.call(caller, req).await,
                Err(e) => service.malformed(format!("the request does not decode: {e}")),
            };
            let body = rmp_serde::to_vec_named(&answer);
            drop(answer);
            if let Err(e) = reply(&sender, frame.id, body).await {
                tracing::debug!(%caller, "rpc answer not sent: {e}");
            }
            drop(permit);
        });
        while calls.try_join_next().is_some() {}
    }
    calls.shutdown().await;
}

async fn reply(
    sender: &ConnSender,
    id: u64,
    body: Result<Vec<u8>, rmp_serde::encode::Error>,
) -> Result<(), TransportError> {
    let body =
        body.map_err(|e| TransportError::Closed(format!("cannot encode the answer: {e}")))?;
    sender
        .send_msg(&Frame {
            id,
            body: ByteBuf::from(body),
        })
        .await
}
