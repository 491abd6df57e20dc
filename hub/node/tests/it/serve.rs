//! `hub serve --config` with provisioned networks, as an operator runs it: the hub starts
//! each network's nodes as `hub node run` processes, links them over their authenticated
//! RPC, moves value between them, restarts a node killed with `kill -9`, leaves no node
//! process behind when it is itself killed with `kill -9`, and resumes on its data
//! directory; and `hub config check` lists every problem of a bad config at once.

use crate::harness::{status_call, wait_for, HUB};
use crate::uphub::HubUp;
use isthmus_adapter_testkit::peers::Reaped;
use isthmus_core::Keypair;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const CUSTOMER_KEY: &str = "acme-customer-key-0123456789abcdef";
const PASSPHRASE: &str = "a passphrase long enough";

fn write_secret(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A hub config in `dir` provisioning `gamma` (PoS, 2 validators) and `delta` (PoW, 2
/// nodes), both funding alice and bob, whose keys the hub wallet holds; `interop` and
/// `hub_chain` are added to those tables.
fn config(dir: &Path, interop: &str, hub_chain: &str) -> (PathBuf, [Keypair; 2]) {
    let keys = [Keypair::generate(), Keypair::generate()];
    for (label, k) in ["alice", "bob"].iter().zip(&keys) {
        write_secret(&dir.join(format!("{label}.key")), &k.to_hex_seed());
    }
    write_secret(&dir.join("customer.api"), CUSTOMER_KEY);
    let alloc = format!(
        "[provision.alloc]\n{} = \"1000000\"\n{} = \"1000000\"\n",
        keys[0].id(),
        keys[1].id()
    );
    let toml = format!(
        r#"data = "data"
[api]
listen = "127.0.0.1:0"
[[api.key]]
name = "acme"
role = "customer"
tenant = "acme"
key_file = "customer.api"
[hub_chain]
block_interval_ms = 100
{hub_chain}
[interop]
htlc_delta_secs = 2
release_window_secs = 3
{interop}
[wallet]
passphrase_env = "TEST_WALLET_PASSPHRASE"
[[wallet.account]]
label = "alice"
tenant = "acme"
key_file = "alice.key"
[[wallet.account]]
label = "bob"
tenant = "acme"
key_file = "bob.key"

[[provision]]
name = "gamma"
consensus = "pos"
nodes = 2
block_interval_ms = 200
{alloc}
[[provision]]
name = "delta"
consensus = "pow"
nodes = 2
block_interval_ms = 200
pow_difficulty = 500
pow_window = 8
{alloc}"#
    );
    let path = dir.join("hub.toml");
    std::fs::write(&path, toml).unwrap();
    (path, keys)
}

/// `node.json` of node `i` of a provisioned network.
fn node_info(data: &Path, net: &str, i: usize) -> Option<Value> {
    let p = data
        .join("networks")
        .join(net)
        .join(format!("node-{i}/node.json"));
    serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
}

fn status_addr(data: &Path, net: &str, i: usize) -> SocketAddr {
    node_info(data, net, i).unwrap()["status"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn balance(data: &Path, net: &str, who: &Keypair) -> u64 {
    status_call(
        status_addr(data, net, 0),
        &json!({"cmd": "account", "id": who.id().to_string()}),
    )
    .unwrap()["balance"]
        .as_u64()
        .unwrap()
}

/// Two-phase: alice pays bob `a` on gamma, bob pays alice `b` on delta (hub wallet).
fn transfer(alice: &Keypair, bob: &Keypair, a: u64, b: u64) -> Value {
    json!({
        "source":  {"network": "gamma", "asset": "native", "amount": a.to_string(),
                    "from": alice.id().to_string(), "to": bob.id().to_string()},
        "counter": {"network": "delta", "asset": "native", "amount": b.to_string(),
                    "from": bob.id().to_string(), "to": alice.id().to_string(),
                    "lock_by": "hub_wallet"},
        "timeout_secs": 120
    })
}

fn alive(pid: u64) -> bool {
    // A zombie still has a /proc entry; its state says it has ended.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

fn node_pids(data: &Path) -> Vec<u64> {
    let mut pids = Vec::new();
    for net in ["gamma", "delta"] {
        for i in 0..2 {
            if let Some(v) = node_info(data, net, i) {
                pids.push(v["pid"].as_u64().unwrap());
            }
        }
    }
    pids
}

fn kill9(pid: u64) {
    let st = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn serve_provisions_links_and_supervises_node_processes() {
    let d = tempfile::tempdir().unwrap();
    let (cfg, [alice, bob]) = config(d.path(), "", "");
    let data = d.path().join("data");
    let env = [("TEST_WALLET_PASSPHRASE", PASSPHRASE)];
    let mut h = HubUp::serve(&cfg, &data, CUSTOMER_KEY, &env);
    assert_eq!(h.info["rpc"]["gamma"].as_array().map(Vec::len), Some(2));
    assert_eq!(h.info["rpc"]["delta"].as_array().map(Vec::len), Some(2));
    let names = h.network_names();
    assert!(
        names.iter().any(|n| n == "gamma") && names.iter().any(|n| n == "delta"),
        "{names:?}"
    );

    // A two-phase transfer between the two provisioned networks, through the hub.
    let (g_a, g_b) = (
        balance(&data, "gamma", &alice),
        balance(&data, "gamma", &bob),
    );
    let (d_a, d_b) = (
        balance(&data, "delta", &alice),
        balance(&data, "delta", &bob),
    );
    let (code, v) = h.post(
        "/v1/transfers",
        "serve-t1",
        &transfer(&alice, &bob, 100, 40),
    );
    assert_eq!(code, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let done = h.wait_terminal("transfers", &id, 120);
    assert_eq!(done["state"], "released", "{done}");
    assert_eq!(balance(&data, "gamma", &alice), g_a - 100);
    assert_eq!(balance(&data, "gamma", &bob), g_b + 100);
    wait_for(60, "delta's release visible on node 0", || {
        (balance(&data, "delta", &alice) == d_a + 40).then_some(())
    });
    assert_eq!(balance(&data, "delta", &bob), d_b - 40);

    // kill -9 one node: the supervisor starts it again (a new pid) on its data directory,
    // and it rejoins its network.
    let old = node_info(&data, "gamma", 1).unwrap()["pid"]
        .as_u64()
        .unwrap();
    kill9(old);
    let new = wait_for(60, "gamma node 1 restarted", || {
        node_info(&data, "gamma", 1)
            .and_then(|v| v["pid"].as_u64())
            .filter(|p| *p != old && alive(*p))
    });
    assert!(!alive(old));
    let head = status_call(status_addr(&data, "gamma", 0), &json!({"cmd": "status"})).unwrap()
        ["height"]
        .as_u64()
        .unwrap();
    wait_for(60, "the restarted node caught up", || {
        status_call(status_addr(&data, "gamma", 1), &json!({"cmd": "status"}))
            .ok()
            .and_then(|s| s["height"].as_u64())
            .filter(|h| *h >= head)
    });

    // kill -9 the hub: no node process outlives it.
    let pids = node_pids(&data);
    assert_eq!(pids.len(), 4);
    assert!(pids.contains(&new));
    h.kill9();
    wait_for(30, "every node process ended with the hub", || {
        pids.iter().all(|p| !alive(*p)).then_some(())
    });

    // A new hub on the same data directory runs the same networks (same record, same keys)
    // and still knows the transfer.
    let record = std::fs::read(data.join("networks/gamma/network.json")).unwrap();
    let mut h = HubUp::serve(&cfg, &data, CUSTOMER_KEY, &env);
    assert_eq!(
        std::fs::read(data.join("networks/gamma/network.json")).unwrap(),
        record
    );
    let (code, v) = h.get(&format!("/v1/transfers/{id}"));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["state"], "released");
    assert_eq!(
        balance(&data, "gamma", &alice),
        g_a - 100,
        "the chain kept its state"
    );
    let pids = node_pids(&data);
    let st = h.terminate();
    assert!(st.success(), "{st}\n{}", h.log_tail());
    wait_for(30, "every node process stopped with the hub", || {
        pids.iter().all(|p| !alive(*p)).then_some(())
    });
}

#[test]
fn config_check_lists_every_problem_of_a_hub_config_at_once() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("loose.api"), "k").unwrap();
    std::fs::set_permissions(
        d.path().join("loose.api"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let bad = r#"data = "data"
[api]
tls_cert = "missing.crt"
tls_key = "missing.key"
rate_limit = 10
rate_burst = 0
cors_origins = ["*", "app.example"]
[[api.key]]
name = "a"
role = "customer"
tenant = "t"
key_file = "loose.api"
[[api.key]]
name = "a"
role = "provider"
tenant = "t"
key_env = "ISTHMUS_TEST_UNSET_VARIABLE"
[wallet]
passphrase_env = "ISTHMUS_TEST_UNSET_PASSPHRASE"
[[provision]]
name = "Gamma"
consensus = "pos"
nodes = 0
[[provision]]
name = "hub"
consensus = "pow"
pos_timeout_ms = 5
[[attach]]
name = "far"
config = "missing.toml"
[[attach.node]]
rpc = "127.0.0.1:1"
id = "isth_notanid"
"#;
    let path = d.path().join("hub.toml");
    std::fs::write(&path, bad).unwrap();
    let out = Command::new(HUB)
        .args(["config", "check"])
        .arg(&path)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "loose.api is readable by others",
        "api.key `a`: the name is used twice",
        "ISTHMUS_TEST_UNSET_VARIABLE is not set",
        "ISTHMUS_TEST_UNSET_PASSPHRASE is not set",
        "provision `Gamma`: name `Gamma`",
        "provision `Gamma`: nodes = 0",
        "network `hub`: the name is used twice (or is `hub`)",
        "pos_timeout_ms applies to consensus = pos only",
        "attach `far`",
        "missing.toml",
        "api: tls certificate",
        "missing.crt` is not a readable file",
        "missing.key` is not a readable file",
        "api: rate limit burst must be at least 1",
        "api: cors origin `app.example`",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }

    // The shipped example is valid once its secrets are in the environment.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/hub.toml");
    let out = Command::new(HUB)
        .args(["config", "check"])
        .arg(&example)
        .env("ISTHMUS_WALLET_PASSPHRASE", PASSPHRASE)
        .env("ISTHMUS_PROVIDER_KEY", "provider-key-for-the-check")
        .env("ISTHMUS_ADMIN_KEY", "admin-key-for-the-check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("gamma (provisioned), delta (provisioned)")
    );
}

/// The relayer config of a packet link per provisioned network, each reading its network's
/// nodes over their RPC and delivering to the hub's packet ingress.
fn relayer_config(dir: &Path, data: &Path, hub: &HubUp, key: &Keypair) -> PathBuf {
    write_secret(&dir.join("relayer.key"), &key.to_hex_seed());
    let mut toml = format!(
        "key_file = \"{}\"\ndata_dir = \"{}\"\n",
        dir.join("relayer.key").display(),
        dir.join("relayer-data").display()
    );
    for net in ["gamma", "delta"] {
        let record: Value = serde_json::from_str(
            &std::fs::read_to_string(data.join(format!("networks/{net}/network.json"))).unwrap(),
        )
        .unwrap();
        toml.push_str(&format!(
            "[[link]]\nname = \"{net}\"\ntransport = \"quic\"\nnetwork = 7100\n\
             hub_addr = \"{}\"\nhub_id = \"{}\"\nreceipt_timeout_ms = 2000\n\
             retry_base_ms = 100\nretry_max_ms = 1000\nidle_poll_ms = 100\n\
             [link.source]\nkind = \"native\"\npoll_ms = 100\nconfig = \"{}\"\n",
            hub.info["relay_ingress"].as_str().unwrap(),
            hub.info["relay_ingress_id"].as_str().unwrap(),
            data.join(format!("networks/{net}/network.toml")).display(),
        ));
        for n in record["nodes"].as_array().unwrap() {
            toml.push_str(&format!(
                "[[link.source.node]]\nrpc = \"{}\"\nid = \"{}\"\n",
                n["rpc"].as_str().unwrap(),
                n["id"].as_str().unwrap()
            ));
        }
    }
    let path = dir.join("relayer.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn start_relayer(config: &Path, log: &Path) -> Reaped {
    let bin = isthmus_adapter_testkit::peers::workspace_bin(
        "isthmus-relayer-cli",
        "relayer",
        &["relayer", "adapters/native", "chain"],
    );
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Reaped(
        Command::new(bin)
            .args(["start", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

#[test]
fn a_standalone_relayer_carries_messages_between_provisioned_networks_exactly_once() {
    let d = tempfile::tempdir().unwrap();
    let relayer_key = Keypair::generate();
    // No relayer in the hub, and the hub would deliver a message itself only after 600 s:
    // every delivery here is the standalone relayer's.
    let (cfg, [alice, bob]) = config(
        d.path(),
        &format!(
            "embedded_relayer = false\nrelayers = [\"{}\"]\nrelay_fallback_secs = 600",
            relayer_key.id()
        ),
        "",
    );
    let data = d.path().join("data");
    let h = HubUp::serve(
        &cfg,
        &data,
        CUSTOMER_KEY,
        &[("TEST_WALLET_PASSPHRASE", PASSPHRASE)],
    );
    let rcfg = relayer_config(d.path(), &data, &h, &relayer_key);
    let rlog = d.path().join("relayer.log");
    let mut relayer = start_relayer(&rcfg, &rlog);
    let send = |i: usize, src: &str, dst: &str| -> String {
        let (code, v) = h.post(
            "/v1/messages",
            &format!("m-{i}"),
            &json!({
                "source": src, "destination": dst,
                "sender": alice.id().to_string(), "recipient": bob.id().to_string(),
                "payload_hex": format!("{i:02x}"), "timeout_secs": 600,
            }),
        );
        assert_eq!(code, 202, "{v}");
        v["id"].as_str().unwrap().to_owned()
    };
    let log_of = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let mut ids = vec![send(0, "gamma", "delta"), send(1, "delta", "gamma")];
    for id in &ids {
        let done = h.wait_terminal("messages", id, 120);
        assert_eq!(done["state"], "acknowledged", "{done}\n{}", log_of(&rlog));
    }
    // kill -9 the relayer with messages committed and not yet carried, then start it again
    // on its data directory: each is delivered, once.
    ids.extend((2..5).map(|i| send(i, "gamma", "delta")));
    relayer.stop();
    ids.extend((5..7).map(|i| send(i, "delta", "gamma")));
    let _relayer = start_relayer(&rcfg, &rlog);
    for id in &ids {
        let done = h.wait_terminal("messages", id, 120);
        assert_eq!(done["state"], "acknowledged", "{done}\n{}", log_of(&rlog));
        assert_eq!(done["legs"][1]["state"], "delivered", "{done}");
    }
    // Exactly once: the ingress forwarded one packet per message (duplicates resent after
    // the kill are answered `duplicate`), each delivered through the relayer path, none by
    // the hub itself.
    let sent = [("gamma", "delta", 4.0), ("delta", "gamma", 3.0)];
    for (src, dst, n) in sent {
        assert_eq!(
            h.metric("hub_ingress_forwarded_total", &[("source", src)]),
            Some(n),
            "{}",
            h.metrics_text()
        );
        assert_eq!(
            h.metric(
                "hub_relayed_deliveries_total",
                &[("source", src), ("destination", dst)]
            ),
            Some(n),
            "{}",
            h.metrics_text()
        );
        assert_eq!(
            h.metric("hub_ingress_proofs_refused_total", &[("source", src)]),
            Some(0.0)
        );
    }
    assert_eq!(
        h.metric("hub_messages_direct_deliveries_total", &[]),
        Some(0.0)
    );
}

#[test]
fn a_transfer_completes_with_a_hub_chain_validator_killed_mid_transfer() {
    let d = tempfile::tempdir().unwrap();
    // The hub chain as 4 validator processes: with one down, the other 3 hold more than
    // 2/3 of the stake and keep deciding.
    let (cfg, [alice, bob]) = config(d.path(), "", "validators = 4");
    let data = d.path().join("data");
    let h = HubUp::serve(
        &cfg,
        &data,
        CUSTOMER_KEY,
        &[("TEST_WALLET_PASSPHRASE", PASSPHRASE)],
    );
    assert_eq!(
        h.info["rpc"]["hub"].as_array().map(Vec::len),
        Some(4),
        "{}",
        h.info
    );
    assert!(
        h.info["status"].get("hub").is_none(),
        "no hub chain in the hub process"
    );
    let g_b = balance(&data, "gamma", &bob);
    let (code, v) = h.post(
        "/v1/transfers",
        "hub-chain-t1",
        &transfer(&alice, &bob, 25, 5),
    );
    assert_eq!(code, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let victim = node_info(&data, "hub", 2).unwrap()["pid"].as_u64().unwrap();
    kill9(victim);
    let done = h.wait_terminal("transfers", &id, 120);
    assert_eq!(done["state"], "released", "{done}");
    assert_eq!(balance(&data, "gamma", &bob), g_b + 25);
    // The decision is on the hub chain: every validator that runs holds it.
    let head = status_call(status_addr(&data, "hub", 0), &json!({"cmd": "status"})).unwrap();
    assert!(head["height"].as_u64().unwrap() > 1, "{head}");
    wait_for(60, "the killed validator back and caught up", || {
        node_info(&data, "hub", 2)
            .and_then(|v| v["pid"].as_u64())
            .filter(|p| *p != victim && alive(*p))
    });
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("solo.toml");
    std::fs::write(
        &cfg,
        "name = \"solo\"\nnetwork_id = 4343\nnodes = 1\nblock_interval_ms = 100\n\
         [consensus]\ntype = \"pos\"\n[[genesis.validator]]\nid = \"dev:solo/node-0\"\nstake = 1\n",
    )
    .unwrap();
    let log = d.path().join("node.log");
    let data = d.path().join("data");
    let mut node = Reaped(
        Command::new(HUB)
            .args(["--log-format", "json", "node", "run", "--config"])
            .arg(&cfg)
            .args(["--index", "0", "--data"])
            .arg(&data)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for(30, "node.json", || {
        data.join("node.json").exists().then_some(())
    });
    wait_for(30, "a few log lines", || {
        (std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
            >= 3)
            .then_some(())
    });
    node.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    let mut started = false;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["target"].is_string(), "{line}");
        started |= v["fields"]["message"] == "node started";
    }
    assert!(started, "no `node started` line in:\n{text}");
    // A format nobody knows is refused before anything runs.
    let out = Command::new(HUB)
        .args(["--log-format", "yaml", "config", "check"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("text or json"));
}
