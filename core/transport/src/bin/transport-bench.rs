//! `transport-bench`: messages/s and one-way latency of plain TCP (the baseline, no
//! crypto), Noise-TCP, UDP and QUIC on loopback, for 256 B and 4 KiB messages, plus the
//! p99 latency at half of each transport's peak rate. Bounded: every run stops after
//! `--secs` seconds (default 1), so the whole benchmark takes well under two minutes.
//!
//! It never talks to anything but 127.0.0.1 and never writes files.

// A benchmark prints its table on purpose.
#![allow(clippy::print_stdout)]

use anyhow::{Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use futures::StreamExt;
use hdrhistogram::Histogram;
use isthmus_core::{FrameCodec, Keypair, WireLimits};
use isthmus_transport::{Connection, Endpoint, TransportConfig, TransportKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{Encoder, FramedRead};

#[derive(Parser, Debug)]
#[command(about = "Loopback throughput and latency of the Isthmus transports")]
struct Args {
    /// Seconds per measured run (each transport and size runs twice: peak and half load).
    #[arg(long, default_value_t = 1.0)]
    secs: f64,
    /// Message sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "256,4096")]
    sizes: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    PlainTcp,
    Transport(TransportKind),
}

impl Subject {
    fn name(self) -> &'static str {
        match self {
            Subject::PlainTcp => "plain-tcp",
            Subject::Transport(TransportKind::Tcp) => "noise-tcp",
            Subject::Transport(TransportKind::Udp) => "udp",
            Subject::Transport(TransportKind::Quic) => "quic",
        }
    }
}

/// One direction of a benchmark link.
enum Tx {
    Plain(mpsc::Sender<Bytes>),
    Conn(Connection),
}

enum Rx {
    Plain(FramedRead<tokio::net::tcp::OwnedReadHalf, FrameCodec>),
    Conn(Connection),
}

impl Tx {
    async fn send(&self, b: Bytes) -> Result<()> {
        match self {
            Tx::Plain(tx) => tx.send(b).await.context("plain tcp writer stopped"),
            Tx::Conn(c) => Ok(c.send(b).await?),
        }
    }
}

impl Rx {
    async fn recv(&mut self) -> Option<Bytes> {
        match self {
            Rx::Plain(r) => r.next().await?.ok().map(|b| b.freeze()),
            Rx::Conn(c) => c.recv().await?.ok(),
        }
    }
}

/// The baseline writer: same batching as the transports' connection tasks, no crypto.
async fn plain_writer(mut rx: mpsc::Receiver<Bytes>, mut w: tokio::net::tcp::OwnedWriteHalf) {
    let mut codec = FrameCodec::new(WireLimits::default());
    let mut out = BytesMut::new();
    while let Some(first) = rx.recv().await {
        out.clear();
        let mut next = Some(first);
        let mut n = 0;
        while let Some(b) = next.take() {
            if codec.encode(b, &mut out).is_err() {
                return;
            }
            n += 1;
            if n < 64 && out.len() < 256 * 1024 {
                next = rx.try_recv().ok();
            }
        }
        if w.write_all(&out).await.is_err() {
            return;
        }
    }
}

struct Link {
    tx: Tx,
    rx: Rx,
    _endpoints: Vec<Endpoint>,
}

async fn link(subject: Subject) -> Result<Link> {
    match subject {
        Subject::PlainTcp => {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
            let (client, (server, _)) = (client?, server?);
            client.set_nodelay(true)?;
            server.set_nodelay(true)?;
            let (_, cw) = client.into_split();
            let (sr, _sw) = server.into_split();
            let (tx, rx) = mpsc::channel(256);
            tokio::spawn(plain_writer(rx, cw));
            // keep the unused halves alive for the run
            std::mem::forget(_sw);
            Ok(Link {
                tx: Tx::Plain(tx),
                rx: Rx::Plain(FramedRead::new(sr, FrameCodec::new(WireLimits::default()))),
                _endpoints: vec![],
            })
        }
        Subject::Transport(kind) => {
            let cfg = TransportConfig {
                max_datagram: 8192,
                recv_queue: 8192,
                ..TransportConfig::new(kind, "127.0.0.1:0".parse()?)
            };
            let server = Endpoint::bind(cfg.clone(), Keypair::dev("bench-server")).await?;
            let client = Endpoint::bind(cfg, Keypair::dev("bench-client")).await?;
            let (acc, conn) =
                tokio::join!(server.accept(), client.connect(server.local_addr(), None));
            let acc = acc.context("accept")?;
            Ok(Link {
                tx: Tx::Conn(conn?),
                rx: Rx::Conn(acc),
                _endpoints: vec![server, client],
            })
        }
    }
}

struct Run {
    sent: u64,
    received: u64,
    msgs_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

fn stamp(base: Instant, size: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(size);
    b.put_u64(base.elapsed().as_nanos() as u64);
    b.resize(size.max(8), 0xab);
    b.freeze()
}

/// Send for `secs` (at `rate` msgs/s if given, else as fast as the link takes them) and
/// measure what arrives.
async fn run(subject: Subject, size: usize, secs: f64, rate: Option<f64>) -> Result<Run> {
    let Link {
        tx,
        mut rx,
        _endpoints,
    } = link(subject).await?;
    let base = Instant::now();
    let sent_total = Arc::new(AtomicU64::new(u64::MAX));
    let st = sent_total.clone();
    let receiver = tokio::spawn(async move {
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).ok()?;
        let mut got = 0u64;
        let mut first: Option<Instant> = None;
        let mut last = Instant::now();
        loop {
            // UDP may lose messages: stop after a quiet spell once the sender is done
            let m = match tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(_) if st.load(Ordering::Relaxed) != u64::MAX => break,
                Err(_) => continue,
            };
            let now = Instant::now();
            first.get_or_insert(now);
            last = now;
            let sent_at = u64::from_be_bytes(m[..8].try_into().ok()?);
            let lat = (base.elapsed().as_nanos() as u64).saturating_sub(sent_at);
            let _ = hist.record(lat.max(1));
            got += 1;
            if got >= st.load(Ordering::Relaxed) {
                break;
            }
        }
        Some((got, hist, last))
    });
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let mut sent = 0u64;
    match rate {
        None => {
            while Instant::now() < until && sent < 5_000_000 {
                tx.send(stamp(base, size)).await?;
                sent += 1;
            }
        }
        Some(r) => {
            // Even spacing, not 1 ms bursts: a burst would measure its own queueing.
            // Sleep for long gaps, yield for short ones.
            let gap = Duration::from_secs_f64(1.0 / r.max(1.0));
            let mut next = Instant::now();
            while next < until {
                let now = Instant::now();
                if next > now + Duration::from_millis(2) {
                    tokio::time::sleep(next - now).await;
                } else {
                    while Instant::now() < next {
                        tokio::task::yield_now().await;
                    }
                }
                tx.send(stamp(base, size)).await?;
                sent += 1;
                next += gap;
            }
        }
    }
    sent_total.store(sent, Ordering::Relaxed);
    let (received, hist, last) = receiver.await?.context("receiver failed")?;
    let elapsed = last.duration_since(start).as_secs_f64().max(1e-9);
    drop(tx);
    for ep in &_endpoints {
        ep.shutdown().await;
    }
    Ok(Run {
        sent,
        received,
        msgs_per_sec: received as f64 / elapsed,
        p50_us: hist.value_at_quantile(0.5) as f64 / 1000.0,
        p99_us: hist.value_at_quantile(0.99) as f64 / 1000.0,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let subjects = [
        Subject::PlainTcp,
        Subject::Transport(TransportKind::Tcp),
        Subject::Transport(TransportKind::Udp),
        Subject::Transport(TransportKind::Quic),
    ];
    println!(
        "loopback, {:.1} s per run; latency is one-way (send to app receive)",
        args.secs
    );
    println!(
        "{:<10} {:>6} {:>12} {:>8} {:>10} {:>10} {:>12} {:>8}",
        "transport", "size", "msgs/s", "x plain", "p50 us", "p99 us", "p99@50% us", "loss %"
    );
    let mut misses = Vec::new();
    for &size in &args.sizes {
        let mut peak = std::collections::HashMap::new();
        for subject in subjects {
            let full = run(subject, size, args.secs, None).await?;
            let half = run(subject, size, args.secs, Some(full.msgs_per_sec / 2.0)).await?;
            let plain = *peak
                .get(&Subject::PlainTcp.name())
                .unwrap_or(&full.msgs_per_sec);
            peak.insert(subject.name(), full.msgs_per_sec);
            let loss = 100.0 * (1.0 - full.received as f64 / full.sent.max(1) as f64);
            println!(
                "{:<10} {:>6} {:>12.0} {:>8.2} {:>10.1} {:>10.1} {:>12.1} {:>8.2}",
                subject.name(),
                size,
                full.msgs_per_sec,
                full.msgs_per_sec / plain,
                full.p50_us,
                full.p99_us,
                half.p99_us,
                loss
            );
            if half.p99_us >= 1000.0 {
                misses.push(format!(
                    "{} {size} B: p99 at half load {:.0} us >= 1 ms",
                    subject.name(),
                    half.p99_us
                ));
            }
        }
        let get = |n: &str| peak.get(n).copied().unwrap_or(0.0);
        let (plain, noise, quic) = (get("plain-tcp"), get("noise-tcp"), get("quic"));
        if noise < 0.5 * plain {
            misses.push(format!(
                "{size} B: noise-tcp {:.2}x plain tcp < 0.5x",
                noise / plain
            ));
        }
        if quic < 0.7 * noise {
            misses.push(format!(
                "{size} B: quic {:.2}x noise-tcp < 0.7x",
                quic / noise
            ));
        }
    }
    if misses.is_empty() {
        println!("targets: all met (noise-tcp >= 0.5x plain, quic >= 0.7x noise-tcp, p99 < 1 ms at half load)");
    } else {
        for m in misses {
            println!("target missed: {m}");
        }
    }
    Ok(())
}
