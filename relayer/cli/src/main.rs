//! `relayer`: the relayer daemon. `relayer start --config FILE` relays every configured
//! link until Ctrl-C; `relayer check --config FILE` lists every config problem.
//! It never prints or logs its key.
//!
//! The only place that names concrete adapters: the config's closed set of source kinds
//! ([`SourceConfig`]) is mapped to them here: an EVM source's link carries lock evidence,
//! a native source's link carries packets with light-client proofs, read from the
//! network's nodes over their authenticated RPC.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use isthmus_adapter_api::Adapter;
use isthmus_adapter_native::{NativeAdapter, NativeNetwork, NativeProver};
use isthmus_chain::rpc::{Failover, NodeApi, RemoteNode, RemoteNodeConfig};
use isthmus_chain::NetworkConfig;
use isthmus_core::Keypair;
use isthmus_relayer::config::{NativeSource, RelayerConfig, SourceConfig};
use isthmus_relayer::evidence::OUTBOX_KIND;
use isthmus_relayer::{AdapterSource, EvidenceCarrier, EvidenceSource, Outbox, Relayer};
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
    /// Log lines as human text or JSON (one object per line, for log shippers); to stderr
    #[arg(long, global = true, default_value = "text")]
    log_format: isthmus_logs::LogFormat,
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
    let mut problems = cfg.validate();
    for link in &cfg.links {
        if let Some(source) = &link.source {
            if let Err(p) = platform(source) {
                problems.extend(
                    p.into_iter()
                        .map(|e| format!("link `{}`: source: {e}", link.name)),
                );
            }
        }
    }
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

/// A source's platform config, read and checked by its adapter's own type.
enum Platform {
    Evm(Box<isthmus_adapter_evm::EvmConfig>),
    Native(Arc<NetworkConfig>),
}

fn platform(source: &SourceConfig) -> Result<Platform, Vec<String>> {
    match source {
        SourceConfig::Native(s) => NetworkConfig::load(&s.config)
            .map(|c| Platform::Native(Arc::new(c)))
            .map_err(|e| vec![format!("native: config {}: {e}", s.config.display())]),
        SourceConfig::Evm(s) => {
            let evm: isthmus_adapter_evm::EvmConfig = toml::Value::Table(s.evm.clone())
                .try_into()
                .map_err(|e| vec![format!("evm: {e}")])?;
            let mut p = evm.validate();
            let named = evm.escrow.is_some() && evm.htlc.is_some();
            if !named && evm.contracts_record.is_none() {
                p.push(
                    "evm.escrow and evm.htlc, or an evm.contracts_record naming them, are \
                     required: the relayer watches the lock contracts, it never deploys them"
                        .into(),
                );
            }
            if p.is_empty() {
                Ok(Platform::Evm(Box::new(evm)))
            } else {
                Err(p)
            }
        }
    }
}

/// A packet source over a native network's nodes (their RPC, calls failing over between
/// them): the native adapter reads its events, the prover packs each packet's proof.
async fn native_source(
    src: &NativeSource,
    cfg: Arc<NetworkConfig>,
    key: &Keypair,
    outbox: Outbox,
    db: sled::Db,
    link: &str,
) -> anyhow::Result<AdapterSource<Arc<dyn Adapter>>> {
    let mut nodes: Vec<Arc<dyn NodeApi>> = Vec::new();
    for n in &src.nodes {
        let id =
            n.id.parse()
                .map_err(|e| anyhow::anyhow!("node id `{}`: {e}", n.id))?;
        let remote =
            RemoteNode::new(RemoteNodeConfig::new(cfg.clone(), n.rpc, id), key.clone()).await?;
        nodes.push(Arc::new(remote));
    }
    let node: Arc<dyn NodeApi> = Arc::new(Failover::new(nodes)?);
    // The relayer only reads: its wallet holds no key, and it submits nothing.
    let adapter: Arc<dyn Adapter> = Arc::new(NativeAdapter::new(
        node.clone(),
        NativeNetwork::new(cfg),
        Arc::new(isthmus_adapter_api::MemoryWallet::new()),
        key.clone(),
    ));
    let prover = NativeProver {
        adapter: adapter.clone(),
        node,
    };
    let mut source = AdapterSource::proving(adapter, Box::new(prover), outbox, db, link)?;
    source.page = src.page;
    source.idle_poll = std::time::Duration::from_millis(src.poll_ms);
    Ok(source)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    isthmus_logs::init(cli.log_format, "info");
    match cli.cmd {
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
                if let Some(source @ SourceConfig::Evm(src)) = &link.source {
                    let Ok(Platform::Evm(evm)) = platform(source) else {
                        bail!("link {}: invalid source (see `relayer check`)", link.name);
                    };
                    let network = evm.network;
                    // The relayer only reads the chain: its wallet holds no key.
                    let wallet = Arc::new(isthmus_adapter_api::MemoryWallet::new());
                    let adapter = isthmus_adapter_evm::EvmAdapter::open(*evm, wallet)
                        .await
                        .with_context(|| {
                            format!(
                                // The network's id, not its RPC URL: a URL may carry
                                // credentials, and secrets are never printed.
                                "link {}: cannot open evm network {network}",
                                link.name
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
                    tracing::info!(link = %link.name, %network, backlog = outbox.len(), "carrying lock evidence");
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
                if let Some(source @ SourceConfig::Native(src)) = &link.source {
                    let Ok(Platform::Native(cfg)) = platform(source) else {
                        bail!("link {}: invalid source (see `relayer check`)", link.name);
                    };
                    let source =
                        native_source(src, cfg, &key, outbox.clone(), db.clone(), &link.name)
                            .await
                            .with_context(|| {
                                format!("link {}: cannot watch its native network", link.name)
                            })?;
                    tracing::info!(link = %link.name, backlog = outbox.len(), "carrying packets with light-client proofs");
                    tasks.spawn(source.run(stop(stop_rx.clone())));
                } else {
                    // No source of its own: the link carries what an embedding process
                    // (`AdapterSource` of the library) queued in this outbox. Say so, rather
                    // than idle in silence.
                    tracing::info!(
                        link = %link.name,
                        backlog = outbox.len(),
                        "packet link: relaying the packets queued in its outbox (no [link.source]; \
                         queued by a process embedding the relayer library)"
                    );
                }
                let relayer = Relayer {
                    link: settings,
                    endpoint,
                    outbox,
                    stats: Arc::default(),
                };
                tasks.spawn(relayer.run(stop(stop_rx.clone())));
            }
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .context("cannot listen for SIGTERM")?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r.context("cannot listen for Ctrl-C")?,
                _ = term.recv() => {}
            }
            tracing::info!("stopping");
            let _ = stop_tx.send(true);
            while tasks.join_next().await.is_some() {}
            db.flush()?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
        key_file = "k"
        data_dir = "d"
        [[link]]
        name = "anvil"
        transport = "tcp"
        network = 1
        hub_addr = "127.0.0.1:1"
        hub_id = "isth_H6qBrwuboFWzx9C796NJDb1a7Z87qU1YCxA4Jy79YCiB"
        [link.source]
        kind = "evm"
        [link.source.evm]
        network = 7
        name = "anvil"
        rpc_url = "http://127.0.0.1:8545"
        chain_id = 31337
        attesters = ["0x70997970C51812dc3A04C0fe94E3A4F4a4Ad6355"]
        threshold = 1
        relayer = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
    "#;

    fn source(extra: &str, threshold: u32) -> SourceConfig {
        let text = format!(
            "{}\n{extra}",
            BASE.replace("threshold = 1", &format!("threshold = {threshold}"))
        );
        let cfg = RelayerConfig::parse(&text).unwrap();
        cfg.links[0].source.clone().unwrap()
    }

    #[test]
    fn the_evm_table_is_read_by_the_adapter_type_and_every_problem_is_listed() {
        let Ok(Platform::Evm(evm)) = platform(&source("contracts_record = \"r.json\"", 1)) else {
            panic!("a valid evm source was refused");
        };
        assert_eq!(evm.confirmations, 12, "the evm config's own default");

        // No contracts named and a bad threshold: both listed.
        let Err(p) = platform(&source("", 3)) else {
            panic!("an invalid evm source was accepted");
        };
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p.iter().any(|e| e.contains("never deploys")), "{p:?}");
        assert!(p.iter().any(|e| e.contains("threshold 3")), "{p:?}");

        let Err(p) = platform(&source("bogus_key = 1", 1)) else {
            panic!("an unknown evm key was accepted");
        };
        assert!(p[0].contains("bogus_key"), "{p:?}");
    }

    #[test]
    fn shipped_example_config_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/relayer.toml");
        let cfg = load(&PathBuf::from(path)).unwrap();
        assert_eq!(cfg.links.len(), 2);
        let s = cfg.links[0].settings().unwrap();
        assert_eq!(s.page, 500);
        // The second link carries lock evidence from an EVM chain, read by the EVM adapter.
        assert!(cfg.links[0].source.is_none());
        let source = cfg.links[1].source.as_ref().unwrap();
        assert!(matches!(platform(source), Ok(Platform::Evm(_))));
    }
}
