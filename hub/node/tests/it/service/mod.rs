//! The interop core behind the hub's implementation of the HTTP API (`isthmus_hub::service`):
//! API requests are mapped to domain requests and driven to completion, statuses and events
//! are the API's. The simulated escrows are the interop core tests' world (`world.rs`, shared by path).

use async_trait::async_trait;
use isthmus_core::NetworkId;
use isthmus_interop::*;
use isthmus_lock_contracts::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod api;
mod refusal;
mod tenants;
mod wired;
#[path = "../../../../interop/tests/it/world.rs"]
mod world;
pub(crate) use world::*;
