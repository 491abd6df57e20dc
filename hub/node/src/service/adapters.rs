//! `/v1/adapters` over the [`AdapterRegistry`].

use async_trait::async_trait;
use isthmus_adapter_api::Health;
use isthmus_core::NetworkId;
use isthmus_hub_api::model::{AdapterInfo, RegisterAdapter};
use isthmus_hub_api::{Adapters, BackendError, Principal};
use isthmus_interop::{AdapterRegistry, RegisteredAdapter, Registration, RegistryError};
use std::sync::Arc;

/// The adapters providers register at run time.
pub struct RegistryAdapters {
    pub registry: Arc<AdapterRegistry>,
}

/// The API view of a registered adapter (`active`).
pub fn adapter_info(r: &RegisteredAdapter) -> AdapterInfo {
    AdapterInfo {
        id: r.record.name.clone(),
        name: r.record.name.clone(),
        network_id: r.record.network.0,
        endpoint: r.record.endpoint.clone(),
        identity: r.record.identity.clone(),
        status: "active".into(),
        healthy: r.health.is_usable(),
        reason: match &r.health {
            Health::Healthy => None,
            Health::Degraded { reason } | Health::Unhealthy { reason } => Some(reason.clone()),
        },
        registered_at: r.record.registered_at,
    }
}

/// The API error of a registry error.
pub fn from_registry(e: RegistryError) -> BackendError {
    let rejected = |details| BackendError::Rejected {
        message: e.to_string(),
        details,
    };
    match &e {
        RegistryError::NameTaken(name) => {
            rejected(vec![format!("name: `{name}` is taken; retire it first")])
        }
        RegistryError::NetworkTaken { network, .. } | RegistryError::Configured(network) => {
            rejected(vec![format!("network_id: {network} is taken")])
        }
        RegistryError::Refused { reason, .. } => rejected(vec![reason.clone()]),
        RegistryError::Unreachable(m) => BackendError::Unavailable(m.clone()),
        RegistryError::NotFound(name) => BackendError::NotFound(format!("adapter `{name}`")),
        RegistryError::Store(cause) => BackendError::Internal(cause.clone()),
    }
}

#[async_trait]
impl Adapters for RegistryAdapters {
    async fn register_adapter(
        &self,
        by: &Principal,
        req: RegisterAdapter,
    ) -> Result<AdapterInfo, BackendError> {
        let req = Registration {
            name: req.name,
            network: NetworkId(req.network_id),
            endpoint: req.endpoint,
            identity: req.identity,
        };
        let r = self
            .registry
            .register(&by.name, req)
            .await
            .map_err(from_registry)?;
        Ok(adapter_info(&r))
    }

    async fn retire_adapter(&self, _by: &Principal, id: &str) -> Result<AdapterInfo, BackendError> {
        let r = self.registry.retire(id).await.map_err(from_registry)?;
        let mut out = adapter_info(&r);
        out.status = "retired".into();
        out.healthy = false;
        Ok(out)
    }

    async fn adapters(&self) -> Result<Vec<AdapterInfo>, BackendError> {
        Ok(self.registry.list().iter().map(adapter_info).collect())
    }
}
