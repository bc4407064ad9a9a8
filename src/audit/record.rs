//! One exported record, its place in the hash chain, and its JSONL and CSV spellings.
//!
//! A record is a JSON object with these keys:
//! `position, recorded_at, tenant, aggregate_type, aggregate_id, sequence, event_type,
//! event_version, payload, metadata, seal, tenant_seal, prev_hash, hash`, and `personal` on
//! the records whose payload holds a customer's encrypted profile.
//!
//! The first ten are the event as stored, the bytes its `seal` covers. A customer's profile is
//! stored encrypted under the customer's data key (LGPD, `store::personal`), so the payload
//! shows ciphertext; `personal` is what the exporter read through that key, outside the sealed
//! bytes: `{"profile": {…}}` while the key exists, `{"erased": true}` once the customer was
//! forgotten (the key destroyed), `{"unreadable": "why"}` when this export could not open it.
//! It is the exporter's statement, covered by the export's own chain (`hash`) like every key,
//! not by the seal: a checkpoint proves the ciphertext, not the clear text.
//!
//! `hash = hex(SHA-256(prev_hash ‖ canonical(record without "hash")))`, where `prev_hash` is
//! taken as its 64 ASCII hex characters and `canonical` is [`super::canonical`]. The first
//! record's `prev_hash` is [`GENESIS`] (64 zeros). A CSV row holds the same values (payload
//! and metadata as canonical JSON text, an absent tenant as an empty cell), and is rebuilt into
//! the same object before hashing, so a JSONL and a CSV export of the same records carry the
//! same hashes.

use chrono::SecondsFormat;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::canonical::{to_canonical_string, write_canonical};
use crate::store::log::RecordedEvent;

/// The `prev_hash` of the first record of every export.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The key of the exporter's view of a record's personal data (see the module's doc).
pub const PERSONAL: &str = "personal";

/// The CSV columns, in order (also the header row). An empty `personal` cell is a record
/// without the key.
pub const CSV_COLUMNS: [&str; 15] = [
    "position",
    "recorded_at",
    "tenant",
    "aggregate_type",
    "aggregate_id",
    "sequence",
    "event_type",
    "event_version",
    "payload",
    "metadata",
    "personal",
    "seal",
    "tenant_seal",
    "prev_hash",
    "hash",
];

/// The columns of CSV exports made before records carried `personal` (still verified).
pub const CSV_COLUMNS_UNANNOTATED: [&str; 14] = [
    "position",
    "recorded_at",
    "tenant",
    "aggregate_type",
    "aggregate_id",
    "sequence",
    "event_type",
    "event_version",
    "payload",
    "metadata",
    "seal",
    "tenant_seal",
    "prev_hash",
    "hash",
];

/// The columns of CSV exports made before records carried their seal (still verified).
pub const CSV_COLUMNS_UNSEALED: [&str; 12] = [
    "position",
    "recorded_at",
    "tenant",
    "aggregate_type",
    "aggregate_id",
    "sequence",
    "event_type",
    "event_version",
    "payload",
    "metadata",
    "prev_hash",
    "hash",
];

/// The record object (without `prev_hash` and `hash`) for a logged event.
pub fn record_of(event: &RecordedEvent) -> Map<String, Value> {
    let mut record = Map::new();
    record.insert("position".into(), Value::from(event.position));
    record.insert(
        "recorded_at".into(),
        Value::from(
            event
                .recorded_at
                .to_rfc3339_opts(SecondsFormat::Micros, true),
        ),
    );
    record.insert(
        "tenant".into(),
        event.tenant().map(Value::from).unwrap_or(Value::Null),
    );
    record.insert(
        "aggregate_type".into(),
        Value::from(event.aggregate_type.clone()),
    );
    record.insert(
        "aggregate_id".into(),
        Value::from(event.aggregate_id.clone()),
    );
    record.insert("sequence".into(), Value::from(event.sequence));
    record.insert("event_type".into(), Value::from(event.event_type.clone()));
    record.insert(
        "event_version".into(),
        Value::from(event.event_version.clone()),
    );
    record.insert("payload".into(), event.payload.clone());
    record.insert("metadata".into(), event.metadata.clone());
    record
}

/// The chain hash of a record: `record` must hold `prev_hash` and must not hold `hash`.
pub fn chain_hash(prev_hash: &str, record: &Map<String, Value>) -> String {
    let mut text = String::with_capacity(512);
    text.push_str(prev_hash);
    // Canonical JSON of the object, written without cloning it into a `Value`.
    let mut entries: Vec<(&String, &Value)> = record.iter().filter(|(k, _)| *k != "hash").collect();
    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    text.push('{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        write_canonical(&Value::String(key.clone()), &mut text);
        text.push(':');
        write_canonical(value, &mut text);
    }
    text.push('}');
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Links `record` after `prev_hash`: sets `prev_hash` and `hash`, returns the hash.
pub fn seal(prev_hash: &str, record: &mut Map<String, Value>) -> String {
    record.remove("hash");
    record.insert("prev_hash".into(), Value::from(prev_hash));
    let hash = chain_hash(prev_hash, record);
    record.insert("hash".into(), Value::from(hash.clone()));
    hash
}

/// One JSONL line (canonical JSON, so every key in sorted order), with its newline.
pub fn jsonl_line(record: &Map<String, Value>, out: &mut String) {
    let mut entries: Vec<(&String, &Value)> = record.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.push('{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_canonical(&Value::String(key.clone()), out);
        out.push(':');
        write_canonical(value, out);
    }
    out.push_str("}\n");
}

/// The CSV header row.
pub fn csv_header(out: &mut String) {
    out.push_str(&CSV_COLUMNS.join(","));
    out.push_str("\r\n");
}

/// One CSV row (RFC 4180: fields quoted when they hold `,` `"` CR or LF), CRLF-terminated.
pub fn csv_row(record: &Map<String, Value>, out: &mut String) {
    for (i, column) in CSV_COLUMNS.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let cell = match record.get(*column) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s))
                if *column != "payload" && *column != "metadata" && *column != PERSONAL =>
            {
                s.clone()
            }
            Some(Value::Number(n)) if *column == "position" || *column == "sequence" => {
                n.to_string()
            }
            Some(other) => to_canonical_string(other),
        };
        csv_cell(&cell, out);
    }
    out.push_str("\r\n");
}

fn csv_cell(cell: &str, out: &mut String) {
    if cell.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&cell.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(cell);
    }
}

/// Rebuilds the record object from the cells of one CSV row (in [`CSV_COLUMNS`] order).
pub fn record_from_csv(cells: &[String]) -> Result<Map<String, Value>, String> {
    let columns: &[&str] = match cells.len() {
        n if n == CSV_COLUMNS.len() => &CSV_COLUMNS,
        n if n == CSV_COLUMNS_UNANNOTATED.len() => &CSV_COLUMNS_UNANNOTATED,
        n if n == CSV_COLUMNS_UNSEALED.len() => &CSV_COLUMNS_UNSEALED,
        n => {
            return Err(format!(
                "expected {} CSV fields, found {n}",
                CSV_COLUMNS.len()
            ))
        }
    };
    let mut record = Map::new();
    for (column, cell) in columns.iter().zip(cells) {
        let value = match *column {
            "position" | "sequence" => Value::from(
                cell.parse::<i64>()
                    .map_err(|_| format!("{column} is not an integer: {cell:?}"))?,
            ),
            "tenant" | "seal" | "tenant_seal" if cell.is_empty() => Value::Null,
            // Absent in the JSONL record too: not a key at all.
            PERSONAL if cell.is_empty() => continue,
            "payload" | "metadata" | PERSONAL => {
                serde_json::from_str(cell).map_err(|e| format!("{column} is not JSON: {e}"))?
            }
            _ => Value::from(cell.clone()),
        };
        record.insert((*column).to_string(), value);
    }
    Ok(record)
}

/// One CSV row's cells and how many physical lines it took, or what is wrong with it.
pub type CsvRow<E> = Result<(Vec<String>, usize), CsvError<E>>;

/// Splits CSV text into rows of cells. `next_line` yields physical lines without their line
/// terminator; a quoted cell may span lines. Returns `None` at the end of input, otherwise
/// the row and how many physical lines it took.
pub fn read_csv_row<E>(
    mut next_line: impl FnMut() -> Option<Result<String, E>>,
) -> Option<CsvRow<E>> {
    let first = match next_line()? {
        Ok(line) => line,
        Err(e) => return Some(Err(CsvError::Io(e))),
    };
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut lines_used = 1;
    let mut line = first;
    let mut in_quotes = false;
    let mut at_cell_start = true;
    let mut after_quoted = false;
    loop {
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if in_quotes {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        cell.push('"');
                    } else {
                        in_quotes = false;
                        after_quoted = true;
                    }
                } else {
                    cell.push(c);
                }
            } else if c == ',' {
                cells.push(std::mem::take(&mut cell));
                at_cell_start = true;
                after_quoted = false;
            } else if after_quoted {
                return Some(Err(CsvError::Syntax("text after a closing quote".into())));
            } else if c == '"' && at_cell_start {
                in_quotes = true;
                at_cell_start = false;
            } else if c == '"' {
                return Some(Err(CsvError::Syntax(
                    "a quote inside an unquoted field".into(),
                )));
            } else {
                cell.push(c);
                at_cell_start = false;
            }
        }
        if !in_quotes {
            break;
        }
        // The quoted cell goes on: the line break was part of it.
        cell.push('\n');
        match next_line() {
            Some(Ok(more)) => {
                lines_used += 1;
                line = more;
            }
            Some(Err(e)) => return Some(Err(CsvError::Io(e))),
            None => return Some(Err(CsvError::Syntax("unterminated quoted field".into()))),
        }
    }
    cells.push(cell);
    Some(Ok((cells, lines_used)))
}

#[derive(Debug)]
pub enum CsvError<E> {
    Io(E),
    Syntax(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Map<String, Value> {
        let Value::Object(map) = json!({
            "position": 7, "recorded_at": "2026-11-25T12:00:00.000001Z", "tenant": "shop-a",
            "aggregate_type": "Customer", "aggregate_id": "shop-a/c,1", "sequence": 1,
            "event_type": "CustomerRegistered", "event_version": "1",
            "payload": {"CustomerRegistered": {"profile": {"name": "Ana \"Nina\", filha\nde Zé"}}},
            "metadata": {"tenant": "shop-a", "actor": "ingest:petshop-a"},
            "seal": "ab".repeat(32), "tenant_seal": null,
            "personal": {"profile": {"name": "Ana, \"Nina\""}}
        }) else {
            unreachable!()
        };
        map
    }

    #[test]
    fn hash_covers_prev_hash_and_every_field() {
        let mut a = sample();
        let h1 = seal(GENESIS, &mut a);
        assert_eq!(h1.len(), 64);
        assert_eq!(a["prev_hash"], GENESIS);
        assert_eq!(a["hash"], h1.as_str());
        // Same content, same hash, whatever the hash field says.
        assert_eq!(chain_hash(GENESIS, &a), h1);
        let mut b = sample();
        let other_prev = "1".repeat(64);
        assert_ne!(seal(&other_prev, &mut b), h1);
        let mut c = sample();
        c.insert("sequence".into(), json!(2));
        assert_ne!(seal(GENESIS, &mut c), h1);
    }

    #[test]
    fn csv_round_trips_to_the_same_record_and_hash() {
        let mut record = sample();
        let hash = seal(GENESIS, &mut record);
        let mut text = String::new();
        csv_row(&record, &mut text);
        let mut lines = text
            .trim_end_matches("\r\n")
            .split("\r\n")
            .map(|l| Ok::<_, ()>(l.to_string()));
        let (cells, used) = read_csv_row(|| lines.next()).unwrap().unwrap();
        assert_eq!(
            used, 1,
            "canonical JSON escapes newlines, so a row is one line"
        );
        let rebuilt = record_from_csv(&cells).unwrap();
        assert_eq!(rebuilt, record);
        assert_eq!(chain_hash(GENESIS, &rebuilt), hash);

        // A record without personal data: an empty cell, and no key once read back.
        let mut plain = sample();
        plain.remove(PERSONAL);
        let hash = seal(GENESIS, &mut plain);
        let mut text = String::new();
        csv_row(&plain, &mut text);
        let mut lines = text
            .trim_end_matches("\r\n")
            .split("\r\n")
            .map(|l| Ok::<_, ()>(l.to_string()));
        let (cells, _) = read_csv_row(|| lines.next()).unwrap().unwrap();
        assert_eq!(cells.len(), CSV_COLUMNS.len());
        let rebuilt = record_from_csv(&cells).unwrap();
        assert!(!rebuilt.contains_key(PERSONAL));
        assert_eq!(chain_hash(GENESIS, &rebuilt), hash);
    }

    #[test]
    fn csv_reader_handles_quoted_line_breaks_and_empty_cells() {
        let text = "a,\"b\nc\",,\"d\"\"e\"";
        let mut lines = text.split('\n').map(|l| Ok::<_, ()>(l.to_string()));
        let (cells, used) = read_csv_row(|| lines.next()).unwrap().unwrap();
        assert_eq!(cells, vec!["a", "b\nc", "", "d\"e"]);
        assert_eq!(used, 2);
        assert!(read_csv_row(|| lines.next()).is_none());
    }

    #[test]
    fn jsonl_line_is_canonical() {
        let mut record = sample();
        seal(GENESIS, &mut record);
        let mut line = String::new();
        jsonl_line(&record, &mut line);
        assert!(line.ends_with("}\n"));
        assert_eq!(line.matches('\n').count(), 1);
        let back: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(to_canonical_string(&back) + "\n", line);
    }
}
