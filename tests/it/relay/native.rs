//! The packet lifecycle over two real native networks (single-validator PoS each, in
//! process, real sled): a packet committed on alpha by its `packets` module is seen by two
//! relayers through alpha's native adapter (adapter-fed sources) and carried over QUIC to the hub's ingress (strict verify, durable receipt), delivered on
//! beta exactly once under the hub's attestation, and its acknowledgement settled on alpha;
//! a packet not delivered in time has its timeout proven on beta and settled on alpha.
//! Replays and forgeries change no module state.

use super::wait_until;
use isthmus_adapter_api::MemoryWallet;
use isthmus_adapter_native::{NativeAdapter, NativeNetwork};
use isthmus_chain::config::NetworkConfig;
use isthmus_chain::node::{self, NodeHandle, NodeOptions, RunningNode};
use isthmus_chain::packets::{
    committed_packet_key, receipt_key, send_record_key, AckArgs, PacketCall, RecvArgs, SendArgs,
    SendRecord, TimeoutArgs,
};
use isthmus_chain::Transaction;
use isthmus_core::{Hash32, Keypair, NetworkId};
use isthmus_hub_ingress::*;
use isthmus_lock_contracts::packet::{Packet, Receipt, SourceOutcome};
use isthmus_relayer::daemon::LinkSettings;
use isthmus_relayer::*;
use isthmus_transport::{Endpoint, TransportConfig, TransportKind};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ALPHA: NetworkId = NetworkId(101);
const BETA: NetworkId = NetworkId(102);
const HUB_NET: NetworkId = NetworkId(77);

fn hub_keys() -> Vec<Keypair> {
    (0..3)
        .map(|i| Keypair::dev(&format!("hub-attester-{i}")))
        .collect()
}

fn config(name: &str, id: NetworkId) -> NetworkConfig {
    let s = format!(
        "name = \"{name}\"\nnetwork_id = {}\nnodes = 1\nblock_interval_ms = 100\n\
         [consensus]\ntype = \"pos\"\n\
         [[genesis.validator]]\nid = \"dev:{name}/node-0\"\nstake = 100\n\
         [[genesis.allocation]]\naccount = \"dev:user\"\nbalance = 1000\n\
         [[genesis.allocation]]\naccount = \"dev:hub-submitter\"\nbalance = 1000\n\
         [escrow]\nhub_attesters = [\"dev:hub-attester-0\", \"dev:hub-attester-1\", \"dev:hub-attester-2\"]\nthreshold = 2\n",
        id.0
    );
    NetworkConfig::from_toml_str(&s).unwrap()
}

/// One in-process network; dropping it stops its node.
struct Net {
    id: NetworkId,
    cfg: Arc<NetworkConfig>,
    node: NodeHandle,
    running: RunningNode,
    _dir: tempfile::TempDir,
}

impl Drop for Net {
    fn drop(&mut self) {
        self.running.stop_token().cancel();
    }
}

impl Net {
    async fn start(name: &str, id: NetworkId) -> Net {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Arc::new(config(name, id));
        let running = node::start(NodeOptions {
            cfg: cfg.clone(),
            index: 0,
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
            peers: vec![],
            mine: false,
            transport: TransportKind::Tcp,
        })
        .await
        .unwrap();
        Net {
            id,
            cfg,
            node: running.handle.clone(),
            running,
            _dir: dir,
        }
    }

    /// Submit `call` signed by `key`; returns the tx id and the nonce it used.
    async fn call(&self, key: &Keypair, call: PacketCall) -> (Hash32, u64) {
        let nonce = self.node.account(key.id()).await.unwrap().nonce;
        let tx = Transaction::sign(key, self.id, nonce, call.into_tx_kind());
        let id = self.node.submit(vec![tx]).await.unwrap().pop().unwrap();
        (id.unwrap(), nonce)
    }

    /// Wait until the transaction with `nonce` from `key` has executed (succeeded or not).
    async fn executed(&self, key: &Keypair, nonce: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.node.account(key.id()).await.unwrap().nonce <= nonce {
            assert!(Instant::now() < deadline, "tx {nonce} never executed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn read(&self, key: Vec<u8>) -> Option<Vec<u8>> {
        self.node.state_get(key).await.unwrap()
    }

    async fn wait_for(&self, key: Vec<u8>) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = self.read(key.clone()).await {
                return v;
            }
            assert!(Instant::now() < deadline, "state key never written");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The chain's time: the head block's timestamp, in seconds.
    async fn time(&self) -> u64 {
        let h = self.node.status().await.unwrap().height;
        let b = self.node.block_at(h).await.unwrap().unwrap();
        b.header.timestamp_ms / 1000
    }

    async fn outcome(&self, p: &Packet) -> Option<SourceOutcome> {
        let b = self.read(send_record_key(p.channel, p.sequence)).await?;
        rmp_serde::from_slice::<SendRecord>(&b).unwrap().outcome
    }
}

fn wall_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn send(alpha: &Net, user: &Keypair, payload: &[u8], timeout: u64) -> Packet {
    let (tx, _) = alpha
        .call(
            user,
            PacketCall::Send(SendArgs {
                destination: BETA,
                receiver: "isth_beta_app".into(),
                payload: payload.to_vec(),
                timeout,
            }),
        )
        .await;
    rmp_serde::from_slice(&alpha.wait_for(committed_packet_key(&tx)).await).unwrap()
}

fn recv(p: &Packet, keys: &[Keypair]) -> PacketCall {
    PacketCall::Recv(RecvArgs {
        packet: p.clone(),
        attestations: vec![],
    })
    .attest(BETA, keys)
}

#[tokio::test]
async fn a_message_crosses_two_native_networks_once_with_ack_and_timeout() {
    let alpha = Net::start("alpha", ALPHA).await;
    let beta = Net::start("beta", BETA).await;
    let user = Keypair::dev("user");
    let submitter = Keypair::dev("hub-submitter");
    let hub = hub_keys();

    // Committed on alpha under the channel's first sequence.
    let p1 = send(&alpha, &user, b"hello beta", wall_secs() + 300).await;
    assert_eq!((p1.sequence, p1.channel.source), (1, ALPHA));

    // Two relayers on the link carry it, attested by alpha's validator, to the hub's ingress.
    let dir = tempfile::tempdir().unwrap();
    let (fwd_tx, mut forwarded) = tokio::sync::mpsc::channel(16);
    let mut trusted = BTreeMap::new();
    trusted.insert(
        ALPHA,
        (BTreeSet::from([Keypair::dev("alpha/node-0").id()]), 1),
    );
    let ingress = Arc::new(
        PacketIngress::open(
            sled::open(dir.path().join("hub")).unwrap(),
            IngressConfig {
                trusted,
                max_batch: 100,
                verify_threads: 2,
                ..IngressConfig::default()
            },
            fwd_tx,
            Arc::new(|| 0),
        )
        .unwrap(),
    );
    let hub_key = Keypair::dev("hub");
    let ep = Endpoint::bind(
        TransportConfig {
            kind: TransportKind::Quic,
            network: HUB_NET,
            ..TransportConfig::default()
        },
        hub_key.clone(),
    )
    .await
    .unwrap();
    let settings = LinkSettings {
        name: "link".into(),
        hub_addr: ep.local_addr(),
        hub_id: hub_key.id(),
        page: 100,
        receipt_timeout: Duration::from_secs(5),
        retry_base: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
        idle_poll: Duration::from_millis(20),
        chunk_bytes: 64 * 1024,
    };
    let (stop_hub, hub_rx) = tokio::sync::oneshot::channel::<()>();
    let hub_task = tokio::spawn(ingress.serve(ep, async {
        let _ = hub_rx.await;
    }));
    let adapter = Arc::new(NativeAdapter::new(
        Arc::new(alpha.node.clone()),
        NativeNetwork::new(alpha.cfg.clone()),
        Arc::new(MemoryWallet::new()),
        Keypair::dev("hub-signer"),
    ));
    let mut stops = Vec::new();
    let mut stats = Vec::new();
    for name in ["r1", "r2"] {
        let db = sled::open(dir.path().join(name)).unwrap();
        let outbox = Outbox::open(db.clone(), "link").unwrap();
        // Each relayer watches alpha through the adapter; the packet's attestation comes
        // from alpha's validator (this process runs it), never from the relayer.
        let source = AdapterSource::open(
            adapter.clone(),
            Box::new(LocalAttestor(vec![Keypair::dev("alpha/node-0")])),
            outbox.clone(),
            db,
            "link",
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while outbox.is_empty() {
            assert!(Instant::now() < deadline, "{name} never saw the packet");
            source.poll_once().await.unwrap();
        }
        assert_eq!(outbox.page(10).unwrap()[0].1.packet, p1);
        let r = Relayer {
            link: settings.clone(),
            endpoint: Endpoint::bind(
                TransportConfig {
                    kind: TransportKind::Quic,
                    network: HUB_NET,
                    ..TransportConfig::default()
                },
                Keypair::dev(&format!("relayer-{name}")),
            )
            .await
            .unwrap(),
            outbox,
            stats: Arc::default(),
        };
        stats.push(r.stats.clone());
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop);
        tokio::spawn(r.run(async {
            let _ = rx.await;
        }));
    }
    wait_until("both relayers answered", || {
        stats.iter().all(|s| {
            s.delivered.load(Ordering::Relaxed) + s.duplicates.load(Ordering::Relaxed) == 1
        })
    })
    .await;
    let delivered: u64 = stats
        .iter()
        .map(|s| s.delivered.load(Ordering::Relaxed))
        .sum();
    assert_eq!(
        delivered, 1,
        "one relayer delivers, the other gets `duplicate`"
    );
    let handed = forwarded.recv().await.unwrap();
    assert_eq!(handed.packet, p1);
    let at_hub = handed.packet.clone();
    handed.done();
    assert!(forwarded.try_recv().is_err(), "forwarded once");

    // Delivered on beta once, under a threshold of hub attestations.
    let (_, n) = beta.call(&submitter, recv(&at_hub, &hub[..2])).await;
    let receipt = beta.wait_for(receipt_key(p1.channel, 1)).await;
    beta.executed(&submitter, n).await;
    let Receipt::Delivered { ack } = rmp_serde::from_slice(&receipt).unwrap() else {
        panic!("not delivered")
    };
    assert_eq!(ack.commitment, p1.commitment());
    // A replayed delivery, a forged one (untrusted keys) and an altered packet change nothing.
    let mut altered = at_hub.clone();
    altered.payload = b"evil".to_vec();
    let PacketCall::Recv(signed) = recv(&at_hub, &hub) else {
        unreachable!()
    };
    for bad in [
        recv(&at_hub, &hub[1..]),
        recv(&at_hub, &[Keypair::dev("mallory"), Keypair::dev("eve")]),
        PacketCall::Recv(RecvArgs {
            packet: altered,
            attestations: signed.attestations.clone(),
        }),
    ] {
        let (_, n) = beta.call(&submitter, bad).await;
        beta.executed(&submitter, n).await;
        assert_eq!(
            beta.read(receipt_key(p1.channel, 1)).await,
            Some(receipt.clone())
        );
    }

    // The acknowledgement goes back and settles the sequence on alpha, once.
    let ack_call = PacketCall::Ack(AckArgs {
        ack,
        attestations: vec![],
    })
    .attest(ALPHA, &hub[..2]);
    let (_, n) = alpha.call(&submitter, ack_call.clone()).await;
    alpha.executed(&submitter, n).await;
    assert_eq!(alpha.outcome(&p1).await, Some(SourceOutcome::Acknowledged));
    let (_, n) = alpha.call(&submitter, ack_call).await;
    alpha.executed(&submitter, n).await;
    assert_eq!(alpha.outcome(&p1).await, Some(SourceOutcome::Acknowledged));

    // Timeout path: a packet nobody delivers in time.
    let p2 = send(&alpha, &user, b"too late", wall_secs() + 3).await;
    assert_eq!(p2.sequence, 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    while beta.time().await < p2.timeout {
        assert!(
            Instant::now() < deadline,
            "beta's clock never passed the timeout"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, n) = beta.call(&submitter, recv(&p2, &hub)).await;
    beta.executed(&submitter, n).await;
    assert_eq!(
        beta.read(receipt_key(p2.channel, 2)).await,
        None,
        "late delivery refused"
    );
    let prove = PacketCall::RecvTimeout(RecvArgs {
        packet: p2.clone(),
        attestations: vec![],
    })
    .attest(BETA, &hub);
    beta.call(&submitter, prove).await;
    let Receipt::TimedOut { proof } =
        rmp_serde::from_slice(&beta.wait_for(receipt_key(p2.channel, 2)).await).unwrap()
    else {
        panic!("no timeout receipt")
    };
    let (_, n) = alpha
        .call(
            &submitter,
            PacketCall::Timeout(TimeoutArgs {
                proof,
                attestations: vec![],
            })
            .attest(ALPHA, &hub),
        )
        .await;
    alpha.executed(&submitter, n).await;
    assert_eq!(alpha.outcome(&p2).await, Some(SourceOutcome::TimedOut));

    for s in stops {
        let _ = s.send(());
    }
    let _ = stop_hub.send(());
    let _ = hub_task.await;
}
