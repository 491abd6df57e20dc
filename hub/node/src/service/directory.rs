//! The networks the hub links, by name, for the API: resolution of names in requests,
//! `GET /v1/platforms` and `GET /v1/networks` from the adapters' own reports.

use async_trait::async_trait;
use isthmus_adapter_api::{Adapter, PlatformKind};
use isthmus_core::NetworkId;
use isthmus_hub_api::model::{NetworkInfo, PlatformInfo};
use isthmus_hub_api::{BackendError, Directory as ApiDirectory};
use isthmus_interop::NetworkDirectory;
use std::sync::Arc;

/// Named adapters, in listing order.
pub struct Directory {
    pub nets: Vec<(String, Arc<dyn Adapter>)>,
}

pub(crate) fn kind_name(k: PlatformKind) -> &'static str {
    match k {
        PlatformKind::Native => "native",
        PlatformKind::Evm => "evm",
        PlatformKind::Utxo => "utxo",
        PlatformKind::External => "external",
    }
}

impl NetworkDirectory for Directory {
    fn resolve(&self, name: &str) -> Option<NetworkId> {
        self.nets
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.descriptor().network)
    }

    fn name_of(&self, id: NetworkId) -> String {
        self.nets
            .iter()
            .find(|(_, a)| a.descriptor().network == id)
            .map_or_else(|| format!("network-{id}"), |(n, _)| n.clone())
    }
}

#[async_trait]
impl ApiDirectory for Directory {
    async fn platforms(&self) -> Result<Vec<PlatformInfo>, BackendError> {
        let mut out = Vec::with_capacity(self.nets.len());
        for (name, a) in &self.nets {
            let d = a.descriptor();
            let healthy = a.health().await.is_ok_and(|h| h.is_usable());
            out.push(PlatformInfo {
                name: name.clone(),
                kind: kind_name(d.kind).to_owned(),
                healthy,
                capabilities: serde_json::to_value(&d.capabilities)
                    .map_err(|e| BackendError::Internal(e.to_string()))?,
            });
        }
        Ok(out)
    }

    async fn networks(&self) -> Result<Vec<NetworkInfo>, BackendError> {
        let mut out = Vec::with_capacity(self.nets.len());
        for (name, a) in &self.nets {
            let d = a.descriptor();
            let (status, head, fin, reason) = match a.heads().await {
                Ok(h) => ("up", h.head.height, h.finalized.height, None),
                Err(e) => ("down", 0, 0, Some(e.to_string())),
            };
            out.push(NetworkInfo {
                name: name.clone(),
                platform: kind_name(d.kind).to_owned(),
                status: status.to_owned(),
                consensus: d.consensus.clone(),
                head_height: head,
                finalized_height: fin,
                reason,
            });
        }
        Ok(out)
    }
}
