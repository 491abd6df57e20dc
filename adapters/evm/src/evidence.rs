//! Checking EVM finality evidence as a light client would.
//!
//! The headers must hash to the blocks of the adapter's own hash-linked view (which it built by
//! following parent hashes, not by asking the node about finality), link to each other and be
//! deep enough. The receipt is then bound to the including header: the block's receipts must
//! hash to its `receipts_root` and its transactions to its `transactions_root`, with the
//! transaction at the receipt's index being the one named. The node only supplies data whose
//! hashes the adapter checks.

use crate::node::Node;
use crate::view::ChainView;
use alloy::consensus::proofs::{calculate_receipt_root, calculate_transaction_root};
use alloy::consensus::{Header, ReceiptEnvelope, TxEnvelope};
use alloy::eips::eip2718::{Decodable2718, Encodable2718};
use alloy::primitives::B256;
use alloy::providers::Provider;
use alloy::rlp::Decodable;
use isthmus_adapter_api::{AdapterError, BlockRef, Evidence, Verified};
use isthmus_core::Hash32;
use isthmus_lock_contracts::TxId;

fn bad(reason: impl Into<String>) -> AdapterError {
    AdapterError::InvalidEvidence {
        reason: reason.into(),
    }
}

pub async fn verify(
    node: &Node,
    view: &ChainView,
    tx: &TxId,
    evidence: &Evidence,
) -> Result<Verified, AdapterError> {
    let Evidence::EvmReceipt {
        block,
        receipt_rlp,
        confirmations,
        headers,
        ..
    } = evidence
    else {
        return Err(bad(format!(
            "{} evidence on an evm network",
            evidence.kind_name()
        )));
    };
    let hash: B256 =
        tx.0.parse()
            .map_err(|_| bad(format!("{tx} is not a transaction hash")))?;
    // 1. The header chain: decodes, links, and is the adapter's own.
    let mut decoded: Vec<Header> = Vec::with_capacity(headers.len());
    for raw in headers {
        let h = Header::decode(&mut raw.as_slice()).map_err(|e| bad(format!("header: {e}")))?;
        if let Some(prev) = decoded.last() {
            if h.parent_hash != prev.hash_slow() || h.number != prev.number + 1 {
                return Err(bad(format!(
                    "header {} does not link to its parent",
                    h.number
                )));
            }
        }
        match view.block_at(h.number) {
            Some(b) if b.hash == Hash32(h.hash_slow().0) => {}
            Some(_) => {
                return Err(bad(format!(
                    "header {} is not on the adapter's chain",
                    h.number
                )))
            }
            None => {
                return Err(bad(format!(
                    "header {} is outside the adapter's header window",
                    h.number
                )))
            }
        }
        decoded.push(h);
    }
    let first = decoded.first().ok_or_else(|| bad("no headers"))?;
    if first.number != block.height || Hash32(first.hash_slow().0) != block.hash {
        return Err(bad(format!(
            "first header is not block {} {}",
            block.height, block.hash
        )));
    }
    let depth = decoded.len() as u64 - 1;
    if depth != *confirmations || depth < view.confirmations() {
        return Err(bad(format!(
            "{depth} confirming headers (claimed {confirmations}), {} needed",
            view.confirmations()
        )));
    }
    // 2. The receipt: decodes, succeeded, and is the one the header commits to for `tx`.
    let receipt = ReceiptEnvelope::decode_2718(&mut receipt_rlp.as_slice())
        .map_err(|e| bad(format!("receipt: {e}")))?;
    if !receipt.status() {
        return Err(bad(format!("transaction {tx} reverted")));
    }
    let block_hash = B256::from(block.hash.0);
    let receipts = node
        .rpc(
            "eth_getBlockReceipts",
            node.provider.get_block_receipts(block_hash.into()),
        )
        .await?
        .ok_or_else(|| bad(format!("no receipts for block {}", block.hash)))?;
    let envelopes: Vec<ReceiptEnvelope> = receipts
        .iter()
        .map(|r| r.inner.clone().into_primitives_receipt())
        .collect();
    if calculate_receipt_root(&envelopes) != first.receipts_root {
        return Err(bad(format!(
            "the node's receipts do not match block {}'s receipts root",
            block.height
        )));
    }
    let full = node
        .rpc(
            "eth_getBlockByHash",
            node.provider.get_block_by_hash(block_hash).full(),
        )
        .await?
        .ok_or_else(|| bad(format!("block {} not served", block.hash)))?;
    let txs: Vec<TxEnvelope> = full
        .transactions
        .into_transactions()
        .map(|t| t.inner.into_inner())
        .collect();
    if calculate_transaction_root(&txs) != first.transactions_root {
        return Err(bad(format!(
            "the node's transactions do not match block {}'s transactions root",
            block.height
        )));
    }
    let index = txs
        .iter()
        .position(|t| *t.tx_hash() == hash)
        .ok_or_else(|| bad(format!("transaction {tx} is not in block {}", block.height)))?;
    if envelopes.get(index).map(|r| r.encoded_2718()).as_deref() != Some(receipt_rlp.as_slice()) {
        return Err(bad(format!(
            "the receipt is not block {}'s receipt for {tx}",
            block.height
        )));
    }
    Ok(Verified {
        block: BlockRef {
            height: block.height,
            hash: block.hash,
        },
        confirmations: depth,
        digest: evidence.digest(),
    })
}
