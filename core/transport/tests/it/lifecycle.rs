use crate::common::*;
use bytes::Bytes;
use isthmus_transport::{TransportError, TransportKind};

#[tokio::test]
async fn graceful_close_delivers_queued_messages_first() {
    for kind in [TransportKind::Tcp, TransportKind::Quic] {
        let (_s, _c, mut a, c) = connected_pair(cfg(kind), cfg(kind), None).await;
        for i in 0..50u8 {
            c.send(Bytes::from(vec![i; 1000])).await.unwrap();
        }
        c.close("finished").await;
        for i in 0..50u8 {
            assert_eq!(recv_bytes(&mut a).await[0], i, "{kind}");
        }
        assert!(within("close", a.recv()).await.is_none(), "{kind}");
        assert!(a.close_reason().unwrap().contains("finished"), "{kind}");
        let err = c.send(Bytes::from_static(b"late")).await.unwrap_err();
        assert!(matches!(err, TransportError::Closed(_)), "{kind}: {err}");
    }
}

#[tokio::test]
async fn shutdown_closes_connections_and_accept() {
    for kind in TransportKind::ALL {
        let (server, _client, _a, mut c) = connected_pair(cfg(kind), cfg(kind), None).await;
        within("shutdown", server.shutdown()).await;
        assert!(within("accept after shutdown", server.accept())
            .await
            .is_none());
        // the peer learns of it (UDP: from the close datagram)
        let next = within("peer sees shutdown", c.recv()).await;
        assert!(!matches!(next, Some(Ok(_))), "{kind}: {next:?}");
        assert!(server.connect(c.remote_addr(), None).await.is_err());
    }
}
