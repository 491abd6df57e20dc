//! The node's local status endpoint: a line-based TCP protocol, one JSON request per line,
//! one JSON answer per line. Meant for loopback (tests, `hub net status`, `hub tx`), not for
//! the public API.
//!
//! Requests: `{"cmd":"status"}`, `{"cmd":"account","id":ID}`, `{"cmd":"submit","txs":[HEX..]}`
//! (msgpack-encoded signed transactions), `{"cmd":"block","number":N}`,
//! `{"cmd":"tx","id":HEX}`, `{"cmd":"cert","number":N}`, `{"cmd":"connect","addr":A}`,
//! `{"cmd":"mine","on":BOOL}`, `{"cmd":"escrow","lock_id":HEX}` (an escrow of the native
//! escrow module, or null), `{"cmd":"state","key":HEX}` (a raw state entry as hex, or null).
//! Answers are `{"ok":...}` or `{"error":"..."}`.

use anyhow::Context as _;
use isthmus_chain::config::parse_identity;
use isthmus_chain::escrow::{self, EscrowLock, EscrowStatus};
use isthmus_chain::node::NodeHandle;
use isthmus_chain::Transaction;
use isthmus_core::Hash32;
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Longest request line accepted (a batch of signed transactions).
const MAX_LINE: usize = 64 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
enum Req {
    Status,
    Account { id: String },
    Submit { txs: Vec<String> },
    Block { number: u64 },
    Tx { id: String },
    Cert { number: u64 },
    Connect { addr: SocketAddr },
    Mine { on: bool },
    Escrow { lock_id: String },
    State { key: String },
}

/// Bind and serve until `stop`. Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    node: NodeHandle,
    stop: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind status endpoint {addr}"))?;
    let bound = l.local_addr()?;
    tokio::spawn(async move {
        loop {
            let c = tokio::select! {
                c = l.accept() => c,
                _ = stop.cancelled() => break,
            };
            match c {
                Ok((s, _)) => {
                    tokio::spawn(client(s, node.clone(), stop.clone()));
                }
                Err(e) => tracing::warn!("status accept: {e}"),
            }
        }
    });
    Ok(bound)
}

async fn client(s: TcpStream, node: NodeHandle, stop: CancellationToken) {
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r).take(MAX_LINE as u64);
    let mut line = String::new();
    loop {
        line.clear();
        r.set_limit(MAX_LINE as u64);
        let n = tokio::select! {
            n = r.read_line(&mut line) => n,
            _ = stop.cancelled() => break,
        };
        match n {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let answer = match serde_json::from_str::<Req>(line.trim()) {
            Ok(req) => match handle(req, &node).await {
                Ok(v) => json!({ "ok": v }),
                Err(e) => json!({ "error": format!("{e:#}") }),
            },
            Err(e) => json!({ "error": format!("bad request: {e}") }),
        };
        let mut out = answer.to_string();
        out.push('\n');
        if w.write_all(out.as_bytes()).await.is_err() {
            break;
        }
    }
}

async fn handle(req: Req, node: &NodeHandle) -> anyhow::Result<Value> {
    Ok(match req {
        Req::Status => serde_json::to_value(node.status().await?)?,
        Req::Account { id } => {
            let id = parse_identity(&id).map_err(|e| anyhow::anyhow!("account `{id}`: {e}"))?;
            let a = node.account(id).await?;
            json!({ "balance": a.balance, "nonce": a.nonce })
        }
        Req::Submit { txs } => {
            let mut decoded = Vec::with_capacity(txs.len());
            for (i, t) in txs.iter().enumerate() {
                let raw = hex::decode(t).with_context(|| format!("transaction {i} is not hex"))?;
                let tx: Transaction = rmp_serde::from_slice(&raw)
                    .with_context(|| format!("transaction {i} does not decode"))?;
                decoded.push(tx);
            }
            let res = node.submit(decoded).await?;
            Value::Array(
                res.into_iter()
                    .map(|r| match r {
                        Ok(id) => json!({ "id": id.to_hex() }),
                        Err(e) => json!({ "rejected": e.to_string(), "code": e.code() }),
                    })
                    .collect(),
            )
        }
        Req::Block { number } => match node.block_at(number).await? {
            None => Value::Null,
            Some(b) => {
                let algo = node.config().rules_at(b.header.number).hash;
                json!({
                    "hash": b.hash(algo).to_hex(),
                    "number": b.header.number,
                    "version": b.header.version,
                    "prev_hash": b.header.prev_hash.to_hex(),
                    "proposer": b.header.proposer.to_string(),
                    "timestamp_ms": b.header.timestamp_ms,
                    "tx_count": b.txs.len(),
                    "txs": b.txs.iter().map(|t| {
                        json!({"from": t.body.from.to_string(), "nonce": t.body.nonce})
                    }).collect::<Vec<_>>(),
                })
            }
        },
        Req::Tx { id } => {
            let id = Hash32::from_hex(&id).map_err(|e| anyhow::anyhow!("tx id `{id}`: {e}"))?;
            match node.tx_proof(id).await? {
                None => Value::Null,
                Some((header, proof)) => {
                    let algo = node.config().rules_at(header.number).hash;
                    let ok = proof.verify(algo, id, &header.tx_root).is_ok();
                    json!({ "number": header.number, "proof_verifies": ok })
                }
            }
        }
        Req::Cert { number } => match node.cert(number).await? {
            None => Value::Null,
            Some(c) => json!({
                "height": c.height,
                "round": c.round,
                "block_hash": c.block_hash.to_hex(),
                "signers": c.signatures.iter().map(|(id, _)| id.to_string()).collect::<Vec<_>>(),
            }),
        },
        Req::Connect { addr } => {
            node.connect(addr).await?;
            Value::Bool(true)
        }
        Req::Mine { on } => {
            node.set_mining(on).await?;
            Value::Bool(true)
        }
        Req::State { key } => {
            let key = hex::decode(&key).with_context(|| format!("state key `{key}` is not hex"))?;
            match node.state_get(key).await? {
                None => Value::Null,
                Some(v) => Value::String(hex::encode(v)),
            }
        }
        Req::Escrow { lock_id } => {
            let id = Hash32::from_hex(&lock_id)
                .map_err(|e| anyhow::anyhow!("lock id `{lock_id}`: {e}"))?;
            match node.state_get(escrow::lock_state_key(&id)).await? {
                None => Value::Null,
                Some(raw) => {
                    let l = EscrowLock::decode(&raw).map_err(|e| anyhow::anyhow!("{e}"))?;
                    let (status, tx) = match &l.status {
                        EscrowStatus::Locked => ("locked", None),
                        EscrowStatus::Released { tx } => ("released", Some(tx)),
                        EscrowStatus::Refunded { tx } => ("refunded", Some(tx)),
                        EscrowStatus::Claimed { tx, .. } => ("claimed", Some(tx)),
                    };
                    json!({
                        "status": status,
                        "settle_tx": tx.map(|t| t.to_hex()),
                        "owner": l.owner.to_string(),
                        "beneficiary": l.beneficiary.to_string(),
                        "amount": l.amount,
                        "timeout_ms": l.timeout_ms,
                        "lock_tx": l.lock_tx.to_hex(),
                        "height": l.height,
                    })
                }
            }
        }
    })
}
