//! Tampered blocks and transactions from a rogue peer are refused with their reason, the
//! peer is disconnected and banned, and the honest chain is untouched: a bad Merkle root, a
//! bad transaction signature, a replayed nonce. A miner's far-future block (an early refund
//! of its own escrow lock) is refused too, without a ban: its time may still come.

use crate::harness::{wait_for, write_config, NodeProc};
use crate::pow_toml;
use isthmus_chain::chain::Chain;
use isthmus_chain::miner::{self, MinerControl};
use isthmus_chain::p2p::PeerMsg;
use isthmus_chain::state::Modules;
use isthmus_chain::store::SledStore;
use isthmus_chain::tx::TxKind;
use isthmus_chain::{Block, NetworkConfig, Transaction};
use isthmus_core::{Hash32, Keypair, WireLimits};
use isthmus_transport::{Endpoint, TransportConfig, TransportKind};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Connect as `label` and copy the node's chain (with the network's modules).
async fn rogue_connect(
    cfg: &NetworkConfig,
    node: &NodeProc,
    label: &str,
) -> (Endpoint, isthmus_transport::Connection, Chain) {
    let key = Keypair::dev(label);
    let tcfg = TransportConfig {
        network: cfg.network(),
        limits: WireLimits {
            max_frame: 64 << 20,
            ..WireLimits::default()
        },
        ..TransportConfig::new(TransportKind::Tcp, "127.0.0.1:0".parse().unwrap())
    };
    let ep = Endpoint::bind(tcfg, key.clone()).await.unwrap();
    let mut conn = ep.connect(node.listen, None).await.unwrap();
    let mut chain = Chain::open(
        Arc::new(cfg.clone()),
        Box::new(SledStore::temporary(1 << 30).unwrap()),
        Modules::for_network(cfg),
    )
    .unwrap();
    conn.send_msg(&PeerMsg::GetBlocks { from: 1, max: 128 })
        .await
        .unwrap();
    loop {
        let m: PeerMsg = conn.recv_msg().await.unwrap().unwrap();
        if let PeerMsg::Blocks(bs) = m {
            for (b, _) in bs {
                chain.import(b).unwrap();
            }
            break;
        }
    }
    (ep, conn, chain)
}

/// Connect as `label`, copy the node's chain, and send the block `make` builds on its head.
/// Returns whether the node closed the connection afterwards.
async fn rogue_sends(
    cfg: &NetworkConfig,
    node: &NodeProc,
    label: &str,
    make: impl FnOnce(&Chain, &Keypair) -> Block,
) -> bool {
    let key = Keypair::dev(label);
    let (ep, mut conn, chain) = rogue_connect(cfg, node, label).await;
    let b = make(&chain, &key);
    conn.send_msg(&PeerMsg::Block(b)).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(_)) = conn.recv().await {}
    })
    .await
    .is_ok();
    ep.shutdown().await;
    closed
}

fn mined(chain: &Chain, key: &Keypair, b: Block) -> Block {
    let algo = chain.head_algo();
    miner::mine(&b, algo, chain.network(), key, 1, &MinerControl::default()).unwrap()
}

fn alice_transfer(chain: &Chain, nonce_delta: i64, amount: u64) -> Transaction {
    let alice = Keypair::dev("alice");
    let nonce = chain.state().account(&alice.id()).nonce as i64 + nonce_delta;
    Transaction::transfer(
        &alice,
        chain.network(),
        nonce as u64,
        Keypair::dev("bob").id(),
        amount,
    )
}

#[test]
fn tampered_blocks_and_transactions_are_refused_and_the_peer_banned() {
    let dir = tempfile::tempdir().unwrap();
    let (cfgp, cfg) = write_config(dir.path(), "tamper", &pow_toml("tamper", 2, "", ""));
    let node = NodeProc::start(&cfgp, 0, &dir.path().join("n0"), &[], &[]);
    // One real transfer committed (its nonce is replayed below), then the head holds still.
    let real = node.transfer(&cfg, "dev:alice", "dev:bob", 9);
    wait_for(60, "transfer committed", || node.tx_block(&real));
    node.call(json!({"cmd": "mine", "on": false}));
    let head = node.status()["head_hash"].as_str().unwrap().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let expect = |n: u64, reason: &str, rogue: &str| {
        let s = node.status();
        assert_eq!(s["rejected_blocks"], n, "{s}");
        let last = s["last_rejection"].as_str().unwrap_or_default();
        assert!(last.contains(reason), "wanted `{reason}` in `{last}`");
        assert_eq!(
            s["head_hash"].as_str(),
            Some(head.as_str()),
            "head untouched"
        );
        let banned = Keypair::dev(rogue).id().to_string();
        assert!(s["banned"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b == &json!(banned)));
    };

    // 1. A bad Merkle root (re-signed and re-mined, so only the root is wrong).
    let closed = rt.block_on(rogue_sends(&cfg, &node, "rogue-1", |chain, key| {
        let tx = alice_transfer(chain, 0, 1);
        let algo = chain.head_algo();
        let (mut b, _) = chain.build_block(vec![(tx.id(algo), tx)], key, 0);
        b.header.tx_root = Hash32([7; 32]);
        mined(chain, key, b)
    }));
    assert!(closed, "rogue-1 disconnected");
    expect(1, "merkle root mismatch", "rogue-1");

    // 2. A transaction whose amount was changed after signing.
    let closed = rt.block_on(rogue_sends(&cfg, &node, "rogue-2", |chain, key| {
        let mut tx = alice_transfer(chain, 0, 1);
        tx.body.kind = TxKind::Transfer {
            to: Keypair::dev("rogue-2").id(),
            amount: 500_000,
        };
        let algo = chain.head_algo();
        let (b, _) = chain.build_block(vec![], key, 0);
        let b = Block::seal(b.header, vec![tx], algo, chain.network(), key);
        mined(chain, key, b)
    }));
    assert!(closed, "rogue-2 disconnected");
    expect(2, "signature", "rogue-2");

    // 3. A replayed transaction (nonce already used on chain).
    let closed = rt.block_on(rogue_sends(&cfg, &node, "rogue-3", |chain, key| {
        let tx = alice_transfer(chain, -1, 9);
        let algo = chain.head_algo();
        let (b, _) = chain.build_block(vec![], key, 0);
        let b = Block::seal(b.header, vec![tx], algo, chain.network(), key);
        mined(chain, key, b)
    }));
    assert!(closed, "rogue-3 disconnected");
    expect(3, "nonce", "rogue-3");

    // The same three at mempool admission, each with its reason.
    let alice = Keypair::dev("alice");
    let nonce = node.nonce("dev:alice");
    let bob = Keypair::dev("bob").id();
    let mut forged = Transaction::transfer(&alice, cfg.network(), nonce, bob, 1);
    forged.body.kind = TxKind::Transfer { to: bob, amount: 2 };
    let replay = Transaction::transfer(&alice, cfg.network(), nonce - 1, bob, 9);
    let wrong_net = Transaction::transfer(&alice, isthmus_core::NetworkId(1), nonce, bob, 1);
    let r = node.submit(&[forged, replay, wrong_net]);
    assert!(
        r[0]["rejected"].as_str().unwrap().contains("signature"),
        "{}",
        r[0]
    );
    assert!(
        r[1]["rejected"].as_str().unwrap().contains("nonce"),
        "{}",
        r[1]
    );
    assert!(
        r[2]["rejected"].as_str().unwrap().contains("network"),
        "{}",
        r[2]
    );
}

#[test]
fn a_far_future_block_refunding_the_miners_own_lock_is_refused_and_the_lock_stays() {
    use isthmus_chain::escrow::{EscrowCall, EscrowTerms, LockArgs, RefundArgs};
    const HOUR: u64 = 3_600_000;
    let dir = tempfile::tempdir().unwrap();
    let funded = "[[genesis.allocation]]\naccount = \"dev:mallory\"\nbalance = 1000\n";
    let (cfgp, cfg) = write_config(dir.path(), "future", &pow_toml("future", 2, "", funded));
    let node = NodeProc::start(&cfgp, 0, &dir.path().join("n0"), &[], &[]);
    let mallory = Keypair::dev("mallory");
    let lock_id = Hash32([42; 32]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // Mallory locks 100 for bob until an hour from now (the hub would release the other
    // leg to her meanwhile).
    let lock = EscrowCall::Lock(LockArgs {
        lock_id,
        beneficiary: Keypair::dev("bob").id(),
        amount: 100,
        timeout_ms: now + HOUR,
        terms: EscrowTerms::TwoPhase,
    });
    let r = node.submit(&[Transaction::sign(
        &mallory,
        cfg.network(),
        0,
        lock.to_kind(),
    )]);
    let id = r[0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", r[0]))
        .to_owned();
    wait_for(60, "lock committed", || node.tx_block(&id));
    node.call(json!({"cmd": "mine", "on": false}));
    let escrow = || node.call(json!({"cmd": "escrow", "lock_id": lock_id.to_hex()}));
    assert_eq!(escrow()["status"], "locked");
    assert_eq!(node.balance("dev:mallory"), 900);
    let head = node.status()["head_hash"].as_str().unwrap().to_owned();
    // Her own miner stamps a block an hour ahead, with a refund by timeout in it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (ep, conn, chain) = rogue_connect(&cfg, &node, "mallory-miner").await;
        let key = Keypair::dev("mallory-miner");
        let refund = EscrowCall::Refund(RefundArgs {
            lock_id,
            attestation: None,
        });
        let tx = Transaction::sign(&mallory, cfg.network(), 1, refund.to_kind());
        let algo = chain.head_algo();
        let (b, skipped) = chain.build_block(vec![(tx.id(algo), tx)], &key, now + HOUR);
        assert!(skipped.is_empty(), "the refund executes at that time");
        assert_eq!(b.header.timestamp_ms, now + HOUR);
        conn.send_msg(&PeerMsg::Block(mined(&chain, &key, b)))
            .await
            .unwrap();
        wait_for(30, "the far-future block refused", || {
            (node.status()["rejected_blocks"] == 1).then_some(())
        });
        ep.shutdown().await;
    });
    let s = node.status();
    let last = s["last_rejection"].as_str().unwrap_or_default();
    assert!(last.contains("past this node's clock"), "{last}");
    assert_eq!(
        s["head_hash"].as_str(),
        Some(head.as_str()),
        "head untouched"
    );
    assert_eq!(s["banned"], json!([]), "refused, not banned: {s}");
    // Nothing was refunded early.
    assert_eq!(escrow()["status"], "locked");
    assert_eq!(node.balance("dev:mallory"), 900);
}
