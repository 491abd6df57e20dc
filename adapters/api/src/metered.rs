//! A decorator that counts calls, errors and retryable errors per operation, and can cache
//! `heads()` for a short time so that many status readers do not each hit the node.

use crate::adapter::{
    Adapter, ClaimRequest, LockRequest, OnChainLock, RefundRequest, ReleaseRequest,
};
use crate::error::AdapterError;
use crate::evidence::{Evidence, Verified};
use crate::types::{Checkpoint, EventPage, Heads, Health, PlatformDescriptor, SignedTx, TxStatus};
use async_trait::async_trait;
use isthmus_lock_contracts::{Address, Amount, AssetId, LockId, TxId};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Counters of one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpStats {
    pub calls: u64,
    pub errors: u64,
    pub retryable_errors: u64,
    pub cache_hits: u64,
}

/// Shared counters, readable while the adapter runs (e.g. by a Prometheus exporter).
#[derive(Debug, Default)]
pub struct Stats {
    ops: Mutex<BTreeMap<&'static str, OpStats>>,
}

impl Stats {
    pub fn snapshot(&self) -> BTreeMap<&'static str, OpStats> {
        self.ops.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn record<T>(&self, op: &'static str, result: &Result<T, AdapterError>, cache_hit: bool) {
        if let Ok(mut ops) = self.ops.lock() {
            let s = ops.entry(op).or_default();
            s.calls += 1;
            if cache_hit {
                s.cache_hits += 1;
            }
            if let Err(e) = result {
                s.errors += 1;
                if e.is_retryable() {
                    s.retryable_errors += 1;
                }
            }
        }
    }
}

/// Wraps any adapter; is itself an adapter.
pub struct Metered<A> {
    inner: A,
    stats: Arc<Stats>,
    heads_ttl: Option<Duration>,
    heads_cache: Mutex<Option<(Instant, Heads)>>,
}

impl<A: Adapter> Metered<A> {
    pub fn new(inner: A) -> Self {
        Metered {
            inner,
            stats: Arc::default(),
            heads_ttl: None,
            heads_cache: Mutex::new(None),
        }
    }

    /// Serve `heads()` from a cache younger than `ttl`.
    pub fn with_heads_ttl(mut self, ttl: Duration) -> Self {
        self.heads_ttl = Some(ttl);
        self
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    fn observe<T>(
        &self,
        op: &'static str,
        result: Result<T, AdapterError>,
    ) -> Result<T, AdapterError> {
        self.stats.record(op, &result, false);
        result
    }
}

#[async_trait]
impl<A: Adapter> Adapter for Metered<A> {
    fn descriptor(&self) -> &PlatformDescriptor {
        self.inner.descriptor()
    }
    async fn health(&self) -> Result<Health, AdapterError> {
        self.observe("health", self.inner.health().await)
    }
    async fn heads(&self) -> Result<Heads, AdapterError> {
        if let Some(ttl) = self.heads_ttl {
            let cached = self.heads_cache.lock().ok().and_then(|c| *c);
            if let Some((at, heads)) = cached {
                if at.elapsed() < ttl {
                    let hit = Ok(heads);
                    self.stats.record("heads", &hit, true);
                    return hit;
                }
            }
        }
        let result = self.inner.heads().await;
        if let (Ok(h), Ok(mut cache)) = (&result, self.heads_cache.lock()) {
            *cache = Some((Instant::now(), *h));
        }
        self.observe("heads", result)
    }
    async fn events_since(&self, after: Checkpoint, limit: u32) -> Result<EventPage, AdapterError> {
        self.observe("events_since", self.inner.events_since(after, limit).await)
    }
    async fn submit(&self, tx: SignedTx) -> Result<TxId, AdapterError> {
        self.observe("submit", self.inner.submit(tx).await)
    }
    async fn tx_status(&self, tx: &TxId) -> Result<TxStatus, AdapterError> {
        self.observe("tx_status", self.inner.tx_status(tx).await)
    }
    async fn evidence(&self, tx: &TxId) -> Result<Evidence, AdapterError> {
        self.observe("evidence", self.inner.evidence(tx).await)
    }
    async fn verify_evidence(
        &self,
        tx: &TxId,
        evidence: &Evidence,
    ) -> Result<Verified, AdapterError> {
        self.observe(
            "verify_evidence",
            self.inner.verify_evidence(tx, evidence).await,
        )
    }
    async fn balance(&self, account: &Address, asset: &AssetId) -> Result<Amount, AdapterError> {
        self.observe("balance", self.inner.balance(account, asset).await)
    }
    async fn lock(&self, req: &LockRequest) -> Result<TxId, AdapterError> {
        self.observe("lock", self.inner.lock(req).await)
    }
    async fn release(&self, req: &ReleaseRequest) -> Result<TxId, AdapterError> {
        self.observe("release", self.inner.release(req).await)
    }
    async fn refund(&self, req: &RefundRequest) -> Result<TxId, AdapterError> {
        self.observe("refund", self.inner.refund(req).await)
    }
    async fn claim(&self, req: &ClaimRequest) -> Result<TxId, AdapterError> {
        self.observe("claim", self.inner.claim(req).await)
    }
    async fn lock_state(&self, lock_id: &LockId) -> Result<Option<OnChainLock>, AdapterError> {
        self.observe("lock_state", self.inner.lock_state(lock_id).await)
    }
}
