//! Packets carried with light-client proofs from real native nodes (a single-validator PoS
//! network and a mining PoW network, in process, real sled): the relayer's proving source
//! attaches the send transaction, its finality evidence and the packet's state path; the
//! hub's ingress accepts them under a proof policy, and refuses every forgery with a typed
//! code, writing no receipt (the genuine packet is still delivered afterwards).

use isthmus_adapter_api::{Adapter, CommitVote, Evidence, MemoryWallet, TxStatus};
use isthmus_adapter_native::{NativeAdapter, NativeNetwork, NativeProver};
use isthmus_chain::config::NetworkConfig;
use isthmus_chain::node::{self, NodeHandle, NodeOptions, RunningNode};
use isthmus_chain::packets::{PacketCall, SendArgs};
use isthmus_chain::Transaction;
use isthmus_core::{Hash32, Keypair, NetworkId};
use isthmus_hub_ingress::*;
use isthmus_lock_contracts::packet::Packet;
use isthmus_lock_contracts::TxId;
use isthmus_relayer::*;
use isthmus_transport::TransportKind;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEST: NetworkId = NetworkId(302);

fn config(name: &str, id: u64, pow: bool) -> NetworkConfig {
    let consensus = if pow {
        "block_interval_ms = 50\n[consensus]\ntype = \"pow\"\ninitial_difficulty = 256\nretarget_window = 1000000\n".to_owned()
    } else {
        format!(
            "block_interval_ms = 100\n[consensus]\ntype = \"pos\"\n\
             [[genesis.validator]]\nid = \"dev:{name}/node-0\"\nstake = 100\n"
        )
    };
    let s = format!(
        "name = \"{name}\"\nnetwork_id = {id}\nnodes = 1\n{consensus}\
         [[genesis.allocation]]\naccount = \"dev:user\"\nbalance = 1000\n\
         [escrow]\nhub_attesters = [\"dev:hub-attester-0\"]\nthreshold = 1\n"
    );
    NetworkConfig::from_toml_str(&s).unwrap()
}

/// One in-process network with its native adapter; dropping it stops its node.
struct Net {
    id: NetworkId,
    cfg: Arc<NetworkConfig>,
    node: NodeHandle,
    adapter: Arc<dyn Adapter>,
    running: RunningNode,
    dir: tempfile::TempDir,
}

impl Drop for Net {
    fn drop(&mut self) {
        self.running.stop_token().cancel();
    }
}

impl Net {
    async fn start(name: &str, id: u64, pow: bool) -> Net {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Arc::new(config(name, id, pow));
        let running = node::start(NodeOptions {
            cfg: cfg.clone(),
            index: 0,
            data_dir: dir.path().join("node"),
            listen: "127.0.0.1:0".parse().unwrap(),
            peers: vec![],
            mine: pow,
            transport: TransportKind::Tcp,
        })
        .await
        .unwrap();
        let node = running.handle.clone();
        let adapter: Arc<dyn Adapter> = Arc::new(NativeAdapter::new(
            Arc::new(node.clone()),
            NativeNetwork::new(cfg.clone()),
            Arc::new(MemoryWallet::new()),
            Keypair::dev("hub-signer"),
        ));
        Net {
            id: NetworkId(id),
            cfg,
            node,
            adapter,
            running,
            dir,
        }
    }

    /// Sign and submit `kind` from `key`; returns the transaction.
    async fn submit(&self, key: &Keypair, kind: isthmus_chain::TxKind) -> Transaction {
        let nonce = self.node.account(key.id()).await.unwrap().nonce;
        let tx = Transaction::sign(key, self.id, nonce, kind);
        self.node
            .submit(vec![tx.clone()])
            .await
            .unwrap()
            .pop()
            .unwrap()
            .unwrap();
        // Wait until it executed (succeeded or not) before the next nonce.
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.node.account(key.id()).await.unwrap().nonce <= nonce {
            assert!(Instant::now() < deadline, "tx {nonce} never executed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tx
    }

    fn tx_id(&self, tx: &Transaction) -> TxId {
        TxId(tx.id(self.cfg.rules_at(0).hash).to_hex())
    }

    /// Wait until `tx` is final (a failed call is included too); its evidence.
    async fn final_evidence(&self, tx: &TxId) -> Evidence {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self.adapter.tx_status(tx).await.unwrap();
            if matches!(status, TxStatus::Final { .. } | TxStatus::Failed { .. }) {
                // A failed PoW call is reported at once; its evidence waits for depth.
                if let Ok(ev) = self.adapter.evidence(tx).await {
                    return ev;
                }
            }
            assert!(Instant::now() < deadline, "tx {} never final", tx.0);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn verifier(&self) -> Arc<NativeProofVerifier> {
        Arc::new(NativeProofVerifier::new(
            self.adapter.clone(),
            self.cfg.clone(),
        ))
    }
}

fn send_kind(payload: &[u8], timeout: u64) -> isthmus_chain::TxKind {
    PacketCall::Send(SendArgs {
        destination: DEST,
        receiver: "isth_dest_app".into(),
        payload: payload.to_vec(),
        timeout,
    })
    .into_tx_kind()
}

fn wall_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn code(o: &Outcome) -> &str {
    match o {
        Outcome::Rejected { code, .. } => code,
        Outcome::Delivered => "delivered",
        Outcome::Duplicate => "duplicate",
    }
}

/// Two packets sent on `net` reach the outbox of a proving source with their proofs.
async fn proven_packets(net: &Net, user: &Keypair) -> Vec<RelayedPacket> {
    for payload in [&b"one"[..], b"two"] {
        net.submit(user, send_kind(payload, wall_secs() + 600))
            .await;
    }
    let db = sled::open(net.dir.path().join("relayer")).unwrap();
    let outbox = Outbox::open(db.clone(), "link").unwrap();
    let prover = NativeProver {
        adapter: net.adapter.clone(),
        node: Arc::new(net.node.clone()),
    };
    let source = AdapterSource::proving(
        net.adapter.clone(),
        Box::new(prover),
        outbox.clone(),
        db,
        "link",
    )
    .unwrap();
    // The source waits (NotFound, page re-read) until each send is final.
    let deadline = Instant::now() + Duration::from_secs(60);
    while outbox.page(10).unwrap().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the source never proved both packets"
        );
        let _ = source.poll_once().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let packets: Vec<RelayedPacket> = outbox
        .page(10)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let seqs: Vec<u64> = packets.iter().map(|p| p.packet.sequence).collect();
    assert_eq!(seqs, vec![1, 2]);
    assert!(packets
        .iter()
        .all(|p| p.proof.is_some() && p.attestations.is_empty()));
    packets
}

fn ingress(
    net: &Net,
    verifier: Arc<NativeProofVerifier>,
) -> (PacketIngress, tokio::sync::mpsc::Receiver<Forwarded>) {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let mut proofs: BTreeMap<NetworkId, Arc<dyn ProofVerifier>> = BTreeMap::new();
    proofs.insert(net.id, verifier);
    let ing = PacketIngress::open(
        sled::open(net.dir.path().join("hub")).unwrap(),
        IngressConfig {
            proofs,
            max_batch: 100,
            verify_threads: 1,
            ..IngressConfig::default()
        },
        tx,
        Arc::new(wall_secs),
    )
    .unwrap();
    (ing, rx)
}

/// The forgeries every network must refuse, then the genuine packets, then a replay.
async fn forgeries_refused_then_genuine_received(net: &Net, packets: Vec<RelayedPacket>) {
    let user = Keypair::dev("user");
    // A send refused by the packets module (timeout already past): included, wrote nothing.
    let failed = net.submit(&user, send_kind(b"late", 1)).await;
    // Another call: a transfer.
    let transfer = net
        .submit(
            &user,
            isthmus_chain::TxKind::Transfer {
                to: Keypair::dev("other").id(),
                amount: 1,
            },
        )
        .await;
    let (failed_id, transfer_id) = (net.tx_id(&failed), net.tx_id(&transfer));
    let failed_ev = net.final_evidence(&failed_id).await;
    let transfer_ev = net.final_evidence(&transfer_id).await;

    let verifier = net.verifier();
    let (hub, mut forwarded) = ingress(net, verifier.clone());
    let (p1, p2) = (&packets[0], &packets[1]);
    let proof1 = p1.proof.clone().unwrap();
    let with =
        |packet: &Packet, proof: &PacketProof| RelayedPacket::proven(packet.clone(), proof.clone());
    let mut cases: Vec<(&str, RelayedPacket, &str)> = Vec::new();
    // Payload altered after proving.
    let mut altered = p1.packet.clone();
    altered.payload = b"evil".to_vec();
    cases.push((
        "altered payload",
        with(&altered, &proof1),
        "proof_packet_mismatch",
    ));
    // Another tx's proof (p2's) for p1.
    cases.push((
        "another tx's proof",
        with(&p1.packet, p2.proof.as_ref().unwrap()),
        "proof_packet_mismatch",
    ));
    // p2's body under p1's id.
    let mut swapped = (*proof1).clone();
    swapped.body = p2.proof.as_ref().unwrap().body.clone();
    cases.push((
        "body not matching the id",
        with(&p1.packet, &swapped),
        "proof_tx_mismatch",
    ));
    // p1's proof for a sequence the chain did not give it.
    let mut reseq = p1.packet.clone();
    reseq.sequence = 7;
    cases.push((
        "another sequence",
        with(&reseq, &proof1),
        "proof_not_committed",
    ));
    // The failed send, dressed as packet 3 with a real state path of another entry.
    let failed_packet = Packet {
        sequence: 3,
        payload: b"late".to_vec(),
        timeout: 1,
        ..p1.packet.clone()
    };
    let failed_proof = PacketProof {
        tx: failed_id.clone(),
        body: rmp_serde::to_vec(&failed).unwrap(),
        evidence: failed_ev,
        state: proof1.state.clone(),
    };
    cases.push((
        "a failed send",
        with(&failed_packet, &failed_proof),
        "proof_not_committed",
    ));
    // A transfer is no send.
    let transfer_proof = PacketProof {
        tx: transfer_id,
        body: rmp_serde::to_vec(&transfer).unwrap(),
        evidence: transfer_ev,
        state: proof1.state.clone(),
    };
    cases.push((
        "another call",
        with(&p1.packet, &transfer_proof),
        "proof_not_send",
    ));
    // No proof at all on a proof-checked network, even with an attestation.
    let attested = RelayedPacket::attest(
        p1.packet.clone(),
        &[Keypair::dev(&format!("{}/node-0", net.cfg.name))],
    );
    cases.push(("attested only", attested, "proof_missing"));

    let n_cases = cases.len() as u64;
    for (what, forged, want) in cases {
        let (r, fresh) = hub.process(&[forged]).unwrap();
        assert_eq!(code(&r[0].outcome), want, "{what}: {:?}", r[0].outcome);
        assert!(fresh.is_empty(), "{what} forwarded");
    }
    assert!(forwarded.try_recv().is_err());
    let counts = hub.proof_counts(net.id).unwrap();
    assert_eq!(counts.refused.load(Ordering::Relaxed), n_cases);
    assert_eq!(counts.proven.load(Ordering::Relaxed), 0);

    // The genuine packets: no forgery left a receipt, so both are delivered now, once.
    let checks_before = verifier.light_checks();
    let (r, fresh) = hub.process(&packets).unwrap();
    assert!(r.iter().all(|x| x.outcome == Outcome::Delivered), "{r:?}");
    assert_eq!(fresh.len(), 2);
    assert_eq!(counts.proven.load(Ordering::Relaxed), 2);
    // Blocks already checked for the forgeries above come from the cache.
    let blocks: std::collections::BTreeSet<Hash32> = packets
        .iter()
        .map(|p| p.proof.as_ref().unwrap().evidence.block().hash)
        .collect();
    assert!(verifier.light_checks() - checks_before <= blocks.len() as u64);
    let before = verifier.light_checks();
    let (r, fresh) = hub.process(&packets).unwrap();
    assert!(r.iter().all(|x| x.outcome == Outcome::Duplicate), "{r:?}");
    assert!(fresh.is_empty());
    assert_eq!(
        verifier.light_checks(),
        before,
        "a known block is checked once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pos_packets_with_proofs_are_received_and_forgeries_refused() {
    let net = Net::start("pos-src", 301, false).await;
    let packets = proven_packets(&net, &Keypair::dev("user")).await;
    // A certificate signed by a non-validator is refused by the light client (fresh
    // verifier: nothing cached).
    let mut forged = (**packets[0].proof.as_ref().unwrap()).clone();
    let Evidence::CommitCertificate { votes, block, .. } = &mut forged.evidence else {
        panic!("PoS evidence is a commit certificate")
    };
    let mallory = Keypair::dev("mallory");
    *votes = vec![CommitVote {
        validator: mallory.id(),
        signature: mallory
            .sign(
                isthmus_core::Domain::ConsensusVote,
                net.id,
                block.hash.as_bytes(),
            )
            .0
            .to_vec(),
    }];
    let e = net
        .verifier()
        .verify(&packets[0].packet, &forged)
        .unwrap_err();
    assert_eq!(e.code(), "proof_evidence", "{e}");
    forgeries_refused_then_genuine_received(&net, packets).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pow_packets_with_proofs_are_received_and_forgeries_refused() {
    let net = Net::start("pow-src", 303, true).await;
    let packets = proven_packets(&net, &Keypair::dev("user")).await;
    // Below N confirmations: the including header and fewer than N on top.
    let mut shallow = (**packets[0].proof.as_ref().unwrap()).clone();
    let Evidence::PowConfirmations { headers, .. } = &mut shallow.evidence else {
        panic!("PoW evidence is a header chain")
    };
    assert!(headers.len() > 2);
    headers.truncate(2);
    let e = net
        .verifier()
        .verify(&packets[0].packet, &shallow)
        .unwrap_err();
    assert_eq!(e.code(), "proof_evidence", "{e}");
    assert!(e.to_string().contains("confirmation"), "{e}");
    forgeries_refused_then_genuine_received(&net, packets).await;
}
