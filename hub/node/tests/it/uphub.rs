//! Drives a real `hub up` process: spawn on a data dir, read its `up.json`, talk to its
//! HTTP API and to its chains' status endpoints, SIGTERM or `kill -9` it (by pid only).

use crate::harness::{wait_for, HUB};
use isthmus_lock_contracts::{InstanceId, LegId, LockId};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

pub struct HubUp {
    pub data: PathBuf,
    pub log: PathBuf,
    /// The command: `up` with its data dir, API and block interval, or `serve --config`.
    base: Vec<String>,
    /// The customer key, when the hub does not publish one (`hub serve`).
    customer: Option<String>,
    /// Environment of the hub process (the secrets a hub config names).
    env: Vec<(String, String)>,
    pub args: Vec<String>,
    pub info: Value,
    child: Option<Child>,
    http: reqwest::blocking::Client,
}

impl HubUp {
    /// `hub up --data DATA --api 127.0.0.1:0 --block-ms 100 EXTRA...`, waiting until ready.
    pub fn start(data: &Path, extra: &[&str]) -> HubUp {
        let mut h = HubUp::start_with(
            data,
            vec![
                "up".into(),
                "--data".into(),
                data.display().to_string(),
                "--api".into(),
                "127.0.0.1:0".into(),
                "--block-ms".into(),
                "100".into(),
            ],
        );
        h.args = extra.iter().map(|s| s.to_string()).collect();
        h.spawn();
        h
    }

    /// `hub serve --config CONFIG` whose data dir is `data`, with the customer key `key`
    /// (and `env` for the secrets the config names), waiting until ready.
    pub fn serve(config: &Path, data: &Path, key: &str, env: &[(&str, &str)]) -> HubUp {
        let mut h = HubUp::start_with(
            data,
            vec![
                "serve".into(),
                "--config".into(),
                config.display().to_string(),
            ],
        );
        h.customer = Some(key.to_owned());
        h.env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        h.spawn();
        h
    }

    fn start_with(data: &Path, base: Vec<String>) -> HubUp {
        HubUp {
            data: data.to_path_buf(),
            log: data.with_extension("log"),
            base,
            customer: None,
            env: Vec::new(),
            args: Vec::new(),
            info: Value::Null,
            child: None,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(90))
                .build()
                .unwrap(),
        }
    }

    /// Spawn without waiting for readiness (for tests of start-up refusals).
    pub fn spawn_raw(data: &Path, api: &str, log: &Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        Command::new(HUB)
            .args(["up", "--data"])
            .arg(data)
            .args(["--api", api, "--block-ms", "100"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.data.join("up.json"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(HUB)
            .args(&self.base)
            .args(&self.args)
            .envs(self.env.iter().cloned())
            .env(
                "RUST_LOG",
                "warn,informalsystems_malachitebft_core_consensus=off",
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let pid = child.id();
        self.child = Some(child);
        let f = self.data.join("up.json");
        self.info = wait_for(60, "up.json of hub up", || {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("the hub exited early: {st}\n{}", self.log_tail());
                }
            }
            std::fs::read_to_string(&f)
                .ok()
                .and_then(|s| serde_json::from_str::<Value>(&s).ok())
                .filter(|v| v["pid"] == json!(pid))
        });
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL the hub (its pid) and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM the hub (its pid) and wait for it to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("hub up is running");
        let st = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let t0 = std::time::Instant::now();
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = c.kill();
                let _ = c.wait();
                panic!("hub up ignored SIGTERM for 30 s\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let s = self.log_text();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn api(&self) -> String {
        format!("http://{}", self.info["api"].as_str().unwrap())
    }

    pub fn key(&self) -> String {
        match &self.customer {
            Some(k) => k.clone(),
            None => self.info["customer_key"].as_str().unwrap().to_owned(),
        }
    }

    pub fn admin_key(&self) -> String {
        self.info["admin_key"].as_str().unwrap().to_owned()
    }

    /// GET with `key`; (status, body).
    pub fn get_as(&self, key: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.api()))
            .bearer_auth(key)
            .send()
            .unwrap();
        let code = r.status().as_u16();
        (code, r.json().unwrap_or(Value::Null))
    }

    /// The names `GET /v1/networks` lists.
    pub fn network_names(&self) -> Vec<String> {
        let (code, nets) = self.get("/v1/networks");
        assert_eq!(code, 200, "{nets}");
        nets.as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// DELETE with `key`; (status, body).
    pub fn delete_as(&self, key: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .delete(format!("{}{path}", self.api()))
            .bearer_auth(key)
            .send()
            .unwrap();
        let code = r.status().as_u16();
        (code, r.json().unwrap_or(Value::Null))
    }

    pub fn provider_key(&self) -> String {
        self.info["provider_key"].as_str().unwrap().to_owned()
    }

    pub fn account(&self, label: &str) -> String {
        self.info["accounts"][label].as_str().unwrap().to_owned()
    }

    /// POST with the customer key; (status, body).
    pub fn post(&self, path: &str, idem: &str, body: &Value) -> (u16, Value) {
        self.post_as(Some(&self.key()), path, idem, body)
    }

    pub fn post_as(&self, key: Option<&str>, path: &str, idem: &str, body: &Value) -> (u16, Value) {
        let mut r = self
            .http
            .post(format!("{}{path}", self.api()))
            .header("Idempotency-Key", idem)
            .json(body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        let r = r.send().unwrap();
        let code = r.status().as_u16();
        (code, r.json().unwrap_or(Value::Null))
    }

    /// POST with `key`; `None` if the hub did not answer (killed meanwhile).
    pub fn try_post_as(
        &self,
        key: &str,
        path: &str,
        idem: &str,
        body: &Value,
    ) -> Option<(u16, Value)> {
        let r = self
            .http
            .post(format!("{}{path}", self.api()))
            .bearer_auth(key)
            .header("Idempotency-Key", idem)
            .json(body)
            .send()
            .ok()?;
        let code = r.status().as_u16();
        Some((code, r.json().ok()?))
    }

    /// POST with the customer key; `None` if the hub did not answer (killed meanwhile).
    pub fn try_post(&self, path: &str, idem: &str, body: &Value) -> Option<(u16, Value)> {
        self.try_post_as(&self.key(), path, idem, body)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.api()))
            .bearer_auth(self.key())
            .send()
            .unwrap();
        let code = r.status().as_u16();
        (code, r.json().unwrap_or(Value::Null))
    }

    /// GET an operation until it is terminal (server-side `?wait=`), failing after `secs`.
    pub fn wait_terminal(&self, kind: &str, id: &str, secs: u64) -> Value {
        let t0 = std::time::Instant::now();
        loop {
            let (code, v) = self.get(&format!("/v1/{kind}/{id}?wait=10"));
            assert_eq!(code, 200, "{v}");
            if v["terminal"] == json!(true) {
                return v;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(secs),
                "{kind} {id} not terminal after {secs}s: {v}\n{}",
                self.log_tail()
            );
        }
    }

    /// One JSON-lines request to a chain's status endpoint (`hub`, `alpha`, `beta`).
    pub fn chain(&self, net: &str, req: &Value) -> Value {
        let addr: SocketAddr = self.info["status"][net].as_str().unwrap().parse().unwrap();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut line = req.to_string();
        line.push('\n');
        s.write_all(line.as_bytes()).unwrap();
        let mut out = String::new();
        BufReader::new(s).read_line(&mut out).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert!(v.get("error").is_none(), "{net}: {v}");
        v["ok"].clone()
    }

    pub fn balance(&self, net: &str, who: &str) -> u64 {
        self.chain(net, &json!({"cmd": "account", "id": who}))["balance"]
            .as_u64()
            .unwrap()
    }

    /// Balance of a demo account by label.
    pub fn bal(&self, net: &str, label: &str) -> u64 {
        self.balance(net, &self.account(label))
    }

    /// The escrow module account's balance (everything locked and not yet paid out).
    pub fn escrowed(&self, net: &str) -> u64 {
        let id = isthmus_chain::state::module_account(isthmus_chain::escrow::MODULE);
        self.balance(net, &id.to_string())
    }

    /// The on-chain escrow of leg `leg` of API operation `api_id`, or null.
    pub fn escrow(&self, net: &str, api_id: &str, leg: LegId) -> Value {
        let lock = lock_id(api_id, leg);
        self.chain(net, &json!({"cmd": "escrow", "lock_id": lock.0.to_hex()}))
    }
}

impl HubUp {
    /// Whether the hub chain's audit module holds the anchor of transition `seq` of API
    /// operation `api_id` (signed by the hub's auditor key).
    pub fn anchored(&self, api_id: &str, seq: u64) -> bool {
        let auditor: isthmus_core::NodeId = self.info["auditor"].as_str().unwrap().parse().unwrap();
        let inst = InstanceId::derive(&[api_id.as_bytes()]);
        let key = isthmus_chain::state::module_key(
            isthmus_chain::audit::MODULE,
            &isthmus_chain::audit::anchor_key(&auditor.0, &inst.0 .0, seq),
        );
        !self
            .chain("hub", &json!({"cmd": "state", "key": hex::encode(key)}))
            .is_null()
    }
}

/// The lock id the hub derives for leg `leg` of API operation `api_id`.
pub fn lock_id(api_id: &str, leg: LegId) -> LockId {
    LockId::derive(InstanceId::derive(&[api_id.as_bytes()]), leg)
}

impl HubUp {
    /// The Prometheus text of the hub's metrics endpoint.
    pub fn metrics_text(&self) -> String {
        let r = self
            .http
            .get(format!(
                "http://{}/metrics",
                self.info["metrics"].as_str().unwrap()
            ))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.text().unwrap()
    }

    /// The value of metric `name` with exactly `labels`, or `None` if it is not exported.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: std::collections::BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.metrics_text().lines().find_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, have) = match series.split_once('{') {
                Some((n, rest)) => (n, parse_labels(rest.strip_suffix('}')?)),
                None => (series, Default::default()),
            };
            (n == name && have == want).then(|| value.parse().ok())?
        })
    }
}

/// `a="x",b="y"` → {a: x, b: y} (label values here hold no quotes or commas).
fn parse_labels(s: &str) -> std::collections::BTreeMap<String, String> {
    s.split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.trim_matches('"').to_owned()))
        })
        .collect()
}

impl Drop for HubUp {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Request bodies (accounts by address).
pub fn transfer(h: &HubUp, a: u64, b: u64, timeout: u64, counter_by: &str) -> Value {
    json!({
        "source":  {"network": "alpha", "asset": "native", "amount": a.to_string(),
                    "from": h.account("alice"), "to": h.account("bob")},
        "counter": {"network": "beta", "asset": "native", "amount": b.to_string(),
                    "from": h.account("bob"), "to": h.account("alice"), "lock_by": counter_by},
        "timeout_secs": timeout
    })
}

pub fn swap(h: &HubUp, t1: u64, t2: u64, participant_by: &str) -> Value {
    json!({
        "initiator":   {"network": "alpha", "asset": "native", "amount": "5",
                        "from": h.account("alice"), "to": h.account("bob")},
        "participant": {"network": "beta", "asset": "native", "amount": "7",
                        "from": h.account("bob"), "to": h.account("alice"), "lock_by": participant_by},
        "initiator_timeout_secs": t1,
        "participant_timeout_secs": t2
    })
}
