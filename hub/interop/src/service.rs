//! Transfers and swaps as the hub offers them, in domain terms: the [`InteropService`]
//! turns requests into lock-contract instances and drives them with the [`Driver`]. It
//! knows nothing of HTTP; the hub node maps its API's request and response bodies to and
//! from these types.

use crate::contract::{Contract, ContractEvent, ContractKind};
use crate::diagnosis::Diagnosis;
use crate::driver::{Driver, DriverError};
use crate::journal::{StoredInstance, DEFAULT_TENANT};
use isthmus_core::{Hash32, NetworkId};
use isthmus_lock_contracts::{
    Address, Amount, AssetId, Htlc, HtlcConfig, HtlcEvent, HtlcSpec, InstanceId, InvalidSpec,
    LegSpec as MachineLeg, Locker, Preimage, TwoPhase, TwoPhaseConfig, TwoPhaseSpec,
};
use std::sync::Arc;

/// The names of the networks the hub links. The hub node implements it over its
/// adapters; the [`AdapterRegistry`](crate::AdapterRegistry) adds the registered ones.
pub trait NetworkDirectory: Send + Sync + 'static {
    /// The numeric id of a network name, if the hub links it.
    fn resolve(&self, name: &str) -> Option<NetworkId>;
    /// The name of a network id (for status output).
    fn name_of(&self, id: NetworkId) -> String;
}

/// The hub's clock, in seconds.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// One side of a transfer or swap, with its network resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegRequest {
    pub network: NetworkId,
    pub asset: AssetId,
    pub amount: Amount,
    pub from: Address,
    pub to: Address,
    /// Who puts the funds into escrow.
    pub locker: Locker,
}

impl LegRequest {
    fn leg(self, timeout: u64) -> MachineLeg {
        MachineLeg {
            network: self.network,
            asset: self.asset,
            amount: self.amount,
            from: self.from,
            to: self.to,
            timeout,
            locker: self.locker,
        }
    }
}

/// A two-phase transfer: `source` and `counter` are both released once both locks are
/// validated, or both refunded if that has not happened within `timeout_secs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRequest {
    pub source: LegRequest,
    pub counter: LegRequest,
    pub timeout_secs: u64,
}

/// An HTLC swap. Without a `hashlock`, the hub's wallet makes the secret for the
/// initiator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapRequest {
    pub initiator: LegRequest,
    pub participant: LegRequest,
    pub hashlock: Option<Hash32>,
    pub initiator_timeout_secs: u64,
    pub participant_timeout_secs: u64,
}

/// An operation as it stands: its stored instance, and the driver's diagnosis of an
/// action that keeps failing (if any; meaningless once the instance is terminal).
#[derive(Debug, Clone)]
pub struct OperationView {
    pub instance: StoredInstance,
    pub diagnosis: Option<Diagnosis>,
}

/// One page of operations, in operation id order.
#[derive(Debug, Clone)]
pub struct OperationPage {
    pub items: Vec<OperationView>,
    /// More operations follow the last item.
    pub more: bool,
}

/// Why the service did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The contract's rules refuse the request as it is (a timelock margin too small, a
    /// deadline in the past, ...): retrying it unchanged cannot help.
    #[error("{message}")]
    Refused {
        message: String,
        /// Every problem found, one per entry.
        problems: Vec<String>,
    },
    /// The driver or its journal failed; [`ServiceError::is_retryable`] says whether
    /// retrying may help.
    #[error(transparent)]
    Driver(#[from] DriverError),
}

impl ServiceError {
    /// Whether the same request may succeed later (a journal that is temporarily failing).
    pub fn is_retryable(&self) -> bool {
        match self {
            ServiceError::Refused { .. } => false,
            ServiceError::Driver(e) => e.is_retryable(),
        }
    }
}

impl From<InvalidSpec> for ServiceError {
    fn from(e: InvalidSpec) -> Self {
        ServiceError::Refused {
            message: e.to_string(),
            problems: e.problems.iter().map(|p| p.to_string()).collect(),
        }
    }
}

/// Transfers and swaps over the [`Driver`].
pub struct InteropService {
    pub driver: Arc<Driver>,
    pub two_phase: TwoPhaseConfig,
    pub htlc: HtlcConfig,
    pub clock: Clock,
    /// The wallet's secret for HTLC secrets it creates on a customer's behalf. Never
    /// logged; without it a generated secret would be guessable from the request.
    pub wallet_secret: Arc<zeroize::Zeroizing<[u8; 32]>>,
}

impl InteropService {
    /// The instance id of operation `op_id` (derived, so a retry finds the same one).
    pub fn instance_id(op_id: &str) -> InstanceId {
        InstanceId::derive(&[op_id.as_bytes()])
    }

    /// An instance with the driver's current diagnosis.
    pub fn view(&self, instance: StoredInstance) -> OperationView {
        let diagnosis = self.driver.diagnosis(&instance.contract.id());
        OperationView {
            instance,
            diagnosis,
        }
    }

    /// Create (or, if `op_id` exists already, return) a two-phase transfer of the default
    /// tenant; durable before it returns.
    pub async fn create_transfer(
        &self,
        op_id: &str,
        req: TransferRequest,
    ) -> Result<OperationView, ServiceError> {
        self.create_transfer_for(DEFAULT_TENANT, op_id, req).await
    }

    /// Create (or, if `op_id` exists already, return) a two-phase transfer owned by
    /// `tenant`; durable before it returns.
    pub async fn create_transfer_for(
        &self,
        tenant: &str,
        op_id: &str,
        req: TransferRequest,
    ) -> Result<OperationView, ServiceError> {
        let now = (self.clock)();
        let deadline = now.saturating_add(req.timeout_secs);
        let escrow_timeout = deadline.saturating_add(self.two_phase.release_window);
        let spec = TwoPhaseSpec {
            a: req.source.leg(escrow_timeout),
            b: req.counter.leg(escrow_timeout),
            deadline,
        };
        let (m, actions) = TwoPhase::create(Self::instance_id(op_id), spec, &self.two_phase, now)?;
        let inst = self
            .driver
            .create_owned(
                tenant,
                Contract::TwoPhase(m),
                actions,
                op_id.to_owned(),
                now,
            )
            .await?;
        Ok(self.view(inst))
    }

    /// Create (or, if `op_id` exists already, return) an HTLC swap of the default tenant;
    /// durable before it returns.
    pub async fn create_swap(
        &self,
        op_id: &str,
        req: SwapRequest,
    ) -> Result<OperationView, ServiceError> {
        self.create_swap_for(DEFAULT_TENANT, op_id, req).await
    }

    /// Create (or, if `op_id` exists already, return) an HTLC swap owned by `tenant`;
    /// durable before it returns.
    pub async fn create_swap_for(
        &self,
        tenant: &str,
        op_id: &str,
        req: SwapRequest,
    ) -> Result<OperationView, ServiceError> {
        let now = (self.clock)();
        let t1 = now.saturating_add(req.initiator_timeout_secs);
        let t2 = now.saturating_add(req.participant_timeout_secs);
        // Without a hashlock, the hub's wallet makes the secret for the initiator. It is
        // derived from the wallet secret and the operation id, so a retry after a crash
        // makes the same one and nobody without the wallet secret can compute it.
        let (hashlock, generated) = match req.hashlock {
            Some(h) => (h, None),
            None => {
                let secret = Preimage(
                    isthmus_core::HashAlgo::Sha256
                        .digest_parts(&[
                            b"isthmus/htlc-secret/v1",
                            self.wallet_secret.as_slice(),
                            op_id.as_bytes(),
                        ])
                        .0,
                );
                (secret.hashlock(), Some(secret))
            }
        };
        let spec = HtlcSpec {
            hashlock,
            initiator: req.initiator.leg(t1),
            participant: req.participant.leg(t2),
        };
        let (m, actions) = Htlc::create(Self::instance_id(op_id), spec, &self.htlc, now)?;
        let mid = m.id;
        let mut inst = self
            .driver
            .create_owned(tenant, Contract::Htlc(m), actions, op_id.to_owned(), now)
            .await?;
        if let Some(secret) = generated {
            inst = self
                .driver
                .apply(
                    mid,
                    ContractEvent::Htlc(HtlcEvent::PreimageProvided {
                        preimage: secret.0.to_vec(),
                    }),
                    now,
                )
                .await?;
        }
        Ok(self.view(inst))
    }

    /// The operation `op_id`, of whatever kind.
    pub fn get(&self, op_id: &str) -> Result<Option<OperationView>, ServiceError> {
        let inst = self
            .driver
            .journal()
            .get_by_api_id(op_id)
            .map_err(DriverError::from)?;
        Ok(inst.map(|i| self.view(i)))
    }

    /// Operations of `kind` in id order, after `after`, at most `limit`.
    pub fn list(
        &self,
        kind: ContractKind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<OperationPage, ServiceError> {
        self.list_owned(kind, None, after, limit)
    }

    /// Operations of `kind` owned by one of `tenants` (any tenant's when `None`), in id
    /// order, after `after`, at most `limit`.
    pub fn list_owned(
        &self,
        kind: ContractKind,
        tenants: Option<&[String]>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<OperationPage, ServiceError> {
        let mut all: Vec<StoredInstance> = self
            .driver
            .journal()
            .all()
            .map_err(DriverError::from)?
            .into_iter()
            .filter(|i| i.contract.kind() == kind)
            .filter(|i| tenants.is_none_or(|t| t.contains(&i.tenant)))
            .filter(|i| after.is_none_or(|a| i.api_id.as_str() > a))
            .collect();
        all.sort_by(|x, y| x.api_id.cmp(&y.api_id));
        let more = all.len() > limit;
        all.truncate(limit);
        Ok(OperationPage {
            items: all.into_iter().map(|i| self.view(i)).collect(),
            more,
        })
    }
}
