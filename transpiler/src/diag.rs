//! Spans, diagnostics with stable codes, and their two renderings (rustc-like text and JSON).

use serde::Serialize;
use std::ops::Range;

/// A half-open byte range into one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start: u32::try_from(start).unwrap_or(u32::MAX),
            end: u32::try_from(end).unwrap_or(u32::MAX),
        }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    pub fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// Every diagnostic the compiler can emit. The numeric code is stable: never renumber a
/// variant, only append. `LANGUAGE.md` lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    UnexpectedChar,
    UnterminatedString,
    BadNumber,
    ExpectedToken,
    ExpectedItem,
    ExpectedExpr,
    ExpectedType,
    Duplicate,
    UnknownName,
    UnknownType,
    TypeMismatch,
    LiteralRange,
    ArgCount,
    Immutable,
    NotAssignable,
    ViewWrites,
    MissingReturn,
    Recursion,
    LoopBound,
    ValueNotPayable,
    BadOperands,
    BadStorageUse,
    UnknownAttribute,
    ReturnMismatch,
    UnknownField,
    UnusedCallResult,
    ReservedName,
    TargetCapability,
    MissingContract,
    NestingTooDeep,
}

impl Code {
    pub fn number(self) -> u16 {
        match self {
            Code::UnexpectedChar => 1,
            Code::UnterminatedString => 2,
            Code::BadNumber => 3,
            Code::ExpectedToken => 10,
            Code::ExpectedItem => 11,
            Code::ExpectedExpr => 12,
            Code::ExpectedType => 13,
            Code::MissingContract => 14,
            Code::NestingTooDeep => 15,
            Code::Duplicate => 20,
            Code::UnknownName => 21,
            Code::UnknownType => 22,
            Code::TypeMismatch => 23,
            Code::LiteralRange => 24,
            Code::ArgCount => 25,
            Code::Immutable => 26,
            Code::NotAssignable => 27,
            Code::ViewWrites => 28,
            Code::MissingReturn => 29,
            Code::Recursion => 30,
            Code::LoopBound => 31,
            Code::ValueNotPayable => 32,
            Code::BadOperands => 33,
            Code::BadStorageUse => 34,
            Code::UnknownAttribute => 35,
            Code::ReturnMismatch => 36,
            Code::UnknownField => 37,
            Code::UnusedCallResult => 38,
            Code::ReservedName => 39,
            Code::TargetCapability => 50,
        }
    }

    pub fn id(self) -> String {
        format!("XCL{:04}", self.number())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub span: Span,
    pub labels: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            span,
            labels: Vec::new(),
            help: None,
        }
    }

    pub fn warning(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, span, message)
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn with_label(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            span,
            message: message.into(),
        });
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

pub fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(Diagnostic::is_error)
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[derive(Serialize)]
struct JsonLocation<'a> {
    file: &'a str,
    start: u32,
    end: u32,
    line: usize,
    column: usize,
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    code: String,
    severity: Severity,
    message: &'a str,
    location: JsonLocation<'a>,
    labels: Vec<JsonLabel<'a>>,
    help: Option<&'a str>,
    rendered: String,
}

#[derive(Serialize)]
struct JsonLabel<'a> {
    start: u32,
    end: u32,
    message: &'a str,
}

/// The machine-readable shape, one object per diagnostic, with byte offsets (like solc's
/// standard JSON `errors` array).
pub fn to_json(file: &str, source: &str, diags: &[Diagnostic]) -> serde_json::Value {
    let items: Vec<JsonDiagnostic<'_>> = diags
        .iter()
        .map(|d| {
            let (line, column) = line_col(source, d.span.start as usize);
            JsonDiagnostic {
                code: d.code.id(),
                severity: d.severity,
                message: &d.message,
                location: JsonLocation {
                    file,
                    start: d.span.start,
                    end: d.span.end,
                    line,
                    column,
                },
                labels: d
                    .labels
                    .iter()
                    .map(|l| JsonLabel {
                        start: l.span.start,
                        end: l.span.end,
                        message: &l.message,
                    })
                    .collect(),
                help: d.help.as_deref(),
                rendered: render(file, source, std::slice::from_ref(d), false),
            }
        })
        .collect();
    serde_json::json!({ "errors": items })
}

/// Renders diagnostics like rustc does, into a string (the caller decides where it goes).
pub fn render(file: &str, source: &str, diags: &[Diagnostic], color: bool) -> String {
    use ariadne::{Config, Label as ALabel, Report, ReportKind, Source};
    let mut out = Vec::new();
    for d in diags {
        let kind = match d.severity {
            Severity::Error => ReportKind::Error,
            Severity::Warning => ReportKind::Warning,
        };
        let clamp = |s: Span| -> Range<usize> {
            let r = s.range();
            let end = r.end.min(source.len());
            r.start.min(end)..end
        };
        let mut report = Report::build(kind, (file, clamp(d.span)))
            .with_config(Config::default().with_color(color))
            .with_code(d.code.id())
            .with_message(&d.message)
            .with_label(ALabel::new((file, clamp(d.span))).with_message(&d.message));
        for l in &d.labels {
            report = report.with_label(ALabel::new((file, clamp(l.span))).with_message(&l.message));
        }
        if let Some(h) = &d.help {
            report = report.with_help(h);
        }
        // Writing into a Vec cannot fail; a failure would only lose the rendering.
        let _ = report
            .finish()
            .write((file, Source::from(source)), &mut out);
    }
    String::from_utf8_lossy(&out).into_owned()
}
