//! The `packets` module: generic cross-network packets on a native network.
//!
//! Source side: `send` commits a packet under the channel's next sequence number and stores
//! its commitment; `ack` and `timeout` settle a sequence exactly once. Destination side:
//! `recv` delivers a packet once per sequence (never at or after its timeout, judged by the
//! block timestamp) and writes a receipt holding the acknowledgement; `recv_timeout` records
//! that a timed-out packet was never delivered, so it never will be, and yields the timeout
//! proof for the source. Every call but `send` must carry a threshold of signatures by the
//! hub's attester keys ([`PacketTrust`]) over [`PacketCall::attested_payload`], signed under
//! `Domain::Packet` and the id of the network that executes the call: a relayer, or anyone
//! else, can submit them, but nobody without the hub's keys can forge one, and a signature
//! made for one network or one kind of call is void for any other.
//!
//! The decisions are the pure `SendChannel` / `RecvChannel` machines of the lock contracts,
//! run on a view holding just the sequence concerned. A refused call (duplicate, forged,
//! late, inconsistent) fails the transaction and changes no module state.
//!
//! [`decode_call`] and [`event_for`] are the stable surface adapters use to turn committed
//! packet-module transactions into adapter events.

use crate::module_error::ModuleError;
use crate::state::{module_key, CallCtx, Module, ModuleStore};
use crate::tx::TxKind;
use isthmus_core::{sign, Domain, Hash32, Keypair, NetworkId, NodeId, Signature};
use isthmus_lock_contracts::packet::{
    AckResult, Acknowledgement, Applied, ChannelId, Delivery, Packet, PacketRejection, Receipt,
    RecvChannel, SendChannel, SourceOutcome, TimeoutProof,
};
use isthmus_lock_contracts::{Address, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The name the module is registered under.
pub const MODULE: &str = "packets";

/// Method names.
pub mod method {
    pub const SEND: &str = "send";
    pub const RECV: &str = "recv";
    pub const RECV_TIMEOUT: &str = "recv_timeout";
    pub const ACK: &str = "ack";
    pub const TIMEOUT: &str = "timeout";
}

/// `send`: commit a packet from the transaction's sender to `receiver` on `destination`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendArgs {
    pub destination: NetworkId,
    pub receiver: String,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Destination time (seconds) from which the packet can no longer be delivered.
    pub timeout: Timestamp,
}

/// One hub attester's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    pub signer: NodeId,
    pub signature: Signature,
}

/// `recv` and `recv_timeout` (destination side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecvArgs {
    pub packet: Packet,
    pub attestations: Vec<Attestation>,
}

/// `ack` (source side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckArgs {
    pub ack: Acknowledgement,
    pub attestations: Vec<Attestation>,
}

/// `timeout` (source side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutArgs {
    pub proof: TimeoutProof,
    pub attestations: Vec<Attestation>,
}

/// A decoded call of the packets module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketCall {
    Send(SendArgs),
    Recv(RecvArgs),
    RecvTimeout(RecvArgs),
    Ack(AckArgs),
    Timeout(TimeoutArgs),
}

/// Decode a module call's `method` and `args` (positional msgpack). `None` when the method is
/// unknown or the args do not decode. Pure; adapters call it on every committed
/// `packets` transaction.
pub fn decode_call(method: &str, args: &[u8]) -> Option<PacketCall> {
    Some(match method {
        method::SEND => PacketCall::Send(rmp_serde::from_slice(args).ok()?),
        method::RECV => PacketCall::Recv(rmp_serde::from_slice(args).ok()?),
        method::RECV_TIMEOUT => PacketCall::RecvTimeout(rmp_serde::from_slice(args).ok()?),
        method::ACK => PacketCall::Ack(rmp_serde::from_slice(args).ok()?),
        method::TIMEOUT => PacketCall::Timeout(rmp_serde::from_slice(args).ok()?),
        _ => return None,
    })
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Plain data into a Vec: cannot fail.
    rmp_serde::to_vec(v).unwrap_or_default()
}

impl PacketCall {
    pub fn method(&self) -> &'static str {
        match self {
            PacketCall::Send(_) => method::SEND,
            PacketCall::Recv(_) => method::RECV,
            PacketCall::RecvTimeout(_) => method::RECV_TIMEOUT,
            PacketCall::Ack(_) => method::ACK,
            PacketCall::Timeout(_) => method::TIMEOUT,
        }
    }

    pub fn encode_args(&self) -> Vec<u8> {
        match self {
            PacketCall::Send(a) => encode(a),
            PacketCall::Recv(a) | PacketCall::RecvTimeout(a) => encode(a),
            PacketCall::Ack(a) => encode(a),
            PacketCall::Timeout(a) => encode(a),
        }
    }

    /// The transaction kind that makes this call.
    pub fn into_tx_kind(self) -> TxKind {
        TxKind::ModuleCall {
            module: MODULE.to_owned(),
            method: self.method().to_owned(),
            args: self.encode_args(),
        }
    }

    /// The bytes the hub's attesters sign for this call (`None` for `send`, which the
    /// sender's own transaction signature authorises).
    pub fn attested_payload(&self) -> Option<Vec<u8>> {
        let (tag, body) = match self {
            PacketCall::Send(_) => return None,
            PacketCall::Recv(a) => (method::RECV, encode(&a.packet)),
            PacketCall::RecvTimeout(a) => (method::RECV_TIMEOUT, encode(&a.packet)),
            PacketCall::Ack(a) => (method::ACK, encode(&a.ack)),
            PacketCall::Timeout(a) => (method::TIMEOUT, encode(&a.proof)),
        };
        let mut out = Vec::with_capacity(32 + body.len());
        out.extend_from_slice(b"isthmus/packets/v1\x00");
        out.extend_from_slice(tag.as_bytes());
        out.push(0);
        out.extend_from_slice(&body);
        Some(out)
    }

    fn attestations_mut(&mut self) -> Option<&mut Vec<Attestation>> {
        match self {
            PacketCall::Send(_) => None,
            PacketCall::Recv(a) | PacketCall::RecvTimeout(a) => Some(&mut a.attestations),
            PacketCall::Ack(a) => Some(&mut a.attestations),
            PacketCall::Timeout(a) => Some(&mut a.attestations),
        }
    }

    fn attestations(&self) -> &[Attestation] {
        match self {
            PacketCall::Send(_) => &[],
            PacketCall::Recv(a) | PacketCall::RecvTimeout(a) => &a.attestations,
            PacketCall::Ack(a) => &a.attestations,
            PacketCall::Timeout(a) => &a.attestations,
        }
    }

    /// Add the signatures of `keys` (the hub's attesters) for execution on `network`.
    pub fn attest(mut self, network: NetworkId, keys: &[Keypair]) -> Self {
        if let Some(payload) = self.attested_payload() {
            let sigs: Vec<Attestation> = keys
                .iter()
                .map(|k| Attestation {
                    signer: k.id(),
                    signature: k.sign(Domain::Packet, network, &payload),
                })
                .collect();
            if let Some(list) = self.attestations_mut() {
                list.extend(sigs);
            }
        }
        self
    }
}

/// Who may authorise deliveries and settlements: the hub's attester keys and how many of
/// them must sign.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PacketTrust {
    pub attesters: BTreeSet<NodeId>,
    pub threshold: usize,
}

impl PacketTrust {
    /// How many distinct trusted attesters validly signed `call` for `network`.
    pub fn signers(&self, network: NetworkId, call: &PacketCall) -> usize {
        let Some(payload) = call.attested_payload() else {
            return 0;
        };
        let mut seen = BTreeSet::new();
        for a in call.attestations() {
            if !self.attesters.contains(&a.signer) || seen.contains(&a.signer) {
                continue;
            }
            if sign::verify(&a.signer, Domain::Packet, network, &payload, &a.signature).is_ok() {
                seen.insert(a.signer);
            }
        }
        seen.len()
    }

    fn authorise(&self, network: NetworkId, call: &PacketCall) -> Result<(), ModuleError> {
        if self.threshold == 0 {
            return Err(ModuleError::NoAttesters);
        }
        let n = self.signers(network, call);
        if n < self.threshold {
            return Err(ModuleError::ThresholdNotMet {
                subject: format!("`{}` call", call.method()),
                valid: n,
                required: self.threshold,
            });
        }
        Ok(())
    }
}

/// The source's record of a sent sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRecord {
    pub commitment: Hash32,
    pub timeout: Timestamp,
    pub outcome: Option<SourceOutcome>,
}

// Module-relative keys. Network ids and sequences are big-endian so keys sort by them.
fn next_seq_key(destination: NetworkId) -> Vec<u8> {
    let mut k = b"n/".to_vec();
    k.extend_from_slice(&destination.0.to_be_bytes());
    k
}

fn seq_key(prefix: &[u8], network: NetworkId, seq: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&network.0.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn sent_rel_key(destination: NetworkId, seq: u64) -> Vec<u8> {
    seq_key(b"s/", destination, seq)
}

fn receipt_rel_key(source: NetworkId, seq: u64) -> Vec<u8> {
    seq_key(b"r/", source, seq)
}

fn by_tx_rel_key(tx_id: &Hash32) -> Vec<u8> {
    let mut k = b"t/".to_vec();
    k.extend_from_slice(tx_id.as_bytes());
    k
}

/// Full state key of the packet a `send` transaction committed (value: msgpack [`Packet`]).
pub fn committed_packet_key(tx_id: &Hash32) -> Vec<u8> {
    module_key(MODULE, &by_tx_rel_key(tx_id))
}

/// Full state key of the source's [`SendRecord`] for a sequence of a channel.
pub fn send_record_key(channel: ChannelId, sequence: u64) -> Vec<u8> {
    module_key(MODULE, &sent_rel_key(channel.destination, sequence))
}

/// Full state key of the destination's receipt (msgpack `packet::Receipt`) for a sequence.
pub fn receipt_key(channel: ChannelId, sequence: u64) -> Vec<u8> {
    module_key(MODULE, &receipt_rel_key(channel.source, sequence))
}

fn decode_value<'a, T: Deserialize<'a>>(what: &str, bytes: &'a [u8]) -> Result<T, ModuleError> {
    rmp_serde::from_slice(bytes).map_err(|e| ModuleError::corrupt(what, e))
}

/// What a successful packets transaction did, for adapters' event streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketEvent {
    /// `send` committed this packet (source side).
    Committed(Packet),
    /// `recv` delivered a packet; this acknowledgement goes back to the source.
    Received(Acknowledgement),
    /// `recv_timeout` recorded non-delivery; this proof goes back to the source.
    TimedOut(TimeoutProof),
    /// `ack` or `timeout` settled a sequence at the source.
    Settled {
        channel: ChannelId,
        sequence: u64,
        outcome: SourceOutcome,
    },
}

/// The event of a *successful* packets transaction `tx_id` carrying `call`, reading the
/// state it wrote through `read` (full state keys, e.g. `State::get`). `None` if the state
/// does not hold what the call would have written (the transaction failed).
pub fn event_for(
    call: &PacketCall,
    tx_id: &Hash32,
    read: impl Fn(&[u8]) -> Option<Vec<u8>>,
) -> Option<PacketEvent> {
    match call {
        PacketCall::Send(_) => {
            let b = read(&committed_packet_key(tx_id))?;
            rmp_serde::from_slice(&b).ok().map(PacketEvent::Committed)
        }
        PacketCall::Recv(a) | PacketCall::RecvTimeout(a) => {
            let b = read(&receipt_key(a.packet.channel, a.packet.sequence))?;
            match rmp_serde::from_slice::<Receipt>(&b).ok()? {
                Receipt::Delivered { ack } if matches!(call, PacketCall::Recv(_)) => {
                    Some(PacketEvent::Received(ack))
                }
                Receipt::TimedOut { proof } if matches!(call, PacketCall::RecvTimeout(_)) => {
                    Some(PacketEvent::TimedOut(proof))
                }
                _ => None,
            }
        }
        PacketCall::Ack(AckArgs {
            ack: Acknowledgement {
                channel, sequence, ..
            },
            ..
        })
        | PacketCall::Timeout(TimeoutArgs {
            proof: TimeoutProof {
                channel, sequence, ..
            },
            ..
        }) => {
            let b = read(&send_record_key(*channel, *sequence))?;
            let rec: SendRecord = rmp_serde::from_slice(&b).ok()?;
            let outcome = rec.outcome?;
            let expected = match call {
                PacketCall::Ack(_) => SourceOutcome::Acknowledged,
                _ => SourceOutcome::TimedOut,
            };
            (outcome == expected).then_some(PacketEvent::Settled {
                channel: *channel,
                sequence: *sequence,
                outcome,
            })
        }
    }
}

/// The packets module of one network.
#[derive(Debug, Clone)]
pub struct PacketsModule {
    network: NetworkId,
    trust: PacketTrust,
}

impl PacketsModule {
    pub fn new(network: NetworkId, trust: PacketTrust) -> Self {
        PacketsModule { network, trust }
    }

    /// The module of network `cfg`, trusting the same hub attesters (and threshold) as the
    /// network's escrow module: one trust root for value and for messages.
    pub fn from_config(cfg: &crate::config::NetworkConfig) -> Self {
        Self::new(
            cfg.network(),
            PacketTrust {
                attesters: cfg.escrow.attesters().into_iter().collect(),
                threshold: cfg.escrow.threshold,
            },
        )
    }

    fn send(
        &self,
        ctx: &CallCtx,
        store: &mut ModuleStore<'_>,
        a: SendArgs,
    ) -> Result<(), ModuleError> {
        if a.destination == self.network {
            return Err(ModuleError::LocalDestination(a.destination));
        }
        let now = ctx.timestamp_ms / 1000;
        if a.timeout <= now {
            return Err(ModuleError::PacketTimeoutInPast {
                timeout: a.timeout,
                block_secs: now,
            });
        }
        let channel = ChannelId {
            source: self.network,
            destination: a.destination,
        };
        let nkey = next_seq_key(a.destination);
        let next = match store.get(&nkey) {
            Some(b) => u64::from_be_bytes(b.as_slice().try_into().map_err(|_| {
                ModuleError::corrupt(
                    "next sequence",
                    format_args!("{} bytes, 8 expected", b.len()),
                )
            })?),
            None => 1,
        };
        let mut view = SendChannel::new(channel);
        view.next_sequence = next;
        view.pruned_below = next;
        let packet = view.send(
            Address(ctx.sender.to_string()),
            Address(a.receiver),
            a.payload,
            a.timeout,
        );
        let record = SendRecord {
            commitment: packet.commitment(),
            timeout: packet.timeout,
            outcome: None,
        };
        store.put(&nkey, view.next_sequence.to_be_bytes().to_vec());
        store.put(
            &sent_rel_key(a.destination, packet.sequence),
            encode(&record),
        );
        store.put(&by_tx_rel_key(&ctx.tx_id), encode(&packet));
        Ok(())
    }

    fn receive(
        &self,
        ctx: &CallCtx,
        store: &mut ModuleStore<'_>,
        packet: &Packet,
        deliver: bool,
    ) -> Result<(), ModuleError> {
        if packet.channel.destination != self.network {
            return Err(ModuleError::PacketWrongDestination {
                sequence: packet.sequence,
                destination: packet.channel.destination,
                here: self.network,
            });
        }
        let key = receipt_rel_key(packet.channel.source, packet.sequence);
        let mut view = RecvChannel::new(packet.channel);
        view.pruned_below = 0;
        if let Some(b) = store.get(&key) {
            view.receipts
                .insert(packet.sequence, decode_value::<Receipt>("receipt", &b)?);
        }
        let now = ctx.timestamp_ms / 1000;
        if deliver {
            match view.receive(packet, now, |_| AckResult::Ok { data: Vec::new() })? {
                Delivery::New(_) => {}
                Delivery::Duplicate(_) => {
                    return Err(ModuleError::PacketDuplicate(packet.sequence))
                }
            }
        } else {
            let had = view.receipts.contains_key(&packet.sequence);
            view.prove_timeout(packet, now)?;
            if had {
                return Err(ModuleError::PacketTimeoutRecorded(packet.sequence));
            }
        }
        let receipt = view.receipts.get(&packet.sequence).ok_or_else(|| {
            ModuleError::Internal(format!(
                "receipt of packet {} missing after a decision",
                packet.sequence
            ))
        })?;
        store.put(&key, encode(receipt));
        Ok(())
    }

    fn settle(
        &self,
        store: &mut ModuleStore<'_>,
        channel: ChannelId,
        sequence: u64,
        settle: impl FnOnce(&mut SendChannel) -> Result<Applied, PacketRejection>,
    ) -> Result<(), ModuleError> {
        if channel.source != self.network {
            return Err(ModuleError::PacketWrongSource {
                sequence,
                source_network: channel.source,
                here: self.network,
            });
        }
        let key = sent_rel_key(channel.destination, sequence);
        let mut rec: SendRecord = match store.get(&key) {
            Some(b) => decode_value("send record", &b)?,
            None => return Err(PacketRejection::UnknownSequence { sequence }.into()),
        };
        let mut view = SendChannel::new(channel);
        view.pruned_below = 0;
        match rec.outcome {
            Some(o) => {
                view.settled.insert(sequence, o);
            }
            None => {
                view.outstanding
                    .insert(sequence, (rec.commitment, rec.timeout));
            }
        }
        match settle(&mut view)? {
            Applied::New(o) => {
                rec.outcome = Some(o);
                store.put(&key, encode(&rec));
                Ok(())
            }
            Applied::Duplicate(_) => Err(ModuleError::SequenceSettled(sequence)),
        }
    }
}

impl Module for PacketsModule {
    fn call(
        &self,
        ctx: &CallCtx,
        store: &mut ModuleStore<'_>,
        method: &str,
        args: &[u8],
    ) -> Result<(), ModuleError> {
        let call = decode_call(method, args).ok_or_else(|| {
            if [
                method::SEND,
                method::RECV,
                method::RECV_TIMEOUT,
                method::ACK,
                method::TIMEOUT,
            ]
            .contains(&method)
            {
                ModuleError::bad_args(method, "they do not decode")
            } else {
                ModuleError::unknown_method(MODULE, method)
            }
        })?;
        if !matches!(call, PacketCall::Send(_)) {
            self.trust.authorise(self.network, &call)?;
        }
        match call {
            PacketCall::Send(a) => self.send(ctx, store, a),
            PacketCall::Recv(a) => self.receive(ctx, store, &a.packet, true),
            PacketCall::RecvTimeout(a) => self.receive(ctx, store, &a.packet, false),
            PacketCall::Ack(a) => self.settle(store, a.ack.channel, a.ack.sequence, |v| {
                v.acknowledge(&a.ack)
            }),
            PacketCall::Timeout(a) => self.settle(store, a.proof.channel, a.proof.sequence, |v| {
                v.timeout(&a.proof)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ExecRules, Modules, State};
    use crate::tx::Transaction;
    use isthmus_core::HashAlgo;
    use std::sync::Arc;

    const SRC: NetworkId = NetworkId(11);
    const DST: NetworkId = NetworkId(22);
    const RULES: ExecRules = ExecRules {
        version: 1,
        forbid_zero_transfers: false,
    };

    fn hub_keys() -> Vec<Keypair> {
        (0..3).map(|i| Keypair::dev(&format!("hub-{i}"))).collect()
    }

    fn trust() -> PacketTrust {
        PacketTrust {
            attesters: hub_keys().iter().map(Keypair::id).collect(),
            threshold: 2,
        }
    }

    /// One network: its state, modules and a submitter with nonces.
    struct Net {
        id: NetworkId,
        state: State,
        modules: Modules,
        key: Keypair,
        nonce: u64,
        height: u64,
    }

    impl Net {
        fn new(id: NetworkId) -> Net {
            let key = Keypair::dev(&format!("user-{}", id.0));
            let mut modules = Modules::builtin();
            modules.register(MODULE, Arc::new(PacketsModule::new(id, trust())));
            Net {
                id,
                state: State::genesis([(key.id(), 1_000)]),
                modules,
                key,
                nonce: 0,
                height: 0,
            }
        }

        /// Run `call` in a block at time `secs`; the module's refusal `(code, message)` if
        /// it refused.
        fn run(&mut self, call: PacketCall, secs: u64) -> (Hash32, Result<(), (String, String)>) {
            let tx = Transaction::sign(&self.key, self.id, self.nonce, call.into_tx_kind());
            self.nonce += 1;
            self.height += 1;
            let id = tx.id(HashAlgo::Sha256);
            let (diff, receipts) = self
                .state
                .execute(
                    &[tx],
                    &[id],
                    self.height,
                    secs * 1000,
                    &RULES,
                    &self.modules,
                )
                .unwrap();
            self.state.apply(&diff);
            let r = match (&receipts[0].code, &receipts[0].error) {
                (None, None) => Ok(()),
                (Some(c), Some(e)) => Err((c.clone(), e.clone())),
                other => panic!("a receipt with a code or a message alone: {other:?}"),
            };
            (id, r)
        }

        fn event(&self, call: &PacketCall, tx: &Hash32) -> Option<PacketEvent> {
            event_for(call, tx, |k| self.state.get(k))
        }
    }

    fn send_args(timeout: u64) -> PacketCall {
        PacketCall::Send(SendArgs {
            destination: DST,
            receiver: "isth_receiver".into(),
            payload: b"hello".to_vec(),
            timeout,
        })
    }

    fn send(src: &mut Net, timeout: u64) -> Packet {
        let call = send_args(timeout);
        let (tx, r) = src.run(call.clone(), 100);
        r.unwrap();
        match src.event(&call, &tx) {
            Some(PacketEvent::Committed(p)) => p,
            other => panic!("expected a committed packet, got {other:?}"),
        }
    }

    /// The code of a refusal (panics on success).
    fn code(r: Result<(), (String, String)>) -> String {
        r.expect_err("the call should have been refused").0
    }

    fn recv(p: &Packet, keys: &[Keypair]) -> PacketCall {
        PacketCall::Recv(RecvArgs {
            packet: p.clone(),
            attestations: vec![],
        })
        .attest(DST, keys)
    }

    #[test]
    fn calls_round_trip_through_decode() {
        let p = Packet {
            channel: ChannelId {
                source: SRC,
                destination: DST,
            },
            sequence: 4,
            sender: Address("a".into()),
            receiver: Address("b".into()),
            payload: vec![1, 2, 3],
            timeout: 9,
        };
        let calls = [
            send_args(5),
            recv(&p, &hub_keys()),
            PacketCall::RecvTimeout(RecvArgs {
                packet: p.clone(),
                attestations: vec![],
            }),
            PacketCall::Ack(AckArgs {
                ack: Acknowledgement {
                    channel: p.channel,
                    sequence: 4,
                    commitment: p.commitment(),
                    result: AckResult::Ok { data: vec![] },
                },
                attestations: vec![],
            }),
            PacketCall::Timeout(TimeoutArgs {
                proof: TimeoutProof {
                    channel: p.channel,
                    sequence: 4,
                    commitment: p.commitment(),
                    proven_at: 9,
                },
                attestations: vec![],
            }),
        ];
        for c in calls {
            assert_eq!(decode_call(c.method(), &c.encode_args()), Some(c.clone()));
        }
        assert_eq!(decode_call("recv", b"\x01\x02"), None);
        assert_eq!(decode_call("nope", &send_args(5).encode_args()), None);
    }

    #[test]
    fn delivered_once_then_acknowledged_once() {
        let mut src = Net::new(SRC);
        let mut dst = Net::new(DST);
        let p1 = send(&mut src, 1_000);
        let p2 = send(&mut src, 1_000);
        assert_eq!((p1.sequence, p2.sequence), (1, 2));
        assert_eq!(p1.sender, Address(src.key.id().to_string()));

        let call = recv(&p1, &hub_keys()[..2]);
        let (tx, r) = dst.run(call.clone(), 200);
        r.unwrap();
        let Some(PacketEvent::Received(ack)) = dst.event(&call, &tx) else {
            panic!("no ack")
        };
        assert_eq!(ack.commitment, p1.commitment());
        // A replay (another relayer, a retry) is refused and changes nothing.
        let before = dst.state.get(&receipt_key(p1.channel, 1));
        assert!(before.is_some());
        let (_, again) = dst.run(call, 201);
        assert_eq!(code(again), "packet_duplicate");
        assert_eq!(dst.state.get(&receipt_key(p1.channel, 1)), before);
        assert_eq!(dst.state.get(&receipt_key(p1.channel, 2)), None);

        let ack_call = PacketCall::Ack(AckArgs {
            ack: ack.clone(),
            attestations: vec![],
        })
        .attest(SRC, &hub_keys());
        let (tx, r) = src.run(ack_call.clone(), 300);
        r.unwrap();
        assert_eq!(
            src.event(&ack_call, &tx),
            Some(PacketEvent::Settled {
                channel: p1.channel,
                sequence: 1,
                outcome: SourceOutcome::Acknowledged
            })
        );
        let (_, again) = src.run(ack_call, 301);
        assert_eq!(code(again), "sequence_settled");
    }

    #[test]
    fn forged_or_misdirected_attestations_change_nothing() {
        let mut src = Net::new(SRC);
        let mut dst = Net::new(DST);
        let p = send(&mut src, 1_000);
        let outsider = [Keypair::dev("mallory"), Keypair::dev("eve")];
        let receipt = receipt_key(p.channel, p.sequence);
        // Untrusted keys, too few trusted keys, one key twice, a signature for another
        // network, a packet altered after signing: all refused.
        let mut twice = recv(&p, &hub_keys()[..1]);
        if let PacketCall::Recv(a) = &mut twice {
            let dup = a.attestations[0].clone();
            a.attestations.push(dup);
        }
        let mut altered = recv(&p, &hub_keys());
        if let PacketCall::Recv(a) = &mut altered {
            a.packet.payload = b"evil".to_vec();
        }
        let wrong_net = PacketCall::Recv(RecvArgs {
            packet: p.clone(),
            attestations: vec![],
        })
        .attest(SRC, &hub_keys());
        for bad in [
            recv(&p, &outsider),
            recv(&p, &hub_keys()[..1]),
            twice,
            wrong_net,
            altered,
        ] {
            let (_, r) = dst.run(bad, 200);
            assert_eq!(code(r), "threshold_not_met");
            assert_eq!(dst.state.get(&receipt), None);
        }
        // An ack the hub never attested cannot settle the source.
        let forged_ack = PacketCall::Ack(AckArgs {
            ack: Acknowledgement {
                channel: p.channel,
                sequence: p.sequence,
                commitment: p.commitment(),
                result: AckResult::Ok { data: vec![] },
            },
            attestations: vec![],
        })
        .attest(SRC, &outsider);
        let (_, r) = src.run(forged_ack, 300);
        assert_eq!(code(r), "threshold_not_met");
        let rec: SendRecord =
            rmp_serde::from_slice(&src.state.get(&send_record_key(p.channel, 1)).unwrap()).unwrap();
        assert_eq!(rec.outcome, None);
        // A packet for another destination is refused even when attested.
        let mut other = p.clone();
        other.channel.destination = NetworkId(99);
        let (_, r) = dst.run(recv(&other, &hub_keys()), 200);
        let (code, msg) = r.unwrap_err();
        assert_eq!(code, "packet_wrong_destination");
        assert!(msg.contains("is for network 99"), "{msg}");
    }

    #[test]
    fn late_packet_is_refused_and_its_timeout_proven_back() {
        let mut src = Net::new(SRC);
        let mut dst = Net::new(DST);
        let p = send(&mut src, 500);
        // Not before the timeout: no proof yet.
        let prove = PacketCall::RecvTimeout(RecvArgs {
            packet: p.clone(),
            attestations: vec![],
        })
        .attest(DST, &hub_keys());
        let (_, r) = dst.run(prove.clone(), 499);
        assert_eq!(code(r), "packet_not_timed_out");
        // At the timeout, delivery is refused by block time.
        let (_, r) = dst.run(recv(&p, &hub_keys()), 500);
        assert_eq!(code(r), "packet_timed_out");
        let (tx, r) = dst.run(prove.clone(), 500);
        r.unwrap();
        let Some(PacketEvent::TimedOut(proof)) = dst.event(&prove, &tx) else {
            panic!("no proof")
        };
        // Once non-delivery is recorded, delivery is refused for good, and the proof is
        // not recorded twice.
        let (_, r) = dst.run(recv(&p, &hub_keys()), 400);
        assert!(r.is_err());
        assert!(dst.run(prove, 501).1.is_err());

        let timeout = PacketCall::Timeout(TimeoutArgs {
            proof: proof.clone(),
            attestations: vec![],
        })
        .attest(SRC, &hub_keys());
        let (tx, r) = src.run(timeout.clone(), 600);
        r.unwrap();
        assert_eq!(
            src.event(&timeout, &tx),
            Some(PacketEvent::Settled {
                channel: p.channel,
                sequence: p.sequence,
                outcome: SourceOutcome::TimedOut
            })
        );
        // The sequence ended timed out: an ack for it is refused.
        let ack = PacketCall::Ack(AckArgs {
            ack: Acknowledgement {
                channel: p.channel,
                sequence: p.sequence,
                commitment: p.commitment(),
                result: AckResult::Ok { data: vec![] },
            },
            attestations: vec![],
        })
        .attest(SRC, &hub_keys());
        let (code, msg) = src.run(ack, 601).1.unwrap_err();
        assert_eq!(code, "packet_outcome_conflict");
        assert!(msg.contains("timed out"), "{msg}");
    }

    #[test]
    fn a_delivered_packet_cannot_be_proven_timed_out() {
        let mut dst = Net::new(DST);
        let mut src = Net::new(SRC);
        let p = send(&mut src, 500);
        dst.run(recv(&p, &hub_keys()), 200).1.unwrap();
        let prove = PacketCall::RecvTimeout(RecvArgs {
            packet: p,
            attestations: vec![],
        })
        .attest(DST, &hub_keys());
        assert_eq!(code(dst.run(prove, 900).1), "packet_already_delivered");
    }

    #[test]
    fn send_refuses_expired_or_local_packets() {
        let mut src = Net::new(SRC);
        assert_eq!(
            code(src.run(send_args(100), 100).1),
            "packet_timeout_in_past"
        );
        let local = PacketCall::Send(SendArgs {
            destination: SRC,
            receiver: "x".into(),
            payload: vec![],
            timeout: 1_000,
        });
        assert_eq!(code(src.run(local, 100).1), "local_destination");
        assert_eq!(
            src.state.get(&module_key(MODULE, &next_seq_key(DST))),
            None,
            "refused sends take no sequence"
        );
    }

    #[test]
    fn every_network_runs_it_with_the_escrow_attesters() {
        let toml = r#"
name = "beta"
network_id = 22
nodes = 1
[consensus]
type = "pos"
[[genesis.validator]]
id = "dev:beta/node-0"
stake = 10
[escrow]
hub_attesters = ["dev:hub-0", "dev:hub-1", "dev:hub-2"]
threshold = 2
"#;
        let cfg = crate::config::NetworkConfig::from_toml_str(toml).unwrap();
        let mut dst = Net::new(DST);
        dst.modules = Modules::for_network(&cfg);
        let mut src = Net::new(SRC);
        let p = send(&mut src, 500);
        assert!(dst.run(recv(&p, &hub_keys()[..1]), 200).1.is_err());
        dst.run(recv(&p, &hub_keys()[1..]), 200).1.unwrap();
    }

    #[test]
    fn without_attesters_nothing_is_authorised() {
        let mut dst = Net::new(DST);
        dst.modules.register(
            MODULE,
            Arc::new(PacketsModule::new(DST, PacketTrust::default())),
        );
        let mut src = Net::new(SRC);
        let p = send(&mut src, 500);
        let r = dst.run(recv(&p, &hub_keys()), 200).1;
        assert_eq!(code(r), "no_attesters");
    }
}
