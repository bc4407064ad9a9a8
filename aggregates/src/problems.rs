//! Validation problems that name the offending field, so an API can answer with every bad
//! field at once instead of the first one it met.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One bad field: its path in the request (`address.cep`, `items[2].quantity`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldProblem {
    pub field: String,
    pub problem: String,
}

/// Collects every problem of a request before failing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problems(pub Vec<FieldProblem>);

impl Problems {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, problem: impl Into<String>) {
        self.0.push(FieldProblem {
            field: field.into(),
            problem: problem.into(),
        });
    }

    /// Runs a parser and records its error under `field`; returns the value when it parsed.
    pub fn check<T, E: fmt::Display>(
        &mut self,
        field: impl Into<String>,
        result: Result<T, E>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.add(field, error.to_string());
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was recorded, else every problem.
    pub fn into_result(self) -> Result<(), Problems> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

/// Which characters a text field may hold besides printable ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// Names, address parts, descriptions, codes: no control character at all (not even tab).
    SingleLine,
    /// Free text (invoice notes, a cancellation reason): tab, line feed and carriage return
    /// allowed, no other control character.
    MultiLine,
}

/// What is wrong with the characters of `value`, if anything. A control character is any of
/// Unicode's `Cc`: C0 (U+0000–U+001F), DEL (U+007F) and C1 (U+0080–U+009F). None of them is
/// printable, PostgreSQL refuses U+0000 in text, and Bling and the NF-e's XML have no use for
/// the others.
pub fn text_problem(value: &str, kind: TextKind) -> Option<&'static str> {
    let allowed = |c: char| kind == TextKind::MultiLine && matches!(c, '\t' | '\n' | '\r');
    if !value.chars().any(|c| c.is_control() && !allowed(c)) {
        return None;
    }
    Some(match kind {
        TextKind::SingleLine => {
            "must not contain control characters (U+0000–U+001F, U+007F–U+009F, tab included)"
        }
        TextKind::MultiLine => "must not contain control characters other than tab and line breaks",
    })
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for p in &self.0 {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(f, "{}: {}", p.field, p.problem)?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_named_by_kind() {
        assert_eq!(text_problem("Maria Souza", TextKind::SingleLine), None);
        assert_eq!(text_problem("São Paulo – ação", TextKind::SingleLine), None);
        for bad in [
            "a\0b",
            "a\tb",
            "a\nb",
            "\u{7f}",
            "x\u{85}",
            "\u{9f}",
            "\u{1b}[31m",
        ] {
            assert!(text_problem(bad, TextKind::SingleLine).is_some(), "{bad:?}");
        }
        assert_eq!(
            text_problem("linha 1\r\nlinha 2\tfim", TextKind::MultiLine),
            None
        );
        for bad in ["a\0b", "\u{7}", "\u{85}", "\u{1b}"] {
            assert!(text_problem(bad, TextKind::MultiLine).is_some(), "{bad:?}");
        }
    }
}
