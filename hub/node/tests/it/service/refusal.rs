//! A network that keeps refusing an action the hub wants shows in the operation's status
//! (`adapter_refused`, or `action_retrying` after repeated retryable failures) with the
//! network, the action and the adapter's error, without changing the contract's state;
//! once the network takes the action, the operation completes and the reason clears.

use super::wired::{alice_pays_bob, boot_hub, customer, wait_balance, wait_done, Dir, Hub};
use super::*;
use isthmus_adapter_api::{
    Adapter, AdapterError, ClaimRequest, EventPage, Evidence, Heads, Health, LockRequest,
    OnChainLock, PlatformDescriptor, RefundRequest, ReleaseRequest, SignedTx, TxStatus, Verified,
};
use isthmus_adapter_testkit::mock::MockAdapter;
use isthmus_hub_api::model::{CreateSwap, LockBy, OpKind, OperationStatus, SwapSide};
use isthmus_hub_api::{ApiKeyConfig, ApiState, Backends, KeyRing, OpId, Operations, Role};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Per operation (`release`, `claim`), the error the adapter answers with while set.
#[derive(Default)]
pub(super) struct Refusals {
    by_op: Mutex<HashMap<&'static str, AdapterError>>,
    refused: AtomicU64,
}

impl Refusals {
    pub(super) fn set(&self, op: &'static str, err: Option<AdapterError>) {
        let mut m = self.by_op.lock().unwrap();
        match err {
            Some(e) => m.insert(op, e),
            None => m.remove(op),
        };
    }

    fn check(&self, op: &'static str) -> Result<(), AdapterError> {
        match self.by_op.lock().unwrap().get(op) {
            Some(e) => {
                self.refused.fetch_add(1, Ordering::SeqCst);
                Err(e.clone())
            }
            None => Ok(()),
        }
    }

    fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }
}

/// The mock platform, refusing the operations its [`Refusals`] name (as an escrow that
/// reverts, or a node that is down, would).
pub(super) struct Refusing {
    pub(super) inner: Arc<MockAdapter>,
    pub(super) refusals: Arc<Refusals>,
}

#[async_trait]
impl Adapter for Refusing {
    fn descriptor(&self) -> &PlatformDescriptor {
        self.inner.descriptor()
    }
    async fn health(&self) -> Result<Health, AdapterError> {
        self.inner.health().await
    }
    async fn heads(&self) -> Result<Heads, AdapterError> {
        self.inner.heads().await
    }
    async fn events_since(
        &self,
        after: isthmus_adapter_api::Checkpoint,
        limit: u32,
    ) -> Result<EventPage, AdapterError> {
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
    async fn verify_evidence(
        &self,
        tx: &TxId,
        evidence: &Evidence,
    ) -> Result<Verified, AdapterError> {
        self.inner.verify_evidence(tx, evidence).await
    }
    async fn balance(&self, account: &Address, asset: &AssetId) -> Result<Amount, AdapterError> {
        self.inner.balance(account, asset).await
    }
    async fn lock(&self, req: &LockRequest) -> Result<TxId, AdapterError> {
        self.refusals.check("lock")?;
        self.inner.lock(req).await
    }
    async fn release(&self, req: &ReleaseRequest) -> Result<TxId, AdapterError> {
        self.refusals.check("release")?;
        self.inner.release(req).await
    }
    async fn refund(&self, req: &RefundRequest) -> Result<TxId, AdapterError> {
        self.refusals.check("refund")?;
        self.inner.refund(req).await
    }
    async fn claim(&self, req: &ClaimRequest) -> Result<TxId, AdapterError> {
        self.refusals.check("claim")?;
        self.inner.claim(req).await
    }
    async fn lock_state(&self, lock_id: &LockId) -> Result<Option<OnChainLock>, AdapterError> {
        self.inner.lock_state(lock_id).await
    }
}

/// An RPC URL with credentials, as adapter errors quote their endpoint.
const SECRET: &str = "hunter2";

fn reverted() -> AdapterError {
    AdapterError::Rejected {
        network: NetworkId(2),
        reason: format!(
            "execution reverted: EscrowPaused() (rpc http://ops:{SECRET}@127.0.0.1:8545/)"
        ),
    }
}

fn node_down() -> AdapterError {
    AdapterError::Unavailable {
        network: NetworkId(2),
        reason: format!("error sending request for url (http://ops:{SECRET}@127.0.0.1:8545/)"),
    }
}

async fn status(hub: &Hub, kind: OpKind, id: &str) -> OperationStatus {
    hub.backend.get_operation(kind, id).await.unwrap().unwrap()
}

/// Poll the status until `pred` holds; every status seen is passed to `each` first.
async fn wait_status(
    hub: &Hub,
    kind: OpKind,
    id: &str,
    mut each: impl FnMut(&OperationStatus),
    pred: impl Fn(&OperationStatus) -> bool,
) -> OperationStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let st = status(hub, kind, id).await;
        each(&st);
        if pred(&st) {
            return st;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reached: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn reason_is(want: &'static str) -> impl Fn(&OperationStatus) -> bool {
    move |s| s.reason.as_deref() == Some(want)
}

/// The API events about `id`, oldest first, as JSON.
fn events_of(hub: &Hub, id: &str) -> Vec<Value> {
    hub.bus
        .store()
        .events_from(1, 10_000)
        .unwrap()
        .into_iter()
        .filter(|e| e.subject == id)
        .map(|e| e.data)
        .collect()
}

/// The events show the diagnosis appearing with `reason`, and later clearing while the
/// state was still `state` (the clear is its own event, not only the next transition's).
fn assert_published_and_cleared(hub: &Hub, id: &str, reason: &str, state: &str) {
    let events = events_of(hub, id);
    let shown = events
        .iter()
        .position(|e| e["reason"] == reason)
        .unwrap_or_else(|| panic!("no `{reason}` event: {events:#?}"));
    assert!(
        events[shown]["reason_detail"]["network"] == "beta",
        "{events:#?}"
    );
    let cleared = events[shown..]
        .iter()
        .position(|e| e["state"] == state && e["reason"] == state)
        .unwrap_or_else(|| panic!("the diagnosis never cleared in an event: {events:#?}"));
    assert!(events[shown + cleared].get("reason_detail").is_none());
    for e in &events {
        assert!(
            !e.to_string().contains(SECRET),
            "credentials published: {e}"
        );
    }
}

/// The network takes `op` again: the operation completes (state and reason `want`, no
/// detail) and alice was paid `paid` on beta.
async fn stop_refusing_and_complete(
    hub: &Hub,
    op: &'static str,
    kind: OpKind,
    id: &str,
    want: &str,
    paid: u128,
) {
    hub.beta_refusals.set(op, None);
    assert!(wait_done(hub, id).await.contract.status().terminal);
    let end = status(hub, kind, id).await;
    assert_eq!(
        (end.state.as_str(), end.reason.as_deref(), end.reason_detail),
        (want, Some(want), None)
    );
    assert_eq!(hub.bal(&hub.beta, "alice").await, paid);
}

#[tokio::test]
async fn a_refused_release_shows_adapter_refused_until_the_network_takes_it() {
    let hub = boot_hub();
    hub.beta_refusals.set("release", Some(reverted()));
    let st = alice_pays_bob(&hub, "tr_refused", LockBy::HubWallet).await;
    let shown = wait_status(
        &hub,
        OpKind::Transfer,
        &st.id,
        |_| {},
        reason_is("adapter_refused"),
    )
    .await;
    assert_eq!(shown.state, "releasing", "{shown:?}");
    assert!(!shown.terminal);
    let d = shown.reason_detail.clone().unwrap();
    assert_eq!(
        (d.action.as_str(), d.leg.as_deref(), d.network.as_deref()),
        ("release", Some("b"), Some("beta"))
    );
    assert_eq!((d.error_code.as_str(), d.retryable), ("rejected", false));
    assert!(d.message.contains("EscrowPaused()"), "{}", d.message);
    assert!(
        d.message.contains("http://127.0.0.1:8545/"),
        "{}",
        d.message
    );
    assert!(!d.message.contains(SECRET), "{}", d.message);
    assert_eq!(d.state_reason, "releasing");
    assert!(d.attempts >= 1 && d.first_failed_at <= d.last_failed_at);

    // alpha's leg is released; beta's keeps being refused, and the refusals change no state
    wait_balance(&hub, &hub.alpha, "bob", 100).await;
    let settled = |hub: &Hub| hub.driver.journal().get_by_api_id(&st.id).unwrap().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let before = loop {
        // the release of alpha's leg becoming final is the last transition to expect
        let i = settled(&hub);
        if matches!(&i.contract, Contract::TwoPhase(m) if m.legs.a.phase() == LegPhase::Released) {
            break i;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alpha never released"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let attempts = status(&hub, OpKind::Transfer, &st.id)
        .await
        .reason_detail
        .unwrap()
        .attempts;
    let refused = hub.beta_refusals.refused();
    let later = wait_status(
        &hub,
        OpKind::Transfer,
        &st.id,
        |_| {},
        |s| {
            s.reason_detail
                .as_ref()
                .is_some_and(|d| d.attempts >= attempts + 2)
        },
    )
    .await;
    assert_eq!(later.reason.as_deref(), Some("adapter_refused"));
    assert!(hub.beta_refusals.refused() >= refused + 2);
    let after = settled(&hub);
    assert_eq!(after.seq, before.seq, "a refusal is not a transition");
    assert_eq!(after.contract.status(), before.contract.status());
    assert_eq!(hub.bal(&hub.beta, "alice").await, 0);

    // the network takes it: the transfer completes and the reason clears
    stop_refusing_and_complete(&hub, "release", OpKind::Transfer, &st.id, "released", 40).await;
    assert_published_and_cleared(&hub, &st.id, "adapter_refused", "releasing");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_release_failing_with_retryable_errors_shows_action_retrying_after_n_attempts() {
    let hub = boot_hub();
    hub.beta_refusals.set("release", Some(node_down()));
    let st = alice_pays_bob(&hub, "tr_retrying", LockBy::HubWallet).await;
    // fast() shows `action_retrying` from the third failure in a row, never before
    let shown = wait_status(
        &hub,
        OpKind::Transfer,
        &st.id,
        |s| {
            if let Some(d) = &s.reason_detail {
                assert!(
                    d.attempts >= 3,
                    "shown after {} attempts: {s:?}",
                    d.attempts
                );
            }
            assert_ne!(s.reason.as_deref(), Some("adapter_refused"), "{s:?}");
        },
        reason_is("action_retrying"),
    )
    .await;
    let d = shown.reason_detail.unwrap();
    assert_eq!(
        (
            d.action.as_str(),
            d.network.as_deref(),
            d.error_code.as_str(),
            d.retryable
        ),
        ("release", Some("beta"), "unavailable", true)
    );
    assert!(!d.message.contains(SECRET), "{}", d.message);
    assert!(d.message.contains("127.0.0.1:8545"), "{}", d.message);
    assert_eq!(
        (shown.state.as_str(), d.state_reason.as_str()),
        ("releasing", "releasing")
    );

    stop_refusing_and_complete(&hub, "release", OpKind::Transfer, &st.id, "released", 40).await;
    assert_published_and_cleared(&hub, &st.id, "action_retrying", "releasing");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_refused_claim_shows_in_the_swap_status_until_it_goes_through() {
    let hub = boot_hub();
    hub.beta_refusals.set("claim", Some(reverted()));
    let side = |network: &str, amount: &str, from: &str, to: &str| SwapSide {
        network: network.into(),
        asset: "native".into(),
        amount: amount.into(),
        from: from.into(),
        to: to.into(),
        lock_by: LockBy::HubWallet,
    };
    let st = hub
        .backend
        .create_swap(
            &OpId("sw_refused".into()),
            &customer(),
            CreateSwap {
                initiator: side("alpha", "5", "alice", "bob"),
                participant: side("beta", "7", "bob", "alice"),
                hashlock: None,
                initiator_timeout_secs: 400,
                participant_timeout_secs: 200,
            },
        )
        .await
        .unwrap();
    let shown = wait_status(
        &hub,
        OpKind::Swap,
        &st.id,
        |_| {},
        reason_is("adapter_refused"),
    )
    .await;
    let d = shown.reason_detail.unwrap();
    assert_eq!(
        (
            d.action.as_str(),
            d.leg.as_deref(),
            d.network.as_deref(),
            d.error_code.as_str()
        ),
        ("claim", Some("b"), Some("beta"), "rejected")
    );
    // the machine's own reason is kept underneath
    assert_eq!(d.state_reason, "claiming");
    assert!(!shown.terminal);
    assert_eq!(hub.bal(&hub.beta, "alice").await, 0);

    stop_refusing_and_complete(&hub, "claim", OpKind::Swap, &st.id, "completed", 7).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn the_http_status_of_a_refused_transfer_carries_the_documented_reason_detail() {
    let hub = boot_hub();
    hub.beta_refusals.set("release", Some(reverted()));
    let keys = KeyRing::new(&[ApiKeyConfig::from_plaintext("dapp", Role::Customer, "k")]).unwrap();
    let backends = Backends::new(Arc::new(Dir), hub.backend.clone());
    let state = ApiState::new(backends, keys, hub.bus.clone());
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, server) = isthmus_hub_api::serve("127.0.0.1:0".parse().unwrap(), state, async {
        let _ = server_stopped.await;
    })
    .unwrap();
    let server = tokio::spawn(server);
    let http = reqwest::Client::new();
    let body = json!({
        "source": {"network": "alpha", "asset": "native", "amount": "100", "from": "alice", "to": "bob"},
        "counter": {"network": "beta", "asset": "native", "amount": "40", "from": "bob", "to": "alice"},
        "timeout_secs": 300
    });
    let resp = http
        .post(format!("http://{addr}/v1/transfers"))
        .bearer_auth("k")
        .header("Idempotency-Key", "refused-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let get = |path: String| {
        let http = http.clone();
        async move {
            let resp = http.get(path).bearer_auth("k").send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            resp.json::<Value>().await.unwrap()
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let v = loop {
        let v = get(format!("http://{addr}/v1/transfers/{id}")).await;
        if v["reason"] == "adapter_refused" {
            break v;
        }
        assert!(tokio::time::Instant::now() < deadline, "never refused: {v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        (&v["state"], &v["terminal"]),
        (&json!("releasing"), &json!(false))
    );
    let d = &v["reason_detail"];
    assert_eq!(d["network"], "beta");
    assert_eq!(d["action"], "release");
    assert_eq!(d["leg"], "b");
    assert_eq!(d["error_code"], "rejected");
    assert_eq!(d["retryable"], false);
    assert_eq!(d["state_reason"], "releasing");
    assert!(d["attempts"].as_u64().unwrap() >= 1, "{d}");
    assert!(d["first_failed_at"].as_u64().unwrap() <= d["last_failed_at"].as_u64().unwrap());
    let message = d["message"].as_str().unwrap();
    assert!(
        message.contains("EscrowPaused()") && !message.contains(SECRET),
        "{message}"
    );
    // the shape is the one the OpenAPI document declares
    let doc = get(format!("http://{addr}/v1/openapi.json")).await;
    assert_eq!(
        doc["components"]["schemas"]["OperationStatus"]["properties"]["reason_detail"]["$ref"],
        "#/components/schemas/ReasonDetail"
    );
    let schema = &doc["components"]["schemas"]["ReasonDetail"];
    let keys: BTreeSet<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
    let declared: BTreeSet<&str> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(
        keys, declared,
        "every field documented, every documented field sent"
    );
    assert!(required.is_subset(&keys));
    for (k, t) in [
        ("action", "string"),
        ("leg", "string"),
        ("network", "string"),
        ("error_code", "string"),
        ("message", "string"),
        ("retryable", "boolean"),
        ("attempts", "integer"),
        ("first_failed_at", "integer"),
        ("last_failed_at", "integer"),
        ("state_reason", "string"),
    ] {
        assert_eq!(schema["properties"][k]["type"], t, "{k}");
    }
    assert!(schema["properties"]["action"]["enum"]
        .as_array()
        .unwrap()
        .contains(&d["action"]));

    // the network takes it: released, and the status carries no reason_detail any more
    hub.beta_refusals.set("release", None);
    let v = get(format!("http://{addr}/v1/transfers/{id}?wait=20")).await;
    assert_eq!(
        (&v["state"], &v["reason"]),
        (&json!("released"), &json!("released")),
        "{v}"
    );
    assert!(v.get("reason_detail").is_none(), "{v}");
    let _ = stop_server.send(());
    server.await.unwrap();
    hub.shutdown().await;
}
