//! The relayer daemon: it watches source networks through the adapter API and carries what
//! they commit to the hub over an authenticated transport (TCP+Noise, UDP or QUIC).
//!
//! Relayers are untrusted: they provide liveness, never safety. A packet link reads
//! vouched packets (attested by the source network's keys, or with a light-client proof)
//! from pages of its durable outbox and retries until the hub answers with a receipt. An
//! evidence link ([`evidence`]) carries lock events of a watched network with their
//! finality evidence. The wire is the relay protocol crate's (`isthmus-relay-protocol`);
//! the hub's side of it lives in `isthmus-hub-ingress`.
//!
//! This crate depends only on the relay protocol, the adapter API and the transport: it
//! never names a concrete adapter (the `relayer` binary maps the config's source kinds to
//! adapters) and never a hub crate.

pub mod config;
pub mod daemon;
pub mod evidence;
pub mod outbox;
pub mod source;

pub use config::RelayerConfig;
pub use daemon::{Relayer, RelayerStats};
pub use evidence::{EvidenceCarrier, EvidenceSource};
pub use isthmus_relay_protocol::{Attestor, Prover};
pub use isthmus_relay_protocol::{
    EvidenceMsg, EvidenceOutcome, LinkMsg, Outcome, PacketAttestation, PacketProof, ReceiptMsg,
    RelayedEvidence, RelayedPacket, StatePath,
};
pub use outbox::Outbox;
pub use source::{AdapterSource, LocalAttestor, SourceError};
