//! Relayers and the hub's packet ingress over real transports on loopback, with real sled.

use isthmus_core::{Keypair, NetworkId, NodeId};
use isthmus_hub_ingress::*;
use isthmus_lock_contracts::packet::{ChannelId, Packet};
use isthmus_lock_contracts::Address;
use isthmus_relayer::daemon::LinkSettings;
use isthmus_relayer::*;
use isthmus_transport::{Endpoint, TransportConfig, TransportKind};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

mod native;
mod proof;
mod source;

const HUB_NET: NetworkId = NetworkId(77);
const SRC: NetworkId = NetworkId(1);

fn validators() -> Vec<Keypair> {
    (0..3)
        .map(|i| Keypair::dev(&format!("src-validator-{i}")))
        .collect()
}

fn packets(n: u64, channel_dest: u64) -> Vec<RelayedPacket> {
    let keys = validators();
    (1..=n)
        .map(|seq| {
            RelayedPacket::attest(
                Packet {
                    channel: ChannelId {
                        source: SRC,
                        destination: NetworkId(channel_dest),
                    },
                    sequence: seq,
                    sender: Address("app-a".into()),
                    receiver: Address("app-b".into()),
                    payload: vec![seq as u8; 64],
                    timeout: 1_000_000,
                },
                &keys[..2],
            )
        })
        .collect()
}

fn ingress_cfg() -> IngressConfig {
    let keys: BTreeSet<NodeId> = validators().iter().map(|k| k.id()).collect();
    let mut trusted = BTreeMap::new();
    trusted.insert(SRC, (keys, 2));
    IngressConfig {
        trusted,
        max_batch: 1_000,
        verify_threads: 2,
        ..IngressConfig::default()
    }
}

fn ingress(dir: &std::path::Path) -> (Arc<PacketIngress>, mpsc::Receiver<Forwarded>) {
    let (tx, rx) = mpsc::channel(100_000);
    let ing = PacketIngress::open(
        sled::open(dir).unwrap(),
        ingress_cfg(),
        tx,
        Arc::new(|| 500),
    )
    .unwrap();
    (Arc::new(ing), rx)
}

#[test]
fn forged_untrusted_and_replayed_packets_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ing, mut fwd) = ingress(dir.path());
    let good = packets(3, 2);
    let (r, delivered) = ing.process(&good).unwrap();
    assert!(r.iter().all(|x| x.outcome == Outcome::Delivered));
    assert_eq!(delivered.len(), 3);
    // replay: duplicate, nothing forwarded again
    let (r, delivered) = ing.process(&good).unwrap();
    assert!(r.iter().all(|x| x.outcome == Outcome::Duplicate));
    assert!(delivered.is_empty());

    // forged: payload changed after attestation
    let mut forged = packets(1, 2).remove(0);
    forged.packet.sequence = 4;
    forged.packet.payload = b"steal".to_vec();
    // untrusted signers: attested by keys the hub does not know
    let stranger = RelayedPacket::attest(
        Packet {
            sequence: 5,
            ..good[0].packet.clone()
        },
        &[Keypair::dev("x"), Keypair::dev("y")],
    );
    // only one trusted signature, two needed
    let weak = RelayedPacket::attest(
        Packet {
            sequence: 6,
            ..good[0].packet.clone()
        },
        &validators()[..1],
    );
    // an unknown source network
    let mut other_src = good[0].clone();
    other_src.packet.channel.source = NetworkId(9);
    // same sequence as a delivered packet with another body
    let conflicting = RelayedPacket::attest(
        Packet {
            payload: b"different".to_vec(),
            ..good[0].packet.clone()
        },
        &validators()[..2],
    );
    let (r, delivered) = ing
        .process(&[forged, stranger, weak, other_src, conflicting])
        .unwrap();
    assert!(delivered.is_empty());
    let codes: Vec<String> = r
        .iter()
        .map(|x| match &x.outcome {
            Outcome::Rejected { code, .. } => code.clone(),
            o => format!("{o:?}"),
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            "bad_attestation",
            "bad_attestation",
            "bad_attestation",
            "unknown_source",
            "commitment_mismatch"
        ]
    );
    drop(ing);
    let mut n = 0;
    while fwd.try_recv().is_ok() {
        n += 1;
    }
    assert_eq!(
        n, 0,
        "process() itself never forwards; serve() does after the flush"
    );
}

#[test]
fn receipts_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let p = packets(2, 2);
    {
        let (ing, _f) = ingress(dir.path());
        ing.process(&p).unwrap();
    }
    let (ing, _f) = ingress(dir.path());
    let (r, d) = ing.process(&p).unwrap();
    assert!(d.is_empty());
    assert!(r.iter().all(|x| x.outcome == Outcome::Duplicate));
}

struct HubSide {
    addr: std::net::SocketAddr,
    id: NodeId,
    forwarded: Arc<std::sync::Mutex<Vec<(ChannelId, u64)>>>,
    stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start_hub(kind: TransportKind) -> HubSide {
    let dir = tempfile::tempdir().unwrap();
    let (ing, mut fwd) = ingress(dir.path());
    let key = Keypair::dev("hub");
    let ep = Endpoint::bind(
        TransportConfig {
            kind,
            network: HUB_NET,
            ..TransportConfig::default()
        },
        key.clone(),
    )
    .await
    .unwrap();
    let addr = ep.local_addr();
    let forwarded = Arc::new(std::sync::Mutex::new(Vec::new()));
    let f2 = forwarded.clone();
    tokio::spawn(async move {
        while let Some(f) = fwd.recv().await {
            f2.lock()
                .unwrap()
                .push((f.packet.channel, f.packet.sequence));
            f.done();
        }
    });
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ing.serve(ep, async {
        let _ = rx.await;
    }));
    HubSide {
        addr,
        id: key.id(),
        forwarded,
        stop,
        _dir: dir,
    }
}

fn link(hub: &HubSide, name: &str, page: usize) -> LinkSettings {
    LinkSettings {
        name: name.into(),
        hub_addr: hub.addr,
        hub_id: hub.id,
        page,
        receipt_timeout: Duration::from_secs(5),
        retry_base: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
        idle_poll: Duration::from_millis(20),
        chunk_bytes: 64 * 1024,
    }
}

async fn relayer(
    kind: TransportKind,
    hub: &HubSide,
    db: &sled::Db,
    name: &str,
    page: usize,
) -> Relayer {
    let endpoint = Endpoint::bind(
        TransportConfig {
            kind,
            network: HUB_NET,
            ..TransportConfig::default()
        },
        Keypair::dev(&format!("relayer-{name}")),
    )
    .await
    .unwrap();
    Relayer {
        link: link(hub, "link", page),
        endpoint,
        outbox: Outbox::open(db.clone(), "link").unwrap(),
        stats: Arc::default(),
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn restart_with_1000_pending_and_two_relayers_delivers_each_once() {
    let hub = start_hub(TransportKind::Quic).await;
    let mut all = packets(500, 2);
    all.extend(packets(500, 3));
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let db1 = sled::open(d1.path()).unwrap();
    let db2 = sled::open(d2.path()).unwrap();
    Outbox::open(db1.clone(), "link")
        .unwrap()
        .push_all(&all)
        .unwrap();
    Outbox::open(db2.clone(), "link")
        .unwrap()
        .push_all(&all)
        .unwrap();

    // relayer 1 starts, gets partway, and is killed mid-flight
    let r1 = relayer(TransportKind::Quic, &hub, &db1, "one", 50).await;
    let stats1 = r1.stats.clone();
    let t1 = tokio::spawn(r1.run(std::future::pending()));
    wait_until("relayer 1 progress", || {
        stats1.delivered.load(Ordering::SeqCst) >= 200
    })
    .await;
    t1.abort();
    let _ = t1.await;

    // relayer 2 serves the same link concurrently; relayer 1 restarts from its outbox
    let r2 = relayer(TransportKind::Quic, &hub, &db2, "two", 100).await;
    let stats2 = r2.stats.clone();
    let (s2, rx2) = tokio::sync::oneshot::channel::<()>();
    let t2 = tokio::spawn(r2.run(async {
        let _ = rx2.await;
    }));
    let r1 = relayer(TransportKind::Quic, &hub, &db1, "one-again", 100).await;
    let stats1b = r1.stats.clone();
    let (s1, rx1) = tokio::sync::oneshot::channel::<()>();
    let t1 = tokio::spawn(r1.run(async {
        let _ = rx1.await;
    }));

    let ob1 = Outbox::open(db1.clone(), "link").unwrap();
    let ob2 = Outbox::open(db2.clone(), "link").unwrap();
    wait_until("both outboxes drained", || ob1.is_empty() && ob2.is_empty()).await;
    let _ = s1.send(());
    let _ = s2.send(());
    t1.await.unwrap();
    t2.await.unwrap();

    let fwd = hub.forwarded.lock().unwrap().clone();
    let distinct: BTreeSet<_> = fwd.iter().cloned().collect();
    assert_eq!(distinct.len(), 1_000, "every packet delivered");
    assert_eq!(fwd.len(), 1_000, "no packet delivered twice");
    // A relayer counts only receipts it read: a batch in flight when relayer 1 was killed
    // reached the hub, and its copies were later answered `duplicate`.
    let delivered = stats1.delivered.load(Ordering::SeqCst)
        + stats1b.delivered.load(Ordering::SeqCst)
        + stats2.delivered.load(Ordering::SeqCst);
    assert!(delivered <= 1_000, "{delivered}");
    // relayer 2 got exactly one answer for each of its 1,000 packets
    let answered2 =
        stats2.delivered.load(Ordering::SeqCst) + stats2.duplicates.load(Ordering::SeqCst);
    assert_eq!(answered2, 1_000);
    assert_eq!(stats2.failed.load(Ordering::SeqCst), 0);
    eprintln!(
        "retries: r1={} r1b={} r2={}",
        stats1.retries.load(Ordering::SeqCst),
        stats1b.retries.load(Ordering::SeqCst),
        stats2.retries.load(Ordering::SeqCst)
    );
    let _ = hub.stop.send(());
}

#[tokio::test]
async fn every_transport_carries_the_link_and_refusals_are_kept() {
    for kind in [TransportKind::Tcp, TransportKind::Udp, TransportKind::Quic] {
        let hub = start_hub(kind).await;
        let d = tempfile::tempdir().unwrap();
        let db = sled::open(d.path()).unwrap();
        let mut ps = packets(120, 2);
        // one forged packet in the middle
        ps[60].packet.payload = b"forged".to_vec();
        Outbox::open(db.clone(), "link")
            .unwrap()
            .push_all(&ps)
            .unwrap();
        let r = relayer(kind, &hub, &db, &format!("{kind:?}"), 40).await;
        let stats = r.stats.clone();
        let (s, rx) = tokio::sync::oneshot::channel::<()>();
        let t = tokio::spawn(r.run(async {
            let _ = rx.await;
        }));
        let ob = Outbox::open(db.clone(), "link").unwrap();
        wait_until(&format!("{kind:?} outbox drained"), || ob.is_empty()).await;
        let _ = s.send(());
        t.await.unwrap();
        assert_eq!(stats.delivered.load(Ordering::SeqCst), 119, "{kind:?}");
        assert_eq!(stats.failed.load(Ordering::SeqCst), 1, "{kind:?}");
        assert_eq!(
            ob.failed_len(),
            1,
            "{kind:?}: the refused packet is kept with its reason"
        );
        let fwd: HashMap<_, _> = hub
            .forwarded
            .lock()
            .unwrap()
            .iter()
            .map(|x| (*x, ()))
            .collect();
        assert_eq!(fwd.len(), 119, "{kind:?}");
        let _ = hub.stop.send(());
    }
}

#[test]
fn config_validation_lists_every_problem() {
    let text = r#"
        key_file = "k"
        data_dir = "d"
        [[link]]
        name = "bad name"
        transport = "quic"
        network = 1
        hub_addr = "127.0.0.1:1"
        hub_id = "nope"
        page = 0
        retry_base_ms = 10
        retry_max_ms = 5
    "#;
    let cfg = RelayerConfig::parse(text).unwrap();
    let p = cfg.validate();
    assert_eq!(p.len(), 4, "{p:?}");
    assert!(RelayerConfig::parse("key_file = 1")
        .unwrap_err()
        .contains("key_file"));
    assert!(
        RelayerConfig::parse("key_file=\"k\"\ndata_dir=\"d\"\nbogus=1")
            .unwrap_err()
            .contains("bogus")
    );
}
