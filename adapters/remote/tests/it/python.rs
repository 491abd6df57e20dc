//! The Python example adapter (`python/adapter.py`) through the same client and the same
//! registration route: the protocol is language-neutral.
//!
//! Needs the repo venv with the adapter's packages: `scripts/install-peers.sh --only
//! python-adapter` (or `ISTHMUS_PEERS` pointing at a peers folder that has them).

use crate::hub::{boot, CUSTOMER, PROVIDER};
use isthmus_adapter_api::{Adapter, AdapterError, Checkpoint, EventKind, Health, PlatformKind};
use isthmus_adapter_remote::{RemoteAdapter, RemoteConfig};
use isthmus_core::{Keypair, NetworkId, NodeId};
use isthmus_lock_contracts::{Address, AssetId, LockId, TxId};
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn python() -> PathBuf {
    let peers = std::env::var_os("ISTHMUS_PEERS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.peers"),
        PathBuf::from,
    );
    let py = peers.join("venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/install-peers.sh --only python-adapter",
        py.display()
    );
    py
}

struct PyAdapter {
    _child: Child,
    listen: SocketAddr,
    identity: NodeId,
}

async fn start_python(network: u64) -> PyAdapter {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/adapter.py");
    let mut child = Command::new(python())
        .arg(script)
        .args(["--network", &network.to_string(), "--name", "py-ledger"])
        .args(["--dev-identity", &format!("py-{network}")])
        .args(["--fund", "alice=500", "--fund", "bob=7"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn python adapter");
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(20),
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line),
    )
    .await
    .expect("python ready line in time")
    .unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line is json");
    let identity: NodeId = ready["identity"].as_str().unwrap().parse().unwrap();
    // Same derivation as `Keypair::dev`, in another language.
    assert_eq!(identity, Keypair::dev(&format!("py-{network}")).id());
    PyAdapter {
        listen: ready["listen"].as_str().unwrap().parse().unwrap(),
        identity,
        _child: child,
    }
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_registers_the_python_adapter_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let hub = boot(dir.path()).await;
    let py = start_python(74).await;
    let body = json!({"network_id": 74, "name": "pyledger", "endpoint": py.listen.to_string(),
                      "identity": py.identity.to_string()});
    let (st, v) = hub.call("POST", "/v1/adapters", PROVIDER, Some(body)).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["healthy"], true);
    let (_, platforms) = hub.call("GET", "/v1/platforms", CUSTOMER, None).await;
    let p = platforms
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "pyledger")
        .unwrap_or_else(|| panic!("{platforms}"));
    assert_eq!(p["kind"], "external");
    assert_eq!(p["capabilities"]["two_phase"], "unsupported");
    let (st, _) = hub
        .call("DELETE", "/v1/adapters/pyledger", PROVIDER, None)
        .await;
    assert_eq!(st, 200);
    hub.shutdown().await;
}
