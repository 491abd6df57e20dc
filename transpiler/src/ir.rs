//! The typed, structured IR every backend and the auditor consume. Effects are explicit
//! nodes (storage loads and stores, transfers, events, time reads, hashing, cross-chain
//! sends), and every arithmetic node carries its width and whether it is checked or wrapping.

use crate::diag::Span;
use crate::word::Word;
use std::collections::BTreeSet;

pub type LocalId = usize;
pub type FuncId = usize;
pub type VarId = usize;
pub type StructId = usize;
pub type EventId = usize;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ty {
    Uint(u16),
    Bool,
    Address,
    Bytes32,
    /// Enums are stored and passed as `u8`; the id keeps them apart in the checker.
    Enum(usize),
    Struct(StructId),
    Map(Box<Ty>, Box<Ty>),
    Array(Box<Ty>, u32),
    /// The result of calling a function that returns nothing.
    Unit,
}

impl Ty {
    /// Value types fit in one 32-byte word and can live in locals, parameters and events.
    pub fn is_value(&self) -> bool {
        matches!(
            self,
            Ty::Uint(_) | Ty::Bool | Ty::Address | Ty::Bytes32 | Ty::Enum(_)
        )
    }

    /// The unsigned width the targets use for this value type (enums are u8).
    pub fn uint_bits(&self) -> Option<u16> {
        match self {
            Ty::Uint(b) => Some(*b),
            Ty::Enum(_) => Some(8),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct StructDef {
    pub name: String,
    pub fields: Vec<(String, Ty)>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct EnumDef {
    pub name: String,
    pub variants: Vec<String>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct EventDef {
    pub name: String,
    pub fields: Vec<(String, Ty)>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct StorageVar {
    pub name: String,
    pub ty: Ty,
    pub public: bool,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct LocalDecl {
    pub name: String,
    pub ty: Ty,
    pub mutable: bool,
    pub param: bool,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutability {
    Pure,
    View,
    Mutating,
    Payable,
}

/// What a function may do to the world, including through the functions it calls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    pub reads: BTreeSet<VarId>,
    pub writes: BTreeSet<VarId>,
    pub transfers: bool,
    pub external_calls: bool,
    pub events: bool,
    pub time: bool,
    pub env: bool,
    pub hashing: bool,
    pub xsend: bool,
}

impl Effects {
    pub fn merge(&mut self, o: &Effects) {
        self.reads.extend(o.reads.iter().copied());
        self.writes.extend(o.writes.iter().copied());
        self.transfers |= o.transfers;
        self.external_calls |= o.external_calls;
        self.events |= o.events;
        self.time |= o.time;
        self.env |= o.env;
        self.hashing |= o.hashing;
        self.xsend |= o.xsend;
    }

    /// Reads nothing outside its arguments (Solidity `pure`).
    pub fn is_pure(&self) -> bool {
        self.reads.is_empty()
            && !self.time
            && !self.env
            && self.writes.is_empty()
            && !self.mutates()
    }

    pub fn mutates(&self) -> bool {
        !self.writes.is_empty()
            || self.transfers
            || self.external_calls
            || self.events
            || self.xsend
    }
}

#[derive(Clone, Debug)]
pub struct Function {
    pub name: String,
    pub is_init: bool,
    pub public: bool,
    pub mutability: Mutability,
    pub nonreentrant: bool,
    /// `@timelock`: time comparisons here are intended (the audit stays quiet).
    pub timelock: bool,
    pub params: Vec<LocalId>,
    pub ret: Option<Ty>,
    pub locals: Vec<LocalDecl>,
    pub body: Vec<Stmt>,
    /// Transitive: includes callees.
    pub effects: Effects,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Program {
    pub name: String,
    pub structs: Vec<StructDef>,
    pub enums: Vec<EnumDef>,
    pub events: Vec<EventDef>,
    pub storage: Vec<StorageVar>,
    pub functions: Vec<Function>,
    pub span: Span,
}

impl Program {
    pub fn init(&self) -> Option<&Function> {
        self.functions.iter().find(|f| f.is_init)
    }

    pub fn uses_xsend(&self) -> bool {
        self.functions.iter().any(|f| f.effects.xsend)
    }

    pub fn uses_nonreentrant(&self) -> bool {
        self.functions.iter().any(|f| f.nonreentrant)
    }
}

#[derive(Clone, Debug)]
pub enum Step {
    Key(Expr),
    /// Index into a fixed array of the given length (bounds-checked).
    Index(Expr, u32),
    Field(usize),
}

#[derive(Clone, Debug)]
pub struct StoragePath {
    pub var: VarId,
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug)]
pub enum Place {
    Local(LocalId),
    Storage(StoragePath),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Env {
    Sender,
    Value,
    /// Block time in seconds; an explicit time-read effect.
    Now,
    Height,
    SelfBalance,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashKind {
    Sha256,
    Keccak256,
}

#[derive(Clone, Debug)]
pub enum ExprKind {
    Const(Word),
    Local(LocalId),
    Load(StoragePath),
    Arith {
        op: ArithOp,
        bits: u16,
        wrapping: bool,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Cmp {
        op: CmpOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// Integer width change; narrowing is checked (panics with 0x11 when it does not fit).
    Resize {
        bits: u16,
        value: Box<Expr>,
    },
    /// Reinterprets a word between u256, bytes32 and address (free on every target).
    Reinterpret(Box<Expr>),
    Env(Env),
    Hash {
        kind: HashKind,
        args: Vec<Expr>,
    },
    Call {
        func: FuncId,
        args: Vec<Expr>,
    },
    /// Sends value and reports success instead of reverting.
    TryTransfer {
        to: Box<Expr>,
        amount: Box<Expr>,
    },
    EcRecover(Vec<Expr>),
}

#[derive(Clone, Debug)]
pub struct Expr {
    pub kind: ExprKind,
    pub ty: Ty,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum StmtKind {
    Let {
        local: LocalId,
        value: Expr,
    },
    Assign {
        place: Place,
        value: Expr,
    },
    If {
        cond: Expr,
        then: Vec<Stmt>,
        els: Vec<Stmt>,
    },
    /// `for var in start..end` with a static bound on the number of iterations;
    /// `end - start > bound` panics, as does `start > end`.
    For {
        var: LocalId,
        start: Expr,
        end: Expr,
        bound: Word,
        body: Vec<Stmt>,
    },
    Require {
        cond: Expr,
        message: String,
    },
    Revert {
        message: String,
    },
    Emit {
        event: EventId,
        args: Vec<Expr>,
    },
    /// Sends value; reverts with "transfer failed" if the recipient refuses.
    Transfer {
        to: Expr,
        amount: Expr,
    },
    /// Cross-chain send through the hub's message relay.
    XSend {
        chain: Expr,
        to: Expr,
        payload: Expr,
    },
    Return(Option<Expr>),
    Expr(Expr),
}

#[derive(Clone, Debug)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

/// Calls `f` on every expression directly inside `stmt` (not nested statements).
pub fn stmt_exprs<'a>(stmt: &'a Stmt, f: &mut dyn FnMut(&'a Expr)) {
    match &stmt.kind {
        StmtKind::Let { value, .. } => f(value),
        StmtKind::Assign { place, value } => {
            if let Place::Storage(p) = place {
                path_exprs(p, f);
            }
            f(value);
        }
        StmtKind::If { cond, .. } => f(cond),
        StmtKind::For { start, end, .. } => {
            f(start);
            f(end);
        }
        StmtKind::Require { cond, .. } => f(cond),
        StmtKind::Emit { args, .. } => args.iter().for_each(f),
        StmtKind::Transfer { to, amount } => {
            f(to);
            f(amount);
        }
        StmtKind::XSend { chain, to, payload } => {
            f(chain);
            f(to);
            f(payload);
        }
        StmtKind::Return(Some(e)) | StmtKind::Expr(e) => f(e),
        StmtKind::Return(None) | StmtKind::Revert { .. } => {}
    }
}

pub fn path_exprs<'a>(p: &'a StoragePath, f: &mut dyn FnMut(&'a Expr)) {
    for s in &p.steps {
        match s {
            Step::Key(e) | Step::Index(e, _) => f(e),
            Step::Field(_) => {}
        }
    }
}

/// Visits `e` and every sub-expression, parents first.
pub fn walk_expr<'a>(e: &'a Expr, f: &mut dyn FnMut(&'a Expr)) {
    f(e);
    match &e.kind {
        ExprKind::Const(_) | ExprKind::Local(_) | ExprKind::Env(_) => {}
        ExprKind::Load(p) => path_exprs(p, &mut |x| walk_expr(x, f)),
        ExprKind::Arith { lhs, rhs, .. }
        | ExprKind::Cmp { lhs, rhs, .. }
        | ExprKind::And(lhs, rhs)
        | ExprKind::Or(lhs, rhs) => {
            walk_expr(lhs, f);
            walk_expr(rhs, f);
        }
        ExprKind::Not(x) | ExprKind::Resize { value: x, .. } | ExprKind::Reinterpret(x) => {
            walk_expr(x, f)
        }
        ExprKind::Hash { args, .. } | ExprKind::Call { args, .. } | ExprKind::EcRecover(args) => {
            for a in args {
                walk_expr(a, f);
            }
        }
        ExprKind::TryTransfer { to, amount } => {
            walk_expr(to, f);
            walk_expr(amount, f);
        }
    }
}

/// Visits every statement in a body, parents first, in source order.
pub fn walk_stmts<'a>(body: &'a [Stmt], f: &mut dyn FnMut(&'a Stmt)) {
    for s in body {
        f(s);
        match &s.kind {
            StmtKind::If { then, els, .. } => {
                walk_stmts(then, f);
                walk_stmts(els, f);
            }
            StmtKind::For { body, .. } => walk_stmts(body, f),
            _ => {}
        }
    }
}
