//! Crashes and lies: the hub notices both and reports the adapter unhealthy.

use crate::host::Host;
use async_trait::async_trait;
use isthmus_adapter_api::*;
use isthmus_adapter_remote::{serve_adapter, RemoteAdapter, RemoteConfig, RemoteError};
use isthmus_adapter_testkit::conformance::Fixture;
use isthmus_adapter_testkit::mock::MockFixture;
use isthmus_core::{Hash32, Keypair, NetworkId};
use isthmus_lock_contracts::{Address, Amount, AssetId, LockId, TxId};
use isthmus_transport::{Endpoint, TransportConfig, TransportKind};
use std::sync::Arc;
use std::time::Duration;

async fn poll_health(remote: &RemoteAdapter, want_usable: bool) -> Health {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let h = remote.health().await.expect("health answers");
        if h.is_usable() == want_usable {
            return h;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "health stayed {h:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_crashed_adapter_is_unhealthy_and_recovers_when_it_returns() {
    let mut host = Host::start(51, "crashy", &[]).await;
    let remote = host.attach().await;
    let before = remote.heads().await.unwrap();
    host.kill().await;
    let h = poll_health(&remote, false).await;
    assert!(matches!(h, Health::Unhealthy { .. }), "{h:?}");
    let err = remote.heads().await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    // Same identity, same address: the client reconnects on its own (with backoff).
    let listen = host.listen.to_string();
    let _again = Host::start(51, "crashy", &["--listen", &listen]).await;
    poll_health(&remote, true).await;
    let after = remote.heads().await.unwrap();
    assert_eq!(after.head.height, 0, "a fresh mock starts at genesis");
    assert!(before.head.height <= 1);
    assert!(remote.misbehaviour().is_none());
}

#[tokio::test]
async fn a_descriptor_for_another_network_is_refused_at_connect() {
    let host = Host::start(52, "other-net", &[]).await;
    let mut cfg = host.config("claims-53");
    cfg.network = NetworkId(53);
    let err = RemoteAdapter::connect(cfg, Keypair::dev("test-hub"))
        .await
        .unwrap_err();
    // The handshake binds the network too, so a mismatched network never authenticates.
    assert!(
        matches!(
            err,
            RemoteError::Unauthenticated { .. } | RemoteError::Misbehaving { .. }
        ),
        "{err}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn an_adapter_with_another_identity_is_refused() {
    let host = Host::start(54, "real-key", &[]).await;
    let mut cfg = host.config("impostor");
    cfg.identity = Keypair::dev("registered-key").id();
    let err = RemoteAdapter::connect(cfg, Keypair::dev("test-hub"))
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Unauthenticated { .. }), "{err}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_retryable_refusal() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut cfg = RemoteConfig::new(NetworkId(55), "nobody", addr, Keypair::dev("x").id());
    cfg.connect_timeout = Duration::from_secs(2);
    let err = RemoteAdapter::connect(cfg, Keypair::dev("test-hub"))
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Unreachable { .. }), "{err}");
    assert!(err.is_retryable());
}

/// A mock whose network id or verification verdicts can be made to lie.
pub struct Liar {
    pub inner: Arc<dyn Adapter>,
    pub descriptor: PlatformDescriptor,
    pub lie_about_evidence: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Adapter for Liar {
    fn descriptor(&self) -> &PlatformDescriptor {
        &self.descriptor
    }
    async fn health(&self) -> Result<Health, AdapterError> {
        self.inner.health().await
    }
    async fn heads(&self) -> Result<Heads, AdapterError> {
        self.inner.heads().await
    }
    async fn events_since(&self, after: Checkpoint, limit: u32) -> Result<EventPage, AdapterError> {
        self.inner.events_since(after, limit).await
    }
    async fn submit(&self, tx: SignedTx) -> Result<TxId, AdapterError> {
        self.inner.submit(tx).await
    }
    async fn tx_status(&self, tx: &TxId) -> Result<TxStatus, AdapterError> {
        self.inner.tx_status(tx).await
    }
    async fn evidence(&self, tx: &TxId) -> Result<Evidence, AdapterError> {
        self.inner.evidence(tx).await
    }
    async fn verify_evidence(&self, tx: &TxId, ev: &Evidence) -> Result<Verified, AdapterError> {
        let mut v = self.inner.verify_evidence(tx, ev).await;
        if self
            .lie_about_evidence
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            // Vouch for evidence it never checked: a verdict about other bytes.
            v = Ok(Verified {
                block: ev.block(),
                confirmations: 99,
                digest: Hash32([7; 32]),
            });
        }
        v
    }
    async fn balance(&self, a: &Address, asset: &AssetId) -> Result<Amount, AdapterError> {
        self.inner.balance(a, asset).await
    }
    async fn lock(&self, req: &LockRequest) -> Result<TxId, AdapterError> {
        self.inner.lock(req).await
    }
    async fn release(&self, req: &ReleaseRequest) -> Result<TxId, AdapterError> {
        self.inner.release(req).await
    }
    async fn refund(&self, req: &RefundRequest) -> Result<TxId, AdapterError> {
        self.inner.refund(req).await
    }
    async fn claim(&self, req: &ClaimRequest) -> Result<TxId, AdapterError> {
        self.inner.claim(req).await
    }
    async fn lock_state(&self, id: &LockId) -> Result<Option<OnChainLock>, AdapterError> {
        self.inner.lock_state(id).await
    }
}

/// Serve `adapter` in this process; returns the config to reach it and the stop switch.
pub async fn serve_in_process(
    adapter: Arc<dyn Adapter>,
    key: &Keypair,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let mut cfg = TransportConfig::new(TransportKind::Tcp, "127.0.0.1:0".parse().unwrap());
    cfg.network = adapter.descriptor().network;
    let endpoint = Endpoint::bind(cfg, key.clone()).await.unwrap();
    let addr = endpoint.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_adapter(adapter, None, endpoint, async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

#[tokio::test]
async fn a_verdict_about_other_evidence_marks_the_adapter_misbehaving() {
    let fixture = MockFixture::new(56, Finality::Instant);
    let liar = Arc::new(Liar {
        descriptor: fixture.adapter.descriptor().clone(),
        inner: fixture.adapter.clone(),
        lie_about_evidence: false.into(),
    });
    let key = Keypair::dev("liar");
    let (addr, _stop) = serve_in_process(liar.clone(), &key).await;
    let remote = RemoteAdapter::connect(
        RemoteConfig::new(NetworkId(56), "liar", addr, key.id()),
        Keypair::dev("test-hub"),
    )
    .await
    .unwrap();
    let to = Address("carol".into());
    let tx = fixture.signed_transfer(0, &to, Amount(5)).await.unwrap();
    let id = remote.submit(tx).await.unwrap();
    let ev = remote.evidence(&id).await.unwrap();
    remote
        .verify_evidence(&id, &ev)
        .await
        .expect("honest verdict");
    liar.lie_about_evidence
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let err = remote.verify_evidence(&id, &ev).await.unwrap_err();
    assert!(matches!(err, AdapterError::Misbehaving { .. }), "{err}");
    // Sticky: every later call is refused and health says why.
    let again = remote.heads().await.unwrap_err();
    assert!(matches!(again, AdapterError::Misbehaving { .. }), "{again}");
    match remote.health().await.unwrap() {
        Health::Unhealthy { reason } => assert!(reason.contains("misbehaving"), "{reason}"),
        h => panic!("expected unhealthy, got {h:?}"),
    }
    assert!(remote.misbehaviour().unwrap().contains("digest"));
}

#[tokio::test]
async fn a_descriptor_that_changes_network_after_a_restart_is_a_lie() {
    let key = Keypair::dev("shifty");
    let honest = MockFixture::new(57, Finality::Instant);
    let (addr, stop) = serve_in_process(honest.adapter.clone(), &key).await;
    let mut cfg = RemoteConfig::new(NetworkId(57), "shifty", addr, key.id());
    cfg.backoff_min = Duration::from_millis(10);
    let remote = RemoteAdapter::connect(cfg, Keypair::dev("test-hub"))
        .await
        .unwrap();
    drop(stop);
    poll_health(&remote, false).await;
    // Back on the same address and key, now claiming network 58 (its endpoint still speaks
    // network 57's handshake, so only the descriptor lies).
    let lying = MockFixture::new(58, Finality::Instant);
    let liar = Arc::new(Liar {
        descriptor: lying.adapter.descriptor().clone(),
        inner: lying.adapter.clone(),
        lie_about_evidence: false.into(),
    });
    let mut tc = TransportConfig::new(TransportKind::Tcp, addr);
    tc.network = NetworkId(57);
    let endpoint = Endpoint::bind(tc, key.clone()).await.unwrap();
    let (_stop2, stopped2) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_adapter(liar, None, endpoint, async move {
        let _ = stopped2.await;
    }));
    let h = poll_health(&remote, false).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while remote.misbehaviour().is_none() {
        assert!(tokio::time::Instant::now() < deadline, "last health {h:?}");
        let _ = remote.heads().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(remote.misbehaviour().unwrap().contains("network 58"));
}
