//! Per-endpoint counters, mirrored to the `metrics` facade so a Prometheus exporter (if the
//! binary installs one) sees them too.

use crate::TransportKind;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one endpoint. Read them with [`TransportStats::snapshot`].
#[derive(Debug, Default)]
pub struct TransportStats {
    kind: &'static str,
    handshakes_ok: AtomicU64,
    handshakes_refused: AtomicU64,
    handshakes_failed: AtomicU64,
    connections_refused: AtomicU64,
    frames_rejected: AtomicU64,
    decrypt_failures: AtomicU64,
    udp_replays_dropped: AtomicU64,
    udp_too_old_dropped: AtomicU64,
    udp_recv_queue_full: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Handshakes that completed with an accepted peer.
    pub handshakes_ok: u64,
    /// Handshakes refused because of the allowlist or the expected peer id.
    pub handshakes_refused: u64,
    /// Handshakes that failed for any other reason (bad binding, timeout, garbage).
    pub handshakes_failed: u64,
    /// Connections refused because the endpoint was at `max_connections`.
    pub connections_refused: u64,
    /// Frames rejected by the decoder (too large, malformed, ...); the connection closes.
    pub frames_rejected: u64,
    /// Ciphertexts that failed authentication.
    pub decrypt_failures: u64,
    /// UDP datagrams dropped as replays of one already received.
    pub udp_replays_dropped: u64,
    /// UDP datagrams dropped as older than the replay window.
    pub udp_too_old_dropped: u64,
    /// UDP datagrams dropped because the application did not read fast enough.
    pub udp_recv_queue_full: u64,
}

impl TransportStats {
    pub(crate) fn new(kind: TransportKind) -> Self {
        TransportStats {
            kind: kind.as_str(),
            ..Default::default()
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            handshakes_ok: g(&self.handshakes_ok),
            handshakes_refused: g(&self.handshakes_refused),
            handshakes_failed: g(&self.handshakes_failed),
            connections_refused: g(&self.connections_refused),
            frames_rejected: g(&self.frames_rejected),
            decrypt_failures: g(&self.decrypt_failures),
            udp_replays_dropped: g(&self.udp_replays_dropped),
            udp_too_old_dropped: g(&self.udp_too_old_dropped),
            udp_recv_queue_full: g(&self.udp_recv_queue_full),
        }
    }

    pub(crate) fn handshake_ok(&self) {
        self.handshakes_ok.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("isthmus_transport_handshakes_total", "transport" => self.kind, "outcome" => "ok")
            .increment(1);
    }

    pub(crate) fn handshake_refused(&self) {
        self.handshakes_refused.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("isthmus_transport_handshakes_refused_total", "transport" => self.kind)
            .increment(1);
    }

    pub(crate) fn handshake_failed(&self, reason: &'static str) {
        self.handshakes_failed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("isthmus_transport_handshakes_failed_total", "transport" => self.kind, "reason" => reason)
            .increment(1);
    }

    pub(crate) fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("isthmus_transport_connections_refused_total", "transport" => self.kind)
            .increment(1);
    }

    pub(crate) fn frame_rejected(&self, reason: &'static str) {
        self.frames_rejected.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("isthmus_transport_frames_rejected_total", "transport" => self.kind, "reason" => reason)
            .increment(1);
    }

    pub(crate) fn decrypt_failed(&self) {
        self.decrypt_failures.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("isthmus_transport_frames_rejected_total", "transport" => self.kind, "reason" => "decrypt")
            .increment(1);
    }

    pub(crate) fn udp_replay(&self, too_old: bool) {
        let (counter, kind) = if too_old {
            (&self.udp_too_old_dropped, "too_old")
        } else {
            (&self.udp_replays_dropped, "duplicate")
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("isthmus_transport_udp_replays_dropped_total", "kind" => kind)
            .increment(1);
    }

    pub(crate) fn udp_queue_full(&self) {
        self.udp_recv_queue_full.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("isthmus_transport_udp_recv_queue_full_total").increment(1);
    }
}
