//! The chain: validated blocks on storage, the state at the head, and fork choice.
//!
//! [`Chain`] is owned by one task (the node); it is synchronous and never blocks on the
//! network. Two ways in:
//! - [`Chain::import`] (proof of work): any block whose header checks pass is stored; the
//!   canonical chain is the one with the **most cumulative work**, and a heavier branch
//!   triggers a reorg (revert with undo records, execute the new branch, one atomic commit).
//!   A branch that fails execution is marked invalid and the old head is kept.
//! - [`Chain::commit_final`] (proof of stake): a block with a verified commit certificate
//!   extends the head; finality means it is never reverted.
//!
//! Every block from outside is fully verified before it counts: header fields, version,
//! size limits, proposer signature, Merkle root, PoW target and difficulty, every
//! transaction signature (batch, strict), nonces and balances by execution, and the state
//! root.
//!
//! **Block time.** A timestamp must not be before its parent's and must exceed the median
//! of the last [`MTP_WINDOW`] blocks' timestamps (median-time-past), a rule of the chain
//! itself. A block met live (a mined or gossiped PoW block, a PoS proposal) must also be
//! at most `max_clock_drift_ms` past this node's [`Clock`]; that refusal is not a verdict on
//! the block, which is neither stored nor marked invalid and may be offered again later.
//! A PoS block with a commit certificate was checked against the clocks of the validators
//! that finalized it and is not held to this node's clock; blocks reopened from storage
//! are not checked again. Escrow and packet timeouts compare with block time, so a block
//! producer cannot bring a deadline forward by more than the drift.

use crate::block::{self, Block, BlockHeader};
use crate::config::{ConsensusConfig, NetworkConfig, PowConfig, ProtocolRules};
use crate::merkle::{self, MerkleProof};
use crate::state::{Modules, Receipt, State, StateDiff, Undo};
use crate::store::{ChainStore, CommitBatch, StoreError};
use crate::tx::{self, encode_canonical, Transaction, TxError};
use isthmus_core::{Hash32, HashAlgo, Keypair, NetworkId, NodeId, Signature};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// What the chain remembers about every stored block (canonical or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub number: u64,
    pub prev: Hash32,
    pub timestamp_ms: u64,
    pub difficulty: u64,
    pub total_work: u128,
}

/// Where a transaction sits in the canonical chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxLocation {
    pub number: u64,
    pub block: Hash32,
    pub index: u32,
}

/// Blocks whose timestamps make up median-time-past.
pub const MTP_WINDOW: usize = 11;

/// The validating node's wall clock, in milliseconds since the Unix epoch.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    })
}

/// The median of `timestamps` (the upper one of an even count); 0 for none.
pub fn median_time(mut timestamps: Vec<u64>) -> u64 {
    timestamps.sort_unstable();
    timestamps.get(timestamps.len() / 2).copied().unwrap_or(0)
}

/// Median-time-past a child of `parent` must exceed: the median timestamp of `parent` and
/// its ancestors (found by `lookup`), [`MTP_WINDOW`] blocks at most. Shared by the chain and
/// the light clients that follow its headers.
pub fn median_time_past(
    parent: Option<IndexEntry>,
    lookup: impl Fn(&Hash32) -> Option<IndexEntry>,
) -> u64 {
    let mut ts = Vec::with_capacity(MTP_WINDOW);
    let mut cur = parent;
    while let Some(e) = cur {
        ts.push(e.timestamp_ms);
        if ts.len() == MTP_WINDOW || e.number == 0 {
            break;
        }
        cur = lookup(&e.prev);
    }
    median_time(ts)
}

/// The PoW difficulty a child of `parent` must carry under `cfg` (ancestors found by
/// `lookup`): retargeted every `retarget_window` blocks toward `block_interval_ms`, moving
/// at most 4x per window, never below the floor ([`PowConfig::difficulty_floor`]).
pub fn expected_difficulty(
    cfg: &NetworkConfig,
    pow: &PowConfig,
    parent: &IndexEntry,
    lookup: impl Fn(&Hash32) -> Option<IndexEntry>,
) -> u64 {
    let child = parent.number + 1;
    if child % pow.retarget_window != 0 {
        return parent.difficulty.max(1);
    }
    // Walk back window-1 blocks to measure the time they took.
    let mut first = *parent;
    for _ in 0..pow.retarget_window - 1 {
        match lookup(&first.prev) {
            Some(e) => first = e,
            None => break,
        }
    }
    let spans = parent.number.saturating_sub(first.number).max(1);
    let actual = parent
        .timestamp_ms
        .saturating_sub(first.timestamp_ms)
        .max(1);
    let target = cfg.block_interval_ms * spans;
    let old = u128::from(parent.difficulty.max(1));
    let new = (old * u128::from(target) / u128::from(actual)).clamp(old / 4, old * 4);
    u64::try_from(new)
        .unwrap_or(u64::MAX)
        .max(pow.difficulty_floor())
}

/// Whether a block met now is held to this node's clock ([`BlockError::TimestampTooFarAhead`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Live {
    Yes,
    No,
}

/// Why a block was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BlockError {
    #[error("parent {0} is unknown")]
    UnknownParent(Hash32),
    #[error("block {0} (or an ancestor) was already found invalid")]
    KnownInvalid(Hash32),
    #[error("block number {got} does not follow parent number {parent}")]
    WrongNumber { parent: u64, got: u64 },
    #[error(
        "block at height {number} has version {got}, the rules there require at least {required}"
    )]
    VersionTooOld {
        number: u64,
        got: u32,
        required: u32,
    },
    #[error("timestamp {got} is before the parent's {parent}")]
    BadTimestamp { parent: u64, got: u64 },
    #[error("timestamp {got} is not after the median {median} of the last blocks' timestamps")]
    TimestampNotAfterMedian { median: u64, got: u64 },
    #[error("timestamp {got} is more than {max_drift} ms past this node's clock {now}")]
    TimestampTooFarAhead { got: u64, now: u64, max_drift: u64 },
    #[error("block holds {got} transactions, the limit at this height is {max}")]
    TooManyTxs { got: usize, max: u32 },
    #[error("block of {got} bytes exceeds the limit of {max} bytes at this height")]
    TooLarge { got: u64, max: u64 },
    #[error("header claims {claimed} (count {claimed_count}), transactions are {actual} bytes (count {actual_count})")]
    SizeMismatch {
        claimed: u64,
        actual: u64,
        claimed_count: u32,
        actual_count: usize,
    },
    #[error("merkle root mismatch: header {header}, transactions give {computed}")]
    BadTxRoot { header: Hash32, computed: Hash32 },
    #[error("state root mismatch: header {header}, execution gives {computed}")]
    BadStateRoot { header: Hash32, computed: Hash32 },
    #[error("proposer signature does not verify: {0}")]
    BadProposerSignature(String),
    #[error("proposer {0} is not a validator")]
    NotAValidator(NodeId),
    #[error("difficulty {got} does not match the expected {expected}")]
    WrongDifficulty { expected: u64, got: u64 },
    #[error("block hash {0} does not meet its difficulty target")]
    BadPow(Hash32),
    #[error("transaction {index} is invalid: {error}")]
    Tx { index: usize, error: TxError },
    #[error("block does not extend the head {head} (parent {parent})")]
    NotOnHead { head: Hash32, parent: Hash32 },
    #[error("commit certificate refused: {0}")]
    BadCertificate(String),
    #[error("storage: {0}")]
    Store(String),
}

impl BlockError {
    /// Whether the block itself is bad (so a peer serving it deserves a penalty), as
    /// opposed to our not being ready for it (its parent, or its time, has not come).
    pub fn is_invalid_block(&self) -> bool {
        !matches!(
            self,
            BlockError::UnknownParent(_)
                | BlockError::NotOnHead { .. }
                | BlockError::Store(_)
                | BlockError::TimestampTooFarAhead { .. }
        )
    }

    /// Stable, low-cardinality reason code.
    pub fn code(&self) -> &'static str {
        match self {
            BlockError::UnknownParent(_) => "unknown_parent",
            BlockError::KnownInvalid(_) => "known_invalid",
            BlockError::WrongNumber { .. } => "wrong_number",
            BlockError::VersionTooOld { .. } => "version_too_old",
            BlockError::BadTimestamp { .. } => "timestamp_before_parent",
            BlockError::TimestampNotAfterMedian { .. } => "timestamp_not_after_median",
            BlockError::TimestampTooFarAhead { .. } => "timestamp_too_far_ahead",
            BlockError::TooManyTxs { .. } => "too_many_txs",
            BlockError::TooLarge { .. } => "too_large",
            BlockError::SizeMismatch { .. } => "size_mismatch",
            BlockError::BadTxRoot { .. } => "bad_tx_root",
            BlockError::BadStateRoot { .. } => "bad_state_root",
            BlockError::BadProposerSignature(_) => "bad_proposer_signature",
            BlockError::NotAValidator(_) => "not_a_validator",
            BlockError::WrongDifficulty { .. } => "wrong_difficulty",
            BlockError::BadPow(_) => "bad_pow",
            BlockError::Tx { .. } => "bad_transaction",
            BlockError::NotOnHead { .. } => "not_on_head",
            BlockError::BadCertificate(_) => "bad_certificate",
            BlockError::Store(_) => "storage",
        }
    }
}

impl BlockError {
    /// Whether every block with this *header hash* is invalid. A body that does not match
    /// its header (root, size) or a bad signature says nothing about the header itself:
    /// the genuine block may still arrive.
    fn condemns_header(&self) -> bool {
        self.is_invalid_block()
            && !matches!(
                self,
                BlockError::BadTxRoot { .. }
                    | BlockError::SizeMismatch { .. }
                    | BlockError::BadProposerSignature(_)
                    | BlockError::KnownInvalid(_)
            )
    }
}

impl From<StoreError> for BlockError {
    fn from(e: StoreError) -> Self {
        BlockError::Store(e.to_string())
    }
}

/// Result of importing a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// Already stored.
    Known,
    /// Stored on a side branch with less work than the head.
    SideBranch,
    /// Became the new head; `reverted` blocks of the old branch were undone.
    NewHead { reverted: usize, applied: usize },
}

/// A block that was just committed, for subscribers.
#[derive(Debug, Clone)]
pub struct Committed {
    pub block: Arc<Block>,
    pub hash: Hash32,
    pub receipts: Vec<Receipt>,
}

pub struct Chain {
    cfg: Arc<NetworkConfig>,
    network: NetworkId,
    store: Box<dyn ChainStore>,
    modules: Modules,
    state: State,
    head: Hash32,
    head_number: u64,
    genesis: Hash32,
    index: HashMap<Hash32, IndexEntry>,
    invalid: HashSet<Hash32>,
    validators: Option<BTreeSet<NodeId>>,
    clock: Clock,
}

/// The genesis block of a network (number 0, no transactions, unsigned).
pub fn genesis_block(cfg: &NetworkConfig) -> Block {
    let rules = cfg.rules_at(0);
    let state = State::genesis(cfg.allocations());
    let difficulty = match &cfg.consensus {
        ConsensusConfig::Pow(p) => p.initial_difficulty,
        ConsensusConfig::Pos(_) => 0,
    };
    Block {
        header: BlockHeader {
            version: rules.version,
            number: 0,
            prev_hash: Hash32::ZERO,
            tx_root: merkle::empty_root(rules.hash),
            state_root: state.root(rules.hash),
            timestamp_ms: cfg.genesis.timestamp_ms,
            proposer: NodeId([0; 32]),
            difficulty,
            nonce: cfg.network_id,
            tx_count: 0,
            size: 0,
        },
        txs: vec![],
        signature: Signature([0; 64]),
    }
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, b: &[u8]) -> Result<T, StoreError> {
    rmp_serde::from_slice(b).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

impl Chain {
    /// Open the chain on `store`, writing genesis if the store is empty. State and the
    /// block index are loaded from storage: after a crash the chain resumes exactly at the
    /// last flushed commit.
    pub fn open(
        cfg: Arc<NetworkConfig>,
        store: Box<dyn ChainStore>,
        modules: Modules,
    ) -> Result<Chain, StoreError> {
        let g = genesis_block(&cfg);
        let galgo = cfg.rules_at(0).hash;
        let ghash = g.hash(galgo);
        let validators = match &cfg.consensus {
            ConsensusConfig::Pos(_) => {
                Some(cfg.validators().into_iter().map(|(id, _)| id).collect())
            }
            ConsensusConfig::Pow(_) => None,
        };
        let mut chain = Chain {
            network: cfg.network(),
            cfg: cfg.clone(),
            store,
            modules,
            state: State::default(),
            head: ghash,
            head_number: 0,
            genesis: ghash,
            index: HashMap::new(),
            invalid: HashSet::new(),
            validators,
            clock: system_clock(),
        };
        match chain.store.head()? {
            None => {
                let state = State::genesis(cfg.allocations());
                let entry = IndexEntry {
                    number: 0,
                    prev: Hash32::ZERO,
                    timestamp_ms: g.header.timestamp_ms,
                    difficulty: g.header.difficulty,
                    total_work: block::work(g.header.difficulty),
                };
                let diff = StateDiff {
                    accounts: state.accounts().map(|(k, v)| (*k, *v)).collect(),
                    kv: Default::default(),
                };
                chain.store.commit(CommitBatch {
                    blocks: vec![(ghash, g.encoded(), encode_canonical(&entry))],
                    canonical: vec![(0, ghash)],
                    state: diff.entries(),
                    head: Some(ghash),
                    meta: vec![("genesis".into(), ghash.0.to_vec())],
                    ..Default::default()
                })?;
                chain.index.insert(ghash, entry);
                chain.state = state;
            }
            Some(head) => {
                let stored_genesis = chain.store.meta("genesis")?.unwrap_or_default();
                if stored_genesis != ghash.0 {
                    return Err(StoreError::Corrupt(format!(
                        "data directory belongs to another network (genesis {} here, config gives {ghash})",
                        hex::encode(&stored_genesis)
                    )));
                }
                for (h, e) in chain.store.all_index_entries()? {
                    chain.index.insert(h, decode("index entry", &e)?);
                }
                let mut state = State::default();
                for (k, v) in chain.store.state_entries()? {
                    state.load_entry(&k, &v).map_err(StoreError::Corrupt)?;
                }
                chain.state = state;
                chain.head = head;
                chain.head_number = chain
                    .index
                    .get(&head)
                    .ok_or_else(|| StoreError::Corrupt(format!("head {head} has no index entry")))?
                    .number;
            }
        }
        Ok(chain)
    }

    pub fn config(&self) -> &Arc<NetworkConfig> {
        &self.cfg
    }

    /// Replace the clock blocks met live are checked against (the system clock by default).
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// This node's clock now.
    pub fn now_ms(&self) -> u64 {
        (self.clock)()
    }

    /// Median-time-past a child of `parent_hash` must exceed: the median timestamp of the
    /// parent and its ancestors, [`MTP_WINDOW`] blocks at most.
    pub fn median_time_past(&self, parent_hash: &Hash32) -> u64 {
        median_time_past(self.index.get(parent_hash).copied(), |h| {
            self.index.get(h).copied()
        })
    }

    /// The earliest timestamp a child of the head may carry.
    pub fn min_next_timestamp(&self) -> u64 {
        let parent = self.head_entry().timestamp_ms;
        parent.max(self.median_time_past(&self.head).saturating_add(1))
    }

    pub fn network(&self) -> NetworkId {
        self.network
    }

    pub fn modules(&self) -> &Modules {
        &self.modules
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn head(&self) -> (u64, Hash32) {
        (self.head_number, self.head)
    }

    pub fn genesis_hash(&self) -> Hash32 {
        self.genesis
    }

    pub fn head_entry(&self) -> IndexEntry {
        self.index.get(&self.head).copied().unwrap_or(IndexEntry {
            number: 0,
            prev: Hash32::ZERO,
            timestamp_ms: 0,
            difficulty: 0,
            total_work: 0,
        })
    }

    pub fn index_entry(&self, h: &Hash32) -> Option<IndexEntry> {
        self.index.get(h).copied()
    }

    pub fn contains(&self, h: &Hash32) -> bool {
        self.index.contains_key(h)
    }

    pub fn rules_at(&self, number: u64) -> ProtocolRules {
        self.cfg.rules_at(number)
    }

    pub fn block_by_hash(&self, h: &Hash32) -> Result<Option<Block>, StoreError> {
        self.store
            .block(h)?
            .map(|b| decode("block", &b))
            .transpose()
    }

    pub fn hash_at(&self, number: u64) -> Result<Option<Hash32>, StoreError> {
        if number > self.head_number {
            return Ok(None);
        }
        self.store.canonical(number)
    }

    pub fn block_at(&self, number: u64) -> Result<Option<Block>, StoreError> {
        match self.hash_at(number)? {
            Some(h) => self.block_by_hash(&h),
            None => Ok(None),
        }
    }

    /// Stored commit certificate (encoded) of canonical block `number` (PoS).
    pub fn cert_bytes(&self, number: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.cert(number)
    }

    pub fn tx_location(&self, id: &Hash32) -> Result<Option<TxLocation>, StoreError> {
        self.store
            .tx_location(id)?
            .map(|b| decode("tx location", &b))
            .transpose()
    }

    /// Merkle inclusion proof of a committed transaction, with its block header.
    pub fn tx_proof(&self, id: &Hash32) -> Result<Option<(BlockHeader, MerkleProof)>, StoreError> {
        let Some(loc) = self.tx_location(id)? else {
            return Ok(None);
        };
        let Some(b) = self.block_by_hash(&loc.block)? else {
            return Ok(None);
        };
        let algo = self.rules_at(loc.number).hash;
        Ok(b.tx_proof(algo, loc.index as usize)
            .map(|p| (b.header.clone(), p)))
    }

    /// The header of canonical block `number` and, per key, the entry's value and Merkle
    /// path to that header's state root (`None`: absent then). The state after `number` is
    /// the current state with the later blocks' undo records applied, newest first.
    #[allow(clippy::type_complexity)]
    pub fn state_proofs_at(
        &self,
        number: u64,
        keys: &[Vec<u8>],
    ) -> Result<Option<(BlockHeader, Vec<Option<(Vec<u8>, MerkleProof)>>)>, StoreError> {
        let Some(b) = self.block_at(number)? else {
            return Ok(None);
        };
        let mut past;
        let state = if number == self.head_number {
            &self.state
        } else {
            past = self.state.clone();
            for n in (number + 1..=self.head_number).rev() {
                let h = self
                    .store
                    .canonical(n)?
                    .ok_or_else(|| StoreError::Corrupt(format!("no canonical block {n}")))?;
                past.revert(&self.undo_of(&h)?);
            }
            &past
        };
        let algo = self.rules_at(number).hash;
        let proofs = state.entry_proofs(algo, keys);
        Ok(Some((b.header, proofs)))
    }

    /// The stored undo record of block `h`.
    fn undo_of(&self, h: &Hash32) -> Result<Undo, StoreError> {
        decode(
            "undo",
            &self
                .store
                .undo(h)?
                .ok_or_else(|| StoreError::Corrupt(format!("no undo record for {h}")))?,
        )
    }

    pub fn used_bytes(&self) -> Result<u64, StoreError> {
        self.store.used_bytes()
    }

    /// PoW difficulty the child of `parent` must carry: retargeted every
    /// `retarget_window` blocks toward `block_interval_ms`, moving at most 4x per window,
    /// never below the configured floor (`PowConfig::difficulty_floor`).
    pub fn expected_difficulty(&self, parent_hash: &Hash32) -> u64 {
        let ConsensusConfig::Pow(pow) = &self.cfg.consensus else {
            return 0;
        };
        let Some(parent) = self.index.get(parent_hash) else {
            return pow.initial_difficulty;
        };
        expected_difficulty(&self.cfg, pow, parent, |h| self.index.get(h).copied())
    }

    /// Checks that need only the header, the parent's index entry and the transactions:
    /// everything except execution. Returns the block hash.
    fn check_block(&self, b: &Block, live: Live) -> Result<Hash32, BlockError> {
        let parent = self
            .index
            .get(&b.header.prev_hash)
            .ok_or(BlockError::UnknownParent(b.header.prev_hash))?;
        let h = &b.header;
        let rules = self.rules_at(h.number);
        let hash = b.hash(rules.hash);
        if self.invalid.contains(&h.prev_hash) || self.invalid.contains(&hash) {
            return Err(BlockError::KnownInvalid(hash));
        }
        if h.number != parent.number + 1 {
            return Err(BlockError::WrongNumber {
                parent: parent.number,
                got: h.number,
            });
        }
        // Higher, unknown versions are accepted (so soft forks stay compatible); older
        // versions after an upgrade are not.
        if h.version < rules.version {
            return Err(BlockError::VersionTooOld {
                number: h.number,
                got: h.version,
                required: rules.version,
            });
        }
        if h.timestamp_ms < parent.timestamp_ms {
            return Err(BlockError::BadTimestamp {
                parent: parent.timestamp_ms,
                got: h.timestamp_ms,
            });
        }
        let median = self.median_time_past(&h.prev_hash);
        if h.timestamp_ms <= median {
            return Err(BlockError::TimestampNotAfterMedian {
                median,
                got: h.timestamp_ms,
            });
        }
        if live == Live::Yes {
            let now = self.now_ms();
            let max_drift = self.cfg.max_clock_drift_ms;
            if h.timestamp_ms > now.saturating_add(max_drift) {
                return Err(BlockError::TimestampTooFarAhead {
                    got: h.timestamp_ms,
                    now,
                    max_drift,
                });
            }
        }
        if b.txs.len() > rules.max_block_txs as usize {
            return Err(BlockError::TooManyTxs {
                got: b.txs.len(),
                max: rules.max_block_txs,
            });
        }
        let actual: u64 = b.txs.iter().map(|t| t.encoded().len() as u64).sum();
        if actual != h.size || b.txs.len() != h.tx_count as usize {
            return Err(BlockError::SizeMismatch {
                claimed: h.size,
                actual,
                claimed_count: h.tx_count,
                actual_count: b.txs.len(),
            });
        }
        if actual > rules.max_block_bytes {
            return Err(BlockError::TooLarge {
                got: actual,
                max: rules.max_block_bytes,
            });
        }
        let computed = block::tx_root(rules.hash, &b.txs);
        if computed != h.tx_root {
            return Err(BlockError::BadTxRoot {
                header: h.tx_root,
                computed,
            });
        }
        b.verify_signature(rules.hash, self.network)
            .map_err(|e| BlockError::BadProposerSignature(e.to_string()))?;
        match &self.validators {
            Some(vs) => {
                if !vs.contains(&h.proposer) {
                    return Err(BlockError::NotAValidator(h.proposer));
                }
            }
            None => {
                let expected = self.expected_difficulty(&h.prev_hash);
                if h.difficulty != expected {
                    return Err(BlockError::WrongDifficulty {
                        expected,
                        got: h.difficulty,
                    });
                }
                if !block::meets_target(&hash, h.difficulty) {
                    return Err(BlockError::BadPow(hash));
                }
            }
        }
        for (index, r) in tx::verify_signatures(&b.txs, self.network)
            .into_iter()
            .enumerate()
        {
            r.map_err(|error| BlockError::Tx { index, error })?;
        }
        Ok(hash)
    }

    fn execute_on(
        &self,
        state: &State,
        b: &Block,
    ) -> Result<(StateDiff, Vec<Receipt>, Vec<Hash32>), BlockError> {
        let rules = self.rules_at(b.header.number);
        let ids = b.tx_ids(rules.hash);
        let (diff, receipts) = state
            .execute(
                &b.txs,
                &ids,
                b.header.number,
                b.header.timestamp_ms,
                &rules.exec(),
                &self.modules,
            )
            .map_err(|(index, error)| BlockError::Tx { index, error })?;
        let computed = state.root_with(rules.hash, &diff);
        if computed != b.header.state_root {
            return Err(BlockError::BadStateRoot {
                header: b.header.state_root,
                computed,
            });
        }
        Ok((diff, receipts, ids))
    }

    fn entry_for(&self, b: &Block) -> IndexEntry {
        let parent_work = self
            .index
            .get(&b.header.prev_hash)
            .map_or(0, |p| p.total_work);
        IndexEntry {
            number: b.header.number,
            prev: b.header.prev_hash,
            timestamp_ms: b.header.timestamp_ms,
            difficulty: b.header.difficulty,
            total_work: parent_work + block::work(b.header.difficulty.max(1)),
        }
    }

    fn tx_index_entries(ids: &[Hash32], number: u64, hash: Hash32) -> Vec<(Hash32, Vec<u8>)> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| {
                (
                    *id,
                    encode_canonical(&TxLocation {
                        number,
                        block: hash,
                        index: i as u32,
                    }),
                )
            })
            .collect()
    }

    /// Commit a block that extends the head (after `check_block`): execute, write one
    /// atomic batch, flush, then update memory.
    fn extend_head(
        &mut self,
        b: Block,
        hash: Hash32,
        cert: Option<Vec<u8>>,
    ) -> Result<Committed, BlockError> {
        let (diff, receipts, ids) = self.execute_on(&self.state, &b).inspect_err(|_| {
            self.invalid.insert(hash);
        })?;
        let entry = self.entry_for(&b);
        let undo = self.state.undo_for(&diff);
        let number = b.header.number;
        self.store.commit(CommitBatch {
            blocks: vec![(hash, b.encoded(), encode_canonical(&entry))],
            canonical: vec![(number, hash)],
            tx_index: Self::tx_index_entries(&ids, number, hash),
            state: diff.entries(),
            undo: vec![(hash, encode_canonical(&undo))],
            certs: cert.map(|c| vec![(number, c)]).unwrap_or_default(),
            head: Some(hash),
            ..Default::default()
        })?;
        self.state.apply(&diff);
        self.index.insert(hash, entry);
        self.head = hash;
        self.head_number = number;
        Ok(Committed {
            block: Arc::new(b),
            hash,
            receipts,
        })
    }

    /// PoS: commit a finalized block (its certificate already verified by the caller).
    pub fn commit_final(&mut self, b: Block, cert: Vec<u8>) -> Result<Committed, BlockError> {
        if b.header.prev_hash != self.head {
            return Err(BlockError::NotOnHead {
                head: self.head,
                parent: b.header.prev_hash,
            });
        }
        let hash = self.check_block(&b, Live::No)?;
        self.extend_head(b, hash, Some(cert))
    }

    /// Execute a candidate block against the head state without committing (PoS
    /// validators check a proposal this way before voting for it).
    pub fn validate_candidate(&self, b: &Block) -> Result<Hash32, BlockError> {
        if b.header.prev_hash != self.head {
            return Err(BlockError::NotOnHead {
                head: self.head,
                parent: b.header.prev_hash,
            });
        }
        let hash = self.check_block(b, Live::Yes)?;
        self.execute_on(&self.state, b)?;
        Ok(hash)
    }

    /// PoW: import a block from anywhere. Returns what happened and the newly canonical
    /// blocks (for subscribers), oldest first.
    pub fn import(&mut self, b: Block) -> Result<(Imported, Vec<Committed>), BlockError> {
        let rules = self.rules_at(b.header.number);
        let hash = b.hash(rules.hash);
        if self.index.contains_key(&hash) {
            return Ok((Imported::Known, vec![]));
        }
        let checked = self.check_block(&b, Live::Yes);
        if let Err(e) = &checked {
            if e.condemns_header() {
                self.invalid.insert(hash);
            }
        }
        checked?;
        let entry = self.entry_for(&b);
        if b.header.prev_hash == self.head {
            let c = self.extend_head(b, hash, None)?;
            return Ok((
                Imported::NewHead {
                    reverted: 0,
                    applied: 1,
                },
                vec![c],
            ));
        }
        // Side branch: store it durably first.
        self.store.commit(CommitBatch {
            blocks: vec![(hash, b.encoded(), encode_canonical(&entry))],
            ..Default::default()
        })?;
        self.index.insert(hash, entry);
        if entry.total_work <= self.head_entry().total_work {
            return Ok((Imported::SideBranch, vec![]));
        }
        self.reorg_to(hash)
    }

    fn reorg_to(&mut self, tip: Hash32) -> Result<(Imported, Vec<Committed>), BlockError> {
        // New branch back to the fork point.
        let mut branch = Vec::new();
        let mut cur = tip;
        loop {
            let e = *self.index.get(&cur).ok_or(BlockError::UnknownParent(cur))?;
            if self.store.canonical(e.number)? == Some(cur) && e.number <= self.head_number {
                break;
            }
            branch.push(cur);
            cur = e.prev;
        }
        let fork = cur;
        let fork_number = self.index.get(&fork).map_or(0, |e| e.number);
        branch.reverse();
        let mut state = self.state.clone();
        let mut touched_a = BTreeSet::new();
        let mut touched_k = BTreeSet::new();
        let mut batch = CommitBatch::default();
        // Revert the old branch, newest first.
        for n in (fork_number + 1..=self.head_number).rev() {
            let Some(h) = self.store.canonical(n)? else {
                continue;
            };
            let undo = self.undo_of(&h)?;
            touched_a.extend(undo.accounts.keys().copied());
            touched_k.extend(undo.kv.keys().cloned());
            state.revert(&undo);
            if let Some(old) = self.block_by_hash(&h)? {
                let algo = self.rules_at(n).hash;
                batch.tx_index_remove.extend(old.tx_ids(algo));
            }
            batch.canonical_remove.push(n);
        }
        let reverted = batch.canonical_remove.len();
        let mut committed = Vec::new();
        for h in &branch {
            let b = self
                .block_by_hash(h)?
                .ok_or_else(|| StoreError::Corrupt(format!("side block {h} missing")))?;
            let (diff, receipts, ids) = match self.execute_on(&state, &b) {
                Ok(x) => x,
                Err(e) => {
                    // Keep the old head; this branch is dead from here on.
                    self.invalid.insert(*h);
                    return Err(e);
                }
            };
            let undo = state.undo_for(&diff);
            touched_a.extend(diff.accounts.keys().copied());
            touched_k.extend(diff.kv.keys().cloned());
            state.apply(&diff);
            let n = b.header.number;
            batch.canonical.push((n, *h));
            batch.tx_index.extend(Self::tx_index_entries(&ids, n, *h));
            batch.undo.push((*h, encode_canonical(&undo)));
            committed.push(Committed {
                block: Arc::new(b),
                hash: *h,
                receipts,
            });
        }
        let new_number = self.index.get(&tip).map_or(0, |e| e.number);
        batch.canonical_remove.retain(|n| *n > new_number);
        batch.state = state.entries_for(&touched_a, &touched_k);
        batch.head = Some(tip);
        self.store.commit(batch)?;
        self.state = state;
        self.head = tip;
        self.head_number = new_number;
        Ok((
            Imported::NewHead {
                reverted,
                applied: committed.len(),
            },
            committed,
        ))
    }

    /// Build a block on the head from `candidates` (mempool order), skipping transactions
    /// that no longer execute, timestamped `timestamp_ms` or, if that is too early for the
    /// rules, the earliest valid time ([`Chain::min_next_timestamp`]). Returns the sealed
    /// block (PoW: nonce still to be found) and the ids of skipped transactions.
    pub fn build_block(
        &self,
        candidates: Vec<(Hash32, Transaction)>,
        key: &Keypair,
        timestamp_ms: u64,
    ) -> (Block, Vec<Hash32>) {
        let number = self.head_number + 1;
        let rules = self.rules_at(number);
        let (ids, txs): (Vec<Hash32>, Vec<Transaction>) = candidates.into_iter().unzip();
        // Ids in the mempool were computed with the hash at admission; recompute if a hard
        // fork switched the hash at this height.
        let ids: Vec<Hash32> =
            if ids.len() == txs.len() && rules.hash == self.rules_at(self.head_number).hash {
                ids
            } else {
                txs.iter().map(|t| t.id(rules.hash)).collect()
            };
        let ts = timestamp_ms.max(self.min_next_timestamp());
        let (_, _, skipped) =
            self.state
                .execute_lenient(&txs, &ids, number, ts, &rules.exec(), &self.modules);
        let skipped_ids: Vec<Hash32> = skipped
            .iter()
            .filter_map(|i| ids.get(*i).copied())
            .collect();
        let skip: HashSet<usize> = skipped.into_iter().collect();
        let mut kept = Vec::with_capacity(txs.len());
        let mut kept_ids = Vec::with_capacity(txs.len());
        for (i, (t, id)) in txs.into_iter().zip(ids).enumerate() {
            if !skip.contains(&i) {
                kept.push(t);
                kept_ids.push(id);
            }
        }
        let (diff, _receipts) = self
            .state
            .execute(&kept, &kept_ids, number, ts, &rules.exec(), &self.modules)
            .unwrap_or_default();
        let header = BlockHeader {
            version: rules.version,
            number,
            prev_hash: self.head,
            tx_root: Hash32::ZERO,
            state_root: self.state.root_with(rules.hash, &diff),
            timestamp_ms: ts,
            proposer: key.id(),
            difficulty: self.expected_difficulty(&self.head),
            nonce: 0,
            tx_count: 0,
            size: 0,
        };
        (
            Block::seal(header, kept, rules.hash, self.network, key),
            skipped_ids,
        )
    }

    /// Hash function at the head (for tx ids in the mempool).
    pub fn head_algo(&self) -> HashAlgo {
        self.rules_at(self.head_number + 1).hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    pub(crate) fn pow_cfg(extra: &str) -> Arc<NetworkConfig> {
        pow_cfg_drift(15_000, extra)
    }

    fn pow_cfg_drift(max_clock_drift_ms: u64, extra: &str) -> Arc<NetworkConfig> {
        let s = format!(
            r#"
            name = "tpow"
            network_id = 77
            nodes = 2
            block_interval_ms = 100
            max_clock_drift_ms = {max_clock_drift_ms}
            [consensus]
            type = "pow"
            initial_difficulty = 16
            retarget_window = 4
            [[genesis.allocation]]
            account = "dev:alice"
            balance = 1000
            {extra}
            "#
        );
        Arc::new(NetworkConfig::from_toml_str(&s).unwrap())
    }

    fn open(cfg: &Arc<NetworkConfig>) -> Chain {
        Chain::open(
            cfg.clone(),
            Box::new(SledStore::temporary(1 << 30).unwrap()),
            Modules::builtin(),
        )
        .unwrap()
    }

    /// Mine a block on top of `parent_of` (the head of `c`) by brute force.
    pub(crate) fn mine(c: &Chain, txs: Vec<Transaction>, key: &Keypair, ts: u64) -> Block {
        let algo = c.head_algo();
        let cands = txs.into_iter().map(|t| (t.id(algo), t)).collect();
        let (mut b, _) = c.build_block(cands, key, ts);
        while !block::meets_target(&b.hash(algo), b.header.difficulty) {
            b.header.nonce += 1;
        }
        b.resign(algo, c.network(), key);
        b
    }

    /// A clock that reads `at`, moved by the test.
    fn fixed_clock(at: &Arc<std::sync::atomic::AtomicU64>) -> Clock {
        let at = at.clone();
        Arc::new(move || at.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// Mine an empty block on the head of `c` carrying exactly `ts`, valid or not.
    fn mine_at(c: &Chain, key: &Keypair, ts: u64) -> Block {
        let algo = c.head_algo();
        let (mut b, _) = c.build_block(vec![], key, ts);
        b.header.timestamp_ms = ts;
        while !block::meets_target(&b.hash(algo), b.header.difficulty) {
            b.header.nonce += 1;
        }
        b.resign(algo, c.network(), key);
        b
    }

    #[test]
    fn timestamps_must_pass_the_median_of_the_last_eleven() {
        let cfg = pow_cfg("");
        let mut c = open(&cfg);
        let k = Keypair::dev("m");
        // blocks 1..=5 at 1..5 ms, then six at 100 ms: each passes, as the window's median
        // stays below 100 until six of its eleven are 100
        for ts in [1, 2, 3, 4, 5, 100, 100, 100, 100, 100, 100] {
            c.import(mine_at(&c, &k, ts)).unwrap();
        }
        assert_eq!(c.head().0, 11);
        assert_eq!(c.median_time_past(&c.head().1), 100);
        assert_eq!(c.min_next_timestamp(), 101);
        // exactly at the median (and at the parent's time) is refused, for good
        let at = mine_at(&c, &k, 100);
        let e = c.import(at.clone()).unwrap_err();
        assert!(
            matches!(
                e,
                BlockError::TimestampNotAfterMedian {
                    median: 100,
                    got: 100
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.code(), "timestamp_not_after_median");
        assert!(e.is_invalid_block());
        assert!(matches!(c.import(at), Err(BlockError::KnownInvalid(_))));
        // one above is fine, and a producer asking for an earlier time gets the earliest
        // valid one
        let above = mine_at(&c, &k, 101);
        assert_eq!(mine(&c, vec![], &k, 0).header.timestamp_ms, 101);
        c.import(above).unwrap();
        // before the parent stays refused under its own code
        let e = c.import(mine_at(&c, &k, 99)).unwrap_err();
        assert_eq!(e.code(), "timestamp_before_parent", "{e:?}");
        // fewer than eleven blocks: the median of what there is (genesis at 0, block 1 at
        // 50 -> the upper median is 50)
        let mut short = open(&cfg);
        short.import(mine_at(&short, &k, 50)).unwrap();
        assert_eq!(short.median_time_past(&short.head().1), 50);
        let e = short.import(mine_at(&short, &k, 50)).unwrap_err();
        assert_eq!(e.code(), "timestamp_not_after_median", "{e:?}");
        short.import(mine_at(&short, &k, 51)).unwrap();
    }

    #[test]
    fn a_block_beyond_the_clock_drift_is_refused_until_its_time_comes() {
        let cfg = pow_cfg_drift(5000, "");
        let mut c = open(&cfg);
        let now = Arc::new(std::sync::atomic::AtomicU64::new(1_000_000));
        c.set_clock(fixed_clock(&now));
        let k = Keypair::dev("m");
        // at the drift limit: accepted
        let at_limit = mine_at(&c, &k, 1_005_000);
        c.import(at_limit).unwrap();
        // one over: refused, not stored, not condemned, not the sender's fault
        let over = mine_at(&c, &k, 1_005_001);
        let e = c.import(over.clone()).unwrap_err();
        assert!(
            matches!(
                e,
                BlockError::TimestampTooFarAhead {
                    got: 1_005_001,
                    now: 1_000_000,
                    max_drift: 5000
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.code(), "timestamp_too_far_ahead");
        assert!(!e.is_invalid_block());
        assert!(!c.contains(&over.hash(c.head_algo())));
        assert_eq!(c.head().0, 1);
        // a millisecond later the same block is on time
        now.store(1_000_001, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(
            c.import(over).unwrap().0,
            Imported::NewHead { .. }
        ));
        assert_eq!(c.head().0, 2);
    }

    #[test]
    fn a_miner_cannot_refund_its_own_lock_early_with_a_far_future_block() {
        use crate::escrow::{
            lock_state_key, EscrowCall, EscrowLock, EscrowStatus, EscrowTerms, LockArgs, RefundArgs,
        };
        let cfg = pow_cfg(
            "[[genesis.allocation]]\naccount = \"dev:mallory\"\nbalance = 1000\n\
             [escrow]\nhub_attesters = [\"dev:h1\"]\nthreshold = 1\n",
        );
        let open_for = |clock: &Arc<std::sync::atomic::AtomicU64>| {
            let mut c = Chain::open(
                cfg.clone(),
                Box::new(SledStore::temporary(1 << 30).unwrap()),
                Modules::for_network(&cfg),
            )
            .unwrap();
            c.set_clock(fixed_clock(clock));
            c
        };
        const HOUR: u64 = 3_600_000;
        let t0: u64 = 1_700_000_000_000;
        let honest_now = Arc::new(std::sync::atomic::AtomicU64::new(t0));
        // the miner's own node runs with its clock an hour ahead
        let mallory_now = Arc::new(std::sync::atomic::AtomicU64::new(t0 + HOUR));
        let mut honest = open_for(&honest_now);
        let mut mallory_view = open_for(&mallory_now);
        let mallory = Keypair::dev("mallory");
        let bob = Keypair::dev("bob");
        let lock_id = Hash32([42; 32]);
        let balance = |c: &Chain| c.state().account(&mallory.id()).balance;
        let status = |c: &Chain| {
            EscrowLock::decode(&c.state().get(&lock_state_key(&lock_id)).unwrap())
                .unwrap()
                .status
        };
        // block 1, on time: mallory locks 100 for bob until an hour from now (the hub
        // would release the other leg to her meanwhile)
        let lock = EscrowCall::Lock(LockArgs {
            lock_id,
            beneficiary: bob.id(),
            amount: 100,
            timeout_ms: t0 + HOUR,
            terms: EscrowTerms::TwoPhase,
        });
        let tx = Transaction::sign(&mallory, honest.network(), 0, lock.to_kind());
        let b1 = mine(&honest, vec![tx], &mallory, t0);
        honest.import(b1.clone()).unwrap();
        mallory_view.import(b1).unwrap();
        assert_eq!(status(&honest), EscrowStatus::Locked);
        assert_eq!(balance(&honest), 900);
        // block 2, mined by mallory an hour in the future, refunds her lock by timeout
        let refund = EscrowCall::Refund(RefundArgs {
            lock_id,
            attestation: None,
        });
        let tx = Transaction::sign(&mallory, honest.network(), 1, refund.to_kind());
        let b2 = mine(&mallory_view, vec![tx], &mallory, t0 + HOUR);
        assert_eq!(b2.header.timestamp_ms, t0 + HOUR);
        // on a node that trusted her clock, that block would refund her at once
        mallory_view.import(b2.clone()).unwrap();
        assert!(matches!(
            status(&mallory_view),
            EscrowStatus::Refunded { .. }
        ));
        assert_eq!(balance(&mallory_view), 1000);
        // an honest node refuses it: the lock stays locked, her balance stays 900, the
        // module still holds the 100
        let e = honest.import(b2.clone()).unwrap_err();
        assert_eq!(e.code(), "timestamp_too_far_ahead", "{e:?}");
        assert_eq!(honest.head().0, 1);
        assert_eq!(status(&honest), EscrowStatus::Locked);
        assert_eq!(balance(&honest), 900);
        let escrow = crate::state::module_account(crate::escrow::MODULE);
        assert_eq!(honest.state().account(&escrow).balance, 100);
        // still refused shortly before the timeout (beyond the drift) ...
        honest_now.store(
            t0 + HOUR - cfg.max_clock_drift_ms - 1,
            std::sync::atomic::Ordering::SeqCst,
        );
        assert_eq!(
            honest.import(b2.clone()).unwrap_err().code(),
            "timestamp_too_far_ahead"
        );
        assert_eq!(status(&honest), EscrowStatus::Locked);
        // ... and the refund counts only once the honest clock is within the drift of the
        // timeout: never earlier than the configured drift
        honest_now.store(t0 + HOUR, std::sync::atomic::Ordering::SeqCst);
        honest.import(b2).unwrap();
        assert!(matches!(status(&honest), EscrowStatus::Refunded { .. }));
        assert_eq!(balance(&honest), 1000);
    }

    #[test]
    fn block_error_codes_are_distinct() {
        let h = Hash32::ZERO;
        let all = [
            BlockError::UnknownParent(h),
            BlockError::KnownInvalid(h),
            BlockError::WrongNumber { parent: 0, got: 0 },
            BlockError::VersionTooOld {
                number: 0,
                got: 0,
                required: 0,
            },
            BlockError::BadTimestamp { parent: 0, got: 0 },
            BlockError::TimestampNotAfterMedian { median: 0, got: 0 },
            BlockError::TimestampTooFarAhead {
                got: 0,
                now: 0,
                max_drift: 0,
            },
            BlockError::TooManyTxs { got: 0, max: 0 },
            BlockError::TooLarge { got: 0, max: 0 },
            BlockError::SizeMismatch {
                claimed: 0,
                actual: 0,
                claimed_count: 0,
                actual_count: 0,
            },
            BlockError::BadTxRoot {
                header: h,
                computed: h,
            },
            BlockError::BadStateRoot {
                header: h,
                computed: h,
            },
            BlockError::BadProposerSignature(String::new()),
            BlockError::NotAValidator(NodeId([0; 32])),
            BlockError::WrongDifficulty {
                expected: 0,
                got: 0,
            },
            BlockError::BadPow(h),
            BlockError::Tx {
                index: 0,
                error: TxError::Duplicate(h),
            },
            BlockError::NotOnHead { head: h, parent: h },
            BlockError::BadCertificate(String::new()),
            BlockError::Store(String::new()),
        ];
        let codes: BTreeSet<&str> = all.iter().map(BlockError::code).collect();
        assert_eq!(codes.len(), all.len());
    }

    #[test]
    fn pow_chain_extends_and_rejects_tampering() {
        let cfg = pow_cfg("");
        let mut c = open(&cfg);
        let alice = Keypair::dev("alice");
        let bob = Keypair::dev("bob");
        let t0 = Transaction::transfer(&alice, c.network(), 0, bob.id(), 10);
        let b1 = mine(&c, vec![t0.clone()], &alice, 1000);
        // tampered copies
        let mut bad_root = b1.clone();
        bad_root.header.tx_root.0[0] ^= 1;
        assert!(matches!(
            c.import(bad_root),
            Err(BlockError::BadTxRoot { .. }) | Err(BlockError::BadProposerSignature(_))
        ));
        let mut bad_tx = b1.clone();
        bad_tx.txs[0].signature.0[3] ^= 1;
        // header still claims the old root: the root check catches the tampering first
        assert!(c.import(bad_tx).is_err());
        let (r, _) = c.import(b1.clone()).unwrap();
        assert_eq!(
            r,
            Imported::NewHead {
                reverted: 0,
                applied: 1
            }
        );
        assert_eq!(c.import(b1).unwrap().0, Imported::Known);
        assert_eq!(c.state().account(&bob.id()).balance, 10);
        // replayed nonce inside a correctly sealed block is refused by execution
        let algo = c.head_algo();
        let (mut replay, _) = c.build_block(vec![], &alice, 2000);
        replay.txs = vec![t0.clone()];
        replay = Block::seal(replay.header, replay.txs, algo, c.network(), &alice);
        while !block::meets_target(&replay.hash(algo), replay.header.difficulty) {
            replay.header.nonce += 1;
        }
        replay.resign(algo, c.network(), &alice);
        assert!(matches!(
            c.import(replay),
            Err(BlockError::Tx {
                error: TxError::BadNonce { .. },
                ..
            }) | Err(BlockError::BadStateRoot { .. })
        ));
        // the proof of the committed transaction verifies against the header
        let (hdr, proof) = c.tx_proof(&t0.id(algo)).unwrap().unwrap();
        assert!(proof.verify(algo, t0.id(algo), &hdr.tx_root).is_ok());
    }

    #[test]
    fn heavier_branch_wins_with_reorg_and_survives_reopen() {
        let cfg = pow_cfg("");
        let dir = tempfile::tempdir().unwrap();
        let alice = Keypair::dev("alice");
        let bob = Keypair::dev("bob");
        let carol = Keypair::dev("carol");
        let store = || Box::new(SledStore::open(dir.path(), 1 << 30).unwrap());
        let mut a = Chain::open(cfg.clone(), store(), Modules::builtin()).unwrap();
        let mut b = open(&cfg);
        // branch A: 1 block paying bob
        let ta = Transaction::transfer(&alice, a.network(), 0, bob.id(), 5);
        let a1 = mine(&a, vec![ta], &bob, 1000);
        a.import(a1).unwrap();
        // branch B: 2 blocks paying carol
        let tb = Transaction::transfer(&alice, b.network(), 0, carol.id(), 7);
        let b1 = mine(&b, vec![tb], &carol, 1000);
        b.import(b1.clone()).unwrap();
        let b2 = mine(&b, vec![], &carol, 1100);
        b.import(b2.clone()).unwrap();
        assert_eq!(a.import(b1).unwrap().0, Imported::SideBranch);
        let (r, committed) = a.import(b2).unwrap();
        assert_eq!(
            r,
            Imported::NewHead {
                reverted: 1,
                applied: 2
            }
        );
        assert_eq!(committed.len(), 2);
        assert_eq!(a.head(), b.head());
        assert_eq!(a.state(), b.state());
        assert_eq!(a.state().account(&bob.id()).balance, 0);
        drop(a);
        let a = Chain::open(cfg.clone(), store(), Modules::builtin()).unwrap();
        assert_eq!(a.head(), b.head());
        assert_eq!(a.state(), b.state());
    }

    #[test]
    fn an_idle_chain_retargets_down_to_the_floor_and_no_further() {
        let cfg = Arc::new(
            NetworkConfig::from_toml_str(
                r#"
                name = "tfloor"
                network_id = 78
                nodes = 1
                block_interval_ms = 100
                [consensus]
                type = "pow"
                initial_difficulty = 64
                min_difficulty = 8
                retarget_window = 4
                "#,
            )
            .unwrap(),
        );
        let mut c = open(&cfg);
        let k = Keypair::dev("m");
        // a block every 10 s against a 100 ms target (nodes down between them): each window
        // may quarter the difficulty, 64 -> 16 -> 8, and the floor holds it there
        let mut seen = Vec::new();
        for i in 1..=16u64 {
            let b = mine(&c, vec![], &k, i * 10_000);
            seen.push(b.header.difficulty);
            c.import(b).unwrap();
        }
        assert_eq!(seen.first(), Some(&64));
        assert_eq!(seen.last(), Some(&8), "{seen:?}");
        assert!(seen.iter().all(|d| *d >= 8), "{seen:?}");
        // below the floor is refused, like any wrong difficulty
        let mut b = mine(&c, vec![], &k, 200_000);
        b.header.difficulty = 4;
        b.resign(c.head_algo(), c.network(), &k);
        assert!(matches!(
            c.import(b),
            Err(BlockError::WrongDifficulty { .. })
        ));
        // and a floor above the initial difficulty is a config error
        let bad = NetworkConfig::from_toml_str(
            "name = \"x\"\nnetwork_id = 79\nnodes = 1\n[consensus]\ntype = \"pow\"\n\
             initial_difficulty = 64\nmin_difficulty = 65\n",
        );
        assert!(
            bad.as_ref()
                .is_err_and(|e| e.to_string().contains("min_difficulty 65")),
            "{bad:?}"
        );
    }

    #[test]
    fn difficulty_retargets_toward_interval() {
        let cfg = pow_cfg("");
        let mut c = open(&cfg);
        let k = Keypair::dev("m");
        // blocks every 10 ms against a 100 ms target: difficulty must rise at the window
        for i in 1..=4u64 {
            let b = mine(&c, vec![], &k, i * 10);
            c.import(b).unwrap();
        }
        let e = c.head_entry();
        assert!(
            e.difficulty > 16,
            "difficulty {} did not rise",
            e.difficulty
        );
        // a wrong difficulty is refused
        let mut b = mine(&c, vec![], &k, 1000);
        b.header.difficulty += 1;
        b.resign(c.head_algo(), c.network(), &k);
        assert!(matches!(
            c.import(b),
            Err(BlockError::WrongDifficulty { .. })
        ));
    }
}
