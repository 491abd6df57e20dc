//! `kill -9` trials on a real `hub up`: transfers are submitted over HTTP while the hub is
//! killed at a random moment (during a POST, between POSTs, while locks, decisions or
//! releases are in flight); the hub restarts on the same data dir and a DApp retries its
//! unanswered POSTs with the same `Idempotency-Key`. Then every transfer must end fully
//! released or fully refunded, never both and never stuck, which is checked on chain: each
//! leg's escrow state, the escrow module's holdings and the demo accounts' balances.

use crate::harness::wait_for;
use crate::uphub::{self, HubUp};
use isthmus_lock_contracts::LegId;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Sent {
    id: String,
    a: u64,
    b: u64,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Totals {
    alpha: (u64, u64),
    beta: (u64, u64),
}

fn totals(h: &HubUp) -> Totals {
    Totals {
        alpha: (h.bal("alpha", "alice"), h.bal("alpha", "bob")),
        beta: (h.bal("beta", "alice"), h.bal("beta", "bob")),
    }
}

/// Wait until every transfer is terminal, then check each one on chain and the balances.
fn check_all(h: &HubUp, sent: &[Sent], start: &Totals, after_trial: u64) {
    let mut released_a = 0u64;
    let mut released_b = 0u64;
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for s in sent {
        let v = h.wait_terminal("transfers", &s.id, 120);
        let state = v["state"].as_str().unwrap().to_owned();
        let ea = h.escrow("alpha", &s.id, LegId::A);
        let eb = h.escrow("beta", &s.id, LegId::B);
        let st = |e: &Value| e["status"].as_str().unwrap_or("none").to_owned();
        let (sa, sb) = (st(&ea), st(&eb));
        let ctx = format!(
            "trial ≤{after_trial}, transfer {}: api {state}, alpha {sa}, beta {sb}: {v}",
            s.id
        );
        match state.as_str() {
            "released" => {
                assert_eq!(
                    (sa.as_str(), sb.as_str()),
                    ("released", "released"),
                    "{ctx}"
                );
                released_a += s.a;
                released_b += s.b;
            }
            "refunded" | "expired" => {
                for x in [&sa, &sb] {
                    assert!(x == "refunded" || x == "none", "{ctx}");
                }
            }
            other => panic!("unexpected terminal state `{other}`: {ctx}"),
        }
        *outcomes.entry(state).or_default() += 1;
    }
    assert_eq!(h.escrowed("alpha"), 0, "alpha escrow still holds funds");
    assert_eq!(h.escrowed("beta"), 0, "beta escrow still holds funds");
    let now = totals(h);
    assert_eq!(now.alpha.0, start.alpha.0 - released_a, "alice on alpha");
    assert_eq!(now.alpha.1, start.alpha.1 + released_a, "bob on alpha");
    assert_eq!(now.beta.1, start.beta.1 - released_b, "bob on beta");
    assert_eq!(now.beta.0, start.beta.0 + released_b, "alice on beta");
    eprintln!(
        "after trial {after_trial}: {} transfers, {outcomes:?}",
        sent.len()
    );
}

#[test]
fn up_kill9_trials_every_transfer_ends_released_or_refunded() {
    let trials = env_u64("HUB_UP_TRIALS", 50);
    let seed = env_u64(
        "HUB_UP_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1,
    );
    eprintln!("kill -9 trials: {trials}, seed {seed} (HUB_UP_SEED reproduces the schedule)");
    let mut rng = Rng(seed);
    let d = tempfile::tempdir().unwrap();
    let mut h = HubUp::start(&d.path().join("hub"), &["--release-window-secs", "8"]);
    let start = totals(&h);
    let mut sent: Vec<Sent> = Vec::new();
    for trial in 1..=trials {
        let pid = h.pid().unwrap();
        let delay = Duration::from_millis(rng.below(1000));
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            // By pid, the process this test started.
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        });
        let mut unanswered = Vec::new();
        for i in 0..3u64 {
            let (a, b) = (1 + rng.below(500), 1 + rng.below(500));
            // Mixed timeouts and lockers: some release, some refund, some race the deadline.
            let (timeout, by) = match rng.below(4) {
                0 => (1 + rng.below(2), "owner"),
                1 => (1 + rng.below(3), "hub_wallet"),
                _ => (30, "hub_wallet"),
            };
            let body = uphub::transfer(&h, a, b, timeout, by);
            let key = format!("trial-{trial}-{i}");
            match h.try_post("/v1/transfers", &key, &body) {
                Some((code, v)) if code == 202 || code == 200 => sent.push(Sent {
                    id: v["id"].as_str().unwrap().to_owned(),
                    a,
                    b,
                }),
                Some((code, v)) => panic!("transfer refused ({code}): {v}"),
                None => unanswered.push((key, body, a, b)),
            }
            std::thread::sleep(Duration::from_millis(rng.below(200)));
        }
        killer.join().unwrap();
        let t0 = std::time::Instant::now();
        h.restart();
        eprintln!(
            "trial {trial}: killed after {delay:?}, restarted in {:?}",
            t0.elapsed()
        );
        // The DApp retries what went unanswered, with the same key and body.
        for (key, body, a, b) in unanswered {
            let (code, v) = h.post("/v1/transfers", &key, &body);
            assert!(code == 202 || code == 200, "retry of {key}: {code} {v}");
            sent.push(Sent {
                id: v["id"].as_str().unwrap().to_owned(),
                a,
                b,
            });
        }
        if trial % 25 == 0 || trial == trials {
            check_all(&h, &sent, &start, trial);
        }
    }
    // The journal and the chains agree on the set of transfers after all restarts.
    let listed = wait_for(10, "the transfer list", || {
        let (code, v) = h.get("/v1/transfers?limit=200");
        (code == 200).then_some(v)
    });
    let n = listed["items"].as_array().map_or(0, Vec::len);
    assert_eq!(n, sent.len(), "every acknowledged transfer is listed once");
}
