//! The verifiable audit export, end to end: a history seeded through the real HTTP API on two
//! tenants, exported (library, CLI, HTTP), verified, tampered with, redacted and filtered.

use std::path::{Path, PathBuf};

use crate::support::*;
use bling_ledger::audit::cli::{export, ExportArgs};
use bling_ledger::audit::record::chain_hash;
use bling_ledger::audit::verify::{read_manifest, verify_reader, Break};
use bling_ledger::audit::{
    canonical, verify_file, BreakReason, ExportQuery, Format, Manifest, Report,
};
use bling_ledger::store::log::{LogFilter, RecordedEvent};
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{json, Map, Value};

const AUDITOR_A_TOKEN: &str = "test-auditor-shop-a";

/// Every personal value the seed sends, in the spellings it could come back in.
const PII: [&str; 24] = [
    "Maria Souza",
    "José Pereira",
    "Jose Pereira",
    "Ana Lima",
    "52998224725",
    "529.982.247-25",
    "11144477735",
    "111.444.777-35",
    "cliente@example.com.br",
    "maria.souza@example.org",
    "jose@example.net",
    "11988887777",
    "98888-7777",
    "2133334444",
    "3333-4444",
    "21997776655",
    "Rua das Flores",
    "Rua Nova",
    "Avenida Atlântica",
    "Atlântica",
    "01001000",
    "01001-000",
    "22010000",
    "22010-000",
];

struct Seeded {
    t: TestDb,
    server: bling_ledger::server::Server,
    http: reqwest::Client,
    /// Every event of the seed, in log order.
    events: Vec<RecordedEvent>,
    /// Between phase 1 and phase 2, and between phase 2 and phase 3.
    t1: DateTime<Utc>,
    t2: DateTime<Utc>,
    dir: tempfile::TempDir,
}

/// The real binary serving `url`, with tokens from `BLING_LEDGER_TOKENS`: an auditor for all
/// tenants and one for shop-a only. Killed on drop.
struct Served {
    child: std::process::Child,
    base: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_binary(url: &str) -> Served {
    use std::io::BufRead;
    let entry = |name: &str, token: &str, tenant: &str| json!({"name": name, "sha256": hex::encode(bling_ledger::auth::digest(token)), "role": "auditor", "tenant": tenant});
    let tokens = json!([
        entry("auditor", AUDITOR_TOKEN, "*"),
        entry("auditor-a", AUDITOR_A_TOKEN, "shop-a")
    ]);
    let mut child = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", url])
        .env("BLING_LEDGER_TOKENS", tokens.to_string())
        .env_remove("BLING_LEDGER_TOKENS_FILE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn bling-ledger serve");
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let base = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(url) = line.split("listening on ").nth(1) {
                    break url.trim().to_string();
                }
                seen.push_str(&line);
                seen.push('\n');
            }
            _ => panic!("bling-ledger serve did not start:\n{seen}"),
        }
    };
    // Keep draining its log so that it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Served { child, base }
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    token: &str,
    body: &Value,
) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let response = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "{path}: {status} {text}");
}

/// The scripted history: three phases, two tenants, ten events.
async fn seed(t: TestDb) -> Seeded {
    let server = start_server(&t.url).await;
    let http = reqwest::Client::new();
    let base = server.base_url();
    let a = INGEST_TOKEN;
    let b = INGEST_B_TOKEN;
    let jose = json!({
        "name": "José Pereira", "tax_id": "111.444.777-35", "email": "jose@example.net",
        "phone": "(21) 3333-4444", "mobile": "(21) 99777-6655",
        "address": {"street": "Avenida Atlântica", "number": "1702", "complement": "apto 12",
            "district": "Copacabana", "city": "Rio de Janeiro", "state": "RJ", "cep": "22010-000"}
    });
    // Phase 1: three customers (one per tenant sharing a CPF), two invoices.
    call(
        &http,
        &base,
        "PUT",
        "/v1/tenants/shop-a/customers/c1",
        a,
        &customer_body("Maria Souza"),
    )
    .await;
    call(
        &http,
        &base,
        "PUT",
        "/v1/tenants/shop-a/customers/c2",
        a,
        &jose,
    )
    .await;
    call(
        &http,
        &base,
        "PUT",
        "/v1/tenants/shop-b/customers/b1",
        b,
        &customer_body("Ana Lima"),
    )
    .await;
    call(
        &http,
        &base,
        "POST",
        "/v1/tenants/shop-a/invoices/i1/bill",
        a,
        &invoice_body("c1", "NF-1"),
    )
    .await;
    call(
        &http,
        &base,
        "POST",
        "/v1/tenants/shop-a/invoices/i2/bill",
        a,
        &invoice_body("c2", "NF-2"),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    let t1 = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    // Phase 2: an update of a customer, an invoice update quoting personal data, a cancel.
    let mut maria = customer_body("Maria Souza");
    maria["email"] = json!("maria.souza@example.org");
    maria["address"]["street"] = json!("Rua Nova");
    call(
        &http,
        &base,
        "PUT",
        "/v1/tenants/shop-a/customers/c1",
        a,
        &maria,
    )
    .await;
    let mut i1 = invoice_body("c1", "NF-1");
    i1["notes"] = json!(
        "Entregar para Maria Souza na Rua das Flores; tel (11) 98888-7777, CPF 529.982.247-25"
    );
    call(
        &http,
        &base,
        "PUT",
        "/v1/tenants/shop-a/invoices/i1",
        a,
        &i1,
    )
    .await;
    call(
        &http,
        &base,
        "POST",
        "/v1/tenants/shop-a/invoices/i2/cancel",
        a,
        &json!({"reason": "desistência"}),
    )
    .await;
    call(
        &http,
        &base,
        "POST",
        "/v1/tenants/shop-b/invoices/bi1/bill",
        b,
        &invoice_body("b1", "B-1"),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    let t2 = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    // Phase 3.
    call(
        &http,
        &base,
        "POST",
        "/v1/tenants/shop-b/invoices/bi1/cancel",
        b,
        &json!({}),
    )
    .await;
    let events = read_eventually(&t.db, 0, 10, &LogFilter::default()).await;
    assert_eq!(events.len(), 10, "the seed writes ten events");
    Seeded {
        t,
        server,
        http,
        events,
        t1,
        t2,
        dir: tempfile::tempdir().expect("temp dir"),
    }
}

fn args(s: &Seeded, name: &str) -> ExportArgs {
    ExportArgs {
        from: None,
        to: None,
        tenant: None,
        format: "jsonl".into(),
        redact_pii: false,
        salt: None,
        output: s.dir.path().join(name),
        manifest: None,
    }
}

fn manifest_of(path: &Path) -> Manifest {
    read_manifest(&bling_ledger::audit::manifest::default_path(path)).expect("manifest")
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| format!("{l}\n"))
        .collect()
}

fn verify_text(text: &str, format: Format, manifest: Option<&Manifest>) -> Report {
    verify_reader(text.as_bytes(), Some(format), manifest).expect("verify")
}

fn first_break(text: &str, manifest: Option<&Manifest>) -> Break {
    let report = verify_text(text, Format::Jsonl, manifest);
    match report.first_break.clone() {
        Some(b) => b,
        None => panic!("tampering went unnoticed: {report}"),
    }
}

fn record_at(line: &str) -> Map<String, Value> {
    match serde_json::from_str(line).unwrap() {
        Value::Object(map) => map,
        other => panic!("{other}"),
    }
}

fn line_of(record: &Map<String, Value>) -> String {
    canonical::to_canonical_string(&Value::Object(record.clone())) + "\n"
}

fn position(line: &str) -> i64 {
    record_at(line)["position"].as_i64().unwrap()
}

async fn export_verify_and_tamper(t: TestDb) {
    let s = seed(t).await;
    // Both formats, from the CLI library entry point (file + manifest beside it).
    let jsonl = export(&s.t.db, &args(&s, "all.jsonl"))
        .await
        .expect("export jsonl");
    let mut csv_args = args(&s, "all.csv");
    csv_args.format = "csv".into();
    let csv = export(&s.t.db, &csv_args).await.expect("export csv");
    for outcome in [&jsonl, &csv] {
        let m = &outcome.manifest;
        assert_eq!(m.records, 10);
        assert_eq!(
            (m.first_position, m.last_position),
            (Some(s.events[0].position), Some(s.events[9].position))
        );
        assert!(m.positions_contiguous);
        assert!(!m.redacted && m.redaction.is_none());
        assert_eq!(m.tool, "bling-ledger");
        assert_eq!(m.tool_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(m.secrets_removed, 0);
        let report = verify_file(&outcome.output, Some(&outcome.manifest_path)).unwrap();
        assert!(report.ok(), "{report}");
        assert!(report.manifest_checked);
        assert_eq!(report.records, 10);
        assert_eq!(report.head, m.last_hash);
        assert_eq!(manifest_of(&outcome.output), *m);
    }
    // The chain does not depend on the format.
    assert_eq!(jsonl.manifest.last_hash, csv.manifest.last_hash);
    assert_eq!(csv.manifest.format, "csv");

    // The records carry what the log holds.
    let all = lines(&jsonl.output);
    assert_eq!(all.len(), 10);
    let first = record_at(&all[0]);
    assert_eq!(first["prev_hash"], "0".repeat(64));
    assert_eq!(first["position"], s.events[0].position);
    assert_eq!(first["tenant"], "shop-a");
    assert_eq!(first["aggregate_type"], s.events[0].aggregate_type.as_str());
    assert_eq!(first["aggregate_id"], s.events[0].aggregate_id.as_str());
    assert_eq!(first["event_type"], "CustomerRegistered");
    assert_eq!(first["payload"], s.events[0].payload);
    assert_eq!(first["metadata"], s.events[0].metadata);
    for pair in all.windows(2) {
        assert_eq!(
            record_at(&pair[1])["prev_hash"],
            record_at(&pair[0])["hash"]
        );
    }
    let m = &jsonl.manifest;
    let p = |i: usize| position(&all[i]);

    // Edit a field: that very record.
    let mut edited = all.clone();
    let mut r = record_at(&edited[3]);
    r.insert("event_type".into(), json!("InvoiceCancelled"));
    edited[3] = line_of(&r);
    let b = first_break(&edited.concat(), Some(m));
    assert_eq!((b.line, b.record, b.position), (4, 4, Some(p(3))));
    assert!(
        matches!(b.reason, BreakReason::HashMismatch { .. }),
        "{:?}",
        b.reason
    );
    // Edit the payload and fix up that record's hash: the next record no longer links.
    let mut r = record_at(&all[3]);
    r["payload"]["InvoiceBilled"]["content"]["total"] = json!(1);
    let prev = r["prev_hash"].as_str().unwrap().to_string();
    r.remove("hash");
    let hash = chain_hash(&prev, &r);
    r.insert("hash".into(), json!(hash));
    let mut rehashed = all.clone();
    rehashed[3] = line_of(&r);
    let b = first_break(&rehashed.concat(), Some(m));
    assert_eq!((b.line, b.position), (5, Some(p(4))));
    assert!(
        matches!(b.reason, BreakReason::PrevHashMismatch { .. }),
        "{:?}",
        b.reason
    );

    // Delete a record: the one after it, as a gap when the manifest says positions are
    // contiguous, as a broken link without the manifest.
    let mut deleted = all.clone();
    deleted.remove(5);
    let b = first_break(&deleted.concat(), Some(m));
    assert_eq!((b.line, b.position), (6, Some(p(6))));
    assert_eq!(
        b.reason,
        BreakReason::PositionGap {
            previous: p(4),
            found: p(6)
        }
    );
    let b = first_break(&deleted.concat(), None);
    assert_eq!((b.line, b.position), (6, Some(p(6))));
    assert!(matches!(b.reason, BreakReason::PrevHashMismatch { .. }));
    // Delete the first record.
    let b = first_break(&all[1..].concat(), Some(m));
    assert_eq!((b.line, b.position), (1, Some(p(1))));
    assert!(matches!(b.reason, BreakReason::PrevHashMismatch { .. }));
    // Delete the last record: the chain holds, the manifest does not.
    let report = verify_text(&all[..9].concat(), Format::Jsonl, Some(m));
    assert!(!report.ok());
    assert!(report.first_break.is_none());
    let fields: Vec<&str> = report.manifest_mismatches.iter().map(|x| x.field).collect();
    assert_eq!(fields, ["records", "last_position", "last_hash"]);

    // Insert a record: a copy of the previous one, and a copy of an earlier one.
    let mut inserted = all.clone();
    inserted.insert(7, all[6].clone());
    let b = first_break(&inserted.concat(), Some(m));
    assert_eq!((b.line, b.position), (8, Some(p(6))));
    assert_eq!(b.reason, BreakReason::DuplicatePosition { position: p(6) });
    let mut inserted = all.clone();
    inserted.insert(7, all[2].clone());
    let b = first_break(&inserted.concat(), Some(m));
    assert_eq!((b.line, b.position), (8, Some(p(2))));
    assert_eq!(
        b.reason,
        BreakReason::PositionOutOfOrder {
            previous: p(6),
            found: p(2)
        }
    );
    // A forged record with a fresh link to its predecessor: the record after it breaks.
    let mut forged = record_at(&all[6]);
    forged["payload"] = json!({"InvoiceCancelled": {"reason": "forged"}});
    forged.remove("hash");
    let link = record_at(&all[6])["hash"].as_str().unwrap().to_string();
    forged.insert("prev_hash".into(), json!(link));
    let forged_hash = chain_hash(&link, &forged);
    forged.insert("hash".into(), json!(forged_hash));
    let mut inserted = all.clone();
    inserted.insert(7, line_of(&forged));
    let b = first_break(&inserted.concat(), Some(m));
    assert_eq!(b.line, 8, "{b:?}");
    assert_eq!(b.reason, BreakReason::DuplicatePosition { position: p(6) });

    // Swap two records: the first of them.
    let mut swapped = all.clone();
    swapped.swap(2, 3);
    let b = first_break(&swapped.concat(), Some(m));
    assert_eq!((b.line, b.position), (3, Some(p(3))));
    assert!(
        matches!(b.reason, BreakReason::PrevHashMismatch { .. }),
        "{:?}",
        b.reason
    );
    let mut swapped = all.clone();
    swapped.swap(1, 8);
    let b = first_break(&swapped.concat(), Some(m));
    assert_eq!((b.line, b.position), (2, Some(p(8))));

    // An unparsable line.
    let mut garbled = all.clone();
    garbled[4] = garbled[4].replacen('{', "[", 1);
    let b = first_break(&garbled.concat(), Some(m));
    assert_eq!((b.line, b.position), (5, None));
    assert!(matches!(b.reason, BreakReason::Unparsable { .. }));

    // Edit the manifest's head, or its count.
    let mut forged_manifest = m.clone();
    forged_manifest.last_hash = Some("f".repeat(64));
    let report = verify_text(&all.concat(), Format::Jsonl, Some(&forged_manifest));
    assert!(!report.ok() && report.first_break.is_none());
    assert_eq!(report.manifest_mismatches.len(), 1);
    assert_eq!(report.manifest_mismatches[0].field, "last_hash");
    assert!(report.to_string().contains("last_hash"), "{report}");
    let mut forged_manifest = m.clone();
    forged_manifest.records = 11;
    let report = verify_text(&all.concat(), Format::Jsonl, Some(&forged_manifest));
    assert_eq!(report.manifest_mismatches[0].field, "records");
    // ...on disk too, through the file API.
    let manifest_path = s.dir.path().join("forged.manifest.json");
    let mut on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(&jsonl.manifest_path).unwrap()).unwrap();
    on_disk["last_hash"] = json!("0".repeat(64));
    std::fs::write(&manifest_path, on_disk.to_string()).unwrap();
    let report = verify_file(&jsonl.output, Some(&manifest_path)).unwrap();
    assert!(!report.ok());

    // CSV: an edited cell is found at its line (the header is line 1).
    let csv_text = std::fs::read_to_string(&csv.output).unwrap();
    let mut csv_lines: Vec<String> = csv_text
        .split_inclusive("\r\n")
        .map(str::to_string)
        .collect();
    assert_eq!(csv_lines.len(), 11);
    assert!(csv_lines[0].starts_with("position,recorded_at,tenant,aggregate_type"));
    assert!(verify_text(&csv_text, Format::Csv, Some(&csv.manifest)).ok());
    csv_lines[7] = csv_lines[7].replacen(",shop-", ",shop-x", 1);
    let report = verify_text(&csv_lines.concat(), Format::Csv, Some(&csv.manifest));
    let b = report.first_break.expect("csv edit noticed");
    assert_eq!((b.line, b.position), (8, Some(p(6))));
    assert!(
        matches!(b.reason, BreakReason::HashMismatch { .. }),
        "{:?}",
        b.reason
    );
    // Swapped CSV rows.
    let mut csv_lines: Vec<String> = csv_text
        .split_inclusive("\r\n")
        .map(str::to_string)
        .collect();
    csv_lines.swap(4, 5);
    let b = verify_text(&csv_lines.concat(), Format::Csv, None)
        .first_break
        .unwrap();
    assert_eq!((b.line, b.position), (5, Some(p(4))));
    // The format is detected from the content too.
    assert_eq!(
        verify_reader(csv_text.as_bytes(), None, None)
            .unwrap()
            .format,
        "csv"
    );
    s.server.stop().await.ok();
}
both_backends!(export_verify_tamper, export_verify_and_tamper);

async fn exported(s: &Seeded, query: ExportQuery) -> (Vec<Map<String, Value>>, Manifest) {
    let mut out = Vec::new();
    let manifest = bling_ledger::audit::export_to_writer(&s.t.db, &query, &mut out, |_, _| {})
        .await
        .expect("export");
    let text = String::from_utf8(out).unwrap();
    let report = verify_text(&text, query.format, Some(&manifest));
    assert!(report.ok(), "{report}");
    let records: Vec<Map<String, Value>> = text.lines().map(record_at).collect();
    (records, manifest)
}

async fn filters_select_exactly(t: TestDb) {
    let s = seed(t).await;
    let in_range = |e: &&RecordedEvent| e.recorded_at >= s.t1 && e.recorded_at < s.t2;
    let expected: Vec<i64> = s
        .events
        .iter()
        .filter(in_range)
        .map(|e| e.position)
        .collect();
    assert_eq!(expected.len(), 4, "phase 2 wrote four events");
    // Time range, read in pages of three to cross page boundaries.
    let from = s.t1.to_rfc3339();
    let to = s.t2.to_rfc3339();
    let mut query = ExportQuery::parse(Some(&from), Some(&to), None, None).unwrap();
    query.page_size = 3;
    let (records, manifest) = exported(&s, query).await;
    let positions: Vec<i64> = records
        .iter()
        .map(|r| r["position"].as_i64().unwrap())
        .collect();
    assert_eq!(positions, expected);
    assert_eq!(manifest.records, 4);
    assert_eq!(
        manifest
            .range
            .from
            .as_deref()
            .map(|f| f.parse::<DateTime<Utc>>().unwrap()),
        Some(s.t1)
    );
    let types: Vec<&str> = records
        .iter()
        .map(|r| r["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "CustomerUpdated",
            "InvoiceUpdated",
            "InvoiceCancelled",
            "InvoiceBilled"
        ]
    );
    // From only / to only.
    let (records, _) = exported(&s, ExportQuery::parse(Some(&to), None, None, None).unwrap()).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["event_type"], "InvoiceCancelled");
    assert_eq!(records[0]["tenant"], "shop-b");
    let (records, _) = exported(
        &s,
        ExportQuery::parse(None, Some(&from), None, None).unwrap(),
    )
    .await;
    assert_eq!(records.len(), 5);
    // A day that holds everything, given as dates.
    let today = Utc::now().date_naive().to_string();
    let (records, _) = exported(
        &s,
        ExportQuery::parse(Some(&today), Some(&today), None, None).unwrap(),
    )
    .await;
    assert_eq!(records.len(), 10);
    // An empty range: an empty export, still with a manifest.
    let (records, manifest) = exported(
        &s,
        ExportQuery::parse(Some("2001-01-01"), Some("2001-01-02"), None, None).unwrap(),
    )
    .await;
    assert!(records.is_empty());
    assert_eq!((manifest.records, manifest.last_hash), (0, None));
    // One tenant.
    let mut query = ExportQuery::parse(None, None, Some("shop-b"), None).unwrap();
    query.page_size = 2;
    let (records, manifest) = exported(&s, query).await;
    let expected_b: Vec<i64> = s
        .events
        .iter()
        .filter(|e| e.tenant() == Some("shop-b"))
        .map(|e| e.position)
        .collect();
    assert_eq!(expected_b.len(), 3);
    assert_eq!(
        records
            .iter()
            .map(|r| r["position"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        expected_b
    );
    assert!(records
        .iter()
        .all(|r| r["tenant"] == "shop-b" && r["metadata"]["tenant"] == "shop-b"));
    assert_eq!(manifest.filters.tenant.as_deref(), Some("shop-b"));
    assert!(
        !manifest.positions_contiguous,
        "shop-b's positions are interleaved with shop-a's"
    );
    // Tenant and time together.
    let (records, _) = exported(
        &s,
        ExportQuery::parse(Some(&from), Some(&to), Some("shop-a"), None).unwrap(),
    )
    .await;
    assert_eq!(records.len(), 3);
    // Events appended after an export began are not in it: `upto` pins the head.
    let mut query = ExportQuery::parse(None, None, None, None).unwrap();
    query.upto = Some(s.events[4].position);
    let (records, manifest) = exported(&s, query).await;
    assert_eq!(records.len(), 5);
    assert_eq!(manifest.range.upto_position, s.events[4].position);
    s.server.stop().await.ok();
}
both_backends!(filters, filters_select_exactly);

async fn redaction_hides_pii_and_still_verifies(t: TestDb) {
    let s = seed(t).await;
    let mut a = args(&s, "redacted.jsonl");
    a.redact_pii = true;
    let one = export(&s.t.db, &a).await.expect("redacted export");
    let text = std::fs::read_to_string(&one.output).unwrap();
    for pii in PII {
        assert!(
            !text.contains(pii),
            "{pii:?} is readable in the redacted export"
        );
    }
    let report = verify_file(&one.output, Some(&one.manifest_path)).unwrap();
    assert!(report.ok(), "{report}");
    let m = &one.manifest;
    assert!(m.redacted);
    let redaction = m.redaction.as_ref().expect("redaction described");
    assert_eq!(redaction.method, "hmac-sha256");
    assert!(redaction.salt.contains("random"));
    assert!(redaction.values_redacted > 20);
    // The shape and the non-personal data stay.
    let records: Vec<Map<String, Value>> = text.lines().map(record_at).collect();
    let profile = |i: usize| records[i]["payload"]["CustomerRegistered"]["profile"].clone();
    let maria = profile(0);
    let jose = profile(1);
    let ana = profile(2);
    assert_eq!(maria["address"]["state"], "SP");
    assert_eq!(
        maria["address"]["number"]
            .as_str()
            .map(|n| n.starts_with("pii:")),
        Some(true)
    );
    assert_eq!(
        records[3]["payload"]["InvoiceBilled"]["content"]["total"],
        17000
    );
    assert_eq!(records[3]["payload"]["InvoiceBilled"]["customer_id"], "c1");
    // Equal values, equal digests (Maria and Ana share a CPF, an e-mail and a phone, across
    // tenants); different values, different digests.
    assert!(maria["tax_id"].as_str().unwrap().starts_with("pii:"));
    assert_eq!(maria["tax_id"], ana["tax_id"]);
    assert_eq!(maria["email"], ana["email"]);
    assert_eq!(maria["mobile"], ana["mobile"]);
    assert_ne!(maria["tax_id"], jose["tax_id"]);
    assert_ne!(maria["name"], ana["name"]);
    // The invoice notes quoted name, street, phone and CPF: the same digests as the profile.
    let notes = records[6]["payload"]["InvoiceUpdated"]["content"]["notes"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(notes.starts_with("Entregar para pii:"), "{notes}");
    for digest in [&maria["name"], &maria["tax_id"], &maria["mobile"]] {
        assert!(
            notes.contains(digest.as_str().unwrap()),
            "{notes} lacks {digest}"
        );
    }
    // Another export: another salt, other digests, and the same records otherwise.
    let mut b = args(&s, "redacted-2.jsonl");
    b.redact_pii = true;
    let two = export(&s.t.db, &b).await.unwrap();
    let other: Value = serde_json::from_str(
        std::fs::read_to_string(&two.output)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_ne!(
        other["payload"]["CustomerRegistered"]["profile"]["tax_id"],
        maria["tax_id"]
    );
    assert_ne!(two.manifest.last_hash, one.manifest.last_hash);
    // A given salt: reproducible, and written nowhere.
    let salt = "an operator's salt of some length";
    let mut c = args(&s, "salted.csv");
    c.redact_pii = true;
    c.salt = Some(salt.into());
    c.format = "csv".into();
    let salted = export(&s.t.db, &c).await.unwrap();
    let mut d = c.clone();
    d.output = s.dir.path().join("salted-again.csv");
    let again = export(&s.t.db, &d).await.unwrap();
    assert_eq!(salted.manifest.last_hash, again.manifest.last_hash);
    assert_eq!(
        std::fs::read(&salted.output).unwrap(),
        std::fs::read(&again.output).unwrap()
    );
    let csv_text = std::fs::read_to_string(&salted.output).unwrap();
    let manifest_text = std::fs::read_to_string(&salted.manifest_path).unwrap();
    for pii in PII.iter().chain([&salt]) {
        assert!(!csv_text.contains(pii), "{pii:?} in the CSV");
        assert!(!manifest_text.contains(pii), "{pii:?} in the manifest");
    }
    assert!(verify_file(&salted.output, None).unwrap().ok());
    assert!(manifest_text.contains("supplied by the operator"));
    // A short salt is refused.
    let mut e = args(&s, "weak.jsonl");
    e.redact_pii = true;
    e.salt = Some("short".into());
    let err = export(&s.t.db, &e).await.unwrap_err();
    assert!(err.to_string().starts_with("--salt"), "{err}");
    s.server.stop().await.ok();
}
both_backends!(redaction, redaction_hides_pii_and_still_verifies);

async fn get(s: &Seeded, query: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = s
        .http
        .get(format!("{}/v1/audit/export{query}", s.server.base_url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request")
}

async fn error_fields(response: reqwest::Response) -> (StatusCode, Vec<String>, Value) {
    let status = response.status();
    let body: Value = response.json().await.expect("error body is JSON");
    let fields = body["error"]["fields"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|p| p["field"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    (status, fields, body)
}

async fn http_export(t: TestDb) {
    let s = seed(t).await;
    // The auditor: a streamed body that verifies against the manifest endpoint.
    let response = get(&s, "", Some(AUDITOR_TOKEN)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let upto: i64 = response.headers()["x-audit-upto-position"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(upto, s.events[9].position);
    let link = response.headers()["x-audit-manifest"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(response.headers().get("x-audit-export-id").is_none());
    let body = response.text().await.unwrap();
    assert_eq!(body.lines().count(), 10);
    let manifest: Manifest = s
        .http
        .get(format!("{}{link}", s.server.base_url()))
        .bearer_auth(AUDITOR_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let report = verify_text(&body, Format::Jsonl, Some(&manifest));
    assert!(report.ok() && report.manifest_checked, "{report}");
    assert_eq!(manifest.records, 10);
    // New events after the export do not change the manifest of that export.
    call(
        &s.http,
        &s.server.base_url(),
        "PUT",
        "/v1/tenants/shop-a/customers/c9",
        INGEST_TOKEN,
        &customer_body("Outra Pessoa"),
    )
    .await;
    read_eventually(&s.t.db, 0, 11, &LogFilter::default()).await;
    let again: Manifest = s
        .http
        .get(format!("{}{link}", s.server.base_url()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((again.records, &again.last_hash), (10, &manifest.last_hash));

    // Redacted CSV over HTTP, with its manifest through the export id.
    let response = get(
        &s,
        "?format=csv&redact_pii=true&tenant=shop-a",
        Some(AUDITOR_TOKEN),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(response.headers().get("x-audit-export-id").is_some());
    let link = response.headers()["x-audit-manifest"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(link.contains("export_id="), "{link}");
    let body = response.text().await.unwrap();
    for pii in PII {
        assert!(!body.contains(pii), "{pii:?} in the redacted HTTP export");
    }
    let manifest: Manifest = s
        .http
        .get(format!("{}{link}", s.server.base_url()))
        .bearer_auth(AUDITOR_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(manifest.redacted);
    assert_eq!(manifest.records, 8, "shop-a: seven seeded events and c9");
    let report = verify_text(&body, Format::Csv, Some(&manifest));
    assert!(report.ok(), "{report}");
    // Without the export id a redacted manifest cannot be reproduced.
    let response = get(
        &s,
        "/manifest?redact_pii=true&tenant=shop-a",
        Some(AUDITOR_TOKEN),
    )
    .await;
    let (status, fields, _) = error_fields(response).await;
    assert_eq!(
        (status, fields),
        (StatusCode::BAD_REQUEST, vec!["export_id".to_string()])
    );

    // Roles: ingest and support are refused, no token is unauthenticated, admin passes.
    for token in [INGEST_TOKEN, SUPPORT_TOKEN] {
        let (status, _, body) = error_fields(get(&s, "?tenant=shop-a", Some(token)).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"]["code"], "forbidden");
        let (status, _, _) =
            error_fields(get(&s, "/manifest?tenant=shop-a", Some(token)).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    assert_eq!(get(&s, "", None).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(&s, "?tenant=shop-b", Some(ADMIN_TOKEN)).await.status(),
        StatusCode::OK
    );
    // A tenant-scoped auditor (on the real binary, configured by a tokens file): its own
    // tenant only, and never all of them.
    let served = serve_binary(&s.t.url);
    let scoped = |query: &str| {
        s.http
            .get(format!("{}/v1/audit/export{query}", served.base))
            .bearer_auth(AUDITOR_A_TOKEN)
            .send()
    };
    let response = scoped("?tenant=shop-a").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.text().await.unwrap();
    assert!(verify_text(&body, Format::Jsonl, None).ok());
    assert_eq!(body.lines().count(), 8);
    assert!(body.lines().all(|l| record_at(l)["tenant"] == "shop-a"));
    for query in ["?tenant=shop-b", "", "/manifest?tenant=shop-b", "/manifest"] {
        let (status, _, body) = error_fields(scoped(query).await.unwrap()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{query}: {body}");
    }
    drop(served);

    // Bad parameters: 400 naming the field.
    for (query, field) in [
        ("?from=yesterday", "from"),
        ("?to=2026-13-45", "to"),
        ("?from=2026-02-01&to=2026-01-01", "to"),
        ("?format=xml", "format"),
        ("?redact_pii=maybe", "redact_pii"),
        ("?tenant=shop%20a", "tenant"),
        ("?upto=-1", "upto"),
        ("?tennant=shop-a", "tennant"),
        ("?format=csv&format=jsonl", "format"),
        ("/manifest?from=never", "from"),
    ] {
        let (status, fields, body) = error_fields(get(&s, query, Some(AUDITOR_TOKEN)).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(fields, vec![field.to_string()], "{query}: {body}");
        assert!(body["error"]["code"].is_string() && body["error"]["message"].is_string());
    }
    s.server.stop().await.ok();
}
both_backends!(http, http_export);

fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_bling-ledger"))
}

fn run(command: &mut std::process::Command) -> (bool, String, String) {
    let out = command.output().expect("run bling-ledger");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_export_and_verify() {
    let s = seed(TestDb::sqlite().await).await;
    let out: PathBuf = s.dir.path().join("cli.jsonl");
    let (ok, stdout, stderr) = run(bin()
        .args(["export", "--to", "2999-01-01", "--redact-pii", "-o"])
        .arg(&out)
        .args(["--database-url", &s.t.url]));
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("exported 10 record(s)"), "{stdout}");
    let manifest = manifest_of(&out);
    assert!(
        stdout.contains(manifest.last_hash.as_deref().unwrap()),
        "{stdout}"
    );
    assert!(stdout.contains("cli.jsonl.manifest.json"), "{stdout}");
    // Verify finds the manifest beside the file.
    let (ok, stdout, _) = run(bin().arg("verify").arg(&out));
    assert!(ok, "{stdout}");
    assert!(stdout.starts_with("OK: 10 record(s)"), "{stdout}");
    assert!(stdout.contains(manifest.last_hash.as_deref().unwrap()));
    assert!(stdout.contains("manifest: matches"), "{stdout}");
    // A tampered copy fails, naming the record.
    let tampered = s.dir.path().join("tampered.jsonl");
    let mut all = lines(&out);
    all.remove(4);
    std::fs::write(&tampered, all.concat()).unwrap();
    let (ok, stdout, stderr) = run(bin()
        .arg("verify")
        .arg(&tampered)
        .arg("-m")
        .arg(bling_ledger::audit::manifest::default_path(&out)));
    assert!(!ok);
    assert!(
        stdout.contains("line 5") && stdout.contains("position gap"),
        "{stdout}"
    );
    assert!(stderr.contains("does not verify"), "{stderr}");
    // CSV with an explicit manifest path.
    let csv = s.dir.path().join("cli.csv");
    let m = s.dir.path().join("elsewhere.json");
    let (ok, stdout, stderr) = run(bin()
        .args(["export", "--format", "csv", "--tenant", "shop-b", "-o"])
        .arg(&csv)
        .arg("--manifest")
        .arg(&m)
        .args(["--database-url", &s.t.url]));
    assert!(ok, "{stdout}{stderr}");
    let (ok, stdout, _) = run(bin().arg("verify").arg(&csv).arg("--manifest").arg(&m));
    assert!(ok && stdout.contains("OK: 3 record(s)"), "{stdout}");
    // Bad arguments: a clear message and a failure.
    for (args, expected) in [
        (
            vec!["export", "--from", "yesterday", "-o", "x.jsonl"],
            "--from",
        ),
        (
            vec!["export", "--format", "xml", "-o", "x.jsonl"],
            "--format",
        ),
        (
            vec![
                "export",
                "--salt",
                "a-long-enough-salt-value",
                "-o",
                "x.jsonl",
            ],
            "--redact-pii",
        ),
        (
            vec!["export", "--tenant", "not a tenant", "-o", "x.jsonl"],
            "--tenant",
        ),
    ] {
        let (ok, stdout, stderr) = run(bin()
            .args(&args)
            .args(["--database-url", &s.t.url])
            .current_dir(s.dir.path()));
        assert!(!ok, "{args:?}: {stdout}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert!(!s.dir.path().join("x.jsonl").exists());
    let (ok, _, stderr) = run(bin()
        .args(["verify"])
        .arg(s.dir.path().join("missing.jsonl")));
    assert!(!ok && stderr.contains("missing.jsonl"), "{stderr}");
    s.server.stop().await.ok();
}
