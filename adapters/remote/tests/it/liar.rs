//! Adapters that lie, served in process: support for the misbehaviour tests here and the
//! registry tests of the top-level tests package (which includes this file by path).

use async_trait::async_trait;
use isthmus_adapter_api::*;
use isthmus_adapter_remote::serve_adapter;
use isthmus_core::{Hash32, Keypair};
use isthmus_lock_contracts::{Address, Amount, AssetId, LockId, TxId};
use isthmus_transport::{Endpoint, TransportConfig, TransportKind};
use std::sync::Arc;

/// A mock whose network id or verification verdicts can be made to lie.
pub struct Liar {
    pub inner: Arc<dyn Adapter>,
    pub descriptor: PlatformDescriptor,
    pub lie_about_evidence: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Adapter for Liar {
    fn descriptor(&self) -> &PlatformDescriptor {
        &self.descriptor
    }
    async fn health(&self) -> Result<Health, AdapterError> {
        self.inner.health().await
    }
    async fn heads(&self) -> Result<Heads, AdapterError> {
        self.inner.heads().await
    }
    async fn events_since(&self, after: Checkpoint, limit: u32) -> Result<EventPage, AdapterError> {
        self.inner.events_since(after, limit).await
    }
    async fn submit(&self, tx: SignedTx) -> Result<TxId, AdapterError> {
        self.inner.submit(tx).await
    }
    async fn tx_status(&self, tx: &TxId) -> Result<TxStatus, AdapterError> {
        self.inner.tx_status(tx).await
    }
    async fn evidence(&self, tx: &TxId) -> Result<Evidence, AdapterError> {
        self.inner.evidence(tx).await
    }
    async fn verify_evidence(&self, tx: &TxId, ev: &Evidence) -> Result<Verified, AdapterError> {
        let mut v = self.inner.verify_evidence(tx, ev).await;
        if self
            .lie_about_evidence
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            // Vouch for evidence it never checked: a verdict about other bytes.
            v = Ok(Verified {
                block: ev.block(),
                confirmations: 99,
                digest: Hash32([7; 32]),
            });
        }
        v
    }
    async fn balance(&self, a: &Address, asset: &AssetId) -> Result<Amount, AdapterError> {
        self.inner.balance(a, asset).await
    }
    async fn lock(&self, req: &LockRequest) -> Result<TxId, AdapterError> {
        self.inner.lock(req).await
    }
    async fn release(&self, req: &ReleaseRequest) -> Result<TxId, AdapterError> {
        self.inner.release(req).await
    }
    async fn refund(&self, req: &RefundRequest) -> Result<TxId, AdapterError> {
        self.inner.refund(req).await
    }
    async fn claim(&self, req: &ClaimRequest) -> Result<TxId, AdapterError> {
        self.inner.claim(req).await
    }
    async fn lock_state(&self, id: &LockId) -> Result<Option<OnChainLock>, AdapterError> {
        self.inner.lock_state(id).await
    }
}

/// Serve `adapter` in this process; returns the config to reach it and the stop switch.
pub async fn serve_in_process(
    adapter: Arc<dyn Adapter>,
    key: &Keypair,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let mut cfg = TransportConfig::new(TransportKind::Tcp, "127.0.0.1:0".parse().unwrap());
    cfg.network = adapter.descriptor().network;
    let endpoint = Endpoint::bind(cfg, key.clone()).await.unwrap();
    let addr = endpoint.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_adapter(adapter, None, endpoint, async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}
