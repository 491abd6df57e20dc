//! The relayer's TOML config. Every key is documented in `configs/relayer.toml`.

use crate::daemon::LinkSettings;
use isthmus_core::{NetworkId, NodeId};
use isthmus_transport::TransportKind;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayerConfig {
    /// File with the relayer's ed25519 seed as 64 hex digits (required).
    pub key_file: PathBuf,
    /// Where the outboxes live (required).
    pub data_dir: PathBuf,
    /// Prometheus metrics listener; none if absent.
    #[serde(default)]
    pub metrics_addr: Option<SocketAddr>,
    #[serde(rename = "link", default)]
    pub links: Vec<LinkConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    pub name: String,
    /// tcp, udp or quic.
    pub transport: TransportKind,
    /// The hub network id (transport handshakes are bound to it).
    pub network: u64,
    pub hub_addr: SocketAddr,
    pub hub_id: String,
    #[serde(default = "defaults::page")]
    pub page: usize,
    #[serde(default = "defaults::receipt_timeout_ms")]
    pub receipt_timeout_ms: u64,
    #[serde(default = "defaults::retry_base_ms")]
    pub retry_base_ms: u64,
    #[serde(default = "defaults::retry_max_ms")]
    pub retry_max_ms: u64,
    #[serde(default = "defaults::idle_poll_ms")]
    pub idle_poll_ms: u64,
    #[serde(default = "defaults::chunk_bytes")]
    pub chunk_bytes: usize,
}

/// Defaults, in one place.
pub mod defaults {
    pub fn page() -> usize {
        500
    }
    pub fn receipt_timeout_ms() -> u64 {
        5_000
    }
    pub fn retry_base_ms() -> u64 {
        200
    }
    pub fn retry_max_ms() -> u64 {
        30_000
    }
    pub fn idle_poll_ms() -> u64 {
        200
    }
    pub fn chunk_bytes() -> usize {
        256 * 1024
    }
}

impl RelayerConfig {
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Every problem at once.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.links.is_empty() {
            p.push("no [[link]] configured: the relayer would have nothing to do".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for l in &self.links {
            if l.name.trim().is_empty()
                || !l
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                p.push(format!(
                    "link name `{}` must be non-empty letters, digits, - or _",
                    l.name
                ));
            }
            if !names.insert(l.name.clone()) {
                p.push(format!("link name `{}` is used twice", l.name));
            }
            if l.hub_id.parse::<NodeId>().is_err() {
                p.push(format!(
                    "link `{}`: hub_id `{}` is not an identity (isth_…)",
                    l.name, l.hub_id
                ));
            }
            if l.page == 0 || l.page > 10_000 {
                p.push(format!(
                    "link `{}`: page must be 1..=10000, got {}",
                    l.name, l.page
                ));
            }
            if l.retry_base_ms == 0 || l.retry_base_ms > l.retry_max_ms {
                p.push(format!(
                    "link `{}`: retry_base_ms ({}) must be positive and at most retry_max_ms ({})",
                    l.name, l.retry_base_ms, l.retry_max_ms
                ));
            }
            if l.receipt_timeout_ms == 0 {
                p.push(format!(
                    "link `{}`: receipt_timeout_ms must be positive",
                    l.name
                ));
            }
        }
        p
    }
}

impl LinkConfig {
    pub fn network(&self) -> NetworkId {
        NetworkId(self.network)
    }

    /// Call after `validate()` passed.
    pub fn settings(&self) -> Result<LinkSettings, String> {
        Ok(LinkSettings {
            name: self.name.clone(),
            hub_addr: self.hub_addr,
            hub_id: self.hub_id.parse().map_err(|e| format!("{e}"))?,
            page: self.page,
            receipt_timeout: Duration::from_millis(self.receipt_timeout_ms),
            retry_base: Duration::from_millis(self.retry_base_ms),
            retry_max: Duration::from_millis(self.retry_max_ms),
            idle_poll: Duration::from_millis(self.idle_poll_ms),
            chunk_bytes: self.chunk_bytes,
        })
    }
}
