//! The platform adapter for networks of the hub's own chain engine (`isthmus-chain`), PoS or
//! PoW, over an in-process [`isthmus_chain::node::NodeHandle`].
//!
//! Locks are calls of the chain's `escrow` module (lock, release on a threshold of hub
//! attestations, refund, HTLC claim). Finality evidence is built from the node's answers but
//! verified as a light client against the network's genesis config that the hub holds:
//! commit certificates against the validator set for PoS, linked headers with enough work
//! and confirmations for PoW, and Merkle inclusion proofs for both.
//!
//! It must never take a node's word for finality, never sign with a key it was not handed
//! for the purpose (the wallet's key of a leg's owner, or the hub's submission key), and never
//! submit a lock-contract call the escrow would refuse: requests are checked against the
//! chain first, so a refusal changes nothing.

mod adapter;
mod events;
pub mod light;
mod packets;
mod packets_port;
mod prover;
pub mod submit;

pub use adapter::{escrow_attestation, NativeAdapter, NativeNetwork, ASSET};
pub use packets_port::NativePacketPort;
pub use prover::NativeProver;
pub use submit::submit_kind;
