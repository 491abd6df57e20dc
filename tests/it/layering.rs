//! The layering rules of ARCHITECTURE.md, checked against `cargo metadata` rather than
//! remembered. Each rule names the edge it forbids; a violation names the manifest and the
//! dependency, so the fix is obvious.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// One workspace package as the rules see it.
#[derive(Debug, Clone)]
struct Package {
    name: String,
    /// The manifest's folder, relative to the workspace root (`adapters/evm`, `core`).
    dir: String,
    has_lib: bool,
    has_bin: bool,
    /// Workspace dependencies: (name, kind) with kind `normal`, `dev` or `build`, and
    /// whether the dependency is optional (enabled only by a feature, e.g. for a binary).
    deps: Vec<(String, String, bool)>,
}

/// Packages whose library exists only to serve their own binary or tests: they are
/// applications, and may name concrete adapters.
const APPLICATIONS: &[&str] = &["isthmus-hub", "isthmus-tests"];

/// The concrete platform adapters: only binaries and tests may depend on them.
fn is_concrete_adapter(p: &Package) -> bool {
    p.dir.starts_with("adapters/") && !["adapters/api", "adapters/testkit"].contains(&&*p.dir)
}

fn under(p: &Package, top: &str) -> bool {
    p.dir == top || p.dir.starts_with(&format!("{top}/"))
}

/// Every forbidden edge in `packages`, as one line each.
fn violations(packages: &[Package]) -> Vec<String> {
    let by_name = |n: &str| packages.iter().find(|p| p.name == n);
    let mut out = Vec::new();
    for p in packages {
        for (dep, kind, optional) in &p.deps {
            let Some(d) = by_name(dep) else { continue };
            let edge = format!("{} ({}) -> {} [{kind}]", p.name, p.dir, d.name);
            if (under(p, "adapters") || under(p, "chain")) && under(d, "hub") {
                out.push(format!(
                    "{edge}: adapters and the chain never depend on the hub"
                ));
            }
            if p.dir == "adapters/api" && is_concrete_adapter(d) {
                out.push(format!(
                    "{edge}: the adapter API never depends on an implementation"
                ));
            }
            if p.dir == "hub/interop" && (d.dir == "hub/api" || d.dir == "hub/node") {
                out.push(format!(
                    "{edge}: the interop core knows no HTTP; the hub node maps it to the API"
                ));
            }
            if under(p, "relayer") && under(d, "hub") {
                out.push(format!("{edge}: the relayer never depends on the hub"));
            }
            let pure = under(p, "transpiler") || under(p, "lock-contracts");
            let allowed = under(d, "core")
                || (under(p, "transpiler") && under(d, "transpiler"))
                || d.name == p.name;
            if pure && !allowed {
                out.push(format!(
                    "{edge}: the transpiler and the lock contracts depend on core/ only"
                ));
            }
            let library = p.has_lib && !p.has_bin && !APPLICATIONS.contains(&&*p.name);
            if library
                && kind == "normal"
                && !optional
                && is_concrete_adapter(d)
                && !is_concrete_adapter(p)
            {
                out.push(format!(
                    "{edge}: a library takes the adapter trait; only binaries and tests name \
                     concrete adapters"
                ));
            }
            if is_concrete_adapter(p) && is_concrete_adapter(d) && kind == "normal" && !optional {
                out.push(format!(
                    "{edge}: an adapter never depends on another adapter (a host binary may, \
                     through an optional dependency)"
                ));
            }
        }
    }
    out
}

fn workspace_packages() -> Vec<Package> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata is json");
    let root_dir = meta["workspace_root"].as_str().expect("workspace_root");
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let packages = meta["packages"].as_array().expect("packages");
    let names: Vec<&str> = packages
        .iter()
        .filter(|p| members.contains(&p["id"].as_str().unwrap_or_default()))
        .filter_map(|p| p["name"].as_str())
        .collect();
    packages
        .iter()
        .filter(|p| members.contains(&p["id"].as_str().unwrap_or_default()))
        .map(|p| {
            let manifest = p["manifest_path"].as_str().expect("manifest_path");
            let dir = Path::new(manifest)
                .parent()
                .and_then(|d| d.strip_prefix(root_dir).ok())
                .expect("a member lives under the workspace root")
                .to_string_lossy()
                .into_owned();
            let kinds: Vec<&str> = p["targets"]
                .as_array()
                .expect("targets")
                .iter()
                .flat_map(|t| t["kind"].as_array().into_iter().flatten())
                .filter_map(Value::as_str)
                .collect();
            Package {
                name: p["name"].as_str().expect("name").to_string(),
                dir,
                has_lib: kinds.iter().any(|k| k.contains("lib")),
                has_bin: kinds.contains(&"bin"),
                deps: p["dependencies"]
                    .as_array()
                    .expect("dependencies")
                    .iter()
                    .filter(|d| names.contains(&d["name"].as_str().unwrap_or_default()))
                    .map(|d| {
                        (
                            d["name"].as_str().unwrap_or_default().to_string(),
                            d["kind"].as_str().unwrap_or("normal").to_string(),
                            d["optional"].as_bool().unwrap_or(false),
                        )
                    })
                    .collect(),
            }
        })
        .collect()
}

#[test]
fn the_workspace_keeps_its_layering_rules() {
    let packages = workspace_packages();
    // The rules below are only as good as the folders they know.
    for top in [
        "core",
        "chain",
        "hub",
        "adapters",
        "relayer",
        "transpiler",
        "lock-contracts",
    ] {
        assert!(
            packages.iter().any(|p| under(p, top)),
            "no package under {top}/: {packages:#?}"
        );
    }
    let v = violations(&packages);
    assert!(
        v.is_empty(),
        "forbidden dependency edges:\n  {}",
        v.join("\n  ")
    );
}

#[test]
fn each_rule_fails_when_its_edge_is_added() {
    let packages = workspace_packages();
    let with_edge = |from: &str, to: &str, kind: &str| {
        let mut ps = packages.clone();
        let p = ps
            .iter_mut()
            .find(|p| p.name == from)
            .unwrap_or_else(|| panic!("no package {from}"));
        p.deps.push((to.into(), kind.into(), false));
        violations(&ps)
    };
    let cases = [
        (
            "isthmus-adapter-native",
            "isthmus-interop",
            "normal",
            "never depend on the hub",
        ),
        (
            "isthmus-adapter-evm",
            "isthmus-hub-api",
            "dev",
            "never depend on the hub",
        ),
        (
            "isthmus-chain",
            "isthmus-interop",
            "normal",
            "never depend on the hub",
        ),
        (
            "isthmus-adapter-api",
            "isthmus-adapter-evm",
            "dev",
            "never depends on an implementation",
        ),
        (
            "isthmus-relayer",
            "isthmus-hub-ingress",
            "normal",
            "relayer never depends on the hub",
        ),
        (
            "isthmus-relay-protocol",
            "isthmus-interop",
            "normal",
            "relayer never depends on the hub",
        ),
        (
            "isthmus-transpiler",
            "isthmus-adapter-api",
            "normal",
            "depend on core/ only",
        ),
        (
            "isthmus-lock-contracts",
            "isthmus-chain",
            "normal",
            "depend on core/ only",
        ),
        (
            "isthmus-interop",
            "isthmus-adapter-evm",
            "normal",
            "only binaries and tests",
        ),
        (
            "isthmus-adapter-utxo",
            "isthmus-adapter-evm",
            "normal",
            "another adapter",
        ),
    ];
    for (from, to, kind, rule) in cases {
        let v = with_edge(from, to, kind);
        assert!(
            v.iter()
                .any(|l| l.contains(from) && l.contains(to) && l.contains(rule)),
            "adding {from} -> {to} [{kind}] was not refused by the rule \"{rule}\": {v:?}"
        );
    }
    // Binaries and tests may name concrete adapters.
    assert!(with_edge("isthmus-relayer-cli", "isthmus-adapter-utxo", "normal").is_empty());
    assert!(with_edge("isthmus-tests", "isthmus-adapter-utxo", "dev").is_empty());
}
