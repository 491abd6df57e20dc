//! The interop `Anchorer` writing every journaled transition to a real hub chain through
//! `ChainTransitionLog`.

use crate::net::{pos, TestNet};
use isthmus_core::Keypair;
use isthmus_hub::ledger::ChainTransitionLog;
use isthmus_interop::anchor::history_digests;
use isthmus_interop::{Anchorer, Contract, ContractEvent, Journal, SledJournal, StoredInstance};
use std::sync::Arc;

fn instance(n: u8) -> StoredInstance {
    StoredInstance {
        contract: Contract::sample_two_phase(&[n]),
        seq: 0,
        api_id: format!("tr_{n}"),
        tenant: "default".into(),
        created_at: 0,
        updated_at: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_lands_on_the_hub_chain_once_and_cannot_be_rewritten() {
    let hub = TestNet::start(pos("hub", 100, &[])).await;
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let journal: Arc<dyn Journal> = Arc::new(SledJournal::open(db.clone()).unwrap());
    let auditor = Keypair::dev("hub-auditor");
    let log = Arc::new(ChainTransitionLog::new(hub.node.clone(), auditor.clone()));
    let anchorer = Anchorer::new(
        journal.clone(),
        log.clone(),
        db.open_tree("anchors").unwrap(),
    );

    let mut insts = Vec::new();
    for n in 0..3u8 {
        let mut inst = instance(n);
        journal.create(&inst).unwrap();
        for t in 1..=n as u64 {
            inst.seq += 1;
            journal
                .append(&inst, &ContractEvent::tick(inst.contract.kind(), t))
                .unwrap();
        }
        insts.push(inst);
    }
    // 1 + 2 + 3 transitions.
    assert_eq!(anchorer.anchor_pending().await.unwrap(), 6);
    assert_eq!(anchorer.lag().unwrap(), 0);
    for inst in &insts {
        let id = inst.contract.id();
        let digests = history_digests(inst, &journal.events(&id).unwrap());
        for (seq, d) in digests.iter().enumerate() {
            assert_eq!(
                log.anchored(&id, seq as u64).await.unwrap(),
                Some(d.0),
                "{} seq {seq}",
                inst.api_id
            );
        }
    }
    // A rewritten history (another event at an anchored seq) is refused by the chain and
    // the recorded digest stays.
    let id = insts[2].contract.id();
    let before = log.anchored(&id, 1).await.unwrap();
    let forged = isthmus_interop::TransitionAnchor {
        instance: id,
        seq: 1,
        digest: isthmus_core::Hash32([0xEE; 32]),
    };
    use isthmus_interop::TransitionLog;
    assert!(log.anchor(&[forged]).await.is_err());
    assert_eq!(log.anchored(&id, 1).await.unwrap(), before);
}
