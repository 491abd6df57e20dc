//! The Python example adapter (`python/adapter.py`) through the same client: the protocol is
//! language-neutral (its registration over HTTP runs in the top-level tests package).
//!
//! Needs the repo venv with the adapter's packages: `scripts/install-peers.sh --only
//! python-adapter` (or `ISTHMUS_PEERS` pointing at a peers folder that has them).

use crate::pyhost::start_python;
use isthmus_adapter_api::{Adapter, AdapterError, Checkpoint, EventKind, Health, PlatformKind};
use isthmus_adapter_remote::{RemoteAdapter, RemoteConfig};
use isthmus_core::{Keypair, NetworkId};
use isthmus_lock_contracts::{Address, AssetId, LockId, TxId};

#[tokio::test]
async fn the_python_adapter_answers_describe_health_heads_events_and_balance() {
    let py = start_python(71).await;
    let remote = RemoteAdapter::connect(
        RemoteConfig::new(NetworkId(71), "py", py.listen, py.identity),
        Keypair::dev("test-hub"),
    )
    .await
    .expect("attach to the python adapter");
    let d = remote.descriptor();
    assert_eq!(d.network, NetworkId(71));
    assert_eq!(d.kind, PlatformKind::External);
    assert!(d.capabilities.problems().is_empty());
    assert_eq!(remote.health().await.unwrap(), Health::Healthy);
    let heads = remote.heads().await.unwrap();
    assert!(heads.head.height >= 1);
    assert_eq!(heads.finalized, heads.head);
    let native = AssetId("native".into());
    assert_eq!(
        remote
            .balance(&Address("alice".into()), &native)
            .await
            .unwrap()
            .0,
        500
    );
    assert_eq!(
        remote
            .balance(&Address("bob".into()), &native)
            .await
            .unwrap()
            .0,
        7
    );
    assert_eq!(
        remote
            .balance(&Address("carol".into()), &native)
            .await
            .unwrap()
            .0,
        0
    );
    let page = remote.events_since(Checkpoint::START, 10).await.unwrap();
    assert!(!page.events.is_empty());
    assert!(matches!(page.events[0].kind, EventKind::NewHead { .. }));
    let again = remote.events_since(page.next, 10).await.unwrap();
    assert!(again.events.iter().all(|e| e.checkpoint > page.next));
    // What it does not do, it says so in the protocol's own terms.
    let err = remote.tx_status(&TxId("t".into())).await.unwrap_err();
    assert!(matches!(err, AdapterError::Unsupported { .. }), "{err}");
    let err = remote
        .lock_state(&LockId(isthmus_core::Hash32([1; 32])))
        .await
        .unwrap_err();
    assert!(matches!(err, AdapterError::Unsupported { .. }), "{err}");
    assert!(remote.misbehaviour().is_none());
}

#[tokio::test]
async fn the_python_adapter_refuses_a_hub_that_binds_another_network() {
    let py = start_python(72).await;
    let err = RemoteAdapter::connect(
        RemoteConfig::new(NetworkId(73), "py", py.listen, py.identity),
        Keypair::dev("test-hub"),
    )
    .await
    .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
}
