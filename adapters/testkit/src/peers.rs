//! Start and stop helpers for the real peers the tests run against (anvil, litecoind, the
//! Python adapter, the workspace's own binaries): where `scripts/install-peers.sh` put them,
//! free loopback ports, and child processes that are killed by pid and reaped when dropped,
//! also when a test panics. Every suite that starts a peer goes through these, so each is
//! started and stopped one way.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::SystemTime;

/// The workspace root (the folder above `adapters/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where `scripts/install-peers.sh` put the external tools: `$ISTHMUS_PEERS`, else
/// `<repo>/.peers`.
pub fn peers_dir() -> PathBuf {
    std::env::var_os("ISTHMUS_PEERS").map_or_else(|| repo_root().join(".peers"), PathBuf::from)
}

/// A tool installed under the peers folder (`bin/anvil`, `venv/bin/python`), or an error
/// that says how to install it.
pub fn tool(relative: &str, install: &str) -> Result<PathBuf, String> {
    let p = peers_dir().join(relative);
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} is missing: run scripts/install-peers.sh --only {install}",
            p.display()
        ))
    }
}

/// A loopback port nothing listens on right now (the caller binds it soon after; a
/// collision is retried by the callers that can).
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// A child process this test started: killed by its pid (SIGKILL) and reaped when dropped
/// or [`stop`](Reaped::stop)ped, so no test leaves a process behind.
#[derive(Debug)]
pub struct Reaped(pub Child);

impl Reaped {
    /// Kill and reap now; later calls do nothing.
    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        self.stop();
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_child_is_killed_and_reaped() {
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        drop(Reaped(child));
        // Reaped: no zombie either, so /proc has no entry for the pid.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn a_missing_tool_says_how_to_install_it() {
        let e = tool("bin/no-such-peer", "no-such-peer").unwrap_err();
        assert!(e.contains("--only no-such-peer"), "{e}");
        assert!(free_port().unwrap() > 0);
    }
}
