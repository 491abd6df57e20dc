//! Code generation. Each backend turns a checked [`Program`](crate::ir::Program) into text or
//! bytes plus a source map from output lines (or code offsets) back to XCL spans.

pub mod solidity;
pub mod vyper;
pub mod wasm;

use crate::diag::Span;
use serde::Serialize;

/// One source-map entry: output line (1-based, or byte offset for Wasm) to source span.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MapEntry {
    pub out: u32,
    pub start: u32,
    pub end: u32,
}

#[derive(Clone, Debug)]
pub struct Emitted {
    pub code: Vec<u8>,
    pub source_map: Vec<MapEntry>,
}

/// An indenting line writer that records which source span produced each line.
pub(crate) struct Writer {
    out: String,
    indent: usize,
    unit: &'static str,
    line: u32,
    pub map: Vec<MapEntry>,
}

impl Writer {
    pub fn new(unit: &'static str) -> Writer {
        Writer {
            out: String::new(),
            indent: 0,
            unit,
            line: 1,
            map: Vec::new(),
        }
    }

    pub fn line(&mut self, text: impl AsRef<str>) {
        let text = text.as_ref();
        if !text.is_empty() {
            for _ in 0..self.indent {
                self.out.push_str(self.unit);
            }
            self.out.push_str(text);
        }
        self.out.push('\n');
        self.line += 1;
    }

    pub fn mapped(&mut self, span: Span, text: impl AsRef<str>) {
        self.map.push(MapEntry {
            out: self.line,
            start: span.start,
            end: span.end,
        });
        self.line(text);
    }

    pub fn open(&mut self) {
        self.indent += 1;
    }

    pub fn close(&mut self) {
        self.indent = self.indent.saturating_sub(1);
    }

    pub fn finish(self) -> Emitted {
        Emitted {
            code: self.out.into_bytes(),
            source_map: self.map,
        }
    }
}

/// Public functions that other functions call need a separate internal body on the EVM
/// targets, so that internal calls skip the entry checks (payable, reentrancy) as on Wasm.
pub(crate) fn internally_called(p: &crate::ir::Program) -> Vec<bool> {
    let mut called = vec![false; p.functions.len()];
    for f in &p.functions {
        crate::ir::walk_stmts(&f.body, &mut |s| {
            crate::ir::stmt_exprs(s, &mut |e| {
                crate::ir::walk_expr(e, &mut |x| {
                    if let crate::ir::ExprKind::Call { func, .. } = x.kind {
                        if let Some(c) = called.get_mut(func) {
                            *c = true;
                        }
                    }
                })
            })
        });
    }
    called
}

/// Comparison operators are spelled the same in Solidity and Vyper.
pub(crate) fn cmp_symbol(op: crate::ir::CmpOp) -> &'static str {
    use crate::ir::CmpOp;
    match op {
        CmpOp::Eq => "==",
        CmpOp::Ne => "!=",
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
    }
}
