//! Start `adapter-host` as a child process and attach to it.

use async_trait::async_trait;
use isthmus_adapter_api::{Adapter, AdapterError, HubAttestation, SignedTx};
use isthmus_adapter_remote::{Answer, Control, RemoteAdapter, RemoteConfig};
use isthmus_adapter_testkit::conformance::Fixture;
use isthmus_adapter_testkit::mock::{MockFixture, MockTransfer};
use isthmus_core::{Keypair, NetworkId, NodeId};
use isthmus_lock_contracts::{Address, Amount, AssetId, Decision, HubRecord, LockId, Timestamp};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The `adapter-host` binary: cargo names it for this package's own tests; a test of
/// another package (the top-level tests) finds it beside its own binary, built by the
/// same workspace run (or builds it).
fn adapter_host_bin() -> std::path::PathBuf {
    match option_env!("CARGO_BIN_EXE_adapter-host") {
        Some(p) => p.into(),
        None => isthmus_adapter_testkit::peers::workspace_bin(
            "isthmus-adapter-remote",
            "adapter-host",
            &["adapters/remote/src"],
        ),
    }
}

/// A running `adapter-host`; killed (by pid, SIGKILL) when dropped, also on panic.
pub struct Host {
    pub child: Child,
    pub listen: SocketAddr,
    pub identity: NodeId,
    pub network: NetworkId,
}

impl Host {
    pub async fn start(network: u64, label: &str, extra: &[&str]) -> Host {
        let network = network.to_string();
        let mut args = vec!["--mock", "--control", "--network", &network];
        args.extend(["--dev-identity", label]);
        args.extend(extra);
        Host::start_with(&args).await
    }

    pub async fn start_with(args: &[&str]) -> Host {
        let mut child = Command::new(adapter_host_bin())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn adapter-host");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(20),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .expect("adapter-host ready line in time")
        .expect("read ready line");
        let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line is json");
        Host {
            listen: ready["listen"].as_str().unwrap().parse().unwrap(),
            identity: ready["identity"].as_str().unwrap().parse().unwrap(),
            network: NetworkId(ready["network"].as_u64().unwrap()),
            child,
        }
    }

    pub fn config(&self, name: &str) -> RemoteConfig {
        let mut cfg = RemoteConfig::new(self.network, name, self.listen, self.identity);
        cfg.call_timeout = Duration::from_secs(5);
        cfg.backoff_min = Duration::from_millis(20);
        cfg.backoff_max = Duration::from_millis(200);
        cfg
    }

    pub async fn attach(&self) -> RemoteAdapter {
        RemoteAdapter::connect(self.config("remote-mock"), Keypair::dev("test-hub"))
            .await
            .expect("attach to adapter-host")
    }

    pub async fn kill(&mut self) {
        self.child.kill().await.expect("kill adapter-host");
    }
}

/// The conformance fixture for a mock served by `adapter-host`: platform control goes
/// through the protocol's `control` calls, signing happens here with the mock's dev keys.
pub struct RemoteFixture {
    pub host: Host,
    pub remote: Arc<RemoteAdapter>,
    accounts: [Keypair; 2],
    hub_keys: Vec<Keypair>,
}

impl RemoteFixture {
    pub async fn start(network: u64) -> RemoteFixture {
        let host = Host::start(network, &format!("adapter-{network}"), &[]).await;
        let remote = Arc::new(host.attach().await);
        RemoteFixture {
            host,
            remote,
            // The keys `MockFixture` funds and trusts.
            accounts: [Keypair::dev("mock-alice"), Keypair::dev("mock-bob")],
            hub_keys: vec![Keypair::dev("mock-hub-attestation")],
        }
    }

    async fn control(&self, c: Control) -> Result<Answer, AdapterError> {
        self.remote.control(c).await
    }
}

#[async_trait]
impl Fixture for RemoteFixture {
    fn adapter(&self) -> Arc<dyn Adapter> {
        self.remote.clone()
    }

    async fn mine(&self, n: u64) -> Result<(), AdapterError> {
        self.control(Control::Mine { blocks: n }).await.map(drop)
    }

    async fn advance_time_to(&self, t: Timestamp) -> Result<(), AdapterError> {
        self.control(Control::AdvanceTimeTo { time: t })
            .await
            .map(drop)
    }

    async fn reorg(&self, depth: u64) -> Result<bool, AdapterError> {
        match self.control(Control::Reorg { depth }).await {
            Ok(_) => Ok(true),
            Err(AdapterError::Unsupported { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn accounts(&self) -> [Address; 2] {
        self.accounts
            .each_ref()
            .map(|k| Address(k.id().to_string()))
    }

    fn asset(&self) -> AssetId {
        AssetId(MockFixture::ASSET.to_owned())
    }

    async fn signed_transfer(
        &self,
        from: usize,
        to: &Address,
        amount: Amount,
    ) -> Result<SignedTx, AdapterError> {
        let key = &self.accounts[from];
        let nonce = match self
            .control(Control::NextNonce { account: key.id() })
            .await?
        {
            Answer::Nonce(n) => n,
            other => panic!("next_nonce answered {other:?}"),
        };
        let t = MockTransfer {
            from: key.id(),
            to: to.clone(),
            asset: self.asset(),
            amount,
            nonce,
        };
        Ok(t.sign(key, self.host.network))
    }

    fn attest(&self, lock_id: LockId, decision: Decision, record: HubRecord) -> HubAttestation {
        HubAttestation::sign_ed25519(self.host.network, lock_id, decision, record, &self.hub_keys)
    }
}
