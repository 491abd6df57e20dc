//! The hub's side of the relay protocol: where relayers deliver.
//!
//! - [`packets`]: the packet ingress. Relayers are untrusted: every packet is checked
//!   strictly (a threshold of the source network's attestation keys, or a light-client
//!   proof the hub verifies itself, see [`proof`]), its exactly-once receipt per (channel,
//!   sequence) is flushed together with the forward journal, and only then is it handed
//!   to the forward sink and answered. A second relayer, a restart or a replay gets
//!   `duplicate`, never a second delivery.
//! - [`evidence`]: the lock-evidence ingress. Each relayed lock event is checked against
//!   the hub's own adapter for that network before the interop driver applies it.
//!
//! This crate must never take a relayer's word for anything, and never answer a relayer
//! before the state change it reports is durable.

pub mod evidence;
pub mod packets;
pub mod proof;
mod receipts;

pub use evidence::{EvidenceIngress, EvidenceStats};
pub use packets::{Forwarded, IngressConfig, IngressError, PacketIngress};
pub use proof::{NativeProofVerifier, ProofError, ProofVerifier};
