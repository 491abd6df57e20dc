use isthmus_chain::config::{ConfigError, NetworkConfig};
use std::path::PathBuf;

fn configs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

#[test]
fn shipped_configs_are_valid() {
    for name in ["pow-3.toml", "pos-4.toml", "dev.toml"] {
        let c = NetworkConfig::load(&configs_dir().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(c.nodes >= 1, "{name}");
    }
    let pos = NetworkConfig::load(&configs_dir().join("pos-4.toml")).unwrap();
    assert_eq!(pos.validators().len(), 4);
    assert_eq!(pos.budget(0).mempool_bytes, 128 * 1024 * 1024);
}

#[test]
fn valid_fixtures_load() {
    let dir = configs_dir().join("fixtures/valid");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        NetworkConfig::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        n += 1;
    }
    assert!(n >= 2);
}

/// Each invalid fixture lists the messages it must produce in `# expect:` lines.
#[test]
fn invalid_fixtures_report_every_expected_problem() {
    let dir = configs_dir().join("fixtures/invalid");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let expects: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(!expects.is_empty(), "{} has no expectations", p.display());
        let msg = match NetworkConfig::from_toml_str(&text) {
            Ok(_) => panic!("{} was accepted", p.display()),
            Err(e @ (ConfigError::Parse(_) | ConfigError::Invalid(_))) => e.to_string(),
            Err(e) => panic!("{}: unexpected {e}", p.display()),
        };
        for x in expects {
            assert!(
                msg.contains(x),
                "{}: `{x}` missing from:\n{msg}",
                p.display()
            );
        }
        n += 1;
    }
    assert!(n >= 5);
}
