//! The targets and what each can express. A program that needs something a target lacks is
//! rejected before code generation, with a span and the target's name.

use crate::diag::{Code, Diagnostic, Span};
use crate::ir::{walk_expr, walk_stmts, ExprKind, Program, StmtKind};
use serde::Serialize;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Solidity,
    Vyper,
    Wasm,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::Solidity, Target::Vyper, Target::Wasm];

    pub fn name(self) -> &'static str {
        match self {
            Target::Solidity => "solidity",
            Target::Vyper => "vyper",
            Target::Wasm => "wasm",
        }
    }

    pub fn parse(s: &str) -> Option<Target> {
        match s.trim().to_ascii_lowercase().as_str() {
            "solidity" | "sol" => Some(Target::Solidity),
            "vyper" | "vy" => Some(Target::Vyper),
            "wasm" => Some(Target::Wasm),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Target::Solidity => "sol",
            Target::Vyper => "vy",
            Target::Wasm => "wasm",
        }
    }

    pub fn capabilities(self) -> Capabilities {
        match self {
            Target::Solidity => Capabilities {
                reserved: SOLIDITY_RESERVED,
                // solc's "stack too deep" limit: 16 reachable slots, some taken by temporaries.
                max_stack_values: Some(14),
                ecrecover: true,
            },
            Target::Vyper => Capabilities {
                reserved: VYPER_RESERVED,
                max_stack_values: None,
                ecrecover: true,
            },
            Target::Wasm => Capabilities {
                reserved: &[],
                max_stack_values: None,
                // The host ABI has no secp256k1 recovery yet.
                ecrecover: false,
            },
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Capabilities {
    /// Identifiers the target language keeps for itself.
    pub reserved: &'static [&'static str],
    /// Most parameters plus locals one function may have.
    pub max_stack_values: Option<usize>,
    pub ecrecover: bool,
}

const SOLIDITY_RESERVED: &[&str] = &[
    "abstract",
    "after",
    "alias",
    "anonymous",
    "apply",
    "assembly",
    "assert",
    "auto",
    "block",
    "blockhash",
    "break",
    "byte",
    "bytes",
    "calldata",
    "case",
    "catch",
    "constant",
    "constructor",
    "continue",
    "contract",
    "copyof",
    "days",
    "default",
    "define",
    "delete",
    "do",
    "else",
    "emit",
    "enum",
    "error",
    "ether",
    "event",
    "external",
    "fallback",
    "false",
    "final",
    "for",
    "function",
    "gasleft",
    "gwei",
    "hours",
    "if",
    "immutable",
    "implements",
    "import",
    "indexed",
    "inline",
    "int",
    "interface",
    "internal",
    "is",
    "let",
    "library",
    "macro",
    "mapping",
    "match",
    "memory",
    "minutes",
    "modifier",
    "msg",
    "mutable",
    "new",
    "null",
    "of",
    "override",
    "partial",
    "payable",
    "pragma",
    "private",
    "promise",
    "public",
    "pure",
    "receive",
    "reference",
    "relocatable",
    "require",
    "return",
    "returns",
    "revert",
    "sealed",
    "seconds",
    "selfdestruct",
    "sizeof",
    "static",
    "storage",
    "string",
    "struct",
    "super",
    "supports",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "tx",
    "type",
    "typedef",
    "typeof",
    "uint",
    "unchecked",
    "unicode",
    "using",
    "var",
    "view",
    "virtual",
    "weeks",
    "wei",
    "while",
    "years",
    "abi",
    "addmod",
    "mulmod",
    "ripemd160",
    "selector",
];

const VYPER_RESERVED: &[&str] = &[
    "and",
    "as",
    "assert",
    "break",
    "class",
    "concat",
    "constant",
    "continue",
    "convert",
    "def",
    "del",
    "elif",
    "else",
    "empty",
    "event",
    "except",
    "exports",
    "extcall",
    "finally",
    "flag",
    "for",
    "from",
    "global",
    "if",
    "immutable",
    "implements",
    "import",
    "in",
    "indexed",
    "initializes",
    "interface",
    "is",
    "lambda",
    "len",
    "log",
    "max",
    "min",
    "msg",
    "block",
    "tx",
    "chain",
    "nonlocal",
    "not",
    "or",
    "pass",
    "print",
    "public",
    "raise",
    "range",
    "raw_call",
    "return",
    "self",
    "send",
    "slice",
    "staticcall",
    "struct",
    "transient",
    "try",
    "unreachable",
    "uses",
    "while",
    "with",
    "yield",
    "abs",
    "floor",
    "ceil",
    "sqrt",
    "isqrt",
    "extract32",
    "method_id",
    "abi_encode",
    "abi_decode",
    "blockhash",
    "selfdestruct",
    "create_minimal_proxy_to",
    "create_copy_of",
    "create_from_blueprint",
    "uint2str",
    "shift",
    "bitwise_and",
    "bitwise_or",
    "bitwise_xor",
    "bitwise_not",
    "unsafe_add",
    "unsafe_sub",
    "unsafe_mul",
    "unsafe_div",
    "pow_mod256",
    "decimal",
    "None",
    "True",
    "False",
];

/// Checks that `program` can be expressed on `target`.
pub fn check_target(program: &Program, target: Target) -> Vec<Diagnostic> {
    let caps = target.capabilities();
    let mut out = Vec::new();
    let name = |n: &str, span: Span, out: &mut Vec<Diagnostic>| {
        if caps.reserved.contains(&n) || is_type_like(n) {
            out.push(
                Diagnostic::error(
                    Code::TargetCapability,
                    span,
                    format!("`{n}` is a reserved word in target {target}"),
                )
                .with_help("rename it; the same source must compile on every target"),
            );
        }
    };
    name(&program.name, program.span, &mut out);
    for s in &program.storage {
        name(&s.name, s.span, &mut out);
    }
    for s in &program.structs {
        name(&s.name, s.span, &mut out);
        for (f, _) in &s.fields {
            name(f, s.span, &mut out);
        }
    }
    for e in &program.events {
        name(&e.name, e.span, &mut out);
        for (f, _) in &e.fields {
            name(f, e.span, &mut out);
        }
    }
    for f in &program.functions {
        if !f.is_init {
            name(&f.name, f.span, &mut out);
        }
        for l in &f.locals {
            name(&l.name, l.span, &mut out);
        }
        if let Some(max) = caps.max_stack_values {
            let loops = {
                let mut n = 0;
                walk_stmts(&f.body, &mut |s| {
                    if matches!(s.kind, StmtKind::For { .. }) {
                        n += 1;
                    }
                });
                n
            };
            let used = f.locals.len() + 2 * loops + usize::from(f.ret.is_some());
            if used > max {
                out.push(
                    Diagnostic::error(
                        Code::TargetCapability,
                        f.span,
                        format!(
                            "function `{}` needs {used} stack values; target {target} allows {max}",
                            f.name
                        ),
                    )
                    .with_help("split the function, or keep values in storage"),
                );
            }
        }
        if !caps.ecrecover {
            walk_stmts(&f.body, &mut |s| {
                crate::ir::stmt_exprs(s, &mut |e| {
                    walk_expr(e, &mut |x| {
                        if matches!(x.kind, ExprKind::EcRecover(_)) {
                            out.push(Diagnostic::error(
                                Code::TargetCapability,
                                x.span,
                                format!("target {target} has no signature recovery (`ecrecover`)"),
                            ));
                        }
                    })
                })
            });
        }
    }
    out
}

/// `uint8`, `bytes4`, `int256` and friends are type names on both EVM languages.
fn is_type_like(n: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    ["uint", "int", "bytes"]
        .iter()
        .any(|p| n.strip_prefix(p).is_some_and(digits))
}
