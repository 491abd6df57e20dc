//! From a lock-contract [`Action`] to the adapter call that carries it out on a leg's network,
//! with the "already done?" check that makes re-executing it after a crash harmless.

use crate::adapter::*;
use crate::error::AdapterError;
use crate::evidence::HubAttestation;
use isthmus_core::NetworkId;
use isthmus_lock_contracts::{Action, Decision, HubRecord, LegSpec, LockId, RefundAuthority, TxId};

/// One adapter call on a leg's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegOp {
    Lock(LockRequest),
    Release(ReleaseRequest),
    Refund(RefundRequest),
    Claim(ClaimRequest),
}

/// Signs hub attestations: `(network, lock, decision, record)`.
pub type Attester<'a> = &'a dyn Fn(NetworkId, LockId, Decision, HubRecord) -> HubAttestation;

impl LegOp {
    /// The call for `action` on the leg described by `spec`, whose lock has `terms`.
    /// `None` for actions that are not adapter calls (recording a decision on the hub chain).
    pub fn from_action(
        action: &Action,
        spec: &LegSpec,
        terms: &LockTerms,
        attest: Attester<'_>,
    ) -> Option<LegOp> {
        Some(match action {
            Action::RecordDecision { .. } => return None,
            Action::SubmitLock { lock_id, .. } => LegOp::Lock(LockRequest {
                lock_id: *lock_id,
                leg: spec.clone(),
                terms: terms.clone(),
            }),
            Action::Release {
                lock_id, record, ..
            } => LegOp::Release(ReleaseRequest {
                lock_id: *lock_id,
                attestation: attest(spec.network, *lock_id, Decision::Validated, record.clone()),
            }),
            Action::Refund {
                lock_id, authority, ..
            } => {
                LegOp::Refund(RefundRequest {
                    lock_id: *lock_id,
                    authorisation: match authority {
                        RefundAuthority::HubRecord(record) => RefundAuthorisation::Attestation(
                            attest(spec.network, *lock_id, Decision::Aborted, record.clone()),
                        ),
                        RefundAuthority::Timelock { .. } => RefundAuthorisation::Timeout,
                    },
                })
            }
            Action::Claim {
                lock_id, preimage, ..
            } => LegOp::Claim(ClaimRequest {
                lock_id: *lock_id,
                preimage: *preimage,
            }),
        })
    }

    pub fn lock_id(&self) -> LockId {
        match self {
            LegOp::Lock(r) => r.lock_id,
            LegOp::Release(r) => r.lock_id,
            LegOp::Refund(r) => r.lock_id,
            LegOp::Claim(r) => r.lock_id,
        }
    }

    /// The tx that already did this, if the lock's on-chain state shows it done.
    pub fn already_done(&self, state: Option<&OnChainLock>) -> Option<TxId> {
        let state = state?;
        match (self, &state.status) {
            (LegOp::Lock(_), _) => Some(state.observation.tx.clone()),
            (LegOp::Release(_), LockStatus::Released { tx })
            | (LegOp::Refund(_), LockStatus::Refunded { tx })
            | (LegOp::Claim(_), LockStatus::Claimed { tx }) => Some(tx.clone()),
            _ => None,
        }
    }

    /// Check the chain first, then submit: a retry never pays twice and never burns fees on
    /// something already done.
    pub async fn execute(&self, adapter: &dyn Adapter) -> Result<TxId, AdapterError> {
        let state = adapter.lock_state(&self.lock_id()).await?;
        if let Some(tx) = self.already_done(state.as_ref()) {
            return Ok(tx);
        }
        match self {
            LegOp::Lock(r) => adapter.lock(r).await,
            LegOp::Release(r) => adapter.release(r).await,
            LegOp::Refund(r) => adapter.refund(r).await,
            LegOp::Claim(r) => adapter.claim(r).await,
        }
    }
}
