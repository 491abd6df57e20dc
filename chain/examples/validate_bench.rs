//! Single-process measurement: how fast one node validates and commits blocks of signed
//! transfers (full checks: Merkle root, batch strict signatures, execution, state root,
//! sled commit with flush), next to the ed25519 verify ceiling measured in the same run.
//!
//! Run: `cargo run --release -p isthmus-chain --example validate_bench`
#![allow(clippy::print_stdout)] // a benchmark prints its figures on purpose

use isthmus_chain::chain::Chain;
use isthmus_chain::state::Modules;
use isthmus_chain::store::SledStore;
use isthmus_chain::{NetworkConfig, Transaction};
use isthmus_core::{sign, Domain, Keypair};
use std::sync::Arc;
use std::time::Instant;

fn main() -> anyhow_free::Result {
    const SENDERS: usize = 500;
    const PER_BLOCK: usize = 5_000;
    const BLOCKS: usize = 6;
    let mut toml = String::from(
        "name = \"bench\"\nnetwork_id = 99\nnodes = 1\nmax_block_txs = 20000\nmax_block_bytes = 16777216\n\
         [consensus]\ntype = \"pow\"\ninitial_difficulty = 1\n",
    );
    let keys: Vec<Keypair> = (0..SENDERS)
        .map(|i| Keypair::dev(&format!("s{i}")))
        .collect();
    for i in 0..SENDERS {
        toml.push_str(&format!(
            "[[genesis.allocation]]\naccount = \"dev:s{i}\"\nbalance = 1000000000\n"
        ));
    }
    let cfg = Arc::new(NetworkConfig::from_toml_str(&toml).map_err(|e| e.to_string())?);
    let dir = std::env::temp_dir().join(format!("isthmus-bench-{}", std::process::id()));
    let store = SledStore::open(&dir, 8 << 30).map_err(|e| e.to_string())?;
    let mut producer = Chain::open(
        cfg.clone(),
        Box::new(SledStore::temporary(8 << 30).map_err(|e| e.to_string())?),
        Modules::builtin(),
    )
    .map_err(|e| e.to_string())?;
    let mut validator =
        Chain::open(cfg.clone(), Box::new(store), Modules::builtin()).map_err(|e| e.to_string())?;
    let sink = Keypair::dev("sink").id();
    let miner = Keypair::dev("miner");

    // Build the blocks up front (signing is the client's cost, not the node's).
    let mut blocks = Vec::new();
    let mut nonce = 0u64;
    for b in 0..BLOCKS {
        let algo = producer.head_algo();
        let txs: Vec<_> = (0..PER_BLOCK)
            .map(|i| {
                let k = &keys[i % SENDERS];
                let n = nonce + (i / SENDERS) as u64;
                let t = Transaction::transfer(k, cfg.network(), n, sink, 1);
                (t.id(algo), t)
            })
            .collect();
        nonce += (PER_BLOCK / SENDERS) as u64;
        let (block, skipped) = producer.build_block(txs, &miner, 1_000 * (b as u64 + 1));
        assert!(skipped.is_empty());
        producer.import(block.clone()).map_err(|e| e.to_string())?;
        blocks.push(block);
    }

    // Verify ceiling: single strict verifies on one core, same payload sizes.
    let payloads: Vec<Vec<u8>> = blocks[0]
        .txs
        .iter()
        .map(|t| t.body.canonical_bytes())
        .collect();
    let t0 = Instant::now();
    for (t, p) in blocks[0].txs.iter().zip(&payloads) {
        sign::verify(
            &t.body.from,
            Domain::Transaction,
            cfg.network(),
            p,
            &t.signature,
        )
        .map_err(|e| e.to_string())?;
    }
    let single = PER_BLOCK as f64 / t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let items: Vec<_> = blocks[0]
        .txs
        .iter()
        .zip(&payloads)
        .map(|(t, p)| sign::BatchItem {
            signer: t.body.from,
            domain: Domain::Transaction,
            network: cfg.network(),
            payload: p,
            signature: t.signature,
        })
        .collect();
    let ok = sign::verify_batch(&items).iter().all(|r| r.is_ok());
    let batch = PER_BLOCK as f64 / t0.elapsed().as_secs_f64();
    assert!(ok);

    let t0 = Instant::now();
    for b in blocks {
        validator.import(b).map_err(|e| e.to_string())?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let tps = (PER_BLOCK * BLOCKS) as f64 / secs;
    println!("ed25519 strict verify ceiling (1 core): single {single:.0}/s, batch {batch:.0}/s");
    println!(
        "validate+commit {} blocks x {PER_BLOCK} transfers: {tps:.0} tx/s, {:.1} ms/block",
        BLOCKS,
        secs * 1000.0 / BLOCKS as f64
    );
    println!(
        "ratio to single-verify ceiling: {:.2}, to batch ceiling: {:.2}",
        tps / single,
        tps / batch
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Keeps the example free of extra dependencies: errors are reported as strings.
mod anyhow_free {
    pub type Result = std::result::Result<(), String>;
}
