//! An in-memory platform that passes the whole conformance suite: blocks with Merkle roots,
//! a signing validator (instant finality) or a confirmation depth (probabilistic), signed
//! transfers, escrows that verify hub attestations, sha256 HTLCs, reorgs and fault
//! injection. Every state-changing operation is included in a new block at once; time
//! moves by `block_time` per block.

use async_trait::async_trait;
use isthmus_adapter_api::adapter::*;
use isthmus_adapter_api::error::AdapterError;
use isthmus_adapter_api::evidence::{CommitVote, Evidence, HubAttestation, MerkleProof, Verified};
use isthmus_adapter_api::types::*;
use isthmus_core::{Domain, Hash32, HashAlgo, Keypair, NetworkId, NodeId, Signature};
use isthmus_lock_contracts::{
    Address, Amount, AssetId, Decision, LockId, LockObservation, Timestamp, TxId,
};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

/// How to build a mock platform.
#[derive(Debug, Clone)]
pub struct MockConfig {
    pub network: NetworkId,
    pub name: String,
    pub finality: Finality,
    pub two_phase: TwoPhaseSupport,
    pub htlc: bool,
    /// The hub attestation keys escrows trust, and how many must sign.
    pub hub_keys: Vec<NodeId>,
    pub threshold: usize,
    pub block_time: u64,
    pub genesis_time: Timestamp,
}

impl MockConfig {
    pub fn new(network: u64, finality: Finality, hub_keys: Vec<NodeId>) -> Self {
        MockConfig {
            network: NetworkId(network),
            name: format!("mock-{network}"),
            finality,
            two_phase: TwoPhaseSupport::AttestationEscrow,
            htlc: true,
            threshold: hub_keys.len().max(1),
            hub_keys,
            block_time: 1,
            genesis_time: 1_000,
        }
    }
}

/// A transfer in the mock's native encoding: msgpack, signed with ed25519 by `from`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MockTransfer {
    pub from: NodeId,
    pub to: Address,
    pub asset: AssetId,
    pub amount: Amount,
    pub nonce: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SignedTransfer {
    transfer: MockTransfer,
    signature: Signature,
}

impl MockTransfer {
    /// Sign for `network` and encode.
    pub fn sign(&self, key: &Keypair, network: NetworkId) -> SignedTx {
        let body = rmp_serde::to_vec_named(self).unwrap_or_default();
        let signed = SignedTransfer {
            transfer: self.clone(),
            signature: key.sign(Domain::Transaction, network, &body),
        };
        SignedTx(rmp_serde::to_vec_named(&signed).unwrap_or_default())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    network: NetworkId,
    height: u64,
    prev: Hash32,
    tx_root: Hash32,
    time: Timestamp,
}

impl Header {
    fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }
    fn hash(&self) -> Hash32 {
        HashAlgo::Sha256.digest_parts(&[b"mock-header", &self.encode()])
    }
}

#[derive(Debug, Clone)]
enum Effect {
    Transfer {
        from: Address,
        to: Address,
        asset: AssetId,
        amount: u128,
    },
    Lock(LockId),
    /// A payout; a claim carries the preimage it reveals.
    Settle(LockId, Vec<u8>),
}

#[derive(Debug, Clone)]
struct Block {
    header: Header,
    hash: Hash32,
    txs: Vec<TxId>,
}

#[derive(Debug, Clone)]
struct MockLock {
    req: LockRequest,
    tx: TxId,
    status: LockStatus,
}

struct Chain {
    blocks: Vec<Block>,
    tx_block: HashMap<TxId, u64>,
    effects: HashMap<TxId, Effect>,
    balances: HashMap<(Address, AssetId), u128>,
    locks: HashMap<LockId, MockLock>,
    nonces: HashMap<NodeId, u64>,
    log: Vec<ChainEvent>,
    finalized: u64,
    healthy: bool,
    faults: VecDeque<AdapterError>,
}

/// The mock platform. Cheap to share behind `Arc`.
pub struct MockAdapter {
    cfg: MockConfig,
    descriptor: PlatformDescriptor,
    validator: Keypair,
    chain: Mutex<Chain>,
}

fn leaf(tx: &TxId) -> Hash32 {
    HashAlgo::Sha256.digest_parts(&[b"mock-leaf", tx.0.as_bytes()])
}

fn node(l: &Hash32, r: &Hash32) -> Hash32 {
    HashAlgo::Sha256.digest_parts(&[b"mock-node", l.as_bytes(), r.as_bytes()])
}

fn merkle_root(leaves: &[Hash32]) -> Hash32 {
    if leaves.is_empty() {
        return Hash32::ZERO;
    }
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|p| node(&p[0], p.get(1).unwrap_or(&p[0])))
            .collect();
    }
    level[0]
}

fn merkle_proof(leaves: &[Hash32], index: usize) -> MerkleProof {
    let mut siblings = Vec::new();
    let mut level = leaves.to_vec();
    let mut i = index;
    while level.len() > 1 {
        let sib = if i % 2 == 0 {
            *level.get(i + 1).unwrap_or(&level[i])
        } else {
            level[i - 1]
        };
        siblings.push(sib);
        level = level
            .chunks(2)
            .map(|p| node(&p[0], p.get(1).unwrap_or(&p[0])))
            .collect();
        i /= 2;
    }
    MerkleProof {
        leaf_index: index as u64,
        leaf: leaves[index],
        siblings,
        root: merkle_root(leaves),
    }
}

/// Recompute the root from a Merkle path.
pub fn merkle_verify(proof: &MerkleProof) -> bool {
    let mut acc = proof.leaf;
    let mut i = proof.leaf_index;
    for s in &proof.siblings {
        acc = if i % 2 == 0 {
            node(&acc, s)
        } else {
            node(s, &acc)
        };
        i /= 2;
    }
    acc == proof.root
}

impl MockAdapter {
    pub fn new(cfg: MockConfig) -> Self {
        let capabilities = Capabilities {
            finality: cfg.finality,
            contracts: ContractSupport::NativeModules,
            hash: HashScheme::Sha256,
            signatures: vec![SignatureScheme::Ed25519],
            asset_model: AssetModel::Account,
            two_phase: cfg.two_phase,
            htlc: cfg.htlc,
            packets: false,
        };
        let consensus = match cfg.finality {
            Finality::Instant => "pos",
            Finality::Probabilistic { .. } => "pow",
        };
        let descriptor = PlatformDescriptor {
            network: cfg.network,
            name: cfg.name.clone(),
            kind: PlatformKind::Native,
            consensus: consensus.to_owned(),
            capabilities,
        };
        let header = Header {
            network: cfg.network,
            height: 0,
            prev: Hash32::ZERO,
            tx_root: Hash32::ZERO,
            time: cfg.genesis_time,
        };
        let genesis = Block {
            hash: header.hash(),
            header,
            txs: vec![],
        };
        MockAdapter {
            validator: Keypair::dev(&format!("mock-validator-{}", cfg.network)),
            descriptor,
            cfg,
            chain: Mutex::new(Chain {
                blocks: vec![genesis],
                tx_block: HashMap::new(),
                effects: HashMap::new(),
                balances: HashMap::new(),
                locks: HashMap::new(),
                nonces: HashMap::new(),
                log: Vec::new(),
                finalized: 0,
                healthy: true,
                faults: VecDeque::new(),
            }),
        }
    }

    fn chain(&self) -> MutexGuard<'_, Chain> {
        // A poisoned lock means a panic in this process already failed the test.
        self.chain.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Credit `amount` of `asset` to `account` (genesis allocation; no block).
    pub fn fund(&self, account: &Address, asset: &AssetId, amount: u128) {
        *self
            .chain()
            .balances
            .entry((account.clone(), asset.clone()))
            .or_default() += amount;
    }

    /// Mine `n` empty blocks.
    pub fn mine(&self, n: u64) {
        let mut c = self.chain();
        for _ in 0..n {
            self.mine_block(&mut c, vec![]);
        }
    }

    /// Mine until the chain's time is at least `t`.
    pub fn advance_time_to(&self, t: Timestamp) {
        let mut c = self.chain();
        while Self::now(&c) < t {
            self.mine_block(&mut c, vec![]);
        }
    }

    /// Drop the last `depth` unfinalized blocks, undoing their transactions.
    pub fn reorg(&self, depth: u64) -> Result<(), AdapterError> {
        let mut c = self.chain();
        let head = c.blocks.len() as u64 - 1;
        if depth > head.saturating_sub(c.finalized) {
            return Err(AdapterError::InvalidRequest {
                reason: format!(
                    "reorg of depth {depth} would revert final block {}",
                    c.finalized
                ),
            });
        }
        for _ in 0..depth {
            let Some(block) = c.blocks.pop() else { break };
            for tx in block.txs.iter().rev() {
                self.undo(&mut c, tx);
            }
            let ev = EventKind::Reverted {
                block: BlockRef {
                    height: block.header.height,
                    hash: block.hash,
                },
                txs: block.txs.clone(),
            };
            Self::emit(&mut c, ev);
        }
        Ok(())
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.chain().healthy = healthy;
    }

    /// The next call fails with `err` (once per queued error).
    pub fn fail_next(&self, err: AdapterError) {
        self.chain().faults.push_back(err);
    }

    fn now(c: &Chain) -> Timestamp {
        c.blocks.last().map_or(0, |b| b.header.time)
    }

    fn emit(c: &mut Chain, kind: EventKind) {
        let checkpoint = Checkpoint(c.log.len() as u64 + 1);
        c.log.push(ChainEvent { checkpoint, kind });
    }

    fn gate(&self, c: &mut Chain) -> Result<(), AdapterError> {
        if let Some(e) = c.faults.pop_front() {
            return Err(e);
        }
        if !c.healthy {
            return Err(AdapterError::Unavailable {
                network: self.cfg.network,
                reason: "node is down".to_owned(),
            });
        }
        Ok(())
    }

    fn depth(&self) -> u64 {
        match self.cfg.finality {
            Finality::Instant => 0,
            Finality::Probabilistic { confirmations } => u64::from(confirmations),
        }
    }

    fn block_ref(b: &Block) -> BlockRef {
        BlockRef {
            height: b.header.height,
            hash: b.hash,
        }
    }

    fn observation(c: &Chain, lock_id: &LockId) -> Option<LockObservation> {
        let l = c.locks.get(lock_id)?;
        let height = *c.tx_block.get(&l.tx)?;
        let block = c.blocks.get(height as usize)?;
        Some(LockObservation {
            lock_id: *lock_id,
            tx: l.tx.clone(),
            block: block.hash,
            height,
            asset: l.req.leg.asset.clone(),
            amount: l.req.leg.amount,
            beneficiary: l.req.leg.to.clone(),
        })
    }

    fn mine_block(&self, c: &mut Chain, txs: Vec<(TxId, Effect)>) -> BlockRef {
        let prev = &c.blocks[c.blocks.len() - 1];
        let ids: Vec<TxId> = txs.iter().map(|(t, _)| t.clone()).collect();
        let leaves: Vec<Hash32> = ids.iter().map(leaf).collect();
        let header = Header {
            network: self.cfg.network,
            height: prev.header.height + 1,
            prev: prev.hash,
            tx_root: merkle_root(&leaves),
            time: prev.header.time + self.cfg.block_time,
        };
        let block = Block {
            hash: header.hash(),
            header,
            txs: ids,
        };
        let bref = Self::block_ref(&block);
        c.blocks.push(block);
        Self::emit(c, EventKind::NewHead { block: bref });
        for (tx, effect) in txs {
            c.tx_block.insert(tx.clone(), bref.height);
            Self::emit(
                c,
                EventKind::TxIncluded {
                    tx: tx.clone(),
                    block: bref,
                },
            );
            let kind = match &effect {
                Effect::Lock(id) => {
                    Self::observation(c, id).map(|lock| EventKind::LockIncluded { lock })
                }
                Effect::Settle(id, secret) => c.locks.get(id).map(|l| match &l.status {
                    LockStatus::Released { tx } => EventKind::Released {
                        lock_id: *id,
                        tx: tx.clone(),
                    },
                    LockStatus::Refunded { tx } => EventKind::Refunded {
                        lock_id: *id,
                        tx: tx.clone(),
                    },
                    LockStatus::Claimed { tx } => EventKind::Claimed {
                        lock_id: *id,
                        tx: tx.clone(),
                        preimage: secret.clone(),
                    },
                    LockStatus::Locked => EventKind::TxIncluded {
                        tx: tx.clone(),
                        block: bref,
                    },
                }),
                Effect::Transfer { .. } => None,
            };
            c.effects.insert(tx, effect);
            if let Some(k) = kind {
                Self::emit(c, k);
            }
        }
        // Finality advances with the head.
        let target = bref.height.saturating_sub(self.depth());
        while c.finalized < target {
            c.finalized += 1;
            let b = &c.blocks[c.finalized as usize];
            let (fref, txs) = (Self::block_ref(b), b.txs.clone());
            Self::emit(c, EventKind::Finalized { block: fref });
            for tx in txs {
                if let Some(Effect::Lock(id)) = c.effects.get(&tx) {
                    let id = *id;
                    if let Some(lock) = Self::observation(c, &id) {
                        Self::emit(c, EventKind::LockFinal { lock });
                    }
                }
            }
        }
        bref
    }

    fn undo(&self, c: &mut Chain, tx: &TxId) {
        c.tx_block.remove(tx);
        match c.effects.remove(tx) {
            Some(Effect::Transfer {
                from,
                to,
                asset,
                amount,
            }) => {
                Self::credit(c, &to, &asset, amount, false);
                Self::credit(c, &from, &asset, amount, true);
            }
            Some(Effect::Lock(id)) => {
                if let Some(l) = c.locks.remove(&id) {
                    Self::credit(
                        c,
                        &l.req.leg.from,
                        &l.req.leg.asset,
                        l.req.leg.amount.0,
                        true,
                    );
                }
            }
            Some(Effect::Settle(id, _)) => {
                if let Some(l) = c.locks.get_mut(&id) {
                    let to = match l.status {
                        LockStatus::Refunded { .. } => l.req.leg.from.clone(),
                        _ => l.req.leg.to.clone(),
                    };
                    l.status = LockStatus::Locked;
                    let (asset, amount) = (l.req.leg.asset.clone(), l.req.leg.amount.0);
                    Self::credit(c, &to, &asset, amount, false);
                }
            }
            None => {}
        }
    }

    fn credit(c: &mut Chain, who: &Address, asset: &AssetId, amount: u128, add: bool) {
        let b = c.balances.entry((who.clone(), asset.clone())).or_default();
        *b = if add {
            b.saturating_add(amount)
        } else {
            b.saturating_sub(amount)
        };
    }

    fn balance_of(c: &Chain, who: &Address, asset: &AssetId) -> u128 {
        c.balances
            .get(&(who.clone(), asset.clone()))
            .copied()
            .unwrap_or(0)
    }

    fn check_attestation(
        &self,
        att: &HubAttestation,
        lock_id: &LockId,
        want: Decision,
    ) -> Result<(), AdapterError> {
        att.check_ed25519(
            self.cfg.network,
            lock_id,
            want,
            &self.cfg.hub_keys,
            self.cfg.threshold,
        )
    }

    fn conflict(&self, lock_id: &LockId, status: &LockStatus, op: &str) -> AdapterError {
        let state = match status {
            LockStatus::Locked => "locked",
            LockStatus::Released { .. } => "released",
            LockStatus::Refunded { .. } => "refunded",
            LockStatus::Claimed { .. } => "claimed",
        };
        AdapterError::Conflict {
            network: self.cfg.network,
            lock_id: lock_id.to_string(),
            state: state.to_owned(),
            op: op.to_owned(),
        }
    }

    /// Pay out a lock once: the same outcome again returns its tx; another is a conflict.
    fn settle(
        &self,
        lock_id: &LockId,
        op: &str,
        outcome: fn(TxId) -> LockStatus,
        pay_owner: bool,
        revealed: Vec<u8>,
        check: impl FnOnce(&MockLock, Timestamp) -> Result<(), AdapterError>,
    ) -> Result<TxId, AdapterError> {
        let mut c = self.chain();
        self.gate(&mut c)?;
        let now = Self::now(&c);
        let lock = c
            .locks
            .get(lock_id)
            .cloned()
            .ok_or_else(|| AdapterError::NotFound {
                network: self.cfg.network,
                what: format!("lock {lock_id}"),
            })?;
        let tx = TxId(
            HashAlgo::Sha256
                .digest_parts(&[op.as_bytes(), lock_id.0.as_bytes()])
                .to_hex(),
        );
        match &lock.status {
            LockStatus::Locked => {}
            s if *s == outcome(tx.clone()) => return Ok(tx),
            s => return Err(self.conflict(lock_id, s, op)),
        }
        check(&lock, now)?;
        let to = if pay_owner {
            &lock.req.leg.from
        } else {
            &lock.req.leg.to
        };
        Self::credit(&mut c, to, &lock.req.leg.asset, lock.req.leg.amount.0, true);
        if let Some(l) = c.locks.get_mut(lock_id) {
            l.status = outcome(tx.clone());
        }
        self.mine_block(
            &mut c,
            vec![(tx.clone(), Effect::Settle(*lock_id, revealed))],
        );
        Ok(tx)
    }

    fn unsupported(&self, op: &str) -> AdapterError {
        AdapterError::Unsupported {
            network: self.cfg.network,
            op: op.to_owned(),
        }
    }
}

#[async_trait]
impl Adapter for MockAdapter {
    fn descriptor(&self) -> &PlatformDescriptor {
        &self.descriptor
    }

    async fn health(&self) -> Result<Health, AdapterError> {
        let c = self.chain();
        Ok(if c.healthy {
            Health::Healthy
        } else {
            Health::Unhealthy {
                reason: "node is down".to_owned(),
            }
        })
    }

    async fn heads(&self) -> Result<Heads, AdapterError> {
        let mut c = self.chain();
        self.gate(&mut c)?;
        let head = &c.blocks[c.blocks.len() - 1];
        Ok(Heads {
            head: Self::block_ref(head),
            finalized: Self::block_ref(&c.blocks[c.finalized as usize]),
            time: head.header.time,
        })
    }

    async fn events_since(&self, after: Checkpoint, limit: u32) -> Result<EventPage, AdapterError> {
        let mut c = self.chain();
        self.gate(&mut c)?;
        let start = after.0 as usize;
        let end = (start + limit as usize).min(c.log.len());
        let events = c.log.get(start..end).map(<[_]>::to_vec).unwrap_or_default();
        Ok(EventPage {
            next: events.last().map_or(after, |e| e.checkpoint),
            more: end < c.log.len(),
            events,
        })
    }

    async fn submit(&self, tx: SignedTx) -> Result<TxId, AdapterError> {
        let mut c = self.chain();
        self.gate(&mut c)?;
        let network = self.cfg.network;
        let id = TxId(HashAlgo::Sha256.digest(&tx.0).to_hex());
        if c.tx_block.contains_key(&id) {
            return Ok(id);
        }
        let reject = |reason: String| AdapterError::Rejected { network, reason };
        let signed: SignedTransfer = rmp_serde::from_slice(&tx.0)
            .map_err(|e| reject(format!("undecodable transaction: {e}")))?;
        let t = &signed.transfer;
        let body = rmp_serde::to_vec_named(t).unwrap_or_default();
        isthmus_core::sign::verify(
            &t.from,
            Domain::Transaction,
            network,
            &body,
            &signed.signature,
        )
        .map_err(|e| reject(e.to_string()))?;
        let expected = c.nonces.get(&t.from).copied().unwrap_or(0);
        if t.nonce != expected {
            return Err(reject(format!(
                "nonce {} is not the next nonce {expected}",
                t.nonce
            )));
        }
        let from = Address(t.from.to_string());
        let have = Self::balance_of(&c, &from, &t.asset);
        if have < t.amount.0 {
            return Err(reject(format!(
                "balance {have} of {} is below {}",
                t.asset, t.amount
            )));
        }
        c.nonces.insert(t.from, expected + 1);
        Self::credit(&mut c, &from, &t.asset, t.amount.0, false);
        Self::credit(&mut c, &t.to, &t.asset, t.amount.0, true);
        let effect = Effect::Transfer {
            from,
            to: t.to.clone(),
            asset: t.asset.clone(),
            amount: t.amount.0,
        };
        self.mine_block(&mut c, vec![(id.clone(), effect)]);
        Ok(id)
    }

    async fn tx_status(&self, tx: &TxId) -> Result<TxStatus, AdapterError> {
        let mut c = self.chain();
        self.gate(&mut c)?;
        let Some(&height) = c.tx_block.get(tx) else {
            return Ok(TxStatus::Unknown);
        };
        let block = Self::block_ref(&c.blocks[height as usize]);
        Ok(if height <= c.finalized {
            TxStatus::Final { block }
        } else {
            TxStatus::Included {
                block,
                confirmations: c.blocks.len() as u64 - 1 - height,
            }
        })
    }

    async fn evidence(&self, tx: &TxId) -> Result<Evidence, AdapterError> {
        let mut c = self.chain();
        self.gate(&mut c)?;
        let network = self.cfg.network;
        let height = *c.tx_block.get(tx).ok_or_else(|| AdapterError::NotFound {
            network,
            what: format!("transaction {tx}"),
        })?;
        if height > c.finalized {
            return Err(AdapterError::NotFound {
                network,
                what: format!("final inclusion of {tx} (at height {height})"),
            });
        }
        let b = &c.blocks[height as usize];
        let leaves: Vec<Hash32> = b.txs.iter().map(leaf).collect();
        let index = b.txs.iter().position(|t| t == tx).unwrap_or(0);
        let tx_proof = merkle_proof(&leaves, index);
        let block = Self::block_ref(b);
        Ok(match self.cfg.finality {
            Finality::Instant => {
                let header = b.header.encode();
                let sig = self.validator.sign(Domain::BlockHeader, network, &header);
                Evidence::CommitCertificate {
                    block,
                    header,
                    round: 0,
                    votes: vec![CommitVote {
                        validator: self.validator.id(),
                        signature: sig.0.to_vec(),
                    }],
                    tx_proof,
                }
            }
            Finality::Probabilistic { .. } => Evidence::PowConfirmations {
                block,
                headers: c.blocks[height as usize..]
                    .iter()
                    .map(|b| serde_bytes::ByteBuf::from(b.header.encode()))
                    .collect(),
                tx_proof,
            },
        })
    }

    async fn verify_evidence(
        &self,
        tx: &TxId,
        evidence: &Evidence,
    ) -> Result<Verified, AdapterError> {
        let bad = |reason: &str| AdapterError::InvalidEvidence {
            reason: reason.to_owned(),
        };
        let decode = |bytes: &[u8]| -> Result<Header, AdapterError> {
            rmp_serde::from_slice(bytes).map_err(|_| bad("undecodable header"))
        };
        let (block, header, proof, confirmations) = match evidence {
            Evidence::CommitCertificate {
                block,
                header,
                votes,
                tx_proof,
                ..
            } => {
                let ok = votes.iter().any(|v| {
                    v.validator == self.validator.id()
                        && <[u8; 64]>::try_from(v.signature.as_slice()).is_ok_and(|s| {
                            isthmus_core::sign::verify(
                                &v.validator,
                                Domain::BlockHeader,
                                self.cfg.network,
                                header,
                                &Signature(s),
                            )
                            .is_ok()
                        })
                });
                if !ok {
                    return Err(bad("no valid validator signature on the header"));
                }
                (block, decode(header)?, tx_proof, 0)
            }
            Evidence::PowConfirmations {
                block,
                headers,
                tx_proof,
            } => {
                let hs = headers
                    .iter()
                    .map(|h| decode(h))
                    .collect::<Result<Vec<_>, _>>()?;
                let first = hs.first().cloned().ok_or_else(|| bad("no headers"))?;
                for w in hs.windows(2) {
                    if w[1].prev != w[0].hash() || w[1].height != w[0].height + 1 {
                        return Err(bad("headers do not link"));
                    }
                }
                let confirmations = hs.len() as u64 - 1;
                if confirmations < self.depth() {
                    return Err(bad("not enough confirmations"));
                }
                (block, first, tx_proof, confirmations)
            }
            _ => return Err(bad("evidence kind not produced by this platform")),
        };
        if header.network != self.cfg.network {
            return Err(bad("header is from another network"));
        }
        if header.hash() != block.hash || header.height != block.height {
            return Err(bad("header does not match the block"));
        }
        if proof.root != header.tx_root || proof.leaf != leaf(tx) || !merkle_verify(proof) {
            return Err(bad("transaction is not in the block"));
        }
        Ok(Verified {
            block: *block,
            confirmations,
            digest: evidence.digest(),
        })
    }

    async fn balance(&self, account: &Address, asset: &AssetId) -> Result<Amount, AdapterError> {
        let mut c = self.chain();
        self.gate(&mut c)?;
        Ok(Amount(Self::balance_of(&c, account, asset)))
    }

    async fn lock(&self, req: &LockRequest) -> Result<TxId, AdapterError> {
        let mut c = self.chain();
        self.gate(&mut c)?;
        let network = self.cfg.network;
        match req.terms {
            LockTerms::TwoPhase if self.cfg.two_phase == TwoPhaseSupport::Unsupported => {
                return Err(self.unsupported("two-phase lock"))
            }
            LockTerms::Htlc { .. } if !self.cfg.htlc => return Err(self.unsupported("htlc lock")),
            _ => {}
        }
        if req.leg.network != network {
            return Err(AdapterError::InvalidRequest {
                reason: format!("lock is for network {}, this is {network}", req.leg.network),
            });
        }
        if req.leg.amount.0 == 0 {
            return Err(AdapterError::InvalidRequest {
                reason: "lock amount must be positive".to_owned(),
            });
        }
        if let Some(existing) = c.locks.get(&req.lock_id) {
            return if existing.req == *req {
                Ok(existing.tx.clone())
            } else {
                Err(self.conflict(&req.lock_id, &existing.status, "lock with other terms"))
            };
        }
        let have = Self::balance_of(&c, &req.leg.from, &req.leg.asset);
        if have < req.leg.amount.0 {
            return Err(AdapterError::Rejected {
                network,
                reason: format!(
                    "balance {have} of {} at {} is below {}",
                    req.leg.asset, req.leg.from, req.leg.amount
                ),
            });
        }
        let tx = TxId(
            HashAlgo::Sha256
                .digest_parts(&[b"lock", req.lock_id.0.as_bytes()])
                .to_hex(),
        );
        Self::credit(
            &mut c,
            &req.leg.from,
            &req.leg.asset,
            req.leg.amount.0,
            false,
        );
        c.locks.insert(
            req.lock_id,
            MockLock {
                req: req.clone(),
                tx: tx.clone(),
                status: LockStatus::Locked,
            },
        );
        self.mine_block(&mut c, vec![(tx.clone(), Effect::Lock(req.lock_id))]);
        Ok(tx)
    }

    async fn release(&self, req: &ReleaseRequest) -> Result<TxId, AdapterError> {
        self.settle(
            &req.lock_id,
            "release",
            |tx| LockStatus::Released { tx },
            false,
            vec![],
            |l, _| {
                if l.req.terms != LockTerms::TwoPhase {
                    return Err(AdapterError::InvalidRequest {
                        reason: "only two-phase locks are released".to_owned(),
                    });
                }
                self.check_attestation(&req.attestation, &req.lock_id, Decision::Validated)
            },
        )
    }

    async fn refund(&self, req: &RefundRequest) -> Result<TxId, AdapterError> {
        self.settle(
            &req.lock_id,
            "refund",
            |tx| LockStatus::Refunded { tx },
            true,
            vec![],
            |l, now| match &req.authorisation {
                RefundAuthorisation::Attestation(att) if l.req.terms == LockTerms::TwoPhase => {
                    self.check_attestation(att, &req.lock_id, Decision::Aborted)
                }
                RefundAuthorisation::Attestation(_) => Err(AdapterError::InvalidRequest {
                    reason: "an htlc is refunded by its timelock only".to_owned(),
                }),
                RefundAuthorisation::Timeout if now < l.req.leg.timeout => {
                    Err(AdapterError::Rejected {
                        network: self.cfg.network,
                        reason: format!(
                            "timeout {} not reached: chain time is {now}",
                            l.req.leg.timeout
                        ),
                    })
                }
                RefundAuthorisation::Timeout => Ok(()),
            },
        )
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<TxId, AdapterError> {
        let secret = req.preimage.0.to_vec();
        self.settle(
            &req.lock_id,
            "claim",
            |tx| LockStatus::Claimed { tx },
            false,
            secret,
            |l, _| match l.req.terms {
                LockTerms::Htlc { hashlock } if req.preimage.hashlock() == hashlock => Ok(()),
                LockTerms::Htlc { hashlock } => Err(AdapterError::Rejected {
                    network: self.cfg.network,
                    reason: format!(
                        "preimage hashes to {}, expected hashlock {hashlock}",
                        req.preimage.hashlock()
                    ),
                }),
                LockTerms::TwoPhase => Err(AdapterError::InvalidRequest {
                    reason: "a two-phase lock cannot be claimed".to_owned(),
                }),
            },
        )
    }

    async fn lock_state(&self, lock_id: &LockId) -> Result<Option<OnChainLock>, AdapterError> {
        let mut c = self.chain();
        self.gate(&mut c)?;
        let Some(l) = c.locks.get(lock_id) else {
            return Ok(None);
        };
        let Some(observation) = Self::observation(&c, lock_id) else {
            return Ok(None);
        };
        Ok(Some(OnChainLock {
            is_final: observation.height <= c.finalized,
            observation,
            terms: l.req.terms.clone(),
            owner: l.req.leg.from.clone(),
            timeout: l.req.leg.timeout,
            status: l.status.clone(),
        }))
    }
}

impl MockAdapter {
    /// The nonce the next transfer from `who` must carry.
    pub fn next_nonce(&self, who: &NodeId) -> u64 {
        self.chain().nonces.get(who).copied().unwrap_or(0)
    }
}

/// The mock prepared for the conformance suite: two funded accounts and one hub key.
pub struct MockFixture {
    pub adapter: std::sync::Arc<MockAdapter>,
    pub hub_keys: Vec<Keypair>,
    pub accounts: [Keypair; 2],
}

impl MockFixture {
    pub const ASSET: &'static str = "native";

    pub fn new(network: u64, finality: Finality) -> Self {
        let hub_keys = vec![Keypair::dev("mock-hub-attestation")];
        let cfg = MockConfig::new(
            network,
            finality,
            hub_keys.iter().map(Keypair::id).collect(),
        );
        let adapter = std::sync::Arc::new(MockAdapter::new(cfg));
        let accounts = [Keypair::dev("mock-alice"), Keypair::dev("mock-bob")];
        for k in &accounts {
            adapter.fund(
                &Address(k.id().to_string()),
                &AssetId(Self::ASSET.to_owned()),
                1_000_000_000,
            );
        }
        MockFixture {
            adapter,
            hub_keys,
            accounts,
        }
    }
}

#[async_trait]
impl crate::conformance::Fixture for MockFixture {
    fn adapter(&self) -> std::sync::Arc<dyn Adapter> {
        self.adapter.clone()
    }

    async fn mine(&self, n: u64) -> Result<(), AdapterError> {
        self.adapter.mine(n);
        Ok(())
    }

    async fn advance_time_to(&self, t: Timestamp) -> Result<(), AdapterError> {
        self.adapter.advance_time_to(t);
        Ok(())
    }

    async fn reorg(&self, depth: u64) -> Result<bool, AdapterError> {
        self.adapter.reorg(depth).map(|()| true)
    }

    fn accounts(&self) -> [Address; 2] {
        self.accounts
            .each_ref()
            .map(|k| Address(k.id().to_string()))
    }

    fn asset(&self) -> AssetId {
        AssetId(Self::ASSET.to_owned())
    }

    async fn signed_transfer(
        &self,
        from: usize,
        to: &Address,
        amount: Amount,
    ) -> Result<SignedTx, AdapterError> {
        let key = self
            .accounts
            .get(from)
            .ok_or_else(|| AdapterError::InvalidRequest {
                reason: format!("no account {from}"),
            })?;
        let t = MockTransfer {
            from: key.id(),
            to: to.clone(),
            asset: self.asset(),
            amount,
            nonce: self.adapter.next_nonce(&key.id()),
        };
        Ok(t.sign(key, self.adapter.descriptor().network))
    }

    fn attest(
        &self,
        lock_id: LockId,
        decision: Decision,
        record: isthmus_lock_contracts::HubRecord,
    ) -> HubAttestation {
        HubAttestation::sign_ed25519(
            self.adapter.descriptor().network,
            lock_id,
            decision,
            record,
            &self.hub_keys,
        )
    }
}
