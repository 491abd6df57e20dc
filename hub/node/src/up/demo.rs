//! What `hub up` prints for a new user (the API address, the dev keys, ready-to-paste curl
//! commands), and `--demo`: one two-phase transfer alpha→beta and one HTLC swap, made over
//! the HTTP API exactly as a DApp would, with every step printed as it happens and the
//! balances on both networks before and after.
#![allow(clippy::print_stdout)] // the demo's output is its purpose

use super::{account_address, RunningHub};
use anyhow::{bail, Context as _};
use isthmus_lock_contracts::{Address, AssetId};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub use isthmus_adapter_native::ASSET;

/// Body of the example transfer: alice pays 100 on alpha to bob, bob pays 40 on beta to
/// alice; both legs are locked by the hub's wallet.
pub fn transfer_body(amount_a: u64, amount_b: u64, timeout_secs: u64) -> Value {
    let alice = account_address("alice").0;
    let bob = account_address("bob").0;
    json!({
        "source":  {"network": "alpha", "asset": ASSET, "amount": amount_a.to_string(), "from": alice, "to": bob},
        "counter": {"network": "beta",  "asset": ASSET, "amount": amount_b.to_string(), "from": bob, "to": alice},
        "timeout_secs": timeout_secs
    })
}

/// Body of the example swap: alice swaps 5 on alpha for bob's 7 on beta; the hub's wallet
/// makes and keeps alice's secret.
pub fn swap_body(initiator_timeout: u64, participant_timeout: u64) -> Value {
    let alice = account_address("alice").0;
    let bob = account_address("bob").0;
    json!({
        "initiator":   {"network": "alpha", "asset": ASSET, "amount": "5", "from": alice, "to": bob},
        "participant": {"network": "beta",  "asset": ASSET, "amount": "7", "from": bob, "to": alice},
        "initiator_timeout_secs": initiator_timeout,
        "participant_timeout_secs": participant_timeout
    })
}

/// Body of the example message: alice on alpha sends `hello beta` to bob on beta.
pub fn message_body(timeout_secs: u64) -> Value {
    json!({
        "source": "alpha", "destination": "beta",
        "sender": account_address("alice").0, "recipient": account_address("bob").0,
        "payload_hex": hex::encode("hello beta"), "timeout_secs": timeout_secs
    })
}

/// Timelocks for the example swap under margin `delta`.
pub fn swap_timeouts(delta: u64) -> (u64, u64) {
    (120 + delta + 60, 120)
}

/// The banner: where the API is, the keys, and curl commands that work against it.
pub fn banner(hub: &RunningHub, delta: u64) -> String {
    let i = &hub.info;
    let api = format!("http://{}", i.api);
    let key = &i.customer_key;
    let (t1, t2) = swap_timeouts(delta);
    let mut s = String::new();
    s.push_str(&format!(
        "isthmus hub is up (pid {})\n\
         \x20 api            {api}\n\
         \x20 tenant         {}   (the dev keys and the demo accounts are this tenant's)\n\
         \x20 dev api key    {key}   (role: customer)\n\
         \x20 provider key   {}   (role: provider: may read, may not move value)\n\
         \x20 admin key      {}   (role: admin: hub keys create|list|revoke|rotate)\n\
         \x20 networks       hub (PoS, 1 validator)  alpha (PoW, sha256)  beta (PoS)\n\
         \x20 relayer        in process: alpha->hub and beta->hub over QUIC to the hub's packet ingress {} (messages travel this way)\n\
         \x20 metrics        http://{}/metrics   (Prometheus: backlog, oldest pending, relayed, failed, retries per relayer link)\n",
        i.pid, i.tenant, i.provider_key, i.admin_key, i.relay_ingress, i.metrics
    ));
    for (who, addr) in &i.accounts {
        s.push_str(&format!(
            "  account {who:<6} {addr}  (funded on alpha and beta; key in the hub wallet)\n"
        ));
    }
    s.push_str(&format!(
        "\nTry it (copy and paste):\n\
         export ISTHMUS={api} KEY={key}\n\
         curl -s $ISTHMUS/v1/networks -H \"Authorization: Bearer $KEY\"\n\
         curl -s -X POST $ISTHMUS/v1/transfers -H \"Authorization: Bearer $KEY\" -H \"Idempotency-Key: my-transfer-1\" -H 'Content-Type: application/json' -d '{}'\n\
         curl -s \"$ISTHMUS/v1/transfers/TRANSFER_ID?wait=60\" -H \"Authorization: Bearer $KEY\"\n\
         curl -s -X POST $ISTHMUS/v1/swaps -H \"Authorization: Bearer $KEY\" -H \"Idempotency-Key: my-swap-1\" -H 'Content-Type: application/json' -d '{}'\n\
         curl -s \"$ISTHMUS/v1/swaps/SWAP_ID?wait=60\" -H \"Authorization: Bearer $KEY\"\n\
         (replace TRANSFER_ID / SWAP_ID with the \"id\" of the answer above; the OpenAPI document is at $ISTHMUS/v1/openapi.json)\n\
         Ctrl-C stops the hub; `hub up` again resumes from {}\n",
        transfer_body(100, 40, 120),
        swap_body(t1, t2),
        i.data,
    ));
    s
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    async fn post(&self, path: &str, idem: &str, body: &Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("Idempotency-Key", idem)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let code = r.status();
        let v: Value = r
            .json()
            .await
            .with_context(|| format!("POST {path}: body"))?;
        if !code.is_success() {
            bail!("POST {path} answered {code}: {v}");
        }
        Ok(v)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let code = r.status();
        let v: Value = r
            .json()
            .await
            .with_context(|| format!("GET {path}: body"))?;
        if !code.is_success() {
            bail!("GET {path} answered {code}: {v}");
        }
        Ok(v)
    }
}

impl Client {
    /// POST a new operation of `kind` (`transfers`, `swaps`, `messages`): its id and the
    /// answer.
    async fn create(
        &self,
        kind: &str,
        idem: &str,
        body: &Value,
    ) -> anyhow::Result<(String, Value)> {
        let path = format!("/v1/{kind}");
        let created = self.post(&path, idem, body).await?;
        let id = created["id"]
            .as_str()
            .with_context(|| format!("POST {path} answered no id: {created}"))?
            .to_owned();
        Ok((id, created))
    }

    /// Follow operation `id` to its end, printing each change; fails unless it ends `want`.
    async fn finish(&self, kind: &str, id: &str, want: &str) -> anyhow::Result<Value> {
        let done = follow(self, &format!("/v1/{kind}/{id}"), Duration::from_secs(180)).await?;
        if done["state"] != json!(want) {
            bail!("demo {kind} {id} ended `{}`, not {want}", done["state"]);
        }
        Ok(done)
    }
}

async fn balances(hub: &RunningHub) -> anyhow::Result<Vec<(String, String, u128)>> {
    let mut out = Vec::new();
    for (net, a) in &hub.adapters {
        for who in hub.info.accounts.keys() {
            let b = a
                .balance(
                    &Address(hub.info.accounts[who].clone()),
                    &AssetId(ASSET.into()),
                )
                .await
                .with_context(|| format!("balance of {who} on {net}"))?;
            out.push((net.clone(), who.clone(), b.0));
        }
    }
    Ok(out)
}

fn print_balances(
    title: &str,
    rows: &[(String, String, u128)],
    before: Option<&[(String, String, u128)]>,
) {
    println!("  balances {title}:");
    for (i, (net, who, b)) in rows.iter().enumerate() {
        match before.and_then(|p| p.get(i)) {
            Some((_, _, old)) => {
                let d = i128::try_from(*b).unwrap_or(i128::MAX)
                    - i128::try_from(*old).unwrap_or(i128::MAX);
                println!("    {net:<6} {who:<6} {b:>10}  ({d:+})");
            }
            None => println!("    {net:<6} {who:<6} {b:>10}"),
        }
    }
}

/// One line per observed change of an operation until it is terminal.
async fn follow(c: &Client, path: &str, deadline: Duration) -> anyhow::Result<Value> {
    let t0 = Instant::now();
    let mut last = String::new();
    loop {
        let v = c.get(path).await?;
        let legs: Vec<String> = v["legs"]
            .as_array()
            .map(|ls| {
                ls.iter()
                    .map(|l| {
                        format!(
                            "{}: {}",
                            l["network"].as_str().unwrap_or("?"),
                            l["state"].as_str().unwrap_or("?")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let line = format!(
            "{:<22} {:<34} reason: {}",
            v["state"].as_str().unwrap_or("?"),
            legs.join(", "),
            v["reason"].as_str().unwrap_or("-")
        );
        if line != last {
            println!("  +{:>5.2}s  {line}", t0.elapsed().as_secs_f64());
            last = line;
        }
        if v["terminal"] == json!(true) {
            return Ok(v);
        }
        if t0.elapsed() > deadline {
            bail!("{path} did not finish within {deadline:?}: {v}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Run the demo against the hub's own API. Returns the ids of the transfer and the swap.
pub async fn run(hub: &RunningHub, delta: u64) -> anyhow::Result<(String, String)> {
    let c = Client {
        http: reqwest::Client::new(),
        base: format!("http://{}", hub.info.api),
        key: hub.info.customer_key.clone(),
    };
    let run_tag = super::now_secs();
    println!("\ndemo 1/3: two-phase transfer: alice pays 100 on alpha to bob, bob pays 40 on beta to alice");
    println!("  both locks must be final (alpha: PoW confirmations, beta: PoS commit certificate)");
    println!("  before the hub records `validated` on its chain and releases both");
    let before = balances(hub).await?;
    print_balances("before", &before, None);
    let (id, _) = c
        .create(
            "transfers",
            &format!("demo-transfer-{run_tag}"),
            &transfer_body(100, 40, 120),
        )
        .await?;
    println!("  POST /v1/transfers -> {id}");
    let done = c.finish("transfers", &id, "released").await?;
    println!(
        "  hub decision recorded on the hub chain: {}",
        done["detail"]["hub_record"]
    );
    let mid = balances(hub).await?;
    print_balances("after", &mid, Some(&before));

    println!("\ndemo 2/3: HTLC swap: alice's 5 on alpha for bob's 7 on beta (sha256 hashlock, hub-held secret)");
    let (t1, t2) = swap_timeouts(delta);
    let (sid, created) = c
        .create("swaps", &format!("demo-swap-{run_tag}"), &swap_body(t1, t2))
        .await?;
    println!(
        "  POST /v1/swaps -> {sid} (hashlock {}, T1 {t1}s > T2 {t2}s + delta {delta}s)",
        created["detail"]["hashlock"].as_str().unwrap_or("?")
    );
    c.finish("swaps", &sid, "completed").await?;
    let after = balances(hub).await?;
    print_balances("after", &after, Some(&mid));

    println!("\ndemo 3/3: message: alice on alpha sends \"hello beta\" to bob on beta");
    println!("  the in-process relayer sees it committed on alpha and carries it over QUIC to the");
    println!("  hub's ingress, which checks alpha's attestation; the hub delivers it on beta");
    println!("  and settles the acknowledgement back on alpha");
    let (mid, _) = c
        .create(
            "messages",
            &format!("demo-message-{run_tag}"),
            &message_body(120),
        )
        .await?;
    println!("  POST /v1/messages -> {mid}");
    c.finish("messages", &mid, "acknowledged").await?;
    if let Some(s) = hub.relay_links.get("alpha") {
        let n = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        println!(
            "  relayer link alpha->hub: {} delivered, {} duplicate, {} refused, {} retries (http://{}/metrics)",
            n(&s.delivered),
            n(&s.duplicates),
            n(&s.failed),
            n(&s.retries),
            hub.info.metrics
        );
    }
    println!(
        "\ndemo complete: transfer {id} released, swap {sid} completed, message {mid} acknowledged"
    );
    println!("the hub keeps running: repeat both with the curl commands above (Ctrl-C stops it)");
    Ok((id, sid))
}
