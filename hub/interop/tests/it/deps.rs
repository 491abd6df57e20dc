//! The interop core knows no HTTP: it depends on neither the hub's API crate nor a web
//! framework, not even for its tests (the hub node maps its domain types to the API).

use std::process::Command;

#[test]
fn the_interop_core_does_not_depend_on_the_http_api() {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let me = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == env!("CARGO_PKG_NAME"))
        .unwrap();
    let deps: Vec<&str> = me["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    for forbidden in ["isthmus-hub-api", "isthmus-hub", "warp"] {
        assert!(
            !deps.contains(&forbidden),
            "depends on {forbidden}: {deps:?}"
        );
    }
}
