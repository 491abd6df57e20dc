//! Golden tests: diagnostics and emitted code are compared with reviewed snapshots.

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
