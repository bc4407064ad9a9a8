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
