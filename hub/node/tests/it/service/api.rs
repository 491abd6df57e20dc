//! The interop service behind the real HTTP API: a transfer created over HTTP is driven
//! to completion, and its status and events are visible to the DApp.

use super::*;
use isthmus_hub::builder::HubBuilder;
use isthmus_hub_api::model::{NetworkInfo, PlatformInfo};
use isthmus_hub_api::{ApiKeyConfig, BackendError, Directory, KeyRing, Role};
use isthmus_interop::NetworkDirectory;
use serde_json::json;

struct TwoNets;

impl NetworkDirectory for TwoNets {
    fn resolve(&self, name: &str) -> Option<NetworkId> {
        match name {
            "alpha" => Some(NetworkId(1)),
            "beta" => Some(NetworkId(2)),
            _ => None,
        }
    }
    fn name_of(&self, id: NetworkId) -> String {
        match id.0 {
            1 => "alpha".into(),
            2 => "beta".into(),
            n => format!("network-{n}"),
        }
    }
}

#[async_trait]
impl Directory for TwoNets {
    async fn platforms(&self) -> Result<Vec<PlatformInfo>, BackendError> {
        Ok(vec![])
    }
    async fn networks(&self) -> Result<Vec<NetworkInfo>, BackendError> {
        Ok(vec![])
    }
}

#[tokio::test]
async fn transfer_over_http_completes_and_reports_status() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let world = Arc::new(World {
        escrows: Mutex::default(),
        flaky: 0,
        calls: AtomicU64::new(0),
    });
    let clock = Arc::new(AtomicU64::new(100));
    let c2 = clock.clone();
    let keys = KeyRing::new(&[ApiKeyConfig::from_plaintext("dapp", Role::Customer, "k")]).unwrap();
    let hub = HubBuilder::new(db)
        .directory(Arc::new(TwoNets))
        .executor(world.clone())
        .driver_config(fast())
        .two_phase(TwoPhaseConfig {
            release_window: 600,
        })
        .htlc(HtlcConfig { delta: 60 })
        .wallet_secret(zeroize::Zeroizing::new([9u8; 32]))
        .clock(Arc::new(move || c2.load(Ordering::SeqCst)))
        .clock_tick(None)
        .api("127.0.0.1:0".parse().unwrap(), keys)
        .start()
        .unwrap();
    let (addr, driver, bus) = (
        hub.api_addr().unwrap(),
        hub.driver().clone(),
        hub.bus().clone(),
    );
    let http = reqwest::Client::new();
    let body = json!({
        "source": {"network": "alpha", "asset": "native", "amount": "100", "from": "alice", "to": "bob"},
        "counter": {"network": "beta", "asset": "native", "amount": "100", "from": "bob", "to": "alice"},
        "timeout_secs": 900
    });
    let resp = http
        .post(format!("http://{addr}/v1/transfers"))
        .bearer_auth("k")
        .header("Idempotency-Key", "order-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let created: serde_json::Value = resp.json().await.unwrap();
    let api_id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["state"], "locking");
    assert_eq!(created["reason"], "awaiting_locks");
    assert_eq!(created["legs"][0]["network"], "alpha");

    // unknown network: refused, names the value, nothing created
    let mut bad = body.clone();
    bad["counter"]["network"] = json!("gamma");
    let resp = http
        .post(format!("http://{addr}/v1/transfers"))
        .bearer_auth("k")
        .header("Idempotency-Key", "order-2")
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(v["message"].as_str().unwrap().contains("gamma"), "{v}");
    assert_eq!(driver.journal().all().unwrap().len(), 1);

    // the watchers see both locks become final
    let inst = driver.journal().get_by_api_id(&api_id).unwrap().unwrap();
    let Contract::TwoPhase(m) = inst.contract else {
        panic!("two-phase expected")
    };
    register_escrows(&world, &m);
    for l in LegId::BOTH {
        for ev in lock_events(&m, l) {
            driver.apply(m.id, ev, 101).await.unwrap();
        }
    }
    let resp = http
        .get(format!("http://{addr}/v1/transfers/{api_id}?wait=20"))
        .bearer_auth("k")
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["state"], "released", "{v}");
    assert_eq!(v["terminal"], true);
    assert_eq!(v["legs"][0]["state"], "released");
    assert_eq!(v["detail"]["decision"], "validated");
    // every durable change was published as an event, in order
    let events = bus.store().events_from(1, 100).unwrap();
    assert!(events.len() >= 7, "{}", events.len());
    assert!(events
        .iter()
        .all(|e| e.subject == api_id && e.kind == "transfer.updated"));
    assert_eq!(events.last().unwrap().data["state"], "released");

    // swap with a hub-made secret: T1 <= T2 + delta is refused with the values named
    let swap = json!({
        "initiator": {"network": "alpha", "asset": "native", "amount": "5", "from": "alice", "to": "bob"},
        "participant": {"network": "beta", "asset": "native", "amount": "7", "from": "bob", "to": "alice"},
        "initiator_timeout_secs": 100, "participant_timeout_secs": 50
    });
    let resp = http
        .post(format!("http://{addr}/v1/swaps"))
        .bearer_auth("k")
        .header("Idempotency-Key", "swap-1")
        .json(&swap)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(v["message"].as_str().unwrap().contains("t1=200"), "{v}");
    let mut ok = swap.clone();
    ok["initiator_timeout_secs"] = json!(200);
    let resp = http
        .post(format!("http://{addr}/v1/swaps"))
        .bearer_auth("k")
        .header("Idempotency-Key", "swap-2")
        .json(&ok)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["kind"], "swap");
    assert_eq!(v["detail"]["hashlock"].as_str().unwrap().len(), 64);
    assert!(
        !v.to_string().contains("preimage"),
        "the secret never appears in the API: {v}"
    );

    hub.shutdown().await.expect("the hub stopped cleanly");
}
