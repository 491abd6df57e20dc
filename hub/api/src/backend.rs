//! What the API needs from the hub: one small trait per resource. The hub node implements
//! them; the API layer owns authentication, idempotency, validation of shapes, and the
//! event stream.
//!
//! - [`Directory`] serves `GET /v1/platforms` and `GET /v1/networks`;
//! - [`Operations`] serves `/v1/transfers` and `/v1/swaps`;
//! - [`Messages`] serves `/v1/messages`;
//! - [`Adapters`] serves `/v1/adapters`.
//!
//! A hub without a resource passes the matching stand-in: [`NoMessages`] (no packet port)
//! or [`NoRegistry`] (no adapters at run time).

use crate::auth::Principal;
use crate::model::*;
use async_trait::async_trait;
use std::sync::Arc;

/// Errors a backend may return. `Unavailable` is the only retryable one.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The request is well-formed but the hub refuses it (unknown network, insufficient
    /// funds, timelock margin too small, ...). Not retryable as is.
    #[error("{message}")]
    Rejected {
        message: String,
        details: Vec<String>,
    },
    #[error("{0} not found")]
    NotFound(String),
    /// The request clashes with the state of an object (a name in use, a network still in
    /// use); `details` names what it clashes with. Not retryable as is.
    #[error("{message}")]
    Conflict {
        message: String,
        details: Vec<String>,
    },
    /// The caller may not do this (e.g. move a wallet account of another tenant); nothing
    /// changed. Not retryable.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A platform or the hub chain is temporarily unreachable. Retrying can help.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bug or corrupted state; logged, reported to clients as `internal`.
    #[error("internal: {0}")]
    Internal(String),
}

impl BackendError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, BackendError::Unavailable(_))
    }
}

/// A random operation id (128 bits from the OS's generator), recorded under the caller's
/// idempotency key before the backend is asked. The backend must use it as the
/// operation's id, so that a retry after a crash between "operation recorded" and
/// "response recorded" finds the same operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpId(pub String);

/// The platforms and networks the hub links.
#[async_trait]
pub trait Directory: Send + Sync + 'static {
    async fn platforms(&self) -> Result<Vec<PlatformInfo>, BackendError>;
    async fn networks(&self) -> Result<Vec<NetworkInfo>, BackendError>;
}

/// Two-phase transfers and HTLC swaps. `kind` is [`OpKind::Transfer`] or [`OpKind::Swap`]
/// (messages are [`Messages`]').
#[async_trait]
pub trait Operations: Send + Sync + 'static {
    /// Create (or, if `id` exists already, return) a two-phase transfer. Must be durable
    /// before returning.
    async fn create_transfer(
        &self,
        id: &OpId,
        by: &Principal,
        req: CreateTransfer,
    ) -> Result<OperationStatus, BackendError>;
    async fn create_swap(
        &self,
        id: &OpId,
        by: &Principal,
        req: CreateSwap,
    ) -> Result<OperationStatus, BackendError>;
    async fn get_operation(
        &self,
        kind: OpKind,
        id: &str,
    ) -> Result<Option<OperationStatus>, BackendError>;
    /// Operations of `kind` owned by one of `tenants`, in id order, after `after`, at most
    /// `limit`.
    async fn list_operations(
        &self,
        kind: OpKind,
        tenants: &[String],
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<OperationStatus>, BackendError>;
}

/// Cross-network messages; their statuses have the kind [`OpKind::Message`].
#[async_trait]
pub trait Messages: Send + Sync + 'static {
    /// Create (or, if `id` exists already, return) a message. Must be durable before
    /// returning.
    async fn create_message(
        &self,
        id: &OpId,
        by: &Principal,
        req: CreateMessage,
    ) -> Result<OperationStatus, BackendError>;
    async fn get_message(&self, id: &str) -> Result<Option<OperationStatus>, BackendError>;
    /// Messages owned by one of `tenants`, in id order, after `after`, at most `limit`.
    async fn list_messages(
        &self,
        tenants: &[String],
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<OperationStatus>, BackendError>;
}

/// Out-of-process adapters providers attach at run time.
#[async_trait]
pub trait Adapters: Send + Sync + 'static {
    /// Attach an out-of-process adapter; durable before returning.
    async fn register_adapter(
        &self,
        by: &Principal,
        req: RegisterAdapter,
    ) -> Result<AdapterInfo, BackendError>;
    /// Retire an adapter registered by `by`'s tenant (another tenant's answers
    /// `NotFound`, as a missing one); transfers through it pause, they are not dropped.
    async fn retire_adapter(&self, by: &Principal, id: &str) -> Result<AdapterInfo, BackendError>;
    async fn adapters(&self) -> Result<Vec<AdapterInfo>, BackendError>;
}

/// The [`Messages`] of a hub that relays none: creating one is unavailable, and there are
/// none to read.
pub struct NoMessages;

#[async_trait]
impl Messages for NoMessages {
    async fn create_message(
        &self,
        _id: &OpId,
        _by: &Principal,
        _req: CreateMessage,
    ) -> Result<OperationStatus, BackendError> {
        Err(BackendError::Unavailable(
            "message relay is not enabled on this hub: no packet port is configured".into(),
        ))
    }

    async fn get_message(&self, _id: &str) -> Result<Option<OperationStatus>, BackendError> {
        Ok(None)
    }

    async fn list_messages(
        &self,
        _tenants: &[String],
        _after: Option<&str>,
        _limit: usize,
    ) -> Result<Page<OperationStatus>, BackendError> {
        Ok(Page {
            items: Vec::new(),
            next: None,
        })
    }
}

/// The [`Adapters`] of a hub that takes no adapters at run time: registering is refused,
/// there is none to retire, and the list is empty.
pub struct NoRegistry;

#[async_trait]
impl Adapters for NoRegistry {
    async fn register_adapter(
        &self,
        _by: &Principal,
        _req: RegisterAdapter,
    ) -> Result<AdapterInfo, BackendError> {
        Err(BackendError::Rejected {
            message: "this hub does not register adapters at run time".into(),
            details: vec![],
        })
    }

    async fn retire_adapter(&self, _by: &Principal, id: &str) -> Result<AdapterInfo, BackendError> {
        Err(BackendError::NotFound(format!("adapter `{id}`")))
    }

    async fn adapters(&self) -> Result<Vec<AdapterInfo>, BackendError> {
        Ok(Vec::new())
    }
}

/// The hub's implementation of every resource the API serves.
#[derive(Clone)]
pub struct Backends {
    pub directory: Arc<dyn Directory>,
    pub operations: Arc<dyn Operations>,
    pub messages: Arc<dyn Messages>,
    pub adapters: Arc<dyn Adapters>,
    pub provisioning: Arc<dyn crate::networks::Provisioning>,
}

impl Backends {
    /// A hub that serves transfers and swaps only: no message relay, no adapters at run
    /// time.
    pub fn new(directory: Arc<dyn Directory>, operations: Arc<dyn Operations>) -> Backends {
        Backends {
            directory,
            operations,
            messages: Arc::new(NoMessages),
            adapters: Arc::new(NoRegistry),
            provisioning: Arc::new(crate::networks::NoProvisioning),
        }
    }

    pub fn with_provisioning(
        mut self,
        provisioning: Arc<dyn crate::networks::Provisioning>,
    ) -> Backends {
        self.provisioning = provisioning;
        self
    }

    pub fn with_messages(mut self, messages: Arc<dyn Messages>) -> Backends {
        self.messages = messages;
        self
    }

    pub fn with_adapters(mut self, adapters: Arc<dyn Adapters>) -> Backends {
        self.adapters = adapters;
        self
    }
}
