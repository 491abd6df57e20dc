//! Drives the `isthmus-demo` binary as real processes.

use isthmus_core::Keypair;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEMO: &str = env!("CARGO_BIN_EXE_isthmus-demo");

/// A listener process whose output lines are collected as they come.
struct Listener {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Listener {
    fn start(transport: &str, allow: &[String]) -> Listener {
        let mut cmd = Command::new(DEMO);
        cmd.args([
            "listen",
            "--transport",
            transport,
            "--bind",
            "127.0.0.1:0",
            "--key-seed",
            "alice",
        ]);
        for id in allow {
            cmd.args(["--allow", id]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for reader in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(reader).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Listener { child, lines }
    }

    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| pred(l)) {
                return l.clone();
            }
            assert!(
                Instant::now() < end,
                "listener never printed {what}: {:?}",
                self.lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // only the process this test started, by its handle
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send(transport: &str, to: &str, seed: &str) -> std::process::Output {
    Command::new(DEMO)
        .args([
            "send",
            "--transport",
            transport,
            "--to",
            to,
            "--key-seed",
            seed,
            "--count",
            "3",
        ])
        .output()
        .unwrap()
}

#[test]
fn demo_exchanges_signed_messages_and_refuses_a_stranger() {
    let (alice, bob, carol) = (
        Keypair::dev("alice").id(),
        Keypair::dev("bob").id(),
        Keypair::dev("carol").id(),
    );
    for transport in ["quic", "tcp", "udp"] {
        let listener = Listener::start(transport, &[bob.to_string()]);
        let banner = listener.wait_for("its address", |l| l.starts_with("listening on "));
        let addr = banner.split_whitespace().nth(2).unwrap().to_owned();
        assert!(banner.contains(&alice.to_string()), "{banner}");

        let ok = send(transport, &addr, "bob");
        let stdout = String::from_utf8_lossy(&ok.stdout);
        assert!(
            ok.status.success(),
            "{transport}: bob failed: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        assert!(
            stdout.contains(&format!("connected to {alice}")),
            "{stdout}"
        );
        assert_eq!(stdout.matches("(signature ok)").count(), 3, "{stdout}");
        listener.wait_for("bob connecting", |l| {
            l.starts_with(&format!("connected: {bob}"))
        });
        listener.wait_for("bob's third message", |l| {
            l.contains("hello #3") && l.contains("signature ok")
        });

        let refused = send(transport, &addr, "carol");
        assert!(!refused.status.success(), "{transport}: carol was let in");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("refused"), "{transport}: {stderr}");
        if transport != "quic" {
            // Noise transports carry the listener's authenticated reason
            assert!(
                stderr.contains("not on the allowlist"),
                "{transport}: {stderr}"
            );
        }
        let line = listener.wait_for("carol's refusal", |l| l.contains("refused handshake"));
        assert!(line.contains(&carol.to_string()), "{line}");
    }
}
