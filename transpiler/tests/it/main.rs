//! Golden tests: diagnostics and emitted code are compared with reviewed snapshots.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly by design

use isthmus_transpiler::diag::render;
use isthmus_transpiler::target::Target;
use isthmus_transpiler::{build, check_source};

const BAD: &str = r#"contract Bad {
    storage total: u64;
    pub fn f(a: u64) -> u8 {
        let x: u8 = 300;
        a = 1;
        total = true;
        return missing;
    }
    pub fn g( {
        require(1, "x");
    }
}
"#;

#[test]
fn diagnostics_snapshot() {
    let fe = check_source(BAD);
    assert!(fe.program.is_none());
    insta::assert_snapshot!(render("bad.xcl", BAD, &fe.diagnostics, false));
}

#[test]
fn emitted_code_snapshots() {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../lock-contracts/xcl/htlc.xcl"
    ))
    .unwrap();
    let p = check_source(&src).program.unwrap();
    for t in [Target::Solidity, Target::Vyper] {
        let out = build(&p, t, "htlc.xcl").unwrap();
        insta::assert_snapshot!(
            format!("htlc_{}", t.name()),
            String::from_utf8(out.code).unwrap()
        );
    }
}

#[test]
fn wasm_output_validates() {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../lock-contracts/xcl/escrow.xcl"
    ))
    .unwrap();
    let p = check_source(&src).program.unwrap();
    let w = build(&p, Target::Wasm, "escrow.xcl").unwrap();
    assert_eq!(&w.code[..4], b"\0asm");
}

/// Every contract in the repository: corpus, audit set, lock contracts and examples.
fn all_sources() -> Vec<(std::path::PathBuf, String)> {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in [
        base.join("tests/corpus"),
        base.join("tests/audit"),
        base.join("examples"),
        base.join("../lock-contracts/xcl"),
    ] {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "xcl") {
                let s = std::fs::read_to_string(&p).unwrap();
                out.push((p, s));
            }
        }
    }
    out.sort();
    out
}

/// The tree without source positions, so two layouts of one program compare equal.
fn shape(src: &str) -> String {
    let parsed = isthmus_transpiler::parser::parse(src);
    let dbg = format!("{:?}", parsed.contract);
    let mut out = String::with_capacity(dbg.len());
    let mut rest = dbg.as_str();
    while let Some(i) = rest.find("Span {") {
        out.push_str(&rest[..i]);
        let j = rest[i..].find('}').unwrap();
        out.push_str("Span");
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn fmt_is_idempotent_and_keeps_the_tree() {
    use isthmus_transpiler::fmt::format;
    let all = all_sources();
    assert!(all.len() >= 40, "only {} sources", all.len());
    for (path, src) in &all {
        let once = format(src).unwrap();
        let twice = format(&once).unwrap();
        assert_eq!(once, twice, "{}: fmt is not idempotent", path.display());
        assert_eq!(
            shape(src),
            shape(&once),
            "{}: fmt changed the tree",
            path.display()
        );
        let comments = |s: &str| s.matches("//").count();
        assert_eq!(
            comments(src),
            comments(&once),
            "{}: comments lost",
            path.display()
        );
        assert_eq!(&once, src, "{} is not in canonical form", path.display());
    }
}

#[test]
fn fmt_normalises_layout_and_keeps_comments() {
    let messy = "// head\ncontract  C{pub storage a:u64; storage b : map<address,u256>;\n\n\n\n event E(x:u64);\n@nonreentrant pub fn f(x:u64)->u64{ // why\nif x==0{return 1;}else if x==1 {return (x+1)*2;} else{ b[sender()]+=1; }\n// tail\nreturn x as u64;}}\n";
    insta::assert_snapshot!(isthmus_transpiler::fmt::format(messy).unwrap());
}

#[test]
fn fmt_refuses_sources_that_do_not_parse() {
    let e = isthmus_transpiler::fmt::format("contract C { pub fn f( }").unwrap_err();
    assert!(!e.is_empty());
}
