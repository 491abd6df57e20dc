//! The native escrow module (`escrow`): native-asset escrows for the two-phase lock and the
//! HTLC, held in the module's own account (see [`crate::state::module_account`]).
//!
//! Methods (args are the positional msgpack of the matching `*Args` type, see
//! [`EscrowCall`]):
//! - `lock`: the signer puts `amount` (> 0) in escrow under a fresh `lock_id`, for
//!   `beneficiary`, until `timeout_ms` (hub time in milliseconds, compared with the block
//!   timestamp), on [`EscrowTerms::TwoPhase`] or [`EscrowTerms::Htlc`] terms. A repeated
//!   `lock_id` is refused.
//! - `release` (two-phase): pays the beneficiary on a [`Attestation`] with decision
//!   `Validated` for this network and lock, signed by at least `threshold` distinct keys of
//!   the configured hub attester set.
//! - `refund`: pays the owner back, on an `Aborted` attestation (two-phase) or, by anyone,
//!   once the block timestamp has reached the timeout.
//! - `claim` (HTLC): pays the beneficiary on a preimage of exactly 32 bytes whose sha256 is
//!   the hashlock, before the timeout.
//!
//! A lock leaves `Locked` at most once, so it is never both released and refunded and never
//! paid twice; a refused call reverts with its transaction and changes nothing.
//!
//! **Trust:** the escrow trusts a threshold of the hub's attester keys (the hub validators)
//! as named in the network's genesis config. The attestation bytes are exactly those of the
//! adapter API's `HubAttestation::payload`, signed under `Domain::Attestation` and the
//! target network's id, so an attestation for one network or lock is void on any other.

use crate::config::NetworkConfig;
use crate::module_error::ModuleError;
use crate::state::{CallCtx, Module, ModuleStore};
use crate::tx::{encode_canonical, TxKind};
use isthmus_core::{sign, Domain, Hash32, HashAlgo, Keypair, NetworkId, NodeId, Signature};
use serde::{Deserialize, Serialize};

/// The name the module is registered under.
pub const MODULE: &str = "escrow";

/// Length of an HTLC preimage, on every chain alike.
pub const PREIMAGE_LEN: usize = 32;

/// The hub's decision an attestation carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttestedDecision {
    Validated,
    Aborted,
}

impl AttestedDecision {
    fn byte(self) -> u8 {
        match self {
            AttestedDecision::Validated => 1,
            AttestedDecision::Aborted => 2,
        }
    }
}

/// The hub's signed statement that it recorded `decision` for `lock_id` at
/// `(record_height, record_tx)` of the hub chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    pub network: NetworkId,
    pub lock_id: Hash32,
    pub decision: AttestedDecision,
    pub record_height: u64,
    pub record_tx: String,
    pub signatures: Vec<(NodeId, Signature)>,
}

impl Attestation {
    /// The signed bytes (identical to the adapter API's `HubAttestation::payload`).
    pub fn payload(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96 + self.record_tx.len());
        out.extend_from_slice(b"isthmus/attestation/v1\x00");
        out.extend_from_slice(&self.network.0.to_be_bytes());
        out.extend_from_slice(&self.lock_id.0);
        out.push(self.decision.byte());
        out.extend_from_slice(&self.record_height.to_be_bytes());
        out.extend_from_slice(&(self.record_tx.len() as u64).to_be_bytes());
        out.extend_from_slice(self.record_tx.as_bytes());
        out
    }

    /// An attestation signed by `keys`.
    pub fn sign(
        keys: &[&Keypair],
        network: NetworkId,
        lock_id: Hash32,
        decision: AttestedDecision,
        record_height: u64,
        record_tx: String,
    ) -> Attestation {
        let mut a = Attestation {
            network,
            lock_id,
            decision,
            record_height,
            record_tx,
            signatures: vec![],
        };
        let payload = a.payload();
        a.signatures = keys
            .iter()
            .map(|k| (k.id(), k.sign(Domain::Attestation, network, &payload)))
            .collect();
        a
    }

    /// Accept only an attestation of `decision` for `lock_id` on `network`, validly signed
    /// by at least `threshold` (≥ 1) distinct keys of `attesters`. Signatures by other keys
    /// and repeats of a signer are not counted.
    pub fn verify(
        &self,
        network: NetworkId,
        lock_id: &Hash32,
        decision: AttestedDecision,
        attesters: &[NodeId],
        threshold: usize,
    ) -> Result<(), ModuleError> {
        if self.network != network {
            return Err(ModuleError::AttestationWrongNetwork {
                attested: self.network,
                here: network,
            });
        }
        if &self.lock_id != lock_id {
            return Err(ModuleError::AttestationWrongLock {
                attested: self.lock_id,
                lock: *lock_id,
            });
        }
        if self.decision != decision {
            return Err(ModuleError::AttestationWrongDecision {
                attested: self.decision,
                required: decision,
            });
        }
        if threshold == 0 || attesters.is_empty() {
            return Err(ModuleError::NoAttesters);
        }
        let payload = self.payload();
        let mut counted: Vec<NodeId> = Vec::new();
        for (signer, sig) in &self.signatures {
            if !attesters.contains(signer) || counted.contains(signer) {
                continue;
            }
            if sign::verify(signer, Domain::Attestation, network, &payload, sig).is_ok() {
                counted.push(*signer);
            }
        }
        if counted.len() < threshold {
            return Err(ModuleError::ThresholdNotMet {
                subject: "attestation".to_owned(),
                valid: counted.len(),
                required: threshold,
            });
        }
        Ok(())
    }
}

/// What releases an escrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EscrowTerms {
    /// A `Validated` hub attestation releases, an `Aborted` one or the timeout refunds.
    TwoPhase,
    /// The sha256 preimage of `hashlock` claims before the timeout; the timeout refunds.
    Htlc { hashlock: Hash32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockArgs {
    pub lock_id: Hash32,
    pub beneficiary: NodeId,
    pub amount: u64,
    pub timeout_ms: u64,
    pub terms: EscrowTerms,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseArgs {
    pub lock_id: Hash32,
    pub attestation: Attestation,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundArgs {
    pub lock_id: Hash32,
    /// `None`: by timeout.
    pub attestation: Option<Attestation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimArgs {
    pub lock_id: Hash32,
    pub preimage: serde_bytes::ByteBuf,
}

/// One call of the escrow module, as carried by a [`TxKind::ModuleCall`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EscrowCall {
    Lock(LockArgs),
    Release(ReleaseArgs),
    Refund(RefundArgs),
    Claim(ClaimArgs),
}

impl EscrowCall {
    pub fn method(&self) -> &'static str {
        match self {
            EscrowCall::Lock(_) => "lock",
            EscrowCall::Release(_) => "release",
            EscrowCall::Refund(_) => "refund",
            EscrowCall::Claim(_) => "claim",
        }
    }

    pub fn lock_id(&self) -> Hash32 {
        match self {
            EscrowCall::Lock(a) => a.lock_id,
            EscrowCall::Release(a) => a.lock_id,
            EscrowCall::Refund(a) => a.lock_id,
            EscrowCall::Claim(a) => a.lock_id,
        }
    }

    /// The transaction kind that makes this call.
    pub fn to_kind(&self) -> TxKind {
        let args = match self {
            EscrowCall::Lock(a) => encode_canonical(a),
            EscrowCall::Release(a) => encode_canonical(a),
            EscrowCall::Refund(a) => encode_canonical(a),
            EscrowCall::Claim(a) => encode_canonical(a),
        };
        TxKind::ModuleCall {
            module: MODULE.to_owned(),
            method: self.method().to_owned(),
            args,
        }
    }

    /// Decode a call of this module from its method and args.
    pub fn decode(method: &str, args: &[u8]) -> Result<EscrowCall, ModuleError> {
        fn de<T: serde::de::DeserializeOwned>(m: &str, b: &[u8]) -> Result<T, ModuleError> {
            rmp_serde::from_slice(b).map_err(|e| ModuleError::bad_args(m, e))
        }
        Ok(match method {
            "lock" => EscrowCall::Lock(de(method, args)?),
            "release" => EscrowCall::Release(de(method, args)?),
            "refund" => EscrowCall::Refund(de(method, args)?),
            "claim" => EscrowCall::Claim(de(method, args)?),
            other => return Err(ModuleError::unknown_method(MODULE, other)),
        })
    }

    /// The escrow call a transaction kind makes, if it is one.
    pub fn from_kind(kind: &TxKind) -> Option<Result<EscrowCall, ModuleError>> {
        match kind {
            TxKind::ModuleCall {
                module,
                method,
                args,
            } if module == MODULE => Some(Self::decode(method, args)),
            _ => None,
        }
    }
}

/// Where an escrow stands. Leaves `Locked` at most once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EscrowStatus {
    Locked,
    Released { tx: Hash32 },
    Refunded { tx: Hash32 },
    Claimed { tx: Hash32, preimage: Hash32 },
}

/// One escrow, as stored under [`lock_key`] in the module's storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscrowLock {
    pub owner: NodeId,
    pub beneficiary: NodeId,
    pub amount: u64,
    pub timeout_ms: u64,
    pub terms: EscrowTerms,
    /// The transaction that locked, and its block height.
    pub lock_tx: Hash32,
    pub height: u64,
    pub status: EscrowStatus,
}

impl EscrowLock {
    pub fn decode(bytes: &[u8]) -> Result<EscrowLock, ModuleError> {
        rmp_serde::from_slice(bytes).map_err(|e| ModuleError::corrupt("escrow record", e))
    }
}

/// The module-storage key of a lock.
pub fn lock_key(lock_id: &Hash32) -> Vec<u8> {
    let mut k = b"l/".to_vec();
    k.extend_from_slice(&lock_id.0);
    k
}

/// The full state key of a lock (for [`crate::node::NodeHandle::state_get`]).
pub fn lock_state_key(lock_id: &Hash32) -> Vec<u8> {
    crate::state::module_key(MODULE, &lock_key(lock_id))
}

/// The escrow module of one network.
#[derive(Debug, Clone)]
pub struct EscrowModule {
    network: NetworkId,
    attesters: Vec<NodeId>,
    threshold: usize,
}

impl EscrowModule {
    pub fn new(network: NetworkId, attesters: Vec<NodeId>, threshold: usize) -> EscrowModule {
        EscrowModule {
            network,
            attesters,
            threshold,
        }
    }

    pub fn from_config(cfg: &NetworkConfig) -> EscrowModule {
        Self::new(cfg.network(), cfg.escrow.attesters(), cfg.escrow.threshold)
    }

    fn load(store: &ModuleStore<'_>, lock_id: &Hash32) -> Result<EscrowLock, ModuleError> {
        let bytes = store
            .get(&lock_key(lock_id))
            .ok_or(ModuleError::LockNotFound(*lock_id))?;
        EscrowLock::decode(&bytes)
    }

    fn locked(store: &ModuleStore<'_>, lock_id: &Hash32) -> Result<EscrowLock, ModuleError> {
        let l = Self::load(store, lock_id)?;
        if l.status != EscrowStatus::Locked {
            return Err(ModuleError::LockSettled {
                lock_id: *lock_id,
                status: l.status,
            });
        }
        Ok(l)
    }

    fn settle(
        store: &mut ModuleStore<'_>,
        lock_id: &Hash32,
        mut l: EscrowLock,
        to: NodeId,
        status: EscrowStatus,
    ) -> Result<(), ModuleError> {
        store.pay_out(to, l.amount)?;
        l.status = status;
        store.put(&lock_key(lock_id), encode_canonical(&l));
        Ok(())
    }

    fn lock(
        &self,
        ctx: &CallCtx,
        store: &mut ModuleStore<'_>,
        a: LockArgs,
    ) -> Result<(), ModuleError> {
        if a.amount == 0 {
            return Err(ModuleError::ZeroAmount);
        }
        if store.get(&lock_key(&a.lock_id)).is_some() {
            return Err(ModuleError::LockExists(a.lock_id));
        }
        if a.timeout_ms <= ctx.timestamp_ms {
            return Err(ModuleError::TimeoutInPast {
                timeout_ms: a.timeout_ms,
                block_ms: ctx.timestamp_ms,
            });
        }
        store.take_from_sender(a.amount)?;
        let l = EscrowLock {
            owner: ctx.sender,
            beneficiary: a.beneficiary,
            amount: a.amount,
            timeout_ms: a.timeout_ms,
            terms: a.terms,
            lock_tx: ctx.tx_id,
            height: ctx.height,
            status: EscrowStatus::Locked,
        };
        store.put(&lock_key(&a.lock_id), encode_canonical(&l));
        Ok(())
    }

    fn release(
        &self,
        ctx: &CallCtx,
        store: &mut ModuleStore<'_>,
        a: ReleaseArgs,
    ) -> Result<(), ModuleError> {
        let l = Self::locked(store, &a.lock_id)?;
        if l.terms != EscrowTerms::TwoPhase {
            return Err(ModuleError::WrongTerms(
                "an htlc is claimed with its preimage, not released",
            ));
        }
        a.attestation.verify(
            self.network,
            &a.lock_id,
            AttestedDecision::Validated,
            &self.attesters,
            self.threshold,
        )?;
        let to = l.beneficiary;
        Self::settle(
            store,
            &a.lock_id,
            l,
            to,
            EscrowStatus::Released { tx: ctx.tx_id },
        )
    }

    fn refund(
        &self,
        ctx: &CallCtx,
        store: &mut ModuleStore<'_>,
        a: RefundArgs,
    ) -> Result<(), ModuleError> {
        let l = Self::locked(store, &a.lock_id)?;
        match (&a.attestation, l.terms) {
            (Some(_), EscrowTerms::Htlc { .. }) => {
                return Err(ModuleError::WrongTerms(
                    "an htlc is refunded by its timeout only",
                ))
            }
            (Some(att), EscrowTerms::TwoPhase) => att.verify(
                self.network,
                &a.lock_id,
                AttestedDecision::Aborted,
                &self.attesters,
                self.threshold,
            )?,
            (None, _) => {
                if ctx.timestamp_ms < l.timeout_ms {
                    return Err(ModuleError::DeadlineNotReached {
                        timeout_ms: l.timeout_ms,
                        block_ms: ctx.timestamp_ms,
                    });
                }
            }
        }
        let to = l.owner;
        Self::settle(
            store,
            &a.lock_id,
            l,
            to,
            EscrowStatus::Refunded { tx: ctx.tx_id },
        )
    }

    fn claim(
        &self,
        ctx: &CallCtx,
        store: &mut ModuleStore<'_>,
        a: ClaimArgs,
    ) -> Result<(), ModuleError> {
        let l = Self::locked(store, &a.lock_id)?;
        let EscrowTerms::Htlc { hashlock } = l.terms else {
            return Err(ModuleError::WrongTerms(
                "a two-phase escrow is released by the hub, not claimed",
            ));
        };
        let preimage: [u8; PREIMAGE_LEN] =
            a.preimage
                .as_slice()
                .try_into()
                .map_err(|_| ModuleError::BadPreimageLength {
                    len: a.preimage.len(),
                    required: PREIMAGE_LEN,
                })?;
        if HashAlgo::Sha256.digest(&preimage) != hashlock {
            return Err(ModuleError::BadPreimage);
        }
        if ctx.timestamp_ms >= l.timeout_ms {
            return Err(ModuleError::DeadlinePassed {
                timeout_ms: l.timeout_ms,
                block_ms: ctx.timestamp_ms,
            });
        }
        let to = l.beneficiary;
        Self::settle(
            store,
            &a.lock_id,
            l,
            to,
            EscrowStatus::Claimed {
                tx: ctx.tx_id,
                preimage: Hash32(preimage),
            },
        )
    }
}

impl Module for EscrowModule {
    fn call(
        &self,
        ctx: &CallCtx,
        store: &mut ModuleStore<'_>,
        method: &str,
        args: &[u8],
    ) -> Result<(), ModuleError> {
        match EscrowCall::decode(method, args)? {
            EscrowCall::Lock(a) => self.lock(ctx, store, a),
            EscrowCall::Release(a) => self.release(ctx, store, a),
            EscrowCall::Refund(a) => self.refund(ctx, store, a),
            EscrowCall::Claim(a) => self.claim(ctx, store, a),
        }
    }
}

/// The name the decision module is registered under (on the hub chain).
pub const DECISIONS_MODULE: &str = "decisions";

/// `record`: write the hub's decision for a contract instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordArgs {
    pub instance: Hash32,
    pub decision: AttestedDecision,
}

/// A recorded decision: where it was first recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub decision: AttestedDecision,
    pub height: u64,
    pub tx: Hash32,
}

/// The full state key of `recorder`'s decision for `instance`.
pub fn decision_state_key(recorder: &NodeId, instance: &Hash32) -> Vec<u8> {
    let mut k = b"d/".to_vec();
    k.extend_from_slice(&recorder.0);
    k.extend_from_slice(&instance.0);
    crate::state::module_key(DECISIONS_MODULE, &k)
}

/// The hub chain's record of two-phase decisions: write-once per (signer, instance).
/// Recording the same decision again changes nothing (the first record stands, so a retry
/// after a crash gets the same record); a conflicting decision is refused. Records are
/// scoped by the signer, so only the hub's key writes the hub's decisions.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecisionModule;

impl Module for DecisionModule {
    fn call(
        &self,
        ctx: &CallCtx,
        store: &mut ModuleStore<'_>,
        method: &str,
        args: &[u8],
    ) -> Result<(), ModuleError> {
        if method != "record" {
            return Err(ModuleError::unknown_method(DECISIONS_MODULE, method));
        }
        let a: RecordArgs =
            rmp_serde::from_slice(args).map_err(|e| ModuleError::bad_args(method, e))?;
        let mut key = b"d/".to_vec();
        key.extend_from_slice(&ctx.sender.0);
        key.extend_from_slice(&a.instance.0);
        if let Some(old) = store.get(&key) {
            let old: DecisionRecord = rmp_serde::from_slice(&old)
                .map_err(|e| ModuleError::corrupt("decision record", e))?;
            if old.decision != a.decision {
                return Err(ModuleError::DecisionConflict {
                    instance: a.instance,
                    recorded: old.decision,
                });
            }
            return Ok(());
        }
        let rec = DecisionRecord {
            decision: a.decision,
            height: ctx.height,
            tx: ctx.tx_id,
        };
        store.put(&key, encode_canonical(&rec));
        Ok(())
    }
}

/// The transaction kind that records `decision` for `instance`.
pub fn record_decision_kind(instance: Hash32, decision: AttestedDecision) -> TxKind {
    TxKind::ModuleCall {
        module: DECISIONS_MODULE.to_owned(),
        method: "record".to_owned(),
        args: encode_canonical(&RecordArgs { instance, decision }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{module_account, ExecRules, Modules, State};
    use crate::tx::Transaction;
    use std::sync::Arc;

    const NET: NetworkId = NetworkId(5);
    const RULES: ExecRules = ExecRules {
        version: 1,
        forbid_zero_transfers: false,
    };
    const SECRET: [u8; 32] = [7; 32];

    struct World {
        state: State,
        modules: Modules,
        hub: Vec<Keypair>,
        alice: Keypair,
        bob: Keypair,
        nonces: std::collections::HashMap<NodeId, u64>,
    }

    impl World {
        fn new() -> World {
            let hub: Vec<Keypair> = ["h1", "h2", "h3"].iter().map(|l| Keypair::dev(l)).collect();
            let alice = Keypair::dev("alice");
            let bob = Keypair::dev("bob");
            let mut modules = Modules::builtin();
            modules.register(
                MODULE,
                Arc::new(EscrowModule::new(
                    NET,
                    hub.iter().map(Keypair::id).collect(),
                    2,
                )),
            );
            World {
                state: State::genesis([(alice.id(), 1_000), (bob.id(), 10)]),
                modules,
                hub,
                alice,
                bob,
                nonces: Default::default(),
            }
        }

        /// Run one call at `time_ms`; returns the module's refusal, if any, as its receipt
        /// records it: `(code, message)`.
        fn call(
            &mut self,
            who: &Keypair,
            call: EscrowCall,
            time_ms: u64,
        ) -> Option<(String, String)> {
            let nonce = self.nonces.entry(who.id()).or_default();
            let tx = Transaction::sign(who, NET, *nonce, call.to_kind());
            *nonce += 1;
            let id = tx.id(HashAlgo::Sha256);
            let (diff, receipts) = self
                .state
                .execute(&[tx], &[id], 1, time_ms, &RULES, &self.modules)
                .unwrap();
            self.state.apply(&diff);
            let r = &receipts[0];
            assert_eq!(r.code.is_some(), r.error.is_some(), "{r:?}");
            r.code.clone().zip(r.error.clone())
        }

        /// A call that must be refused with `code`, its message naming `needle`, leaving
        /// balances and the escrow record unchanged.
        fn refused(
            &mut self,
            who: &Keypair,
            call: EscrowCall,
            time_ms: u64,
            code: &str,
            needle: &str,
        ) {
            let lock = lock_state_key(&call.lock_id());
            let before = (self.balances(), self.state.get(&lock));
            let refusal = self.call(who, call, time_ms);
            let (got, msg) = refusal.unwrap_or_else(|| panic!("expected a `{code}` refusal"));
            assert_eq!(got, code, "refused as `{got}` ({msg}), not `{code}`");
            assert!(msg.contains(needle), "`{msg}` does not mention `{needle}`");
            assert_eq!(before, (self.balances(), self.state.get(&lock)));
        }

        fn balances(&self) -> [u64; 3] {
            [
                self.state.account(&self.alice.id()).balance,
                self.state.account(&self.bob.id()).balance,
                self.state.account(&module_account(MODULE)).balance,
            ]
        }

        fn attest(&self, lock: Hash32, d: AttestedDecision, signers: &[usize]) -> Attestation {
            let keys: Vec<&Keypair> = signers.iter().map(|i| &self.hub[*i]).collect();
            Attestation::sign(&keys, NET, lock, d, 3, "rec".into())
        }

        fn lock(&mut self, lock_id: Hash32, terms: EscrowTerms, timeout_ms: u64) {
            let bob = self.bob.id();
            let alice = self.alice.clone();
            let call = EscrowCall::Lock(LockArgs {
                lock_id,
                beneficiary: bob,
                amount: 100,
                timeout_ms,
                terms,
            });
            assert_eq!(self.call(&alice, call, 1_000), None);
            assert_eq!(self.balances(), [900, 10, 100]);
        }

        fn record(&self, lock_id: &Hash32) -> EscrowLock {
            EscrowLock::decode(&self.state.get(&lock_state_key(lock_id)).unwrap()).unwrap()
        }
    }

    fn id(n: u8) -> Hash32 {
        Hash32([n; 32])
    }

    fn release(lock_id: Hash32, attestation: Attestation) -> EscrowCall {
        EscrowCall::Release(ReleaseArgs {
            lock_id,
            attestation,
        })
    }

    fn refund(lock_id: Hash32, attestation: Option<Attestation>) -> EscrowCall {
        EscrowCall::Refund(RefundArgs {
            lock_id,
            attestation,
        })
    }

    #[test]
    fn lock_refuses_zero_reused_ids_overdraw_and_past_timeouts() {
        let mut w = World::new();
        let alice = w.alice.clone();
        let bob = w.bob.id();
        let mk = |lock_id, amount, timeout_ms| {
            EscrowCall::Lock(LockArgs {
                lock_id,
                beneficiary: bob,
                amount,
                timeout_ms,
                terms: EscrowTerms::TwoPhase,
            })
        };
        w.refused(&alice, mk(id(1), 0, 5_000), 1_000, "zero_amount", "above 0");
        w.refused(
            &alice,
            mk(id(1), 5_000, 5_000),
            1_000,
            "insufficient_funds",
            "insufficient",
        );
        w.refused(
            &alice,
            mk(id(1), 10, 1_000),
            1_000,
            "timeout_in_past",
            "not after the block time",
        );
        w.lock(id(1), EscrowTerms::TwoPhase, 5_000);
        w.refused(
            &alice,
            mk(id(1), 10, 5_000),
            1_000,
            "lock_exists",
            "already used",
        );
        let r = w.record(&id(1));
        assert_eq!((r.owner, r.beneficiary, r.amount), (alice.id(), bob, 100));
        assert_eq!(r.status, EscrowStatus::Locked);
    }

    #[test]
    fn release_needs_a_threshold_of_trusted_attesters_for_this_network_and_lock() {
        let mut w = World::new();
        let bob = w.bob.clone();
        w.lock(id(1), EscrowTerms::TwoPhase, 5_000);
        let v = AttestedDecision::Validated;
        let too_few = w.attest(id(1), v, &[0]);
        w.refused(
            &bob,
            release(id(1), too_few),
            1_000,
            "threshold_not_met",
            "1 valid signature(s)",
        );
        let mut dup = w.attest(id(1), v, &[0]);
        dup.signatures.push(dup.signatures[0]);
        w.refused(
            &bob,
            release(id(1), dup),
            1_000,
            "threshold_not_met",
            "1 valid signature(s)",
        );
        let outsiders = [Keypair::dev("x1"), Keypair::dev("x2")];
        let untrusted = Attestation::sign(
            &[&outsiders[0], &outsiders[1]],
            NET,
            id(1),
            v,
            3,
            "rec".into(),
        );
        w.refused(
            &bob,
            release(id(1), untrusted),
            1_000,
            "threshold_not_met",
            "0 valid signature(s)",
        );
        let mut other_net = w.attest(id(1), v, &[0, 1]);
        other_net.network = NetworkId(6);
        w.refused(
            &bob,
            release(id(1), other_net.clone()),
            1_000,
            "attestation_wrong_network",
            "network 6",
        );
        // Relabelled back to this network, the signatures (made for network 6) do not count.
        let keys: Vec<&Keypair> = w.hub.iter().take(2).collect();
        let mut signed_elsewhere =
            Attestation::sign(&keys, NetworkId(6), id(1), v, 3, "rec".into());
        signed_elsewhere.network = NET;
        w.refused(
            &bob,
            release(id(1), signed_elsewhere),
            1_000,
            "threshold_not_met",
            "0 valid signature(s)",
        );
        let other_lock = w.attest(id(2), v, &[0, 1]);
        w.refused(
            &bob,
            release(id(1), other_lock),
            1_000,
            "attestation_wrong_lock",
            "is for lock",
        );
        let aborted = w.attest(id(1), AttestedDecision::Aborted, &[0, 1]);
        w.refused(
            &bob,
            release(id(1), aborted),
            1_000,
            "attestation_wrong_decision",
            "Validated is required",
        );
        let mut tampered = w.attest(id(1), v, &[0, 1]);
        tampered.record_height += 1;
        w.refused(
            &bob,
            release(id(1), tampered),
            1_000,
            "threshold_not_met",
            "0 valid signature(s)",
        );
        let good = w.attest(id(1), v, &[0, 2]);
        assert_eq!(w.call(&bob, release(id(1), good.clone()), 1_000), None);
        assert_eq!(w.balances(), [900, 110, 0]);
        assert!(matches!(
            w.record(&id(1)).status,
            EscrowStatus::Released { .. }
        ));
        w.refused(
            &bob,
            release(id(1), good),
            1_000,
            "lock_settled",
            "already Released",
        );
        let abort = w.attest(id(1), AttestedDecision::Aborted, &[0, 1]);
        w.refused(
            &bob,
            refund(id(1), Some(abort)),
            9_000,
            "lock_settled",
            "already Released",
        );
        w.refused(
            &bob,
            refund(id(1), None),
            9_000,
            "lock_settled",
            "already Released",
        );
    }

    #[test]
    fn refund_on_abort_or_after_timeout_only_and_never_after() {
        let mut w = World::new();
        let bob = w.bob.clone();
        w.lock(id(1), EscrowTerms::TwoPhase, 5_000);
        w.refused(
            &bob,
            refund(id(1), None),
            4_999,
            "deadline_not_reached",
            "timeout 5000 ms not reached",
        );
        let validated = w.attest(id(1), AttestedDecision::Validated, &[0, 1]);
        w.refused(
            &bob,
            refund(id(1), Some(validated)),
            1_000,
            "attestation_wrong_decision",
            "Aborted is required",
        );
        let weak = w.attest(id(1), AttestedDecision::Aborted, &[1]);
        w.refused(
            &bob,
            refund(id(1), Some(weak)),
            1_000,
            "threshold_not_met",
            "1 valid signature(s)",
        );
        let abort = w.attest(id(1), AttestedDecision::Aborted, &[1, 2]);
        // Anyone may present it; the owner is paid.
        assert_eq!(
            w.call(&bob, refund(id(1), Some(abort.clone())), 1_000),
            None
        );
        assert_eq!(w.balances(), [1_000, 10, 0]);
        w.refused(
            &bob,
            refund(id(1), Some(abort)),
            1_000,
            "lock_settled",
            "already Refunded",
        );
        let validated = w.attest(id(1), AttestedDecision::Validated, &[0, 1]);
        w.refused(
            &bob,
            release(id(1), validated),
            1_000,
            "lock_settled",
            "already Refunded",
        );

        w.lock(id(2), EscrowTerms::TwoPhase, 5_000);
        assert_eq!(w.call(&bob, refund(id(2), None), 5_000), None);
        assert_eq!(w.balances(), [1_000, 10, 0]);
        w.refused(
            &bob,
            refund(id(3), None),
            9_000,
            "lock_not_found",
            "no escrow",
        );
    }

    #[test]
    fn htlc_claims_with_exactly_32_bytes_before_the_timeout() {
        let mut w = World::new();
        let bob = w.bob.clone();
        let hashlock = HashAlgo::Sha256.digest(&SECRET);
        w.lock(id(1), EscrowTerms::Htlc { hashlock }, 5_000);
        let claim = |p: &[u8]| {
            EscrowCall::Claim(ClaimArgs {
                lock_id: id(1),
                preimage: serde_bytes::ByteBuf::from(p.to_vec()),
            })
        };
        let mut long = SECRET.to_vec();
        long.push(0);
        w.refused(&bob, claim(&long), 1_000, "bad_preimage_length", "33 bytes");
        w.refused(
            &bob,
            claim(&SECRET[..31]),
            1_000,
            "bad_preimage_length",
            "31 bytes",
        );
        w.refused(
            &bob,
            claim(&[8; 32]),
            1_000,
            "bad_preimage",
            "does not hash",
        );
        w.refused(&bob, claim(&SECRET), 5_000, "deadline_passed", "timed out");
        let v = w.attest(id(1), AttestedDecision::Validated, &[0, 1]);
        w.refused(
            &bob,
            release(id(1), v),
            1_000,
            "wrong_terms",
            "claimed with its preimage",
        );
        let abort = w.attest(id(1), AttestedDecision::Aborted, &[0, 1]);
        w.refused(
            &bob,
            refund(id(1), Some(abort)),
            1_000,
            "wrong_terms",
            "timeout only",
        );
        w.refused(
            &bob,
            refund(id(1), None),
            4_000,
            "deadline_not_reached",
            "not reached",
        );
        assert_eq!(w.call(&bob, claim(&SECRET), 4_999), None);
        assert_eq!(w.balances(), [900, 110, 0]);
        assert_eq!(
            w.record(&id(1)).status,
            EscrowStatus::Claimed {
                tx: match w.record(&id(1)).status {
                    EscrowStatus::Claimed { tx, .. } => tx,
                    _ => unreachable!(),
                },
                preimage: Hash32(SECRET)
            }
        );
        w.refused(
            &bob,
            claim(&SECRET),
            1_000,
            "lock_settled",
            "already Claimed",
        );
        w.refused(
            &bob,
            refund(id(1), None),
            9_000,
            "lock_settled",
            "already Claimed",
        );
    }

    #[test]
    fn htlc_refunds_after_its_timeout() {
        let mut w = World::new();
        let bob = w.bob.clone();
        let hashlock = HashAlgo::Sha256.digest(&SECRET);
        w.lock(id(1), EscrowTerms::Htlc { hashlock }, 5_000);
        assert_eq!(w.call(&bob, refund(id(1), None), 5_000), None);
        assert_eq!(w.balances(), [1_000, 10, 0]);
        let claim = EscrowCall::Claim(ClaimArgs {
            lock_id: id(1),
            preimage: serde_bytes::ByteBuf::from(SECRET.to_vec()),
        });
        w.refused(&bob, claim, 1_000, "lock_settled", "already Refunded");
    }

    #[test]
    fn no_attesters_means_no_attested_release() {
        let m = EscrowModule::new(NET, vec![], 0);
        let att = Attestation::sign(
            &[&Keypair::dev("h1")],
            NET,
            id(1),
            AttestedDecision::Validated,
            1,
            "r".into(),
        );
        let err = att
            .verify(
                NET,
                &id(1),
                AttestedDecision::Validated,
                &m.attesters,
                m.threshold,
            )
            .unwrap_err();
        assert_eq!(err, ModuleError::NoAttesters);
        assert_eq!(err.code(), "no_attesters");
    }

    #[test]
    fn a_module_cannot_pay_out_more_than_it_holds() {
        let mut w = World::new();
        w.lock(id(1), EscrowTerms::TwoPhase, 5_000);
        // Someone donates to the module account directly; it stays in the account.
        let bob = w.bob.clone();
        let tx = Transaction::transfer(&bob, NET, 0, module_account(MODULE), 5);
        let (diff, _) = w
            .state
            .execute(&[tx], &[], 1, 0, &RULES, &w.modules)
            .unwrap();
        w.state.apply(&diff);
        w.nonces.insert(bob.id(), 1);
        let good = w.attest(id(1), AttestedDecision::Validated, &[0, 1]);
        assert_eq!(w.call(&bob, release(id(1), good), 1_000), None);
        assert_eq!(w.balances(), [900, 105, 5]);
    }

    #[test]
    fn decisions_are_write_once_per_signer_and_idempotent() {
        let hub = Keypair::dev("hub");
        let other = Keypair::dev("other");
        let mut modules = Modules::builtin();
        modules.register(DECISIONS_MODULE, Arc::new(DecisionModule));
        let mut state = State::genesis([]);
        let mut run = |k: &Keypair, nonce: u64, d: AttestedDecision, height: u64| {
            let tx = Transaction::sign(k, NET, nonce, record_decision_kind(id(1), d));
            let txid = tx.id(HashAlgo::Sha256);
            let (diff, r) = state
                .execute(&[tx], &[txid], height, 0, &RULES, &modules)
                .unwrap();
            state.apply(&diff);
            (
                txid,
                r[0].code.clone().zip(r[0].error.clone()),
                state.get(&decision_state_key(&k.id(), &id(1))),
            )
        };
        let (first, err, rec) = run(&hub, 0, AttestedDecision::Validated, 4);
        assert_eq!(err, None);
        let want = DecisionRecord {
            decision: AttestedDecision::Validated,
            height: 4,
            tx: first,
        };
        assert_eq!(rec, Some(encode_canonical(&want)));
        // The same decision again: accepted, the first record stands.
        let (_, err, again) = run(&hub, 1, AttestedDecision::Validated, 5);
        assert_eq!((err, again), (None, Some(encode_canonical(&want))));
        // A conflicting one: refused, unchanged.
        let (_, err, after) = run(&hub, 2, AttestedDecision::Aborted, 6);
        assert_eq!(
            err.map(|(code, _)| code).as_deref(),
            Some("decision_conflict")
        );
        assert_eq!(after, Some(encode_canonical(&want)));
        // Another signer writes only its own namespace.
        let (_, err, theirs) = run(&other, 0, AttestedDecision::Aborted, 7);
        assert_eq!(err, None);
        assert!(theirs.is_some());
        assert_eq!(
            state.get(&decision_state_key(&hub.id(), &id(1))),
            Some(encode_canonical(&want))
        );
    }

    #[test]
    fn refused_escrow_calls_record_their_code_and_message_in_the_receipt() {
        let mut w = World::new();
        let alice = w.alice.clone();
        let bob = w.bob.clone();
        let run = |w: &mut World, who: &Keypair, call: EscrowCall| {
            let nonce = w.nonces.entry(who.id()).or_default();
            let tx = Transaction::sign(who, NET, *nonce, call.to_kind());
            *nonce += 1;
            let txid = tx.id(HashAlgo::Sha256);
            let (diff, r) = w
                .state
                .execute(&[tx], &[txid], 1, 1_000, &RULES, &w.modules)
                .unwrap();
            w.state.apply(&diff);
            r.into_iter().next().unwrap()
        };
        // Release of a lock that does not exist.
        let good = w.attest(id(9), AttestedDecision::Validated, &[0, 1]);
        let r = run(&mut w, &bob, release(id(9), good));
        let want = ModuleError::LockNotFound(id(9));
        assert_eq!(r.code.as_deref(), Some("lock_not_found"));
        assert_eq!(r.error, Some(want.to_string()));
        assert!(!r.is_ok());
        // A lock of more than the signer holds.
        let r = run(
            &mut w,
            &alice,
            EscrowCall::Lock(LockArgs {
                lock_id: id(1),
                beneficiary: bob.id(),
                amount: 5_000,
                timeout_ms: 9_000,
                terms: EscrowTerms::TwoPhase,
            }),
        );
        let want = ModuleError::InsufficientFunds {
            account: alice.id(),
            have: 1_000,
            need: 5_000,
        };
        assert_eq!(r.code.as_deref(), Some(want.code()));
        assert_eq!(r.code.as_deref(), Some("insufficient_funds"));
        assert_eq!(r.error, Some(want.to_string()));
        assert_eq!(w.balances(), [1_000, 10, 0]);
    }

    #[test]
    fn calls_round_trip_through_tx_kinds() {
        let call = EscrowCall::Claim(ClaimArgs {
            lock_id: id(4),
            preimage: serde_bytes::ByteBuf::from(vec![1, 2]),
        });
        let kind = call.to_kind();
        assert_eq!(EscrowCall::from_kind(&kind), Some(Ok(call)));
        let other = TxKind::ModuleCall {
            module: MODULE.into(),
            method: "steal".into(),
            args: vec![],
        };
        assert_eq!(
            EscrowCall::from_kind(&other).unwrap().map_err(|e| e.code()),
            Err("unknown_method")
        );
        assert_eq!(
            EscrowCall::from_kind(&TxKind::Transfer {
                to: NodeId([0; 32]),
                amount: 1
            }),
            None
        );
    }
}
