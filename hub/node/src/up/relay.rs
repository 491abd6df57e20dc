//! The in-process relayer of `hub up`, the hub's packet ingress it talks to over QUIC, and
//! the Prometheus metrics of both.
//!
//! One relayer link per source network (`alpha`, `beta`): an [`AdapterSource`] watches the
//! network through its native adapter and queues every committed packet, once its send
//! transaction is final, with a light-client proof ([`NativeProver`]: the transaction, the
//! adapter's finality evidence for it, and the packet's state entry's Merkle path) in the
//! relayer's durable outbox; the [`Relayer`] carries the outbox over QUIC to the hub's
//! [`PacketIngress`]. Certificates are pinned to node keys both ways: the relayer dials the
//! ingress's key, and the ingress admits the relayer's key only. The ingress checks each
//! proof with the network's [`NativeProofVerifier`] (the hub's own light client: commit
//! certificate against alpha's or beta's genesis validators, or PoW work and depth),
//! records an exactly-once receipt and forwards the packet; the forwarder hands it to
//! [`MessageRelay::deliver_relayed`], which delivers it on the destination under the hub's
//! attestation. The relayer keeps its own key and sled database, as a separate relayer
//! process would, and is untrusted: no key vouches for a packet, the hub checks the proof
//! itself, and the destination's write-once receipts make a second delivery impossible.

use super::datadir::{DataDir, Secrets};
use anyhow::Context as _;
use isthmus_adapter_api::Adapter;
use isthmus_adapter_native::NativeProver;
use isthmus_chain::rpc::NodeApi;
use isthmus_core::{NetworkId, NodeId};
use isthmus_hub_ingress::{
    Forwarded, IngressConfig, NativeProofVerifier, PacketIngress, ProofVerifier,
};
use isthmus_interop::messages::{MessageError, PortError};
use isthmus_interop::MessageRelay;
use isthmus_relayer::daemon::LinkSettings;
use isthmus_relayer::{AdapterSource, Outbox, Relayer, RelayerStats};
use isthmus_transport::{Endpoint, TransportConfig, TransportKind};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use warp::Filter as _;

/// Where the relayer path listens, and when the hub stops waiting for it.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// The hub's QUIC packet ingress (port 0: any free port).
    pub listen: SocketAddr,
    /// The Prometheus metrics endpoint, `GET /metrics` (port 0: any free port).
    pub metrics: SocketAddr,
    /// Seconds a committed message waits for the relayer before the hub delivers it
    /// itself.
    pub fallback_secs: u64,
    /// Run the relayer in this process (`hub up`). Off, packets come only from relayers
    /// that run elsewhere (`relayer start`), admitted by `relayers`.
    pub embedded: bool,
    /// Identities of relayer processes the ingress admits, besides the embedded one.
    pub relayers: Vec<NodeId>,
}

impl Default for RelayOptions {
    fn default() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        RelayOptions {
            listen: any,
            metrics: any,
            fallback_secs: 10,
            embedded: true,
            relayers: Vec::new(),
        }
    }
}

/// A source network the relayer watches.
pub struct Source {
    pub name: String,
    pub adapter: Arc<dyn Adapter>,
    /// The network's node: the relayer's prover reads state paths from it.
    pub node: Arc<dyn NodeApi>,
}

/// The running relayer path, as the banner and `up.json` describe it.
pub struct RelayPath {
    pub ingress: SocketAddr,
    pub ingress_id: NodeId,
    pub relayer_id: NodeId,
    pub metrics: SocketAddr,
    /// Each link's counters, by link name (the source network's).
    pub links: BTreeMap<String, Arc<RelayerStats>>,
    /// The relayer's own database, flushed at shutdown.
    pub db: sled::Db,
}

/// Packets verified by the ingress and not yet handed to the forwarder.
const FORWARD_QUEUE: usize = 256;
/// Attempts to deliver one forwarded packet before the hub's own delivery is left to take
/// over (after the fallback grace).
const FORWARD_ATTEMPTS: u32 = 8;

/// The process-wide Prometheus recorder (the `metrics` facade has one global recorder);
/// `None` if something else installed one first.
fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(%e, "no prometheus recorder: /metrics answers 503");
                None
            }
        })
        .clone()
}

fn quic(bind: SocketAddr, peers: BTreeSet<NodeId>) -> TransportConfig {
    TransportConfig {
        kind: TransportKind::Quic,
        bind,
        network: NetworkId(super::nets::HUB_NETWORK_ID),
        allowlist: Some(peers),
        ..TransportConfig::default()
    }
}

/// Start the ingress, one relayer link per source, the forwarder and the metrics endpoint;
/// every task goes into `tasks` and stops with `stop`.
#[allow(clippy::too_many_arguments)] // one call site, in `wire`
pub async fn start(
    opts: &RelayOptions,
    dir: &DataDir,
    secrets: &Secrets,
    hub_db: &sled::Db,
    sources: Vec<Source>,
    relay: Arc<MessageRelay>,
    block_ms: u64,
    stop: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<RelayPath> {
    let metrics = prometheus();
    let ingress_key = secrets.derived_key("relay-ingress")?;
    let relayer_key = secrets.derived_key("relayer")?;
    let clock: Arc<dyn Fn() -> u64 + Send + Sync> = Arc::new(super::now_secs);

    let mut proofs: BTreeMap<NetworkId, Arc<dyn ProofVerifier>> = BTreeMap::new();
    let mut names = BTreeMap::new();
    for s in &sources {
        let net = s.adapter.descriptor().network;
        proofs.insert(
            net,
            Arc::new(NativeProofVerifier::new(
                s.adapter.clone(),
                s.node.config().clone(),
            )),
        );
        names.insert(net, s.name.clone());
    }
    let (fwd_tx, fwd_rx) = mpsc::channel(FORWARD_QUEUE);
    let ingress = Arc::new(
        PacketIngress::open(
            hub_db.clone(),
            IngressConfig {
                proofs,
                max_batch: 1_000,
                verify_threads: 1,
                ..IngressConfig::default()
            },
            fwd_tx,
            clock,
        )
        .context("cannot open the packet ingress")?,
    );
    let mut admitted: BTreeSet<NodeId> = opts.relayers.iter().copied().collect();
    if opts.embedded {
        admitted.insert(relayer_key.id());
    }
    let ep = Endpoint::bind(quic(opts.listen, admitted), ingress_key.clone())
        .await
        .with_context(|| format!("cannot open the QUIC packet ingress on {}", opts.listen))?;
    let ingress_addr = ep.local_addr();
    tasks.spawn(ingress.clone().serve(ep, stop.clone().cancelled_owned()));
    tasks.spawn(forward(fwd_rx, relay.clone(), names.clone(), stop.clone()));

    let db = sled::open(dir.relayer_dir())
        .with_context(|| format!("cannot open {}", dir.relayer_dir().display()))?;
    // A packet is committed at most once per block: polling once a block interval picks it
    // up in time without competing with the watchers for the chains.
    let poll = Duration::from_millis(block_ms.clamp(50, 500));
    let mut links = BTreeMap::new();
    // Without the embedded relayer, relayers elsewhere carry every packet.
    let sources = if opts.embedded { sources } else { Vec::new() };
    for s in sources {
        let outbox = Outbox::open(db.clone(), &s.name)?;
        let prover = NativeProver {
            adapter: s.adapter.clone(),
            node: s.node,
        };
        let mut source = AdapterSource::proving(
            s.adapter,
            Box::new(prover),
            outbox.clone(),
            db.clone(),
            &s.name,
        )
        .with_context(|| format!("cannot open the relayer's `{}` source", s.name))?;
        source.page = 256;
        source.idle_poll = poll;
        tasks.spawn(source.run(stop.clone().cancelled_owned()));
        let endpoint = Endpoint::bind(
            quic(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                BTreeSet::from([ingress_key.id()]),
            ),
            relayer_key.clone(),
        )
        .await
        .with_context(|| format!("cannot open the relayer's `{}` QUIC endpoint", s.name))?;
        let relayer = Relayer {
            link: LinkSettings {
                name: s.name.clone(),
                hub_addr: ingress_addr,
                hub_id: ingress_key.id(),
                page: 256,
                receipt_timeout: Duration::from_secs(10),
                retry_base: Duration::from_millis(100),
                retry_max: Duration::from_secs(5),
                idle_poll: poll,
                chunk_bytes: 256 * 1024,
            },
            endpoint,
            outbox,
            stats: Arc::default(),
        };
        links.insert(s.name, relayer.stats.clone());
        tasks.spawn(relayer.run(stop.clone().cancelled_owned()));
    }

    let scrape = {
        let (links, relay) = (links.clone(), relay);
        move || render(metrics.as_ref(), &links, &relay, &ingress, &names)
    };
    let route = warp::path("metrics")
        .and(warp::path::end())
        .and(warp::get())
        .map(move || match scrape() {
            Some(text) => warp::reply::with_status(
                warp::reply::with_header(text, "content-type", "text/plain; version=0.0.4"),
                warp::http::StatusCode::OK,
            ),
            None => warp::reply::with_status(
                warp::reply::with_header(
                    "metrics recorder unavailable\n".to_owned(),
                    "content-type",
                    "text/plain",
                ),
                warp::http::StatusCode::SERVICE_UNAVAILABLE,
            ),
        });
    let (metrics_addr, server) = warp::serve(route)
        .try_bind_with_graceful_shutdown(opts.metrics, stop.clone().cancelled_owned())
        .with_context(|| format!("cannot serve metrics on {}", opts.metrics))?;
    tasks.spawn(server);
    Ok(RelayPath {
        ingress: ingress_addr,
        ingress_id: ingress_key.id(),
        relayer_id: relayer_key.id(),
        metrics: metrics_addr,
        links,
        db,
    })
}

/// The Prometheus text: the relayer daemon's own metrics (backlog, oldest pending, relayed,
/// retries per link), plus each link's receipt counters, the ingress's proof counters per
/// source and the hub's direct deliveries, brought up to date at scrape time.
fn render(
    handle: Option<&PrometheusHandle>,
    links: &BTreeMap<String, Arc<RelayerStats>>,
    relay: &MessageRelay,
    ingress: &PacketIngress,
    names: &BTreeMap<NetworkId, String>,
) -> Option<String> {
    let handle = handle?;
    for (net, name) in names {
        if let Some(c) = ingress.proof_counts(*net) {
            metrics::counter!("hub_ingress_proven_total", "source" => name.clone())
                .absolute(c.proven.load(Ordering::Relaxed));
            metrics::counter!("hub_ingress_proofs_refused_total", "source" => name.clone())
                .absolute(c.refused.load(Ordering::Relaxed));
        }
    }
    for (link, s) in links {
        for (name, v) in [
            ("relayer_delivered_total", &s.delivered),
            ("relayer_duplicates_total", &s.duplicates),
            ("relayer_failed_total", &s.failed),
        ] {
            metrics::counter!(name, "link" => link.clone()).absolute(v.load(Ordering::Relaxed));
        }
    }
    metrics::counter!("hub_messages_direct_deliveries_total").absolute(relay.direct_deliveries());
    Some(handle.render())
}

/// Hand every packet the ingress verified to the message relay for delivery, until `stop`.
/// A packet delivered, already delivered or refused by its destination is done with; one
/// still failing after the attempts is not, so a restart hands it over again (the hub's own
/// delivery may take it over meanwhile: delivery is idempotent).
async fn forward(
    mut rx: mpsc::Receiver<Forwarded>,
    relay: Arc<MessageRelay>,
    names: BTreeMap<NetworkId, String>,
    stop: CancellationToken,
) {
    let name = |n: NetworkId| names.get(&n).cloned().unwrap_or_else(|| n.to_string());
    loop {
        let forwarded = tokio::select! {
            _ = stop.cancelled() => return,
            p = rx.recv() => match p {
                Some(p) => p,
                None => return,
            },
        };
        let packet = &forwarded.packet;
        let (src, dst) = (
            name(packet.channel.source),
            name(packet.channel.destination),
        );
        metrics::counter!("hub_ingress_forwarded_total", "source" => src.clone()).increment(1);
        let mut attempt = 0u32;
        loop {
            let r = tokio::select! {
                _ = stop.cancelled() => return,
                r = relay.deliver_relayed(packet) => r,
            };
            match r {
                Ok(true) => {
                    metrics::counter!("hub_relayed_deliveries_total", "source" => src.clone(), "destination" => dst.clone())
                        .increment(1);
                    forwarded.done();
                    break;
                }
                Ok(false) => {
                    forwarded.done();
                    break;
                }
                Err(MessageError::Port(PortError::Refused(e))) => {
                    tracing::warn!(%src, %dst, seq = packet.sequence, %e, "destination refused a relayed packet");
                    forwarded.done();
                    break;
                }
                Err(e) => {
                    attempt += 1;
                    if attempt >= FORWARD_ATTEMPTS {
                        tracing::warn!(%src, %dst, seq = packet.sequence, %e, "relayed packet not delivered; the hub's own delivery takes over after its grace");
                        break;
                    }
                    let wait = isthmus_core::Backoff::new(
                        Duration::from_millis(200),
                        Duration::from_millis(6_400),
                    )
                    .delay(attempt - 1);
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}
