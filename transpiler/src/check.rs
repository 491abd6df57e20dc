//! The type checker: resolves names, checks types, and lowers the syntax tree to the IR.
//! It never stops at the first problem; every error it can find is reported.

use crate::ast::{self, AssignOp, BinOp, ExprKind as A, TypeExpr};
use crate::diag::{Code, Diagnostic, Span};
use crate::ir::*;
use crate::word::Word;
use std::collections::{BTreeSet, HashMap};

/// Names the language keeps for builtins; user items may not take them.
pub const BUILTINS: &[&str] = &[
    "sender",
    "value",
    "now",
    "height",
    "balance",
    "sha256",
    "keccak256",
    "transfer",
    "try_transfer",
    "xsend",
    "ecrecover",
];

#[derive(Clone, Copy)]
enum Global {
    Storage(VarId),
    Func(FuncId),
    Event(EventId),
    Struct(StructId),
    Enum(usize),
}

struct Sig {
    name: String,
    public: bool,
    declared: ast::Mutability,
    is_init: bool,
    params: Vec<(String, Ty, Span)>,
    ret: Option<Ty>,
    nonreentrant: bool,
    timelock: bool,
    span: Span,
}

struct FnCtx {
    locals: Vec<LocalDecl>,
    scopes: Vec<HashMap<String, LocalId>>,
    sig: usize,
    callees: BTreeSet<FuncId>,
    effects: Effects,
}

pub struct Checker<'a> {
    contract: &'a ast::Contract,
    diags: Vec<Diagnostic>,
    globals: HashMap<String, (Global, Span)>,
    structs: Vec<StructDef>,
    enums: Vec<EnumDef>,
    events: Vec<EventDef>,
    storage: Vec<StorageVar>,
    sigs: Vec<Sig>,
    fx: Option<FnCtx>,
}

/// Checks a parsed contract. The program is returned even when there are errors, but only an
/// error-free program may be handed to a backend.
pub fn check(contract: &ast::Contract) -> (Program, Vec<Diagnostic>) {
    let mut c = Checker {
        contract,
        diags: Vec::new(),
        globals: HashMap::new(),
        structs: Vec::new(),
        enums: Vec::new(),
        events: Vec::new(),
        storage: Vec::new(),
        sigs: Vec::new(),
        fx: None,
    };
    let program = c.run();
    (program, c.diags)
}

fn strip(e: &ast::Expr) -> &ast::Expr {
    match &e.kind {
        A::Paren(inner) => strip(inner),
        _ => e,
    }
}

fn is_literal(e: &ast::Expr) -> bool {
    matches!(strip(e).kind, A::Int(_) | A::Hex(_))
}

fn block_returns(stmts: &[ast::Stmt]) -> bool {
    stmts.last().is_some_and(stmt_returns)
}

fn stmt_returns(s: &ast::Stmt) -> bool {
    match s {
        ast::Stmt::Return { .. } | ast::Stmt::Revert { .. } => true,
        ast::Stmt::If { then, els, .. } => {
            block_returns(&then.stmts) && els.as_deref().is_some_and(stmt_returns)
        }
        ast::Stmt::Block(b) => block_returns(&b.stmts),
        _ => false,
    }
}

impl Checker<'_> {
    fn err(&mut self, code: Code, span: Span, msg: impl Into<String>) {
        self.diags.push(Diagnostic::error(code, span, msg));
    }

    pub fn type_name(&self, t: &Ty) -> String {
        match t {
            Ty::Uint(b) => format!("u{b}"),
            Ty::Bool => "bool".into(),
            Ty::Address => "address".into(),
            Ty::Bytes32 => "bytes32".into(),
            Ty::Enum(i) => self.enums.get(*i).map_or("enum".into(), |e| e.name.clone()),
            Ty::Struct(i) => self
                .structs
                .get(*i)
                .map_or("struct".into(), |s| s.name.clone()),
            Ty::Map(k, v) => format!("map<{}, {}>", self.type_name(k), self.type_name(v)),
            Ty::Array(e, n) => format!("[{}; {n}]", self.type_name(e)),
            Ty::Unit => "()".into(),
        }
    }

    fn declare(&mut self, name: &ast::Ident, g: Global) {
        if BUILTINS.contains(&name.name.as_str()) || name.name.starts_with("_xcl") {
            self.diags.push(
                Diagnostic::error(
                    Code::ReservedName,
                    name.span,
                    format!("`{}` is reserved by the language", name.name),
                )
                .with_help("choose another name"),
            );
            return;
        }
        if let Some((_, prev)) = self.globals.get(&name.name) {
            let prev = *prev;
            self.diags.push(
                Diagnostic::error(
                    Code::Duplicate,
                    name.span,
                    format!("`{}` is defined more than once", name.name),
                )
                .with_label(prev, "first defined here"),
            );
            return;
        }
        self.globals.insert(name.name.clone(), (g, name.span));
    }

    fn resolve_ty(&mut self, t: &TypeExpr) -> Option<Ty> {
        match t {
            TypeExpr::Named(id) => {
                let ty = match id.name.as_str() {
                    "u8" => Ty::Uint(8),
                    "u16" => Ty::Uint(16),
                    "u32" => Ty::Uint(32),
                    "u64" => Ty::Uint(64),
                    "u128" => Ty::Uint(128),
                    "u256" => Ty::Uint(256),
                    "bool" => Ty::Bool,
                    "address" => Ty::Address,
                    "bytes32" => Ty::Bytes32,
                    other => match self.globals.get(other) {
                        Some((Global::Struct(i), _)) => Ty::Struct(*i),
                        Some((Global::Enum(i), _)) => Ty::Enum(*i),
                        _ => {
                            self.diags.push(
                                Diagnostic::error(
                                    Code::UnknownType,
                                    id.span,
                                    format!("unknown type `{other}`"),
                                )
                                .with_help("integer types are u8, u16, u32, u64, u128 and u256"),
                            );
                            return None;
                        }
                    },
                };
                Some(ty)
            }
            TypeExpr::Map(k, v, span) => {
                let kt = self.resolve_ty(k)?;
                let vt = self.resolve_ty(v)?;
                if !kt.is_value() {
                    self.err(Code::BadStorageUse, *span, "map keys must be value types");
                    return None;
                }
                if matches!(vt, Ty::Array(..)) {
                    self.err(Code::BadStorageUse, *span, "map values cannot be arrays");
                    return None;
                }
                Some(Ty::Map(Box::new(kt), Box::new(vt)))
            }
            TypeExpr::Array(e, n, span) => {
                let et = self.resolve_ty(e)?;
                if !et.is_value() {
                    self.err(
                        Code::BadStorageUse,
                        *span,
                        "array elements must be value types",
                    );
                    return None;
                }
                match n.parse::<u32>() {
                    Ok(len) if (1..=1024).contains(&len) => Some(Ty::Array(Box::new(et), len)),
                    _ => {
                        self.err(
                            Code::LiteralRange,
                            *span,
                            format!("array length `{n}` must be between 1 and 1024"),
                        );
                        None
                    }
                }
            }
        }
    }

    fn value_ty(&mut self, t: &TypeExpr, what: &str) -> Option<Ty> {
        let ty = self.resolve_ty(t)?;
        if ty.is_value() {
            Some(ty)
        } else {
            let name = self.type_name(&ty);
            self.diags.push(
                Diagnostic::error(
                    Code::BadStorageUse,
                    t.span(),
                    format!("{what} cannot have type `{name}`"),
                )
                .with_help("maps, structs and arrays live only in storage"),
            );
            None
        }
    }

    fn run(&mut self) -> Program {
        let items = &self.contract.items;
        // Pass 1: type names, so that later declarations can refer to them in any order.
        for item in items {
            match item {
                ast::Item::Struct { name, span, .. } => {
                    let id = self.structs.len();
                    self.structs.push(StructDef {
                        name: name.name.clone(),
                        fields: Vec::new(),
                        span: *span,
                    });
                    self.declare(name, Global::Struct(id));
                }
                ast::Item::Enum {
                    name,
                    variants,
                    span,
                } => {
                    let id = self.enums.len();
                    let mut seen = HashMap::new();
                    for v in variants {
                        if let Some(prev) = seen.insert(v.name.clone(), v.span) {
                            self.diags.push(
                                Diagnostic::error(
                                    Code::Duplicate,
                                    v.span,
                                    format!("variant `{}` is defined more than once", v.name),
                                )
                                .with_label(prev, "first defined here"),
                            );
                        }
                    }
                    if variants.is_empty() || variants.len() > 256 {
                        self.err(Code::LiteralRange, *span, "an enum has 1 to 256 variants");
                    }
                    self.enums.push(EnumDef {
                        name: name.name.clone(),
                        variants: variants.iter().map(|v| v.name.clone()).collect(),
                        span: *span,
                    });
                    self.declare(name, Global::Enum(id));
                }
                _ => {}
            }
        }
        // Pass 2: struct fields, events, storage and function signatures.
        let mut struct_idx = 0;
        for item in items {
            match item {
                ast::Item::Struct { fields, .. } => {
                    let mut out = Vec::new();
                    let mut seen: HashMap<String, Span> = HashMap::new();
                    for f in fields {
                        if let Some(prev) = seen.insert(f.name.name.clone(), f.name.span) {
                            self.diags.push(
                                Diagnostic::error(
                                    Code::Duplicate,
                                    f.name.span,
                                    format!("field `{}` is defined more than once", f.name.name),
                                )
                                .with_label(prev, "first defined here"),
                            );
                        }
                        if let Some(t) = self.value_ty(&f.ty, "a struct field") {
                            out.push((f.name.name.clone(), t));
                        }
                    }
                    if let Some(s) = self.structs.get_mut(struct_idx) {
                        s.fields = out;
                    }
                    struct_idx += 1;
                }
                ast::Item::Event { name, fields, span } => {
                    let mut out = Vec::new();
                    for f in fields {
                        if let Some(t) = self.value_ty(&f.ty, "an event field") {
                            out.push((f.name.name.clone(), t));
                        }
                    }
                    let id = self.events.len();
                    self.events.push(EventDef {
                        name: name.name.clone(),
                        fields: out,
                        span: *span,
                    });
                    self.declare(name, Global::Event(id));
                }
                ast::Item::Storage {
                    public,
                    name,
                    ty,
                    span,
                } => {
                    if let Some(t) = self.resolve_ty(ty) {
                        let id = self.storage.len();
                        self.storage.push(StorageVar {
                            name: name.name.clone(),
                            ty: t,
                            public: *public,
                            span: *span,
                        });
                        self.declare(name, Global::Storage(id));
                    }
                }
                ast::Item::Fn(f) => self.signature(f),
                _ => {}
            }
        }
        if self.sigs.iter().filter(|s| s.is_init).count() > 1 {
            if let Some(s) = self.sigs.iter().filter(|s| s.is_init).nth(1) {
                let span = s.span;
                self.err(Code::Duplicate, span, "`init` is defined more than once");
            }
        }
        // Pass 3: bodies.
        let mut functions = Vec::new();
        let mut callees = Vec::new();
        let fn_decls: Vec<&ast::FnDecl> = items
            .iter()
            .filter_map(|i| match i {
                ast::Item::Fn(f) => Some(f),
                _ => None,
            })
            .collect();
        for (idx, f) in fn_decls.iter().enumerate() {
            let (func, calls) = self.function(idx, f);
            functions.push(func);
            callees.push(calls);
        }
        self.finish_effects(&mut functions, &callees);
        Program {
            name: self.contract.name.name.clone(),
            structs: self.structs.clone(),
            enums: self.enums.clone(),
            events: self.events.clone(),
            storage: self.storage.clone(),
            functions,
            span: self.contract.span,
        }
    }

    fn signature(&mut self, f: &ast::FnDecl) {
        let mut nonreentrant = false;
        let mut timelock = false;
        for a in &f.attrs {
            match a.name.name.as_str() {
                "nonreentrant" => nonreentrant = true,
                "timelock" => timelock = true,
                other => self.diags.push(
                    Diagnostic::error(
                        Code::UnknownAttribute,
                        a.span,
                        format!("unknown attribute `@{other}`"),
                    )
                    .with_help("known attributes are `@nonreentrant` and `@timelock`"),
                ),
            }
        }
        let is_init = f.name.is_none();
        if nonreentrant && (!f.public || is_init) {
            self.err(
                Code::UnknownAttribute,
                f.span,
                "`@nonreentrant` applies only to `pub` functions",
            );
        }
        if f.mutability == ast::Mutability::Payable && !f.public && !is_init {
            self.err(
                Code::ValueNotPayable,
                f.span,
                "only `pub` functions can be payable",
            );
        }
        if is_init && f.mutability == ast::Mutability::View {
            self.err(Code::ViewWrites, f.span, "`init` cannot be a view");
        }
        let mut params = Vec::new();
        for p in &f.params {
            let t = self.value_ty(&p.ty, "a parameter").unwrap_or(Ty::Uint(256));
            params.push((p.name.name.clone(), t, p.name.span));
        }
        let ret = f
            .ret
            .as_ref()
            .and_then(|r| self.value_ty(r, "a return value"));
        if is_init && f.ret.is_some() {
            self.err(Code::ReturnMismatch, f.span, "`init` cannot return a value");
        }
        let id = self.sigs.len();
        self.sigs.push(Sig {
            name: f.name.as_ref().map_or("init".into(), |n| n.name.clone()),
            public: f.public || is_init,
            declared: f.mutability,
            is_init,
            params,
            ret,
            nonreentrant,
            timelock,
            span: f.span,
        });
        if let Some(n) = &f.name {
            self.declare(n, Global::Func(id));
        }
    }

    fn finish_effects(&mut self, functions: &mut [Function], callees: &[BTreeSet<FuncId>]) {
        // Recursion is rejected: it would make termination undecidable.
        let n = functions.len();
        let mut state = vec![0u8; n];
        fn dfs(
            i: usize,
            callees: &[BTreeSet<FuncId>],
            state: &mut [u8],
            cyc: &mut BTreeSet<usize>,
        ) {
            state[i] = 1;
            for &c in &callees[i] {
                if c >= state.len() {
                    continue;
                }
                if state[c] == 1 {
                    cyc.insert(c);
                } else if state[c] == 0 {
                    dfs(c, callees, state, cyc);
                }
            }
            state[i] = 2;
        }
        let mut cyc = BTreeSet::new();
        for i in 0..n {
            if state[i] == 0 {
                dfs(i, callees, &mut state, &mut cyc);
            }
        }
        for i in cyc {
            let (name, span) = (functions[i].name.clone(), functions[i].span);
            self.diags.push(
                Diagnostic::error(
                    Code::Recursion,
                    span,
                    format!("function `{name}` is recursive"),
                )
                .with_help("recursion is not allowed, so that every call terminates; use a bounded `for` loop"),
            );
        }
        // Transitive closure; n rounds suffice without cycles.
        for _ in 0..n {
            let mut changed = false;
            for i in 0..n {
                let mut e = functions[i].effects.clone();
                for &c in &callees[i] {
                    if c < n && c != i {
                        let ce = functions[c].effects.clone();
                        e.merge(&ce);
                    }
                }
                if e != functions[i].effects {
                    functions[i].effects = e;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        for f in functions.iter_mut() {
            if f.mutability == Mutability::View && f.effects.is_pure() {
                f.mutability = Mutability::Pure;
            }
        }
    }

    fn function(&mut self, idx: usize, f: &ast::FnDecl) -> (Function, BTreeSet<FuncId>) {
        let sig = &self.sigs[idx];
        let mut ctx = FnCtx {
            locals: Vec::new(),
            scopes: vec![HashMap::new()],
            sig: idx,
            callees: BTreeSet::new(),
            effects: Effects::default(),
        };
        let mut params = Vec::new();
        let param_list = sig.params.clone();
        for (name, ty, span) in param_list {
            let id = ctx.locals.len();
            ctx.locals.push(LocalDecl {
                name: name.clone(),
                ty,
                mutable: false,
                param: true,
                span,
            });
            if ctx.scopes[0].insert(name.clone(), id).is_some() {
                self.err(
                    Code::Duplicate,
                    span,
                    format!("parameter `{name}` is defined more than once"),
                );
            }
            params.push(id);
        }
        self.fx = Some(ctx);
        let body = self.block(&f.body);
        let sig = &self.sigs[idx];
        if sig.ret.is_some() && !block_returns(&f.body.stmts) {
            let span = f.body.span;
            self.diags.push(
                Diagnostic::error(
                    Code::MissingReturn,
                    Span::new(span.end.saturating_sub(1) as usize, span.end as usize),
                    "function may end without returning a value",
                )
                .with_help("end every path with `return` or `revert`"),
            );
        }
        let sig = &self.sigs[idx];
        let ctx = self.fx.take();
        let (locals, callees, effects) = ctx
            .map_or((Vec::new(), BTreeSet::new(), Effects::default()), |c| {
                (c.locals, c.callees, c.effects)
            });
        let mutability = match sig.declared {
            ast::Mutability::View => Mutability::View,
            ast::Mutability::Payable => Mutability::Payable,
            ast::Mutability::Mutating => Mutability::Mutating,
        };
        (
            Function {
                name: sig.name.clone(),
                is_init: sig.is_init,
                public: sig.public,
                mutability,
                nonreentrant: sig.nonreentrant,
                timelock: sig.timelock,
                params,
                ret: sig.ret.clone(),
                locals,
                body,
                effects,
                span: sig.span,
            },
            callees,
        )
    }

    fn ctx(&mut self) -> &mut FnCtx {
        // The checker only checks bodies with a context installed.
        self.fx.get_or_insert_with(|| FnCtx {
            locals: Vec::new(),
            scopes: vec![HashMap::new()],
            sig: 0,
            callees: BTreeSet::new(),
            effects: Effects::default(),
        })
    }

    fn cur_sig(&self) -> Option<&Sig> {
        self.fx.as_ref().and_then(|c| self.sigs.get(c.sig))
    }

    fn is_view(&self) -> bool {
        self.cur_sig()
            .is_some_and(|s| s.declared == ast::Mutability::View)
    }

    fn view_violation(&mut self, span: Span, what: &str) {
        if self.is_view() {
            self.diags.push(
                Diagnostic::error(
                    Code::ViewWrites,
                    span,
                    format!("a `view` function cannot {what}"),
                )
                .with_help("remove `view`, or move the change to another function"),
            );
        }
    }

    fn lookup_local(&mut self, name: &str) -> Option<LocalId> {
        let ctx = self.ctx();
        ctx.scopes.iter().rev().find_map(|s| s.get(name).copied())
    }

    fn new_local(&mut self, name: &ast::Ident, ty: Ty, mutable: bool) -> LocalId {
        if self.globals.contains_key(&name.name)
            || BUILTINS.contains(&name.name.as_str())
            || name.name.starts_with("_xcl")
        {
            self.err(
                Code::Duplicate,
                name.span,
                format!("local `{}` shadows a contract-level name", name.name),
            );
        } else if self.lookup_local(&name.name).is_some() {
            self.err(
                Code::Duplicate,
                name.span,
                format!("`{}` is already defined in this function", name.name),
            );
        }
        let ctx = self.ctx();
        let id = ctx.locals.len();
        ctx.locals.push(LocalDecl {
            name: name.name.clone(),
            ty,
            mutable,
            param: false,
            span: name.span,
        });
        if let Some(scope) = ctx.scopes.last_mut() {
            scope.insert(name.name.clone(), id);
        }
        id
    }

    fn block(&mut self, b: &ast::Block) -> Vec<Stmt> {
        self.ctx().scopes.push(HashMap::new());
        let mut out = Vec::new();
        for s in &b.stmts {
            self.stmt(s, &mut out);
        }
        self.ctx().scopes.pop();
        out
    }

    fn stmt(&mut self, s: &ast::Stmt, out: &mut Vec<Stmt>) {
        let span = s.span();
        let kind = match s {
            ast::Stmt::Let {
                mutable,
                name,
                ty,
                value,
                ..
            } => {
                let declared = ty.as_ref().and_then(|t| self.value_ty(t, "a local"));
                let Some(v) = self.expr(value, declared.as_ref()) else {
                    // Still declare it so later uses do not cascade into "unknown name".
                    let t = declared.unwrap_or(Ty::Uint(256));
                    self.new_local(name, t, *mutable);
                    return;
                };
                if !v.ty.is_value() {
                    self.err(
                        Code::BadStorageUse,
                        value.span,
                        "only value types can be copied into locals",
                    );
                    return;
                }
                let local = self.new_local(name, v.ty.clone(), *mutable);
                StmtKind::Let { local, value: v }
            }
            ast::Stmt::Assign {
                target, op, value, ..
            } => {
                self.assign(target, *op, value, span, out);
                return;
            }
            ast::Stmt::If {
                cond, then, els, ..
            } => {
                let c = self.expr(cond, Some(&Ty::Bool));
                let t = self.block(then);
                let e = match els.as_deref() {
                    None => Vec::new(),
                    Some(ast::Stmt::Block(b)) => self.block(b),
                    Some(other) => {
                        let mut v = Vec::new();
                        self.stmt(other, &mut v);
                        v
                    }
                };
                let Some(c) = c else { return };
                StmtKind::If {
                    cond: c,
                    then: t,
                    els: e,
                }
            }
            ast::Stmt::Block(b) => {
                let inner = self.block(b);
                out.extend(inner);
                return;
            }
            ast::Stmt::For {
                var,
                start,
                end,
                max,
                body,
                ..
            } => {
                self.for_loop(var, start, end, max.as_ref(), body, span, out);
                return;
            }
            ast::Stmt::Require { cond, message, .. } => {
                let Some(c) = self.expr(cond, Some(&Ty::Bool)) else {
                    return;
                };
                StmtKind::Require {
                    cond: c,
                    message: message.clone(),
                }
            }
            ast::Stmt::Revert { message, .. } => StmtKind::Revert {
                message: message.clone(),
            },
            ast::Stmt::Emit { event, args, .. } => {
                self.view_violation(span, "emit events");
                let Some((Global::Event(id), _)) = self.globals.get(&event.name).copied() else {
                    self.err(
                        Code::UnknownName,
                        event.span,
                        format!("unknown event `{}`", event.name),
                    );
                    return;
                };
                let fields: Vec<Ty> = self.events[id].fields.iter().map(|f| f.1.clone()).collect();
                let Some(args) = self.args(&fields, args, span, &event.name) else {
                    return;
                };
                self.ctx().effects.events = true;
                StmtKind::Emit { event: id, args }
            }
            ast::Stmt::Return { value, .. } => {
                let ret = self.cur_sig().and_then(|s| s.ret.clone());
                match (value, ret) {
                    (None, None) => StmtKind::Return(None),
                    (Some(v), Some(t)) => {
                        let Some(e) = self.expr(v, Some(&t)) else {
                            return;
                        };
                        StmtKind::Return(Some(e))
                    }
                    (Some(v), None) => {
                        self.err(
                            Code::ReturnMismatch,
                            v.span,
                            "this function does not return a value",
                        );
                        return;
                    }
                    (None, Some(t)) => {
                        let name = self.type_name(&t);
                        self.err(
                            Code::ReturnMismatch,
                            span,
                            format!("expected a return value of type `{name}`"),
                        );
                        return;
                    }
                }
            }
            ast::Stmt::Expr { expr, .. } => {
                let e = strip(expr);
                if let A::Call(name, args) = &e.kind {
                    match name.name.as_str() {
                        "transfer" | "xsend" if self.lookup_local(&name.name).is_none() => {
                            if let Some(k) = self.effect_stmt(&name.name, args, e.span) {
                                out.push(Stmt { kind: k, span });
                            }
                            return;
                        }
                        _ => {}
                    }
                    let Some(v) = self.expr(e, None) else { return };
                    if matches!(v.kind, ExprKind::TryTransfer { .. }) {
                        self.diags.push(
                            Diagnostic::warning(
                                Code::UnusedCallResult,
                                e.span,
                                "the result of `try_transfer` is ignored",
                            )
                            .with_help("check it with `require`, or use `transfer`, which reverts on failure"),
                        );
                    }
                    StmtKind::Expr(v)
                } else {
                    self.err(
                        Code::BadOperands,
                        expr.span,
                        "only calls can be used as statements",
                    );
                    return;
                }
            }
        };
        out.push(Stmt { kind, span });
    }

    fn effect_stmt(&mut self, name: &str, args: &[ast::Expr], span: Span) -> Option<StmtKind> {
        match name {
            "transfer" => {
                self.view_violation(span, "transfer value");
                let a = self.args(&[Ty::Address, Ty::Uint(256)], args, span, name)?;
                self.ctx().effects.transfers = true;
                let mut it = a.into_iter();
                Some(StmtKind::Transfer {
                    to: it.next()?,
                    amount: it.next()?,
                })
            }
            _ => {
                self.view_violation(span, "send cross-chain messages");
                let a = self.args(&[Ty::Uint(64), Ty::Address, Ty::Bytes32], args, span, name)?;
                self.ctx().effects.xsend = true;
                let mut it = a.into_iter();
                Some(StmtKind::XSend {
                    chain: it.next()?,
                    to: it.next()?,
                    payload: it.next()?,
                })
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn for_loop(
        &mut self,
        var: &ast::Ident,
        start: &ast::Expr,
        end: &ast::Expr,
        max: Option<&(String, Span)>,
        body: &ast::Block,
        span: Span,
        out: &mut Vec<Stmt>,
    ) {
        let (s, e) = self.pair(start, end, None);
        let (Some(s), Some(e)) = (s, e) else {
            self.ctx().scopes.push(HashMap::new());
            self.new_local(var, Ty::Uint(256), false);
            let _ = self.block(body);
            self.ctx().scopes.pop();
            return;
        };
        if s.ty.uint_bits().is_none() || matches!(s.ty, Ty::Enum(_)) {
            self.err(
                Code::TypeMismatch,
                start.span,
                "loop bounds must be unsigned integers",
            );
            return;
        }
        let bound = match (max, &s.kind, &e.kind) {
            (Some((n, nspan)), _, _) => match Word::parse_decimal(n) {
                Some(w) if !w.is_zero() && w.bits() <= 128 => w,
                _ => {
                    self.err(
                        Code::LoopBound,
                        *nspan,
                        "a loop bound is between 1 and 2^128 - 1",
                    );
                    return;
                }
            },
            (None, ExprKind::Const(a), ExprKind::Const(b)) => {
                if a > b {
                    self.err(
                        Code::LoopBound,
                        span,
                        "the loop range is empty: start is after end",
                    );
                    return;
                }
                if b.bits() > 128 {
                    self.err(
                        Code::LoopBound,
                        end.span,
                        "a constant loop end must be below 2^128",
                    );
                    return;
                }
                let hi = u128::from_be_bytes(b.0[16..].try_into().unwrap_or([0; 16]));
                let lo = u128::from_be_bytes(a.0[16..].try_into().unwrap_or([0; 16]));
                let mut w = Word::ZERO;
                w.0[16..].copy_from_slice(&(hi - lo).to_be_bytes());
                w
            }
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        Code::LoopBound,
                        span,
                        "a loop over a run-time range needs a static bound",
                    )
                    .with_help(
                        "write `for i in a..b max N { ... }`; more than N iterations panics",
                    ),
                );
                return;
            }
        };
        self.ctx().scopes.push(HashMap::new());
        let v = self.new_local(var, s.ty.clone(), false);
        let b = self.block(body);
        self.ctx().scopes.pop();
        out.push(Stmt {
            kind: StmtKind::For {
                var: v,
                start: s,
                end: e,
                bound,
                body: b,
            },
            span,
        });
    }

    fn assign(
        &mut self,
        target: &ast::Expr,
        op: AssignOp,
        value: &ast::Expr,
        span: Span,
        out: &mut Vec<Stmt>,
    ) {
        let target = strip(target);
        // A local?
        if let A::Name(n) = &target.kind {
            if let Some(id) = self.lookup_local(n) {
                let decl = self.ctx().locals[id].clone();
                if !decl.mutable {
                    self.diags.push(
                        Diagnostic::error(
                            Code::Immutable,
                            target.span,
                            format!("cannot assign twice to immutable `{n}`"),
                        )
                        .with_label(decl.span, "declared here")
                        .with_help(if decl.param {
                            "parameters are immutable; copy into a `let mut`".to_string()
                        } else {
                            format!("make it mutable: `let mut {n}`")
                        }),
                    );
                    return;
                }
                let read = Expr {
                    kind: ExprKind::Local(id),
                    ty: decl.ty.clone(),
                    span: target.span,
                };
                if let Some(v) = self.assigned_value(read, op, value, span) {
                    out.push(Stmt {
                        kind: StmtKind::Assign {
                            place: Place::Local(id),
                            value: v,
                        },
                        span,
                    });
                }
                return;
            }
        }
        let Some((path, ty)) = self.storage_path(target) else {
            return;
        };
        self.view_violation(span, "write to storage");
        self.ctx().effects.writes.insert(path.var);
        // Whole-struct assignment from a literal becomes one store per field.
        if let Ty::Struct(sid) = ty {
            let v = strip(value);
            let A::StructLit(sname, fields) = &v.kind else {
                self.err(
                    Code::BadStorageUse,
                    value.span,
                    "a storage struct can only be assigned a struct literal",
                );
                return;
            };
            if op != AssignOp::Set {
                self.err(
                    Code::BadOperands,
                    span,
                    "compound assignment needs an integer",
                );
                return;
            }
            let def = self.structs[sid].clone();
            if sname.name != def.name {
                self.err(
                    Code::TypeMismatch,
                    sname.span,
                    format!("expected `{}`, found `{}`", def.name, sname.name),
                );
                return;
            }
            let mut given: HashMap<&str, &ast::Expr> = HashMap::new();
            for fi in fields {
                if !def.fields.iter().any(|(n, _)| n == &fi.name.name) {
                    self.err(
                        Code::UnknownField,
                        fi.name.span,
                        format!("struct `{}` has no field `{}`", def.name, fi.name.name),
                    );
                } else if given.insert(&fi.name.name, &fi.value).is_some() {
                    self.err(
                        Code::Duplicate,
                        fi.name.span,
                        format!("field `{}` is given twice", fi.name.name),
                    );
                }
            }
            for (i, (fname, fty)) in def.fields.iter().enumerate() {
                let Some(fe) = given.get(fname.as_str()) else {
                    self.err(
                        Code::UnknownField,
                        v.span,
                        format!("missing field `{fname}` in `{}` literal", def.name),
                    );
                    continue;
                };
                if let Some(e) = self.expr(fe, Some(fty)) {
                    let mut p = path.clone();
                    p.steps.push(Step::Field(i));
                    out.push(Stmt {
                        kind: StmtKind::Assign {
                            place: Place::Storage(p),
                            value: e,
                        },
                        span,
                    });
                }
            }
            return;
        }
        if !ty.is_value() {
            let name = self.type_name(&ty);
            self.err(
                Code::BadStorageUse,
                target.span,
                format!("cannot assign a whole `{name}`; assign its elements"),
            );
            return;
        }
        let read = Expr {
            kind: ExprKind::Load(path.clone()),
            ty: ty.clone(),
            span: target.span,
        };
        if let Some(v) = self.assigned_value(read, op, value, span) {
            out.push(Stmt {
                kind: StmtKind::Assign {
                    place: Place::Storage(path),
                    value: v,
                },
                span,
            });
        }
    }

    fn assigned_value(
        &mut self,
        read: Expr,
        op: AssignOp,
        value: &ast::Expr,
        span: Span,
    ) -> Option<Expr> {
        let ty = read.ty.clone();
        let v = self.expr(value, Some(&ty))?;
        let aop = match op {
            AssignOp::Set => return Some(v),
            AssignOp::Add => ArithOp::Add,
            AssignOp::Sub => ArithOp::Sub,
            AssignOp::Mul => ArithOp::Mul,
        };
        let Ty::Uint(bits) = ty else {
            let name = self.type_name(&ty);
            self.err(
                Code::BadOperands,
                span,
                format!("compound assignment needs an integer, found `{name}`"),
            );
            return None;
        };
        if let ExprKind::Load(p) = &read.kind {
            let var = p.var;
            self.ctx().effects.reads.insert(var);
        }
        Some(Expr {
            kind: ExprKind::Arith {
                op: aop,
                bits,
                wrapping: false,
                lhs: Box::new(read),
                rhs: Box::new(v),
            },
            ty,
            span,
        })
    }

    /// Resolves `x`, `m[k]`, `s.f`, `a[i]` chains rooted at a storage variable.
    fn storage_path(&mut self, e: &ast::Expr) -> Option<(StoragePath, Ty)> {
        let e = strip(e);
        match &e.kind {
            A::Name(n) => match self.globals.get(n).copied() {
                Some((Global::Storage(v), _)) => Some((
                    StoragePath {
                        var: v,
                        steps: Vec::new(),
                    },
                    self.storage[v].ty.clone(),
                )),
                Some(_) => {
                    self.err(
                        Code::NotAssignable,
                        e.span,
                        format!("`{n}` is not a storage variable"),
                    );
                    None
                }
                None => {
                    self.err(Code::UnknownName, e.span, format!("unknown name `{n}`"));
                    None
                }
            },
            A::Index(base, idx) => {
                let (mut p, t) = self.storage_path(base)?;
                match t {
                    Ty::Map(k, v) => {
                        let key = self.expr(idx, Some(&k))?;
                        p.steps.push(Step::Key(key));
                        Some((p, *v))
                    }
                    Ty::Array(el, n) => {
                        let i = self.expr(idx, Some(&Ty::Uint(256)))?;
                        p.steps.push(Step::Index(i, n));
                        Some((p, *el))
                    }
                    other => {
                        let name = self.type_name(&other);
                        self.err(
                            Code::BadOperands,
                            e.span,
                            format!("cannot index a `{name}`"),
                        );
                        None
                    }
                }
            }
            A::Field(base, f) => {
                let (mut p, t) = self.storage_path(base)?;
                let Ty::Struct(sid) = t else {
                    let name = self.type_name(&t);
                    self.err(
                        Code::UnknownField,
                        f.span,
                        format!("`{name}` has no fields"),
                    );
                    return None;
                };
                let def = &self.structs[sid];
                let Some(i) = def.fields.iter().position(|(n, _)| n == &f.name) else {
                    let msg = format!("struct `{}` has no field `{}`", def.name, f.name);
                    self.err(Code::UnknownField, f.span, msg);
                    return None;
                };
                let fty = def.fields[i].1.clone();
                p.steps.push(Step::Field(i));
                Some((p, fty))
            }
            _ => {
                self.err(
                    Code::NotAssignable,
                    e.span,
                    "this expression cannot be assigned to",
                );
                None
            }
        }
    }

    fn args(
        &mut self,
        tys: &[Ty],
        args: &[ast::Expr],
        span: Span,
        what: &str,
    ) -> Option<Vec<Expr>> {
        if tys.len() != args.len() {
            self.err(
                Code::ArgCount,
                span,
                format!(
                    "`{what}` takes {} argument(s) but {} were given",
                    tys.len(),
                    args.len()
                ),
            );
            for a in args {
                let _ = self.expr(a, None);
            }
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (a, t) in args.iter().zip(tys) {
            match self.expr(a, Some(t)) {
                Some(e) => out.push(e),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn mismatch(&mut self, span: Span, expected: &Ty, found: &Ty) {
        let (e, f) = (self.type_name(expected), self.type_name(found));
        let mut d = Diagnostic::error(
            Code::TypeMismatch,
            span,
            format!("expected `{e}`, found `{f}`"),
        );
        if expected.uint_bits().is_some() && found.uint_bits().is_some() {
            d = d.with_help(format!("convert explicitly with `as {e}`"));
        }
        self.diags.push(d);
    }

    /// Checks an expression against an optional expected type.
    fn expr(&mut self, e: &ast::Expr, expected: Option<&Ty>) -> Option<Expr> {
        let out = self.expr_inner(e, expected)?;
        if let Some(t) = expected {
            if &out.ty != t {
                self.mismatch(e.span, t, &out.ty);
                return None;
            }
        }
        Some(out)
    }

    /// Checks two operands that must share a type; a literal takes the other side's type.
    fn pair(
        &mut self,
        l: &ast::Expr,
        r: &ast::Expr,
        hint: Option<&Ty>,
    ) -> (Option<Expr>, Option<Expr>) {
        if is_literal(l) && !is_literal(r) {
            let rr = self.expr(r, hint);
            let ll = match &rr {
                Some(x) => {
                    let t = x.ty.clone();
                    self.expr(l, Some(&t))
                }
                None => None,
            };
            (ll, rr)
        } else {
            let ll = self.expr(l, hint);
            let rr = match &ll {
                Some(x) => {
                    let t = x.ty.clone();
                    self.expr(r, Some(&t))
                }
                None => {
                    let _ = self.expr(r, None);
                    None
                }
            };
            (ll, rr)
        }
    }

    fn literal(&mut self, e: &ast::Expr, expected: Option<&Ty>) -> Option<Expr> {
        let (w, hex_bytes) = match &e.kind {
            A::Int(s) => match Word::parse_decimal(s) {
                Some(w) => (w, None),
                None => {
                    self.err(
                        Code::LiteralRange,
                        e.span,
                        format!("`{s}` does not fit in 256 bits"),
                    );
                    return None;
                }
            },
            A::Hex(s) => match Word::parse_hex(s) {
                Some((w, n)) => (w, Some(n)),
                None => {
                    self.err(
                        Code::LiteralRange,
                        e.span,
                        format!("`{s}` does not fit in 32 bytes"),
                    );
                    return None;
                }
            },
            _ => return None,
        };
        let ty = match (expected, hex_bytes) {
            (Some(Ty::Uint(b)), _) => {
                if w.bits() > u32::from(*b) {
                    self.diags.push(
                        Diagnostic::error(
                            Code::LiteralRange,
                            e.span,
                            format!("literal `{}` does not fit in `u{b}`", w.to_decimal()),
                        )
                        .with_help(format!("`u{b}` holds values up to 2^{b} - 1")),
                    );
                    return None;
                }
                Ty::Uint(*b)
            }
            (Some(t @ (Ty::Bytes32 | Ty::Address)), Some(_)) => t.clone(),
            (Some(t @ (Ty::Bytes32 | Ty::Address)), None) => {
                let name = self.type_name(t);
                self.diags.push(
                    Diagnostic::error(
                        Code::TypeMismatch,
                        e.span,
                        format!("expected `{name}`, found an integer literal"),
                    )
                    .with_help("write it in hex, e.g. `0x01`"),
                );
                return None;
            }
            (_, Some(32)) => Ty::Bytes32,
            _ => Ty::Uint(256),
        };
        Some(Expr {
            kind: ExprKind::Const(w),
            ty,
            span: e.span,
        })
    }

    fn expr_inner(&mut self, e: &ast::Expr, expected: Option<&Ty>) -> Option<Expr> {
        let span = e.span;
        let mk = |kind, ty| Some(Expr { kind, ty, span });
        match &e.kind {
            A::Int(_) | A::Hex(_) => self.literal(e, expected),
            A::Bool(b) => mk(ExprKind::Const(Word::from_u64(u64::from(*b))), Ty::Bool),
            A::Paren(inner) => self.expr_inner(inner, expected),
            A::Error => None,
            A::Name(n) => {
                if let Some(id) = self.lookup_local(n) {
                    let ty = self.ctx().locals[id].ty.clone();
                    return mk(ExprKind::Local(id), ty);
                }
                self.load(e)
            }
            A::Index(..) | A::Field(..) => self.load(e),
            A::Path(en, var) => {
                let Some((Global::Enum(id), _)) = self.globals.get(&en.name).copied() else {
                    self.err(
                        Code::UnknownName,
                        en.span,
                        format!("unknown enum `{}`", en.name),
                    );
                    return None;
                };
                let Some(i) = self.enums[id].variants.iter().position(|v| v == &var.name) else {
                    let msg = format!("enum `{}` has no variant `{}`", en.name, var.name);
                    self.err(Code::UnknownName, var.span, msg);
                    return None;
                };
                mk(ExprKind::Const(Word::from_u64(i as u64)), Ty::Enum(id))
            }
            A::Not(inner) => {
                let x = self.expr(inner, Some(&Ty::Bool))?;
                mk(ExprKind::Not(Box::new(x)), Ty::Bool)
            }
            A::Binary(op, l, r) => self.binary(*op, l, r, expected, span),
            A::Cast(inner, t) => {
                let target = self.value_ty(t, "a conversion target")?;
                let x = self.expr(inner, None)?;
                match (&x.ty, &target) {
                    (Ty::Uint(_), Ty::Uint(b)) => mk(
                        ExprKind::Resize {
                            bits: *b,
                            value: Box::new(x),
                        },
                        target.clone(),
                    ),
                    (Ty::Enum(_), Ty::Uint(b)) => mk(
                        ExprKind::Resize {
                            bits: *b,
                            value: Box::new(x),
                        },
                        target.clone(),
                    ),
                    (
                        Ty::Uint(256) | Ty::Bytes32 | Ty::Address,
                        Ty::Uint(256) | Ty::Bytes32 | Ty::Address,
                    ) => mk(ExprKind::Reinterpret(Box::new(x)), target.clone()),
                    (from, to) => {
                        let (f, t2) = (self.type_name(from), self.type_name(to));
                        self.diags.push(
                            Diagnostic::error(
                                Code::TypeMismatch,
                                span,
                                format!("cannot convert `{f}` to `{t2}`"),
                            )
                            .with_help("integers convert between widths; u256, bytes32 and address convert into each other"),
                        );
                        None
                    }
                }
            }
            A::StructLit(n, _) => {
                self.err(
                    Code::BadStorageUse,
                    n.span,
                    "a struct literal can only be assigned to storage",
                );
                None
            }
            A::Call(name, args) => self.call(name, args, span),
        }
    }

    fn load(&mut self, e: &ast::Expr) -> Option<Expr> {
        if let A::Name(n) = &strip(e).kind {
            match self.globals.get(n).copied() {
                Some((Global::Storage(_), _)) => {}
                Some(_) => {
                    self.err(Code::BadOperands, e.span, format!("`{n}` is not a value"));
                    return None;
                }
                None => {
                    self.err(Code::UnknownName, e.span, format!("unknown name `{n}`"));
                    return None;
                }
            }
        }
        let (p, ty) = self.storage_path(e)?;
        if !ty.is_value() {
            let name = self.type_name(&ty);
            self.diags.push(
                Diagnostic::error(
                    Code::BadStorageUse,
                    e.span,
                    format!("cannot copy a `{name}` out of storage"),
                )
                .with_help("read one element or field at a time"),
            );
            return None;
        }
        self.ctx().effects.reads.insert(p.var);
        Some(Expr {
            kind: ExprKind::Load(p),
            ty,
            span: e.span,
        })
    }

    fn binary(
        &mut self,
        op: BinOp,
        l: &ast::Expr,
        r: &ast::Expr,
        expected: Option<&Ty>,
        span: Span,
    ) -> Option<Expr> {
        match op {
            BinOp::And | BinOp::Or => {
                let a = self.expr(l, Some(&Ty::Bool));
                let b = self.expr(r, Some(&Ty::Bool));
                let (a, b) = (Box::new(a?), Box::new(b?));
                let kind = if op == BinOp::And {
                    ExprKind::And(a, b)
                } else {
                    ExprKind::Or(a, b)
                };
                Some(Expr {
                    kind,
                    ty: Ty::Bool,
                    span,
                })
            }
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let (a, b) = self.pair(l, r, None);
                let (a, b) = (a?, b?);
                let ordered = !matches!(op, BinOp::Eq | BinOp::Ne);
                if ordered && !matches!(a.ty, Ty::Uint(_)) {
                    let name = self.type_name(&a.ty);
                    self.err(
                        Code::BadOperands,
                        span,
                        format!("`{}` needs integers, found `{name}`", op.symbol()),
                    );
                    return None;
                }
                let cop = match op {
                    BinOp::Eq => CmpOp::Eq,
                    BinOp::Ne => CmpOp::Ne,
                    BinOp::Lt => CmpOp::Lt,
                    BinOp::Le => CmpOp::Le,
                    BinOp::Gt => CmpOp::Gt,
                    _ => CmpOp::Ge,
                };
                Some(Expr {
                    kind: ExprKind::Cmp {
                        op: cop,
                        lhs: Box::new(a),
                        rhs: Box::new(b),
                    },
                    ty: Ty::Bool,
                    span,
                })
            }
            _ => {
                let hint = expected.filter(|t| matches!(t, Ty::Uint(_)));
                let (a, b) = self.pair(l, r, hint);
                let (a, b) = (a?, b?);
                let Ty::Uint(bits) = a.ty else {
                    let name = self.type_name(&a.ty);
                    self.err(
                        Code::BadOperands,
                        span,
                        format!("`{}` needs integers, found `{name}`", op.symbol()),
                    );
                    return None;
                };
                let (aop, wrapping) = match op {
                    BinOp::Add => (ArithOp::Add, false),
                    BinOp::Sub => (ArithOp::Sub, false),
                    BinOp::Mul => (ArithOp::Mul, false),
                    BinOp::Div => (ArithOp::Div, false),
                    BinOp::Rem => (ArithOp::Rem, false),
                    BinOp::WAdd => (ArithOp::Add, true),
                    BinOp::WSub => (ArithOp::Sub, true),
                    _ => (ArithOp::Mul, true),
                };
                Some(Expr {
                    kind: ExprKind::Arith {
                        op: aop,
                        bits,
                        wrapping,
                        lhs: Box::new(a),
                        rhs: Box::new(b),
                    },
                    ty: Ty::Uint(bits),
                    span,
                })
            }
        }
    }

    fn call(&mut self, name: &ast::Ident, args: &[ast::Expr], span: Span) -> Option<Expr> {
        let mk = |kind, ty| Some(Expr { kind, ty, span });
        let n = name.name.as_str();
        let env = |c: &mut Self, env: Env, ty: Ty| -> Option<Expr> {
            if !args.is_empty() {
                c.err(Code::ArgCount, span, format!("`{n}` takes no arguments"));
                return None;
            }
            Some(Expr {
                kind: ExprKind::Env(env),
                ty,
                span,
            })
        };
        match n {
            "sender" => {
                self.ctx().effects.env = true;
                env(self, Env::Sender, Ty::Address)
            }
            "value" => {
                let payable = self
                    .cur_sig()
                    .is_some_and(|s| s.declared == ast::Mutability::Payable && s.public);
                if !payable {
                    self.diags.push(
                        Diagnostic::error(
                            Code::ValueNotPayable,
                            span,
                            "`value()` is only available in `payable` functions",
                        )
                        .with_help("declare the function `pub payable fn`"),
                    );
                    return None;
                }
                self.ctx().effects.env = true;
                env(self, Env::Value, Ty::Uint(256))
            }
            "now" => {
                self.ctx().effects.time = true;
                env(self, Env::Now, Ty::Uint(64))
            }
            "height" => {
                self.ctx().effects.env = true;
                env(self, Env::Height, Ty::Uint(64))
            }
            "balance" => {
                self.ctx().effects.env = true;
                env(self, Env::SelfBalance, Ty::Uint(256))
            }
            "sha256" | "keccak256" => {
                if args.is_empty() || args.len() > 8 {
                    self.err(
                        Code::ArgCount,
                        span,
                        format!("`{n}` takes 1 to 8 arguments"),
                    );
                    return None;
                }
                let mut out = Vec::new();
                for a in args {
                    let x = self.expr(a, None)?;
                    if !x.ty.is_value() {
                        self.err(Code::TypeMismatch, a.span, "only value types can be hashed");
                        return None;
                    }
                    out.push(x);
                }
                self.ctx().effects.hashing = true;
                let kind = if n == "sha256" {
                    HashKind::Sha256
                } else {
                    HashKind::Keccak256
                };
                mk(ExprKind::Hash { kind, args: out }, Ty::Bytes32)
            }
            "try_transfer" => {
                self.view_violation(span, "transfer value");
                let a = self.args(&[Ty::Address, Ty::Uint(256)], args, span, n)?;
                self.ctx().effects.transfers = true;
                let mut it = a.into_iter();
                let (to, amount) = (it.next()?, it.next()?);
                mk(
                    ExprKind::TryTransfer {
                        to: Box::new(to),
                        amount: Box::new(amount),
                    },
                    Ty::Bool,
                )
            }
            "ecrecover" => {
                let a = self.args(
                    &[Ty::Bytes32, Ty::Uint(8), Ty::Bytes32, Ty::Bytes32],
                    args,
                    span,
                    n,
                )?;
                self.ctx().effects.hashing = true;
                mk(ExprKind::EcRecover(a), Ty::Address)
            }
            "transfer" | "xsend" => {
                self.err(
                    Code::BadOperands,
                    span,
                    format!("`{n}` returns nothing and must be used as a statement"),
                );
                None
            }
            _ => {
                let Some((Global::Func(id), _)) = self.globals.get(n).copied() else {
                    self.err(
                        Code::UnknownName,
                        name.span,
                        format!("unknown function `{n}`"),
                    );
                    return None;
                };
                let sig = &self.sigs[id];
                let tys: Vec<Ty> = sig.params.iter().map(|p| p.1.clone()).collect();
                let ret = sig.ret.clone();
                let callee_view = sig.declared == ast::Mutability::View;
                let callee_public = sig.public;
                let callee_payable = sig.declared == ast::Mutability::Payable;
                if callee_public && callee_payable {
                    self.err(
                        Code::ValueNotPayable,
                        span,
                        format!("payable function `{n}` cannot be called internally"),
                    );
                }
                if !callee_view {
                    self.view_violation(span, "call a function that is not `view`");
                }
                let a = self.args(&tys, args, span, n)?;
                self.ctx().callees.insert(id);
                let Some(ret) = ret else {
                    // A call without a result is only valid as a statement.
                    return mk(ExprKind::Call { func: id, args: a }, Ty::Unit);
                };
                mk(ExprKind::Call { func: id, args: a }, ret)
            }
        }
    }
}
