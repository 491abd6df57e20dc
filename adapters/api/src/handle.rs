//! A cheap, cloneable handle to an adapter owned by one task.
//!
//! Each call is a request with a oneshot reply, sent over a bounded queue to the task that
//! owns the adapter (its connection, nonce manager, caches). The task runs at most
//! `in_flight` requests at once (1 serialises them, which is what a nonce manager wants),
//! and stops when every handle is dropped or its shutdown future resolves; calls then fail
//! with a retryable [`AdapterError::Unavailable`].

use crate::adapter::{
    Adapter, ClaimRequest, LockRequest, OnChainLock, RefundRequest, ReleaseRequest,
};
use crate::error::AdapterError;
use crate::evidence::{Evidence, Verified};
use crate::types::{Checkpoint, EventPage, Heads, Health, PlatformDescriptor, SignedTx, TxStatus};
use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use isthmus_lock_contracts::{Address, Amount, AssetId, LockId, TxId};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

type Job = Box<dyn FnOnce(Arc<dyn Adapter>) -> BoxFuture<'static, ()> + Send>;

/// Queue and concurrency bounds of the owner task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandleConfig {
    /// Requests waiting for the owner task; callers wait when it is full.
    pub queue: usize,
    /// Requests the owner task runs concurrently.
    pub in_flight: usize,
}

impl Default for HandleConfig {
    fn default() -> Self {
        HandleConfig {
            queue: 256,
            in_flight: 8,
        }
    }
}

/// The handle callers hold. Clone it freely.
#[derive(Clone)]
pub struct AdapterHandle {
    descriptor: Arc<PlatformDescriptor>,
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for AdapterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AdapterHandle({} / network {})",
            self.descriptor.name, self.descriptor.network
        )
    }
}

impl AdapterHandle {
    /// Move `adapter` into a new owner task. Must be called within a tokio runtime.
    pub fn spawn<A: Adapter>(
        adapter: A,
        config: HandleConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> (AdapterHandle, JoinHandle<()>) {
        let descriptor = Arc::new(adapter.descriptor().clone());
        let (jobs, rx) = mpsc::channel(config.queue.max(1));
        let task = tokio::spawn(own(
            Arc::new(adapter),
            rx,
            config.in_flight.max(1),
            shutdown,
        ));
        (AdapterHandle { descriptor, jobs }, task)
    }

    async fn call<T, F>(&self, op: F) -> Result<T, AdapterError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn Adapter>) -> BoxFuture<'static, Result<T, AdapterError>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |adapter| {
            async move {
                // The caller may have given up; its answer is then simply dropped.
                let _ = reply.send(op(adapter).await);
            }
            .boxed()
        });
        let stopped = || AdapterError::Unavailable {
            network: self.descriptor.network,
            reason: "adapter task stopped".to_owned(),
        };
        self.jobs.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn own(
    adapter: Arc<dyn Adapter>,
    mut jobs: mpsc::Receiver<Job>,
    in_flight: usize,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut running = FuturesUnordered::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            job = jobs.recv(), if running.len() < in_flight => match job {
                Some(job) => running.push(job(adapter.clone())),
                None => break,
            },
            Some(()) = running.next(), if !running.is_empty() => {}
        }
    }
    // Requests still running are dropped with their reply channels: their callers get a
    // retryable `Unavailable`, and adapters' idempotent operations make the retry safe.
}

#[async_trait]
impl Adapter for AdapterHandle {
    fn descriptor(&self) -> &PlatformDescriptor {
        &self.descriptor
    }

    async fn health(&self) -> Result<Health, AdapterError> {
        self.call(|a| async move { a.health().await }.boxed()).await
    }

    async fn heads(&self) -> Result<Heads, AdapterError> {
        self.call(|a| async move { a.heads().await }.boxed()).await
    }

    async fn events_since(&self, after: Checkpoint, limit: u32) -> Result<EventPage, AdapterError> {
        self.call(move |a| async move { a.events_since(after, limit).await }.boxed())
            .await
    }

    async fn submit(&self, tx: SignedTx) -> Result<TxId, AdapterError> {
        self.call(move |a| async move { a.submit(tx).await }.boxed())
            .await
    }

    async fn tx_status(&self, tx: &TxId) -> Result<TxStatus, AdapterError> {
        let tx = tx.clone();
        self.call(move |a| async move { a.tx_status(&tx).await }.boxed())
            .await
    }

    async fn evidence(&self, tx: &TxId) -> Result<Evidence, AdapterError> {
        let tx = tx.clone();
        self.call(move |a| async move { a.evidence(&tx).await }.boxed())
            .await
    }

    async fn verify_evidence(
        &self,
        tx: &TxId,
        evidence: &Evidence,
    ) -> Result<Verified, AdapterError> {
        let (tx, evidence) = (tx.clone(), evidence.clone());
        self.call(move |a| async move { a.verify_evidence(&tx, &evidence).await }.boxed())
            .await
    }

    async fn balance(&self, account: &Address, asset: &AssetId) -> Result<Amount, AdapterError> {
        let (account, asset) = (account.clone(), asset.clone());
        self.call(move |a| async move { a.balance(&account, &asset).await }.boxed())
            .await
    }

    async fn lock(&self, req: &LockRequest) -> Result<TxId, AdapterError> {
        let req = req.clone();
        self.call(move |a| async move { a.lock(&req).await }.boxed())
            .await
    }

    async fn release(&self, req: &ReleaseRequest) -> Result<TxId, AdapterError> {
        let req = req.clone();
        self.call(move |a| async move { a.release(&req).await }.boxed())
            .await
    }

    async fn refund(&self, req: &RefundRequest) -> Result<TxId, AdapterError> {
        let req = req.clone();
        self.call(move |a| async move { a.refund(&req).await }.boxed())
            .await
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<TxId, AdapterError> {
        let req = req.clone();
        self.call(move |a| async move { a.claim(&req).await }.boxed())
            .await
    }

    async fn lock_state(&self, lock_id: &LockId) -> Result<Option<OnChainLock>, AdapterError> {
        let lock_id = *lock_id;
        self.call(move |a| async move { a.lock_state(&lock_id).await }.boxed())
            .await
    }
}
