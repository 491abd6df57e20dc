//! Proof of stake on Malachite's Tendermint core (`informalsystems-malachitebft-core-consensus`).
//!
//! This module implements Malachite's `Context` for our types (height, validator address =
//! [`NodeId`], value = a [`Block`] identified by its hash, ed25519 votes signed under
//! [`Domain::ConsensusVote`]) and drives the core's effect loop synchronously with
//! `process!`. The core decides; this module only answers its effects (sign, verify,
//! validator set) and turns the rest into [`PosAction`]s for the node task (broadcast,
//! timers, "build a block", "decided").
//!
//! Mode: `ValuePayload::ProposalOnly` — the signed proposal carries the whole block. The
//! core treats a received proposal's value as valid, so the node feeds a proposal to the
//! engine only after [`crate::chain::Chain::validate_candidate`] accepted the block.
//!
//! **Finality:** a block is final when precommits of validators holding more than 2/3 of
//! the stake are collected; the [`CommitCert`] (the signed precommits) is stored with the
//! block and lets anyone verify finality as a light client ([`CommitCert::verify`]).
//!
//! **Proposer selection** is stake-weighted and deterministic: a hash of (height, round)
//! picks a point in `[0, total stake)` and the validator whose cumulative stake range holds
//! it proposes. **Equivocation** (two different votes by one validator for the same height,
//! round and step) is detected by Malachite's vote keeper; each new piece of evidence is
//! surfaced as [`PosAction::Evidence`] and recorded by the node.
//!
//! **Write-ahead log.** With a [`ConsensusWal`] attached ([`PosEngine::attach_wal`]), what
//! the core hands to `WalAppend` is appended and `fsync`ed before the core continues, and
//! so is every vote this validator signs, before it is signed. A validator restarted in
//! the middle of a height replays that height's log into the core right after
//! `StartHeight` (as Malachite's own engine does), so it resumes in the round and step it
//! left with the same locks, and it re-signs only votes identical to those it signed. As a
//! second line of defence it refuses to sign a vote that differs from a recorded one for
//! the same round and type, and re-proposes its recorded block for a round it already
//! proposed in. If the log cannot be written, the engine signs nothing until a new height
//! resets it.

use crate::block::Block;
use crate::tx::encode_canonical;
use crate::wal::{ConsensusWal, Recovered, WalRecord};
use isthmus_core::{sign, Domain, Hash32, HashAlgo, Keypair, NetworkId, NodeId, Signature};
use malachite_consensus::{
    self as mc, ConsensusMsg, Effect, LocallyProposedValue, Resumable, SignedConsensusMsg,
};
use malachite_types::{self as mt, NilOrVal, Round, SignedMessage, Timeout, TimeoutKind, VoteType};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Our Malachite context.
#[derive(Clone, Debug, Default)]
pub struct PosCtx;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Height(pub u64);

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl mt::Height for Height {
    const ZERO: Self = Height(0);
    const INITIAL: Self = Height(1);
    fn increment_by(&self, n: u64) -> Self {
        Height(self.0 + n)
    }
    fn decrement_by(&self, n: u64) -> Option<Self> {
        self.0.checked_sub(n).map(Height)
    }
    fn as_u64(&self) -> u64 {
        self.0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Addr(pub NodeId);

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.short())
    }
}

impl mt::Address for Addr {}

/// A proposed block, identified by its hash.
#[derive(Clone, Debug)]
pub struct BlockValue {
    pub hash: Hash32,
    pub block: Arc<Block>,
}

impl PartialEq for BlockValue {
    fn eq(&self, o: &Self) -> bool {
        self.hash == o.hash
    }
}
impl Eq for BlockValue {}
impl PartialOrd for BlockValue {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for BlockValue {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.hash.cmp(&o.hash)
    }
}

impl mt::Value for BlockValue {
    type Id = Hash32;
    fn id(&self) -> Hash32 {
        self.hash
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PosProposal {
    pub height: Height,
    pub round: Round,
    pub value: BlockValue,
    pub pol_round: Round,
    pub proposer: Addr,
}

impl mt::Proposal<PosCtx> for PosProposal {
    fn height(&self) -> Height {
        self.height
    }
    fn round(&self) -> Round {
        self.round
    }
    fn value(&self) -> &BlockValue {
        &self.value
    }
    fn take_value(self) -> BlockValue {
        self.value
    }
    fn pol_round(&self) -> Round {
        self.pol_round
    }
    fn validator_address(&self) -> &Addr {
        &self.proposer
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PosVote {
    pub height: Height,
    pub round: Round,
    pub value: NilOrVal<Hash32>,
    pub typ: VoteType,
    pub validator: Addr,
}

impl mt::Vote<PosCtx> for PosVote {
    fn height(&self) -> Height {
        self.height
    }
    fn round(&self) -> Round {
        self.round
    }
    fn value(&self) -> &NilOrVal<Hash32> {
        &self.value
    }
    fn take_value(self) -> NilOrVal<Hash32> {
        self.value
    }
    fn vote_type(&self) -> VoteType {
        self.typ
    }
    fn validator_address(&self) -> &Addr {
        &self.validator
    }
    fn extension(&self) -> Option<&mt::SignedExtension<PosCtx>> {
        None
    }
    fn take_extension(&mut self) -> Option<mt::SignedExtension<PosCtx>> {
        None
    }
    fn extend(self, _: mt::SignedExtension<PosCtx>) -> Self {
        self
    }
}

/// Proposal parts are not used (`ProposalOnly`); this type only satisfies the trait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoParts;

impl mt::ProposalPart<PosCtx> for NoParts {
    fn is_first(&self) -> bool {
        true
    }
    fn is_last(&self) -> bool {
        true
    }
}

/// Vote extensions are not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoExtension;

impl mt::Extension for NoExtension {
    fn size_bytes(&self) -> usize {
        0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PosValidator {
    pub addr: Addr,
    pub stake: u64,
}

impl mt::Validator<PosCtx> for PosValidator {
    fn address(&self) -> &Addr {
        &self.addr
    }
    fn public_key(&self) -> &NodeId {
        &self.addr.0
    }
    fn voting_power(&self) -> u64 {
        self.stake
    }
}

/// Validators sorted by stake (descending), then id (ascending), as Malachite requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PosValidatorSet {
    pub validators: Vec<PosValidator>,
}

impl PosValidatorSet {
    pub fn new(v: &[(NodeId, u64)]) -> PosValidatorSet {
        let mut validators: Vec<PosValidator> = v
            .iter()
            .map(|(id, stake)| PosValidator {
                addr: Addr(*id),
                stake: *stake,
            })
            .collect();
        validators.sort_by(|a, b| b.stake.cmp(&a.stake).then(a.addr.cmp(&b.addr)));
        PosValidatorSet { validators }
    }

    pub fn total(&self) -> u64 {
        self.validators.iter().map(|v| v.stake).sum()
    }

    pub fn stake_of(&self, id: &NodeId) -> Option<u64> {
        self.validators
            .iter()
            .find(|v| v.addr.0 == *id)
            .map(|v| v.stake)
    }

    /// Stake-weighted, deterministic proposer for (height, round).
    pub fn proposer(&self, height: u64, round: i64) -> Option<&PosValidator> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let seed = HashAlgo::Sha256.digest_parts(&[
            b"isthmus/proposer",
            &height.to_be_bytes(),
            &round.to_be_bytes(),
        ]);
        let mut x = [0u8; 8];
        x.copy_from_slice(&seed.0[..8]);
        let mut point = u64::from_be_bytes(x) % total;
        for v in &self.validators {
            if point < v.stake {
                return Some(v);
            }
            point -= v.stake;
        }
        self.validators.last()
    }
}

impl mt::ValidatorSet<PosCtx> for PosValidatorSet {
    fn count(&self) -> usize {
        self.validators.len()
    }
    fn total_voting_power(&self) -> u64 {
        self.total()
    }
    fn get_by_address(&self, a: &Addr) -> Option<&PosValidator> {
        self.validators.iter().find(|v| v.addr == *a)
    }
    fn get_by_index(&self, i: usize) -> Option<&PosValidator> {
        self.validators.get(i)
    }
}

/// A signature with the ordering Malachite wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sig(pub [u8; 64]);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ed25519Scheme;

impl mt::SigningScheme for Ed25519Scheme {
    type DecodingError = String;
    type Signature = Sig;
    type PublicKey = NodeId;
    type PrivateKey = Keypair;
    fn decode_signature(bytes: &[u8]) -> Result<Sig, String> {
        let arr: [u8; 64] = bytes
            .try_into()
            .map_err(|_| format!("signature of {} bytes, expected 64", bytes.len()))?;
        Ok(Sig(arr))
    }
    fn encode_signature(s: &Sig) -> Vec<u8> {
        s.0.to_vec()
    }
}

impl mt::Context for PosCtx {
    type Address = Addr;
    type Height = Height;
    type ProposalPart = NoParts;
    type Proposal = PosProposal;
    type Validator = PosValidator;
    type ValidatorSet = PosValidatorSet;
    type Value = BlockValue;
    type Vote = PosVote;
    type Extension = NoExtension;
    type SigningScheme = Ed25519Scheme;

    fn select_proposer<'a>(
        &self,
        vs: &'a PosValidatorSet,
        height: Height,
        round: Round,
    ) -> &'a PosValidator {
        match vs.proposer(height.0, round.as_i64()) {
            Some(v) => v,
            // Malachite never asks with an empty set (StartHeight requires one); keep the
            // function total without a panic.
            None => &EMPTY_VALIDATOR,
        }
    }

    fn new_proposal(
        &self,
        height: Height,
        round: Round,
        value: BlockValue,
        pol_round: Round,
        address: Addr,
    ) -> PosProposal {
        PosProposal {
            height,
            round,
            value,
            pol_round,
            proposer: address,
        }
    }

    fn new_prevote(
        &self,
        height: Height,
        round: Round,
        value: NilOrVal<Hash32>,
        a: Addr,
    ) -> PosVote {
        PosVote {
            height,
            round,
            value,
            typ: VoteType::Prevote,
            validator: a,
        }
    }

    fn new_precommit(
        &self,
        height: Height,
        round: Round,
        value: NilOrVal<Hash32>,
        a: Addr,
    ) -> PosVote {
        PosVote {
            height,
            round,
            value,
            typ: VoteType::Precommit,
            validator: a,
        }
    }
}

static EMPTY_VALIDATOR: PosValidator = PosValidator {
    addr: Addr(NodeId([0; 32])),
    stake: 0,
};

fn round_to_i64(r: Round) -> i64 {
    r.as_i64()
}

fn round_from_i64(r: i64) -> Round {
    u32::try_from(r).map_or(Round::Nil, Round::new)
}

/// The signed form of a vote on the wire and in certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteWire {
    pub height: u64,
    pub round: i64,
    pub value: Option<Hash32>,
    pub precommit: bool,
    pub validator: NodeId,
}

impl VoteWire {
    pub(crate) fn from_vote(v: &PosVote) -> VoteWire {
        VoteWire {
            height: v.height.0,
            round: round_to_i64(v.round),
            value: match &v.value {
                NilOrVal::Nil => None,
                NilOrVal::Val(h) => Some(*h),
            },
            precommit: v.typ == VoteType::Precommit,
            validator: v.validator.0,
        }
    }

    fn to_vote(&self) -> PosVote {
        PosVote {
            height: Height(self.height),
            round: round_from_i64(self.round),
            value: self.value.map_or(NilOrVal::Nil, NilOrVal::Val),
            typ: if self.precommit {
                VoteType::Precommit
            } else {
                VoteType::Prevote
            },
            validator: Addr(self.validator),
        }
    }

    fn signing_payload(&self) -> Vec<u8> {
        let mut p = vec![1u8];
        p.extend_from_slice(&encode_canonical(self));
        p
    }
}

/// What a proposal signature covers.
fn proposal_payload(
    height: u64,
    round: i64,
    pol_round: i64,
    hash: &Hash32,
    proposer: &NodeId,
) -> Vec<u8> {
    let mut p = vec![2u8];
    p.extend_from_slice(&encode_canonical(&(
        height, round, pol_round, hash, proposer,
    )));
    p
}

/// Consensus messages between validators.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ConsensusWire {
    Proposal {
        height: u64,
        round: i64,
        pol_round: i64,
        block: Block,
        signature: Signature,
    },
    Vote {
        vote: VoteWire,
        signature: Signature,
    },
}

impl ConsensusWire {
    pub fn height(&self) -> u64 {
        match self {
            ConsensusWire::Proposal { height, .. } => *height,
            ConsensusWire::Vote { vote, .. } => vote.height,
        }
    }
}

/// The proof that a block is final: precommits for it by validators holding more than 2/3
/// of the stake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitCert {
    pub height: u64,
    pub round: i64,
    pub block_hash: Hash32,
    pub signatures: Vec<(NodeId, Signature)>,
}

impl CommitCert {
    /// Verify against a validator set: every counted signature must be a valid precommit
    /// for `block_hash` by a distinct validator, and their stake must exceed 2/3 of the
    /// total. Returns the committed stake.
    pub fn verify(
        &self,
        network: NetworkId,
        validators: &PosValidatorSet,
        block_hash: &Hash32,
    ) -> Result<u64, String> {
        if &self.block_hash != block_hash {
            return Err(format!(
                "certificate is for block {}, not {block_hash}",
                self.block_hash
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut power = 0u64;
        for (id, sig) in &self.signatures {
            let stake = validators
                .stake_of(id)
                .ok_or_else(|| format!("certificate signer {id} is not a validator"))?;
            if !seen.insert(*id) {
                return Err(format!("certificate signer {id} appears twice"));
            }
            let vote = VoteWire {
                height: self.height,
                round: self.round,
                value: Some(self.block_hash),
                precommit: true,
                validator: *id,
            };
            sign::verify(
                id,
                Domain::ConsensusVote,
                network,
                &vote.signing_payload(),
                sig,
            )
            .map_err(|e| format!("certificate signature: {e}"))?;
            power += stake;
        }
        let total = validators.total();
        if u128::from(power) * 3 <= u128::from(total) * 2 {
            return Err(format!(
                "certificate carries {power} of {total} stake, more than 2/3 is required"
            ));
        }
        Ok(power)
    }
}

impl CommitCert {
    /// A certificate signed by `keys` (each a validator) for `block_hash` at `height`,
    /// round 0. Used to build chains offline (test fixtures, benchmarks); live networks
    /// get their certificates from consensus.
    pub fn sign_offline(
        keys: &[&Keypair],
        network: NetworkId,
        height: u64,
        block_hash: Hash32,
    ) -> CommitCert {
        let signatures = keys
            .iter()
            .map(|k| {
                let vote = VoteWire {
                    height,
                    round: 0,
                    value: Some(block_hash),
                    precommit: true,
                    validator: k.id(),
                };
                (
                    k.id(),
                    k.sign(Domain::ConsensusVote, network, &vote.signing_payload()),
                )
            })
            .collect();
        CommitCert {
            height,
            round: 0,
            block_hash,
            signatures,
        }
    }
}

/// Two conflicting signed votes by one validator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub validator: NodeId,
    pub first: (VoteWire, Signature),
    pub second: (VoteWire, Signature),
}

/// Timeout durations (grow linearly with the round so a slow network catches up).
#[derive(Debug, Clone, Copy)]
pub struct PosTimeouts {
    pub propose: Duration,
    pub prevote: Duration,
    pub precommit: Duration,
}

/// What the engine asks the node to do.
#[derive(Debug, Clone)]
pub enum PosAction {
    Broadcast(ConsensusWire),
    Schedule(Timeout, Duration),
    Cancel(Timeout),
    CancelAll,
    /// Build a block for this height and round and call [`PosEngine::propose`].
    BuildValue {
        height: u64,
        round: Round,
    },
    /// The block is final: commit it with this certificate, then call
    /// [`PosEngine::start_height`] for the next height.
    Decided {
        block: Arc<Block>,
        cert: CommitCert,
    },
    Evidence(Evidence),
}

/// The node's validator engine around Malachite's consensus state.
pub struct PosEngine {
    state: mc::State<PosCtx>,
    key: Keypair,
    network: NetworkId,
    vset: PosValidatorSet,
    timeouts: PosTimeouts,
    values: HashMap<Hash32, BlockValue>,
    evidence_seen: HashMap<NodeId, usize>,
    metrics: (),
    durable: Durable,
    /// A log found on open: its height and records, replayed when that height starts.
    recovered: Recovered,
    /// Our proposals at the current height, by round.
    own_proposals: HashMap<i64, BlockValue>,
}

/// What the engine keeps durable at the current height.
#[derive(Default)]
struct Durable {
    wal: Option<ConsensusWal>,
    /// Votes signed at this height: (round, precommit) -> value.
    signed: HashMap<(i64, bool), Option<Hash32>>,
    /// Replaying the log: what the core hands to `WalAppend` is there already. (A vote
    /// signed during the replay is still recorded: it may be one the log lacks.)
    replaying: bool,
    /// An append failed: nothing is signed or published until the next reset.
    failed: bool,
}

impl Durable {
    fn append(&mut self, rec: &WalRecord) {
        if self.failed {
            return;
        }
        if let Some(w) = &mut self.wal {
            if let Err(e) = w.append(rec) {
                tracing::error!(
                    "consensus wal append failed, not signing until the next height: {e}"
                );
                self.failed = true;
            }
        }
    }

    /// Record that we sign `v`, durably, unless we signed another vote for its round and
    /// type (or the log is broken): then refuse.
    fn record_signature(&mut self, v: &PosVote) -> Result<(), String> {
        let key = (v.round.as_i64(), v.typ == VoteType::Precommit);
        let value = match &v.value {
            NilOrVal::Nil => None,
            NilOrVal::Val(h) => Some(*h),
        };
        if let Some(prev) = self.signed.get(&key) {
            if *prev != value {
                return Err(format!(
                    "refusing to sign a second {:?} at height {} round {}: {value:?}, already signed {prev:?}",
                    v.typ, v.height.0, key.0
                ));
            }
            return Ok(());
        }
        self.append(&WalRecord::Signed {
            round: key.0,
            precommit: key.1,
            value,
        });
        if self.failed {
            return Err("consensus wal is not writable, refusing to sign".into());
        }
        self.signed.insert(key, value);
        Ok(())
    }
}

fn timeout_kind_byte(k: TimeoutKind) -> u8 {
    match k {
        TimeoutKind::Propose => 0,
        TimeoutKind::Prevote => 1,
        TimeoutKind::Precommit => 2,
        TimeoutKind::Rebroadcast => 3,
    }
}

fn timeout_kind_from(b: u8) -> Option<TimeoutKind> {
    Some(match b {
        0 => TimeoutKind::Propose,
        1 => TimeoutKind::Prevote,
        2 => TimeoutKind::Precommit,
        3 => TimeoutKind::Rebroadcast,
        _ => return None,
    })
}

/// The log record of what the core asked to persist.
fn wal_record(entry: &mc::WalEntry<PosCtx>) -> WalRecord {
    match entry {
        mc::WalEntry::ConsensusMsg(SignedConsensusMsg::Vote(v)) => WalRecord::Vote {
            vote: VoteWire::from_vote(&v.message),
            signature: Signature(v.signature.0),
        },
        mc::WalEntry::ConsensusMsg(SignedConsensusMsg::Proposal(p)) => WalRecord::Proposal {
            height: p.message.height.0,
            round: p.message.round.as_i64(),
            pol_round: p.message.pol_round.as_i64(),
            proposer: p.message.proposer.0,
            hash: p.message.value.hash,
            block: (*p.message.value.block).clone(),
            signature: Signature(p.signature.0),
        },
        mc::WalEntry::Timeout(t) => WalRecord::Timeout {
            kind: timeout_kind_byte(t.kind),
            round: t.round.as_i64(),
        },
        mc::WalEntry::ProposedValue(v) => WalRecord::ProposedValue {
            height: v.height.0,
            round: v.round.as_i64(),
            valid_round: v.valid_round.as_i64(),
            proposer: v.proposer.0,
            hash: v.value.hash,
            block: (*v.value.block).clone(),
            valid: v.validity == mt::Validity::Valid,
        },
    }
}

impl PosEngine {
    pub fn new(
        key: Keypair,
        network: NetworkId,
        validators: &[(NodeId, u64)],
        timeouts: PosTimeouts,
    ) -> PosEngine {
        let vset = PosValidatorSet::new(validators);
        let params = mc::Params {
            initial_height: Height(1),
            initial_validator_set: vset.clone(),
            address: Addr(key.id()),
            threshold_params: Default::default(),
            value_payload: mt::ValuePayload::ProposalOnly,
        };
        PosEngine {
            state: mc::State::new(PosCtx, params, 1024),
            key,
            network,
            vset,
            timeouts,
            values: HashMap::new(),
            evidence_seen: HashMap::new(),
            metrics: (),
            durable: Durable::default(),
            recovered: None,
            own_proposals: HashMap::new(),
        }
    }

    /// Persist consensus in `wal` from now on; what it holds (as returned by
    /// [`ConsensusWal::open`]) is replayed when its height starts.
    pub fn attach_wal(&mut self, wal: ConsensusWal, recovered: Recovered) {
        self.durable.wal = Some(wal);
        self.recovered = recovered;
    }

    pub fn validators(&self) -> &PosValidatorSet {
        &self.vset
    }

    pub fn height(&self) -> u64 {
        self.state.height().0
    }

    pub fn round(&self) -> i64 {
        self.state.round().as_i64()
    }

    pub fn is_validator(&self) -> bool {
        self.vset.stake_of(&self.key.id()).is_some()
    }

    pub fn start_height(&mut self, height: u64) -> Vec<PosAction> {
        self.values.retain(|_, v| v.block.header.number >= height);
        self.own_proposals.clear();
        self.durable.signed.clear();
        let replay = match self.recovered.take() {
            Some((h, records)) if h == height => records,
            _ => {
                self.durable.failed = false;
                if let Some(w) = &mut self.durable.wal {
                    if let Err(e) = w.reset(height) {
                        tracing::error!(
                            "consensus wal reset failed, not signing at height {height}: {e}"
                        );
                        self.durable.failed = true;
                    }
                }
                vec![]
            }
        };
        // What we signed before the restart binds us before anything can be signed again.
        for r in &replay {
            if let WalRecord::Signed {
                round,
                precommit,
                value,
            } = r
            {
                self.durable.signed.insert((*round, *precommit), *value);
            }
        }
        let vs = self.vset.clone();
        let mut out = self.run(mc::Input::StartHeight(Height(height), vs));
        if !replay.is_empty() {
            tracing::info!(
                height,
                records = replay.len(),
                "replaying the consensus wal"
            );
            self.durable.replaying = true;
            for r in replay {
                out.extend(self.replay(r));
            }
            self.durable.replaying = false;
        }
        out
    }

    fn replay(&mut self, r: WalRecord) -> Vec<PosAction> {
        match r {
            WalRecord::Height(_) | WalRecord::Signed { .. } => vec![],
            WalRecord::Vote { vote, signature } => self.on_vote(vote, signature),
            WalRecord::Proposal {
                height,
                round,
                pol_round,
                proposer,
                hash,
                block,
                signature,
            } => self.on_proposal(height, round, pol_round, proposer, block, hash, signature),
            WalRecord::Timeout { kind, round } => match timeout_kind_from(kind) {
                Some(kind) => self.on_timeout(Timeout {
                    kind,
                    round: round_from_i64(round),
                }),
                None => vec![],
            },
            WalRecord::ProposedValue {
                height,
                round,
                valid_round,
                proposer,
                hash,
                block,
                valid,
            } => {
                let value = BlockValue {
                    hash,
                    block: Arc::new(block),
                };
                self.values.insert(hash, value.clone());
                if proposer == self.key.id() {
                    self.own_proposals.insert(round, value.clone());
                }
                self.run(mc::Input::ProposedValue(
                    mc::ProposedValue {
                        height: Height(height),
                        round: round_from_i64(round),
                        valid_round: round_from_i64(valid_round),
                        proposer: Addr(proposer),
                        value,
                        validity: if valid {
                            mt::Validity::Valid
                        } else {
                            mt::Validity::Invalid
                        },
                    },
                    mt::ValueOrigin::Consensus,
                ))
            }
        }
    }

    /// Our block for (height, round), after a [`PosAction::BuildValue`].
    pub fn propose(
        &mut self,
        height: u64,
        round: Round,
        block: Block,
        hash: Hash32,
    ) -> Vec<PosAction> {
        // One proposal per round, also across a restart: a round we proposed in gets the
        // same block again.
        let value = self
            .own_proposals
            .entry(round.as_i64())
            .or_insert_with(|| BlockValue {
                hash,
                block: Arc::new(block),
            })
            .clone();
        self.values.insert(value.hash, value.clone());
        self.run(mc::Input::Propose(LocallyProposedValue::new(
            Height(height),
            round,
            value,
        )))
    }

    pub fn on_timeout(&mut self, t: Timeout) -> Vec<PosAction> {
        self.run(mc::Input::TimeoutElapsed(t))
    }

    /// The validator that proposes at (`height`, `round`).
    pub fn proposer_of(&self, height: u64, round: i64) -> Option<NodeId> {
        self.vset.proposer(height, round).map(|v| v.addr.0)
    }

    /// A proposal whose block the node has already validated against its head (`hash` is
    /// the block hash under the rules at its height), signed by `proposer`, the round's
    /// proposer ([`PosEngine::proposer_of`]). That is not always the block's builder: a
    /// later round re-proposes a block that gathered a polka earlier.
    #[allow(clippy::too_many_arguments)]
    pub fn on_proposal(
        &mut self,
        height: u64,
        round: i64,
        pol_round: i64,
        proposer: NodeId,
        block: Block,
        hash: Hash32,
        signature: Signature,
    ) -> Vec<PosAction> {
        let value = BlockValue {
            hash,
            block: Arc::new(block),
        };
        self.values.insert(hash, value.clone());
        let p = PosProposal {
            height: Height(height),
            round: round_from_i64(round),
            value,
            pol_round: round_from_i64(pol_round),
            proposer: Addr(proposer),
        };
        self.run(mc::Input::Proposal(SignedMessage::new(p, Sig(signature.0))))
    }

    pub fn on_vote(&mut self, vote: VoteWire, signature: Signature) -> Vec<PosAction> {
        self.run(mc::Input::Vote(SignedMessage::new(
            vote.to_vote(),
            Sig(signature.0),
        )))
    }

    fn run(&mut self, input: mc::Input<PosCtx>) -> Vec<PosAction> {
        let mut out = Vec::new();
        let PosEngine {
            state,
            key,
            network,
            vset,
            timeouts,
            values,
            metrics,
            durable,
            ..
        } = self;
        let mut h = Handler {
            key,
            network: *network,
            vset,
            timeouts: *timeouts,
            values,
            durable,
        };
        let res: Result<(), mc::Error<PosCtx>> = mc::process!(
            input: input,
            state: state,
            metrics: metrics,
            with: effect => h.handle(effect, &mut out)
        );
        if let Err(e) = res {
            tracing::warn!("consensus input refused: {e}");
        }
        self.attach_polkas(&mut out);
        self.collect_evidence(&mut out);
        out
    }

    /// A proposal that re-proposes a block from an earlier round (`pol_round` >= 0) is
    /// prevoted only by validators holding that round's polka. One that missed those
    /// prevotes (down, or restarted) would wait in vain while validators locked on the
    /// block refuse every other, so the polka's signed prevotes go out with the proposal.
    fn attach_polkas(&self, out: &mut Vec<PosAction>) {
        let mut polkas = Vec::new();
        for a in out.iter() {
            let PosAction::Broadcast(ConsensusWire::Proposal {
                height, pol_round, ..
            }) = a
            else {
                continue;
            };
            if *pol_round < 0 {
                continue;
            }
            let Some(cert) = self
                .state
                .polka_certificate_at_round(round_from_i64(*pol_round))
            else {
                continue;
            };
            for s in &cert.polka_signatures {
                polkas.push(PosAction::Broadcast(ConsensusWire::Vote {
                    vote: VoteWire {
                        height: *height,
                        round: *pol_round,
                        value: Some(cert.value_id),
                        precommit: false,
                        validator: s.address.0,
                    },
                    signature: Signature(s.signature.0),
                }));
            }
        }
        out.extend(polkas);
    }

    fn collect_evidence(&mut self, out: &mut Vec<PosAction>) {
        let ev = self.state.driver.votes().evidence();
        if ev.is_empty() {
            return;
        }
        for v in &self.vset.validators {
            let Some(list) = ev.get(&v.addr) else {
                continue;
            };
            let seen = self.evidence_seen.entry(v.addr.0).or_insert(0);
            for (a, b) in list.iter().skip(*seen) {
                out.push(PosAction::Evidence(Evidence {
                    validator: v.addr.0,
                    first: (VoteWire::from_vote(&a.message), Signature(a.signature.0)),
                    second: (VoteWire::from_vote(&b.message), Signature(b.signature.0)),
                }));
            }
            *seen = list.len();
        }
    }
}

struct Handler<'a> {
    key: &'a Keypair,
    network: NetworkId,
    vset: &'a PosValidatorSet,
    timeouts: PosTimeouts,
    values: &'a HashMap<Hash32, BlockValue>,
    durable: &'a mut Durable,
}

impl Handler<'_> {
    fn sign_vote(&self, v: &PosVote) -> Sig {
        let w = VoteWire::from_vote(v);
        Sig(self
            .key
            .sign(Domain::ConsensusVote, self.network, &w.signing_payload())
            .0)
    }

    /// Verify the vote signatures of a certificate and that their distinct signers hold
    /// more than `thirds`/3 of the stake.
    // The error type is fixed by Malachite's resume value; it is returned once per
    // certificate, not in a hot loop.
    #[allow(clippy::result_large_err)]
    fn check_cert(
        &self,
        vs: &PosValidatorSet,
        height: u64,
        round: i64,
        sigs: impl Iterator<Item = (NodeId, bool, Option<Hash32>, Signature)>,
        thirds: u64,
    ) -> Result<(), mt::CertificateError<PosCtx>> {
        let total = vs.total();
        let mut seen = std::collections::BTreeSet::new();
        let mut signed = 0u64;
        for (id, precommit, value, sig) in sigs {
            let stake = vs
                .stake_of(&id)
                .ok_or(mt::CertificateError::UnknownValidator(Addr(id)))?;
            let w = VoteWire {
                height,
                round,
                value,
                precommit,
                validator: id,
            };
            if sign::verify(
                &id,
                Domain::ConsensusVote,
                self.network,
                &w.signing_payload(),
                &sig,
            )
            .is_err()
            {
                return Err(mt::CertificateError::InvalidCommitSignature(
                    mt::CommitSignature {
                        address: Addr(id),
                        signature: Sig(sig.0),
                    },
                ));
            }
            if seen.insert(id) {
                signed += stake;
            }
        }
        if u128::from(signed) * 3 <= u128::from(total) * u128::from(thirds) {
            return Err(mt::CertificateError::NotEnoughVotingPower {
                signed,
                total,
                expected: total * thirds / 3 + 1,
            });
        }
        Ok(())
    }

    fn duration(&self, t: &Timeout) -> Duration {
        let base = match t.kind {
            TimeoutKind::Propose => self.timeouts.propose,
            TimeoutKind::Prevote => self.timeouts.prevote,
            TimeoutKind::Precommit => self.timeouts.precommit,
            TimeoutKind::Rebroadcast => self.timeouts.precommit * 4,
        };
        let r = t.round.as_u32().unwrap_or(0).min(16);
        base + base * r / 2
    }

    fn verify(&self, msg: &SignedMessage<PosCtx, ConsensusMsg<PosCtx>>, pk: &NodeId) -> bool {
        let sig = Signature(msg.signature.0);
        let payload = match &msg.message {
            ConsensusMsg::Vote(v) => VoteWire::from_vote(v).signing_payload(),
            ConsensusMsg::Proposal(p) => proposal_payload(
                p.height.0,
                p.round.as_i64(),
                p.pol_round.as_i64(),
                &p.value.hash,
                &p.proposer.0,
            ),
        };
        sign::verify(pk, Domain::ConsensusVote, self.network, &payload, &sig).is_ok()
    }

    fn handle(
        &mut self,
        effect: Effect<PosCtx>,
        out: &mut Vec<PosAction>,
    ) -> Result<mc::Resume<PosCtx>, String> {
        Ok(match effect {
            Effect::ResetTimeouts(r) => r.resume_with(()),
            Effect::CancelAllTimeouts(r) => {
                out.push(PosAction::CancelAll);
                r.resume_with(())
            }
            Effect::CancelTimeout(t, r) => {
                out.push(PosAction::Cancel(t));
                r.resume_with(())
            }
            Effect::ScheduleTimeout(t, r) => {
                out.push(PosAction::Schedule(t, self.duration(&t)));
                r.resume_with(())
            }
            Effect::GetValidatorSet(_, r) => r.resume_with(Some(self.vset.clone())),
            Effect::StartRound(_, _, _, _, r) => r.resume_with(()),
            // After a failed append, what the log misses must not reach the network.
            Effect::PublishConsensusMsg(_, r) if self.durable.failed => r.resume_with(()),
            Effect::PublishConsensusMsg(msg, r) => {
                match msg {
                    SignedConsensusMsg::Vote(v) => {
                        out.push(PosAction::Broadcast(ConsensusWire::Vote {
                            vote: VoteWire::from_vote(&v.message),
                            signature: Signature(v.signature.0),
                        }))
                    }
                    SignedConsensusMsg::Proposal(p) => {
                        out.push(PosAction::Broadcast(ConsensusWire::Proposal {
                            height: p.message.height.0,
                            round: p.message.round.as_i64(),
                            pol_round: p.message.pol_round.as_i64(),
                            block: (*p.message.value.block).clone(),
                            signature: Signature(p.signature.0),
                        }))
                    }
                }
                r.resume_with(())
            }
            Effect::PublishLivenessMsg(msg, r) => {
                if let mc::LivenessMsg::Vote(v) = msg {
                    out.push(PosAction::Broadcast(ConsensusWire::Vote {
                        vote: VoteWire::from_vote(&v.message),
                        signature: Signature(v.signature.0),
                    }));
                }
                r.resume_with(())
            }
            Effect::RepublishVote(v, r) => {
                out.push(PosAction::Broadcast(ConsensusWire::Vote {
                    vote: VoteWire::from_vote(&v.message),
                    signature: Signature(v.signature.0),
                }));
                r.resume_with(())
            }
            Effect::RepublishRoundCertificate(_, r) => r.resume_with(()),
            Effect::GetValue(height, round, _, r) => {
                out.push(PosAction::BuildValue {
                    height: height.0,
                    round,
                });
                r.resume_with(())
            }
            Effect::RestreamProposal(_, _, _, _, _, r) => r.resume_with(()),
            Effect::SyncValue(_, r) => r.resume_with(()),
            Effect::Decide(cert, _, r) => {
                match self.values.get(&cert.value_id) {
                    Some(v) => out.push(PosAction::Decided {
                        block: v.block.clone(),
                        cert: CommitCert {
                            height: cert.height.0,
                            round: cert.round.as_i64(),
                            block_hash: cert.value_id,
                            signatures: cert
                                .commit_signatures
                                .iter()
                                .map(|s| (s.address.0, Signature(s.signature.0)))
                                .collect(),
                        },
                    }),
                    None => tracing::error!(
                        "decided value {} at height {} is not among the known proposals",
                        cert.value_id,
                        cert.height
                    ),
                }
                r.resume_with(())
            }
            Effect::SignVote(v, r) => {
                // Refusing makes the core drop this input: the vote is neither kept nor sent.
                self.durable.record_signature(&v)?;
                let sig = self.sign_vote(&v);
                tracing::info!(
                    height = v.height.0,
                    round = v.round.as_i64(),
                    precommit = v.typ == VoteType::Precommit,
                    value = %match &v.value {
                        NilOrVal::Nil => "nil".to_owned(),
                        NilOrVal::Val(h) => h.to_hex(),
                    },
                    "signed vote"
                );
                r.resume_with(SignedMessage::new(v, sig))
            }
            Effect::SignProposal(_, _) if self.durable.failed => {
                return Err("consensus wal is not writable, refusing to sign a proposal".into())
            }
            Effect::SignProposal(p, r) => {
                let payload = proposal_payload(
                    p.height.0,
                    p.round.as_i64(),
                    p.pol_round.as_i64(),
                    &p.value.hash,
                    &p.proposer.0,
                );
                let sig = Sig(self
                    .key
                    .sign(Domain::ConsensusVote, self.network, &payload)
                    .0);
                r.resume_with(SignedMessage::new(p, sig))
            }
            Effect::VerifySignature(msg, pk, r) => r.resume_with(self.verify(&msg, &pk)),
            Effect::VerifyCommitCertificate(cert, vs, _, r) => {
                let sigs = cert.commit_signatures.iter().map(|s| {
                    (
                        s.address.0,
                        true,
                        Some(cert.value_id),
                        Signature(s.signature.0),
                    )
                });
                r.resume_with(self.check_cert(&vs, cert.height.0, cert.round.as_i64(), sigs, 2))
            }
            Effect::VerifyPolkaCertificate(cert, vs, _, r) => {
                let sigs = cert.polka_signatures.iter().map(|s| {
                    (
                        s.address.0,
                        false,
                        Some(cert.value_id),
                        Signature(s.signature.0),
                    )
                });
                r.resume_with(self.check_cert(&vs, cert.height.0, cert.round.as_i64(), sigs, 2))
            }
            Effect::VerifyRoundCertificate(cert, vs, _, r) => {
                let sigs = cert.round_signatures.iter().map(|s| {
                    let v = match &s.value_id {
                        NilOrVal::Nil => None,
                        NilOrVal::Val(h) => Some(*h),
                    };
                    (
                        s.address.0,
                        s.vote_type == VoteType::Precommit,
                        v,
                        Signature(s.signature.0),
                    )
                });
                // A round certificate proves at least f+1 (more than 1/3) voted in the round.
                r.resume_with(self.check_cert(&vs, cert.height.0, cert.round.as_i64(), sigs, 1))
            }
            Effect::WalAppend(entry, r) => {
                if !self.durable.replaying {
                    self.durable.append(&wal_record(&entry));
                }
                r.resume_with(())
            }
            Effect::ExtendVote(_, _, _, r) => r.resume_with(None),
            Effect::VerifyVoteExtension(_, _, _, _, _, r) => r.resume_with(Ok(())),
        })
    }
}

/// Check a received proposal's signature (before spending time validating its block).
pub fn verify_proposal_signature(
    network: NetworkId,
    height: u64,
    round: i64,
    pol_round: i64,
    hash: &Hash32,
    proposer: &NodeId,
    sig: &Signature,
) -> bool {
    sign::verify(
        proposer,
        Domain::ConsensusVote,
        network,
        &proposal_payload(height, round, pol_round, hash, proposer),
        sig,
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposer_selection_follows_stake() {
        let a = Keypair::dev("a").id();
        let b = Keypair::dev("b").id();
        let vs = PosValidatorSet::new(&[(a, 900), (b, 100)]);
        let mut count_a = 0;
        for h in 0..1000 {
            if vs.proposer(h, 0).unwrap().addr.0 == a {
                count_a += 1;
            }
        }
        assert!(
            (820..=970).contains(&count_a),
            "a proposed {count_a} of 1000"
        );
        assert_eq!(vs.proposer(5, 1), vs.proposer(5, 1), "deterministic");
    }

    #[test]
    fn certificate_needs_two_thirds_of_stake() {
        let net = NetworkId(1);
        let keys: Vec<Keypair> = (0..4).map(|i| Keypair::dev(&format!("v{i}"))).collect();
        let vs = PosValidatorSet::new(&keys.iter().map(|k| (k.id(), 10)).collect::<Vec<_>>());
        let hash = Hash32([9; 32]);
        let sig = |k: &Keypair| {
            let w = VoteWire {
                height: 3,
                round: 0,
                value: Some(hash),
                precommit: true,
                validator: k.id(),
            };
            (
                k.id(),
                k.sign(Domain::ConsensusVote, net, &w.signing_payload()),
            )
        };
        let mut cert = CommitCert {
            height: 3,
            round: 0,
            block_hash: hash,
            signatures: keys[..2].iter().map(sig).collect(),
        };
        assert!(cert
            .verify(net, &vs, &hash)
            .unwrap_err()
            .contains("more than 2/3"));
        cert.signatures.push(sig(&keys[2]));
        assert_eq!(cert.verify(net, &vs, &hash), Ok(30));
        assert!(cert.verify(net, &vs, &Hash32([1; 32])).is_err());
        assert!(cert.verify(NetworkId(2), &vs, &hash).is_err());
        let mut dup = cert.clone();
        dup.signatures.push(dup.signatures[0]);
        assert!(dup.verify(net, &vs, &hash).unwrap_err().contains("twice"));
    }
}

#[cfg(test)]
mod network_tests {
    //! Four validators, each with its own chain, exchanging messages through an in-memory
    //! queue with simulated timers: Malachite drives them to finality.
    use super::*;
    use crate::chain::Chain;
    use crate::config::NetworkConfig;
    use crate::state::Modules;
    use crate::store::SledStore;
    use crate::tx::Transaction;
    use crate::wal::ConsensusWal;
    use std::collections::VecDeque;

    struct V {
        key: Keypair,
        chain: Chain,
        engine: PosEngine,
        timers: Vec<Timeout>,
    }

    fn cfg() -> Arc<NetworkConfig> {
        let mut s = String::from(
            "name = \"p4\"\nnetwork_id = 44\nnodes = 4\n[consensus]\ntype = \"pos\"\n\
             [[genesis.allocation]]\naccount = \"dev:alice\"\nbalance = 1000\n",
        );
        for i in 0..4 {
            s.push_str(&format!(
                "[[genesis.validator]]\nid = \"dev:p4/node-{i}\"\nstake = 10\n"
            ));
        }
        Arc::new(NetworkConfig::from_toml_str(&s).unwrap())
    }

    fn timeouts() -> PosTimeouts {
        PosTimeouts {
            propose: Duration::from_millis(100),
            prevote: Duration::from_millis(100),
            precommit: Duration::from_millis(100),
        }
    }

    fn apply(
        vs: &mut [V],
        i: usize,
        actions: Vec<PosAction>,
        q: &mut VecDeque<(usize, ConsensusWire)>,
        evidence: &mut Vec<Evidence>,
    ) {
        let mut work: VecDeque<PosAction> = actions.into();
        while let Some(a) = work.pop_front() {
            match a {
                PosAction::Broadcast(m) => {
                    for j in 0..vs.len() {
                        if j != i {
                            q.push_back((j, m.clone()));
                        }
                    }
                }
                PosAction::Schedule(t, _) => vs[i].timers.push(t),
                PosAction::Cancel(t) => vs[i].timers.retain(|x| *x != t),
                PosAction::CancelAll => vs[i].timers.clear(),
                PosAction::BuildValue { height, round } => {
                    let v = &mut vs[i];
                    let alice = Keypair::dev("alice");
                    let nonce = v.chain.state().account(&alice.id()).nonce;
                    let tx = Transaction::transfer(
                        &alice,
                        v.chain.network(),
                        nonce,
                        Keypair::dev("bob").id(),
                        1,
                    );
                    let algo = v.chain.head_algo();
                    let (b, _) = v
                        .chain
                        .build_block(vec![(tx.id(algo), tx)], &v.key, height * 10);
                    let h = b.hash(algo);
                    work.extend(v.engine.propose(height, round, b, h));
                }
                PosAction::Decided { block, cert } => {
                    let v = &mut vs[i];
                    cert.verify(v.chain.network(), v.engine.validators(), &cert.block_hash)
                        .unwrap();
                    v.chain
                        .commit_final((*block).clone(), encode_canonical(&cert))
                        .unwrap();
                    let next = v.chain.head().0 + 1;
                    work.extend(v.engine.start_height(next));
                }
                PosAction::Evidence(e) => evidence.push(e),
            }
        }
    }

    fn deliver(v: &mut V, m: ConsensusWire) -> Vec<PosAction> {
        match m {
            ConsensusWire::Vote { vote, signature } => v.engine.on_vote(vote, signature),
            ConsensusWire::Proposal {
                height,
                round,
                pol_round,
                block,
                signature,
            } => {
                if height != v.chain.head().0 + 1 {
                    return vec![];
                }
                let Ok(hash) = v.chain.validate_candidate(&block) else {
                    return vec![];
                };
                let Some(proposer) = v.engine.proposer_of(height, round) else {
                    return vec![];
                };
                if !verify_proposal_signature(
                    v.chain.network(),
                    height,
                    round,
                    pol_round,
                    &hash,
                    &proposer,
                    &signature,
                ) {
                    return vec![];
                }
                v.engine
                    .on_proposal(height, round, pol_round, proposer, block, hash, signature)
            }
        }
    }

    #[test]
    fn four_validators_finalize_and_tolerate_one_down() {
        let cfg = cfg();
        let t = timeouts();
        let vals = cfg.validators();
        let mut vs: Vec<V> = (0..4)
            .map(|i| {
                let key = cfg.node_key(i).unwrap();
                V {
                    chain: Chain::open(
                        cfg.clone(),
                        Box::new(SledStore::temporary(1 << 30).unwrap()),
                        Modules::builtin(),
                    )
                    .unwrap(),
                    engine: PosEngine::new(key.clone(), cfg.network(), &vals, t),
                    key,
                    timers: vec![],
                }
            })
            .collect();
        let mut q = VecDeque::new();
        let mut ev = Vec::new();
        // node 3 is down for the whole run: 30 of 40 stake is still > 2/3
        let live = 3;
        for i in 0..live {
            let a = vs[i].engine.start_height(1);
            apply(&mut vs, i, a, &mut q, &mut ev);
        }
        let mut steps = 0;
        while vs[..live].iter().any(|v| v.chain.head().0 < 4) {
            steps += 1;
            assert!(
                steps < 20_000,
                "no progress: heads {:?}",
                vs.iter().map(|v| v.chain.head().0).collect::<Vec<_>>()
            );
            if let Some((j, m)) = q.pop_front() {
                if j < live {
                    let a = deliver(&mut vs[j], m);
                    apply(&mut vs, j, a, &mut q, &mut ev);
                }
                continue;
            }
            // quiet network: fire one pending timeout per live node (simulated time)
            for i in 0..live {
                if let Some(t) = vs[i].timers.first().copied() {
                    vs[i].timers.remove(0);
                    let a = vs[i].engine.on_timeout(t);
                    apply(&mut vs, i, a, &mut q, &mut ev);
                }
            }
        }
        let h = vs[0].chain.hash_at(3).unwrap();
        for v in &vs[..live] {
            assert_eq!(
                v.chain.hash_at(3).unwrap(),
                h,
                "same block at height 3 everywhere"
            );
            let cert: CommitCert =
                rmp_serde::from_slice(&v.chain.cert_bytes(3).unwrap().unwrap()).unwrap();
            assert!(cert
                .verify(v.chain.network(), v.engine.validators(), &h.unwrap())
                .is_ok());
        }
        assert!(
            vs[0]
                .chain
                .state()
                .account(&Keypair::dev("bob").id())
                .balance
                >= 3
        );
        assert!(
            ev.is_empty(),
            "honest validators produced no equivocation evidence"
        );
    }

    fn votes_of(actions: &[PosAction]) -> Vec<(VoteWire, Signature)> {
        actions
            .iter()
            .filter_map(|a| match a {
                PosAction::Broadcast(ConsensusWire::Vote { vote, signature }) => {
                    Some((vote.clone(), *signature))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_restarted_validator_replays_its_wal_and_signs_nothing_new() {
        let cfg = cfg();
        let t = timeouts();
        let vals = cfg.validators();
        let vset = PosValidatorSet::new(&vals);
        // a validator that does not propose at height 1, round 0
        let proposer = vset.proposer(1, 0).unwrap().addr.0;
        let key = (0..4)
            .map(|i| cfg.node_key(i).unwrap())
            .find(|k| k.id() != proposer)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let engine = || {
            let mut e = PosEngine::new(key.clone(), cfg.network(), &vals, t);
            let (wal, recovered) = ConsensusWal::open(dir.path()).unwrap();
            e.attach_wal(wal, recovered);
            e
        };
        // before the crash: no proposal came, the propose timeout fires, it prevotes nil
        let mut e = engine();
        e.start_height(1);
        let before = votes_of(&e.on_timeout(Timeout::propose(Round::new(0))));
        assert_eq!(before.len(), 1, "one prevote");
        assert_eq!(before[0].0.value, None);
        assert!(!before[0].0.precommit);
        drop(e);
        // after the restart, replaying the log re-derives exactly that vote, same signature
        let mut e = engine();
        let after = votes_of(&e.start_height(1));
        assert_eq!(after, before);
        assert_eq!(e.round(), 0);
        // and it will not sign another prevote for that round: the defence in depth
        let other = PosVote {
            height: Height(1),
            round: Round::new(0),
            value: NilOrVal::Val(Hash32([5; 32])),
            typ: VoteType::Prevote,
            validator: Addr(key.id()),
        };
        let refused = e.durable.record_signature(&other).unwrap_err();
        assert!(refused.contains("refusing to sign a second"), "{refused}");
        // a new height starts a fresh log: nothing is replayed into it
        e.start_height(2);
        drop(e);
        let (_, recovered) = ConsensusWal::open(dir.path()).unwrap();
        assert_eq!(recovered, Some((2, vec![])));
        // killed after the timeout was logged but before the vote was signed: the vote the
        // replay signs is recorded before it is sent
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = ConsensusWal::open(dir.path()).unwrap();
        wal.reset(1).unwrap();
        wal.append(&WalRecord::Timeout { kind: 0, round: 0 })
            .unwrap();
        drop(wal);
        let mut e = PosEngine::new(key.clone(), cfg.network(), &vals, t);
        let (wal, recovered) = ConsensusWal::open(dir.path()).unwrap();
        e.attach_wal(wal, recovered);
        assert_eq!(votes_of(&e.start_height(1)), before);
        drop(e);
        let (_, recovered) = ConsensusWal::open(dir.path()).unwrap();
        let records = recovered.map(|(_, r)| r).unwrap_or_default();
        assert!(
            records.contains(&WalRecord::Signed {
                round: 0,
                precommit: false,
                value: None
            }),
            "{records:?}"
        );
    }

    #[test]
    fn equivocation_is_detected() {
        let cfg = cfg();
        let t = timeouts();
        let vals = cfg.validators();
        let key0 = cfg.node_key(0).unwrap();
        let mut e = PosEngine::new(key0, cfg.network(), &vals, t);
        e.start_height(1);
        let bad = cfg.node_key(1).unwrap();
        let mut out = Vec::new();
        for v in [Hash32([1; 32]), Hash32([2; 32])] {
            let w = VoteWire {
                height: 1,
                round: 0,
                value: Some(v),
                precommit: false,
                validator: bad.id(),
            };
            let s = bad.sign(Domain::ConsensusVote, cfg.network(), &w.signing_payload());
            out.extend(e.on_vote(w, s));
        }
        let ev: Vec<_> = out
            .into_iter()
            .filter_map(|a| match a {
                PosAction::Evidence(e) => Some(e),
                _ => None,
            })
            .collect();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].validator, bad.id());
        assert_ne!(ev[0].first.0.value, ev[0].second.0.value);
    }
}
