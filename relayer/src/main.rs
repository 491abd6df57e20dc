//! `relayer`: the relayer daemon. `relayer start --config FILE` relays every configured
//! link until Ctrl-C; `relayer check --config FILE` lists every config problem.
//! It never prints or logs its key.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use isthmus_core::Keypair;
use isthmus_relayer::config::{RelayerConfig, SourceConfig};
use isthmus_relayer::evidence::OUTBOX_KIND;
use isthmus_relayer::{EvidenceCarrier, EvidenceSource, Outbox, Relayer};
use isthmus_transport::{Endpoint, TransportConfig};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "relayer",
    version,
    about = "Isthmus relayer: carries attested packets and lock evidence from networks to the hub"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Relay every configured link until interrupted
    Start {
        /// Path to the relayer TOML (see configs/relayer.toml)
        #[arg(long)]
        config: PathBuf,
    },
    /// Check a config and list every problem
    Check {
        #[arg(long)]
        config: PathBuf,
    },
}

fn load(path: &PathBuf) -> anyhow::Result<RelayerConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let cfg =
        RelayerConfig::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let problems = cfg.validate();
    if !problems.is_empty() {
        bail!(
            "{} has {} problem(s):\n  - {}",
            path.display(),
            problems.len(),
            problems.join("\n  - ")
        );
    }
    Ok(cfg)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().cmd {
        Cmd::Check { config } => {
            load(&config)?;
            tracing::info!(config = %config.display(), "config is valid");
            Ok(())
        }
        Cmd::Start { config } => {
            let cfg = load(&config)?;
            let seed = std::fs::read_to_string(&cfg.key_file)
                .with_context(|| format!("cannot read key file {}", cfg.key_file.display()))?;
            let key = Keypair::from_hex_seed(&seed)
                .map_err(|e| anyhow::anyhow!("{}: {e}", cfg.key_file.display()))?;
            if let Some(addr) = cfg.metrics_addr {
                metrics_exporter_prometheus::PrometheusBuilder::new()
                    .with_http_listener(addr)
                    .install()
                    .with_context(|| format!("cannot serve metrics on {addr}"))?;
            }
            let db = sled::open(&cfg.data_dir)
                .with_context(|| format!("cannot open {}", cfg.data_dir.display()))?;
            tracing::info!(relayer = %key.id(), links = cfg.links.len(), "relayer starting");
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let mut tasks = tokio::task::JoinSet::new();
            for link in &cfg.links {
                let endpoint = Endpoint::bind(
                    TransportConfig {
                        kind: link.transport,
                        network: link.network(),
                        ..TransportConfig::default()
                    },
                    key.clone(),
                )
                .await
                .with_context(|| {
                    format!(
                        "link {}: cannot open a {:?} endpoint",
                        link.name, link.transport
                    )
                })?;
                let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                let settings = link.settings().map_err(anyhow::Error::msg)?;
                if let Some(SourceConfig::Evm(src)) = &link.source {
                    // The relayer only reads the chain: its wallet holds no key.
                    let wallet = Arc::new(isthmus_adapter_api::MemoryWallet::new());
                    let adapter = isthmus_adapter_evm::EvmAdapter::open(src.evm.clone(), wallet)
                        .await
                        .with_context(|| {
                            format!(
                                // The network's id, not its RPC URL: a URL may carry
                                // credentials, and secrets are never printed.
                                "link {}: cannot open evm network {}",
                                link.name, src.evm.network
                            )
                        })?;
                    let outbox = Outbox::open_kind(db.clone(), OUTBOX_KIND, &link.name)?;
                    let mut source = EvidenceSource::open(
                        Arc::new(adapter),
                        outbox.clone(),
                        db.clone(),
                        &link.name,
                    )?;
                    source.page = src.page;
                    source.idle_poll = std::time::Duration::from_millis(src.poll_ms);
                    tracing::info!(link = %link.name, network = %src.evm.network, backlog = outbox.len(), "carrying lock evidence");
                    tasks.spawn(source.run(stop(stop_rx.clone())));
                    let carrier = EvidenceCarrier {
                        link: settings,
                        endpoint,
                        outbox,
                        stats: Arc::default(),
                    };
                    tasks.spawn(carrier.run(stop(stop_rx.clone())));
                    continue;
                }
                let outbox = Outbox::open(db.clone(), &link.name)?;
                // This binary has no packet source of its own: a packet link carries what an
                // embedding process (`AdapterSource` of the library, as `hub up` runs it)
                // queued in this outbox. Say so, rather than idle in silence.
                tracing::info!(
                    link = %link.name,
                    backlog = outbox.len(),
                    "packet link: relaying the packets queued in its outbox (no [link.source];                      queued by a process embedding the relayer library)"
                );
                let relayer = Relayer {
                    link: settings,
                    endpoint,
                    outbox,
                    stats: Arc::default(),
                };
                tasks.spawn(relayer.run(stop(stop_rx.clone())));
            }
            tokio::signal::ctrl_c()
                .await
                .context("cannot listen for Ctrl-C")?;
            tracing::info!("stopping");
            let _ = stop_tx.send(true);
            while tasks.join_next().await.is_some() {}
            db.flush()?;
            Ok(())
        }
    }
}
