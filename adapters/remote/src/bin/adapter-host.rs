//! `adapter-host`: serves a platform adapter out of process over the adapter protocol, so a
//! hub can register it at run time (`POST /v1/adapters`): the UTXO adapter over a litecoind
//! (`--litecoind HOST.json`), or the in-memory mock platform (`--mock`) with the
//! test-control calls the conformance suite drives.
//!
//! It prints one JSON line on stdout once it listens (`listen`, `identity`, `network`) and
//! serves until SIGINT/SIGTERM. It must never print or log its secret key.
#![allow(clippy::print_stdout)] // the ready line on stdout is this binary's interface

use anyhow::{bail, Context};
use async_trait::async_trait;
use clap::Parser;
use isthmus_adapter_api::{Adapter, AdapterError, Finality, MemoryWallet, SecretKey};
use isthmus_adapter_remote::{serve_adapter, Answer, Control, ControlHandler};
use isthmus_adapter_testkit::mock::MockFixture;
use isthmus_adapter_utxo::{UtxoAdapter, UtxoConfig};
use isthmus_core::{Keypair, NodeId};
use isthmus_lock_contracts::Address;
use isthmus_transport::{Endpoint, TransportConfig, TransportKind};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use zeroize::Zeroizing;

#[derive(Parser, Debug)]
#[command(about = "Serve a platform adapter out of process over the Isthmus adapter protocol")]
struct Args {
    /// Log lines as human text or JSON (one object per line, for log shippers); to stderr
    #[arg(long, default_value = "text")]
    log_format: isthmus_logs::LogFormat,
    /// Address to listen on (port 0: any free port; the ready line says which).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// File holding the adapter's 32-byte ed25519 identity seed as 64 hex digits.
    #[arg(long, conflicts_with = "dev_identity")]
    identity_file: Option<std::path::PathBuf>,
    /// Derive the identity from a label (development and tests only).
    #[arg(long)]
    dev_identity: Option<String>,
    /// Hub identities allowed to connect (repeatable); none: any authenticated hub.
    #[arg(long = "hub-key")]
    hub_keys: Vec<NodeId>,
    /// The network id the adapter serves (`--litecoind`: taken from the file).
    #[arg(long, required_unless_present = "litecoind")]
    network: Option<u64>,
    /// Serve the UTXO adapter over a litecoind: a JSON file `{"utxo": <UtxoConfig>, "keys":
    /// [{"address", "secp256k1"}]}` with the chain's config and the wallet keys (hex secrets
    /// of the fee payer, the co-signer and accounts the hub signs for; keep it 0600).
    #[arg(long, conflicts_with = "mock")]
    litecoind: Option<std::path::PathBuf>,
    /// Serve the in-memory mock platform (two funded accounts, one hub attestation key).
    #[arg(long)]
    mock: bool,
    /// Mock finality: `instant` or `confirmations:N`.
    #[arg(long, default_value = "instant")]
    finality: String,
    /// Answer the test-control calls (mine, advance time, reorg, next nonce).
    #[arg(long)]
    control: bool,
}

/// The `--litecoind` file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UtxoHost {
    utxo: UtxoConfig,
    keys: Vec<WalletKey>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WalletKey {
    address: String,
    /// 32-byte secp256k1 secret, 64 hex digits.
    secp256k1: String,
}

fn utxo_adapter(path: &std::path::Path) -> anyhow::Result<Arc<dyn Adapter>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let host: UtxoHost =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let problems = host.utxo.validate();
    if !problems.is_empty() {
        bail!("{}: {}", path.display(), problems.join("; "));
    }
    let wallet = Arc::new(MemoryWallet::new());
    for k in host.keys {
        let secret: [u8; 32] = hex::decode(k.secp256k1.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .with_context(|| format!("key of {} is not 64 hex digits", k.address))?;
        wallet.insert(
            Address(k.address),
            SecretKey::Secp256k1(Zeroizing::new(secret)),
        );
    }
    Ok(Arc::new(UtxoAdapter::new(host.utxo, wallet)?))
}

struct MockControl(Arc<MockFixture>);

#[async_trait]
impl ControlHandler for MockControl {
    async fn control(&self, control: Control) -> Result<Answer, AdapterError> {
        let a = &self.0.adapter;
        Ok(match control {
            Control::Mine { blocks } => {
                a.mine(blocks);
                Answer::Done
            }
            Control::AdvanceTimeTo { time } => {
                a.advance_time_to(time);
                Answer::Done
            }
            Control::Reorg { depth } => {
                a.reorg(depth)?;
                Answer::Done
            }
            Control::NextNonce { account } => Answer::Nonce(a.next_nonce(&account)),
        })
    }
}

fn parse_finality(s: &str) -> anyhow::Result<Finality> {
    if s == "instant" {
        return Ok(Finality::Instant);
    }
    match s.strip_prefix("confirmations:").map(str::parse::<u32>) {
        Some(Ok(n)) if n > 0 => Ok(Finality::Probabilistic { confirmations: n }),
        _ => bail!("finality `{s}` is neither `instant` nor `confirmations:N` with N > 0"),
    }
}

fn identity(args: &Args) -> anyhow::Result<Keypair> {
    if let Some(label) = &args.dev_identity {
        return Ok(Keypair::dev(label));
    }
    let Some(path) = &args.identity_file else {
        bail!("an identity is required: --identity-file PATH or --dev-identity LABEL");
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading identity file {}", path.display()))?;
    let bytes = hex::decode(text.trim())
        .with_context(|| format!("identity file {} is not hex", path.display()))?;
    let seed: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
        anyhow::anyhow!(
            "identity file {} holds {} bytes, expected 32",
            path.display(),
            b.len()
        )
    })?;
    Ok(Keypair::from_seed(seed))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    isthmus_logs::init(args.log_format, "warn");
    let key = identity(&args)?;
    let (adapter, control): (Arc<dyn Adapter>, Option<Arc<dyn ControlHandler>>) =
        if let Some(path) = &args.litecoind {
            (utxo_adapter(path)?, None)
        } else if args.mock {
            let Some(network) = args.network else {
                bail!("--mock needs --network");
            };
            let fixture = Arc::new(MockFixture::new(network, parse_finality(&args.finality)?));
            let control = args
                .control
                .then(|| Arc::new(MockControl(fixture.clone())) as Arc<dyn ControlHandler>);
            (fixture.adapter.clone(), control)
        } else {
            bail!("choose the platform to serve: --litecoind HOST.json or --mock");
        };
    let network = adapter.descriptor().network;
    if args.network.is_some_and(|n| n != network.0) {
        bail!(
            "--network {} disagrees with the adapter's network {network}",
            args.network.unwrap_or_default()
        );
    }
    let mut cfg = TransportConfig::new(TransportKind::Tcp, args.listen);
    cfg.network = network;
    if !args.hub_keys.is_empty() {
        cfg.allowlist = Some(args.hub_keys.iter().copied().collect::<BTreeSet<_>>());
    }
    let endpoint = Endpoint::bind(cfg, key.clone())
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    println!(
        "{}",
        serde_json::json!({
            "listen": endpoint.local_addr().to_string(),
            "identity": key.id().to_string(),
            "network": network.0,
        })
    );
    serve_adapter(adapter, control, endpoint, shutdown_signal()).await;
    Ok(())
}
