//! The adapter trait and the requests of the lock-contract operations.

use crate::error::AdapterError;
use crate::evidence::{Evidence, HubAttestation, Verified};
use crate::types::{Checkpoint, EventPage, Heads, Health, PlatformDescriptor, SignedTx, TxStatus};
use async_trait::async_trait;
use isthmus_core::Hash32;
use isthmus_lock_contracts::{
    Address, Amount, AssetId, LegSpec, LockId, LockObservation, Preimage, Timestamp, TxId,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Which contract a lock belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "contract")]
pub enum LockTerms {
    /// Released on a `Validated` hub attestation; refundable on an `Aborted` one, or by the
    /// owner alone after `timeout`.
    TwoPhase,
    /// Claimable with the sha256 preimage of `hashlock`; refundable after `timeout`.
    Htlc { hashlock: Hash32 },
}

/// Put a leg's funds into escrow. Keyed by `lock_id`: submitting the same request again
/// returns the first transaction instead of locking twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRequest {
    pub lock_id: LockId,
    /// Network, asset, amount, owner (`from`), beneficiary (`to`) and timeout (hub time).
    pub leg: LegSpec,
    pub terms: LockTerms,
}

/// Pay an escrow to its beneficiary on the hub's `Validated` attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    pub lock_id: LockId,
    pub attestation: HubAttestation,
}

/// Why a refund is authorised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RefundAuthorisation {
    /// The hub recorded `Aborted`.
    Attestation(HubAttestation),
    /// The lock's timeout has passed on its network.
    Timeout,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequest {
    pub lock_id: LockId,
    pub authorisation: RefundAuthorisation,
}

/// Claim an HTLC. The preimage type only holds 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRequest {
    pub lock_id: LockId,
    pub preimage: Preimage,
}

/// Where a lock stands on its network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum LockStatus {
    Locked,
    Released { tx: TxId },
    Refunded { tx: TxId },
    Claimed { tx: TxId },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnChainLock {
    pub observation: LockObservation,
    pub terms: LockTerms,
    pub owner: Address,
    pub timeout: Timestamp,
    pub status: LockStatus,
    /// The lock tx is final.
    pub is_final: bool,
}

/// One platform, as the hub sees it. Object safe: callers hold `Arc<dyn Adapter>` or an
/// [`crate::AdapterHandle`], never a concrete adapter (only binaries name those).
///
/// Every operation that changes a chain is idempotent per its key (the signed tx, or the
/// lock id), so a caller may retry after a retryable error or a crash without doing it
/// twice. A refused request changes nothing.
#[async_trait]
pub trait Adapter: Send + Sync + 'static {
    /// Static facts; never fails.
    fn descriptor(&self) -> &PlatformDescriptor;

    async fn health(&self) -> Result<Health, AdapterError>;

    async fn heads(&self) -> Result<Heads, AdapterError>;

    /// Up to `limit` events strictly after `after`, oldest first.
    async fn events_since(&self, after: Checkpoint, limit: u32) -> Result<EventPage, AdapterError>;

    /// Submit a transaction its author signed.
    async fn submit(&self, tx: SignedTx) -> Result<TxId, AdapterError>;

    async fn tx_status(&self, tx: &TxId) -> Result<TxStatus, AdapterError>;

    /// Inclusion proof / confirmation evidence for a transaction that is final.
    async fn evidence(&self, tx: &TxId) -> Result<Evidence, AdapterError>;

    /// Check evidence as a light client: against the validator set, the header chain's
    /// work, the confirmation depth. Never trusts the node that served it.
    async fn verify_evidence(
        &self,
        tx: &TxId,
        evidence: &Evidence,
    ) -> Result<Verified, AdapterError>;

    async fn balance(&self, account: &Address, asset: &AssetId) -> Result<Amount, AdapterError>;

    async fn lock(&self, req: &LockRequest) -> Result<TxId, AdapterError>;

    async fn release(&self, req: &ReleaseRequest) -> Result<TxId, AdapterError>;

    async fn refund(&self, req: &RefundRequest) -> Result<TxId, AdapterError>;

    async fn claim(&self, req: &ClaimRequest) -> Result<TxId, AdapterError>;

    /// The "already done?" check before submitting, and the source of truth after a crash.
    async fn lock_state(&self, lock_id: &LockId) -> Result<Option<OnChainLock>, AdapterError>;
}

/// Adapters behind `Arc` are adapters: decorators and handles compose.
#[async_trait]
impl<A: Adapter + ?Sized> Adapter for Arc<A> {
    fn descriptor(&self) -> &PlatformDescriptor {
        (**self).descriptor()
    }
    async fn health(&self) -> Result<Health, AdapterError> {
        (**self).health().await
    }
    async fn heads(&self) -> Result<Heads, AdapterError> {
        (**self).heads().await
    }
    async fn events_since(&self, after: Checkpoint, limit: u32) -> Result<EventPage, AdapterError> {
        (**self).events_since(after, limit).await
    }
    async fn submit(&self, tx: SignedTx) -> Result<TxId, AdapterError> {
        (**self).submit(tx).await
    }
    async fn tx_status(&self, tx: &TxId) -> Result<TxStatus, AdapterError> {
        (**self).tx_status(tx).await
    }
    async fn evidence(&self, tx: &TxId) -> Result<Evidence, AdapterError> {
        (**self).evidence(tx).await
    }
    async fn verify_evidence(
        &self,
        tx: &TxId,
        evidence: &Evidence,
    ) -> Result<Verified, AdapterError> {
        (**self).verify_evidence(tx, evidence).await
    }
    async fn balance(&self, account: &Address, asset: &AssetId) -> Result<Amount, AdapterError> {
        (**self).balance(account, asset).await
    }
    async fn lock(&self, req: &LockRequest) -> Result<TxId, AdapterError> {
        (**self).lock(req).await
    }
    async fn release(&self, req: &ReleaseRequest) -> Result<TxId, AdapterError> {
        (**self).release(req).await
    }
    async fn refund(&self, req: &RefundRequest) -> Result<TxId, AdapterError> {
        (**self).refund(req).await
    }
    async fn claim(&self, req: &ClaimRequest) -> Result<TxId, AdapterError> {
        (**self).claim(req).await
    }
    async fn lock_state(&self, lock_id: &LockId) -> Result<Option<OnChainLock>, AdapterError> {
        (**self).lock_state(lock_id).await
    }
}
