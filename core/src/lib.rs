//! Pure building blocks shared by every Isthmus crate: node and account identities
//! (ed25519), the per-network hash function, domain-separated strict signatures, and the
//! versioned, size-bounded msgpack wire codec.
//!
//! This crate never performs I/O, never spawns tasks and never panics on bytes that came
//! from outside: every decoder returns a typed [`WireError`] instead.

pub mod backoff;
pub mod codec;
pub mod hash;
pub mod identity;
pub mod sign;

pub use backoff::Backoff;
pub use codec::{FrameCodec, WireError, WireLimits, WIRE_VERSION};
pub use hash::{Hash32, HashAlgo};
pub use identity::{Keypair, NodeId, ParseIdError};
pub use sign::{Domain, NetworkId, SignError, Signature, SignedMessage};
