//! The relay protocol: what travels on a link between a relayer and the hub, shared by
//! both ends so that one wire has one definition.
//!
//! - [`packet`]: packets with the source network's attestations or a light-client proof,
//!   and the hub's receipts (`delivered`, `duplicate`, `rejected` with a code);
//! - [`evidence`]: lock events with their finality evidence, and the hub's answers;
//! - [`vouch`]: the traits a source uses to vouch for a packet (attest or prove).
//!
//! This crate is pure: it never does I/O, never verifies anything on behalf of the hub
//! (the hub's ingress does that), and its hand-written decoders never panic on any input
//! (fuzzed under `relayer/protocol/fuzz`).

pub mod evidence;
pub mod packet;
pub mod vouch;

pub use evidence::{lock_event, EvidenceMsg, EvidenceOutcome, RelayedEvidence};
pub use packet::{
    LinkMsg, Outcome, PacketAttestation, PacketProof, ReceiptMsg, RelayedPacket, StatePath,
};
pub use vouch::{Attestor, Prover};
