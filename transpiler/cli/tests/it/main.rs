//! Runs `xcl test` (every target: solc-js + vyper on revm, Wasm on wasmi) over the lock
//! contracts and the differential corpus, and `xcl audit` over the lock contracts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly by design
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

mod audit;

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

/// The lock contracts and the example DApp (the II.2 music-rights registry).
fn deliverables() -> Vec<String> {
    [
        "lock-contracts/xcl/htlc.xcl",
        "lock-contracts/xcl/escrow.xcl",
        "transpiler/examples/music_rights.xcl",
    ]
    .iter()
    .map(|p| root().join(p).display().to_string())
    .collect()
}

/// `xcl test` compiles each with solc-js and vyper 0.4.3, validates the Wasm on wasmi, and
/// plays the vectors on all three.
#[test]
fn lock_contracts_and_example_dapp_agree_on_every_target() {
    let files = deliverables();
    let mut args = vec!["test"];
    args.extend(files.iter().map(String::as_str));
    let (code, text) = xcl(&args);
    assert_eq!(code, 0, "xcl test failed:\n{text}");
    assert!(
        text.contains("total: 3 contract(s), ") && text.contains(" 0 failed"),
        "{text}"
    );
    assert!(
        text.contains("music_rights.xcl: 19 passed, 0 failed"),
        "{text}"
    );
}

#[test]
fn build_writes_all_three_targets_with_source_maps() {
    let dir = tempfile::tempdir().unwrap();
    for f in deliverables() {
        let (code, text) = xcl(&["build", &f, "--out", dir.path().to_str().unwrap()]);
        assert_eq!(code, 0, "{text}");
    }
    for name in ["Htlc", "Escrow", "MusicRights"] {
        for ext in ["sol", "vy", "wasm"] {
            let out = dir.path().join(format!("{name}.{ext}"));
            let code = std::fs::read(&out).unwrap();
            assert!(!code.is_empty(), "{}", out.display());
            assert!(dir.path().join(format!("{name}.{ext}.map.json")).exists());
            if ext == "wasm" {
                assert_eq!(&code[..4], b"\0asm");
            } else {
                let text = String::from_utf8(code).unwrap();
                assert!(text.contains(".xcl"), "{}: no source header", out.display());
            }
        }
    }
}

#[test]
fn lock_contracts_and_example_dapp_have_no_high_findings() {
    for f in deliverables() {
        let (code, text) = xcl(&["audit", &f]);
        assert_eq!(code, 0, "{text}");
        assert!(!text.contains(" high "), "{text}");
    }
}

fn corpus() -> Vec<PathBuf> {
    let dir = root().join("transpiler/tests/corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "xcl"))
        .collect();
    files.sort();
    files
}

/// The whole corpus in one `xcl test` run (one solc-js and one vyper invocation), shared by
/// the tests that read its report.
fn corpus_run() -> &'static (i32, String) {
    static RUN: OnceLock<(i32, String)> = OnceLock::new();
    RUN.get_or_init(|| {
        let files = corpus();
        let args: Vec<&str> = std::iter::once("test")
            .chain(files.iter().map(|p| p.to_str().unwrap()))
            .collect();
        xcl(&args)
    })
}

#[test]
fn corpus_agrees_on_every_target() {
    let files = corpus();
    assert!(files.len() >= 30, "corpus has {} contracts", files.len());
    let (code, text) = corpus_run();
    assert_eq!(*code, 0, "{text}");
    let total = format!("total: {} contract(s), ", files.len());
    assert!(
        text.contains(&total) && text.contains(" 0 failed"),
        "{text}"
    );
    for f in &files {
        assert!(
            text.contains(&format!("{}: ", f.display())),
            "no result for {}",
            f.display()
        );
    }
}

/// Infinite and deep-runaway execution stops on every target, each saying why.
#[test]
fn runaway_stops_on_every_target_with_the_reason() {
    let (_, all) = corpus_run();
    // runaway.xcl's step lines sit between the previous file's summary and its own.
    let end = all.find("runaway.xcl: ").expect("runaway.xcl ran");
    let start = all[..end].rfind(" failed\n").unwrap_or(0);
    let text = &all[start..end];
    for call in ["forever()", "deep(1000)"] {
        let at = text
            .find(&format!("{call} from alice: out-of-gas"))
            .unwrap_or_else(|| panic!("{call} did not run out of gas:\n{text}"));
        let block: Vec<&str> = text[at..].lines().skip(1).take(3).collect();
        assert!(
            block[0].contains("solidity: evm halted: out of gas"),
            "{text}"
        );
        assert!(block[1].contains("vyper: evm halted: out of gas"), "{text}");
        assert!(
            block[2].contains("wasm: wasmi stopped: out of fuel"),
            "{text}"
        );
    }
    // The same code with a small bound finishes on every target.
    assert!(
        text.contains("ok   step 1 deep(3) from alice: success"),
        "{text}"
    );
}

/// The attacker really re-enters: without the guard it is paid twice, with it the
/// reentrant call is refused on every target.
#[test]
fn reentrancy_attempts_are_made_and_the_guard_stops_them() {
    let (_, text) = corpus_run();
    assert!(
        text.contains("step 3 withdraw() from attacker: revert: transfer failed"),
        "{text}"
    );
    assert!(
        text.contains("step 3 withdraw() from attacker: success"),
        "{text}"
    );
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

/// `xcl debug` steps the Wasm build statement by statement, with the source line, the
/// locals and the storage (map entries named) at each step.
#[test]
fn debug_steps_with_source_locals_and_storage() {
    let f = root().join("lock-contracts/xcl/escrow.xcl");
    let (code, text) = xcl(&[
        "debug",
        f.to_str().unwrap(),
        "--init",
        "carol",
        "--before",
        "lock(0x01, bob, 2000000) from=alice value=500",
        "--call",
        "release(0x01, 0xaa)",
        "--from",
        "carol",
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("[3] escrow.xcl:49 in release: locks[id].state = 2;"),
        "{text}"
    );
    assert!(
        text.contains("storage changed: locks[1].state = 2"),
        "{text}"
    );
    assert!(text.contains("locals: id = 1, attestation = 170"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn debug_reports_a_revert_at_the_failing_line() {
    let f = root().join("transpiler/tests/corpus/counter.xcl");
    let (code, text) = xcl(&[
        "debug",
        f.to_str().unwrap(),
        "--init",
        "3, 5",
        "--call",
        "inc_by(2)",
    ]);
    assert_eq!(code, 0, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    let last_step = lines.iter().rev().find(|l| l.starts_with('[')).unwrap();
    assert!(
        last_step.contains("counter.xcl:") && last_step.contains("in next: require(n <= limit"),
        "{text}"
    );
    assert_eq!(
        *lines.last().unwrap(),
        "result: revert: limit reached",
        "{text}"
    );
}

/// `xcl bench` times check + build of the lock contracts against solc-js in the same run
/// and prints the ratio.
#[test]
fn bench_reports_xcl_against_solc_js() {
    let files = deliverables();
    let (code, text) = xcl(&[
        "bench",
        &files[0],
        &files[1],
        "--iterations",
        "5",
        "--solc-runs",
        "1",
    ]);
    assert_eq!(code, 0, "{text}");
    let ratio_line = text.lines().find(|l| l.starts_with("ratio:")).unwrap();
    let wall: f64 = ratio_line
        .split("solc-js wall / xcl = ")
        .nth(1)
        .and_then(|r| r.split('x').next())
        .unwrap()
        .parse()
        .unwrap();
    // Orders of magnitude apart (node alone takes longer to start than xcl needs).
    assert!(wall > 1.0, "{text}");
}
