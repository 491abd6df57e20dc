//! The tokenizer. It never fails: bad characters become diagnostics and are skipped.

use crate::diag::{Code, Diagnostic, Span};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    Ident(String),
    Int(String),
    Hex(String),
    Str(String),
    // keywords
    Contract,
    Storage,
    Pub,
    Fn,
    Init,
    View,
    Payable,
    Event,
    Struct,
    Enum,
    Let,
    Mut,
    If,
    Else,
    For,
    In,
    Max,
    Return,
    Require,
    Revert,
    Emit,
    True,
    False,
    Map,
    As,
    // punctuation
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Semi,
    Colon,
    ColonColon,
    Dot,
    DotDot,
    Arrow,
    At,
    Eq,
    PlusEq,
    MinusEq,
    StarEq,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    PlusPct,
    MinusPct,
    StarPct,
    EqEq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    AndAnd,
    OrOr,
    Bang,
    Eof,
}

impl Tok {
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("identifier `{s}`"),
            Tok::Int(s) | Tok::Hex(s) => format!("number `{s}`"),
            Tok::Str(_) => "string literal".to_string(),
            Tok::Eof => "end of file".to_string(),
            other => format!("`{}`", other.text()),
        }
    }

    pub fn text(&self) -> &'static str {
        match self {
            Tok::Contract => "contract",
            Tok::Storage => "storage",
            Tok::Pub => "pub",
            Tok::Fn => "fn",
            Tok::Init => "init",
            Tok::View => "view",
            Tok::Payable => "payable",
            Tok::Event => "event",
            Tok::Struct => "struct",
            Tok::Enum => "enum",
            Tok::Let => "let",
            Tok::Mut => "mut",
            Tok::If => "if",
            Tok::Else => "else",
            Tok::For => "for",
            Tok::In => "in",
            Tok::Max => "max",
            Tok::Return => "return",
            Tok::Require => "require",
            Tok::Revert => "revert",
            Tok::Emit => "emit",
            Tok::True => "true",
            Tok::False => "false",
            Tok::Map => "map",
            Tok::As => "as",
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Comma => ",",
            Tok::Semi => ";",
            Tok::Colon => ":",
            Tok::ColonColon => "::",
            Tok::Dot => ".",
            Tok::DotDot => "..",
            Tok::Arrow => "->",
            Tok::At => "@",
            Tok::Eq => "=",
            Tok::PlusEq => "+=",
            Tok::MinusEq => "-=",
            Tok::StarEq => "*=",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::Percent => "%",
            Tok::PlusPct => "+%",
            Tok::MinusPct => "-%",
            Tok::StarPct => "*%",
            Tok::EqEq => "==",
            Tok::Ne => "!=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::AndAnd => "&&",
            Tok::OrOr => "||",
            Tok::Bang => "!",
            Tok::Ident(_) | Tok::Int(_) | Tok::Hex(_) | Tok::Str(_) | Tok::Eof => "",
        }
    }
}

fn keyword(s: &str) -> Option<Tok> {
    Some(match s {
        "contract" => Tok::Contract,
        "storage" => Tok::Storage,
        "pub" => Tok::Pub,
        "fn" => Tok::Fn,
        "init" => Tok::Init,
        "view" => Tok::View,
        "payable" => Tok::Payable,
        "event" => Tok::Event,
        "struct" => Tok::Struct,
        "enum" => Tok::Enum,
        "let" => Tok::Let,
        "mut" => Tok::Mut,
        "if" => Tok::If,
        "else" => Tok::Else,
        "for" => Tok::For,
        "in" => Tok::In,
        "max" => Tok::Max,
        "return" => Tok::Return,
        "require" => Tok::Require,
        "revert" => Tok::Revert,
        "emit" => Tok::Emit,
        "true" => Tok::True,
        "false" => Tok::False,
        "map" => Tok::Map,
        "as" => Tok::As,
        _ => return None,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
}

/// A `//` comment, kept so the formatter can put it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    pub text: String,
    pub span: Span,
}

pub struct Lexed {
    pub tokens: Vec<Token>,
    pub comments: Vec<Comment>,
}

pub fn lex(src: &str, diags: &mut Vec<Diagnostic>) -> Lexed {
    let bytes = src.as_bytes();
    let mut i = 0;
    let mut tokens = Vec::new();
    let mut comments = Vec::new();
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            comments.push(Comment {
                text: src.get(start..i).unwrap_or("").trim_end().to_string(),
                span: Span::new(start, i),
            });
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = src.get(start..i).unwrap_or("");
            let tok = keyword(word).unwrap_or_else(|| Tok::Ident(word.to_string()));
            tokens.push(Token {
                tok,
                span: Span::new(start, i),
            });
            continue;
        }
        if c.is_ascii_digit() {
            let hex = c == b'0' && matches!(bytes.get(i + 1), Some(b'x') | Some(b'X'));
            if hex {
                i += 2;
            }
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let text: String = src.get(start..i).unwrap_or("").replace('_', "");
            let ok = if hex {
                text.len() > 2 && text[2..].chars().all(|c| c.is_ascii_hexdigit())
            } else {
                text.chars().all(|c| c.is_ascii_digit())
            };
            if !ok {
                diags.push(
                    Diagnostic::error(
                        Code::BadNumber,
                        Span::new(start, i),
                        "invalid number literal",
                    )
                    .with_help("write decimal digits, or `0x` followed by hex digits"),
                );
            }
            let tok = if hex { Tok::Hex(text) } else { Tok::Int(text) };
            tokens.push(Token {
                tok: if ok { tok } else { Tok::Int("0".to_string()) },
                span: Span::new(start, i),
            });
            continue;
        }
        if c == b'"' {
            i += 1;
            let mut closed = false;
            while i < bytes.len() && bytes[i] != b'\n' {
                if bytes[i] == b'"' {
                    closed = true;
                    break;
                }
                i += 1;
            }
            let text = src.get(start + 1..i).unwrap_or("").to_string();
            if closed {
                i += 1;
            } else {
                diags.push(Diagnostic::error(
                    Code::UnterminatedString,
                    Span::new(start, i),
                    "unterminated string literal",
                ));
            }
            tokens.push(Token {
                tok: Tok::Str(text),
                span: Span::new(start, i),
            });
            continue;
        }
        let two = |a: u8, b: u8| c == a && bytes.get(i + 1) == Some(&b);
        let (tok, len) = if two(b':', b':') {
            (Tok::ColonColon, 2)
        } else if two(b'.', b'.') {
            (Tok::DotDot, 2)
        } else if two(b'-', b'>') {
            (Tok::Arrow, 2)
        } else if two(b'+', b'=') {
            (Tok::PlusEq, 2)
        } else if two(b'-', b'=') {
            (Tok::MinusEq, 2)
        } else if two(b'*', b'=') {
            (Tok::StarEq, 2)
        } else if two(b'+', b'%') {
            (Tok::PlusPct, 2)
        } else if two(b'-', b'%') {
            (Tok::MinusPct, 2)
        } else if two(b'*', b'%') {
            (Tok::StarPct, 2)
        } else if two(b'=', b'=') {
            (Tok::EqEq, 2)
        } else if two(b'!', b'=') {
            (Tok::Ne, 2)
        } else if two(b'<', b'=') {
            (Tok::Le, 2)
        } else if two(b'>', b'=') {
            (Tok::Ge, 2)
        } else if two(b'&', b'&') {
            (Tok::AndAnd, 2)
        } else if two(b'|', b'|') {
            (Tok::OrOr, 2)
        } else {
            let t = match c {
                b'{' => Tok::LBrace,
                b'}' => Tok::RBrace,
                b'(' => Tok::LParen,
                b')' => Tok::RParen,
                b'[' => Tok::LBracket,
                b']' => Tok::RBracket,
                b',' => Tok::Comma,
                b';' => Tok::Semi,
                b':' => Tok::Colon,
                b'.' => Tok::Dot,
                b'@' => Tok::At,
                b'=' => Tok::Eq,
                b'+' => Tok::Plus,
                b'-' => Tok::Minus,
                b'*' => Tok::Star,
                b'/' => Tok::Slash,
                b'%' => Tok::Percent,
                b'<' => Tok::Lt,
                b'>' => Tok::Gt,
                b'!' => Tok::Bang,
                _ => {
                    // Skip the whole UTF-8 character so spans stay on char boundaries.
                    let ch = src.get(i..).and_then(|s| s.chars().next()).unwrap_or('?');
                    i += ch.len_utf8();
                    diags.push(Diagnostic::error(
                        Code::UnexpectedChar,
                        Span::new(start, i),
                        format!("unexpected character `{}`", ch.escape_debug()),
                    ));
                    continue;
                }
            };
            (t, 1)
        };
        i += len;
        tokens.push(Token {
            tok,
            span: Span::new(start, i),
        });
    }
    tokens.push(Token {
        tok: Tok::Eof,
        span: Span::new(src.len(), src.len()),
    });
    Lexed { tokens, comments }
}
