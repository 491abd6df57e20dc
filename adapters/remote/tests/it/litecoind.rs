//! The UTXO adapter over a real litecoind, served out of process by `adapter-host
//! --litecoind`, passes the conformance suite through `RemoteAdapter`. The regtest chain and
//! its fixture are the UTXO adapter's own (`adapters/utxo/tests/it/node.rs`).

use crate::host::Host;
use crate::ltc_node::LtcFixture;
use async_trait::async_trait;
use futures::FutureExt;
use isthmus_adapter_api::*;
use isthmus_adapter_remote::RemoteAdapter;
use isthmus_adapter_testkit::conformance::{self, Fixture};
use isthmus_core::Keypair;
use isthmus_lock_contracts::{Address, Amount, AssetId, Decision, HubRecord, LockId, Timestamp};
use serde_json::json;
use std::sync::Arc;

/// The litecoind fixture with its adapter replaced by the same adapter in another process.
struct Hosted {
    fx: LtcFixture,
    remote: Arc<RemoteAdapter>,
    _host: Host,
    _dir: tempfile::TempDir,
}

impl Hosted {
    async fn start() -> Hosted {
        let fx = LtcFixture::new().await;
        let cfg = fx.adapter.config().clone();
        let mut keys = Vec::new();
        for addr in [
            &fx.accounts[0],
            &fx.accounts[1],
            &cfg.fee_payer,
            &cfg.cosigner,
        ] {
            let Some(SecretKey::Secp256k1(secret)) = fx
                .wallet
                .key_for(SignatureScheme::Secp256k1Ecdsa, addr)
                .unwrap()
            else {
                panic!("fixture wallet has no key for {}", addr.0);
            };
            keys.push(json!({"address": addr.0, "secp256k1": hex::encode(*secret)}));
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("host.json");
        std::fs::write(&file, json!({"utxo": cfg, "keys": keys}).to_string()).unwrap();
        let host = Host::start_with(&[
            "--litecoind",
            file.to_str().unwrap(),
            "--dev-identity",
            "ltc-host",
        ])
        .await;
        let remote = Arc::new(
            RemoteAdapter::connect(host.config("ltc-remote"), Keypair::dev("test-hub"))
                .await
                .expect("attach to the litecoind host"),
        );
        Hosted {
            fx,
            remote,
            _host: host,
            _dir: dir,
        }
    }
}

#[async_trait]
impl Fixture for Hosted {
    fn adapter(&self) -> Arc<dyn Adapter> {
        self.remote.clone()
    }
    async fn mine(&self, n: u64) -> Result<(), AdapterError> {
        self.fx.mine(n).await?;
        self.remote.heads().await.map(drop)
    }
    async fn advance_time_to(&self, t: Timestamp) -> Result<(), AdapterError> {
        self.fx.advance_time_to(t).await?;
        self.remote.heads().await.map(drop)
    }
    fn accounts(&self) -> [Address; 2] {
        self.fx.accounts()
    }
    fn asset(&self) -> AssetId {
        self.fx.asset()
    }
    async fn signed_transfer(
        &self,
        from: usize,
        to: &Address,
        amount: Amount,
    ) -> Result<SignedTx, AdapterError> {
        self.fx.signed_transfer(from, to, amount).await
    }
    fn attest(&self, lock_id: LockId, decision: Decision, record: HubRecord) -> HubAttestation {
        self.fx.attest(lock_id, decision, record)
    }
    async fn reorg(&self, depth: u64) -> Result<bool, AdapterError> {
        // The fixture mines pending transactions before it reorgs; do it here so the remote
        // adapter sees the block that the reorg then takes away.
        let pool: Vec<String> = self.fx.node.call("getrawmempool", vec![]).await;
        if !pool.is_empty() {
            self.mine(1).await?;
        }
        let done = self.fx.reorg(depth).await?;
        self.remote.heads().await?;
        Ok(done)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_against_the_litecoind_adapter_out_of_process() {
    let factory = || async { Ok(Box::new(Hosted::start().await) as Box<dyn Fixture>) }.boxed();
    let report = conformance::run(&factory).await;
    assert_eq!(report.results.len(), conformance::CHECKS.len());
    report.assert_passed();
}
