//! API throughput of a read route (`GET /v1/platforms`), plain HTTP with no rate limit
//! against HTTPS with the rate limit on, in the same run: N concurrent keep-alive clients
//! for a bounded time each, then the ratio.
//!
//! `cargo run --release -p isthmus-hub-api --example api-bench -- [clients] [seconds]`
//! (defaults: 8 clients, 3 s a side). The limit is set high enough never to refuse, so the
//! figure is the cost of checking it, not of refusals.
#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use async_trait::async_trait;
use isthmus_hub_api::model::*;
use isthmus_hub_api::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

const KEY: &str = "bench-key";

/// A directory with one platform; the routes measured touch nothing else.
struct Fixed;

#[async_trait]
impl Directory for Fixed {
    async fn platforms(&self) -> Result<Vec<PlatformInfo>, BackendError> {
        Ok(vec![PlatformInfo {
            name: "alpha".into(),
            kind: "native".into(),
            healthy: true,
            capabilities: serde_json::json!({"finality": "instant"}),
        }])
    }
    async fn networks(&self) -> Result<Vec<NetworkInfo>, BackendError> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl Operations for Fixed {
    async fn create_transfer(
        &self,
        _: &OpId,
        _: &Principal,
        _: CreateTransfer,
    ) -> Result<OperationStatus, BackendError> {
        Err(BackendError::Unavailable("not in the benchmark".into()))
    }
    async fn create_swap(
        &self,
        _: &OpId,
        _: &Principal,
        _: CreateSwap,
    ) -> Result<OperationStatus, BackendError> {
        Err(BackendError::Unavailable("not in the benchmark".into()))
    }
    async fn get_operation(
        &self,
        _: OpKind,
        _: &str,
    ) -> Result<Option<OperationStatus>, BackendError> {
        Ok(None)
    }
    async fn list_operations(
        &self,
        _: OpKind,
        _: &[String],
        _: Option<&str>,
        _: usize,
    ) -> Result<Page<OperationStatus>, BackendError> {
        Ok(Page {
            items: Vec::new(),
            next: None,
        })
    }
}

struct Served {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

fn start(settings: ApiSettings) -> Result<Served, Error> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SledApiStore::open(sled::open(dir.path())?)?);
    let backends = Backends::new(Arc::new(Fixed), Arc::new(Fixed));
    let keys = KeyRing::new(&[ApiKeyConfig::from_plaintext("bench", Role::Customer, KEY)])
        .map_err(|p| p.join("; "))?;
    let state = ApiState::new(backends, keys, EventBus::new(store));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, server) = serve_with("127.0.0.1:0".parse()?, state, settings, async {
        let _ = stopped.await;
    })?;
    Ok(Served {
        addr,
        stop,
        task: tokio::spawn(server),
        _dir: dir,
    })
}

/// Requests per second answered 200 by `clients` clients for `secs`.
async fn measure(
    client: reqwest::Client,
    url: String,
    clients: usize,
    secs: u64,
) -> Result<f64, Error> {
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, url) = (client.clone(), url.clone());
        set.spawn(async move {
            let mut ok = 0u64;
            while Instant::now() < until {
                let resp = client.get(&url).header("X-Api-Key", KEY).send().await?;
                if !resp.status().is_success() {
                    return Err(format!("{url} answered {}", resp.status()).into());
                }
                resp.bytes().await?;
                ok += 1;
            }
            Ok::<u64, Error>(ok)
        });
    }
    let mut total = 0;
    while let Some(r) = set.join_next().await {
        total += r??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().map_or(Ok(8), |a| a.parse())?;
    let secs: u64 = args.next().map_or(Ok(3), |a| a.parse())?;

    let plain = start(ApiSettings {
        rate_limit: RateLimit::OFF,
        ..ApiSettings::default()
    })?;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let pem = tempfile::tempdir()?;
    let (cert_path, key_path) = (pem.path().join("api.crt"), pem.path().join("api.key"));
    std::fs::write(&cert_path, cert.cert.pem())?;
    std::fs::write(&key_path, cert.key_pair.serialize_pem())?;
    let hardened = start(ApiSettings {
        tls: Some(ApiTls {
            cert: cert_path,
            key: key_path,
        }),
        rate_limit: RateLimit {
            per_second: 1_000_000,
            burst: 1_000_000,
        },
        ..ApiSettings::default()
    })?;

    let plain_client = reqwest::Client::new();
    let tls_client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes())?)
        .resolve("localhost", hardened.addr)
        .build()?;
    let plain_url = format!("http://{}/v1/platforms", plain.addr);
    let tls_url = format!("https://localhost:{}/v1/platforms", hardened.addr.port());

    println!("api-bench: GET /v1/platforms, {clients} clients, {secs} s a side");
    let off = measure(plain_client, plain_url, clients, secs).await?;
    println!("  plain http, no rate limit   {off:>10.0} req/s");
    let on = measure(tls_client, tls_url, clients, secs).await?;
    println!("  https + rate limit          {on:>10.0} req/s");
    println!("  ratio (hardened / plain)    {:>10.2}", on / off);

    for s in [plain, hardened] {
        let _ = s.stop.send(());
        let _ = s.task.await;
    }
    Ok(())
}
