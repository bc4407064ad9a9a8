//! Bling answers JSON the way PHP's `json_encode` writes it ([VCR] `Purple-Stock/open-erp :
//! spec/vcr/*.yml`): every non-ASCII character escaped as `\uXXXX` (`"Situa\u00e7\u00e3o"`), every
//! `/` as `\/`, and its 404 bodies pretty-printed with four spaces. One response layer applies
//! this to every JSON answer of the sandbox, so no handler can forget it; the result is still
//! plain JSON that any parser reads.

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::Response;

/// PHP-style escaping of already-serialized JSON. In valid JSON, `/` and non-ASCII characters
/// can only occur inside strings (structure, numbers and literals are ASCII without `/`), and
/// serde_json never writes `/` as part of an escape, so a character-level pass is exact.
pub(crate) fn php_escape(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + json.len() / 8);
    for c in json.chars() {
        match c {
            '/' => out.push_str("\\/"),
            c if c.is_ascii() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out
}

/// `JSON_PRETTY_PRINT` on compact JSON text (keys keep their order): four-space indentation,
/// `"key": value`, empty `{}` and `[]` kept on one line.
fn pretty(compact: &str) -> String {
    let mut out = String::with_capacity(compact.len() * 2);
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    let chars: Vec<char> = compact.chars().collect();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"    ".repeat(depth));
    };
    for (i, &c) in chars.iter().enumerate() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                let close = if c == '{' { '}' } else { ']' };
                if chars.get(i + 1) != Some(&close) {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                let open = if c == '}' { '{' } else { '[' };
                if i == 0 || chars[i - 1] != open {
                    depth = depth.saturating_sub(1);
                    newline(&mut out, depth);
                }
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The response layer (`axum::middleware::map_response`): re-encodes JSON bodies PHP-style.
pub(crate) async fn php_json(resp: Response) -> Response {
    if !is_json(&resp) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let text = if parts.status == StatusCode::NOT_FOUND {
        pretty(text)
    } else {
        text.to_string()
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(php_escape(&text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_php_and_stays_json() {
        let v = serde_json::json!({"nome": "Ração/Situação 😀", "a\\/b": "x"});
        let raw = serde_json::to_string(&v).expect("ser");
        let php = php_escape(&raw);
        assert!(php.is_ascii());
        assert!(php.contains("Ra\\u00e7\\u00e3o\\/Situa\\u00e7\\u00e3o \\ud83d\\ude00"));
        let back: serde_json::Value = serde_json::from_str(&php).expect("still JSON");
        assert_eq!(back, v);
    }

    #[test]
    fn pretty_uses_four_spaces() {
        let compact = r#"{"error":{"type":"RESOURCE_NOT_FOUND","a":[],"b":"x,{y}:\"z"}}"#;
        let p = pretty(compact);
        assert_eq!(
            p,
            "{\n    \"error\": {\n        \"type\": \"RESOURCE_NOT_FOUND\",\n        \"a\": [],\n        \"b\": \"x,{y}:\\\"z\"\n    }\n}"
        );
        let a: serde_json::Value = serde_json::from_str(compact).expect("json");
        let b: serde_json::Value = serde_json::from_str(&p).expect("json");
        assert_eq!(a, b);
    }
}
