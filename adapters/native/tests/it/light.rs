//! The light client refuses forged and tampered evidence beyond what the conformance suite
//! tries: short or broken PoW header chains, headers below the work floor, certificates
//! without a quorum, misplaced Merkle paths, evidence of another platform family.

use crate::net::{pos, pow, TestNet};
use isthmus_adapter_api::{Adapter, AdapterError, BlockRef, Evidence, SignedTx};
use isthmus_adapter_native::light::{api_proof, encode_header};
use isthmus_adapter_native::NativeAdapter;
use isthmus_chain::block::{meets_target, Block, BlockHeader};
use isthmus_chain::tx::Transaction;
use isthmus_core::Keypair;
use isthmus_lock_contracts::TxId;

/// A final transfer and its evidence.
async fn final_transfer(net: &TestNet, adapter: &NativeAdapter) -> (TxId, Evidence) {
    net.until_height(1).await.unwrap();
    let alice = Keypair::dev("alice");
    let tx = Transaction::transfer(&alice, net.cfg.network(), 0, Keypair::dev("bob").id(), 5);
    let id = adapter
        .submit(SignedTx(rmp_serde::to_vec(&tx).unwrap()))
        .await
        .unwrap();
    for _ in 0..20 {
        if adapter.tx_status(&id).await.unwrap().is_final() {
            break;
        }
        net.mine(1).await.unwrap();
    }
    let ev = adapter.evidence(&id).await.unwrap();
    adapter.verify_evidence(&id, &ev).await.unwrap();
    (id, ev)
}

fn refused(r: Result<isthmus_adapter_api::Verified, AdapterError>, what: &str) {
    match r {
        Err(AdapterError::InvalidEvidence { reason }) => eprintln!("{what}: refused ({reason})"),
        other => panic!("{what}: expected invalid evidence, got {other:?}"),
    }
}

fn decode(b: &[u8]) -> BlockHeader {
    rmp_serde::from_slice(b).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pow_evidence_needs_linked_headers_with_work_and_depth() {
    let net = TestNet::start(pow("alpha", 201, &["alice"])).await;
    let adapter = net.adapter(&[], 3);
    let (id, ev) = final_transfer(&net, &adapter).await;
    let Evidence::PowConfirmations {
        block,
        headers,
        tx_proof,
    } = ev.clone()
    else {
        panic!("pow evidence expected")
    };
    assert_eq!(headers.len(), 4, "the including block and 3 confirmations");
    let with = |hs: Vec<serde_bytes::ByteBuf>| Evidence::PowConfirmations {
        block,
        headers: hs,
        tx_proof: tx_proof.clone(),
    };
    // Too shallow.
    refused(
        adapter
            .verify_evidence(&id, &with(headers[..3].to_vec()))
            .await,
        "two confirmations",
    );
    // A confirming header that does not link to its parent.
    let mut broken = headers.clone();
    let mut h2 = decode(&broken[2]);
    h2.prev_hash.0[0] ^= 1;
    broken[2] = serde_bytes::ByteBuf::from(encode_header(&h2));
    refused(
        adapter.verify_evidence(&id, &with(broken)).await,
        "unlinked header",
    );
    // Confirmations forged cheaply: difficulty 1, under the work floor, each truly "mined".
    let mut forged = headers[..1].to_vec();
    let mut prev = decode(&headers[0]);
    for _ in 0..3 {
        let mut h = prev.clone();
        h.number += 1;
        h.prev_hash = prev.hash(isthmus_core::HashAlgo::Sha256);
        h.difficulty = 1;
        h.tx_count = 0;
        while !meets_target(&h.hash(isthmus_core::HashAlgo::Sha256), h.difficulty) {
            h.nonce += 1;
        }
        forged.push(serde_bytes::ByteBuf::from(encode_header(&h)));
        prev = h;
    }
    refused(
        adapter.verify_evidence(&id, &with(forged)).await,
        "low-work headers",
    );
    // A header that does not meet its own target.
    let mut unworked = headers.clone();
    let mut h3 = decode(&unworked[3]);
    loop {
        h3.nonce += 1;
        if !meets_target(&h3.hash(isthmus_core::HashAlgo::Sha256), h3.difficulty) {
            break;
        }
    }
    unworked[3] = serde_bytes::ByteBuf::from(encode_header(&h3));
    refused(
        adapter.verify_evidence(&id, &with(unworked)).await,
        "unworked header",
    );
    // A certificate for a PoW network, or no headers at all.
    let cert = Evidence::CommitCertificate {
        block,
        header: headers[0].to_vec(),
        round: 0,
        votes: vec![],
        tx_proof: tx_proof.clone(),
    };
    refused(
        adapter.verify_evidence(&id, &cert).await,
        "certificate on pow",
    );
    refused(
        adapter.verify_evidence(&id, &with(vec![])).await,
        "no headers",
    );
}

/// Mine `n` headers on `parent` (the first carrying `txs`), each at `difficulty`, signed by
/// `key`: linked and truly worked, as a relayer can forge them cheaply off the real chain.
fn forge(
    net: &TestNet,
    parent: &BlockHeader,
    txs: Vec<Transaction>,
    n: usize,
    difficulty: u64,
) -> Vec<Block> {
    let algo = isthmus_core::HashAlgo::Sha256;
    let key = Keypair::dev("mallory");
    let mut out: Vec<Block> = Vec::new();
    let mut txs = Some(txs);
    for _ in 0..n {
        let p = out.last().map_or(parent, |b| &b.header);
        let template = BlockHeader {
            number: p.number + 1,
            prev_hash: p.hash(algo),
            timestamp_ms: p.timestamp_ms + 1,
            difficulty,
            nonce: 0,
            ..p.clone()
        };
        let mut b = Block::seal(
            template,
            txs.take().unwrap_or_default(),
            algo,
            net.cfg.network(),
            &key,
        );
        while !meets_target(&b.hash(algo), b.header.difficulty) {
            b.header.nonce += 1;
        }
        out.push(b);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pow_light_client_follows_the_heaviest_chain_from_its_anchor_and_refuses_forged_headers() {
    let net = TestNet::start(pow("gamma", 203, &["alice", "bob"])).await;
    let adapter = net.adapter(&[], 3);
    let (id, ev) = final_transfer(&net, &adapter).await;
    // The honest chain goes on a few blocks past where the forger branches off.
    net.mine(6).await.unwrap();
    let head = net.node.status().await.unwrap().height;
    let fork_parent = net.node.block_at(head - 5).await.unwrap().unwrap().header;
    let bob = Keypair::dev("bob");
    let algo = isthmus_core::HashAlgo::Sha256;
    // A transfer that never happened on the real chain: bob pays mallory most of his funds.
    let fake = Transaction::transfer(
        &bob,
        net.cfg.network(),
        0,
        Keypair::dev("mallory").id(),
        9_000_000,
    );
    let fake_id = fake.id(algo);
    let tx = TxId(fake_id.to_hex());
    let evidence_of = |blocks: &[Block]| {
        let first = &blocks[0];
        Evidence::PowConfirmations {
            block: BlockRef {
                height: first.header.number,
                hash: first.hash(algo),
            },
            headers: blocks
                .iter()
                .map(|b| serde_bytes::ByteBuf::from(encode_header(&b.header)))
                .collect(),
            tx_proof: api_proof(
                &first.tx_proof(algo, 0).unwrap(),
                fake_id,
                first.header.tx_root,
            ),
        }
    };
    // Cheap: above the floor (256 / 16), far below the 256 the chain requires.
    let cheap = forge(&net, &fork_parent, vec![fake.clone()], 4, 16);
    refused(
        adapter.verify_evidence(&tx, &evidence_of(&cheap)).await,
        "headers at the floor, under the required difficulty",
    );
    // Full difficulty, linked to a block the light client knows, three confirmations
    // shown: valid headers, but a side branch with less work than the real chain.
    let side = forge(&net, &fork_parent, vec![fake], 4, 256);
    let Err(AdapterError::InvalidEvidence { reason }) =
        adapter.verify_evidence(&tx, &evidence_of(&side)).await
    else {
        panic!("a side branch with less work was accepted");
    };
    assert!(reason.contains("most work"), "{reason}");
    // The real chain's evidence still verifies, and bob kept his funds.
    adapter.verify_evidence(&id, &ev).await.unwrap();
    assert_eq!(
        net.node.account(bob.id()).await.unwrap().balance,
        crate::net::FUNDS + 5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pos_evidence_needs_a_validator_quorum_and_the_right_merkle_path() {
    let net = TestNet::start(pos("beta", 202, &["alice"])).await;
    let adapter = net.adapter(&[], 3);
    let (id, ev) = final_transfer(&net, &adapter).await;
    let Evidence::CommitCertificate {
        block,
        header,
        round,
        votes,
        tx_proof,
    } = ev.clone()
    else {
        panic!("certificate evidence expected")
    };
    let with = |votes, round, tx_proof| Evidence::CommitCertificate {
        block,
        header: header.clone(),
        round,
        votes,
        tx_proof,
    };
    refused(
        adapter
            .verify_evidence(&id, &with(vec![], round, tx_proof.clone()))
            .await,
        "no votes",
    );
    let mut bad_sig = votes.clone();
    bad_sig[0].signature[5] ^= 1;
    refused(
        adapter
            .verify_evidence(&id, &with(bad_sig, round, tx_proof.clone()))
            .await,
        "bad vote signature",
    );
    refused(
        adapter
            .verify_evidence(&id, &with(votes.clone(), round + 1, tx_proof.clone()))
            .await,
        "votes for another round",
    );
    let mut doubled = votes.clone();
    doubled.push(votes[0].clone());
    refused(
        adapter
            .verify_evidence(&id, &with(doubled, round, tx_proof.clone()))
            .await,
        "a vote counted twice",
    );
    let mut moved = tx_proof.clone();
    moved.leaf_index += 1;
    refused(
        adapter
            .verify_evidence(&id, &with(votes.clone(), round, moved))
            .await,
        "moved merkle path",
    );
    let mut other_header = decode(&header);
    other_header.timestamp_ms += 1;
    let relabelled = Evidence::CommitCertificate {
        block: BlockRef {
            height: block.height,
            hash: other_header.hash(isthmus_core::HashAlgo::Sha256),
        },
        header: encode_header(&other_header),
        round,
        votes: votes.clone(),
        tx_proof: tx_proof.clone(),
    };
    refused(
        adapter.verify_evidence(&id, &relabelled).await,
        "altered header",
    );
    let opaque = Evidence::Opaque {
        scheme: "native".into(),
        block,
        bytes: vec![1],
    };
    refused(
        adapter.verify_evidence(&id, &opaque).await,
        "opaque evidence",
    );
    let pow_style = Evidence::PowConfirmations {
        block,
        headers: vec![serde_bytes::ByteBuf::from(header.clone())],
        tx_proof,
    };
    refused(
        adapter.verify_evidence(&id, &pow_style).await,
        "pow evidence on pos",
    );
}
