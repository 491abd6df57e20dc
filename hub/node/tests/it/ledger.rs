//! The `ChainLedger` on a real single-validator hub chain.

use crate::net::{pos, TestNet};
use isthmus_chain::escrow::decision_state_key;
use isthmus_core::Keypair;
use isthmus_hub::ledger::ChainLedger;
use isthmus_interop::{ExecError, HubLedger};
use isthmus_lock_contracts::{Decision, InstanceId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_are_recorded_once_and_conflicts_refused() {
    let hub = TestNet::start(pos("hub", 100, &[])).await;
    let signer = Keypair::dev("hub-recorder");
    let ledger = ChainLedger::new(hub.node.clone(), signer.clone());
    let one = InstanceId::derive(&[b"one"]);
    let two = InstanceId::derive(&[b"two"]);
    let first = ledger
        .record_decision(one, Decision::Validated)
        .await
        .unwrap();
    assert!(first.height >= 1);
    // Committed: the hub chain holds it at the reported height.
    let block = hub.node.block_at(first.height).await.unwrap().unwrap();
    assert!(block
        .txs
        .iter()
        .any(|t| t.id(isthmus_core::HashAlgo::Sha256).to_hex() == first.tx.0));
    // A retry, even through a fresh ledger (a restarted hub), gets the same record.
    let again = ChainLedger::new(hub.node.clone(), signer.clone())
        .record_decision(one, Decision::Validated)
        .await
        .unwrap();
    assert_eq!(again, first);
    let key = decision_state_key(&signer.id(), &one.0);
    let stored = hub.node.state_get(key.clone()).await.unwrap();
    match ledger.record_decision(one, Decision::Aborted).await {
        Err(ExecError::Refused(reason)) => assert!(reason.contains("Validated"), "{reason}"),
        other => panic!("a conflicting decision was not refused: {other:?}"),
    }
    assert_eq!(hub.node.state_get(key).await.unwrap(), stored);
    let other = ledger
        .record_decision(two, Decision::Aborted)
        .await
        .unwrap();
    assert_ne!(other.tx, first.tx);
}
