//! The driver against a real sled journal and a simulated pair of escrows. Crashes are
//! simulated by dropping the driver at arbitrary points (losing its in-memory queue and
//! every in-flight action) and reopening the same sled directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use isthmus_core::NetworkId;
use isthmus_interop::*;
use isthmus_lock_contracts::*;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod world;
use world::*;

fn leg(net: u64, from: &str, to: &str) -> LegSpec {
    LegSpec {
        network: NetworkId(net),
        asset: AssetId("native".into()),
        amount: Amount(100),
        from: Address(from.into()),
        to: Address(to.into()),
        timeout: 10_000,
        locker: Locker::External,
    }
}

fn new_transfer(n: u32) -> (TwoPhase, Vec<Action>) {
    let spec = TwoPhaseSpec {
        a: leg(1, "alice", "bob"),
        b: leg(2, "bob", "alice"),
        deadline: 1_000,
    };
    let id = InstanceId::derive(&[format!("t{n}").as_bytes()]);
    TwoPhase::create(
        id,
        spec,
        &TwoPhaseConfig {
            release_window: 600,
        },
        0,
    )
    .unwrap()
}

/// What the watcher's re-read of leg B's escrow reports when B never locked.
fn absent_at_timeout(m: &TwoPhase) -> ContractEvent {
    ContractEvent::TwoPhase(TwoPhaseEvent::LockAbsent {
        leg: LegId::B,
        at: m.spec.b.timeout,
    })
}

struct Node {
    driver: Arc<Driver>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

fn boot(dir: &std::path::Path, world: Arc<World>) -> Node {
    let journal = Arc::new(SledJournal::open(sled::open(dir).unwrap()).unwrap());
    let driver = Driver::new(journal, Arc::new(()), fast());
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let d = driver.clone();
    let task = tokio::spawn(async move {
        d.run(world, || 10, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Node { driver, stop, task }
}

async fn crash(node: Node) {
    // Abort without a graceful stop: in-memory queue and in-flight work are lost.
    node.task.abort();
    let _ = node.task.await;
    drop(node.stop);
    drop(node.driver);
    // sled releases its file lock when the last handle drops
    tokio::time::sleep(Duration::from_millis(20)).await;
}

async fn wait_terminal(driver: &Driver, id: InstanceId) -> StoredInstance {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let inst = driver.journal().get(&id).unwrap().unwrap();
        if inst.contract.status().terminal {
            return inst;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not terminal: {:?}",
            inst.contract.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn both_locked_is_released_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let world = Arc::new(World {
        escrows: Mutex::default(),
        flaky: 0,
        calls: AtomicU64::new(0),
    });
    let node = boot(dir.path(), world.clone());
    let (m, actions) = new_transfer(1);
    register_escrows(&world, &m);
    node.driver
        .create(Contract::TwoPhase(m.clone()), actions, "tr_1".into(), 0)
        .await
        .unwrap();
    for l in LegId::BOTH {
        for ev in lock_events(&m, l) {
            node.driver.apply(m.id, ev, 1).await.unwrap();
        }
    }
    let done = wait_terminal(&node.driver, m.id).await;
    assert_eq!(done.contract.status().phase, Phase::Released);
    let w = world.escrows.lock().unwrap();
    assert!(w.violations.is_empty(), "{:?}", w.violations);
    assert_eq!(w.settlements.len(), 2);
    assert!(w
        .settlements
        .iter()
        .all(|(_, s)| *s == Settlement::Released));
    // the journal holds the whole history
    assert!(node.driver.journal().events(&m.id).unwrap().len() >= 6);
}

#[tokio::test]
async fn counterparty_never_locks_refunds_after_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let world = Arc::new(World {
        escrows: Mutex::default(),
        flaky: 0,
        calls: AtomicU64::new(0),
    });
    let node = boot(dir.path(), world.clone());
    let (m, actions) = new_transfer(2);
    register_escrows(&world, &m);
    node.driver
        .create(Contract::TwoPhase(m.clone()), actions, "tr_2".into(), 0)
        .await
        .unwrap();
    for ev in lock_events(&m, LegId::A) {
        node.driver.apply(m.id, ev, 1).await.unwrap();
    }
    assert_eq!(node.driver.tick_all(999).await.unwrap(), 1);
    assert!(
        !node
            .driver
            .journal()
            .get(&m.id)
            .unwrap()
            .unwrap()
            .contract
            .status()
            .terminal
    );
    node.driver.tick_all(1_000).await.unwrap();
    // A is refunded, but the transfer stays open: B's escrow could still get a lock until
    // its timeout, and the hub would owe it a refund.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let inst = node.driver.journal().get(&m.id).unwrap().unwrap();
        if inst.contract.status().legs.a == LegPhase::Refunded {
            assert_eq!(inst.contract.status().phase, Phase::Refunding);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "a never refunded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The watcher's re-read of B's escrow after its timeout finds no lock: that ends it.
    node.driver
        .apply(m.id, absent_at_timeout(&m), 10_000)
        .await
        .unwrap();
    let done = wait_terminal(&node.driver, m.id).await;
    assert_eq!(done.contract.status().phase, Phase::Refunded);
    let w = world.escrows.lock().unwrap();
    assert_eq!(
        w.settlements,
        vec![(m.lock_id(LegId::A), Settlement::Refunded)]
    );
    assert!(w.violations.is_empty());
}

#[tokio::test]
async fn wrong_kind_and_unknown_instance_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let world = Arc::new(World {
        escrows: Mutex::default(),
        flaky: 0,
        calls: AtomicU64::new(0),
    });
    let node = boot(dir.path(), world);
    let (m, actions) = new_transfer(3);
    node.driver
        .create(Contract::TwoPhase(m.clone()), actions, "tr_3".into(), 0)
        .await
        .unwrap();
    let before = node.driver.journal().get(&m.id).unwrap().unwrap();
    let err = node
        .driver
        .apply(m.id, ContractEvent::Htlc(HtlcEvent::Tick { now: 5 }), 5)
        .await
        .unwrap_err();
    assert!(matches!(err, DriverError::WrongKind(_)), "{err}");
    let err = node
        .driver
        .apply(
            InstanceId::derive(&[b"nope"]),
            ContractEvent::tick(ContractKind::TwoPhase, 5),
            5,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DriverError::UnknownInstance(_)));
    // a replayed event is a no-op
    let ev = lock_events(&m, LegId::A).remove(0);
    let once = node.driver.apply(m.id, ev.clone(), 1).await.unwrap();
    let twice = node.driver.apply(m.id, ev, 1).await.unwrap();
    assert_eq!(once, twice);
    assert_eq!(once.seq, before.seq + 1);
}

/// 60 trials: a transfer whose events are delivered around a crash at a random point,
/// with a flaky executor. After the last restart every transfer ends fully released or
/// fully refunded, never both, never twice.
#[tokio::test]
async fn crash_trials_end_released_or_refunded_never_both() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x0001_5745);
    let mut outcomes = HashMap::new();
    for trial in 0..60u32 {
        let dir = tempfile::tempdir().unwrap();
        let world = Arc::new(World {
            escrows: Mutex::default(),
            flaky: rng.gen_range(2..5),
            calls: AtomicU64::new(0),
        });
        let (m, actions) = new_transfer(100 + trial);
        register_escrows(&world, &m);
        let counterparty_locks = rng.gen_bool(0.6);
        let crash_after = rng.gen_range(0..6usize);
        let mut events: Vec<(ContractEvent, u64)> = lock_events(&m, LegId::A)
            .into_iter()
            .map(|e| (e, 1))
            .collect();
        if counterparty_locks {
            events.extend(lock_events(&m, LegId::B).into_iter().map(|e| (e, 2)));
        }
        events.push((ContractEvent::tick(ContractKind::TwoPhase, 1_000), 1_000));
        if !counterparty_locks {
            events.push((absent_at_timeout(&m), 10_000));
        }

        let mut node = boot(dir.path(), world.clone());
        node.driver
            .create(
                Contract::TwoPhase(m.clone()),
                actions.clone(),
                format!("tr_{trial}"),
                0,
            )
            .await
            .unwrap();
        for (i, (ev, now)) in events.iter().enumerate() {
            if i == crash_after {
                // let some actions run, then crash
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..15))).await;
                crash(node).await;
                node = boot(dir.path(), world.clone());
                // a retried create after the crash is a no-op
                node.driver
                    .create(
                        Contract::TwoPhase(m.clone()),
                        actions.clone(),
                        format!("tr_{trial}"),
                        0,
                    )
                    .await
                    .unwrap();
            }
            // watchers re-deliver after a restart: apply may see duplicates
            node.driver.apply(m.id, ev.clone(), *now).await.unwrap();
            if rng.gen_bool(0.3) {
                node.driver.apply(m.id, ev.clone(), *now).await.unwrap();
            }
        }
        let done = wait_terminal(&node.driver, m.id).await;
        let phase = done.contract.status().phase;
        {
            let w = world.escrows.lock().unwrap();
            assert!(w.violations.is_empty(), "trial {trial}: {:?}", w.violations);
            let released = w
                .settlements
                .iter()
                .filter(|(_, s)| *s == Settlement::Released)
                .count();
            let refunded = w
                .settlements
                .iter()
                .filter(|(_, s)| *s == Settlement::Refunded)
                .count();
            assert!(
                released == 0 || refunded == 0,
                "trial {trial}: both released and refunded"
            );
            let mut per_lock = HashMap::new();
            for (l, _) in &w.settlements {
                *per_lock.entry(*l).or_insert(0) += 1;
            }
            assert!(
                per_lock.values().all(|n| *n == 1),
                "trial {trial}: settled twice"
            );
            if counterparty_locks {
                assert_eq!((phase, released), (Phase::Released, 2), "trial {trial}");
            } else {
                assert_eq!((phase, refunded), (Phase::Refunded, 1), "trial {trial}");
            }
            *outcomes.entry(phase).or_insert(0) += 1;
        }
        crash(node).await;
    }
    assert_eq!(outcomes.values().sum::<i32>(), 60);
}
