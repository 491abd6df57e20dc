//! A node's authenticated RPC, and [`NodeApi`]: what a client (the native adapter, the
//! relayer's prover, the packet port) may ask of a node, whether the node runs in the same
//! process ([`NodeHandle`]) or in another process or on another machine ([`RemoteNode`]).
//!
//! The RPC travels over the transport's authenticated handshake (Noise over TCP), bound
//! to the network's id and to the node's identity key, so a client always knows which node
//! answered and the node always knows who asked. What a caller may do follows from
//! [`RpcAccess`]: on a private network only the listed readers read at all; the calls that
//! change how the node runs (dialling a peer, pausing mining) need an admin identity.
//! Transactions are signed by their senders, so a reader may submit them.
//!
//! A node's answers are not evidence: clients that act on them (the native adapter's light
//! client) verify headers, certificates and Merkle paths against the network config they
//! hold themselves. [`RemoteNode::connect`] checks at once that the node runs the genesis of
//! that config, so a hub configured with the wrong address fails with a clear message.

use crate::block::{Block, BlockHeader};
use crate::chain::genesis_block;
use crate::config::NetworkConfig;
use crate::merkle::MerkleProof;
use crate::node::{NodeError, NodeHandle, NodeStatus, StateProofs};
use crate::pos::CommitCert;
use crate::state::Account;
use crate::tx::{Transaction, TxError};
use async_trait::async_trait;
use futures::future::BoxFuture;
use isthmus_core::{Hash32, Keypair, NodeId};
use isthmus_transport::rpc::{self, RpcClient, RpcError, Service};
use isthmus_transport::{Endpoint, TransportConfig, TransportKind};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What clients ask of a node. Implemented by the in-process [`NodeHandle`] and by
/// [`RemoteNode`]; callers hold an `Arc<dyn NodeApi>` and do not care which.
#[async_trait]
pub trait NodeApi: Send + Sync + 'static {
    /// The network config the caller trusts for this node (for a remote node: the caller's
    /// own copy, whose genesis the node was checked against).
    fn config(&self) -> &Arc<NetworkConfig>;
    /// The node's identity.
    fn id(&self) -> NodeId;
    /// Admit transactions to the mempool (and gossip them); one result per transaction.
    async fn submit(
        &self,
        txs: Vec<Transaction>,
    ) -> Result<Vec<Result<Hash32, TxError>>, NodeError>;
    async fn status(&self) -> Result<NodeStatus, NodeError>;
    async fn block_at(&self, number: u64) -> Result<Option<Block>, NodeError>;
    async fn account(&self, id: NodeId) -> Result<Account, NodeError>;
    /// A raw state entry.
    async fn state_get(&self, key: Vec<u8>) -> Result<Option<Vec<u8>>, NodeError>;
    /// Merkle inclusion proof of a committed transaction, with its block header.
    async fn tx_proof(&self, id: Hash32) -> Result<Option<(BlockHeader, MerkleProof)>, NodeError>;
    /// Merkle paths of state entries to the state root of canonical block `number`.
    async fn state_proofs_at(
        &self,
        number: u64,
        keys: Vec<Vec<u8>>,
    ) -> Result<Option<StateProofs>, NodeError>;
    /// The commit certificate of the PoS block at `number`.
    async fn cert(&self, number: u64) -> Result<Option<CommitCert>, NodeError>;
}

/// A shared node is a node: `Arc<dyn NodeApi>` (or `Arc<NodeHandle>`) goes wherever a
/// `NodeApi` does.
#[async_trait]
impl<T: NodeApi + ?Sized> NodeApi for Arc<T> {
    fn config(&self) -> &Arc<NetworkConfig> {
        (**self).config()
    }
    fn id(&self) -> NodeId {
        (**self).id()
    }
    async fn submit(
        &self,
        txs: Vec<Transaction>,
    ) -> Result<Vec<Result<Hash32, TxError>>, NodeError> {
        (**self).submit(txs).await
    }
    async fn status(&self) -> Result<NodeStatus, NodeError> {
        (**self).status().await
    }
    async fn block_at(&self, number: u64) -> Result<Option<Block>, NodeError> {
        (**self).block_at(number).await
    }
    async fn account(&self, id: NodeId) -> Result<Account, NodeError> {
        (**self).account(id).await
    }
    async fn state_get(&self, key: Vec<u8>) -> Result<Option<Vec<u8>>, NodeError> {
        (**self).state_get(key).await
    }
    async fn tx_proof(&self, id: Hash32) -> Result<Option<(BlockHeader, MerkleProof)>, NodeError> {
        (**self).tx_proof(id).await
    }
    async fn state_proofs_at(
        &self,
        number: u64,
        keys: Vec<Vec<u8>>,
    ) -> Result<Option<StateProofs>, NodeError> {
        (**self).state_proofs_at(number, keys).await
    }
    async fn cert(&self, number: u64) -> Result<Option<CommitCert>, NodeError> {
        (**self).cert(number).await
    }
}

#[async_trait]
impl NodeApi for NodeHandle {
    fn config(&self) -> &Arc<NetworkConfig> {
        NodeHandle::config(self)
    }
    fn id(&self) -> NodeId {
        NodeHandle::id(self)
    }
    async fn submit(
        &self,
        txs: Vec<Transaction>,
    ) -> Result<Vec<Result<Hash32, TxError>>, NodeError> {
        NodeHandle::submit(self, txs).await
    }
    async fn status(&self) -> Result<NodeStatus, NodeError> {
        NodeHandle::status(self).await
    }
    async fn block_at(&self, number: u64) -> Result<Option<Block>, NodeError> {
        NodeHandle::block_at(self, number).await
    }
    async fn account(&self, id: NodeId) -> Result<Account, NodeError> {
        NodeHandle::account(self, id).await
    }
    async fn state_get(&self, key: Vec<u8>) -> Result<Option<Vec<u8>>, NodeError> {
        NodeHandle::state_get(self, key).await
    }
    async fn tx_proof(&self, id: Hash32) -> Result<Option<(BlockHeader, MerkleProof)>, NodeError> {
        NodeHandle::tx_proof(self, id).await
    }
    async fn state_proofs_at(
        &self,
        number: u64,
        keys: Vec<Vec<u8>>,
    ) -> Result<Option<StateProofs>, NodeError> {
        NodeHandle::state_proofs_at(self, number, keys).await
    }
    async fn cert(&self, number: u64) -> Result<Option<CommitCert>, NodeError> {
        NodeHandle::cert(self, number).await
    }
}

/// One call of the node RPC.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum NodeCall {
    Status,
    BlockAt {
        number: u64,
    },
    Account {
        id: NodeId,
    },
    StateGet {
        key: ByteBuf,
    },
    TxProof {
        id: Hash32,
    },
    StateProofs {
        number: u64,
        keys: Vec<ByteBuf>,
    },
    Cert {
        number: u64,
    },
    Submit {
        txs: Vec<Transaction>,
    },
    /// Admin: dial one more peer.
    Connect {
        addr: SocketAddr,
    },
    /// Admin, PoW: pause or resume mining.
    SetMining {
        on: bool,
    },
    /// Admin, PoW: mine exactly `n` more blocks, then pause.
    MineBlocks {
        n: u64,
    },
}

impl NodeCall {
    /// Whether the call changes how the node runs (admins only).
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            NodeCall::Connect { .. } | NodeCall::SetMining { .. } | NodeCall::MineBlocks { .. }
        )
    }

    fn name(&self) -> &'static str {
        match self {
            NodeCall::Status => "status",
            NodeCall::BlockAt { .. } => "block_at",
            NodeCall::Account { .. } => "account",
            NodeCall::StateGet { .. } => "state_get",
            NodeCall::TxProof { .. } => "tx_proof",
            NodeCall::StateProofs { .. } => "state_proofs",
            NodeCall::Cert { .. } => "cert",
            NodeCall::Submit { .. } => "submit",
            NodeCall::Connect { .. } => "connect",
            NodeCall::SetMining { .. } => "set_mining",
            NodeCall::MineBlocks { .. } => "mine_blocks",
        }
    }
}

/// Why the node refused or failed a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// The caller may not make this call.
    Forbidden,
    /// The request was malformed.
    BadRequest,
    /// The node could not answer now (storage, shutting down); retrying may help.
    Unavailable,
}

/// The answer to one [`NodeCall`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum NodeAnswer {
    Status(Box<NodeStatus>),
    Block(Option<Box<Block>>),
    Account(Account),
    State(Option<ByteBuf>),
    TxProof(Option<(BlockHeader, MerkleProof)>),
    StateProofs(Option<Box<StateProofs>>),
    Cert(Option<CommitCert>),
    Submitted(Vec<Result<Hash32, TxError>>),
    Done,
    Refused { kind: RefusalKind, reason: String },
}

/// Who may call a node's RPC.
#[derive(Debug, Clone, Default)]
pub struct RpcAccess {
    /// `None`: any authenticated caller reads and submits (a public network). `Some`: only
    /// these identities (and the admins) are admitted at the handshake.
    pub readers: Option<BTreeSet<NodeId>>,
    /// Identities that may also make admin calls.
    pub admins: BTreeSet<NodeId>,
}

impl RpcAccess {
    /// The transport's allowlist for this access: readers and admins, or anyone.
    fn allowlist(&self) -> Option<BTreeSet<NodeId>> {
        self.readers
            .as_ref()
            .map(|r| r.union(&self.admins).copied().collect())
    }

    fn admits(&self, caller: &NodeId, call: &NodeCall) -> bool {
        if self.admins.contains(caller) {
            return true;
        }
        !call.is_admin() && self.readers.as_ref().is_none_or(|r| r.contains(caller))
    }
}

/// The node side: answers calls from the node's handle, as `access` allows.
pub struct NodeService {
    node: NodeHandle,
    access: RpcAccess,
}

impl NodeService {
    pub fn new(node: NodeHandle, access: RpcAccess) -> Self {
        NodeService { node, access }
    }

    async fn answer(node: NodeHandle, call: NodeCall) -> Result<NodeAnswer, NodeError> {
        Ok(match call {
            NodeCall::Status => NodeAnswer::Status(Box::new(node.status().await?)),
            NodeCall::BlockAt { number } => {
                NodeAnswer::Block(node.block_at(number).await?.map(Box::new))
            }
            NodeCall::Account { id } => NodeAnswer::Account(node.account(id).await?),
            NodeCall::StateGet { key } => {
                NodeAnswer::State(node.state_get(key.into_vec()).await?.map(ByteBuf::from))
            }
            NodeCall::TxProof { id } => NodeAnswer::TxProof(node.tx_proof(id).await?),
            NodeCall::StateProofs { number, keys } => NodeAnswer::StateProofs(
                node.state_proofs_at(number, keys.into_iter().map(ByteBuf::into_vec).collect())
                    .await?
                    .map(Box::new),
            ),
            NodeCall::Cert { number } => NodeAnswer::Cert(node.cert(number).await?),
            NodeCall::Submit { txs } => NodeAnswer::Submitted(node.submit(txs).await?),
            NodeCall::Connect { addr } => {
                node.connect(addr).await?;
                NodeAnswer::Done
            }
            NodeCall::SetMining { on } => {
                node.set_mining(on).await?;
                NodeAnswer::Done
            }
            NodeCall::MineBlocks { n } => {
                node.mine_blocks(n).await?;
                NodeAnswer::Done
            }
        })
    }
}

impl Service for NodeService {
    type Request = NodeCall;
    type Answer = NodeAnswer;

    fn call(&self, caller: NodeId, call: NodeCall) -> BoxFuture<'static, NodeAnswer> {
        if !self.access.admits(&caller, &call) {
            tracing::warn!(%caller, call = call.name(), "node rpc call refused");
            let reason = format!("{caller} may not call `{}` on this node", call.name());
            return Box::pin(async move {
                NodeAnswer::Refused {
                    kind: RefusalKind::Forbidden,
                    reason,
                }
            });
        }
        let node = self.node.clone();
        Box::pin(async move {
            NodeService::answer(node, call)
                .await
                .unwrap_or_else(|e| NodeAnswer::Refused {
                    kind: RefusalKind::Unavailable,
                    reason: e.to_string(),
                })
        })
    }

    fn malformed(&self, reason: String) -> NodeAnswer {
        NodeAnswer::Refused {
            kind: RefusalKind::BadRequest,
            reason,
        }
    }
}

/// A running RPC server of one node; it stops answering when dropped.
pub struct RpcServer {
    endpoint: Arc<Endpoint>,
    task: tokio::task::JoinHandle<()>,
}

impl RpcServer {
    /// Serve `node`'s RPC on `listen` with the node's own identity `key`, as `access`
    /// allows, until [`stop`](Self::stop).
    pub async fn start(
        node: NodeHandle,
        key: Keypair,
        listen: SocketAddr,
        access: RpcAccess,
    ) -> Result<RpcServer, NodeError> {
        let mut tc = TransportConfig::new(TransportKind::Tcp, listen);
        tc.network = node.config().network();
        tc.allowlist = access.allowlist();
        tc.limits.max_frame = MAX_RPC_MESSAGE;
        let endpoint = Arc::new(
            Endpoint::bind(tc, key)
                .await
                .map_err(|e| NodeError::Transport(format!("rpc on {listen}: {e}")))?,
        );
        let service = Arc::new(NodeService::new(node, access));
        let ep = endpoint.clone();
        let task = tokio::spawn(async move {
            rpc::serve(&ep, service, std::future::pending()).await;
        });
        Ok(RpcServer { endpoint, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint.local_addr()
    }

    /// Stop answering and close every connection.
    pub async fn stop(self) {
        self.task.abort();
        self.endpoint.shutdown().await;
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Largest RPC message either way (a batch of transactions, a full block).
const MAX_RPC_MESSAGE: usize = 64 * 1024 * 1024;

/// Where and how to reach a node over its RPC.
#[derive(Debug, Clone)]
pub struct RemoteNodeConfig {
    /// The network config the caller trusts; the node must run its genesis.
    pub network: Arc<NetworkConfig>,
    pub addr: SocketAddr,
    /// The node's identity: the handshake must prove it.
    pub identity: NodeId,
    pub call_timeout: Duration,
}

impl RemoteNodeConfig {
    pub fn new(network: Arc<NetworkConfig>, addr: SocketAddr, identity: NodeId) -> Self {
        RemoteNodeConfig {
            network,
            addr,
            identity,
            call_timeout: Duration::from_secs(10),
        }
    }
}

/// A node in another process, reached over its RPC. Cheap to clone.
///
/// Before its first answer is used, the node must show the genesis block of the config the
/// caller trusts; until it has, every call checks that first.
#[derive(Clone, Debug)]
pub struct RemoteNode {
    cfg: Arc<NetworkConfig>,
    client: RpcClient,
    checked: Arc<std::sync::atomic::AtomicBool>,
}

impl RemoteNode {
    /// A client of the node with `key` as the caller's identity; nothing is sent yet (a node
    /// that is down now is reached once it is up).
    pub async fn new(cfg: RemoteNodeConfig, key: Keypair) -> Result<RemoteNode, NodeError> {
        let bind: SocketAddr = if cfg.addr.ip().is_loopback() {
            SocketAddr::from(([127, 0, 0, 1], 0))
        } else {
            SocketAddr::from(([0, 0, 0, 0], 0))
        };
        let mut tc = TransportConfig::new(TransportKind::Tcp, bind);
        tc.network = cfg.network.network();
        tc.allowlist = Some(BTreeSet::from([cfg.identity]));
        tc.limits.max_frame = MAX_RPC_MESSAGE;
        tc.max_connections = 4;
        let endpoint = Endpoint::bind(tc, key)
            .await
            .map_err(|e| NodeError::Transport(format!("cannot open a local endpoint: {e}")))?;
        Ok(RemoteNode {
            client: RpcClient::new(endpoint, cfg.addr, cfg.identity, cfg.call_timeout),
            cfg: cfg.network,
            checked: Arc::default(),
        })
    }

    /// [`new`](Self::new), then reach the node and check its genesis at once. A node that
    /// is down fails with a retryable [`NodeError::Transport`]; one of another chain with
    /// [`NodeError::Setup`].
    pub async fn connect(cfg: RemoteNodeConfig, key: Keypair) -> Result<RemoteNode, NodeError> {
        let node = RemoteNode::new(cfg, key).await?;
        if let Err(e) = node.check_genesis().await {
            node.client.close().await;
            return Err(e);
        }
        Ok(node)
    }

    async fn check_genesis(&self) -> Result<(), NodeError> {
        use std::sync::atomic::Ordering;
        if self.checked.load(Ordering::Acquire) {
            return Ok(());
        }
        let algo = self.cfg.rules_at(0).hash;
        let want = genesis_block(&self.cfg).hash(algo);
        let got = match self.raw(NodeCall::BlockAt { number: 0 }).await? {
            NodeAnswer::Block(b) => b.map(|b| b.hash(algo)),
            other => return Err(unexpected("block", &other)),
        };
        if got != Some(want) {
            return Err(NodeError::Setup(format!(
                "the node at {} runs another chain than network `{}`: genesis {} expected, {} found",
                self.client.addr(),
                self.cfg.name,
                want.to_hex(),
                got.map_or_else(|| "none".to_owned(), |h| h.to_hex())
            )));
        }
        self.checked.store(true, Ordering::Release);
        Ok(())
    }

    pub fn addr(&self) -> SocketAddr {
        self.client.addr()
    }

    async fn call(&self, call: NodeCall) -> Result<NodeAnswer, NodeError> {
        self.check_genesis().await?;
        self.raw(call).await
    }

    async fn raw(&self, call: NodeCall) -> Result<NodeAnswer, NodeError> {
        let name = call.name();
        match self.client.call::<_, NodeAnswer>(&call).await {
            Ok(NodeAnswer::Refused { kind, reason }) => Err(match kind {
                RefusalKind::Unavailable => NodeError::Transport(reason),
                RefusalKind::Forbidden | RefusalKind::BadRequest => {
                    NodeError::Setup(format!("node refused `{name}`: {reason}"))
                }
            }),
            Ok(a) => Ok(a),
            Err(e @ RpcError::Protocol { .. }) => Err(NodeError::Setup(e.to_string())),
            Err(e) => Err(NodeError::Transport(e.to_string())),
        }
    }

    /// Admin: dial one more peer.
    pub async fn connect_peer(&self, addr: SocketAddr) -> Result<(), NodeError> {
        self.admin(NodeCall::Connect { addr }).await
    }

    /// Admin, PoW: pause or resume mining.
    pub async fn set_mining(&self, on: bool) -> Result<(), NodeError> {
        self.admin(NodeCall::SetMining { on }).await
    }

    /// Admin, PoW: mine exactly `n` more blocks, then pause.
    pub async fn mine_blocks(&self, n: u64) -> Result<(), NodeError> {
        self.admin(NodeCall::MineBlocks { n }).await
    }

    async fn admin(&self, call: NodeCall) -> Result<(), NodeError> {
        match self.call(call).await? {
            NodeAnswer::Done => Ok(()),
            other => Err(unexpected("done", &other)),
        }
    }

    /// Close the connection.
    pub async fn close(&self) {
        self.client.close().await;
    }
}

fn unexpected(want: &str, got: &NodeAnswer) -> NodeError {
    let got = match got {
        NodeAnswer::Status(_) => "status",
        NodeAnswer::Block(_) => "block",
        NodeAnswer::Account(_) => "account",
        NodeAnswer::State(_) => "state",
        NodeAnswer::TxProof(_) => "tx_proof",
        NodeAnswer::StateProofs(_) => "state_proofs",
        NodeAnswer::Cert(_) => "cert",
        NodeAnswer::Submitted(_) => "submitted",
        NodeAnswer::Done => "done",
        NodeAnswer::Refused { .. } => "refused",
    };
    NodeError::Setup(format!(
        "node answered `{got}` to a call expecting `{want}`"
    ))
}

/// Unwrap the expected answer kind of a call, or fail naming both.
macro_rules! expect_answer {
    ($self:ident, $call:expr, $variant:ident, $want:literal) => {
        match $self.call($call).await? {
            NodeAnswer::$variant(v) => Ok(v),
            other => Err(unexpected($want, &other)),
        }
    };
}

#[async_trait]
impl NodeApi for RemoteNode {
    fn config(&self) -> &Arc<NetworkConfig> {
        &self.cfg
    }
    fn id(&self) -> NodeId {
        self.client.peer()
    }
    async fn submit(
        &self,
        txs: Vec<Transaction>,
    ) -> Result<Vec<Result<Hash32, TxError>>, NodeError> {
        let n = txs.len();
        let r = expect_answer!(self, NodeCall::Submit { txs }, Submitted, "submitted")?;
        if r.len() != n {
            return Err(NodeError::Setup(format!(
                "node answered {} results for {n} transactions",
                r.len()
            )));
        }
        Ok(r)
    }
    async fn status(&self) -> Result<NodeStatus, NodeError> {
        expect_answer!(self, NodeCall::Status, Status, "status").map(|s| *s)
    }
    async fn block_at(&self, number: u64) -> Result<Option<Block>, NodeError> {
        expect_answer!(self, NodeCall::BlockAt { number }, Block, "block").map(|b| b.map(|b| *b))
    }
    async fn account(&self, id: NodeId) -> Result<Account, NodeError> {
        expect_answer!(self, NodeCall::Account { id }, Account, "account")
    }
    async fn state_get(&self, key: Vec<u8>) -> Result<Option<Vec<u8>>, NodeError> {
        let key = ByteBuf::from(key);
        expect_answer!(self, NodeCall::StateGet { key }, State, "state")
            .map(|v| v.map(ByteBuf::into_vec))
    }
    async fn tx_proof(&self, id: Hash32) -> Result<Option<(BlockHeader, MerkleProof)>, NodeError> {
        expect_answer!(self, NodeCall::TxProof { id }, TxProof, "tx_proof")
    }
    async fn state_proofs_at(
        &self,
        number: u64,
        keys: Vec<Vec<u8>>,
    ) -> Result<Option<StateProofs>, NodeError> {
        let keys = keys.into_iter().map(ByteBuf::from).collect();
        expect_answer!(
            self,
            NodeCall::StateProofs { number, keys },
            StateProofs,
            "state_proofs"
        )
        .map(|p| p.map(|p| *p))
    }
    async fn cert(&self, number: u64) -> Result<Option<CommitCert>, NodeError> {
        expect_answer!(self, NodeCall::Cert { number }, Cert, "cert")
    }
}

/// Several nodes of one network as one: each call goes to the node that answered last, and
/// moves on to the next when that one is unreachable, so the network stays reachable while
/// one of its nodes restarts. Answers from different nodes may differ in height; callers
/// that act on them verify what they read (headers, certificates, Merkle paths).
pub struct Failover {
    nodes: Vec<Arc<dyn NodeApi>>,
    current: std::sync::atomic::AtomicUsize,
}

impl Failover {
    /// `nodes` must be non-empty and of one network.
    pub fn new(nodes: Vec<Arc<dyn NodeApi>>) -> Result<Failover, NodeError> {
        let Some(first) = nodes.first() else {
            return Err(NodeError::Setup("a network needs at least one node".into()));
        };
        let net = first.config().network();
        if let Some(other) = nodes.iter().find(|n| n.config().network() != net) {
            return Err(NodeError::Setup(format!(
                "node {} is of network {}, not {net}",
                other.id(),
                other.config().network()
            )));
        }
        Ok(Failover {
            nodes,
            current: Default::default(),
        })
    }

    /// Try each node once, starting with the current one, until one answers; stay with it.
    async fn each<T, F>(&self, f: F) -> Result<T, NodeError>
    where
        F: for<'a> Fn(&'a dyn NodeApi) -> BoxFuture<'a, Result<T, NodeError>>,
    {
        use std::sync::atomic::Ordering;
        let start = self.current.load(Ordering::Relaxed);
        let mut last = None;
        for k in 0..self.nodes.len() {
            let i = (start + k) % self.nodes.len();
            match f(self.nodes[i].as_ref()).await {
                Err(e) if e.retryable() => last = Some(e),
                other => {
                    self.current.store(i, Ordering::Relaxed);
                    return other;
                }
            }
        }
        Err(last.unwrap_or(NodeError::Stopped))
    }
}

#[async_trait]
impl NodeApi for Failover {
    fn config(&self) -> &Arc<NetworkConfig> {
        self.nodes[0].config()
    }
    fn id(&self) -> NodeId {
        use std::sync::atomic::Ordering;
        self.nodes[self.current.load(Ordering::Relaxed) % self.nodes.len()].id()
    }
    async fn submit(
        &self,
        txs: Vec<Transaction>,
    ) -> Result<Vec<Result<Hash32, TxError>>, NodeError> {
        self.each(|n| n.submit(txs.clone())).await
    }
    async fn status(&self) -> Result<NodeStatus, NodeError> {
        self.each(|n| n.status()).await
    }
    async fn block_at(&self, number: u64) -> Result<Option<Block>, NodeError> {
        self.each(|n| n.block_at(number)).await
    }
    async fn account(&self, id: NodeId) -> Result<Account, NodeError> {
        self.each(|n| n.account(id)).await
    }
    async fn state_get(&self, key: Vec<u8>) -> Result<Option<Vec<u8>>, NodeError> {
        self.each(|n| n.state_get(key.clone())).await
    }
    async fn tx_proof(&self, id: Hash32) -> Result<Option<(BlockHeader, MerkleProof)>, NodeError> {
        self.each(|n| n.tx_proof(id)).await
    }
    async fn state_proofs_at(
        &self,
        number: u64,
        keys: Vec<Vec<u8>>,
    ) -> Result<Option<StateProofs>, NodeError> {
        self.each(|n| n.state_proofs_at(number, keys.clone())).await
    }
    async fn cert(&self, number: u64) -> Result<Option<CommitCert>, NodeError> {
        self.each(|n| n.cert(number)).await
    }
}
