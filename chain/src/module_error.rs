//! Why a native module refused a call: [`ModuleError`], with a stable reason code per
//! refusal ([`ModuleError::code`]).
//!
//! A refused call reverts its writes; the transaction still spends its nonce and its
//! [`crate::state::Receipt`] records both the code and the message. The code is the part to
//! match on: it never changes for a given refusal, while the message names the offending
//! values and may be reworded.

use crate::escrow::{AttestedDecision, EscrowStatus};
use isthmus_core::{Hash32, NetworkId, NodeId};
use isthmus_lock_contracts::packet::PacketRejection;

/// Why a module call was refused. Nothing it wrote is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    // ---- any module ----
    /// The module has no such method.
    #[error("{module} has no method `{method}`")]
    UnknownMethod { module: String, method: String },
    /// The call's args do not decode as the method's args.
    #[error("bad `{method}` args: {reason}")]
    BadArgs { method: String, reason: String },
    /// A stored record the call needs does not decode.
    #[error("corrupt {what}: {reason}")]
    CorruptRecord { what: String, reason: String },
    /// An account holds less than the call moves out of it.
    #[error("insufficient balance for {account}: has {have}, needs {need}")]
    InsufficientFunds {
        account: NodeId,
        have: u64,
        need: u64,
    },
    /// Crediting an account would overflow its balance.
    #[error("balance overflow crediting {0}")]
    BalanceOverflow(NodeId),
    /// A module's own invariant did not hold (a bug, not a bad request).
    #[error("internal error: {0}")]
    Internal(String),

    // ---- hub attestations (escrow and packets) ----
    /// The network trusts no hub attesters, so nothing attested is accepted.
    #[error("this network trusts no hub attesters")]
    NoAttesters,
    /// An attestation was made for another network.
    #[error("attestation is for network {attested}, this is network {here}")]
    AttestationWrongNetwork {
        attested: NetworkId,
        here: NetworkId,
    },
    /// An attestation was made for another lock.
    #[error("attestation is for lock {attested}, not {lock}")]
    AttestationWrongLock { attested: Hash32, lock: Hash32 },
    /// An attestation carries another decision than the call needs.
    #[error("attestation says {attested:?}, {required:?} is required")]
    AttestationWrongDecision {
        attested: AttestedDecision,
        required: AttestedDecision,
    },
    /// Too few distinct trusted attesters validly signed.
    #[error("{subject} carries {valid} valid signature(s) of trusted hub attesters, {required} required")]
    ThresholdNotMet {
        subject: String,
        valid: usize,
        required: usize,
    },

    // ---- escrow ----
    /// A lock of amount 0.
    #[error("escrow amount must be above 0")]
    ZeroAmount,
    /// The lock id is already taken (by any escrow, settled or not).
    #[error("lock id {0} is already used")]
    LockExists(Hash32),
    /// No escrow under the lock id.
    #[error("no escrow with lock id {0}")]
    LockNotFound(Hash32),
    /// The escrow has already left `Locked`.
    #[error("escrow {lock_id} is already {status:?}")]
    LockSettled {
        lock_id: Hash32,
        status: EscrowStatus,
    },
    /// The call does not apply to the escrow's terms (e.g. releasing an htlc).
    #[error("{0}")]
    WrongTerms(&'static str),
    /// A lock whose timeout is not after the block time.
    #[error("timeout {timeout_ms} ms is not after the block time {block_ms} ms")]
    TimeoutInPast { timeout_ms: u64, block_ms: u64 },
    /// A refund by timeout before the timeout.
    #[error("timeout {timeout_ms} ms not reached: block time is {block_ms} ms")]
    DeadlineNotReached { timeout_ms: u64, block_ms: u64 },
    /// A claim at or after the htlc's timeout.
    #[error("htlc timed out at {timeout_ms} ms (block time {block_ms} ms)")]
    DeadlinePassed { timeout_ms: u64, block_ms: u64 },
    /// A preimage of the wrong length.
    #[error("preimage is {len} bytes, exactly {required} are required")]
    BadPreimageLength { len: usize, required: usize },
    /// A preimage whose hash is not the hashlock.
    #[error("preimage does not hash to the hashlock")]
    BadPreimage,

    // ---- decisions ----
    /// The signer already recorded another decision for the instance.
    #[error("instance {instance} is already recorded as {recorded:?}")]
    DecisionConflict {
        instance: Hash32,
        recorded: AttestedDecision,
    },

    // ---- audit ----
    /// An anchor call with no anchors or too many.
    #[error("an anchor call carries 1 to {max} anchors, got {got}")]
    BadAnchorCount { got: usize, max: usize },
    /// An anchored sequence presented with another digest.
    #[error("instance {} seq {seq} is already anchored with another digest", hex::encode(.instance))]
    AnchorConflict { instance: [u8; 32], seq: u64 },
    /// An anchor whose predecessor is not anchored.
    #[error("instance {} seq {seq} skips seq {}", hex::encode(.instance), .seq.saturating_sub(1))]
    AnchorGap { instance: [u8; 32], seq: u64 },

    // ---- packets ----
    /// A packet sent to the network that sends it.
    #[error("destination {0} is this network; packets cross networks")]
    LocalDestination(NetworkId),
    /// A packet whose timeout is not after the block time (seconds).
    #[error("packet timeout {timeout} is not after the block time {block_secs}")]
    PacketTimeoutInPast { timeout: u64, block_secs: u64 },
    /// A packet delivered to another network than its destination.
    #[error("packet {sequence} is for network {destination}, this is network {here}")]
    PacketWrongDestination {
        sequence: u64,
        destination: NetworkId,
        here: NetworkId,
    },
    /// A settlement presented to another network than the packet's source.
    #[error("sequence {sequence} was sent from network {source_network}, this is network {here}")]
    PacketWrongSource {
        sequence: u64,
        source_network: NetworkId,
        here: NetworkId,
    },
    /// A packet delivered a second time.
    #[error("packet {0} was already delivered")]
    PacketDuplicate(u64),
    /// A packet's non-delivery recorded a second time.
    #[error("packet {0} non-delivery is already recorded")]
    PacketTimeoutRecorded(u64),
    /// A sequence settled a second time.
    #[error("sequence {0} is already settled")]
    SequenceSettled(u64),
    /// The packet channel machine refused (see [`PacketRejection`]).
    #[error(transparent)]
    Packet(#[from] PacketRejection),
}

impl ModuleError {
    /// The stable, snake_case reason code of this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            ModuleError::UnknownMethod { .. } => "unknown_method",
            ModuleError::BadArgs { .. } => "bad_args",
            ModuleError::CorruptRecord { .. } => "corrupt_record",
            ModuleError::InsufficientFunds { .. } => "insufficient_funds",
            ModuleError::BalanceOverflow(_) => "balance_overflow",
            ModuleError::Internal(_) => "internal",
            ModuleError::NoAttesters => "no_attesters",
            ModuleError::AttestationWrongNetwork { .. } => "attestation_wrong_network",
            ModuleError::AttestationWrongLock { .. } => "attestation_wrong_lock",
            ModuleError::AttestationWrongDecision { .. } => "attestation_wrong_decision",
            ModuleError::ThresholdNotMet { .. } => "threshold_not_met",
            ModuleError::ZeroAmount => "zero_amount",
            ModuleError::LockExists(_) => "lock_exists",
            ModuleError::LockNotFound(_) => "lock_not_found",
            ModuleError::LockSettled { .. } => "lock_settled",
            ModuleError::WrongTerms(_) => "wrong_terms",
            ModuleError::TimeoutInPast { .. } => "timeout_in_past",
            ModuleError::DeadlineNotReached { .. } => "deadline_not_reached",
            ModuleError::DeadlinePassed { .. } => "deadline_passed",
            ModuleError::BadPreimageLength { .. } => "bad_preimage_length",
            ModuleError::BadPreimage => "bad_preimage",
            ModuleError::DecisionConflict { .. } => "decision_conflict",
            ModuleError::BadAnchorCount { .. } => "bad_anchor_count",
            ModuleError::AnchorConflict { .. } => "anchor_conflict",
            ModuleError::AnchorGap { .. } => "anchor_gap",
            ModuleError::LocalDestination(_) => "local_destination",
            ModuleError::PacketTimeoutInPast { .. } => "packet_timeout_in_past",
            ModuleError::PacketWrongDestination { .. } => "packet_wrong_destination",
            ModuleError::PacketWrongSource { .. } => "packet_wrong_source",
            ModuleError::PacketDuplicate(_) => "packet_duplicate",
            ModuleError::PacketTimeoutRecorded(_) => "packet_timeout_recorded",
            ModuleError::SequenceSettled(_) => "sequence_settled",
            ModuleError::Packet(r) => match r {
                PacketRejection::WrongChannel { .. } => "packet_wrong_channel",
                PacketRejection::TimedOut { .. } => "packet_timed_out",
                PacketRejection::NotTimedOut { .. } => "packet_not_timed_out",
                PacketRejection::AlreadyDelivered { .. } => "packet_already_delivered",
                PacketRejection::CommitmentMismatch { .. } => "packet_commitment_mismatch",
                PacketRejection::UnknownSequence { .. } => "packet_unknown_sequence",
                PacketRejection::Pruned { .. } => "packet_pruned",
                PacketRejection::OutcomeConflict { .. } => "packet_outcome_conflict",
            },
        }
    }

    /// `args` of `method` did not decode.
    pub fn bad_args(method: &str, reason: impl std::fmt::Display) -> ModuleError {
        ModuleError::BadArgs {
            method: method.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// `module` has no method `method`.
    pub fn unknown_method(module: &str, method: &str) -> ModuleError {
        ModuleError::UnknownMethod {
            module: module.to_owned(),
            method: method.to_owned(),
        }
    }

    /// The stored `what` did not decode.
    pub fn corrupt(what: &str, reason: impl std::fmt::Display) -> ModuleError {
        ModuleError::CorruptRecord {
            what: what.to_owned(),
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_lock_contracts::packet::{ChannelId, SourceOutcome};
    use std::collections::BTreeSet;

    /// One value of every variant (and of every packet rejection it wraps).
    fn one_of_each() -> Vec<ModuleError> {
        let h = Hash32([1; 32]);
        let n = NodeId([2; 32]);
        let ch = ChannelId {
            source: NetworkId(1),
            destination: NetworkId(2),
        };
        vec![
            ModuleError::unknown_method("kv", "nope"),
            ModuleError::bad_args("put", "eof"),
            ModuleError::corrupt("escrow record", "eof"),
            ModuleError::InsufficientFunds {
                account: n,
                have: 1,
                need: 2,
            },
            ModuleError::BalanceOverflow(n),
            ModuleError::Internal("x".into()),
            ModuleError::NoAttesters,
            ModuleError::AttestationWrongNetwork {
                attested: NetworkId(1),
                here: NetworkId(2),
            },
            ModuleError::AttestationWrongLock {
                attested: h,
                lock: Hash32([3; 32]),
            },
            ModuleError::AttestationWrongDecision {
                attested: AttestedDecision::Aborted,
                required: AttestedDecision::Validated,
            },
            ModuleError::ThresholdNotMet {
                subject: "attestation".into(),
                valid: 1,
                required: 2,
            },
            ModuleError::ZeroAmount,
            ModuleError::LockExists(h),
            ModuleError::LockNotFound(h),
            ModuleError::LockSettled {
                lock_id: h,
                status: EscrowStatus::Refunded { tx: h },
            },
            ModuleError::WrongTerms("an htlc is refunded by its timeout only"),
            ModuleError::TimeoutInPast {
                timeout_ms: 1,
                block_ms: 2,
            },
            ModuleError::DeadlineNotReached {
                timeout_ms: 2,
                block_ms: 1,
            },
            ModuleError::DeadlinePassed {
                timeout_ms: 1,
                block_ms: 2,
            },
            ModuleError::BadPreimageLength {
                len: 31,
                required: 32,
            },
            ModuleError::BadPreimage,
            ModuleError::DecisionConflict {
                instance: h,
                recorded: AttestedDecision::Validated,
            },
            ModuleError::BadAnchorCount { got: 0, max: 512 },
            ModuleError::AnchorConflict {
                instance: [7; 32],
                seq: 2,
            },
            ModuleError::AnchorGap {
                instance: [7; 32],
                seq: 5,
            },
            ModuleError::LocalDestination(NetworkId(1)),
            ModuleError::PacketTimeoutInPast {
                timeout: 1,
                block_secs: 2,
            },
            ModuleError::PacketWrongDestination {
                sequence: 1,
                destination: NetworkId(9),
                here: NetworkId(2),
            },
            ModuleError::PacketWrongSource {
                sequence: 1,
                source_network: NetworkId(9),
                here: NetworkId(2),
            },
            ModuleError::PacketDuplicate(1),
            ModuleError::PacketTimeoutRecorded(1),
            ModuleError::SequenceSettled(1),
            PacketRejection::WrongChannel {
                expected: ch,
                got: ch,
            }
            .into(),
            PacketRejection::TimedOut {
                sequence: 1,
                timeout: 2,
                now: 3,
            }
            .into(),
            PacketRejection::NotTimedOut {
                sequence: 1,
                timeout: 3,
                now: 2,
            }
            .into(),
            PacketRejection::AlreadyDelivered { sequence: 1 }.into(),
            PacketRejection::CommitmentMismatch {
                sequence: 1,
                expected: h,
                got: Hash32([4; 32]),
            }
            .into(),
            PacketRejection::UnknownSequence { sequence: 1 }.into(),
            PacketRejection::Pruned {
                sequence: 1,
                pruned_below: 2,
            }
            .into(),
            PacketRejection::OutcomeConflict {
                sequence: 1,
                existing: SourceOutcome::TimedOut,
                got: SourceOutcome::Acknowledged,
            }
            .into(),
        ]
    }

    /// A distinct index per variant (and per wrapped packet rejection). Exhaustive, so a new
    /// variant does not compile until it is given an index here, and then
    /// `one_of_each_lists_every_variant` fails until it is listed in `one_of_each`.
    fn index(e: &ModuleError) -> usize {
        match e {
            ModuleError::UnknownMethod { .. } => 0,
            ModuleError::BadArgs { .. } => 1,
            ModuleError::CorruptRecord { .. } => 2,
            ModuleError::InsufficientFunds { .. } => 3,
            ModuleError::BalanceOverflow(_) => 4,
            ModuleError::Internal(_) => 5,
            ModuleError::NoAttesters => 6,
            ModuleError::AttestationWrongNetwork { .. } => 7,
            ModuleError::AttestationWrongLock { .. } => 8,
            ModuleError::AttestationWrongDecision { .. } => 9,
            ModuleError::ThresholdNotMet { .. } => 10,
            ModuleError::ZeroAmount => 11,
            ModuleError::LockExists(_) => 12,
            ModuleError::LockNotFound(_) => 13,
            ModuleError::LockSettled { .. } => 14,
            ModuleError::WrongTerms(_) => 15,
            ModuleError::TimeoutInPast { .. } => 16,
            ModuleError::DeadlineNotReached { .. } => 17,
            ModuleError::DeadlinePassed { .. } => 18,
            ModuleError::BadPreimageLength { .. } => 19,
            ModuleError::BadPreimage => 20,
            ModuleError::DecisionConflict { .. } => 21,
            ModuleError::BadAnchorCount { .. } => 22,
            ModuleError::AnchorConflict { .. } => 23,
            ModuleError::AnchorGap { .. } => 24,
            ModuleError::LocalDestination(_) => 25,
            ModuleError::PacketTimeoutInPast { .. } => 26,
            ModuleError::PacketWrongDestination { .. } => 27,
            ModuleError::PacketWrongSource { .. } => 28,
            ModuleError::PacketDuplicate(_) => 29,
            ModuleError::PacketTimeoutRecorded(_) => 30,
            ModuleError::SequenceSettled(_) => 31,
            ModuleError::Packet(r) => match r {
                PacketRejection::WrongChannel { .. } => 32,
                PacketRejection::TimedOut { .. } => 33,
                PacketRejection::NotTimedOut { .. } => 34,
                PacketRejection::AlreadyDelivered { .. } => 35,
                PacketRejection::CommitmentMismatch { .. } => 36,
                PacketRejection::UnknownSequence { .. } => 37,
                PacketRejection::Pruned { .. } => 38,
                PacketRejection::OutcomeConflict { .. } => 39,
            },
        }
    }
    const VARIANTS: usize = 40;

    #[test]
    fn one_of_each_lists_every_variant() {
        let listed: BTreeSet<usize> = one_of_each().iter().map(index).collect();
        assert_eq!(listed, (0..VARIANTS).collect::<BTreeSet<_>>());
    }

    #[test]
    fn every_variant_has_a_distinct_non_empty_snake_case_code() {
        let all = one_of_each();
        let mut seen = BTreeSet::new();
        for e in &all {
            let code = e.code();
            assert!(!code.is_empty(), "{e:?} has an empty code");
            assert!(
                code.starts_with(|c: char| c.is_ascii_lowercase())
                    && code
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    && !code.ends_with('_')
                    && !code.contains("__"),
                "`{code}` of {e:?} is not snake_case"
            );
            assert!(seen.insert(code), "code `{code}` is used twice");
        }
        assert_eq!(seen.len(), all.len());
    }

    #[test]
    fn messages_are_lowercase_without_a_trailing_period() {
        for e in one_of_each() {
            let m = e.to_string();
            assert!(!m.is_empty(), "{e:?}");
            assert!(!m.ends_with('.'), "`{m}` ends with a period");
            let first = m.chars().next().unwrap_or('x');
            assert!(!first.is_uppercase(), "`{m}` starts uppercase");
        }
        assert_eq!(
            ModuleError::AnchorGap {
                instance: [7; 32],
                seq: 5
            }
            .to_string(),
            format!("instance {} seq 5 skips seq 4", hex::encode([7u8; 32]))
        );
    }
}
