//! Byte spans of a profile's text turned into `FILE:LINE:COL: FIELD: MESSAGE`.

use std::ops::Range;
use std::path::Path;

use super::profile::ProfileError;

/// Turns byte spans of one profile's text into located errors.
pub struct Located<'a> {
    path: &'a Path,
    pub(super) text: &'a str,
}

impl<'a> Located<'a> {
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        Self { path, text }
    }

    /// An error at `span`. `field` names the field when the caller knows it;
    /// otherwise it is read off the text (the table header and key at the span).
    pub fn error(&self, span: Range<usize>, field: Option<&str>, message: &str) -> ProfileError {
        // Errors raised by a whole table's deserialiser (e.g. `[slo]`) carry the
        // table's span; point at the key the message names when it is in there.
        let span = refine_to_key(self.text, span, message);
        let (line, col) = line_col(self.text, span.start);
        let field = field
            .map(str::to_string)
            .unwrap_or_else(|| field_at(self.text, span.start));
        // Library errors often start with their own scope ("slo: ..."); the
        // field path already says it.
        let mut message = message;
        for seg in field.split('.') {
            message = message.strip_prefix(&format!("{seg}: ")).unwrap_or(message);
        }
        ProfileError::Invalid {
            path: self.path.display().to_string(),
            line,
            col,
            field,
            message: message.to_string(),
        }
    }
}

/// Narrows a table-wide span to the `key = ...` line of a key the message names
/// (in backticks, or as `key = "value"`), when exactly that key is in the table.
pub(super) fn refine_to_key(text: &str, span: Range<usize>, message: &str) -> Range<usize> {
    let end = span.end.min(text.len());
    if span.start >= end {
        return span;
    }
    let mut candidates: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    candidates.extend(
        message
            .split(" = ")
            .next()
            .and_then(|s| s.rsplit([' ', ':']).next()),
    );
    let mut pos = span.start;
    for line in text[span.start..end].split_inclusive('\n') {
        let start = pos;
        pos += line.len();
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if candidates.iter().any(|c| !c.is_empty() && *c == key) {
            let indent = line.len() - line.trim_start().len();
            return start + indent..start + indent + key.len();
        }
    }
    span
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The dotted path of the field at a byte offset, read off the text: the last
/// table header before it (arrays of tables indexed from 1, as users count) and
/// the key of the `key = value` line it sits on.
pub fn field_at(text: &str, offset: usize) -> String {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let mut header = String::new();
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    let mut key: Option<String> = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let start = pos;
        pos += line.len();
        if start > offset {
            break;
        }
        let trimmed = line.trim();
        if let Some(name) = trimmed
            .strip_prefix("[[")
            .and_then(|r| r.split("]]").next())
        {
            let name = name.trim().to_string();
            let n = counts.entry(name.clone()).or_default();
            *n += 1;
            header = format!("{name}[{n}]");
            key = None;
        } else if let Some(name) = trimmed.strip_prefix('[').and_then(|r| r.split(']').next()) {
            header = name.trim().to_string();
            key = None;
        } else if let Some(eq) = line.find('=') {
            let k = line[..eq].trim();
            if !k.is_empty() && !k.starts_with('#') && !k.contains(['"', '{', ',']) {
                key = Some(k.to_string());
            }
        }
    }
    match (header.is_empty(), key) {
        (true, Some(k)) => k,
        (false, Some(k)) => format!("{header}.{k}"),
        (_, None) if header.is_empty() => "(top level)".into(),
        (_, None) => header,
    }
}
