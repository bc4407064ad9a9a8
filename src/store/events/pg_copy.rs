//! Reading PostgreSQL's binary `COPY … TO STDOUT (FORMAT binary)` output, row by row, without
//! sqlx's per-row machinery (a `PgRow` per row, a type check and a decode per column): the
//! reader of `verify --database`, which reads every event of the log.
//!
//! # The format (PostgreSQL manual, *COPY*, "Binary Format")
//! An 11-byte signature `PGCOPY\n\377\r\n\0`, a 32-bit flags field, a 32-bit header extension
//! length and that many bytes; then each tuple: a 16-bit field count (`-1` ends the data), and
//! per field a 32-bit length (`-1`: NULL) and that many bytes in the type's binary form. All
//! integers are big-endian. The server sends the data in chunks that need not align with
//! tuples, so [`Tuples`] buffers what is incomplete.
//!
//! # Binary forms read here
//! `text`: its bytes (the database's encoding, UTF-8, checked); `bigint`: 8 bytes;
//! `timestamptz`: microseconds since 2000-01-01 00:00:00 UTC in 8 bytes.

use chrono::{DateTime, Utc};

use crate::store::StoreError;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Fields per tuple this reader accepts.
pub const MAX_FIELDS: usize = 16;

fn bad(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(format!("binary COPY: {}", what.into()))
}

/// One tuple, its fields borrowed from the buffer.
pub struct Tuple<'a> {
    fields: [Option<&'a [u8]>; MAX_FIELDS],
    len: usize,
}

impl<'a> Tuple<'a> {
    fn field(&self, i: usize) -> Result<Option<&'a [u8]>, StoreError> {
        if i >= self.len {
            return Err(bad(format!("no field {i} in a tuple of {}", self.len)));
        }
        Ok(self.fields[i])
    }

    fn not_null(&self, i: usize) -> Result<&'a [u8], StoreError> {
        self.field(i)?
            .ok_or_else(|| bad(format!("field {i} is NULL")))
    }

    /// A `text` field that may be NULL.
    pub fn opt_text(&self, i: usize) -> Result<Option<&'a str>, StoreError> {
        self.field(i)?
            .map(|b| std::str::from_utf8(b).map_err(|e| bad(format!("field {i}: {e}"))))
            .transpose()
    }

    /// A `text` field.
    pub fn text(&self, i: usize) -> Result<&'a str, StoreError> {
        std::str::from_utf8(self.not_null(i)?).map_err(|e| bad(format!("field {i}: {e}")))
    }

    /// A `bigint` field.
    pub fn int8(&self, i: usize) -> Result<i64, StoreError> {
        let bytes: [u8; 8] = self
            .not_null(i)?
            .try_into()
            .map_err(|_| bad(format!("field {i} is not 8 bytes")))?;
        Ok(i64::from_be_bytes(bytes))
    }

    /// A `timestamptz` field.
    pub fn timestamptz(&self, i: usize) -> Result<DateTime<Utc>, StoreError> {
        let micros = self.int8(i)?;
        micros
            .checked_add(PG_EPOCH_MICROS)
            .and_then(DateTime::from_timestamp_micros)
            .ok_or_else(|| bad(format!("field {i}: timestamp out of range")))
    }
}

/// The tuples of a binary `COPY` stream, fed chunk by chunk.
#[derive(Debug, Default)]
pub struct Tuples {
    buffer: Vec<u8>,
    header_read: bool,
    ended: bool,
}

fn be_i16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Tuples {
    pub fn new() -> Tuples {
        Tuples::default()
    }

    /// Appends `chunk` and hands every tuple now complete to `each`, in order.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        mut each: impl FnMut(&Tuple<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.buffer.extend_from_slice(chunk);
        let buf = self.buffer.as_slice();
        let mut at = 0;
        if !self.header_read {
            if buf.len() < SIGNATURE.len() + 8 {
                return Ok(());
            }
            if !buf.starts_with(SIGNATURE) {
                return Err(bad("no PGCOPY signature"));
            }
            let extension = usize::try_from(be_i32(&buf[SIGNATURE.len() + 4..]))
                .map_err(|_| bad("negative header extension length"))?;
            let header = SIGNATURE.len() + 8 + extension;
            if buf.len() < header {
                return Ok(());
            }
            at = header;
            self.header_read = true;
        }
        while !self.ended && buf.len() >= at + 2 {
            let count = be_i16(&buf[at..]);
            if count == -1 {
                self.ended = true;
                at += 2;
                break;
            }
            let count = usize::try_from(count)
                .ok()
                .filter(|n| *n <= MAX_FIELDS)
                .ok_or_else(|| bad(format!("field count {count}")))?;
            let mut tuple = Tuple {
                fields: [None; MAX_FIELDS],
                len: count,
            };
            let mut p = at + 2;
            let mut complete = true;
            for field in tuple.fields.iter_mut().take(count) {
                if buf.len() < p + 4 {
                    complete = false;
                    break;
                }
                let len = be_i32(&buf[p..]);
                p += 4;
                if len == -1 {
                    continue;
                }
                let len = usize::try_from(len).map_err(|_| bad(format!("field length {len}")))?;
                if buf.len() < p + len {
                    complete = false;
                    break;
                }
                *field = Some(&buf[p..p + len]);
                p += len;
            }
            if !complete {
                break;
            }
            each(&tuple)?;
            at = p;
        }
        self.buffer.drain(..at);
        Ok(())
    }

    /// Checks that the stream ended where it should (its trailer read, nothing left over).
    pub fn finish(&self) -> Result<(), StoreError> {
        if self.ended && self.buffer.is_empty() {
            Ok(())
        } else {
            Err(bad(
                "the stream ended inside a tuple, or without its trailer",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> Vec<u8> {
        let mut s = SIGNATURE.to_vec();
        s.extend_from_slice(&0i32.to_be_bytes());
        s.extend_from_slice(&3i32.to_be_bytes());
        s.extend_from_slice(b"ext");
        for (n, text) in [(1i64, Some("São")), (-2, None)] {
            s.extend_from_slice(&3i16.to_be_bytes());
            s.extend_from_slice(&8i32.to_be_bytes());
            s.extend_from_slice(&n.to_be_bytes());
            match text {
                Some(t) => {
                    s.extend_from_slice(&(t.len() as i32).to_be_bytes());
                    s.extend_from_slice(t.as_bytes());
                }
                None => s.extend_from_slice(&(-1i32).to_be_bytes()),
            }
            s.extend_from_slice(&8i32.to_be_bytes());
            s.extend_from_slice(&0i64.to_be_bytes());
        }
        s.extend_from_slice(&(-1i16).to_be_bytes());
        s
    }

    #[test]
    fn tuples_come_out_whole_whatever_the_chunking() {
        let data = stream();
        for size in [1, 2, 3, 7, 19, 64, data.len()] {
            let mut tuples = Tuples::new();
            let mut seen = Vec::new();
            for chunk in data.chunks(size) {
                tuples
                    .feed(chunk, |t| {
                        seen.push((
                            t.int8(0)?,
                            t.opt_text(1)?.map(str::to_string),
                            t.timestamptz(2)?.to_rfc3339(),
                        ));
                        Ok(())
                    })
                    .expect("well-formed");
            }
            tuples.finish().expect("ended");
            assert_eq!(
                seen,
                vec![
                    (
                        1,
                        Some("São".to_string()),
                        "2000-01-01T00:00:00+00:00".to_string()
                    ),
                    (-2, None, "2000-01-01T00:00:00+00:00".to_string()),
                ],
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn a_cut_stream_or_a_bad_signature_is_refused() {
        let data = stream();
        let mut tuples = Tuples::new();
        tuples
            .feed(&data[..data.len() - 5], |_| Ok(()))
            .expect("so far well-formed");
        assert!(tuples.finish().is_err());
        let mut tuples = Tuples::new();
        assert!(tuples
            .feed(b"PGCOPX\n\xff\r\n\0\0\0\0\0\0\0\0\0", |_| Ok(()))
            .is_err());
        let mut tuples = Tuples::new();
        tuples
            .feed(&data, |t| t.text(1).map(|_| ()))
            .expect_err("NULL is not text");
    }
}
