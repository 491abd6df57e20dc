//! Network configuration: the TOML file that describes one chain network.
//!
//! Every default lives in [`defaults`]; [`NetworkConfig::validate`] returns every problem at
//! once. Inner modules never see TOML: they receive [`NetworkConfig`] and the derived,
//! typed values ([`NodeBudget`], [`ProtocolRules`]).
//!
//! Identities in the file (`allowlist`, allocations, validators, node keys) are written
//! either as `isth_…` ids or as `dev:LABEL`, a deterministic development key derived from
//! the label (never for real funds).

use crate::state::ExecRules;
use isthmus_core::{HashAlgo, Keypair, NetworkId, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

/// The one place where defaults are written down.
pub mod defaults {
    pub const BLOCK_INTERVAL_MS: u64 = 1_000;
    /// How far past its own clock a node accepts a block's timestamp.
    pub const MAX_CLOCK_DRIFT_MS: u64 = 15_000;
    pub const MAX_BLOCK_BYTES: u64 = 1024 * 1024;
    pub const MAX_BLOCK_TXS: u32 = 10_000;
    pub const PROTOCOL_VERSION: u32 = 1;
    pub const CPU_CORES: u32 = 1;
    pub const MEMORY_MB: u64 = 256;
    pub const STORAGE_MB: u64 = 1024;
    pub const POW_INITIAL_DIFFICULTY: u64 = 50_000;
    pub const POW_RETARGET_WINDOW: u64 = 10;
    pub const POS_PROPOSE_TIMEOUT_MS: u64 = 1_000;
    pub const POS_PREVOTE_TIMEOUT_MS: u64 = 500;
    pub const POS_PRECOMMIT_TIMEOUT_MS: u64 = 500;
    pub const MAX_PEERS: usize = 32;
}

/// Why a config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("config is not valid toml: {0}")]
    Parse(String),
    #[error("config has {} problem(s):\n  - {}", .0.len(), .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// Who may join and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    #[default]
    Public,
    Private,
}

/// The whole network description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    pub name: String,
    pub network_id: u64,
    #[serde(default)]
    pub visibility: Visibility,
    /// Identities allowed to connect (required, non-empty, for a private network).
    #[serde(default)]
    pub allowlist: Vec<String>,
    /// Number of nodes `hub net up` starts.
    pub nodes: usize,
    #[serde(default = "d_interval")]
    pub block_interval_ms: u64,
    /// How far a block's timestamp may run ahead of the validating node's clock. A block
    /// past it is refused (not stored, and not held against its sender) and can be offered
    /// again later.
    #[serde(default = "d_drift")]
    pub max_clock_drift_ms: u64,
    #[serde(default = "d_block_bytes")]
    pub max_block_bytes: u64,
    #[serde(default = "d_block_txs")]
    pub max_block_txs: u32,
    pub consensus: ConsensusConfig,
    #[serde(default)]
    pub genesis: GenesisConfig,
    /// Default hardware budget of every node.
    #[serde(default)]
    pub hardware: Hardware,
    /// Per-node settings, by index; nodes without an entry use `dev:<name>/node-<i>` keys and
    /// the default hardware.
    #[serde(default, rename = "node")]
    pub node_overrides: Vec<NodeEntry>,
    /// Scheduled protocol upgrades, in height order.
    #[serde(default, rename = "upgrade")]
    pub upgrades: Vec<Upgrade>,
    /// Who the native escrow module trusts (see [`crate::escrow`]).
    #[serde(default)]
    pub escrow: EscrowConfig,
}

/// The hub attester set the network's escrow module trusts: a release (or an early refund)
/// needs an attestation signed by at least `threshold` distinct keys of `hub_attesters`.
/// With no attesters, only HTLC claims and timeout refunds are possible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EscrowConfig {
    /// `isth_…` ids or `dev:LABEL`; default none.
    #[serde(default)]
    pub hub_attesters: Vec<String>,
    /// Required when `hub_attesters` is set; between 1 and their number.
    #[serde(default)]
    pub threshold: usize,
}

impl EscrowConfig {
    /// The attester ids (unparseable entries are reported by `validate`).
    pub fn attesters(&self) -> Vec<NodeId> {
        self.hub_attesters
            .iter()
            .filter_map(|s| parse_identity(s).ok())
            .collect()
    }

    fn problems(&self, p: &mut Vec<String>) {
        let mut seen = BTreeSet::new();
        for a in &self.hub_attesters {
            match parse_identity(a) {
                Ok(id) => {
                    if !seen.insert(id) {
                        p.push(format!("escrow.hub_attesters lists `{a}` twice"));
                    }
                }
                Err(e) => p.push(format!("escrow.hub_attesters entry `{a}`: {e}")),
            }
        }
        let n = self.hub_attesters.len();
        if n == 0 && self.threshold != 0 {
            p.push(format!(
                "escrow.threshold = {} needs escrow.hub_attesters",
                self.threshold
            ));
        }
        if n > 0 && (self.threshold == 0 || self.threshold > n) {
            p.push(format!(
                "escrow.threshold = {} must be between 1 and the {n} hub attester(s)",
                self.threshold
            ));
        }
    }
}

fn d_interval() -> u64 {
    defaults::BLOCK_INTERVAL_MS
}
fn d_drift() -> u64 {
    defaults::MAX_CLOCK_DRIFT_MS
}
fn d_block_bytes() -> u64 {
    defaults::MAX_BLOCK_BYTES
}
fn d_block_txs() -> u32 {
    defaults::MAX_BLOCK_TXS
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ConsensusConfig {
    Pow(PowConfig),
    Pos(PosConfig),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowConfig {
    #[serde(default)]
    pub hash: HashAlgo,
    #[serde(default = "d_pow_diff")]
    pub initial_difficulty: u64,
    /// Number of blocks over which the difficulty is retargeted.
    #[serde(default = "d_pow_window")]
    pub retarget_window: u64,
    /// The lowest difficulty retargeting may reach (default a sixteenth of
    /// `initial_difficulty`). Consensus and light clients share it: a chain left idle (its
    /// nodes down, so a window spans the outage) cannot retarget below what a light client
    /// counts as work.
    #[serde(default)]
    pub min_difficulty: Option<u64>,
    /// Mining threads; defaults to the node's `cpu_cores`.
    #[serde(default)]
    pub threads: Option<u32>,
}

impl PowConfig {
    /// The difficulty floor in force: `min_difficulty`, or a sixteenth of the initial one.
    pub fn difficulty_floor(&self) -> u64 {
        self.min_difficulty
            .unwrap_or(self.initial_difficulty / 16)
            .max(1)
    }
}

fn d_pow_diff() -> u64 {
    defaults::POW_INITIAL_DIFFICULTY
}
fn d_pow_window() -> u64 {
    defaults::POW_RETARGET_WINDOW
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PosConfig {
    #[serde(default)]
    pub hash: HashAlgo,
    #[serde(default = "d_propose")]
    pub propose_timeout_ms: u64,
    #[serde(default = "d_prevote")]
    pub prevote_timeout_ms: u64,
    #[serde(default = "d_precommit")]
    pub precommit_timeout_ms: u64,
}

fn d_propose() -> u64 {
    defaults::POS_PROPOSE_TIMEOUT_MS
}
fn d_prevote() -> u64 {
    defaults::POS_PREVOTE_TIMEOUT_MS
}
fn d_precommit() -> u64 {
    defaults::POS_PRECOMMIT_TIMEOUT_MS
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct GenesisConfig {
    #[serde(default)]
    pub timestamp_ms: u64,
    #[serde(default, rename = "allocation")]
    pub allocations: Vec<Allocation>,
    #[serde(default, rename = "validator")]
    pub validators: Vec<ValidatorEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allocation {
    pub account: String,
    pub balance: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorEntry {
    pub id: String,
    pub stake: u64,
}

/// A node's resource budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    #[serde(default = "d_cpu")]
    pub cpu_cores: u32,
    #[serde(default = "d_mem")]
    pub memory_mb: u64,
    #[serde(default = "d_storage")]
    pub storage_mb: u64,
    /// Informational: no consensus path uses a GPU (mining is CPU-only); reported in status.
    #[serde(default)]
    pub gpu: Option<String>,
}

fn d_cpu() -> u32 {
    defaults::CPU_CORES
}
fn d_mem() -> u64 {
    defaults::MEMORY_MB
}
fn d_storage() -> u64 {
    defaults::STORAGE_MB
}

impl Default for Hardware {
    fn default() -> Self {
        Hardware {
            cpu_cores: d_cpu(),
            memory_mb: d_mem(),
            storage_mb: d_storage(),
            gpu: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    pub index: usize,
    /// `dev:LABEL` or a path to a key file of 64 hex digits.
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub hardware: Option<Hardware>,
}

/// A protocol upgrade activating at `height`. Fields left out keep their previous value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upgrade {
    pub height: u64,
    pub version: u32,
    /// Hard fork: a new header/Merkle hash function from `height`.
    #[serde(default)]
    pub hash: Option<HashAlgo>,
    /// Hard fork: a new block size limit from `height`.
    #[serde(default)]
    pub max_block_bytes: Option<u64>,
    #[serde(default)]
    pub max_block_txs: Option<u32>,
    /// Soft fork: refuse zero-amount transfers from `height`.
    #[serde(default)]
    pub forbid_zero_transfers: Option<bool>,
}

/// The rules in force at one height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolRules {
    pub version: u32,
    pub hash: HashAlgo,
    pub max_block_bytes: u64,
    pub max_block_txs: u32,
    pub forbid_zero_transfers: bool,
}

impl ProtocolRules {
    pub fn exec(&self) -> ExecRules {
        ExecRules {
            version: self.version,
            forbid_zero_transfers: self.forbid_zero_transfers,
        }
    }
}

/// Resource bounds derived from a node's [`Hardware`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeBudget {
    pub mining_threads: u32,
    /// A quarter of the memory figure goes to the mempool...
    pub mempool_bytes: usize,
    /// ...at an assumed 256 bytes per transaction for the count bound.
    pub mempool_txs: usize,
    /// An eighth goes to the recent-block cache.
    pub block_cache_bytes: usize,
    pub storage_quota_bytes: u64,
}

/// Parse an identity written as `isth_…`, `0x…` or `dev:LABEL`.
pub fn parse_identity(s: &str) -> Result<NodeId, String> {
    if let Some(label) = s.strip_prefix("dev:") {
        if label.is_empty() {
            return Err("`dev:` needs a label".to_owned());
        }
        return Ok(Keypair::dev(label).id());
    }
    s.parse::<NodeId>().map_err(|e| e.to_string())
}

impl NetworkConfig {
    pub fn from_toml_str(s: &str) -> Result<NetworkConfig, ConfigError> {
        let cfg: NetworkConfig =
            toml::from_str(s).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let problems = cfg.validate();
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    pub fn load(path: &Path) -> Result<NetworkConfig, ConfigError> {
        let s = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&s)
    }

    pub fn network(&self) -> NetworkId {
        NetworkId(self.network_id)
    }

    pub fn base_hash(&self) -> HashAlgo {
        match &self.consensus {
            ConsensusConfig::Pow(p) => p.hash,
            ConsensusConfig::Pos(p) => p.hash,
        }
    }

    /// The rules in force at `height`.
    pub fn rules_at(&self, height: u64) -> ProtocolRules {
        let mut r = ProtocolRules {
            version: defaults::PROTOCOL_VERSION,
            hash: self.base_hash(),
            max_block_bytes: self.max_block_bytes,
            max_block_txs: self.max_block_txs,
            forbid_zero_transfers: false,
        };
        for u in self.upgrades.iter().filter(|u| u.height <= height) {
            r.version = u.version;
            r.hash = u.hash.unwrap_or(r.hash);
            r.max_block_bytes = u.max_block_bytes.unwrap_or(r.max_block_bytes);
            r.max_block_txs = u.max_block_txs.unwrap_or(r.max_block_txs);
            r.forbid_zero_transfers = u.forbid_zero_transfers.unwrap_or(r.forbid_zero_transfers);
        }
        r
    }

    /// The highest protocol version this config knows, at any height.
    pub fn max_known_version(&self) -> u32 {
        self.upgrades
            .iter()
            .map(|u| u.version)
            .max()
            .unwrap_or(defaults::PROTOCOL_VERSION)
    }

    fn entry(&self, index: usize) -> Option<&NodeEntry> {
        self.node_overrides.iter().find(|n| n.index == index)
    }

    /// The key of node `index`.
    pub fn node_key(&self, index: usize) -> Result<Keypair, String> {
        match self.entry(index).and_then(|e| e.key.as_deref()) {
            Some(k) => match k.strip_prefix("dev:") {
                Some(label) => Ok(Keypair::dev(label)),
                None => {
                    let s = std::fs::read_to_string(k)
                        .map_err(|e| format!("cannot read key file {k}: {e}"))?;
                    Keypair::from_hex_seed(&s).map_err(|e| format!("key file {k}: {e}"))
                }
            },
            None => Ok(Keypair::dev(&format!("{}/node-{index}", self.name))),
        }
    }

    pub fn hardware(&self, index: usize) -> &Hardware {
        self.entry(index)
            .and_then(|e| e.hardware.as_ref())
            .unwrap_or(&self.hardware)
    }

    pub fn budget(&self, index: usize) -> NodeBudget {
        let hw = self.hardware(index);
        let threads = match &self.consensus {
            ConsensusConfig::Pow(p) => p.threads.unwrap_or(hw.cpu_cores).min(hw.cpu_cores),
            ConsensusConfig::Pos(_) => 0,
        };
        let mem = hw.memory_mb as usize * 1024 * 1024;
        NodeBudget {
            mining_threads: threads
                .max(u32::from(matches!(self.consensus, ConsensusConfig::Pow(_)))),
            mempool_bytes: mem / 4,
            mempool_txs: (mem / 4 / 256).max(1),
            block_cache_bytes: mem / 8,
            storage_quota_bytes: hw.storage_mb * 1024 * 1024,
        }
    }

    pub fn allowlist_ids(&self) -> Option<BTreeSet<NodeId>> {
        match self.visibility {
            Visibility::Public => None,
            Visibility::Private => Some(
                self.allowlist
                    .iter()
                    .filter_map(|s| parse_identity(s).ok())
                    .collect(),
            ),
        }
    }

    pub fn allocations(&self) -> Vec<(NodeId, u64)> {
        self.genesis
            .allocations
            .iter()
            .filter_map(|a| parse_identity(&a.account).ok().map(|id| (id, a.balance)))
            .collect()
    }

    /// Validators with their stakes (PoS), in config order.
    pub fn validators(&self) -> Vec<(NodeId, u64)> {
        self.genesis
            .validators
            .iter()
            .filter_map(|v| parse_identity(&v.id).ok().map(|id| (id, v.stake)))
            .collect()
    }

    /// Every problem with this config (empty if it is valid).
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.name.trim().is_empty() {
            p.push("name must not be empty".to_owned());
        }
        if self.nodes == 0 || self.nodes > 64 {
            p.push(format!("nodes = {} must be between 1 and 64", self.nodes));
        }
        if self.block_interval_ms < 10 {
            p.push(format!(
                "block_interval_ms = {} is below the minimum of 10",
                self.block_interval_ms
            ));
        }
        if !(100..=7_200_000).contains(&self.max_clock_drift_ms) {
            p.push(format!(
                "max_clock_drift_ms = {} must be between 100 and 7200000 (two hours)",
                self.max_clock_drift_ms
            ));
        }
        if self.max_block_bytes < 1024 {
            p.push(format!(
                "max_block_bytes = {} is below the minimum of 1024",
                self.max_block_bytes
            ));
        }
        if self.max_block_txs == 0 {
            p.push("max_block_txs must be at least 1".to_owned());
        }
        let node_ids: Vec<Option<NodeId>> = (0..self.nodes)
            .map(|i| match self.node_key(i) {
                Ok(k) => Some(k.id()),
                Err(e) => {
                    p.push(format!("node {i}: {e}"));
                    None
                }
            })
            .collect();
        let mut seen = BTreeSet::new();
        for n in &self.node_overrides {
            if n.index >= self.nodes {
                p.push(format!(
                    "[[node]] index {} is outside 0..{} (nodes = {})",
                    n.index, self.nodes, self.nodes
                ));
            }
            if !seen.insert(n.index) {
                p.push(format!("[[node]] index {} appears twice", n.index));
            }
            if let Some(hw) = &n.hardware {
                check_hardware(&mut p, &format!("node {} hardware", n.index), hw);
            }
        }
        check_hardware(&mut p, "hardware", &self.hardware);
        for s in &self.allowlist {
            if let Err(e) = parse_identity(s) {
                p.push(format!("allowlist entry `{s}`: {e}"));
            }
        }
        match self.visibility {
            Visibility::Private => {
                if self.allowlist.is_empty() {
                    p.push("a private network needs a non-empty allowlist".to_owned());
                }
                let allowed = self.allowlist_ids().unwrap_or_default();
                for (i, id) in node_ids.iter().enumerate() {
                    if let Some(id) = id {
                        if !allowed.contains(id) {
                            p.push(format!("node {i} ({id}) is not in the allowlist"));
                        }
                    }
                }
            }
            Visibility::Public => {
                if !self.allowlist.is_empty() {
                    p.push("allowlist is only meaningful with visibility = \"private\"".to_owned());
                }
            }
        }
        for a in &self.genesis.allocations {
            if let Err(e) = parse_identity(&a.account) {
                p.push(format!("genesis allocation `{}`: {e}", a.account));
            }
        }
        match &self.consensus {
            ConsensusConfig::Pow(pow) => {
                if pow.initial_difficulty == 0 {
                    p.push("consensus.initial_difficulty must be at least 1".to_owned());
                }
                if pow
                    .min_difficulty
                    .is_some_and(|m| m == 0 || m > pow.initial_difficulty)
                {
                    p.push(format!(
                        "consensus.min_difficulty {} must be between 1 and initial_difficulty {}",
                        pow.min_difficulty.unwrap_or(0),
                        pow.initial_difficulty
                    ));
                }
                if pow.retarget_window < 2 {
                    p.push(format!(
                        "consensus.retarget_window = {} must be at least 2",
                        pow.retarget_window
                    ));
                }
                if pow.threads == Some(0) {
                    p.push("consensus.threads must be at least 1".to_owned());
                }
                if !self.genesis.validators.is_empty() {
                    p.push("genesis validators are only meaningful for proof of stake".to_owned());
                }
            }
            ConsensusConfig::Pos(pos) => {
                if self.genesis.validators.is_empty() {
                    p.push("proof of stake needs at least one [[genesis.validator]]".to_owned());
                }
                let mut vs = BTreeSet::new();
                for v in &self.genesis.validators {
                    match parse_identity(&v.id) {
                        Ok(id) => {
                            if !vs.insert(id) {
                                p.push(format!("validator `{}` is listed twice", v.id));
                            }
                            if !node_ids.contains(&Some(id)) {
                                p.push(format!(
                                    "validator `{}` is not one of the {} configured nodes",
                                    v.id, self.nodes
                                ));
                            }
                        }
                        Err(e) => p.push(format!("validator `{}`: {e}", v.id)),
                    }
                    if v.stake == 0 {
                        p.push(format!("validator `{}` has zero stake", v.id));
                    }
                }
                let total: u128 = self
                    .genesis
                    .validators
                    .iter()
                    .map(|v| u128::from(v.stake))
                    .sum();
                if total > u128::from(u64::MAX) {
                    p.push("total stake overflows u64".to_owned());
                }
                for (k, v) in [
                    ("propose_timeout_ms", pos.propose_timeout_ms),
                    ("prevote_timeout_ms", pos.prevote_timeout_ms),
                    ("precommit_timeout_ms", pos.precommit_timeout_ms),
                ] {
                    if v < 10 {
                        p.push(format!("consensus.{k} = {v} is below the minimum of 10"));
                    }
                }
            }
        }
        self.escrow.problems(&mut p);
        let mut last_h = 0u64;
        let mut last_v = defaults::PROTOCOL_VERSION;
        for u in &self.upgrades {
            if u.height == 0 || u.height <= last_h {
                p.push(format!(
                    "upgrade at height {} must be above 0 and above the previous upgrade ({last_h})",
                    u.height
                ));
            }
            if u.version <= last_v {
                p.push(format!(
                    "upgrade at height {} has version {}, which must exceed {last_v}",
                    u.height, u.version
                ));
            }
            if let Some(b) = u.max_block_bytes {
                if b < 1024 {
                    p.push(format!(
                        "upgrade at height {}: max_block_bytes = {b} is below 1024",
                        u.height
                    ));
                }
            }
            last_h = u.height;
            last_v = u.version;
        }
        p
    }
}

fn check_hardware(p: &mut Vec<String>, what: &str, hw: &Hardware) {
    if hw.cpu_cores == 0 {
        p.push(format!("{what}.cpu_cores must be at least 1"));
    }
    if hw.memory_mb < 16 {
        p.push(format!(
            "{what}.memory_mb = {} is below the minimum of 16",
            hw.memory_mb
        ));
    }
    if hw.storage_mb < 4 {
        p.push(format!(
            "{what}.storage_mb = {} is below the minimum of 4",
            hw.storage_mb
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN_POS: &str = r#"
        name = "t"
        network_id = 9
        nodes = 2
        [consensus]
        type = "pos"
        [[genesis.validator]]
        id = "dev:t/node-0"
        stake = 10
    "#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = NetworkConfig::from_toml_str(MIN_POS).unwrap();
        assert_eq!(c.block_interval_ms, defaults::BLOCK_INTERVAL_MS);
        assert_eq!(c.rules_at(5).hash, HashAlgo::Sha256);
        assert_eq!(c.validators()[0].0, Keypair::dev("t/node-0").id());
        assert_eq!(c.node_key(1).unwrap().id(), Keypair::dev("t/node-1").id());
    }

    #[test]
    fn every_problem_is_listed() {
        let bad = r#"
            name = ""
            network_id = 1
            nodes = 0
            block_interval_ms = 1
            max_clock_drift_ms = 7200001
            visibility = "private"
            [consensus]
            type = "pos"
            propose_timeout_ms = 1
            [[upgrade]]
            height = 5
            version = 1
        "#;
        let Err(ConfigError::Invalid(p)) = NetworkConfig::from_toml_str(bad) else {
            panic!("expected invalid")
        };
        let all = p.join("\n");
        for needle in [
            "name must not be empty",
            "nodes = 0",
            "block_interval_ms = 1",
            "max_clock_drift_ms = 7200001",
            "allowlist",
            "at least one [[genesis.validator]]",
            "propose_timeout_ms = 1",
            "version 1",
        ] {
            assert!(all.contains(needle), "missing `{needle}` in:\n{all}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let s = format!("{MIN_POS}\nblock_size = 5\n");
        assert!(
            matches!(NetworkConfig::from_toml_str(&s), Err(ConfigError::Parse(m)) if m.contains("block_size"))
        );
    }

    #[test]
    fn upgrades_apply_from_their_height() {
        let s = format!(
            "{MIN_POS}\n[[upgrade]]\nheight = 10\nversion = 2\nhash = \"blake3\"\nmax_block_bytes = 4096\n"
        );
        let c = NetworkConfig::from_toml_str(&s).unwrap();
        assert_eq!(c.rules_at(9).hash, HashAlgo::Sha256);
        assert_eq!(c.rules_at(10).hash, HashAlgo::Blake3);
        assert_eq!(c.rules_at(10).max_block_bytes, 4096);
        assert_eq!(c.rules_at(10).version, 2);
        assert_eq!(c.max_known_version(), 2);
    }

    #[test]
    fn escrow_attesters_are_validated() {
        let ok = format!(
            "{MIN_POS}\n[escrow]\nhub_attesters = [\"dev:h1\", \"dev:h2\"]\nthreshold = 2\n"
        );
        let c = NetworkConfig::from_toml_str(&ok).unwrap();
        assert_eq!(
            c.escrow.attesters(),
            vec![Keypair::dev("h1").id(), Keypair::dev("h2").id()]
        );
        for (bad, needle) in [
            (
                "hub_attesters = [\"dev:h1\"]\nthreshold = 2",
                "threshold = 2",
            ),
            (
                "hub_attesters = [\"dev:h1\"]\nthreshold = 0",
                "threshold = 0",
            ),
            ("threshold = 1", "needs escrow.hub_attesters"),
            (
                "hub_attesters = [\"dev:h1\", \"dev:h1\"]\nthreshold = 1",
                "twice",
            ),
            ("hub_attesters = [\"nonsense\"]\nthreshold = 1", "nonsense"),
        ] {
            let s = format!("{MIN_POS}\n[escrow]\n{bad}\n");
            let Err(ConfigError::Invalid(p)) = NetworkConfig::from_toml_str(&s) else {
                panic!("expected `{bad}` to be invalid")
            };
            assert!(p.join("\n").contains(needle), "missing `{needle}` in {p:?}");
        }
    }

    #[test]
    fn budget_follows_hardware() {
        let s = r#"
            name = "p"
            network_id = 2
            nodes = 1
            [consensus]
            type = "pow"
            threads = 8
            [hardware]
            cpu_cores = 2
            memory_mb = 64
            storage_mb = 10
        "#;
        let c = NetworkConfig::from_toml_str(s).unwrap();
        let b = c.budget(0);
        assert_eq!(b.mining_threads, 2, "threads capped by cpu_cores");
        assert_eq!(b.mempool_bytes, 16 * 1024 * 1024);
        assert_eq!(b.storage_quota_bytes, 10 * 1024 * 1024);
    }
}
