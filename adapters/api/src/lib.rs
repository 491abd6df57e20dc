//! The platform adapter trait family: what the hub may ask of any blockchain platform
//! (health, heads, events from a checkpoint, submission, finality evidence and its light-client
//! verification, balances, and the lock/release/refund/claim operations of the lock
//! contracts), the capabilities a platform declares instead of the hub assuming them, a
//! cloneable [`AdapterHandle`] to an owner task, a [`Metered`] decorator, and the
//! [`PacketPort`] that carries generic cross-network messages. The in-memory mock platform
//! and the conformance suite every adapter must pass are in `isthmus-adapter-testkit`.
//!
//! This crate holds domain types and traits only: it never names a concrete chain client,
//! never speaks a wire format of its own, and never trusts a node's word for finality (the
//! [`Adapter::verify_evidence`] contract). Requests reuse the lock-contract types
//! ([`isthmus_lock_contracts::LockId`], `LegSpec`, `Preimage`, ...) so the hub turns a
//! machine's `Action` into an adapter request without translation.

pub mod action;
pub mod adapter;
pub mod error;
pub mod evidence;
pub mod handle;
pub mod metered;
pub mod port;
pub mod subscribe;
pub mod types;
pub mod wallet;

pub use action::{Attester, LegOp};
pub use adapter::*;
pub use error::AdapterError;
pub use evidence::{
    CommitVote, Evidence, EvmEscrowDomain, HubAttestation, MerkleProof, SchemeSignature, Verified,
};
pub use handle::{AdapterHandle, HandleConfig};
pub use metered::{Metered, OpStats, Stats};
pub use port::{MessageSpec, PacketPort, PortError, SendTicket};
pub use subscribe::{subscribe, SubscribeConfig};
pub use types::*;
pub use wallet::{MemoryWallet, SecretKey, Wallet};
