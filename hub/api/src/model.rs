//! Request and response bodies of the HTTP API (JSON). These are the API's own types: the
//! hub maps them to its domain types, so the wire shape can stay stable while the
//! internals change.

use serde::{Deserialize, Serialize};

/// Largest accepted message payload, in bytes (after hex decoding).
pub const MAX_MESSAGE_PAYLOAD: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlatformInfo {
    /// Registered name, e.g. `alpha`, `anvil-31337`.
    pub name: String,
    /// Platform family: `native`, `evm`, `utxo`, `external`.
    pub kind: String,
    pub healthy: bool,
    /// Declared capabilities (finality model, contract support, hash and signature schemes,
    /// asset model), as the adapter reports them.
    pub capabilities: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkInfo {
    pub name: String,
    pub platform: String,
    /// `up` or `down`.
    pub status: String,
    pub consensus: String,
    pub head_height: u64,
    pub finalized_height: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A provisioned network: its spec, where it stands, and its node processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkResource {
    pub name: String,
    pub platform: String,
    /// `provisioning`, `up`, `degraded` (some nodes down), `down`, `stopping`, `stopped`,
    /// `failed`.
    pub status: String,
    pub network_id: u64,
    /// The spec it was ordered with.
    pub spec: serde_json::Value,
    pub nodes: Vec<NodeResource>,
    /// Why it is `failed`, `down` or `degraded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The tenant of the provider that ordered it.
    pub tenant: String,
}

/// One node process of a provisioned network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeResource {
    pub index: usize,
    /// The node's identity (`isth_…`).
    pub id: String,
    /// Its authenticated RPC address and peer-to-peer address.
    pub rpc: String,
    pub p2p: String,
    /// `starting`, `up`, `down` or `stopped`.
    pub process: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Restarts after the process died.
    pub restarts: u32,
}

/// One page of a list; pass `next` back as `after` for the following page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// Who puts a leg's funds into escrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LockBy {
    /// The hub's wallet service holds `from`'s key and submits the lock at once.
    #[default]
    HubWallet,
    /// `from` signs and submits the lock itself; the hub only watches for it.
    Owner,
    /// A provider liquidity vault, locked only after the other leg's lock is final.
    ProviderVault,
}

/// One side of a two-phase transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegSpec {
    pub network: String,
    pub asset: String,
    /// Decimal integer in the asset's smallest unit.
    pub amount: String,
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub lock_by: LockBy,
}

/// `POST /v1/transfers`: P locks `source` on its network for Q; Q locks `counter` on the
/// other network for P. Both are released only after both locks are validated; both are
/// refunded if that has not happened within `timeout_secs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTransfer {
    pub source: LegSpec,
    pub counter: LegSpec,
    pub timeout_secs: u64,
}

/// One side of an HTLC swap: the same fields as a transfer leg.
pub type SwapSide = LegSpec;

/// `POST /v1/swaps`: hash-time-locked swap. The initiator's timelock must exceed the
/// participant's by the hub's configured margin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSwap {
    pub initiator: SwapSide,
    pub participant: SwapSide,
    /// sha256 of the 32-byte secret, 64 hex digits. Omit to let the hub's wallet create
    /// and hold the secret for the initiator.
    #[serde(default)]
    pub hashlock: Option<String>,
    pub initiator_timeout_secs: u64,
    pub participant_timeout_secs: u64,
}

/// `POST /v1/messages`: a payload for a contract or account on another network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateMessage {
    pub source: String,
    pub destination: String,
    pub sender: String,
    pub recipient: String,
    /// Hex-encoded payload, at most 64 KiB decoded.
    pub payload_hex: String,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Transfer,
    Swap,
    Message,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Transfer => "transfer",
            OpKind::Swap => "swap",
            OpKind::Message => "message",
        }
    }
}

/// One leg (or hop) of an operation, with the evidence the hub checked for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegStatus {
    pub network: String,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<serde_json::Value>,
}

/// Status of a transfer, swap or message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationStatus {
    pub id: String,
    pub kind: OpKind,
    /// The tenant that owns the operation (the creating key's).
    #[serde(default)]
    pub tenant: String,
    pub state: String,
    /// True once the operation can change no more (released, refunded, delivered, ...).
    pub terminal: bool,
    /// Machine-readable reason when the operation waits, is stuck or failed, e.g.
    /// `awaiting_counterparty_lock`, `awaiting_finality`, `adapter_unhealthy`,
    /// `adapter_refused`, `action_retrying`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why an action keeps failing: with `reason` `adapter_refused` or `action_retrying`,
    /// or `adapter_unhealthy` when the adapter was already marked unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_detail: Option<ReasonDetail>,
    pub legs: Vec<LegStatus>,
    pub created_at: u64,
    pub updated_at: u64,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

/// The action a network keeps refusing (or that keeps failing), as the hub last saw it.
/// A diagnosis only: the operation's state is what the contract machine says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonDetail {
    /// `submit_lock`, `record_decision`, `release`, `refund` or `claim`.
    pub action: String,
    /// The leg the action is for (`a` or `b`); absent for the hub chain's own record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leg: Option<String>,
    /// The network that failed; absent when it is the hub chain itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The adapter's stable error code (e.g. `rejected`, `unavailable`), or `refused` /
    /// `retryable` for failures that did not come from an adapter.
    pub error_code: String,
    /// The error message, with credentials stripped from any URL in it.
    pub message: String,
    pub retryable: bool,
    /// Failures in a row since the action last succeeded (counted since the hub started).
    pub attempts: u32,
    pub first_failed_at: u64,
    pub last_failed_at: u64,
    /// The contract's own reason underneath, e.g. `releasing`.
    pub state_reason: String,
}

fn check_amount(field: &str, s: &str, problems: &mut Vec<String>) {
    match s.parse::<u128>() {
        Ok(0) => problems.push(format!("{field}: amount must be positive")),
        Ok(_) => {}
        Err(_) => problems.push(format!(
            "{field}: amount `{s}` is not a decimal integer in the asset's smallest unit"
        )),
    }
}

fn check_nonempty(field: &str, s: &str, problems: &mut Vec<String>) {
    if s.trim().is_empty() {
        problems.push(format!("{field} is empty"));
    }
}

fn check_leg(prefix: &str, l: &LegSpec, problems: &mut Vec<String>) {
    check_nonempty(&format!("{prefix}.network"), &l.network, problems);
    check_nonempty(&format!("{prefix}.asset"), &l.asset, problems);
    check_nonempty(&format!("{prefix}.from"), &l.from, problems);
    check_nonempty(&format!("{prefix}.to"), &l.to, problems);
    check_amount(&format!("{prefix}.amount"), &l.amount, problems);
}

impl CreateTransfer {
    /// Every problem with the request at once.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        check_leg("source", &self.source, &mut p);
        check_leg("counter", &self.counter, &mut p);
        if self.source.network == self.counter.network {
            p.push(format!(
                "source and counter are both on network `{}`; a transfer links two networks",
                self.source.network
            ));
        }
        if self.timeout_secs == 0 {
            p.push("timeout_secs must be positive".into());
        }
        p
    }
}

impl CreateSwap {
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        check_leg("initiator", &self.initiator, &mut p);
        check_leg("participant", &self.participant, &mut p);
        if let Some(h) = &self.hashlock {
            if hex::decode(h).map(|v| v.len() != 32).unwrap_or(true) {
                p.push(format!(
                    "hashlock `{h}` must be 64 hex digits (a sha256 digest)"
                ));
            }
        }
        if self.initiator_timeout_secs <= self.participant_timeout_secs {
            p.push(format!(
                "initiator_timeout_secs ({}) must exceed participant_timeout_secs ({})",
                self.initiator_timeout_secs, self.participant_timeout_secs
            ));
        }
        p
    }
}

impl CreateMessage {
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        check_nonempty("source", &self.source, &mut p);
        check_nonempty("destination", &self.destination, &mut p);
        check_nonempty("sender", &self.sender, &mut p);
        check_nonempty("recipient", &self.recipient, &mut p);
        match hex::decode(&self.payload_hex) {
            Ok(v) if v.len() > MAX_MESSAGE_PAYLOAD => p.push(format!(
                "payload is {} bytes, the limit is {MAX_MESSAGE_PAYLOAD}",
                v.len()
            )),
            Ok(_) => {}
            Err(_) => p.push("payload_hex is not valid hex".into()),
        }
        if self.source == self.destination {
            p.push(format!("source and destination are both `{}`", self.source));
        }
        if self.timeout_secs == 0 {
            p.push("timeout_secs must be positive".into());
        }
        p
    }
}

/// `POST /v1/adapters` (provider role): attach an out-of-process adapter for a network. The
/// hub connects to `endpoint`, requires the Noise handshake to prove `identity`, reads the
/// descriptor (it must name `network_id`) and health-checks it before anything is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterAdapter {
    /// The numeric network id the adapter serves (also bound into its handshake).
    pub network_id: u64,
    /// The network's name in requests and listings: 1 to 64 of `a-z 0-9 - _`.
    pub name: String,
    /// `host:port` where the adapter listens (an IP address, not a DNS name).
    pub endpoint: String,
    /// The adapter's ed25519 public key: `isth_` + base58, or `0x` + 64 hex digits.
    pub identity: String,
}

impl RegisterAdapter {
    /// Every problem with the request's shape at once (the hub checks the key itself).
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.network_id == 0 {
            p.push("network_id must be positive".into());
        }
        let name_ok = (1..=64).contains(&self.name.len())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !name_ok {
            p.push(format!(
                "name `{}` must be 1 to 64 characters of a-z, 0-9, `-` and `_`",
                self.name
            ));
        }
        if self.endpoint.parse::<std::net::SocketAddr>().is_err() {
            p.push(format!(
                "endpoint `{}` is not an `ip:port` socket address",
                self.endpoint
            ));
        }
        let id = self.identity.trim();
        let id_ok = (id.starts_with("isth_") && id.len() > 5)
            || (id.len() == 66 && id.starts_with("0x") && hex::decode(&id[2..]).is_ok());
        if !id_ok {
            p.push(format!(
                "identity `{}` is not an ed25519 key (`isth_…` base58 or `0x` + 64 hex digits)",
                self.identity
            ));
        }
        p
    }
}

/// A registered adapter, as `GET /v1/adapters` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterInfo {
    /// The id to retire it with (`DELETE /v1/adapters/{id}`); equal to `name`.
    pub id: String,
    pub name: String,
    pub network_id: u64,
    pub endpoint: String,
    pub identity: String,
    /// `active`, or `retired` in the answer to `DELETE`.
    pub status: String,
    pub healthy: bool,
    /// Why it is unhealthy (unreachable, misbehaving, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub registered_at: u64,
    /// The tenant of the provider that registered it (only its providers may retire it).
    #[serde(default)]
    pub tenant: String,
}

/// `GET /v1/grants`: the partner tenants that may read the caller's tenant's objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    pub tenant: String,
    pub partners: Vec<String>,
}

/// `POST /v1/keys`: a new API key for `tenant` with `role`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub tenant: String,
    pub role: crate::auth::Role,
    /// A label for listings and logs (default: `<tenant>-<role>`).
    #[serde(default)]
    pub name: Option<String>,
    /// Unix seconds after which the key is refused; absent: it never expires.
    #[serde(default)]
    pub expires_at: Option<u64>,
}

impl CreateKey {
    /// Every problem at once.
    pub fn validate(&self, now: u64) -> Vec<String> {
        let mut p = Vec::new();
        if !crate::auth::valid_tenant(&self.tenant) {
            p.push(format!(
                "tenant: `{}` must be 1 to 64 of a-z, 0-9, `-`, `_`",
                self.tenant
            ));
        }
        if let Some(n) = &self.name {
            if n.trim().is_empty() || n.len() > 100 {
                p.push(format!("name: `{n}` must be 1 to 100 characters"));
            }
        }
        if let Some(e) = self.expires_at {
            if e <= now {
                p.push(format!("expires_at: {e} is not in the future (now {now})"));
            }
        }
        p
    }
}

/// A key as `GET /v1/keys` lists it: never the key, nor its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub role: crate::auth::Role,
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
    /// `active`, `expired` or `revoked`.
    pub status: String,
}

/// The answer to `POST /v1/keys` and `POST /v1/keys/{id}/rotate`: the key itself, shown
/// this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub info: KeyInfo,
    /// The API key (`isk_` and 64 hex digits). The hub keeps only its sha256.
    pub key: String,
}
