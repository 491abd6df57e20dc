//! The EVM adapter's configuration, with its defaults in one place and a `validate` that
//! reports every problem at once.

use isthmus_core::NetworkId;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One EVM network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvmConfig {
    /// The hub's id for this network. Required.
    pub network: NetworkId,
    /// The operator's name for it, e.g. `sepolia-like`. Required.
    pub name: String,
    /// JSON-RPC endpoint, `http://127.0.0.1:8545`. Required.
    pub rpc_url: String,
    /// The chain id the node must report; a node on another chain is refused. Required.
    pub chain_id: u64,
    /// Blocks on top of the including one before an event is acted on. Default 12.
    #[serde(default = "defaults::confirmations")]
    pub confirmations: u32,
    /// Headers kept below the final one (reorg window and evidence). Default 64.
    #[serde(default = "defaults::header_window")]
    pub header_window: u64,
    /// How often the background syncer polls for new blocks. Default 1000 ms.
    #[serde(default = "defaults::poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Deadline of one JSON-RPC call. Default 5000 ms.
    #[serde(default = "defaults::rpc_timeout_ms")]
    pub rpc_timeout_ms: u64,
    /// Backoff ceiling while the node is unreachable. Default 5000 ms.
    #[serde(default = "defaults::max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// A transaction not mined after this long is replaced with a higher fee. Default 30000 ms.
    #[serde(default = "defaults::stuck_after_ms")]
    pub stuck_after_ms: u64,
    /// Each replacement raises both fee fields by this percentage (nodes want >= 10). Default 25.
    #[serde(default = "defaults::fee_bump_percent")]
    pub fee_bump_percent: u64,
    /// No transaction ever offers more than this per gas, in wei. Default 500 gwei.
    #[serde(default = "defaults::max_fee_per_gas")]
    pub max_fee_per_gas: u128,
    /// Hub attester addresses (`0x…`) whose secp256k1 signatures the escrow accepts. Required.
    pub attesters: Vec<String>,
    /// Signatures needed to release or refund early. Required, 1..=attesters.len().
    pub threshold: u32,
    /// The account (`0x…`) that deploys the contracts and pays gas for release, refund and
    /// claim; its key comes from the wallet. Required.
    pub relayer: String,
    /// Already-deployed escrow; deployed on demand when absent.
    #[serde(default)]
    pub escrow: Option<String>,
    /// Already-deployed HTLC; deployed on demand when absent.
    #[serde(default)]
    pub htlc: Option<String>,
    /// Where deployed contract addresses are recorded (per chain id and genesis hash).
    #[serde(default)]
    pub contracts_record: Option<PathBuf>,
}

mod defaults {
    pub fn confirmations() -> u32 {
        12
    }
    pub fn header_window() -> u64 {
        64
    }
    pub fn poll_interval_ms() -> u64 {
        1_000
    }
    pub fn rpc_timeout_ms() -> u64 {
        5_000
    }
    pub fn max_backoff_ms() -> u64 {
        5_000
    }
    pub fn stuck_after_ms() -> u64 {
        30_000
    }
    pub fn fee_bump_percent() -> u64 {
        25
    }
    pub fn max_fee_per_gas() -> u128 {
        500_000_000_000
    }
}

impl EvmConfig {
    /// A config with every default, for the given required fields.
    pub fn new(
        network: NetworkId,
        name: &str,
        rpc_url: &str,
        chain_id: u64,
        attesters: Vec<String>,
        threshold: u32,
        relayer: &str,
    ) -> EvmConfig {
        EvmConfig {
            network,
            name: name.to_owned(),
            rpc_url: rpc_url.to_owned(),
            chain_id,
            confirmations: defaults::confirmations(),
            header_window: defaults::header_window(),
            poll_interval_ms: defaults::poll_interval_ms(),
            rpc_timeout_ms: defaults::rpc_timeout_ms(),
            max_backoff_ms: defaults::max_backoff_ms(),
            stuck_after_ms: defaults::stuck_after_ms(),
            fee_bump_percent: defaults::fee_bump_percent(),
            max_fee_per_gas: defaults::max_fee_per_gas(),
            attesters,
            threshold,
            relayer: relayer.to_owned(),
            escrow: None,
            htlc: None,
            contracts_record: None,
        }
    }

    /// Every problem at once; empty when the config is usable.
    pub fn validate(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.name.is_empty() {
            out.push("name is empty".to_owned());
        }
        if self.rpc_url.parse::<url::Url>().is_err() {
            out.push(format!("rpc_url {:?} is not a url", self.rpc_url));
        }
        if self.confirmations == 0 {
            out.push("confirmations must be at least 1".to_owned());
        }
        if self.threshold == 0 || self.threshold as usize > self.attesters.len() {
            out.push(format!(
                "threshold {} is not within 1..={} attesters",
                self.threshold,
                self.attesters.len()
            ));
        }
        for a in self
            .attesters
            .iter()
            .chain(std::iter::once(&self.relayer))
            .chain(self.escrow.iter())
            .chain(self.htlc.iter())
        {
            if a.parse::<alloy::primitives::Address>().is_err() {
                out.push(format!("{a:?} is not an evm address"));
            }
        }
        if self.fee_bump_percent < 10 {
            out.push(format!(
                "fee_bump_percent {} is below the 10 nodes require for a replacement",
                self.fee_bump_percent
            ));
        }
        if self.poll_interval_ms == 0 || self.rpc_timeout_ms == 0 {
            out.push("poll_interval_ms and rpc_timeout_ms must be positive".to_owned());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_defaults_apply_and_validate_lists_every_problem() {
        let good = r#"
            network = 7
            name = "anvil"
            rpc_url = "http://127.0.0.1:8545"
            chain_id = 31337
            attesters = ["0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"]
            threshold = 1
            relayer = "0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF"
        "#;
        let c: EvmConfig = toml::from_str(good).unwrap();
        assert_eq!(c.confirmations, 12);
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        let mut bad = c.clone();
        bad.threshold = 2;
        bad.confirmations = 0;
        bad.relayer = "nope".into();
        bad.fee_bump_percent = 5;
        assert_eq!(bad.validate().len(), 4, "{:?}", bad.validate());
        assert!(toml::from_str::<EvmConfig>(&format!("{good}\nsurprise = 1")).is_err());
    }
}
