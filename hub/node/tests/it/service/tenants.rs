//! The cross-tenant suite: a hub of two customer tenants (`acme`, `globex`), a partner
//! (`audit`) and their providers, over real sockets. For every route, tenant `globex`
//! acting on `acme`'s objects gets 403 or 404 and nothing changes, as `acme` reads it
//! before and after. Then the key routes over the `hub keys` binary.

use super::world::World;
use super::*;
use futures::{SinkExt, StreamExt};
use isthmus_adapter_api::port::{MessageSpec, PacketPort, PortError, SendTicket};
use isthmus_adapter_api::{Adapter, Finality};
use isthmus_adapter_testkit::mock::{MockAdapter, MockConfig};
use isthmus_core::{Hash32, Keypair};
use isthmus_hub::builder::{Hub, HubBuilder};
use isthmus_hub_api::{ApiKeyConfig, KeyRing, Role};
use isthmus_interop::Connect;
use isthmus_lock_contracts::packet::{
    Acknowledgement, Packet, Receipt, SourceOutcome, TimeoutProof,
};
use isthmus_wallet::{KdfParams, MemorySealedStore, WalletService};
use serde_json::{json, Value};

const ACME: &str = "acme-customer-key";
const ACME_PROVIDER: &str = "acme-provider-key";
const GLOBEX: &str = "globex-customer-key";
const GLOBEX_PROVIDER: &str = "globex-provider-key";
const AUDITOR: &str = "audit-partner-key";
const ADMIN: &str = "ops-admin-key";

/// A port that signs every send and never sees it commit: a message stays `committing`, so
/// its state is stable for before-and-after comparisons.
struct StillPort;

#[async_trait]
impl PacketPort for StillPort {
    async fn prepare_send(&self, spec: &MessageSpec) -> Result<SendTicket, PortError> {
        let id =
            isthmus_core::HashAlgo::Sha256.digest_parts(&[spec.sender.as_bytes(), &spec.payload]);
        Ok(SendTicket {
            id: Hash32(id.0),
            tx: vec![1],
        })
    }
    async fn submit_send(&self, _: &MessageSpec, _: &SendTicket) -> Result<(), PortError> {
        Ok(())
    }
    async fn committed(&self, _: NetworkId, _: &SendTicket) -> Result<Option<Packet>, PortError> {
        Ok(None)
    }
    async fn receipt(&self, _: &Packet) -> Result<Option<Receipt>, PortError> {
        Ok(None)
    }
    async fn time(&self, _: NetworkId) -> Result<u64, PortError> {
        Ok(0)
    }
    async fn deliver(&self, _: &Packet) -> Result<(), PortError> {
        Ok(())
    }
    async fn prove_timeout(&self, _: &Packet) -> Result<(), PortError> {
        Ok(())
    }
    async fn settle_ack(&self, _: &Acknowledgement) -> Result<(), PortError> {
        Ok(())
    }
    async fn settle_timeout(&self, _: &TimeoutProof) -> Result<(), PortError> {
        Ok(())
    }
    async fn outcome(&self, _: &Packet) -> Result<Option<SourceOutcome>, PortError> {
        Ok(None)
    }
}

/// Registered adapters are mock platforms of the network they name.
fn mock_connect() -> Connect {
    Arc::new(|rec| {
        Box::pin(async move {
            let a: Arc<dyn Adapter> = Arc::new(MockAdapter::new(MockConfig::new(
                rec.network.0,
                Finality::Instant,
                vec![],
            )));
            Ok(a)
        })
    })
}

struct Tenants {
    hub: Hub,
    base: String,
    http: reqwest::Client,
}

/// The hub: wallet accounts `alice`, `bob` are acme's, `carol` globex's.
async fn start(dir: &std::path::Path) -> Tenants {
    let wallet = WalletService::open(
        Arc::new(MemorySealedStore::default()),
        b"test",
        KdfParams::INSECURE_FAST,
    )
    .unwrap();
    for (who, tenant) in [("alice", "acme"), ("bob", "acme"), ("carol", "globex")] {
        wallet.set_owner(&Address(who.into()), tenant).unwrap();
    }
    let keys = KeyRing::new(&[
        ApiKeyConfig::from_plaintext("acme-app", Role::Customer, ACME).in_tenant("acme"),
        ApiKeyConfig::from_plaintext("acme-ops", Role::Provider, ACME_PROVIDER).in_tenant("acme"),
        ApiKeyConfig::from_plaintext("globex-app", Role::Customer, GLOBEX).in_tenant("globex"),
        ApiKeyConfig::from_plaintext("globex-ops", Role::Provider, GLOBEX_PROVIDER)
            .in_tenant("globex"),
        ApiKeyConfig::from_plaintext("auditor", Role::Partner, AUDITOR).in_tenant("audit"),
        ApiKeyConfig::from_plaintext("root", Role::Admin, ADMIN).in_tenant("ops"),
    ])
    .unwrap();
    let world = Arc::new(World {
        escrows: Mutex::default(),
        flaky: 0,
        calls: AtomicU64::new(0),
    });
    let hub = HubBuilder::new(sled::open(dir).unwrap())
        .directory(Arc::new(super::wired::Dir))
        .executor(world)
        .driver_config(fast())
        .two_phase(TwoPhaseConfig {
            release_window: 600,
        })
        .htlc(HtlcConfig { delta: 60 })
        .wallet_secret(zeroize::Zeroizing::new([9u8; 32]))
        .clock(Arc::new(|| 1_000))
        .clock_tick(None)
        .messages(Arc::new(StillPort), Duration::from_millis(50))
        .registry(mock_connect(), Duration::from_secs(60))
        .account_owners(Arc::new(wallet))
        .api("127.0.0.1:0".parse().unwrap(), keys)
        .start()
        .unwrap();
    let base = format!("http://{}", hub.api_addr().unwrap());
    Tenants {
        hub,
        base,
        http: reqwest::Client::new(),
    }
}

impl Tenants {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        idem: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key);
        if let Some(i) = idem {
            r = r.header("Idempotency-Key", i);
        }
        if let Some(b) = body {
            r = r.json(b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
    async fn get(&self, path: &str, key: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, key, None, None).await
    }
    async fn post(&self, path: &str, key: &str, idem: &str, body: &Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, key, Some(idem), Some(body))
            .await
    }
    async fn delete(&self, path: &str, key: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, key, None, None)
            .await
    }

    /// Everything `key`'s tenant can read: each collection, each object in it, adapters,
    /// grants.
    async fn snapshot(&self, key: &str) -> Value {
        let mut out = serde_json::Map::new();
        for c in ["transfers", "swaps", "messages"] {
            let (st, page) = self.get(&format!("/v1/{c}"), key).await;
            assert_eq!(st, 200, "{page}");
            for op in page["items"].as_array().unwrap() {
                let id = op["id"].as_str().unwrap();
                let (st, one) = self.get(&format!("/v1/{c}/{id}"), key).await;
                assert_eq!(st, 200, "{one}");
                out.insert(format!("{c}/{id}"), one);
            }
            out.insert(c.to_owned(), page);
        }
        out.insert("adapters".into(), self.get("/v1/adapters", key).await.1);
        out.insert("grants".into(), self.get("/v1/grants", key).await.1);
        Value::Object(out)
    }

    async fn events(&self, key: &str, query: &str) -> Ws {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("{}/v1/events?{query}", self.base.replace("http", "ws"))
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("Authorization", format!("Bearer {key}").parse().unwrap());
        tokio_tungstenite::connect_async(req).await.unwrap().0
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_event(ws: &mut Ws) -> Value {
    let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an event within the deadline")
        .unwrap()
        .unwrap();
    serde_json::from_str(msg.to_text().unwrap()).unwrap()
}

/// Wait (within a deadline) until the named cursor has been stored.
async fn wait_for_cursor(store: &dyn isthmus_hub_api::ApiStore, name: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.get_cursor(name).unwrap().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ack of {name} was not stored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn leg(network: &str, from: &str, to: &str, lock_by: &str) -> Value {
    json!({"network": network, "asset": "native", "amount": "10", "from": from, "to": to, "lock_by": lock_by})
}

fn transfer(from: &str, to: &str, lock_by: &str) -> Value {
    json!({"source": leg("alpha", from, to, lock_by), "counter": leg("beta", to, from, lock_by), "timeout_secs": 900})
}

fn swap(from: &str, to: &str, lock_by: &str) -> Value {
    json!({"initiator": leg("alpha", from, to, lock_by), "participant": leg("beta", to, from, lock_by),
           "initiator_timeout_secs": 400, "participant_timeout_secs": 200})
}

fn message(sender: &str) -> Value {
    json!({"source": "alpha", "destination": "beta", "sender": sender, "recipient": "dave",
           "payload_hex": "00ff", "timeout_secs": 60})
}

/// The error answer of `id` with the id itself blanked, to compare with another's.
fn blank(v: &Value, id: &str) -> String {
    v.to_string().replace(id, "<id>")
}

#[tokio::test]
async fn another_tenant_gets_403_or_404_on_every_route_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let t = start(dir.path()).await;
    let idents = Keypair::dev("gamma-adapter").id().to_string();

    // acme's objects: a transfer, a swap, a message, an adapter, a grant, a cursor
    let (st, tr) = t
        .post(
            "/v1/transfers",
            ACME,
            "order-1",
            &transfer("alice", "bob", "owner"),
        )
        .await;
    assert_eq!(st, 202, "{tr}");
    let (st, sw) = t
        .post("/v1/swaps", ACME, "swap-1", &swap("alice", "bob", "owner"))
        .await;
    assert_eq!(st, 202, "{sw}");
    let (st, msg) = t
        .post("/v1/messages", ACME, "msg-1", &message("alice"))
        .await;
    assert_eq!(st, 202, "{msg}");
    let (st, ad) = t
        .post(
            "/v1/adapters",
            ACME_PROVIDER,
            "-",
            &json!({"network_id": 7, "name": "gamma", "endpoint": "127.0.0.1:9", "identity": idents}),
        )
        .await;
    assert_eq!(st, 201, "{ad}");
    assert_eq!(ad["tenant"], "acme");
    let (st, _) = t
        .call(reqwest::Method::PUT, "/v1/grants/audit", ACME, None, None)
        .await;
    assert_eq!(st, 200);
    let ids: Vec<(&str, String)> = vec![
        ("transfers", tr["id"].as_str().unwrap().to_owned()),
        ("swaps", sw["id"].as_str().unwrap().to_owned()),
        ("messages", msg["id"].as_str().unwrap().to_owned()),
    ];
    for (_, id) in &ids {
        assert_eq!(
            id.len(),
            id.find('_').unwrap() + 1 + 32,
            "random 128-bit id: {id}"
        );
    }
    let mut acme_stream = t.events(ACME, "subscription=feed").await;
    let first = next_event(&mut acme_stream).await;
    assert_eq!(first["tenant"], "acme");
    acme_stream
        .send(tokio_tungstenite::tungstenite::Message::text(format!(
            r#"{{"ack": {}}}"#,
            first["seq"]
        )))
        .await
        .unwrap();
    let store = t.hub.bus().store().clone();
    wait_for_cursor(&*store, "acme/feed").await;
    drop(acme_stream);
    let acme_cursor = store.get_cursor("acme/feed").unwrap();
    let instances = t.hub.driver().journal().all().unwrap().len();
    let before = t.snapshot(ACME).await;
    let globex_before = t.snapshot(GLOBEX).await;
    assert_eq!(before["transfers"]["items"].as_array().unwrap().len(), 1);

    // reads: another tenant's object answers exactly as a missing one
    for key in [GLOBEX, GLOBEX_PROVIDER] {
        for (c, id) in &ids {
            let (st, theirs) = t.get(&format!("/v1/{c}/{id}?wait=1"), key).await;
            assert_eq!(st, 404, "{c}/{id} as {key}: {theirs}");
            let missing = format!(
                "{}_00000000000000000000000000000000",
                &id[..id.find('_').unwrap()]
            );
            let (st, none) = t.get(&format!("/v1/{c}/{missing}"), key).await;
            assert_eq!(st, 404);
            assert_eq!(blank(&theirs, id), blank(&none, &missing));
        }
        for (c, _) in &ids {
            let (st, page) = t.get(&format!("/v1/{c}"), key).await;
            assert_eq!(st, 200);
            assert!(
                page["items"].as_array().unwrap().is_empty(),
                "{c} as {key}: {page}"
            );
        }
    }

    // writes with acme's wallet accounts: forbidden, nothing made
    for (path, body) in [
        ("/v1/transfers", transfer("alice", "carol", "hub_wallet")),
        ("/v1/transfers", transfer("carol", "bob", "hub_wallet")),
        ("/v1/swaps", swap("bob", "carol", "hub_wallet")),
        ("/v1/messages", message("alice")),
    ] {
        let (st, v) = t.post(path, GLOBEX, "steal-1", &body).await;
        assert_eq!(st, 403, "{path}: {v}");
        assert_eq!(v["code"], "forbidden");
    }
    // an account the wallet does not hold for anyone is refused the same way
    let (st, _) = t
        .post(
            "/v1/transfers",
            GLOBEX,
            "steal-2",
            &transfer("mallory", "carol", "hub_wallet"),
        )
        .await;
    assert_eq!(st, 403);
    // the same Idempotency-Key as acme's replays nothing of acme's
    let (st, own) = t
        .post(
            "/v1/transfers",
            GLOBEX,
            "order-1",
            &transfer("alice", "bob", "owner"),
        )
        .await;
    assert_eq!(st, 202, "{own}");
    assert_ne!(own["id"], tr["id"]);
    assert_eq!(own["tenant"], "globex");

    // adapters: another tenant's provider cannot retire acme's; a customer may not at all
    let (st, _) = t.delete("/v1/adapters/gamma", GLOBEX_PROVIDER).await;
    assert_eq!(st, 404);
    let (_, missing) = t.delete("/v1/adapters/nothing", GLOBEX_PROVIDER).await;
    let (_, theirs) = t.delete("/v1/adapters/gamma", GLOBEX_PROVIDER).await;
    assert_eq!(blank(&theirs, "gamma"), blank(&missing, "nothing"));
    for key in [GLOBEX, ACME] {
        let (st, _) = t.delete("/v1/adapters/gamma", key).await;
        assert_eq!(st, 403);
    }

    // keys and grants: only admins touch keys; a tenant changes only its own grants
    for key in [GLOBEX, GLOBEX_PROVIDER, ACME, ACME_PROVIDER, AUDITOR] {
        let body = json!({"tenant": "acme", "role": "admin"});
        let (st, _) = t
            .call(reqwest::Method::POST, "/v1/keys", key, None, Some(&body))
            .await;
        assert_eq!(st, 403);
        assert_eq!(t.get("/v1/keys", key).await.0, 403);
        assert_eq!(t.delete("/v1/keys/key_0", key).await.0, 403);
        let (st, _) = t
            .call(
                reqwest::Method::POST,
                "/v1/keys/key_0/rotate",
                key,
                None,
                None,
            )
            .await;
        assert_eq!(st, 403);
    }
    let (st, g) = t.delete("/v1/grants/audit", GLOBEX).await;
    assert_eq!((st, &g["tenant"]), (200, &json!("globex")));
    let (st, _) = t
        .call(
            reqwest::Method::PUT,
            "/v1/grants/audit",
            AUDITOR,
            None,
            None,
        )
        .await;
    assert_eq!(st, 403);

    // the event stream and its replay: globex sees its own events only, from seq 1
    let mut ws = t.events(GLOBEX, "from=1&subscription=feed").await;
    let e = next_event(&mut ws).await;
    assert_eq!(
        (e["tenant"].as_str(), &e["subject"]),
        (Some("globex"), &own["id"]),
        "{e}"
    );
    ws.send(tokio_tungstenite::tungstenite::Message::text(format!(
        r#"{{"ack": {}}}"#,
        e["seq"]
    )))
    .await
    .unwrap();
    wait_for_cursor(&*store, "globex/feed").await;
    drop(ws);
    // a subject filter naming acme's operation yields nothing: globex's next own event
    // is the first it gets
    let mut ws = t
        .events(GLOBEX, &format!("from=1&subject={}", ids[0].1))
        .await;
    let mut ws_all = t.events(GLOBEX, "").await;
    let (st, later) = t
        .post(
            "/v1/swaps",
            GLOBEX,
            "swap-g",
            &swap("carol", "dave", "owner"),
        )
        .await;
    assert_eq!(st, 202);
    let e = next_event(&mut ws_all).await;
    assert_eq!(e["subject"], later["id"]);
    let quiet = tokio::time::timeout(Duration::from_millis(300), ws.next()).await;
    assert!(quiet.is_err(), "acme's events reached globex: {quiet:?}");

    // acme reads everything as before; the partner acme granted reads it, globex's not
    assert_eq!(t.snapshot(ACME).await, before);
    assert_eq!(t.hub.driver().journal().all().unwrap().len(), instances + 2);
    assert_eq!(store.get_cursor("acme/feed").unwrap(), acme_cursor);
    let globex_after = t.snapshot(GLOBEX).await;
    assert_ne!(globex_after, globex_before);
    assert_eq!(
        globex_after["transfers"]["items"].as_array().unwrap().len(),
        1
    );
    assert_eq!(globex_after["swaps"]["items"].as_array().unwrap().len(), 1);
    assert!(globex_after["messages"]["items"]
        .as_array()
        .unwrap()
        .is_empty());
    for (c, id) in &ids {
        let (st, v) = t.get(&format!("/v1/{c}/{id}"), AUDITOR).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v, before[format!("{c}/{id}")]);
    }
    let (st, _) = t
        .get(
            &format!("/v1/transfers/{}", own["id"].as_str().unwrap()),
            AUDITOR,
        )
        .await;
    assert_eq!(st, 404);
    let mut ws = t.events(AUDITOR, "from=1").await;
    assert_eq!(next_event(&mut ws).await["tenant"], "acme");
    drop(ws);

    // and acme itself may use what is its own
    let (st, v) = t
        .post(
            "/v1/transfers",
            ACME,
            "order-2",
            &transfer("alice", "bob", "hub_wallet"),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    let (st, v) = t.post("/v1/messages", ACME, "msg-2", &message("bob")).await;
    assert_eq!(st, 202, "{v}");
    let (st, v) = t.delete("/v1/adapters/gamma", ACME_PROVIDER).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("retired")));
    t.hub.shutdown().await.expect("the hub stopped cleanly");
}

/// `hub keys` against the running hub, as an operator would run it.
async fn hub_keys(t: &Tenants, admin: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_hub"))
        .arg("keys")
        .args(args)
        .env("ISTHMUS_HUB", &t.base)
        .env("ISTHMUS_KEY", admin)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

#[tokio::test]
async fn hub_keys_creates_lists_rotates_revokes_and_expires_keys_on_a_running_hub() {
    let dir = tempfile::tempdir().unwrap();
    let t = start(dir.path()).await;
    let (ok, key, err) = hub_keys(
        &t,
        ADMIN,
        &[
            "create", "--tenant", "initech", "--role", "customer", "--name", "ci",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        key.starts_with("isk_") && !key.contains(' '),
        "stdout is the key alone: {key}"
    );
    assert!(
        !err.contains(&key),
        "the key is printed once, on stdout: {err}"
    );
    let id = err.split_whitespace().nth(1).unwrap().to_owned();
    assert!(id.starts_with("key_"), "{err}");

    // the new key is a customer of tenant initech, and sees none of acme's objects
    let (st, v) = t
        .post("/v1/transfers", &key, "i-1", &transfer("x", "y", "owner"))
        .await;
    assert_eq!((st, v["tenant"].as_str()), (202, Some("initech")), "{v}");
    let (_, acme_tr) = t
        .post(
            "/v1/transfers",
            ACME,
            "a-1",
            &transfer("alice", "bob", "owner"),
        )
        .await;
    let (st, _) = t
        .get(
            &format!("/v1/transfers/{}", acme_tr["id"].as_str().unwrap()),
            &key,
        )
        .await;
    assert_eq!(st, 404);

    let (ok, list, _) = hub_keys(&t, ADMIN, &["list"]).await;
    assert!(ok);
    assert!(
        list.contains(&id) && list.contains("initech") && list.contains("active"),
        "{list}"
    );
    assert!(!list.contains(&key), "{list}");

    // a non-admin key is refused, and changes nothing
    let (ok, _, err) = hub_keys(&t, ACME, &["revoke", &id]).await;
    assert!(!ok);
    assert!(err.contains("403") && err.contains("forbidden"), "{err}");
    let (ok, _, _) = hub_keys(&t, &key, &["create", "--tenant", "acme", "--role", "admin"]).await;
    assert!(!ok);
    assert_eq!(t.get("/v1/transfers", &key).await.0, 200);

    // rotate: the old key is refused at once, the new one works
    let (ok, new_key, err) = hub_keys(&t, ADMIN, &["rotate", &id]).await;
    assert!(ok, "{err}");
    assert_ne!(new_key, key);
    assert_eq!(t.get("/v1/transfers", &key).await.0, 401);
    let (st, page) = t.get("/v1/transfers", &new_key).await;
    assert_eq!(st, 200);
    assert_eq!(page["items"][0]["id"], v["id"], "the same tenant's objects");
    // stderr: "rotated OLD (now revoked) into NEW ..."
    let new_id = err
        .split_whitespace()
        .skip_while(|w| *w != "into")
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(new_id.starts_with("key_") && new_id != id, "{err}");
    let (_, list, _) = hub_keys(&t, ADMIN, &["list"]).await;
    assert!(
        list.lines()
            .any(|l| l.contains(&id) && l.contains("revoked")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.contains(&new_id) && l.contains("active")),
        "{list}"
    );

    // revoke: refused from the next request on
    let (ok, out, err) = hub_keys(&t, ADMIN, &["revoke", &new_id]).await;
    assert!(ok, "{err}");
    assert!(out.contains("revoked"), "{out}");
    assert_eq!(t.get("/v1/transfers", &new_key).await.0, 401);

    // expiry, and the errors a mistyped command gets
    let (ok, short, err) = hub_keys(
        &t,
        ADMIN,
        &[
            "create",
            "--tenant",
            "initech",
            "--role",
            "partner",
            "--expires",
            "+2s",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(t.get("/v1/transfers", &short).await.0, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while t.get("/v1/transfers", &short).await.0 != 401 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the key never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, _, err) = hub_keys(
        &t,
        ADMIN,
        &["create", "--tenant", "initech", "--role", "root"],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("root"), "{err}");
    let (ok, _, err) = hub_keys(
        &t,
        ADMIN,
        &[
            "create",
            "--tenant",
            "initech",
            "--role",
            "customer",
            "--expires",
            "someday",
        ],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("someday"), "{err}");
    t.hub.shutdown().await.expect("the hub stopped cleanly");
}
