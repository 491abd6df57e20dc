//! The EVM platform adapter: [`EvmAdapter`] implements `isthmus_adapter_api::Adapter` for
//! Ethereum-style chains over JSON-RPC (alloy). It keeps its own hash-linked header view and acts
//! on a lock only once it is `confirmations` blocks deep, rolls that view back on a reorg
//! (emitting `Reverted`, so a lock that vanished never becomes a release decision), runs one
//! nonce manager per signer (resynced from the chain on error), estimates gas, replaces stuck
//! transactions with capped fee bumps, and deploys the lock contracts of
//! `lock-contracts/evm/` (escrow and HTLC) on demand. Signing keys come from the hub's
//! `Wallet`; release and refund carry the hub's secp256k1 attestations, which the escrow checks
//! with `ecrecover`.
//!
//! It must never treat a node's answer as finality: receipts count only when their block is on
//! the adapter's own header chain and deep enough, and evidence is checked against that chain.
//! It never holds key material beyond one signing operation.

mod adapter;
#[cfg(feature = "conformance")]
pub mod anvil;
pub mod config;
pub mod contracts;
mod evidence;
pub mod node;
pub mod view;

pub use adapter::{Deployment, EvmAdapter, EvmAsset};
pub use config::EvmConfig;
