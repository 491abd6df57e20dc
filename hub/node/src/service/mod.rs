//! The hub's implementation of the HTTP API: one implementation per resource trait of
//! `isthmus-hub-api`, each over the interop core's domain service for it.
//!
//! | API trait | implementation | over |
//! |---|---|---|
//! | `Directory` | [`Directory`], [`WithRegistered`] | the adapters, the [`AdapterRegistry`] |
//! | `Operations` | [`InteropOperations`] | the [`InteropService`] |
//! | `Messages` | [`RelayMessages`] | the [`MessageRelay`] |
//! | `Adapters` | [`RegistryAdapters`] | the [`AdapterRegistry`] |
//! | `Provisioning` | [`provisioner::Provisioner`] | provisioned networks, linked through the registry |
//!
//! This is where API request and response bodies are mapped to and from the interop
//! core's domain types, and its typed errors to the API's; the interop core itself knows
//! no HTTP. [`ApiNotifier`] publishes the driver's changes as API events. Every object is
//! made for the caller's tenant, and [`AccountOwners`] says which tenant may move each
//! hub-wallet account.
//!
//! [`AdapterRegistry`]: isthmus_interop::AdapterRegistry
//! [`InteropService`]: isthmus_interop::InteropService
//! [`MessageRelay`]: isthmus_interop::MessageRelay

pub mod accounts;
pub mod adapters;
pub mod directory;
pub mod messages;
pub mod notifier;
pub mod operations;
pub mod provisioner;
pub mod status;

pub use accounts::{AccountOwners, SingleTenant};
pub use adapters::{RegistryAdapters, WithRegistered};
pub use directory::Directory;
pub use messages::RelayMessages;
pub use notifier::ApiNotifier;
pub use operations::InteropOperations;
pub use status::{message_status, operation_status, status_of};
