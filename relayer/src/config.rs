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
    /// The network this link watches. An EVM source makes the link carry lock evidence to
    /// the hub's evidence ingress at `hub_addr`; a native source makes it carry that
    /// network's packets, each with a light-client proof, to the hub's packet ingress.
    /// Without one, the link carries what an embedding process queued in its outbox.
    #[serde(default)]
    pub source: Option<SourceConfig>,
}

/// Where an evidence link reads lock events (see [`crate::evidence`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// An EVM chain, watched through the EVM adapter.
    Evm(EvmSource),
    /// A native network, watched through the native adapter over its nodes' RPC.
    Native(NativeSource),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NativeSource {
    /// Events read per poll.
    #[serde(default = "defaults::source_page")]
    pub page: u32,
    /// Wait between polls when nothing is new.
    #[serde(default = "defaults::source_poll_ms")]
    pub poll_ms: u64,
    /// The network's genesis config (TOML), as its nodes run it: proofs are built and the
    /// nodes' genesis is checked against it.
    pub config: PathBuf,
    /// The nodes to read from (one is enough; calls move on when one is down).
    #[serde(rename = "node")]
    pub nodes: Vec<NativeNode>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NativeNode {
    /// The node's RPC address (`hub node run --rpc`).
    pub rpc: SocketAddr,
    /// The node's identity (`isth_…`).
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvmSource {
    /// Events read per poll.
    #[serde(default = "defaults::source_page")]
    pub page: u32,
    /// Wait between polls when nothing is new.
    #[serde(default = "defaults::source_poll_ms")]
    pub poll_ms: u64,
    /// The chain, with the same keys as the hub's config for it. This library never reads
    /// it: the `relayer` binary hands it to the EVM adapter, which validates it.
    pub evm: toml::Table,
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
    pub fn source_page() -> u32 {
        100
    }
    pub fn source_poll_ms() -> u64 {
        500
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
            if let Some(src) = &l.source {
                p.extend(
                    src.validate()
                        .into_iter()
                        .map(|e| format!("link `{}`: source: {e}", l.name)),
                );
            }
        }
        p
    }
}

impl SourceConfig {
    /// Every problem of this source that does not need the platform's own config type (the
    /// binary adds the adapter's checks of the platform table).
    pub fn validate(&self) -> Vec<String> {
        let (page, poll_ms) = match self {
            SourceConfig::Evm(s) => (s.page, s.poll_ms),
            SourceConfig::Native(s) => (s.page, s.poll_ms),
        };
        let mut p = Vec::new();
        if page == 0 || page > 10_000 {
            p.push(format!("page must be 1..=10000, got {page}"));
        }
        if poll_ms == 0 {
            p.push("poll_ms must be positive".into());
        }
        if let SourceConfig::Native(s) = self {
            if s.nodes.is_empty() {
                p.push("native: at least one [[link.source.node]]".into());
            }
            for n in &s.nodes {
                if let Err(e) = n.id.parse::<NodeId>() {
                    p.push(format!("native: node id `{}`: {e}", n.id));
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    const LINK: &str = r#"
        key_file = "k"
        data_dir = "d"
        [[link]]
        name = "anvil"
        transport = "tcp"
        network = 1
        hub_addr = "127.0.0.1:1"
        hub_id = "isth_H6qBrwuboFWzx9C796NJDb1a7Z87qU1YCxA4Jy79YCiB"
    "#;

    fn with_source(source: &str) -> Result<RelayerConfig, String> {
        RelayerConfig::parse(&format!("{LINK}\n{source}"))
    }

    /// The library keeps the platform table opaque (the binary's adapter reads it).
    const EVM: &str = "[link.source.evm]\nchain_id = 31337";

    #[test]
    fn an_evm_source_gets_its_defaults_and_every_problem_is_listed() {
        let good = with_source(&format!("[link.source]\nkind = \"evm\"\n{EVM}")).unwrap();
        assert_eq!(good.validate(), Vec::<String>::new());
        let Some(SourceConfig::Evm(src)) = &good.links[0].source else {
            panic!("no evm source");
        };
        assert_eq!((src.page, src.poll_ms), (100, 500), "defaults");
        assert_eq!(src.evm.get("chain_id"), Some(&toml::Value::Integer(31337)));

        let bad = with_source(&format!(
            "[link.source]\nkind = \"evm\"\npage = 0\npoll_ms = 0\n{EVM}"
        ))
        .unwrap();
        let p = bad.validate();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p.iter().all(|e| e.starts_with("link `anvil`: source: ")),
            "{p:?}"
        );

        // Unknown kinds and unknown keys are refused when parsing, naming them.
        let e = with_source("[link.source]\nkind = \"solana\"").unwrap_err();
        assert!(e.contains("solana"), "{e}");
        let e =
            with_source(&format!("[link.source]\nkind = \"evm\"\nbogus = 1\n{EVM}")).unwrap_err();
        assert!(e.contains("bogus"), "{e}");
    }
}
