//! Lock evidence as relayers carry it to the hub: the wire types of an evidence link,
//! shared by the relayer that sends them and the hub's evidence ingress that judges them.
//! Pure data: nothing here verifies anything (the hub checks every item against its own
//! adapter for the network before acting).

use isthmus_adapter_api::types::EventKind;
use isthmus_adapter_api::Evidence;
use isthmus_core::NetworkId;
use isthmus_lock_contracts::{LockId, TxId};
use serde::{Deserialize, Serialize};

/// One lock event of `network` with the evidence for its transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayedEvidence {
    pub network: NetworkId,
    /// `LockFinal`, `Released`, `Refunded` or `Claimed`.
    pub event: EventKind,
    pub evidence: Evidence,
}

/// The lock and transaction a relayable event is about; `None` for events the hub does
/// not take from relayers.
pub fn lock_event(kind: &EventKind) -> Option<(LockId, &TxId)> {
    match kind {
        EventKind::LockFinal { lock } => Some((lock.lock_id, &lock.tx)),
        EventKind::Released { lock_id, tx }
        | EventKind::Refunded { lock_id, tx }
        | EventKind::Claimed { lock_id, tx, .. } => Some((*lock_id, tx)),
        _ => None,
    }
}

impl RelayedEvidence {
    pub fn lock(&self) -> Option<(LockId, &TxId)> {
        lock_event(&self.event)
    }
}

/// The hub's answer for one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceOutcome {
    /// Verified and applied: an instance changed.
    Applied,
    /// Verified, and every instance it concerns already had it.
    Duplicate,
    /// Verified, but no unfinished instance of this hub has that lock.
    Ignored,
    /// The hub could not decide now (its own view of the network is unreachable); resend.
    Retry { code: String, reason: String },
    /// Refused for good: resending the same item cannot help.
    Rejected { code: String, reason: String },
}

/// What travels on an evidence link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceMsg {
    Deliver {
        batch: u64,
        items: Vec<RelayedEvidence>,
    },
    Answers {
        batch: u64,
        outcomes: Vec<EvidenceOutcome>,
    },
}
