//! `hub serve --config FILE`: the hub run from a configuration file, and `hub config check`
//! for it. [`HubConfig::plan`] turns the file into the same [`Plan`] `hub up` uses, after
//! checking everything it can without starting anything, and reports every problem at once:
//! unknown fields, duplicate or reserved names, bad network specs, unreadable genesis
//! configs, missing environment variables, missing key files, and secret files that others
//! may read.
//!
//! Secrets are never inline: API keys are given as their sha256 digest or read from a file
//! or an environment variable (and hashed at once); the wallet's passphrase and the keys
//! of the accounts it holds come from a file (mode 0600) or the environment.

use crate::provision::spec::NetworkSpec;
use crate::up::{self, ApiKeys, NetworkPlan, Plan, UpOptions, WalletAccount, WalletUnlock};
use isthmus_chain::config::parse_identity;
use isthmus_chain::NetworkConfig;
use isthmus_core::Keypair;
use isthmus_hub_api::{ApiKeyConfig, Role};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroizing;

/// The hub config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// Data directory: chains, journal, API store, provisioned networks.
    pub data: PathBuf,
    #[serde(default)]
    pub api: ApiSection,
    #[serde(default)]
    pub hub_chain: HubChainSection,
    #[serde(default)]
    pub interop: InteropSection,
    pub wallet: WalletSection,
    /// Native networks whose nodes the hub runs.
    #[serde(default)]
    pub provision: Vec<NetworkSpec>,
    /// Native networks that run elsewhere, reached over their nodes' RPC.
    #[serde(default)]
    pub attach: Vec<AttachSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    #[serde(default = "d_listen")]
    pub listen: SocketAddr,
    #[serde(default, rename = "key")]
    pub keys: Vec<ApiKeySection>,
    /// HTTPS: a PEM certificate chain and its PEM key, both or neither.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Requests a second per API key (per client IP without one); 0 turns the limit off.
    /// Unset: `ApiSettings`' default, like `rate_burst`.
    #[serde(default)]
    pub rate_limit: Option<u32>,
    #[serde(default)]
    pub rate_burst: Option<u32>,
    /// Browser origins allowed to call the API (CORS); empty: no CORS headers.
    #[serde(default)]
    pub cors_origins: Vec<String>,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            listen: d_listen(),
            keys: Vec::new(),
            tls_cert: None,
            tls_key: None,
            rate_limit: None,
            rate_burst: None,
            cors_origins: Vec::new(),
        }
    }
}

fn d_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7780))
}

/// One API key: exactly one of `key_sha256`, `key_file`, `key_env`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySection {
    pub name: String,
    pub role: Role,
    /// The tenant holding the key.
    pub tenant: String,
    pub key_sha256: Option<String>,
    pub key_file: Option<PathBuf>,
    pub key_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubChainSection {
    #[serde(default = "d_block_ms")]
    pub block_interval_ms: u64,
    /// Run the hub chain as this many validator processes the hub supervises (4 keep
    /// deciding with one down); absent: one validator inside the hub process.
    #[serde(default)]
    pub validators: Option<usize>,
}

impl Default for HubChainSection {
    fn default() -> Self {
        HubChainSection {
            block_interval_ms: d_block_ms(),
            validators: None,
        }
    }
}

fn d_block_ms() -> u64 {
    250
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InteropSection {
    #[serde(default = "d_htlc")]
    pub htlc_delta_secs: u64,
    #[serde(default = "d_release")]
    pub release_window_secs: u64,
    /// The hub's QUIC packet ingress for relayers.
    #[serde(default = "d_any")]
    pub relay_listen: SocketAddr,
    /// Prometheus metrics (`GET /metrics`).
    #[serde(default = "d_any")]
    pub metrics: SocketAddr,
    #[serde(default = "d_fallback")]
    pub relay_fallback_secs: u64,
    /// How long a network may take to make its first block when the hub starts.
    #[serde(default = "d_link")]
    pub link_timeout_secs: u64,
    /// Run a relayer inside the hub. Off, every packet comes from `relayers`.
    #[serde(default = "d_true")]
    pub embedded_relayer: bool,
    /// Identities (`isth_…`) of relayer processes the packet ingress admits.
    #[serde(default)]
    pub relayers: Vec<String>,
}

impl Default for InteropSection {
    fn default() -> Self {
        InteropSection {
            htlc_delta_secs: d_htlc(),
            release_window_secs: d_release(),
            relay_listen: d_any(),
            metrics: d_any(),
            relay_fallback_secs: d_fallback(),
            link_timeout_secs: d_link(),
            embedded_relayer: true,
            relayers: Vec::new(),
        }
    }
}

fn d_htlc() -> u64 {
    30
}
fn d_release() -> u64 {
    60
}
fn d_any() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
fn d_fallback() -> u64 {
    10
}
fn d_link() -> u64 {
    60
}
fn d_true() -> bool {
    true
}

/// The hub wallet: its passphrase (exactly one of the two) and the accounts it holds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletSection {
    pub passphrase_env: Option<String>,
    pub passphrase_file: Option<PathBuf>,
    #[serde(default, rename = "account")]
    pub accounts: Vec<AccountSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSection {
    pub label: String,
    /// The tenant whose keys may move it.
    pub tenant: String,
    /// 64 hex digits (an ed25519 seed), mode 0600.
    pub key_file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachSection {
    pub name: String,
    /// The network's genesis config, as its nodes run it (the hub verifies against it).
    pub config: PathBuf,
    #[serde(rename = "node")]
    pub nodes: Vec<AttachedNode>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachedNode {
    /// The node's RPC address (`hub node run --rpc`).
    pub rpc: SocketAddr,
    /// The node's identity (`isth_…`).
    pub id: String,
}

/// A secret read from a file must not be readable by others.
fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is readable by others (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        ));
    }
    std::fs::read_to_string(path)
        .map(|s| Zeroizing::new(s.trim().to_owned()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn read_env(name: &str) -> Result<Zeroizing<String>, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(Zeroizing::new(v.trim().to_owned())),
        Ok(_) => Err(format!("environment variable {name} is empty")),
        Err(_) => Err(format!("environment variable {name} is not set")),
    }
}

impl HubConfig {
    /// Parse `path` (relative paths inside it are relative to the file's directory).
    pub fn load(path: &Path) -> Result<HubConfig, Vec<String>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
        let mut cfg: HubConfig =
            toml::from_str(&text).map_err(|e| vec![format!("{}: {e}", path.display())])?;
        let base = path.parent().unwrap_or(Path::new("."));
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        rebase(&mut cfg.data);
        for f in [&mut cfg.api.tls_cert, &mut cfg.api.tls_key]
            .into_iter()
            .flatten()
        {
            rebase(f);
        }
        for k in &mut cfg.api.keys {
            if let Some(f) = &mut k.key_file {
                rebase(f);
            }
        }
        if let Some(f) = &mut cfg.wallet.passphrase_file {
            rebase(f);
        }
        for a in &mut cfg.wallet.accounts {
            rebase(&mut a.key_file);
        }
        for a in &mut cfg.attach {
            rebase(&mut a.config);
        }
        Ok(cfg)
    }

    /// Whether a TOML document is a hub config (rather than a network config).
    pub fn looks_like(text: &str) -> bool {
        toml::from_str::<toml::Table>(text).is_ok_and(|t| {
            ["data", "wallet", "provision", "attach", "api"]
                .iter()
                .any(|k| t.contains_key(*k))
        })
    }

    /// The plan this config describes, reading every secret and genesis config it names;
    /// or every problem found.
    pub fn plan(&self) -> Result<Plan, Vec<String>> {
        let mut p = Vec::new();
        let keys = self.api_keys(&mut p);
        let wallet = self.wallet(&mut p);
        let accounts = self.accounts(&mut p);
        let networks = self.networks(&mut p);
        let api_settings = self.api_settings(&mut p);
        let mut relayers = Vec::new();
        for r in &self.interop.relayers {
            match parse_identity(r) {
                Ok(id) => relayers.push(id),
                Err(e) => p.push(format!("interop.relayers `{r}`: {e}")),
            }
        }
        if !self.interop.embedded_relayer && relayers.is_empty() {
            p.push(
                "interop: embedded_relayer = false and no relayers: no packet could reach the hub"
                    .into(),
            );
        }
        if let Some(n) = self.hub_chain.validators {
            if n == 0 || n > crate::provision::spec::MAX_NODES {
                p.push(format!(
                    "hub_chain.validators = {n}: between 1 and {}",
                    crate::provision::spec::MAX_NODES
                ));
            }
        }
        if self.hub_chain.block_interval_ms < 20 {
            p.push(format!(
                "hub_chain.block_interval_ms = {}: at least 20",
                self.hub_chain.block_interval_ms
            ));
        }
        if !p.is_empty() {
            return Err(p);
        }
        let mut opts = UpOptions::new(self.data.clone(), self.api.listen);
        opts.block_ms = self.hub_chain.block_interval_ms;
        opts.htlc_delta_secs = self.interop.htlc_delta_secs;
        opts.release_window_secs = self.interop.release_window_secs;
        opts.api_settings = api_settings;
        opts.relay = up::relay::RelayOptions {
            listen: self.interop.relay_listen,
            metrics: self.interop.metrics,
            fallback_secs: self.interop.relay_fallback_secs,
            embedded: self.interop.embedded_relayer,
            relayers,
        };
        match wallet {
            Some(wallet) => Ok(Plan {
                opts,
                keys: ApiKeys::Configured(keys),
                wallet,
                accounts,
                networks,
                link_deadline: Duration::from_secs(self.interop.link_timeout_secs),
                hub_validators: self.hub_chain.validators,
            }),
            None => Err(vec!["wallet: no passphrase".into()]),
        }
    }

    /// `[api]`'s serving settings (TLS), checked like the rest.
    fn api_settings(&self, p: &mut Vec<String>) -> isthmus_hub_api::ApiSettings {
        let mut s = isthmus_hub_api::ApiSettings::default();
        match (&self.api.tls_cert, &self.api.tls_key) {
            (Some(cert), Some(key)) => {
                s.tls = Some(isthmus_hub_api::ApiTls {
                    cert: cert.clone(),
                    key: key.clone(),
                })
            }
            (None, None) => {}
            _ => p.push("api: give both tls_cert and tls_key, or neither".into()),
        }
        if let Some(r) = self.api.rate_limit {
            s.rate_limit.per_second = r;
        }
        if let Some(b) = self.api.rate_burst {
            s.rate_limit.burst = b;
        }
        s.cors.origins = self.api.cors_origins.clone();
        p.extend(s.validate().into_iter().map(|e| format!("api: {e}")));
        s
    }

    fn api_keys(&self, p: &mut Vec<String>) -> Vec<ApiKeyConfig> {
        if self.api.keys.is_empty() {
            p.push("api: no [[api.key]]: nobody could call the API".into());
        }
        let mut names = BTreeSet::new();
        let mut out = Vec::new();
        for k in &self.api.keys {
            let at = format!("api.key `{}`", k.name);
            if !names.insert(k.name.clone()) {
                p.push(format!("{at}: the name is used twice"));
            }
            let plain = |key: Zeroizing<String>| {
                ApiKeyConfig::from_plaintext(&k.name, k.role, &key).in_tenant(&k.tenant)
            };
            let entry = match (&k.key_sha256, &k.key_file, &k.key_env) {
                (Some(d), None, None) => Ok(ApiKeyConfig {
                    name: k.name.clone(),
                    role: k.role,
                    tenant: k.tenant.clone(),
                    key_sha256: d.clone(),
                }),
                (None, Some(f), None) => read_secret_file(f).map(plain),
                (None, None, Some(v)) => read_env(v).map(plain),
                _ => Err("give exactly one of key_sha256, key_file, key_env".into()),
            };
            match entry {
                Ok(e) => out.push(e),
                Err(e) => p.push(format!("{at}: {e}")),
            }
        }
        if let Err(problems) = isthmus_hub_api::KeyRing::new(&out) {
            p.extend(problems);
        }
        out
    }

    fn wallet(&self, p: &mut Vec<String>) -> Option<WalletUnlock> {
        let w = &self.wallet;
        let pass = match (&w.passphrase_env, &w.passphrase_file) {
            (Some(v), None) => read_env(v),
            (None, Some(f)) => read_secret_file(f),
            _ => Err("give exactly one of passphrase_env, passphrase_file".into()),
        };
        match pass {
            Ok(s) if s.len() < 12 => {
                p.push("wallet: the passphrase is shorter than 12 characters".into());
                None
            }
            Ok(s) => Some(WalletUnlock::Passphrase(s)),
            Err(e) => {
                p.push(format!("wallet: {e}"));
                None
            }
        }
    }

    fn accounts(&self, p: &mut Vec<String>) -> Vec<WalletAccount> {
        let mut labels = BTreeSet::new();
        let mut out = Vec::new();
        for a in &self.wallet.accounts {
            let at = format!("wallet.account `{}`", a.label);
            if !labels.insert(a.label.clone()) {
                p.push(format!("{at}: the label is used twice"));
            }
            match read_secret_file(&a.key_file).and_then(|s| Keypair::from_hex_seed(&s)) {
                Ok(key) => out.push(WalletAccount {
                    label: a.label.clone(),
                    key,
                    tenant: a.tenant.clone(),
                }),
                Err(e) => p.push(format!("{at}: {e}")),
            }
        }
        out
    }

    fn networks(&self, p: &mut Vec<String>) -> Vec<(String, NetworkPlan)> {
        let mut names = BTreeSet::from(["hub".to_owned()]);
        let mut ids: BTreeMap<u64, String> = BTreeMap::new();
        let mut out = Vec::new();
        let mut claim = |name: &str, id: u64, p: &mut Vec<String>| {
            if !names.insert(name.to_owned()) {
                p.push(format!(
                    "network `{name}`: the name is used twice (or is `hub`)"
                ));
            }
            if let Some(other) = ids.insert(id, name.to_owned()) {
                p.push(format!(
                    "network `{name}`: network id {id} is also `{other}`'s; set network_id"
                ));
            }
        };
        for spec in &self.provision {
            claim(&spec.name, spec.id(), p);
            p.extend(
                spec.check()
                    .into_iter()
                    .map(|e| format!("provision `{}`: {e}", spec.name)),
            );
            out.push((
                spec.name.clone(),
                NetworkPlan::Provisioned {
                    spec: spec.clone(),
                    network_id: spec.id(),
                },
            ));
        }
        for a in &self.attach {
            let at = format!("attach `{}`", a.name);
            let config = match NetworkConfig::load(&a.config) {
                Ok(c) => c,
                Err(e) => {
                    p.push(format!("{at}: {}: {e}", a.config.display()));
                    continue;
                }
            };
            claim(&a.name, config.network().0, p);
            if a.nodes.is_empty() {
                p.push(format!("{at}: no [[attach.node]]"));
            }
            let mut nodes = Vec::new();
            for n in &a.nodes {
                match parse_identity(&n.id) {
                    Ok(id) => nodes.push((n.rpc, id)),
                    Err(e) => p.push(format!("{at}: node id `{}`: {e}", n.id)),
                }
            }
            out.push((a.name.clone(), NetworkPlan::Attached { config, nodes }));
        }
        out
    }
}
