//! [`EvmAdapter`]: the [`Adapter`] trait over an EVM JSON-RPC node.

use crate::config::EvmConfig;
use crate::contracts::{Artifacts, Erc20, IsthmusEscrow, IsthmusHtlc, STATE_NONE, STATE_OPEN};
use crate::node::{address_text, parse_address, Node};
use crate::view::{tx_id, ChainView, ContractLog, SeenBlock, ViewError};
use alloy::consensus::{ReceiptEnvelope, Transaction as _, TxEnvelope};
use alloy::eips::eip2718::{Decodable2718, Encodable2718};
use alloy::eips::BlockNumberOrTag;
use alloy::network::TransactionBuilder;
use alloy::primitives::{Address as EvmAddress, Bytes, B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{Filter, Log, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolEvent, SolValue};
use async_trait::async_trait;
use isthmus_adapter_api::*;
use isthmus_core::{Backoff, Hash32, HashAlgo};
use isthmus_lock_contracts::{Address, Amount, AssetId, Decision, LockId, LockObservation, TxId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

/// How many blocks one sync pass applies at most (a long backfill takes several passes).
const SYNC_BATCH: u64 = 256;

/// The asset naming on EVM networks: `native` (ETH) or `erc20:0x…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvmAsset {
    Native,
    Erc20(EvmAddress),
}

impl EvmAsset {
    pub fn parse(network: isthmus_core::NetworkId, a: &AssetId) -> Result<EvmAsset, AdapterError> {
        if a.0 == "native" {
            return Ok(EvmAsset::Native);
        }
        a.0.strip_prefix("erc20:")
            .and_then(|t| t.parse::<EvmAddress>().ok())
            .map(EvmAsset::Erc20)
            .ok_or_else(|| AdapterError::InvalidRequest {
                reason: format!("asset {a} is neither native nor erc20:0x… on network {network}"),
            })
    }

    pub fn id(&self) -> AssetId {
        match self {
            EvmAsset::Native => AssetId("native".into()),
            EvmAsset::Erc20(t) => AssetId(format!("erc20:{}", t.to_checksum(None))),
        }
    }

    fn token(&self) -> EvmAddress {
        match self {
            EvmAsset::Native => EvmAddress::ZERO,
            EvmAsset::Erc20(t) => *t,
        }
    }
}

/// Where the lock contracts of one chain were deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub escrow: EvmAddress,
    pub htlc: EvmAddress,
    /// The first block that can hold their logs.
    pub deployed_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Lock,
    Release,
    Refund,
    Claim,
}

struct Inner {
    cfg: EvmConfig,
    descriptor: PlatformDescriptor,
    node: Node,
    deployment: Deployment,
    attesters: Vec<[u8; 20]>,
    relayer: Address,
    view: Mutex<ChainView>,
    /// Idempotency of the lock-contract operations: (lock, op) -> the tx that does it.
    ops: StdMutex<HashMap<(LockId, Op), B256>>,
    /// The last background sync problem, shown by `health`.
    trouble: StdMutex<Option<String>>,
}

/// The EVM adapter. Cheap to share behind `Arc`; dropping it stops its syncer.
pub struct EvmAdapter {
    inner: Arc<Inner>,
    stop: watch::Sender<bool>,
    syncer: Option<JoinHandle<()>>,
}

impl Drop for EvmAdapter {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(h) = self.syncer.take() {
            h.abort();
        }
    }
}

fn invalid(reason: impl Into<String>) -> AdapterError {
    AdapterError::InvalidRequest {
        reason: reason.into(),
    }
}

fn h32(b: B256) -> Hash32 {
    Hash32(b.0)
}

fn parse_tx(network: isthmus_core::NetworkId, tx: &TxId) -> Result<B256, AdapterError> {
    tx.0.parse::<B256>().map_err(|_| {
        invalid(format!(
            "{tx} is not a transaction hash on network {network}"
        ))
    })
}

impl EvmAdapter {
    /// Connect, check the chain id, make sure the lock contracts exist (deploying them from the
    /// relayer account when neither the config nor the record names them) and start syncing.
    pub async fn open(cfg: EvmConfig, wallet: Arc<dyn Wallet>) -> Result<EvmAdapter, AdapterError> {
        let problems = cfg.validate();
        if !problems.is_empty() {
            return Err(invalid(format!("evm config: {}", problems.join("; "))));
        }
        let node = Node::connect(&cfg, wallet)?;
        let chain = node
            .rpc("eth_chainId", node.provider.get_chain_id())
            .await?;
        if chain != cfg.chain_id {
            return Err(AdapterError::Misbehaving {
                network: cfg.network,
                reason: format!("node reports chain id {chain}, configured {}", cfg.chain_id),
            });
        }
        let mut attesters = Vec::new();
        for a in &cfg.attesters {
            attesters.push(parse_address(cfg.network, &Address(a.clone()))?.0 .0);
        }
        let relayer = Address(cfg.relayer.clone());
        let deployment = ensure_contracts(&cfg, &node, &relayer, &attesters).await?;
        let confirmations = u64::from(cfg.confirmations);
        let descriptor = PlatformDescriptor {
            network: cfg.network,
            name: cfg.name.clone(),
            kind: PlatformKind::Evm,
            consensus: "evm".into(),
            capabilities: Capabilities {
                finality: Finality::Probabilistic {
                    confirmations: cfg.confirmations,
                },
                contracts: ContractSupport::General,
                hash: HashScheme::Keccak256,
                signatures: vec![SignatureScheme::Secp256k1Ecdsa],
                asset_model: AssetModel::Account,
                two_phase: TwoPhaseSupport::AttestationEscrow,
                htlc: true,
                packets: false,
            },
        };
        let inner = Arc::new(Inner {
            view: Mutex::new(ChainView::new(confirmations, cfg.header_window)),
            descriptor,
            node,
            deployment,
            attesters,
            relayer,
            ops: StdMutex::default(),
            trouble: StdMutex::default(),
            cfg,
        });
        inner.sync().await?;
        let (stop, rx) = watch::channel(false);
        let syncer = tokio::spawn(run_syncer(inner.clone(), rx));
        Ok(EvmAdapter {
            inner,
            stop,
            syncer: Some(syncer),
        })
    }

    /// Catch the adapter's view up with the node now (the syncer also does it on its own).
    pub async fn sync(&self) -> Result<(), AdapterError> {
        self.inner.sync().await
    }

    pub fn deployment(&self) -> Deployment {
        self.inner.deployment
    }

    /// What the hub's secp256k1 attesters sign over for this network's escrow.
    pub fn escrow_domain(&self) -> EvmEscrowDomain {
        EvmEscrowDomain {
            chain_id: self.inner.cfg.chain_id,
            escrow: self.inner.deployment.escrow.0 .0,
        }
    }

    /// Replace transactions stuck longer than the configured time (the syncer does this too).
    pub async fn bump_stuck(&self) -> Result<crate::node::BumpReport, AdapterError> {
        self.inner.node.bump_stuck().await
    }

    /// Send a contract call or value transfer from `from` (whose key the wallet holds), through
    /// the same nonce manager and fee logic as the lock operations.
    pub async fn transact(
        &self,
        from: &Address,
        to: Option<EvmAddress>,
        data: Bytes,
        value: U256,
    ) -> Result<TxId, AdapterError> {
        let signer = self.inner.signer(from)?;
        let mut req = TransactionRequest::default().with_value(value);
        req = match to {
            Some(to) => req.with_to(to).with_input(data),
            None => req.with_deploy_code(data),
        };
        let hash = self.inner.node.send(&signer, req, "transact").await?;
        self.inner.view.lock().await.track(h32(hash));
        Ok(tx_id(&h32(hash)))
    }

    /// Wait for a transaction's receipt (mined, not necessarily final).
    pub async fn wait_mined(
        &self,
        tx: &TxId,
        within: Duration,
    ) -> Result<alloy::rpc::types::TransactionReceipt, AdapterError> {
        let hash = parse_tx(self.inner.cfg.network, tx)?;
        self.inner.node.wait_receipt(hash, within).await
    }

    /// The underlying JSON-RPC provider (tests and tools).
    pub fn provider(&self) -> &alloy::providers::RootProvider {
        &self.inner.node.provider
    }
}

async fn run_syncer(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let poll = Duration::from_millis(inner.cfg.poll_interval_ms);
    let ceiling = Duration::from_millis(inner.cfg.max_backoff_ms).max(poll);
    let backoff = Backoff::new(poll * 2, ceiling).with_jitter(0.25);
    let mut failures = 0u32;
    let mut wait = poll;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let outcome = match inner.sync().await {
            Ok(()) => inner.node.bump_stuck().await.map(|r| r.at_cap),
            Err(e) => Err(e),
        };
        let mut trouble = inner.trouble.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(at_cap) => {
                wait = poll;
                failures = 0;
                *trouble = (!at_cap.is_empty())
                    .then(|| format!("{} transaction(s) stuck at the fee cap", at_cap.len()));
            }
            Err(e) => {
                // Back off (doubling, with jitter) while the node is away; the next successful
                // pass backfills every block missed meanwhile.
                wait = backoff.delay(failures);
                failures = failures.saturating_add(1);
                tracing::warn!(network = %inner.cfg.network, error = %e, "evm sync failed; backing off");
                *trouble = Some(e.to_string());
            }
        }
    }
}

/// Deploy record: `"<chain id>:<genesis hash>" -> Deployment`.
type Record = HashMap<String, Deployment>;

fn read_record(path: &Path) -> Record {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_record(path: &Path, record: &Record) -> Result<(), AdapterError> {
    let bytes = serde_json::to_vec_pretty(record).map_err(|e| invalid(e.to_string()))?;
    let tmp = path.with_extension("tmp");
    let io = |e: std::io::Error| AdapterError::Wallet {
        reason: format!("contracts record {}: {e}", path.display()),
    };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

async fn has_code(node: &Node, a: EvmAddress) -> Result<bool, AdapterError> {
    Ok(!node
        .rpc("eth_getCode", node.provider.get_code_at(a))
        .await?
        .is_empty())
}

async fn ensure_contracts(
    cfg: &EvmConfig,
    node: &Node,
    relayer: &Address,
    attesters: &[[u8; 20]],
) -> Result<Deployment, AdapterError> {
    let latest = node
        .rpc("eth_blockNumber", node.provider.get_block_number())
        .await?;
    if let (Some(e), Some(h)) = (&cfg.escrow, &cfg.htlc) {
        let d = Deployment {
            escrow: parse_address(cfg.network, &Address(e.clone()))?,
            htlc: parse_address(cfg.network, &Address(h.clone()))?,
            deployed_at: latest.saturating_sub(u64::from(cfg.confirmations)),
        };
        if !has_code(node, d.escrow).await? || !has_code(node, d.htlc).await? {
            return Err(invalid(format!(
                "configured contracts {e} / {h} have no code on network {}",
                cfg.network
            )));
        }
        return Ok(d);
    }
    let genesis = node
        .rpc(
            "eth_getBlockByNumber",
            node.provider
                .get_block_by_number(BlockNumberOrTag::Number(0)),
        )
        .await?
        .ok_or_else(|| node.unavailable("node has no genesis block"))?;
    let key = format!("{}:{:#x}", cfg.chain_id, genesis.header.hash);
    let mut record = cfg
        .contracts_record
        .as_deref()
        .map(read_record)
        .unwrap_or_default();
    if let Some(d) = record.get(&key) {
        if has_code(node, d.escrow).await? && has_code(node, d.htlc).await? {
            return Ok(*d);
        }
    }
    let signer = node.signer_for(relayer)?.ok_or_else(|| {
        invalid(format!(
            "the wallet holds no key for relayer {relayer}, which deploys the lock contracts"
        ))
    })?;
    let artifacts = Artifacts::load().map_err(invalid)?;
    let addrs: Vec<EvmAddress> = attesters.iter().map(|a| EvmAddress::from(*a)).collect();
    let escrow_code = [
        artifacts
            .bytecode("IsthmusEscrow")
            .map_err(invalid)?
            .to_vec(),
        (addrs, U256::from(cfg.threshold)).abi_encode_params(),
    ]
    .concat();
    let htlc_code = artifacts.bytecode("IsthmusHtlc").map_err(invalid)?;
    let within = Duration::from_millis(cfg.stuck_after_ms.max(cfg.rpc_timeout_ms) * 2);
    let mut deployed = Vec::new();
    for (name, code) in [("escrow", Bytes::from(escrow_code)), ("htlc", htlc_code)] {
        let tx = TransactionRequest::default().with_deploy_code(code);
        let hash = node.send(&signer, tx, &format!("deploy {name}")).await?;
        let receipt = node.wait_receipt(hash, within).await?;
        let at = receipt
            .contract_address
            .filter(|_| receipt.status())
            .ok_or_else(|| node.rejected(format!("deploying the {name} failed in {hash}")))?;
        tracing::info!(network = %cfg.network, %name, address = %at, "deployed lock contract");
        deployed.push(at);
    }
    let d = Deployment {
        escrow: deployed[0],
        htlc: deployed[1],
        deployed_at: latest,
    };
    if let Some(path) = &cfg.contracts_record {
        record.insert(key, d);
        write_record(path, &record)?;
    }
    Ok(d)
}

/// A lock as a contract stores it.
struct Stored {
    deadline: u64,
    state: u8,
    hashlock: Option<B256>,
}

impl Inner {
    fn net(&self) -> isthmus_core::NetworkId {
        self.cfg.network
    }

    fn signer(&self, who: &Address) -> Result<PrivateKeySigner, AdapterError> {
        self.node
            .signer_for(who)?
            .ok_or_else(|| invalid(format!("the hub holds no key for {who}; its owner signs")))
    }

    // ---- syncing ----------------------------------------------------------------------

    async fn block_at(&self, n: u64) -> Result<Option<alloy::rpc::types::Block>, AdapterError> {
        self.node
            .rpc(
                "eth_getBlockByNumber",
                self.node
                    .provider
                    .get_block_by_number(BlockNumberOrTag::Number(n)),
            )
            .await
    }

    async fn sync(&self) -> Result<(), AdapterError> {
        let mut view = self.view.lock().await;
        let latest = self
            .node
            .rpc("eth_blockNumber", self.node.provider.get_block_number())
            .await?;
        // Reorg: our tip is no longer the node's block at that height. Walk back to the
        // common ancestor and withdraw everything above it.
        if let Some(tip) = view.tip().cloned() {
            let mut h = tip.height;
            let mut ours = tip.hash;
            loop {
                let theirs = self.block_at(h).await?.map(|b| h32(b.header.hash));
                if theirs == Some(ours) {
                    break;
                }
                let below = h.checked_sub(1).and_then(|p| view.block_at(p).cloned());
                let Some(prev) = below else {
                    return Err(AdapterError::Misbehaving {
                        network: self.net(),
                        reason: format!(
                            "reorg reaches below the {} kept headers",
                            self.cfg.header_window
                        ),
                    });
                };
                h = prev.height;
                ours = prev.hash;
            }
            if h < tip.height {
                let before = view.last_checkpoint();
                let dropped = view.rollback_to(h).map_err(|e| AdapterError::Misbehaving {
                    network: self.net(),
                    reason: e.to_string(),
                })?;
                tracing::warn!(network = %self.net(), depth = dropped.len(), "reorg rolled back");
                let reverted: Vec<TxId> = view
                    .events_since(before, u32::MAX)
                    .events
                    .into_iter()
                    .flat_map(|e| match e.kind {
                        EventKind::Reverted { txs, .. } => txs,
                        _ => Vec::new(),
                    })
                    .collect();
                {
                    let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
                    ops.retain(|_, tx| !reverted.contains(&tx_id(&h32(*tx))));
                }
                // Transactions of dropped blocks may be gone: take nonces from the chain again.
                self.node.resync_all().await;
            }
        }
        let start = match view.tip() {
            Some(t) => t.height + 1,
            None => self
                .deployment
                .deployed_at
                .min(latest.saturating_sub(u64::from(self.cfg.confirmations))),
        };
        let end = latest.min(start + SYNC_BATCH - 1);
        for n in start..=end {
            let Some(block) = self.block_at(n).await? else {
                break;
            };
            let hash = block.header.hash;
            let filter = Filter::new()
                .at_block_hash(hash)
                .address(vec![self.deployment.escrow, self.deployment.htlc]);
            let logs = self
                .node
                .rpc("eth_getLogs", self.node.provider.get_logs(&filter))
                .await?;
            let seen = SeenBlock {
                height: n,
                hash: h32(hash),
                parent: h32(block.header.parent_hash),
                time: block.header.timestamp,
                txs: block.transactions.hashes().map(h32).collect(),
            };
            let decoded = logs.iter().filter_map(|l| self.decode(l, &seen)).collect();
            match view.apply(seen, decoded) {
                Ok(()) => {}
                // The chain moved under us mid-pass; the next pass finds the fork.
                Err(ViewError::NotExtending { .. }) => break,
                Err(e) => {
                    return Err(AdapterError::Misbehaving {
                        network: self.net(),
                        reason: e.to_string(),
                    })
                }
            }
        }
        Ok(())
    }

    fn decode(&self, log: &Log, block: &SeenBlock) -> Option<ContractLog> {
        if log.removed || log.block_hash.map(h32) != Some(block.hash) {
            return None;
        }
        let tx = tx_id(&h32(log.transaction_hash?));
        let data = &log.inner.data;
        let amount = |a: U256| u128::try_from(a).ok().map(Amount);
        if log.inner.address == self.deployment.escrow {
            if let Ok(e) = IsthmusEscrow::Locked::decode_log_data(data) {
                return Some(ContractLog::Locked {
                    observation: LockObservation {
                        lock_id: LockId(h32(e.id)),
                        tx,
                        block: block.hash,
                        height: block.height,
                        asset: asset_of(e.token).id(),
                        amount: amount(e.amount)?,
                        beneficiary: address_text(e.beneficiary),
                    },
                    terms: LockTerms::TwoPhase,
                    owner: address_text(e.owner),
                    timeout: e.deadline,
                });
            }
            if let Ok(e) = IsthmusEscrow::Released::decode_log_data(data) {
                return Some(ContractLog::Released {
                    lock_id: LockId(h32(e.id)),
                    tx,
                });
            }
            if let Ok(e) = IsthmusEscrow::Refunded::decode_log_data(data) {
                return Some(ContractLog::Refunded {
                    lock_id: LockId(h32(e.id)),
                    tx,
                });
            }
        } else if log.inner.address == self.deployment.htlc {
            if let Ok(e) = IsthmusHtlc::Locked::decode_log_data(data) {
                return Some(ContractLog::Locked {
                    observation: LockObservation {
                        lock_id: LockId(h32(e.id)),
                        tx,
                        block: block.hash,
                        height: block.height,
                        asset: asset_of(e.token).id(),
                        amount: amount(e.amount)?,
                        beneficiary: address_text(e.beneficiary),
                    },
                    terms: LockTerms::Htlc {
                        hashlock: h32(e.hashlock),
                    },
                    owner: address_text(e.owner),
                    timeout: e.timeout,
                });
            }
            if let Ok(e) = IsthmusHtlc::Claimed::decode_log_data(data) {
                return Some(ContractLog::Claimed {
                    lock_id: LockId(h32(e.id)),
                    tx,
                    preimage: e.preimage.0,
                });
            }
            if let Ok(e) = IsthmusHtlc::Refunded::decode_log_data(data) {
                return Some(ContractLog::Refunded {
                    lock_id: LockId(h32(e.id)),
                    tx,
                });
            }
        }
        None
    }

    // ---- contract reads ---------------------------------------------------------------

    async fn stored_escrow(&self, id: &LockId) -> Result<Stored, AdapterError> {
        self.stored_escrow_at(id, false).await
    }

    async fn stored_escrow_at(&self, id: &LockId, pending: bool) -> Result<Stored, AdapterError> {
        let call = IsthmusEscrow::locksCall { id: id.0 .0.into() };
        let data = call.abi_encode().into();
        let out = if pending {
            self.node
                .eth_call_pending(self.deployment.escrow, data)
                .await?
        } else {
            self.node.eth_call(self.deployment.escrow, data).await?
        };
        let r = IsthmusEscrow::locksCall::abi_decode_returns(&out)
            .map_err(|e| self.misbehaving(format!("escrow locks(): {e}")))?;
        Ok(Stored {
            deadline: r.deadline,
            state: r.state,
            hashlock: None,
        })
    }

    async fn stored_htlc(&self, id: &LockId) -> Result<Stored, AdapterError> {
        self.stored_htlc_at(id, false).await
    }

    async fn stored_htlc_at(&self, id: &LockId, pending: bool) -> Result<Stored, AdapterError> {
        let call = IsthmusHtlc::swapsCall { id: id.0 .0.into() };
        let data = call.abi_encode().into();
        let out = if pending {
            self.node
                .eth_call_pending(self.deployment.htlc, data)
                .await?
        } else {
            self.node.eth_call(self.deployment.htlc, data).await?
        };
        let r = IsthmusHtlc::swapsCall::abi_decode_returns(&out)
            .map_err(|e| self.misbehaving(format!("htlc swaps(): {e}")))?;
        Ok(Stored {
            deadline: r.timeout,
            state: r.state,
            hashlock: Some(r.hashlock),
        })
    }

    fn misbehaving(&self, reason: String) -> AdapterError {
        AdapterError::Misbehaving {
            network: self.net(),
            reason,
        }
    }

    async fn token_balance(
        &self,
        token: EvmAddress,
        who: EvmAddress,
    ) -> Result<U256, AdapterError> {
        let out = self
            .node
            .eth_call(
                token,
                Erc20::balanceOfCall { account: who }.abi_encode().into(),
            )
            .await?;
        Erc20::balanceOfCall::abi_decode_returns(&out)
            .map_err(|e| self.misbehaving(format!("balanceOf on {token}: {e}")))
    }

    async fn asset_balance(&self, who: EvmAddress, asset: EvmAsset) -> Result<U256, AdapterError> {
        match asset {
            EvmAsset::Native => self.node.eth_balance(who).await,
            EvmAsset::Erc20(t) => self.token_balance(t, who).await,
        }
    }

    async fn chain_time(&self) -> Result<u64, AdapterError> {
        let b = self
            .node
            .rpc(
                "eth_getBlockByNumber",
                self.node
                    .provider
                    .get_block_by_number(BlockNumberOrTag::Latest),
            )
            .await?
            .ok_or_else(|| self.node.unavailable("node has no latest block"))?;
        Ok(b.header.timestamp)
    }

    fn done(&self, id: LockId, op: Op) -> Option<TxId> {
        let ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        ops.get(&(id, op)).map(|h| tx_id(&h32(*h)))
    }

    async fn record(&self, id: LockId, op: Op, hash: B256) -> TxId {
        self.ops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((id, op), hash);
        self.view.lock().await.track(h32(hash));
        tx_id(&h32(hash))
    }

    /// The attesters' signatures in the escrow's order, or why there are too few.
    fn quorum(
        &self,
        id: &LockId,
        att: &HubAttestation,
        want: Decision,
    ) -> Result<Vec<Bytes>, AdapterError> {
        if att.lock_id != *id || att.network != self.net() || att.decision != want {
            return Err(invalid(format!(
                "attestation is for lock {} on network {} deciding {:?}; needed lock {id} on network {} deciding {want:?}",
                att.lock_id, att.network, att.decision, self.net()
            )));
        }
        let domain = EvmEscrowDomain {
            chain_id: self.cfg.chain_id,
            escrow: self.deployment.escrow.0 .0,
        };
        let signers = att.secp256k1_evm_signers(&domain, &self.attesters);
        if signers.len() < self.cfg.threshold as usize {
            return Err(invalid(format!(
                "attestation carries {} valid attester signatures for escrow {}, {} needed",
                signers.len(),
                self.deployment.escrow,
                self.cfg.threshold
            )));
        }
        Ok(signers.into_iter().map(|(_, s)| Bytes::from(s)).collect())
    }

    /// A lock must exist (`NotFound` otherwise) and still be open (`Conflict` otherwise).
    fn require_open(
        &self,
        id: &LockId,
        stored: &Stored,
        what: &str,
        op: &str,
    ) -> Result<(), AdapterError> {
        if stored.state == STATE_NONE {
            return Err(AdapterError::NotFound {
                network: self.net(),
                what: format!("{what} {id}"),
            });
        }
        if stored.state != STATE_OPEN {
            return Err(self.conflict(id, state_name(stored.state), op));
        }
        Ok(())
    }

    fn conflict(&self, id: &LockId, state: &str, op: &str) -> AdapterError {
        AdapterError::Conflict {
            network: self.net(),
            lock_id: id.to_string(),
            state: state.to_owned(),
            op: op.to_owned(),
        }
    }

    async fn relay(&self, to: EvmAddress, data: Vec<u8>, op: &str) -> Result<B256, AdapterError> {
        let signer = self.signer(&self.relayer)?;
        let req = TransactionRequest::default().with_to(to).with_input(data);
        self.node.send(&signer, req, op).await
    }
}

fn asset_of(token: EvmAddress) -> EvmAsset {
    if token == EvmAddress::ZERO {
        EvmAsset::Native
    } else {
        EvmAsset::Erc20(token)
    }
}

fn state_name(s: u8) -> &'static str {
    match s {
        0 => "unknown",
        1 => "locked",
        2 => "released",
        _ => "refunded",
    }
}

#[async_trait]
impl Adapter for EvmAdapter {
    fn descriptor(&self) -> &PlatformDescriptor {
        &self.inner.descriptor
    }

    async fn health(&self) -> Result<Health, AdapterError> {
        let i = &self.inner;
        match i
            .node
            .rpc("eth_chainId", i.node.provider.get_chain_id())
            .await
        {
            Err(e) => Ok(Health::Unhealthy {
                reason: e.to_string(),
            }),
            Ok(c) if c != i.cfg.chain_id => Ok(Health::Unhealthy {
                reason: format!("node switched to chain id {c}"),
            }),
            Ok(_) => {
                let trouble = i.trouble.lock().unwrap_or_else(|p| p.into_inner()).clone();
                Ok(match trouble {
                    Some(reason) => Health::Degraded { reason },
                    None => Health::Healthy,
                })
            }
        }
    }

    async fn heads(&self) -> Result<Heads, AdapterError> {
        self.inner.sync().await?;
        let view = self.inner.view.lock().await;
        let tip = view
            .tip()
            .ok_or_else(|| self.inner.node.unavailable("no block seen yet"))?;
        let fin = view
            .finalized()
            .or_else(|| view.block_at(tip.height.saturating_sub(view.confirmations())))
            .unwrap_or(tip);
        Ok(Heads {
            head: BlockRef {
                height: tip.height,
                hash: tip.hash,
            },
            finalized: BlockRef {
                height: fin.height,
                hash: fin.hash,
            },
            time: tip.time,
        })
    }

    async fn events_since(&self, after: Checkpoint, limit: u32) -> Result<EventPage, AdapterError> {
        self.inner.sync().await?;
        Ok(self.inner.view.lock().await.events_since(after, limit))
    }

    async fn submit(&self, tx: SignedTx) -> Result<TxId, AdapterError> {
        let i = &self.inner;
        let env = TxEnvelope::decode_2718(&mut tx.0.as_slice())
            .map_err(|e| invalid(format!("not an eip-2718 transaction: {e}")))?;
        let hash = *env.tx_hash();
        if env.chain_id().is_some_and(|c| c != i.cfg.chain_id) {
            return Err(invalid(format!(
                "transaction {hash} is for chain {:?}, network {} is chain {}",
                env.chain_id(),
                i.net(),
                i.cfg.chain_id
            )));
        }
        let known = i
            .node
            .rpc(
                "eth_getTransactionByHash",
                i.node.provider.get_transaction_by_hash(hash),
            )
            .await?;
        if known.is_none() {
            // Simulate first: a transaction that would revert is refused, not mined to fail.
            let from = alloy::consensus::transaction::SignerRecoverable::recover_signer(&env)
                .map_err(|e| invalid(format!("transaction {hash} has a bad signature: {e}")))?;
            let req = TransactionRequest::from_transaction_with_sender(env.clone(), from);
            i.node
                .rpc("eth_call (simulate)", i.node.provider.call(req))
                .await?;
            match i
                .node
                .rpc(
                    "eth_sendRawTransaction",
                    i.node.provider.send_raw_transaction(&env.encoded_2718()),
                )
                .await
            {
                Ok(_) => {}
                Err(AdapterError::Rejected { reason, .. }) if reason.contains("already known") => {}
                Err(e) => return Err(e),
            }
        }
        i.view.lock().await.track(h32(hash));
        Ok(tx_id(&h32(hash)))
    }

    async fn tx_status(&self, tx: &TxId) -> Result<TxStatus, AdapterError> {
        let i = &self.inner;
        let hash = i.node.current_hash(parse_tx(i.net(), tx)?);
        i.sync().await?;
        let Some(r) = i.node.receipt(hash).await? else {
            let known = i
                .node
                .rpc(
                    "eth_getTransactionByHash",
                    i.node.provider.get_transaction_by_hash(hash),
                )
                .await?;
            return Ok(if known.is_some() || i.node.is_pending_here(hash) {
                TxStatus::Pending
            } else {
                TxStatus::Unknown
            });
        };
        let (Some(n), Some(bh)) = (r.block_number, r.block_hash) else {
            return Ok(TxStatus::Pending);
        };
        let view = i.view.lock().await;
        // The node's receipt counts only for a block on the adapter's own header chain.
        match view.block_at(n) {
            Some(b) if b.hash == h32(bh) => {}
            _ => return Ok(TxStatus::Pending),
        }
        let block = BlockRef {
            height: n,
            hash: h32(bh),
        };
        if !r.status() {
            return Ok(TxStatus::Failed {
                reason: format!("transaction {hash} reverted in block {n}"),
            });
        }
        let fin = view.finalized().map(|f| f.height);
        let tip = view.tip().map_or(n, |t| t.height);
        Ok(if fin.is_some_and(|f| n <= f) {
            TxStatus::Final { block }
        } else {
            TxStatus::Included {
                block,
                confirmations: tip - n,
            }
        })
    }

    async fn evidence(&self, tx: &TxId) -> Result<Evidence, AdapterError> {
        let i = &self.inner;
        let hash = i.node.current_hash(parse_tx(i.net(), tx)?);
        let TxStatus::Final { block } = self.tx_status(tx).await? else {
            return Err(AdapterError::NotFound {
                network: i.net(),
                what: format!("final transaction {tx}"),
            });
        };
        let receipt = i
            .node
            .receipt(hash)
            .await?
            .ok_or_else(|| i.node.unavailable(format!("receipt of {hash} vanished")))?;
        let env: ReceiptEnvelope = receipt.inner.into_primitives_receipt();
        let tip = i.view.lock().await.tip().map_or(block.height, |t| t.height);
        let mut headers = Vec::new();
        for n in block.height..=tip {
            let b = i
                .block_at(n)
                .await?
                .ok_or_else(|| i.node.unavailable(format!("block {n} vanished")))?;
            headers.push(serde_bytes::ByteBuf::from(alloy::rlp::encode(
                &b.header.inner,
            )));
        }
        Ok(Evidence::EvmReceipt {
            block,
            receipt_rlp: env.encoded_2718(),
            log_index: None,
            confirmations: tip - block.height,
            headers,
        })
    }

    async fn verify_evidence(
        &self,
        tx: &TxId,
        evidence: &Evidence,
    ) -> Result<Verified, AdapterError> {
        crate::evidence::verify(
            &self.inner.node,
            &*self.inner.view.lock().await,
            tx,
            evidence,
        )
        .await
    }

    async fn balance(&self, account: &Address, asset: &AssetId) -> Result<Amount, AdapterError> {
        let i = &self.inner;
        let who = parse_address(i.net(), account)?;
        let asset = EvmAsset::parse(i.net(), asset)?;
        let b = i.asset_balance(who, asset).await?;
        u128::try_from(b)
            .map(Amount)
            .map_err(|_| invalid(format!("balance of {account} exceeds 128 bits")))
    }

    async fn lock(&self, req: &LockRequest) -> Result<TxId, AdapterError> {
        let i = &self.inner;
        let leg = &req.leg;
        if leg.network != i.net() {
            return Err(invalid(format!(
                "lock {} is for network {}, this is network {}",
                req.lock_id,
                leg.network,
                i.net()
            )));
        }
        if leg.amount.0 == 0 {
            return Err(invalid(format!("lock {} has no amount", req.lock_id)));
        }
        let asset = EvmAsset::parse(i.net(), &leg.asset)?;
        let owner = parse_address(i.net(), &leg.from)?;
        let beneficiary = parse_address(i.net(), &leg.to)?;
        if let Some(tx) = i.done(req.lock_id, Op::Lock) {
            return Ok(tx);
        }
        i.sync().await?;
        if let Some(seen) = i.view.lock().await.lock(&req.lock_id) {
            return Ok(seen.observation.tx);
        }
        let (contract, stored) = match req.terms {
            LockTerms::TwoPhase => (i.deployment.escrow, i.stored_escrow(&req.lock_id).await?),
            LockTerms::Htlc { .. } => (i.deployment.htlc, i.stored_htlc(&req.lock_id).await?),
        };
        if stored.state != STATE_NONE {
            // Locked before the adapter's view begins: its log names the transaction.
            let topic = match req.terms {
                LockTerms::TwoPhase => IsthmusEscrow::Locked::SIGNATURE_HASH,
                LockTerms::Htlc { .. } => IsthmusHtlc::Locked::SIGNATURE_HASH,
            };
            let filter = Filter::new()
                .address(contract)
                .event_signature(topic)
                .topic1(B256::from(req.lock_id.0 .0))
                .from_block(i.deployment.deployed_at);
            let logs = i
                .node
                .rpc("eth_getLogs", i.node.provider.get_logs(&filter))
                .await?;
            if let Some(tx) = logs.iter().find_map(|l| l.transaction_hash) {
                return Ok(tx_id(&h32(tx)));
            }
            return Err(i.conflict(&req.lock_id, state_name(stored.state), "lock"));
        }
        // A lock sent before (by an earlier run of the adapter) may still wait in the mempool;
        // another send would only fail on chain. Once it is mined, a retry finds it.
        let pending = match req.terms {
            LockTerms::TwoPhase => i.stored_escrow_at(&req.lock_id, true).await?,
            LockTerms::Htlc { .. } => i.stored_htlc_at(&req.lock_id, true).await?,
        };
        if pending.state != STATE_NONE {
            return Err(i.node.unavailable(format!(
                "lock {} is already pending in the node's mempool; retry once it is mined",
                req.lock_id
            )));
        }
        let now = i.chain_time().await?;
        if leg.timeout <= now {
            return Err(invalid(format!(
                "lock {} times out at {}, not after the chain time {now}",
                req.lock_id, leg.timeout
            )));
        }
        let signer = i.signer(&leg.from)?;
        let amount = U256::from(leg.amount.0);
        let have = i.asset_balance(owner, asset).await?;
        if have < amount {
            return Err(i.node.rejected(format!(
                "{} holds {have} of {}, below the lock's {amount}",
                leg.from, leg.asset
            )));
        }
        if let EvmAsset::Erc20(token) = asset {
            let call = Erc20::allowanceCall {
                owner,
                spender: contract,
            };
            let out = i.node.eth_call(token, call.abi_encode().into()).await?;
            let allowed = Erc20::allowanceCall::abi_decode_returns(&out)
                .map_err(|e| i.misbehaving(format!("allowance on {token}: {e}")))?;
            if allowed < amount {
                let approve = Erc20::approveCall {
                    spender: contract,
                    amount,
                };
                let tx = TransactionRequest::default()
                    .with_to(token)
                    .with_input(approve.abi_encode());
                let hash = i.node.send(&signer, tx, "approve").await?;
                let within =
                    Duration::from_millis(i.cfg.stuck_after_ms.max(i.cfg.rpc_timeout_ms) * 2);
                let r = i.node.wait_receipt(hash, within).await?;
                if !r.status() {
                    return Err(i.node.rejected(format!("approve {hash} reverted")));
                }
            }
        }
        let token = asset.token();
        let value = if token == EvmAddress::ZERO {
            amount
        } else {
            U256::ZERO
        };
        let id: B256 = req.lock_id.0 .0.into();
        let data = match req.terms {
            LockTerms::TwoPhase => IsthmusEscrow::lockCall {
                id,
                token,
                amount,
                beneficiary,
                deadline: leg.timeout,
            }
            .abi_encode(),
            LockTerms::Htlc { hashlock } => IsthmusHtlc::lockCall {
                id,
                token,
                amount,
                beneficiary,
                hashlock: hashlock.0.into(),
                timeout: leg.timeout,
            }
            .abi_encode(),
        };
        let tx = TransactionRequest::default()
            .with_to(contract)
            .with_input(data)
            .with_value(value);
        let hash = i.node.send(&signer, tx, "lock").await?;
        Ok(i.record(req.lock_id, Op::Lock, hash).await)
    }

    async fn release(&self, req: &ReleaseRequest) -> Result<TxId, AdapterError> {
        let i = &self.inner;
        let sigs = i.quorum(&req.lock_id, &req.attestation, Decision::Validated)?;
        if let Some(tx) = i.done(req.lock_id, Op::Release) {
            return Ok(tx);
        }
        let stored = i.stored_escrow(&req.lock_id).await?;
        i.require_open(&req.lock_id, &stored, "escrow lock", "release")?;
        let call = IsthmusEscrow::releaseCall {
            id: req.lock_id.0 .0.into(),
            signatures: sigs,
        };
        let hash = i
            .relay(i.deployment.escrow, call.abi_encode(), "release")
            .await?;
        Ok(i.record(req.lock_id, Op::Release, hash).await)
    }

    async fn refund(&self, req: &RefundRequest) -> Result<TxId, AdapterError> {
        let i = &self.inner;
        if let Some(tx) = i.done(req.lock_id, Op::Refund) {
            return Ok(tx);
        }
        let escrow = i.stored_escrow(&req.lock_id).await?;
        let (contract, stored, is_htlc) = if escrow.state != STATE_NONE {
            (i.deployment.escrow, escrow, false)
        } else {
            (i.deployment.htlc, i.stored_htlc(&req.lock_id).await?, true)
        };
        i.require_open(&req.lock_id, &stored, "lock", "refund")?;
        let id: B256 = req.lock_id.0 .0.into();
        let data = match (&req.authorisation, is_htlc) {
            (RefundAuthorisation::Attestation(_), true) => {
                return Err(invalid(format!(
                    "htlc {} refunds only after its timeout",
                    req.lock_id
                )))
            }
            (RefundAuthorisation::Attestation(att), false) => IsthmusEscrow::refundCall {
                id,
                signatures: i.quorum(&req.lock_id, att, Decision::Aborted)?,
            }
            .abi_encode(),
            (RefundAuthorisation::Timeout, _) => {
                let now = i.chain_time().await?;
                if now < stored.deadline {
                    return Err(i.node.rejected(format!(
                        "lock {} times out at {}, the chain time is {now}",
                        req.lock_id, stored.deadline
                    )));
                }
                if is_htlc {
                    IsthmusHtlc::refundCall { id }.abi_encode()
                } else {
                    IsthmusEscrow::refundCall {
                        id,
                        signatures: Vec::new(),
                    }
                    .abi_encode()
                }
            }
        };
        let hash = i.relay(contract, data, "refund").await?;
        Ok(i.record(req.lock_id, Op::Refund, hash).await)
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<TxId, AdapterError> {
        let i = &self.inner;
        if let Some(tx) = i.done(req.lock_id, Op::Claim) {
            return Ok(tx);
        }
        let stored = i.stored_htlc(&req.lock_id).await?;
        i.require_open(&req.lock_id, &stored, "htlc", "claim")?;
        let digest = HashAlgo::Sha256.digest(&req.preimage.0);
        if Some(B256::from(digest.0)) != stored.hashlock {
            return Err(i.node.rejected(format!(
                "the preimage does not hash to htlc {}'s hashlock",
                req.lock_id
            )));
        }
        let now = i.chain_time().await?;
        if now >= stored.deadline {
            return Err(i.node.rejected(format!(
                "htlc {} expired at {}, the chain time is {now}",
                req.lock_id, stored.deadline
            )));
        }
        let call = IsthmusHtlc::claimCall {
            id: req.lock_id.0 .0.into(),
            preimage: req.preimage.0.into(),
        };
        let hash = i
            .relay(i.deployment.htlc, call.abi_encode(), "claim")
            .await?;
        Ok(i.record(req.lock_id, Op::Claim, hash).await)
    }

    async fn lock_state(&self, lock_id: &LockId) -> Result<Option<OnChainLock>, AdapterError> {
        self.inner.sync().await?;
        Ok(self.inner.view.lock().await.lock(lock_id))
    }
}
