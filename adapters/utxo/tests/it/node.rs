//! A real litecoind in regtest per fixture: free loopback ports, a temp datadir, killed by pid
//! when dropped (also on panic); plus the conformance fixture over it.

use async_trait::async_trait;
use bitcoin::secp256k1::{rand, Secp256k1, SecretKey as Secret};
use bitcoin::{absolute, Amount as Sats, OutPoint, TxOut, Txid};
use isthmus_adapter_api::*;
use isthmus_adapter_testkit::conformance::Fixture;
use isthmus_adapter_utxo::build::{self, Coin, Input, Key, Unlock};
use isthmus_adapter_utxo::rpc::Rpc;
use isthmus_adapter_utxo::script::AddressCodec;
use isthmus_adapter_utxo::{UtxoAdapter, UtxoConfig};
use isthmus_core::{Keypair, NetworkId};
use isthmus_lock_contracts::{Address, Amount, AssetId, Decision, HubRecord, LockId, Timestamp};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

pub const NETWORK: NetworkId = NetworkId(0x17c);
/// BIP65 (CLTV) is enforced by consensus from this height on Litecoin regtest.
const CLTV_HEIGHT: u64 = 1_351;

fn free_port() -> u16 {
    isthmus_adapter_testkit::peers::free_port().expect("a free loopback port")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

static TEMPLATE: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();

/// A stopped regtest chain past the CLTV height with a wallet of mature coins, built once and
/// kept under the test target dir; every node starts on a copy.
///
/// The template is mined on a mock clock a day in the past. Mined at the real clock, its
/// 1,400 blocks would run the chain's median time past minutes ahead of the wall clock
/// (each block must be later than the median of the 11 before it, so a burst of blocks
/// within one second advances it by a second every 6 blocks): for the first minutes after a
/// fresh build (a clean CI run) every node would refuse a lock whose timelock is less than
/// that far ahead, and would refund CLTV outputs early by the wall clock.
async fn build_template() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    // v2: mined on a past clock; a v1 template may carry block times in the future.
    let done = root.join("ltc-regtest-template-v2");
    if done.join("regtest").is_dir() {
        return done;
    }
    let building = tempfile::tempdir_in(&root).expect("template dir");
    let mut node = Node::spawn(building, &[]).await;
    let _: Value = node.call("createwallet", vec![json!("w")]).await;
    node.use_wallet();
    let miner: String = node
        .wallet
        .call("getnewaddress", vec![json!(""), json!("bech32")])
        .await
        .expect("getnewaddress");
    let past = unix_now() - 86_400;
    let _: Value = node.call("setmocktime", vec![json!(past)]).await;
    // In steps: one long call could outlast the RPC client's timeout on a busy machine.
    for _ in 0..(CLTV_HEIGHT + 50).div_ceil(100) {
        node.generate(100, &miner).await;
    }
    let tip_time = node.median_time().await;
    assert!(
        tip_time < past + 3_600,
        "template median time {tip_time} ran far past its mock clock {past}"
    );
    let _: Value = node.call("stop", vec![]).await;
    let status = node.child.0.wait().expect("litecoind stops");
    assert!(status.success(), "template node stopped with {status}");
    let built = node._dir.path().to_owned();
    // Another test process may have won the race; either copy is as good.
    if std::fs::rename(&built, &done).is_err() {
        assert!(
            done.join("regtest").is_dir(),
            "template at {}",
            done.display()
        );
    }
    done
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == ".lock" || name == "debug.log" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn launch(dir: &Path, rpc_port: u16, extra: &[String]) -> Child {
    Command::new("litecoind")
        .args([
            "-regtest",
            &format!("-datadir={}", dir.display()),
            "-rpcuser=isthmus",
            "-rpcpassword=regtest",
            &format!("-rpcport={rpc_port}"),
            &format!("-port={}", free_port()),
            "-listen=0",
            "-rpcbind=127.0.0.1",
            "-rpcallowip=127.0.0.1",
            "-server=1",
            "-dnsseed=0",
            "-discover=0",
            "-fallbackfee=0.0001",
            // Conformance transfers move a few units; dust is a relay policy, not consensus.
            "-dustrelayfee=0",
            // MWEB activation on regtest needs a peg-in in its first block; these tests do
            // not use MWEB, so keep it from activating.
            "-vbparams=mweb:4102444800:4102444801",
            // The template's blocks are old; do not treat the node as syncing.
            "-maxtipage=2000000000",
            "-printtoconsole=0",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("litecoind starts (scripts/install-peers.sh --only litecoind)")
}

use isthmus_adapter_testkit::peers::Reaped as Proc;

async fn wait_ready(child: &mut Proc, rpc: &Rpc) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if rpc.call::<u64>("getblockcount", vec![]).await.is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            return Err(format!("litecoind exited early: {status}"));
        }
        if Instant::now() >= deadline {
            return Err("litecoind rpc did not come up in 60 s".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One litecoind process.
pub struct Node {
    child: Proc,
    _dir: tempfile::TempDir,
    rpc_port: u16,
    extra: Vec<String>,
    pub url: String,
    pub rpc: Rpc,
    pub wallet: Rpc,
}

impl Node {
    /// A node on a copy of the shared template chain (CLTV active, coins mature).
    pub async fn start() -> Node {
        let template = TEMPLATE.get_or_init(build_template).await;
        let dir = tempfile::tempdir().expect("temp datadir");
        copy_dir(template, dir.path()).expect("copy the template chain");
        let mut node = Node::spawn(dir, &["-wallet=w"]).await;
        node.use_wallet();
        node
    }

    async fn spawn(dir: tempfile::TempDir, extra: &[&str]) -> Node {
        let args: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
        let mut last = String::new();
        // A free port can be taken by another test between probing and binding: then the
        // node exits at once, and a fresh port is tried.
        for _ in 0..3 {
            let rpc_port = free_port();
            let mut child = Proc(launch(dir.path(), rpc_port, &args));
            let url = format!("http://127.0.0.1:{rpc_port}");
            let rpc = Rpc::new(&url, "isthmus", "regtest", NETWORK).expect("rpc client");
            match wait_ready(&mut child, &rpc).await {
                Ok(()) => {
                    return Node {
                        child,
                        _dir: dir,
                        rpc_port,
                        extra: args,
                        wallet: rpc.clone(),
                        url,
                        rpc,
                    }
                }
                Err(e) => last = e,
            }
        }
        panic!("litecoind did not start: {last}");
    }

    /// SIGKILL the node (its mempool is lost, as in a crash).
    pub fn kill(&mut self) {
        self.child.stop();
    }

    /// Start the node again on the same datadir and RPC port.
    pub async fn restart(&mut self) {
        self.kill();
        self.child = Proc(launch(self._dir.path(), self.rpc_port, &self.extra));
        if let Err(e) = wait_ready(&mut self.child, &self.rpc).await {
            panic!("restart on port {}: {e}", self.rpc_port);
        }
    }

    fn use_wallet(&mut self) {
        self.wallet = Rpc::new(
            &format!("{}/wallet/w", self.url),
            "isthmus",
            "regtest",
            NETWORK,
        )
        .expect("wallet rpc");
    }

    pub async fn call<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        method: &'static str,
        args: Vec<Value>,
    ) -> T {
        match self.rpc.call(method, args.clone()).await {
            Ok(v) => v,
            Err(e) => panic!("{method} {args:?}: {e}"),
        }
    }

    pub async fn generate(&self, n: u64, to: &str) -> Vec<String> {
        self.call("generatetoaddress", vec![json!(n), json!(to)])
            .await
    }

    /// The median time past of the tip: the clock CLTV timelocks are checked against.
    pub async fn median_time(&self) -> u64 {
        let info: Value = self.call("getblockchaininfo", vec![]).await;
        info["mediantime"].as_u64().expect("mediantime")
    }
}

/// Pay `n` coins of `value` to each address in one transaction from the node wallet's
/// mature coinbase (one wallet send per coin is far slower on a 1400-block wallet).
async fn fund(node: &Node, codec: &AddressCodec, change: &str, outs: &[(&Address, u32, u64)]) {
    const FEE: u64 = 100_000;
    let unspent: Vec<Value> = node
        .wallet
        .call(
            "listunspent",
            vec![
                json!(100),
                json!(9_999_999),
                json!([]),
                json!(true),
                json!({ "minimumAmount": 20, "maximumCount": 1 }),
            ],
        )
        .await
        .expect("listunspent");
    let need: u64 = outs.iter().map(|(_, n, v)| u64::from(*n) * v).sum::<u64>() + FEE;
    let coin = unspent
        .iter()
        .find(|u| (u["amount"].as_f64().unwrap_or(0.0) * 1e8).round() as u64 >= need)
        .expect("a coinbase coin large enough");
    let have = (coin["amount"].as_f64().expect("amount") * 1e8).round() as u64;
    let mut output = Vec::new();
    for (addr, n, value) in outs {
        for _ in 0..*n {
            output.push(TxOut {
                value: Sats::from_sat(*value),
                script_pubkey: codec.script_of(&addr.0).expect("address"),
            });
        }
    }
    output.push(TxOut {
        value: Sats::from_sat(have - need),
        script_pubkey: codec.script_of(change).expect("change address"),
    });
    let tx = bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn {
            previous_output: OutPoint {
                txid: Txid::from_str(coin["txid"].as_str().expect("txid")).expect("txid"),
                vout: coin["vout"].as_u64().expect("vout") as u32,
            },
            ..Default::default()
        }],
        output,
    };
    let hex_tx = hex::encode(bitcoin::consensus::encode::serialize(&tx));
    let signed: Value = node
        .wallet
        .call("signrawtransactionwithwallet", vec![json!(hex_tx)])
        .await
        .expect("sign funding");
    assert_eq!(signed["complete"], json!(true), "{signed}");
    let _: String = node
        .call("sendrawtransaction", vec![signed["hex"].clone()])
        .await;
}

/// A funded regtest chain with the adapter under test.
pub struct LtcFixture {
    pub node: Node,
    pub adapter: Arc<UtxoAdapter>,
    pub miner: String,
    /// A second mining address, so a replacement branch never repeats a block.
    pub other_miner: String,
    pub accounts: [Address; 2],
    pub keys: [Key; 2],
    pub attester: Keypair,
    pub wallet: Arc<MemoryWallet>,
    pub codec: AddressCodec,
    used: Mutex<HashSet<OutPoint>>,
    mocktime: Mutex<u64>,
}

fn new_key(secp: &Secp256k1<bitcoin::secp256k1::All>) -> (Key, [u8; 32]) {
    let secret = Secret::new(&mut rand::thread_rng());
    let bytes = secret.secret_bytes();
    (Key::from_secret(secp, &bytes).expect("valid key"), bytes)
}

impl LtcFixture {
    pub async fn new() -> LtcFixture {
        Self::with_confirmations(3).await
    }

    pub async fn with_confirmations(confirmations: u32) -> LtcFixture {
        let node = Node::start().await;
        let miner: String = node
            .wallet
            .call("getnewaddress", vec![json!(""), json!("bech32")])
            .await
            .expect("getnewaddress");
        let other_miner: String = node
            .wallet
            .call("getnewaddress", vec![json!(""), json!("bech32")])
            .await
            .expect("getnewaddress");
        // Bring the median time past up to now (the template's blocks are old).
        node.generate(11, &miner).await;
        let (mtp, wall) = (node.median_time().await, unix_now());
        assert!(
            mtp <= wall + 2,
            "chain median time {mtp} is ahead of the wall clock {wall}: timelocks would not \
             mean what the hub's clock says"
        );
        let secp = Secp256k1::new();
        let codec = AddressCodec::new("rltc").expect("prefix");
        let wallet = Arc::new(MemoryWallet::new());
        let mut made = Vec::new();
        for _ in 0..4 {
            let (key, bytes) = new_key(&secp);
            let addr = Address(codec.p2wpkh(&key.public).expect("p2wpkh address"));
            wallet.insert(addr.clone(), SecretKey::Secp256k1(Zeroizing::new(bytes)));
            made.push((addr, key));
        }
        let [(owner, owner_key), (bene, bene_key), (payer, _), (cosigner, _)]: [(Address, Key); 4] =
            made.try_into().ok().expect("four keys");
        fund(
            &node,
            &codec,
            &miner,
            &[
                (&owner, 10, 50_000_000),
                (&bene, 4, 50_000_000),
                (&payer, 10, 10_000_000),
            ],
        )
        .await;
        node.generate(1, &miner).await;
        let attester = Keypair::generate();
        let mut cfg = UtxoConfig::litecoin_regtest(
            NETWORK,
            node.url.clone(),
            "isthmus".into(),
            "regtest".into(),
            payer,
            cosigner,
            vec![attester.id()],
        );
        cfg.confirmations = confirmations;
        let adapter = Arc::new(UtxoAdapter::new(cfg, wallet.clone()).expect("adapter"));
        adapter.heads().await.expect("first sync");
        LtcFixture {
            node,
            adapter,
            miner,
            other_miner,
            accounts: [owner, bene],
            keys: [owner_key, bene_key],
            attester,
            wallet,
            codec,
            used: Mutex::new(HashSet::new()),
            mocktime: Mutex::new(0),
        }
    }

    pub async fn coins_of(&self, address: &Address) -> Vec<Coin> {
        let script = self.codec.script_of(&address.0).expect("address");
        let desc = format!("raw({})", hex::encode(script.as_bytes()));
        let res: Value = self
            .node
            .call("scantxoutset", vec![json!("start"), json!([desc])])
            .await;
        res["unspents"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|u| Coin {
                outpoint: OutPoint {
                    txid: Txid::from_str(u["txid"].as_str().expect("txid")).expect("txid"),
                    vout: u["vout"].as_u64().expect("vout") as u32,
                },
                value: (u["amount"].as_f64().expect("amount") * 1e8).round() as u64,
                script: script.clone(),
            })
            .collect()
    }

    /// Keep every transaction now in the mempool out of blocks (a negative fee delta), as a
    /// competing miner's branch would.
    pub async fn withhold_mempool(&self) -> Vec<String> {
        let pool: Vec<String> = self.node.call("getrawmempool", vec![]).await;
        for txid in &pool {
            let _: bool = self
                .node
                .call(
                    "prioritisetransaction",
                    vec![json!(txid), json!(0), json!(-100_000_000)],
                )
                .await;
        }
        pool
    }
}

#[async_trait]
impl Fixture for LtcFixture {
    fn adapter(&self) -> Arc<dyn Adapter> {
        self.adapter.clone()
    }

    async fn mine(&self, n: u64) -> Result<(), AdapterError> {
        self.node.generate(n, &self.miner).await;
        self.adapter.heads().await.map(|_| ())
    }

    async fn advance_time_to(&self, t: Timestamp) -> Result<(), AdapterError> {
        for _ in 0..40 {
            if self.adapter.heads().await?.time >= t {
                return Ok(());
            }
            let mock = {
                let mut m = self.mocktime.lock().expect("mocktime");
                *m = (*m).max(t);
                *m
            };
            let _: Value = self.node.call("setmocktime", vec![json!(mock)]).await;
            self.mine(1).await?;
        }
        Err(AdapterError::Timeout {
            network: NETWORK,
            op: format!("advance time to {t}"),
        })
    }

    fn accounts(&self) -> [Address; 2] {
        self.accounts.clone()
    }

    fn asset(&self) -> AssetId {
        AssetId("LTC".into())
    }

    async fn signed_transfer(
        &self,
        from: usize,
        to: &Address,
        amount: Amount,
    ) -> Result<SignedTx, AdapterError> {
        const FEE: u64 = 2_000;
        let amount = u64::try_from(amount.0).map_err(|_| AdapterError::InvalidRequest {
            reason: "amount too large".into(),
        })?;
        let coin = {
            let coins = self.coins_of(&self.accounts[from]).await;
            let mut used = self.used.lock().expect("used");
            let coin = coins
                .into_iter()
                .find(|c| !used.contains(&c.outpoint) && c.value >= amount + FEE)
                .ok_or_else(|| AdapterError::InvalidRequest {
                    reason: format!("no coin of {} covers {amount}", self.accounts[from]),
                })?;
            used.insert(coin.outpoint);
            coin
        };
        let to_script = self
            .codec
            .script_of(&to.0)
            .map_err(|e| AdapterError::InvalidRequest {
                reason: e.to_string(),
            })?;
        let change = coin.value - amount - FEE;
        let from_script = coin.script.clone();
        let tx = build::sign(
            &Secp256k1::new(),
            &[Input {
                coin,
                unlock: Unlock::P2wpkh(self.keys[from].clone()),
            }],
            vec![
                TxOut {
                    value: Sats::from_sat(amount),
                    script_pubkey: to_script,
                },
                TxOut {
                    value: Sats::from_sat(change),
                    script_pubkey: from_script,
                },
            ],
            absolute::LockTime::ZERO,
        )
        .map_err(|reason| AdapterError::InvalidRequest { reason })?;
        Ok(SignedTx(bitcoin::consensus::encode::serialize(&tx)))
    }

    fn attest(&self, lock_id: LockId, decision: Decision, record: HubRecord) -> HubAttestation {
        HubAttestation::sign_ed25519(
            NETWORK,
            lock_id,
            decision,
            record,
            std::slice::from_ref(&self.attester),
        )
    }

    /// Mine what is pending into the newest block, let the adapter see it, then replace the
    /// newest `depth` blocks with a longer branch that leaves their transactions out.
    async fn reorg(&self, depth: u64) -> Result<bool, AdapterError> {
        let pool: Vec<String> = self.node.call("getrawmempool", vec![]).await;
        if !pool.is_empty() {
            self.mine(1).await?;
        }
        let tip: u64 = self.node.call("getblockcount", vec![]).await;
        let first: String = self
            .node
            .call("getblockhash", vec![json!(tip + 1 - depth)])
            .await;
        let _: Value = self.node.call("invalidateblock", vec![json!(first)]).await;
        self.withhold_mempool().await;
        self.node.generate(depth + 1, &self.other_miner).await;
        self.adapter.heads().await?;
        Ok(true)
    }
}
