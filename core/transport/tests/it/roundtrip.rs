use crate::common::*;
use bytes::Bytes;
use isthmus_core::{Domain, Keypair, NetworkId, SignedMessage};
use isthmus_transport::{TransportError, TransportKind};

async fn round_trip(kind: TransportKind, big: usize) {
    let (server, client, mut a, mut c) = connected_pair(cfg(kind), cfg(kind), None).await;
    // both directions, several messages, order kept on the reliable transports
    for i in 0..20u8 {
        c.send(Bytes::from(vec![i; 100])).await.unwrap();
    }
    for i in 0..20u8 {
        assert_eq!(recv_bytes(&mut a).await, Bytes::from(vec![i; 100]));
    }
    a.send(Bytes::from_static(b"pong")).await.unwrap();
    assert_eq!(recv_bytes(&mut c).await, Bytes::from_static(b"pong"));
    // typed messages through the wire codec
    let m = SignedMessage::new(
        &Keypair::dev("app"),
        Domain::AppMessage,
        NetworkId(42),
        b"hi".to_vec(),
    );
    c.send_msg(&m).await.unwrap();
    let back: SignedMessage = within("recv_msg", a.recv_msg()).await.unwrap().unwrap();
    assert!(back.verify(Domain::AppMessage, NetworkId(42)).is_ok());
    assert_eq!(back, m);
    // the largest message of this transport
    let payload: Bytes = (0..big)
        .map(|i| (i * 31 % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    c.send(payload.clone()).await.unwrap();
    assert_eq!(recv_bytes(&mut a).await, payload);
    assert_eq!(server.stats().handshakes_ok, 1);
    assert_eq!(client.stats().handshakes_ok, 1);
    c.close("done").await;
    assert!(within("peer sees close", a.recv()).await.is_none());
    assert!(
        a.close_reason().unwrap().contains("done"),
        "{:?}",
        a.close_reason()
    );
    server.shutdown().await;
    client.shutdown().await;
}

#[tokio::test]
async fn tcp_round_trip_including_a_4_mib_message() {
    round_trip(TransportKind::Tcp, 4 * 1024 * 1024).await;
}

#[tokio::test]
async fn quic_round_trip_including_a_4_mib_message() {
    round_trip(TransportKind::Quic, 4 * 1024 * 1024).await;
}

#[tokio::test]
async fn udp_round_trip_up_to_one_datagram() {
    let max = isthmus_transport::TransportConfig::default().max_datagram - 13 - 16 - 1;
    round_trip(TransportKind::Udp, max).await;
}

#[tokio::test]
async fn udp_message_larger_than_a_datagram_is_refused_locally() {
    let (_s, _c, _a, c) =
        connected_pair(cfg(TransportKind::Udp), cfg(TransportKind::Udp), None).await;
    let too_big = Bytes::from(vec![0u8; c.max_message() + 1]);
    let err = c.send(too_big).await.unwrap_err();
    assert!(matches!(err, TransportError::MessageTooLarge { size, max } if size == max + 1));
    assert!(!err.is_retryable());
}
