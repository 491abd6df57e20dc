//! The hub side: [`RemoteAdapter`] implements [`Adapter`] by calling an out-of-process
//! adapter over an authenticated Noise-TCP connection.
//!
//! Trust: the connection proves the peer holds the registered identity key, so the adapter
//! is trusted for liveness only. Every answer is checked for shape (the answer kind must fit
//! the call) and for the consistency the hub can see on its own (the network id of the
//! descriptor, heads and event pages that make sense, a verification result that matches
//! the evidence it is about). An adapter caught lying is marked misbehaving: from then on
//! every call fails with [`AdapterError::Misbehaving`] and [`Adapter::health`] reports it
//! unhealthy, until the provider registers it again.

use crate::wire::{Answer, Call, Control, Describe, Request, Response, PROTOCOL_VERSION};
use async_trait::async_trait;
use isthmus_adapter_api::{
    Adapter, AdapterError, Checkpoint, ClaimRequest, EventPage, Evidence, Heads, Health,
    LockRequest, OnChainLock, PlatformDescriptor, RefundRequest, ReleaseRequest, SignedTx,
    TxStatus, Verified,
};
use isthmus_core::{Keypair, NetworkId, NodeId, WireLimits};
use isthmus_lock_contracts::{Address, Amount, AssetId, LockId, TxId};
use isthmus_transport::{ConnSender, Endpoint, TransportConfig, TransportError, TransportKind};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How to reach and judge one out-of-process adapter.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// The network the provider registered the adapter for; its descriptor must agree.
    pub network: NetworkId,
    /// The provider's name for it; shown in the platform listing.
    pub name: String,
    pub endpoint: SocketAddr,
    /// The adapter's registered ed25519 identity: the Noise handshake must prove it.
    pub identity: NodeId,
    /// Bound on one call, from sending the request to reading its answer.
    pub call_timeout: Duration,
    /// Bound on connecting and the handshake.
    pub connect_timeout: Duration,
    /// Reconnect backoff: first delay and cap (doubling, with jitter).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Largest message either way.
    pub limits: WireLimits,
}

impl RemoteConfig {
    pub fn new(network: NetworkId, name: &str, endpoint: SocketAddr, identity: NodeId) -> Self {
        RemoteConfig {
            network,
            name: name.to_owned(),
            endpoint,
            identity,
            call_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            limits: WireLimits::default(),
        }
    }
}

/// Why an adapter could not be attached. `Unreachable` may clear up; the others need the
/// provider to fix the adapter or its registration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    #[error("adapter at {endpoint} is unreachable: {reason}")]
    Unreachable {
        endpoint: SocketAddr,
        reason: String,
    },
    #[error("adapter at {endpoint} did not prove identity {expected}: {reason}")]
    Unauthenticated {
        endpoint: SocketAddr,
        expected: NodeId,
        reason: String,
    },
    #[error("adapter at {endpoint} misbehaved: {reason}")]
    Misbehaving {
        endpoint: SocketAddr,
        reason: String,
    },
    #[error("adapter at {endpoint} is unhealthy: {reason}")]
    Unhealthy {
        endpoint: SocketAddr,
        reason: String,
    },
}

impl RemoteError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, RemoteError::Unreachable { .. })
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Response>>>>;

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
struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
}

struct Inner {
    cfg: RemoteConfig,
    endpoint: Endpoint,
    session: tokio::sync::Mutex<Option<Session>>,
    next_id: AtomicU64,
    misbehaving: Arc<Mutex<Option<String>>>,
    backoff: Mutex<Backoff>,
}

/// An out-of-process adapter, seen from the hub. Cheap to clone.
#[derive(Clone)]
pub struct RemoteAdapter {
    descriptor: Arc<PlatformDescriptor>,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RemoteAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RemoteAdapter({} network {} at {})",
            self.inner.cfg.name, self.inner.cfg.network, self.inner.cfg.endpoint
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RemoteAdapter {
    /// Connect, authenticate the adapter by `cfg.identity`, read its descriptor (which must
    /// name `cfg.network` and declare consistent capabilities) and check that it is
    /// healthy. `hub_key` is the identity the hub presents.
    pub async fn connect(
        cfg: RemoteConfig,
        hub_key: Keypair,
    ) -> Result<RemoteAdapter, RemoteError> {
        let bind: SocketAddr = if cfg.endpoint.ip().is_loopback() {
            SocketAddr::from(([127, 0, 0, 1], 0))
        } else {
            SocketAddr::from(([0, 0, 0, 0], 0))
        };
        let mut tc = TransportConfig::new(TransportKind::Tcp, bind);
        tc.network = cfg.network;
        tc.limits = cfg.limits;
        tc.handshake_timeout = cfg.connect_timeout;
        tc.allowlist = Some(BTreeSet::from([cfg.identity]));
        tc.max_connections = 4;
        let endpoint = Endpoint::bind(tc, hub_key)
            .await
            .map_err(|e| RemoteError::Unreachable {
                endpoint: cfg.endpoint,
                reason: format!("cannot open a local endpoint: {e}"),
            })?;
        let inner = Arc::new(Inner {
            cfg,
            endpoint,
            session: tokio::sync::Mutex::new(None),
            next_id: AtomicU64::new(1),
            misbehaving: Arc::default(),
            backoff: Mutex::new(Backoff::default()),
        });
        let at = inner.cfg.endpoint;
        let descriptor = {
            let mut slot = inner.session.lock().await;
            let (session, descriptor) = inner.open().await.map_err(|e| match e {
                OpenError::Transport(TransportError::UnexpectedPeer { .. })
                | OpenError::Transport(TransportError::PeerNotAllowed(_))
                | OpenError::Transport(TransportError::Handshake { .. }) => {
                    RemoteError::Unauthenticated {
                        endpoint: at,
                        expected: inner.cfg.identity,
                        reason: e.to_string(),
                    }
                }
                OpenError::Transport(_) | OpenError::Call(_) => RemoteError::Unreachable {
                    endpoint: at,
                    reason: e.to_string(),
                },
                OpenError::Lie(reason) => RemoteError::Misbehaving {
                    endpoint: at,
                    reason,
                },
            })?;
            *slot = Some(session);
            descriptor
        };
        let remote = RemoteAdapter {
            descriptor: Arc::new(descriptor),
            inner,
        };
        match remote.health().await {
            Ok(Health::Unhealthy { reason }) => Err(RemoteError::Unhealthy {
                endpoint: at,
                reason,
            }),
            Ok(_) => Ok(remote),
            Err(e) => Err(RemoteError::Unreachable {
                endpoint: at,
                reason: e.to_string(),
            }),
        }
    }

    pub fn config(&self) -> &RemoteConfig {
        &self.inner.cfg
    }

    /// Why the adapter was marked misbehaving, if it was.
    pub fn misbehaviour(&self) -> Option<String> {
        lock(&self.inner.misbehaving).clone()
    }

    /// Drive a test platform (`control` calls); real chains answer `unsupported`.
    pub async fn control(&self, control: Control) -> Result<Answer, AdapterError> {
        self.inner.call(Call::Control { control }).await
    }

    /// Close the connection and the local endpoint.
    pub async fn close(&self) {
        self.inner.session.lock().await.take();
        self.inner.endpoint.shutdown().await;
    }

    fn lie<T>(&self, reason: String) -> Result<T, AdapterError> {
        Err(self.inner.mark_misbehaving(reason))
    }
}

#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error("{0}")]
    Transport(TransportError),
    #[error("{0}")]
    Call(AdapterError),
    #[error("{0}")]
    Lie(String),
}

impl Inner {
    fn network(&self) -> NetworkId {
        self.cfg.network
    }

    fn mark_misbehaving(&self, reason: String) -> AdapterError {
        let mut m = lock(&self.misbehaving);
        if m.is_none() {
            tracing::error!(network = %self.cfg.network, adapter = %self.cfg.name, %reason, "remote adapter misbehaved; marked unhealthy");
            *m = Some(reason.clone());
        }
        AdapterError::Misbehaving {
            network: self.cfg.network,
            reason: m.clone().unwrap_or(reason),
        }
    }

    /// Open a session and read the descriptor; the caller holds the session slot.
    async fn open(&self) -> Result<(Session, PlatformDescriptor), OpenError> {
        let conn = tokio::time::timeout(
            self.cfg.connect_timeout,
            self.endpoint
                .connect(self.cfg.endpoint, Some(self.cfg.identity)),
        )
        .await
        .map_err(|_| OpenError::Transport(TransportError::Timeout("connecting to the adapter")))?
        .map_err(OpenError::Transport)?;
        let pending: Pending = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let sender = conn.sender();
        let reader = tokio::spawn(read_answers(
            conn,
            pending.clone(),
            alive.clone(),
            self.misbehaving.clone(),
            self.cfg.limits,
            self.cfg.network,
        ));
        let session = Session {
            sender,
            pending,
            alive,
            reader,
        };
        let answer = self
            .exchange(&session.sender, &session.pending, Call::Describe)
            .await
            .map_err(OpenError::Call)?;
        let Answer::Describe(Describe {
            protocol,
            mut descriptor,
        }) = answer
        else {
            return Err(OpenError::Lie(format!(
                "`describe` answered with `{}`",
                answer.kind()
            )));
        };
        if protocol != PROTOCOL_VERSION {
            return Err(OpenError::Lie(format!(
                "adapter speaks protocol {protocol}, the hub speaks {PROTOCOL_VERSION}"
            )));
        }
        if descriptor.network != self.cfg.network {
            return Err(OpenError::Lie(format!(
                "descriptor names network {} but the adapter is registered for network {}",
                descriptor.network, self.cfg.network
            )));
        }
        let problems = descriptor.capabilities.problems();
        if !problems.is_empty() {
            return Err(OpenError::Lie(format!(
                "inconsistent capabilities: {}",
                problems.join("; ")
            )));
        }
        descriptor.name = self.cfg.name.clone();
        Ok((session, descriptor))
    }

    /// Send one call on `session` and wait (bounded) for its answer.
    async fn exchange(
        &self,
        sender: &ConnSender,
        pending: &Pending,
        call: Call,
    ) -> Result<Answer, AdapterError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let op = call.op();
        let (tx, rx) = oneshot::channel();
        lock(pending).insert(id, tx);
        let unavailable = |reason: String| AdapterError::Unavailable {
            network: self.cfg.network,
            reason,
        };
        if let Err(e) = sender.send_msg(&Request { id, call }).await {
            lock(pending).remove(&id);
            return Err(match e {
                TransportError::MessageTooLarge { .. } | TransportError::Wire(_) => {
                    AdapterError::InvalidRequest {
                        reason: format!("`{op}` request cannot be sent: {e}"),
                    }
                }
                other => unavailable(format!("sending `{op}`: {other}")),
            });
        }
        let resp = match tokio::time::timeout(self.cfg.call_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => {
                return Err(unavailable(format!(
                    "connection lost while waiting for `{op}`"
                )))
            }
            Err(_) => {
                lock(pending).remove(&id);
                return Err(AdapterError::Timeout {
                    network: self.cfg.network,
                    op: op.to_owned(),
                });
            }
        };
        match (resp.ok, resp.err) {
            (Some(a), None) => Ok(a),
            (None, Some(e)) => Err(e),
            _ => Err(self.mark_misbehaving(format!(
                "answer to `{op}` (id {id}) holds neither or both of `ok` and `err`"
            ))),
        }
    }

    /// One call, reconnecting first if the session is down (unless backing off).
    async fn call(&self, call: Call) -> Result<Answer, AdapterError> {
        if let Some(reason) = lock(&self.misbehaving).clone() {
            return Err(AdapterError::Misbehaving {
                network: self.network(),
                reason,
            });
        }
        let op = call.op();
        let mut slot = self.session.lock().await;
        let usable = slot
            .as_ref()
            .is_some_and(|s| s.alive.load(Ordering::Acquire));
        if !usable {
            slot.take();
            {
                let b = lock(&self.backoff);
                if b.retry_at.is_some_and(|t| Instant::now() < t) {
                    return Err(AdapterError::Unavailable {
                        network: self.network(),
                        reason: format!("reconnecting after: {}", b.last_error),
                    });
                }
            }
            match self.open().await {
                Ok((session, descriptor)) => {
                    tracing::info!(network = %self.network(), consensus = %descriptor.consensus, "reconnected to the remote adapter");
                    *lock(&self.backoff) = Backoff::default();
                    *slot = Some(session);
                }
                Err(OpenError::Lie(reason)) => return Err(self.mark_misbehaving(reason)),
                Err(e) => {
                    let mut b = lock(&self.backoff);
                    b.failures = b.failures.saturating_add(1);
                    let delay =
                        isthmus_core::Backoff::new(self.cfg.backoff_min, self.cfg.backoff_max)
                            .with_jitter(0.25)
                            .delay(b.failures.saturating_sub(1));
                    b.retry_at = Some(Instant::now() + delay);
                    b.last_error = e.to_string();
                    return Err(AdapterError::Unavailable {
                        network: self.network(),
                        reason: format!("`{op}`: {e}"),
                    });
                }
            }
        }
        let Some(session) = slot.as_ref() else {
            return Err(AdapterError::Unavailable {
                network: self.network(),
                reason: "no session".into(),
            });
        };
        // Calls run concurrently: only opening a session holds the slot.
        let (sender, pending) = (session.sender.clone(), session.pending.clone());
        drop(slot);
        self.exchange(&sender, &pending, call).await
    }
}

/// Route answers to their callers until the connection ends, then fail every waiting call.
async fn read_answers(
    mut conn: isthmus_transport::Connection,
    pending: Pending,
    alive: Arc<AtomicBool>,
    misbehaving: Arc<Mutex<Option<String>>>,
    limits: WireLimits,
    network: NetworkId,
) {
    while let Some(frame) = conn.recv().await {
        let bytes = match frame {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(%network, %e, "connection to the remote adapter failed");
                break;
            }
        };
        match isthmus_core::codec::decode_body::<Response>(&bytes, &limits) {
            Ok(r) => {
                let waiter = lock(&pending).remove(&r.id);
                match waiter {
                    Some(w) => {
                        let _ = w.send(r);
                    }
                    // A late answer to a call that timed out.
                    None => tracing::debug!(%network, id = r.id, "answer to no waiting call"),
                }
            }
            Err(e) => {
                let reason = format!("unreadable answer: {e}");
                tracing::error!(%network, %reason, "remote adapter misbehaved; marked unhealthy");
                lock(&misbehaving).get_or_insert(reason);
                break;
            }
        }
    }
    alive.store(false, Ordering::Release);
    lock(&pending).clear();
}

/// Unwrap the answer variant a call expects; any other is a lie about the protocol.
macro_rules! expect {
    ($self:ident, $call:expr, $variant:ident) => {{
        let call = $call;
        let op = call.op();
        match $self.inner.call(call).await? {
            Answer::$variant(v) => v,
            other => {
                return $self.lie(format!("`{op}` answered with `{}`", other.kind()));
            }
        }
    }};
}

#[async_trait]
impl Adapter for RemoteAdapter {
    fn descriptor(&self) -> &PlatformDescriptor {
        &self.descriptor
    }

    /// `Unhealthy` (not an error) when the adapter misbehaved or cannot be reached: the
    /// registry watches this to pause transfers through it.
    async fn health(&self) -> Result<Health, AdapterError> {
        match self.inner.call(Call::Health).await {
            Ok(Answer::Health(h)) => Ok(h),
            Ok(other) => self.lie(format!("`health` answered with `{}`", other.kind())),
            Err(AdapterError::Misbehaving { reason, .. }) => Ok(Health::Unhealthy {
                reason: format!("misbehaving: {reason}"),
            }),
            Err(e) if e.is_retryable() => Ok(Health::Unhealthy {
                reason: e.to_string(),
            }),
            Err(e) => Err(e),
        }
    }

    async fn heads(&self) -> Result<Heads, AdapterError> {
        let h = expect!(self, Call::Heads, Heads);
        if h.finalized.height > h.head.height {
            return self.lie(format!(
                "finalized height {} is above head height {}",
                h.finalized.height, h.head.height
            ));
        }
        Ok(h)
    }

    async fn events_since(&self, after: Checkpoint, limit: u32) -> Result<EventPage, AdapterError> {
        let page = expect!(self, Call::EventsSince { after, limit }, Events);
        if page.events.len() > limit as usize {
            return self.lie(format!(
                "{} events for a page of at most {limit}",
                page.events.len()
            ));
        }
        let mut prev = after;
        for e in &page.events {
            if e.checkpoint <= prev {
                return self.lie(format!(
                    "event checkpoint {} does not follow {prev}",
                    e.checkpoint
                ));
            }
            prev = e.checkpoint;
        }
        if page.next < prev {
            return self.lie(format!(
                "page resumes at {} before its last event {prev}",
                page.next
            ));
        }
        Ok(page)
    }

    async fn submit(&self, tx: SignedTx) -> Result<TxId, AdapterError> {
        Ok(expect!(self, Call::Submit { tx }, TxId))
    }

    async fn tx_status(&self, tx: &TxId) -> Result<TxStatus, AdapterError> {
        Ok(expect!(self, Call::TxStatus { tx: tx.clone() }, TxStatus))
    }

    async fn evidence(&self, tx: &TxId) -> Result<Evidence, AdapterError> {
        Ok(expect!(self, Call::Evidence { tx: tx.clone() }, Evidence))
    }

    /// The adapter verifies (only it knows its platform's rules for opaque evidence); the
    /// hub checks that the verdict is about this very evidence.
    async fn verify_evidence(
        &self,
        tx: &TxId,
        evidence: &Evidence,
    ) -> Result<Verified, AdapterError> {
        let call = Call::VerifyEvidence {
            tx: tx.clone(),
            evidence: evidence.clone(),
        };
        let v = expect!(self, call, Verified);
        if v.digest != evidence.digest() || v.block != evidence.block() {
            return self.lie(format!(
                "verification of evidence for tx {} reports block {} digest {} but the evidence is block {} digest {}",
                tx.0,
                v.block.height,
                v.digest,
                evidence.block().height,
                evidence.digest()
            ));
        }
        Ok(v)
    }

    async fn balance(&self, account: &Address, asset: &AssetId) -> Result<Amount, AdapterError> {
        let call = Call::Balance {
            account: account.clone(),
            asset: asset.clone(),
        };
        Ok(expect!(self, call, Balance))
    }

    async fn lock(&self, req: &LockRequest) -> Result<TxId, AdapterError> {
        Ok(expect!(self, Call::Lock { req: req.clone() }, TxId))
    }

    async fn release(&self, req: &ReleaseRequest) -> Result<TxId, AdapterError> {
        Ok(expect!(self, Call::Release { req: req.clone() }, TxId))
    }

    async fn refund(&self, req: &RefundRequest) -> Result<TxId, AdapterError> {
        Ok(expect!(self, Call::Refund { req: req.clone() }, TxId))
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<TxId, AdapterError> {
        Ok(expect!(self, Call::Claim { req: req.clone() }, TxId))
    }

    async fn lock_state(&self, lock_id: &LockId) -> Result<Option<OnChainLock>, AdapterError> {
        let state = expect!(self, Call::LockState { lock_id: *lock_id }, LockState);
        if let Some(s) = &state {
            if s.observation.lock_id != *lock_id {
                return self.lie(format!(
                    "asked for lock {} and got lock {}",
                    lock_id, s.observation.lock_id
                ));
            }
        }
        Ok(state)
    }
}
