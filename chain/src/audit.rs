//! The `audit` module: the hub anchors every state transition of every inter-chain contract
//! instance on its own chain, so the history is replicated by the hub's validators and
//! anyone holding the journal can check it.
//!
//! An anchor is `(instance, seq, digest)`: the digest commits to the event applied at that
//! sequence number and the state it produced; the event itself stays in the hub's journal
//! (it may hold a preimage that must not be public before the claim). Anchors are scoped by
//! the signer, so only the hub's key writes the hub's history. Per (signer, instance) the
//! sequence numbers are contiguous from 0; re-anchoring the same digest is a no-op (retries
//! after a crash are safe) and a different digest for an anchored sequence is refused, so a
//! recorded history cannot be rewritten.

use crate::module_error::ModuleError;
use crate::state::{CallCtx, Module, ModuleStore};
use serde::{Deserialize, Serialize};

/// The name the module is registered under.
pub const MODULE: &str = "audit";
/// Most anchors one call may carry.
pub const MAX_ANCHORS_PER_CALL: usize = 512;

/// One anchored transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub instance: [u8; 32],
    pub seq: u64,
    pub digest: [u8; 32],
}

/// Encode the args of `anchor`.
pub fn anchor_args(anchors: &[Anchor]) -> Vec<u8> {
    crate::tx::encode_canonical(&anchors)
}

/// The storage key of one anchor, under the module's prefix.
pub fn anchor_key(signer: &[u8; 32], instance: &[u8; 32], seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(73);
    k.push(b'a');
    k.extend_from_slice(signer);
    k.extend_from_slice(instance);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Anchors transitions; see the module docs.
pub struct AuditModule;

impl Module for AuditModule {
    fn call(
        &self,
        ctx: &CallCtx,
        store: &mut ModuleStore<'_>,
        method: &str,
        args: &[u8],
    ) -> Result<(), ModuleError> {
        if method != "anchor" {
            return Err(ModuleError::unknown_method(MODULE, method));
        }
        let anchors: Vec<Anchor> =
            rmp_serde::from_slice(args).map_err(|e| ModuleError::bad_args(method, e))?;
        if anchors.is_empty() || anchors.len() > MAX_ANCHORS_PER_CALL {
            return Err(ModuleError::BadAnchorCount {
                got: anchors.len(),
                max: MAX_ANCHORS_PER_CALL,
            });
        }
        let signer = ctx.sender.0;
        for a in &anchors {
            let key = anchor_key(&signer, &a.instance, a.seq);
            match store.get(&key) {
                Some(existing) if existing.as_slice() == a.digest.as_slice() => continue,
                Some(_) => {
                    return Err(ModuleError::AnchorConflict {
                        instance: a.instance,
                        seq: a.seq,
                    })
                }
                None => {}
            }
            if a.seq > 0
                && store
                    .get(&anchor_key(&signer, &a.instance, a.seq - 1))
                    .is_none()
            {
                return Err(ModuleError::AnchorGap {
                    instance: a.instance,
                    seq: a.seq,
                });
            }
            store.put(&key, a.digest.to_vec());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{module_key, ExecRules, Modules, State};
    use crate::tx::{Transaction, TxKind};
    use isthmus_core::{Keypair, NetworkId};
    use std::sync::Arc;

    const NET: NetworkId = NetworkId(9);

    fn call(k: &Keypair, nonce: u64, anchors: &[Anchor]) -> Transaction {
        Transaction::sign(
            k,
            NET,
            nonce,
            TxKind::ModuleCall {
                module: MODULE.into(),
                method: "anchor".into(),
                args: anchor_args(anchors),
            },
        )
    }

    fn a(seq: u64, d: u8) -> Anchor {
        Anchor {
            instance: [7; 32],
            seq,
            digest: [d; 32],
        }
    }

    #[test]
    fn anchors_are_contiguous_idempotent_and_never_rewritten() {
        let hub = Keypair::dev("hub");
        let other = Keypair::dev("other");
        let s = State::genesis([(hub.id(), 1), (other.id(), 1)]);
        let mut m = Modules::builtin();
        m.register(MODULE, Arc::new(AuditModule));
        let rules = ExecRules {
            version: 1,
            forbid_zero_transfers: false,
        };
        let txs = [
            call(&hub, 0, &[a(0, 1), a(1, 2)]),
            call(&hub, 1, &[a(1, 2), a(2, 3)]), // re-anchoring seq 1 is a no-op
            call(&hub, 2, &[a(2, 9)]),          // rewriting seq 2: refused
            call(&hub, 3, &[a(5, 1)]),          // gap: refused
            call(&other, 0, &[a(1, 1)]),        // another signer has no seq 0: refused
            call(&hub, 4, &[]),                 // empty: refused
        ];
        let (diff, receipts) = s.execute(&txs, &[], 1, 0, &rules, &m).unwrap();
        let codes: Vec<_> = receipts.iter().map(|r| r.code.as_deref()).collect();
        assert_eq!(
            codes,
            [
                None,
                None,
                Some("anchor_conflict"),
                Some("anchor_gap"),
                Some("anchor_gap"),
                Some("bad_anchor_count")
            ],
            "{receipts:?}"
        );
        let errs: Vec<_> = receipts.iter().map(|r| r.error.clone()).collect();
        assert!(
            errs[3].as_deref().unwrap().contains("skips seq 4"),
            "{errs:?}"
        );
        assert!(
            errs[4].as_deref().unwrap().contains("skips seq 0"),
            "{errs:?}"
        );
        let mut s2 = s.clone();
        s2.apply(&diff);
        let stored = |signer: &Keypair, seq| {
            s2.get(&module_key(
                MODULE,
                &anchor_key(&signer.id().0, &[7; 32], seq),
            ))
        };
        assert_eq!(stored(&hub, 2), Some(vec![3; 32]), "the first digest stays");
        assert_eq!(stored(&hub, 5), None);
        assert_eq!(stored(&other, 1), None);
    }
}
