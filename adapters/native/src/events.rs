//! The event stream, derived from canonical blocks alone so any adapter instance (after a
//! restart, too) numbers it the same way.
//!
//! The `i`-th event derived at block `h` has checkpoint `h << 24 | i`. A block yields events
//! only if it, or the block that it makes final, carries transactions:
//! - for its own transactions: `NewHead`, one `TxIncluded` each, then `LockIncluded` for
//!   escrow locks that took effect, and `PacketCommitted`, `PacketReceived` and
//!   `PacketTimedOut` for packet calls that did (see [`crate::packets`]);
//! - for the block it makes final (itself under PoS, the block `confirmations` below under
//!   PoW): `Finalized`, `LockFinal` for the locks in it, then `Released`, `Refunded` and
//!   `Claimed` for the escrow spends in it that took effect.
//!
//! Empty blocks add nothing, so a quiet chain's stream stays still. PoW reorgs below the
//! confirmation depth are outside this numbering: events of a replaced, unfinal block are
//! not withdrawn (`Reverted` is not emitted), so everything the hub settles on (a lock's
//! finality, a leg's release, refund or claim) is reported only from a final block.

use crate::adapter::{tx_id, NativeAdapter};
use isthmus_adapter_api::{AdapterError, BlockRef, ChainEvent, Checkpoint, EventKind, EventPage};
use isthmus_chain::block::Block;
use isthmus_chain::escrow::{EscrowCall, EscrowStatus};
use isthmus_core::Hash32;
use isthmus_lock_contracts::LockId;
use std::collections::BTreeMap;
use std::sync::Mutex;

const SHIFT: u32 = 24;
const MASK: u64 = (1 << SHIFT) - 1;
/// Blocks read per call before a page is returned (bounds one call's latency).
const MAX_SCAN: u64 = 2_000;

/// Event counts of final blocks already read: empty stretches are skipped without asking
/// the node again.
#[derive(Default)]
pub(crate) struct Index {
    inner: Mutex<IndexInner>,
}

#[derive(Default)]
struct IndexInner {
    /// Every final height up to here has been counted.
    counted_to: u64,
    /// Heights (≤ `counted_to`) that yield events.
    nonempty: BTreeMap<u64, usize>,
}

impl Index {
    /// The next height at or after `h` that may yield events.
    fn next_candidate(&self, h: u64) -> u64 {
        let Ok(g) = self.inner.lock() else {
            return h;
        };
        if h > g.counted_to {
            return h;
        }
        match g.nonempty.range(h..).next() {
            Some((n, _)) => *n,
            None => g.counted_to + 1,
        }
    }

    fn record(&self, h: u64, count: usize) {
        let Ok(mut g) = self.inner.lock() else {
            return;
        };
        if h == g.counted_to + 1 {
            g.counted_to = h;
            if count > 0 {
                g.nonempty.insert(h, count);
            }
        }
    }
}

/// A successful escrow call's event, judged by the escrow's write-once record.
async fn escrow_event(
    a: &NativeAdapter,
    call: &EscrowCall,
    id: &Hash32,
) -> Result<Option<EventKind>, AdapterError> {
    let lock = call.lock_id();
    let Some(l) = a.escrow_record(&lock).await? else {
        return Ok(None);
    };
    let lock_id = LockId(lock);
    Ok(match (call, &l.status) {
        (EscrowCall::Lock(_), _) if l.lock_tx == *id => Some(EventKind::LockIncluded {
            lock: a.observation(&lock, &l).await?,
        }),
        (EscrowCall::Release(_), EscrowStatus::Released { tx }) if tx == id => {
            Some(EventKind::Released {
                lock_id,
                tx: tx_id(id),
            })
        }
        (EscrowCall::Refund(_), EscrowStatus::Refunded { tx }) if tx == id => {
            Some(EventKind::Refunded {
                lock_id,
                tx: tx_id(id),
            })
        }
        (EscrowCall::Claim(_), EscrowStatus::Claimed { tx, preimage }) if tx == id => {
            Some(EventKind::Claimed {
                lock_id,
                tx: tx_id(id),
                preimage: preimage.0.to_vec(),
            })
        }
        _ => None,
    })
}

/// Why the module call `t` (included as `id`) failed, if it is an escrow or packets call
/// that had no effect. The escrow's and the packets module's records are write-once, so
/// "no record of this transaction" means its call was refused.
pub(crate) async fn failure(
    a: &NativeAdapter,
    t: &isthmus_chain::tx::Transaction,
    id: &Hash32,
) -> Result<Option<String>, AdapterError> {
    if let Some(call) = EscrowCall::from_kind(&t.body.kind) {
        return Ok(match call {
            Err(e) => Some(e.to_string()),
            Ok(call) => match escrow_event(a, &call, id).await? {
                Some(_) => None,
                None => Some(format!("escrow `{}` call was refused", call.method())),
            },
        });
    }
    Ok(
        match crate::packets::took_effect(a, &t.body.kind, id).await? {
            Some(false) => Some("packets call was refused".to_owned()),
            _ => None,
        },
    )
}

/// What the final block `b` settles: `LockFinal` for the locks that took effect in it, then
/// the releases, refunds and claims that did.
async fn settled_in(a: &NativeAdapter, b: &Block) -> Result<Vec<EventKind>, AdapterError> {
    let algo = a.light().config.rules_at(b.header.number).hash;
    let (mut locks, mut spends) = (Vec::new(), Vec::new());
    for t in &b.txs {
        let Some(Ok(call)) = EscrowCall::from_kind(&t.body.kind) else {
            continue;
        };
        match escrow_event(a, &call, &t.id(algo)).await? {
            Some(EventKind::LockIncluded { lock }) => locks.push(EventKind::LockFinal { lock }),
            Some(spend) => spends.push(spend),
            None => {}
        }
    }
    locks.extend(spends);
    Ok(locks)
}

/// Every event block `h` yields (see the module docs).
async fn block_events(a: &NativeAdapter, h: u64) -> Result<Vec<EventKind>, AdapterError> {
    let b = a.block(h).await?;
    let algo = a.light().config.rules_at(h).hash;
    let here: BlockRef = a.light().block_ref(&b.header);
    let mut out = Vec::new();
    if !b.txs.is_empty() {
        out.push(EventKind::NewHead { block: here });
        let ids: Vec<Hash32> = b.txs.iter().map(|t| t.id(algo)).collect();
        for id in &ids {
            out.push(EventKind::TxIncluded {
                tx: tx_id(id),
                block: here,
            });
        }
        for (t, id) in b.txs.iter().zip(&ids) {
            if let Some(Ok(call)) = EscrowCall::from_kind(&t.body.kind) {
                // A spend waits for its block to be final (`settled_in`).
                if let Some(ev @ EventKind::LockIncluded { .. }) =
                    escrow_event(a, &call, id).await?
                {
                    out.push(ev);
                }
            } else if let Some(ev) = crate::packets::packet_event(a, &t.body.kind, id).await? {
                out.push(ev);
            }
        }
    }
    let depth = a.light().confirmations;
    if h > depth {
        let fin = if depth == 0 {
            b
        } else {
            a.block(h - depth).await?
        };
        if !fin.txs.is_empty() {
            out.push(EventKind::Finalized {
                block: a.light().block_ref(&fin.header),
            });
            out.extend(settled_in(a, &fin).await?);
        }
    }
    Ok(out)
}

/// Up to `limit` events after `after`.
pub(crate) async fn page(
    a: &NativeAdapter,
    after: Checkpoint,
    limit: u32,
) -> Result<EventPage, AdapterError> {
    let limit = limit.max(1) as usize;
    let head = a.head_height().await?;
    let final_to = a.finalized_at(head);
    let mut h = (after.0 >> SHIFT).max(1);
    let mut events: Vec<ChainEvent> = Vec::new();
    let mut scanned = 0u64;
    let mut more = false;
    while h <= head {
        let cand = a.events.next_candidate(h);
        if cand > h {
            h = cand;
            continue;
        }
        if scanned >= MAX_SCAN {
            more = true;
            break;
        }
        scanned += 1;
        let evs = block_events(a, h).await?;
        if h <= final_to {
            a.events.record(h, evs.len());
        }
        for (i, kind) in evs.into_iter().enumerate() {
            let cp = Checkpoint((h << SHIFT) | (i as u64 & MASK));
            if cp <= after {
                continue;
            }
            if events.len() == limit {
                more = true;
                break;
            }
            events.push(ChainEvent {
                checkpoint: cp,
                kind,
            });
        }
        if more {
            break;
        }
        h += 1;
    }
    let next = events.last().map_or(after, |e| e.checkpoint);
    Ok(EventPage { events, next, more })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_skips_counted_empty_heights_only() {
        let ix = Index::default();
        assert_eq!(ix.next_candidate(1), 1);
        ix.record(1, 0);
        ix.record(2, 3);
        ix.record(3, 0);
        ix.record(5, 1); // not contiguous: ignored
        assert_eq!(ix.next_candidate(1), 2);
        assert_eq!(ix.next_candidate(3), 4);
        assert_eq!(ix.next_candidate(4), 4);
    }
}
