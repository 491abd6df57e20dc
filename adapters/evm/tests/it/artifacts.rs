//! The checked-in ABI and bytecode are what solc-js makes of the Solidity sources today.
//! `ISTHMUS_BLESS=1` rewrites `lock-contracts/evm/artifacts.json` from the fresh compile.

use isthmus_adapter_evm::anvil::peers_dir;
use isthmus_adapter_evm::contracts::{standard_json_input, Artifact, Artifacts};
use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn checked_in_artifacts_match_a_fresh_solc_js_compile() {
    let solc = peers_dir().join("bin/solc");
    assert!(
        solc.exists(),
        "{} missing: run scripts/install-peers.sh --only solc",
        solc.display()
    );
    let mut child = Command::new(&solc)
        .arg("--standard-json")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input = serde_json::to_vec(&standard_json_input()).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "solc failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors: Vec<_> = v["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["severity"] == "error" || e["severity"] == "warning")
        .map(|e| e["formattedMessage"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        errors.is_empty(),
        "solc diagnostics:\n{}",
        errors.join("\n")
    );
    let names = [
        ("IsthmusEscrow.sol", "IsthmusEscrow"),
        ("IsthmusHtlc.sol", "IsthmusHtlc"),
        ("TestToken.sol", "TestToken"),
    ];
    if std::env::var_os("ISTHMUS_BLESS").is_some() {
        let contracts = names
            .iter()
            .map(|(file, contract)| {
                let fresh = &v["contracts"][file][contract];
                let art = Artifact {
                    abi: fresh["abi"].clone(),
                    bytecode: format!("0x{}", fresh["evm"]["bytecode"]["object"].as_str().unwrap()),
                };
                ((*contract).to_owned(), art)
            })
            .collect();
        let all = Artifacts {
            compiler: "solc-js 0.8.28, optimizer 200 runs, evm cancun, no metadata hash".into(),
            contracts,
        };
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../lock-contracts/evm/artifacts.json"
        );
        std::fs::write(path, serde_json::to_string_pretty(&all).unwrap() + "\n").unwrap();
        return;
    }
    let checked_in = Artifacts::load().unwrap();
    for (file, contract) in names {
        let fresh = &v["contracts"][file][contract];
        let art = &checked_in.contracts[contract];
        assert_eq!(
            format!("0x{}", fresh["evm"]["bytecode"]["object"].as_str().unwrap()),
            art.bytecode,
            "{contract}: bytecode differs from a fresh compile; rerun with ISTHMUS_BLESS=1"
        );
        assert_eq!(fresh["abi"], art.abi, "{contract}: abi differs");
    }
}

/// Slither (a real Solidity auditor) finds nothing of medium or high impact in the lock
/// contracts beyond what is acknowledged here, with the reason.
#[test]
fn slither_finds_no_unacknowledged_medium_or_high_issue() {
    let slither = peers_dir().join("venv/bin/slither");
    assert!(
        slither.exists(),
        "{} missing: run scripts/install-peers.sh --only slither",
        slither.display()
    );
    // (check, function, why it stands)
    let acknowledged = [
        (
            "reentrancy-balance",
            "_take",
            "the balance delta spans the token's transferFrom; every caller holds nonReentrant, so nothing re-enters the escrow between the two reads",
        ),
        (
            "incorrect-equality",
            "_take",
            "strict equality is the point: a fee-taking token would make escrowed differ from locked",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut sources = serde_json::Map::new();
    for (name, text) in isthmus_adapter_evm::contracts::SOURCES {
        std::fs::write(dir.path().join(name), text).unwrap();
        sources.insert((*name).to_owned(), serde_json::json!({ "content": text }));
    }
    let input = serde_json::json!({
        "language": "Solidity",
        "sources": sources,
        "settings": { "outputSelection": { "*": {
            "*": ["abi", "evm.bytecode", "evm.deployedBytecode"], "": ["ast"]
        } } }
    });
    std::fs::write(dir.path().join("input.json"), input.to_string()).unwrap();
    let out = Command::new(&slither)
        .current_dir(dir.path())
        .arg("input.json")
        .args(["--compile-force-framework", "solc-json", "--solc"])
        .arg(peers_dir().join("bin/solc"))
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
    let mut unexpected = Vec::new();
    for d in v["results"]["detectors"].as_array().unwrap() {
        if !matches!(d["impact"].as_str(), Some("High" | "Medium")) {
            continue;
        }
        let check = d["check"].as_str().unwrap_or("");
        let functions: Vec<&str> = d["elements"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["type"] == "function")
            .filter_map(|e| e["name"].as_str())
            .collect();
        let known = acknowledged
            .iter()
            .any(|(c, f, _)| *c == check && functions.contains(f));
        if !known {
            unexpected.push(format!("{check}: {}", d["description"]));
        }
    }
    assert!(
        unexpected.is_empty(),
        "new slither findings:\n{}",
        unexpected.join("\n")
    );
}
