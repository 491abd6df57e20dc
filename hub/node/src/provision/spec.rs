//! What a provider orders: [`NetworkSpec`], a native network described by what matters to
//! its customers (consensus, size, visibility, block limits, hash, hardware, genesis
//! funds), read from the hub config or a `POST /v1/networks` body. [`NetworkSpec::check`]
//! lists every problem at once; [`NetworkSpec::to_config`] makes the network config its
//! nodes run, with the node keys the hub generated and the hub's attesters in its escrow.

use isthmus_chain::config::parse_identity;
use isthmus_chain::NetworkConfig;
use isthmus_core::{HashAlgo, NodeId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

/// Limits a spec must stay within (one machine runs every node of `hub serve`).
pub const MAX_NODES: usize = 16;
const MIN_BLOCK_INTERVAL_MS: u64 = 20;
const MAX_BLOCK_INTERVAL_MS: u64 = 600_000;
const MAX_BLOCK_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consensus {
    Pow,
    Pos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    #[default]
    Public,
    Private,
}

/// Each node's resource budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareSpec {
    #[serde(default = "d_cpus")]
    pub cpus: u32,
    #[serde(default = "d_memory")]
    pub memory_mb: u64,
    #[serde(default = "d_storage")]
    pub storage_mb: u64,
}

impl Default for HardwareSpec {
    fn default() -> Self {
        HardwareSpec {
            cpus: d_cpus(),
            memory_mb: d_memory(),
            storage_mb: d_storage(),
        }
    }
}

fn d_cpus() -> u32 {
    1
}
fn d_memory() -> u64 {
    256
}
fn d_storage() -> u64 {
    1024
}
fn d_interval() -> u64 {
    500
}
fn d_block_bytes() -> u64 {
    1024 * 1024
}
fn d_block_txs() -> u32 {
    5_000
}
fn d_nodes() -> usize {
    1
}

/// A native network to provision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Lowercase letters, digits and `-`, starting with a letter; at most 32.
    pub name: String,
    /// The network id its transactions are signed for; by default derived from the name.
    #[serde(default)]
    pub network_id: Option<u64>,
    /// `native` (the default; the only platform the hub provisions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    pub consensus: Consensus,
    #[serde(default = "d_nodes")]
    pub nodes: usize,
    #[serde(default)]
    pub visibility: Visibility,
    /// A private network's readers and peers (`isth_…` identities).
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default = "d_interval")]
    pub block_interval_ms: u64,
    #[serde(default = "d_block_bytes")]
    pub max_block_bytes: u64,
    #[serde(default = "d_block_txs")]
    pub max_block_txs: u32,
    #[serde(default)]
    pub hash: HashAlgo,
    #[serde(default)]
    pub hardware: HardwareSpec,
    /// Genesis funds: `isth_…` account → amount (a decimal string or a number).
    #[serde(default)]
    pub alloc: BTreeMap<String, Amount>,
    /// PoW: starting difficulty and retarget window (blocks).
    #[serde(default)]
    pub pow_difficulty: Option<u64>,
    #[serde(default)]
    pub pow_window: Option<u64>,
    /// PoS: round step timeouts.
    #[serde(default)]
    pub pos_timeout_ms: Option<u64>,
}

/// An amount as JSON carries it: a decimal string (preferred) or a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Amount {
    Text(String),
    Number(u64),
}

impl Amount {
    fn value(&self) -> Result<u64, String> {
        match self {
            Amount::Number(n) => Ok(*n),
            Amount::Text(s) => s
                .parse::<u64>()
                .map_err(|_| format!("`{s}` is not a whole amount below 2^64")),
        }
    }
}

impl NetworkSpec {
    /// The network id: the one given, or one derived from the name (stable across runs
    /// and list orders; a collision is reported where networks are listed together).
    pub fn id(&self) -> u64 {
        self.network_id.unwrap_or_else(|| {
            let d = HashAlgo::Sha256.digest(self.name.as_bytes());
            let mut b = [0u8; 8];
            b.copy_from_slice(&d.0[..8]);
            100_000 + u64::from_be_bytes(b) % 900_000
        })
    }

    /// The hub's own chain as `validators` PoS validator processes, blocks every
    /// `block_ms`, with no escrow and no funds (its modules record; they move nothing).
    pub fn hub_chain(validators: usize, block_ms: u64) -> NetworkSpec {
        NetworkSpec {
            name: "hub".into(),
            network_id: Some(crate::up::nets::HUB_NETWORK_ID),
            platform: None,
            consensus: Consensus::Pos,
            nodes: validators,
            visibility: Visibility::Public,
            allow: Vec::new(),
            block_interval_ms: block_ms,
            max_block_bytes: d_block_bytes(),
            max_block_txs: d_block_txs(),
            hash: HashAlgo::Sha256,
            hardware: HardwareSpec::default(),
            alloc: BTreeMap::new(),
            pow_difficulty: None,
            pow_window: None,
            pos_timeout_ms: None,
        }
    }

    /// Every problem with the spec, at once (empty: it can be provisioned).
    pub fn check(&self) -> Vec<String> {
        let mut p = Vec::new();
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 32
            && self.name.starts_with(|c: char| c.is_ascii_lowercase())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            p.push(format!(
                "name `{}`: use 1 to 32 lowercase letters, digits or `-`, starting with a letter",
                self.name
            ));
        }
        if let Some(other) = self.platform.as_deref().filter(|p| *p != "native") {
            p.push(format!(
                "platform `{other}`: the hub provisions `native` networks only"
            ));
        }
        if self.network_id == Some(0) {
            p.push("network_id = 0 is reserved".into());
        }
        if self.nodes == 0 || self.nodes > MAX_NODES {
            p.push(format!("nodes = {}: between 1 and {MAX_NODES}", self.nodes));
        }
        if !(MIN_BLOCK_INTERVAL_MS..=MAX_BLOCK_INTERVAL_MS).contains(&self.block_interval_ms) {
            p.push(format!(
                "block_interval_ms = {}: between {MIN_BLOCK_INTERVAL_MS} and {MAX_BLOCK_INTERVAL_MS}",
                self.block_interval_ms
            ));
        }
        if self.max_block_bytes < 1024 || self.max_block_bytes > MAX_BLOCK_BYTES {
            p.push(format!(
                "max_block_bytes = {}: between 1024 and {MAX_BLOCK_BYTES}",
                self.max_block_bytes
            ));
        }
        if self.max_block_txs == 0 {
            p.push("max_block_txs = 0: at least 1".into());
        }
        let hw = &self.hardware;
        if hw.cpus == 0 || hw.memory_mb < 32 || hw.storage_mb < 64 {
            p.push(format!(
                "hardware: at least 1 cpu, 32 MB memory and 64 MB storage (got {} cpus, {} MB, {} MB)",
                hw.cpus, hw.memory_mb, hw.storage_mb
            ));
        }
        match self.visibility {
            Visibility::Private if self.allow.is_empty() => {
                p.push("visibility = private needs an `allow` list of identities".into())
            }
            Visibility::Public if !self.allow.is_empty() => {
                p.push("allow is only meaningful with visibility = private".into())
            }
            _ => {}
        }
        for a in &self.allow {
            if let Err(e) = parse_id(a) {
                p.push(format!("allow `{a}`: {e}"));
            }
        }
        for (account, amount) in &self.alloc {
            if let Err(e) = parse_id(account) {
                p.push(format!("alloc `{account}`: {e}"));
            }
            if let Err(e) = amount.value() {
                p.push(format!("alloc `{account}`: {e}"));
            }
        }
        match self.consensus {
            Consensus::Pow => {
                if self.pos_timeout_ms.is_some() {
                    p.push("pos_timeout_ms applies to consensus = pos only".into());
                }
                if self.pow_difficulty == Some(0) {
                    p.push("pow_difficulty = 0: at least 1".into());
                }
                if self.pow_window == Some(0) {
                    p.push("pow_window = 0: at least 1".into());
                }
            }
            Consensus::Pos => {
                if self.pow_difficulty.is_some() || self.pow_window.is_some() {
                    p.push("pow_difficulty and pow_window apply to consensus = pow only".into());
                }
                if self.pos_timeout_ms.is_some_and(|t| t < 10) {
                    p.push("pos_timeout_ms: at least 10".into());
                }
            }
        }
        p
    }

    /// The network config of this spec, for network id `network_id`, with node `i`'s key in
    /// `node_keys[i]` (a key file path) and identity `node_ids[i]`, and an escrow that
    /// trusts `threshold` of `attesters`. Fails with every problem if the spec (or the
    /// resulting config) is not valid.
    pub fn to_config(
        &self,
        network_id: u64,
        node_keys: &[String],
        node_ids: &[NodeId],
        attesters: &[NodeId],
        threshold: usize,
    ) -> Result<NetworkConfig, Vec<String>> {
        let mut p = self.check();
        if node_keys.len() != self.nodes || node_ids.len() != self.nodes {
            p.push(format!(
                "{} node keys for {} nodes",
                node_keys.len(),
                self.nodes
            ));
        }
        if !p.is_empty() {
            return Err(p);
        }
        let consensus = match self.consensus {
            Consensus::Pow => {
                let mut c = json!({"type": "pow", "hash": self.hash});
                if let Some(d) = self.pow_difficulty {
                    c["initial_difficulty"] = json!(d);
                }
                if let Some(w) = self.pow_window {
                    c["retarget_window"] = json!(w);
                }
                c
            }
            Consensus::Pos => {
                let t = self
                    .pos_timeout_ms
                    .unwrap_or((self.block_interval_ms * 3).max(300));
                json!({"type": "pos", "hash": self.hash, "propose_timeout_ms": t,
                       "prevote_timeout_ms": t, "precommit_timeout_ms": t})
            }
        };
        let allocations: Vec<_> = self
            .alloc
            .iter()
            .map(|(a, v)| json!({"account": a, "balance": v.value().unwrap_or(0)}))
            .collect();
        let validators: Vec<_> = match self.consensus {
            Consensus::Pos => node_ids
                .iter()
                .map(|id| json!({"id": id.to_string(), "stake": 100}))
                .collect(),
            Consensus::Pow => Vec::new(),
        };
        let nodes: Vec<_> = node_keys
            .iter()
            .enumerate()
            .map(|(i, k)| json!({"index": i, "key": k}))
            .collect();
        let mut allow: Vec<String> = self.allow.clone();
        if self.visibility == Visibility::Private {
            // The network's own nodes must reach each other.
            allow.extend(node_ids.iter().map(ToString::to_string));
        }
        let mut cfg = json!({
            "name": self.name,
            "network_id": network_id,
            "visibility": match self.visibility { Visibility::Public => "public", Visibility::Private => "private" },
            "nodes": self.nodes,
            "block_interval_ms": self.block_interval_ms,
            "max_block_bytes": self.max_block_bytes,
            "max_block_txs": self.max_block_txs,
            "consensus": consensus,
            "genesis": {"allocation": allocations, "validator": validators},
            "hardware": {"cpu_cores": self.hardware.cpus, "memory_mb": self.hardware.memory_mb,
                         "storage_mb": self.hardware.storage_mb},
            "node": nodes,
        });
        if self.visibility == Visibility::Private {
            cfg["allowlist"] = json!(allow);
        }
        if !attesters.is_empty() {
            cfg["escrow"] = json!({
                "hub_attesters": attesters.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "threshold": threshold,
            });
        }
        let cfg: NetworkConfig =
            serde_json::from_value(cfg).map_err(|e| vec![format!("network config: {e}")])?;
        let problems = cfg.validate();
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(problems)
        }
    }
}

fn parse_id(s: &str) -> Result<NodeId, String> {
    if s.starts_with("dev:") {
        return Err("development keys are not accepted here; use an `isth_…` identity".into());
    }
    parse_identity(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_core::Keypair;

    fn spec(json: serde_json::Value) -> NetworkSpec {
        serde_json::from_value(json).expect("spec parses")
    }

    #[test]
    fn every_problem_of_a_bad_spec_is_listed_at_once() {
        let s = spec(json!({
            "name": "Gamma!", "consensus": "pos", "nodes": 0, "visibility": "private",
            "block_interval_ms": 1, "max_block_bytes": 10, "max_block_txs": 0,
            "hardware": {"cpus": 0, "memory_mb": 1, "storage_mb": 1},
            "alloc": {"nobody": "-5"}, "pow_difficulty": 3
        }));
        let all = s.check().join("\n");
        for needle in [
            "name `Gamma!`",
            "nodes = 0",
            "block_interval_ms = 1",
            "max_block_bytes = 10",
            "max_block_txs = 0",
            "hardware",
            "needs an `allow` list",
            "alloc `nobody`",
            "`-5` is not a whole amount",
            "pow_difficulty and pow_window apply to consensus = pow only",
        ] {
            assert!(all.contains(needle), "missing `{needle}` in:\n{all}");
        }
    }

    #[test]
    fn a_spec_becomes_a_valid_network_config() {
        let alice = Keypair::dev("alice").id();
        let s = spec(json!({
            "name": "gamma", "consensus": "pos", "nodes": 2, "block_interval_ms": 250,
            "alloc": {alice.to_string(): "1000000"}
        }));
        assert!(s.check().is_empty(), "{:?}", s.check());
        let ids = [Keypair::dev("n0").id(), Keypair::dev("n1").id()];
        let att = Keypair::dev("attester").id();
        let cfg = s
            .to_config(7200, &["dev:n0".into(), "dev:n1".into()], &ids, &[att], 1)
            .expect("valid");
        assert_eq!(cfg.network().0, 7200);
        assert_eq!(cfg.nodes, 2);
        assert_eq!(cfg.block_interval_ms, 250);
        assert!(cfg.allocations().contains(&(alice, 1_000_000)));
        assert_eq!(cfg.escrow.attesters(), vec![att]);
        assert_eq!(cfg.validators().len(), 2);
        assert_eq!(cfg.node_key(1).expect("key").id(), ids[1]);
    }

    #[test]
    fn development_identities_are_refused_in_a_spec() {
        let s = spec(json!({"name": "delta", "consensus": "pow", "alloc": {"dev:alice": 5}}));
        assert!(s
            .check()
            .join("\n")
            .contains("development keys are not accepted"));
    }
}
