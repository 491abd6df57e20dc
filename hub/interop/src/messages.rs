//! Message relay: generic cross-network packets, driven durably by the hub.
//!
//! A message is committed on its source network (the sender's `send`, signed with the key
//! the hub's wallet keeps for the sender), delivered on the destination under the hub's
//! attestation, and its acknowledgement settled back on the source; or, when the
//! destination's time passes the packet's timeout first, the timeout is proven on the
//! destination and settled on the source.
//!
//! [`MessageRelay`] keeps one record per message in a sled tree and flushes it before it
//! acts on it. Every step first reads the chains' write-once records (receipt on the
//! destination, outcome on the source) through the [`PacketPort`], so a step repeated after
//! a crash or a restart finds the work done instead of doing it twice; the chains' own
//! receipts make a second delivery impossible in any case.

use crate::service::Clock;
use isthmus_core::NetworkId;
use isthmus_lock_contracts::packet::{
    Acknowledgement, Packet, Receipt, SourceOutcome, TimeoutProof,
};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

// The port is the adapter API's (each platform implements it); re-exported for the relay's users.
pub use isthmus_adapter_api::port::{MessageSpec, PacketPort, PortError, SendTicket};

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The message store failed; retrying may help once the disk recovers.
    #[error("message store: {0}")]
    Store(#[from] sled::Error),
    /// A stored record does not decode: a bug or corruption, retrying cannot help.
    #[error("corrupt message record `{0}`")]
    Corrupt(String),
    #[error(transparent)]
    Port(#[from] PortError),
    #[error("no message `{0}`")]
    NotFound(String),
}

impl MessageError {
    /// Whether the same request may succeed later: the store or a network is failing for
    /// now. A refusal, a missing message or a corrupt record stays as it is.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            MessageError::Store(_) | MessageError::Port(PortError::Retryable(_))
        )
    }
}

/// A message to send, with its networks resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRequest {
    pub source: NetworkId,
    pub destination: NetworkId,
    pub sender: String,
    pub recipient: String,
    pub payload: Vec<u8>,
    /// How long, in the destination's time, the packet may take to be delivered.
    pub timeout_secs: u64,
}

/// Where a message is. Terminal: `Acknowledged`, `TimedOut`, `Failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum Phase {
    Committing {
        ticket: SendTicket,
    },
    Committed {
        ticket: SendTicket,
        packet: Packet,
    },
    Delivered {
        ticket: SendTicket,
        packet: Packet,
        ack: Acknowledgement,
    },
    Acknowledged {
        ticket: SendTicket,
        packet: Packet,
        ack: Acknowledgement,
    },
    TimingOut {
        ticket: SendTicket,
        packet: Packet,
        proof: TimeoutProof,
    },
    TimedOut {
        ticket: SendTicket,
        packet: Packet,
        proof: TimeoutProof,
    },
    Failed {
        reason: String,
    },
}

impl Phase {
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Committing { .. } => "committing",
            Phase::Committed { .. } => "committed",
            Phase::Delivered { .. } => "delivered",
            Phase::Acknowledged { .. } => "acknowledged",
            Phase::TimingOut { .. } => "timing_out",
            Phase::TimedOut { .. } => "timed_out",
            Phase::Failed { .. } => "failed",
        }
    }

    pub fn terminal(&self) -> bool {
        matches!(
            self,
            Phase::Acknowledged { .. } | Phase::TimedOut { .. } | Phase::Failed { .. }
        )
    }

    /// The machine-readable reason of the status.
    pub fn reason(&self) -> &str {
        match self {
            Phase::Committing { .. } => "awaiting_commit",
            Phase::Committed { .. } => "awaiting_delivery",
            Phase::Delivered { .. } => "awaiting_ack",
            Phase::Acknowledged { .. } => "acknowledged",
            Phase::TimingOut { .. } => "awaiting_timeout_settlement",
            Phase::TimedOut { .. } => "timed_out",
            Phase::Failed { reason } => reason,
        }
    }

    /// The committed packet, once there is one.
    pub fn packet(&self) -> Option<&Packet> {
        match self {
            Phase::Committed { packet, .. }
            | Phase::Delivered { packet, .. }
            | Phase::Acknowledged { packet, .. }
            | Phase::TimingOut { packet, .. }
            | Phase::TimedOut { packet, .. } => Some(packet),
            Phase::Committing { .. } | Phase::Failed { .. } => None,
        }
    }

    /// The source transaction, unless the message failed.
    pub fn ticket(&self) -> Option<&SendTicket> {
        match self {
            Phase::Committing { ticket }
            | Phase::Committed { ticket, .. }
            | Phase::Delivered { ticket, .. }
            | Phase::Acknowledged { ticket, .. }
            | Phase::TimingOut { ticket, .. }
            | Phase::TimedOut { ticket, .. } => Some(ticket),
            Phase::Failed { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub api_id: String,
    /// The tenant that owns the message.
    #[serde(default = "crate::journal::default_tenant")]
    pub tenant: String,
    pub spec: MessageSpec,
    pub phase: Phase,
    /// Set while a committed packet waits for its timeout to be proven.
    pub awaiting_timeout_proof: bool,
    pub created_at: u64,
    pub updated_at: u64,
}

/// The durable message driver.
pub struct MessageRelay {
    db: sled::Db,
    tree: sled::Tree,
    port: Arc<dyn PacketPort>,
    /// One step at a time: ports sign with one submitter key.
    stepping: tokio::sync::Mutex<()>,
    /// With a relayer in front: how long (seconds) a committed packet without a receipt is
    /// left to the relayer before the hub delivers it itself. `None`: at once.
    relayer_grace: Option<u64>,
    /// Deliveries the hub made itself (no relayer, or the relayer's grace ran out).
    direct_deliveries: std::sync::atomic::AtomicU64,
}

impl MessageRelay {
    /// The relay over the `messages` tree of `db`; existing records resume where they were.
    pub fn open(db: sled::Db, port: Arc<dyn PacketPort>) -> Result<MessageRelay, MessageError> {
        let tree = db.open_tree("messages")?;
        Ok(MessageRelay {
            db,
            tree,
            port,
            stepping: tokio::sync::Mutex::new(()),
            relayer_grace: None,
            direct_deliveries: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Packets reach their destination through a relayer ([`deliver_relayed`]
    /// (Self::deliver_relayed)); the hub delivers a committed packet itself only once it
    /// has waited `grace_secs` without a receipt (a stalled relayer, or a crash between the
    /// ingress's receipt and the delivery). Timeouts are still proven by the hub.
    pub fn with_relayer(mut self, grace_secs: u64) -> MessageRelay {
        self.relayer_grace = Some(grace_secs);
        self
    }

    /// How many deliveries the hub made itself rather than for a relayer.
    pub fn direct_deliveries(&self) -> u64 {
        self.direct_deliveries
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Deliver a packet a relayer carried (verified by the hub's ingress) on its
    /// destination, one step at a time with [`step`](Self::step) (one submitter key).
    /// Returns whether this call delivered it: `false` when the destination already has a
    /// receipt, or when its time passed the packet's timeout (left to the timeout proof).
    pub async fn deliver_relayed(&self, packet: &Packet) -> Result<bool, MessageError> {
        let _one = self.stepping.lock().await;
        let p = &self.port;
        if p.receipt(packet).await?.is_some()
            || p.time(packet.channel.destination).await? >= packet.timeout
        {
            return Ok(false);
        }
        p.deliver(packet).await?;
        Ok(p.receipt(packet).await?.is_some())
    }

    pub fn get(&self, api_id: &str) -> Result<Option<MessageRecord>, MessageError> {
        self.tree
            .get(api_id.as_bytes())?
            .map(|b| decode(api_id, &b))
            .transpose()
    }

    /// Every record, in id order.
    pub fn all(&self) -> Result<Vec<MessageRecord>, MessageError> {
        self.tree
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                decode(&String::from_utf8_lossy(&k), &v)
            })
            .collect()
    }

    async fn put(&self, rec: &MessageRecord) -> Result<(), MessageError> {
        let bytes =
            rmp_serde::to_vec_named(rec).map_err(|_| MessageError::Corrupt(rec.api_id.clone()))?;
        self.tree.insert(rec.api_id.as_bytes(), bytes)?;
        self.db.flush_async().await?;
        Ok(())
    }

    /// Record a message of the default tenant ([`create_owned`](Self::create_owned)).
    pub async fn create(
        &self,
        api_id: &str,
        spec: MessageSpec,
        now: u64,
    ) -> Result<MessageRecord, MessageError> {
        self.create_owned(crate::journal::DEFAULT_TENANT, api_id, spec, now)
            .await
    }

    /// Record the message, owned by `tenant` (its signed send first, flushed), then submit
    /// the send. A second call with the same id returns the existing record.
    pub async fn create_owned(
        &self,
        tenant: &str,
        api_id: &str,
        spec: MessageSpec,
        now: u64,
    ) -> Result<MessageRecord, MessageError> {
        let _one = self.stepping.lock().await;
        if let Some(rec) = self.get(api_id)? {
            return Ok(rec);
        }
        let ticket = self.port.prepare_send(&spec).await?;
        let rec = MessageRecord {
            api_id: api_id.to_owned(),
            tenant: tenant.to_owned(),
            spec,
            phase: Phase::Committing { ticket },
            awaiting_timeout_proof: false,
            created_at: now,
            updated_at: now,
        };
        self.put(&rec).await?;
        drop(_one);
        // The record is durable: a network that is slow now leaves the send to `run`.
        match self.step(api_id, now).await {
            Err(MessageError::Port(PortError::Retryable(e))) => {
                tracing::warn!(id = api_id, %e, "message recorded; its send is retried");
                Ok(rec)
            }
            other => other,
        }
    }

    /// Record and send message `api_id` of the default tenant ([`send_owned`]
    /// (Self::send_owned)).
    pub async fn send(
        &self,
        api_id: &str,
        req: MessageRequest,
        now: u64,
    ) -> Result<MessageRecord, MessageError> {
        self.send_owned(crate::journal::DEFAULT_TENANT, api_id, req, now)
            .await
    }

    /// Record and send message `api_id`, owned by `tenant` ([`create_owned`]
    /// (Self::create_owned)), its timeout counted from the destination's time now.
    pub async fn send_owned(
        &self,
        tenant: &str,
        api_id: &str,
        req: MessageRequest,
        now: u64,
    ) -> Result<MessageRecord, MessageError> {
        let port_time = self.port.time(req.destination).await?;
        let spec = MessageSpec {
            source: req.source,
            destination: req.destination,
            sender: req.sender,
            recipient: req.recipient,
            payload: req.payload,
            timeout: port_time.saturating_add(req.timeout_secs),
        };
        self.create_owned(tenant, api_id, spec, now).await
    }

    /// One idempotent step of message `api_id`: read the chains, record what they show
    /// (flushed), and do at most one submission for what remains.
    pub async fn step(&self, api_id: &str, now: u64) -> Result<MessageRecord, MessageError> {
        let _one = self.stepping.lock().await;
        let mut rec = self
            .get(api_id)?
            .ok_or_else(|| MessageError::NotFound(api_id.to_owned()))?;
        let next = match self.advance(&rec, now).await {
            Ok(n) => n,
            Err(PortError::Refused(r)) => Some((
                Phase::Failed {
                    reason: format!("refused: {r}"),
                },
                false,
            )),
            Err(e) => return Err(e.into()),
        };
        if let Some((phase, waiting)) = next {
            if phase != rec.phase || waiting != rec.awaiting_timeout_proof {
                rec.phase = phase;
                rec.awaiting_timeout_proof = waiting;
                rec.updated_at = now;
                self.put(&rec).await?;
            }
        }
        Ok(rec)
    }

    /// The phase the chains show now (`None`: unchanged), acting when they show work left.
    async fn advance(
        &self,
        rec: &MessageRecord,
        now: u64,
    ) -> Result<Option<(Phase, bool)>, PortError> {
        let p = &self.port;
        Ok(match &rec.phase {
            Phase::Committing { ticket } => {
                if let Some(packet) = p.committed(rec.spec.source, ticket).await? {
                    Some((
                        Phase::Committed {
                            ticket: ticket.clone(),
                            packet,
                        },
                        false,
                    ))
                } else {
                    p.submit_send(&rec.spec, ticket).await?;
                    p.committed(rec.spec.source, ticket).await?.map(|packet| {
                        (
                            Phase::Committed {
                                ticket: ticket.clone(),
                                packet,
                            },
                            false,
                        )
                    })
                }
            }
            Phase::Committed { ticket, packet } => {
                let ticket = ticket.clone();
                let seen = match p.receipt(packet).await? {
                    Some(r) => Some(r),
                    None => {
                        if p.time(packet.channel.destination).await? >= packet.timeout {
                            p.prove_timeout(packet).await?;
                        } else if self
                            .relayer_grace
                            .is_some_and(|g| now < rec.updated_at.saturating_add(g))
                        {
                            // The relayer's turn: nothing to record yet.
                            return Ok(None);
                        } else {
                            p.deliver(packet).await?;
                            self.direct_deliveries
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        p.receipt(packet).await?
                    }
                };
                match seen {
                    Some(Receipt::Delivered { ack }) => Some((
                        Phase::Delivered {
                            ticket,
                            packet: packet.clone(),
                            ack,
                        },
                        false,
                    )),
                    Some(Receipt::TimedOut { proof }) => Some((
                        Phase::TimingOut {
                            ticket,
                            packet: packet.clone(),
                            proof,
                        },
                        false,
                    )),
                    // Not delivered: the destination refused it (late, say); the timeout
                    // is proven on the next step.
                    None => Some((
                        Phase::Committed {
                            ticket,
                            packet: packet.clone(),
                        },
                        true,
                    )),
                }
            }
            Phase::Delivered {
                ticket,
                packet,
                ack,
            } => {
                let mut out = p.outcome(packet).await?;
                if out.is_none() {
                    p.settle_ack(ack).await?;
                    out = p.outcome(packet).await?;
                }
                settled(out, SourceOutcome::Acknowledged, || Phase::Acknowledged {
                    ticket: ticket.clone(),
                    packet: packet.clone(),
                    ack: ack.clone(),
                })?
            }
            Phase::TimingOut {
                ticket,
                packet,
                proof,
            } => {
                let mut out = p.outcome(packet).await?;
                if out.is_none() {
                    p.settle_timeout(proof).await?;
                    out = p.outcome(packet).await?;
                }
                settled(out, SourceOutcome::TimedOut, || Phase::TimedOut {
                    ticket: ticket.clone(),
                    packet: packet.clone(),
                    proof: proof.clone(),
                })?
            }
            Phase::Acknowledged { .. } | Phase::TimedOut { .. } | Phase::Failed { .. } => None,
        })
    }

    /// Step every unfinished message each `interval` until `stop`. Errors are logged and
    /// retried on the next round.
    pub async fn run(&self, clock: Clock, interval: Duration, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            match self.all() {
                Ok(all) => {
                    for rec in all.iter().filter(|r| !r.phase.terminal()) {
                        if let Err(e) = self.step(&rec.api_id, clock()).await {
                            tracing::warn!(id = %rec.api_id, %e, "message step failed; retrying");
                        }
                    }
                }
                Err(e) => tracing::error!(%e, "could not read the message store"),
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}

fn settled(
    out: Option<SourceOutcome>,
    want: SourceOutcome,
    next: impl FnOnce() -> Phase,
) -> Result<Option<(Phase, bool)>, PortError> {
    match out {
        Some(o) if o == want => Ok(Some((next(), false))),
        Some(o) => Err(PortError::Refused(format!(
            "the source settled the sequence as {o:?}, not {want:?}"
        ))),
        None => Ok(None),
    }
}

fn decode(id: &str, b: &[u8]) -> Result<MessageRecord, MessageError> {
    rmp_serde::from_slice(b).map_err(|_| MessageError::Corrupt(id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_core::{Hash32, NetworkId};
    use isthmus_lock_contracts::packet::{AckResult, ChannelId};
    use isthmus_lock_contracts::Address;
    use std::sync::Mutex;

    /// Two networks in memory: a packet store on the source, receipts on the destination.
    #[derive(Default)]
    struct Fake {
        packets: Mutex<Vec<(Hash32, Packet)>>,
        receipts: Mutex<Option<Receipt>>,
        outcome: Mutex<Option<SourceOutcome>>,
        time: Mutex<u64>,
        deliveries: Mutex<u32>,
    }

    fn spec(timeout: u64) -> MessageSpec {
        MessageSpec {
            source: NetworkId(1),
            destination: NetworkId(2),
            sender: "alice".into(),
            recipient: "app".into(),
            payload: b"hi".to_vec(),
            timeout,
        }
    }

    #[async_trait::async_trait]
    impl PacketPort for Fake {
        async fn prepare_send(&self, _: &MessageSpec) -> Result<SendTicket, PortError> {
            Ok(SendTicket {
                id: Hash32([7; 32]),
                tx: vec![1],
            })
        }
        async fn submit_send(&self, s: &MessageSpec, t: &SendTicket) -> Result<(), PortError> {
            let mut p = self.packets.lock().unwrap();
            if !p.iter().any(|(id, _)| *id == t.id) {
                let sequence = p.len() as u64 + 1;
                p.push((
                    t.id,
                    Packet {
                        channel: ChannelId {
                            source: s.source,
                            destination: s.destination,
                        },
                        sequence,
                        sender: Address(s.sender.clone()),
                        receiver: Address(s.recipient.clone()),
                        payload: s.payload.clone(),
                        timeout: s.timeout,
                    },
                ));
            }
            Ok(())
        }
        async fn committed(
            &self,
            _: NetworkId,
            t: &SendTicket,
        ) -> Result<Option<Packet>, PortError> {
            let p = self.packets.lock().unwrap();
            Ok(p.iter().find(|(id, _)| *id == t.id).map(|(_, p)| p.clone()))
        }
        async fn receipt(&self, _: &Packet) -> Result<Option<Receipt>, PortError> {
            Ok(self.receipts.lock().unwrap().clone())
        }
        async fn time(&self, _: NetworkId) -> Result<u64, PortError> {
            Ok(*self.time.lock().unwrap())
        }
        async fn deliver(&self, p: &Packet) -> Result<(), PortError> {
            *self.deliveries.lock().unwrap() += 1;
            let mut r = self.receipts.lock().unwrap();
            if r.is_none() {
                *r = Some(Receipt::Delivered {
                    ack: Acknowledgement {
                        channel: p.channel,
                        sequence: p.sequence,
                        commitment: p.commitment(),
                        result: AckResult::Ok { data: vec![] },
                    },
                });
            }
            Ok(())
        }
        async fn prove_timeout(&self, p: &Packet) -> Result<(), PortError> {
            let mut r = self.receipts.lock().unwrap();
            if r.is_none() {
                *r = Some(Receipt::TimedOut {
                    proof: TimeoutProof {
                        channel: p.channel,
                        sequence: p.sequence,
                        commitment: p.commitment(),
                        proven_at: *self.time.lock().unwrap(),
                    },
                });
            }
            Ok(())
        }
        async fn settle_ack(&self, _: &Acknowledgement) -> Result<(), PortError> {
            self.outcome
                .lock()
                .unwrap()
                .get_or_insert(SourceOutcome::Acknowledged);
            Ok(())
        }
        async fn settle_timeout(&self, _: &TimeoutProof) -> Result<(), PortError> {
            self.outcome
                .lock()
                .unwrap()
                .get_or_insert(SourceOutcome::TimedOut);
            Ok(())
        }
        async fn outcome(&self, _: &Packet) -> Result<Option<SourceOutcome>, PortError> {
            Ok(*self.outcome.lock().unwrap())
        }
    }

    fn relay(db: &sled::Db, port: &Arc<Fake>) -> MessageRelay {
        MessageRelay::open(db.clone(), port.clone()).unwrap()
    }

    /// A delivery that reached the destination but was never recorded (a crash between
    /// acting and recording) is found by the next step, not repeated.
    #[tokio::test]
    async fn a_delivery_lost_before_recording_is_read_back_not_repeated() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let port = Arc::new(Fake::default());
        let r = relay(&db, &port);
        let rec = r.create("m", spec(100), 1).await.unwrap();
        assert_eq!(rec.phase.name(), "committed");
        let packet = rec.phase.packet().unwrap().clone();
        // The destination delivered it; the relay crashed before recording.
        port.deliver(&packet).await.unwrap();
        drop(r);
        let r = relay(&db, &port);
        assert_eq!(r.step("m", 2).await.unwrap().phase.name(), "delivered");
        assert_eq!(r.step("m", 3).await.unwrap().phase.name(), "acknowledged");
        assert_eq!(*port.deliveries.lock().unwrap(), 1);
        // Creating it again returns the record; stepping a finished one does nothing.
        assert_eq!(r.create("m", spec(100), 4).await.unwrap().updated_at, 3);
        assert_eq!(r.step("m", 5).await.unwrap().updated_at, 3);
    }

    #[tokio::test]
    async fn a_late_packet_is_proven_timed_out_and_settled() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let port = Arc::new(Fake::default());
        let r = relay(&db, &port);
        r.create("m", spec(10), 1).await.unwrap();
        *port.time.lock().unwrap() = 10;
        assert_eq!(
            r.step("m", 2).await.unwrap().phase.reason(),
            "awaiting_timeout_settlement"
        );
        let done = r.step("m", 3).await.unwrap();
        assert_eq!(
            (done.phase.name(), done.phase.terminal()),
            ("timed_out", true)
        );
        assert_eq!(*port.deliveries.lock().unwrap(), 0);
    }

    /// With a relayer in front, the hub waits for it: the relayed delivery lands once, a
    /// second relayed copy changes nothing, and the hub delivers itself only after the grace.
    #[tokio::test]
    async fn a_relayer_delivers_first_and_the_hub_only_after_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let port = Arc::new(Fake::default());
        let r = relay(&db, &port).with_relayer(10);
        let rec = r.create("m", spec(100), 1).await.unwrap();
        let packet = rec.phase.packet().unwrap().clone();
        assert_eq!(r.step("m", 5).await.unwrap().phase.name(), "committed");
        assert_eq!(*port.deliveries.lock().unwrap(), 0, "the relayer's turn");
        assert!(r.deliver_relayed(&packet).await.unwrap());
        assert!(
            !r.deliver_relayed(&packet).await.unwrap(),
            "already delivered"
        );
        assert_eq!(r.step("m", 6).await.unwrap().phase.name(), "delivered");
        assert_eq!(*port.deliveries.lock().unwrap(), 1);
        assert_eq!(r.direct_deliveries(), 0);

        // No relayer shows up: once the grace has passed, the hub delivers itself.
        let port = Arc::new(Fake::default());
        let r = MessageRelay::open(db.clone(), port.clone())
            .unwrap()
            .with_relayer(10);
        r.create("n", spec(100), 20).await.unwrap();
        assert_eq!(r.step("n", 29).await.unwrap().phase.name(), "committed");
        assert_eq!(r.step("n", 30).await.unwrap().phase.name(), "delivered");
        assert_eq!(r.direct_deliveries(), 1);
    }

    /// A source that settled the other way is a failure, not a silent success.
    #[tokio::test]
    async fn a_conflicting_settlement_fails_the_message() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let port = Arc::new(Fake::default());
        let r = relay(&db, &port);
        r.create("m", spec(100), 1).await.unwrap();
        r.step("m", 2).await.unwrap();
        *port.outcome.lock().unwrap() = Some(SourceOutcome::TimedOut);
        let rec = r.step("m", 3).await.unwrap();
        assert_eq!(rec.phase.name(), "failed");
        assert!(
            rec.phase.reason().contains("TimedOut"),
            "{}",
            rec.phase.reason()
        );
    }
}
