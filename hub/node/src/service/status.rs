//! The API view of an operation: a lock-contract instance (with the driver's diagnosis) or
//! a message record, as `OperationStatus`.

use isthmus_core::NetworkId;
use isthmus_hub_api::model::{LegStatus, OpKind, OperationStatus, ReasonDetail};
use isthmus_interop::messages::{MessageRecord, Phase};
use isthmus_interop::{
    Contract, ContractKind, Diagnosis, NetworkDirectory, OperationView, StoredInstance,
};
use isthmus_lock_contracts::{LegId, ReasonCode};

/// The API's kind of a contract kind.
pub fn kind_of(k: ContractKind) -> OpKind {
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

/// The API view of an operation of the interop service.
pub fn operation_status(view: &OperationView, dir: &dyn NetworkDirectory) -> OperationStatus {
    status_of(&view.instance, view.diagnosis.as_ref(), dir)
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
        tenant: inst.tenant.clone(),
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

/// The API view of a message.
pub fn message_status(rec: &MessageRecord, dir: &dyn NetworkDirectory) -> OperationStatus {
    let phase = &rec.phase;
    let reason = if rec.awaiting_timeout_proof {
        "awaiting_timeout_proof"
    } else {
        phase.reason()
    };
    let dest_state = match phase {
        Phase::Delivered { .. } | Phase::Acknowledged { .. } => "delivered",
        Phase::TimingOut { .. } | Phase::TimedOut { .. } => "timed_out",
        Phase::Failed { .. } => "failed",
        Phase::Committing { .. } | Phase::Committed { .. } => "pending",
    };
    let src_state = match phase {
        Phase::Committing { .. } => "committing",
        Phase::Acknowledged { .. } => "acknowledged",
        Phase::TimedOut { .. } => "timed_out",
        Phase::Failed { .. } => "failed",
        _ => "committed",
    };
    let packet = phase.packet();
    OperationStatus {
        id: rec.api_id.clone(),
        kind: OpKind::Message,
        tenant: rec.tenant.clone(),
        state: phase.name().to_owned(),
        terminal: phase.terminal(),
        reason: Some(reason.to_owned()),
        reason_detail: None,
        legs: vec![
            LegStatus {
                network: dir.name_of(rec.spec.source),
                state: src_state.into(),
                tx: phase.ticket().map(|t| t.id.to_hex()),
                evidence: None,
            },
            LegStatus {
                network: dir.name_of(rec.spec.destination),
                state: dest_state.into(),
                tx: None,
                evidence: None,
            },
        ],
        created_at: rec.created_at,
        updated_at: rec.updated_at,
        detail: serde_json::json!({
            "sequence": packet.map(|p| p.sequence),
            "commitment": packet.map(|p| p.commitment().to_hex()),
            "timeout": rec.spec.timeout,
            "recipient": rec.spec.recipient,
        }),
    }
}
