//! Authenticated, encrypted transports for Isthmus nodes, relayers and adapters: TCP with a
//! Noise handshake, UDP with per-datagram nonces and a replay window, and QUIC with pinned
//! node-key certificates, all behind one [`Endpoint`] / [`Connection`] interface.
//!
//! Every connection is bound to the remote node's ed25519 identity during the handshake;
//! a peer outside the allowlist (or other than the expected one) is refused before any
//! application byte is exchanged, and the refusal is logged with its key and counted.
//! This crate must never log secret key material, never hand unauthenticated bytes to the
//! application, and never allocate a buffer from a length the peer declared before
//! checking it against the configured limits.
//!
//! Delivery guarantees differ by kind and are part of the contract:
//! - TCP and QUIC connections are reliable and ordered.
//! - UDP connections are **unreliable**: a datagram may be lost, duplicated on the wire
//!   (the replay window drops the copy) or reordered. Use [`reliable::ReliableChannel`]
//!   for at-least-once delivery on the wire and exactly-once delivery to the application.

mod config;
mod conn;
mod endpoint;
mod error;
pub mod frame;
mod noise;
mod quic;
pub mod reliable;
pub mod rpc;
mod stats;
mod tcp;
pub mod udp;

pub use config::{TransportConfig, TransportKind};
pub use conn::{ConnSender, Connection};
pub use endpoint::Endpoint;
pub use error::TransportError;
pub use noise::HandshakePayload;
pub use stats::{StatsSnapshot, TransportStats};

pub use isthmus_core::{Keypair, NetworkId, NodeId, WireLimits};
