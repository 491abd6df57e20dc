//! Generic message relay: per-channel sequence numbers, exactly-once receipts,
//! acknowledgements back to the source, and timeouts proven back to the source.
//!
//! A channel is one direction between two networks. The source side ([`SendChannel`])
//! commits each packet under the next sequence number. The destination side
//! ([`RecvChannel`]) keeps a receipt per sequence, so a packet relayed twice (two relayers,
//! a retry, a replay) is delivered to the application once; a packet that arrives at or after
//! its timeout is never delivered, and a timeout proof is only issued for a sequence without a
//! delivery receipt, after which delivery is refused for good. The source accepts exactly one
//! outcome per sequence: an acknowledgement or a timeout. Relayers are untrusted: they can
//! only delay, never forge (proofs are checked by the hub's adapters before these calls), and
//! these machines refuse anything inconsistent with what they hold.

use crate::types::{Address, Timestamp};
use isthmus_core::{Hash32, HashAlgo, NetworkId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One direction between two networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChannelId {
    pub source: NetworkId,
    pub destination: NetworkId,
}

/// A packet committed on its source network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packet {
    pub channel: ChannelId,
    pub sequence: u64,
    pub sender: Address,
    pub receiver: Address,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Destination-network time from which the packet can no longer be delivered.
    pub timeout: Timestamp,
}

impl Packet {
    /// What the source commits to: every field, length-prefixed so none can bleed into the
    /// next.
    pub fn commitment(&self) -> Hash32 {
        let mut buf = Vec::with_capacity(96 + self.payload.len());
        buf.extend_from_slice(b"isthmus/packet/v1\x00");
        buf.extend_from_slice(&self.channel.source.0.to_be_bytes());
        buf.extend_from_slice(&self.channel.destination.0.to_be_bytes());
        buf.extend_from_slice(&self.sequence.to_be_bytes());
        buf.extend_from_slice(&self.timeout.to_be_bytes());
        for part in [
            self.sender.0.as_bytes(),
            self.receiver.0.as_bytes(),
            &self.payload,
        ] {
            buf.extend_from_slice(&(part.len() as u64).to_be_bytes());
            buf.extend_from_slice(part);
        }
        HashAlgo::Sha256.digest(&buf)
    }
}

/// The application's answer to a delivered packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum AckResult {
    Ok {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    Error {
        message: String,
    },
}

/// Written by the destination when it delivers a packet; carried back to the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledgement {
    pub channel: ChannelId,
    pub sequence: u64,
    pub commitment: Hash32,
    pub result: AckResult,
}

/// Issued by the destination for a packet it never delivered and never will.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutProof {
    pub channel: ChannelId,
    pub sequence: u64,
    pub commitment: Hash32,
    /// Destination time when non-delivery was recorded (at or after the packet's timeout).
    pub proven_at: Timestamp,
}

/// Why a packet operation was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "code")]
pub enum PacketRejection {
    #[error("packet is for channel {got:?}, this end serves {expected:?}")]
    WrongChannel { expected: ChannelId, got: ChannelId },
    #[error("packet {sequence} timed out at {timeout}; destination time is {now}")]
    TimedOut {
        sequence: u64,
        timeout: Timestamp,
        now: Timestamp,
    },
    #[error("packet {sequence} has not timed out: timeout {timeout}, destination time {now}")]
    NotTimedOut {
        sequence: u64,
        timeout: Timestamp,
        now: Timestamp,
    },
    #[error("packet {sequence} was already delivered; its timeout cannot be proven")]
    AlreadyDelivered { sequence: u64 },
    #[error("packet {sequence} commitment {got} differs from the recorded {expected}")]
    CommitmentMismatch {
        sequence: u64,
        expected: Hash32,
        got: Hash32,
    },
    #[error("sequence {sequence} was never sent on this channel")]
    UnknownSequence { sequence: u64 },
    #[error("sequence {sequence} is settled and pruned (everything below {pruned_below})")]
    Pruned { sequence: u64, pruned_below: u64 },
    #[error("packet {sequence} already ended as {}; {} refused", existing.name(), got.name())]
    OutcomeConflict {
        sequence: u64,
        existing: SourceOutcome,
        got: SourceOutcome,
    },
}

/// The source end of a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendChannel {
    pub channel: ChannelId,
    pub next_sequence: u64,
    /// Sent packets without an outcome yet, by sequence, with their commitment and timeout.
    pub outstanding: BTreeMap<u64, (Hash32, Timestamp)>,
    /// Settled sequences not yet pruned, with whether they were acknowledged.
    pub settled: BTreeMap<u64, SourceOutcome>,
    /// Every sequence below this one is settled and forgotten.
    pub pruned_below: u64,
}

/// How a sent packet ended at its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceOutcome {
    Acknowledged,
    /// Timed out: the source refunds or reports the failure to the sender.
    TimedOut,
}

impl SourceOutcome {
    fn name(self) -> &'static str {
        match self {
            SourceOutcome::Acknowledged => "acknowledged",
            SourceOutcome::TimedOut => "timed out",
        }
    }
}

/// What applying an outcome at the source did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    /// First time: the caller acts on it (notify the sender, refund a timed-out transfer).
    New(SourceOutcome),
    /// Already applied: a replay, nothing to do.
    Duplicate(SourceOutcome),
}

impl SendChannel {
    pub fn new(channel: ChannelId) -> Self {
        SendChannel {
            channel,
            next_sequence: 1,
            outstanding: BTreeMap::new(),
            settled: BTreeMap::new(),
            pruned_below: 1,
        }
    }

    /// Commit a new packet under the next sequence number.
    pub fn send(
        &mut self,
        sender: Address,
        receiver: Address,
        payload: Vec<u8>,
        timeout: Timestamp,
    ) -> Packet {
        let packet = Packet {
            channel: self.channel,
            sequence: self.next_sequence,
            sender,
            receiver,
            payload,
            timeout,
        };
        self.outstanding
            .insert(packet.sequence, (packet.commitment(), timeout));
        self.next_sequence += 1;
        packet
    }

    pub fn acknowledge(&mut self, ack: &Acknowledgement) -> Result<Applied, PacketRejection> {
        self.settle(
            ack.channel,
            ack.sequence,
            ack.commitment,
            SourceOutcome::Acknowledged,
        )
    }

    pub fn timeout(&mut self, proof: &TimeoutProof) -> Result<Applied, PacketRejection> {
        self.settle(
            proof.channel,
            proof.sequence,
            proof.commitment,
            SourceOutcome::TimedOut,
        )
    }

    fn settle(
        &mut self,
        channel: ChannelId,
        sequence: u64,
        commitment: Hash32,
        outcome: SourceOutcome,
    ) -> Result<Applied, PacketRejection> {
        if channel != self.channel {
            return Err(PacketRejection::WrongChannel {
                expected: self.channel,
                got: channel,
            });
        }
        if let Some(existing) = self.settled.get(&sequence) {
            return if *existing == outcome {
                Ok(Applied::Duplicate(outcome))
            } else {
                Err(PacketRejection::OutcomeConflict {
                    sequence,
                    existing: *existing,
                    got: outcome,
                })
            };
        }
        if sequence < self.pruned_below {
            return Err(PacketRejection::Pruned {
                sequence,
                pruned_below: self.pruned_below,
            });
        }
        let Some((expected, _)) = self.outstanding.get(&sequence) else {
            return Err(PacketRejection::UnknownSequence { sequence });
        };
        if *expected != commitment {
            return Err(PacketRejection::CommitmentMismatch {
                sequence,
                expected: *expected,
                got: commitment,
            });
        }
        self.outstanding.remove(&sequence);
        self.settled.insert(sequence, outcome);
        Ok(Applied::New(outcome))
    }

    /// Forget the settled prefix (everything below the lowest outstanding sequence) and
    /// return the new bound, which the destination may prune its receipts to. Until then
    /// replays are answered exactly; afterwards with [`PacketRejection::Pruned`].
    pub fn prune_settled(&mut self) -> u64 {
        let low = self
            .outstanding
            .keys()
            .next()
            .copied()
            .unwrap_or(self.next_sequence);
        self.settled = self.settled.split_off(&low);
        self.pruned_below = low;
        low
    }
}

/// A destination's record of one sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "receipt")]
pub enum Receipt {
    Delivered { ack: Acknowledgement },
    TimedOut { proof: TimeoutProof },
}

/// What a relayed packet did at the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Delivery {
    /// First delivery: the application processes it; the ack goes back to the source.
    New(Acknowledgement),
    /// Already delivered: nothing to process; the same ack may be relayed again.
    Duplicate(Acknowledgement),
}

/// The destination end of a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecvChannel {
    pub channel: ChannelId,
    pub receipts: BTreeMap<u64, Receipt>,
    /// The source confirmed every sequence below this one settled; their receipts are gone
    /// and any further relay of them is refused.
    pub pruned_below: u64,
}

impl RecvChannel {
    pub fn new(channel: ChannelId) -> Self {
        RecvChannel {
            channel,
            receipts: BTreeMap::new(),
            pruned_below: 1,
        }
    }

    fn check(&self, channel: ChannelId, sequence: u64) -> Result<(), PacketRejection> {
        if channel != self.channel {
            return Err(PacketRejection::WrongChannel {
                expected: self.channel,
                got: channel,
            });
        }
        if sequence < self.pruned_below {
            return Err(PacketRejection::Pruned {
                sequence,
                pruned_below: self.pruned_below,
            });
        }
        Ok(())
    }

    /// Deliver a relayed packet at destination time `now`, with the application's answer
    /// `result` (computed only for a new delivery; pass it lazily).
    pub fn receive(
        &mut self,
        packet: &Packet,
        now: Timestamp,
        result: impl FnOnce(&Packet) -> AckResult,
    ) -> Result<Delivery, PacketRejection> {
        self.check(packet.channel, packet.sequence)?;
        let commitment = packet.commitment();
        match self.receipts.get(&packet.sequence) {
            Some(Receipt::Delivered { ack }) => {
                if ack.commitment != commitment {
                    return Err(PacketRejection::CommitmentMismatch {
                        sequence: packet.sequence,
                        expected: ack.commitment,
                        got: commitment,
                    });
                }
                return Ok(Delivery::Duplicate(ack.clone()));
            }
            Some(Receipt::TimedOut { .. }) => {
                return Err(PacketRejection::TimedOut {
                    sequence: packet.sequence,
                    timeout: packet.timeout,
                    now,
                })
            }
            None => {}
        }
        if now >= packet.timeout {
            return Err(PacketRejection::TimedOut {
                sequence: packet.sequence,
                timeout: packet.timeout,
                now,
            });
        }
        let ack = Acknowledgement {
            channel: self.channel,
            sequence: packet.sequence,
            commitment,
            result: result(packet),
        };
        self.receipts
            .insert(packet.sequence, Receipt::Delivered { ack: ack.clone() });
        Ok(Delivery::New(ack))
    }

    /// Prove, at destination time `now`, that `packet` was not delivered before its timeout,
    /// and refuse its delivery from now on. Idempotent: the same proof is returned again.
    pub fn prove_timeout(
        &mut self,
        packet: &Packet,
        now: Timestamp,
    ) -> Result<TimeoutProof, PacketRejection> {
        self.check(packet.channel, packet.sequence)?;
        let commitment = packet.commitment();
        match self.receipts.get(&packet.sequence) {
            Some(Receipt::Delivered { .. }) => {
                return Err(PacketRejection::AlreadyDelivered {
                    sequence: packet.sequence,
                })
            }
            Some(Receipt::TimedOut { proof }) => {
                if proof.commitment != commitment {
                    return Err(PacketRejection::CommitmentMismatch {
                        sequence: packet.sequence,
                        expected: proof.commitment,
                        got: commitment,
                    });
                }
                return Ok(proof.clone());
            }
            None => {}
        }
        if now < packet.timeout {
            return Err(PacketRejection::NotTimedOut {
                sequence: packet.sequence,
                timeout: packet.timeout,
                now,
            });
        }
        let proof = TimeoutProof {
            channel: self.channel,
            sequence: packet.sequence,
            commitment,
            proven_at: now,
        };
        self.receipts.insert(
            packet.sequence,
            Receipt::TimedOut {
                proof: proof.clone(),
            },
        );
        Ok(proof)
    }

    /// The source reported everything below `below` settled: drop those receipts.
    pub fn prune(&mut self, below: u64) {
        if below > self.pruned_below {
            self.receipts = self.receipts.split_off(&below);
            self.pruned_below = below;
        }
    }
}
