//! Why an event or a creation request was refused.
//!
//! A rejection never changes state. None is retryable: the same input is refused again,
//! so the hub records it (and alerts where the code says the networks disagree with the
//! protocol) instead of retrying.

use crate::types::{Amount, AssetId, Decision, LegId, Settlement, Timestamp, TxId};
use isthmus_core::Hash32;
use serde::{Deserialize, Serialize};

/// An event the machine refuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "code")]
pub enum Rejection {
    #[error("lock on leg {leg} has amount {got}, expected {expected}")]
    AmountMismatch {
        leg: LegId,
        expected: Amount,
        got: Amount,
    },
    #[error("lock on leg {leg} is of asset `{got}`, expected `{expected}`")]
    AssetMismatch {
        leg: LegId,
        expected: AssetId,
        got: AssetId,
    },
    #[error("lock on leg {leg} pays `{got}`, expected `{expected}`")]
    BeneficiaryMismatch {
        leg: LegId,
        expected: String,
        got: String,
    },
    #[error("lock on leg {leg} has lock id {got}, expected {expected}")]
    LockIdMismatch {
        leg: LegId,
        expected: Hash32,
        got: Hash32,
    },
    #[error("leg {leg} is already locked by tx {existing}; a second lock tx {got} is refused")]
    DuplicateLock {
        leg: LegId,
        existing: TxId,
        got: TxId,
    },
    #[error("lock tx {tx} on leg {leg} was reported reorged after it was final")]
    ReorgAfterFinality { leg: LegId, tx: TxId },
    #[error("hub record for `{got:?}` does not match the decision `{expected:?}`")]
    RecordMismatch {
        expected: Option<Decision>,
        got: Decision,
    },
    #[error("leg {leg} reported {what} but the instance is not {needed:?} on the hub chain")]
    SettlementWithoutDecision {
        leg: LegId,
        what: Settlement,
        needed: Decision,
    },
    #[error("leg {leg} reported {what} but it was never locked")]
    NotLocked { leg: LegId, what: Settlement },
    #[error(
        "leg {leg} reported {what} by tx {got} but it was already {previous} by tx {existing}"
    )]
    SettlementConflict {
        leg: LegId,
        what: Settlement,
        got: TxId,
        previous: Settlement,
        existing: TxId,
    },
    #[error("preimage has {len} bytes, expected exactly 32")]
    PreimageLength { len: usize },
    #[error("preimage hashes to {got}, expected hashlock {expected}")]
    PreimageMismatch { expected: Hash32, got: Hash32 },
}

impl Rejection {
    /// The stable machine-readable code (the serde tag).
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::AmountMismatch { .. } => "amount_mismatch",
            Rejection::AssetMismatch { .. } => "asset_mismatch",
            Rejection::BeneficiaryMismatch { .. } => "beneficiary_mismatch",
            Rejection::LockIdMismatch { .. } => "lock_id_mismatch",
            Rejection::DuplicateLock { .. } => "duplicate_lock",
            Rejection::ReorgAfterFinality { .. } => "reorg_after_finality",
            Rejection::RecordMismatch { .. } => "record_mismatch",
            Rejection::SettlementWithoutDecision { .. } => "settlement_without_decision",
            Rejection::NotLocked { .. } => "not_locked",
            Rejection::SettlementConflict { .. } => "settlement_conflict",
            Rejection::PreimageLength { .. } => "preimage_length",
            Rejection::PreimageMismatch { .. } => "preimage_mismatch",
        }
    }

    /// True when the rejection means a network or adapter reported something the protocol
    /// forbids (as opposed to a bad or stale request): the hub must raise an alert.
    pub fn is_alarm(&self) -> bool {
        matches!(
            self,
            Rejection::ReorgAfterFinality { .. }
                | Rejection::SettlementConflict { .. }
                | Rejection::SettlementWithoutDecision { .. }
                | Rejection::DuplicateLock { .. }
        )
    }

    /// Retrying the same event cannot help: the machine is deterministic.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// One problem with a creation request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "code")]
pub enum SpecProblem {
    #[error("leg {leg} amount must be positive")]
    ZeroAmount { leg: LegId },
    #[error("deadline {deadline} is not after the creation time {now}")]
    DeadlineInPast { deadline: Timestamp, now: Timestamp },
    #[error(
        "leg {leg} escrow timeout {timeout} must be at least deadline {deadline} + release window {window}"
    )]
    EscrowTimeoutTooEarly {
        leg: LegId,
        timeout: Timestamp,
        deadline: Timestamp,
        window: u64,
    },
    #[error("both legs are provider vaults; a vault needs a paying counterparty")]
    TwoVaults,
    #[error(
        "initiator timelock t1={t1} must exceed participant timelock t2={t2} by more than delta={delta}"
    )]
    TimelockMargin {
        t1: Timestamp,
        t2: Timestamp,
        delta: u64,
    },
    #[error("participant timelock t2={t2} is not after the creation time {now}")]
    TimelockInPast { t2: Timestamp, now: Timestamp },
    #[error("the initiator's leg cannot be a provider vault (it must pay first)")]
    InitiatorVault,
}

/// Every problem with a creation request, reported at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("invalid contract: {}", join(problems))]
pub struct InvalidSpec {
    pub problems: Vec<SpecProblem>,
}

fn join(problems: &[SpecProblem]) -> String {
    problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

impl InvalidSpec {
    pub(crate) fn check(problems: Vec<SpecProblem>) -> Result<(), InvalidSpec> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(InvalidSpec { problems })
        }
    }
}
