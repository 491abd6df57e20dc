//! `hub up` end to end, multi-process: the demo, the printed curl commands, two-phase
//! transfers and HTLC swaps over HTTP with balances and escrows checked on both chains,
//! refund paths, API roles, start-up refusals, and `kill -9` trials.

use crate::harness::wait_for;
use crate::uphub::{self, HubUp};
use isthmus_lock_contracts::LegId;
use serde_json::Value;
use std::process::Command;

/// Run `sh -c CMD` (a printed curl command with $ISTHMUS and $KEY set); parse its stdout.
fn sh_json(h: &HubUp, cmd: &str) -> Value {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .env("ISTHMUS", h.api())
        .env("KEY", h.key())
        .output()
        .expect("sh and curl are installed");
    assert!(out.status.success(), "`{cmd}` failed: {out:?}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("`{cmd}` printed no JSON ({e}): {out:?}"))
}

#[test]
fn up_demo_completes_and_printed_curl_commands_work_then_restart_resumes() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("hub");
    let mut h = HubUp::start(&data, &["--demo"]);
    let text = wait_for(240, "the demo to complete", || {
        let t = h.log_text();
        assert!(!t.contains("the demo failed"), "{}", h.log_tail());
        t.contains("demo complete").then_some(t)
    });
    for step in [
        "POST /v1/transfers",
        "released",
        "POST /v1/swaps",
        "completed",
        "balances before",
        "POST /v1/messages",
        "acknowledged",
        "relayer link alpha->hub: 1 delivered",
    ] {
        assert!(text.contains(step), "demo output lacks `{step}`:\n{text}");
    }
    // The curl commands of the banner, exactly as printed.
    let curls: Vec<&str> = text.lines().filter(|l| l.starts_with("curl ")).collect();
    assert_eq!(curls.len(), 5, "{text}");
    let nets = sh_json(&h, curls[0]);
    assert_eq!(nets.as_array().map(Vec::len), Some(2), "{nets}");
    let alice0 = h.bal("alpha", "alice");
    let created = sh_json(&h, curls[1]);
    let id = created["id"].as_str().unwrap().to_owned();
    let done = sh_json(&h, &curls[2].replace("TRANSFER_ID", &id));
    assert_eq!(done["state"], "released", "{done}");
    assert_eq!(h.bal("alpha", "alice"), alice0 - 100);
    let created = sh_json(&h, curls[3]);
    let sid = created["id"].as_str().unwrap().to_owned();
    let done = sh_json(&h, &curls[4].replace("SWAP_ID", &sid));
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(h.bal("alpha", "alice"), alice0 - 100 - 5);

    // A second hub on the same data dir, or on a taken port, is refused with a clear error.
    let other_log = d.path().join("second.log");
    let st = HubUp::spawn_raw(&data, "127.0.0.1:0", &other_log)
        .wait()
        .unwrap();
    assert!(!st.success());
    let msg = std::fs::read_to_string(&other_log).unwrap();
    assert!(msg.contains("locked by another hub"), "{msg}");
    assert!(msg.contains(&h.pid().unwrap().to_string()), "{msg}");
    let taken = h.info["api"].as_str().unwrap().to_owned();
    let st = HubUp::spawn_raw(&d.path().join("other"), &taken, &other_log)
        .wait()
        .unwrap();
    assert!(!st.success());
    let msg = std::fs::read_to_string(&other_log).unwrap();
    assert!(msg.contains("already in use"), "{msg}");

    // Ctrl-C/SIGTERM stops cleanly; a restart resumes from the data dir.
    let st = h.terminate();
    assert!(st.success(), "{st}\n{}", h.log_tail());
    assert!(h.log_text().contains("hub stopped"));
    // Without `--demo` this time: a second demo would move alice's balance meanwhile.
    h.args.retain(|a| a != "--demo");
    h.restart();
    let (code, v) = h.get(&format!("/v1/transfers/{id}"));
    assert_eq!(code, 200);
    assert_eq!(v["state"], "released");
    assert_eq!(
        h.bal("alpha", "alice"),
        alice0 - 100 - 5,
        "the chains resume too"
    );
}

#[test]
fn up_transfers_swaps_refunds_and_roles_over_http() {
    let d = tempfile::tempdir().unwrap();
    // The hub would deliver a message itself only after 600 s: within this test, every
    // delivery is the relayer's.
    let h = HubUp::start(
        &d.path().join("hub"),
        &[
            "--htlc-delta-secs",
            "2",
            "--release-window-secs",
            "3",
            "--relay-fallback-secs",
            "600",
        ],
    );
    let (a0, b0) = (h.bal("alpha", "alice"), h.bal("alpha", "bob"));
    let (ba0, bb0) = (h.bal("beta", "alice"), h.bal("beta", "bob"));

    // 1. Two-phase alpha → beta: both released, balances moved on both networks.
    let (code, v) = h.post(
        "/v1/transfers",
        "t-1",
        &uphub::transfer(&h, 100, 40, 60, "hub_wallet"),
    );
    assert_eq!(code, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let done = h.wait_terminal("transfers", &id, 90);
    assert_eq!(done["state"], "released", "{done}");
    assert_eq!(done["detail"]["decision"], "validated");
    assert_eq!(h.bal("alpha", "alice"), a0 - 100);
    assert_eq!(h.bal("alpha", "bob"), b0 + 100);
    assert_eq!(h.bal("beta", "bob"), bb0 - 40);
    assert_eq!(h.bal("beta", "alice"), ba0 + 40);
    assert_eq!(h.escrow("alpha", &id, LegId::A)["status"], "released");
    assert_eq!(h.escrow("beta", &id, LegId::B)["status"], "released");
    assert_eq!(h.escrowed("alpha"), 0);
    assert_eq!(h.escrowed("beta"), 0);
    // Every transition of the transfer is anchored on the hub chain (creation = seq 0).
    wait_for(
        30,
        "the transfer's transitions anchored on the hub chain",
        || (0..=5).all(|seq| h.anchored(&id, seq)).then_some(()),
    );

    // 1b. Messages alpha → beta and beta → alpha: committed on the source, carried by the
    // in-process relayer over QUIC to the hub's ingress, delivered once on the destination
    // under the hub's attestation, the acknowledgement settled back on the source.
    for (i, (src, dst, from, to)) in [
        ("alpha", "beta", "alice", "bob"),
        ("beta", "alpha", "bob", "alice"),
    ]
    .into_iter()
    .enumerate()
    {
        let (code, v) = h.post(
            "/v1/messages",
            &format!("m-{i}"),
            &serde_json::json!({
                "source": src,
                "destination": dst,
                "sender": h.account(from),
                "recipient": h.account(to),
                "payload_hex": "68656c6c6f",
                "timeout_secs": 300,
            }),
        );
        assert_eq!(code, 202, "{v}");
        let mid = v["id"].as_str().unwrap().to_owned();
        let done = h.wait_terminal("messages", &mid, 90);
        assert_eq!(done["state"], "acknowledged", "{done}");
        assert_eq!(done["legs"][1]["state"], "delivered", "{done}");
        assert_eq!(done["detail"]["sequence"], 1, "{done}");
        // It went through the relayer with its proof: the link's one packet was delivered at the ingress
        // (never refused), forwarded once and delivered on the destination for it; the hub
        // delivered nothing itself, and the link's backlog drains.
        let link = [("link", src)];
        assert_eq!(h.metric("relayer_delivered_total", &link), Some(1.0));
        // Accepted by light-client proof (no key vouched for it), and no proof was refused.
        assert!(
            h.metric("hub_ingress_proven_total", &[("source", src)]) >= Some(1.0),
            "{}",
            h.metrics_text()
        );
        assert_eq!(
            h.metric("hub_ingress_proofs_refused_total", &[("source", src)]),
            Some(0.0)
        );
        assert!(h.metric("relayer_relayed_total", &link) >= Some(1.0));
        assert_eq!(h.metric("relayer_failed_total", &link), Some(0.0));
        assert_eq!(
            h.metric("hub_ingress_forwarded_total", &[("source", src)]),
            Some(1.0)
        );
        assert_eq!(
            h.metric(
                "hub_relayed_deliveries_total",
                &[("source", src), ("destination", dst)]
            ),
            Some(1.0),
            "{}",
            h.metrics_text()
        );
        assert_eq!(
            h.metric("hub_messages_direct_deliveries_total", &[]),
            Some(0.0)
        );
        wait_for(30, "the relayer's backlog to drain", || {
            (h.metric("relayer_backlog", &link) == Some(0.0)).then_some(())
        });
    }

    // 2. The counterparty never locks: after the deadline both sides are refunded.
    let (a1, bb1) = (h.bal("alpha", "alice"), h.bal("beta", "bob"));
    let (code, v) = h.post(
        "/v1/transfers",
        "t-2",
        &uphub::transfer(&h, 30, 20, 3, "owner"),
    );
    assert_eq!(code, 202, "{v}");
    let id2 = v["id"].as_str().unwrap().to_owned();
    let done = h.wait_terminal("transfers", &id2, 90);
    assert_eq!(done["state"], "refunded", "{done}");
    assert_eq!(done["detail"]["decision"], "aborted");
    assert_eq!(h.escrow("alpha", &id2, LegId::A)["status"], "refunded");
    assert_eq!(
        h.escrow("beta", &id2, LegId::B),
        Value::Null,
        "never locked"
    );
    assert_eq!(h.bal("alpha", "alice"), a1);
    assert_eq!(h.bal("beta", "bob"), bb1);
    assert_eq!(h.escrowed("alpha"), 0);

    // 3. HTLC swap with a hub-held secret completes.
    let (a2, b2, ba2, bb2) = (
        h.bal("alpha", "alice"),
        h.bal("alpha", "bob"),
        h.bal("beta", "alice"),
        h.bal("beta", "bob"),
    );
    let (code, v) = h.post("/v1/swaps", "s-1", &uphub::swap(&h, 120, 60, "hub_wallet"));
    assert_eq!(code, 202, "{v}");
    let sid = v["id"].as_str().unwrap().to_owned();
    let done = h.wait_terminal("swaps", &sid, 90);
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(h.bal("alpha", "bob"), b2 + 5);
    assert_eq!(h.bal("alpha", "alice"), a2 - 5);
    assert_eq!(h.bal("beta", "alice"), ba2 + 7);
    assert_eq!(h.bal("beta", "bob"), bb2 - 7);
    assert_eq!(h.escrow("alpha", &sid, LegId::A)["status"], "claimed");
    assert_eq!(h.escrow("beta", &sid, LegId::B)["status"], "claimed");

    // 4. HTLC refund path: the participant never locks; the initiator is refunded at T1.
    let a3 = h.bal("alpha", "alice");
    let (code, v) = h.post("/v1/swaps", "s-2", &uphub::swap(&h, 5, 2, "owner"));
    assert_eq!(code, 202, "{v}");
    let sid2 = v["id"].as_str().unwrap().to_owned();
    let done = h.wait_terminal("swaps", &sid2, 90);
    assert_eq!(done["state"], "refunded", "{done}");
    assert_eq!(h.escrow("alpha", &sid2, LegId::A)["status"], "refunded");
    assert_eq!(h.bal("alpha", "alice"), a3);
    assert_eq!(h.escrowed("alpha"), 0);
    assert_eq!(h.escrowed("beta"), 0);

    // 5. A missing or wrong key gets 401, the wrong role 403; nothing changes.
    let (_, before) = h.get("/v1/transfers?limit=100");
    let (_, health0) = h.get("/v1/health");
    let bal = (h.bal("alpha", "alice"), h.bal("beta", "bob"));
    let body = uphub::transfer(&h, 1, 1, 60, "hub_wallet");
    let (code, e) = h.post_as(None, "/v1/transfers", "x-1", &body);
    assert_eq!(code, 401, "{e}");
    let (code, e) = h.post_as(Some("isk_dev_wrong"), "/v1/transfers", "x-2", &body);
    assert_eq!(code, 401, "{e}");
    let (code, e) = h.post_as(Some(&h.provider_key()), "/v1/transfers", "x-3", &body);
    assert_eq!(code, 403, "{e}");
    let (code, e) = h.post_as(
        Some(&h.provider_key()),
        "/v1/swaps",
        "x-4",
        &uphub::swap(&h, 120, 60, "hub_wallet"),
    );
    assert_eq!(code, 403, "{e}");
    assert!(e["code"].is_string() && e["message"].is_string(), "{e}");
    // The admin key `hub up` prints makes keys for other tenants (`hub keys`): they move
    // none of the demo tenant's accounts and read none of its operations.
    assert_eq!(h.info["tenant"], "demo");
    let out = Command::new(env!("CARGO_BIN_EXE_hub"))
        .args(["keys", "create", "--tenant", "other", "--role", "customer"])
        .env("ISTHMUS_HUB", h.api())
        .env("ISTHMUS_KEY", h.admin_key())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let other = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let (code, e) = h.post_as(Some(&other), "/v1/transfers", "x-5", &body);
    assert_eq!(code, 403, "{e}");
    let (code, page) = h.get_as(&other, "/v1/transfers?limit=100");
    assert_eq!(code, 200, "{page}");
    assert_eq!(page["items"], serde_json::json!([]));
    let (code, _) = h.get_as(&other, &format!("/v1/transfers/{id}"));
    assert_eq!(code, 404);
    let (_, after) = h.get("/v1/transfers?limit=100");
    let (_, health1) = h.get("/v1/health");
    assert_eq!(before, after, "a refused request created an operation");
    assert_eq!(health0["last_event_seq"], health1["last_event_seq"]);
    // A transfer after the refused ones moves exactly its own amounts: none of the refused
    // requests locked anything behind the API's back.
    let (code, v) = h.post(
        "/v1/transfers",
        "t-3",
        &uphub::transfer(&h, 3, 2, 60, "hub_wallet"),
    );
    assert_eq!(code, 202, "{v}");
    let done = h.wait_terminal("transfers", v["id"].as_str().unwrap(), 90);
    assert_eq!(done["state"], "released", "{done}");
    assert_eq!(
        (bal.0 - 3, bal.1 - 2),
        (h.bal("alpha", "alice"), h.bal("beta", "bob"))
    );
    assert_eq!(h.escrowed("alpha"), 0);
}
