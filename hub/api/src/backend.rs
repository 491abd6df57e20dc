//! What the API needs from the hub. The hub node implements [`HubBackend`]; the API layer
//! owns authentication, idempotency, validation of shapes, and the event stream.

use crate::auth::Principal;
use crate::model::*;
use async_trait::async_trait;

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

/// A deterministic operation id derived from (principal, operation kind, idempotency
/// key). The backend must use it as the operation's id, so that a retry after a crash
/// between "operation recorded" and "response recorded" finds the same operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpId(pub String);

#[async_trait]
pub trait HubBackend: Send + Sync + 'static {
    async fn platforms(&self) -> Result<Vec<PlatformInfo>, BackendError>;
    async fn networks(&self) -> Result<Vec<NetworkInfo>, BackendError>;
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
    async fn create_message(
        &self,
        id: &OpId,
        by: &Principal,
        req: CreateMessage,
    ) -> Result<OperationStatus, BackendError>;
    async fn get_operation(
        &self,
        kind: OpKind,
        id: &str,
    ) -> Result<Option<OperationStatus>, BackendError>;
    /// Operations of `kind` in id order, after `after`, at most `limit`.
    async fn list_operations(
        &self,
        kind: OpKind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<OperationStatus>, BackendError>;

    /// Attach an out-of-process adapter; durable before returning. Hubs that take no
    /// adapters at run time keep this default.
    async fn register_adapter(
        &self,
        by: &Principal,
        req: RegisterAdapter,
    ) -> Result<AdapterInfo, BackendError> {
        let _ = (by, req);
        Err(no_registry())
    }

    /// Retire a registered adapter; transfers through it pause, they are not dropped.
    async fn retire_adapter(&self, by: &Principal, id: &str) -> Result<AdapterInfo, BackendError> {
        let _ = by;
        Err(BackendError::NotFound(format!("adapter `{id}`")))
    }

    async fn adapters(&self) -> Result<Vec<AdapterInfo>, BackendError> {
        Ok(Vec::new())
    }
}

fn no_registry() -> BackendError {
    BackendError::Rejected {
        message: "this hub does not register adapters at run time".into(),
        details: vec![],
    }
}
