//! The Bitcoin-family UTXO platform adapter: litecoind (or bitcoind) over the Bitcoin Core
//! RPC dialect, with transactions and scripts built by the `bitcoin` crate and signed with
//! keys from the hub's wallet service. HTLCs are P2WSH outputs (BIP-199 with a 32-byte
//! preimage check and a CLTV refund); the two-phase escrow is a 2-of-2 between the hub's
//! co-signing key and the owner's key with a CLTV refund for the owner, because script cannot
//! verify hub attestations: the adapter checks the attestation and only then co-signs. Every
//! fee of a transaction the hub builds is paid by a separate fee-payer account, so the escrow
//! moves exactly the leg's amount; a spend stuck for some blocks gets a child paying for it
//! (CPFP). Confirmations are counted by the adapter's own view of the chain, which reverts
//! blocks one by one on a reorg and never reports a reorged-out lock final. HTLCs an owner
//! funds outside the hub are followed by script once [`UtxoAdapter::watch`] hands out their
//! address.
//!
//! It must never co-sign a release without a valid `Validated` attestation, never take a
//! node's word as evidence (evidence is checked header by header, with the chain's PoW hash),
//! and never keep key material: keys come from the [`isthmus_adapter_api::Wallet`] per
//! signature and are dropped after.

pub mod proof;
pub mod rpc;
pub mod script;
pub mod view;

mod adapter;
pub mod build;

pub use adapter::UtxoAdapter;
pub use proof::PowHash;

use isthmus_core::{NetworkId, NodeId};
use isthmus_lock_contracts::{Address, AssetId};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// How to reach and treat one UTXO chain. Plain data, so an out-of-process host can pass it
/// as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UtxoConfig {
    /// required: the hub's id for this network.
    pub network: NetworkId,
    /// required: the operator's name for it, e.g. `ltc-regtest`.
    pub name: String,
    /// required: the node's RPC url, e.g. `http://127.0.0.1:19443`.
    pub rpc_url: String,
    pub rpc_user: String,
    pub rpc_password: String,
    /// bech32 prefix of the chain's addresses (`rltc` regtest, `tltc` testnet, `ltc` main).
    pub address_prefix: String,
    /// The asset id of the chain's coin; amounts are in its smallest unit.
    pub asset: AssetId,
    /// Blocks deep (counting the including one) a transaction must be to count as final.
    pub confirmations: u32,
    pub pow: PowHash,
    /// The easiest target (compact bits) a header may claim, e.g. `0x207fffff` on regtest.
    pub pow_limit: u32,
    /// The account that pays the fee of every transaction the hub builds (its key is in the
    /// wallet).
    pub fee_payer: Address,
    /// The hub's escrow co-signing account (its key is in the wallet).
    pub cosigner: Address,
    /// The hub attestation keys whose `Validated`/`Aborted` decisions the co-signer acts on,
    /// and how many of them must sign.
    pub attesters: Vec<NodeId>,
    pub threshold: usize,
    /// Fee rate (units per virtual byte) when the node cannot estimate one.
    pub fallback_fee_rate: u64,
    /// Never pay more than this per virtual byte.
    pub max_fee_rate: u64,
    /// Below this many units the fee payer is reported as a degraded platform (default
    /// 1_000_000, 0.01 LTC).
    #[serde(default = "default_fee_reserve")]
    pub min_fee_reserve: u64,
    /// A release, refund or claim still unconfirmed this many blocks after it was sent gets
    /// a child transaction raising its package to twice its fee rate, up to `max_fee_rate`
    /// (default 3).
    #[serde(default = "default_bump_after")]
    pub bump_after_blocks: u64,
    /// The first block to read; `None`: the tip at start.
    pub start_height: Option<u64>,
    /// The block the light client's header chain starts from, trusted as given; evidence
    /// counts only on the branch of most work above it. `None`: the node's genesis block
    /// (height 0), read once when evidence is first verified.
    #[serde(default)]
    pub checkpoint: Option<proof::Checkpoint>,
}

fn default_bump_after() -> u64 {
    3
}

fn default_fee_reserve() -> u64 {
    1_000_000
}

impl UtxoConfig {
    /// A Litecoin regtest chain with test-friendly defaults (3 confirmations).
    #[allow(clippy::too_many_arguments)]
    pub fn litecoin_regtest(
        network: NetworkId,
        rpc_url: String,
        rpc_user: String,
        rpc_password: String,
        fee_payer: Address,
        cosigner: Address,
        attesters: Vec<NodeId>,
    ) -> Self {
        UtxoConfig {
            network,
            name: "ltc-regtest".to_owned(),
            rpc_url,
            rpc_user,
            rpc_password,
            address_prefix: "rltc".to_owned(),
            asset: AssetId("LTC".to_owned()),
            confirmations: 3,
            pow: PowHash::Scrypt,
            pow_limit: 0x207f_ffff,
            fee_payer,
            cosigner,
            threshold: attesters.len().max(1),
            attesters,
            fallback_fee_rate: 10,
            max_fee_rate: 1_000,
            min_fee_reserve: default_fee_reserve(),
            bump_after_blocks: default_bump_after(),
            start_height: None,
            checkpoint: None,
        }
    }

    /// Every problem at once; empty when usable.
    pub fn validate(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.confirmations == 0 {
            out.push("confirmations must be at least 1".to_owned());
        }
        if script::AddressCodec::new(&self.address_prefix).is_err() {
            out.push(format!(
                "address_prefix `{}` is not a bech32 prefix",
                self.address_prefix
            ));
        }
        if self.threshold == 0 || self.threshold > self.attesters.len() {
            out.push(format!(
                "threshold {} needs between 1 and {} attesters",
                self.threshold,
                self.attesters.len()
            ));
        }
        if let Some(c) = &self.checkpoint {
            if bitcoin::BlockHash::from_str(&c.hash).is_err() {
                out.push(format!("checkpoint hash `{}` is not a block hash", c.hash));
            }
        }
        if self.fallback_fee_rate == 0 || self.fallback_fee_rate > self.max_fee_rate {
            out.push(format!(
                "fallback_fee_rate {} must be in 1..=max_fee_rate {}",
                self.fallback_fee_rate, self.max_fee_rate
            ));
        }
        out
    }
}
