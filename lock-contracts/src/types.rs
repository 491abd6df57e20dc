//! Domain types shared by the lock machines: ids, legs, observations, actions, status.

use isthmus_core::{Hash32, HashAlgo, NetworkId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Hub time, in seconds. The machines never read a clock: time only enters through
/// `Tick` events, and deadlines on a leg's own chain are mapped to it by that leg's adapter.
pub type Timestamp = u64;

/// Identifies one contract instance (a transfer or a swap). Assigned by the hub.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstanceId(pub Hash32);

impl InstanceId {
    /// Derive an id from arbitrary bytes (e.g. the hub's idempotency key and request body).
    pub fn derive(parts: &[&[u8]]) -> Self {
        let mut all: Vec<&[u8]> = vec![b"isthmus/instance/v1\x00"];
        all.extend_from_slice(parts);
        InstanceId(HashAlgo::Sha256.digest_parts(&all))
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstanceId({})", &self.0.to_hex()[..12])
    }
}

/// The two legs of an instance. In an HTLC swap, `A` is the initiator's lock (timelock T1)
/// and `B` the participant's (timelock T2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LegId {
    A,
    B,
}

impl LegId {
    pub const BOTH: [LegId; 2] = [LegId::A, LegId::B];

    pub fn other(self) -> LegId {
        match self {
            LegId::A => LegId::B,
            LegId::B => LegId::A,
        }
    }

    fn index(self) -> usize {
        match self {
            LegId::A => 0,
            LegId::B => 1,
        }
    }
}

impl fmt::Display for LegId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LegId::A => "a",
            LegId::B => "b",
        })
    }
}

/// A value per leg, indexable by [`LegId`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Legs<T> {
    pub a: T,
    pub b: T,
}

impl<T> Legs<T> {
    pub fn new(a: T, b: T) -> Self {
        Legs { a, b }
    }

    pub fn iter(&self) -> impl Iterator<Item = (LegId, &T)> {
        [(LegId::A, &self.a), (LegId::B, &self.b)].into_iter()
    }
}

impl<T> std::ops::Index<LegId> for Legs<T> {
    type Output = T;
    fn index(&self, leg: LegId) -> &T {
        match leg.index() {
            0 => &self.a,
            _ => &self.b,
        }
    }
}

impl<T> std::ops::IndexMut<LegId> for Legs<T> {
    fn index_mut(&mut self, leg: LegId) -> &mut T {
        match leg.index() {
            0 => &mut self.a,
            _ => &mut self.b,
        }
    }
}

/// An amount in the asset's smallest unit. Carried as a decimal string in JSON so that
/// 256-bit-ish EVM amounts below 2^128 survive JavaScript clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Amount(pub u128);

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<u128>()
            .map(Amount)
            .map_err(|_| serde::de::Error::custom(format!("amount `{s}` is not a decimal u128")))
    }
}

/// An asset on a network, in that network's own naming: `native`, `erc20:0x…`, ….
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AssetId(pub String);

impl fmt::Display for AssetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An account or address in its network's text form (`isth_…`, `0x…`, `rltc1…`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Address(pub String);

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A transaction id in its network's text form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TxId(pub String);

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id an escrow or HTLC on a leg's network is keyed by. Derived, so that a retried
/// lock/release/refund/claim submission names the same on-chain object and stays idempotent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LockId(pub Hash32);

impl LockId {
    pub fn derive(instance: InstanceId, leg: LegId) -> Self {
        let tag: &[u8] = match leg {
            LegId::A => b"a",
            LegId::B => b"b",
        };
        LockId(HashAlgo::Sha256.digest_parts(&[b"isthmus/lock/v1\x00", instance.0.as_bytes(), tag]))
    }
}

impl fmt::Display for LockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for LockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LockId({})", &self.0.to_hex()[..12])
    }
}

/// Who puts the funds of a leg into escrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Locker {
    /// The party signs and submits the lock itself; the hub only observes it.
    #[default]
    External,
    /// The hub's wallet service holds the party's key and submits the lock at creation.
    HubWallet,
    /// A provider liquidity vault: the hub submits this lock only once the other leg's lock
    /// is final, so vault liquidity is never tied up by a customer who does not pay.
    ProviderVault,
}

/// One leg: `amount` of `asset` moves on `network` from `from` to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegSpec {
    pub network: NetworkId,
    pub asset: AssetId,
    pub amount: Amount,
    pub from: Address,
    pub to: Address,
    /// When the escrow on this leg's network lets `from` take the funds back on its own
    /// (two-phase: escrow timeout; HTLC: the timelock). In hub time.
    pub timeout: Timestamp,
    #[serde(default)]
    pub locker: Locker,
}

/// What an adapter saw of a lock transaction on a leg's network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockObservation {
    pub lock_id: LockId,
    pub tx: TxId,
    /// The block that included the lock; a reorg names it to withdraw the observation.
    pub block: Hash32,
    pub height: u64,
    pub asset: AssetId,
    pub amount: Amount,
    /// Who can take the funds on success (escrow beneficiary or HTLC recipient).
    pub beneficiary: Address,
}

/// A reference to finality evidence the hub has verified and stored (a commit certificate,
/// N confirmations with a Merkle proof, an EVM receipt, …). The machine keeps only its
/// digest; the evidence itself lives in the hub store and on the hub chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceRef {
    pub height: u64,
    pub digest: Hash32,
}

/// Where the hub chain recorded a decision. Its commit evidence authorises releases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubRecord {
    pub height: u64,
    pub tx: TxId,
}

/// The write-once decision of a two-phase lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Both locks reached finality before the deadline: release both.
    Validated,
    /// The deadline passed first: refund every lock.
    Aborted,
}

/// A 32-byte HTLC secret. Any other length is refused, on every chain alike.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preimage(#[serde(with = "serde_bytes")] pub [u8; 32]);

impl Preimage {
    pub fn parse(bytes: &[u8]) -> Result<Self, crate::Rejection> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| crate::Rejection::PreimageLength { len: bytes.len() })?;
        Ok(Preimage(arr))
    }

    pub fn hashlock(&self) -> Hash32 {
        HashAlgo::Sha256.digest(&self.0)
    }
}

impl fmt::Debug for Preimage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Preimage(<secret>)")
    }
}

/// Why the hub may refund a leg.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RefundAuthority {
    /// The hub chain recorded `Aborted` at this place; escrows verify its commit evidence.
    HubRecord(HubRecord),
    /// The leg's timelock has expired on its own network.
    Timelock { after: Timestamp },
}

/// What the hub must do next. Every action names a derived [`LockId`], so executing an
/// action twice (after a crash, or by two hub workers) is harmless at the adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Submit the lock of a hub-custodied leg (hub wallet or provider vault).
    SubmitLock { leg: LegId, lock_id: LockId },
    /// Record the decision as a transaction on the hub chain.
    RecordDecision { decision: Decision },
    /// Release the escrow of `leg` to its beneficiary, presenting the hub record.
    Release {
        leg: LegId,
        lock_id: LockId,
        record: HubRecord,
    },
    /// Return the escrow of `leg` to its owner.
    Refund {
        leg: LegId,
        lock_id: LockId,
        authority: RefundAuthority,
    },
    /// Claim an HTLC with the preimage.
    Claim {
        leg: LegId,
        lock_id: LockId,
        preimage: Preimage,
    },
}

impl Action {
    pub fn leg(&self) -> Option<LegId> {
        match self {
            Action::SubmitLock { leg, .. }
            | Action::Release { leg, .. }
            | Action::Refund { leg, .. }
            | Action::Claim { leg, .. } => Some(*leg),
            Action::RecordDecision { .. } => None,
        }
    }
}

/// A coarse phase for the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Locking,
    RecordingValidation,
    Releasing,
    Released,
    RecordingAbort,
    Claiming,
    Refunding,
    Refunded,
    Completed,
    /// Nothing was ever locked and the deadline passed.
    Expired,
    /// The networks reported an outcome the protocol forbids; the hub must alert.
    Inconsistent,
}

/// A machine-readable reason for the current status, stable across releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    AwaitingLocks,
    AwaitingInitiatorLock,
    AwaitingCounterpartyLock,
    AwaitingFinality,
    AwaitingPreimage,
    RecordingValidation,
    Releasing,
    Claiming,
    DeadlinePassedRefunding,
    TimelockExpiredRefunding,
    AdapterUnhealthy,
    Released,
    Completed,
    Refunded,
    Expired,
    AtomicityViolated,
    /// Never produced by a machine: the hub's driver shows it over the machine's reason
    /// while a network keeps refusing an action for good (e.g. the escrow reverts).
    AdapterRefused,
    /// Never produced by a machine: the hub's driver shows it over the machine's reason
    /// while an action keeps failing with errors that may clear (node down, timeouts).
    ActionRetrying,
}

impl ReasonCode {
    /// The wire form, e.g. `awaiting_counterparty_lock`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::AwaitingLocks => "awaiting_locks",
            ReasonCode::AwaitingInitiatorLock => "awaiting_initiator_lock",
            ReasonCode::AwaitingCounterpartyLock => "awaiting_counterparty_lock",
            ReasonCode::AwaitingFinality => "awaiting_finality",
            ReasonCode::AwaitingPreimage => "awaiting_preimage",
            ReasonCode::RecordingValidation => "recording_validation",
            ReasonCode::Releasing => "releasing",
            ReasonCode::Claiming => "claiming",
            ReasonCode::DeadlinePassedRefunding => "deadline_passed_refunding",
            ReasonCode::TimelockExpiredRefunding => "timelock_expired_refunding",
            ReasonCode::AdapterUnhealthy => "adapter_unhealthy",
            ReasonCode::Released => "released",
            ReasonCode::Completed => "completed",
            ReasonCode::Refunded => "refunded",
            ReasonCode::Expired => "expired",
            ReasonCode::AtomicityViolated => "atomicity_violated",
            ReasonCode::AdapterRefused => "adapter_refused",
            ReasonCode::ActionRetrying => "action_retrying",
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of one leg as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegPhase {
    Unlocked,
    /// Included but not yet final.
    LockSeen,
    /// Final, with verified evidence.
    Locked,
    Released,
    Claimed,
    Refunded,
}

/// What the API reports for an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub phase: Phase,
    pub reason: ReasonCode,
    pub terminal: bool,
    pub legs: Legs<LegPhase>,
}

/// How a locked leg was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Settlement {
    Released,
    Claimed,
    Refunded,
}

impl fmt::Display for Settlement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Settlement::Released => "released",
            Settlement::Claimed => "claimed",
            Settlement::Refunded => "refunded",
        })
    }
}
