use isthmus_adapter_api::*;
use isthmus_adapter_testkit::conformance::{self, Fixture};
use isthmus_adapter_testkit::mock::MockFixture;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn handle_over_metered_mock_passes_the_suite() {
    use futures::FutureExt;
    let f = || {
        async {
            let inner = MockFixture::new(11, Finality::Probabilistic { confirmations: 2 });
            let metered = Metered::new(inner.adapter.clone());
            let (handle, _task) =
                AdapterHandle::spawn(metered, HandleConfig::default(), futures::future::pending());
            Ok(Box::new(conformance::Rewrapped {
                inner,
                adapter: Arc::new(handle),
            }) as Box<dyn Fixture>)
        }
        .boxed()
    };
    conformance::run(&f).await.assert_passed();
}

#[tokio::test]
async fn handle_clones_share_one_owner_and_errors_keep_their_class() {
    let fx = MockFixture::new(12, Finality::Instant);
    let metered = Metered::new(fx.adapter.clone());
    let stats = metered.stats();
    let (handle, task) = AdapterHandle::spawn(
        metered,
        HandleConfig {
            queue: 2,
            in_flight: 1,
        },
        futures::future::pending(),
    );
    let clones: Vec<AdapterHandle> = (0..8).map(|_| handle.clone()).collect();
    let heads = futures::future::join_all(clones.iter().map(|h| h.heads())).await;
    assert!(heads.iter().all(|h| h.is_ok()));
    assert_eq!(handle.descriptor().network, isthmus_core::NetworkId(12));
    fx.adapter.fail_next(AdapterError::Timeout {
        network: isthmus_core::NetworkId(12),
        op: "heads".into(),
    });
    let err = handle.heads().await.unwrap_err();
    assert!(err.is_retryable());
    assert!(handle.heads().await.is_ok(), "the retry succeeds");
    let err = handle.submit(SignedTx(vec![1, 2, 3])).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    let s = stats.snapshot();
    assert_eq!(s["heads"].calls, 10);
    assert_eq!((s["heads"].errors, s["heads"].retryable_errors), (1, 1));
    assert_eq!((s["submit"].errors, s["submit"].retryable_errors), (1, 0));
    drop(clones);
    drop(handle);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("owner task ends when every handle is gone")
        .unwrap();
}

#[tokio::test]
async fn shutdown_stops_the_owner_and_calls_fail_retryably() {
    let fx = MockFixture::new(13, Finality::Instant);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (handle, task) = AdapterHandle::spawn(fx.adapter.clone(), HandleConfig::default(), async {
        let _ = stopped.await;
    });
    assert!(handle.health().await.is_ok());
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    let err = handle.health().await.unwrap_err();
    assert_eq!(err.code(), "unavailable");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("adapter task stopped"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn heads_cache_serves_within_its_ttl() {
    let fx = MockFixture::new(14, Finality::Instant);
    let m = Metered::new(fx.adapter.clone()).with_heads_ttl(Duration::from_millis(500));
    let first = m.heads().await.unwrap();
    fx.adapter.mine(1);
    assert_eq!(m.heads().await.unwrap(), first, "cached");
    tokio::time::advance(Duration::from_millis(600)).await;
    assert_eq!(m.heads().await.unwrap().head.height, first.head.height + 1);
    assert_eq!(m.stats().snapshot()["heads"].cache_hits, 1);
}

#[tokio::test(start_paused = true)]
async fn subscription_pages_through_the_backlog_and_resumes_exactly_once() {
    use futures::StreamExt;
    let fx = MockFixture::new(15, Finality::Instant);
    fx.adapter.mine(40);
    let all = fx
        .adapter
        .events_since(Checkpoint::START, 10_000)
        .await
        .unwrap()
        .events;
    let cfg = SubscribeConfig {
        page: 7,
        idle_poll: Duration::from_millis(50),
    };
    let adapter: Arc<dyn Adapter> = fx.adapter.clone();
    let first: Vec<ChainEvent> = subscribe(adapter.clone(), Checkpoint::START, cfg)
        .take(25)
        .map(|e| e.unwrap())
        .collect()
        .await;
    assert_eq!(first[..], all[..25]);
    // A restart resumes after the last handled checkpoint; new events arrive while polling.
    let resume = first.last().unwrap().checkpoint;
    let mut rest = Box::pin(subscribe(adapter, resume, cfg));
    let mut seen = Vec::new();
    while seen.len() < all.len() - 25 {
        seen.push(rest.next().await.unwrap().unwrap());
    }
    assert_eq!(seen[..], all[25..]);
    fx.adapter.fail_next(AdapterError::Unavailable {
        network: isthmus_core::NetworkId(15),
        reason: "connection reset".into(),
    });
    assert!(rest.next().await.unwrap().unwrap_err().is_retryable());
    fx.adapter.mine(1);
    let next = rest.next().await.unwrap().unwrap();
    assert!(next.checkpoint > all.last().unwrap().checkpoint);
    assert!(matches!(next.kind, EventKind::NewHead { .. }));
}
