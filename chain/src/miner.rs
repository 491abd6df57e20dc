//! Proof-of-work nonce search on N threads, stoppable and pausable.
//!
//! The search is a blocking function meant for `tokio::task::spawn_blocking` (or a plain
//! thread): thread `i` of `n` tries nonces `i, i+n, i+2n, …` and all threads stop as soon
//! as one finds a hash under the target, or when the caller raises `stop` (a new head
//! arrived). While `paused` is set the threads idle without hashing. The thread count
//! comes from the node's hardware budget (`cpu_cores`).

use crate::block::{meets_target, Block};
use isthmus_core::{HashAlgo, Keypair, NetworkId};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Shared switches and counters of a miner.
#[derive(Debug, Clone, Default)]
pub struct MinerControl {
    pub stop: Arc<AtomicBool>,
    pub paused: Arc<AtomicBool>,
    /// Total hashes tried (for hash-rate reporting).
    pub hashes: Arc<AtomicU64>,
}

impl MinerControl {
    pub fn pause(&self, on: bool) {
        self.paused.store(on, Ordering::SeqCst);
    }
}

/// Search a nonce for `template` (its difficulty set, its other fields final). Returns the
/// sealed block, or `None` if stopped first.
pub fn mine(
    template: &Block,
    algo: HashAlgo,
    network: NetworkId,
    key: &Keypair,
    threads: u32,
    ctl: &MinerControl,
) -> Option<Block> {
    let threads = u64::from(threads.max(1));
    let found = AtomicBool::new(false);
    let winner = std::sync::Mutex::new(None::<u64>);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (found, winner) = (&found, &winner);
            let mut header = template.header.clone();
            s.spawn(move || {
                let mut nonce = t;
                loop {
                    if found.load(Ordering::Relaxed) || ctl.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if ctl.paused.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    for _ in 0..256 {
                        header.nonce = nonce;
                        if meets_target(&header.hash(algo), header.difficulty) {
                            found.store(true, Ordering::SeqCst);
                            if let Ok(mut w) = winner.lock() {
                                w.get_or_insert(nonce);
                            }
                            return;
                        }
                        nonce = nonce.wrapping_add(threads);
                    }
                    ctl.hashes.fetch_add(256, Ordering::Relaxed);
                }
            });
        }
    });
    let nonce = winner.into_inner().ok().flatten()?;
    let mut b = template.clone();
    b.header.nonce = nonce;
    b.resign(algo, network, key);
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::BlockHeader;
    use isthmus_core::{Hash32, NodeId};

    fn template(difficulty: u64) -> Block {
        let k = Keypair::dev("miner");
        let h = BlockHeader {
            version: 1,
            number: 1,
            prev_hash: Hash32::ZERO,
            tx_root: Hash32::ZERO,
            state_root: Hash32::ZERO,
            timestamp_ms: 0,
            proposer: NodeId([0; 32]),
            difficulty,
            nonce: 0,
            tx_count: 0,
            size: 0,
        };
        Block::seal(h, vec![], HashAlgo::Blake3, NetworkId(1), &k)
    }

    #[test]
    fn finds_a_valid_nonce_on_several_threads() {
        let k = Keypair::dev("miner");
        let ctl = MinerControl::default();
        let b = mine(
            &template(5_000),
            HashAlgo::Blake3,
            NetworkId(1),
            &k,
            2,
            &ctl,
        )
        .unwrap();
        assert!(meets_target(&b.hash(HashAlgo::Blake3), 5_000));
        assert!(b.verify_signature(HashAlgo::Blake3, NetworkId(1)).is_ok());
    }

    #[test]
    fn pause_and_stop() {
        let k = Keypair::dev("miner");
        let ctl = MinerControl::default();
        ctl.pause(true);
        let c2 = ctl.clone();
        let h = std::thread::spawn(move || {
            mine(
                &template(u64::MAX),
                HashAlgo::Sha256,
                NetworkId(1),
                &k,
                2,
                &c2,
            )
        });
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            ctl.hashes.load(Ordering::SeqCst),
            0,
            "paused miner hashes nothing"
        );
        ctl.pause(false);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while ctl.hashes.load(Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline, "miner did not resume");
            std::thread::sleep(Duration::from_millis(5));
        }
        ctl.stop.store(true, Ordering::SeqCst);
        assert!(h.join().unwrap().is_none());
    }
}
