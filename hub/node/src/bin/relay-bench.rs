//! Relay throughput: attested packets in → strict batch verify → durable receipt (sled,
//! flushed) → forwarded, over a real transport on loopback, against the ed25519
//! batch-verify ceiling measured in the same run on the same number of signatures and the
//! same number of threads (all the machine's cores, as the hub's verifier uses), right
//! before and right after each relay run.
//!
//! A second part compares, over QUIC in the same run, packets accepted by light-client proof
//! (committed by real `packets.send` transactions on an in-process native PoS network; the
//! hub checks certificate, transaction path, body and state path) with packets accepted by
//! attestation.
//!
//! `cargo run --release -p isthmus-hub --bin relay-bench [-- --packets N --trials T --page P --proof-packets M]`
#![allow(clippy::print_stdout)] // a benchmark report goes to stdout

use isthmus_adapter_native::NativeProver;
use isthmus_core::sign::{verify_batch, BatchItem};
use isthmus_core::{Domain, Hash32, Keypair, NetworkId};
use isthmus_hub_ingress::*;
use isthmus_lock_contracts::packet::{ChannelId, Packet};
use isthmus_lock_contracts::Address;
use isthmus_relayer::daemon::LinkSettings;
use isthmus_relayer::*;
use isthmus_transport::{Endpoint, TransportConfig, TransportKind};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HUB_NET: NetworkId = NetworkId(77);
const SRC: NetworkId = NetworkId(1);

fn make_packets(n: u64, key: &Keypair) -> Vec<RelayedPacket> {
    (1..=n)
        .map(|seq| {
            RelayedPacket::attest(
                Packet {
                    channel: ChannelId {
                        source: SRC,
                        destination: NetworkId(2),
                    },
                    sequence: seq,
                    sender: Address("app-a".into()),
                    receiver: Address("app-b".into()),
                    payload: vec![7u8; 256],
                    timeout: u64::MAX,
                },
                std::slice::from_ref(key),
            )
        })
        .collect()
}

/// Strict batch verification of every packet's attestation in batches of 500, on `threads`
/// threads at once (each takes every `threads`-th batch): the most the hub's cores could
/// verify with nothing else to do.
fn ceiling(packets: &[RelayedPacket], threads: usize) -> f64 {
    let commitments: Vec<_> = packets.iter().map(|p| p.packet.commitment()).collect();
    let batches: Vec<(&[RelayedPacket], &[Hash32])> =
        packets.chunks(500).zip(commitments.chunks(500)).collect();
    let t = Instant::now();
    let ok: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let mine: Vec<_> = batches.iter().skip(i).step_by(threads).collect();
                s.spawn(move || {
                    let mut ok = 0;
                    for (chunk, cs) in mine {
                        let items: Vec<BatchItem<'_>> = chunk
                            .iter()
                            .zip(cs.iter())
                            .map(|(p, c)| BatchItem {
                                signer: p.attestations[0].signer,
                                domain: Domain::Packet,
                                network: SRC,
                                payload: c.as_bytes(),
                                signature: p.attestations[0].signature,
                            })
                            .collect();
                        ok += verify_batch(&items).iter().filter(|r| r.is_ok()).count();
                    }
                    ok
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    assert_eq!(ok, packets.len());
    packets.len() as f64 / t.elapsed().as_secs_f64()
}

/// The ingress policy of the attestation runs: `key` attests `SRC`'s packets.
fn attesting(key: &Keypair, threads: usize) -> IngressConfig {
    let mut trusted = BTreeMap::new();
    trusted.insert(SRC, (BTreeSet::from([key.id()]), 1));
    IngressConfig {
        trusted,
        max_batch: 10_000,
        verify_threads: threads,
        ..IngressConfig::default()
    }
}

/// What sends the packets to the hub's ingress.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Feed {
    /// The relayer daemon, from its sled outbox (as in production).
    Relayer,
    /// A bare client sending `Deliver` bodies encoded before the clock starts, keeping a
    /// page of batches in flight: the hub's pipeline with as little else on the cores.
    Memory,
}

/// Send `bodies` on one connection, at most `window` unanswered at once, until every one
/// is answered.
async fn feed_from_memory(
    endpoint: Endpoint,
    addr: std::net::SocketAddr,
    hub: isthmus_core::NodeId,
    bodies: Vec<bytes::Bytes>,
    window: usize,
) -> anyhow::Result<()> {
    let mut conn = endpoint.connect(addr, Some(hub)).await?;
    let (mut next, mut unanswered) = (0, 0);
    while next < bodies.len() || unanswered > 0 {
        while unanswered < window && next < bodies.len() {
            conn.send(bodies[next].clone()).await?;
            next += 1;
            unanswered += 1;
        }
        match conn.recv_msg::<LinkMsg>().await {
            Some(Ok(LinkMsg::Receipts { .. })) => unanswered -= 1,
            Some(Ok(_)) => {}
            Some(Err(e)) => anyhow::bail!("link failed: {e}"),
            None => anyhow::bail!("the hub closed the link"),
        }
    }
    Ok(())
}

async fn relay(
    kind: TransportKind,
    packets: &[RelayedPacket],
    cfg: IngressConfig,
    page: usize,
    feed: Feed,
) -> anyhow::Result<f64> {
    let hub_dir = tempfile_dir("hub")?;
    let rel_dir = tempfile_dir("relayer")?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(packets.len() + 1);
    let ing = Arc::new(PacketIngress::open(
        sled::open(&hub_dir)?,
        cfg,
        tx,
        Arc::new(|| 1),
    )?);
    let hub_key = Keypair::dev("bench-hub");
    let ep = Endpoint::bind(
        TransportConfig {
            kind,
            network: HUB_NET,
            ..TransportConfig::default()
        },
        hub_key.clone(),
    )
    .await?;
    let addr = ep.local_addr();
    let (stop_hub, hub_rx) = tokio::sync::oneshot::channel::<()>();
    let hub_task = tokio::spawn(ing.serve(ep, async {
        let _ = hub_rx.await;
    }));
    let db = sled::open(&rel_dir)?;
    let outbox = Outbox::open(db, "bench")?;
    if feed == Feed::Relayer {
        outbox.push_all(packets)?;
    }
    const BATCH: usize = 500;
    let bodies = match feed {
        Feed::Relayer => Vec::new(),
        Feed::Memory => packets
            .chunks(BATCH)
            .enumerate()
            .map(|(i, c)| {
                isthmus_core::codec::encode_body(
                    &LinkMsg::Deliver {
                        batch: i as u64 + 1,
                        packets: c.to_vec(),
                    },
                    &isthmus_core::codec::WireLimits::default(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let endpoint = Endpoint::bind(
        TransportConfig {
            kind,
            network: HUB_NET,
            ..TransportConfig::default()
        },
        Keypair::dev("bench-relayer"),
    )
    .await?;
    let relayer = Relayer {
        link: LinkSettings {
            name: "bench".into(),
            hub_addr: addr,
            hub_id: hub_key.id(),
            page,
            receipt_timeout: Duration::from_secs(10),
            retry_base: Duration::from_millis(50),
            retry_max: Duration::from_secs(1),
            idle_poll: Duration::from_millis(5),
            chunk_bytes: 200 * 1024,
        },
        endpoint,
        outbox,
        stats: Arc::default(),
    };
    let start = Instant::now();
    let cpu_start = process_cpu_secs();
    let (stop_rel, rel_rx) = tokio::sync::oneshot::channel::<()>();
    let rel_task = match feed {
        Feed::Relayer => tokio::spawn(async move {
            relayer
                .run(async {
                    let _ = rel_rx.await;
                })
                .await;
        }),
        Feed::Memory => {
            let (endpoint, hub) = (relayer.endpoint, hub_key.id());
            let window = page.div_ceil(BATCH).max(1);
            tokio::spawn(async move {
                if let Err(e) = feed_from_memory(endpoint, addr, hub, bodies, window).await {
                    eprintln!("  feeder: {e}");
                }
                let _ = rel_rx.await;
            })
        }
    };
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while n < packets.len() {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(f)) => {
                f.done();
                n += 1;
            }
            _ => anyhow::bail!("{kind:?}: stalled after {n} packets"),
        }
        if Instant::now() > deadline {
            anyhow::bail!("{kind:?}: over the time bound");
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let rate = n as f64 / wall;
    if let (Some(a), Some(b)) = (cpu_start, process_cpu_secs()) {
        let by = match feed {
            Feed::Relayer => "relayer daemon",
            Feed::Memory => "memory feed",
        };
        eprintln!(
            "  {kind:?}, {by}: {:.2} cores busy on average",
            (b - a) / wall
        );
    }
    let _ = stop_rel.send(());
    let _ = stop_hub.send(());
    let _ = rel_task.await;
    let _ = hub_task.await;
    let _ = std::fs::remove_dir_all(&hub_dir);
    let _ = std::fs::remove_dir_all(&rel_dir);
    Ok(rate)
}

/// CPU seconds (user + system) this process has used, from `/proc/self/stat`.
fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after its `)`.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn tempfile_dir(tag: &str) -> anyhow::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("isthmus-relay-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let n = arg("--packets").unwrap_or(20_000);
    let trials = arg("--trials").unwrap_or(3).max(1);
    let page = arg("--page").unwrap_or(4_000) as usize;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let key = Keypair::dev("bench-source-validator");
    let packets = make_packets(n, &key);
    println!(
        "relay benchmark: {n} packets, 256 B payload, 1 attestation each, pages of {page} in ~500-packet pipelined batches; \
         hub verifies on {threads} thread(s), and the ceiling is measured on the same {threads}"
    );
    for trial in 1..=trials {
        // The 1-minute load average, so a reader can tell a busy machine's trials apart.
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_owned))
            .unwrap_or_else(|| "?".into());
        println!("trial {trial}: load {load}");
        if threads > 1 {
            println!(
                "trial {trial}: {:<44} {:>10.0} sig/s  (reference only)",
                "ed25519 strict batch verify, 1 thread",
                ceiling(&packets, 1)
            );
        }
        for kind in [TransportKind::Tcp, TransportKind::Quic] {
            // The ceiling is measured right before and right after each pair of relay runs
            // and the two averaged, so load that comes and goes on a shared machine weighs
            // on the baseline as it weighs on the runs it is compared with.
            let before = ceiling(&packets, threads);
            let fed = relay(kind, &packets, attesting(&key, threads), page, Feed::Memory).await?;
            let relayed = relay(
                kind,
                &packets,
                attesting(&key, threads),
                page,
                Feed::Relayer,
            )
            .await?;
            let after = ceiling(&packets, threads);
            let ceil = (before + after) / 2.0;
            println!(
                "trial {trial}: {:<52} {:>10.0} sig/s  1.00x  (before {before:.0}, after {after:.0})",
                format!("ed25519 strict batch verify ceiling ({threads} thr)"),
                ceil
            );
            println!(
                "trial {trial}: {:<52} {:>10.0} pkt/s  {:.2}x",
                format!("hub relay over {kind:?} (in→verify→flush→fwd)"),
                fed,
                fed / ceil
            );
            println!(
                "trial {trial}: {:<52} {:>10.0} pkt/s  {:.2}x",
                format!("relayer daemon → hub relay over {kind:?}"),
                relayed,
                relayed / ceil
            );
        }
    }
    // Proof mode against attestation mode in the same run: packets really committed on a
    // single-validator PoS native network, proven (certificate + tx path + state path).
    let m = arg("--proof-packets").unwrap_or(2_000);
    if m > 0 {
        let proving = ProvingNet::start(m).await?;
        let attested = make_packets(m, &key);
        println!(
            "proof mode: {m} packets committed on a native PoS network in {} block(s), proofs built in {:.1} s",
            proving.blocks, proving.build_secs
        );
        for trial in 1..=trials {
            let by_attest = relay(
                TransportKind::Quic,
                &attested,
                attesting(&key, threads),
                page,
                Feed::Relayer,
            )
            .await?;
            let by_proof = relay(
                TransportKind::Quic,
                &proving.packets,
                proving.ingress_cfg(threads),
                page,
                Feed::Relayer,
            )
            .await?;
            println!(
                "trial {trial}: {:<44} {:>10.0} pkt/s  1.00x",
                "accepted by attestation over Quic", by_attest
            );
            println!(
                "trial {trial}: {:<44} {:>10.0} pkt/s  {:.2}x",
                "accepted by light-client proof over Quic",
                by_proof,
                by_proof / by_attest
            );
        }
        proving.running.shutdown().await;
    }
    Ok(())
}

/// A native PoS network (in process) whose packets were committed by real `packets.send`
/// transactions, and their proofs.
struct ProvingNet {
    running: isthmus_chain::node::RunningNode,
    adapter: Arc<dyn isthmus_adapter_api::Adapter>,
    cfg: Arc<isthmus_chain::NetworkConfig>,
    packets: Vec<RelayedPacket>,
    blocks: usize,
    build_secs: f64,
    _dir: std::path::PathBuf,
}

impl ProvingNet {
    async fn start(n: u64) -> anyhow::Result<ProvingNet> {
        use isthmus_chain::packets::{committed_packet_key, PacketCall, SendArgs};
        const SENDERS: u64 = 8;
        let dir = tempfile_dir("source")?;
        let mut toml =
            "name = \"bench-src\"\nnetwork_id = 9001\nnodes = 1\nblock_interval_ms = 200\n\
                        [consensus]\ntype = \"pos\"\n\
                        [[genesis.validator]]\nid = \"dev:bench-src/node-0\"\nstake = 100\n"
                .to_owned();
        for i in 0..SENDERS {
            toml.push_str(&format!(
                "[[genesis.allocation]]\naccount = \"dev:bench-sender-{i}\"\nbalance = 1000\n"
            ));
        }
        let cfg = Arc::new(isthmus_chain::NetworkConfig::from_toml_str(&toml)?);
        let running = isthmus_chain::node::start(isthmus_chain::node::NodeOptions {
            cfg: cfg.clone(),
            index: 0,
            data_dir: dir.join("node"),
            listen: "127.0.0.1:0".parse()?,
            peers: vec![],
            mine: false,
            transport: TransportKind::Tcp,
        })
        .await?;
        let node = running.handle.clone();
        let net = cfg.network();
        let algo = cfg.rules_at(0).hash;
        let mut ids = Vec::new();
        let senders: Vec<Keypair> = (0..SENDERS)
            .map(|i| Keypair::dev(&format!("bench-sender-{i}")))
            .collect();
        for chunk in 0..n.div_ceil(SENDERS) {
            let mut txs = Vec::new();
            for k in &senders {
                if ids.len() + txs.len() >= n as usize {
                    break;
                }
                let call = PacketCall::Send(SendArgs {
                    destination: NetworkId(2),
                    receiver: "app-b".into(),
                    payload: vec![7u8; 256],
                    timeout: u64::MAX / 2,
                });
                txs.push(isthmus_chain::Transaction::sign(
                    k,
                    net,
                    chunk,
                    call.into_tx_kind(),
                ));
            }
            for (t, r) in txs.iter().zip(node.submit(txs.clone()).await?) {
                r.map_err(|e| anyhow::anyhow!("send refused: {e}"))?;
                ids.push(t.id(algo));
            }
        }
        let adapter: Arc<dyn isthmus_adapter_api::Adapter> =
            Arc::new(isthmus_adapter_native::NativeAdapter::new(
                Arc::new(node.clone()),
                isthmus_adapter_native::NativeNetwork::new(cfg.clone()),
                Arc::new(isthmus_adapter_api::MemoryWallet::new()),
                Keypair::dev("bench-hub-signer"),
            ));
        // Every send committed (PoS: final once included).
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut items = Vec::with_capacity(ids.len());
        for id in &ids {
            let (header, _) = loop {
                if let Some(found) = node.tx_proof(*id).await? {
                    break found;
                }
                anyhow::ensure!(Instant::now() < deadline, "send {id} never included");
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let packet: Packet = rmp_serde::from_slice(
                &node
                    .state_get(committed_packet_key(id))
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("send {id} was refused"))?,
            )?;
            items.push((isthmus_adapter_api::Checkpoint(header.number << 24), packet));
        }
        items.sort_by_key(|(cp, p)| (cp.0, p.sequence));
        let blocks = items.windows(2).filter(|w| w[0].0 != w[1].0).count() + 1;
        let t = Instant::now();
        let prover = NativeProver {
            adapter: adapter.clone(),
            node: Arc::new(node),
        };
        let proofs = prover.prove_all(&items).await?;
        let build_secs = t.elapsed().as_secs_f64();
        let packets = items
            .into_iter()
            .zip(proofs)
            .map(|((_, p), proof)| RelayedPacket::proven(p, proof))
            .collect();
        Ok(ProvingNet {
            running,
            adapter,
            cfg,
            packets,
            blocks,
            build_secs,
            _dir: dir,
        })
    }

    /// A fresh ingress policy (an empty header cache) proving this network's packets.
    fn ingress_cfg(&self, threads: usize) -> IngressConfig {
        let mut proofs: BTreeMap<NetworkId, Arc<dyn ProofVerifier>> = BTreeMap::new();
        proofs.insert(
            self.cfg.network(),
            Arc::new(NativeProofVerifier::new(
                self.adapter.clone(),
                self.cfg.clone(),
            )),
        );
        IngressConfig {
            proofs,
            max_batch: 10_000,
            verify_threads: threads,
            ..IngressConfig::default()
        }
    }
}
