//! A PoW node's search threads never outlive it, whichever way its task ends.

use isthmus_chain::config::NetworkConfig;
use isthmus_chain::node::{self, NodeOptions};
use isthmus_transport::TransportKind;
use std::sync::Arc;
use std::time::Duration;

/// A difficulty no search meets in the test's lifetime, so a miner only ends when told.
fn unreachable_pow() -> NetworkConfig {
    NetworkConfig::from_toml_str(
        "name = \"deep\"\nnetwork_id = 77\nnodes = 1\nblock_interval_ms = 50\n\
         [consensus]\ntype = \"pow\"\ninitial_difficulty = 1000000000000000\n",
    )
    .expect("valid pow config")
}

/// Start a mining node on its own runtime, optionally switch mining off, then drop the
/// runtime without stopping the node: its task is dropped unpolled, so nothing but the
/// node's own state can end the search threads, and the runtime's drop waits for them.
fn runtime_drop_finishes(switch_off_first: bool) -> bool {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let running = rt.block_on(async {
            let running = node::start(NodeOptions {
                cfg: Arc::new(unreachable_pow()),
                index: 0,
                data_dir: dir.path().to_path_buf(),
                listen: "127.0.0.1:0".parse().expect("addr"),
                peers: vec![],
                mine: true,
                transport: TransportKind::Tcp,
            })
            .await
            .expect("node starts");
            // Requests are handled in order: once status answers, the search is running.
            running.handle.status().await.expect("status");
            tokio::time::sleep(Duration::from_millis(100)).await;
            if switch_off_first {
                running.handle.set_mining(false).await.expect("mining off");
                running.handle.status().await.expect("status");
            }
            running
        });
        drop(rt);
        drop(running);
        let _ = done_tx.send(());
    });
    done_rx.recv_timeout(Duration::from_secs(30)).is_ok()
}

#[test]
fn a_dropped_node_task_ends_its_search_threads() {
    assert!(
        runtime_drop_finishes(false),
        "the runtime's drop waited on a mining thread of a dropped node"
    );
}

#[test]
fn switching_mining_off_ends_the_search_threads() {
    assert!(
        runtime_drop_finishes(true),
        "the runtime's drop waited on a paused mining thread"
    );
}

/// `mine_blocks(n)` mines exactly `n` blocks on an easy chain, where the search finds
/// many blocks per poll: the budget, not the caller's polling, decides where it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mine_blocks_mines_exactly_the_asked_number() {
    let cfg = NetworkConfig::from_toml_str(
        "name = \"easy\"\nnetwork_id = 78\nnodes = 1\nblock_interval_ms = 10\n\
         [consensus]\ntype = \"pow\"\ninitial_difficulty = 1\nmin_difficulty = 1\n",
    )
    .expect("valid pow config");
    let dir = tempfile::tempdir().expect("tempdir");
    let running = node::start(NodeOptions {
        cfg: Arc::new(cfg),
        index: 0,
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        peers: vec![],
        mine: false,
        transport: TransportKind::Tcp,
    })
    .await
    .expect("node starts");
    let node = &running.handle;
    for (ask, want) in [(3, 3), (1, 4), (5, 9)] {
        node.mine_blocks(ask).await.expect("mine");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while node.status().await.expect("status").height < want {
            assert!(std::time::Instant::now() < deadline, "never reached {want}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The nth block and the pause are one step of the node: once the height is
        // reached, mining is off and nothing more is imported.
        let s = node.status().await.expect("status");
        assert_eq!(s.height, want, "asked {ask} more blocks");
        assert!(!s.mining, "paused once the budget is spent");
    }
    running.shutdown().await;
}
