//! The node runtime: one task owns the [`Chain`], the mempool, the consensus driver (PoS
//! engine or PoW miner) and the peer set; everything else talks to it through a cloneable
//! [`NodeHandle`] (request + oneshot reply) or the committed-block broadcast.
//!
//! Invariants: the node task is the only writer of the chain; a block received from a peer
//! is applied only through [`Chain::import`] (PoW) or after its commit certificate verified
//! (PoS); a peer that serves an invalid block is disconnected and banned; every queue is
//! bounded (a full per-peer queue drops gossip, which sync repairs).

use crate::block::{Block, BlockHeader};
use crate::chain::{BlockError, Chain, Committed, Imported};
use crate::config::{ConsensusConfig, NetworkConfig};
use crate::mempool::Mempool;
use crate::merkle::MerkleProof;
use crate::miner::{self, MinerControl};
use crate::p2p::{self, Net, NetEvent, PeerMsg, MAX_BLOCKS_PER_REQUEST};
use crate::pos::{
    verify_proposal_signature, CommitCert, ConsensusWire, Evidence, PosAction, PosEngine,
    PosTimeouts,
};
use crate::state::{Account, Modules};
use crate::store::{SledStore, StoreError};
use crate::tx::{encode_canonical, Transaction, TxError};
use bytes::Bytes;
use isthmus_core::{codec, Hash32, Keypair, NodeId, WireLimits};
use isthmus_transport::{Endpoint, TransportConfig, TransportKind};
use malachite_types::{Round, Timeout};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Largest message between nodes (a full block or a batch of blocks).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// Messages queued per peer before gossip to it is dropped.
const PEER_QUEUE: usize = 4096;
/// PoW: blocks behind the head after which a block counts as final.
pub const POW_CONFIRMATIONS: u64 = 6;
/// Consensus messages buffered for heights the node has not reached yet.
const MAX_FUTURE_MSGS: usize = 4096;
/// A sync request unanswered for this long is given up and retried with another peer.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the node could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The config or options are wrong; retrying cannot help.
    #[error("node setup: {0}")]
    Setup(String),
    /// Storage failed; retrying may help if the cause was transient.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// The consensus write-ahead log cannot be opened; retrying may help.
    #[error("{0}")]
    Wal(#[from] crate::wal::WalError),
    /// Binding the transport failed (e.g. the port is taken); retrying may help.
    #[error("transport: {0}")]
    Transport(String),
    /// The node task has stopped; retrying cannot help.
    #[error("node has stopped")]
    Stopped,
}

impl NodeError {
    pub fn retryable(&self) -> bool {
        matches!(self, NodeError::Transport(_) | NodeError::Wal(_))
            || matches!(self, NodeError::Store(e) if e.retryable())
    }
}

/// How to run one node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub cfg: Arc<NetworkConfig>,
    pub index: usize,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub peers: Vec<SocketAddr>,
    /// PoW: mine blocks (PoS validators always take part in consensus).
    pub mine: bool,
    pub transport: TransportKind,
}

/// Sync progress of a node behind its peers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SyncProgress {
    pub height: u64,
    pub target: u64,
    pub percent: f64,
    pub blocks_per_sec: f64,
}

/// A snapshot of the node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub index: usize,
    pub id: String,
    pub network: String,
    pub consensus: String,
    pub listen: String,
    pub height: u64,
    pub head_hash: String,
    pub finalized: u64,
    /// Cumulative work of the head (decimal, it may exceed 2^53).
    pub total_work: String,
    pub protocol_version: u32,
    pub peers: Vec<String>,
    pub mempool: usize,
    pub mining: bool,
    pub sync: Option<SyncProgress>,
    pub banned: Vec<String>,
    pub rejected_blocks: u64,
    pub last_rejection: Option<String>,
    pub evidence: usize,
}

type Reply<T> = oneshot::Sender<T>;

enum Request {
    Submit(Vec<Transaction>, Reply<Vec<Result<Hash32, TxError>>>),
    Status(Reply<NodeStatus>),
    BlockAt(u64, Reply<Result<Option<Block>, StoreError>>),
    Account(NodeId, Reply<Account>),
    StateGet(Vec<u8>, Reply<Option<Vec<u8>>>),
    TxProof(Hash32, Reply<TxProofReply>),
    Cert(u64, Reply<Result<Option<CommitCert>, StoreError>>),
    StateProofs(u64, Vec<Vec<u8>>, Reply<StateProofsReply>),
    Connect(SocketAddr),
    SetMining(bool),
    MineBlocks(u64),
}

type TxProofReply = Result<Option<(BlockHeader, MerkleProof)>, StoreError>;
/// A block header and, per asked key, the entry's value and path to its state root.
pub type StateProofs = (BlockHeader, Vec<Option<(Vec<u8>, MerkleProof)>>);
type StateProofsReply = Result<Option<StateProofs>, StoreError>;

/// A cloneable handle on a running node.
#[derive(Clone)]
pub struct NodeHandle {
    tx: mpsc::Sender<Request>,
    blocks: broadcast::Sender<Committed>,
    id: NodeId,
    local_addr: SocketAddr,
    cfg: Arc<NetworkConfig>,
}

impl NodeHandle {
    pub fn config(&self) -> &Arc<NetworkConfig> {
        &self.cfg
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The bound peer-to-peer address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Admit transactions to the mempool (and gossip them); one result per transaction.
    pub async fn submit(
        &self,
        txs: Vec<Transaction>,
    ) -> Result<Vec<Result<Hash32, TxError>>, NodeError> {
        self.ask(|r| Request::Submit(txs, r)).await
    }

    pub async fn status(&self) -> Result<NodeStatus, NodeError> {
        self.ask(Request::Status).await
    }

    pub async fn block_at(&self, number: u64) -> Result<Option<Block>, NodeError> {
        Ok(self.ask(|r| Request::BlockAt(number, r)).await??)
    }

    pub async fn account(&self, id: NodeId) -> Result<Account, NodeError> {
        self.ask(|r| Request::Account(id, r)).await
    }

    /// A raw state entry (see [`crate::state::module_key`] and [`crate::state::account_key`]).
    pub async fn state_get(&self, key: Vec<u8>) -> Result<Option<Vec<u8>>, NodeError> {
        self.ask(|r| Request::StateGet(key, r)).await
    }

    /// Merkle inclusion proof of a committed transaction, with its block header.
    pub async fn tx_proof(
        &self,
        id: Hash32,
    ) -> Result<Option<(BlockHeader, MerkleProof)>, NodeError> {
        Ok(self.ask(|r| Request::TxProof(id, r)).await??)
    }

    /// Merkle paths of state entries `keys` to the state root of canonical block `number`
    /// (the state right after it), with its header; `None` above the head.
    pub async fn state_proofs_at(
        &self,
        number: u64,
        keys: Vec<Vec<u8>>,
    ) -> Result<Option<StateProofs>, NodeError> {
        Ok(self
            .ask(|r| Request::StateProofs(number, keys, r))
            .await??)
    }

    /// The commit certificate of the PoS block at `number`.
    pub async fn cert(&self, number: u64) -> Result<Option<CommitCert>, NodeError> {
        Ok(self.ask(|r| Request::Cert(number, r)).await??)
    }

    /// Committed blocks from now on (a slow subscriber misses blocks and is told so).
    pub fn subscribe(&self) -> broadcast::Receiver<Committed> {
        self.blocks.subscribe()
    }

    /// Dial one more peer (kept connected until shutdown).
    pub async fn connect(&self, addr: SocketAddr) -> Result<(), NodeError> {
        self.tx
            .send(Request::Connect(addr))
            .await
            .map_err(|_| NodeError::Stopped)
    }

    /// PoW: pause or resume mining.
    pub async fn set_mining(&self, on: bool) -> Result<(), NodeError> {
        self.tx
            .send(Request::SetMining(on))
            .await
            .map_err(|_| NodeError::Stopped)
    }

    /// PoW: mine exactly `n` more blocks of its own, then pause (like a regtest node's
    /// `generate`): a block found after the `n`th is dropped, however fast the search.
    /// `n = 0` pauses at once.
    pub async fn mine_blocks(&self, n: u64) -> Result<(), NodeError> {
        self.tx
            .send(Request::MineBlocks(n))
            .await
            .map_err(|_| NodeError::Stopped)
    }
}

/// A started node: its handle and the means to stop it.
pub struct RunningNode {
    pub handle: NodeHandle,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningNode {
    /// Stop the node and wait for its task (the last commit is already durable).
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            tracing::error!("node task ended abnormally: {e}");
        }
    }

    /// Wait until the node stops by itself (it does not, unless its task fails).
    pub async fn wait(self) {
        if let Err(e) = self.task.await {
            tracing::error!("node task ended abnormally: {e}");
        }
    }

    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }
}

struct Peer {
    conn: u64,
    out: mpsc::Sender<Bytes>,
    kill: CancellationToken,
    head: u64,
    total_work: u128,
}

struct PosDriver {
    engine: PosEngine,
    timers: Vec<(Timeout, Instant)>,
    future: BTreeMap<u64, Vec<ConsensusWire>>,
    future_len: usize,
    evidence: Vec<Evidence>,
    /// A proposal to build once the block interval since the parent has passed.
    pending_build: Option<(u64, Round, Instant)>,
}

struct PowDriver {
    ctl: MinerControl,
    generation: u64,
    threads: u32,
    enabled: bool,
    /// Blocks left to mine before pausing (`mine_blocks`); `None` mines on.
    budget: Option<u64>,
    mined_tx: mpsc::Sender<(u64, Block)>,
}

impl Drop for PowDriver {
    /// A node task dropped (runtime shut down, task aborted) still ends its search threads.
    fn drop(&mut self) {
        self.ctl
            .stop
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[derive(Default)]
struct SyncState {
    inflight: Option<(NodeId, Instant, u64)>,
    started: Option<(Instant, u64)>,
    target: u64,
    last_log: Option<Instant>,
}

struct Node {
    cfg: Arc<NetworkConfig>,
    index: usize,
    key: Keypair,
    chain: Chain,
    mempool: Mempool,
    ep: Arc<Endpoint>,
    net: Arc<Net>,
    events_tx: mpsc::Sender<NetEvent>,
    stop: CancellationToken,
    peers: HashMap<NodeId, Peer>,
    banned: HashSet<NodeId>,
    blocks_tx: broadcast::Sender<Committed>,
    pos: Option<PosDriver>,
    pow: Option<PowDriver>,
    sync: SyncState,
    rejected_blocks: u64,
    last_rejection: Option<String>,
    limits: WireLimits,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Open storage, bind the transport, dial peers and start the node task.
pub async fn start(opts: NodeOptions) -> Result<RunningNode, NodeError> {
    let cfg = opts.cfg.clone();
    if opts.index >= cfg.nodes {
        return Err(NodeError::Setup(format!(
            "node index {} is out of range, the network has {} node(s)",
            opts.index, cfg.nodes
        )));
    }
    let key = cfg.node_key(opts.index).map_err(NodeError::Setup)?;
    let budget = cfg.budget(opts.index);
    std::fs::create_dir_all(&opts.data_dir).map_err(|e| {
        NodeError::Setup(format!(
            "cannot create data dir {}: {e}",
            opts.data_dir.display()
        ))
    })?;
    let store = SledStore::open(&opts.data_dir.join("chain"), budget.storage_quota_bytes)?;
    let chain = Chain::open(cfg.clone(), Box::new(store), Modules::for_network(&cfg))?;
    let limits = WireLimits {
        max_frame: MAX_MESSAGE,
        ..WireLimits::default()
    };
    let tcfg = TransportConfig {
        network: cfg.network(),
        allowlist: cfg.allowlist_ids(),
        limits,
        send_queue: 1024,
        recv_queue: 4096,
        ..TransportConfig::new(opts.transport, opts.listen)
    };
    let ep = Arc::new(
        Endpoint::bind(tcfg, key.clone())
            .await
            .map_err(|e| NodeError::Transport(format!("bind {}: {e}", opts.listen)))?,
    );
    let local_addr = ep.local_addr();
    let stop = CancellationToken::new();
    let (events_tx, events_rx) = mpsc::channel(8192);
    let (req_tx, req_rx) = mpsc::channel(1024);
    let (blocks_tx, _) = broadcast::channel(1024);
    let net = Arc::new(Net::default());
    let (mined_tx, mined_rx) = mpsc::channel(4);
    let (pos, pow) = match &cfg.consensus {
        ConsensusConfig::Pos(p) => {
            let t = PosTimeouts {
                propose: Duration::from_millis(p.propose_timeout_ms),
                prevote: Duration::from_millis(p.prevote_timeout_ms),
                precommit: Duration::from_millis(p.precommit_timeout_ms),
            };
            let mut engine = PosEngine::new(key.clone(), cfg.network(), &cfg.validators(), t);
            let (wal, recovered) = crate::wal::ConsensusWal::open(&opts.data_dir)?;
            engine.attach_wal(wal, recovered);
            (
                Some(PosDriver {
                    engine,
                    timers: vec![],
                    future: BTreeMap::new(),
                    future_len: 0,
                    evidence: vec![],
                    pending_build: None,
                }),
                None,
            )
        }
        ConsensusConfig::Pow(_) => (
            None,
            Some(PowDriver {
                ctl: MinerControl::default(),
                generation: 0,
                threads: budget.mining_threads,
                enabled: opts.mine,
                budget: None,
                mined_tx,
            }),
        ),
    };
    let node = Node {
        index: opts.index,
        key: key.clone(),
        mempool: Mempool::new(budget.mempool_txs, budget.mempool_bytes),
        chain,
        cfg,
        ep: ep.clone(),
        net: net.clone(),
        events_tx: events_tx.clone(),
        stop: stop.clone(),
        peers: HashMap::new(),
        banned: HashSet::new(),
        blocks_tx: blocks_tx.clone(),
        pos,
        pow,
        sync: SyncState::default(),
        rejected_blocks: 0,
        last_rejection: None,
        limits,
    };
    p2p::spawn_acceptor(net.clone(), ep.clone(), events_tx.clone(), stop.clone());
    for a in &opts.peers {
        p2p::spawn_dialer(net.clone(), ep.clone(), *a, events_tx.clone(), stop.clone());
    }
    tracing::info!(
        index = opts.index,
        id = %key.id(),
        p2p = %local_addr,
        height = node.chain.head().0,
        "node started"
    );
    let task = tokio::spawn(node.run(req_rx, events_rx, mined_rx));
    Ok(RunningNode {
        handle: NodeHandle {
            tx: req_tx,
            blocks: blocks_tx,
            id: key.id(),
            local_addr,
            cfg: opts.cfg.clone(),
        },
        stop,
        task,
    })
}

impl Node {
    async fn run(
        mut self,
        mut req_rx: mpsc::Receiver<Request>,
        mut events_rx: mpsc::Receiver<NetEvent>,
        mut mined_rx: mpsc::Receiver<(u64, Block)>,
    ) {
        if self.pos.is_some() {
            self.pos_start_height();
        }
        self.restart_mining();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            let next_timer = self.pos.as_ref().and_then(|p| {
                p.timers
                    .iter()
                    .map(|(_, at)| *at)
                    .chain(p.pending_build.map(|(_, _, at)| at))
                    .min()
            });
            let sleep = async {
                match next_timer {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.stop.cancelled() => break,
                Some(r) = req_rx.recv() => self.on_request(r),
                Some(ev) = events_rx.recv() => self.on_net(ev),
                Some((generation, b)) = mined_rx.recv() => self.on_mined(generation, b),
                _ = sleep => self.fire_timers(),
                _ = tick.tick() => self.on_tick(),
            }
        }
        if let Some(p) = &self.pow {
            p.ctl.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        for p in self.peers.values() {
            p.kill.cancel();
        }
        self.ep.shutdown().await;
        tracing::info!(
            index = self.index,
            height = self.chain.head().0,
            "node stopped"
        );
    }

    // ---- requests -------------------------------------------------------------------

    fn on_request(&mut self, r: Request) {
        // A caller that went away does not care about the answer.
        match r {
            Request::Submit(txs, reply) => {
                let res = self.admit(txs, None);
                let _ = reply.send(res);
            }
            Request::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Request::BlockAt(n, reply) => {
                let _ = reply.send(self.chain.block_at(n));
            }
            Request::Account(id, reply) => {
                let _ = reply.send(self.chain.state().account(&id));
            }
            Request::StateGet(k, reply) => {
                let _ = reply.send(self.chain.state().get(&k));
            }
            Request::TxProof(id, reply) => {
                let _ = reply.send(self.chain.tx_proof(&id));
            }
            Request::StateProofs(n, keys, reply) => {
                let _ = reply.send(self.chain.state_proofs_at(n, &keys));
            }
            Request::Cert(n, reply) => {
                let res = self.chain.cert_bytes(n).and_then(|b| {
                    b.map(|b| {
                        rmp_serde::from_slice::<CommitCert>(&b)
                            .map_err(|e| StoreError::Corrupt(format!("certificate {n}: {e}")))
                    })
                    .transpose()
                });
                let _ = reply.send(res);
            }
            Request::Connect(addr) => {
                p2p::spawn_dialer(
                    self.net.clone(),
                    self.ep.clone(),
                    addr,
                    self.events_tx.clone(),
                    self.stop.clone(),
                );
            }
            Request::MineBlocks(n) => {
                if let Some(p) = &mut self.pow {
                    p.enabled = n > 0;
                    p.budget = (n > 0).then_some(n);
                    if n == 0 {
                        p.ctl.stop.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                if n > 0 {
                    self.restart_mining();
                }
            }
            Request::SetMining(on) => {
                if let Some(p) = &mut self.pow {
                    p.enabled = on;
                    p.budget = None;
                    // Off ends the search threads (on starts a new search below); a paused
                    // thread would outlive a node whose task is dropped without running its
                    // shutdown, and a runtime waits for its blocking threads when dropped.
                    if !on {
                        p.ctl.stop.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                if on {
                    self.restart_mining();
                }
            }
        }
    }

    fn status(&self) -> NodeStatus {
        let (height, hash) = self.chain.head();
        let finalized = match self.cfg.consensus {
            ConsensusConfig::Pos(_) => height,
            ConsensusConfig::Pow(_) => height.saturating_sub(POW_CONFIRMATIONS),
        };
        let target = self.best_peer_head();
        let sync = (target > height).then(|| {
            let rate = self.sync.started.map_or(0.0, |(t0, h0)| {
                let dt = t0.elapsed().as_secs_f64();
                if dt > 0.0 {
                    height.saturating_sub(h0) as f64 / dt
                } else {
                    0.0
                }
            });
            SyncProgress {
                height,
                target,
                percent: 100.0 * height as f64 / target.max(1) as f64,
                blocks_per_sec: rate,
            }
        });
        NodeStatus {
            index: self.index,
            id: self.key.id().to_string(),
            network: self.cfg.name.clone(),
            consensus: match self.cfg.consensus {
                ConsensusConfig::Pos(_) => "pos".into(),
                ConsensusConfig::Pow(_) => "pow".into(),
            },
            listen: self.ep.local_addr().to_string(),
            height,
            head_hash: hash.to_hex(),
            finalized,
            total_work: self.chain.head_entry().total_work.to_string(),
            protocol_version: self.chain.rules_at(height).version,
            peers: self.peers.keys().map(|p| p.to_string()).collect(),
            mempool: self.mempool.len(),
            mining: self.pow.as_ref().is_some_and(|p| p.enabled),
            sync,
            banned: self.banned.iter().map(|p| p.to_string()).collect(),
            rejected_blocks: self.rejected_blocks,
            last_rejection: self.last_rejection.clone(),
            evidence: self.pos.as_ref().map_or(0, |p| p.evidence.len()),
        }
    }

    /// Verify and pool transactions; newly admitted ones are gossiped to every peer but
    /// `from`.
    fn admit(
        &mut self,
        txs: Vec<Transaction>,
        from: Option<NodeId>,
    ) -> Vec<Result<Hash32, TxError>> {
        let network = self.chain.network();
        let algo = self.chain.head_algo();
        let rules = self.chain.rules_at(self.chain.head().0 + 1).exec();
        // Gossip brings most transactions several times: answer duplicates before paying
        // for signature checks. Results keep the input order.
        let mut out: Vec<Result<Hash32, TxError>> = Vec::with_capacity(txs.len());
        let mut todo = Vec::new();
        for t in txs {
            let id = t.id(algo);
            if self.mempool.contains(&id) {
                out.push(Err(TxError::Duplicate(id)));
            } else {
                todo.push((out.len(), id, t));
                out.push(Ok(id));
            }
        }
        let batch: Vec<Transaction> = todo.iter().map(|(_, _, t)| t.clone()).collect();
        let sig_ok = crate::tx::verify_signatures(&batch, network);
        let mut fresh = Vec::new();
        for ((slot, id, t), sig) in todo.into_iter().zip(sig_ok) {
            let res = sig.and_then(|()| t.check_shape(network)).and_then(|()| {
                self.mempool
                    .insert(
                        t.clone(),
                        id,
                        self.chain.state(),
                        &rules,
                        self.chain.modules(),
                    )
                    .map(|()| id)
            });
            if res.is_ok() {
                fresh.push(t);
            }
            if let Some(o) = out.get_mut(slot) {
                *o = res;
            }
        }
        if !fresh.is_empty() {
            self.broadcast_except(&PeerMsg::Txs(fresh), from);
            self.restart_mining_if_idle();
        }
        out
    }

    // ---- networking -----------------------------------------------------------------

    fn encode(&self, msg: &PeerMsg) -> Option<Bytes> {
        match codec::encode_body(msg, &self.limits) {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::error!("cannot encode peer message: {e}");
                None
            }
        }
    }

    fn send_to(&self, peer: &NodeId, msg: &PeerMsg) {
        let (Some(p), Some(b)) = (self.peers.get(peer), self.encode(msg)) else {
            return;
        };
        if p.out.try_send(b).is_err() {
            tracing::debug!(%peer, "peer queue full, message dropped");
        }
    }

    fn broadcast_except(&self, msg: &PeerMsg, except: Option<NodeId>) {
        if self.peers.is_empty() {
            return;
        }
        let Some(b) = self.encode(msg) else { return };
        for (id, p) in &self.peers {
            if Some(*id) != except && p.out.try_send(b.clone()).is_err() {
                tracing::debug!(peer = %id, "peer queue full, message dropped");
            }
        }
    }

    fn status_msg(&self) -> PeerMsg {
        let (head, head_hash) = self.chain.head();
        PeerMsg::Status {
            genesis: self.chain.genesis_hash(),
            head,
            head_hash,
            total_work: self.chain.head_entry().total_work,
        }
    }

    fn on_net(&mut self, ev: NetEvent) {
        match ev {
            NetEvent::Up {
                peer,
                conn,
                addr,
                sender,
                kill,
            } => {
                if self.banned.contains(&peer) {
                    tracing::info!(%peer, %addr, "refusing banned peer");
                    kill.cancel();
                    return;
                }
                let (out, mut rx) = mpsc::channel::<Bytes>(PEER_QUEUE);
                let k = kill.clone();
                tokio::spawn(async move {
                    loop {
                        let m = tokio::select! {
                            m = rx.recv() => m,
                            _ = k.cancelled() => None,
                        };
                        let Some(m) = m else { break };
                        if sender.send(m).await.is_err() {
                            break;
                        }
                    }
                });
                tracing::info!(%peer, %addr, "peer connected");
                if let Some(old) = self.peers.insert(
                    peer,
                    Peer {
                        conn,
                        out,
                        kill,
                        head: 0,
                        total_work: 0,
                    },
                ) {
                    // Keep the newest connection; the older one closes.
                    old.kill.cancel();
                }
                let st = self.status_msg();
                self.send_to(&peer, &st);
            }
            NetEvent::Down { peer, conn } => {
                if self.peers.get(&peer).is_some_and(|p| p.conn == conn) {
                    self.peers.remove(&peer);
                    tracing::info!(%peer, "peer disconnected");
                    if self.sync.inflight.is_some_and(|(p, _, _)| p == peer) {
                        self.sync.inflight = None;
                    }
                }
            }
            NetEvent::Msg { peer, conn, msg } => {
                if self.peers.get(&peer).is_none_or(|p| p.conn != conn) {
                    return;
                }
                self.on_msg(peer, *msg);
            }
        }
    }

    fn on_msg(&mut self, peer: NodeId, msg: PeerMsg) {
        match msg {
            PeerMsg::Status {
                genesis,
                head,
                total_work,
                ..
            } => {
                if genesis != self.chain.genesis_hash() {
                    self.penalise(&peer, &format!("peer is on another genesis {genesis}"));
                    return;
                }
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.head = head;
                    p.total_work = total_work;
                }
                self.maybe_sync();
            }
            PeerMsg::Txs(txs) => {
                self.admit(txs, Some(peer));
            }
            PeerMsg::Block(b) => self.on_pow_block(peer, b),
            PeerMsg::Consensus(m) => self.on_consensus(m),
            PeerMsg::GetBlocks { from, max } => {
                let max = max.min(MAX_BLOCKS_PER_REQUEST);
                let mut out = Vec::new();
                for n in from..from.saturating_add(u64::from(max)) {
                    match (self.chain.block_at(n), self.chain.cert_bytes(n)) {
                        (Ok(Some(b)), Ok(c)) => out.push((b, c)),
                        _ => break,
                    }
                }
                self.send_to(&peer, &PeerMsg::Blocks(out));
            }
            PeerMsg::Blocks(blocks) => self.on_blocks(peer, blocks),
        }
    }

    /// Disconnect and ban a peer that broke the protocol.
    fn penalise(&mut self, peer: &NodeId, why: &str) {
        tracing::warn!(%peer, "penalising peer: {why}");
        self.banned.insert(*peer);
        if let Some(p) = self.peers.remove(peer) {
            p.kill.cancel();
        }
        if self.sync.inflight.is_some_and(|(p, _, _)| p == *peer) {
            self.sync.inflight = None;
        }
    }

    fn reject(&mut self, what: String) {
        self.rejected_blocks += 1;
        tracing::warn!("{what}");
        self.last_rejection = Some(what);
    }

    fn best_peer_head(&self) -> u64 {
        self.peers.values().map(|p| p.head).max().unwrap_or(0)
    }

    // ---- sync -----------------------------------------------------------------------

    /// Ask the best peer for the next blocks if we are behind and nothing is in flight.
    fn maybe_sync(&mut self) {
        if self.sync.inflight.is_some() {
            return;
        }
        let (height, _) = self.chain.head();
        let my_work = self.chain.head_entry().total_work;
        let pow = self.pow.is_some();
        let best = self
            .peers
            .iter()
            .filter(|(_, p)| {
                if pow {
                    p.total_work > my_work
                } else {
                    p.head > height
                }
            })
            .max_by_key(|(_, p)| (p.total_work, p.head))
            .map(|(id, p)| (*id, p.head));
        let Some((peer, target)) = best else {
            self.sync.started = None;
            return;
        };
        self.request_blocks(peer, height + 1, target);
    }

    fn request_blocks(&mut self, peer: NodeId, from: u64, target: u64) {
        if self.sync.started.is_none() {
            self.sync.started = Some((Instant::now(), self.chain.head().0));
        }
        self.sync.target = target;
        self.sync.inflight = Some((peer, Instant::now(), from));
        self.send_to(
            &peer,
            &PeerMsg::GetBlocks {
                from,
                max: MAX_BLOCKS_PER_REQUEST,
            },
        );
    }

    fn on_blocks(&mut self, peer: NodeId, blocks: Vec<(Block, Option<Vec<u8>>)>) {
        let Some((asked, _, from)) = self.sync.inflight else {
            return;
        };
        if asked != peer {
            return;
        }
        self.sync.inflight = None;
        let count = blocks.len();
        let mut unknown_parent = false;
        for (b, cert) in blocks {
            let number = b.header.number;
            let res = if self.pos.is_some() {
                self.import_final(b, cert)
            } else {
                self.import_pow(b)
            };
            match res {
                Ok(()) => {}
                Err(BlockError::UnknownParent(_)) if self.pow.is_some() => {
                    unknown_parent = true;
                    break;
                }
                Err(e) if e.is_invalid_block() || matches!(e, BlockError::BadCertificate(_)) => {
                    self.reject(format!("sync block {number} from {peer} refused: {e}"));
                    self.penalise(&peer, &format!("served invalid block {number}: {e}"));
                    return;
                }
                Err(e) => {
                    tracing::debug!("sync block {number} not applied: {e}");
                    break;
                }
            }
        }
        let (height, _) = self.chain.head();
        if unknown_parent && from > 1 {
            // PoW fork: walk back towards the common ancestor.
            let back = (height + 1)
                .min(from)
                .saturating_sub(u64::from(MAX_BLOCKS_PER_REQUEST))
                .max(1);
            let target = self.peers.get(&peer).map_or(0, |p| p.head);
            self.request_blocks(peer, back, target);
            return;
        }
        let now = Instant::now();
        if self
            .sync
            .last_log
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            self.sync.last_log = Some(now);
            let st = self.status();
            if let Some(s) = st.sync {
                tracing::info!(
                    "sync: height {}/{} ({:.1}%), {:.0} blocks/s",
                    s.height,
                    s.target,
                    s.percent,
                    s.blocks_per_sec
                );
            }
        }
        if count > 0 {
            self.after_head_change();
        }
        self.maybe_sync();
        if self.sync.inflight.is_none() && count > 0 {
            tracing::info!(height, "sync: caught up");
        }
    }

    fn on_tick(&mut self) {
        if let Some((peer, at, _)) = self.sync.inflight {
            if at.elapsed() > SYNC_TIMEOUT {
                tracing::info!(%peer, "sync request timed out");
                self.sync.inflight = None;
            }
        }
        self.maybe_sync();
    }

    // ---- commit paths ---------------------------------------------------------------

    fn publish(&mut self, committed: Vec<Committed>) {
        if committed.is_empty() {
            return;
        }
        let algo = self.chain.head_algo();
        let ids: Vec<Hash32> = committed
            .iter()
            .flat_map(|c| c.block.tx_ids(algo))
            .collect();
        self.mempool.on_commit(&ids, self.chain.state());
        for c in committed {
            // No subscriber is fine.
            let _ = self.blocks_tx.send(c);
        }
    }

    /// PoS: verify a certificate and commit a final block on the head.
    fn import_final(&mut self, b: Block, cert: Option<Vec<u8>>) -> Result<(), BlockError> {
        let number = b.header.number;
        let (height, _) = self.chain.head();
        if number <= height {
            return Ok(());
        }
        let cert_bytes = cert.ok_or_else(|| {
            BlockError::BadCertificate(format!("block {number} came without a certificate"))
        })?;
        let cert: CommitCert = rmp_serde::from_slice(&cert_bytes)
            .map_err(|e| BlockError::BadCertificate(format!("undecodable: {e}")))?;
        let hash = b.hash(self.chain.rules_at(number).hash);
        let Some(pos) = &self.pos else {
            return Err(BlockError::BadCertificate("not a PoS node".into()));
        };
        if cert.height != number {
            return Err(BlockError::BadCertificate(format!(
                "certificate height {} for block {number}",
                cert.height
            )));
        }
        cert.verify(self.chain.network(), pos.engine.validators(), &hash)
            .map_err(BlockError::BadCertificate)?;
        let c = self.chain.commit_final(b, cert_bytes)?;
        self.publish(vec![c]);
        Ok(())
    }

    fn import_pow(&mut self, b: Block) -> Result<(), BlockError> {
        let (imp, committed) = self.chain.import(b)?;
        if let Imported::NewHead { reverted, applied } = imp {
            if reverted > 0 {
                tracing::info!(reverted, applied, "reorg to a heavier chain");
            }
        }
        self.publish(committed);
        Ok(())
    }

    /// After the head moved: tell peers, restart mining or the consensus height.
    fn after_head_change(&mut self) {
        let st = self.status_msg();
        self.broadcast_except(&st, None);
        if self.pos.is_some() {
            let next = self.chain.head().0 + 1;
            if self.pos.as_ref().is_some_and(|p| p.engine.height() < next) {
                self.pos_start_height();
            }
        }
        self.restart_mining();
    }

    // ---- PoW ------------------------------------------------------------------------

    fn on_pow_block(&mut self, peer: NodeId, b: Block) {
        let number = b.header.number;
        let before = self.chain.head();
        match self.import_pow(b.clone()) {
            Ok(()) => {
                if self.chain.head() != before {
                    self.broadcast_except(&PeerMsg::Block(b), Some(peer));
                    self.after_head_change();
                }
            }
            Err(BlockError::UnknownParent(_)) => {
                if self.sync.inflight.is_none() {
                    let from = number
                        .saturating_sub(u64::from(MAX_BLOCKS_PER_REQUEST) / 2)
                        .max(1);
                    self.request_blocks(peer, from, number);
                }
            }
            Err(e) if e.is_invalid_block() => {
                self.reject(format!("block {number} from {peer} refused: {e}"));
                self.penalise(&peer, &format!("sent invalid block {number}: {e}"));
            }
            // Refused, not stored, not held against the peer: its clock may be ahead.
            Err(e @ BlockError::TimestampTooFarAhead { .. }) => {
                self.reject(format!("block {number} from {peer} refused: {e}"));
            }
            Err(e) => tracing::debug!("block {number} from {peer} not applied: {e}"),
        }
    }

    fn on_mined(&mut self, generation: u64, b: Block) {
        // A block found just before mining was paused is dropped too: once `set_mining(false)`
        // has been handled, the node's own miner adds nothing.
        if self
            .pow
            .as_ref()
            .is_none_or(|p| !p.enabled || p.generation != generation)
        {
            return;
        }
        let number = b.header.number;
        match self.import_pow(b.clone()) {
            Ok(()) => {
                tracing::info!(number, txs = b.txs.len(), "mined block");
                if let Some(p) = &mut self.pow {
                    if let Some(left) = p.budget.as_mut() {
                        *left = left.saturating_sub(1);
                        if *left == 0 {
                            // The budget is spent: pause before the head change below
                            // would start the next search.
                            p.budget = None;
                            p.enabled = false;
                            p.ctl.stop.store(true, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                }
                self.broadcast_except(&PeerMsg::Block(b), None);
                self.after_head_change();
            }
            Err(e) => {
                tracing::warn!("own mined block {number} refused: {e}");
                self.restart_mining();
            }
        }
    }

    fn restart_mining_if_idle(&mut self) {
        // Templates are rebuilt on every head change; new transactions wait for the next
        // block unless nothing is being mined.
        if self
            .pow
            .as_ref()
            .is_some_and(|p| p.enabled && p.generation == 0)
        {
            self.restart_mining();
        }
    }

    fn restart_mining(&mut self) {
        let Some(p) = &mut self.pow else { return };
        p.ctl.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if !p.enabled {
            return;
        }
        p.generation += 1;
        let generation = p.generation;
        let ctl = MinerControl::default();
        p.ctl = ctl.clone();
        let threads = p.threads;
        let mined_tx = p.mined_tx.clone();
        let number = self.chain.head().0 + 1;
        let rules = self.chain.rules_at(number);
        let cands = self
            .mempool
            .select(rules.max_block_txs as usize, rules.max_block_bytes);
        let (template, _) = self.chain.build_block(cands, &self.key, now_ms());
        let key = self.key.clone();
        let network = self.chain.network();
        tokio::task::spawn_blocking(move || {
            if let Some(b) = miner::mine(&template, rules.hash, network, &key, threads, &ctl) {
                // The node may have moved on; a stale block is dropped there.
                let _ = mined_tx.blocking_send((generation, b));
            }
        });
    }

    // ---- PoS ------------------------------------------------------------------------

    fn pos_start_height(&mut self) {
        let next = self.chain.head().0 + 1;
        let Some(p) = &mut self.pos else { return };
        p.timers.clear();
        p.pending_build = None;
        let mut actions = p.engine.start_height(next);
        let buffered: Vec<ConsensusWire> = {
            let later = p.future.split_off(&(next + 1));
            let now = std::mem::replace(&mut p.future, later);
            now.into_iter()
                .filter(|(h, _)| *h == next)
                .flat_map(|(_, v)| v)
                .collect()
        };
        p.future_len = p.future.values().map(Vec::len).sum();
        self.apply_pos(std::mem::take(&mut actions));
        for m in buffered {
            self.on_consensus(m);
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        let Some(p) = &mut self.pos else { return };
        let due: Vec<Timeout> = p
            .timers
            .iter()
            .filter(|(_, at)| *at <= now)
            .map(|(t, _)| *t)
            .collect();
        p.timers.retain(|(_, at)| *at > now);
        let build = p.pending_build.filter(|(_, _, at)| *at <= now);
        if build.is_some() {
            p.pending_build = None;
        }
        if let Some((height, round, _)) = build {
            if let Some(a) = self.build_proposal(height, round) {
                self.apply_pos(a);
            }
        }
        for t in due {
            let a = match &mut self.pos {
                Some(p) => p.engine.on_timeout(t),
                None => return,
            };
            self.apply_pos(a);
        }
    }

    fn on_consensus(&mut self, m: ConsensusWire) {
        let next = self.chain.head().0 + 1;
        let h = m.height();
        let Some(p) = &mut self.pos else { return };
        if h < next {
            return;
        }
        if h > next {
            if h <= next + 8 && p.future_len < MAX_FUTURE_MSGS {
                p.future.entry(h).or_default().push(m);
                p.future_len += 1;
            }
            return;
        }
        let actions = match m {
            ConsensusWire::Vote { vote, signature } => p.engine.on_vote(vote, signature),
            ConsensusWire::Proposal {
                height,
                round,
                pol_round,
                block,
                signature,
            } => {
                // Malachite marks proposals valid in this mode: validate the block here.
                let hash = match self.chain.validate_candidate(&block) {
                    Ok(h) => h,
                    Err(e) => {
                        self.reject(format!("proposal at height {height} refused: {e}"));
                        return;
                    }
                };
                // Signed by the round's proposer, who re-proposes another validator's block
                // after a polka for it in an earlier round.
                let Some(proposer) = self
                    .pos
                    .as_ref()
                    .and_then(|p| p.engine.proposer_of(height, round))
                else {
                    return;
                };
                if !verify_proposal_signature(
                    self.chain.network(),
                    height,
                    round,
                    pol_round,
                    &hash,
                    &proposer,
                    &signature,
                ) {
                    self.reject(format!(
                        "proposal at height {height} round {round} has a bad signature"
                    ));
                    return;
                }
                match &mut self.pos {
                    Some(p) => p
                        .engine
                        .on_proposal(height, round, pol_round, proposer, block, hash, signature),
                    None => return,
                }
            }
        };
        self.apply_pos(actions);
    }

    fn apply_pos(&mut self, actions: Vec<PosAction>) {
        let mut work: std::collections::VecDeque<PosAction> = actions.into();
        while let Some(a) = work.pop_front() {
            let Some(p) = &mut self.pos else { return };
            match a {
                PosAction::Broadcast(m) => {
                    self.broadcast_except(&PeerMsg::Consensus(m), None);
                }
                PosAction::Schedule(t, d) => {
                    p.timers.retain(|(x, _)| *x != t);
                    p.timers.push((t, Instant::now() + d));
                }
                PosAction::Cancel(t) => p.timers.retain(|(x, _)| *x != t),
                PosAction::CancelAll => p.timers.clear(),
                PosAction::BuildValue { height, round } => {
                    // Pace blocks: not before the block interval since the parent. The
                    // build always goes through the event loop, so requests and peers are
                    // served between blocks even when building takes longer than that.
                    let parent_ms = self.chain.head_entry().timestamp_ms;
                    let wait = (parent_ms + self.cfg.block_interval_ms).saturating_sub(now_ms());
                    let wait = wait.min(self.cfg.block_interval_ms);
                    p.pending_build =
                        Some((height, round, Instant::now() + Duration::from_millis(wait)));
                }
                PosAction::Decided { block, cert } => {
                    let number = block.header.number;
                    let bytes = encode_canonical(&cert);
                    match self.import_final((*block).clone(), Some(bytes)) {
                        Ok(()) => {
                            tracing::debug!(number, txs = block.txs.len(), "finalized block");
                            // Starting the next height replays buffered messages, which
                            // may decide again; the queue continues after that.
                            self.after_head_change();
                            // What the old height still queued (timers, rounds) is moot.
                            work.retain(|a| {
                                matches!(a, PosAction::Broadcast(_) | PosAction::Evidence(_))
                            });
                        }
                        Err(e) => self.reject(format!("decided block {number} not committed: {e}")),
                    }
                }
                PosAction::Evidence(e) => {
                    tracing::warn!(validator = %e.validator, "equivocation evidence recorded");
                    p.evidence.push(e);
                }
            }
        }
    }

    fn build_proposal(&mut self, height: u64, round: Round) -> Option<Vec<PosAction>> {
        if height != self.chain.head().0 + 1 {
            return None;
        }
        let rules = self.chain.rules_at(height);
        let cands = self
            .mempool
            .select(rules.max_block_txs as usize, rules.max_block_bytes);
        let (b, skipped) = self.chain.build_block(cands, &self.key, now_ms());
        for id in &skipped {
            self.mempool.drop_with_successors(id);
        }
        let hash = b.hash(rules.hash);
        let p = self.pos.as_mut()?;
        Some(p.engine.propose(height, round, b, hash))
    }
}
