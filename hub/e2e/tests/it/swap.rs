//! Flow 1: an HTLC swap of LTC (litecoind regtest) for ETH (anvil) created over the hub's
//! HTTP API. Alice locks LTC for Bob, Bob locks ETH for Alice, Alice claims the ETH with her
//! secret, and the hub's watcher claims the LTC for Bob with the revealed preimage.

use crate::hub::*;
use isthmus_adapter_api::conformance::Fixture;
use isthmus_adapter_api::{Adapter, ClaimRequest};
use isthmus_core::HashAlgo;
use isthmus_interop::{ContractEvent, DriverError};
use isthmus_lock_contracts::{Address, AssetId, HtlcEvent, LegId, LockId, Preimage};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const LTC_AMOUNT: u128 = 1_000_000; // 0.01 LTC, in litoshis
const ETH_AMOUNT: u128 = 100_000_000_000_000_000; // 0.1 ETH, in wei

struct Parties {
    alice_ltc: Address,
    bob_ltc: Address,
    bob_eth: Address,
    alice_eth: Address,
}

fn parties(hub: &Hub) -> Parties {
    let [alice_ltc, bob_ltc] = hub.ltc.accounts();
    let [bob_eth, alice_eth] = hub.eth.accounts();
    Parties {
        alice_ltc,
        bob_ltc,
        bob_eth,
        alice_eth,
    }
}

/// Alice's LTC, Bob's LTC, Bob's ETH, Alice's ETH.
async fn balances(hub: &Hub, p: &Parties) -> [u128; 4] {
    let ltc = AssetId("LTC".into());
    let eth = AssetId("native".into());
    let l = |a: &Address| {
        let a = a.clone();
        let ltc = ltc.clone();
        async move {
            hub.ltc
                .adapter
                .balance(&a, &ltc)
                .await
                .expect("ltc balance")
                .0
        }
    };
    let e = |a: &Address| {
        let a = a.clone();
        let eth = eth.clone();
        async move {
            hub.eth
                .adapter
                .balance(&a, &eth)
                .await
                .expect("eth balance")
                .0
        }
    };
    [
        l(&p.alice_ltc).await,
        l(&p.bob_ltc).await,
        e(&p.bob_eth).await,
        e(&p.alice_eth).await,
    ]
}

fn swap_body(p: &Parties, hashlock: &str, t1: u64, t2: u64, bob_locks: &str) -> Value {
    json!({
        "initiator": {"network": "litecoin", "asset": "LTC", "amount": LTC_AMOUNT.to_string(),
                      "from": p.alice_ltc.0, "to": p.bob_ltc.0},
        "participant": {"network": "anvil", "asset": "native", "amount": ETH_AMOUNT.to_string(),
                        "from": p.bob_eth.0, "to": p.alice_eth.0, "lock_by": bob_locks},
        "hashlock": hashlock,
        "initiator_timeout_secs": t1,
        "participant_timeout_secs": t2,
    })
}

fn leg_state(v: &Value, leg: usize) -> &str {
    v["legs"][leg]["state"].as_str().unwrap_or_default()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ltc_for_eth_swap_over_http_claims_both_legs_with_the_revealed_secret() {
    let hub = Hub::boot().await;
    let p = parties(&hub);
    let before = balances(&hub, &p).await;
    let secret = HashAlgo::Sha256
        .digest(b"alice's swap secret for the e2e run")
        .0;
    let hashlock = Preimage(secret).hashlock().to_hex();

    let start = Instant::now();
    let (code, created) = hub
        .post_swap(
            "swap-ltc-eth",
            &swap_body(&p, &hashlock, 600, 300, "hub_wallet"),
        )
        .await;
    assert_eq!(code, 202, "{created}");
    let api_id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["detail"]["hashlock"], hashlock.as_str());
    let instance = hub.instance(&api_id).contract.id();

    // A secret that is not 32 bytes is refused and changes nothing.
    for len in [31usize, 33] {
        let err = hub
            .driver
            .apply(
                instance,
                ContractEvent::Htlc(HtlcEvent::PreimageProvided {
                    preimage: vec![7; len],
                }),
                now_secs(),
            )
            .await
            .expect_err("a short or long preimage is refused");
        assert!(matches!(err, DriverError::Rejected(_)), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("preimage has {len} bytes")),
            "{err}"
        );
    }

    // Both locks become final on their chains.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut t_locked_a, mut t_locked_b) = (None, None);
    let locked = loop {
        let v = hub.get_swap(&api_id, 0).await;
        let at = Instant::now();
        if t_locked_a.is_none() && leg_state(&v, 0) == "locked" {
            t_locked_a = Some(at);
        }
        if t_locked_b.is_none() && leg_state(&v, 1) == "locked" {
            t_locked_b = Some(at);
        }
        if t_locked_a.is_some() && t_locked_b.is_some() {
            break v;
        }
        assert!(Instant::now() < deadline, "swap {api_id} never locked: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (t_locked_a, t_locked_b) = (
        t_locked_a.expect("leg a locked"),
        t_locked_b.expect("leg b locked"),
    );
    assert_eq!(locked["detail"]["secret_revealed"], false, "{locked}");

    // Alice claims the ETH herself, revealing the secret on anvil.
    let t_alice = Instant::now();
    hub.eth
        .adapter
        .claim(&ClaimRequest {
            lock_id: LockId::derive(instance, LegId::B),
            preimage: Preimage(secret),
        })
        .await
        .expect("alice's claim on anvil");
    let alice_time = t_alice.elapsed();

    // The watcher sees the reveal and claims the LTC for Bob. Each step the API shows is
    // timed against the block that made it final.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen: [Option<Instant>; 2] = [None, None];
    let done = loop {
        let v = hub.get_swap(&api_id, 0).await;
        let at = Instant::now();
        if seen[0].is_none() && v["detail"]["secret_revealed"] == true {
            seen[0] = Some(at);
        }
        if v["terminal"] == true {
            seen[1] = Some(at);
            break v;
        }
        assert!(Instant::now() < deadline, "swap {api_id} stuck at {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let total = start.elapsed();
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(leg_state(&done, 0), "claimed", "{done}");
    assert_eq!(leg_state(&done, 1), "claimed", "{done}");
    assert_eq!(done["detail"]["secret_revealed"], true, "{done}");
    assert!(!done.to_string().contains(&hex::encode(secret)), "{done}");

    let after = balances(&hub, &p).await;
    // The beneficiaries receive exactly the swapped amounts; the lockers pay at least them.
    assert_eq!(after[1], before[1] + LTC_AMOUNT, "bob's LTC");
    assert_eq!(after[3], before[3] + ETH_AMOUNT, "alice's ETH");
    assert!(
        after[0] <= before[0] - LTC_AMOUNT,
        "alice's LTC {before:?} -> {after:?}"
    );
    assert!(
        after[2] <= before[2] - ETH_AMOUNT,
        "bob's ETH {before:?} -> {after:?}"
    );

    // Hub overhead: from the block that made a step final to the API showing the hub's
    // reaction, for the steps the hub acts on (both locks final, the reveal seen on anvil,
    // the LTC claim final). The rest of the wall time is waiting for blocks.
    let t_a = hub
        .last_block_before(LTC, t_locked_a)
        .expect("an ltc block");
    let t_b = hub
        .last_block_before(ETH, t_locked_b)
        .expect("an eth block");
    let reveal = seen[0].expect("reveal seen");
    let end = seen[1].expect("completion seen");
    let steps = [
        t_locked_a - t_a,
        t_locked_b - t_b,
        reveal - hub.last_block_before(ETH, reveal).expect("an eth block"),
        end - hub.last_block_before(LTC, end).expect("an ltc block"),
    ];
    let overhead: Duration = steps.iter().sum();
    let waiting = total.saturating_sub(overhead + alice_time);
    println!(
        "flow 1 htlc ltc->eth over http: request->completion {:.2}s = confirmation waiting \
         {:.2}s + hub overhead {:.2}s (steps {:?}) + alice's claim call {:.2}s; {} ltc / {} \
         eth confirmations, blocks every {:.1}s / {:.1}s; overhead is {:.2} block intervals \
         of the slower chain; balances before {before:?} after {after:?}",
        secs(total),
        secs(waiting),
        secs(overhead),
        steps.map(secs),
        secs(alice_time),
        LTC_CONFIRMATIONS,
        ETH_CONFIRMATIONS,
        secs(LTC_BLOCK),
        secs(ETH_BLOCK),
        secs(overhead) / secs(LTC_BLOCK.max(ETH_BLOCK)),
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_refuses_bad_timelocks_and_bad_hashlocks_and_creates_nothing() {
    let hub = Hub::boot().await;
    let p = parties(&hub);
    let hashlock = Preimage([3; 32]).hashlock().to_hex();

    // T1 <= T2 + delta: refused with the values named, nothing created.
    let (code, v) = hub
        .post_swap(
            "swap-bad-t1",
            &swap_body(&p, &hashlock, 300 + DELTA, 300, "owner"),
        )
        .await;
    assert_eq!(code, 400, "{v}");
    let msg = v["message"].as_str().expect("message");
    assert!(msg.contains("t1=") && msg.contains("t2="), "{v}");
    // A hashlock that is not 32 bytes of hex is refused as well.
    let (code, v) = hub
        .post_swap("swap-bad-hash", &swap_body(&p, "abcd", 600, 300, "owner"))
        .await;
    assert_eq!(code, 400, "{v}");
    assert!(hub.driver.journal().all().expect("journal").is_empty());
    hub.shutdown().await;
}
