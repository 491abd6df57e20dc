//! Transport configuration: one struct for the three kinds, defaults in one place.

use isthmus_core::{NetworkId, NodeId, WireLimits};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// The closed set of transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// TCP with a `Noise_XX_25519_ChaChaPoly_BLAKE2s` handshake: reliable, ordered.
    Tcp,
    /// UDP datagrams encrypted under a Noise session: unreliable by contract.
    Udp,
    /// QUIC (quinn + rustls) with certificates pinned to node keys: reliable, ordered.
    Quic,
}

impl TransportKind {
    pub const ALL: [TransportKind; 3] =
        [TransportKind::Tcp, TransportKind::Udp, TransportKind::Quic];

    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Tcp => "tcp",
            TransportKind::Udp => "udp",
            TransportKind::Quic => "quic",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TransportKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tcp" => Ok(TransportKind::Tcp),
            "udp" => Ok(TransportKind::Udp),
            "quic" => Ok(TransportKind::Quic),
            other => Err(format!(
                "unknown transport `{other}` (expected tcp, udp or quic)"
            )),
        }
    }
}

/// Largest UDP payload an IPv4 datagram can carry.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// Settings for one [`crate::Endpoint`].
#[derive(Debug, Clone)]
pub struct TransportConfig {
    pub kind: TransportKind,
    /// Local address; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Network the endpoint belongs to. Peers of another network fail the handshake.
    pub network: NetworkId,
    /// `None`: public network, any authenticated peer is accepted. `Some(set)`: private
    /// network, a peer outside the set is refused during the handshake (both directions).
    pub allowlist: Option<BTreeSet<NodeId>>,
    /// Frame size and nesting limits. `max_frame` bounds one application message.
    pub limits: WireLimits,
    /// How often an idle connection sends a keepalive.
    pub keepalive: Duration,
    /// A connection with no traffic from the peer for this long is closed.
    pub idle_timeout: Duration,
    /// Bound on the whole handshake (connect and accept).
    pub handshake_timeout: Duration,
    /// Messages queued for sending per connection; a full queue makes `send` wait.
    pub send_queue: usize,
    /// Messages received and not yet read per connection. TCP/QUIC stop reading (the peer
    /// feels backpressure); UDP drops and counts.
    pub recv_queue: usize,
    /// Open connections (inbound + outbound) per endpoint; beyond it, new ones are refused.
    pub max_connections: usize,
    /// UDP: largest datagram sent or accepted, headers included.
    pub max_datagram: usize,
    /// UDP: replay window in datagrams (a multiple of 64).
    pub replay_window: u64,
    /// UDP: first retransmission delay for handshakes and for [`crate::reliable`].
    pub ack_timeout: Duration,
    /// UDP: retransmissions before giving up on a handshake or a reliable message.
    pub max_retries: u32,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            kind: TransportKind::Tcp,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            network: NetworkId(0),
            allowlist: None,
            limits: WireLimits::default(),
            keepalive: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            send_queue: 256,
            recv_queue: 1024,
            max_connections: 256,
            max_datagram: 1472,
            replay_window: 1024,
            ack_timeout: Duration::from_millis(200),
            max_retries: 8,
        }
    }
}

impl TransportConfig {
    /// A default config of the given kind bound to `bind`.
    pub fn new(kind: TransportKind, bind: SocketAddr) -> Self {
        TransportConfig {
            kind,
            bind,
            ..Default::default()
        }
    }

    /// Every problem with the config, all at once.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        if self.limits.max_frame == 0 || self.limits.max_frame > u32::MAX as usize - 1 {
            errs.push(format!(
                "limits.max_frame = {} must be between 1 and {}",
                self.limits.max_frame,
                u32::MAX - 1
            ));
        }
        if self.limits.max_depth == 0 {
            errs.push("limits.max_depth must be at least 1".to_owned());
        }
        if self.keepalive.is_zero() {
            errs.push("keepalive must be greater than zero".to_owned());
        }
        if self.idle_timeout < self.keepalive * 2 {
            errs.push(format!(
                "idle_timeout = {:?} must be at least twice keepalive = {:?}",
                self.idle_timeout, self.keepalive
            ));
        }
        if self.handshake_timeout.is_zero() {
            errs.push("handshake_timeout must be greater than zero".to_owned());
        }
        for (name, v) in [
            ("send_queue", self.send_queue),
            ("recv_queue", self.recv_queue),
            ("max_connections", self.max_connections),
        ] {
            if v == 0 {
                errs.push(format!("{name} must be at least 1"));
            }
        }
        if self.max_datagram < 256 || self.max_datagram > MAX_UDP_PAYLOAD {
            errs.push(format!(
                "max_datagram = {} must be between 256 and {MAX_UDP_PAYLOAD}",
                self.max_datagram
            ));
        }
        if self.replay_window < 64 || self.replay_window > 65_536 || self.replay_window % 64 != 0 {
            errs.push(format!(
                "replay_window = {} must be a multiple of 64 between 64 and 65536",
                self.replay_window
            ));
        }
        if self.ack_timeout.is_zero() {
            errs.push("ack_timeout must be greater than zero".to_owned());
        }
        if self.max_retries == 0 || self.max_retries > 30 {
            errs.push(format!(
                "max_retries = {} must be between 1 and 30",
                self.max_retries
            ));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }

    pub(crate) fn is_allowed(&self, id: &NodeId) -> bool {
        self.allowlist.as_ref().is_none_or(|set| set.contains(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_kind_parses() {
        assert!(TransportConfig::default().validate().is_ok());
        for k in TransportKind::ALL {
            assert_eq!(k.as_str().parse::<TransportKind>().unwrap(), k);
        }
        assert!("sctp"
            .parse::<TransportKind>()
            .unwrap_err()
            .contains("sctp"));
    }

    #[test]
    fn validate_reports_every_problem() {
        let cfg = TransportConfig {
            send_queue: 0,
            max_connections: 0,
            keepalive: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            replay_window: 100,
            max_datagram: 70_000,
            ..Default::default()
        };
        let errs = cfg.validate().unwrap_err();
        assert_eq!(errs.len(), 5, "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("replay_window = 100")));
    }
}
