//! The node connection: JSON-RPC calls with deadlines and typed errors, one nonce manager per
//! signer, gas estimation, fee selection and capped fee bumps for stuck transactions.

use crate::config::EvmConfig;
use alloy::consensus::TxEnvelope;
use alloy::eips::eip2718::Encodable2718;
use alloy::eips::BlockNumberOrTag;
use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address as EvmAddress, Bytes, B256, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::client::ClientBuilder;
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::RpcError;
use alloy::transports::{TransportError, TransportResult};
use isthmus_adapter_api::{AdapterError, SecretKey, SignatureScheme, Wallet};
use isthmus_core::NetworkId;
use isthmus_lock_contracts::Address;
use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// A transaction the adapter sent and watches until it is mined.
#[derive(Debug, Clone)]
pub struct PendingTx {
    pub signer: EvmAddress,
    pub nonce: u64,
    pub request: TransactionRequest,
    pub max_fee: u128,
    pub priority_fee: u128,
    pub sent_at: Instant,
}

/// What happened to stuck transactions in one pass.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BumpReport {
    pub replaced: Vec<(B256, B256)>,
    /// Stuck at the fee cap: nothing more the adapter may offer.
    pub at_cap: Vec<B256>,
}

pub struct Node {
    pub network: NetworkId,
    pub provider: RootProvider,
    pub chain_id: u64,
    timeout: Duration,
    stuck_after: Duration,
    bump_percent: u128,
    max_fee_cap: u128,
    wallet: Arc<dyn Wallet>,
    /// One slot per signer: holding it serialises that signer's sends; `None` = resync.
    nonces: StdMutex<HashMap<EvmAddress, Arc<Mutex<Option<u64>>>>>,
    pending: StdMutex<HashMap<B256, PendingTx>>,
    /// Replaced tx -> its replacement.
    replaced: StdMutex<HashMap<B256, B256>>,
}

/// Node error messages that mean our idea of the signer's nonce is wrong.
fn is_nonce_error(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("nonce too low")
        || m.contains("nonce too high")
        || m.contains("already known")
        || m.contains("replacement transaction underpriced")
        || m.contains("invalid nonce")
}

pub fn parse_address(network: NetworkId, a: &Address) -> Result<EvmAddress, AdapterError> {
    a.0.parse::<EvmAddress>()
        .map_err(|_| AdapterError::InvalidRequest {
            reason: format!("{a} is not an address on evm network {network}"),
        })
}

/// The text form of an address: EIP-55 checksummed.
pub fn address_text(a: EvmAddress) -> Address {
    Address(a.to_checksum(None))
}

impl Node {
    pub fn connect(cfg: &EvmConfig, wallet: Arc<dyn Wallet>) -> Result<Node, AdapterError> {
        let url = cfg
            .rpc_url
            .parse::<url::Url>()
            .map_err(|e| AdapterError::InvalidRequest {
                reason: format!("rpc_url {:?}: {e}", cfg.rpc_url),
            })?;
        let client = ClientBuilder::default().hyper_http(url);
        Ok(Node {
            network: cfg.network,
            provider: RootProvider::new(client),
            chain_id: cfg.chain_id,
            timeout: Duration::from_millis(cfg.rpc_timeout_ms),
            stuck_after: Duration::from_millis(cfg.stuck_after_ms),
            bump_percent: u128::from(cfg.fee_bump_percent),
            max_fee_cap: cfg.max_fee_per_gas,
            wallet,
            nonces: StdMutex::default(),
            pending: StdMutex::default(),
            replaced: StdMutex::default(),
        })
    }

    pub fn unavailable(&self, reason: impl Into<String>) -> AdapterError {
        AdapterError::Unavailable {
            network: self.network,
            reason: reason.into(),
        }
    }

    pub fn rejected(&self, reason: impl Into<String>) -> AdapterError {
        AdapterError::Rejected {
            network: self.network,
            reason: reason.into(),
        }
    }

    /// A node's error answer is a refusal (with the revert reason when there is one); anything
    /// else is transport trouble that a retry may clear.
    pub fn map_err(&self, op: &str, e: TransportError) -> AdapterError {
        match &e {
            RpcError::ErrorResp(p) => {
                let reason = p
                    .as_revert_data()
                    .and_then(|d| alloy::sol_types::decode_revert_reason(d.as_ref()))
                    .unwrap_or_else(|| p.message.to_string());
                self.rejected(format!("{op}: {reason}"))
            }
            _ => self.unavailable(format!("{op}: {e}")),
        }
    }

    /// One JSON-RPC call under the configured deadline.
    pub async fn rpc<T, F>(&self, op: &str, call: F) -> Result<T, AdapterError>
    where
        F: IntoFuture<Output = TransportResult<T>>,
    {
        match tokio::time::timeout(self.timeout, call.into_future()).await {
            Err(_) => Err(AdapterError::Timeout {
                network: self.network,
                op: op.to_owned(),
            }),
            Ok(Err(e)) => Err(self.map_err(op, e)),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// `eth_call` against the latest block (alloy's default would be the pending one).
    pub async fn eth_call(&self, to: EvmAddress, data: Bytes) -> Result<Bytes, AdapterError> {
        let req = TransactionRequest::default().with_to(to).with_input(data);
        self.rpc(
            "eth_call",
            self.provider
                .call(req)
                .block(alloy::eips::BlockId::latest()),
        )
        .await
    }

    /// `eth_call` against the node's pending block (its mempool applied).
    pub async fn eth_call_pending(
        &self,
        to: EvmAddress,
        data: Bytes,
    ) -> Result<Bytes, AdapterError> {
        let req = TransactionRequest::default().with_to(to).with_input(data);
        self.rpc(
            "eth_call (pending)",
            self.provider
                .call(req)
                .block(alloy::eips::BlockId::pending()),
        )
        .await
    }

    /// The signer for `address` from the wallet; `None` when the hub holds no key for it.
    pub fn signer_for(&self, address: &Address) -> Result<Option<PrivateKeySigner>, AdapterError> {
        let evm = parse_address(self.network, address)?;
        let forms = [
            address.clone(),
            address_text(evm),
            Address(format!("{evm:#x}")),
        ];
        for form in &forms {
            if let Some(key) = self.wallet.key_for(SignatureScheme::Secp256k1Ecdsa, form)? {
                let SecretKey::Secp256k1(bytes) = key else {
                    continue;
                };
                let signer = PrivateKeySigner::from_bytes(&B256::from(*bytes)).map_err(|e| {
                    AdapterError::Wallet {
                        reason: format!("key for {address} is not a secp256k1 scalar: {e}"),
                    }
                })?;
                if signer.address() != evm {
                    return Err(AdapterError::Wallet {
                        reason: format!("the wallet's key for {address} controls another address"),
                    });
                }
                return Ok(Some(signer));
            }
        }
        Ok(None)
    }

    fn slot(&self, who: EvmAddress) -> Arc<Mutex<Option<u64>>> {
        let mut m = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(who).or_default().clone()
    }

    /// Forget every cached nonce (after a reorg dropped transactions).
    pub async fn resync_all(&self) {
        let slots: Vec<_> = {
            let m = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
            m.values().cloned().collect()
        };
        for s in slots {
            *s.lock().await = None;
        }
    }

    /// Fees for the next block: twice the base fee plus the tip, within the cap.
    async fn fees(&self) -> Result<(u128, u128), AdapterError> {
        let block = self
            .rpc(
                "eth_getBlockByNumber",
                self.provider.get_block_by_number(BlockNumberOrTag::Latest),
            )
            .await?
            .ok_or_else(|| self.unavailable("node has no latest block"))?;
        let base = u128::from(block.header.base_fee_per_gas.unwrap_or(1_000_000_000));
        let tip = self
            .rpc(
                "eth_maxPriorityFeePerGas",
                self.provider.get_max_priority_fee_per_gas(),
            )
            .await
            .unwrap_or(1_000_000_000);
        let max_fee = (base * 2 + tip).min(self.max_fee_cap);
        if max_fee < base {
            return Err(self.rejected(format!(
                "base fee {base} is above the configured cap {}",
                self.max_fee_cap
            )));
        }
        Ok((max_fee, tip.min(max_fee)))
    }

    async fn sign(
        &self,
        signer: &PrivateKeySigner,
        req: TransactionRequest,
    ) -> Result<TxEnvelope, AdapterError> {
        let wallet = EthereumWallet::from(signer.clone());
        req.build(&wallet).await.map_err(|e| AdapterError::Wallet {
            reason: format!("signing for {}: {e}", signer.address()),
        })
    }

    /// Estimate, price, number, sign and send `req` from `signer`. A refusal by the node's
    /// simulation is `Rejected` (nothing sent); a nonce the chain disagrees with is resynced from
    /// the chain and the send retried.
    pub async fn send(
        &self,
        signer: &PrivateKeySigner,
        req: TransactionRequest,
        op: &str,
    ) -> Result<B256, AdapterError> {
        let from = signer.address();
        let slot = self.slot(from);
        let mut next = slot.lock().await;
        let req = req.with_from(from).with_chain_id(self.chain_id);
        let gas = self
            .rpc(
                &format!("{op}: eth_estimateGas"),
                self.provider.estimate_gas(req.clone()),
            )
            .await?;
        let req = req.with_gas_limit(gas + gas / 5 + 10_000);
        let (max_fee, tip) = self.fees().await?;
        let mut last = None;
        for _ in 0..3 {
            let nonce = match *next {
                Some(n) => n,
                None => {
                    self.rpc(
                        "eth_getTransactionCount",
                        self.provider.get_transaction_count(from).pending(),
                    )
                    .await?
                }
            };
            let req = req
                .clone()
                .with_nonce(nonce)
                .with_max_fee_per_gas(max_fee)
                .with_max_priority_fee_per_gas(tip);
            let env = self.sign(signer, req.clone()).await?;
            let hash = *env.tx_hash();
            match tokio::time::timeout(
                self.timeout,
                self.provider.send_raw_transaction(&env.encoded_2718()),
            )
            .await
            {
                Ok(Ok(_)) => {
                    *next = Some(nonce + 1);
                    self.remember(hash, from, nonce, req, max_fee, tip);
                    return Ok(hash);
                }
                Ok(Err(RpcError::ErrorResp(p))) if is_nonce_error(&p.message) => {
                    tracing::info!(%from, nonce, reason = %p.message, "nonce resync from chain");
                    *next = None;
                    last = Some(self.rejected(format!("{op}: {}", p.message)));
                }
                Ok(Err(e)) => {
                    // The send may or may not have reached the node: ask the chain next time.
                    *next = None;
                    return Err(self.map_err(op, e));
                }
                Err(_) => {
                    *next = None;
                    return Err(AdapterError::Timeout {
                        network: self.network,
                        op: op.to_owned(),
                    });
                }
            }
        }
        Err(last.unwrap_or_else(|| self.rejected(format!("{op}: nonce kept changing"))))
    }

    fn remember(
        &self,
        hash: B256,
        signer: EvmAddress,
        nonce: u64,
        request: TransactionRequest,
        max_fee: u128,
        priority_fee: u128,
    ) {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        p.insert(
            hash,
            PendingTx {
                signer,
                nonce,
                request,
                max_fee,
                priority_fee,
                sent_at: Instant::now(),
            },
        );
    }

    /// The newest replacement of `hash` (itself when never replaced).
    pub fn current_hash(&self, hash: B256) -> B256 {
        let r = self.replaced.lock().unwrap_or_else(|p| p.into_inner());
        let mut h = hash;
        for _ in 0..64 {
            match r.get(&h) {
                Some(n) => h = *n,
                None => break,
            }
        }
        h
    }

    pub fn is_pending_here(&self, hash: B256) -> bool {
        let p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        p.contains_key(&hash)
    }

    pub async fn receipt(&self, hash: B256) -> Result<Option<TransactionReceipt>, AdapterError> {
        self.rpc(
            "eth_getTransactionReceipt",
            self.provider.get_transaction_receipt(hash),
        )
        .await
    }

    /// Poll for `hash`'s receipt (following replacements) until `deadline`.
    pub async fn wait_receipt(
        &self,
        hash: B256,
        within: Duration,
    ) -> Result<TransactionReceipt, AdapterError> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(r) = self.receipt(self.current_hash(hash)).await? {
                return Ok(r);
            }
            if Instant::now() >= deadline {
                return Err(AdapterError::Timeout {
                    network: self.network,
                    op: format!("receipt of {hash}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Replace every transaction pending longer than `stuck_after` with the same nonce and
    /// fees raised by the bump percentage, up to the cap; forget those that were mined.
    pub async fn bump_stuck(&self) -> Result<BumpReport, AdapterError> {
        let mut report = BumpReport::default();
        let pending: Vec<(B256, PendingTx)> = {
            let p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            p.iter().map(|(h, t)| (*h, t.clone())).collect()
        };
        for (hash, tx) in pending {
            let mined_nonce = self
                .rpc(
                    "eth_getTransactionCount",
                    self.provider.get_transaction_count(tx.signer).latest(),
                )
                .await?;
            if mined_nonce > tx.nonce {
                self.forget(hash);
                continue;
            }
            if tx.sent_at.elapsed() < self.stuck_after {
                continue;
            }
            let bump = |x: u128| (x * (100 + self.bump_percent)).div_ceil(100);
            let max_fee = bump(tx.max_fee).min(self.max_fee_cap);
            let tip = bump(tx.priority_fee).min(max_fee);
            if max_fee <= tx.max_fee || tip <= tx.priority_fee {
                report.at_cap.push(hash);
                continue;
            }
            let Some(signer) = self.signer_for(&address_text(tx.signer))? else {
                continue;
            };
            let req = tx
                .request
                .clone()
                .with_max_fee_per_gas(max_fee)
                .with_max_priority_fee_per_gas(tip);
            let env = self.sign(&signer, req.clone()).await?;
            let new = *env.tx_hash();
            match self
                .rpc(
                    "eth_sendRawTransaction (replacement)",
                    self.provider.send_raw_transaction(&env.encoded_2718()),
                )
                .await
            {
                Ok(_) => {
                    tracing::info!(%hash, %new, max_fee, "replaced a stuck transaction");
                    self.forget(hash);
                    self.remember(new, tx.signer, tx.nonce, req, max_fee, tip);
                    let mut r = self.replaced.lock().unwrap_or_else(|p| p.into_inner());
                    r.insert(hash, new);
                    report.replaced.push((hash, new));
                }
                Err(e) if !e.is_retryable() => {
                    // Mined meanwhile, or the node refuses the bump: the next pass decides.
                    tracing::warn!(%hash, error = %e, "replacement refused");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    fn forget(&self, hash: B256) {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        p.remove(&hash);
    }

    /// Raw balance of an account in wei.
    pub async fn eth_balance(&self, who: EvmAddress) -> Result<U256, AdapterError> {
        self.rpc("eth_getBalance", self.provider.get_balance(who))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_errors_are_recognised_across_node_dialects() {
        assert!(is_nonce_error("nonce too low"));
        assert!(is_nonce_error("Nonce too low: next nonce 4, tx nonce 3"));
        assert!(is_nonce_error("already known"));
        assert!(is_nonce_error("replacement transaction underpriced"));
        assert!(!is_nonce_error(
            "insufficient funds for gas * price + value"
        ));
    }
}
