//! The adapter side: serve any [`Adapter`] to hubs over an authenticated endpoint.

use crate::wire::{Answer, Call, Control, Describe, Request, Response, PROTOCOL_VERSION};
use async_trait::async_trait;
use isthmus_adapter_api::{Adapter, AdapterError};
use isthmus_core::{codec, WireLimits};
use isthmus_transport::{ConnSender, Connection, Endpoint};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Calls one connection may have running at once; further requests wait to be read, so a
/// hub that floods feels backpressure instead of growing our memory.
pub const MAX_IN_FLIGHT: usize = 64;

/// Drives a test platform for the `control` calls (mine, move time, reorg). Hosts of real
/// chains pass none, and `control` calls are answered `unsupported`.
#[async_trait]
pub trait ControlHandler: Send + Sync + 'static {
    async fn control(&self, control: Control) -> Result<Answer, AdapterError>;
}

/// Answer one call with `adapter`.
pub async fn dispatch(
    adapter: &dyn Adapter,
    control: Option<&dyn ControlHandler>,
    call: Call,
) -> Result<Answer, AdapterError> {
    Ok(match call {
        Call::Describe => Answer::Describe(Describe {
            protocol: PROTOCOL_VERSION,
            descriptor: adapter.descriptor().clone(),
        }),
        Call::Health => Answer::Health(adapter.health().await?),
        Call::Heads => Answer::Heads(adapter.heads().await?),
        Call::EventsSince { after, limit } => {
            Answer::Events(adapter.events_since(after, limit).await?)
        }
        Call::Submit { tx } => Answer::TxId(adapter.submit(tx).await?),
        Call::TxStatus { tx } => Answer::TxStatus(adapter.tx_status(&tx).await?),
        Call::Evidence { tx } => Answer::Evidence(adapter.evidence(&tx).await?),
        Call::VerifyEvidence { tx, evidence } => {
            Answer::Verified(adapter.verify_evidence(&tx, &evidence).await?)
        }
        Call::Balance { account, asset } => {
            Answer::Balance(adapter.balance(&account, &asset).await?)
        }
        Call::Lock { req } => Answer::TxId(adapter.lock(&req).await?),
        Call::Release { req } => Answer::TxId(adapter.release(&req).await?),
        Call::Refund { req } => Answer::TxId(adapter.refund(&req).await?),
        Call::Claim { req } => Answer::TxId(adapter.claim(&req).await?),
        Call::LockState { lock_id } => Answer::LockState(adapter.lock_state(&lock_id).await?),
        Call::Control { control: c } => match control {
            Some(h) => h.control(c).await?,
            None => {
                return Err(AdapterError::Unsupported {
                    network: adapter.descriptor().network,
                    op: "control".into(),
                })
            }
        },
    })
}

/// Serve `adapter` on `endpoint` until `shutdown` resolves: every authenticated connection
/// (the endpoint's allowlist decides which hubs may connect) gets its calls answered,
/// concurrently up to [`MAX_IN_FLIGHT`] per connection. Shuts the endpoint down on return.
pub async fn serve_adapter(
    adapter: Arc<dyn Adapter>,
    control: Option<Arc<dyn ControlHandler>>,
    endpoint: Endpoint,
    shutdown: impl Future<Output = ()>,
) {
    let limits = endpoint.config().limits;
    endpoint
        .serve_each(shutdown, |conn| {
            tracing::info!(hub = %conn.remote_id(), addr = %conn.remote_addr(), "hub connected");
            serve_connection(adapter.clone(), control.clone(), conn, limits)
        })
        .await;
    endpoint.shutdown().await;
}

async fn serve_connection(
    adapter: Arc<dyn Adapter>,
    control: Option<Arc<dyn ControlHandler>>,
    mut conn: Connection,
    limits: WireLimits,
) {
    let sender = conn.sender();
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut calls = JoinSet::new();
    while let Some(frame) = conn.recv().await {
        let bytes = match frame {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(hub = %conn.remote_id(), %e, "connection failed");
                break;
            }
        };
        let req: Request = match codec::decode_body(&bytes, &limits) {
            Ok(r) => r,
            Err(e) => {
                // Without a readable id the answer goes to id 0; the hub treats it as a
                // protocol violation of its own making.
                let resp = Response::from_result(
                    0,
                    Err(AdapterError::InvalidRequest {
                        reason: format!("request does not decode: {e}"),
                    }),
                );
                reply(&sender, &resp).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let (adapter, control, sender) = (adapter.clone(), control.clone(), sender.clone());
        calls.spawn(async move {
            let result = dispatch(adapter.as_ref(), control.as_deref(), req.call).await;
            reply(&sender, &Response::from_result(req.id, result)).await;
            drop(permit);
        });
        while calls.try_join_next().is_some() {}
    }
    calls.abort_all();
}

async fn reply(sender: &ConnSender, resp: &Response) {
    let Err(e) = sender.send_msg(resp).await else {
        return;
    };
    tracing::warn!(id = resp.id, %e, "could not send an answer");
    // An answer too large for a frame becomes an error answer, so the hub does not wait
    // for its timeout; a closed connection has nobody left to tell.
    if !matches!(e, isthmus_transport::TransportError::Closed(_)) {
        let fallback = Response::from_result(
            resp.id,
            Err(AdapterError::InvalidRequest {
                reason: format!("the answer to request {} cannot be sent: {e}", resp.id),
            }),
        );
        let _ = sender.send_msg(&fallback).await;
    }
}
