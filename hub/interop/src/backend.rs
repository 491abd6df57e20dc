//! The hub's implementation of the HTTP API's [`HubBackend`] for transfers and swaps: it
//! turns API requests into lock-contract instances and drives them with the [`Driver`].

use crate::contract::{Contract, ContractEvent, ContractKind};
use crate::diagnosis::Diagnosis;
use crate::driver::{Driver, DriverError, Notifier};
use crate::journal::StoredInstance;
use async_trait::async_trait;
use isthmus_core::{Hash32, NetworkId};
use isthmus_hub_api::model::*;
use isthmus_hub_api::{BackendError, EventBus, HubBackend, OpId, Principal};
use isthmus_lock_contracts::{
    Address, Amount, AssetId, Htlc, HtlcConfig, HtlcEvent, HtlcSpec, InstanceId, LegId,
    LegSpec as MachineLeg, Locker, Preimage, ReasonCode, TwoPhase, TwoPhaseConfig, TwoPhaseSpec,
};
use std::sync::Arc;

/// What the backend needs to know about the networks the hub links. The hub node
/// implements it over its adapters.
#[async_trait]
pub trait NetworkDirectory: Send + Sync + 'static {
    /// The numeric id of a network name, if the hub links it.
    fn resolve(&self, name: &str) -> Option<NetworkId>;
    /// The name of a network id (for status output).
    fn name_of(&self, id: NetworkId) -> String;
    async fn platforms(&self) -> Result<Vec<PlatformInfo>, BackendError>;
    async fn networks(&self) -> Result<Vec<NetworkInfo>, BackendError>;
}

/// The hub's clock, in seconds.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub struct InteropBackend {
    pub driver: Arc<Driver>,
    pub directory: Arc<dyn NetworkDirectory>,
    pub two_phase: TwoPhaseConfig,
    pub htlc: HtlcConfig,
    pub clock: Clock,
    /// The wallet's secret for HTLC secrets it creates on a customer's behalf. Never
    /// logged; without it a generated secret would be guessable from the request.
    pub wallet_secret: Arc<zeroize::Zeroizing<[u8; 32]>>,
}

fn kind_of(k: ContractKind) -> OpKind {
    match k {
        ContractKind::TwoPhase => OpKind::Transfer,
        ContractKind::Htlc => OpKind::Swap,
    }
}

/// The API view of a failing action: shown over the machine's reason while the instance
/// is open.
fn reason_detail(d: &Diagnosis, state_reason: &str, dir: &dyn NetworkDirectory) -> ReasonDetail {
    let f = &d.failure;
    ReasonDetail {
        action: f.action.to_owned(),
        leg: f.leg.map(|l| wire_name(&l)),
        network: f.failure.network.map(|n| dir.name_of(n)),
        error_code: f.failure.code.clone(),
        message: f.failure.message.clone(),
        retryable: f.failure.retryable,
        attempts: f.attempts,
        first_failed_at: f.first_failed_at,
        last_failed_at: f.last_failed_at,
        state_reason: state_reason.to_owned(),
    }
}

/// The API view of a stored instance, with the driver's diagnosis of an action that keeps
/// failing (ignored once the instance is terminal).
pub fn status_of(
    inst: &StoredInstance,
    diagnosis: Option<&Diagnosis>,
    dir: &dyn NetworkDirectory,
) -> OperationStatus {
    let st = inst.contract.status();
    let state_reason = st.reason.as_str();
    let detail_of = |d| reason_detail(d, state_reason, dir);
    let (reason, reason_detail) = match diagnosis.filter(|_| !st.terminal) {
        // The contract already pauses for the adapter (registry marked it unhealthy): that
        // reason stays, and the failing action is its detail.
        Some(d) if st.reason == ReasonCode::AdapterUnhealthy => (state_reason, Some(detail_of(d))),
        Some(d) => (d.reason.as_str(), Some(detail_of(d))),
        None => (state_reason, None),
    };
    let leg_status =
        |l: LegId, network: NetworkId, state: &isthmus_lock_contracts::LegState| LegStatus {
            network: dir.name_of(network),
            state: wire_name(&st.legs[l]),
            tx: None,
            evidence: serde_json::to_value(state).ok(),
        };
    let (legs, detail) = match &inst.contract {
        Contract::TwoPhase(m) => (
            LegId::BOTH
                .iter()
                .map(|l| leg_status(*l, m.spec.leg(*l).network, &m.legs[*l]))
                .collect(),
            serde_json::json!({
                "deadline": m.spec.deadline,
                "decision": m.decision,
                "hub_record": m.record,
            }),
        ),
        Contract::Htlc(m) => (
            LegId::BOTH
                .iter()
                .map(|l| leg_status(*l, m.spec.leg(*l).network, &m.legs[*l]))
                .collect(),
            serde_json::json!({
                "hashlock": m.spec.hashlock.to_hex(),
                "initiator_timelock": m.spec.initiator.timeout,
                "participant_timelock": m.spec.participant.timeout,
                "secret_revealed": m.revealed,
            }),
        ),
    };
    OperationStatus {
        id: inst.api_id.clone(),
        kind: kind_of(inst.contract.kind()),
        state: wire_name(&st.phase),
        terminal: st.terminal,
        reason: Some(reason.to_owned()),
        reason_detail,
        legs,
        created_at: inst.created_at,
        updated_at: inst.updated_at,
        detail,
    }
}

/// The wire form of a unit-variant serde enum (`snake_case` names).
fn wire_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn rejected(message: String, details: Vec<String>) -> BackendError {
    BackendError::Rejected { message, details }
}

fn from_driver(e: DriverError) -> BackendError {
    if e.is_retryable() {
        BackendError::Unavailable(e.to_string())
    } else {
        match e {
            DriverError::Rejected(r) => rejected(r.to_string(), vec![]),
            other => BackendError::Internal(other.to_string()),
        }
    }
}

impl InteropBackend {
    fn leg(
        &self,
        prefix: &str,
        l: &LegSpec,
        timeout: u64,
        problems: &mut Vec<String>,
    ) -> Option<MachineLeg> {
        let Some(net) = self.directory.resolve(&l.network) else {
            problems.push(format!("{prefix}.network: unknown network `{}`", l.network));
            return None;
        };
        let amount = l.amount.parse::<u128>().ok()?;
        Some(MachineLeg {
            network: net,
            asset: AssetId(l.asset.clone()),
            amount: Amount(amount),
            from: Address(l.from.clone()),
            to: Address(l.to.clone()),
            timeout,
            locker: match l.lock_by {
                LockBy::HubWallet => Locker::HubWallet,
                LockBy::Owner => Locker::External,
                LockBy::ProviderVault => Locker::ProviderVault,
            },
        })
    }

    fn instance_id(id: &OpId) -> InstanceId {
        InstanceId::derive(&[id.0.as_bytes()])
    }

    async fn status(&self, inst: &StoredInstance) -> OperationStatus {
        let diagnosis = self.driver.diagnosis(&inst.contract.id());
        status_of(inst, diagnosis.as_ref(), &*self.directory)
    }
}

#[async_trait]
impl HubBackend for InteropBackend {
    async fn platforms(&self) -> Result<Vec<PlatformInfo>, BackendError> {
        self.directory.platforms().await
    }

    async fn networks(&self) -> Result<Vec<NetworkInfo>, BackendError> {
        self.directory.networks().await
    }

    async fn create_transfer(
        &self,
        id: &OpId,
        _by: &Principal,
        req: CreateTransfer,
    ) -> Result<OperationStatus, BackendError> {
        let now = (self.clock)();
        let deadline = now.saturating_add(req.timeout_secs);
        let escrow_timeout = deadline.saturating_add(self.two_phase.release_window);
        let mut problems = Vec::new();
        let a = self.leg("source", &req.source, escrow_timeout, &mut problems);
        let b = self.leg("counter", &req.counter, escrow_timeout, &mut problems);
        let (Some(a), Some(b)) = (a, b) else {
            return Err(rejected(
                format!("transfer refused: {}", problems.join("; ")),
                problems,
            ));
        };
        let spec = TwoPhaseSpec { a, b, deadline };
        let (m, actions) = TwoPhase::create(Self::instance_id(id), spec, &self.two_phase, now)
            .map_err(|e| {
                rejected(
                    e.to_string(),
                    e.problems.iter().map(|p| p.to_string()).collect(),
                )
            })?;
        let inst = self
            .driver
            .create(Contract::TwoPhase(m), actions, id.0.clone(), now)
            .await
            .map_err(from_driver)?;
        Ok(self.status(&inst).await)
    }

    async fn create_swap(
        &self,
        id: &OpId,
        _by: &Principal,
        req: CreateSwap,
    ) -> Result<OperationStatus, BackendError> {
        let now = (self.clock)();
        let mut problems = Vec::new();
        let t1 = now.saturating_add(req.initiator_timeout_secs);
        let t2 = now.saturating_add(req.participant_timeout_secs);
        let a = self.leg("initiator", &req.initiator, t1, &mut problems);
        let b = self.leg("participant", &req.participant, t2, &mut problems);
        let (Some(a), Some(b)) = (a, b) else {
            return Err(rejected(
                format!("swap refused: {}", problems.join("; ")),
                problems,
            ));
        };
        // Without a hashlock, the hub's wallet makes the secret for the initiator. It is
        // derived from the wallet secret and the operation id, so a retry after a crash
        // makes the same one and nobody without the wallet secret can compute it.
        let (hashlock, generated) = match &req.hashlock {
            Some(h) => (
                Hash32::from_hex(h).map_err(|e| rejected(e.clone(), vec![e]))?,
                None,
            ),
            None => {
                let secret = Preimage(
                    isthmus_core::HashAlgo::Sha256
                        .digest_parts(&[
                            b"isthmus/htlc-secret/v1",
                            self.wallet_secret.as_slice(),
                            id.0.as_bytes(),
                        ])
                        .0,
                );
                (secret.hashlock(), Some(secret))
            }
        };
        let spec = HtlcSpec {
            hashlock,
            initiator: a,
            participant: b,
        };
        let (m, actions) =
            Htlc::create(Self::instance_id(id), spec, &self.htlc, now).map_err(|e| {
                rejected(
                    e.to_string(),
                    e.problems.iter().map(|p| p.to_string()).collect(),
                )
            })?;
        let mid = m.id;
        let mut inst = self
            .driver
            .create(Contract::Htlc(m), actions, id.0.clone(), now)
            .await
            .map_err(from_driver)?;
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
                .await
                .map_err(from_driver)?;
        }
        Ok(self.status(&inst).await)
    }

    async fn create_message(
        &self,
        _id: &OpId,
        _by: &Principal,
        _req: CreateMessage,
    ) -> Result<OperationStatus, BackendError> {
        // Hubs that relay messages wrap this backend in `messages::MessageBackend`.
        Err(BackendError::Unavailable(
            "message relay is not enabled on this hub: no packet port is configured".into(),
        ))
    }

    async fn get_operation(
        &self,
        kind: OpKind,
        id: &str,
    ) -> Result<Option<OperationStatus>, BackendError> {
        let inst = self
            .driver
            .journal()
            .get_by_api_id(id)
            .map_err(|e| from_driver(e.into()))?;
        Ok(match inst {
            Some(i) if kind_of(i.contract.kind()) == kind => Some(self.status(&i).await),
            _ => None,
        })
    }

    async fn list_operations(
        &self,
        kind: OpKind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<OperationStatus>, BackendError> {
        let mut all: Vec<StoredInstance> = self
            .driver
            .journal()
            .all()
            .map_err(|e| from_driver(e.into()))?
            .into_iter()
            .filter(|i| kind_of(i.contract.kind()) == kind)
            .filter(|i| after.is_none_or(|a| i.api_id.as_str() > a))
            .collect();
        all.sort_by(|x, y| x.api_id.cmp(&y.api_id));
        let more = all.len() > limit;
        all.truncate(limit);
        let mut items = Vec::with_capacity(all.len());
        for i in &all {
            items.push(self.status(i).await);
        }
        let next = if more {
            items.last().map(|o| o.id.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }
}

/// Publishes every durable change of an instance as an API event.
pub struct ApiNotifier {
    pub bus: EventBus,
    pub directory: Arc<dyn NetworkDirectory>,
}

impl Notifier for ApiNotifier {
    fn changed(&self, inst: &StoredInstance) {
        self.changed_with(inst, None);
    }

    /// Publishes `{kind}.updated` with the status as it now reads, also when only the
    /// diagnosis appeared or cleared.
    fn changed_with(&self, inst: &StoredInstance, diagnosis: Option<&Diagnosis>) {
        let status = status_of(inst, diagnosis, &*self.directory);
        let kind = format!("{}.updated", status.kind.as_str());
        let networks = status.legs.iter().map(|l| l.network.clone()).collect();
        let data = serde_json::to_value(&status).unwrap_or_default();
        if let Err(e) = self.bus.publish(&kind, &status.id, networks, data) {
            tracing::error!(%e, id = %status.id, "could not record the api event");
        }
    }
}
