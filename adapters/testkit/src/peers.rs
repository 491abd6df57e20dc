//! Start and stop helpers for the real peers the tests run against (anvil, litecoind, the
//! Python adapter, the workspace's own binaries): where `scripts/install-peers.sh` put them,
//! free loopback ports, and child processes that are killed by pid and reaped when dropped,
//! also when a test panics. Every suite that starts a peer goes through these, so each is
//! started and stopped one way.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Child;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

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
