//! Runs `xcl test` (every target: solc-js + vyper on revm, Wasm on wasmi) over the lock
//! contracts and the differential corpus, and `xcl audit` over the lock contracts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly by design
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn peers() -> PathBuf {
    let p = std::env::var_os("ISTHMUS_PEERS").map_or_else(|| root().join(".peers"), PathBuf::from);
    assert!(
        p.join("node/node_modules/solc").exists() && p.join("venv/bin/vyper").exists(),
        "solc-js or vyper missing under {}; run scripts/test.sh, which installs them",
        p.display()
    );
    p
}

fn xcl(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xcl"))
        .args(args)
        .env("ISTHMUS_PEERS", peers())
        .output()
        .expect("run xcl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn run_vectors(file: &Path) {
    let (code, text) = xcl(&["test", file.to_str().unwrap()]);
    assert_eq!(code, 0, "xcl test {} failed:\n{text}", file.display());
    assert!(text.contains(" 0 failed"), "{text}");
}

#[test]
fn lock_contracts_agree_on_every_target() {
    for name in ["htlc", "escrow"] {
        run_vectors(&root().join(format!("lock-contracts/xcl/{name}.xcl")));
    }
}

#[test]
fn lock_contracts_have_no_high_findings() {
    for name in ["htlc", "escrow"] {
        let f = root().join(format!("lock-contracts/xcl/{name}.xcl"));
        let (code, text) = xcl(&["audit", f.to_str().unwrap()]);
        assert_eq!(code, 0, "{text}");
    }
}

#[test]
fn corpus_agrees_on_every_target() {
    let dir = root().join("transpiler/tests/corpus");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "xcl") {
            run_vectors(&p);
            n += 1;
        }
    }
    assert!(n >= 2, "corpus is empty");
}

#[test]
fn check_reports_errors_with_exit_code_1_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.xcl");
    std::fs::write(
        &f,
        "contract C { pub fn f() -> u8 { return 256; } storage x: nope; }",
    )
    .unwrap();
    let (code, text) = xcl(&["check", f.to_str().unwrap(), "--message-format", "json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    let codes: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["XCL0024", "XCL0022"]);
}
