//! Message relay over the real HTTP API between two real native networks (single-validator
//! PoS each): `POST /v1/messages` commits the packet on alpha with the sender's wallet key,
//! the [`MessageRelay`] delivers it on beta under the hub's attestation and settles the
//! acknowledgement on alpha; a packet whose timeout passes on beta first is proven timed
//! out there and settled on alpha; a relay restarted mid-way finishes without delivering
//! twice.

use crate::native_net::{hub_keys, pos, TestNet};
use async_trait::async_trait;
use isthmus_adapter_api::port::{MessageSpec, PacketPort, PortError, SendTicket};
use isthmus_adapter_api::{MemoryWallet, SecretKey};
use isthmus_adapter_native::NativePacketPort;
use isthmus_chain::packets::{receipt_key, send_record_key, SendRecord};
use isthmus_core::{Keypair, NetworkId};
use isthmus_hub::builder::HubBuilder;
use isthmus_hub_api::model::{NetworkInfo, PlatformInfo};
use isthmus_hub_api::{ApiKeyConfig, BackendError, Directory, KeyRing, Role};
use isthmus_interop::messages::MessageRelay;
use isthmus_interop::{DriverConfig, NetworkDirectory};
use isthmus_lock_contracts::packet::{
    Acknowledgement, Packet, Receipt, SourceOutcome, TimeoutProof,
};
use isthmus_lock_contracts::{Address, HtlcConfig, TwoPhaseConfig};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ALPHA: NetworkId = NetworkId(301);
const BETA: NetworkId = NetworkId(302);

struct Names;

impl NetworkDirectory for Names {
    fn resolve(&self, name: &str) -> Option<NetworkId> {
        match name {
            "alpha" => Some(ALPHA),
            "beta" => Some(BETA),
            _ => None,
        }
    }
    fn name_of(&self, id: NetworkId) -> String {
        match id {
            ALPHA => "alpha".into(),
            BETA => "beta".into(),
            n => format!("network-{n}"),
        }
    }
}

#[async_trait]
impl Directory for Names {
    async fn platforms(&self) -> Result<Vec<PlatformInfo>, BackendError> {
        Ok(vec![])
    }
    async fn networks(&self) -> Result<Vec<NetworkInfo>, BackendError> {
        Ok(vec![])
    }
}

/// The native port, counting the deliveries and timeout proofs the relay asks for.
struct Counting {
    inner: NativePacketPort,
    deliveries: AtomicU64,
    proofs: AtomicU64,
}

#[async_trait]
impl PacketPort for Counting {
    async fn prepare_send(&self, spec: &MessageSpec) -> Result<SendTicket, PortError> {
        self.inner.prepare_send(spec).await
    }
    async fn submit_send(&self, spec: &MessageSpec, t: &SendTicket) -> Result<(), PortError> {
        self.inner.submit_send(spec, t).await
    }
    async fn committed(&self, s: NetworkId, t: &SendTicket) -> Result<Option<Packet>, PortError> {
        self.inner.committed(s, t).await
    }
    async fn receipt(&self, p: &Packet) -> Result<Option<Receipt>, PortError> {
        self.inner.receipt(p).await
    }
    async fn time(&self, n: NetworkId) -> Result<u64, PortError> {
        self.inner.time(n).await
    }
    async fn deliver(&self, p: &Packet) -> Result<(), PortError> {
        self.deliveries.fetch_add(1, Ordering::SeqCst);
        self.inner.deliver(p).await
    }
    async fn prove_timeout(&self, p: &Packet) -> Result<(), PortError> {
        self.proofs.fetch_add(1, Ordering::SeqCst);
        self.inner.prove_timeout(p).await
    }
    async fn settle_ack(&self, a: &Acknowledgement) -> Result<(), PortError> {
        self.inner.settle_ack(a).await
    }
    async fn settle_timeout(&self, t: &TimeoutProof) -> Result<(), PortError> {
        self.inner.settle_timeout(t).await
    }
    async fn outcome(&self, p: &Packet) -> Result<Option<SourceOutcome>, PortError> {
        self.inner.outcome(p).await
    }
}

struct World {
    alpha: TestNet,
    beta: TestNet,
    port: Arc<Counting>,
    user: Keypair,
    dir: tempfile::TempDir,
}

async fn world() -> World {
    let alpha = TestNet::start(pos("alpha", ALPHA.0, &["user"])).await;
    let beta = TestNet::start(pos("beta", BETA.0, &[])).await;
    alpha.until_height(1).await.unwrap();
    beta.until_height(1).await.unwrap();
    let user = Keypair::dev("user");
    let wallet = MemoryWallet::new();
    wallet.insert(
        Address(user.id().to_string()),
        SecretKey::Ed25519(user.clone()),
    );
    let port = Arc::new(Counting {
        inner: NativePacketPort::new(
            [
                Arc::new(alpha.node.clone()) as Arc<dyn isthmus_chain::rpc::NodeApi>,
                Arc::new(beta.node.clone()),
            ],
            Arc::new(wallet),
            Keypair::dev("hub-submitter"),
            hub_keys()[..2].to_vec(),
        ),
        deliveries: AtomicU64::new(0),
        proofs: AtomicU64::new(0),
    });
    World {
        alpha,
        beta,
        port,
        user,
        dir: tempfile::tempdir().unwrap(),
    }
}

fn secs() -> u64 {
    crate::native_net::now_ms() / 1000
}

/// The HTTP API over a relay on `db` (a hub assembled by the hub node's `HubBuilder`), with
/// the relay's loop running until the returned sender is dropped or fired.
async fn serve(
    w: &World,
    db: sled::Db,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let keys = KeyRing::new(&[ApiKeyConfig::from_plaintext("dapp", Role::Customer, "k")]).unwrap();
    let hub = HubBuilder::new(db)
        .directory(Arc::new(Names))
        .messages(w.port.clone(), Duration::from_millis(50))
        .driver_config(DriverConfig::default())
        .two_phase(TwoPhaseConfig {
            release_window: 600,
        })
        .htlc(HtlcConfig { delta: 60 })
        .wallet_secret(zeroize::Zeroizing::new([9u8; 32]))
        .clock(Arc::new(secs))
        .clock_tick(None)
        .api("127.0.0.1:0".parse().unwrap(), keys)
        .start()
        .unwrap();
    let addr = hub.api_addr().unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = rx.await;
        hub.shutdown().await.expect("the hub stopped cleanly");
    });
    (addr, stop, task)
}

async fn post(addr: std::net::SocketAddr, key: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/v1/messages"))
        .bearer_auth("k")
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn get(addr: std::net::SocketAddr, id: &str) -> Value {
    reqwest::Client::new()
        .get(format!("http://{addr}/v1/messages/{id}"))
        .bearer_auth("k")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Poll the message until its state is `want`; returns the last status.
async fn until_state(addr: std::net::SocketAddr, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = get(addr, id).await;
        if s["state"] == want {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "message never reached {want}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn body(w: &World, payload: &[u8], timeout_secs: u64) -> Value {
    json!({
        "source": "alpha", "destination": "beta",
        "sender": w.user.id().to_string(), "recipient": "isth_beta_app",
        "payload_hex": hex::encode(payload), "timeout_secs": timeout_secs
    })
}

async fn outcome(net: &TestNet, p: &Packet) -> Option<SourceOutcome> {
    let b = net
        .node
        .state_get(send_record_key(p.channel, p.sequence))
        .await
        .unwrap()?;
    rmp_serde::from_slice::<SendRecord>(&b).unwrap().outcome
}

async fn receipt(net: &TestNet, p: &Packet) -> Option<Receipt> {
    let b = net
        .node
        .state_get(receipt_key(p.channel, p.sequence))
        .await
        .unwrap()?;
    Some(rmp_serde::from_slice(&b).unwrap())
}

fn packet_of(db: &sled::Db, w: &World, id: &str) -> Packet {
    let relay = MessageRelay::open(db.clone(), w.port.clone()).unwrap();
    let rec = relay.get(id).unwrap().unwrap();
    match rec.phase {
        isthmus_interop::messages::Phase::Acknowledged { packet, .. }
        | isthmus_interop::messages::Phase::TimedOut { packet, .. } => packet,
        other => panic!("not settled: {other:?}"),
    }
}

#[tokio::test]
async fn message_over_http_is_delivered_once_and_acknowledged() {
    let w = world().await;
    let db = sled::open(w.dir.path().join("hub")).unwrap();
    let (addr, stop, task) = serve(&w, db.clone()).await;
    let b = body(&w, b"hello beta", 300);
    let (code, created) = post(addr, "m-1", &b).await;
    assert_eq!(code, 202, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["kind"], "message");
    // A retry with the same key is the same message.
    let (code, again) = post(addr, "m-1", &b).await;
    assert_eq!((code, again["id"].as_str()), (202, Some(id.as_str())));

    let done = until_state(addr, &id, "acknowledged").await;
    assert_eq!(done["terminal"], true);
    assert_eq!(done["legs"][0]["network"], "alpha");
    assert_eq!(done["legs"][1]["state"], "delivered");
    assert_eq!(done["detail"]["sequence"], 1);
    let _ = stop.send(());
    task.await.unwrap();

    let p = packet_of(&db, &w, &id);
    assert_eq!(p.payload, b"hello beta");
    let Some(Receipt::Delivered { ack }) = receipt(&w.beta, &p).await else {
        panic!("no delivery receipt on beta")
    };
    assert_eq!(ack.commitment, p.commitment());
    assert_eq!(
        outcome(&w.alpha, &p).await,
        Some(SourceOutcome::Acknowledged)
    );
    assert_eq!(w.port.deliveries.load(Ordering::SeqCst), 1);
    assert_eq!(w.port.proofs.load(Ordering::SeqCst), 0);

    // Unknown networks are refused, naming the value.
    let mut bad = b.clone();
    bad["destination"] = json!("gamma");
    let (addr, stop, task) = serve(&w, db).await;
    let (code, err) = post(addr, "m-2", &bad).await;
    assert_eq!(code, 400, "{err}");
    assert!(err["message"].as_str().unwrap().contains("gamma"), "{err}");
    let _ = stop.send(());
    task.await.unwrap();
}

#[tokio::test]
async fn message_not_delivered_in_time_ends_timed_out_on_the_source() {
    let w = world().await;
    let db = sled::open(w.dir.path().join("hub")).unwrap();
    // The relay is not running while beta's clock passes the timeout.
    let relay = MessageRelay::open(db.clone(), w.port.clone()).unwrap();
    let spec = MessageSpec {
        source: ALPHA,
        destination: BETA,
        sender: w.user.id().to_string(),
        recipient: "isth_beta_app".into(),
        payload: b"too late".to_vec(),
        timeout: w.port.time(BETA).await.unwrap() + 2,
    };
    let rec = relay
        .create("msg_late", spec.clone(), secs())
        .await
        .unwrap();
    assert_eq!(rec.phase.name(), "committed");
    let deadline = Instant::now() + Duration::from_secs(30);
    while w.port.time(BETA).await.unwrap() < spec.timeout {
        assert!(
            Instant::now() < deadline,
            "beta's clock never passed the timeout"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(relay);

    let (addr, stop, task) = serve(&w, db.clone()).await;
    let done = until_state(addr, "msg_late", "timed_out").await;
    assert_eq!(done["terminal"], true);
    assert_eq!(done["reason"], "timed_out");
    assert_eq!(done["legs"][1]["state"], "timed_out");
    let _ = stop.send(());
    task.await.unwrap();

    let p = packet_of(&db, &w, "msg_late");
    assert!(matches!(
        receipt(&w.beta, &p).await,
        Some(Receipt::TimedOut { .. })
    ));
    assert_eq!(outcome(&w.alpha, &p).await, Some(SourceOutcome::TimedOut));
    assert_eq!(w.port.deliveries.load(Ordering::SeqCst), 0);
    assert_eq!(w.port.proofs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_relay_restarted_mid_way_finishes_without_delivering_twice() {
    let w = world().await;
    let db = sled::open(w.dir.path().join("hub")).unwrap();
    let spec = MessageSpec {
        source: ALPHA,
        destination: BETA,
        sender: w.user.id().to_string(),
        recipient: "isth_beta_app".into(),
        payload: b"once".to_vec(),
        timeout: w.port.time(BETA).await.unwrap() + 300,
    };
    {
        let relay = MessageRelay::open(db.clone(), w.port.clone()).unwrap();
        relay.create("msg_once", spec, secs()).await.unwrap();
        let rec = relay.step("msg_once", secs()).await.unwrap();
        assert_eq!(rec.phase.name(), "delivered");
        assert_eq!(rec.phase.reason(), "awaiting_ack");
    } // the relay stops here, before the ack is settled

    // A fresh relay over the same store: the delivery is not repeated; the ack settles.
    let (addr, stop, task) = serve(&w, db.clone()).await;
    let done = until_state(addr, "msg_once", "acknowledged").await;
    assert_eq!(done["terminal"], true);
    let _ = stop.send(());
    task.await.unwrap();
    let p = packet_of(&db, &w, "msg_once");
    assert_eq!(
        outcome(&w.alpha, &p).await,
        Some(SourceOutcome::Acknowledged)
    );
    assert_eq!(
        w.port.deliveries.load(Ordering::SeqCst),
        1,
        "delivered once"
    );

    // Stepping a finished message again submits nothing.
    let relay = MessageRelay::open(db, w.port.clone()).unwrap();
    let rec = relay.step("msg_once", secs()).await.unwrap();
    assert_eq!(rec.phase.name(), "acknowledged");
    assert_eq!(w.port.deliveries.load(Ordering::SeqCst), 1);
}
