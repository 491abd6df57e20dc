//! The predefined inter-chain contracts of the hub as pure, deterministic state machines:
//! the two-phase lock ("lock until validated on both platforms"), the HTLC atomic swap, and
//! the packet/receipt channel of generic message relay.
//!
//! Sans-IO: a machine is a serde value driven by events. [`Machine::step`] applies one event
//! and returns the [`Action`]s that became due; the hub persists the new state (and the
//! event, as a hub-chain transaction) *before* executing them. Replaying an applied event
//! leaves the state unchanged and returns no action, and [`Machine::pending_actions`]
//! re-derives everything still outstanding after a crash. This crate must never do I/O,
//! read a clock, spawn tasks or panic on input: time and chain observations come in as
//! events, and bad input is answered with a typed [`Rejection`] that leaves state unchanged.

pub mod error;
pub mod htlc;
mod leg;
pub mod packet;
pub mod two_phase;
pub mod types;

pub use error::{InvalidSpec, Rejection, SpecProblem};
pub use htlc::{Htlc, HtlcConfig, HtlcEvent, HtlcSpec};
pub use leg::LegState;
pub use two_phase::{TwoPhase, TwoPhaseConfig, TwoPhaseEvent, TwoPhaseSpec};
pub use types::*;

use serde::{de::DeserializeOwned, Serialize};

/// What the hub driver needs from a contract machine.
pub trait Machine: Clone + Serialize + DeserializeOwned {
    type Event: Clone + Serialize + DeserializeOwned;

    /// Apply one event to `self` in place, or refuse it. Must be deterministic.
    fn apply(&mut self, event: &Self::Event) -> Result<(), Rejection>;

    /// Every action the current state still calls for. Deterministic and idempotent: the
    /// hub re-executes these after a restart and on its retry timer.
    fn pending_actions(&self) -> Vec<Action>;

    fn status(&self) -> Status;

    /// Apply `event` and return only the actions that became due because of it. A refused
    /// event leaves `self` untouched; a replayed one returns no action.
    fn step(&mut self, event: &Self::Event) -> Result<Vec<Action>, Rejection> {
        let before = self.pending_actions();
        let mut next = self.clone();
        next.apply(event)?;
        let after = next.pending_actions();
        *self = next;
        Ok(after.into_iter().filter(|a| !before.contains(a)).collect())
    }

    /// Whether `action` is still called for. A driver executing actions from a queue must
    /// drop those no longer due (a lock for an instance that has since aborted, a claim
    /// after its timelock): executing them late can break the HTLC's timing argument.
    fn is_due(&self, action: &Action) -> bool {
        self.pending_actions().contains(action)
    }

    fn is_terminal(&self) -> bool {
        self.status().terminal
    }
}
