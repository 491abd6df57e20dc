//! The messages of the adapter protocol (see `PROTOCOL.md`): one [`Request`] per adapter
//! operation, answered by one [`Response`] with the same id.
//!
//! Every message is one application frame of the transport: the wire version byte
//! ([`isthmus_core::codec::WIRE_VERSION`]) followed by a msgpack map with string keys.

use isthmus_adapter_api::{AdapterError, Checkpoint};
use isthmus_adapter_api::{
    ClaimRequest, EventPage, Evidence, Heads, Health, LockRequest, OnChainLock, PlatformDescriptor,
    RefundRequest, ReleaseRequest, SignedTx, TxStatus, Verified,
};
use isthmus_core::NodeId;
use isthmus_lock_contracts::{Address, Amount, AssetId, LockId, Timestamp, TxId};
use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks; `describe` answers carry the adapter's.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest page of events a hub asks for.
pub const MAX_EVENT_PAGE: u32 = 1_000;

/// A call from the hub. `id` is chosen by the hub, unique per connection; the answer
/// carries it back, so calls may be answered out of order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub call: Call,
}

/// One operation of [`isthmus_adapter_api::Adapter`], plus `describe` and the optional
/// test-control calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Call {
    /// The platform descriptor and the protocol version.
    Describe,
    Health,
    Heads,
    EventsSince {
        after: Checkpoint,
        limit: u32,
    },
    Submit {
        tx: SignedTx,
    },
    TxStatus {
        tx: TxId,
    },
    Evidence {
        tx: TxId,
    },
    VerifyEvidence {
        tx: TxId,
        evidence: Evidence,
    },
    Balance {
        account: Address,
        asset: AssetId,
    },
    Lock {
        req: LockRequest,
    },
    Release {
        req: ReleaseRequest,
    },
    Refund {
        req: RefundRequest,
    },
    Claim {
        req: ClaimRequest,
    },
    LockState {
        lock_id: LockId,
    },
    /// Drive a test platform (mine, move time, reorg). Adapters serving real chains answer
    /// `unsupported`.
    Control {
        control: Control,
    },
}

impl Call {
    /// The operation name, as on the wire.
    pub fn op(&self) -> &'static str {
        match self {
            Call::Describe => "describe",
            Call::Health => "health",
            Call::Heads => "heads",
            Call::EventsSince { .. } => "events_since",
            Call::Submit { .. } => "submit",
            Call::TxStatus { .. } => "tx_status",
            Call::Evidence { .. } => "evidence",
            Call::VerifyEvidence { .. } => "verify_evidence",
            Call::Balance { .. } => "balance",
            Call::Lock { .. } => "lock",
            Call::Release { .. } => "release",
            Call::Refund { .. } => "refund",
            Call::Claim { .. } => "claim",
            Call::LockState { .. } => "lock_state",
            Call::Control { .. } => "control",
        }
    }
}

/// Test-platform control calls (the conformance suite's fixture operations).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Control {
    Mine {
        blocks: u64,
    },
    AdvanceTimeTo {
        time: Timestamp,
    },
    /// Answers `done`, or `unsupported` when the platform cannot reorg.
    Reorg {
        depth: u64,
    },
    /// The nonce the next transfer from `account` must carry.
    NextNonce {
        account: NodeId,
    },
}

/// What `describe` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Describe {
    pub protocol: u32,
    pub descriptor: PlatformDescriptor,
}

/// A successful answer, tagged by the kind of value it holds. The tag must fit the call:
/// anything else is a malformed answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Describe(Describe),
    Health(Health),
    Heads(Heads),
    Events(EventPage),
    /// `submit`, `lock`, `release`, `refund`, `claim`.
    TxId(TxId),
    TxStatus(TxStatus),
    Evidence(Evidence),
    Verified(Verified),
    Balance(Amount),
    LockState(Option<OnChainLock>),
    Nonce(u64),
    Done,
}

impl Answer {
    pub fn kind(&self) -> &'static str {
        match self {
            Answer::Describe(_) => "describe",
            Answer::Health(_) => "health",
            Answer::Heads(_) => "heads",
            Answer::Events(_) => "events",
            Answer::TxId(_) => "tx_id",
            Answer::TxStatus(_) => "tx_status",
            Answer::Evidence(_) => "evidence",
            Answer::Verified(_) => "verified",
            Answer::Balance(_) => "balance",
            Answer::LockState(_) => "lock_state",
            Answer::Nonce(_) => "nonce",
            Answer::Done => "done",
        }
    }
}

/// The answer to the request with the same `id`: exactly one of `ok` and `err`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<Answer>,
    /// An [`AdapterError`] object: `{"code": ..., <fields of that code>}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err: Option<AdapterError>,
}

impl Response {
    pub fn from_result(id: u64, r: Result<Answer, AdapterError>) -> Response {
        match r {
            Ok(a) => Response {
                id,
                ok: Some(a),
                err: None,
            },
            Err(e) => Response {
                id,
                ok: None,
                err: Some(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_core::{codec, Hash32, NetworkId, WireLimits};

    fn roundtrip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(v: &T) {
        let limits = WireLimits::default();
        let bytes = codec::encode_body(v, &limits).unwrap();
        let back: T = codec::decode_body(&bytes, &limits).unwrap();
        assert_eq!(&back, v);
    }

    #[test]
    fn every_call_shape_roundtrips_through_msgpack() {
        let calls = vec![
            Call::Describe,
            Call::Heads,
            Call::EventsSince {
                after: Checkpoint(7),
                limit: 100,
            },
            Call::Submit {
                tx: SignedTx(vec![1, 2, 3]),
            },
            Call::Balance {
                account: Address("alice".into()),
                asset: AssetId("native".into()),
            },
            Call::LockState {
                lock_id: LockId(Hash32([9; 32])),
            },
            Call::Control {
                control: Control::Mine { blocks: 3 },
            },
        ];
        for (i, call) in calls.into_iter().enumerate() {
            roundtrip(&Request { id: i as u64, call });
        }
        roundtrip(&Response::from_result(
            1,
            Ok(Answer::Balance(Amount(u128::MAX))),
        ));
        roundtrip(&Response::from_result(2, Ok(Answer::LockState(None))));
        roundtrip(&Response::from_result(3, Ok(Answer::Done)));
        roundtrip(&Response::from_result(
            4,
            Err(AdapterError::NotFound {
                network: NetworkId(3),
                what: "tx abc".into(),
            }),
        ));
    }

    #[test]
    fn the_wire_form_is_plain_maps_with_string_keys() {
        // What a client in another language sees: decode as generic JSON-like data.
        let req = Request {
            id: 5,
            call: Call::Balance {
                account: Address("alice".into()),
                asset: AssetId("native".into()),
            },
        };
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": 5, "call": {"op": "balance", "account": "alice", "asset": "native"}})
        );
        let resp = Response::from_result(5, Ok(Answer::Balance(Amount(12))));
        assert_eq!(
            serde_json::to_value(&resp).unwrap(),
            serde_json::json!({"id": 5, "ok": {"balance": "12"}})
        );
        let err = Response::from_result(
            6,
            Err(AdapterError::Unsupported {
                network: NetworkId(4),
                op: "claim".into(),
            }),
        );
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            serde_json::json!({"id": 6, "err": {"code": "unsupported", "network": 4, "op": "claim"}})
        );
    }
}
