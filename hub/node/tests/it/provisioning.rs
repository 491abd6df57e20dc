//! Networks as API resources on a real `hub up`: a provider orders a PoS network of 4
//! nodes and a PoW network of 3 (`POST /v1/networks`), each node its own process; the hub
//! links them and a customer's two-phase transfer runs between them; a node killed with
//! `kill -9` is shown `down`, then `up` after its restart; a network that an open transfer
//! uses cannot be deleted (`409` naming it); both are deleted and no process stays.

use crate::harness::wait_for;
use crate::uphub::HubUp;
use serde_json::{json, Value};

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

fn spec(h: &HubUp, name: &str, consensus: &str, nodes: usize) -> Value {
    json!({
        "name": name, "platform": "native",
        "consensus": consensus, "nodes": nodes, "block_interval_ms": 300,
        "hardware": {"cpus": 1, "memory_mb": 256, "storage_mb": 512},
        "alloc": {h.account("alice"): "1000000", h.account("bob"): "1000000"}
    })
}

fn wait_status(h: &HubUp, name: &str, want: &str, secs: u64) -> Value {
    wait_for(secs, &format!("network {name} {want}"), || {
        let (code, v) = h.get(&format!("/v1/networks/{name}"));
        assert_eq!(code, 200, "{v}");
        assert_ne!(v["status"], "failed", "{v}\n{}", h.log_tail());
        (v["status"] == want).then_some(v)
    })
}

fn pids(v: &Value) -> Vec<u64> {
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["pid"].as_u64())
        .collect()
}

#[test]
fn providers_order_link_and_delete_networks_through_the_api() {
    let d = tempfile::tempdir().unwrap();
    // Networks ordered at run time have no relayer: the hub delivers their messages itself,
    // here after 1 s.
    let h = HubUp::start(
        &d.path().join("hub"),
        &["--release-window-secs", "2", "--relay-fallback-secs", "1"],
    );
    let provider = h.provider_key();

    // A bad spec: every problem at once, nothing started.
    let (code, v) = h.post_as(
        Some(&provider),
        "/v1/networks",
        "bad",
        &json!({"name": "Bad!", "consensus": "pos", "nodes": 0, "block_interval_ms": 1}),
    );
    assert_eq!(code, 400, "{v}");
    let details = v["details"].to_string();
    for needle in ["name `Bad!`", "nodes = 0", "block_interval_ms = 1"] {
        assert!(details.contains(needle), "missing `{needle}` in {v}");
    }
    // A customer may not order networks.
    let good = spec(&h, "gamma", "pos", 4);
    let (code, v) = h.post("/v1/networks", "c", &good);
    assert_eq!(code, 403, "{v}");
    assert_eq!(h.get("/v1/networks/gamma").0, 404);

    let (code, v) = h.post_as(Some(&provider), "/v1/networks", "g", &good);
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["status"], "provisioning", "{v}");
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(4), "{v}");
    let (code, v) = h.post_as(Some(&provider), "/v1/networks", "g2", &good);
    assert_eq!(code, 409, "a second gamma: {v}");
    let pow = spec(&h, "delta", "pow", 3);
    let (code, v) = h.post_as(Some(&provider), "/v1/networks", "d", &pow);
    assert_eq!(code, 202, "{v}");

    let gamma = wait_status(&h, "gamma", "up", 120);
    wait_status(&h, "delta", "up", 120);
    let names = h.network_names();
    assert!(
        names.iter().any(|n| n == "gamma") && names.iter().any(|n| n == "delta"),
        "{names:?}"
    );

    // A two-phase transfer between the two ordered networks.
    let body = json!({
        "source":  {"network": "gamma", "asset": "native", "amount": "100",
                    "from": h.account("alice"), "to": h.account("bob")},
        "counter": {"network": "delta", "asset": "native", "amount": "40",
                    "from": h.account("bob"), "to": h.account("alice"), "lock_by": "hub_wallet"},
        "timeout_secs": 120
    });
    let (code, v) = h.post("/v1/transfers", "t1", &body);
    assert_eq!(code, 202, "{v}");
    let done = h.wait_terminal("transfers", v["id"].as_str().unwrap(), 120);
    assert_eq!(done["state"], "released", "{done}");
    // And a message from gamma to delta, delivered once and acknowledged back on gamma.
    let (code, v) = h.post(
        "/v1/messages",
        "m1",
        &json!({"source": "gamma", "destination": "delta",
                "sender": h.account("alice"), "recipient": h.account("bob"),
                "payload_hex": "68656c6c6f", "timeout_secs": 300}),
    );
    assert_eq!(code, 202, "{v}");
    let done = h.wait_terminal("messages", v["id"].as_str().unwrap(), 120);
    assert_eq!(done["state"], "acknowledged", "{done}");
    assert_eq!(done["legs"][1]["state"], "delivered", "{done}");

    // kill -9 one node process: `degraded` (the node `down`) until the supervisor has
    // started it again, then `up` with a new pid.
    let victim = pids(&gamma)[1];
    let st = std::process::Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let seen_down = wait_for(30, "the killed node shown down or restarted", || {
        let (_, v) = h.get("/v1/networks/gamma");
        let n = &v["nodes"][1];
        (n["pid"].as_u64() != Some(victim)).then(|| n["restarts"].as_u64().unwrap_or(0))
    });
    let back = wait_status(&h, "gamma", "up", 60);
    assert!(
        !pids(&back).contains(&victim) && pids(&back).len() == 4,
        "{back}"
    );
    assert!(
        seen_down >= 1 || back["nodes"][1]["restarts"].as_u64() >= Some(1),
        "{back}"
    );

    // An open transfer on delta (its counterparty never locks): delete is refused, naming it.
    let mut open = body.clone();
    open["counter"]["lock_by"] = json!("owner");
    open["timeout_secs"] = json!(4);
    let (code, v) = h.post("/v1/transfers", "t2", &open);
    assert_eq!(code, 202, "{v}");
    let open_id = v["id"].as_str().unwrap().to_owned();
    let (code, v) = h.delete_as(&provider, "/v1/networks/delta");
    assert_eq!(code, 409, "{v}");
    assert!(v["details"].to_string().contains(&open_id), "{v}");
    assert_eq!(
        h.get("/v1/networks/delta").1["status"],
        "up",
        "nothing changed"
    );
    let done = h.wait_terminal("transfers", &open_id, 120);
    assert_eq!(done["state"], "refunded", "{done}");

    // A provider of another tenant neither deletes nor sees as its own what demo ordered:
    // 404, as for a network that does not exist, and gamma keeps running.
    let (code, other) = h.post_as(
        Some(&h.admin_key()),
        "/v1/keys",
        "k-other",
        &json!({"tenant": "other", "role": "provider"}),
    );
    assert_eq!(code, 201, "{other}");
    let other = other["key"].as_str().unwrap().to_owned();
    let (code, v) = h.delete_as(&other, "/v1/networks/gamma");
    assert_eq!(code, 404, "{v}");
    assert_eq!(
        h.get("/v1/networks/gamma").1["status"],
        "up",
        "nothing changed"
    );
    let (code, v) = h.post_as(
        Some(&other),
        "/v1/networks",
        "o1",
        &spec(&h, "gamma", "pos", 1),
    );
    assert_eq!(code, 409, "the name is taken across tenants: {v}");

    // Delete both: processes stop; gamma's data is kept, delta's purged.
    let all: Vec<u64> = pids(&h.get("/v1/networks/gamma").1)
        .into_iter()
        .chain(pids(&h.get("/v1/networks/delta").1))
        .collect();
    assert_eq!(all.len(), 7);
    let (code, v) = h.delete_as(&provider, "/v1/networks/gamma");
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "stopped", "{v}");
    let (code, v) = h.delete_as(&provider, "/v1/networks/delta?purge=true");
    assert_eq!(code, 200, "{v}");
    wait_for(30, "every node process ended", || {
        all.iter().all(|p| !alive(*p)).then_some(())
    });
    assert!(h.data.join("networks/gamma/network.json").exists());
    assert!(!h.data.join("networks/delta").exists());
    assert_eq!(h.get("/v1/networks/gamma").1["status"], "stopped");
    assert_eq!(h.get("/v1/networks/delta").0, 404);
}

/// Node pids recorded in the `node.json` files of network `name`.
fn recorded_pids(h: &HubUp, name: &str) -> Vec<u64> {
    let dir = h.data.join("networks").join(name);
    (0..16)
        .filter_map(|i| std::fs::read_to_string(dir.join(format!("node-{i}/node.json"))).ok())
        .filter_map(|s| serde_json::from_str::<Value>(&s).ok())
        .filter_map(|v| v["pid"].as_u64())
        .collect()
}

#[test]
fn a_hub_killed_while_provisioning_completes_or_rolls_back_and_leaves_no_orphan() {
    let trials: u64 = std::env::var("ISTHMUS_PROVISION_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(20);
    let d = tempfile::tempdir().unwrap();
    let mut h = HubUp::start(&d.path().join("hub"), &[]);
    let (mut completed, mut never_ordered) = (0, 0);
    for i in 0..trials {
        let name = format!("n{i}");
        let provider = h.provider_key();
        let body = json!({"name": name, "consensus": if i % 2 == 0 { "pos" } else { "pow" },
                          "nodes": 2, "block_interval_ms": 200});
        // The kill lands anywhere from before the order is answered to after the link.
        let delay = std::time::Duration::from_millis((i * 397) % 2_500);
        let killer = {
            let pid = h.pid().unwrap();
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status()
                    .unwrap();
            })
        };
        let answered = h.try_post_as(&provider, "/v1/networks", &format!("p{i}"), &body);
        killer.join().unwrap();
        h.kill9();
        // No node process outlives the hub that started it.
        let pids = recorded_pids(&h, &name);
        wait_for(30, "node processes ended with the hub", || {
            pids.iter().all(|p| !alive(*p)).then_some(())
        });
        h.restart();
        let (code, v) = h.get(&format!("/v1/networks/{name}"));
        match code {
            // The order was recorded: the new hub finishes it.
            200 => {
                wait_status(&h, &name, "up", 120);
                completed += 1;
            }
            // Never recorded: nothing of it exists.
            404 => {
                assert!(
                    answered.is_none(),
                    "an answered order was lost: {answered:?}"
                );
                assert!(!h
                    .data
                    .join("networks")
                    .join(&name)
                    .join("network.json")
                    .exists());
                never_ordered += 1;
            }
            other => panic!("{other}: {v}"),
        }
        let pids = recorded_pids(&h, &name);
        let (code, v) = h.delete_as(
            &h.provider_key(),
            &format!("/v1/networks/{name}?purge=true"),
        );
        if code == 200 {
            wait_for(30, "the deleted network's processes ended", || {
                pids.iter().all(|p| !alive(*p)).then_some(())
            });
        } else {
            assert_eq!(code, 404, "{v}");
        }
    }
    eprintln!("{trials} kill -9 trials: {completed} completed after restart, {never_ordered} never ordered");
    assert_eq!(completed + never_ordered, trials);
    assert!(
        completed > 0,
        "no trial killed the hub after the order was recorded"
    );
}
