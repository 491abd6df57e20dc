//! The surface syntax tree, exactly as written (the formatter prints it back).

use crate::diag::Span;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeExpr {
    Named(Ident),
    Map(Box<TypeExpr>, Box<TypeExpr>, Span),
    Array(Box<TypeExpr>, String, Span),
}

impl TypeExpr {
    pub fn span(&self) -> Span {
        match self {
            TypeExpr::Named(i) => i.span,
            TypeExpr::Map(_, _, s) | TypeExpr::Array(_, _, s) => *s,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    pub name: Ident,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: Ident,
    pub ty: TypeExpr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutability {
    Mutating,
    View,
    Payable,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FnDecl {
    pub attrs: Vec<Attribute>,
    pub public: bool,
    pub mutability: Mutability,
    /// `None` for `init`.
    pub name: Option<Ident>,
    pub params: Vec<Param>,
    pub ret: Option<TypeExpr>,
    pub body: Block,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Storage {
        public: bool,
        name: Ident,
        ty: TypeExpr,
        span: Span,
    },
    Struct {
        name: Ident,
        fields: Vec<Param>,
        span: Span,
    },
    Enum {
        name: Ident,
        variants: Vec<Ident>,
        span: Span,
    },
    Event {
        name: Ident,
        fields: Vec<Param>,
        span: Span,
    },
    Fn(FnDecl),
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Storage { span, .. }
            | Item::Struct { span, .. }
            | Item::Enum { span, .. }
            | Item::Event { span, .. } => *span,
            Item::Fn(f) => f.span,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contract {
    pub name: Ident,
    pub items: Vec<Item>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignOp {
    Set,
    Add,
    Sub,
    Mul,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stmt {
    Let {
        mutable: bool,
        name: Ident,
        ty: Option<TypeExpr>,
        value: Expr,
        span: Span,
    },
    Assign {
        target: Expr,
        op: AssignOp,
        value: Expr,
        span: Span,
    },
    If {
        cond: Expr,
        then: Block,
        els: Option<Box<Stmt>>,
        span: Span,
    },
    /// `else { ... }` arm of an if, kept as a statement so `else if` chains nest.
    Block(Block),
    For {
        var: Ident,
        start: Expr,
        end: Expr,
        max: Option<(String, Span)>,
        body: Block,
        span: Span,
    },
    Require {
        cond: Expr,
        message: String,
        span: Span,
    },
    Revert {
        message: String,
        span: Span,
    },
    Emit {
        event: Ident,
        args: Vec<Expr>,
        span: Span,
    },
    Return {
        value: Option<Expr>,
        span: Span,
    },
    Expr {
        expr: Expr,
        span: Span,
    },
}

impl Stmt {
    pub fn span(&self) -> Span {
        match self {
            Stmt::Let { span, .. }
            | Stmt::Assign { span, .. }
            | Stmt::If { span, .. }
            | Stmt::For { span, .. }
            | Stmt::Require { span, .. }
            | Stmt::Revert { span, .. }
            | Stmt::Emit { span, .. }
            | Stmt::Return { span, .. }
            | Stmt::Expr { span, .. } => *span,
            Stmt::Block(b) => b.span,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    WAdd,
    WSub,
    WMul,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::WAdd => "+%",
            BinOp::WSub => "-%",
            BinOp::WMul => "*%",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "&&",
            BinOp::Or => "||",
        }
    }

    /// Binding power; higher binds tighter.
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And => 2,
            BinOp::Eq | BinOp::Ne => 3,
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => 4,
            BinOp::Add | BinOp::Sub | BinOp::WAdd | BinOp::WSub => 5,
            BinOp::Mul | BinOp::Div | BinOp::Rem | BinOp::WMul => 6,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldInit {
    pub name: Ident,
    pub value: Expr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExprKind {
    Int(String),
    Hex(String),
    Bool(bool),
    Name(String),
    /// `Enum::Variant`
    Path(Ident, Ident),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Call(Ident, Vec<Expr>),
    Index(Box<Expr>, Box<Expr>),
    Field(Box<Expr>, Ident),
    Cast(Box<Expr>, TypeExpr),
    StructLit(Ident, Vec<FieldInit>),
    Paren(Box<Expr>),
    /// Placeholder left by error recovery; the checker stays silent about it.
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}
