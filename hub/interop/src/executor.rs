//! Executes contract actions on the networks through their adapters, and records
//! decisions on the hub chain through a [`HubLedger`].

use crate::contract::{Contract, ContractEvent};
use crate::driver::{ActionExecutor, ExecError};
use async_trait::async_trait;
use isthmus_adapter_api::{AdapterError, HubAttestation, LegOp, LockTerms};
use isthmus_core::{Keypair, NetworkId};
use isthmus_lock_contracts::{
    Action, Decision, HubRecord, InstanceId, LegSpec, LockId, TwoPhaseEvent,
};
use std::sync::Arc;

/// Where the hub records its decisions: a transaction on the hub chain. The returned
/// record's commit evidence is what escrows are shown.
#[async_trait]
pub trait HubLedger: Send + Sync + 'static {
    /// Record `decision` for `instance` and return where it was committed. Idempotent: the
    /// same instance and decision return the same record.
    async fn record_decision(
        &self,
        instance: InstanceId,
        decision: Decision,
    ) -> Result<HubRecord, ExecError>;
}

/// The adapters of the networks the hub links, by network id: a plain map, or an
/// [`crate::AdapterRegistry`] when providers may register adapters at run time.
pub type AdapterSet = Arc<dyn crate::registry::AdapterLookup>;

pub struct AdapterExecutor {
    pub adapters: AdapterSet,
    pub ledger: Arc<dyn HubLedger>,
    /// The hub's attestation keys (escrows trust a threshold of them).
    pub attesters: Arc<Vec<Keypair>>,
}

fn exec_err(e: AdapterError) -> ExecError {
    if e.is_retryable() {
        ExecError::Retryable(e.to_string())
    } else {
        ExecError::Refused(e.to_string())
    }
}

impl AdapterExecutor {
    fn leg_of<'a>(contract: &'a Contract, action: &Action) -> Option<(&'a LegSpec, LockTerms)> {
        let leg = action.leg()?;
        Some(match contract {
            Contract::TwoPhase(m) => (m.spec.leg(leg), LockTerms::TwoPhase),
            Contract::Htlc(m) => (
                m.spec.leg(leg),
                LockTerms::Htlc {
                    hashlock: m.spec.hashlock,
                },
            ),
        })
    }
}

#[async_trait]
impl ActionExecutor for AdapterExecutor {
    async fn execute(
        &self,
        contract: &Contract,
        action: &Action,
    ) -> Result<Vec<ContractEvent>, ExecError> {
        if let Action::RecordDecision { decision } = action {
            let Contract::TwoPhase(_) = contract else {
                return Err(ExecError::Refused(
                    "only two-phase locks record decisions".into(),
                ));
            };
            let record = self
                .ledger
                .record_decision(contract.id(), *decision)
                .await?;
            return Ok(vec![ContractEvent::TwoPhase(
                TwoPhaseEvent::DecisionRecorded {
                    decision: *decision,
                    record,
                },
            )]);
        }
        let Some((spec, terms)) = Self::leg_of(contract, action) else {
            return Err(ExecError::Refused(format!(
                "action {action:?} names no leg"
            )));
        };
        let adapter = self.adapters.adapter(&spec.network).ok_or_else(|| {
            ExecError::Retryable(format!(
                "no adapter is registered for network {}",
                spec.network
            ))
        })?;
        let keys = self.attesters.clone();
        let attest = move |net: NetworkId, lock: LockId, d: Decision, r: HubRecord| {
            HubAttestation::sign_ed25519(net, lock, d, r, &keys)
        };
        let Some(op) = LegOp::from_action(action, spec, &terms, &attest) else {
            return Err(ExecError::Refused(format!(
                "action {action:?} is not an adapter call"
            )));
        };
        let tx = op.execute(adapter.as_ref()).await.map_err(exec_err)?;
        tracing::info!(instance = %contract.id(), network = %spec.network, tx = %tx.0, ?action, "action submitted");
        // The consequence (lock seen, release final, ...) arrives through the watcher.
        Ok(vec![])
    }
}
