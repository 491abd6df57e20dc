//! Fuzzes the XCL front end with arbitrary text: the lexer, the parser with its error
//! recovery and the checker must never panic, and every source that parses must format.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let src = String::from_utf8_lossy(data);
    let fe = isthmus_transpiler::check_source(&src);
    if let Some(p) = &fe.program {
        let _ = isthmus_transpiler::audit::audit(p);
    }
    if fe.parsed.contract.is_some() && !isthmus_transpiler::diag::has_errors(&fe.parsed.diagnostics)
    {
        let out = isthmus_transpiler::fmt::format(&src);
        assert!(out.is_ok(), "a source that parses must format");
    }
});
