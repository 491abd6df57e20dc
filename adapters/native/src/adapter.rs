//! [`NativeAdapter`]: the [`Adapter`] trait over an in-process native node.

use crate::events;
use crate::light::{self, LightClient};
use async_trait::async_trait;
use isthmus_adapter_api::{
    Adapter, AdapterError, AssetModel, Capabilities, ClaimRequest, ContractSupport, EventPage,
    Evidence, Finality, HashScheme, Heads, Health, HubAttestation, LockRequest, LockStatus,
    LockTerms, OnChainLock, PlatformDescriptor, PlatformKind, RefundAuthorisation, RefundRequest,
    ReleaseRequest, SignatureScheme, SignedTx, TwoPhaseSupport, TxStatus, Verified, Wallet,
};
use isthmus_adapter_api::{Checkpoint, SecretKey};
use isthmus_chain::block::Block;
use isthmus_chain::config::{ConsensusConfig, NetworkConfig};
use isthmus_chain::escrow::{
    self, Attestation, AttestedDecision, ClaimArgs, EscrowCall, EscrowLock, EscrowStatus,
    EscrowTerms, LockArgs, RefundArgs, ReleaseArgs,
};
use isthmus_chain::node::{NodeError, POW_CONFIRMATIONS};
use isthmus_chain::rpc::NodeApi;
use isthmus_chain::tx::{Transaction, TxError};
use isthmus_core::{Hash32, HashAlgo, Keypair, NetworkId, NodeId, Signature};
use isthmus_lock_contracts::{
    Address, Amount, AssetId, Decision, LockId, LockObservation, Timestamp, TxId,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The asset id of a native network's coin.
pub const ASSET: &str = "native";

/// Bounded nonce resyncs per submission.
const NONCE_RETRIES: usize = 4;

/// The facts about a native network the hub trusts: its genesis config (network id, name,
/// consensus, validator set, hash rules, escrow attesters) and the finality policy.
#[derive(Debug, Clone)]
pub struct NativeNetwork {
    pub config: Arc<NetworkConfig>,
    /// PoW: blocks on top of the including one before it counts as final (default
    /// [`POW_CONFIRMATIONS`]; ignored for PoS).
    pub confirmations: u32,
    /// PoW: the lowest header difficulty the light client counts (default the network's
    /// consensus floor, `PowConfig::difficulty_floor`, which retargeting never goes below).
    pub min_difficulty: u64,
}

impl NativeNetwork {
    pub fn new(config: Arc<NetworkConfig>) -> NativeNetwork {
        let min_difficulty = match &config.consensus {
            ConsensusConfig::Pow(p) => p.difficulty_floor(),
            ConsensusConfig::Pos(_) => 0,
        };
        NativeNetwork {
            config,
            confirmations: POW_CONFIRMATIONS as u32,
            min_difficulty,
        }
    }

    pub fn with_confirmations(mut self, n: u32) -> NativeNetwork {
        self.confirmations = n.max(1);
        self
    }

    /// What the network declares for `GET /v1/platforms`.
    pub fn descriptor(&self) -> PlatformDescriptor {
        let (consensus, finality) = match &self.config.consensus {
            ConsensusConfig::Pos(_) => ("pos", Finality::Instant),
            ConsensusConfig::Pow(_) => (
                "pow",
                Finality::Probabilistic {
                    confirmations: self.confirmations.max(1),
                },
            ),
        };
        PlatformDescriptor {
            network: self.config.network(),
            name: self.config.name.clone(),
            kind: PlatformKind::Native,
            consensus: consensus.to_owned(),
            capabilities: Capabilities {
                finality,
                contracts: ContractSupport::NativeModules,
                hash: match self.config.base_hash() {
                    HashAlgo::Sha256 => HashScheme::Sha256,
                    HashAlgo::Keccak256 => HashScheme::Keccak256,
                    HashAlgo::Blake3 => HashScheme::Blake3,
                },
                signatures: vec![SignatureScheme::Ed25519],
                asset_model: AssetModel::Account,
                two_phase: TwoPhaseSupport::AttestationEscrow,
                htlc: true,
                packets: true,
            },
        }
    }
}

/// Which escrow operation a pending submission was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Lock,
    Release,
    Refund,
    Claim,
}

/// The adapter. Cheap to share behind `Arc`; every chain-changing call is idempotent per
/// lock id (a retry returns the first transaction).
pub struct NativeAdapter {
    node: Arc<dyn NodeApi>,
    light: LightClient,
    descriptor: PlatformDescriptor,
    wallet: Arc<dyn Wallet>,
    hub_signer: Keypair,
    /// One submission at a time: nonces come from the chain and stay in order.
    submitting: tokio::sync::Mutex<()>,
    /// Escrow calls admitted but not yet seen in a block, by (lock, op).
    pending: Mutex<HashMap<(Hash32, Op), Hash32>>,
    pub(crate) events: events::Index,
}

pub(crate) fn tx_id(id: &Hash32) -> TxId {
    TxId(id.to_hex())
}

fn parse_tx(tx: &TxId) -> Result<Hash32, AdapterError> {
    Hash32::from_hex(&tx.0).map_err(|_| AdapterError::InvalidRequest {
        reason: format!("`{}` is not a native transaction id", tx.0),
    })
}

fn parse_address(a: &Address) -> Result<NodeId, AdapterError> {
    a.0.parse::<NodeId>()
        .map_err(|e| AdapterError::InvalidRequest {
            reason: format!("`{}` is not a native account: {e}", a.0),
        })
}

pub(crate) fn address(id: &NodeId) -> Address {
    Address(id.to_string())
}

/// Hub time (seconds) to chain time (milliseconds).
fn to_ms(t: Timestamp) -> Result<u64, AdapterError> {
    t.checked_mul(1000)
        .ok_or_else(|| AdapterError::InvalidRequest {
            reason: format!("timeout {t} is out of range"),
        })
}

/// The escrow's form of a hub attestation (ed25519 signatures only; others cannot count).
pub fn escrow_attestation(a: &HubAttestation) -> Attestation {
    Attestation {
        network: a.network,
        lock_id: a.lock_id.0,
        decision: match a.decision {
            Decision::Validated => AttestedDecision::Validated,
            Decision::Aborted => AttestedDecision::Aborted,
        },
        record_height: a.record.height,
        record_tx: a.record.tx.0.clone(),
        signatures: a
            .signatures
            .iter()
            .filter(|s| s.scheme == SignatureScheme::Ed25519)
            .filter_map(|s| {
                let signer: [u8; 32] = s.signer.as_slice().try_into().ok()?;
                let sig: [u8; 64] = s.signature.as_slice().try_into().ok()?;
                Some((NodeId(signer), Signature(sig)))
            })
            .collect(),
    }
}

impl NativeAdapter {
    /// A lock's status as the hub may act on it: a release, refund or claim counts only
    /// once the block that carried it is final (under PoW, `confirmations` deep), like the
    /// `Released`/`Refunded`/`Claimed` events.
    async fn settled_status(&self, s: &EscrowStatus) -> Result<LockStatus, AdapterError> {
        let (tx, status) = match s {
            EscrowStatus::Locked => return Ok(LockStatus::Locked),
            EscrowStatus::Released { tx } => (tx, LockStatus::Released { tx: tx_id(tx) }),
            EscrowStatus::Refunded { tx } => (tx, LockStatus::Refunded { tx: tx_id(tx) }),
            EscrowStatus::Claimed { tx, .. } => (tx, LockStatus::Claimed { tx: tx_id(tx) }),
        };
        if self.light.confirmations == 0 {
            return Ok(status);
        }
        let included = self
            .node
            .tx_proof(*tx)
            .await
            .map_err(|e| self.unavailable(e))?;
        let head = self.head_height().await?;
        Ok(match included {
            Some((header, _)) if header.number <= self.finalized_at(head) => status,
            _ => LockStatus::Locked,
        })
    }

    /// An adapter for the network described by `network` (the hub's trusted copy of its
    /// genesis config), talking to `node` (in this process or over its RPC). Legs locked by the hub are signed with the
    /// `wallet`'s key of their owner; releases, refunds and claims are submitted by
    /// `hub_signer` (it needs no balance: the escrow pays, not the submitter).
    pub fn new(
        node: Arc<dyn NodeApi>,
        network: NativeNetwork,
        wallet: Arc<dyn Wallet>,
        hub_signer: Keypair,
    ) -> NativeAdapter {
        let descriptor = network.descriptor();
        let light = LightClient::new(
            network.config.clone(),
            match descriptor.capabilities.finality {
                Finality::Instant => 0,
                Finality::Probabilistic { confirmations } => u64::from(confirmations),
            },
            network.min_difficulty,
        );
        NativeAdapter {
            node,
            light,
            descriptor,
            wallet,
            hub_signer,
            submitting: tokio::sync::Mutex::new(()),
            pending: Mutex::new(HashMap::new()),
            events: events::Index::default(),
        }
    }

    pub fn network(&self) -> NetworkId {
        self.descriptor.network
    }

    pub fn node(&self) -> &Arc<dyn NodeApi> {
        &self.node
    }

    pub(crate) fn light(&self) -> &LightClient {
        &self.light
    }

    pub(crate) fn unavailable(&self, e: NodeError) -> AdapterError {
        if e.retryable() || matches!(e, NodeError::Stopped) {
            AdapterError::Unavailable {
                network: self.network(),
                reason: e.to_string(),
            }
        } else {
            AdapterError::Misbehaving {
                network: self.network(),
                reason: e.to_string(),
            }
        }
    }

    fn rejected(&self, reason: impl Into<String>) -> AdapterError {
        AdapterError::Rejected {
            network: self.network(),
            reason: reason.into(),
        }
    }

    fn conflict(&self, lock: &Hash32, state: &EscrowStatus, op: &str) -> AdapterError {
        AdapterError::Conflict {
            network: self.network(),
            lock_id: lock.to_hex(),
            state: status_name(state).to_owned(),
            op: op.to_owned(),
        }
    }

    /// The canonical block at `number`.
    pub(crate) async fn block(&self, number: u64) -> Result<Block, AdapterError> {
        self.node
            .block_at(number)
            .await
            .map_err(|e| self.unavailable(e))?
            .ok_or_else(|| AdapterError::NotFound {
                network: self.network(),
                what: format!("block {number}"),
            })
    }

    /// PoW: bring the light client's header chain up to the node's head, so evidence is
    /// weighed against the most work known. The node is not trusted: its headers pass the
    /// light client's checks like any others, and one it cannot link is only logged. The
    /// sync climbs from the highest block both know, a bounded stretch per call; while it
    /// is still behind, evidence is unavailable (retryable), not refused.
    async fn sync_light_headers(&self) -> Result<(), AdapterError> {
        const PER_CALL: u64 = 50_000;
        const MAX_BACK: u64 = 10_000;
        let head = self.head_height().await?;
        let (best, _) = self.light.best();
        // The highest block of the node's chain the light client holds (a reorg, or a
        // node on another branch, moves it down).
        let mut from = best.min(head);
        let floor = from.saturating_sub(MAX_BACK);
        while from > floor {
            let h = self.block(from).await?.header;
            if self.light.knows(&self.light.block_ref(&h).hash) {
                break;
            }
            from -= 1;
        }
        let to = head.min(from + PER_CALL);
        let mut headers = Vec::new();
        for n in from + 1..=to {
            headers.push(self.block(n).await?.header);
        }
        if let Err(e) = self.light.extend(&headers) {
            tracing::warn!(network = %self.network(), "light client header sync stopped: {e}");
        }
        if to < head {
            return Err(AdapterError::Unavailable {
                network: self.network(),
                reason: format!("light client headers synced to {to} of {head}"),
            });
        }
        Ok(())
    }

    pub(crate) async fn head_height(&self) -> Result<u64, AdapterError> {
        Ok(self
            .node
            .status()
            .await
            .map_err(|e| self.unavailable(e))?
            .height)
    }

    /// Height below which (inclusive) blocks are final, given the head.
    pub(crate) fn finalized_at(&self, head: u64) -> u64 {
        head.saturating_sub(self.light.confirmations)
    }

    async fn head_block(&self) -> Result<Block, AdapterError> {
        let h = self.head_height().await?;
        self.block(h).await
    }

    pub(crate) async fn escrow_record(
        &self,
        lock: &Hash32,
    ) -> Result<Option<EscrowLock>, AdapterError> {
        let raw = self
            .node
            .state_get(escrow::lock_state_key(lock))
            .await
            .map_err(|e| self.unavailable(e))?;
        raw.map(|b| {
            EscrowLock::decode(&b).map_err(|e| AdapterError::Misbehaving {
                network: self.network(),
                reason: e.to_string(),
            })
        })
        .transpose()
    }

    fn pending_get(&self, lock: &Hash32, op: Op) -> Option<Hash32> {
        self.pending
            .lock()
            .ok()
            .and_then(|m| m.get(&(*lock, op)).copied())
    }

    /// An earlier submission of the same operation that may still be included.
    async fn still_pending(&self, lock: &Hash32, op: Op) -> Result<Option<TxId>, AdapterError> {
        let Some(id) = self.pending_get(lock, op) else {
            return Ok(None);
        };
        let included = self
            .node
            .tx_proof(id)
            .await
            .map_err(|e| self.unavailable(e))?
            .is_some();
        if included {
            // Included without the escrow showing it done: the call failed on chain; a new
            // submission (after the checks again) is the retry.
            if let Ok(mut m) = self.pending.lock() {
                m.remove(&(*lock, op));
            }
            return Ok(None);
        }
        Ok(Some(tx_id(&id)))
    }

    /// Submit one escrow call signed by `key`, resyncing the nonce from the node when the
    /// account has transactions in flight.
    async fn submit_call(
        &self,
        key: &Keypair,
        call: EscrowCall,
        op: Op,
    ) -> Result<TxId, AdapterError> {
        let _one = self.submitting.lock().await;
        let lock = call.lock_id();
        let mut nonce = self
            .node
            .account(key.id())
            .await
            .map_err(|e| self.unavailable(e))?
            .nonce;
        for _ in 0..NONCE_RETRIES {
            let tx = Transaction::sign(key, self.network(), nonce, call.to_kind());
            let result = self
                .node
                .submit(vec![tx])
                .await
                .map_err(|e| self.unavailable(e))?
                .pop()
                .ok_or_else(|| AdapterError::Misbehaving {
                    network: self.network(),
                    reason: "node answered no result for a submission".to_owned(),
                })?;
            match result {
                Ok(id) | Err(TxError::Duplicate(id)) => {
                    if let Ok(mut m) = self.pending.lock() {
                        m.insert((lock, op), id);
                    }
                    tracing::debug!(network = %self.network(), tx = %id.to_hex(), method = call.method(), "escrow call submitted");
                    return Ok(tx_id(&id));
                }
                Err(TxError::BadNonce { expected, .. }) => nonce = expected,
                Err(e) => return Err(self.tx_error(e)),
            }
        }
        Err(AdapterError::Unavailable {
            network: self.network(),
            reason: format!("nonce of {} kept moving; retry", key.id()),
        })
    }

    fn tx_error(&self, e: TxError) -> AdapterError {
        match e {
            TxError::MempoolFull(_) => AdapterError::Unavailable {
                network: self.network(),
                reason: e.to_string(),
            },
            other => self.rejected(other.to_string()),
        }
    }

    fn owner_key(&self, owner: &Address, id: &NodeId) -> Result<Keypair, AdapterError> {
        match self.wallet.key_for(SignatureScheme::Ed25519, owner)? {
            Some(SecretKey::Ed25519(k)) if k.id() == *id => Ok(k),
            Some(_) => Err(AdapterError::Wallet {
                reason: format!("the wallet's key for {owner} does not control it"),
            }),
            None => Err(AdapterError::InvalidRequest {
                reason: format!(
                    "the hub keeps no key for {owner}; an external owner locks for themselves"
                ),
            }),
        }
    }

    fn check_attestation(
        &self,
        a: &HubAttestation,
        lock: &Hash32,
        decision: AttestedDecision,
    ) -> Result<Attestation, AdapterError> {
        let att = escrow_attestation(a);
        let cfg = &self.light.config.escrow;
        att.verify(
            self.network(),
            lock,
            decision,
            &cfg.attesters(),
            cfg.threshold,
        )
        .map_err(|e| self.rejected(e.to_string()))?;
        Ok(att)
    }

    /// The record of `lock`, which must exist.
    async fn existing(&self, lock: &Hash32) -> Result<EscrowLock, AdapterError> {
        self.escrow_record(lock)
            .await?
            .ok_or_else(|| AdapterError::NotFound {
                network: self.network(),
                what: format!("escrow {}", lock.to_hex()),
            })
    }

    pub(crate) async fn observation(
        &self,
        lock: &Hash32,
        l: &EscrowLock,
    ) -> Result<LockObservation, AdapterError> {
        let b = self.block(l.height).await?;
        Ok(LockObservation {
            lock_id: LockId(*lock),
            tx: tx_id(&l.lock_tx),
            block: self.light.block_ref(&b.header).hash,
            height: l.height,
            asset: AssetId(ASSET.to_owned()),
            amount: Amount(u128::from(l.amount)),
            beneficiary: address(&l.beneficiary),
        })
    }
}

fn status_name(s: &EscrowStatus) -> &'static str {
    match s {
        EscrowStatus::Locked => "locked",
        EscrowStatus::Released { .. } => "released",
        EscrowStatus::Refunded { .. } => "refunded",
        EscrowStatus::Claimed { .. } => "claimed",
    }
}

#[async_trait]
impl Adapter for NativeAdapter {
    fn descriptor(&self) -> &PlatformDescriptor {
        &self.descriptor
    }

    async fn health(&self) -> Result<Health, AdapterError> {
        match self.node.status().await {
            Ok(s) => Ok(match &s.sync {
                Some(p) => Health::Degraded {
                    reason: format!("syncing: at {} of {}", p.height, p.target),
                },
                None => Health::Healthy,
            }),
            Err(e) => Ok(Health::Unhealthy {
                reason: e.to_string(),
            }),
        }
    }

    async fn heads(&self) -> Result<Heads, AdapterError> {
        let head = self.head_block().await?;
        let head_ref = self.light.block_ref(&head.header);
        let fin = self.finalized_at(head_ref.height);
        let finalized = if fin == head_ref.height {
            head_ref
        } else {
            self.light.block_ref(&self.block(fin).await?.header)
        };
        Ok(Heads {
            head: head_ref,
            finalized,
            time: head.header.timestamp_ms / 1000,
        })
    }

    async fn events_since(&self, after: Checkpoint, limit: u32) -> Result<EventPage, AdapterError> {
        events::page(self, after, limit).await
    }

    async fn submit(&self, tx: SignedTx) -> Result<TxId, AdapterError> {
        let t: Transaction =
            rmp_serde::from_slice(&tx.0).map_err(|e| AdapterError::InvalidRequest {
                reason: format!("not a native transaction ({} bytes): {e}", tx.0.len()),
            })?;
        t.check_stateless(self.network())
            .map_err(|e| self.rejected(e.to_string()))?;
        let id = t.id(self
            .node
            .config()
            .rules_at(self.head_height().await? + 1)
            .hash);
        let result = self
            .node
            .submit(vec![t])
            .await
            .map_err(|e| self.unavailable(e))?
            .pop();
        match result {
            Some(Ok(id)) | Some(Err(TxError::Duplicate(id))) => Ok(tx_id(&id)),
            Some(Err(e)) => {
                // Already included (its nonce is spent by itself): the same transaction.
                let included = self
                    .node
                    .tx_proof(id)
                    .await
                    .map_err(|e| self.unavailable(e))?
                    .is_some();
                if included {
                    Ok(tx_id(&id))
                } else {
                    Err(self.tx_error(e))
                }
            }
            None => Err(AdapterError::Misbehaving {
                network: self.network(),
                reason: "node answered no result for a submission".to_owned(),
            }),
        }
    }

    async fn tx_status(&self, tx: &TxId) -> Result<TxStatus, AdapterError> {
        let id = parse_tx(tx)?;
        let Some((header, _)) = self
            .node
            .tx_proof(id)
            .await
            .map_err(|e| self.unavailable(e))?
        else {
            let pending = self
                .pending
                .lock()
                .map(|m| m.values().any(|v| *v == id))
                .unwrap_or(false);
            return Ok(if pending {
                TxStatus::Pending
            } else {
                TxStatus::Unknown
            });
        };
        let block = self.light.block_ref(&header);
        // A module call included but refused by its module is a failed transaction.
        let b = self.block(block.height).await?;
        let algo = self.light.config.rules_at(block.height).hash;
        if let Some(t) = b.txs.iter().find(|t| t.id(algo) == id) {
            if let Some(reason) = events::failure(self, t, &id).await? {
                return Ok(TxStatus::Failed { reason });
            }
        }
        let head = self.head_height().await?;
        Ok(if block.height <= self.finalized_at(head) {
            TxStatus::Final { block }
        } else {
            TxStatus::Included {
                block,
                confirmations: head.saturating_sub(block.height),
            }
        })
    }

    async fn evidence(&self, tx: &TxId) -> Result<Evidence, AdapterError> {
        let id = parse_tx(tx)?;
        let not_final = || AdapterError::NotFound {
            network: self.network(),
            what: format!("final transaction {}", tx.0),
        };
        let (header, proof) = self
            .node
            .tx_proof(id)
            .await
            .map_err(|e| self.unavailable(e))?
            .ok_or_else(not_final)?;
        let block = self.light.block_ref(&header);
        let tx_proof = light::api_proof(&proof, id, header.tx_root);
        if self.light.is_pos() {
            let cert = self
                .node
                .cert(block.height)
                .await
                .map_err(|e| self.unavailable(e))?
                .ok_or_else(not_final)?;
            return Ok(Evidence::CommitCertificate {
                block,
                header: light::encode_header(&header),
                round: u64::try_from(cert.round).unwrap_or(0),
                votes: light::votes(&cert),
                tx_proof,
            });
        }
        let head = self.head_height().await?;
        if block.height > self.finalized_at(head) {
            return Err(not_final());
        }
        let mut headers = vec![serde_bytes::ByteBuf::from(light::encode_header(&header))];
        for n in block.height + 1..=block.height + self.light.confirmations {
            let b = self.block(n).await?;
            headers.push(serde_bytes::ByteBuf::from(light::encode_header(&b.header)));
        }
        Ok(Evidence::PowConfirmations {
            block,
            headers,
            tx_proof,
        })
    }

    async fn verify_evidence(
        &self,
        tx: &TxId,
        evidence: &Evidence,
    ) -> Result<Verified, AdapterError> {
        let id = Hash32::from_hex(&tx.0).map_err(|_| AdapterError::InvalidEvidence {
            reason: format!("`{}` is not a native transaction id", tx.0),
        })?;
        if matches!(evidence, Evidence::PowConfirmations { .. }) {
            self.sync_light_headers().await?;
        }
        self.light
            .verify(id, evidence)
            .map_err(|reason| AdapterError::InvalidEvidence { reason })
    }

    async fn balance(&self, account: &Address, asset: &AssetId) -> Result<Amount, AdapterError> {
        if asset.0 != ASSET {
            return Err(AdapterError::NotFound {
                network: self.network(),
                what: format!("asset {asset}"),
            });
        }
        let id = parse_address(account)?;
        let a = self
            .node
            .account(id)
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(Amount(u128::from(a.balance)))
    }

    async fn lock(&self, req: &LockRequest) -> Result<TxId, AdapterError> {
        let leg = &req.leg;
        if leg.network != self.network() {
            return Err(AdapterError::InvalidRequest {
                reason: format!(
                    "lock is for network {}, this adapter serves {}",
                    leg.network,
                    self.network()
                ),
            });
        }
        if leg.asset.0 != ASSET {
            return Err(AdapterError::InvalidRequest {
                reason: format!(
                    "asset {} does not exist on {}",
                    leg.asset, self.descriptor.name
                ),
            });
        }
        let amount = u64::try_from(leg.amount.0)
            .ok()
            .filter(|a| *a > 0)
            .ok_or_else(|| AdapterError::InvalidRequest {
                reason: format!("amount {} is not a native amount above 0", leg.amount),
            })?;
        let owner = parse_address(&leg.from)?;
        let beneficiary = parse_address(&leg.to)?;
        let terms = match req.terms {
            LockTerms::TwoPhase => EscrowTerms::TwoPhase,
            LockTerms::Htlc { hashlock } => EscrowTerms::Htlc { hashlock },
        };
        let timeout_ms = to_ms(leg.timeout)?;
        let lock = req.lock_id.0;
        if let Some(l) = self.escrow_record(&lock).await? {
            let same = l.owner == owner
                && l.beneficiary == beneficiary
                && l.amount == amount
                && l.terms == terms
                && l.timeout_ms == timeout_ms;
            if !same {
                return Err(self.conflict(&lock, &l.status, "lock with other terms"));
            }
            return Ok(tx_id(&l.lock_tx));
        }
        if let Some(tx) = self.still_pending(&lock, Op::Lock).await? {
            return Ok(tx);
        }
        let key = self.owner_key(&leg.from, &owner)?;
        let head = self.head_block().await?;
        if timeout_ms <= head.header.timestamp_ms {
            return Err(self.rejected(format!(
                "timeout {} has passed (chain time {} s)",
                leg.timeout,
                head.header.timestamp_ms / 1000
            )));
        }
        let have = self
            .node
            .account(owner)
            .await
            .map_err(|e| self.unavailable(e))?
            .balance;
        if have < amount {
            return Err(self.rejected(format!(
                "insufficient balance for {}: has {have}, needs {amount}",
                leg.from
            )));
        }
        let call = EscrowCall::Lock(LockArgs {
            lock_id: lock,
            beneficiary,
            amount,
            timeout_ms,
            terms,
        });
        self.submit_call(&key, call, Op::Lock).await
    }

    async fn release(&self, req: &ReleaseRequest) -> Result<TxId, AdapterError> {
        let lock = req.lock_id.0;
        let l = self.existing(&lock).await?;
        match l.status {
            EscrowStatus::Released { tx } => return Ok(tx_id(&tx)),
            EscrowStatus::Locked => {}
            ref other => return Err(self.conflict(&lock, other, "release")),
        }
        if l.terms != EscrowTerms::TwoPhase {
            return Err(self.rejected("an htlc is claimed with its preimage, not released"));
        }
        let attestation =
            self.check_attestation(&req.attestation, &lock, AttestedDecision::Validated)?;
        if let Some(tx) = self.still_pending(&lock, Op::Release).await? {
            return Ok(tx);
        }
        let call = EscrowCall::Release(ReleaseArgs {
            lock_id: lock,
            attestation,
        });
        self.submit_call(&self.hub_signer, call, Op::Release).await
    }

    async fn refund(&self, req: &RefundRequest) -> Result<TxId, AdapterError> {
        let lock = req.lock_id.0;
        let l = self.existing(&lock).await?;
        match l.status {
            EscrowStatus::Refunded { tx } => return Ok(tx_id(&tx)),
            EscrowStatus::Locked => {}
            ref other => return Err(self.conflict(&lock, other, "refund")),
        }
        let attestation = match &req.authorisation {
            RefundAuthorisation::Attestation(a) => {
                if l.terms != EscrowTerms::TwoPhase {
                    return Err(self.rejected("an htlc is refunded by its timeout only"));
                }
                Some(self.check_attestation(a, &lock, AttestedDecision::Aborted)?)
            }
            RefundAuthorisation::Timeout => {
                let now = self.head_block().await?.header.timestamp_ms;
                if now < l.timeout_ms {
                    return Err(self.rejected(format!(
                        "timeout {} s not reached: chain time is {} s",
                        l.timeout_ms / 1000,
                        now / 1000
                    )));
                }
                None
            }
        };
        if let Some(tx) = self.still_pending(&lock, Op::Refund).await? {
            return Ok(tx);
        }
        let call = EscrowCall::Refund(RefundArgs {
            lock_id: lock,
            attestation,
        });
        self.submit_call(&self.hub_signer, call, Op::Refund).await
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<TxId, AdapterError> {
        let lock = req.lock_id.0;
        let l = self.existing(&lock).await?;
        match l.status {
            EscrowStatus::Claimed { tx, .. } => return Ok(tx_id(&tx)),
            EscrowStatus::Locked => {}
            ref other => return Err(self.conflict(&lock, other, "claim")),
        }
        let EscrowTerms::Htlc { hashlock } = l.terms else {
            return Err(self.rejected("a two-phase escrow is released by the hub, not claimed"));
        };
        if req.preimage.hashlock() != hashlock {
            return Err(self.rejected("preimage does not hash to the hashlock"));
        }
        let now = self.head_block().await?.header.timestamp_ms;
        if now >= l.timeout_ms {
            return Err(self.rejected(format!(
                "htlc timed out at {} s (chain time {} s)",
                l.timeout_ms / 1000,
                now / 1000
            )));
        }
        if let Some(tx) = self.still_pending(&lock, Op::Claim).await? {
            return Ok(tx);
        }
        let call = EscrowCall::Claim(ClaimArgs {
            lock_id: lock,
            preimage: serde_bytes::ByteBuf::from(req.preimage.0.to_vec()),
        });
        self.submit_call(&self.hub_signer, call, Op::Claim).await
    }

    async fn lock_state(&self, lock_id: &LockId) -> Result<Option<OnChainLock>, AdapterError> {
        let lock = lock_id.0;
        let Some(l) = self.escrow_record(&lock).await? else {
            return Ok(None);
        };
        let observation = self.observation(&lock, &l).await?;
        let head = self.head_height().await?;
        Ok(Some(OnChainLock {
            observation,
            terms: match l.terms {
                EscrowTerms::TwoPhase => LockTerms::TwoPhase,
                EscrowTerms::Htlc { hashlock } => LockTerms::Htlc { hashlock },
            },
            owner: address(&l.owner),
            timeout: l.timeout_ms / 1000,
            status: self.settled_status(&l.status).await?,
            is_final: l.height <= self.finalized_at(head),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_lock_contracts::HubRecord;

    #[test]
    fn escrow_and_adapter_api_sign_the_same_attestation_bytes() {
        let keys = [Keypair::dev("h1"), Keypair::dev("h2")];
        let record = HubRecord {
            height: 42,
            tx: TxId("ab".repeat(32)),
        };
        for decision in [Decision::Validated, Decision::Aborted] {
            let lock = LockId(Hash32([9; 32]));
            let api =
                HubAttestation::sign_ed25519(NetworkId(7), lock, decision, record.clone(), &keys);
            let esc = escrow_attestation(&api);
            assert_eq!(
                esc.payload(),
                HubAttestation::payload(api.network, &api.lock_id, api.decision, &api.record)
            );
            let want = match decision {
                Decision::Validated => AttestedDecision::Validated,
                Decision::Aborted => AttestedDecision::Aborted,
            };
            let trusted: Vec<NodeId> = keys.iter().map(Keypair::id).collect();
            assert!(esc.verify(NetworkId(7), &lock.0, want, &trusted, 2).is_ok());
            // And the other way round: the escrow's own signing verifies under the API.
            let refs: Vec<&Keypair> = keys.iter().collect();
            let native =
                Attestation::sign(&refs, NetworkId(7), lock.0, want, 42, record.tx.0.clone());
            assert_eq!(native.signatures.len(), 2);
            let mut api2 = api.clone();
            for (s, (_, sig)) in api2.signatures.iter_mut().zip(&native.signatures) {
                s.signature = sig.0.to_vec();
            }
            assert_eq!(api2.ed25519_signers(&trusted), 2);
        }
    }

    #[test]
    fn descriptors_declare_consistent_capabilities() {
        for (consensus, extra) in [
            (
                "pos",
                "[[genesis.validator]]\nid = \"dev:n/node-0\"\nstake = 1\n",
            ),
            ("pow", ""),
        ] {
            let cfg = NetworkConfig::from_toml_str(&format!(
                "name = \"n\"\nnetwork_id = 3\nnodes = 1\n[consensus]\ntype = \"{consensus}\"\n{extra}"
            ))
            .unwrap();
            let d = NativeNetwork::new(Arc::new(cfg)).descriptor();
            assert!(
                d.capabilities.problems().is_empty(),
                "{:?}",
                d.capabilities.problems()
            );
            assert_eq!(d.consensus, consensus);
            assert_eq!(
                d.capabilities.finality == Finality::Instant,
                consensus == "pos"
            );
        }
    }
}
