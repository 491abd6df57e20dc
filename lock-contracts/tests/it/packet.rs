//! Exactly-once delivery under duplicated and reordered relays from two relayers, with
//! acknowledgements and timeout proofs carried back, receipts pruned, and restarts.

use isthmus_core::NetworkId;
use isthmus_lock_contracts::packet::*;
use isthmus_lock_contracts::{Address, Timestamp};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Relay(usize),
    RelayAck(usize),
    ProveTimeout(usize),
    RelayTimeout(usize),
    Tick(u8),
    Prune,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => any::<usize>().prop_map(Op::Relay),
        4 => any::<usize>().prop_map(Op::RelayAck),
        2 => any::<usize>().prop_map(Op::ProveTimeout),
        2 => any::<usize>().prop_map(Op::RelayTimeout),
        2 => any::<u8>().prop_map(Op::Tick),
        1 => Just(Op::Prune),
        1 => Just(Op::Restart),
    ]
}

const CH: ChannelId = ChannelId {
    source: NetworkId(1),
    destination: NetworkId(2),
};

struct World {
    src: SendChannel,
    dst: RecvChannel,
    packets: Vec<Packet>,
    dest_now: Timestamp,
    /// What relayers carry back: every ack and proof they ever saw, re-sendable.
    acks: Vec<Acknowledgement>,
    proofs: Vec<TimeoutProof>,
    delivered: Vec<u32>,
    acked: Vec<u32>,
    timed_out: Vec<u32>,
}

impl World {
    fn new(timeouts: &[u8]) -> World {
        let mut src = SendChannel::new(CH);
        let packets: Vec<Packet> = timeouts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                src.send(
                    Address("app-a".into()),
                    Address("app-b".into()),
                    vec![i as u8; 8],
                    Timestamp::from(*t) + 1,
                )
            })
            .collect();
        let n = packets.len() + 1;
        World {
            src,
            dst: RecvChannel::new(CH),
            packets,
            dest_now: 0,
            acks: vec![],
            proofs: vec![],
            delivered: vec![0; n],
            acked: vec![0; n],
            timed_out: vec![0; n],
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Relay(i) => {
                let p = self.packets[i % self.packets.len()].clone();
                let before = self.dst.clone();
                match self.dst.receive(&p, self.dest_now, |p| AckResult::Ok {
                    data: p.payload.clone(),
                }) {
                    Ok(Delivery::New(ack)) => {
                        self.delivered[p.sequence as usize] += 1;
                        self.acks.push(ack);
                    }
                    Ok(Delivery::Duplicate(ack)) => {
                        assert_eq!(self.dst, before);
                        self.acks.push(ack);
                    }
                    Err(_) => assert_eq!(self.dst, before, "a refused relay changed state"),
                }
            }
            Op::RelayAck(i) => {
                if self.acks.is_empty() {
                    return;
                }
                let ack = self.acks[i % self.acks.len()].clone();
                match self.src.acknowledge(&ack) {
                    Ok(Applied::New(_)) => self.acked[ack.sequence as usize] += 1,
                    Ok(Applied::Duplicate(_)) | Err(PacketRejection::Pruned { .. }) => {}
                    Err(e) => panic!("ack refused: {e}"),
                }
            }
            Op::ProveTimeout(i) => {
                let p = self.packets[i % self.packets.len()].clone();
                if let Ok(proof) = self.dst.prove_timeout(&p, self.dest_now) {
                    self.proofs.push(proof);
                }
            }
            Op::RelayTimeout(i) => {
                if self.proofs.is_empty() {
                    return;
                }
                let proof = self.proofs[i % self.proofs.len()].clone();
                match self.src.timeout(&proof) {
                    Ok(Applied::New(_)) => self.timed_out[proof.sequence as usize] += 1,
                    Ok(Applied::Duplicate(_)) | Err(PacketRejection::Pruned { .. }) => {}
                    Err(e) => panic!("timeout refused: {e}"),
                }
            }
            Op::Tick(dt) => self.dest_now += Timestamp::from(dt % 16),
            Op::Prune => {
                let below = self.src.prune_settled();
                self.dst.prune(below);
            }
            Op::Restart => {
                let s: SendChannel =
                    rmp_serde::from_slice(&rmp_serde::to_vec_named(&self.src).unwrap()).unwrap();
                let d: RecvChannel =
                    rmp_serde::from_slice(&rmp_serde::to_vec_named(&self.dst).unwrap()).unwrap();
                assert_eq!((&s, &d), (&self.src, &self.dst));
                self.src = s;
                self.dst = d;
            }
        }
        self.check();
    }

    fn check(&self) {
        for seq in 1..self.delivered.len() {
            let (d, a, t) = (self.delivered[seq], self.acked[seq], self.timed_out[seq]);
            assert!(d <= 1, "packet {seq} delivered {d} times");
            assert!(a + t <= 1, "packet {seq} acked {a} and timed out {t}");
            assert!(a == 0 || d == 1, "packet {seq} acked but not delivered");
            assert!(t == 0 || d == 0, "packet {seq} timed out after delivery");
        }
    }
}

proptest! {
    #![proptest_config(crate::sim::config())]

    #[test]
    fn exactly_once_with_two_relayers(
        timeouts in prop::collection::vec(0u8..60, 1..20),
        relayer_one in prop::collection::vec(op(), 0..120),
        relayer_two in prop::collection::vec(op(), 0..120),
        interleave in prop::collection::vec(any::<bool>(), 0..240),
    ) {
        let mut w = World::new(&timeouts);
        let (mut one, mut two) = (relayer_one.into_iter(), relayer_two.into_iter());
        for pick in interleave {
            let next = if pick { one.next() } else { two.next() };
            if let Some(op) = next {
                w.apply(op);
            }
        }
        for op in one.chain(two) {
            w.apply(op);
        }
        // Drain: one honest relayer finishes the job.
        for i in 0..w.packets.len() {
            w.apply(Op::Relay(i));
        }
        for i in 0..w.acks.len() {
            w.apply(Op::RelayAck(i));
        }
        w.dest_now = 1000;
        for i in 0..w.packets.len() {
            w.apply(Op::ProveTimeout(i));
        }
        for i in 0..w.proofs.len() {
            w.apply(Op::RelayTimeout(i));
        }
        w.apply(Op::Prune);
        for seq in 1..w.delivered.len() {
            prop_assert_eq!(w.acked[seq] + w.timed_out[seq], 1, "packet {} unsettled", seq);
        }
        prop_assert!(w.src.outstanding.is_empty());
        prop_assert!(w.dst.receipts.is_empty(), "receipts pruned");
    }
}

#[test]
fn late_packet_is_refused_and_its_timeout_is_final() {
    let mut w = World::new(&[10]);
    let p = w.packets[0].clone();
    assert!(matches!(
        w.dst.prove_timeout(&p, 5),
        Err(PacketRejection::NotTimedOut {
            sequence: 1,
            timeout: 11,
            now: 5
        })
    ));
    let err = w
        .dst
        .receive(&p, 11, |_| AckResult::Ok { data: vec![] })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "packet 1 timed out at 11; destination time is 11"
    );
    let proof = w.dst.prove_timeout(&p, 12).unwrap();
    // Even with a skewed clock that reads earlier, the packet is never delivered now.
    assert!(w
        .dst
        .receive(&p, 0, |_| AckResult::Ok { data: vec![] })
        .is_err());
    assert_eq!(
        w.src.timeout(&proof),
        Ok(Applied::New(SourceOutcome::TimedOut))
    );
    assert_eq!(
        w.src.timeout(&proof),
        Ok(Applied::Duplicate(SourceOutcome::TimedOut))
    );
}

#[test]
fn forged_or_mismatched_relays_are_refused() {
    let mut w = World::new(&[50, 50]);
    let mut forged = w.packets[0].clone();
    forged.payload = b"evil".to_vec();
    let ack = match w
        .dst
        .receive(&w.packets[0].clone(), 1, |_| AckResult::Ok { data: vec![] })
    {
        Ok(Delivery::New(a)) => a,
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        w.dst
            .receive(&forged, 1, |_| AckResult::Ok { data: vec![] }),
        Err(PacketRejection::CommitmentMismatch { sequence: 1, .. })
    ));
    let mut wrong = ack.clone();
    wrong.commitment = forged.commitment();
    assert!(matches!(
        w.src.acknowledge(&wrong),
        Err(PacketRejection::CommitmentMismatch { .. })
    ));
    let mut other = ack.clone();
    other.channel.destination = NetworkId(9);
    assert!(matches!(
        w.src.acknowledge(&other),
        Err(PacketRejection::WrongChannel { .. })
    ));
    let mut unknown = ack.clone();
    unknown.sequence = 77;
    assert_eq!(
        w.src.acknowledge(&unknown).unwrap_err().to_string(),
        "sequence 77 was never sent on this channel"
    );
    assert_eq!(
        w.src.acknowledge(&ack),
        Ok(Applied::New(SourceOutcome::Acknowledged))
    );
    assert_eq!(
        w.src.acknowledge(&ack),
        Ok(Applied::Duplicate(SourceOutcome::Acknowledged))
    );
    assert_eq!(w.src.prune_settled(), 2);
    assert!(matches!(
        w.src.acknowledge(&ack),
        Err(PacketRejection::Pruned {
            sequence: 1,
            pruned_below: 2
        })
    ));
}
