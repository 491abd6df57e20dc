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
