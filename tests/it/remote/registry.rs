//! Registration and retirement over HTTP, durability across a restart, and transfers
//! through a registered adapter: completed when it behaves, paused when it crashes, lies or
//! is retired.

use super::host::Host;
use super::hub::{alice, bob, boot, Hub, CUSTOMER, PROVIDER};
use super::liar::{serve_in_process, Liar};
use isthmus_adapter_api::{Adapter, Finality};
use isthmus_adapter_testkit::mock::MockFixture;
use isthmus_core::Keypair;
use isthmus_interop::AdapterLookup;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

fn registration(host: &Host, name: &str) -> Value {
    json!({
        "network_id": host.network.0,
        "name": name,
        "endpoint": host.listen.to_string(),
        "identity": host.identity.to_string(),
    })
}

async fn platform_names(hub: &Hub) -> Vec<String> {
    let (st, v) = hub.call("GET", "/v1/platforms", CUSTOMER, None).await;
    assert_eq!(st, 200, "{v}");
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn adapters(hub: &Hub) -> Vec<Value> {
    let (st, v) = hub.call("GET", "/v1/adapters", CUSTOMER, None).await;
    assert_eq!(st, 200, "{v}");
    v.as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_registers_lists_and_retires_an_adapter_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let hub = boot(dir.path()).await;
    let host = Host::start(61, "ledger-61", &[]).await;
    let body = registration(&host, "ledger");

    // wrong role
    let (st, v) = hub
        .call("POST", "/v1/adapters", CUSTOMER, Some(body.clone()))
        .await;
    assert_eq!(st, 403, "{v}");
    assert_eq!(v["code"], "forbidden");

    // bad body: every problem listed
    let bad =
        json!({"network_id": 0, "name": "Bad Name", "endpoint": "nowhere", "identity": "key"});
    let (st, v) = hub.call("POST", "/v1/adapters", PROVIDER, Some(bad)).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["details"].as_array().unwrap().len(), 4, "{v}");
    let (st, v) = hub
        .call("POST", "/v1/adapters", PROVIDER, Some(json!({"name": "x"})))
        .await;
    assert_eq!(st, 400, "{v}");

    // an adapter that cannot prove the registered identity: refused, nothing stored
    let mut impostor = body.clone();
    impostor["identity"] = json!(Keypair::dev("someone-else").id().to_string());
    let (st, v) = hub
        .call("POST", "/v1/adapters", PROVIDER, Some(impostor))
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("identity"), "{v}");

    // nobody listening: unavailable, nothing stored
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut unreachable = body.clone();
    unreachable["endpoint"] = json!(free.local_addr().unwrap().to_string());
    drop(free);
    let (st, v) = hub
        .call("POST", "/v1/adapters", PROVIDER, Some(unreachable))
        .await;
    assert_eq!(st, 503, "{v}");
    assert_eq!(v["code"], "unavailable");
    assert!(
        v["message"].as_str().unwrap().contains("unreachable"),
        "{v}"
    );
    assert!(adapters(&hub).await.is_empty());
    assert!(!platform_names(&hub).await.contains(&"ledger".to_owned()));

    // the real thing
    let (st, v) = hub
        .call("POST", "/v1/adapters", PROVIDER, Some(body.clone()))
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["id"], "ledger");
    assert_eq!(v["healthy"], true);
    assert_eq!(v["network_id"], 61);
    // the same registration again is the same registration
    let (st, again) = hub
        .call("POST", "/v1/adapters", PROVIDER, Some(body.clone()))
        .await;
    assert_eq!(st, 201, "{again}");
    assert_eq!(again["registered_at"], v["registered_at"]);
    // a different adapter under the same name is a conflict of names
    let mut other = body.clone();
    other["network_id"] = json!(62);
    let (st, v) = hub
        .call("POST", "/v1/adapters", PROVIDER, Some(other))
        .await;
    assert_eq!(st, 400, "{v}");

    let names = platform_names(&hub).await;
    assert_eq!(names, vec!["alpha".to_owned(), "ledger".to_owned()]);
    let (_, platforms) = hub.call("GET", "/v1/platforms", CUSTOMER, None).await;
    let ledger = &platforms[1];
    assert_eq!(ledger["healthy"], true);
    assert_eq!(ledger["capabilities"]["finality"]["model"], "instant");
    let (_, networks) = hub.call("GET", "/v1/networks", CUSTOMER, None).await;
    assert!(
        networks
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == "ledger" && n["status"] == "up"),
        "{networks}"
    );

    // retire
    let (st, v) = hub
        .call("DELETE", "/v1/adapters/ledger", CUSTOMER, None)
        .await;
    assert_eq!(st, 403, "{v}");
    let (st, v) = hub
        .call("DELETE", "/v1/adapters/ledger", PROVIDER, None)
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "retired");
    assert!(adapters(&hub).await.is_empty());
    assert_eq!(platform_names(&hub).await, vec!["alpha".to_owned()]);
    let (st, v) = hub
        .call("DELETE", "/v1/adapters/ledger", PROVIDER, None)
        .await;
    assert_eq!(st, 404, "{v}");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_survives_a_hub_restart() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(63, "ledger-63", &[]).await;
    {
        let hub = boot(dir.path()).await;
        let (st, v) = hub
            .call(
                "POST",
                "/v1/adapters",
                PROVIDER,
                Some(registration(&host, "durable")),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        hub.shutdown().await;
    }
    let hub = boot(dir.path()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list = adapters(&hub).await;
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0]["name"], "durable");
        if list[0]["healthy"] == true {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{list:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(platform_names(&hub).await.contains(&"durable".to_owned()));
    hub.shutdown().await;
}

fn transfer(remote: &str) -> Value {
    json!({
        "source": {"network": "alpha", "asset": "native", "amount": "100",
                   "from": alice(), "to": bob()},
        "counter": {"network": remote, "asset": "native", "amount": "40",
                    "from": bob(), "to": alice()},
        "timeout_secs": 300
    })
}

async fn start_transfer(hub: &Hub, remote: &str) -> String {
    let (st, v) = hub
        .call("POST", "/v1/transfers", CUSTOMER, Some(transfer(remote)))
        .await;
    assert_eq!(st, 202, "{v}");
    format!("/v1/transfers/{}", v["id"].as_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_through_a_registered_adapter_completes_then_a_crash_pauses_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let hub = boot(dir.path()).await;
    let mut host = Host::start(64, "ledger-64", &[]).await;
    let (st, v) = hub
        .call(
            "POST",
            "/v1/adapters",
            PROVIDER,
            Some(registration(&host, "remote")),
        )
        .await;
    assert_eq!(st, 201, "{v}");

    let first = start_transfer(&hub, "remote").await;
    let done = hub.wait_op(&first, |v| v["terminal"] == true).await;
    assert_eq!(done["state"], "released", "{done}");
    let remote = hub.registry.adapter(&isthmus_core::NetworkId(64)).unwrap();
    let asset = isthmus_lock_contracts::AssetId("native".into());
    let bal = |who: String| {
        let remote = remote.clone();
        let asset = asset.clone();
        async move {
            remote
                .balance(&isthmus_lock_contracts::Address(who), &asset)
                .await
                .unwrap()
                .0
        }
    };
    assert_eq!(bal(alice()).await, 1_000_000_000 + 40);
    let alpha_bob = hub
        .alpha
        .balance(&isthmus_lock_contracts::Address(bob()), &asset)
        .await
        .unwrap();
    assert_eq!(alpha_bob.0, 1_000_000 + 100);

    // The adapter process dies with a transfer in flight: the transfer pauses.
    let second = start_transfer(&hub, "remote").await;
    host.kill().await;
    let paused = hub
        .wait_op(&second, |v| v["reason"] == "adapter_unhealthy")
        .await;
    assert_eq!(paused["terminal"], false, "{paused}");
    let list = {
        let (_, v) = hub.call("GET", "/v1/adapters", CUSTOMER, None).await;
        v
    };
    assert_eq!(list[0]["healthy"], false, "{list}");
    // Retiring it keeps the transfer paused, not dropped.
    let (st, _) = hub
        .call("DELETE", "/v1/adapters/remote", PROVIDER, None)
        .await;
    assert_eq!(st, 200);
    let (_, still) = hub.call("GET", &second, CUSTOMER, None).await;
    assert_eq!(still["reason"], "adapter_unhealthy", "{still}");
    assert_eq!(still["terminal"], false, "{still}");
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_caught_lying_is_unhealthy_and_its_transfer_pauses() {
    let dir = tempfile::tempdir().unwrap();
    let hub = boot(dir.path()).await;
    let fixture = MockFixture::new(65, Finality::Instant);
    let liar = Arc::new(Liar {
        descriptor: fixture.adapter.descriptor().clone(),
        inner: fixture.adapter.clone(),
        lie_about_evidence: true.into(),
    });
    let key = Keypair::dev("liar-65");
    let (addr, _stop) = serve_in_process(liar.clone(), &key).await;
    let body = json!({"network_id": 65, "name": "liar", "endpoint": addr.to_string(),
                      "identity": key.id().to_string()});
    let (st, v) = hub.call("POST", "/v1/adapters", PROVIDER, Some(body)).await;
    assert_eq!(st, 201, "{v}");
    let op = start_transfer(&hub, "liar").await;
    // The lock on the liar's network becomes final; its verdict on the evidence is about
    // other bytes, so the hub marks it misbehaving and the transfer pauses.
    let paused = hub
        .wait_op(&op, |v| v["reason"] == "adapter_unhealthy")
        .await;
    assert_eq!(paused["terminal"], false, "{paused}");
    let (_, list) = hub.call("GET", "/v1/adapters", CUSTOMER, None).await;
    assert_eq!(list[0]["healthy"], false, "{list}");
    assert!(
        list[0]["reason"].as_str().unwrap().contains("misbehaving"),
        "{list}"
    );
    assert!(liar.lie_about_evidence.load(Ordering::SeqCst));
    hub.shutdown().await;
}
