//! What travels on a relayer ↔ hub link.

use isthmus_adapter_api::Evidence;
use isthmus_core::sign::{self, BatchItem};
use isthmus_core::{Domain, Hash32, Keypair, NodeId, Signature};
use isthmus_lock_contracts::packet::{ChannelId, Packet};
use isthmus_lock_contracts::TxId;
use serde::{de, Deserialize, Deserializer, Serialize};

/// A signature by one of the source network's attestation keys over the packet's
/// commitment, under [`Domain::Packet`] and the source network's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketAttestation {
    pub signer: NodeId,
    pub signature: Signature,
}

/// A Merkle path from one state entry to a block's state root (the source network's own
/// tree: the verifier derives the leaf from the entry it expects).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatePath {
    pub index: u64,
    pub leaf_count: u64,
    pub siblings: Vec<Hash32>,
}

/// A light-client proof that the source network committed a packet: the transaction that
/// committed it (its id and body), the source adapter's finality evidence for that
/// transaction (commit certificate or PoW confirmations, with the Merkle path to the block's
/// transaction root), and the path of the packet's entry in the source's state right after
/// that block, which shows the call took effect (a refused call is included too, but
/// writes nothing) and fixes the sequence the chain gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketProof {
    pub tx: TxId,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub evidence: Evidence,
    pub state: StatePath,
}

/// A packet as a relayer carries it: vouched for by the source network's attestation keys,
/// or proven by `proof` (which network takes which is the hub's policy, never the
/// relayer's choice).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayedPacket {
    pub packet: Packet,
    #[serde(default)]
    pub attestations: Vec<PacketAttestation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Box<PacketProof>>,
}

impl RelayedPacket {
    /// Attest `packet` with `keys` (what a source network's validators do when they commit it).
    pub fn attest(packet: Packet, keys: &[Keypair]) -> Self {
        let commitment = packet.commitment();
        let attestations = keys
            .iter()
            .map(|k| PacketAttestation {
                signer: k.id(),
                signature: k.sign(Domain::Packet, packet.channel.source, commitment.as_bytes()),
            })
            .collect();
        RelayedPacket {
            packet,
            attestations,
            proof: None,
        }
    }

    /// `packet` with a light-client proof and no attestations.
    pub fn proven(packet: Packet, proof: PacketProof) -> Self {
        RelayedPacket {
            packet,
            attestations: Vec::new(),
            proof: Some(Box::new(proof)),
        }
    }

    /// The batch-verification items of this packet's attestations. `commitment` must be
    /// `self.packet.commitment()` and outlive the items.
    pub fn batch_items<'a>(&self, commitment: &'a [u8]) -> Vec<BatchItem<'a>> {
        self.attestations
            .iter()
            .map(|a| BatchItem {
                signer: a.signer,
                domain: Domain::Packet,
                network: self.packet.channel.source,
                payload: commitment,
                signature: a.signature,
            })
            .collect()
    }

    /// Verify singly (used by tools; the ingress verifies in batches).
    pub fn verify_one(&self, a: &PacketAttestation) -> bool {
        let c = self.packet.commitment();
        sign::verify(
            &a.signer,
            Domain::Packet,
            self.packet.channel.source,
            c.as_bytes(),
            &a.signature,
        )
        .is_ok()
    }
}

/// The hub's answer for one packet.
// Deserialize is written by hand (below): serde's derived decoder for an internally tagged
// enum first buffers the whole map into an owned tree, which for a batch's receipts and
// packets cost more CPU than anything but signature verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// First delivery; recorded and forwarded.
    Delivered,
    /// Already delivered earlier (another relayer, a retry); nothing happened.
    Duplicate,
    /// Refused for good; retrying the same packet cannot help.
    Rejected { code: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptMsg {
    pub channel: ChannelId,
    pub sequence: u64,
    pub outcome: Outcome,
}

/// Deserialized by hand, like [`Outcome`], from the same map the derived `Serialize` writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "msg")]
pub enum LinkMsg {
    Deliver {
        batch: u64,
        packets: Vec<RelayedPacket>,
    },
    Receipts {
        batch: u64,
        receipts: Vec<ReceiptMsg>,
    },
}

/// Field names of the two tagged maps above, in one identifier so one visitor serves both.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    Msg,
    Outcome,
    Batch,
    Packets,
    Receipts,
    Code,
    Reason,
    #[serde(other)]
    Other,
}

/// Store `v` in `slot`, refusing a second occurrence of the same key.
fn once<T, E: de::Error>(slot: &mut Option<T>, name: &'static str, v: T) -> Result<(), E> {
    if slot.replace(v).is_some() {
        return Err(E::duplicate_field(name));
    }
    Ok(())
}

fn required<T, E: de::Error>(slot: Option<T>, name: &'static str) -> Result<T, E> {
    slot.ok_or_else(|| E::missing_field(name))
}

/// Decodes the map in one pass, in any key order, straight into the final types (the tag
/// is read as a borrowed string when the input allows it). Unknown keys are skipped, as the
/// derived decoder does.
struct TaggedVisitor<T>(std::marker::PhantomData<T>);

impl<'de> de::Visitor<'de> for TaggedVisitor<LinkMsg> {
    type Value = LinkMsg;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a link message map with a `msg` tag")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<LinkMsg, A::Error> {
        let (mut tag, mut batch, mut packets, mut receipts) = (None, None, None, None);
        while let Some(key) = map.next_key::<Field>()? {
            match key {
                Field::Msg => once(&mut tag, "msg", map.next_value::<Tag<'de>>()?)?,
                Field::Batch => once(&mut batch, "batch", map.next_value()?)?,
                Field::Packets => once(&mut packets, "packets", map.next_value()?)?,
                Field::Receipts => once(&mut receipts, "receipts", map.next_value()?)?,
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        let tag = required::<Tag<'_>, A::Error>(tag, "msg")?;
        match tag.as_str() {
            "deliver" => Ok(LinkMsg::Deliver {
                batch: required(batch, "batch")?,
                packets: required(packets, "packets")?,
            }),
            "receipts" => Ok(LinkMsg::Receipts {
                batch: required(batch, "batch")?,
                receipts: required(receipts, "receipts")?,
            }),
            other => Err(de::Error::unknown_variant(other, &["deliver", "receipts"])),
        }
    }
}

impl<'de> de::Visitor<'de> for TaggedVisitor<Outcome> {
    type Value = Outcome;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an outcome map with an `outcome` tag")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Outcome, A::Error> {
        let (mut tag, mut code, mut reason) = (None, None, None);
        while let Some(key) = map.next_key::<Field>()? {
            match key {
                Field::Outcome => once(&mut tag, "outcome", map.next_value::<Tag<'de>>()?)?,
                Field::Code => once(&mut code, "code", map.next_value()?)?,
                Field::Reason => once(&mut reason, "reason", map.next_value()?)?,
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        let tag = required::<Tag<'_>, A::Error>(tag, "outcome")?;
        match tag.as_str() {
            "delivered" => Ok(Outcome::Delivered),
            "duplicate" => Ok(Outcome::Duplicate),
            "rejected" => Ok(Outcome::Rejected {
                code: required(code, "code")?,
                reason: required(reason, "reason")?,
            }),
            other => Err(de::Error::unknown_variant(
                other,
                &["delivered", "duplicate", "rejected"],
            )),
        }
    }
}

/// A variant tag, borrowed from the input when possible.
#[derive(Deserialize)]
struct Tag<'a>(#[serde(borrow)] std::borrow::Cow<'a, str>);

impl Tag<'_> {
    fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for LinkMsg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(TaggedVisitor::<LinkMsg>(std::marker::PhantomData))
    }
}

impl<'de> Deserialize<'de> for Outcome {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(TaggedVisitor::<Outcome>(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_core::NetworkId;
    use isthmus_lock_contracts::Address;

    fn packet(seq: u64) -> RelayedPacket {
        RelayedPacket::attest(
            Packet {
                channel: ChannelId {
                    source: NetworkId(1),
                    destination: NetworkId(2),
                },
                sequence: seq,
                sender: Address("a".into()),
                receiver: Address("b".into()),
                payload: vec![seq as u8; 40],
                timeout: 9,
            },
            &[Keypair::dev("v")],
        )
    }

    fn proven(seq: u64) -> RelayedPacket {
        use isthmus_adapter_api::{BlockRef, CommitVote, MerkleProof};
        let p = packet(seq).packet;
        RelayedPacket::proven(
            p,
            PacketProof {
                tx: TxId("ab".repeat(32)),
                body: vec![1, 2, 3],
                evidence: Evidence::CommitCertificate {
                    block: BlockRef {
                        height: seq,
                        hash: Hash32([seq as u8; 32]),
                    },
                    header: vec![9; 70],
                    round: 0,
                    votes: vec![CommitVote {
                        validator: Keypair::dev("v").id(),
                        signature: vec![7; 64],
                    }],
                    tx_proof: MerkleProof {
                        leaf_index: 1,
                        leaf: Hash32([1; 32]),
                        siblings: vec![Hash32([2; 32])],
                        root: Hash32([3; 32]),
                    },
                },
                state: StatePath {
                    index: 4,
                    leaf_count: 9,
                    siblings: vec![Hash32([5; 32]); 4],
                },
            },
        )
    }

    #[test]
    fn proven_and_attested_packets_round_trip_and_never_panic_on_truncation() {
        let deliver = LinkMsg::Deliver {
            batch: 3,
            packets: vec![packet(1), proven(2), proven(3)],
        };
        assert_eq!(roundtrip(&deliver), deliver);
        let limits = isthmus_core::codec::WireLimits::default();
        let body = isthmus_core::codec::encode_body(&deliver, &limits).unwrap();
        let back: LinkMsg = isthmus_core::codec::decode_body(&body, &limits).unwrap();
        assert_eq!(back, deliver);
        // An attested packet carries no `proof` key at all (its size is unchanged).
        let bytes = rmp_serde::to_vec_named(&packet(1)).unwrap();
        assert!(!bytes.windows(5).any(|w| w == b"proof"));
        // Every truncation and every single-byte flip decodes or fails, never panics.
        let full = rmp_serde::to_vec_named(&deliver).unwrap();
        for n in 0..full.len() {
            assert!(rmp_serde::from_slice::<LinkMsg>(&full[..n]).is_err());
            let mut flipped = full.clone();
            flipped[n] ^= 0x5a;
            let _ = rmp_serde::from_slice::<LinkMsg>(&flipped);
        }
    }

    fn roundtrip<T: Serialize + for<'de> Deserialize<'de>>(v: &T) -> T {
        rmp_serde::from_slice(&rmp_serde::to_vec_named(v).unwrap()).unwrap()
    }

    #[test]
    fn hand_decoders_read_what_the_derived_encoders_write() {
        let deliver = LinkMsg::Deliver {
            batch: 7,
            packets: vec![packet(1), packet(2)],
        };
        assert_eq!(roundtrip(&deliver), deliver);
        let receipts = LinkMsg::Receipts {
            batch: 8,
            receipts: [
                Outcome::Delivered,
                Outcome::Duplicate,
                Outcome::Rejected {
                    code: "bad_attestation".into(),
                    reason: "no".into(),
                },
            ]
            .into_iter()
            .enumerate()
            .map(|(i, outcome)| ReceiptMsg {
                channel: packet(1).packet.channel,
                sequence: i as u64,
                outcome,
            })
            .collect(),
        };
        assert_eq!(roundtrip(&receipts), receipts);
        // Through the wire codec too (depth/length scan, version byte).
        let limits = isthmus_core::codec::WireLimits::default();
        let body = isthmus_core::codec::encode_body(&receipts, &limits).unwrap();
        let back: LinkMsg = isthmus_core::codec::decode_body(&body, &limits).unwrap();
        assert_eq!(back, receipts);
    }

    #[derive(Serialize)]
    struct Reordered<'a> {
        packets: Vec<RelayedPacket>,
        unknown: u32,
        batch: u64,
        msg: &'a str,
    }

    #[test]
    fn key_order_and_unknown_keys_do_not_matter_but_bad_tags_are_refused() {
        let bytes = rmp_serde::to_vec_named(&Reordered {
            packets: vec![packet(3)],
            unknown: 5,
            batch: 2,
            msg: "deliver",
        })
        .unwrap();
        let m: LinkMsg = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(
            m,
            LinkMsg::Deliver {
                batch: 2,
                packets: vec![packet(3)]
            }
        );
        for (tag, want) in [("receipts", "receipts"), ("nope", "unknown variant")] {
            let bytes = rmp_serde::to_vec_named(&Reordered {
                packets: vec![],
                unknown: 0,
                batch: 1,
                msg: tag,
            })
            .unwrap();
            let e = rmp_serde::from_slice::<LinkMsg>(&bytes).unwrap_err();
            assert!(e.to_string().contains(want), "{tag}: {e}");
        }
        #[derive(Serialize)]
        struct NoTag {
            batch: u64,
        }
        let e = rmp_serde::from_slice::<LinkMsg>(
            &rmp_serde::to_vec_named(&NoTag { batch: 1 }).unwrap(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("msg"), "{e}");
        #[derive(Serialize)]
        struct HalfRejected<'a> {
            outcome: &'a str,
            code: &'a str,
        }
        let e = rmp_serde::from_slice::<Outcome>(
            &rmp_serde::to_vec_named(&HalfRejected {
                outcome: "rejected",
                code: "x",
            })
            .unwrap(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("reason"), "{e}");
    }

    proptest::proptest! {
        /// The stable-toolchain twin of the `link_msg` fuzz target: arbitrary bytes, and
        /// valid messages with arbitrary bytes spliced in, never panic the hand-written
        /// decoders, and whatever decodes round-trips.
        #[test]
        fn any_bytes_decode_or_fail_without_panic(
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            at in 0usize..4096,
        ) {
            let deliver = LinkMsg::Deliver { batch: 1, packets: vec![packet(1), packet(2)] };
            let mut spliced = rmp_serde::to_vec_named(&deliver).unwrap();
            let at = at % (spliced.len() + 1);
            spliced.splice(at..at, noise.iter().copied());
            for bytes in [&noise[..], &spliced[..]] {
                if let Ok(m) = rmp_serde::from_slice::<LinkMsg>(bytes) {
                    proptest::prop_assert_eq!(roundtrip(&m), m);
                }
                if let Ok(m) = rmp_serde::from_slice::<crate::EvidenceMsg>(bytes) {
                    proptest::prop_assert_eq!(roundtrip(&m), m);
                }
            }
        }
    }
}
