//! Helpers shared by the anvil tests.

use isthmus_adapter_api::*;
use isthmus_adapter_evm::anvil::{AnvilFixture, FixtureOptions};
use isthmus_adapter_testkit::conformance::Fixture;
use isthmus_core::HashAlgo;
use isthmus_lock_contracts::{Amount, AssetId, HubRecord, LegSpec, LockId, Locker, TxId};
use std::time::Duration;

pub async fn fixture(opts: FixtureOptions) -> AnvilFixture {
    AnvilFixture::start(opts).await.unwrap()
}

pub fn record() -> HubRecord {
    HubRecord {
        height: 1,
        tx: TxId("hub-record".into()),
    }
}

pub fn lock_id(tag: &str) -> LockId {
    LockId(HashAlgo::Sha256.digest_parts(&[b"evm-it/", tag.as_bytes()]))
}

/// A lock of `amount` from account 0 to account 1, timing out `after` seconds from chain time.
pub async fn lock_req(
    f: &AnvilFixture,
    tag: &str,
    asset: AssetId,
    amount: u128,
    terms: LockTerms,
    after: u64,
) -> LockRequest {
    let [from, to] = f.accounts();
    let now = f.adapter().heads().await.unwrap().time;
    LockRequest {
        lock_id: lock_id(tag),
        leg: LegSpec {
            network: f.config.network,
            asset,
            amount: Amount(amount),
            from,
            to,
            timeout: now + after,
            locker: Locker::HubWallet,
        },
        terms,
    }
}

/// Wei the sender of `tx` paid for gas.
pub async fn gas_paid(f: &AnvilFixture, tx: &TxId) -> u128 {
    let r = f
        .adapter
        .wait_mined(tx, Duration::from_secs(30))
        .await
        .unwrap();
    u128::from(r.gas_used) * r.effective_gas_price
}

/// Mine until `tx` is final in the adapter's view (bounded by the declared depth plus slack).
pub async fn final_after_mining(f: &AnvilFixture, tx: &TxId) {
    let a = f.adapter();
    for _ in 0..=f.config.confirmations + 3 {
        match a.tx_status(tx).await.unwrap() {
            TxStatus::Final { .. } => return,
            TxStatus::Failed { reason } => panic!("{tx} failed: {reason}"),
            _ => f.mine(1).await.unwrap(),
        }
    }
    panic!("{tx} not final after mining");
}

/// Poll `tx` until final, without mining (for anvil started with `--block-time`).
pub async fn until_final(f: &AnvilFixture, tx: &TxId, within: Duration) -> BlockRef {
    let deadline = std::time::Instant::now() + within;
    loop {
        match f.adapter().tx_status(tx).await {
            Ok(TxStatus::Final { block }) => return block,
            Ok(TxStatus::Failed { reason }) => panic!("{tx} failed: {reason}"),
            _ => {}
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{tx} not final within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
