use isthmus_core::{NodeId, WireError};
use std::net::SocketAddr;

/// Everything a transport operation can fail with. [`TransportError::is_retryable`] says
/// whether trying again (usually on a new connection) can help.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("invalid transport config: {}", .0.join("; "))]
    Config(Vec<String>),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer {0} is not on the allowlist")]
    PeerNotAllowed(NodeId),
    #[error("expected peer {expected} but {got} answered")]
    UnexpectedPeer { expected: NodeId, got: NodeId },
    #[error("handshake with {peer} failed: {reason}")]
    Handshake { peer: SocketAddr, reason: String },
    #[error("timed out while {0}")]
    Timeout(&'static str),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge { size: usize, max: usize },
    #[error("ciphertext failed authentication ({0})")]
    Decrypt(&'static str),
    #[error("connection closed: {0}")]
    Closed(String),
    #[error("connection limit of {0} reached")]
    TooManyConnections(usize),
    #[error("message {id} was not acknowledged after {attempts} attempts")]
    DeliveryFailed { id: u64, attempts: u32 },
    #[error("tls setup failed: {0}")]
    Tls(String),
}

impl TransportError {
    /// True when a later attempt (reconnecting, resending) may succeed; false when the
    /// peer, the configuration or the data itself is refused.
    pub fn is_retryable(&self) -> bool {
        match self {
            TransportError::Io(_)
            | TransportError::Timeout(_)
            | TransportError::Closed(_)
            | TransportError::TooManyConnections(_)
            | TransportError::DeliveryFailed { .. } => true,
            TransportError::Config(_)
            | TransportError::PeerNotAllowed(_)
            | TransportError::UnexpectedPeer { .. }
            | TransportError::Handshake { .. }
            | TransportError::Wire(_)
            | TransportError::MessageTooLarge { .. }
            | TransportError::Decrypt(_)
            | TransportError::Tls(_) => false,
        }
    }

    /// A stable, low-cardinality label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            TransportError::Config(_) => "config",
            TransportError::Io(_) => "io",
            TransportError::PeerNotAllowed(_) => "peer_not_allowed",
            TransportError::UnexpectedPeer { .. } => "unexpected_peer",
            TransportError::Handshake { .. } => "handshake",
            TransportError::Timeout(_) => "timeout",
            TransportError::Wire(e) => e.reason(),
            TransportError::MessageTooLarge { .. } => "message_too_large",
            TransportError::Decrypt(_) => "decrypt",
            TransportError::Closed(_) => "closed",
            TransportError::TooManyConnections(_) => "too_many_connections",
            TransportError::DeliveryFailed { .. } => "delivery_failed",
            TransportError::Tls(_) => "tls",
        }
    }
}
