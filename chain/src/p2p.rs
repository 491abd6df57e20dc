//! Peer-to-peer plumbing over `isthmus-transport`: the wire messages between nodes, and
//! the tasks that dial configured peers, accept inbound connections and forward every
//! decoded message to the node task.
//!
//! These tasks never touch the chain: they only move bytes and report connection events.
//! Every connection is authenticated by the transport (and refused there when a private
//! network's allowlist does not contain the peer).

use crate::block::Block;
use crate::pos::ConsensusWire;
use crate::tx::Transaction;
use isthmus_core::{Hash32, NodeId};
use isthmus_transport::{ConnSender, Connection, Endpoint};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Most blocks served in one [`PeerMsg::Blocks`] answer.
pub const MAX_BLOCKS_PER_REQUEST: u32 = 128;

/// Messages between nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PeerMsg {
    /// Sent on connect and after every new head.
    Status {
        genesis: Hash32,
        head: u64,
        head_hash: Hash32,
        total_work: u128,
    },
    /// Transactions for the mempool (relayed once when newly admitted).
    Txs(Vec<Transaction>),
    /// PoW: a newly mined or newly adopted block.
    Block(Block),
    /// PoS: a proposal or a vote.
    Consensus(ConsensusWire),
    /// Ask for canonical blocks `from..from+max`.
    GetBlocks { from: u64, max: u32 },
    /// Canonical blocks with their commit certificates (PoS), oldest first.
    Blocks(Vec<(Block, Option<Vec<u8>>)>),
}

/// What connection tasks report to the node.
#[derive(Debug)]
pub enum NetEvent {
    Up {
        peer: NodeId,
        conn: u64,
        addr: SocketAddr,
        sender: ConnSender,
        /// Cancel to drop this connection (a misbehaving peer).
        kill: CancellationToken,
    },
    Msg {
        peer: NodeId,
        conn: u64,
        msg: Box<PeerMsg>,
    },
    Down {
        peer: NodeId,
        conn: u64,
    },
}

/// Shared connection bookkeeping: ids that tell a peer's connections apart.
#[derive(Debug, Default)]
pub struct Net {
    next_conn: AtomicU64,
}

impl Net {
    fn conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }
}

/// Read one connection until it closes, forwarding messages to the node.
async fn serve(
    net: Arc<Net>,
    mut conn: Connection,
    events: mpsc::Sender<NetEvent>,
    stop: CancellationToken,
) {
    let peer = conn.remote_id();
    let id = net.conn_id();
    let kill = stop.child_token();
    let up = NetEvent::Up {
        peer,
        conn: id,
        addr: conn.remote_addr(),
        sender: conn.sender(),
        kill: kill.clone(),
    };
    if events.send(up).await.is_err() {
        return;
    }
    loop {
        let next = tokio::select! {
            m = conn.recv_msg::<PeerMsg>() => m,
            _ = kill.cancelled() => break,
        };
        match next {
            Some(Ok(msg)) => {
                let ev = NetEvent::Msg {
                    peer,
                    conn: id,
                    msg: Box::new(msg),
                };
                if events.send(ev).await.is_err() {
                    break;
                }
            }
            Some(Err(e)) => {
                tracing::debug!(%peer, "connection error: {e}");
                break;
            }
            None => break,
        }
    }
    conn.close("closing").await;
    // The node may already be gone at shutdown; nothing else to tell.
    let _ = events.send(NetEvent::Down { peer, conn: id }).await;
}

/// Accept inbound connections until `stop`.
pub fn spawn_acceptor(
    net: Arc<Net>,
    ep: Arc<Endpoint>,
    events: mpsc::Sender<NetEvent>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let c = tokio::select! {
                c = ep.accept() => c,
                _ = stop.cancelled() => None,
            };
            let Some(c) = c else { break };
            tokio::spawn(serve(net.clone(), c, events.clone(), stop.clone()));
        }
    })
}

/// Keep one outbound connection to `addr` alive: dial, serve until it drops, redial after
/// a short pause, until `stop`.
pub fn spawn_dialer(
    net: Arc<Net>,
    ep: Arc<Endpoint>,
    addr: SocketAddr,
    events: mpsc::Sender<NetEvent>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let redial = isthmus_core::Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
        let mut failures = 0u32;
        while !stop.is_cancelled() {
            let dial = tokio::select! {
                r = ep.connect(addr, None) => Some(r),
                _ = stop.cancelled() => None,
            };
            let pause = match dial {
                None => break,
                Some(Ok(c)) => {
                    failures = 0;
                    serve(net.clone(), c, events.clone(), stop.clone()).await;
                    Duration::from_millis(100)
                }
                Some(Err(e)) => {
                    tracing::debug!(%addr, "dial failed: {e}");
                    failures = failures.saturating_add(1);
                    redial.delay(failures - 1)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.cancelled() => break,
            }
        }
    })
}
