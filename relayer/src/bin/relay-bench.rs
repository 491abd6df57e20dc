//! Relay throughput: attested packets in → strict batch verify → durable receipt (sled,
//! flushed) → forwarded, over a real transport on loopback, against the ed25519
//! batch-verify ceiling measured in the same run on the same number of signatures and the
//! same number of threads (all the machine's cores, as the hub's verifier uses), right
//! before and right after each relay run.
//!
//! `cargo run --release -p isthmus-relayer --bin relay-bench [-- --packets N --trials T --page P]`
#![allow(clippy::print_stdout)] // a benchmark report goes to stdout

use isthmus_core::sign::{verify_batch, BatchItem};
use isthmus_core::{Domain, Hash32, Keypair, NetworkId};
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

async fn relay(
    kind: TransportKind,
    packets: &[RelayedPacket],
    key: &Keypair,
    page: usize,
    threads: usize,
) -> anyhow::Result<f64> {
    let hub_dir = tempfile_dir("hub")?;
    let rel_dir = tempfile_dir("relayer")?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(packets.len() + 1);
    let mut trusted = BTreeMap::new();
    trusted.insert(SRC, (BTreeSet::from([key.id()]), 1));
    let ing = Arc::new(PacketIngress::open(
        sled::open(&hub_dir)?,
        IngressConfig {
            trusted,
            max_batch: 10_000,
            verify_threads: threads,
        },
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
    outbox.push_all(packets)?;
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
    let (stop_rel, rel_rx) = tokio::sync::oneshot::channel::<()>();
    let rel_task = tokio::spawn(relayer.run(async {
        let _ = rel_rx.await;
    }));
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while n < packets.len() {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(_)) => n += 1,
            _ => anyhow::bail!("{kind:?}: stalled after {n} packets"),
        }
        if Instant::now() > deadline {
            anyhow::bail!("{kind:?}: over the time bound");
        }
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let _ = stop_rel.send(());
    let _ = stop_hub.send(());
    let _ = rel_task.await;
    let _ = hub_task.await;
    let _ = std::fs::remove_dir_all(&hub_dir);
    let _ = std::fs::remove_dir_all(&rel_dir);
    Ok(rate)
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
            // The ceiling is measured right before and right after each relay run and the
            // two averaged, so load that comes and goes on a shared machine weighs on the
            // baseline as it weighs on the run it is compared with.
            let before = ceiling(&packets, threads);
            let rate = relay(kind, &packets, &key, page, threads).await?;
            let after = ceiling(&packets, threads);
            let ceil = (before + after) / 2.0;
            println!(
                "trial {trial}: {:<44} {:>10.0} sig/s  1.00x  (before {before:.0}, after {after:.0})",
                format!("ed25519 strict batch verify ceiling ({threads} thr)"),
                ceil
            );
            println!(
                "trial {trial}: {:<44} {:>10.0} pkt/s  {:.2}x",
                format!("relay e2e over {kind:?} (verify+flush+fwd)"),
                rate,
                rate / ceil
            );
        }
    }
    Ok(())
}
