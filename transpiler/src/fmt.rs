//! The canonical formatter: prints a parsed contract back in one layout (four-space indent,
//! one item or statement per line, blank lines between item groups) and keeps every `//`
//! comment, either on its own line before the code that follows it or at the end of the line
//! it was written on. It only formats sources that parse without errors, and its output
//! parses to the same tree, so formatting never changes meaning.

use crate::ast::*;
use crate::diag::{has_errors, Diagnostic};
use crate::lexer::Comment;
use crate::parser::parse;

/// Lines longer than this break a struct literal into one field per line.
const WIDTH: usize = 100;

/// Formats `src`, or returns the parse errors that prevent it.
pub fn format(src: &str) -> Result<String, Vec<Diagnostic>> {
    let parsed = parse(src);
    if has_errors(&parsed.diagnostics) {
        return Err(parsed.diagnostics);
    }
    let Some(c) = parsed.contract else {
        return Err(parsed.diagnostics);
    };
    let mut p = Printer {
        src,
        comments: parsed.comments,
        next: 0,
        out: String::new(),
        indent: 0,
    };
    p.contract(&c);
    Ok(p.out)
}

struct Printer<'a> {
    src: &'a str,
    comments: Vec<Comment>,
    next: usize,
    out: String,
    indent: usize,
}

impl Printer<'_> {
    fn line(&mut self, text: &str) {
        for _ in 0..self.indent {
            self.out.push_str("    ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn blank(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with("{\n") && !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
    }

    /// Whether the author left a blank line after byte `end`, before the next comment or
    /// the code at `start`; the formatter keeps one such line and drops the rest.
    fn had_blank(&self, end: u32, start: u32) -> bool {
        let until = self
            .comments
            .get(self.next)
            .map_or(start, |c| c.span.start.min(start));
        let gap = self.src.get(end as usize..until as usize).unwrap_or("");
        gap.split('\n')
            .skip(1)
            .take(gap.matches('\n').count().saturating_sub(1))
            .any(|l| l.trim().is_empty())
    }

    /// Prints, on their own lines, the comments that start before byte `before`.
    fn leading(&mut self, before: u32) {
        while let Some(c) = self.comments.get(self.next) {
            if c.span.start >= before {
                break;
            }
            let text = c.text.clone();
            self.next += 1;
            self.line(&text);
        }
    }

    /// Appends a comment that starts on the same source line as byte `end` to the last line.
    fn trailing(&mut self, end: u32) {
        let Some(c) = self.comments.get(self.next) else {
            return;
        };
        let gap = self
            .src
            .get(end as usize..c.span.start as usize)
            .unwrap_or("\n");
        if c.span.start >= end && !gap.contains('\n') {
            let text = c.text.clone();
            self.next += 1;
            if self.out.ends_with('\n') {
                self.out.pop();
            }
            self.out.push(' ');
            self.out.push_str(&text);
            self.out.push('\n');
        }
    }

    fn contract(&mut self, c: &Contract) {
        self.leading(c.span.start);
        self.line(&format!("contract {} {{", c.name.name));
        self.indent += 1;
        let mut prev: Option<&Item> = None;
        for item in &c.items {
            let grouped = matches!(
                (prev, item),
                (Some(Item::Storage { .. }), Item::Storage { .. })
                    | (Some(Item::Event { .. }), Item::Event { .. })
            );
            if let Some(prev) = prev {
                if !grouped || self.had_blank(prev.span().end, item.span().start) {
                    self.blank();
                }
            }
            self.leading(item.span().start);
            self.item(item);
            self.trailing(item.span().end);
            prev = Some(item);
        }
        self.leading(c.span.end.saturating_sub(1));
        self.indent -= 1;
        self.line("}");
        self.leading(u32::MAX);
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Storage {
                public, name, ty, ..
            } => {
                let p = if *public { "pub " } else { "" };
                self.line(&format!("{p}storage {}: {};", name.name, ty_str(ty)));
            }
            Item::Struct { name, fields, span } => {
                self.line(&format!("struct {} {{", name.name));
                self.indent += 1;
                for f in fields {
                    self.leading(f.name.span.start);
                    self.line(&format!("{},", param(f)));
                    self.trailing(f.ty.span().end);
                }
                self.leading(span.end.saturating_sub(1));
                self.indent -= 1;
                self.line("}");
            }
            Item::Enum { name, variants, .. } => {
                let v: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
                self.line(&format!("enum {} {{ {} }}", name.name, v.join(", ")));
            }
            Item::Event { name, fields, .. } => {
                let f: Vec<String> = fields.iter().map(param).collect();
                self.line(&format!("event {}({});", name.name, f.join(", ")));
            }
            Item::Fn(f) => self.function(f),
        }
    }

    fn function(&mut self, f: &FnDecl) {
        for a in &f.attrs {
            self.leading(a.span.start);
            self.line(&format!("@{}", a.name.name));
        }
        let mut head = String::new();
        if f.public {
            head.push_str("pub ");
        }
        match f.mutability {
            Mutability::View => head.push_str("view "),
            Mutability::Payable => head.push_str("payable "),
            Mutability::Mutating => {}
        }
        match &f.name {
            Some(n) => head.push_str(&format!("fn {}", n.name)),
            None => head.push_str("init"),
        }
        let params: Vec<String> = f.params.iter().map(param).collect();
        head.push_str(&format!("({})", params.join(", ")));
        if let Some(r) = &f.ret {
            head.push_str(&format!(" -> {}", ty_str(r)));
        }
        head.push_str(" {");
        self.line(&head);
        self.trailing(f.body.span.start + 1);
        self.block_body(&f.body);
        self.line("}");
    }

    fn block_body(&mut self, b: &Block) {
        self.indent += 1;
        let mut prev_end = None;
        for s in &b.stmts {
            if prev_end.is_some_and(|e| self.had_blank(e, s.span().start)) {
                self.blank();
            }
            prev_end = Some(s.span().end);
            self.leading(s.span().start);
            self.stmt(s);
            self.trailing(s.span().end);
        }
        self.leading(b.span.end.saturating_sub(1));
        self.indent -= 1;
    }

    fn stmt(&mut self, s: &Stmt) {
        match s {
            Stmt::Let {
                mutable,
                name,
                ty,
                value,
                ..
            } => {
                let m = if *mutable { "mut " } else { "" };
                let t = ty
                    .as_ref()
                    .map(|t| format!(": {}", ty_str(t)))
                    .unwrap_or_default();
                self.line(&format!("let {m}{}{t} = {};", name.name, expr(value)));
            }
            Stmt::Assign {
                target, op, value, ..
            } => {
                let sym = match op {
                    AssignOp::Set => "=",
                    AssignOp::Add => "+=",
                    AssignOp::Sub => "-=",
                    AssignOp::Mul => "*=",
                };
                let lhs = format!("{} {sym} ", expr(target));
                let flat = format!("{lhs}{};", expr(value));
                match &value.kind {
                    ExprKind::StructLit(n, fields)
                        if flat.len() + 4 * self.indent > WIDTH && !fields.is_empty() =>
                    {
                        self.line(&format!("{lhs}{} {{", n.name));
                        self.indent += 1;
                        for fi in fields {
                            self.line(&format!("{}: {},", fi.name.name, expr(&fi.value)));
                        }
                        self.indent -= 1;
                        self.line("};");
                    }
                    _ => self.line(&flat),
                }
            }
            Stmt::If { .. } => self.if_chain(s, ""),
            Stmt::Block(b) => {
                self.line("{");
                self.block_body(b);
                self.line("}");
            }
            Stmt::For {
                var,
                start,
                end,
                max,
                body,
                ..
            } => {
                let m = max
                    .as_ref()
                    .map(|(n, _)| format!(" max {n}"))
                    .unwrap_or_default();
                self.line(&format!(
                    "for {} in {}..{}{m} {{",
                    var.name,
                    expr(start),
                    expr(end)
                ));
                self.block_body(body);
                self.line("}");
            }
            Stmt::Require { cond, message, .. } => {
                self.line(&format!("require({}, \"{message}\");", expr(cond)));
            }
            Stmt::Revert { message, .. } => self.line(&format!("revert(\"{message}\");")),
            Stmt::Emit { event, args, .. } => {
                self.line(&format!("emit {}({});", event.name, list(args)));
            }
            Stmt::Return { value, .. } => match value {
                Some(v) => self.line(&format!("return {};", expr(v))),
                None => self.line("return;"),
            },
            Stmt::Expr { expr: e, .. } => self.line(&format!("{};", expr(e))),
        }
    }

    /// `if … { … } else if … { … } else { … }`; `prefix` is `} else ` for a chained arm.
    fn if_chain(&mut self, s: &Stmt, prefix: &str) {
        let Stmt::If {
            cond, then, els, ..
        } = s
        else {
            return;
        };
        self.line(&format!("{prefix}if {} {{", expr(cond)));
        self.block_body(then);
        match els.as_deref() {
            Some(next @ Stmt::If { .. }) => self.if_chain(next, "} else "),
            Some(Stmt::Block(b)) => {
                self.line("} else {");
                self.block_body(b);
                self.line("}");
            }
            _ => self.line("}"),
        }
    }
}

fn param(p: &Param) -> String {
    format!("{}: {}", p.name.name, ty_str(&p.ty))
}

fn ty_str(t: &TypeExpr) -> String {
    match t {
        TypeExpr::Named(i) => i.name.clone(),
        TypeExpr::Map(k, v, _) => format!("map<{}, {}>", ty_str(k), ty_str(v)),
        TypeExpr::Array(e, n, _) => format!("[{}; {n}]", ty_str(e)),
    }
}

fn list(args: &[Expr]) -> String {
    args.iter().map(expr).collect::<Vec<_>>().join(", ")
}

/// Prints an expression as parsed: the tree already encodes precedence, and every
/// parenthesis the author wrote is a `Paren` node, so none need adding.
pub fn expr(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Int(n) | ExprKind::Hex(n) => n.clone(),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Name(n) => n.clone(),
        ExprKind::Path(a, b) => format!("{}::{}", a.name, b.name),
        ExprKind::Binary(op, a, b) => format!("{} {} {}", expr(a), op.symbol(), expr(b)),
        ExprKind::Not(a) => format!("!{}", expr(a)),
        ExprKind::Call(f, args) => format!("{}({})", f.name, list(args)),
        ExprKind::Index(a, i) => format!("{}[{}]", expr(a), expr(i)),
        ExprKind::Field(a, f) => format!("{}.{}", expr(a), f.name),
        ExprKind::Cast(a, t) => format!("{} as {}", expr(a), ty_str(t)),
        ExprKind::StructLit(n, fields) => {
            let f: Vec<String> = fields
                .iter()
                .map(|fi| format!("{}: {}", fi.name.name, expr(&fi.value)))
                .collect();
            format!("{} {{ {} }}", n.name, f.join(", "))
        }
        ExprKind::Paren(a) => format!("({})", expr(a)),
        ExprKind::Error => String::new(),
    }
}
