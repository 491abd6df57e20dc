//! Finding and running the external compilers (solc-js and vyper) from the peer directory.

use anyhow::{anyhow, bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `$ISTHMUS_PEERS`, or `.peers` in the nearest ancestor of the working directory that has one.
pub fn peers_dir() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ISTHMUS_PEERS") {
        return Ok(PathBuf::from(p));
    }
    let cwd = std::env::current_dir()?;
    for dir in cwd.ancestors() {
        let p = dir.join(".peers");
        if p.is_dir() {
            return Ok(p);
        }
    }
    bail!("no peer directory: set ISTHMUS_PEERS or run scripts/test.sh, which installs solc-js and vyper into .peers")
}

fn missing(what: &str, path: &Path) -> anyhow::Error {
    anyhow!(
        "{what} not found at {}; run scripts/test.sh (it installs solc-js and vyper 0.4.3 into the peer directory)",
        path.display()
    )
}

pub struct Compiled {
    /// Creation code.
    pub bytecode: Vec<u8>,
    /// Runtime code (solc only; empty for vyper).
    pub runtime: Vec<u8>,
}

const SOLC_RUNNER: &str = r#"
const solc = require(process.argv[1]);
let input = '';
process.stdin.on('data', d => { input += d; });
process.stdin.on('end', () => {
  const t0 = process.hrtime.bigint();
  const out = solc.compile(input);
  const t1 = process.hrtime.bigint();
  process.stderr.write('xcl-solc-compile-ns ' + (t1 - t0) + '\n');
  process.stdout.write(out);
});
"#;

/// Compiles Solidity sources with solc-js in one run; returns each contract's creation code.
pub fn solc(sources: &[(String, String, String)]) -> Result<Vec<Compiled>> {
    solc_timed(sources).map(|(c, _)| c)
}

/// As `solc`, also returning how long `solc.compile` itself took inside node (without
/// node's start-up and the loading of solc-js).
pub fn solc_timed(
    sources: &[(String, String, String)],
) -> Result<(Vec<Compiled>, std::time::Duration)> {
    let peers = peers_dir()?;
    let module = peers.join("node/node_modules/solc");
    if !module.join("index.js").exists() {
        return Err(missing("solc-js", &module));
    }
    let mut srcs = serde_json::Map::new();
    for (file, _, content) in sources {
        srcs.insert(file.clone(), serde_json::json!({ "content": content }));
    }
    let input = serde_json::json!({
        "language": "Solidity",
        "sources": srcs,
        "settings": {
            "optimizer": { "enabled": false },
            "outputSelection": { "*": { "*": ["evm.bytecode.object", "evm.deployedBytecode.object"] } }
        }
    });
    let mut child = Command::new("node")
        .arg("-e")
        .arg(SOLC_RUNNER)
        .arg(&module)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running node for solc-js")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.to_string().as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let compile = stderr
        .lines()
        .find_map(|l| l.strip_prefix("xcl-solc-compile-ns "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .map(std::time::Duration::from_nanos)
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&out.stdout);
    let json_start = text.find('{').unwrap_or(0);
    let v: serde_json::Value = serde_json::from_str(&text[json_start..]).with_context(|| {
        format!(
            "solc-js gave no JSON: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if let Some(errs) = v["errors"].as_array() {
        let fatal: Vec<String> = errs
            .iter()
            .filter(|e| e["severity"] == "error")
            .map(|e| e["formattedMessage"].as_str().unwrap_or("").to_string())
            .collect();
        if !fatal.is_empty() {
            bail!(
                "solc-js rejected the emitted Solidity:\n{}",
                fatal.join("\n")
            );
        }
    }
    let mut res = Vec::new();
    for (file, name, _) in sources {
        let evm = &v["contracts"][file][name]["evm"];
        let code = |k: &str| -> Result<Vec<u8>> {
            let h = evm[k]["object"]
                .as_str()
                .ok_or_else(|| anyhow!("solc-js produced no {k} for {name}"))?;
            Ok(hex::decode(h)?)
        };
        res.push(Compiled {
            bytecode: code("bytecode")?,
            runtime: code("deployedBytecode")?,
        });
    }
    Ok((res, compile))
}

/// Compiles Vyper files with vyper 0.4.3 in one run; returns each file's creation code.
pub fn vyper(paths: &[PathBuf]) -> Result<Vec<Compiled>> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let peers = peers_dir()?;
    let exe = peers.join("venv/bin/vyper");
    if !exe.exists() {
        return Err(missing("vyper", &exe));
    }
    let out = Command::new(&exe)
        .arg("-f")
        .arg("bytecode")
        .args(paths)
        .output()
        .context("running vyper")?;
    if !out.status.success() {
        bail!(
            "vyper rejected the emitted Vyper:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let codes: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if codes.len() != paths.len() {
        bail!(
            "vyper printed {} bytecode line(s) for {} file(s)",
            codes.len(),
            paths.len()
        );
    }
    codes
        .iter()
        .map(|l| {
            Ok(Compiled {
                bytecode: hex::decode(l.trim().trim_start_matches("0x"))
                    .context("vyper output is not hex")?,
                runtime: Vec::new(),
            })
        })
        .collect()
}
