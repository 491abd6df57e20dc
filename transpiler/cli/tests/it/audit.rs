//! The audit test set (`transpiler/tests/audit`): seeded-vulnerable contracts and safe twins,
//! and a cross-check against Slither on their emitted Solidity.

use super::{peers, root, xcl};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

fn audit_set() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("transpiler/tests/audit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "xcl"))
        .collect();
    v.sort();
    v
}

/// `// audit-expect: SWC-107` (seeded) or `// audit-expect: none` (safe twin).
fn expected(src: &str) -> Option<String> {
    let line = src
        .lines()
        .find_map(|l| l.strip_prefix("// audit-expect:"))?;
    let e = line.trim();
    (e != "none").then(|| e.to_string())
}

struct Audited {
    contract: String,
    /// (swc, function) of each finding.
    findings: BTreeSet<(String, String)>,
    /// Functions whose time reads `@timelock` acknowledges.
    acknowledged: BTreeSet<String>,
}

fn audit(file: &PathBuf) -> Audited {
    let (code, text) = xcl(&[
        "audit",
        file.to_str().unwrap(),
        "--message-format",
        "json",
        "--deny",
        "low",
    ]);
    assert!(code == 0 || code == 4, "{text}");
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    let pairs = |k: &str| -> Vec<(String, String)> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["swc"].as_str().unwrap().to_string(),
                    f["function"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let src = std::fs::read_to_string(file).unwrap();
    let contract = src
        .lines()
        .find_map(|l| l.strip_prefix("contract "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    Audited {
        contract,
        findings: pairs("findings").into_iter().collect(),
        acknowledged: pairs("acknowledged").into_iter().map(|(_, f)| f).collect(),
    }
}

#[test]
fn every_seeded_bug_is_found_and_no_safe_twin_is_flagged() {
    let files = audit_set();
    let (mut seeded, mut safe) = (0, 0);
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        let a = audit(f);
        match expected(&src) {
            Some(swc) => {
                seeded += 1;
                assert!(
                    a.findings.iter().any(|(s, _)| *s == swc),
                    "{}: seeded {swc} not found: {:?}",
                    f.display(),
                    a.findings
                );
            }
            None => {
                safe += 1;
                assert!(
                    a.findings.is_empty(),
                    "{}: safe twin flagged: {:?}",
                    f.display(),
                    a.findings
                );
            }
        }
    }
    assert!(seeded >= 5 && safe >= 5, "{seeded} seeded, {safe} safe");
}

/// Slither's checks that this cross-check holds our audit to.
fn category(check: &str) -> Option<&'static str> {
    if check.starts_with("reentrancy") {
        Some("SWC-107")
    } else if check == "timestamp" {
        Some("SWC-116")
    } else {
        None
    }
}

/// Runs Slither (through the solc-js shim) on the emitted Solidity of the whole audit set
/// and the two lock contracts, and requires our audit to report every reentrancy and timestamp finding Slither makes,
/// in the same function (a time read acknowledged by `@timelock` counts as reported).
#[test]
fn audit_finds_every_reentrancy_and_timestamp_finding_slither_makes() {
    let peers = peers();
    let slither = peers.join("venv/bin/slither");
    assert!(
        slither.exists(),
        "slither missing at {}; run scripts/install-peers.sh",
        slither.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut sources = serde_json::Map::new();
    let mut ours = Vec::new();
    let locks = ["htlc", "escrow"].map(|n| root().join(format!("lock-contracts/xcl/{n}.xcl")));
    for f in audit_set().into_iter().chain(locks) {
        let (code, text) = xcl(&[
            "build",
            f.to_str().unwrap(),
            "--target",
            "solidity",
            "--out",
            dir.path().to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{text}");
        let a = audit(&f);
        let sol = format!("{}.sol", a.contract);
        let content = std::fs::read_to_string(dir.path().join(&sol)).unwrap();
        sources.insert(sol, serde_json::json!({ "content": content }));
        ours.push(a);
    }
    let input = serde_json::json!({
        "language": "Solidity",
        "sources": sources,
        "settings": { "outputSelection": { "*": {
            "*": ["abi", "evm.bytecode", "evm.deployedBytecode"], "": ["ast"]
        } } }
    });
    let json = dir.path().join("input.json");
    std::fs::write(&json, input.to_string()).unwrap();
    let out = Command::new(&slither)
        .current_dir(dir.path())
        .arg("input.json")
        .args(["--compile-force-framework", "solc-json", "--solc"])
        .arg(peers.join("bin/solc"))
        .args(["--json", "-"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "slither gave no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(v["success"], true, "{v}");
    // (contract, swc, function, slither check)
    let mut theirs = BTreeSet::new();
    for r in v["results"]["detectors"].as_array().unwrap() {
        let check = r["check"].as_str().unwrap();
        let Some(swc) = category(check) else { continue };
        for e in r["elements"].as_array().unwrap() {
            if e["type"] == "function" {
                let contract = e["type_specific_fields"]["parent"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string();
                // XCL's `init` is the Solidity constructor.
                let func = match e["name"].as_str().unwrap() {
                    "constructor" => "init".to_string(),
                    n => n.to_string(),
                };
                theirs.insert((contract, swc, func, check.to_string()));
            }
        }
    }
    let mut table = vec!["| contract | tool | finding | function |".to_string()];
    table.push("|---|---|---|---|".into());
    let mut missed = Vec::new();
    for a in &ours {
        for (swc, func) in &a.findings {
            table.push(format!("| {} | xcl audit | {swc} | {func} |", a.contract));
        }
        for func in &a.acknowledged {
            table.push(format!(
                "| {} | xcl audit | SWC-116 acknowledged (@timelock) | {func} |",
                a.contract
            ));
        }
        for (c, swc, func, check) in theirs.iter().filter(|t| t.0 == a.contract) {
            table.push(format!("| {c} | slither | {check} ({swc}) | {func} |"));
            let found = a.findings.contains(&(swc.to_string(), func.clone()))
                || (*swc == "SWC-116" && a.acknowledged.contains(func));
            if !found {
                missed.push(format!("{c}.{func}: slither {check}"));
            }
        }
    }
    eprintln!("{}", table.join("\n"));
    assert!(
        !theirs.is_empty(),
        "slither reported nothing in scope; the cross-check would be vacuous"
    );
    assert!(missed.is_empty(), "our audit missed: {missed:?}");
}
