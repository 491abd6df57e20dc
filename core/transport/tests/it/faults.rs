use crate::common::*;
use crate::proxy::{Dir, TcpProxy, UdpProxy};
use bytes::Bytes;
use isthmus_core::{Keypair, WireError, WireLimits};
use isthmus_transport::{TransportConfig, TransportError, TransportKind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test]
async fn tcp_tampered_ciphertext_is_rejected() {
    let sk = Keypair::dev("server");
    let server = endpoint(cfg(TransportKind::Tcp), &sk).await;
    let proxy = TcpProxy::start(server.local_addr()).await;
    let client = endpoint(cfg(TransportKind::Tcp), &Keypair::dev("client")).await;
    let (mut a, c) = connect_via(&server, &client, proxy.addr, Some(sk.id())).await;
    c.send(Bytes::from_static(b"intact")).await.unwrap();
    assert_eq!(recv_bytes(&mut a).await, Bytes::from_static(b"intact"));
    proxy.flip_next.store(true, Ordering::Relaxed);
    c.send(Bytes::from_static(b"will be tampered"))
        .await
        .unwrap();
    let got = within("tampered recv", a.recv()).await.unwrap();
    assert!(matches!(got, Err(TransportError::Decrypt(_))), "{got:?}");
    assert!(within("closed after", a.recv()).await.is_none());
    assert_eq!(server.stats().decrypt_failures, 1);
}

#[tokio::test]
async fn udp_tampered_and_replayed_datagrams_are_dropped_and_counted() {
    let sk = Keypair::dev("server");
    let server = endpoint(cfg(TransportKind::Udp), &sk).await;
    let proxy = UdpProxy::start(server.local_addr()).await;
    let client = endpoint(cfg(TransportKind::Udp), &Keypair::dev("client")).await;
    let (mut a, c) = connect_via(&server, &client, proxy.addr, Some(sk.id())).await;

    // flip one ciphertext byte of the next data datagram to the server
    let armed = Arc::new(Mutex::new(true));
    let arm = armed.clone();
    proxy.set_hook(Box::new(move |dir, d| {
        let mut d = d.to_vec();
        if dir == Dir::ToServer && d[0] == 4 && std::mem::replace(&mut *arm.lock().unwrap(), false)
        {
            let last = d.len() - 1;
            d[last] ^= 0x80;
        }
        vec![d]
    }));
    c.send(Bytes::from_static(b"tampered")).await.unwrap();
    eventually("decrypt failure counted", || {
        server.stats().decrypt_failures == 1
    })
    .await;
    // the session survives a forged datagram
    c.send(Bytes::from_static(b"after")).await.unwrap();
    assert_eq!(recv_bytes(&mut a).await, Bytes::from_static(b"after"));

    // replay: every data datagram to the server is sent twice
    proxy.set_hook(Box::new(|dir, d| {
        if dir == Dir::ToServer && d[0] == 4 {
            vec![d.to_vec(), d.to_vec()]
        } else {
            vec![d.to_vec()]
        }
    }));
    c.send(Bytes::from_static(b"once")).await.unwrap();
    assert_eq!(recv_bytes(&mut a).await, Bytes::from_static(b"once"));
    eventually("replay counted", || server.stats().udp_replays_dropped >= 1).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(200), a.recv())
            .await
            .is_err(),
        "replay delivered"
    );

    // too old: hold one datagram back, let the window move past it, then release it
    let held: Arc<Mutex<Option<Vec<u8>>>> = Arc::new(Mutex::new(None));
    let h = held.clone();
    let mut count = 0u32;
    proxy.set_hook(Box::new(move |dir, d| {
        if dir != Dir::ToServer || d[0] != 4 {
            return vec![d.to_vec()];
        }
        count += 1;
        let mut slot = h.lock().unwrap();
        if count == 1 {
            *slot = Some(d.to_vec());
            return vec![];
        }
        if count == 1100 {
            return vec![d.to_vec(), slot.take().unwrap()];
        }
        vec![d.to_vec()]
    }));
    for i in 0..1100u32 {
        c.send(Bytes::from(i.to_be_bytes().to_vec())).await.unwrap();
        // read as we go so the receive queue never overflows
        let _ = a.try_recv();
    }
    eventually("too-old datagram counted", || {
        server.stats().udp_too_old_dropped == 1
    })
    .await;
}

#[tokio::test]
async fn oversized_frame_is_rejected_from_its_length_prefix() {
    for kind in [TransportKind::Tcp, TransportKind::Quic] {
        // the receiver accepts 64 KiB; the sender is configured to send 1 MiB
        let small = TransportConfig {
            limits: WireLimits {
                max_frame: 64 * 1024,
                ..Default::default()
            },
            ..cfg(kind)
        };
        let (server, _client, mut a, c) = connected_pair(small, cfg(kind), None).await;
        c.send(Bytes::from(vec![7u8; 1 << 20])).await.unwrap();
        let got = within("oversized recv", a.recv()).await.unwrap();
        assert!(
            matches!(got, Err(TransportError::Wire(WireError::FrameTooLarge { declared, max })) if declared == (1 << 20) + 1 && max == 64 * 1024 + 1),
            "{kind}: {got:?}"
        );
        assert_eq!(server.stats().frames_rejected, 1, "{kind}");
        assert!(within("closed", a.recv()).await.is_none());
        // and locally, a message above our own limit never leaves
        let err = a
            .send(Bytes::from(vec![0u8; 64 * 1024 + 1]))
            .await
            .unwrap_err();
        assert!(
            matches!(err, TransportError::MessageTooLarge { .. }),
            "{kind}: {err}"
        );
    }
}

#[tokio::test]
async fn silent_peer_hits_the_idle_timeout() {
    let quick = TransportConfig {
        keepalive: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(400),
        ..cfg(TransportKind::Tcp)
    };
    let sk = Keypair::dev("server");
    let server = endpoint(quick.clone(), &sk).await;
    let proxy = TcpProxy::start(server.local_addr()).await;
    let client = endpoint(quick.clone(), &Keypair::dev("client")).await;
    let (mut a, _c) = connect_via(&server, &client, proxy.addr, None).await;
    // keepalives hold an idle connection open well past the idle timeout
    assert!(tokio::time::timeout(Duration::from_millis(1200), a.recv())
        .await
        .is_err());
    assert!(!a.is_closed());
    proxy.blackhole.store(true, Ordering::Relaxed);
    let got = within("idle timeout", a.recv()).await.unwrap();
    assert!(matches!(got, Err(TransportError::Timeout(_))), "{got:?}");
}

#[tokio::test]
async fn udp_silent_peer_hits_the_idle_timeout() {
    let quick = TransportConfig {
        keepalive: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(400),
        ..cfg(TransportKind::Udp)
    };
    let sk = Keypair::dev("server");
    let server = endpoint(quick.clone(), &sk).await;
    let proxy = UdpProxy::start(server.local_addr()).await;
    let client = endpoint(quick, &Keypair::dev("client")).await;
    let (mut a, _c) = connect_via(&server, &client, proxy.addr, None).await;
    assert!(tokio::time::timeout(Duration::from_millis(1200), a.recv())
        .await
        .is_err());
    proxy.set_hook(Box::new(|_, _| vec![]));
    let got = within("idle timeout", a.recv()).await.unwrap();
    assert!(matches!(got, Err(TransportError::Timeout(_))), "{got:?}");
}

#[tokio::test]
async fn full_queues_push_back_on_the_sender() {
    for kind in [TransportKind::Tcp, TransportKind::Quic] {
        let tight = TransportConfig {
            send_queue: 4,
            recv_queue: 4,
            ..cfg(kind)
        };
        let (_s, _c, _a, c) = connected_pair(tight.clone(), tight, None).await;
        // the server never reads: some send must stall before 4 GiB have been queued
        let msg = Bytes::from(vec![1u8; 1 << 20]);
        let mut sent = 0;
        let stalled = loop {
            match tokio::time::timeout(Duration::from_millis(500), c.send(msg.clone())).await {
                Err(_) => break true,
                Ok(r) => r.unwrap(),
            }
            sent += 1;
            if sent == 4096 {
                break false;
            }
        };
        assert!(stalled, "{kind}: {sent} MiB queued without backpressure");
    }
}
