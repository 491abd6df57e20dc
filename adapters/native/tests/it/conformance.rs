//! The adapter conformance suite against the native adapter on a real PoS and a real PoW
//! network.

use crate::net::{hub_keys, pos, pow, TestNet};
use async_trait::async_trait;
use futures::future::BoxFuture;
use isthmus_adapter_api::{Adapter, AdapterError, HubAttestation, SignedTx};
use isthmus_adapter_native::ASSET;
use isthmus_adapter_testkit::conformance::{self, Fixture};
use isthmus_chain::config::NetworkConfig;
use isthmus_chain::rpc::{NodeApi, RemoteNode, RemoteNodeConfig, RpcAccess, RpcServer};
use isthmus_chain::tx::Transaction;
use isthmus_core::{Keypair, NodeId};
use isthmus_lock_contracts::{Address, Amount, AssetId, Decision, HubRecord, LockId, Timestamp};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

struct NativeFixture {
    /// The node's RPC server, when the adapter talks to the node over it (stops on drop).
    _rpc: Option<RpcServer>,
    net: TestNet,
    adapter: Arc<dyn Adapter>,
    accounts: [Keypair; 2],
    nonces: Mutex<HashMap<NodeId, u64>>,
}

impl NativeFixture {
    /// Over the in-process node, or (`over_rpc`) over the node's authenticated RPC on a
    /// loopback socket, as a hub in another process would reach it.
    async fn new(cfg: NetworkConfig, over_rpc: bool) -> NativeFixture {
        let accounts = [Keypair::dev("alice"), Keypair::dev("bob")];
        let net = TestNet::start(cfg).await;
        // Past genesis (stamped 0), the chain tells wall-clock time.
        net.until_height(1).await.expect("first block");
        let (rpc, node): (_, Arc<dyn NodeApi>) = if over_rpc {
            let server = RpcServer::start(
                net.node.clone(),
                net.cfg.node_key(0).expect("node key"),
                "127.0.0.1:0".parse().expect("addr"),
                RpcAccess::default(),
            )
            .await
            .expect("rpc serves");
            let remote = RemoteNode::connect(
                RemoteNodeConfig::new(net.cfg.clone(), server.local_addr(), net.node.id()),
                Keypair::dev("hub-rpc-client"),
            )
            .await
            .expect("rpc client connects");
            (Some(server), Arc::new(remote))
        } else {
            (None, Arc::new(net.node.clone()))
        };
        let adapter = Arc::new(net.adapter_over(node, &[&accounts[0], &accounts[1]], 3));
        NativeFixture {
            _rpc: rpc,
            net,
            adapter,
            accounts,
            nonces: Mutex::new(HashMap::new()),
        }
    }
}

fn err(reason: String) -> AdapterError {
    AdapterError::Unavailable {
        network: isthmus_core::NetworkId(0),
        reason,
    }
}

#[async_trait]
impl Fixture for NativeFixture {
    fn adapter(&self) -> Arc<dyn Adapter> {
        self.adapter.clone()
    }

    async fn mine(&self, n: u64) -> Result<(), AdapterError> {
        self.net.mine(n).await.map_err(err)
    }

    async fn advance_time_to(&self, t: Timestamp) -> Result<(), AdapterError> {
        self.net.until_time_ms(t * 1000).await.map_err(err)
    }

    fn accounts(&self) -> [Address; 2] {
        [
            Address(self.accounts[0].id().to_string()),
            Address(self.accounts[1].id().to_string()),
        ]
    }

    fn asset(&self) -> AssetId {
        AssetId(ASSET.to_owned())
    }

    async fn signed_transfer(
        &self,
        from: usize,
        to: &Address,
        amount: Amount,
    ) -> Result<SignedTx, AdapterError> {
        let key = &self.accounts[from];
        let to: NodeId = to.0.parse().map_err(|e| AdapterError::InvalidRequest {
            reason: format!("{e}"),
        })?;
        let amount = u64::try_from(amount.0).map_err(|_| AdapterError::InvalidRequest {
            reason: "amount above u64".into(),
        })?;
        let chain = self
            .net
            .node
            .account(key.id())
            .await
            .map_err(|e| err(e.to_string()))?
            .nonce;
        let nonce = {
            let mut m = self.nonces.lock().unwrap();
            let next = m.entry(key.id()).or_default();
            let n = (*next).max(chain);
            *next = n + 1;
            n
        };
        let tx = Transaction::transfer(key, self.net.cfg.network(), nonce, to, amount);
        Ok(SignedTx(rmp_serde::to_vec(&tx).unwrap()))
    }

    fn attest(&self, lock_id: LockId, decision: Decision, record: HubRecord) -> HubAttestation {
        let keys = hub_keys();
        HubAttestation::sign_ed25519(
            self.net.cfg.network(),
            lock_id,
            decision,
            record,
            &keys[..2],
        )
    }
}

async fn run(make: fn() -> NetworkConfig, over_rpc: bool) {
    let factory = move || -> BoxFuture<'static, Result<Box<dyn Fixture>, String>> {
        Box::pin(async move {
            Ok(Box::new(NativeFixture::new(make(), over_rpc).await) as Box<dyn Fixture>)
        })
    };
    let report = conformance::run(&factory).await;
    assert_eq!(report.results.len(), conformance::CHECKS.len());
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_a_pos_network() {
    run(|| pos("beta", 202, &["alice", "bob"]), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_a_pow_network() {
    run(|| pow("alpha", 201, &["alice", "bob"]), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_a_pos_network_over_the_node_rpc() {
    run(|| pos("beta", 202, &["alice", "bob"]), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_a_pow_network_over_the_node_rpc() {
    run(|| pow("alpha", 201, &["alice", "bob"]), true).await;
}
