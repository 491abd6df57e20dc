//! [`UtxoAdapter`]: the [`Adapter`] trait over a node's RPC and the adapter's chain view.

use crate::build::{self, Coin, Input, Key, Unlock};
use crate::proof;
use crate::rpc::{Rpc, RpcFailure};
use crate::script::{self, AddressCodec};
use crate::view::{self, BlockTx, Lock, Op, Pending, View};
use crate::UtxoConfig;
use async_trait::async_trait;
use bitcoin::consensus::encode::{deserialize, serialize};
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{All, Secp256k1};
use bitcoin::{
    absolute, Amount as Sats, BlockHash, CompactTarget, ScriptBuf, Transaction, TxOut, Txid,
};
use isthmus_adapter_api::*;
use isthmus_core::HashAlgo;
use isthmus_lock_contracts::{Address, Amount, AssetId, Decision, LockId, TxId};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use tokio::sync::Mutex;

/// The UTXO adapter. Cheap to share behind `Arc`; chain-changing operations are serialised so
/// two calls never pick the same coins.
pub struct UtxoAdapter {
    cfg: UtxoConfig,
    descriptor: PlatformDescriptor,
    rpc: Rpc,
    codec: AddressCodec,
    wallet: Arc<dyn Wallet>,
    secp: Secp256k1<All>,
    view: Mutex<View>,
    /// Held across coin selection and broadcast.
    ops: Mutex<()>,
    /// `scantxoutset` runs one at a time on a node.
    scan: Mutex<()>,
    /// The light client's header chain, from the checkpoint (built on first use).
    headers: Mutex<Option<proof::HeaderChain>>,
}

fn invalid(reason: impl Into<String>) -> AdapterError {
    AdapterError::InvalidRequest {
        reason: reason.into(),
    }
}

fn sats(v: &Value) -> Option<u64> {
    // Amounts come as decimal coins; below 2^53 units the f64 is exact after rounding.
    let coins = v.as_f64()?;
    (coins >= 0.0).then(|| (coins * 1e8).round() as u64)
}

fn parse_txid(tx: &TxId) -> Result<Txid, AdapterError> {
    Txid::from_str(&tx.0).map_err(|_| invalid(format!("`{tx}` is not a transaction id")))
}

impl UtxoAdapter {
    pub fn new(cfg: UtxoConfig, wallet: Arc<dyn Wallet>) -> Result<Self, AdapterError> {
        let problems = cfg.validate();
        if !problems.is_empty() {
            return Err(invalid(problems.join("; ")));
        }
        let codec = AddressCodec::new(&cfg.address_prefix).map_err(|e| invalid(e.to_string()))?;
        let rpc = Rpc::new(&cfg.rpc_url, &cfg.rpc_user, &cfg.rpc_password, cfg.network)?;
        let descriptor = PlatformDescriptor {
            network: cfg.network,
            name: cfg.name.clone(),
            kind: PlatformKind::Utxo,
            consensus: "pow".to_owned(),
            capabilities: Capabilities {
                finality: Finality::Probabilistic {
                    confirmations: cfg.confirmations,
                },
                contracts: ContractSupport::ScriptHtlcOnly,
                hash: HashScheme::Sha256d,
                signatures: vec![SignatureScheme::Secp256k1Ecdsa],
                asset_model: AssetModel::Utxo,
                two_phase: TwoPhaseSupport::HubCosignedMultisig,
                htlc: true,
                packets: false,
            },
        };
        Ok(UtxoAdapter {
            view: Mutex::new(View::new(cfg.confirmations)),
            descriptor,
            rpc,
            codec,
            wallet,
            secp: Secp256k1::new(),
            ops: Mutex::new(()),
            scan: Mutex::new(()),
            headers: Mutex::new(None),
            cfg,
        })
    }

    pub fn config(&self) -> &UtxoConfig {
        &self.cfg
    }

    fn network(&self) -> isthmus_core::NetworkId {
        self.cfg.network
    }

    pub fn script_of(&self, address: &Address) -> Result<ScriptBuf, AdapterError> {
        self.codec
            .script_of(&address.0)
            .map_err(|e| invalid(e.to_string()))
    }

    /// The P2WPKH address of a secp256k1 public key on this chain.
    pub fn address_of_key(&self, key: &bitcoin::PublicKey) -> Option<Address> {
        self.codec.p2wpkh(key).map(Address)
    }

    /// Watch an HTLC its owner funds outside the hub (`Locker::External`): returns the P2WSH
    /// address the owner pays `leg.amount` to. From then on the funding is reported like the
    /// hub's own (`LockIncluded`, `LockFinal`, `Reverted`), and a claim or refund works with
    /// the wallet's keys. Idempotent per lock id. Escrows cannot be watched this way: their
    /// script commits to the owner's public key, which an address does not reveal.
    pub async fn watch(&self, req: &LockRequest) -> Result<Address, AdapterError> {
        self.check_leg(req)?;
        if req.terms == LockTerms::TwoPhase {
            return Err(AdapterError::Unsupported {
                network: self.network(),
                op: "watch of a two-phase escrow".to_owned(),
            });
        }
        let (lock, _) = self.unfunded(req, None)?;
        let address = self
            .codec
            .address_of(&lock.script_pubkey)
            .map(Address)
            .ok_or_else(|| invalid("p2wsh script has no address"))?;
        let _serial = self.ops.lock().await;
        let mut v = self.sync().await?;
        match v.locks.get(&req.lock_id) {
            Some(known) if known.req == *req => {}
            Some(_) => {
                return Err(invalid(format!(
                    "lock id {} is already used with other terms",
                    req.lock_id
                )))
            }
            None => v.register(lock),
        }
        Ok(address)
    }

    /// The wallet's key for `address`, checked to control it.
    fn key(&self, address: &Address) -> Result<Option<Key>, AdapterError> {
        let Some(secret) = self
            .wallet
            .key_for(SignatureScheme::Secp256k1Ecdsa, address)?
        else {
            return Ok(None);
        };
        let SecretKey::Secp256k1(bytes) = secret else {
            return Err(AdapterError::Wallet {
                reason: format!("key for {address} is not secp256k1"),
            });
        };
        let key = Key::from_secret(&self.secp, &bytes).ok_or_else(|| AdapterError::Wallet {
            reason: format!("key for {address} is not a valid secp256k1 secret"),
        })?;
        if self.address_of_key(&key.public).as_ref() != Some(address) {
            return Err(AdapterError::Wallet {
                reason: format!("the wallet's key for {address} does not control it"),
            });
        }
        Ok(Some(key))
    }

    fn required_key(&self, address: &Address, role: &str) -> Result<Key, AdapterError> {
        self.key(address)?.ok_or_else(|| {
            invalid(format!(
                "the wallet holds no key for {role} {address}; that party signs for itself"
            ))
        })
    }

    // ---- chain view ---------------------------------------------------------------

    /// Bring the view up to the node's tip, reverting blocks that left the best chain.
    async fn sync(&self) -> Result<tokio::sync::MutexGuard<'_, View>, AdapterError> {
        let mut v = self.view.lock().await;
        for _ in 0..8 {
            let best: String = self.rpc.call("getbestblockhash", vec![]).await?;
            if v.tip().is_some_and(|t| t.hash.to_string() == best) {
                return Ok(v);
            }
            let count: u64 = self.rpc.call("getblockcount", vec![]).await?;
            // Walk back to the fork point.
            while let Some(tip) = v.tip() {
                let (height, hash) = (tip.height, tip.hash);
                if height <= count {
                    let at: String = self.rpc.call("getblockhash", vec![json!(height)]).await?;
                    if at == hash.to_string() {
                        break;
                    }
                }
                if v.blocks.len() == 1 {
                    tracing::warn!(
                        network = %self.network(),
                        height,
                        "reorg deeper than the view's window"
                    );
                }
                v.revert_tip();
            }
            let from = match v.tip() {
                Some(t) => t.height + 1,
                // From the tip, read the declared depth back so the newest final block is
                // known from the start.
                None => self
                    .cfg
                    .start_height
                    .unwrap_or_else(|| count.saturating_sub(u64::from(self.cfg.confirmations)))
                    .min(count),
            };
            let mut raced = false;
            for height in from..=count {
                let hash: String = self.rpc.call("getblockhash", vec![json!(height)]).await?;
                let block: Value = self
                    .rpc
                    .call("getblock", vec![json!(hash), json!(2)])
                    .await?;
                let prev = block["previousblockhash"].as_str().unwrap_or_default();
                if v.tip().is_some_and(|t| t.hash.to_string() != prev) {
                    raced = true;
                    break;
                }
                let hash = BlockHash::from_str(&hash).map_err(|e| self.misbehaving(e))?;
                let mtp = block["mediantime"].as_u64().unwrap_or(0);
                let txs = block["tx"]
                    .as_array()
                    .map(|txs| {
                        txs.iter()
                            .filter_map(|t| {
                                let txid = Txid::from_str(t["txid"].as_str()?).ok()?;
                                let tx = t["hex"]
                                    .as_str()
                                    .and_then(|h| hex::decode(h).ok())
                                    .and_then(|b| deserialize::<Transaction>(&b).ok());
                                Some(BlockTx { txid, tx })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                v.apply(height, hash, mtp, txs);
            }
            if !raced {
                return Ok(v);
            }
        }
        Err(AdapterError::Unavailable {
            network: self.network(),
            reason: "the chain kept reorganising while being read".to_owned(),
        })
    }

    /// The light client's header chain, brought up to the node's tip: anchored at the
    /// configured checkpoint (or the node's genesis), extended with the node's headers from
    /// the highest one it knows. The node is not trusted: its headers pass the same checks
    /// as a relayer's, and one that does not link is only logged. While the chain is still
    /// catching up (a bounded stretch per call), evidence is unavailable, not refused.
    async fn synced_headers(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<proof::HeaderChain>>, AdapterError> {
        const PER_CALL: u64 = 20_000;
        const MAX_BACK: u64 = 10_000;
        let mut guard = self.headers.lock().await;
        if guard.is_none() {
            let (height, hash) = match &self.cfg.checkpoint {
                Some(c) => (c.height, c.hash.clone()),
                None => {
                    let h: String = self.rpc.call("getblockhash", vec![json!(0)]).await?;
                    (0, h)
                }
            };
            let hash = BlockHash::from_str(&hash).map_err(|e| self.misbehaving(e))?;
            *guard = Some(proof::HeaderChain::new(
                height,
                hash,
                self.cfg.pow,
                CompactTarget::from_consensus(self.cfg.pow_limit),
            ));
        }
        let Some(chain) = guard.as_mut() else {
            return Ok(guard);
        };
        let count: u64 = self.rpc.call("getblockcount", vec![]).await?;
        // The highest block of the node's chain the light client holds (a reorg moves it
        // down), then up from there, a bounded stretch per call.
        let (best, _) = chain.best();
        let mut from = best.min(count);
        let floor = from.saturating_sub(MAX_BACK);
        while from > floor {
            let at: String = self.rpc.call("getblockhash", vec![json!(from)]).await?;
            let hash = BlockHash::from_str(&at).map_err(|e| self.misbehaving(e))?;
            if chain.knows(&hash) {
                break;
            }
            from -= 1;
        }
        let to = count.min(from + PER_CALL);
        let mut headers = Vec::new();
        for height in from + 1..=to {
            let at: String = self.rpc.call("getblockhash", vec![json!(height)]).await?;
            let raw: String = self
                .rpc
                .call("getblockheader", vec![json!(at), json!(false)])
                .await?;
            headers.push(
                deserialize::<bitcoin::block::Header>(
                    &hex::decode(raw).map_err(|e| self.misbehaving(e))?,
                )
                .map_err(|e| self.misbehaving(e))?,
            );
        }
        if let Err(e) = chain.extend(&headers) {
            tracing::warn!(network = %self.network(), "light client header sync stopped: {e}");
        }
        if to < count {
            return Err(AdapterError::Unavailable {
                network: self.network(),
                reason: format!("light client headers synced to {to} of {count}"),
            });
        }
        Ok(guard)
    }

    fn misbehaving(&self, e: impl std::fmt::Display) -> AdapterError {
        AdapterError::Misbehaving {
            network: self.network(),
            reason: e.to_string(),
        }
    }

    // ---- coins and fees ---------------------------------------------------------------

    /// Confirmed coins of `script` not already spent by a transaction in the mempool.
    async fn coins(&self, script: &ScriptBuf, spendable: bool) -> Result<Vec<Coin>, AdapterError> {
        let desc = format!("raw({})", hex::encode(script.as_bytes()));
        let res: Value = {
            let _one = self.scan.lock().await;
            let mut attempt = 0u32;
            loop {
                match self
                    .rpc
                    .try_call("scantxoutset", vec![json!("start"), json!([desc.clone()])])
                    .await
                {
                    Ok(v) => break v,
                    // Someone else's scan is running on the node (-8); it ends soon.
                    Err(RpcFailure::Node { code: -8, message })
                        if message.contains("in progress") && attempt < 40 =>
                    {
                        attempt += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(
                            25 * u64::from(attempt.min(8)),
                        ))
                        .await;
                    }
                    Err(RpcFailure::Node { code: -8, message })
                        if message.contains("in progress") =>
                    {
                        return Err(AdapterError::Unavailable {
                            network: self.network(),
                            reason: format!("scantxoutset: {message}"),
                        })
                    }
                    Err(f) => return Err(f.into_adapter(self.network(), "scantxoutset")),
                }
            }
        };
        let mut out = Vec::new();
        for u in res["unspents"].as_array().into_iter().flatten() {
            let (Some(txid), Some(vout), Some(value)) = (
                u["txid"].as_str().and_then(|t| Txid::from_str(t).ok()),
                u["vout"].as_u64(),
                sats(&u["amount"]),
            ) else {
                return Err(self.misbehaving(format!("scantxoutset entry {u}")));
            };
            let outpoint = bitcoin::OutPoint {
                txid,
                vout: vout as u32,
            };
            if spendable {
                let live: Value = self
                    .rpc
                    .call(
                        "gettxout",
                        vec![json!(txid.to_string()), json!(vout), json!(true)],
                    )
                    .await?;
                if live.is_null() {
                    continue;
                }
            }
            out.push(Coin {
                outpoint,
                value,
                script: script.clone(),
            });
        }
        if spendable {
            // Outputs of this adapter's own transactions still in the mempool (change of an
            // earlier lock or fee payment): spending them lets the next operation go out
            // before a block arrives.
            let pending: Vec<(bitcoin::OutPoint, u64)> = {
                let mut v = self.view.lock().await;
                let View {
                    sent,
                    included,
                    locks,
                    ..
                } = &mut *v;
                sent.retain(|t, _| !included.contains_key(t));
                // A pending release, refund or claim keeps its fee-payer change for the child
                // that may have to pay for it.
                let bumpable: HashSet<Txid> = locks
                    .values()
                    .filter_map(|l| l.pending.as_ref().map(|p| p.tx.compute_txid()))
                    .collect();
                sent.iter()
                    .filter(|(txid, _)| !bumpable.contains(*txid))
                    .flat_map(|(txid, tx)| {
                        tx.output.iter().enumerate().filter_map(move |(vout, o)| {
                            (o.script_pubkey == *script).then_some((
                                bitcoin::OutPoint {
                                    txid: *txid,
                                    vout: vout as u32,
                                },
                                o.value.to_sat(),
                            ))
                        })
                    })
                    .collect()
            };
            for (outpoint, value) in pending {
                if out.iter().any(|c| c.outpoint == outpoint) {
                    continue;
                }
                let live: Value = self
                    .rpc
                    .call(
                        "gettxout",
                        vec![
                            json!(outpoint.txid.to_string()),
                            json!(outpoint.vout),
                            json!(true),
                        ],
                    )
                    .await?;
                if !live.is_null() {
                    out.push(Coin {
                        outpoint,
                        value,
                        script: script.clone(),
                    });
                }
            }
        }
        // Largest first: fewer inputs, smaller fees.
        out.sort_by(|a, b| b.value.cmp(&a.value).then(a.outpoint.cmp(&b.outpoint)));
        Ok(out)
    }

    /// Units per virtual byte: the node's estimate, else the fallback; never under the
    /// node's relay floor, never over the cap.
    async fn fee_rate(&self) -> Result<u64, AdapterError> {
        let est: Value = self.rpc.call("estimatesmartfee", vec![json!(2)]).await?;
        let per_kvb = |v: &Value| sats(v).map(|s| s.div_ceil(1000));
        let rate = per_kvb(&est["feerate"]).unwrap_or(self.cfg.fallback_fee_rate);
        let info: Value = self.rpc.call("getnetworkinfo", vec![]).await?;
        let floor = per_kvb(&info["relayfee"]).unwrap_or(1);
        Ok(rate.max(floor).max(1).min(self.cfg.max_fee_rate))
    }

    /// Add fee-payer coins and change to `inputs`/`outputs`, then sign: the fee comes out of
    /// the fee payer alone, so every other input and output keeps its exact amount.
    ///
    /// `rate`: this fee rate instead of the estimate; `extra`: fee to pay on top (what a
    /// child owes for its parent). Returns the transaction, its rate and its fee.
    async fn pay_fee_and_sign(
        &self,
        mut inputs: Vec<Input>,
        mut outputs: Vec<TxOut>,
        lock_time: absolute::LockTime,
        rate: Option<u64>,
        extra: u64,
    ) -> Result<(Transaction, u64, u64), AdapterError> {
        let rate = match rate {
            Some(rate) => rate,
            None => self.fee_rate().await?,
        };
        let payer_script = self.script_of(&self.cfg.fee_payer)?;
        let payer = self.required_key(&self.cfg.fee_payer.clone(), "fee payer")?;
        let given: HashSet<bitcoin::OutPoint> = inputs.iter().map(|i| i.coin.outpoint).collect();
        let mut coins = self
            .coins(&payer_script, true)
            .await?
            .into_iter()
            .filter(|c| !given.contains(&c.outpoint));
        let fixed_in: u64 = inputs.iter().map(|i| i.coin.value).sum();
        let fixed_out: u64 = outputs.iter().map(|o| o.value.to_sat()).sum();
        let surplus = fixed_in
            .checked_sub(fixed_out)
            .ok_or_else(|| invalid(format!("outputs {fixed_out} exceed inputs {fixed_in}")))?;
        let change_at = outputs.len();
        outputs.push(TxOut {
            value: Sats::ZERO,
            script_pubkey: payer_script.clone(),
        });
        let mut paid_in = 0u64;
        loop {
            outputs[change_at].value = Sats::from_sat(surplus + paid_in);
            let probe =
                build::sign(&self.secp, &inputs, outputs.clone(), lock_time).map_err(invalid)?;
            // A signature may come out a byte longer on the second pass.
            let fee = rate * (probe.vsize() as u64 + inputs.len() as u64) + extra;
            if surplus + paid_in >= fee {
                outputs[change_at].value = Sats::from_sat(surplus + paid_in - fee);
                let tx = build::sign(&self.secp, &inputs, outputs, lock_time).map_err(invalid)?;
                return Ok((tx, rate, fee));
            }
            let Some(coin) = coins.next() else {
                return Err(AdapterError::Rejected {
                    network: self.network(),
                    reason: format!(
                        "fee payer {} cannot pay a fee of {fee} (has {paid_in} spendable)",
                        self.cfg.fee_payer
                    ),
                });
            };
            paid_in += coin.value;
            inputs.push(Input {
                coin,
                unlock: Unlock::P2wpkh(payer.clone()),
            });
        }
    }

    /// Broadcast; a transaction the node already has (mempool or chain) counts as sent.
    async fn broadcast(&self, tx: &Transaction) -> Result<Txid, AdapterError> {
        let txid = tx.compute_txid();
        let hex = hex::encode(serialize(tx));
        let sent = match self
            .rpc
            .try_call::<String>("sendrawtransaction", vec![json!(hex)])
            .await
        {
            Ok(_) => Ok(txid),
            // -27: already in the chain.
            Err(RpcFailure::Node { code: -27, .. }) => Ok(txid),
            // -22: does not decode; -26/-25: invalid or missing inputs.
            Err(RpcFailure::Node { code: -22, message }) => {
                Err(invalid(format!("transaction does not decode: {message}")))
            }
            Err(f) => Err(f.into_adapter(self.network(), "sendrawtransaction")),
        }?;
        self.view.lock().await.sent.insert(txid, tx.clone());
        Ok(sent)
    }

    async fn in_mempool(&self, txid: &Txid) -> Result<bool, AdapterError> {
        match self
            .rpc
            .try_call::<Value>("getmempoolentry", vec![json!(txid.to_string())])
            .await
        {
            Ok(_) => Ok(true),
            Err(RpcFailure::Node { .. }) => Ok(false),
            Err(f) => Err(f.into_adapter(self.network(), "getmempoolentry")),
        }
    }

    /// Re-send `tx` if it is neither included nor in the mempool (evicted, or lost in a
    /// reorg); retries return the same transaction instead of building another.
    async fn ensure_sent(&self, tx: &Transaction, included: bool) -> Result<Txid, AdapterError> {
        let txid = tx.compute_txid();
        if included || self.in_mempool(&txid).await? {
            return Ok(txid);
        }
        self.broadcast(tx).await
    }

    fn check_attestation(
        &self,
        att: &HubAttestation,
        lock_id: &LockId,
        want: Decision,
    ) -> Result<(), AdapterError> {
        att.check_ed25519(
            self.network(),
            lock_id,
            want,
            &self.cfg.attesters,
            self.cfg.threshold,
        )
    }

    fn conflict(&self, lock_id: &LockId, state: &str, op: Op) -> AdapterError {
        AdapterError::Conflict {
            network: self.network(),
            lock_id: lock_id.to_string(),
            state: state.to_owned(),
            op: op.name().to_owned(),
        }
    }

    fn lock_time(timeout: u64) -> Result<absolute::LockTime, AdapterError> {
        // Refundable once the median time past reaches `timeout`: CLTV needs the spend's
        // nLockTime below the median time past, so the script names `timeout - 1`.
        u32::try_from(timeout.saturating_sub(1))
            .ok()
            .and_then(|t| absolute::LockTime::from_time(t).ok())
            .ok_or_else(|| {
                invalid(format!(
                    "timeout {timeout} is not a unix time this chain can lock to"
                ))
            })
    }

    /// Spend a lock: idempotent per lock and operation, refused once another spend exists.
    async fn spend(
        &self,
        lock_id: &LockId,
        op: Op,
        make: impl FnOnce(
            &Lock,
            &Self,
            u64,
        ) -> Result<(Vec<Input>, Vec<TxOut>, absolute::LockTime), AdapterError>,
    ) -> Result<TxId, AdapterError> {
        let _serial = self.ops.lock().await;
        let v = self.sync().await?;
        let lock = v
            .locks
            .get(lock_id)
            .cloned()
            .ok_or_else(|| AdapterError::NotFound {
                network: self.network(),
                what: format!("lock {lock_id}"),
            })?;
        let (tip, mtp) = v.tip().map_or((0, 0), |t| (t.height, t.mtp));
        drop(v);
        let same = |s: &LockStatus| {
            matches!(
                (op, s),
                (Op::Release, LockStatus::Released { .. })
                    | (Op::Refund, LockStatus::Refunded { .. })
                    | (Op::Claim, LockStatus::Claimed { .. })
            )
        };
        // A spend on chain answers at once, final or not: a second spend would only conflict.
        if let Some(s) = &lock.spent {
            return if same(&s.status) {
                Ok(view::txid_text(&s.txid))
            } else {
                Err(self.conflict(lock_id, status_name(&s.status), op))
            };
        }
        if let Some(p) = &lock.pending {
            if p.op != op {
                return Err(self.conflict(lock_id, &format!("{} pending", p.op.name()), op));
            }
            let txid = self.ensure_sent(&p.tx, false).await?;
            let higher = (p.rate * 2).min(self.cfg.max_fee_rate);
            if tip >= p.height + self.cfg.bump_after_blocks.max(1) && higher > p.rate {
                // Still out after several blocks: a child raises the package's fee rate.
                match self.pay_for_parent(p, higher).await {
                    Ok(bumped) => {
                        tracing::info!(network = %self.network(), %txid, rate = higher, "fee-bumped a stuck {} with a child", op.name());
                        let mut v = self.view.lock().await;
                        if let Some(l) = v.locks.get_mut(lock_id) {
                            l.pending = Some(Pending {
                                height: tip,
                                ..bumped
                            });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(network = %self.network(), %txid, %e, "cannot fee-bump a stuck {}", op.name());
                    }
                }
            }
            return Ok(view::txid_text(&txid));
        }
        if lock.funded.is_none() {
            return Err(self.conflict(lock_id, "not yet included", op));
        }
        let (inputs, outputs, lock_time) = make(&lock, self, mtp)?;
        let (tx, rate, fee) = self
            .pay_fee_and_sign(inputs, outputs, lock_time, None, 0)
            .await?;
        let txid = self.broadcast(&tx).await?;
        let payer_script = self.script_of(&self.cfg.fee_payer)?;
        let tail = tx
            .output
            .iter()
            .enumerate()
            .find(|(_, o)| o.script_pubkey == payer_script)
            .map(|(vout, o)| {
                (
                    bitcoin::OutPoint {
                        txid,
                        vout: vout as u32,
                    },
                    o.value.to_sat(),
                )
            });
        let mut v = self.view.lock().await;
        v.watched.insert(txid);
        if let Some(l) = v.locks.get_mut(lock_id) {
            l.pending = Some(Pending {
                op,
                package_vsize: tx.vsize() as u64,
                tx,
                height: tip,
                rate,
                package_fee: fee,
                tail,
            });
        }
        Ok(view::txid_text(&txid))
    }

    /// Child pays for parent: spend the package's newest fee-payer change with a fee that
    /// lifts the whole package to `rate`. The spend keeps its id.
    async fn pay_for_parent(&self, p: &Pending, rate: u64) -> Result<Pending, AdapterError> {
        let (outpoint, value) = p.tail.ok_or_else(|| AdapterError::Rejected {
            network: self.network(),
            reason: "the stuck spend has no fee-payer change to build a child on".to_owned(),
        })?;
        let payer = self.required_key(&self.cfg.fee_payer, "fee payer")?;
        let script = self.script_of(&self.cfg.fee_payer)?;
        let owed = (rate * p.package_vsize).saturating_sub(p.package_fee);
        let (child, _, fee) = self
            .pay_fee_and_sign(
                vec![Input {
                    coin: Coin {
                        outpoint,
                        value,
                        script,
                    },
                    unlock: Unlock::P2wpkh(payer),
                }],
                vec![],
                absolute::LockTime::ZERO,
                Some(rate),
                owed,
            )
            .await?;
        let child_id = self.broadcast(&child).await?;
        let change = child.output.len().saturating_sub(1);
        Ok(Pending {
            op: p.op,
            tx: p.tx.clone(),
            height: p.height,
            rate,
            package_fee: p.package_fee + fee,
            package_vsize: p.package_vsize + child.vsize() as u64,
            tail: child.output.get(change).map(|o| {
                (
                    bitcoin::OutPoint {
                        txid: child_id,
                        vout: change as u32,
                    },
                    o.value.to_sat(),
                )
            }),
        })
    }

    fn escrow_coin(lock: &Lock) -> Result<Coin, AdapterError> {
        let (outpoint, value, _) = lock
            .funded
            .ok_or_else(|| invalid(format!("lock {} is not funded", lock.req.lock_id)))?;
        Ok(Coin {
            outpoint,
            value,
            script: lock.script_pubkey.clone(),
        })
    }

    /// The 2-of-2 spend of an escrow paying its whole value to `to`.
    fn cosigned(
        &self,
        lock: &Lock,
        to: ScriptBuf,
    ) -> Result<(Vec<Input>, Vec<TxOut>, absolute::LockTime), AdapterError> {
        if lock.req.terms != LockTerms::TwoPhase {
            return Err(invalid(format!(
                "lock {} is an htlc: it is claimed or refunded after its timelock",
                lock.req.lock_id
            )));
        }
        let coin = Self::escrow_coin(lock)?;
        let hub = self.required_key(&self.cfg.cosigner, "co-signer")?;
        let owner = self.required_key(&lock.req.leg.from, "owner")?;
        let value = coin.value;
        Ok((
            vec![Input {
                coin,
                unlock: Unlock::EscrowCosigned {
                    hub,
                    owner,
                    script: lock.witness_script.clone(),
                },
            }],
            vec![TxOut {
                value: Sats::from_sat(value),
                script_pubkey: to,
            }],
            absolute::LockTime::ZERO,
        ))
    }

    /// Network and asset of a lock request are this adapter's.
    fn check_leg(&self, req: &LockRequest) -> Result<u64, AdapterError> {
        if req.leg.network != self.network() {
            return Err(invalid(format!(
                "lock {} is for network {}, this adapter serves {}",
                req.lock_id,
                req.leg.network,
                self.network()
            )));
        }
        if req.leg.asset != self.cfg.asset {
            return Err(invalid(format!(
                "asset `{}` does not exist on {}",
                req.leg.asset, self.cfg.name
            )));
        }
        u64::try_from(req.leg.amount.0)
            .ok()
            .filter(|a| *a > 0)
            .ok_or_else(|| {
                invalid(format!(
                    "amount {} is not a positive coin amount",
                    req.leg.amount
                ))
            })
    }

    /// The scripts of the lock for `req`, not yet funded. An HTLC needs only the two
    /// addresses; an escrow commits to the owner's public key, so it needs `owner`.
    fn unfunded(&self, req: &LockRequest, owner: Option<&Key>) -> Result<(Lock, u8), AdapterError> {
        let leg = &req.leg;
        let owner_script = self.script_of(&leg.from)?;
        let beneficiary_script = self.script_of(&leg.to)?;
        let lock_time = Self::lock_time(leg.timeout)?;
        let p2wpkh = |script: &ScriptBuf, who: &Address, role: &str| {
            script::wpkh_of(script)
                .ok_or_else(|| invalid(format!("htlc {role} {who} must be a p2wpkh address")))
        };
        let (witness_script, kind) = match &req.terms {
            LockTerms::Htlc { hashlock } => (
                script::htlc(
                    &hashlock.0,
                    &p2wpkh(&beneficiary_script, &leg.to, "beneficiary")?,
                    &p2wpkh(&owner_script, &leg.from, "owner")?,
                    lock_time,
                ),
                script::KIND_HTLC,
            ),
            LockTerms::TwoPhase => {
                let owner = owner.ok_or_else(|| {
                    invalid(format!(
                        "a two-phase escrow commits to the owner's key, which the wallet does not hold for {}",
                        leg.from
                    ))
                })?;
                let hub = self.required_key(&self.cfg.cosigner, "co-signer")?;
                (
                    script::escrow(&hub.public, &owner.public, lock_time),
                    script::KIND_ESCROW,
                )
            }
        };
        let script_pubkey = ScriptBuf::new_p2wsh(&witness_script.wscript_hash());
        Ok((
            Lock {
                req: req.clone(),
                witness_script,
                script_pubkey,
                beneficiary_script,
                owner_script,
                funding: None,
                funded: None,
                final_reported: false,
                pending: None,
                spent: None,
            },
            kind,
        ))
    }

    /// The lock for `req` with its funding transaction: either `earlier` (found on chain by
    /// its tag after a restart, checked to pay these terms) or a new one, signed, not sent.
    async fn fund(
        &self,
        req: &LockRequest,
        earlier: Option<Transaction>,
    ) -> Result<(Lock, Transaction), AdapterError> {
        let leg = &req.leg;
        let amount = self.check_leg(req)?;
        let owner = self.required_key(&leg.from, "owner")?;
        let (mut lock, kind) = self.unfunded(req, Some(&owner))?;
        let script_pubkey = lock.script_pubkey.clone();
        let owner_script = lock.owner_script.clone();
        if let Some(tx) = earlier {
            let pays = tx
                .output
                .iter()
                .any(|o| o.script_pubkey == script_pubkey && o.value.to_sat() == amount);
            if !pays {
                return Err(invalid(format!(
                    "lock id {} is already funded on chain with other terms (tx {})",
                    req.lock_id,
                    tx.compute_txid()
                )));
            }
            lock.funding = Some(tx.clone());
            return Ok((lock, tx));
        }
        // The owner's coins cover exactly the amount; the owner's change goes back to it.
        let mut inputs = Vec::new();
        let mut have = 0u64;
        for coin in self.coins(&owner_script, true).await? {
            if have >= amount {
                break;
            }
            have += coin.value;
            inputs.push(Input {
                coin,
                unlock: Unlock::P2wpkh(owner.clone()),
            });
        }
        if have < amount {
            return Err(AdapterError::Rejected {
                network: self.network(),
                reason: format!("{} has {have} spendable, the lock needs {amount}", leg.from),
            });
        }
        let mut outputs = vec![
            TxOut {
                value: Sats::from_sat(amount),
                script_pubkey: script_pubkey.clone(),
            },
            TxOut {
                value: Sats::ZERO,
                script_pubkey: script::tag(kind, &req.lock_id),
            },
        ];
        if have > amount {
            outputs.push(TxOut {
                value: Sats::from_sat(have - amount),
                script_pubkey: owner_script.clone(),
            });
        }
        let (funding, _, _) = self
            .pay_fee_and_sign(inputs, outputs, absolute::LockTime::ZERO, None, 0)
            .await?;
        lock.funding = Some(funding.clone());
        Ok((lock, funding))
    }
}

fn status_name(s: &LockStatus) -> &'static str {
    match s {
        LockStatus::Locked => "locked",
        LockStatus::Released { .. } => "released",
        LockStatus::Refunded { .. } => "refunded",
        LockStatus::Claimed { .. } => "claimed",
    }
}

#[async_trait]
impl Adapter for UtxoAdapter {
    fn descriptor(&self) -> &PlatformDescriptor {
        &self.descriptor
    }

    async fn health(&self) -> Result<Health, AdapterError> {
        match self.rpc.call::<Value>("getblockchaininfo", vec![]).await {
            Err(e) if e.is_retryable() => {
                return Ok(Health::Unhealthy {
                    reason: e.to_string(),
                })
            }
            Err(e) => return Err(e),
            Ok(info) if info["initialblockdownload"].as_bool() == Some(true) => {
                return Ok(Health::Degraded {
                    reason: "node is still downloading blocks".to_owned(),
                })
            }
            Ok(_) => {}
        }
        // Working, but unable to do part of its job: show it rather than fail later.
        if self.key(&self.cfg.cosigner)?.is_none() {
            return Ok(Health::Degraded {
                reason: format!(
                    "the wallet holds no key for co-signer {}: two-phase releases are impossible",
                    self.cfg.cosigner
                ),
            });
        }
        let reserve: u64 = self
            .coins(&self.script_of(&self.cfg.fee_payer)?, false)
            .await?
            .iter()
            .map(|c| c.value)
            .sum();
        if reserve < self.cfg.min_fee_reserve {
            return Ok(Health::Degraded {
                reason: format!(
                    "fee payer {} holds {reserve}, below the reserve of {}",
                    self.cfg.fee_payer, self.cfg.min_fee_reserve
                ),
            });
        }
        Ok(Health::Healthy)
    }

    async fn heads(&self) -> Result<Heads, AdapterError> {
        let v = self.sync().await?;
        let tip = v.tip().ok_or_else(|| AdapterError::Unavailable {
            network: self.network(),
            reason: "no blocks read yet".to_owned(),
        })?;
        let head = tip.reference();
        let back = u64::from(self.cfg.confirmations.max(1)) - 1;
        let fin_height = tip.height.saturating_sub(back);
        let finalized = v
            .blocks
            .iter()
            .find(|b| b.height == fin_height)
            .map(view::Block::reference)
            .unwrap_or_else(|| v.blocks.front().map_or(head, view::Block::reference));
        Ok(Heads {
            head,
            finalized,
            time: tip.mtp,
        })
    }

    async fn events_since(&self, after: Checkpoint, limit: u32) -> Result<EventPage, AdapterError> {
        let v = self.sync().await?;
        Ok(v.events_since(after, limit))
    }

    async fn submit(&self, tx: SignedTx) -> Result<TxId, AdapterError> {
        let decoded: Transaction =
            deserialize(&tx.0).map_err(|e| invalid(format!("transaction does not decode: {e}")))?;
        let txid = self.broadcast(&decoded).await?;
        self.view.lock().await.watched.insert(txid);
        Ok(view::txid_text(&txid))
    }

    async fn tx_status(&self, tx: &TxId) -> Result<TxStatus, AdapterError> {
        let txid = parse_txid(tx)?;
        let v = self.sync().await?;
        if let Some(block) = v.included.get(&txid).copied() {
            let confirmations = v.depth(block.height);
            return Ok(if v.is_final(block.height) {
                TxStatus::Final { block }
            } else {
                TxStatus::Included {
                    block,
                    confirmations,
                }
            });
        }
        drop(v);
        Ok(if self.in_mempool(&txid).await? {
            TxStatus::Pending
        } else {
            TxStatus::Unknown
        })
    }

    async fn evidence(&self, tx: &TxId) -> Result<Evidence, AdapterError> {
        let txid = parse_txid(tx)?;
        let v = self.sync().await?;
        let not_final = || AdapterError::NotFound {
            network: self.network(),
            what: format!("final transaction {tx}"),
        };
        let block = v.included.get(&txid).copied().ok_or_else(not_final)?;
        if !v.is_final(block.height) {
            return Err(not_final());
        }
        let hashes: Vec<String> = v
            .blocks
            .iter()
            .filter(|b| b.height >= block.height)
            // The declared depth is what finality means here; more headers prove nothing
            // more and cost the verifier a PoW hash each.
            .take(self.cfg.confirmations.max(1) as usize)
            .map(|b| b.hash.to_string())
            .collect();
        drop(v);
        let including = hashes.first().cloned().ok_or_else(not_final)?;
        let full: Value = self
            .rpc
            .call("getblock", vec![json!(including), json!(1)])
            .await?;
        let ids: Vec<[u8; 32]> = full["tx"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| Txid::from_str(t.as_str()?).ok())
            .map(|t| t.to_byte_array())
            .collect();
        let index = ids
            .iter()
            .position(|i| *i == txid.to_byte_array())
            .ok_or_else(not_final)?;
        let tx_proof = proof::branch(&ids, index).ok_or_else(not_final)?;
        let raw: String = self
            .rpc
            .call(
                "getrawtransaction",
                vec![json!(txid.to_string()), json!(false), json!(including)],
            )
            .await?;
        let raw_tx = hex::decode(raw).map_err(|e| self.misbehaving(e))?;
        let mut headers = Vec::with_capacity(hashes.len());
        for h in hashes {
            let hex_header: String = self
                .rpc
                .call("getblockheader", vec![json!(h), json!(false)])
                .await?;
            headers.push(serde_bytes::ByteBuf::from(
                hex::decode(hex_header).map_err(|e| self.misbehaving(e))?,
            ));
        }
        Ok(Evidence::UtxoConfirmations {
            block,
            raw_tx,
            tx_proof,
            headers,
        })
    }

    async fn verify_evidence(
        &self,
        tx: &TxId,
        evidence: &Evidence,
    ) -> Result<Verified, AdapterError> {
        let mut headers = self.synced_headers().await?;
        let Some(chain) = headers.as_mut() else {
            return Err(self.misbehaving("no header chain after sync"));
        };
        let checked =
            proof::verify_anchored(chain, evidence, &tx.0, u64::from(self.cfg.confirmations))
                .map_err(|reason| AdapterError::InvalidEvidence { reason })?;
        Ok(Verified {
            block: checked.block,
            confirmations: checked.confirmations,
            digest: evidence.digest(),
        })
    }

    async fn balance(&self, account: &Address, asset: &AssetId) -> Result<Amount, AdapterError> {
        if *asset != self.cfg.asset {
            return Err(invalid(format!(
                "asset `{asset}` does not exist on {}; it holds `{}`",
                self.cfg.name, self.cfg.asset
            )));
        }
        let script = self.script_of(account)?;
        let coins = self.coins(&script, false).await?;
        Ok(Amount(coins.iter().map(|c| u128::from(c.value)).sum()))
    }

    async fn lock(&self, req: &LockRequest) -> Result<TxId, AdapterError> {
        self.check_leg(req)?;
        let _serial = self.ops.lock().await;
        let v = self.sync().await?;
        if let Some(lock) = v.locks.get(&req.lock_id) {
            if lock.req != *req {
                return Err(invalid(format!(
                    "lock id {} is already used with other terms",
                    req.lock_id
                )));
            }
            let Some(tx) = lock.funding.clone() else {
                return Err(invalid(format!(
                    "lock {} is funded by its owner outside the hub",
                    req.lock_id
                )));
            };
            let included = lock.funded.is_some();
            drop(v);
            let txid = self.ensure_sent(&tx, included).await?;
            return Ok(view::txid_text(&txid));
        }
        if let Some(at) = v.tip().map(|t| t.mtp) {
            if req.leg.timeout <= at {
                return Err(invalid(format!(
                    "timeout {} is not after the chain's median time {at}",
                    req.leg.timeout
                )));
            }
        }
        // A funding from before a restart is found by its tag and taken over.
        let earlier = v.tagged.get(&req.lock_id.0 .0).map(|(tx, _)| tx.clone());
        drop(v);
        let known = earlier.is_some();
        let (lock, funding) = self.fund(req, earlier).await?;
        if !known {
            self.broadcast(&funding).await?;
        }
        self.view.lock().await.register(lock);
        Ok(view::txid_text(&funding.compute_txid()))
    }

    async fn release(&self, req: &ReleaseRequest) -> Result<TxId, AdapterError> {
        self.spend(&req.lock_id, Op::Release, |lock, me, _| {
            me.check_attestation(&req.attestation, &req.lock_id, Decision::Validated)?;
            me.cosigned(lock, lock.beneficiary_script.clone())
        })
        .await
    }

    async fn refund(&self, req: &RefundRequest) -> Result<TxId, AdapterError> {
        self.spend(&req.lock_id, Op::Refund, |lock, me, mtp| {
            match &req.authorisation {
                RefundAuthorisation::Attestation(att) => {
                    me.check_attestation(att, &req.lock_id, Decision::Aborted)?;
                    me.cosigned(lock, lock.owner_script.clone())
                }
                RefundAuthorisation::Timeout => {
                    if mtp < lock.req.leg.timeout {
                        return Err(AdapterError::Rejected {
                            network: me.network(),
                            reason: format!(
                                "lock {} is timelocked until {}; the chain's median time is {mtp}",
                                req.lock_id, lock.req.leg.timeout
                            ),
                        });
                    }
                    let coin = Self::escrow_coin(lock)?;
                    let owner = me.required_key(&lock.req.leg.from, "owner")?;
                    let script = lock.witness_script.clone();
                    let unlock = match lock.req.terms {
                        LockTerms::TwoPhase => Unlock::EscrowRefund { owner, script },
                        LockTerms::Htlc { .. } => Unlock::HtlcRefund { key: owner, script },
                    };
                    let value = coin.value;
                    Ok((
                        vec![Input { coin, unlock }],
                        vec![TxOut {
                            value: Sats::from_sat(value),
                            script_pubkey: lock.owner_script.clone(),
                        }],
                        Self::lock_time(lock.req.leg.timeout)?,
                    ))
                }
            }
        })
        .await
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<TxId, AdapterError> {
        self.spend(&req.lock_id, Op::Claim, |lock, me, _| {
            let LockTerms::Htlc { hashlock } = lock.req.terms else {
                return Err(invalid(format!(
                    "lock {} is a two-phase escrow: it is released on an attestation",
                    req.lock_id
                )));
            };
            if HashAlgo::Sha256.digest(&req.preimage.0) != hashlock {
                return Err(invalid(format!(
                    "preimage does not hash to the hashlock of lock {}",
                    req.lock_id
                )));
            }
            let coin = Self::escrow_coin(lock)?;
            let key = me.required_key(&lock.req.leg.to, "beneficiary")?;
            let value = coin.value;
            Ok((
                vec![Input {
                    coin,
                    unlock: Unlock::HtlcClaim {
                        key,
                        preimage: req.preimage.0,
                        script: lock.witness_script.clone(),
                    },
                }],
                vec![TxOut {
                    value: Sats::from_sat(value),
                    script_pubkey: lock.beneficiary_script.clone(),
                }],
                absolute::LockTime::ZERO,
            ))
        })
        .await
    }

    async fn lock_state(&self, lock_id: &LockId) -> Result<Option<OnChainLock>, AdapterError> {
        let v = self.sync().await?;
        let Some(lock) = v.locks.get(lock_id) else {
            return Ok(None);
        };
        let Some(observation) = lock.observation() else {
            return Ok(None);
        };
        Ok(Some(OnChainLock {
            is_final: v.is_final(observation.height),
            observation,
            terms: lock.req.terms.clone(),
            owner: lock.req.leg.from.clone(),
            timeout: lock.req.leg.timeout,
            status: lock.status(),
        }))
    }
}
