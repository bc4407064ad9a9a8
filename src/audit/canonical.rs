//! Canonical JSON: the one byte sequence a JSON value hashes as.
//!
//! Rules (close to RFC 8785 "JCS", and identical to it for the ASCII keys the export uses):
//! - object keys sorted by their UTF-8 bytes, each key once;
//! - no white space outside strings;
//! - strings: `"` and `\` escaped, control characters U+0000–U+001F escaped as `\b \f \n \r \t`
//!   or `\u00xx` (lower-case hex), everything else written as-is in UTF-8 (no `\u` escapes
//!   for non-ASCII, no escaping of `/`);
//! - integers in plain decimal (`-12`, `0`, `18446744073709551615`); other numbers in the
//!   shortest form that reads back to the same `f64` (`1.5`, `1e-7`), which is stable because
//!   the verifier parses exactly the text the exporter wrote;
//! - `true`, `false`, `null`.
//!
//! Canonicalising a value parsed from a canonical text gives that text back, which is what
//! lets the verifier recompute a hash from the file alone.

use std::fmt::Write as _;

use serde_json::{Number, Value};

/// The canonical text of `value`.
pub fn to_canonical_string(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_canonical(value, &mut out);
    out
}

/// Appends the canonical text of `value` to `out`.
pub fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

fn write_number(n: &Number, out: &mut String) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        // serde_json never holds NaN or infinities; `Number::from_f64` prints the shortest
        // round-trip representation (ryu).
        match Number::from_f64(f) {
            Some(n) => {
                let _ = write!(out, "{n}");
            }
            None => out.push_str("null"),
        }
    } else {
        let _ = write!(out, "{n}");
    }
}

pub(super) fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        push_escaped(c, out);
    }
    out.push('"');
}

/// Appends one character of a string's content, escaped as the rules above say.
pub(super) fn push_escaped(c: char, out: &mut String) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x20 => {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_level_and_there_is_no_white_space() {
        let v = json!({"b": 1, "a": {"z": [3, 2, {"y": null, "x": true}], "m": false}, "A": "s"});
        assert_eq!(
            to_canonical_string(&v),
            r#"{"A":"s","a":{"m":false,"z":[3,2,{"x":true,"y":null}]},"b":1}"#
        );
    }

    #[test]
    fn key_order_of_the_input_does_not_matter() {
        let one: Value = serde_json::from_str(r#"{"x":1,"y":{"b":2,"a":1}}"#).unwrap();
        let two: Value =
            serde_json::from_str(r#"{ "y" : { "a" : 1 , "b" : 2 } , "x" : 1 }"#).unwrap();
        assert_eq!(to_canonical_string(&one), to_canonical_string(&two));
    }

    #[test]
    fn keys_sort_by_utf8_bytes() {
        let v = json!({"é": 1, "z": 2, "Z": 3, "aa": 4, "a": 5});
        assert_eq!(
            to_canonical_string(&v),
            r#"{"Z":3,"a":5,"aa":4,"z":2,"é":1}"#
        );
    }

    #[test]
    fn strings_escape_only_quotes_backslashes_and_controls() {
        let v = json!("a\"b\\c\nd\te\r\u{8}\u{c}\u{1}\u{1f}/São Paulo ✓ 😀");
        assert_eq!(
            to_canonical_string(&v),
            "\"a\\\"b\\\\c\\nd\\te\\r\\b\\f\\u0001\\u001f/São Paulo ✓ 😀\""
        );
    }

    #[test]
    fn numbers_have_one_spelling() {
        // serde_json reads `-0` as the float -0.0; it is written back as `-0.0` every time.
        let v: Value = serde_json::from_str(
            "[0, -0, 1, -12, 9223372036854775807, 18446744073709551615, 1.5, 1.0, 1e-7, 2.5E3, -0.0]",
        )
        .unwrap();
        assert_eq!(
            to_canonical_string(&v),
            "[0,-0.0,1,-12,9223372036854775807,18446744073709551615,1.5,1.0,1e-7,2500.0,-0.0]"
        );
    }

    #[test]
    fn canonical_text_reads_back_to_itself() {
        let v = json!({
            "payload": {"CustomerRegistered": {"profile": {"name": "José \"Zé\" da Silva\n",
            "tax_id": "52998224725"}}},
            "n": [1, -2, 3.25, 1e300, null, true],
            "nested": {"": "", "\u{7f}": "\u{7f}"}
        });
        let text = to_canonical_string(&v);
        let again: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(again, v);
        assert_eq!(to_canonical_string(&again), text);
    }

    #[test]
    fn scalars() {
        assert_eq!(to_canonical_string(&json!(null)), "null");
        assert_eq!(to_canonical_string(&json!(true)), "true");
        assert_eq!(to_canonical_string(&json!([])), "[]");
        assert_eq!(to_canonical_string(&json!({})), "{}");
    }
}
