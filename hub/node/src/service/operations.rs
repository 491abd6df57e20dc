//! `/v1/transfers` and `/v1/swaps` over the [`InteropService`]: API request bodies become
//! domain requests (network names resolved, amounts parsed), domain results and errors
//! become API statuses and errors.

use super::accounts::{check_owner, AccountOwners};
use super::status::{kind_of, operation_status};
use async_trait::async_trait;
use isthmus_core::Hash32;
use isthmus_hub_api::model::{
    CreateSwap, CreateTransfer, LegSpec, LockBy, OpKind, OperationStatus, Page,
};
use isthmus_hub_api::{BackendError, OpId, Operations, Principal};
use isthmus_interop::{
    ContractKind, DriverError, InteropService, LegRequest, NetworkDirectory, ServiceError,
    SwapRequest, TransferRequest,
};
use isthmus_lock_contracts::{Address, Amount, AssetId, Locker};
use std::sync::Arc;

/// The hub's transfers and swaps.
pub struct InteropOperations {
    pub interop: Arc<InteropService>,
    /// Network names in requests and statuses.
    pub directory: Arc<dyn NetworkDirectory>,
    /// Which tenant may move each hub-wallet account.
    pub owners: Arc<dyn AccountOwners>,
}

fn rejected(message: String, details: Vec<String>) -> BackendError {
    BackendError::Rejected { message, details }
}

/// The API error of a service error.
pub fn from_service(e: ServiceError) -> BackendError {
    if e.is_retryable() {
        return BackendError::Unavailable(e.to_string());
    }
    match e {
        ServiceError::Refused { message, problems } => rejected(message, problems),
        ServiceError::Driver(DriverError::Rejected(r)) => rejected(r.to_string(), vec![]),
        ServiceError::Driver(other) => BackendError::Internal(other.to_string()),
    }
}

fn contract_kind(kind: OpKind) -> Option<ContractKind> {
    match kind {
        OpKind::Transfer => Some(ContractKind::TwoPhase),
        OpKind::Swap => Some(ContractKind::Htlc),
        OpKind::Message => None,
    }
}

impl InteropOperations {
    /// Refuse a leg the hub wallet would lock from an account of another tenant.
    fn check_legs(&self, by: &Principal, legs: [(&str, &LegSpec); 2]) -> Result<(), BackendError> {
        for (prefix, l) in legs {
            if l.lock_by == LockBy::HubWallet {
                check_owner(&*self.owners, by, &format!("{prefix}.from"), &l.from)?;
            }
        }
        Ok(())
    }

    /// The domain leg of an API leg; an unknown network is added to `problems`.
    fn leg(&self, prefix: &str, l: &LegSpec, problems: &mut Vec<String>) -> Option<LegRequest> {
        let Some(net) = self.directory.resolve(&l.network) else {
            problems.push(format!("{prefix}.network: unknown network `{}`", l.network));
            return None;
        };
        let amount = l.amount.parse::<u128>().ok()?;
        Some(LegRequest {
            network: net,
            asset: AssetId(l.asset.clone()),
            amount: Amount(amount),
            from: Address(l.from.clone()),
            to: Address(l.to.clone()),
            locker: match l.lock_by {
                LockBy::HubWallet => Locker::HubWallet,
                LockBy::Owner => Locker::External,
                LockBy::ProviderVault => Locker::ProviderVault,
            },
        })
    }
}

#[async_trait]
impl Operations for InteropOperations {
    async fn create_transfer(
        &self,
        id: &OpId,
        by: &Principal,
        req: CreateTransfer,
    ) -> Result<OperationStatus, BackendError> {
        self.check_legs(by, [("source", &req.source), ("counter", &req.counter)])?;
        let mut problems = Vec::new();
        let a = self.leg("source", &req.source, &mut problems);
        let b = self.leg("counter", &req.counter, &mut problems);
        let (Some(source), Some(counter)) = (a, b) else {
            return Err(rejected(
                format!("transfer refused: {}", problems.join("; ")),
                problems,
            ));
        };
        let req = TransferRequest {
            source,
            counter,
            timeout_secs: req.timeout_secs,
        };
        let view = self
            .interop
            .create_transfer_for(&by.tenant, &id.0, req)
            .await
            .map_err(from_service)?;
        Ok(operation_status(&view, &*self.directory))
    }

    async fn create_swap(
        &self,
        id: &OpId,
        by: &Principal,
        req: CreateSwap,
    ) -> Result<OperationStatus, BackendError> {
        self.check_legs(
            by,
            [
                ("initiator", &req.initiator),
                ("participant", &req.participant),
            ],
        )?;
        let mut problems = Vec::new();
        let a = self.leg("initiator", &req.initiator, &mut problems);
        let b = self.leg("participant", &req.participant, &mut problems);
        let (Some(initiator), Some(participant)) = (a, b) else {
            return Err(rejected(
                format!("swap refused: {}", problems.join("; ")),
                problems,
            ));
        };
        let hashlock = match &req.hashlock {
            Some(h) => Some(Hash32::from_hex(h).map_err(|e| rejected(e.clone(), vec![e]))?),
            None => None,
        };
        let req = SwapRequest {
            initiator,
            participant,
            hashlock,
            initiator_timeout_secs: req.initiator_timeout_secs,
            participant_timeout_secs: req.participant_timeout_secs,
        };
        let view = self
            .interop
            .create_swap_for(&by.tenant, &id.0, req)
            .await
            .map_err(from_service)?;
        Ok(operation_status(&view, &*self.directory))
    }

    async fn get_operation(
        &self,
        kind: OpKind,
        id: &str,
    ) -> Result<Option<OperationStatus>, BackendError> {
        let view = self.interop.get(id).map_err(from_service)?;
        Ok(match view {
            Some(v) if kind_of(v.instance.contract.kind()) == kind => {
                Some(operation_status(&v, &*self.directory))
            }
            _ => None,
        })
    }

    async fn list_operations(
        &self,
        kind: OpKind,
        tenants: &[String],
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<OperationStatus>, BackendError> {
        let Some(kind) = contract_kind(kind) else {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        };
        let page = self
            .interop
            .list_owned(kind, Some(tenants), after, limit)
            .map_err(from_service)?;
        let items: Vec<OperationStatus> = page
            .items
            .iter()
            .map(|v| operation_status(v, &*self.directory))
            .collect();
        let next = if page.more {
            items.last().map(|o| o.id.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }
}
