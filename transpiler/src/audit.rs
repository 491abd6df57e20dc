//! Security detectors on the IR. Each finding has a stable detector id, an SWC id, a
//! severity and a span. Detectors read effects from the IR; they never guess from text.

use crate::diag::Span;
use crate::ir::*;
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
    let mut out = Vec::new();
    for f in p.functions.iter().filter(|f| f.public && !f.is_init) {
        reentrancy(p, f, &mut out);
        timestamp(f, &mut out);
        tod(p, f, &mut out);
        unchecked(f, &mut out);
        unguarded(p, f, &mut out);
    }
    out.sort_by_key(|x| (std::cmp::Reverse(x.severity), x.span.start));
    out
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

fn writes_in_expr(p: &Program, e: &Expr) -> bool {
    let mut hit = false;
    walk_expr(e, &mut |x| {
        if let ExprKind::Call { func, .. } = &x.kind {
            hit |= !p.functions[*func].effects.writes.is_empty();
        }
    });
    hit
}

/// SWC-107: state written after value left the contract, in a function without a guard.
fn reentrancy(p: &Program, f: &Function, out: &mut Vec<Finding>) {
    if f.nonreentrant {
        return;
    }
    let mut external: Option<Span> = None;
    walk_stmts(&f.body, &mut |s| {
        let mut writes = matches!(
            &s.kind,
            StmtKind::Assign {
                place: Place::Storage(_),
                ..
            }
        );
        stmt_exprs(s, &mut |e| writes |= writes_in_expr(p, e));
        if let (true, Some(call)) = (writes, external) {
            out.push(Finding {
                detector: "reentrancy",
                swc: "SWC-107",
                severity: Severity::High,
                function: f.name.clone(),
                message: format!(
                    "`{}` writes storage after an external call at bytes {}..{}; a re-entrant call sees stale state",
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
    if f.timelock || !moves {
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

/// Storage reads in `e`, with whether each is keyed by the caller.
fn loads(e: &Expr, out: &mut Vec<(VarId, bool)>) {
    walk_expr(e, &mut |x| {
        if let ExprKind::Load(p) = &x.kind {
            out.push((p.var, sender_keyed(p)));
        }
    });
}

/// SWC-114: a transfer's amount or recipient comes from storage that another public
/// function can change, so the order of two pending transactions decides the payout.
fn tod(p: &Program, f: &Function, out: &mut Vec<Finding>) {
    // Locals carry the storage they were computed from.
    let mut local_src: Vec<Vec<(VarId, bool)>> = vec![Vec::new(); f.locals.len()];
    let mut sinks: Vec<(Span, Vec<(VarId, bool)>)> = Vec::new();
    walk_stmts(&f.body, &mut |s| {
        let from = |e: &Expr, local_src: &Vec<Vec<(VarId, bool)>>| {
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
        for (var, keyed) in srcs {
            for g in p
                .functions
                .iter()
                .filter(|g| g.public && !g.is_init && g.name != f.name)
            {
                let mut writes_unkeyed = false;
                let mut writes = false;
                walk_stmts(&g.body, &mut |s| {
                    if let StmtKind::Assign {
                        place: Place::Storage(path),
                        ..
                    } = &s.kind
                    {
                        if path.var == var {
                            writes = true;
                            writes_unkeyed |= !sender_keyed(path);
                        }
                    }
                });
                if !writes && g.effects.writes.contains(&var) {
                    writes = true;
                    writes_unkeyed = true;
                }
                if writes && (writes_unkeyed || !keyed) {
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
