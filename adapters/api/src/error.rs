//! The one error type of every adapter operation.

use isthmus_core::NetworkId;
use serde::{Deserialize, Serialize};

/// Why an adapter operation failed. [`AdapterError::is_retryable`] tells the caller whether
/// the same request can succeed later (transport trouble) or never will (a rejection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "code")]
pub enum AdapterError {
    #[error("network {network} is unreachable: {reason}")]
    Unavailable { network: NetworkId, reason: String },
    #[error("network {network} did not answer `{op}` in time")]
    Timeout { network: NetworkId, op: String },
    #[error("network {network} rejected the transaction: {reason}")]
    Rejected { network: NetworkId, reason: String },
    #[error("invalid request: {reason}")]
    InvalidRequest { reason: String },
    #[error("network {network} does not support `{op}`")]
    Unsupported { network: NetworkId, op: String },
    #[error("{what} not found on network {network}")]
    NotFound { network: NetworkId, what: String },
    #[error("evidence does not verify: {reason}")]
    InvalidEvidence { reason: String },
    #[error("lock {lock_id} on network {network} is {state}; `{op}` refused")]
    Conflict {
        network: NetworkId,
        lock_id: String,
        state: String,
        op: String,
    },
    #[error("adapter for network {network} misbehaved: {reason}")]
    Misbehaving { network: NetworkId, reason: String },
    /// The wallet service could not hand out a key (locked or unreadable); it may recover.
    #[error("wallet unavailable: {reason}")]
    Wallet { reason: String },
}

impl AdapterError {
    /// Transport trouble can clear up; a rejection, a bad request or a conflict cannot.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            AdapterError::Unavailable { .. }
                | AdapterError::Timeout { .. }
                | AdapterError::Wallet { .. }
        )
    }

    /// The stable code (the serde tag).
    pub fn code(&self) -> &'static str {
        match self {
            AdapterError::Unavailable { .. } => "unavailable",
            AdapterError::Timeout { .. } => "timeout",
            AdapterError::Rejected { .. } => "rejected",
            AdapterError::InvalidRequest { .. } => "invalid_request",
            AdapterError::Unsupported { .. } => "unsupported",
            AdapterError::NotFound { .. } => "not_found",
            AdapterError::InvalidEvidence { .. } => "invalid_evidence",
            AdapterError::Conflict { .. } => "conflict",
            AdapterError::Misbehaving { .. } => "misbehaving",
            AdapterError::Wallet { .. } => "wallet_unavailable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transport_trouble_is_retryable() {
        let n = NetworkId(3);
        assert!(AdapterError::Unavailable {
            network: n,
            reason: "connection refused".into()
        }
        .is_retryable());
        assert!(AdapterError::Timeout {
            network: n,
            op: "heads".into()
        }
        .is_retryable());
        let rejected = AdapterError::Rejected {
            network: n,
            reason: "nonce too low".into(),
        };
        assert!(!rejected.is_retryable());
        assert_eq!(
            rejected.to_string(),
            "network 3 rejected the transaction: nonce too low"
        );
        let json = serde_json::to_value(&rejected).unwrap();
        assert_eq!(json["code"], rejected.code());
    }
}
