//! Fuzzing the HTTP edges: thousands of generated bodies, paths and query strings sent over
//! real HTTP (byte for byte, see `edges_fuzz/raw.rs`) to a real server on each backend.
//!
//! Every generated request carries at least one defect by construction (a NUL, a control
//! character, a wrong type, a number out of range, deep nesting, invalid UTF-8, trailing bytes,
//! a repeated or unknown key, a cut-off body, a bad id in the path, a bad query parameter…), so
//! every answer must be a 4xx in the API's error shape, never a 5xx, and the event log must be
//! exactly as long after the fuzz as before. A valid request before and after must work.
//!
//! The seed is fixed (override with `EDGES_FUZZ_SEED`), so a failure replays; the failing
//! requests are printed.

use crate::raw;

use std::time::Instant;

use crate::support::*;
use bling_ledger::store::log::LogFilter;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// Requests per backend.
const REQUESTS: usize = 5000;
/// Requests in flight at once.
const CONCURRENCY: usize = 8;

#[derive(Debug, Clone)]
struct Case {
    kind: &'static str,
    method: &'static str,
    target: Vec<u8>,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
}

impl std::fmt::Display for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body: String = String::from_utf8_lossy(&self.body)
            .chars()
            .take(300)
            .collect();
        let target: String = String::from_utf8_lossy(&self.target)
            .chars()
            .take(200)
            .collect();
        write!(
            f,
            "[{}] {} {} headers={:?} body={:?}",
            self.kind,
            self.method,
            target,
            self.headers
                .iter()
                .map(|(n, v)| (n, String::from_utf8_lossy(v).to_string()))
                .collect::<Vec<_>>(),
            body
        )
    }
}

/// Control characters that are not white space (so `trim` keeps them) and not allowed in any
/// field, not even in the multi-line ones.
fn control(rng: &mut StdRng) -> char {
    const SET: &[char] = &[
        '\u{0}', '\u{1}', '\u{7}', '\u{8}', '\u{e}', '\u{1b}', '\u{7f}', '\u{80}', '\u{84}',
        '\u{86}', '\u{9b}', '\u{9f}',
    ];
    SET[rng.random_range(0..SET.len())]
}

/// Every leaf of `value` with its path, as a list of JSON pointers.
fn leaves(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                leaves(v, format!("{at}/{k}"), out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                leaves(v, format!("{at}/{i}"), out);
            }
        }
        _ => out.push(at),
    }
}

fn objects(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            out.push(at.clone());
            for (k, v) in map {
                objects(v, format!("{at}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                objects(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn nested(depth: usize, rng: &mut StdRng) -> Value {
    let mut v = json!(rng.random_range(0..10));
    for _ in 0..depth {
        v = if rng.random_bool(0.5) {
            json!([v])
        } else {
            json!({ "a": v })
        };
    }
    v
}

/// One value-level defect, applied to a leaf or an object of `body`.
fn value_defect(body: &mut Value, rng: &mut StdRng) {
    let mut paths = Vec::new();
    leaves(body, String::new(), &mut paths);
    let path = paths[rng.random_range(0..paths.len())].clone();
    let Some(leaf) = body.pointer_mut(&path) else {
        return;
    };
    match rng.random_range(0..7) {
        // A NUL or another control character inside a string (or replacing a number).
        0 | 1 => {
            let c = control(rng);
            match leaf {
                Value::String(s) if s.chars().count() >= 2 => {
                    let chars: Vec<char> = s.chars().collect();
                    let at = rng.random_range(1..chars.len());
                    let mut out: String = chars[..at].iter().collect();
                    out.push(c);
                    out.extend(&chars[at..]);
                    *s = out;
                }
                _ => *leaf = json!(format!("x{c}y")),
            }
        }
        // A wrong type (never null: an absent optional field is valid).
        2 => {
            *leaf = match leaf {
                Value::String(_) => match rng.random_range(0..4) {
                    0 => json!(42),
                    1 => json!(true),
                    2 => json!(["a"]),
                    _ => json!({"a": 1}),
                },
                _ => match rng.random_range(0..4) {
                    0 => json!("12"),
                    1 => json!(false),
                    2 => json!([1]),
                    _ => json!({}),
                },
            }
        }
        // A number out of range, or not a whole number.
        3 => {
            let numbers = [
                json!(-1),
                json!(i64::MAX),
                json!(i64::MIN),
                json!(u64::MAX),
                json!(10_000_000_000i64),
                json!(1.5),
                json!(1e300),
                json!(-0.01),
            ];
            *leaf = numbers[rng.random_range(0..numbers.len())].clone();
        }
        // Deep nesting (past serde_json's recursion limit, sometimes).
        4 => {
            // Deeper nesting is made as text (`byte_defect`): a deep tree would overflow
            // the generator's own stack.
            let depth = [3, 40, 127, 129, 200][rng.random_range(0..5)];
            *leaf = nested(depth, rng);
        }
        // A date that is not one, or out of range (a date field), or a wrong type.
        5 if !path.ends_with("date") => *leaf = json!([]),
        5 => {
            let dates = [
                "1999-12-31",
                "2101-01-01",
                "2026-02-30",
                "0000-01-01",
                "+12026-01-01",
                "2026-1-1",
                "26/11/2026",
            ];
            *leaf = json!(dates[rng.random_range(0..dates.len())]);
        }
        // A field no body has.
        _ => {
            let mut objs = Vec::new();
            objects(body, String::new(), &mut objs);
            let at = objs[rng.random_range(0..objs.len())].clone();
            if let Some(Value::Object(map)) = body.pointer_mut(&at) {
                let names = [
                    "nickname",
                    "__proto__",
                    "constructor",
                    "NAME",
                    "total ",
                    "ﬁeld",
                ];
                map.insert(names[rng.random_range(0..names.len())].into(), json!(1));
            }
        }
    }
}

/// One byte-level defect; `first_key` is a key the body's own type knows.
fn byte_defect(bytes: &mut Vec<u8>, first_key: &str, rng: &mut StdRng) {
    match rng.random_range(0..7) {
        // The body nested thousands of levels deep.
        6 => {
            let depth = rng.random_range(129..20_000);
            let mut nested = vec![b'['; depth];
            nested.append(bytes);
            nested.extend(std::iter::repeat_n(b']', depth));
            *bytes = nested;
        }
        // A repeated key.
        0 => {
            let dup = format!("\"{first_key}\":\"dup\",");
            bytes.splice(1..1, dup.into_bytes());
        }
        // Bytes that are not UTF-8, at the start of a string value.
        1 => {
            let bad: &[&[u8]] = &[
                b"\xff",
                b"\xc3\x28",
                b"\xed\xa0\x80",
                b"\x80",
                b"\xf8\x88\x80\x80\x80",
            ];
            let starts: Vec<usize> = bytes
                .windows(3)
                .enumerate()
                .filter(|(_, w)| *w == b"\":\"")
                .map(|(i, _)| i + 3)
                .collect();
            let at = if starts.is_empty() {
                1
            } else {
                starts[rng.random_range(0..starts.len())]
            };
            let b = bad[rng.random_range(0..bad.len())];
            bytes.splice(at..at, b.iter().copied());
        }
        // A raw NUL byte anywhere.
        2 => {
            let at = rng.random_range(0..=bytes.len());
            bytes.insert(at, 0);
        }
        // Cut off before its end (a proper prefix of an object is never JSON).
        3 => {
            let at = rng.random_range(1..bytes.len().max(2));
            bytes.truncate(at);
        }
        // A lone surrogate, or an escaped NUL, in a string.
        4 => {
            let esc: &[u8] = if rng.random_bool(0.5) {
                b"\\ud800"
            } else {
                b"\\u0000"
            };
            let starts: Vec<usize> = bytes
                .windows(3)
                .enumerate()
                .filter(|(_, w)| *w == b"\":\"")
                .map(|(i, _)| i + 3)
                .collect();
            let at = starts.first().copied().unwrap_or(1);
            if starts.is_empty() {
                bytes.splice(1..1, b"\"k\":\"\\u0000\",".iter().copied());
            } else {
                bytes.splice(at..at, esc.iter().copied());
            }
        }
        // Bytes after the object.
        _ => {
            let trailing: &[&[u8]] = &[
                b"x", b"}", b" {}", b"[]", b"\"\"", b"1", b",", b"\n\0", b"\xff", b"null", b" //",
            ];
            bytes.extend_from_slice(trailing[rng.random_range(0..trailing.len())]);
        }
    }
}

fn headers(rng: &mut StdRng, token: &str) -> Vec<(&'static str, Vec<u8>)> {
    let mut h = vec![
        ("content-type", b"application/json".to_vec()),
        ("authorization", format!("Bearer {token}").into_bytes()),
    ];
    if rng.random_bool(0.3) {
        let key: Vec<u8> = match rng.random_range(0..4) {
            0 => format!("fz-{}", rng.random::<u32>()).into_bytes(),
            1 => b"k\xe9y".to_vec(),
            2 => vec![b'k'; 256],
            _ => b"a key".to_vec(),
        };
        h.push(("idempotency-key", key));
    }
    if rng.random_bool(0.2) {
        let id: Vec<u8> = match rng.random_range(0..3) {
            0 => format!("req-{}", rng.random::<u32>()).into_bytes(),
            1 => b"r\xffq".to_vec(),
            _ => vec![b'r'; 129],
        };
        h.push(("x-request-id", id));
    }
    h
}

fn body_case(rng: &mut StdRng) -> Case {
    let (method, target, mut body, first_key) = match rng.random_range(0..5) {
        0 => (
            "PUT",
            "/v1/tenants/shop-a/customers/c-fz",
            customer_body("Maria Souza"),
            "name",
        ),
        1 => (
            "POST",
            "/v1/tenants/shop-a/invoices/i-fz/bill",
            invoice_body("c1", "1001"),
            "number",
        ),
        2 => (
            "PUT",
            "/v1/tenants/shop-a/invoices/i-fz",
            invoice_body("c1", "1001"),
            "number",
        ),
        3 => (
            "POST",
            "/v1/tenants/shop-a/invoices/i-fz/cancel",
            json!({"reason": "desistiu da compra"}),
            "reason",
        ),
        _ => (
            "POST",
            "/v1/tenants/shop-a/replay",
            json!({"invoice_id": "i-fz"}),
            "invoice_id",
        ),
    };
    let value_defects = rng.random_range(0..3);
    for _ in 0..value_defects {
        value_defect(&mut body, rng);
    }
    let mut bytes = serde_json::to_vec(&body).expect("serialize");
    if value_defects == 0 || rng.random_bool(0.4) {
        byte_defect(&mut bytes, first_key, rng);
    }
    let token = match rng.random_range(0..20) {
        0 => "not-a-token",
        1 => SUPPORT_TOKEN,
        _ => ADMIN_TOKEN,
    };
    Case {
        kind: "body",
        method,
        target: target.as_bytes().to_vec(),
        headers: headers(rng, token),
        body: bytes,
    }
}

fn percent(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

/// A path segment that is never a valid id nor a route's fixed word.
fn bad_segment(rng: &mut StdRng) -> String {
    match rng.random_range(0..12) {
        0 => "..".into(),
        1 => ".".into(),
        2 => "%2e%2E".into(),
        3 => format!("a%00{}", rng.random::<u16>()),
        4 => "%FF%FE".into(),
        5 => {
            // Never all ASCII, so never an id once decoded.
            let mut bytes = rng.random::<[u8; 6]>();
            bytes[0] |= 0x80;
            percent(&bytes)
        }
        6 => {
            let chars = ['ç', 'ã', '😀', '\u{202e}', '\u{ffff}', 'ß', '€', '\u{85}'];
            let s: String = (0..rng.random_range(1..4))
                .map(|_| chars[rng.random_range(0..chars.len())])
                .collect();
            percent(s.as_bytes())
        }
        7 => "x".repeat(rng.random_range(65..300)),
        8 => "a%2Fb".into(),
        9 => ["%", "%Z1", "%u0000", "a%20b", "%0A", "%7F"][rng.random_range(0..6)].into(),
        10 => "x".repeat(rng.random_range(8200..9000)),
        _ => format!("%C0%AF{}", rng.random::<u8>()),
    }
}

fn good_id(rng: &mut StdRng) -> String {
    ["shop-a", "c1", "i-fz", "...", "a.b_c-1"][rng.random_range(0..5)].into()
}

fn path_case(rng: &mut StdRng) -> Case {
    const TEMPLATES: &[&str] = &[
        "/v1/tenants/{}/customers/{}",
        "/v1/tenants/{}/invoices/{}",
        "/v1/tenants/{}/invoices/{}/bill",
        "/v1/tenants/{}/invoices/{}/cancel",
        "/v1/tenants/{}/invoices/{}/history",
        "/v1/tenants/{}/invoices",
        "/v1/tenants/{}/failures",
        "/v1/tenants/{}/replay",
        "/v1/tenants/{}/connection",
        "/v1/tenants/{}/connection/authorize",
        "/v1/tenants/{}/connection/disconnect",
        "/v1/audit/export/{}",
        "/{}",
        "/v1/{}/{}",
        "/v1/tenants/{}/{}",
        "/health/{}",
    ];
    let template = TEMPLATES[rng.random_range(0..TEMPLATES.len())];
    let holes = template.matches("{}").count();
    let forced = rng.random_range(0..holes);
    let mut target = String::new();
    for (i, part) in template.split("{}").enumerate() {
        target.push_str(part);
        if i < holes {
            let seg = if i == forced || rng.random_bool(0.3) {
                bad_segment(rng)
            } else {
                good_id(rng)
            };
            target.push_str(&seg);
        }
    }
    if rng.random_bool(0.2) {
        target.push_str(&format!("?q={}", percent(&rng.random::<[u8; 3]>())));
    }
    let methods = ["GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"];
    let method = methods[rng.random_range(0..methods.len())];
    let body = if rng.random_bool(0.5) {
        serde_json::to_vec(&customer_body("Maria")).expect("serialize")
    } else {
        Vec::new()
    };
    Case {
        kind: "path",
        method,
        target: target.into_bytes(),
        headers: headers(rng, ADMIN_TOKEN),
        body,
    }
}

fn junk_value(rng: &mut StdRng) -> String {
    match rng.random_range(0..6) {
        0 => "failed".into(),
        1 => rng.random_range(-5..200).to_string(),
        2 => "2026-11-25T00:00:00Z".into(),
        3 => percent(&rng.random::<[u8; 4]>()),
        4 => "divergent_customer_record".into(),
        _ => "529982".into(),
    }
}

fn query_case(rng: &mut StdRng) -> Case {
    let (route, keys, token): (&str, &[&str], &str) = if rng.random_bool(0.75) {
        if rng.random_bool(0.5) {
            (
                "/v1/tenants/shop-a/invoices",
                &["state", "cause", "q", "limit", "cursor"],
                SUPPORT_TOKEN,
            )
        } else {
            (
                "/v1/tenants/shop-a/failures",
                &["cause", "since", "until", "limit", "cursor"],
                SUPPORT_TOKEN,
            )
        }
    } else {
        (
            "/v1/audit/export",
            &["from", "to", "tenant", "format", "redact_pii", "upto"],
            AUDITOR_TOKEN,
        )
    };
    // The defect: a parameter that no route accepts, or a known one with a value it refuses.
    let (dkey, dvalue): (String, String) = match rng.random_range(0..8) {
        0 => (format!("x{}", rng.random::<u8>()), "1".into()),
        1 => (format!("q%00{}", rng.random::<u8>()), "1".into()),
        2 => (
            keys[rng.random_range(0..keys.len())].into(),
            format!("a%00{}", rng.random::<u8>()),
        ),
        3 => (
            keys[rng.random_range(0..keys.len())].into(),
            format!("%01{}", percent(&rng.random::<[u8; 2]>())),
        ),
        4 => (keys[rng.random_range(0..keys.len())].into(), "%7F".into()),
        5 => (
            keys[rng.random_range(0..keys.len())].into(),
            "q".repeat(201),
        ),
        6 => (
            keys[rng.random_range(0..keys.len())].into(),
            "%C2%85".into(),
        ),
        _ => (
            keys[rng.random_range(0..keys.len())].into(),
            "%1B%5B2J".into(),
        ),
    };
    let mut pairs = vec![(dkey.clone(), dvalue)];
    for _ in 0..rng.random_range(0..4) {
        let key = keys[rng.random_range(0..keys.len())];
        if pairs.iter().all(|(k, _)| k != key) {
            pairs.push((key.into(), junk_value(rng)));
        }
    }
    let at = rng.random_range(0..pairs.len());
    pairs.swap(0, at);
    let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Case {
        kind: "query",
        method: "GET",
        target: format!("{route}?{}", query.join("&")).into_bytes(),
        headers: headers(rng, token),
        body: Vec::new(),
    }
}

/// What is wrong with an answer, if anything.
fn judge(case: &Case, response: &std::io::Result<raw::RawResponse>) -> Option<String> {
    match response {
        Err(e) => Some(format!("{case}\n  -> transport error {e}")),
        Ok(r) if !(400..500).contains(&r.status) || !r.is_error_shape() => Some(format!(
            "{case}\n  -> {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
                .chars()
                .take(300)
                .collect::<String>()
        )),
        Ok(_) => None,
    }
}

async fn event_count(db: &bling_ledger::store::Db) -> usize {
    settle(db).await;
    bling_ledger::store::log::read_from(db, 0, 1_000_000, &LogFilter::default())
        .await
        .expect("read log")
        .len()
}

async fn the_edges_refuse_every_bad_request(t: TestDb) {
    let server = start_server(&t.url).await;
    let http = reqwest::Client::new();
    let put = |id: &str, name: &str| {
        http.put(format!(
            "{}/v1/tenants/shop-a/customers/{id}",
            server.base_url()
        ))
        .bearer_auth(INGEST_TOKEN)
        .json(&customer_body(name))
        .send()
    };
    assert_eq!(put("c1", "Maria").await.expect("put").status(), 201);
    let before = read_eventually(&t.db, 0, 1, &LogFilter::default())
        .await
        .len();
    assert_eq!(before, 1);

    let seed: u64 = std::env::var("EDGES_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_ed9e);
    let mut rng = StdRng::seed_from_u64(seed);
    let cases: Vec<Case> = (0..REQUESTS)
        .map(|i| match i % 5 {
            0..=2 => body_case(&mut rng),
            3 => path_case(&mut rng),
            _ => query_case(&mut rng),
        })
        .collect();
    let started = Instant::now();
    let addr = server.addr;
    let failures: Vec<String> = futures::stream::iter(cases)
        .map(|case| async move {
            let headers: Vec<(&str, &[u8])> = case
                .headers
                .iter()
                .map(|(n, v)| (*n, v.as_slice()))
                .collect();
            let response = raw::send(addr, case.method, &case.target, &headers, &case.body).await;
            judge(&case, &response)
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|f| async move { f })
        .collect()
        .await;
    let elapsed = started.elapsed();
    eprintln!(
        "{REQUESTS} fuzzed requests on {} in {elapsed:?} (seed {seed})",
        t.db.backend_name()
    );
    assert!(
        failures.is_empty(),
        "{} of {REQUESTS} answers were not a 4xx in the error shape (seed {seed}); first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );

    assert_eq!(event_count(&t.db).await, before, "the fuzz stored nothing");
    // The service still works, for a request that was refused in a thousand forms.
    assert_eq!(put("c-fz", "Joana").await.expect("put").status(), 201);
    assert_eq!(
        read_eventually(&t.db, 0, before + 1, &LogFilter::default())
            .await
            .len(),
        before + 1
    );
    server.stop().await.expect("stop");
}
both_backends!(edges, the_edges_refuse_every_bad_request);
