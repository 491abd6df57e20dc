use bytes::Bytes;
use isthmus_transport::{
    Connection, Endpoint, Keypair, NetworkId, NodeId, TransportConfig, TransportKind,
};
use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn cfg(kind: TransportKind) -> TransportConfig {
    TransportConfig {
        network: NetworkId(42),
        ack_timeout: Duration::from_millis(50),
        max_retries: 10,
        handshake_timeout: Duration::from_secs(10),
        ..TransportConfig::new(kind, "127.0.0.1:0".parse().unwrap())
    }
}

pub fn allow(ids: &[NodeId]) -> Option<BTreeSet<NodeId>> {
    Some(ids.iter().copied().collect())
}

pub async fn endpoint(cfg: TransportConfig, key: &Keypair) -> Endpoint {
    Endpoint::bind(cfg, key.clone()).await.unwrap()
}

/// Run `fut` with the test deadline.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Poll `cond` until it holds or the deadline passes.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(tokio::time::Instant::now() < end, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A server and a client endpoint of `kind`, connected; returns (server, client, server
/// side, client side).
pub async fn connected_pair(
    server_cfg: TransportConfig,
    client_cfg: TransportConfig,
    via: Option<SocketAddr>,
) -> (Endpoint, Endpoint, Connection, Connection) {
    let (sk, ck) = (Keypair::dev("server"), Keypair::dev("client"));
    let server = endpoint(server_cfg, &sk).await;
    let client = endpoint(client_cfg, &ck).await;
    let target = via.unwrap_or(server.local_addr());
    let (accepted, connected) = within("connect", async {
        tokio::join!(server.accept(), client.connect(target, Some(sk.id())))
    })
    .await;
    let (a, c) = (accepted.unwrap(), connected.unwrap());
    assert_eq!(a.remote_id(), ck.id());
    assert_eq!(c.remote_id(), sk.id());
    (server, client, a, c)
}

pub async fn recv_bytes(conn: &mut Connection) -> Bytes {
    within("recv", conn.recv()).await.unwrap().unwrap()
}

/// Accept on `server` while `client` connects to `addr` (the server or a proxy before it).
pub async fn connect_via(
    server: &Endpoint,
    client: &Endpoint,
    addr: SocketAddr,
    expected: Option<NodeId>,
) -> (Connection, Connection) {
    let (a, c) = within("connect", async {
        tokio::join!(server.accept(), client.connect(addr, expected))
    })
    .await;
    (a.unwrap(), c.unwrap())
}
