//! Out-of-process adapters: a platform adapter running as its own process (in any language)
//! serves the operations of [`isthmus_adapter_api::Adapter`] over the language-neutral
//! protocol of `PROTOCOL.md` (msgpack requests and answers over Noise-TCP, the adapter's
//! Noise static key bound to its registered ed25519 identity). [`RemoteAdapter`] is the hub's
//! client, [`serve_adapter`] the adapter side, and the `adapter-host` binary serves an
//! adapter out of process.
//!
//! A registered adapter is trusted for liveness only. This crate must never accept an
//! answer from an unauthenticated peer, never pass on an answer whose kind does not fit the
//! call, and never treat an adapter it caught lying as healthy again on its own.

pub mod client;
pub mod server;
pub mod wire;

pub use client::{RemoteAdapter, RemoteConfig, RemoteError};
pub use server::{dispatch, serve_adapter, ControlHandler, MAX_IN_FLIGHT};
pub use wire::{Answer, Call, Control, Describe, Request, Response, PROTOCOL_VERSION};
