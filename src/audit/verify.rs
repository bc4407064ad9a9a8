//! Offline verification of an export: recompute the chain record by record, name the first
//! record that breaks it, then compare with the manifest.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use super::manifest::Manifest;
use super::record::{
    chain_hash, read_csv_row, record_from_csv, CsvError, CSV_COLUMNS, CSV_COLUMNS_UNANNOTATED,
    CSV_COLUMNS_UNSEALED, GENESIS,
};
use super::{AuditError, Format};

/// Why a record breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BreakReason {
    /// Not a record: bad JSON or CSV, a missing or mistyped field, an empty line.
    Unparsable { problem: String },
    /// The same position as the record before it.
    DuplicatePosition { position: i64 },
    /// A lower position than the record before it.
    PositionOutOfOrder { previous: i64, found: i64 },
    /// Records are missing before this one: the export's positions are contiguous (says the
    /// manifest), this one skips some, and the chain goes on from it.
    PositionGap { previous: i64, found: i64 },
    /// `prev_hash` is not the previous record's hash: a record before it was removed, or this
    /// one was inserted or moved.
    PrevHashMismatch { expected: String, found: String },
    /// The record's content does not give its `hash`: it was edited.
    HashMismatch { stored: String, computed: String },
}

impl fmt::Display for BreakReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakReason::Unparsable { problem } => write!(f, "unparsable record: {problem}"),
            BreakReason::DuplicatePosition { position } => {
                write!(
                    f,
                    "duplicate position {position} (same as the record before)"
                )
            }
            BreakReason::PositionOutOfOrder { previous, found } => {
                write!(f, "position out of order: {found} after {previous}")
            }
            BreakReason::PositionGap { previous, found } => write!(
                f,
                "position gap: {found} follows {previous}; record(s) {}..{} are missing",
                previous + 1,
                found - 1
            ),
            BreakReason::PrevHashMismatch { expected, found } => write!(
                f,
                "prev_hash mismatch: expected {expected} (the previous record's hash), found \
                 {found}; a record before this one was removed, or this one was inserted or moved"
            ),
            BreakReason::HashMismatch { stored, computed } => write!(
                f,
                "hash mismatch: the record's content hashes to {computed}, the file says \
                 {stored}; the record was altered"
            ),
        }
    }
}

/// The first record that breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    /// 1-based line of the file where the record starts (a CSV header is line 1).
    pub line: u64,
    /// 1-based index of the record in the file.
    pub record: u64,
    /// Its position, when it could be read.
    pub position: Option<i64>,
    pub reason: BreakReason,
}

/// A manifest value that the file does not match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestMismatch {
    pub field: &'static str,
    pub manifest: String,
    pub file: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub format: &'static str,
    /// Records that verified (all of them when the chain holds).
    pub records: u64,
    pub first_position: Option<i64>,
    pub last_position: Option<i64>,
    pub first_hash: Option<String>,
    /// The last record's hash: the chain head.
    pub head: Option<String>,
    pub first_break: Option<Break>,
    /// Whether a manifest was compared (only when the chain holds).
    pub manifest_checked: bool,
    pub manifest_mismatches: Vec<ManifestMismatch>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.first_break.is_none() && self.manifest_mismatches.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |v: &Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
        if let Some(b) = &self.first_break {
            writeln!(
                f,
                "FAILED: record {} at line {}{}: {}",
                b.record,
                b.line,
                b.position
                    .map_or(String::new(), |p| format!(" (position {p})")),
                b.reason
            )?;
            writeln!(f, "  {} record(s) before it verified", self.records)?;
            return Ok(());
        }
        if self.manifest_mismatches.is_empty() {
            writeln!(f, "OK: {} record(s), format {}", self.records, self.format)?;
        } else {
            writeln!(
                f,
                "FAILED: the chain holds ({} record(s)) but does not match the manifest:",
                self.records
            )?;
            for m in &self.manifest_mismatches {
                writeln!(
                    f,
                    "  {}: manifest says {}, file has {}",
                    m.field, m.manifest, m.file
                )?;
            }
        }
        writeln!(
            f,
            "  positions {}..{}",
            opt(&self.first_position),
            opt(&self.last_position)
        )?;
        writeln!(
            f,
            "  head {}",
            self.head.as_deref().unwrap_or("- (empty export)")
        )?;
        if self.manifest_checked && self.manifest_mismatches.is_empty() {
            writeln!(f, "  manifest: matches")?;
        } else if !self.manifest_checked {
            writeln!(
                f,
                "  manifest: none given (a truncated end cannot be detected without it)"
            )?;
        }
        Ok(())
    }
}

/// Verifies the export at `path` (format from the extension, else from the content) against
/// the manifest at `manifest`, if given.
pub fn verify_file(path: &Path, manifest: Option<&Path>) -> Result<Report, AuditError> {
    let manifest = match manifest {
        Some(m) => Some(read_manifest(m)?),
        None => None,
    };
    let file = File::open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let format = match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
    {
        Some(e) if e == "csv" => Some(Format::Csv),
        Some(e) if e == "jsonl" || e == "ndjson" => Some(Format::Jsonl),
        _ => None,
    };
    verify_reader(BufReader::new(file), format, manifest.as_ref())
}

/// Reads a manifest file.
pub fn read_manifest(path: &Path) -> Result<Manifest, AuditError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        AuditError::invalid(
            "manifest",
            format!("{} is not a manifest: {e}", path.display()),
        )
    })
}

/// Verifies an export read from `reader`; `format` `None` detects it from the content.
pub fn verify_reader<R: BufRead>(
    mut reader: R,
    format: Option<Format>,
    manifest: Option<&Manifest>,
) -> Result<Report, AuditError> {
    let format = match format {
        Some(f) => f,
        None => {
            let head = reader.fill_buf()?;
            let first = head.iter().find(|b| !b.is_ascii_whitespace());
            if first == Some(&b'{') || first.is_none() {
                Format::Jsonl
            } else {
                Format::Csv
            }
        }
    };
    let contiguous = manifest.is_some_and(|m| m.positions_contiguous);
    let mut records = Records::new(reader, format);
    let mut report = Report {
        format: format.as_str(),
        records: 0,
        first_position: None,
        last_position: None,
        first_hash: None,
        head: None,
        first_break: None,
        manifest_checked: false,
        manifest_mismatches: Vec::new(),
    };
    let mut index = 0u64;
    let mut previous: Option<(i64, String)> = None;
    let mut pending = records.next();
    while let Some((line, parsed)) = pending.take() {
        index += 1;
        let fail = |position, reason| Break {
            line,
            record: index,
            position,
            reason,
        };
        let (record, position, prev_hash, hash) = match parsed.and_then(fields) {
            Ok(fields) => fields,
            Err(problem) => {
                report.first_break = Some(fail(None, BreakReason::Unparsable { problem }));
                break;
            }
        };
        if let Some((previous_position, previous_hash)) = &previous {
            if position == *previous_position {
                report.first_break = Some(fail(
                    Some(position),
                    BreakReason::DuplicatePosition { position },
                ));
                break;
            }
            if position < *previous_position {
                report.first_break = Some(fail(
                    Some(position),
                    BreakReason::PositionOutOfOrder {
                        previous: *previous_position,
                        found: position,
                    },
                ));
                break;
            }
            if prev_hash != *previous_hash {
                // Tell a hole (the chain goes on from here) from a move (it does not).
                let next = records.next();
                let continues = match &next {
                    None => true,
                    Some((_, Ok(n))) => {
                        n.get("prev_hash").and_then(Value::as_str) == Some(hash.as_str())
                            && n.get("position")
                                .and_then(Value::as_i64)
                                .is_some_and(|p| p > position)
                    }
                    Some((_, Err(_))) => false,
                };
                let reason = if contiguous && continues && position > previous_position + 1 {
                    BreakReason::PositionGap {
                        previous: *previous_position,
                        found: position,
                    }
                } else {
                    BreakReason::PrevHashMismatch {
                        expected: previous_hash.clone(),
                        found: prev_hash,
                    }
                };
                report.first_break = Some(fail(Some(position), reason));
                break;
            }
        } else if prev_hash != GENESIS {
            report.first_break = Some(fail(
                Some(position),
                BreakReason::PrevHashMismatch {
                    expected: GENESIS.to_string(),
                    found: prev_hash,
                },
            ));
            break;
        }
        let computed = chain_hash(&prev_hash, &record);
        if computed != hash {
            report.first_break = Some(fail(
                Some(position),
                BreakReason::HashMismatch {
                    stored: hash,
                    computed,
                },
            ));
            break;
        }
        report.records += 1;
        report.first_position.get_or_insert(position);
        report.last_position = Some(position);
        report.first_hash.get_or_insert_with(|| hash.clone());
        report.head = Some(hash.clone());
        previous = Some((position, hash));
        pending = records.next();
    }
    if let (Some(m), None) = (manifest, &report.first_break) {
        report.manifest_checked = true;
        report.manifest_mismatches = compare(m, &report);
    }
    Ok(report)
}

fn compare(m: &Manifest, r: &Report) -> Vec<ManifestMismatch> {
    let mut out = Vec::new();
    let show_i = |v: Option<i64>| v.map_or("null".to_string(), |v| v.to_string());
    let show_s = |v: &Option<String>| v.clone().unwrap_or_else(|| "null".to_string());
    let mut check = |field: &'static str, manifest: String, file: String| {
        if manifest != file {
            out.push(ManifestMismatch {
                field,
                manifest,
                file,
            });
        }
    };
    check("format", m.format.clone(), r.format.to_string());
    check("records", m.records.to_string(), r.records.to_string());
    check(
        "first_position",
        show_i(m.first_position),
        show_i(r.first_position),
    );
    check(
        "last_position",
        show_i(m.last_position),
        show_i(r.last_position),
    );
    check("first_hash", show_s(&m.first_hash), show_s(&r.first_hash));
    check("last_hash", show_s(&m.last_hash), show_s(&r.head));
    check("genesis", m.genesis.clone(), GENESIS.to_string());
    out
}

/// The record with its chain fields read out: (record, position, prev_hash, hash).
fn fields(record: Map<String, Value>) -> Result<(Map<String, Value>, i64, String, String), String> {
    let position = record
        .get("position")
        .and_then(Value::as_i64)
        .ok_or("no integer \"position\"")?;
    let text = |key: &str| -> Result<String, String> {
        match record.get(key).and_then(Value::as_str) {
            Some(s) if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(s.to_string())
            }
            Some(s) => Err(format!("{key} is not 64 hex digits: {s:?}")),
            None => Err(format!("no string \"{key}\"")),
        }
    };
    let prev_hash = text("prev_hash")?;
    let hash = text("hash")?;
    Ok((record, position, prev_hash, hash))
}

/// A record read from a file: the line it starts on, and the record or what is wrong with it.
pub(crate) type ReadRecord = (u64, Result<Map<String, Value>, String>);

/// The records of a file, each with the line it starts on.
pub(crate) struct Records<R> {
    lines: std::io::Lines<R>,
    format: Format,
    line: u64,
    header_checked: bool,
    /// A blank line seen and not yet known to be trailing.
    blank: Option<u64>,
    failed: bool,
}

impl<R: BufRead> Records<R> {
    pub(crate) fn new(reader: R, format: Format) -> Self {
        Records {
            lines: reader.lines(),
            format,
            line: 0,
            header_checked: false,
            blank: None,
            failed: false,
        }
    }

    fn next_line(&mut self) -> Option<Result<String, String>> {
        let line = self.lines.next()?;
        self.line += 1;
        Some(
            line.map(|l| l.strip_suffix('\r').map(str::to_string).unwrap_or(l))
                .map_err(|e| format!("unreadable line: {e}")),
        )
    }

    pub(crate) fn next(&mut self) -> Option<ReadRecord> {
        if self.failed {
            return None;
        }
        if self.format == Format::Csv && !self.header_checked {
            self.header_checked = true;
            match self.next_line()? {
                Ok(header)
                    if header == CSV_COLUMNS.join(",")
                        || header == CSV_COLUMNS_UNANNOTATED.join(",")
                        || header == CSV_COLUMNS_UNSEALED.join(",") => {}
                Ok(header) => {
                    self.failed = true;
                    return Some((
                        1,
                        Err(format!(
                            "CSV header must be {:?}, found {header:?}",
                            CSV_COLUMNS.join(",")
                        )),
                    ));
                }
                Err(e) => {
                    self.failed = true;
                    return Some((1, Err(e)));
                }
            }
        }
        loop {
            let start = self.line + 1;
            let row = match self.format {
                Format::Jsonl => match self.next_line()? {
                    Ok(line) if line.trim().is_empty() => {
                        self.blank.get_or_insert(start);
                        continue;
                    }
                    Ok(line) => serde_json::from_str::<Value>(&line)
                        .map_err(|e| format!("not JSON: {e}"))
                        .and_then(|v| match v {
                            Value::Object(map) => Ok(map),
                            _ => Err("not a JSON object".to_string()),
                        }),
                    Err(e) => Err(e),
                },
                Format::Csv => {
                    let mut first = true;
                    let mut blank = false;
                    let lines = &mut self.lines;
                    let counter = &mut self.line;
                    let result = read_csv_row(|| {
                        let line = lines.next()?;
                        *counter += 1;
                        let line =
                            line.map(|l| l.strip_suffix('\r').map(str::to_string).unwrap_or(l));
                        if first {
                            first = false;
                            if matches!(&line, Ok(l) if l.trim().is_empty()) {
                                blank = true;
                            }
                        }
                        Some(line)
                    })?;
                    if blank {
                        self.blank.get_or_insert(start);
                        continue;
                    }
                    match result {
                        Ok((cells, _)) => record_from_csv(&cells),
                        Err(CsvError::Io(e)) => Err(format!("unreadable line: {e}")),
                        Err(CsvError::Syntax(s)) => Err(format!("bad CSV: {s}")),
                    }
                }
            };
            if let Some(blank) = self.blank.take() {
                self.failed = true;
                return Some((blank, Err("empty line inside the export".to_string())));
            }
            if row.is_err() {
                self.failed = true;
            }
            return Some((start, row));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{jsonl_line, seal};
    use serde_json::json;

    fn export(n: i64) -> Vec<String> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|p| {
                let Value::Object(mut record) = json!({"position": p, "payload": {"n": p}}) else {
                    unreachable!()
                };
                prev = seal(&prev, &mut record);
                let mut line = String::new();
                jsonl_line(&record, &mut line);
                line
            })
            .collect()
    }

    fn check(lines: &[String]) -> Report {
        verify_reader(lines.concat().as_bytes(), Some(Format::Jsonl), None).unwrap()
    }

    #[test]
    fn an_intact_chain_verifies_and_blank_trailing_lines_are_fine() {
        let mut lines = export(5);
        let report = check(&lines);
        assert!(report.ok(), "{report}");
        assert_eq!(report.records, 5);
        lines.push("\n\n".into());
        assert!(check(&lines).ok());
        lines.insert(2, "\n".into());
        let b = check(&lines).first_break.unwrap();
        assert_eq!((b.line, b.record), (3, 3));
        assert!(matches!(b.reason, BreakReason::Unparsable { .. }));
    }

    #[test]
    fn an_empty_export_verifies() {
        let report = check(&[]);
        assert!(report.ok());
        assert_eq!(report.records, 0);
        assert_eq!(report.head, None);
    }

    #[test]
    fn first_record_must_start_at_genesis() {
        let lines = export(3);
        let b = check(&lines[1..]).first_break.unwrap();
        assert_eq!((b.line, b.position), (1, Some(2)));
        assert!(matches!(b.reason, BreakReason::PrevHashMismatch { .. }));
    }

    #[test]
    fn garbage_is_unparsable() {
        let mut lines = export(3);
        lines[1] = "{\"position\": 2}\n".into();
        let b = check(&lines).first_break.unwrap();
        assert_eq!(b.line, 2);
        assert!(
            matches!(b.reason, BreakReason::Unparsable { .. }),
            "{:?}",
            b.reason
        );
        lines[1] = "not json\n".into();
        assert_eq!(check(&lines).first_break.unwrap().line, 2);
    }
}
