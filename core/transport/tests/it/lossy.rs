use crate::common::*;
use crate::proxy::UdpProxy;
use bytes::Bytes;
use isthmus_core::Keypair;
use isthmus_transport::reliable::{ReliableChannel, ReliableConfig};
use isthmus_transport::TransportKind;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn reliable_udp_with_20_percent_loss_delivers_each_message_exactly_once() {
    const N: u32 = 300;
    let sk = Keypair::dev("server");
    let server = endpoint(cfg(TransportKind::Udp), &sk).await;
    let proxy = UdpProxy::start(server.local_addr()).await;
    let dropped = Arc::new(AtomicU64::new(0));
    let d = dropped.clone();
    let mut rng = StdRng::seed_from_u64(20);
    proxy.set_hook(Box::new(move |_, datagram| {
        if rng.gen_bool(0.2) {
            d.fetch_add(1, Ordering::Relaxed);
            vec![]
        } else {
            vec![datagram.to_vec()]
        }
    }));
    let client = endpoint(cfg(TransportKind::Udp), &Keypair::dev("client")).await;
    let (a, c) = connect_via(&server, &client, proxy.addr, Some(sk.id())).await;
    let rel_cfg = ReliableConfig {
        ack_timeout: Duration::from_millis(40),
        max_retries: 15,
        max_in_flight: 32,
        seed: Some(5),
        ..Default::default()
    };
    let mut rx = ReliableChannel::new(a, rel_cfg.clone());
    let tx = ReliableChannel::new(c, rel_cfg);
    let sender = async {
        for i in 0..N {
            tx.send(Bytes::from(i.to_be_bytes().to_vec()))
                .await
                .unwrap();
        }
        tx.flush().await.unwrap();
    };
    let receiver = async {
        let mut got = Vec::new();
        while got.len() < N as usize {
            let m = rx.recv().await.unwrap();
            got.push(u32::from_be_bytes(m[..].try_into().unwrap()));
        }
        got
    };
    let ((), got) = within("reliable transfer", async {
        tokio::join!(sender, receiver)
    })
    .await;
    let distinct: BTreeSet<u32> = got.iter().copied().collect();
    assert_eq!(got.len(), distinct.len(), "a message was delivered twice");
    assert_eq!(distinct, (0..N).collect::<BTreeSet<_>>());
    // nothing more arrives: duplicates on the wire were absorbed
    assert!(tokio::time::timeout(Duration::from_millis(300), rx.recv())
        .await
        .is_err());
    assert!(
        dropped.load(Ordering::Relaxed) > 50,
        "the shim must actually drop"
    );
    assert!(tx.stats().retransmitted.load(Ordering::Relaxed) > 0);
    assert_eq!(rx.stats().delivered.load(Ordering::Relaxed), N as u64);
}
