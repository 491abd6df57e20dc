//! Packet-module transactions as adapter events: `send` → `PacketCommitted`, `recv` →
//! `PacketReceived` (with the acknowledgement), `recv_timeout` → `PacketTimedOut` (with the
//! timeout proof). Source-side settlements (`ack`, `timeout`) close a sequence and have no
//! adapter event of their own.
//!
//! Whether a call took effect is judged by `isthmus_chain::packets::event_for` on the
//! module's write-once records, read from the node (one state key per call).

use crate::adapter::NativeAdapter;
use isthmus_adapter_api::{AdapterError, EventKind};
use isthmus_chain::packets::{
    self, committed_packet_key, receipt_key, send_record_key, PacketCall, PacketEvent,
};
use isthmus_chain::tx::TxKind;
use isthmus_core::Hash32;

/// The one state key `event_for` reads for `call` made by transaction `tx`.
fn key_read_by(call: &PacketCall, tx: &Hash32) -> Vec<u8> {
    match call {
        PacketCall::Send(_) => committed_packet_key(tx),
        PacketCall::Recv(a) | PacketCall::RecvTimeout(a) => {
            receipt_key(a.packet.channel, a.packet.sequence)
        }
        PacketCall::Ack(a) => send_record_key(a.ack.channel, a.ack.sequence),
        PacketCall::Timeout(a) => send_record_key(a.proof.channel, a.proof.sequence),
    }
}

fn to_event(ev: PacketEvent) -> Option<EventKind> {
    match ev {
        PacketEvent::Committed(packet) => Some(EventKind::PacketCommitted { packet }),
        PacketEvent::Received(ack) => Some(EventKind::PacketReceived { ack }),
        PacketEvent::TimedOut(proof) => Some(EventKind::PacketTimedOut { proof }),
        PacketEvent::Settled { .. } => None,
    }
}

/// The event of a successful packets-module transaction, judged from `read` (state key →
/// value).
pub(crate) fn event_from(
    kind: &TxKind,
    tx: &Hash32,
    read: impl Fn(&[u8]) -> Option<Vec<u8>>,
) -> Option<EventKind> {
    let call = decode(kind)?;
    packets::event_for(&call, tx, read).and_then(to_event)
}

fn decode(kind: &TxKind) -> Option<PacketCall> {
    match kind {
        TxKind::ModuleCall {
            module,
            method,
            args,
        } if module == packets::MODULE => packets::decode_call(method, args),
        _ => None,
    }
}

/// Whether the packets call of transaction `tx` took effect (`None`: not a packets call).
pub(crate) async fn took_effect(
    a: &NativeAdapter,
    kind: &TxKind,
    tx: &Hash32,
) -> Result<Option<bool>, AdapterError> {
    let Some(call) = decode(kind) else {
        return Ok(None);
    };
    let key = key_read_by(&call, tx);
    let value = a
        .node()
        .state_get(key.clone())
        .await
        .map_err(|e| a.unavailable(e))?;
    Ok(Some(
        packets::event_for(&call, tx, |k| if k == key { value.clone() } else { None }).is_some(),
    ))
}

/// The event of transaction `tx` of kind `kind`, if it is a packets call that took effect.
pub(crate) async fn packet_event(
    a: &NativeAdapter,
    kind: &TxKind,
    tx: &Hash32,
) -> Result<Option<EventKind>, AdapterError> {
    let Some(call) = decode(kind) else {
        return Ok(None);
    };
    let key = key_read_by(&call, tx);
    let value = a
        .node()
        .state_get(key.clone())
        .await
        .map_err(|e| a.unavailable(e))?;
    Ok(event_from(kind, tx, |k| {
        if k == key {
            value.clone()
        } else {
            None
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_chain::packets::{PacketTrust, PacketsModule, RecvArgs, SendArgs};
    use isthmus_chain::state::{ExecRules, Modules, State};
    use isthmus_chain::tx::Transaction;
    use isthmus_core::{HashAlgo, Keypair, NetworkId};
    use std::sync::Arc;

    const RULES: ExecRules = ExecRules {
        version: 1,
        forbid_zero_transfers: false,
    };

    fn chain(net: NetworkId, hub: &Keypair) -> (State, Modules) {
        let mut m = Modules::builtin();
        m.register(
            packets::MODULE,
            Arc::new(PacketsModule::new(
                net,
                PacketTrust {
                    attesters: [hub.id()].into_iter().collect(),
                    threshold: 1,
                },
            )),
        );
        (State::genesis([]), m)
    }

    fn run(s: &mut State, m: &Modules, tx: Transaction, ts: u64) -> (Hash32, TxKind) {
        let id = tx.id(HashAlgo::Sha256);
        let kind = tx.body.kind.clone();
        let (diff, r) = s.execute(&[tx], &[id], 1, ts, &RULES, m).unwrap();
        assert_eq!(r[0].error, None);
        s.apply(&diff);
        (id, kind)
    }

    /// The mapping reads exactly the key `event_for` needs: a send and a receive map to
    /// their events through a reader that answers only that key.
    #[test]
    fn send_and_recv_map_through_the_one_key_they_write() {
        let hub = Keypair::dev("hub");
        let alice = Keypair::dev("alice");
        let (src, dst) = (NetworkId(1), NetworkId(2));
        let (mut s1, m1) = chain(src, &hub);
        let send = PacketCall::Send(SendArgs {
            destination: dst,
            receiver: "bob".into(),
            payload: b"hello".to_vec(),
            timeout: 1_000,
        });
        let tx = Transaction::sign(&alice, src, 0, send.into_tx_kind());
        let (id, kind) = run(&mut s1, &m1, tx, 5_000);
        let Some(EventKind::PacketCommitted { packet }) = event_from(&kind, &id, |k| s1.get(k))
        else {
            panic!("send did not map to PacketCommitted")
        };
        assert_eq!(packet.payload, b"hello");
        // Another transaction id finds nothing.
        assert_eq!(event_from(&kind, &Hash32([1; 32]), |k| s1.get(k)), None);

        let (mut s2, m2) = chain(dst, &hub);
        let recv = PacketCall::Recv(RecvArgs {
            packet: packet.clone(),
            attestations: vec![],
        })
        .attest(dst, std::slice::from_ref(&hub));
        let tx = Transaction::sign(&alice, dst, 0, recv.into_tx_kind());
        let (id, kind) = run(&mut s2, &m2, tx, 5_000);
        let key = key_read_by(&decode(&kind).unwrap(), &id);
        let only = |k: &[u8]| if k == key { s2.get(k) } else { None };
        let Some(EventKind::PacketReceived { ack }) = event_from(&kind, &id, only) else {
            panic!("recv did not map to PacketReceived")
        };
        assert_eq!(ack.sequence, packet.sequence);
    }
}
