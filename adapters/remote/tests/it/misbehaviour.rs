//! Crashes and lies: the hub notices both and reports the adapter unhealthy.

use crate::host::Host;
use crate::liar::{serve_in_process, Liar};
use isthmus_adapter_api::*;
use isthmus_adapter_remote::{serve_adapter, RemoteAdapter, RemoteConfig, RemoteError};
use isthmus_adapter_testkit::conformance::Fixture;
use isthmus_adapter_testkit::mock::MockFixture;
use isthmus_core::{Keypair, NetworkId};
use isthmus_lock_contracts::{Address, Amount};
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
