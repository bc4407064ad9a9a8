//! The verifiable audit export: the event log for a time range, as a hash chain an auditor
//! can check offline.
//!
//! - [`export`]: streams the log page by page (never the whole range in memory) in global
//!   position order, as JSONL or CSV, each record chained to the previous one, and builds the
//!   [`manifest::Manifest`] (range, filters, count, first/last position, chain head);
//! - [`verify`]: recomputes the chain of a file and names the first record that breaks it,
//!   then checks the manifest;
//! - [`redact`]: `--redact-pii`, salted digests of personal data, applied *before* chaining, so
//!   a redacted export verifies like any other;
//! - [`canonical`]: the canonical JSON every hash is computed over;
//! - [`record`]: the record, the chain rule and the CSV columns;
//! - [`cli`]: the `export` and `verify` subcommands (progress bar, summaries).
//!
//! # The chain
//! `hash = hex(SHA-256(prev_hash ‖ canonical_json(record without "hash")))`, `prev_hash` as
//! its 64 hex characters, the first record's `prev_hash` being 64 zeros ([`record::GENESIS`]).
//! The record holds `prev_hash`, so the hash covers it twice; that is deliberate and harmless.
//! Editing a field breaks that record's hash; removing, inserting or reordering records breaks
//! the `prev_hash` of the record after the change (and the verifier also checks that positions
//! only increase). Deleting records at the very end leaves a valid, shorter chain: only the
//! manifest (count, last position, head hash) catches that, so keep the manifest apart from
//! the file (or publish its head hash).
//!
//! # Consistency between an export and its manifest
//! An export is pinned to the log head when it starts (`upto_position`): events appended
//! meanwhile are not in it. Running the same query with the same `upto_position` (and salt)
//! yields byte-identical output; the HTTP manifest endpoint relies on that.

pub mod canonical;
pub mod canonical_text;
pub mod checkpoint;
pub mod checkpointer;
pub mod cli;
pub mod export;
pub mod manifest;
pub mod merkle;
pub mod record;
pub mod redact;
pub mod seal;
pub mod verify;
pub mod verify_db;
pub mod verify_sealed;

use aggregates::ids::TenantId;
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

use crate::store::StoreError;

pub use export::{compute_manifest, export_stream, export_to_writer, ExportCursor};
pub use manifest::Manifest;
pub use redact::Salt;
pub use verify::{verify_file, verify_reader, BreakReason, Report};

/// The tool name written into manifests.
pub const TOOL: &str = "bling-ledger";

/// The two export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
}

impl Format {
    pub fn parse(raw: &str) -> Result<Format, AuditError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" => Ok(Format::Jsonl),
            "csv" => Ok(Format::Csv),
            _ => Err(AuditError::invalid(
                "format",
                format!("must be jsonl or csv (got {raw:?})"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jsonl => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportQuery {
    /// Inclusive lower bound on `recorded_at`.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive upper bound on `recorded_at`.
    pub to: Option<DateTime<Utc>>,
    /// One tenant, or all.
    pub tenant: Option<TenantId>,
    pub format: Format,
    /// `Some` to redact personal data with this salt.
    pub redact: Option<Salt>,
    /// Only events at or below this position; `None` pins the export to the log head at start.
    pub upto: Option<i64>,
    /// Events read from the log per query ([`export::PAGE_SIZE`] unless a test wants pages).
    pub page_size: i64,
}

impl ExportQuery {
    /// Builds a query from user text (CLI arguments or HTTP parameters), naming the first bad
    /// field.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        tenant: Option<&str>,
        format: Option<&str>,
    ) -> Result<ExportQuery, AuditError> {
        let from = from
            .filter(|s| !s.trim().is_empty())
            .map(|s| parse_time_bound(s, false).map_err(|p| AuditError::invalid("from", p)))
            .transpose()?;
        let to = to
            .filter(|s| !s.trim().is_empty())
            .map(|s| parse_time_bound(s, true).map_err(|p| AuditError::invalid("to", p)))
            .transpose()?;
        if let (Some(f), Some(t)) = (from, to) {
            if t <= f {
                return Err(AuditError::invalid("to", "must be after from"));
            }
        }
        let tenant = tenant
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                TenantId::parse(s.trim()).map_err(|e| AuditError::invalid("tenant", e.to_string()))
            })
            .transpose()?;
        let format = format
            .map(Format::parse)
            .transpose()?
            .unwrap_or(Format::Jsonl);
        Ok(ExportQuery {
            from,
            to,
            tenant,
            format,
            redact: None,
            upto: None,
            page_size: export::PAGE_SIZE,
        })
    }
}

/// Parses a range bound: RFC 3339 (`2026-11-25T12:00:00-03:00`), a date-time without offset
/// (taken as UTC), or a date (UTC). A date as an upper bound means the end of that day: `--to
/// 2026-11-30` includes all of the 30th.
pub fn parse_time_bound(raw: &str, upper: bool) -> Result<DateTime<Utc>, String> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(raw, format) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        let day = if upper {
            d.succ_opt().ok_or("date out of range")?
        } else {
            d
        };
        return Ok(day
            .and_hms_opt(0, 0, 0)
            .ok_or("date out of range")?
            .and_utc());
    }
    Err(format!(
        "not a date or time: {raw:?} (use RFC 3339, e.g. 2026-11-25T12:00:00Z, or a date, 2026-11-25)"
    ))
}

/// How a bound is written into a manifest.
pub fn format_bound(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
}

impl AuditError {
    pub fn invalid(field: &'static str, problem: impl Into<String>) -> Self {
        AuditError::Invalid {
            field,
            problem: problem.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        let t = |s: &str, upper| parse_time_bound(s, upper).map(|t| format_bound(&t));
        assert_eq!(t("2026-11-25", false).unwrap(), "2026-11-25T00:00:00Z");
        assert_eq!(t("2026-11-25", true).unwrap(), "2026-11-26T00:00:00Z");
        assert_eq!(
            t("2026-11-25T12:00:00-03:00", false).unwrap(),
            "2026-11-25T15:00:00Z"
        );
        assert_eq!(
            t("2026-11-25T12:00:00.5Z", true).unwrap(),
            "2026-11-25T12:00:00.500Z"
        );
        assert_eq!(t("2026-11-25 12:30", true).unwrap(), "2026-11-25T12:30:00Z");
        assert!(t("25/11/2026", false).is_err());
        assert!(t("2026-13-01", false).is_err());
    }

    #[test]
    fn query_names_the_bad_field() {
        let field = |r: Result<ExportQuery, AuditError>| match r {
            Err(AuditError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(ExportQuery::parse(Some("x"), None, None, None)),
            "from"
        );
        assert_eq!(field(ExportQuery::parse(None, Some("x"), None, None)), "to");
        assert_eq!(
            field(ExportQuery::parse(
                Some("2026-02-01"),
                Some("2026-01-01"),
                None,
                None
            )),
            "to"
        );
        assert_eq!(
            field(ExportQuery::parse(None, None, Some("a b"), None)),
            "tenant"
        );
        assert_eq!(
            field(ExportQuery::parse(None, None, None, Some("xml"))),
            "format"
        );
        let q = ExportQuery::parse(
            Some("2026-01-01"),
            Some("2026-01-31"),
            Some("shop-a"),
            Some("csv"),
        )
        .unwrap();
        assert_eq!(q.format, Format::Csv);
        assert_eq!(q.tenant.unwrap().as_str(), "shop-a");
    }
}
