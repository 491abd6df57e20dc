//! One enum over the two predefined contracts, so the journal and the driver handle both
//! with one code path.

use isthmus_lock_contracts::{
    Action, Htlc, HtlcEvent, InstanceId, Machine, Rejection, Status, TwoPhase, TwoPhaseEvent,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContractKind {
    TwoPhase,
    Htlc,
}

impl ContractKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ContractKind::TwoPhase => "two_phase",
            ContractKind::Htlc => "htlc",
        }
    }
}

/// A contract instance of either kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Contract {
    TwoPhase(TwoPhase),
    Htlc(Htlc),
}

/// An event for either kind. Applying an event of the other kind is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ContractEvent {
    TwoPhase(TwoPhaseEvent),
    Htlc(HtlcEvent),
}

impl ContractEvent {
    /// The `Tick` event of the right kind.
    pub fn tick(kind: ContractKind, now: u64) -> Self {
        match kind {
            ContractKind::TwoPhase => ContractEvent::TwoPhase(TwoPhaseEvent::Tick { now }),
            ContractKind::Htlc => ContractEvent::Htlc(HtlcEvent::Tick { now }),
        }
    }
}

/// Why an event of one kind cannot drive a contract of the other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {event} event cannot drive a {contract} contract")]
pub struct KindMismatch {
    pub event: &'static str,
    pub contract: &'static str,
}

/// The outcome of applying an event.
#[derive(Debug)]
pub enum Applied {
    /// The state changed; these actions became due.
    Changed(Vec<Action>),
    /// The event was already applied (or changes nothing): no write, no action.
    Unchanged,
}

impl Contract {
    /// A fresh two-phase instance with small fixed legs between networks 1 and 2 (deadline
    /// 100, escrow timeouts 1,000), its id derived from `seed`: for tests and tools that
    /// need some instance and do not care about its terms.
    #[doc(hidden)]
    pub fn sample_two_phase(seed: &[u8]) -> Contract {
        use isthmus_core::NetworkId;
        use isthmus_lock_contracts::{
            Address, Amount, AssetId, LegSpec, Locker, TwoPhaseConfig, TwoPhaseSpec,
        };
        let leg = |net: u64| LegSpec {
            network: NetworkId(net),
            asset: AssetId("native".into()),
            amount: Amount(10),
            from: Address(format!("from{net}")),
            to: Address(format!("to{net}")),
            timeout: 1_000,
            locker: Locker::External,
        };
        let spec = TwoPhaseSpec {
            a: leg(1),
            b: leg(2),
            deadline: 100,
        };
        let cfg = TwoPhaseConfig { release_window: 50 };
        match TwoPhase::create(InstanceId::derive(&[seed]), spec, &cfg, 0) {
            Ok((m, _)) => Contract::TwoPhase(m),
            // The terms above are fixed and valid; creation cannot refuse them.
            Err(e) => unreachable!("the sample two-phase terms are valid: {e}"),
        }
    }

    pub fn kind(&self) -> ContractKind {
        match self {
            Contract::TwoPhase(_) => ContractKind::TwoPhase,
            Contract::Htlc(_) => ContractKind::Htlc,
        }
    }

    pub fn id(&self) -> InstanceId {
        match self {
            Contract::TwoPhase(m) => m.id,
            Contract::Htlc(m) => m.id,
        }
    }

    /// The networks of its two legs.
    pub fn networks(&self) -> [isthmus_core::NetworkId; 2] {
        match self {
            Contract::TwoPhase(m) => [m.spec.a.network, m.spec.b.network],
            Contract::Htlc(m) => [m.spec.initiator.network, m.spec.participant.network],
        }
    }

    pub fn status(&self) -> Status {
        match self {
            Contract::TwoPhase(m) => m.status(),
            Contract::Htlc(m) => m.status(),
        }
    }

    pub fn pending_actions(&self) -> Vec<Action> {
        match self {
            Contract::TwoPhase(m) => m.pending_actions(),
            Contract::Htlc(m) => m.pending_actions(),
        }
    }

    /// Legs whose escrow the hub's sweep should re-read from the adapter (see
    /// [`TwoPhase::legs_to_reread`]). HTLC swaps rely on the event stream alone for now.
    pub fn legs_to_reread(&self) -> Vec<isthmus_lock_contracts::LegId> {
        match self {
            Contract::TwoPhase(m) => m.legs_to_reread(),
            Contract::Htlc(_) => Vec::new(),
        }
    }

    /// Whether `action` is still called for at hub time `now`. Checked on a throw-away copy
    /// advanced to `now`, so an action that went stale while it waited in a queue (a claim
    /// after its timelock, a lock after an abort) is dropped even before the next tick is
    /// journalled.
    pub fn is_due_at(&self, action: &Action, now: u64) -> bool {
        let mut probe = self.clone();
        let _ = probe.step(&ContractEvent::tick(self.kind(), now));
        probe.pending_actions().contains(action)
    }

    /// Apply `event`; a refused event leaves `self` unchanged.
    pub fn step(
        &mut self,
        event: &ContractEvent,
    ) -> Result<Result<Applied, Rejection>, KindMismatch> {
        let before = self.clone();
        let res = match (&mut *self, event) {
            (Contract::TwoPhase(m), ContractEvent::TwoPhase(e)) => m.step(e),
            (Contract::Htlc(m), ContractEvent::Htlc(e)) => m.step(e),
            (c, e) => {
                return Err(KindMismatch {
                    event: match e {
                        ContractEvent::TwoPhase(_) => "two_phase",
                        ContractEvent::Htlc(_) => "htlc",
                    },
                    contract: c.kind().as_str(),
                })
            }
        };
        Ok(res.map(|actions| {
            if *self == before {
                Applied::Unchanged
            } else {
                Applied::Changed(actions)
            }
        }))
    }
}
