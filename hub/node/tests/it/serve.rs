//! `hub serve --config` with provisioned networks, as an operator runs it: the hub starts
//! each network's nodes as `hub node run` processes, links them over their authenticated
//! RPC, moves value between them, restarts a node killed with `kill -9`, leaves no node
//! process behind when it is itself killed with `kill -9`, and resumes on its data
//! directory; and `hub config check` lists every problem of a bad config at once.

use crate::harness::{status_call, wait_for, HUB};
use crate::uphub::HubUp;
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
/// nodes), both funding alice and bob, whose keys the hub wallet holds.
fn config(dir: &Path) -> (PathBuf, [Keypair; 2]) {
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
key_file = "customer.api"
[hub_chain]
block_interval_ms = 100
[interop]
htlc_delta_secs = 2
release_window_secs = 3
[wallet]
passphrase_env = "TEST_WALLET_PASSPHRASE"
[[wallet.account]]
label = "alice"
key_file = "alice.key"
[[wallet.account]]
label = "bob"
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
    let (cfg, [alice, bob]) = config(d.path());
    let data = d.path().join("data");
    let env = [("TEST_WALLET_PASSPHRASE", PASSPHRASE)];
    let mut h = HubUp::serve(&cfg, &data, CUSTOMER_KEY, &env);
    assert_eq!(h.info["rpc"]["gamma"].as_array().map(Vec::len), Some(2));
    assert_eq!(h.info["rpc"]["delta"].as_array().map(Vec::len), Some(2));
    let (code, nets) = h.get("/v1/networks");
    assert_eq!(code, 200, "{nets}");
    let names: Vec<&str> = nets
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    assert!(
        names.contains(&"gamma") && names.contains(&"delta"),
        "{nets}"
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
    let body = json!({
        "source":  {"network": "gamma", "asset": "native", "amount": "100",
                    "from": alice.id().to_string(), "to": bob.id().to_string()},
        "counter": {"network": "delta", "asset": "native", "amount": "40",
                    "from": bob.id().to_string(), "to": alice.id().to_string(),
                    "lock_by": "hub_wallet"},
        "timeout_secs": 120
    });
    let (code, v) = h.post("/v1/transfers", "serve-t1", &body);
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
[[api.key]]
name = "a"
role = "customer"
key_file = "loose.api"
[[api.key]]
name = "a"
role = "provider"
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
