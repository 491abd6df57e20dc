//! The relayer and the hub's packet ingress.
//!
//! Relayers are untrusted: they provide liveness, never safety. A relayer reads attested
//! packets from a source (pages of its durable outbox), carries them to the hub over an
//! authenticated transport (TCP+Noise, UDP or QUIC) and retries until the hub answers with
//! a receipt; the hub ([`ingress::PacketIngress`]) verifies every attestation strictly,
//! records an exactly-once receipt per (channel, sequence) durably, and only then forwards
//! the packet and answers. Two relayers on one link, a restart, or a replay can therefore
//! only produce `duplicate` receipts, never a second delivery. This crate never trusts a
//! relayer's word for a packet: per source network, the hub counts either a threshold of
//! that network's attestation keys or a light-client proof ([`proof`]) it checks itself.
//!
//! A link can instead carry lock evidence ([`evidence`]): lock events of a watched network
//! with their finality evidence, which the hub checks against its own adapter for that
//! network before acting; the relayer again provides only liveness.

pub mod config;
pub mod daemon;
pub mod evidence;
pub mod ingress;
pub mod outbox;
pub mod proof;
pub mod proto;
mod receipts;
pub mod source;

pub use config::RelayerConfig;
pub use daemon::{Relayer, RelayerStats};
pub use evidence::{
    EvidenceCarrier, EvidenceMsg, EvidenceOutcome, EvidenceSource, RelayedEvidence,
};
pub use ingress::{Forwarded, IngressConfig, IngressError, PacketIngress};
pub use outbox::Outbox;
pub use proof::{NativeProofVerifier, NativeProver, ProofError, ProofVerifier};
pub use proto::{
    LinkMsg, Outcome, PacketAttestation, PacketProof, ReceiptMsg, RelayedPacket, StatePath,
};
pub use source::{AdapterSource, Attestor, LocalAttestor, Prover, SourceError};
