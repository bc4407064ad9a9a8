//! Canonical JSON written straight from JSON text, without building a [`serde_json::Value`].
//!
//! The seal hashes the canonical bytes ([`super::canonical`]) of every event's payload and
//! metadata, and the log stores those as JSON text. Parsing each into a `Value` (a tree of
//! heap nodes, a `BTreeMap` per object) only to write it back was most of the sealer's and of
//! `verify --database`'s time. [`Canonicalizer::write`] reads the text once and writes the
//! canonical text as it goes:
//! - strings without escapes, and integers that surely fit 64 bits, are copied as they are
//!   (their canonical spelling is their JSON spelling);
//! - an escaped string is decoded and escaped again by the canonical rule;
//! - every other number (fractions, exponents, `-0`, integers of 19 digits and more) is read
//!   by `serde_json` itself and written by the canonical rule, so a float reads back exactly
//!   as the `Value` path reads it;
//! - an object's members are written in input order, each remembering its decoded key; only
//!   when the keys were not already in UTF-8 byte order (or one repeats) are the members moved
//!   into order, the last of a repeated key kept (as `serde_json` keeps it).
//!
//! # Invariant
//! For every text, [`Canonicalizer::write`] gives exactly the bytes of
//! [`super::canonical::write_canonical`] over `serde_json::from_str::<Value>(text)`, or the same
//! error. Whatever the fast reader does not accept (nesting deeper than [`MAX_DEPTH`], a lone
//! surrogate, anything malformed) is handed whole to that `Value` path, which decides; so the
//! fast reader may be stricter than `serde_json`, never looser. The unit tests compare both on
//! generated JSON of many shapes and spellings.
//!
//! The buffers (member list, decoded keys, reordering scratch) live in the `Canonicalizer` and
//! are reused from one call to the next: keep one per thread of work.

use std::fmt;
use std::ops::Range;

use serde_json::Value;

use super::canonical::{push_escaped, write_canonical};

/// Nesting the fast reader handles itself; deeper text goes through `serde_json` (whose own
/// limit is 128).
pub const MAX_DEPTH: usize = 100;

/// The text is not JSON (`serde_json`'s message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotJson(pub String);

impl fmt::Display for NotJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not JSON: {}", self.0)
    }
}

impl std::error::Error for NotJson {}

/// Where a decoded object key is: in the input (no escapes) or in the decoded-key buffer.
#[derive(Debug, Clone)]
enum Key {
    Input(Range<usize>),
    Decoded(Range<usize>),
}

/// One member of an object being written: its key and its `"key":value` text in the output.
#[derive(Debug, Clone)]
struct Member {
    key: Key,
    text: Range<usize>,
}

/// The fast reader gave up; the `Value` path decides.
struct GiveUp;

type Step = Result<(), GiveUp>;

/// Writes canonical JSON from JSON text, reusing its buffers across calls.
#[derive(Debug, Default)]
pub struct Canonicalizer {
    members: Vec<Member>,
    keys: String,
    scratch: String,
}

impl Canonicalizer {
    pub fn new() -> Canonicalizer {
        Canonicalizer::default()
    }

    /// Appends the canonical text of the JSON `text` to `out`: the same bytes as
    /// [`write_canonical`] over `serde_json::from_str::<Value>(text)`.
    pub fn write(&mut self, text: &str, out: &mut String) -> Result<(), NotJson> {
        let start = out.len();
        if self.fast(text, out).is_err() {
            out.truncate(start);
            let value: Value = serde_json::from_str(text).map_err(|e| NotJson(e.to_string()))?;
            write_canonical(&value, out);
        }
        Ok(())
    }

    /// The fast reader alone; on `Err`, `out` holds a partial text.
    fn fast(&mut self, text: &str, out: &mut String) -> Step {
        self.members.clear();
        self.keys.clear();
        let mut reader = Reader {
            text,
            bytes: text.as_bytes(),
            at: 0,
            last: 0..0,
        };
        reader.skip_ws();
        self.value(&mut reader, out, 0)?;
        reader.skip_ws();
        if reader.at == reader.bytes.len() {
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    /// The canonical text of `text` as a new string.
    pub fn to_canonical(&mut self, text: &str) -> Result<String, NotJson> {
        let mut out = String::with_capacity(text.len());
        self.write(text, &mut out)?;
        Ok(out)
    }

    fn value(&mut self, r: &mut Reader<'_>, out: &mut String, depth: usize) -> Step {
        match r.peek() {
            Some(b'{') => self.object(r, out, depth + 1),
            Some(b'[') => self.array(r, out, depth + 1),
            Some(b'"') => {
                if let Some(decoded) = r.string(&mut self.keys, None)? {
                    // Escapes: the decoded text, escaped again by the canonical rule.
                    out.push('"');
                    for c in self.keys[decoded.clone()].chars() {
                        push_escaped(c, out);
                    }
                    out.push('"');
                    self.keys.truncate(decoded.start);
                } else {
                    out.push_str(&r.text[r.last.clone()]);
                }
                Ok(())
            }
            Some(b't') => r.literal("true", out),
            Some(b'f') => r.literal("false", out),
            Some(b'n') => r.literal("null", out),
            Some(b'-' | b'0'..=b'9') => r.number(out),
            _ => Err(GiveUp),
        }
    }

    fn array(&mut self, r: &mut Reader<'_>, out: &mut String, depth: usize) -> Step {
        if depth > MAX_DEPTH {
            return Err(GiveUp);
        }
        r.at += 1;
        out.push('[');
        r.skip_ws();
        if r.peek() == Some(b']') {
            r.at += 1;
            out.push(']');
            return Ok(());
        }
        loop {
            r.skip_ws();
            self.value(r, out, depth)?;
            r.skip_ws();
            match r.next() {
                Some(b',') => out.push(','),
                Some(b']') => {
                    out.push(']');
                    return Ok(());
                }
                _ => return Err(GiveUp),
            }
        }
    }

    fn object(&mut self, r: &mut Reader<'_>, out: &mut String, depth: usize) -> Step {
        if depth > MAX_DEPTH {
            return Err(GiveUp);
        }
        r.at += 1;
        out.push('{');
        let body = out.len();
        let first = self.members.len();
        let keys_start = self.keys.len();
        r.skip_ws();
        if r.peek() == Some(b'}') {
            r.at += 1;
            out.push('}');
            return Ok(());
        }
        loop {
            r.skip_ws();
            if r.peek() != Some(b'"') {
                return Err(GiveUp);
            }
            let member_start = out.len();
            let key = match r.string(&mut self.keys, Some(out))? {
                Some(decoded) => Key::Decoded(decoded),
                None => Key::Input(r.last.start + 1..r.last.end - 1),
            };
            r.skip_ws();
            if r.next() != Some(b':') {
                return Err(GiveUp);
            }
            out.push(':');
            r.skip_ws();
            self.value(r, out, depth)?;
            self.members.push(Member {
                key,
                text: member_start..out.len(),
            });
            r.skip_ws();
            match r.next() {
                Some(b',') => out.push(','),
                Some(b'}') => break,
                _ => return Err(GiveUp),
            }
        }
        let key_of = |key: &Key| -> &[u8] {
            match key {
                Key::Input(range) => &r.bytes[range.clone()],
                Key::Decoded(range) => &self.keys.as_bytes()[range.clone()],
            }
        };
        let members = &self.members[first..];
        let in_order = members
            .windows(2)
            .all(|pair| key_of(&pair[0].key) < key_of(&pair[1].key));
        if !in_order {
            // Stable: of a repeated key the last one stays last, and is the one kept.
            let mut order: Vec<usize> = (0..members.len()).collect();
            order.sort_by(|a, b| key_of(&members[*a].key).cmp(key_of(&members[*b].key)));
            self.scratch.clear();
            self.scratch.push_str(&out[body..]);
            out.truncate(body);
            let mut written = false;
            for (i, &m) in order.iter().enumerate() {
                if let Some(&next) = order.get(i + 1) {
                    if key_of(&members[next].key) == key_of(&members[m].key) {
                        continue;
                    }
                }
                if written {
                    out.push(',');
                }
                let text = &members[m].text;
                out.push_str(&self.scratch[text.start - body..text.end - body]);
                written = true;
            }
        }
        out.push('}');
        self.members.truncate(first);
        self.keys.truncate(keys_start);
        Ok(())
    }
}

/// A cursor over JSON text.
struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    /// The text of the last string read (quotes included).
    last: Range<usize>,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek();
        self.at += 1;
        b
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.at += 1;
        }
    }

    fn literal(&mut self, word: &str, out: &mut String) -> Step {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            out.push_str(word);
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    /// A number: integers that surely fit 64 bits copied, the rest read by `serde_json`.
    fn number(&mut self, out: &mut String) -> Step {
        let start = self.at;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let digits = self.at;
        match self.next() {
            Some(b'0') => {}
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(GiveUp),
        }
        let int_digits = self.at - digits;
        let mut plain = true;
        if self.peek() == Some(b'.') {
            plain = false;
            self.at += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            plain = false;
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.some_digits()?;
        }
        let token = &self.text[start..self.at];
        // 19 digits always fit a u64, 18 an i64; `-0` is a float to serde_json.
        let copied = plain
            && if negative {
                int_digits <= 18 && token != "-0"
            } else {
                int_digits <= 19
            };
        if copied {
            out.push_str(token);
        } else {
            let value: Value = serde_json::from_str(token).map_err(|_| GiveUp)?;
            write_canonical(&value, out);
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Step {
        let start = self.at;
        self.digits();
        if self.at == start {
            Err(GiveUp)
        } else {
            Ok(())
        }
    }
}

impl Reader<'_> {
    /// Reads the string at the cursor. Without escapes: returns `None`, the string's JSON text
    /// (quotes included) is `self.last`, and, with `key_out`, is copied there. With escapes:
    /// its decoded content is appended to `decoded` and its range there returned, and with
    /// `key_out` its canonical text is written there too.
    fn string(
        &mut self,
        decoded: &mut String,
        key_out: Option<&mut String>,
    ) -> Result<Option<Range<usize>>, GiveUp> {
        let open = self.at;
        self.at += 1;
        let run = self.at;
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    self.last = open..self.at;
                    if let Some(out) = key_out {
                        out.push_str(&self.text[open..self.at]);
                    }
                    return Ok(None);
                }
                Some(b'\\') => break,
                Some(b) if b < 0x20 => return Err(GiveUp),
                Some(_) => self.at += 1,
                None => return Err(GiveUp),
            }
        }
        // Escapes: decode the rest.
        let start = decoded.len();
        decoded.push_str(&self.text[run..self.at]);
        loop {
            match self.next() {
                Some(b'"') => break,
                Some(b'\\') => {
                    let c = match self.next() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => self.unicode_escape()?,
                        _ => return Err(GiveUp),
                    };
                    decoded.push(c);
                }
                Some(b) if b < 0x20 => return Err(GiveUp),
                Some(_) => {
                    // Copy the run of plain characters up to the next quote or backslash.
                    let from = self.at - 1;
                    while let Some(b) = self.peek() {
                        if b == b'"' || b == b'\\' || b < 0x20 {
                            break;
                        }
                        self.at += 1;
                    }
                    decoded.push_str(&self.text[from..self.at]);
                }
                None => return Err(GiveUp),
            }
        }
        self.last = open..self.at;
        if let Some(out) = key_out {
            out.push('"');
            for c in decoded[start..].chars() {
                push_escaped(c, out);
            }
            out.push('"');
        }
        Ok(Some(start..decoded.len()))
    }

    /// After `\u`: four hex digits, and a second escape for a surrogate pair. A lone surrogate
    /// is left to `serde_json`.
    fn unicode_escape(&mut self) -> Result<char, GiveUp> {
        let high = self.hex4()?;
        let code = match high {
            0xD800..=0xDBFF => {
                if self.next() != Some(b'\\') || self.next() != Some(b'u') {
                    return Err(GiveUp);
                }
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(GiveUp);
                }
                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(GiveUp),
            code => code,
        };
        char::from_u32(code).ok_or(GiveUp)
    }

    fn hex4(&mut self) -> Result<u32, GiveUp> {
        let mut code = 0;
        for _ in 0..4 {
            let digit = match self.next() {
                Some(b @ b'0'..=b'9') => b - b'0',
                Some(b @ b'a'..=b'f') => b - b'a' + 10,
                Some(b @ b'A'..=b'F') => b - b'A' + 10,
                _ => return Err(GiveUp),
            };
            code = code * 16 + u32::from(digit);
        }
        Ok(code)
    }
}

/// The string value of the top-level member `key` of a *canonical* object text (as
/// [`Canonicalizer::write`] writes it), decoded; `None` when the text is not an object, has no
/// such member, or its value is not a string. `key` must need no escaping. The same answer as
/// `value.get(key).and_then(Value::as_str)` on the parsed value, without parsing it.
pub fn member_str(canonical: &str, key: &str) -> Option<String> {
    let bytes = canonical.as_bytes();
    if bytes.first() != Some(&b'{') {
        return None;
    }
    let mut at = 1;
    while bytes.get(at) == Some(&b'"') {
        let key_end = string_end(bytes, at)?;
        let value_start = key_end + 1; // after the ':'
        let value_end = value_end(bytes, value_start)?;
        if &canonical[at + 1..key_end - 1] == key {
            let value = &canonical[value_start..value_end];
            if !value.starts_with('"') {
                return None;
            }
            let inner = &value[1..value.len() - 1];
            return if inner.contains('\\') {
                serde_json::from_str::<String>(value).ok()
            } else {
                Some(inner.to_string())
            };
        }
        match bytes.get(value_end) {
            Some(b',') => at = value_end + 1,
            _ => return None,
        }
    }
    None
}

/// The index just after the string that opens at `at`.
fn string_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    loop {
        match bytes.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// The index just after the value that starts at `at` (canonical text: no white space).
fn value_end(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => string_end(bytes, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match bytes.get(i)? {
                    b'"' => {
                        i = string_end(bytes, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = at;
            while let Some(b) = bytes.get(i) {
                if matches!(b, b',' | b'}' | b']') {
                    break;
                }
                i += 1;
            }
            Some(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::canonical::to_canonical_string;

    /// The `Value` path: what the fast reader must equal.
    fn reference(text: &str) -> Result<String, ()> {
        serde_json::from_str::<Value>(text)
            .map(|v| to_canonical_string(&v))
            .map_err(|_| ())
    }

    fn fast_only(c: &mut Canonicalizer, text: &str) -> Option<String> {
        let mut out = String::new();
        c.fast(text, &mut out).ok().map(|()| out)
    }

    /// Checks `text` both ways; returns whether the fast reader handled it alone.
    fn agree(c: &mut Canonicalizer, text: &str) -> bool {
        let ours = c.to_canonical(text).map_err(|_| ());
        assert_eq!(ours, reference(text), "for {text:?}");
        match fast_only(c, text) {
            Some(fast) => {
                assert_eq!(Ok(fast), reference(text), "fast reader, for {text:?}");
                true
            }
            None => false,
        }
    }

    /// xorshift64*: deterministic, so a failure is reproducible from its seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len() as u64) as usize]
        }
    }

    /// Spellings of numbers, as JSON text.
    const NUMBERS: &[&str] = &[
        "0",
        "-0",
        "1",
        "-1",
        "1.0",
        "-1.0",
        "1e3",
        "1E3",
        "1e+3",
        "1e-3",
        "1.5e300",
        "-0.0",
        "0.0",
        "0e0",
        "-0e-0",
        "2.5E3",
        "100",
        "1e-7",
        "0.1",
        "0.30000000000000004",
        "9223372036854775807",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "123456789012345678901234567890",
        "999999999999999999",
        "-999999999999999999",
        "1000000000000000000",
        "-1000000000000000000",
        "4.35",
        "12345.6789",
        "1.7976931348623157e308",
        "5e-324",
        "2.2250738585072014e-308",
        "0.000001",
        "1234567890123456789",
        "-1234567890123456789",
    ];

    /// Pieces of string content, as JSON text (escapes included).
    const STRINGS: &[&str] = &[
        "",
        "a",
        "tenant",
        "São Paulo",
        "é",
        "z",
        "Z",
        "aa",
        "😀",
        r"\u00e9",
        r"\u0041",
        r"\ud83d\ude00",
        r"\\",
        r#"\""#,
        r"\/",
        r"a\nb",
        r"\t\r\b\f",
        r"\u0000",
        r"\u001F",
        r"\u007f",
        "\u{7f}",
        r"\u2028",
        "日本",
        "ação",
        "a b",
        r"\u00E9t\u00e9",
        r#"x\\\"y"#,
        r"\uFFFF",
        "/",
    ];

    fn ws(rng: &mut Rng, out: &mut String) {
        if rng.below(3) == 0 {
            out.push_str(rng.pick(&[" ", "\n", "\t", "\r\n  ", "  "]));
        }
    }

    fn string(rng: &mut Rng, out: &mut String) {
        out.push('"');
        for _ in 0..rng.below(3) {
            out.push_str(rng.pick(STRINGS));
        }
        out.push('"');
    }

    /// A random JSON text: random white space, key order (sorted or not, some keys repeated),
    /// escapes, spellings of numbers, nesting.
    fn text(rng: &mut Rng, out: &mut String, depth: u32) {
        ws(rng, out);
        let kind = if depth > 5 {
            rng.below(5)
        } else {
            rng.below(8)
        };
        match kind {
            0 => out.push_str(rng.pick(&["true", "false", "null"])),
            1 | 2 => out.push_str(rng.pick(NUMBERS)),
            3 => {
                let n = rng.below(2_000_000_000) as i64 - 1_000_000_000;
                out.push_str(&n.to_string());
            }
            4 => string(rng, out),
            5 => {
                out.push('[');
                for i in 0..rng.below(5) {
                    if i > 0 {
                        out.push(',');
                    }
                    text(rng, out, depth + 1);
                }
                ws(rng, out);
                out.push(']');
            }
            _ => {
                out.push('{');
                for i in 0..rng.below(7) {
                    if i > 0 {
                        out.push(',');
                    }
                    ws(rng, out);
                    string(rng, out);
                    ws(rng, out);
                    out.push(':');
                    text(rng, out, depth + 1);
                }
                ws(rng, out);
                out.push('}');
            }
        }
        ws(rng, out);
    }

    #[test]
    fn agrees_with_the_value_path_on_generated_json() {
        let mut c = Canonicalizer::new();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let (mut fast, mut total, mut objects_out_of_order) = (0, 0, 0);
        for _ in 0..20_000 {
            let mut t = String::new();
            text(&mut rng, &mut t, 0);
            total += 1;
            if agree(&mut c, &t) {
                fast += 1;
            }
            if t.contains('{') && c.to_canonical(&t).ok() != Some(t.clone()) {
                objects_out_of_order += 1;
            }
        }
        // Every generated text is valid JSON with paired surrogates, so the fast reader
        // handles all of them itself: the comparison is against the Value path, never the
        // Value path against itself.
        assert_eq!(fast, total);
        assert!(objects_out_of_order > 1_000, "{objects_out_of_order}");
    }

    #[test]
    fn agrees_on_serde_json_s_own_output_of_generated_values() {
        // What the log actually stores: serde_json's compact (and pretty) output.
        let mut c = Canonicalizer::new();
        let mut rng = Rng(42);
        for _ in 0..5_000 {
            let mut t = String::new();
            text(&mut rng, &mut t, 0);
            let value: Value = serde_json::from_str(&t).expect("generated JSON parses");
            for spelled in [
                serde_json::to_string(&value).expect("serializes"),
                serde_json::to_string_pretty(&value).expect("serializes"),
            ] {
                assert!(agree(&mut c, &spelled), "declined {spelled:?}");
            }
        }
    }

    #[test]
    fn edge_cases_agree_and_take_the_fast_path() {
        let mut c = Canonicalizer::new();
        for t in [
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,"b":0,"a":2}"#,
            r#"{"\u0061":1,"a":2}"#,
            r#"{"a":1,"\u0061":2}"#,
            r#"{"é":1,"z":2,"Z":3,"aa":4,"a":5,"":6}"#,
            r##"{"\"":1,"!":2,"#":3}"##,
            r#"{"x":{"d":1,"c":{"f":[{"h":1,"g":2}],"e":0}},"w":[]}"#,
            r#"[1.0,1e3,-0,0,-0.0,1E-7,18446744073709551616,-9223372036854775808]"#,
            r#""\ud83d\ude00 \u00e9\/""#,
            " \n\t{ \"a\" : [ ] , \"b\" : { } }\r\n",
            r#"{"payload":{"valor":1234,"nome":"Jos\u00e9 \"Z\u00e9\""}}"#,
        ] {
            assert!(agree(&mut c, t), "fast reader declined {t:?}");
        }
    }

    #[test]
    fn what_the_fast_reader_declines_still_agrees() {
        let mut c = Canonicalizer::new();
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH + 5),
            "]".repeat(MAX_DEPTH + 5)
        );
        let too_deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(!agree(&mut c, &deep));
        assert!(c.to_canonical(&deep).is_ok());
        assert!(c.to_canonical(&too_deep).is_err());
        for t in [
            r#""\ud800""#,
            r#""\udc00x""#,
            r#""\ud800\u0041""#,
            "",
            " ",
            "{",
            "[1,]",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            "{1:2}",
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "+1",
            "1e400",
            "-1e400",
            "NaN",
            "tru",
            "nul",
            "[1 2]",
            r#""a"#,
            "\"\u{1}\"",
            r#""\x""#,
            r#""\u12""#,
            "1 2",
            "{} x",
            r#"["a"]]"#,
        ] {
            agree(&mut c, t);
        }
    }

    #[test]
    fn buffers_are_reused_without_leaking_between_calls() {
        let mut c = Canonicalizer::new();
        let mut out = String::new();
        c.write(r#"{"b":{"\u0079":1,"x":2},"a":"\n"}"#, &mut out)
            .expect("JSON");
        out.push('|');
        c.write(r#"{"d":1,"c":2}"#, &mut out).expect("JSON");
        assert_eq!(out, r#"{"a":"\n","b":{"x":2,"y":1}}|{"c":2,"d":1}"#);
        assert!(c.write("{", &mut out).is_err());
    }

    #[test]
    fn member_str_reads_what_value_get_reads() {
        let mut c = Canonicalizer::new();
        let mut rng = Rng(7);
        for t in [
            r#"{"tenant":"shop-a","actor":"x"}"#,
            r#"{"actor":{"tenant":"no","a":[1,{"tenant":"no"}]},"tenant":"sh\"op"}"#,
            r#"{"tenant":5}"#,
            r#"{"tenant":null,"z":1}"#,
            r#"{"tenant":{"a":"b"}}"#,
            r#"{"tenant":"a","tenant":"b"}"#,
            r#"{"a":"}","b":"\\","tenant":"t","u":[]}"#,
            r#"{"\u0074enant":"escaped key"}"#,
            r#"{"tenant_id":"x","tenants":"y"}"#,
            r#"["tenant","x"]"#,
            r#""tenant""#,
            r#"{}"#,
            r#"{"tenant":"S\u00e3o \ud83d\ude00"}"#,
        ] {
            let value: Value = serde_json::from_str(t).expect("JSON");
            let canonical = c.to_canonical(t).expect("JSON");
            assert_eq!(
                member_str(&canonical, "tenant").as_deref(),
                value.get("tenant").and_then(Value::as_str),
                "for {t}"
            );
        }
        for _ in 0..5_000 {
            let mut t = String::new();
            text(&mut rng, &mut t, 0);
            let value: Value = serde_json::from_str(&t).expect("JSON");
            let canonical = c.to_canonical(&t).expect("JSON");
            for key in ["a", "tenant", "", "aa"] {
                assert_eq!(
                    member_str(&canonical, key).as_deref(),
                    value.get(key).and_then(Value::as_str),
                    "for {t}"
                );
            }
        }
    }

    #[test]
    fn long_strings_agree_wherever_their_escape_or_quote_falls() {
        // The special byte at every offset of long keys and values, after ASCII and
        // multi-byte text.
        let mut c = Canonicalizer::new();
        for filler in ["a", "é", "日"] {
            for n in 0..40 {
                let head = filler.repeat(n);
                for special in [r#"\""#, r"\\", r"\n", r"\u00e9", r"\ud83d\ude00", ""] {
                    let s = format!("{head}{special}{head}");
                    let t = format!(r#"{{"{s}":"{s}","k{s}":["{s}"]}}"#);
                    assert!(agree(&mut c, &t), "declined {t:?}");
                }
                // A raw control character is not JSON: both refuse.
                let t = format!("\"{head}\u{1}{head}\"");
                assert!(c.to_canonical(&t).is_err());
                assert!(reference(&t).is_err());
            }
        }
    }
}
