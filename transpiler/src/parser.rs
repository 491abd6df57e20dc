//! Recursive-descent parser with error recovery: a syntax error is reported, the parser skips
//! to the next statement or item boundary, and goes on, so one run reports many errors.

use crate::ast::*;
use crate::diag::{Code, Diagnostic, Span};
use crate::lexer::{lex, Comment, Tok, Token};

/// Deeper nesting than this is rejected rather than risking the parser's stack.
const MAX_DEPTH: u32 = 64;

pub struct Parsed {
    pub contract: Option<Contract>,
    pub comments: Vec<Comment>,
    pub diagnostics: Vec<Diagnostic>,
}

pub fn parse(src: &str) -> Parsed {
    let mut diags = Vec::new();
    let lexed = lex(src, &mut diags);
    let mut p = Parser {
        toks: lexed.tokens,
        pos: 0,
        diags,
        depth: 0,
    };
    let contract = p.contract();
    Parsed {
        contract,
        comments: lexed.comments,
        diagnostics: p.diags,
    }
}

/// Marker for "an error was reported; recover".
struct Fail;
type PResult<T> = Result<T, Fail>;

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    diags: Vec<Diagnostic>,
    depth: u32,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos.min(self.toks.len() - 1)].tok
    }

    fn span(&self) -> Span {
        self.toks[self.pos.min(self.toks.len() - 1)].span
    }

    fn prev_span(&self) -> Span {
        self.toks[self.pos.saturating_sub(1)].span
    }

    fn bump(&mut self) -> Token {
        let t = self.toks[self.pos.min(self.toks.len() - 1)].clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == t {
            self.bump();
            true
        } else {
            false
        }
    }

    fn error_here(&mut self, code: Code, expected: &str) -> Fail {
        let found = self.peek().describe();
        let span = self.span();
        self.diags.push(Diagnostic::error(
            code,
            span,
            format!("expected {expected}, found {found}"),
        ));
        Fail
    }

    fn expect(&mut self, t: &Tok) -> PResult<Span> {
        if self.peek() == t {
            Ok(self.bump().span)
        } else {
            Err(self.error_here(Code::ExpectedToken, &format!("`{}`", t.text())))
        }
    }

    fn ident(&mut self) -> PResult<Ident> {
        if let Tok::Ident(name) = self.peek().clone() {
            let span = self.bump().span;
            Ok(Ident { name, span })
        } else {
            Err(self.error_here(Code::ExpectedToken, "an identifier"))
        }
    }

    fn string(&mut self) -> PResult<String> {
        if let Tok::Str(s) = self.peek().clone() {
            self.bump();
            Ok(s)
        } else {
            Err(self.error_here(Code::ExpectedToken, "a string literal"))
        }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let span = self.span();
            self.diags.push(Diagnostic::error(
                Code::NestingTooDeep,
                span,
                format!("nesting deeper than {MAX_DEPTH} levels"),
            ));
            return Err(Fail);
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Skips tokens until just after a `;` or before a `}` at the current nesting level.
    fn recover_stmt(&mut self) {
        let mut depth = 0i32;
        loop {
            match self.peek() {
                Tok::Eof => return,
                Tok::Semi if depth == 0 => {
                    self.bump();
                    return;
                }
                Tok::LBrace => depth += 1,
                Tok::RBrace => {
                    if depth == 0 {
                        return;
                    }
                    depth -= 1;
                    if depth == 0 {
                        self.bump();
                        return;
                    }
                }
                _ => {}
            }
            self.bump();
        }
    }

    /// Skips to the start of the next item (or the contract's closing brace).
    fn recover_item(&mut self) {
        let mut depth = 0i32;
        loop {
            match self.peek() {
                Tok::Eof => return,
                Tok::Storage
                | Tok::Pub
                | Tok::Fn
                | Tok::Init
                | Tok::Event
                | Tok::Struct
                | Tok::Enum
                | Tok::At
                    if depth == 0 =>
                {
                    return
                }
                Tok::LBrace => depth += 1,
                Tok::RBrace => {
                    if depth == 0 {
                        return;
                    }
                    depth -= 1;
                }
                _ => {}
            }
            self.bump();
        }
    }

    fn contract(&mut self) -> Option<Contract> {
        let start = self.span();
        if !self.eat(&Tok::Contract) {
            self.diags.push(
                Diagnostic::error(
                    Code::MissingContract,
                    start,
                    format!("expected `contract`, found {}", self.peek().describe()),
                )
                .with_help("a source file holds one `contract Name { ... }`"),
            );
            // Try to find a `contract` keyword further on, so the rest still gets checked.
            while !matches!(self.peek(), Tok::Contract | Tok::Eof) {
                self.bump();
            }
            if !self.eat(&Tok::Contract) {
                return None;
            }
        }
        let name = self.ident().ok()?;
        if self.expect(&Tok::LBrace).is_err() {
            return None;
        }
        let mut items = Vec::new();
        while !matches!(self.peek(), Tok::RBrace | Tok::Eof) {
            let before = self.pos;
            match self.item() {
                Ok(item) => items.push(item),
                Err(Fail) => {
                    self.recover_item();
                    if self.pos == before {
                        self.bump();
                    }
                }
            }
        }
        let end = self.span();
        let _ = self.expect(&Tok::RBrace);
        if !matches!(self.peek(), Tok::Eof) {
            let span = self.span();
            self.diags.push(Diagnostic::error(
                Code::ExpectedItem,
                span,
                format!("expected end of file, found {}", self.peek().describe()),
            ));
        }
        Some(Contract {
            name,
            items,
            span: start.to(end),
        })
    }

    fn item(&mut self) -> PResult<Item> {
        let start = self.span();
        let mut attrs = Vec::new();
        while self.peek() == &Tok::At {
            let at = self.bump().span;
            let name = self.ident()?;
            attrs.push(Attribute {
                span: at.to(name.span),
                name,
            });
        }
        let public = self.eat(&Tok::Pub);
        match self.peek() {
            Tok::Storage if attrs.is_empty() => {
                self.bump();
                let name = self.ident()?;
                self.expect(&Tok::Colon)?;
                let ty = self.ty()?;
                let end = self.expect(&Tok::Semi)?;
                Ok(Item::Storage {
                    public,
                    name,
                    ty,
                    span: start.to(end),
                })
            }
            Tok::Struct if attrs.is_empty() && !public => {
                self.bump();
                let name = self.ident()?;
                self.expect(&Tok::LBrace)?;
                let fields = self.params(&Tok::RBrace)?;
                let end = self.expect(&Tok::RBrace)?;
                Ok(Item::Struct {
                    name,
                    fields,
                    span: start.to(end),
                })
            }
            Tok::Enum if attrs.is_empty() && !public => {
                self.bump();
                let name = self.ident()?;
                self.expect(&Tok::LBrace)?;
                let mut variants = Vec::new();
                while !matches!(self.peek(), Tok::RBrace | Tok::Eof) {
                    variants.push(self.ident()?);
                    if !self.eat(&Tok::Comma) {
                        break;
                    }
                }
                let end = self.expect(&Tok::RBrace)?;
                Ok(Item::Enum {
                    name,
                    variants,
                    span: start.to(end),
                })
            }
            Tok::Event if attrs.is_empty() && !public => {
                self.bump();
                let name = self.ident()?;
                self.expect(&Tok::LParen)?;
                let fields = self.params(&Tok::RParen)?;
                self.expect(&Tok::RParen)?;
                let end = self.expect(&Tok::Semi)?;
                Ok(Item::Event {
                    name,
                    fields,
                    span: start.to(end),
                })
            }
            Tok::View | Tok::Payable | Tok::Fn | Tok::Init => {
                let mutability = if self.eat(&Tok::View) {
                    Mutability::View
                } else if self.eat(&Tok::Payable) {
                    Mutability::Payable
                } else {
                    Mutability::Mutating
                };
                let name = if self.eat(&Tok::Init) {
                    None
                } else {
                    self.expect(&Tok::Fn)?;
                    Some(self.ident()?)
                };
                self.expect(&Tok::LParen)?;
                let params = self.params(&Tok::RParen)?;
                self.expect(&Tok::RParen)?;
                let ret = if self.eat(&Tok::Arrow) {
                    Some(self.ty()?)
                } else {
                    None
                };
                let body = self.block()?;
                Ok(Item::Fn(FnDecl {
                    attrs,
                    public,
                    mutability,
                    span: start.to(body.span),
                    name,
                    params,
                    ret,
                    body,
                }))
            }
            _ => Err(self.error_here(
                Code::ExpectedItem,
                "an item (`storage`, `struct`, `enum`, `event`, `fn` or `init`)",
            )),
        }
    }

    fn params(&mut self, close: &Tok) -> PResult<Vec<Param>> {
        let mut out = Vec::new();
        while self.peek() != close && self.peek() != &Tok::Eof {
            let name = self.ident()?;
            self.expect(&Tok::Colon)?;
            let ty = self.ty()?;
            out.push(Param { name, ty });
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        Ok(out)
    }

    fn ty(&mut self) -> PResult<TypeExpr> {
        self.enter()?;
        let r = self.ty_inner();
        self.leave();
        r
    }

    fn ty_inner(&mut self) -> PResult<TypeExpr> {
        let start = self.span();
        match self.peek().clone() {
            Tok::Ident(_) => Ok(TypeExpr::Named(self.ident()?)),
            Tok::Map => {
                self.bump();
                self.expect(&Tok::Lt)?;
                let k = self.ty()?;
                self.expect(&Tok::Comma)?;
                let v = self.ty()?;
                let end = self.expect(&Tok::Gt)?;
                Ok(TypeExpr::Map(Box::new(k), Box::new(v), start.to(end)))
            }
            Tok::LBracket => {
                self.bump();
                let elem = self.ty()?;
                self.expect(&Tok::Semi)?;
                let n = match self.peek().clone() {
                    Tok::Int(n) => {
                        self.bump();
                        n
                    }
                    _ => return Err(self.error_here(Code::ExpectedToken, "an array length")),
                };
                let end = self.expect(&Tok::RBracket)?;
                Ok(TypeExpr::Array(Box::new(elem), n, start.to(end)))
            }
            _ => Err(self.error_here(Code::ExpectedType, "a type")),
        }
    }

    fn block(&mut self) -> PResult<Block> {
        self.enter()?;
        let r = self.block_inner();
        self.leave();
        r
    }

    fn block_inner(&mut self) -> PResult<Block> {
        let start = self.expect(&Tok::LBrace)?;
        let mut stmts = Vec::new();
        while !matches!(self.peek(), Tok::RBrace | Tok::Eof) {
            let before = self.pos;
            match self.stmt() {
                Ok(s) => stmts.push(s),
                Err(Fail) => {
                    self.recover_stmt();
                    if self.pos == before {
                        self.bump();
                    }
                }
            }
        }
        let end = self.expect(&Tok::RBrace)?;
        Ok(Block {
            stmts,
            span: start.to(end),
        })
    }

    fn stmt(&mut self) -> PResult<Stmt> {
        let start = self.span();
        match self.peek() {
            Tok::Let => {
                self.bump();
                let mutable = self.eat(&Tok::Mut);
                let name = self.ident()?;
                let ty = if self.eat(&Tok::Colon) {
                    Some(self.ty()?)
                } else {
                    None
                };
                self.expect(&Tok::Eq)?;
                let value = self.expr(false)?;
                let end = self.expect(&Tok::Semi)?;
                Ok(Stmt::Let {
                    mutable,
                    name,
                    ty,
                    value,
                    span: start.to(end),
                })
            }
            Tok::If => self.if_stmt(),
            Tok::For => {
                self.bump();
                let var = self.ident()?;
                self.expect(&Tok::In)?;
                let s = self.expr(true)?;
                self.expect(&Tok::DotDot)?;
                let e = self.expr(true)?;
                let max = if self.eat(&Tok::Max) {
                    match self.peek().clone() {
                        Tok::Int(n) => {
                            let sp = self.bump().span;
                            Some((n, sp))
                        }
                        _ => return Err(self.error_here(Code::ExpectedToken, "a loop bound")),
                    }
                } else {
                    None
                };
                let body = self.block()?;
                Ok(Stmt::For {
                    span: start.to(body.span),
                    var,
                    start: s,
                    end: e,
                    max,
                    body,
                })
            }
            Tok::Require => {
                self.bump();
                self.expect(&Tok::LParen)?;
                let cond = self.expr(false)?;
                self.expect(&Tok::Comma)?;
                let message = self.string()?;
                self.expect(&Tok::RParen)?;
                let end = self.expect(&Tok::Semi)?;
                Ok(Stmt::Require {
                    cond,
                    message,
                    span: start.to(end),
                })
            }
            Tok::Revert => {
                self.bump();
                self.expect(&Tok::LParen)?;
                let message = self.string()?;
                self.expect(&Tok::RParen)?;
                let end = self.expect(&Tok::Semi)?;
                Ok(Stmt::Revert {
                    message,
                    span: start.to(end),
                })
            }
            Tok::Emit => {
                self.bump();
                let event = self.ident()?;
                self.expect(&Tok::LParen)?;
                let args = self.args()?;
                let end = self.expect(&Tok::Semi)?;
                Ok(Stmt::Emit {
                    event,
                    args,
                    span: start.to(end),
                })
            }
            Tok::Return => {
                self.bump();
                let value = if self.peek() == &Tok::Semi {
                    None
                } else {
                    Some(self.expr(false)?)
                };
                let end = self.expect(&Tok::Semi)?;
                Ok(Stmt::Return {
                    value,
                    span: start.to(end),
                })
            }
            _ => {
                let target = self.expr(false)?;
                let op = match self.peek() {
                    Tok::Eq => Some(AssignOp::Set),
                    Tok::PlusEq => Some(AssignOp::Add),
                    Tok::MinusEq => Some(AssignOp::Sub),
                    Tok::StarEq => Some(AssignOp::Mul),
                    _ => None,
                };
                if let Some(op) = op {
                    self.bump();
                    let value = self.expr(false)?;
                    let end = self.expect(&Tok::Semi)?;
                    Ok(Stmt::Assign {
                        target,
                        op,
                        value,
                        span: start.to(end),
                    })
                } else {
                    let end = self.expect(&Tok::Semi)?;
                    Ok(Stmt::Expr {
                        expr: target,
                        span: start.to(end),
                    })
                }
            }
        }
    }

    fn if_stmt(&mut self) -> PResult<Stmt> {
        self.enter()?;
        let start = self.expect(&Tok::If)?;
        let cond = self.expr(true);
        let r = cond.and_then(|cond| {
            let then = self.block()?;
            let els = if self.eat(&Tok::Else) {
                if self.peek() == &Tok::If {
                    Some(Box::new(self.if_stmt()?))
                } else {
                    Some(Box::new(Stmt::Block(self.block()?)))
                }
            } else {
                None
            };
            let end = els.as_ref().map_or(then.span, |e| e.span());
            Ok(Stmt::If {
                cond,
                then,
                els,
                span: start.to(end),
            })
        });
        self.leave();
        r
    }

    fn args(&mut self) -> PResult<Vec<Expr>> {
        let mut out = Vec::new();
        while !matches!(self.peek(), Tok::RParen | Tok::Eof) {
            out.push(self.expr(false)?);
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.expect(&Tok::RParen)?;
        Ok(out)
    }

    /// `no_struct`: in `if`/`for` headers a `{` opens the body, not a struct literal.
    fn expr(&mut self, no_struct: bool) -> PResult<Expr> {
        self.enter()?;
        let r = self.binary(0, no_struct);
        self.leave();
        r
    }

    fn binop(&self) -> Option<BinOp> {
        Some(match self.peek() {
            Tok::Plus => BinOp::Add,
            Tok::Minus => BinOp::Sub,
            Tok::Star => BinOp::Mul,
            Tok::Slash => BinOp::Div,
            Tok::Percent => BinOp::Rem,
            Tok::PlusPct => BinOp::WAdd,
            Tok::MinusPct => BinOp::WSub,
            Tok::StarPct => BinOp::WMul,
            Tok::EqEq => BinOp::Eq,
            Tok::Ne => BinOp::Ne,
            Tok::Lt => BinOp::Lt,
            Tok::Le => BinOp::Le,
            Tok::Gt => BinOp::Gt,
            Tok::Ge => BinOp::Ge,
            Tok::AndAnd => BinOp::And,
            Tok::OrOr => BinOp::Or,
            _ => return None,
        })
    }

    fn binary(&mut self, min_prec: u8, no_struct: bool) -> PResult<Expr> {
        let mut lhs = self.unary(no_struct)?;
        while let Some(op) = self.binop() {
            let prec = op.precedence();
            if prec <= min_prec {
                break;
            }
            self.bump();
            self.enter()?;
            let rhs = self.binary(prec, no_struct);
            self.leave();
            let rhs = rhs?;
            // Comparisons do not chain: `a < b < c` is an error, as in Rust.
            if prec == 3 || prec == 4 {
                if let Some(next) = self.binop() {
                    if next.precedence() == prec {
                        let span = self.span();
                        self.diags.push(
                            Diagnostic::error(
                                Code::ExpectedToken,
                                span,
                                "comparison operators cannot be chained",
                            )
                            .with_help("use `&&` to combine comparisons"),
                        );
                        return Err(Fail);
                    }
                }
            }
            let span = lhs.span.to(rhs.span);
            lhs = Expr {
                kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)),
                span,
            };
        }
        Ok(lhs)
    }

    fn unary(&mut self, no_struct: bool) -> PResult<Expr> {
        if self.peek() == &Tok::Bang {
            let start = self.bump().span;
            self.enter()?;
            let inner = self.unary(no_struct);
            self.leave();
            let inner = inner?;
            let span = start.to(inner.span);
            return Ok(Expr {
                kind: ExprKind::Not(Box::new(inner)),
                span,
            });
        }
        let mut e = self.primary(no_struct)?;
        loop {
            match self.peek() {
                Tok::LBracket => {
                    self.bump();
                    let idx = self.expr(false)?;
                    let end = self.expect(&Tok::RBracket)?;
                    let span = e.span.to(end);
                    e = Expr {
                        kind: ExprKind::Index(Box::new(e), Box::new(idx)),
                        span,
                    };
                }
                Tok::Dot => {
                    self.bump();
                    let field = self.ident()?;
                    let span = e.span.to(field.span);
                    e = Expr {
                        kind: ExprKind::Field(Box::new(e), field),
                        span,
                    };
                }
                Tok::As => {
                    self.bump();
                    let ty = self.ty()?;
                    let span = e.span.to(ty.span());
                    e = Expr {
                        kind: ExprKind::Cast(Box::new(e), ty),
                        span,
                    };
                }
                _ => return Ok(e),
            }
        }
    }

    fn primary(&mut self, no_struct: bool) -> PResult<Expr> {
        let start = self.span();
        let kind = match self.peek().clone() {
            Tok::Int(n) => {
                self.bump();
                ExprKind::Int(n)
            }
            Tok::Hex(h) => {
                self.bump();
                ExprKind::Hex(h)
            }
            Tok::True => {
                self.bump();
                ExprKind::Bool(true)
            }
            Tok::False => {
                self.bump();
                ExprKind::Bool(false)
            }
            Tok::LParen => {
                self.bump();
                let inner = self.expr(false)?;
                let end = self.expect(&Tok::RParen)?;
                return Ok(Expr {
                    kind: ExprKind::Paren(Box::new(inner)),
                    span: start.to(end),
                });
            }
            Tok::Ident(_) => {
                let name = self.ident()?;
                match self.peek() {
                    Tok::LParen => {
                        self.bump();
                        let args = self.args()?;
                        ExprKind::Call(name, args)
                    }
                    Tok::ColonColon => {
                        self.bump();
                        let variant = self.ident()?;
                        ExprKind::Path(name, variant)
                    }
                    Tok::LBrace if !no_struct => {
                        self.bump();
                        let mut fields = Vec::new();
                        while !matches!(self.peek(), Tok::RBrace | Tok::Eof) {
                            let fname = self.ident()?;
                            self.expect(&Tok::Colon)?;
                            let value = self.expr(false)?;
                            fields.push(FieldInit { name: fname, value });
                            if !self.eat(&Tok::Comma) {
                                break;
                            }
                        }
                        self.expect(&Tok::RBrace)?;
                        ExprKind::StructLit(name, fields)
                    }
                    _ => ExprKind::Name(name.name),
                }
            }
            _ => return Err(self.error_here(Code::ExpectedExpr, "an expression")),
        };
        Ok(Expr {
            kind,
            span: start.to(self.prev_span()),
        })
    }
}
