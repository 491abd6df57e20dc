//! A real anvil node for tests, started on a free loopback port and killed by pid on drop,
//! and the conformance [`Fixture`] over it (feature `conformance`). Other crates' end-to-end
//! tests use [`AnvilFixture`] to get a funded, deployed EVM network in one call.

use crate::contracts::{Artifacts, Erc20};
use crate::{EvmAdapter, EvmConfig};
use alloy::consensus::TxEnvelope;
use alloy::eips::eip2718::Encodable2718;
use alloy::eips::BlockNumberOrTag;
use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address as EvmAddress, Bytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolValue};
use async_trait::async_trait;
use isthmus_adapter_api::{
    Adapter, AdapterError, EvmEscrowDomain, HubAttestation, MemoryWallet, SecretKey, SignedTx,
};
use isthmus_adapter_testkit::conformance::Fixture;
use isthmus_core::NetworkId;
use isthmus_lock_contracts::{Address, Amount, AssetId, Decision, HubRecord, LockId, Timestamp};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

pub use isthmus_adapter_testkit::peers::peers_dir;
use isthmus_adapter_testkit::peers::{free_port, tool};

/// One anvil process. Dropping it kills the process (by its pid) and reaps it.
pub struct Anvil {
    child: Option<Child>,
    pub port: u16,
    pub chain_id: u64,
    args: Vec<String>,
}

impl Anvil {
    /// Start anvil on a free loopback port with `extra` arguments (e.g. `--block-time 1`).
    pub fn start(chain_id: u64, extra: &[&str]) -> Result<Anvil, String> {
        let mut last = String::new();
        for _ in 0..3 {
            let mut a = Anvil {
                child: None,
                port: free_port()?,
                chain_id,
                args: extra.iter().map(|s| (*s).to_owned()).collect(),
            };
            match a.spawn() {
                Ok(()) => return Ok(a),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new(tool("bin/anvil", "anvil")?)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--chain-id", &self.chain_id.to_string()])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start anvil: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.child = None;
                    return Err(format!("anvil exited at start ({status})"));
                }
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("anvil did not listen on {} in 30 s", self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stop the process: SIGTERM by pid (anvil dumps `--state` on the way out), then reap it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port with the same arguments.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.spawn()
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How to set up an [`AnvilFixture`].
#[derive(Debug, Clone)]
pub struct FixtureOptions {
    pub network: NetworkId,
    pub chain_id: u64,
    pub confirmations: u32,
    /// Extra anvil arguments; without `--block-time` anvil mines each transaction at once.
    pub anvil_args: Vec<String>,
    /// Attester keys to create, and how many the escrow requires.
    pub attesters: usize,
    pub threshold: u32,
    pub poll_interval_ms: u64,
}

impl Default for FixtureOptions {
    fn default() -> Self {
        FixtureOptions {
            network: NetworkId(31337),
            chain_id: 31337,
            confirmations: 2,
            anvil_args: Vec::new(),
            attesters: 3,
            threshold: 2,
            poll_interval_ms: 100,
        }
    }
}

/// anvil, an [`EvmAdapter`] over it with its contracts deployed, two funded accounts holding
/// the test token, and the hub attester keys its escrow trusts.
pub struct AnvilFixture {
    pub adapter: Arc<EvmAdapter>,
    pub anvil: Anvil,
    pub wallet: MemoryWallet,
    pub config: EvmConfig,
    pub relayer: Address,
    pub token: EvmAddress,
    pub attesters: Vec<k256::ecdsa::SigningKey>,
    accounts: [Address; 2],
    keys: [PrivateKeySigner; 2],
    next_nonce: Mutex<[Option<u64>; 2]>,
}

/// 10_000 ether.
const FUNDING: u128 = 10_000 * 1_000_000_000_000_000_000;
/// Test tokens minted to each account.
pub const TOKEN_FUNDING: u128 = 1_000_000_000_000_000_000_000_000;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn secret(s: &PrivateKeySigner) -> SecretKey {
    SecretKey::Secp256k1(Zeroizing::new(s.to_bytes().0))
}

impl AnvilFixture {
    pub async fn start(opts: FixtureOptions) -> Result<AnvilFixture, String> {
        let args: Vec<&str> = opts.anvil_args.iter().map(String::as_str).collect();
        let anvil = Anvil::start(opts.chain_id, &args)?;
        let wallet = MemoryWallet::new();
        let relayer_key = PrivateKeySigner::random();
        let keys = [PrivateKeySigner::random(), PrivateKeySigner::random()];
        let relayer = crate::node::address_text(relayer_key.address());
        let accounts = [
            crate::node::address_text(keys[0].address()),
            crate::node::address_text(keys[1].address()),
        ];
        wallet.insert(relayer.clone(), secret(&relayer_key));
        for (a, k) in accounts.iter().zip(&keys) {
            wallet.insert(a.clone(), secret(k));
        }
        let attesters: Vec<k256::ecdsa::SigningKey> = (0..opts.attesters)
            .map(|_| k256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng))
            .collect();
        let attester_addrs = attesters
            .iter()
            .map(|k| {
                EvmAddress::from(EvmEscrowDomain::address_of(k.verifying_key())).to_checksum(None)
            })
            .collect();
        let mut config = EvmConfig::new(
            opts.network,
            "anvil",
            &anvil.url(),
            opts.chain_id,
            attester_addrs,
            opts.threshold,
            &relayer.0,
        );
        config.confirmations = opts.confirmations;
        config.poll_interval_ms = opts.poll_interval_ms;
        config.rpc_timeout_ms = 3_000;
        config.max_backoff_ms = 1_000;
        for who in [&relayer, &accounts[0], &accounts[1]] {
            raw_at(
                &anvil.url(),
                "anvil_setBalance",
                serde_json::json!([who.0, format!("{:#x}", U256::from(FUNDING))]),
            )
            .await?;
        }
        let adapter = EvmAdapter::open(config.clone(), Arc::new(wallet.clone()))
            .await
            .map_err(err)?;
        let mut f = AnvilFixture {
            adapter: Arc::new(adapter),
            anvil,
            wallet,
            config,
            relayer,
            token: EvmAddress::ZERO,
            attesters,
            accounts,
            keys,
            next_nonce: Mutex::new([None, None]),
        };
        // The test token, minted to both accounts.
        let artifacts = Artifacts::load()?;
        let code = [
            artifacts.bytecode("TestToken")?.to_vec(),
            ("Isthmus Test".to_owned(), "ITST".to_owned(), U256::ZERO).abi_encode_params(),
        ]
        .concat();
        let tx = f
            .adapter
            .transact(&f.relayer, None, code.into(), U256::ZERO)
            .await
            .map_err(err)?;
        let r = f
            .adapter
            .wait_mined(&tx, Duration::from_secs(60))
            .await
            .map_err(err)?;
        f.token = r
            .contract_address
            .ok_or("token deployment has no address")?;
        for a in &f.keys {
            let mint = Erc20::mintCall {
                to: a.address(),
                amount: U256::from(TOKEN_FUNDING),
            };
            let tx = f
                .adapter
                .transact(
                    &f.relayer,
                    Some(f.token),
                    mint.abi_encode().into(),
                    U256::ZERO,
                )
                .await
                .map_err(err)?;
            f.adapter
                .wait_mined(&tx, Duration::from_secs(60))
                .await
                .map_err(err)?;
        }
        f.adapter.sync().await.map_err(err)?;
        Ok(f)
    }

    /// A JSON-RPC call to anvil (its `anvil_*` and `evm_*` methods).
    pub async fn raw(
        &self,
        method: &'static str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        raw_at(&self.anvil.url(), method, params).await
    }

    pub fn token_asset(&self) -> AssetId {
        AssetId(format!("erc20:{}", self.token.to_checksum(None)))
    }

    /// The signing key of `accounts()[i]` (to act behind the adapter's back).
    pub fn account_key(&self, i: usize) -> &PrivateKeySigner {
        &self.keys[i]
    }

    /// Sign `req` from account `from` with an explicit nonce, outside the adapter.
    pub async fn sign_as(
        &self,
        from: usize,
        req: TransactionRequest,
        nonce: u64,
    ) -> Result<TxEnvelope, String> {
        let p = self.adapter.provider();
        let base = p
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await
            .map_err(err)?
            .and_then(|b| b.header.base_fee_per_gas)
            .unwrap_or(1_000_000_000);
        let req = req
            .with_from(self.keys[from].address())
            .with_chain_id(self.config.chain_id)
            .with_nonce(nonce)
            .with_gas_limit(200_000)
            .with_max_fee_per_gas(u128::from(base) * 2 + 1_000_000_000)
            .with_max_priority_fee_per_gas(1_000_000_000);
        req.build(&EthereumWallet::from(self.keys[from].clone()))
            .await
            .map_err(err)
    }

    /// The account's next nonce: the chain's pending count, or past what this fixture signed.
    pub async fn next_nonce(&self, from: usize) -> Result<u64, String> {
        let chain = self
            .adapter
            .provider()
            .get_transaction_count(self.keys[from].address())
            .pending()
            .await
            .map_err(err)?;
        let mut n = self.next_nonce.lock().map_err(err)?;
        let nonce = n[from].map_or(chain, |local| local.max(chain));
        n[from] = Some(nonce + 1);
        Ok(nonce)
    }
}

/// A JSON-RPC call to the node at `url`.
pub async fn raw_at(
    url: &str,
    method: &'static str,
    params: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let url = url.parse::<url::Url>().map_err(err)?;
    let p = alloy::providers::RootProvider::<alloy::network::Ethereum>::new(
        alloy::rpc::client::ClientBuilder::default().hyper_http(url),
    );
    p.raw_request::<_, serde_json::Value>(method.into(), params)
        .await
        .map_err(|e| format!("{method}: {e}"))
}

#[async_trait]
impl Fixture for AnvilFixture {
    fn adapter(&self) -> Arc<dyn Adapter> {
        self.adapter.clone()
    }

    async fn mine(&self, n: u64) -> Result<(), AdapterError> {
        self.raw("anvil_mine", serde_json::json!([n]))
            .await
            .map_err(|reason| AdapterError::Unavailable {
                network: self.config.network,
                reason,
            })?;
        self.adapter.sync().await
    }

    async fn advance_time_to(&self, t: Timestamp) -> Result<(), AdapterError> {
        let now = self.adapter.heads().await?.time;
        if t > now {
            let fail = |reason| AdapterError::Unavailable {
                network: self.config.network,
                reason,
            };
            self.raw("evm_setNextBlockTimestamp", serde_json::json!([t]))
                .await
                .map_err(fail)?;
            self.raw("anvil_mine", serde_json::json!([1]))
                .await
                .map_err(fail)?;
        }
        self.adapter.sync().await
    }

    fn accounts(&self) -> [Address; 2] {
        self.accounts.clone()
    }

    fn asset(&self) -> AssetId {
        self.token_asset()
    }

    async fn signed_transfer(
        &self,
        from: usize,
        to: &Address,
        amount: Amount,
    ) -> Result<SignedTx, AdapterError> {
        let bad = |reason: String| AdapterError::Unavailable {
            network: self.config.network,
            reason,
        };
        let to = crate::node::parse_address(self.config.network, to)?;
        let call = Erc20::transferCall {
            to,
            amount: U256::from(amount.0),
        };
        let req = TransactionRequest::default()
            .with_to(self.token)
            .with_input(Bytes::from(call.abi_encode()));
        let nonce = self.next_nonce(from).await.map_err(bad)?;
        let env = self.sign_as(from, req, nonce).await.map_err(bad)?;
        Ok(SignedTx(env.encoded_2718()))
    }

    fn attest(&self, lock_id: LockId, decision: Decision, record: HubRecord) -> HubAttestation {
        HubAttestation::sign_secp256k1_evm(
            self.config.network,
            lock_id,
            decision,
            record,
            &self.adapter.escrow_domain(),
            &self.attesters[..self.config.threshold as usize],
        )
    }

    async fn reorg(&self, depth: u64) -> Result<bool, AdapterError> {
        self.raw("anvil_reorg", serde_json::json!([depth, []]))
            .await
            .map_err(|reason| AdapterError::Unavailable {
                network: self.config.network,
                reason,
            })?;
        self.adapter.sync().await?;
        Ok(true)
    }
}
