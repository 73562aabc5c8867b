//! Compile-time diagnostics: cedar's parse, schema and validation errors turned into
//! plain values with a line and column in the text the user wrote.

use std::fmt;

/// Which input text a [`Diagnostic`] points into.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The user's schema text.
    Schema,
    /// The policies text.
    Policies,
}

impl SourceKind {
    fn as_str(&self) -> &'static str {
        match self {
            Self::Schema => "schema",
            Self::Policies => "policies",
        }
    }
}

/// One problem found while compiling a schema or a policy set.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Diagnostic {
    /// The text the problem is in.
    pub source: SourceKind,
    /// Cedar's message.
    pub message: String,
    /// Cedar's help text, if any.
    pub help: Option<String>,
    /// The policy the problem is in, when known.
    pub policy_id: Option<String>,
    /// 1-based line in the source text.
    pub line: Option<u32>,
    /// 1-based column (in characters) in the source text.
    pub column: Option<u32>,
    /// The source line at that position, at most [`SNIPPET_MAX_CHARS`] characters.
    pub snippet: Option<String>,
}

/// Longest snippet kept in a [`Diagnostic`].
pub const SNIPPET_MAX_CHARS: usize = 200;

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(
                f,
                "{}:{line}:{column}: {}",
                self.source.as_str(),
                self.message
            ),
            _ => write!(f, "{}: {}", self.source.as_str(), self.message),
        }
    }
}

/// Every problem that stopped a schema or policy set from compiling.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("; "))]
pub struct PolicyErrors {
    /// At least one diagnostic.
    pub diagnostics: Vec<Diagnostic>,
}

impl PolicyErrors {
    pub(crate) fn one(diagnostic: Diagnostic) -> Self {
        Self {
            diagnostics: vec![diagnostic],
        }
    }
}

/// A 1-based position in a source text, with the line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Position {
    pub line: u32,
    pub column: u32,
    pub snippet: String,
}

/// Converts a byte offset into `text` to a 1-based line and column (in characters).
/// `None` when the offset is outside the text or not on a character boundary.
pub(crate) fn position(text: &str, offset: usize) -> Option<Position> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before.get(line_start..)?.chars().count() + 1;
    let rest = text.get(line_start..)?;
    let line_text = rest.split('\n').next().unwrap_or_default().trim_end();
    Some(Position {
        line: u32::try_from(line).ok()?,
        column: u32::try_from(column).ok()?,
        snippet: line_text.chars().take(SNIPPET_MAX_CHARS).collect(),
    })
}

/// Builds a [`Diagnostic`] from a cedar error. When `text` is given, the error's first
/// label is located in it; the label must really point into `text` (checked against
/// the error's own source code when it carries one), otherwise no position is reported.
pub(crate) fn from_miette(
    err: &dyn miette::Diagnostic,
    source: SourceKind,
    text: Option<&str>,
    policy_id: Option<String>,
) -> Diagnostic {
    let pos = text.and_then(|text| {
        let span = err.labels()?.next()?.inner().to_owned();
        if let Some(code) = err.source_code() {
            // INVARIANT: a label is only located in `text` when the error's own source
            // has the same bytes there (an error from combining schema fragments may
            // point into the built-in fragment instead of the user's text).
            let theirs = code.read_span(&span, 0, 0).ok()?;
            let ours = text.get(span.offset()..span.offset().saturating_add(span.len()))?;
            if theirs.data() != ours.as_bytes() {
                return None;
            }
        }
        position(text, span.offset())
    });
    let (line, column, snippet) = match pos {
        Some(p) => (Some(p.line), Some(p.column), Some(p.snippet)),
        None => (None, None, None),
    };
    Diagnostic {
        source,
        message: err.to_string(),
        help: err.help().map(|h| h.to_string()),
        policy_id,
        line,
        column,
        snippet,
    }
}

/// Diagnostics for an error and its related errors (cedar reports the 2nd..Nth error
/// of a batch as related errors of the first), without duplicates.
pub(crate) fn from_miette_all(
    err: &dyn miette::Diagnostic,
    source: &SourceKind,
    text: Option<&str>,
) -> Vec<Diagnostic> {
    let mut out = vec![from_miette(err, source.clone(), text, None)];
    if let Some(related) = err.related() {
        for r in related {
            let d = from_miette(r, source.clone(), text, None);
            if !out
                .iter()
                .any(|o| o.message == d.message && o.line == d.line && o.column == d.column)
            {
                out.push(d);
            }
        }
    }
    out
}

/// Byte offsets of the first token of each statement in a Cedar policies text that
/// parsed successfully: statements end with `;` outside strings and `//` comments.
/// Index `n` is the statement cedar names `policy<n>` by default.
pub(crate) fn statement_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut in_statement = false;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '/' if chars.peek().map(|&(_, n)| n) == Some('/') => {
                for (_, n) in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
            }
            c if c.is_whitespace() => {}
            _ => {
                if !in_statement {
                    starts.push(i);
                    in_statement = true;
                }
                match c {
                    '"' => {
                        while let Some((_, n)) = chars.next() {
                            match n {
                                '\\' => {
                                    chars.next();
                                }
                                '"' => break,
                                _ => {}
                            }
                        }
                    }
                    ';' => in_statement = false,
                    _ => {}
                }
            }
        }
    }
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_is_one_based_in_characters() {
        let text = "ab\nçd x\n";
        let offset = text.find('x').unwrap();
        let p = position(text, offset).unwrap();
        assert_eq!((p.line, p.column), (2, 4));
        assert_eq!(p.snippet, "çd x");
        assert_eq!(position(text, 0).unwrap().line, 1);
        assert!(position(text, 100).is_none());
        // inside the two-byte `ç`
        assert!(position(text, 4).is_none());
    }

    #[test]
    fn snippet_is_truncated() {
        let text = "x".repeat(500);
        assert_eq!(
            position(&text, 10).unwrap().snippet.len(),
            SNIPPET_MAX_CHARS
        );
    }

    #[test]
    fn statement_starts_skip_comments_and_strings() {
        let text = "// a; comment\n@id(\"a;b\")\npermit(principal, action, resource);\n\n  forbid(principal, action, resource) when { \"\\\";\" == \"x\" };\n// trailing";
        let starts = statement_starts(text);
        assert_eq!(starts.len(), 2);
        assert!(text[starts[0]..].starts_with("@id"));
        assert!(text[starts[1]..].starts_with("forbid"));
    }

    #[test]
    fn display_has_position_when_known() {
        let mut d = Diagnostic {
            source: SourceKind::Policies,
            message: "unexpected token".into(),
            help: None,
            policy_id: None,
            line: Some(3),
            column: Some(14),
            snippet: None,
        };
        assert_eq!(d.to_string(), "policies:3:14: unexpected token");
        d.line = None;
        d.source = SourceKind::Schema;
        assert_eq!(d.to_string(), "schema: unexpected token");
    }
}
