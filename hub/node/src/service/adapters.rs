//! `/v1/adapters` over the [`AdapterRegistry`], and the registered networks in the
//! platform and network listings.

use super::directory::kind_name;
use async_trait::async_trait;
use isthmus_adapter_api::Health;
use isthmus_core::NetworkId;
use isthmus_hub_api::model::{AdapterInfo, NetworkInfo, PlatformInfo, RegisterAdapter};
use isthmus_hub_api::{Adapters, BackendError, Directory as ApiDirectory, Principal};
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
        tenant: r.record.tenant.clone(),
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
            .register_for(&by.tenant, &by.name, req)
            .await
            .map_err(from_registry)?;
        Ok(adapter_info(&r))
    }

    async fn retire_adapter(&self, by: &Principal, id: &str) -> Result<AdapterInfo, BackendError> {
        let r = self
            .registry
            .retire_owned(id, Some(&by.tenant))
            .await
            .map_err(from_registry)?;
        let mut out = adapter_info(&r);
        out.status = "retired".into();
        out.healthy = false;
        Ok(out)
    }

    async fn adapters(&self) -> Result<Vec<AdapterInfo>, BackendError> {
        Ok(self.registry.list().iter().map(adapter_info).collect())
    }
}

/// The configured networks' listing, followed by the networks providers registered at run
/// time (as the registry last saw them: a registered adapter is not probed per request).
pub struct WithRegistered {
    pub configured: Arc<dyn ApiDirectory>,
    pub registry: Arc<AdapterRegistry>,
}

#[async_trait]
impl ApiDirectory for WithRegistered {
    async fn platforms(&self) -> Result<Vec<PlatformInfo>, BackendError> {
        let mut out = self.configured.platforms().await?;
        for r in self.registry.list() {
            let (kind, capabilities) = match &r.adapter {
                Some(a) => (
                    kind_name(a.descriptor().kind).to_owned(),
                    serde_json::to_value(&a.descriptor().capabilities).unwrap_or_default(),
                ),
                None => ("external".to_owned(), serde_json::Value::Null),
            };
            out.push(PlatformInfo {
                name: r.record.name,
                kind,
                healthy: r.health.is_usable(),
                capabilities,
            });
        }
        Ok(out)
    }

    async fn networks(&self) -> Result<Vec<NetworkInfo>, BackendError> {
        let mut out = self.configured.networks().await?;
        for r in self.registry.list() {
            let adapter = &r.adapter;
            let heads = match adapter {
                Some(a) => a.heads().await.map_err(|e| e.to_string()),
                None => Err("not attached".to_owned()),
            };
            let (status, head, fin, reason) = match heads {
                Ok(h) => ("up", h.head.height, h.finalized.height, None),
                Err(e) => ("down", 0, 0, Some(e)),
            };
            out.push(NetworkInfo {
                name: r.record.name,
                platform: adapter
                    .as_ref()
                    .map_or("external", |a| kind_name(a.descriptor().kind))
                    .to_owned(),
                status: status.to_owned(),
                consensus: adapter
                    .as_ref()
                    .map(|a| a.descriptor().consensus.clone())
                    .unwrap_or_default(),
                head_height: head,
                finalized_height: fin,
                reason,
            });
        }
        Ok(out)
    }
}
