//! Benchmarks of the embedded hub (`hub up`), in one process; run with
//! `cargo run --release -p isthmus-hub --example up_bench -- [TRANSFERS] [HTTP_SECS] [BLOCK_MS]`.
//!
//! 1. **Added latency per transfer.** A two-phase transfer alpha→beta is requested over
//!    HTTP and timed until its status is terminal. The same protocol steps are then driven
//!    straight through the adapters with no hub machinery (lock both legs and wait until
//!    both are final; record the decision on the hub chain; release both legs and wait
//!    until both releases are final): that is the confirmation waiting the chains impose.
//!    The hub's added latency is the difference, reported in block intervals.
//! 2. **HTTP throughput.** `GET /v1/transfers/{id}` (authenticated, journal read, status
//!    rendering) against a trivial warp route served by the same process, with the same
//!    client load; the ratio is what the API layer costs.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)] // a benchmark report

use isthmus_adapter_api::{Adapter, HubAttestation, LockRequest, LockTerms, ReleaseRequest};
use isthmus_hub::up::{self, account_address, UpOptions};
use isthmus_lock_contracts::{
    Amount, AssetId, Decision, InstanceId, LegId, LegSpec, LockId, Locker, TxId,
};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warp::Filter as _;

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    while !f().await {
        assert!(t0.elapsed() < Duration::from_secs(120), "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn tx_final(a: &Arc<dyn Adapter>, tx: &TxId) -> bool {
    a.tx_status(tx).await.is_ok_and(|s| s.is_final())
}

/// The protocol's chain steps without the hub: returns the elapsed time.
async fn direct(hub: &up::RunningHub, i: u64) -> Duration {
    let alpha = hub.adapters["alpha"].clone();
    let beta = hub.adapters["beta"].clone();
    let inst = InstanceId::derive(&[format!("bench-direct-{i}").as_bytes()]);
    let timeout = up::now_secs() + 600;
    let leg = |a: &Arc<dyn Adapter>, from: &str, to: &str| LegSpec {
        network: a.descriptor().network,
        asset: AssetId("native".into()),
        amount: Amount(10),
        from: account_address(from),
        to: account_address(to),
        timeout,
        locker: Locker::HubWallet,
    };
    let (la, lb) = (
        LockId::derive(inst, LegId::A),
        LockId::derive(inst, LegId::B),
    );
    let t0 = Instant::now();
    let ra = LockRequest {
        lock_id: la,
        leg: leg(&alpha, "alice", "bob"),
        terms: LockTerms::TwoPhase,
    };
    let rb = LockRequest {
        lock_id: lb,
        leg: leg(&beta, "bob", "alice"),
        terms: LockTerms::TwoPhase,
    };
    let (ta, tb) = tokio::join!(alpha.lock(&ra), beta.lock(&rb));
    let (ta, tb) = (ta.unwrap(), tb.unwrap());
    until("both locks final", || async {
        tx_final(&alpha, &ta).await && tx_final(&beta, &tb).await
    })
    .await;
    let record = hub
        .ledger
        .record_decision(inst, Decision::Validated)
        .await
        .unwrap();
    let keys = std::slice::from_ref(&hub.attester);
    let att = |a: &Arc<dyn Adapter>, l: LockId| {
        HubAttestation::sign_ed25519(
            a.descriptor().network,
            l,
            Decision::Validated,
            record.clone(),
            keys,
        )
    };
    let (qa, qb) = (
        ReleaseRequest {
            lock_id: la,
            attestation: att(&alpha, la),
        },
        ReleaseRequest {
            lock_id: lb,
            attestation: att(&beta, lb),
        },
    );
    let (xa, xb) = tokio::join!(alpha.release(&qa), beta.release(&qb));
    let (xa, xb) = (xa.unwrap(), xb.unwrap());
    until("both releases final", || async {
        tx_final(&alpha, &xa).await && tx_final(&beta, &xb).await
    })
    .await;
    t0.elapsed()
}

/// One transfer through the hub's API: request → terminal.
async fn via_hub(http: &reqwest::Client, base: &str, key: &str, i: u64) -> (Duration, String) {
    let body = up::demo::transfer_body(10, 10, 300);
    let t0 = Instant::now();
    let v: serde_json::Value = http
        .post(format!("{base}/v1/transfers"))
        .bearer_auth(key)
        .header("Idempotency-Key", format!("bench-{i}-{}", up::now_secs()))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = v["id"].as_str().expect("transfer id").to_owned();
    loop {
        let v: serde_json::Value = http
            .get(format!("{base}/v1/transfers/{id}"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["terminal"] == json!(true) {
            assert_eq!(v["state"], "released", "{v}");
            return (t0.elapsed(), id);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Requests per second of `url` with `clients` keep-alive clients for `secs`.
async fn load(url: String, key: String, clients: usize, secs: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop_at = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (url, key, done) = (url.clone(), key.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            while Instant::now() < stop_at {
                let r = http.get(&url).bearer_auth(&key).send().await.unwrap();
                assert!(r.status().is_success(), "{url}: {}", r.status());
                let _ = r.bytes().await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let t0 = Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let transfers = arg(1, 10);
    let http_secs = arg(2, 5);
    let block_ms = arg(3, 200);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = UpOptions::new(dir.path().join("hub"), "127.0.0.1:0".parse().unwrap());
    opts.block_ms = block_ms;
    // The HTTP figure is the API layer's cost per request, not the per-key rate limit's
    // (16 clients on one key would be refused past 50 req/s).
    opts.api_settings.rate_limit = isthmus_hub_api::RateLimit::OFF;
    let hub = up::start(opts).await.unwrap();
    let base = format!("http://{}", hub.info.api);
    let key = hub.info.customer_key.clone();
    let http = reqwest::Client::new();
    println!("hub up bench: block interval {block_ms} ms, {transfers} transfers, alpha PoW / beta PoS / hub PoS");

    // Warm up both paths once.
    let _ = via_hub(&http, &base, &key, 0).await;
    let _ = direct(&hub, 0).await;
    let (mut hub_ms, mut chain_ms, mut added) = (vec![], vec![], vec![]);
    let mut last_id = String::new();
    for i in 1..=transfers {
        let (t, id) = via_hub(&http, &base, &key, i).await;
        let c = direct(&hub, i).await;
        let (t, c) = (t.as_secs_f64() * 1e3, c.as_secs_f64() * 1e3);
        hub_ms.push(t);
        chain_ms.push(c);
        added.push(t - c);
        last_id = id;
    }
    let (h, c, a) = (
        median(&mut hub_ms),
        median(&mut chain_ms),
        median(&mut added),
    );
    println!(
        "transfer alpha->beta, median of {transfers}: via hub {h:.0} ms, chain steps alone {c:.0} ms, \
         hub added {a:.0} ms = {:.2} block intervals (ratio hub/chain-only {:.2}x)",
        a / block_ms as f64,
        h / c
    );

    // HTTP: the API route and a trivial baseline in the same process.
    let ping = warp::path!("ping").map(|| "pong");
    let (paddr, pserver) =
        warp::serve(ping).bind_ephemeral("127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap());
    let pserver = tokio::spawn(pserver);
    for clients in [1usize, 16] {
        let api = load(
            format!("{base}/v1/transfers/{last_id}"),
            key.clone(),
            clients,
            http_secs,
        )
        .await;
        let base_rps = load(
            format!("http://{paddr}/ping"),
            key.clone(),
            clients,
            http_secs,
        )
        .await;
        println!(
            "GET /v1/transfers/{{id}} with {clients:>2} client(s): {api:.0} req/s; trivial warp route: {base_rps:.0} req/s; ratio {:.2}",
            api / base_rps
        );
    }
    pserver.abort();
    if let Err(e) = hub.shutdown().await {
        eprintln!("the hub did not stop cleanly: {e}");
    }
}
