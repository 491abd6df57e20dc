//! Packet-module calls on real native networks show up in the adapter's event stream: a
//! send as `PacketCommitted` on the source, a delivery as `PacketReceived` and a recorded
//! non-delivery as `PacketTimedOut` on the destination; a refused delivery shows nothing.

use crate::net::{hub_keys, now_ms, pos, TestNet};
use isthmus_adapter_api::{Adapter, Checkpoint, EventKind, SignedTx, TxStatus};
use isthmus_adapter_native::NativeAdapter;
use isthmus_chain::packets::{PacketCall, RecvArgs, SendArgs};
use isthmus_chain::tx::Transaction;
use isthmus_core::Keypair;
use isthmus_lock_contracts::packet::Packet;
use std::time::{Duration, Instant};

/// Submit and wait until the transaction is final or failed; returns its status.
async fn settle(net: &TestNet, a: &NativeAdapter, key: &Keypair, call: PacketCall) -> TxStatus {
    let nonce = net.node.account(key.id()).await.unwrap().nonce;
    let tx = Transaction::sign(key, net.cfg.network(), nonce, call.into_tx_kind());
    let id = a
        .submit(SignedTx(rmp_serde::to_vec(&tx).unwrap()))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = a.tx_status(&id).await.unwrap();
        if matches!(s, TxStatus::Final { .. } | TxStatus::Failed { .. }) {
            return s;
        }
        assert!(Instant::now() < deadline, "tx {id} not settled: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn submit_final(net: &TestNet, a: &NativeAdapter, key: &Keypair, call: PacketCall) {
    let s = settle(net, a, key, call).await;
    assert!(s.is_final(), "{s:?}");
}

async fn events(a: &NativeAdapter, after: Checkpoint) -> (Vec<EventKind>, Checkpoint) {
    let page = a.events_since(after, 10_000).await.unwrap();
    (page.events.into_iter().map(|e| e.kind).collect(), page.next)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_calls_become_packet_events() {
    let src = TestNet::start(pos("src", 301, &[])).await;
    let dst = TestNet::start(pos("dst", 302, &[])).await;
    src.until_height(1).await.unwrap();
    dst.until_height(1).await.unwrap();
    let (sa, da) = (src.adapter(&[], 3), dst.adapter(&[], 3));
    let alice = Keypair::dev("alice");
    let relayer = Keypair::dev("relayer");
    let hub = hub_keys();
    let send = |payload: &[u8], timeout| {
        PacketCall::Send(SendArgs {
            destination: dst.cfg.network(),
            receiver: "bob".into(),
            payload: payload.to_vec(),
            timeout,
        })
    };
    let committed = |evs: &[EventKind]| -> Vec<Packet> {
        evs.iter()
            .filter_map(|e| match e {
                EventKind::PacketCommitted { packet } => Some(packet.clone()),
                _ => None,
            })
            .collect()
    };

    // Delivered.
    submit_final(&src, &sa, &alice, send(b"one", now_ms() / 1000 + 600)).await;
    let (evs, at) = events(&sa, Checkpoint::START).await;
    let [p1] = committed(&evs).try_into().expect("one committed packet");
    assert_eq!(p1.payload, b"one");
    let recv = |p: &Packet| {
        PacketCall::Recv(RecvArgs {
            packet: p.clone(),
            attestations: vec![],
        })
    };
    // Without the hub's signatures the delivery fails on chain and yields no event.
    let failed = settle(&dst, &da, &relayer, recv(&p1)).await;
    assert!(matches!(failed, TxStatus::Failed { .. }), "{failed:?}");
    let (evs, dat) = events(&da, Checkpoint::START).await;
    assert!(
        !evs.iter()
            .any(|e| matches!(e, EventKind::PacketReceived { .. })),
        "{evs:?}"
    );
    submit_final(
        &dst,
        &da,
        &relayer,
        recv(&p1).attest(dst.cfg.network(), &hub[..2]),
    )
    .await;
    let (evs, dat) = events(&da, dat).await;
    let acks: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            EventKind::PacketReceived { ack } => Some(ack.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(acks.len(), 1, "{evs:?}");
    assert_eq!(
        (acks[0].sequence, acks[0].commitment),
        (p1.sequence, p1.commitment())
    );

    // Timed out: sent with a timeout that passes before anyone delivers it.
    let timeout = now_ms() / 1000 + 2;
    submit_final(&src, &sa, &alice, send(b"two", timeout)).await;
    let (evs, _) = events(&sa, at).await;
    let [p2] = committed(&evs)
        .try_into()
        .expect("one more committed packet");
    dst.until_time_ms(timeout * 1000).await.unwrap();
    let late = PacketCall::RecvTimeout(RecvArgs {
        packet: p2.clone(),
        attestations: vec![],
    })
    .attest(dst.cfg.network(), &hub[..2]);
    submit_final(&dst, &da, &relayer, late).await;
    let (evs, _) = events(&da, dat).await;
    let proofs: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            EventKind::PacketTimedOut { proof } => Some(proof.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(proofs.len(), 1, "{evs:?}");
    assert_eq!(proofs[0].sequence, p2.sequence);
    assert!(proofs[0].proven_at >= timeout);
}
