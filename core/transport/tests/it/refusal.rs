use crate::common::*;
use isthmus_core::Keypair;
use isthmus_transport::{TransportError, TransportKind};
use std::time::Duration;

/// The server's allowlist does not hold the client: refused in the handshake, counted,
/// never accepted, and the client's connect fails.
async fn allowlist_refuses_unknown_client(kind: TransportKind) {
    let (sk, ck, friend) = (
        Keypair::dev("server"),
        Keypair::dev("stranger"),
        Keypair::dev("friend"),
    );
    let server = endpoint(
        isthmus_transport::TransportConfig {
            allowlist: allow(&[friend.id()]),
            ..cfg(kind)
        },
        &sk,
    )
    .await;
    let client = endpoint(cfg(kind), &ck).await;
    let err = within(
        "refused connect",
        client.connect(server.local_addr(), Some(sk.id())),
    )
    .await
    .unwrap_err();
    assert!(
        !err.is_retryable() || matches!(err, TransportError::Timeout(_)),
        "{err}"
    );
    eventually("refusal counted", || server.stats().handshakes_refused == 1).await;
    assert_eq!(server.stats().handshakes_ok, 0);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), server.accept())
            .await
            .is_err()
    );
    // the friend gets in
    let friend_ep = endpoint(cfg(kind), &friend).await;
    let (acc, conn) = within("friend connects", async {
        tokio::join!(
            server.accept(),
            friend_ep.connect(server.local_addr(), None)
        )
    })
    .await;
    assert_eq!(acc.unwrap().remote_id(), friend.id());
    assert_eq!(conn.unwrap().remote_id(), sk.id());
}

#[tokio::test]
async fn tcp_allowlist_refuses_unknown_client() {
    allowlist_refuses_unknown_client(TransportKind::Tcp).await;
}

#[tokio::test]
async fn quic_allowlist_refuses_unknown_client() {
    allowlist_refuses_unknown_client(TransportKind::Quic).await;
}

#[tokio::test]
async fn udp_allowlist_refuses_unknown_client() {
    allowlist_refuses_unknown_client(TransportKind::Udp).await;
}

/// The client expects another identity, or its own allowlist lacks the server.
async fn client_refuses_wrong_server(kind: TransportKind) {
    let (sk, ck, other) = (
        Keypair::dev("server"),
        Keypair::dev("client"),
        Keypair::dev("other"),
    );
    let server = endpoint(cfg(kind), &sk).await;
    let client = endpoint(cfg(kind), &ck).await;
    let err = within(
        "wrong expected id",
        client.connect(server.local_addr(), Some(other.id())),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, TransportError::UnexpectedPeer { expected, got } if expected == other.id() && got == sk.id()),
        "{err}"
    );
    let picky = endpoint(
        isthmus_transport::TransportConfig {
            allowlist: allow(&[other.id()]),
            ..cfg(kind)
        },
        &ck,
    )
    .await;
    let err = within(
        "server not allowed",
        picky.connect(server.local_addr(), None),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, TransportError::PeerNotAllowed(id) if id == sk.id()),
        "{err}"
    );
    assert_eq!(client.stats().handshakes_refused, 1);
    assert_eq!(picky.stats().handshakes_refused, 1);
}

#[tokio::test]
async fn tcp_client_refuses_wrong_server() {
    client_refuses_wrong_server(TransportKind::Tcp).await;
}

#[tokio::test]
async fn quic_client_refuses_wrong_server() {
    client_refuses_wrong_server(TransportKind::Quic).await;
}

#[tokio::test]
async fn udp_client_refuses_wrong_server() {
    client_refuses_wrong_server(TransportKind::Udp).await;
}

#[tokio::test]
async fn other_network_cannot_connect() {
    for kind in TransportKind::ALL {
        let server = endpoint(cfg(kind), &Keypair::dev("s")).await;
        let mut other = cfg(kind);
        other.network = isthmus_core::NetworkId(7);
        other.handshake_timeout = Duration::from_secs(2);
        let client = endpoint(other, &Keypair::dev("c")).await;
        let res = within("other network", client.connect(server.local_addr(), None)).await;
        assert!(res.is_err(), "{kind}: connected across networks");
        assert_eq!(server.stats().handshakes_ok, 0, "{kind}");
    }
}

#[tokio::test]
async fn connection_limit_is_enforced() {
    for kind in TransportKind::ALL {
        let sk = Keypair::dev("s");
        let server = endpoint(
            isthmus_transport::TransportConfig {
                max_connections: 1,
                ..cfg(kind)
            },
            &sk,
        )
        .await;
        let c1 = endpoint(cfg(kind), &Keypair::dev("c1")).await;
        let c2 = endpoint(cfg(kind), &Keypair::dev("c2")).await;
        let (a1, k1) = within("first", async {
            tokio::join!(server.accept(), c1.connect(server.local_addr(), None))
        })
        .await;
        let (_a1, _k1) = (a1.unwrap(), k1.unwrap());
        let second = within("second", c2.connect(server.local_addr(), None)).await;
        assert!(second.is_err(), "{kind}: second connection admitted");
        eventually("limit counted", || server.stats().connections_refused >= 1).await;
    }
}
