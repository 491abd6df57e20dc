//! Security detectors on the IR. Each finding has a stable detector id, an SWC id, a
//! severity and a span. Detectors read effects from the IR; they never guess from text.

use crate::diag::Span;
use crate::ir::*;
use crate::word::Word;
use serde::Serialize;
use std::collections::BTreeSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub detector: &'static str,
    pub swc: &'static str,
    pub severity: Severity,
    pub function: String,
    pub message: String,
    pub span: Span,
}

pub fn audit(p: &Program) -> Vec<Finding> {
    audit_report(p).findings
}

/// Findings, plus what the source explicitly acknowledged (time reads in `@timelock`
/// functions), which are not findings but show that the detector saw them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub acknowledged: Vec<Finding>,
}

pub fn audit_report(p: &Program) -> Report {
    let mut out = Vec::new();
    let mut acknowledged = Vec::new();
    for f in p.functions.iter().filter(|f| f.public || f.is_init) {
        // A constructor's time checks run once, but they still decide what gets locked.
        if f.timelock {
            timestamp(f, &mut acknowledged);
        } else {
            timestamp(f, &mut out);
        }
        if f.is_init {
            continue;
        }
        reentrancy(p, f, &mut out);
        tod(p, f, &mut out);
        unchecked(f, &mut out);
        unguarded(p, f, &mut out);
    }
    out.sort_by_key(|x| (std::cmp::Reverse(x.severity), x.span.start));
    Report {
        findings: out,
        acknowledged,
    }
}

fn calls_with(p: &Program, e: &Expr, pred: &dyn Fn(&Effects) -> bool) -> bool {
    let mut hit = false;
    walk_expr(e, &mut |x| match &x.kind {
        ExprKind::TryTransfer { .. } => hit = true,
        ExprKind::Call { func, .. } => hit |= pred(&p.functions[*func].effects),
        _ => {}
    });
    hit
}

/// Storage variables an attacker can observe while a guarded function is paused at its
/// external call: those an unguarded public function touches (cross-function reentrancy)
/// and those with a public getter (read-only reentrancy).
fn reentrant_reach(p: &Program) -> (BTreeSet<VarId>, BTreeSet<VarId>) {
    let mut unguarded = BTreeSet::new();
    for g in p
        .functions
        .iter()
        .filter(|g| g.public && !g.is_init && !g.nonreentrant)
    {
        unguarded.extend(g.effects.reads.iter().copied());
        unguarded.extend(g.effects.writes.iter().copied());
    }
    let getters = (0..p.storage.len())
        .filter(|&v| p.storage[v].public)
        .collect();
    (unguarded, getters)
}

/// Storage variables a statement writes, directly or through the functions it calls.
fn stmt_writes(p: &Program, s: &Stmt) -> BTreeSet<VarId> {
    let mut vars = BTreeSet::new();
    if let StmtKind::Assign {
        place: Place::Storage(path),
        ..
    } = &s.kind
    {
        vars.insert(path.var);
    }
    stmt_exprs(s, &mut |e| {
        walk_expr(e, &mut |x| {
            if let ExprKind::Call { func, .. } = &x.kind {
                vars.extend(p.functions[*func].effects.writes.iter().copied());
            }
        })
    });
    vars
}

/// SWC-107: state written after value left the contract. Without a guard this is the
/// classic reentrancy; under `@nonreentrant` it still matters when the written variable is
/// used by an unguarded public function (cross-function) or has a public getter (read-only).
fn reentrancy(p: &Program, f: &Function, out: &mut Vec<Finding>) {
    let (unguarded, getters) = reentrant_reach(p);
    let mut external: Option<Span> = None;
    walk_stmts(&f.body, &mut |s| {
        let written = stmt_writes(p, s);
        let hit = if !f.nonreentrant {
            written
                .iter()
                .next()
                .map(|_| (Severity::High, "a re-entrant call sees stale state"))
        } else if written.iter().any(|v| unguarded.contains(v)) {
            Some((
                Severity::High,
                "an unguarded function re-entered meanwhile sees stale state (cross-function reentrancy)",
            ))
        } else if written.iter().any(|v| getters.contains(v)) {
            Some((
                Severity::Medium,
                "its public getter returns stale state meanwhile (read-only reentrancy)",
            ))
        } else {
            None
        };
        if let (Some((severity, why)), Some(call)) = (hit, external) {
            out.push(Finding {
                detector: "reentrancy",
                swc: "SWC-107",
                severity,
                function: f.name.clone(),
                message: format!(
                    "`{}` writes storage after an external call at bytes {}..{}; {why}",
                    f.name, call.start, call.end
                ),
                span: s.span,
            });
        }
        let mut ext = matches!(s.kind, StmtKind::Transfer { .. });
        stmt_exprs(s, &mut |e| {
            ext |= calls_with(p, e, &|fx| fx.transfers || fx.external_calls)
        });
        if ext && external.is_none() {
            external = Some(s.span);
        }
    });
}

fn reads_now(e: &Expr, tainted: &BTreeSet<LocalId>) -> bool {
    let mut hit = false;
    walk_expr(e, &mut |x| match &x.kind {
        ExprKind::Env(Env::Now) => hit = true,
        ExprKind::Local(l) => hit |= tainted.contains(l),
        _ => {}
    });
    hit
}

/// SWC-116: block time decides a branch in a function that moves value or state, and the
/// function is not marked `@timelock`.
fn timestamp(f: &Function, out: &mut Vec<Finding>) {
    let moves = f.effects.transfers || !f.effects.writes.is_empty();
    if !moves {
        return;
    }
    let mut tainted = BTreeSet::new();
    walk_stmts(&f.body, &mut |s| match &s.kind {
        StmtKind::Let { local, value }
        | StmtKind::Assign {
            place: Place::Local(local),
            value,
        } if reads_now(value, &tainted) => {
            tainted.insert(*local);
        }
        StmtKind::If { cond, .. } | StmtKind::Require { cond, .. } if reads_now(cond, &tainted) => {
            out.push(Finding {
                    detector: "timestamp",
                    swc: "SWC-116",
                    severity: Severity::Medium,
                    function: f.name.clone(),
                    message: format!(
                        "block time decides a condition in `{}`, which moves value or state; mark an intended deadline with `@timelock`",
                        f.name
                    ),
                    span: cond.span,
                });
        }
        _ => {}
    });
}

fn sender_keyed(path: &StoragePath) -> bool {
    matches!(path.steps.first(), Some(Step::Key(e)) if matches!(e.kind, ExprKind::Env(Env::Sender)))
}

/// A storage read a value came from: the variable, the struct field read (if any), and
/// whether the entry is keyed by the caller.
type Source = (VarId, Option<usize>, bool);

/// The struct field a path ends in, if it ends in one.
fn last_field(path: &StoragePath) -> Option<usize> {
    match path.steps.last() {
        Some(Step::Field(fi)) => Some(*fi),
        _ => None,
    }
}

/// Storage reads in `e`.
fn loads(e: &Expr, out: &mut Vec<Source>) {
    walk_expr(e, &mut |x| {
        if let ExprKind::Load(p) = &x.kind {
            out.push((p.var, last_field(p), sender_keyed(p)));
        }
    });
}

/// SWC-114: a transfer's amount or recipient comes from storage that another public
/// function can change, so the order of two pending transactions decides the payout.
fn tod(p: &Program, f: &Function, out: &mut Vec<Finding>) {
    // Locals carry the storage they were computed from.
    let mut local_src: Vec<Vec<Source>> = vec![Vec::new(); f.locals.len()];
    let mut sinks: Vec<(Span, Vec<Source>)> = Vec::new();
    walk_stmts(&f.body, &mut |s| {
        let from = |e: &Expr, local_src: &Vec<Vec<Source>>| {
            let mut v = Vec::new();
            loads(e, &mut v);
            walk_expr(e, &mut |x| {
                if let ExprKind::Local(l) = x.kind {
                    v.extend(local_src[l].iter().copied());
                }
            });
            v
        };
        match &s.kind {
            StmtKind::Let { local, value }
            | StmtKind::Assign {
                place: Place::Local(local),
                value,
            } => {
                let v = from(value, &local_src);
                local_src[*local].extend(v);
            }
            StmtKind::Transfer { to, amount } => {
                let mut v = from(to, &local_src);
                v.extend(from(amount, &local_src));
                sinks.push((s.span, v));
            }
            _ => {}
        }
        stmt_exprs(s, &mut |e| {
            walk_expr(e, &mut |x| {
                if let ExprKind::TryTransfer { to, amount } = &x.kind {
                    let mut v = from(to, &local_src);
                    v.extend(from(amount, &local_src));
                    sinks.push((x.span, v));
                }
            })
        });
    });
    for (span, srcs) in sinks {
        for (var, field, keyed) in srcs {
            for g in p
                .functions
                .iter()
                .filter(|g| g.public && !g.is_init && g.name != f.name)
            {
                let mut writes_unkeyed = false;
                let mut writes = false;
                let mut direct = false;
                walk_stmts(&g.body, &mut |s| {
                    if let StmtKind::Assign {
                        place: Place::Storage(path),
                        ..
                    } = &s.kind
                    {
                        // A write to another field of the entry cannot change this value.
                        let other_field =
                            matches!((field, last_field(path)), (Some(a), Some(b)) if a != b);
                        direct |= path.var == var;
                        if path.var == var && !other_field {
                            writes = true;
                            writes_unkeyed |= !sender_keyed(path);
                        }
                    }
                });
                // Writes made inside called functions count whole.
                if !direct && g.effects.writes.contains(&var) {
                    writes = true;
                    writes_unkeyed = true;
                }
                if writes
                    && (writes_unkeyed || !keyed)
                    && !(creates_only(p, g, var) && reads_created(p, f, var))
                {
                    out.push(Finding {
                        detector: "transaction-order",
                        swc: "SWC-114",
                        severity: Severity::Medium,
                        function: f.name.clone(),
                        message: format!(
                            "the transfer in `{}` depends on `{}`, which `{}` can change first (front-running)",
                            f.name, p.storage[var].name, g.name
                        ),
                        span,
                    });
                    return;
                }
            }
        }
    }
}

/// The status field of a map of structs: a field `F` such that every write to any
/// `var[k].F`, in any function, stores a non-zero constant. An entry whose `F` is zero has
/// never been written; once non-zero it never returns to zero.
fn status_field(p: &Program, var: VarId) -> Option<usize> {
    let Ty::Map(_, v) = &p.storage[var].ty else {
        return None;
    };
    let Ty::Struct(sid) = **v else {
        return None;
    };
    (0..p.structs[sid].fields.len()).find(|&fi| {
        let mut ok = true;
        for g in &p.functions {
            walk_stmts(&g.body, &mut |s| {
                if let StmtKind::Assign {
                    place: Place::Storage(path),
                    value,
                } = &s.kind
                {
                    if path.var == var && field_of(path) == Some(fi) {
                        ok &= matches!(&value.kind, ExprKind::Const(w) if *w != Word::ZERO);
                    }
                }
            });
        }
        ok
    })
}

/// `var[local].field` as (local, field).
fn keyed_field(path: &StoragePath) -> Option<(LocalId, usize)> {
    match path.steps.as_slice() {
        [Step::Key(k), Step::Field(fi)] => match k.kind {
            ExprKind::Local(l) => Some((l, *fi)),
            _ => None,
        },
        _ => None,
    }
}

fn field_of(path: &StoragePath) -> Option<usize> {
    match path.steps.as_slice() {
        [_, Step::Field(fi)] => Some(*fi),
        _ => None,
    }
}

/// A top-level `require(var[l].field OP c)`: returns (l, field, op, c).
fn status_require(s: &Stmt, var: VarId) -> Option<(LocalId, usize, CmpOp, Word)> {
    let StmtKind::Require { cond, .. } = &s.kind else {
        return None;
    };
    let ExprKind::Cmp { op, lhs, rhs } = &cond.kind else {
        return None;
    };
    let (ExprKind::Load(path), ExprKind::Const(c)) = (&lhs.kind, &rhs.kind) else {
        return None;
    };
    let (l, fi) = keyed_field(path).filter(|_| path.var == var)?;
    Some((l, fi, *op, *c))
}

/// `g` only fills empty entries of `var`: before any write it requires the entry's status
/// field to be zero, and every write goes to that same entry. Such a function cannot change
/// an entry another transaction already relies on.
fn creates_only(p: &Program, g: &Function, var: VarId) -> bool {
    let Some(status) = status_field(p, var) else {
        return false;
    };
    let mut key = None;
    for s in &g.body {
        if let Some((l, fi, CmpOp::Eq, c)) = status_require(s, var) {
            if fi == status && c == Word::ZERO {
                key = Some(l);
            }
        }
        let mut bad = false;
        let mut wrote = false;
        walk_stmts(std::slice::from_ref(s), &mut |x| {
            if let StmtKind::Assign {
                place: Place::Storage(path),
                ..
            } = &x.kind
            {
                if path.var == var {
                    wrote = true;
                    bad |= key.is_none()
                        || !matches!(path.steps.first(), Some(Step::Key(k)) if matches!(k.kind, ExprKind::Local(l) if Some(l) == key));
                }
            }
        });
        stmt_exprs(s, &mut |e| {
            bad |= calls_with(p, e, &|fx| fx.writes.contains(&var));
        });
        if bad || (wrote && key.is_none()) {
            return false;
        }
    }
    key.is_some_and(|l| !g.locals[l].mutable)
}

/// Every read of `var` in `f` is of one entry whose status field `f` first requires to be
/// non-zero, so `f` only pays out of entries that already exist.
fn reads_created(p: &Program, f: &Function, var: VarId) -> bool {
    let Some(status) = status_field(p, var) else {
        return false;
    };
    let mut key = None;
    for s in &f.body {
        if let Some((l, fi, op, c)) = status_require(s, var) {
            let nonzero = match op {
                CmpOp::Eq => c != Word::ZERO,
                CmpOp::Ne => c == Word::ZERO,
                _ => false,
            };
            if fi == status && nonzero && key.is_none() {
                key = Some(l);
            }
        }
    }
    let Some(key) = key else {
        return false;
    };
    let mut ok = !f.locals[key].mutable;
    walk_stmts(&f.body, &mut |s| {
        stmt_exprs(s, &mut |e| {
            walk_expr(e, &mut |x| {
                if let ExprKind::Load(path) = &x.kind {
                    if path.var == var {
                        ok &= matches!(path.steps.first(), Some(Step::Key(k)) if matches!(k.kind, ExprKind::Local(l) if l == key));
                    }
                }
            })
        })
    });
    ok
}

/// SWC-104: the result of `try_transfer` is dropped.
fn unchecked(f: &Function, out: &mut Vec<Finding>) {
    walk_stmts(&f.body, &mut |s| {
        if let StmtKind::Expr(e) = &s.kind {
            if matches!(e.kind, ExprKind::TryTransfer { .. }) {
                out.push(Finding {
                    detector: "unchecked-call",
                    swc: "SWC-104",
                    severity: Severity::Medium,
                    function: f.name.clone(),
                    message:
                        "the result of `try_transfer` is ignored; a failed send goes unnoticed"
                            .into(),
                    span: s.span,
                });
            }
        }
    });
}

/// SWC-105: anyone can change shared state: a write not keyed by the caller that no check
/// precedes.
fn unguarded(p: &Program, f: &Function, out: &mut Vec<Finding>) {
    let mut guarded = false;
    let mut done = false;
    walk_stmts(&f.body, &mut |s| {
        if done {
            return;
        }
        match &s.kind {
            StmtKind::Require { .. } | StmtKind::If { .. } | StmtKind::Revert { .. } => {
                guarded = true
            }
            StmtKind::Assign {
                place: Place::Storage(path),
                ..
            } if !guarded && !sender_keyed(path) => {
                done = true;
                out.push(Finding {
                    detector: "unguarded-write",
                    swc: "SWC-105",
                    severity: if f.effects.transfers {
                        Severity::High
                    } else {
                        Severity::Low
                    },
                    function: f.name.clone(),
                    message: format!(
                        "anyone can call `{}` and change `{}` without any check",
                        f.name, p.storage[path.var].name
                    ),
                    span: s.span,
                });
            }
            _ => {}
        }
    });
}
