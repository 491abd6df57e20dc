//! The interop core of the hub: it owns every lock-contract instance (two-phase transfers
//! and HTLC swaps), applies events to them, and executes the actions they call for.
//!
//! The rule this crate exists to keep: **journal first, then act.** A transition is
//! written to the [`Journal`] and flushed before any action it produces is executed or
//! anyone is told about it, and actions are idempotent at the executor (they name derived
//! lock ids), so a crash at any point is recovered by reloading the journal and
//! re-executing [`Machine::pending_actions`]. This crate never talks to a chain itself:
//! chains are reached through the [`ActionExecutor`] the hub plugs in. Nor does it know
//! HTTP: the [`InteropService`], the [`MessageRelay`] and the [`AdapterRegistry`] take and
//! return domain types, which the hub node maps to and from its API.
//!
//! [`Machine::pending_actions`]: isthmus_lock_contracts::Machine::pending_actions

pub mod anchor;
pub mod contract;
pub mod diagnosis;
pub mod driver;
pub mod executor;
pub mod journal;
pub mod messages;
pub mod registry;
pub mod service;
pub mod watcher;

pub use anchor::{AnchorError, Anchorer, TransitionAnchor, TransitionLog};
pub use contract::{Contract, ContractEvent, ContractKind};
pub use diagnosis::{ActionFailure, Diagnosis, Failure};
pub use driver::{ActionExecutor, Driver, DriverConfig, DriverError, ExecError, Notifier};
pub use executor::{AdapterExecutor, AdapterSet, HubLedger};
pub use journal::{Journal, JournalError, SledJournal, StoredInstance, DEFAULT_TENANT};
pub use messages::{MessageError, MessageRelay, MessageRequest, PacketPort};
pub use registry::{
    AdapterLookup, AdapterRecord, AdapterRegistry, Connect, ConnectError, RegisteredAdapter,
    Registration, RegistryError, RegistryHooks,
};
pub use service::{
    Clock, InteropService, LegRequest, NetworkDirectory, OperationPage, OperationView,
    ServiceError, SwapRequest, TransferRequest,
};
pub use watcher::Watcher;
