//! HTTP API tests against a real warp server on 127.0.0.1:0 with a real sled store and an
//! in-memory backend.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use isthmus_hub_api::model::*;
use isthmus_hub_api::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod hardening;
mod tenants;

type OpResult = Result<OperationStatus, BackendError>;

#[derive(Default)]
struct MemBackend {
    ops: Mutex<BTreeMap<String, OperationStatus>>,
    creates: AtomicUsize,
}

impl MemBackend {
    fn insert(&self, id: &OpId, kind: OpKind, by: &Principal) -> OperationStatus {
        self.creates.fetch_add(1, Ordering::SeqCst);
        let mut ops = self.ops.lock().unwrap();
        ops.entry(id.0.clone())
            .or_insert_with(|| OperationStatus {
                id: id.0.clone(),
                kind,
                tenant: by.tenant.clone(),
                state: "created".into(),
                terminal: false,
                reason: Some("awaiting_source_lock".into()),
                reason_detail: None,
                legs: vec![],
                created_at: 1,
                updated_at: 1,
                detail: Value::Null,
            })
            .clone()
    }
    fn finish(&self, id: &str) {
        let mut ops = self.ops.lock().unwrap();
        let op = ops.get_mut(id).unwrap();
        op.state = "released".into();
        op.terminal = true;
        op.reason = None;
    }
    fn get(&self, kind: OpKind, id: &str) -> Option<OperationStatus> {
        self.ops
            .lock()
            .unwrap()
            .get(id)
            .filter(|o| o.kind == kind)
            .cloned()
    }
    fn list(
        &self,
        kind: OpKind,
        tenants: &[String],
        after: Option<&str>,
        limit: usize,
    ) -> Page<OperationStatus> {
        let ops = self.ops.lock().unwrap();
        let items: Vec<_> = ops
            .values()
            .filter(|o| o.kind == kind && after.is_none_or(|a| o.id.as_str() > a))
            .filter(|o| tenants.contains(&o.tenant))
            .take(limit + 1)
            .cloned()
            .collect();
        let more = items.len() > limit;
        let items: Vec<_> = items.into_iter().take(limit).collect();
        let next = if more {
            items.last().map(|o| o.id.clone())
        } else {
            None
        };
        Page { items, next }
    }
}

#[async_trait]
impl Directory for MemBackend {
    async fn platforms(&self) -> Result<Vec<PlatformInfo>, BackendError> {
        Ok(vec![PlatformInfo {
            name: "alpha".into(),
            kind: "native".into(),
            healthy: true,
            capabilities: json!({"finality": "instant"}),
        }])
    }
    async fn networks(&self) -> Result<Vec<NetworkInfo>, BackendError> {
        Err(BackendError::Unavailable("hub chain is syncing".into()))
    }
}

#[async_trait]
impl Operations for MemBackend {
    async fn create_transfer(
        &self,
        id: &OpId,
        by: &Principal,
        req: CreateTransfer,
    ) -> Result<OperationStatus, BackendError> {
        if req.source.network == "nowhere" {
            return Err(BackendError::Rejected {
                message: "unknown network `nowhere`".into(),
                details: vec![],
            });
        }
        if req.source.from == "someone-elses" {
            return Err(BackendError::Forbidden(
                "source.from: account `someone-elses` is not the caller's".into(),
            ));
        }
        Ok(self.insert(id, OpKind::Transfer, by))
    }
    async fn create_swap(&self, id: &OpId, by: &Principal, _: CreateSwap) -> OpResult {
        Ok(self.insert(id, OpKind::Swap, by))
    }
    async fn get_operation(
        &self,
        kind: OpKind,
        id: &str,
    ) -> Result<Option<OperationStatus>, BackendError> {
        Ok(self.get(kind, id))
    }
    async fn list_operations(
        &self,
        kind: OpKind,
        tenants: &[String],
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<OperationStatus>, BackendError> {
        Ok(self.list(kind, tenants, after, limit))
    }
}

#[async_trait]
impl Messages for MemBackend {
    async fn create_message(&self, id: &OpId, by: &Principal, _: CreateMessage) -> OpResult {
        Ok(self.insert(id, OpKind::Message, by))
    }
    async fn get_message(&self, id: &str) -> Result<Option<OperationStatus>, BackendError> {
        Ok(self.get(OpKind::Message, id))
    }
    async fn list_messages(
        &self,
        tenants: &[String],
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<OperationStatus>, BackendError> {
        Ok(self.list(OpKind::Message, tenants, after, limit))
    }
}

struct Server {
    addr: SocketAddr,
    backend: Arc<MemBackend>,
    bus: EventBus,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
}

const CUSTOMER: &str = "cust-key-1";
const PARTNER: &str = "partner-key-1";
/// A customer of tenant `other`.
const OTHER: &str = "other-key-1";
/// An admin (tenant `default`).
const ADMIN: &str = "admin-key-1";

async fn start_at(dir: &std::path::Path) -> Server {
    start_at_with(dir, ApiSettings::default()).await
}

async fn start_at_with(dir: &std::path::Path, settings: ApiSettings) -> Server {
    let keys = KeyRing::new(&[
        ApiKeyConfig::from_plaintext("dapp", Role::Customer, CUSTOMER),
        ApiKeyConfig::from_plaintext("builder", Role::Partner, PARTNER).in_tenant("audit"),
        ApiKeyConfig::from_plaintext("rival", Role::Customer, OTHER).in_tenant("other"),
        ApiKeyConfig::from_plaintext("root", Role::Admin, ADMIN),
    ])
    .unwrap();
    // A stopped server's last connection task may drop its state (and the database lock)
    // just after the server future ends: wait for the lock, within a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let db = loop {
        match sled::open(dir) {
            Ok(db) => break db,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot reopen the api store: {e}"),
        }
    };
    let store = Arc::new(SledApiStore::open(db).unwrap());
    let bus = EventBus::new(store);
    let backend = Arc::new(MemBackend::default());
    let backends = Backends::new(backend.clone(), backend.clone()).with_messages(backend.clone());
    let state = ApiState::new(backends, keys, bus.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr, fut) = serve_with("127.0.0.1:0".parse().unwrap(), state, settings, async {
        let _ = rx.await;
    })
    .unwrap();
    let task = tokio::spawn(fut);
    Server {
        addr,
        backend,
        bus,
        stop: Some(tx),
        task,
        _dir: None,
    }
}

async fn start() -> Server {
    start_with(ApiSettings::default()).await
}

async fn start_with(settings: ApiSettings) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start_at_with(dir.path(), settings).await;
    s._dir = Some(dir);
    s
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

fn transfer_body(amount: &str) -> Value {
    json!({
        "source": {"network": "alpha", "asset": "ALP", "amount": amount, "from": "alice", "to": "bob"},
        "counter": {"network": "beta", "asset": "BET", "amount": "5", "from": "bob", "to": "alice"},
        "timeout_secs": 60
    })
}

async fn post(
    s: &Server,
    path: &str,
    key: Option<&str>,
    idem: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let mut r = reqwest::Client::new().post(s.url(path)).json(body);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    if let Some(i) = idem {
        r = r.header("Idempotency-Key", i);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get(s: &Server, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut r = reqwest::Client::new().get(s.url(path));
    if let Some(k) = key {
        r = r.header("X-Api-Key", k);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn assert_error_shape(v: &Value, code: &str) {
    assert_eq!(v["code"], code, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
}

#[tokio::test]
async fn auth_and_roles_change_nothing_when_refused() {
    let s = start().await;
    let (st, v) = get(&s, "/v1/health", None).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("ok")));

    let (st, v) = get(&s, "/v1/platforms", None).await;
    assert_eq!(st, 401);
    assert_error_shape(&v, "unauthenticated");
    let (st, _) = get(&s, "/v1/platforms", Some("wrong")).await;
    assert_eq!(st, 401);
    let (st, v) = get(&s, "/v1/platforms", Some(CUSTOMER)).await;
    assert_eq!(st, 200);
    assert_eq!(v[0]["name"], "alpha");

    let (st, v) = post(
        &s,
        "/v1/transfers",
        Some(PARTNER),
        Some("k1"),
        &transfer_body("10"),
    )
    .await;
    assert_eq!(st, 403);
    assert_error_shape(&v, "forbidden");
    let (st, v) = post(&s, "/v1/transfers", None, Some("k1"), &transfer_body("10")).await;
    assert_eq!(st, 401);
    assert_error_shape(&v, "unauthenticated");
    assert_eq!(s.backend.creates.load(Ordering::SeqCst), 0);
    let (_, page) = get(&s, "/v1/transfers", Some(CUSTOMER)).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 0);

    // Backend trouble is reported as retryable 503, not 500.
    let (st, v) = get(&s, "/v1/networks", Some(CUSTOMER)).await;
    assert_eq!(st, 503);
    assert_error_shape(&v, "unavailable");
    s.stop().await;
}

#[tokio::test]
async fn idempotency_same_body_replays_different_body_conflicts() {
    let s = start().await;
    let (st, v) = post(
        &s,
        "/v1/transfers",
        Some(CUSTOMER),
        None,
        &transfer_body("10"),
    )
    .await;
    assert_eq!(st, 400);
    assert_error_shape(&v, "idempotency_key_required");

    let (st, first) = post(
        &s,
        "/v1/transfers",
        Some(CUSTOMER),
        Some("t-1"),
        &transfer_body("10"),
    )
    .await;
    assert_eq!(st, 202, "{first}");
    let id = first["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("tr_"));
    let (st, again) = post(
        &s,
        "/v1/transfers",
        Some(CUSTOMER),
        Some("t-1"),
        &transfer_body("10"),
    )
    .await;
    assert_eq!((st, &again), (202, &first));
    assert_eq!(s.backend.creates.load(Ordering::SeqCst), 1);

    let (st, v) = post(
        &s,
        "/v1/transfers",
        Some(CUSTOMER),
        Some("t-1"),
        &transfer_body("11"),
    )
    .await;
    assert_eq!(st, 409);
    assert_error_shape(&v, "idempotency_conflict");
    assert_eq!(s.backend.creates.load(Ordering::SeqCst), 1);

    let (st, v) = get(&s, &format!("/v1/transfers/{id}"), Some(CUSTOMER)).await;
    assert_eq!(st, 200);
    assert_eq!(v["reason"], "awaiting_source_lock");
    let (st, v) = get(&s, "/v1/transfers/tr_nope", Some(CUSTOMER)).await;
    assert_eq!(st, 404);
    assert_error_shape(&v, "not_found");
    // a transfer id is not a swap id
    let (st, _) = get(&s, &format!("/v1/swaps/{id}"), Some(CUSTOMER)).await;
    assert_eq!(st, 404);
    s.stop().await;
}

#[tokio::test]
async fn idempotency_record_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_at(dir.path()).await;
    let (_, first) = post(
        &s,
        "/v1/transfers",
        Some(CUSTOMER),
        Some("r-1"),
        &transfer_body("3"),
    )
    .await;
    s.stop().await;
    let s = start_at(dir.path()).await;
    let (st, again) = post(
        &s,
        "/v1/transfers",
        Some(CUSTOMER),
        Some("r-1"),
        &transfer_body("3"),
    )
    .await;
    assert_eq!((st, again), (202, first));
    assert_eq!(
        s.backend.creates.load(Ordering::SeqCst),
        0,
        "answered from the durable record"
    );
    s.stop().await;
}

#[tokio::test]
async fn validation_lists_every_problem() {
    let s = start().await;
    let body = json!({
        "source": {"network": "alpha", "asset": "", "amount": "-3", "from": "a", "to": "b"},
        "counter": {"network": "alpha", "asset": "X", "amount": "0", "from": "b", "to": "a"},
        "timeout_secs": 0
    });
    let (st, v) = post(&s, "/v1/transfers", Some(CUSTOMER), Some("v-1"), &body).await;
    assert_eq!(st, 400);
    assert_error_shape(&v, "invalid_request");
    assert_eq!(v["details"].as_array().unwrap().len(), 5, "{v}");

    let (st, v) = post(
        &s,
        "/v1/transfers",
        Some(CUSTOMER),
        Some("v-2"),
        &json!({"bogus": 1}),
    )
    .await;
    assert_eq!(st, 400);
    assert_error_shape(&v, "invalid_request");

    let swap = json!({
        "initiator": {"network": "alpha", "asset": "A", "amount": "1", "from": "a", "to": "b"},
        "participant": {"network": "beta", "asset": "B", "amount": "1", "from": "b", "to": "a"},
        "hashlock": "abcd",
        "initiator_timeout_secs": 10, "participant_timeout_secs": 20
    });
    let (st, v) = post(&s, "/v1/swaps", Some(CUSTOMER), Some("s-1"), &swap).await;
    assert_eq!(st, 400);
    assert_eq!(v["details"].as_array().unwrap().len(), 2, "{v}");

    let (st, v) = post(&s, "/v1/transfers", Some(CUSTOMER), Some("v-3"), &{
        let mut b = transfer_body("1");
        b["source"]["network"] = json!("nowhere");
        b
    })
    .await;
    assert_eq!(st, 400);
    assert!(v["message"].as_str().unwrap().contains("nowhere"));

    let big = json!({"source": "x".repeat(300 * 1024)});
    let (st, v) = post(&s, "/v1/messages", Some(CUSTOMER), Some("b-1"), &big).await;
    assert_eq!(st, 413);
    assert_error_shape(&v, "payload_too_large");
    assert_eq!(s.backend.creates.load(Ordering::SeqCst), 0);
    s.stop().await;
}

#[tokio::test]
async fn wait_returns_when_terminal_and_pagination_walks_all() {
    let s = start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (st, v) = post(
            &s,
            "/v1/transfers",
            Some(CUSTOMER),
            Some(&format!("p-{i}")),
            &transfer_body("1"),
        )
        .await;
        assert_eq!(st, 202);
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/transfers?limit=2&after={a}"),
            None => "/v1/transfers?limit=2".into(),
        };
        let (st, page) = get(&s, &path, Some(CUSTOMER)).await;
        assert_eq!(st, 200);
        for it in page["items"].as_array().unwrap() {
            seen.push(it["id"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    ids.sort();
    assert_eq!(seen, ids);
    let (st, _) = get(&s, "/v1/transfers?limit=0", Some(CUSTOMER)).await;
    assert_eq!(st, 400);

    let id = ids[0].clone();
    let backend = s.backend.clone();
    let bus = s.bus.clone();
    let id2 = id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        backend.finish(&id2);
        bus.publish_for(
            Some(DEFAULT_TENANT),
            "transfer.updated",
            &id2,
            vec![],
            json!({"state": "released"}),
        )
        .unwrap();
    });
    let (st, v) = get(&s, &format!("/v1/transfers/{id}?wait=20"), Some(CUSTOMER)).await;
    assert_eq!(st, 200);
    assert_eq!(v["terminal"], true, "{v}");
    assert_eq!(v["state"], "released");
    s.stop().await;
}

async fn ws_connect(
    s: &Server,
    query: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/v1/events?{query}", s.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("X-Api-Key", CUSTOMER.parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

async fn next_event(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("event within deadline")
        .unwrap()
        .unwrap();
    serde_json::from_str(msg.to_text().unwrap()).unwrap()
}

#[tokio::test]
async fn events_replay_filter_live_and_durable_cursor() {
    let s = start().await;
    for i in 0..4 {
        let kind = if i % 2 == 0 {
            "transfer.updated"
        } else {
            "swap.updated"
        };
        s.bus
            .publish_for(
                Some(DEFAULT_TENANT),
                kind,
                &format!("x{i}"),
                vec!["alpha".into()],
                json!({"i": i}),
            )
            .unwrap();
    }
    // replay with a kind filter
    let mut ws = ws_connect(&s, "from=1&kind=transfer.*").await;
    assert_eq!(next_event(&mut ws).await["seq"], 1);
    assert_eq!(next_event(&mut ws).await["seq"], 3);
    // live, after replay
    // another tenant's event and a hub-wide one are not the customer's to see
    s.bus
        .publish_for(Some("other"), "transfer.updated", "y", vec![], json!({}))
        .unwrap();
    s.bus
        .publish("alert.tps", "hub", vec![], json!({}))
        .unwrap();
    s.bus
        .publish_for(
            Some(DEFAULT_TENANT),
            "transfer.updated",
            "x4",
            vec![],
            json!({}),
        )
        .unwrap();
    assert_eq!(next_event(&mut ws).await["seq"], 7);
    drop(ws);

    // named subscription: ack 2, reconnect resumes at 3
    let mut ws = ws_connect(&s, "subscription=ops").await;
    assert_eq!(next_event(&mut ws).await["seq"], 1);
    assert_eq!(next_event(&mut ws).await["seq"], 2);
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        r#"{"ack": 2}"#,
    ))
    .await
    .unwrap();
    // the ack is processed before the next event is requested by the client
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while s.bus.store().get_cursor("default/ops").unwrap() != Some(2) {
        assert!(tokio::time::Instant::now() < deadline, "ack not stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(ws);
    let mut ws = ws_connect(&s, "subscription=ops").await;
    assert_eq!(next_event(&mut ws).await["seq"], 3);
    drop(ws);

    // unauthenticated upgrade is refused with the error shape
    let resp = reqwest::Client::new()
        .get(s.url("/v1/events"))
        .header("Connection", "upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    s.stop().await;
}

#[tokio::test]
async fn openapi_documents_exactly_the_served_paths() {
    let s = start().await;
    let (st, doc) = get(&s, "/v1/openapi.json", None).await;
    assert_eq!(st, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    let paths: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(paths.len(), 19, "{paths:?}");
    for p in &paths {
        let concrete = p
            .replace("{id}", "some-id")
            .replace("{partner}", "some-tenant");
        let (st, v) = get(&s, &concrete, Some(CUSTOMER)).await;
        // documented paths exist: they may answer 404 for an unknown *object*, but never
        // "no such endpoint"
        let unknown_endpoint = v["message"]
            .as_str()
            .is_some_and(|m| m.contains("no such endpoint"));
        assert!(!unknown_endpoint, "{p} answered {st} {v}");
    }
    let (st, v) = get(&s, "/v1/nothing-here", Some(CUSTOMER)).await;
    assert_eq!(st, 404);
    assert!(v["message"].as_str().unwrap().contains("no such endpoint"));
    s.stop().await;
}

#[tokio::test]
async fn shutdown_is_bounded_with_a_long_poll_and_an_event_stream_open() {
    let s = start().await;
    let addr = s.addr;
    let (st, v) = post(
        &s,
        "/v1/transfers",
        Some(CUSTOMER),
        Some("lp"),
        &transfer_body("1"),
    )
    .await;
    assert_eq!(st, 202);
    let _ws = ws_connect(&s, "from=1").await;
    // A client long-polling a transfer that will not finish (the longest wait allowed).
    let url = s.url(&format!(
        "/v1/transfers/{}?wait={}",
        v["id"].as_str().unwrap(),
        isthmus_hub_api::server::MAX_WAIT_SECS
    ));
    let poll = tokio::spawn(async move {
        reqwest::Client::new()
            .get(url)
            .header("X-Api-Key", CUSTOMER)
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "the long poll is in flight");
    let Server { stop, task, .. } = s;
    let _ = stop.unwrap().send(());
    tokio::time::timeout(isthmus_hub_api::SHUTDOWN_DRAIN * 3, task)
        .await
        .expect("the server stops within the drain bound although a long poll is open")
        .unwrap();
    // The listener is gone: a new connection is refused.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
