//! The three chains of `hub up`: the hub chain (one PoS validator) and two native networks
//! with different consensus, `alpha` (PoW, sha256) and `beta` (PoS). Their configs are
//! generated, not read from files, so a first run needs nothing but the binary.

use anyhow::Context as _;
use isthmus_chain::NetworkConfig;
use isthmus_core::{Keypair, NodeId};

/// The demo accounts funded on `alpha` and `beta` (dev keys: derived from the label, so
/// they are throwaway keys anyone can recompute).
pub const DEMO_ACCOUNTS: [&str; 2] = ["alice", "bob"];
/// What each demo account holds at genesis on each network.
pub const DEMO_BALANCE: u64 = 1_000_000;

/// Network ids of the embedded chains.
pub const HUB_NETWORK_ID: u64 = 7100;
pub const ALPHA_NETWORK_ID: u64 = 7101;
pub const BETA_NETWORK_ID: u64 = 7102;

/// Which chain of the embedded hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    Hub,
    Alpha,
    Beta,
}

impl Net {
    pub const ALL: [Net; 3] = [Net::Hub, Net::Alpha, Net::Beta];

    pub fn name(self) -> &'static str {
        match self {
            Net::Hub => "hub",
            Net::Alpha => "alpha",
            Net::Beta => "beta",
        }
    }

    /// The generated network config with blocks every `block_ms`; the escrows of `alpha`
    /// and `beta` trust `attester` (the hub's attestation key).
    pub fn config(self, block_ms: u64, attester: &NodeId) -> anyhow::Result<NetworkConfig> {
        let toml = self.toml(block_ms, attester);
        NetworkConfig::from_toml_str(&toml)
            .with_context(|| format!("generated config of `{}` is not valid", self.name()))
    }

    fn toml(self, block_ms: u64, attester: &NodeId) -> String {
        let name = self.name();
        let (id, consensus) = match self {
            Net::Hub => (HUB_NETWORK_ID, pos(block_ms)),
            Net::Alpha => (
                ALPHA_NETWORK_ID,
                // Low difficulty: retargeting pulls it toward the block interval.
                "[consensus]\ntype = \"pow\"\nhash = \"sha256\"\ninitial_difficulty = 2000\n\
                 retarget_window = 8\nthreads = 1\n"
                    .to_owned(),
            ),
            Net::Beta => (BETA_NETWORK_ID, pos(block_ms)),
        };
        let mut s = format!(
            "name = \"{name}\"\nnetwork_id = {id}\nnodes = 1\nblock_interval_ms = {block_ms}\n\n\
             {consensus}\n[hardware]\nmemory_mb = 64\nstorage_mb = 512\ncpu_cores = 1\n\n"
        );
        match self {
            Net::Hub => s.push_str(&format!(
                "[[genesis.allocation]]\naccount = \"dev:{name}/node-0\"\nbalance = 1\n\n"
            )),
            Net::Alpha | Net::Beta => {
                s.push_str(&format!(
                    "[escrow]\nhub_attesters = [\"{attester}\"]\nthreshold = 1\n\n"
                ));
                for who in DEMO_ACCOUNTS {
                    s.push_str(&format!(
                        "[[genesis.allocation]]\naccount = \"dev:{who}\"\nbalance = {DEMO_BALANCE}\n\n"
                    ));
                }
            }
        }
        if matches!(self, Net::Hub | Net::Beta) {
            s.push_str(&format!(
                "[[genesis.validator]]\nid = \"dev:{name}/node-0\"\nstake = 1\n"
            ));
        }
        s
    }
}

fn pos(block_ms: u64) -> String {
    // One validator: timeouts only matter if it stalls; keep them a few intervals long.
    let t = (block_ms * 3).max(300);
    format!(
        "[consensus]\ntype = \"pos\"\nhash = \"sha256\"\npropose_timeout_ms = {t}\n\
         prevote_timeout_ms = {t}\nprecommit_timeout_ms = {t}\n"
    )
}

/// A demo account's key.
pub fn demo_key(label: &str) -> Keypair {
    Keypair::dev(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_configs_are_valid_and_distinct() {
        let att = Keypair::dev("attester").id();
        let cfgs: Vec<NetworkConfig> = Net::ALL
            .iter()
            .map(|n| n.config(200, &att).unwrap())
            .collect();
        for c in &cfgs {
            assert!(c.validate().is_empty(), "{}: {:?}", c.name, c.validate());
        }
        assert_eq!(cfgs[1].network().0, ALPHA_NETWORK_ID);
        assert!(matches!(
            cfgs[1].consensus,
            isthmus_chain::config::ConsensusConfig::Pow(_)
        ));
        assert!(matches!(
            cfgs[2].consensus,
            isthmus_chain::config::ConsensusConfig::Pos(_)
        ));
        let alice = demo_key("alice").id();
        assert!(cfgs[1].allocations().contains(&(alice, DEMO_BALANCE)));
        assert_eq!(cfgs[2].escrow.attesters(), vec![att]);
    }
}
