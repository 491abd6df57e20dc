//! The node's authenticated RPC as a client meets it: who is admitted, what a non-admin may
//! not do (and that refusing it changes nothing), a node of another chain named clearly,
//! and a request that does not decode answered with a reason.

use crate::net::{pos, pow, TestNet};
use isthmus_chain::config::NetworkConfig;
use isthmus_chain::node::NodeError;
use isthmus_chain::rpc::{
    NodeAnswer, NodeApi, RefusalKind, RemoteNode, RemoteNodeConfig, RpcAccess, RpcServer,
};
use isthmus_core::Keypair;
use isthmus_transport::rpc::RpcClient;
use isthmus_transport::{Endpoint, TransportConfig, TransportKind};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

async fn serve(net: &TestNet, access: RpcAccess) -> RpcServer {
    RpcServer::start(
        net.node.clone(),
        net.cfg.node_key(0).expect("node key"),
        "127.0.0.1:0".parse().expect("addr"),
        access,
    )
    .await
    .expect("rpc serves")
}

async fn client(
    cfg: &Arc<NetworkConfig>,
    server: &RpcServer,
    id: isthmus_core::NodeId,
    key: &str,
) -> Result<RemoteNode, NodeError> {
    let mut c = RemoteNodeConfig::new(cfg.clone(), server.local_addr(), id);
    c.call_timeout = Duration::from_secs(5);
    RemoteNode::connect(c, Keypair::dev(key)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_need_an_admin_identity_and_a_refusal_changes_nothing() {
    let net = TestNet::start(pow("alpha", 211, &["alice"])).await;
    let admin = Keypair::dev("operator");
    let server = serve(
        &net,
        RpcAccess {
            readers: None,
            admins: BTreeSet::from([admin.id()]),
        },
    )
    .await;
    let reader = client(&net.cfg, &server, net.node.id(), "someone")
        .await
        .expect("a public network admits any authenticated reader");
    let h0 = reader.status().await.expect("status").height;

    let refused = reader.mine_blocks(3).await.expect_err("not an admin");
    assert!(
        matches!(&refused, NodeError::Setup(m) if m.contains("may not call `mine_blocks`")),
        "{refused}"
    );
    assert!(!refused.retryable(), "a refusal is not worth retrying");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = reader.status().await.expect("status");
    assert_eq!(after.height, h0, "a refused call mined nothing");
    assert!(!after.mining);

    let op = client(&net.cfg, &server, net.node.id(), "operator")
        .await
        .expect("admin connects");
    op.mine_blocks(2).await.expect("the admin may mine");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while reader.status().await.expect("status").height < h0 + 2 {
        assert!(std::time::Instant::now() < deadline, "blocks never came");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Reads go through the same connection as any other call, and agree with the node.
    let head = reader.status().await.expect("status").height;
    let local = net.node.block_at(head).await.expect("local").expect("head");
    let remote = reader.block_at(head).await.expect("remote").expect("head");
    assert_eq!(local, remote);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_node_admits_only_its_readers() {
    let net = TestNet::start(pos("beta", 212, &["alice"])).await;
    let hub = Keypair::dev("hub-rpc-client");
    let server = serve(
        &net,
        RpcAccess {
            readers: Some(BTreeSet::from([hub.id()])),
            admins: BTreeSet::new(),
        },
    )
    .await;
    let ok = client(&net.cfg, &server, net.node.id(), "hub-rpc-client")
        .await
        .expect("a listed reader connects");
    assert_eq!(
        ok.account(Keypair::dev("alice").id())
            .await
            .expect("account")
            .balance,
        crate::net::FUNDS
    );
    let stranger = client(&net.cfg, &server, net.node.id(), "stranger")
        .await
        .expect_err("an unlisted key is refused at the handshake");
    assert!(stranger.retryable(), "{stranger}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_chain_or_identity_is_named_not_trusted() {
    let net = TestNet::start(pos("beta", 213, &["alice"])).await;
    let server = serve(&net, RpcAccess::default()).await;
    // Same network id, another genesis (other funded accounts).
    let other = Arc::new(pos("beta", 213, &["mallory"]));
    let e = client(&other, &server, net.node.id(), "hub")
        .await
        .expect_err("another genesis");
    assert!(
        matches!(&e, NodeError::Setup(m) if m.contains("runs another chain")),
        "{e}"
    );
    // The right chain, but the handshake proves another identity than the one expected.
    let e = client(&net.cfg, &server, Keypair::dev("impostor").id(), "hub")
        .await
        .expect_err("unexpected identity");
    assert!(matches!(e, NodeError::Transport(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_does_not_decode_is_answered_with_a_reason() {
    let net = TestNet::start(pos("beta", 214, &["alice"])).await;
    let server = serve(&net, RpcAccess::default()).await;
    let mut tc = TransportConfig::new(TransportKind::Tcp, "127.0.0.1:0".parse().expect("addr"));
    tc.network = net.cfg.network();
    let endpoint = Endpoint::bind(tc, Keypair::dev("fuzzer"))
        .await
        .expect("endpoint");
    let raw = RpcClient::new(
        endpoint,
        server.local_addr(),
        net.node.id(),
        Duration::from_secs(5),
    );
    #[derive(serde::Serialize)]
    struct Bogus {
        op: &'static str,
    }
    let answer: NodeAnswer = raw
        .call(&Bogus { op: "format_disk" })
        .await
        .expect("answered");
    match answer {
        NodeAnswer::Refused { kind, reason } => {
            assert_eq!(kind, RefusalKind::BadRequest);
            assert!(reason.contains("does not decode"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The connection stays usable for well-formed calls.
    let status: NodeAnswer = raw
        .call(&isthmus_chain::rpc::NodeCall::Status)
        .await
        .expect("answered");
    assert!(matches!(status, NodeAnswer::Status(_)), "{status:?}");
}
