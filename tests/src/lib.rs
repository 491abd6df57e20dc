//! The shared kit of the end-to-end scenarios in `it/`: the workspace's own binaries, and
//! the real peers' start and stop helpers (from the adapter test kit, which every adapter
//! suite uses too). The scenarios themselves live in `it/` (one test binary); the hub is
//! assembled through `isthmus_hub::builder`, and the peers' fixtures (litecoind, anvil,
//! native test networks) are the adapters' own, shared by path or feature, so every suite
//! starts and stops them the same way.
//!
//! This crate holds no product code, and nothing in it talks to anything outside
//! 127.0.0.0/8.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

pub use isthmus_adapter_testkit::peers::{free_port, peers_dir, repo_root, tool, Reaped};

/// The newest modification time of the files below `dir`.
fn newest_source(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else if let Ok(t) = meta.modified() {
                newest = newest.max(t);
            }
        }
    }
    newest
}

/// A binary of this workspace, next to the running test binary. A workspace test run
/// (`cargo nextest run --workspace`, the CI's) has built it already with the workspace's
/// features; it is rebuilt here only when missing or older than the sources under
/// `sources` (folders relative to the workspace root), e.g. a run of this package alone
/// after an edit, since a `-p` build resolves other features and would recompile shared
/// crates.
///
/// # Panics
/// When the binary cannot be built: the scenario cannot run without it.
pub fn workspace_bin(package: &str, bin: &str, sources: &[&str]) -> PathBuf {
    // target/<profile>/deps/it-<hash> -> target/<profile>/<bin>
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("test binary path: {e}"));
    let path = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("no target profile dir above {}", exe.display()))
        .join(bin);
    let newest = sources
        .iter()
        .map(|s| newest_source(&repo_root().join(s)))
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let fresh = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .is_ok_and(|built| built >= newest);
    if fresh {
        return path;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    // What cargo set for this test (CARGO_MANIFEST_DIR, CARGO_PKG_*, ...) must not reach
    // the build: build scripts track such variables and would rebuild.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        let set_for_test = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|p| k.starts_with(p))
            || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&k.as_str());
        if set_for_test {
            build.env_remove(&k);
        }
    }
    let status = build
        .args([
            "build",
            "--quiet",
            "-p",
            package,
            "--bin",
            bin,
            "--all-features",
        ])
        .arg("--manifest-path")
        .arg(repo_root().join("Cargo.toml"))
        .status()
        .unwrap_or_else(|e| panic!("run cargo build for {bin}: {e}"));
    assert!(
        status.success(),
        "cargo build -p {package} --bin {bin} failed"
    );
    assert!(path.exists(), "no {bin} binary at {}", path.display());
    path
}
