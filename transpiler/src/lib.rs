//! XCL, the Isthmus contract language: parser, type checker, typed IR with explicit effects,
//! target capability model, the Solidity, Vyper and Wasm backends, the auditor and the
//! formatter. This crate is pure: it never touches files, processes, clocks or the network.
//! Callers hand it source text and get back values plus diagnostics; it never panics on bad
//! input.

pub mod ast;
pub mod check;
pub mod diag;
pub mod ir;
pub mod lexer;
pub mod parser;
pub mod word;

pub use diag::{Diagnostic, Severity, Span};
pub mod emit;
pub mod fmt;
pub mod target;

use diag::has_errors;
use emit::Emitted;
use ir::Program;
use target::Target;

/// The result of parsing and checking one source text.
pub struct Frontend {
    pub parsed: parser::Parsed,
    /// Present only when there are no errors.
    pub program: Option<Program>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses and type-checks `source`, collecting every diagnostic.
pub fn check_source(source: &str) -> Frontend {
    let parsed = parser::parse(source);
    let mut diagnostics = parsed.diagnostics.clone();
    let mut program = None;
    if let Some(c) = &parsed.contract {
        let (p, d) = check::check(c);
        diagnostics.extend(d);
        if !has_errors(&diagnostics) {
            program = Some(p);
        }
    }
    diagnostics.sort_by_key(|d| (d.span.start, d.span.end));
    Frontend {
        parsed,
        program,
        diagnostics,
    }
}

/// Lowers a checked program to one target, after checking the target can express it.
pub fn build(
    program: &Program,
    target: Target,
    source_name: &str,
) -> Result<Emitted, Vec<Diagnostic>> {
    let d = target::check_target(program, target);
    if has_errors(&d) {
        return Err(d);
    }
    Ok(match target {
        Target::Solidity => emit::solidity::emit(program, source_name),
        Target::Vyper => emit::vyper::emit(program, source_name),
        Target::Wasm => emit::wasm::emit(program, source_name),
    })
}

/// The ABI signature of a public function or getter, e.g. `claim(bytes32)`, as both EVM
/// targets declare it (addresses travel as `bytes32`).
pub fn abi_type(t: &ir::Ty) -> &'static str {
    match t {
        ir::Ty::Uint(8) | ir::Ty::Enum(_) => "uint8",
        ir::Ty::Uint(16) => "uint16",
        ir::Ty::Uint(32) => "uint32",
        ir::Ty::Uint(64) => "uint64",
        ir::Ty::Uint(128) => "uint128",
        ir::Ty::Uint(_) => "uint256",
        ir::Ty::Bool => "bool",
        _ => "bytes32",
    }
}

/// The callable surface of a program: functions and getters with their parameter types.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub params: Vec<ir::Ty>,
    /// Words of return data on success.
    pub returns: usize,
    pub is_getter: bool,
    pub payable: bool,
}

impl Entry {
    pub fn signature(&self) -> String {
        let p: Vec<&str> = self.params.iter().map(abi_type).collect();
        format!("{}({})", self.name, p.join(","))
    }
}

pub fn entries(p: &Program) -> Vec<Entry> {
    let mut out = Vec::new();
    for f in &p.functions {
        if f.public && !f.is_init {
            out.push(Entry {
                name: f.name.clone(),
                params: f.params.iter().map(|&l| f.locals[l].ty.clone()).collect(),
                returns: usize::from(f.ret.is_some()),
                is_getter: false,
                payable: f.mutability == ir::Mutability::Payable,
            });
        }
    }
    for s in &p.storage {
        if !s.public {
            continue;
        }
        let mut params = Vec::new();
        let mut t = s.ty.clone();
        loop {
            match t {
                ir::Ty::Map(k, v) => {
                    params.push(*k);
                    t = *v;
                }
                ir::Ty::Array(el, _) => {
                    params.push(ir::Ty::Uint(256));
                    t = *el;
                }
                _ => break,
            }
        }
        let returns = match t {
            ir::Ty::Struct(i) => p.structs[i].fields.len(),
            _ => 1,
        };
        out.push(Entry {
            name: s.name.clone(),
            params,
            returns,
            is_getter: true,
            payable: false,
        });
    }
    out
}

/// Event signatures as the EVM targets declare them, including the relay's `XclSend`.
pub fn event_signatures(p: &Program) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = p
        .events
        .iter()
        .map(|e| {
            let t: Vec<&str> = e.fields.iter().map(|(_, t)| abi_type(t)).collect();
            (e.name.clone(), format!("{}({})", e.name, t.join(",")))
        })
        .collect();
    if p.uses_xsend() {
        out.push(("XclSend".into(), "XclSend(uint64,bytes32,bytes32)".into()));
    }
    out
}
pub mod audit;
