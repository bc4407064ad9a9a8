//! LGPD erasure that keeps the proof: a customer with distinctive personal values is
//! registered, synced to the sandbox through a failure, billed; then `forget` — after which no
//! table of the database (every text, JSON and byte column), no fresh export and no API answer
//! holds any of its values, in any spelling, while `verify --database`, an export against a
//! checkpoint signed before the erasure, and a rebuild of the projections all agree with what
//! was there. On both backends.

use crate::support::*;
use bling_ledger::audit::checkpoint::SigningKey;
use bling_ledger::audit::checkpointer::take_checkpoint;
use bling_ledger::audit::cli::{export, ExportArgs};
use bling_ledger::audit::verify_db::verify_database;
use bling_ledger::audit::verify_file;
use bling_ledger::audit::verify_sealed::verify_against_checkpoint;
use bling_ledger::ledger::{Actor, CommandContext, Ledger};
use bling_ledger::projections::queries::dump_all;
use bling_ledger::projections::{Projections, RunnerSettings};
use bling_ledger::sandbox::{FaultConfig, FaultRule};
use bling_ledger::store::events::count_in_stream;
use bling_ledger::store::personal;
use bling_ledger::store::Db;
use serde_json::{json, Value};

/// The customer's values, each distinctive enough that finding it anywhere means a leak.
struct Person {
    cpf: String,
    body: Value,
    /// Every spelling that must not survive the erasure.
    needles: Vec<String>,
}

fn person() -> Person {
    let cpf = cpf(4_242);
    let masked = format!(
        "{}.{}.{}-{}",
        &cpf[0..3],
        &cpf[3..6],
        &cpf[6..9],
        &cpf[9..11]
    );
    let body = json!({
        "name": "Zuleica Quintanilha Brandão",
        "tax_id": masked,
        "email": "zuleica.quintanilha@exemplo-lgpd.com.br",
        "phone": "(21) 3456-7890",
        "mobile": "(21) 99876-5432",
        "address": {
            "street": "Rua Xanadu Quintanilha", "number": "1234", "complement": "Bloco Zimbrado",
            "district": "Jardim Ypsilonte", "city": "Rio de Janeiro", "state": "RJ",
            "cep": "20040-030"
        }
    });
    let needles = [
        "Zuleica",
        "Quintanilha",
        cpf.as_str(),
        masked.as_str(),
        "zuleica.quintanilha@exemplo-lgpd.com.br",
        "2134567890",
        "(21) 3456-7890",
        "21998765432",
        "(21) 99876-5432",
        "Rua Xanadu",
        "Bloco Zimbrado",
        "Jardim Ypsilonte",
        "20040030",
        "20040-030",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Person { cpf, body, needles }
}

/// Every `(where, text)` holding one of `needles`.
fn leaks<'a>(
    needles: &[String],
    texts: impl IntoIterator<Item = (String, &'a str)>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (place, text) in texts {
        for n in needles {
            if text.contains(n.as_str()) {
                out.push(format!("{n:?} in {place}"));
            }
        }
    }
    out
}

async fn database_leaks(db: &Db, needles: &[String]) -> Vec<String> {
    let all = personal::dump_all_text(db).await.expect("dump every table");
    assert!(
        all.iter().any(|(t, _, _)| t == "events"),
        "the dump reads the log"
    );
    leaks(
        needles,
        all.iter()
            .map(|(t, c, text)| (format!("{t}.{c}"), text.as_str())),
    )
}

fn export_args(dir: &std::path::Path, name: &str, redact: bool) -> ExportArgs {
    ExportArgs {
        from: None,
        to: None,
        tenant: None,
        format: if name.ends_with(".csv") {
            "csv"
        } else {
            "jsonl"
        }
        .into(),
        redact_pii: redact,
        salt: None,
        output: dir.join(name),
        manifest: None,
    }
}

async fn event_count(db: &Db, aggregate_type: &str, id: &str, event_type: &str) -> i64 {
    count_in_stream(db, aggregate_type, id, event_type)
        .await
        .unwrap_or(0)
}

/// Waits until the server's projections have read the whole log.
async fn projections_caught_up(db: &Db) {
    settle(db).await;
    let caught_up = eventually(30, || async {
        bling_ledger::projections::status(db)
            .await
            .map(|s| s.iter().all(|p| p.lag == 0))
            .unwrap_or(false)
    })
    .await;
    assert!(caught_up, "projections caught up");
}

async fn forget_erases_everything_and_keeps_the_proof(t: TestDb) {
    personal::install_master_keys(&t.db, &test_key_ring());
    let p = person();
    let stack = Stack::start_with(
        &t.url,
        |s| s.rate_limit_per_sec = 0,
        |_| {},
        |c| c.client.rate_limit_per_sec = 0,
    )
    .await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    let base = stack.server.base_url();

    // The first contato creation fails (an evidence-bearing failure), later ones succeed.
    stack.sandbox.set_faults(
        Some("shop-a"),
        FaultConfig::none().with_rule(FaultRule::route("POST", "/contatos").error_rate(1.0)),
    );
    let saved = stack
        .http
        .put(format!("{base}/v1/tenants/shop-a/customers/zu"))
        .bearer_auth(INGEST_TOKEN)
        .header("Idempotency-Key", "register-zu")
        .json(&p.body)
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 201);
    let (s, b) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/inv-zu/bill",
        Some(&invoice_body("zu", "NF-777")),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert!(
        eventually(30, || async {
            event_count(&t.db, "Customer", "shop-a/zu", "ContactSyncFailed").await > 0
        })
        .await,
        "a contato failure recorded"
    );
    stack
        .sandbox
        .set_faults(Some("shop-a"), FaultConfig::none());
    assert!(
        eventually(60, || async {
            event_count(&t.db, "Invoice", "shop-a/inv-zu", "SituacaoChanged").await > 0
        })
        .await,
        "the invoice reaches Bling"
    );
    // Stored encrypted: not one value in the log, even before the erasure.
    settle(&t.db).await;
    let before = database_leaks(&t.db, &p.needles).await;
    assert!(
        before.iter().all(|l| !l.contains(" in events.")),
        "the log holds personal values in clear: {before:?}"
    );
    // The scan finds what is there: the stored answer of the registration holds the CPF.
    assert!(
        before
            .iter()
            .any(|l| l.contains("idempotency_keys.response_body")),
        "{before:?}"
    );
    // …while every reader sees them: the aggregate, the views.
    let ledger = Ledger::new(t.db.clone());
    let tenant = aggregates::ids::TenantId::parse("shop-a").unwrap();
    let customer = ledger.customer(&tenant, "zu").await.unwrap();
    assert_eq!(
        customer.profile.as_ref().map(|p| p.tax_id.as_str()),
        Some(p.cpf.as_str())
    );
    projections_caught_up(&t.db).await;
    let (s, view) = call(&stack, "GET", "/v1/tenants/shop-a/customers/zu", None).await;
    assert_eq!(s, 200, "{view}");
    assert!(view.to_string().contains("Zuleica"), "{view}");

    // A checkpoint signed before the erasure, and the export fiscal facts to compare with.
    let key = SigningKey::from_base64(&SigningKey::generate_base64()).unwrap();
    let checkpoint = take_checkpoint(&t.db, &key).await.unwrap().unwrap();
    let (_, invoice_before) = call(&stack, "GET", "/v1/tenants/shop-a/invoices/inv-zu", None).await;

    // An export before the erasure shows the profile in clear beside its sealed ciphertext
    // (`personal`), and is still proven by the checkpoint; a redacted one shows none of it.
    let dir = tempfile::tempdir().unwrap();
    for name in ["before.jsonl", "before.csv"] {
        let outcome = export(&t.db, &export_args(dir.path(), name, false))
            .await
            .expect("export");
        let profiles = personal_of(&outcome.output, "shop-a/zu");
        assert!(!profiles.is_empty(), "{name}: the customer's records");
        for (payload, annotation) in &profiles {
            assert!(payload.to_string().contains("pii1."), "{name}: {payload}");
            assert_eq!(
                annotation["profile"]["name"], "Zuleica Quintanilha Brandão",
                "{name}: {annotation}"
            );
        }
        assert!(verify_file(&outcome.output, Some(&outcome.manifest_path))
            .unwrap()
            .ok());
        verify_against_checkpoint(
            &outcome.output,
            &outcome.manifest,
            &checkpoint,
            &key.public_key(),
        )
        .expect("the annotation is outside the sealed bytes");
    }
    let redacted = export(
        &t.db,
        &export_args(dir.path(), "before-redacted.jsonl", true),
    )
    .await
    .expect("redacted export");
    let text = std::fs::read_to_string(&redacted.output).unwrap();
    let shown = leaks(&p.needles, [("redacted".to_string(), text.as_str())]);
    assert!(shown.is_empty(), "{shown:?}");
    for (_, annotation) in personal_of(&redacted.output, "shop-a/zu") {
        let name = annotation["profile"]["name"].as_str().unwrap_or_default();
        assert!(name.starts_with("pii:"), "{annotation}");
    }

    // Only an administrator may erase; an unknown customer is a 404.
    let support = stack
        .http
        .post(format!("{base}/v1/tenants/shop-a/customers/zu/forget"))
        .bearer_auth(SUPPORT_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(support.status(), 403);
    let (s, b) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/customers/nobody/forget",
        Some(&json!({"reason": "ticket 1"})),
    )
    .await;
    assert_eq!((s, b["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, b) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/customers/zu/forget",
        Some(&json!({"reason": ""})),
    )
    .await;
    assert_eq!(
        (s, b["error"]["fields"][0]["field"].as_str()),
        (422, Some("reason"))
    );

    // The erasure.
    let (s, report) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/customers/zu/forget",
        Some(&json!({"reason": "ticket LGPD-9"})),
    )
    .await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["result"], "erased");
    assert_eq!(report["key"], "destroyed");
    assert_eq!(report["events_in_clear"], 0);
    let scrubbed: Vec<String> = report["scrubbed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}.{}",
                s["table"].as_str().unwrap(),
                s["column"].as_str().unwrap()
            )
        })
        .collect();
    // (The customers view may have projected the erasure itself before the scrub ran.)
    for place in ["idempotency_keys.response_body", "proj_timeline.summary"] {
        assert!(
            scrubbed.iter().any(|s| s == place),
            "{place} not in {scrubbed:?}"
        );
    }
    assert!(report["bling_contact_id"].is_i64(), "{report}");
    assert!(report["bling_note"].as_str().unwrap().contains("Bling"));
    // Idempotent.
    let (s, again) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/customers/zu/forget",
        Some(&json!({"reason": "ticket LGPD-9"})),
    )
    .await;
    assert_eq!((s, again["result"].as_str()), (200, Some("already_erased")));
    assert_eq!(again["key"], "already_erased");
    assert_eq!(
        event_count(&t.db, "Customer", "shop-a/zu", "CustomerErased").await,
        1,
        "erasure is itself one event"
    );
    // The erased customer refuses changes and bills.
    let (s, b) = call(
        &stack,
        "PUT",
        "/v1/tenants/shop-a/customers/zu",
        Some(&p.body),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (410, Some("customer_erased"))
    );
    let (s, b) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/inv-zu-2/bill",
        Some(&invoice_body("zu", "NF-778")),
    )
    .await;
    assert_eq!(s, 422);
    assert!(
        b["error"]["message"].as_str().unwrap().contains("erased"),
        "{b}"
    );

    // The views say erased; the invoice keeps its fiscal facts.
    projections_caught_up(&t.db).await;
    let (_, view) = call(&stack, "GET", "/v1/tenants/shop-a/customers/zu", None).await;
    assert!(view.to_string().contains("[erased]"), "{view}");
    let (_, invoice_after) = call(&stack, "GET", "/v1/tenants/shop-a/invoices/inv-zu", None).await;
    for fact in ["number", "total", "issue_date", "bling_order_id"] {
        assert_eq!(
            find(&invoice_after, fact),
            find(&invoice_before, fact),
            "{fact} kept: {invoice_after}"
        );
    }

    // Nothing personal anywhere: every table, the API's answers, a fresh export.
    let mut found = database_leaks(&t.db, &p.needles).await;
    for path in [
        "/v1/tenants/shop-a/customers/zu",
        "/v1/tenants/shop-a/invoices/inv-zu",
        "/v1/tenants/shop-a/invoices/inv-zu/history",
        "/v1/tenants/shop-a/invoices",
        "/v1/tenants/shop-a/failures",
        "/v1/tenants/shop-a/changes",
        "/v1/tenants/shop-a/webhooks",
    ] {
        let (_, answer) = call(&stack, "GET", path, None).await;
        found.extend(leaks(
            &p.needles,
            [(path.to_string(), answer.to_string().as_str())],
        ));
    }
    for name in ["after.jsonl", "after.csv"] {
        let outcome = export(&t.db, &export_args(dir.path(), name, false))
            .await
            .expect("export");
        let text = std::fs::read_to_string(&outcome.output).unwrap();
        found.extend(leaks(&p.needles, [(name.to_string(), text.as_str())]));
        // The export shows the fields as erased, the ciphertext still there for the seal.
        let profiles = personal_of(&outcome.output, "shop-a/zu");
        assert!(!profiles.is_empty(), "{name}");
        for (payload, annotation) in profiles {
            assert!(payload.to_string().contains("pii1."), "{name}: {payload}");
            assert_eq!(annotation, json!({"erased": true}), "{name}");
        }
        // Everything still verifies: the file's chain, and each record against the seal that
        // a checkpoint signed before the erasure covers.
        assert!(verify_file(&outcome.output, Some(&outcome.manifest_path))
            .unwrap()
            .ok());
        let proven = verify_against_checkpoint(
            &outcome.output,
            &outcome.manifest,
            &checkpoint,
            &key.public_key(),
        )
        .expect("the export is proven by the earlier checkpoint");
        assert_eq!(proven.proven as i64, checkpoint.position);
    }
    // `--redact-pii` exports keep working.
    let redacted = export(&t.db, &export_args(dir.path(), "redacted.jsonl", true))
        .await
        .expect("redacted export");
    assert!(verify_file(&redacted.output, Some(&redacted.manifest_path))
        .unwrap()
        .ok());
    assert!(
        found.is_empty(),
        "personal values left after forget: {found:#?}"
    );

    let report = verify_database(&t.db, Some(&key.public_key()))
        .await
        .unwrap();
    assert!(report.ok(), "{report}");

    // A rebuild of the projections after the erasure gives the views the live run left.
    stack.stop().await;
    let live = dump_all(&t.db).await.unwrap();
    let runner = Projections::new(t.db.clone(), RunnerSettings::default());
    runner.rebuild(&[], 50, |_| {}).await.unwrap();
    let rebuilt = dump_all(&t.db).await.unwrap();
    for (a, b) in rebuilt.iter().zip(&live) {
        assert_eq!(
            a.rows, b.rows,
            "table {} differs after the rebuild",
            a.table
        );
    }
    assert!(database_leaks(&t.db, &p.needles).await.is_empty());
    // The aggregate reads the erased stream: no profile, erased.
    let customer = ledger.customer(&tenant, "zu").await.unwrap();
    assert!(customer.erased && customer.profile.is_none());
}
both_backends!(
    forget_erases_and_proves,
    forget_erases_everything_and_keeps_the_proof
);

/// The payload and the `personal` annotation of each profile-bearing record of `stream` in an
/// export (JSONL or CSV).
fn personal_of(path: &std::path::Path, stream: &str) -> Vec<(Value, Value)> {
    use bling_ledger::audit::record::{read_csv_row, record_from_csv};
    let text = std::fs::read_to_string(path).unwrap();
    let records: Vec<serde_json::Map<String, Value>> =
        if path.extension().is_some_and(|e| e == "csv") {
            let mut lines = text.lines().skip(1).map(|l| Ok::<_, ()>(l.to_string()));
            std::iter::from_fn(|| read_csv_row(|| lines.next()))
                .map(|row| record_from_csv(&row.unwrap().0).unwrap())
                .collect()
        } else {
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
    records
        .into_iter()
        .filter(|r| {
            r["aggregate_id"] == stream
                && matches!(
                    r["event_type"].as_str(),
                    Some("CustomerRegistered" | "CustomerUpdated")
                )
        })
        .map(|r| {
            let annotation = r.get("personal").cloned().unwrap_or(Value::Null);
            (r["payload"].clone(), annotation)
        })
        .collect()
}

/// The first value under `key` anywhere in `value`.
fn find<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    match value {
        Value::Object(map) => map
            .get(key)
            .or_else(|| map.values().find_map(|v| find(v, key))),
        Value::Array(items) => items.iter().find_map(|v| find(v, key)),
        _ => None,
    }
}

/// A customer written in clear (before encryption existed): `forget` tombstones it, every
/// reader then sees it erased, and the report says how many sealed events still hold it.
async fn a_legacy_customer_is_hidden_and_reported(t: TestDb) {
    personal::install_master_keys(&t.db, &test_key_ring());
    let tenant = aggregates::ids::TenantId::parse("shop-a").unwrap();
    let ledger = Ledger::new(t.db.clone());
    let ctx = CommandContext::new(tenant.clone(), "req-1", Actor::Ingest("p".into()));
    let profile = aggregates::customer::CustomerInput {
        name: Some("Olegário Antigo".into()),
        tax_id: Some(cpf(77)),
        ..Default::default()
    }
    .validate()
    .unwrap();
    ledger
        .execute_customer(
            &ctx,
            "old",
            aggregates::customer::CustomerCommand::Save {
                tenant: tenant.clone(),
                customer_id: aggregates::ids::CustomerId::parse("old").unwrap(),
                profile,
            },
        )
        .await
        .unwrap();
    settle(&t.db).await;
    // As an old release stored it: the profile in clear, sealed, no key.
    let clear = r#"{"CustomerRegistered":{"tenant":"shop-a","customer_id":"old","profile":{"name":"Olegário Antigo","tax_id":"TAXID","email":null,"phone":null,"mobile":null,"address":null}}}"#
        .replace("TAXID", &cpf(77));
    match &t.db {
        Db::Postgres(pool) => {
            sqlx::query("UPDATE events SET payload = $1::jsonb, hash = NULL, tenant_hash = NULL WHERE aggregate_id = 'shop-a/old'")
                .bind(&clear)
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("DELETE FROM customer_keys")
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("DELETE FROM seal_heads WHERE chain <> '*'")
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("UPDATE seal_heads SET position = 0, hash = '0000000000000000000000000000000000000000000000000000000000000000'").execute(pool).await.unwrap();
        }
        Db::Sqlite(pool) => {
            sqlx::query("UPDATE events SET payload = $1, hash = NULL, tenant_hash = NULL WHERE aggregate_id = 'shop-a/old'")
                .bind(&clear)
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("DELETE FROM customer_keys")
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("DELETE FROM seal_heads WHERE chain <> '*'")
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("UPDATE seal_heads SET position = 0, hash = '0000000000000000000000000000000000000000000000000000000000000000'").execute(pool).await.unwrap();
        }
    }
    assert!(verify_database(&t.db, None).await.unwrap().ok());
    // It still loads in clear.
    let customer = ledger.customer(&tenant, "old").await.unwrap();
    assert_eq!(customer.profile.unwrap().name, "Olegário Antigo");

    let admin = CommandContext::new(tenant.clone(), "forget-1", Actor::Admin("dpo".into()));
    let report = bling_ledger::erasure::forget(&ledger, &admin, "old", "ticket 5")
        .await
        .unwrap();
    assert_eq!(report.events_in_clear, 1);
    assert_eq!(
        serde_json::to_value(report.key).unwrap(),
        json!("no_key"),
        "a tombstone, no key"
    );
    let customer = ledger.customer(&tenant, "old").await.unwrap();
    assert!(customer.erased && customer.profile.is_none());
    let events = read_eventually(
        &t.db,
        0,
        2,
        &bling_ledger::store::log::LogFilter {
            aggregate_id: Some("shop-a/old".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        events[0].payload["CustomerRegistered"]["profile"],
        json!({"erased": true})
    );
    assert_eq!(events[1].event_type, "CustomerErased");
    assert_eq!(events[1].metadata["actor"], "admin:dpo");
    assert!(verify_database(&t.db, None).await.unwrap().ok());
    // Unknown customers are refused.
    assert!(matches!(
        bling_ledger::erasure::forget(&ledger, &admin, "ghost", "x").await,
        Err(bling_ledger::erasure::ForgetError::UnknownCustomer(_))
    ));
}
both_backends!(legacy_customer, a_legacy_customer_is_hidden_and_reported);

/// `bling-ledger forget` on the SQLite default: the report on stdout, a non-zero exit for an
/// unknown customer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_erases_and_refuses_unknown_customers() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let db = Db::connect(&url, 2).await.unwrap();
    db.migrate().await.unwrap();
    let key_file = dir.path().join("ledger.db.key");
    let ring = bling_ledger::oauth::crypto::EncryptionKey::load_or_create_file(&key_file).unwrap();
    personal::install_master_keys(&db, &bling_ledger::oauth::crypto::KeyRing::new(ring));
    let tenant = aggregates::ids::TenantId::parse("shop-a").unwrap();
    let ledger = Ledger::new(db.clone());
    let ctx = CommandContext::new(tenant.clone(), "req", Actor::Ingest("p".into()));
    ledger
        .execute_customer(
            &ctx,
            "c1",
            aggregates::customer::CustomerCommand::Save {
                tenant: tenant.clone(),
                customer_id: aggregates::ids::CustomerId::parse("c1").unwrap(),
                profile: aggregates::customer::CustomerInput {
                    name: Some("Teodora Xisto".into()),
                    tax_id: Some(cpf(91)),
                    ..Default::default()
                }
                .validate()
                .unwrap(),
            },
        )
        .await
        .unwrap();
    db.close().await;
    let run = |customer: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_bling-ledger"))
            .args([
                "forget",
                "--tenant",
                "shop-a",
                "--customer",
                customer,
                "--reason",
                "t-1",
            ])
            .env("DATABASE_URL", &url)
            .env_remove("BLING_LEDGER_ENCRYPTION_KEY")
            .env_remove("BLING_LEDGER_ENCRYPTION_KEY_FILE")
            .output()
            .expect("run bling-ledger")
    };
    let out = run("c1");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).expect("a JSON report");
    assert_eq!(
        (report["result"].as_str(), report["key"].as_str()),
        (Some("erased"), Some("destroyed"))
    );
    let unknown = run("nobody");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not registered"));
    let db = Db::connect(&url, 2).await.unwrap();
    let all = personal::dump_all_text(&db).await.unwrap();
    assert!(all
        .iter()
        .all(|(_, _, text)| !text.contains("Teodora") && !text.contains(&cpf(91))));
}

/// Commands racing to register one customer: one makes its data key (with its first event, in
/// one statement on PostgreSQL), the others retry as updates under that key. Every profile
/// reads back, and the log holds none in clear.
async fn concurrent_registrations_share_one_key(t: TestDb) {
    personal::install_master_keys(&t.db, &test_key_ring());
    let tenant = aggregates::ids::TenantId::parse("shop-a").unwrap();
    let ledger = Ledger::new(t.db.clone());
    let mut tasks = Vec::new();
    for i in 0..8u32 {
        let ledger = std::sync::Arc::clone(&ledger);
        let tenant = tenant.clone();
        tasks.push(tokio::spawn(async move {
            let ctx =
                CommandContext::new(tenant.clone(), format!("r{i}"), Actor::Ingest("p".into()));
            let profile = aggregates::customer::CustomerInput {
                name: Some(format!("Quitéria Concorrente {i}")),
                tax_id: Some(cpf(500 + i)),
                ..Default::default()
            }
            .validate()
            .unwrap();
            ledger
                .execute_customer(
                    &ctx,
                    "race",
                    aggregates::customer::CustomerCommand::Save {
                        tenant,
                        customer_id: aggregates::ids::CustomerId::parse("race").unwrap(),
                        profile,
                    },
                )
                .await
                .is_ok()
        }));
    }
    let mut ok = 0;
    for task in tasks {
        ok += usize::from(task.await.unwrap());
    }
    assert!(ok >= 1, "at least one registration");
    let customer = ledger.customer(&tenant, "race").await.unwrap();
    assert!(customer
        .profile
        .unwrap()
        .name
        .starts_with("Quitéria Concorrente"));
    settle(&t.db).await;
    let all = personal::dump_all_text(&t.db).await.unwrap();
    let keys = all
        .iter()
        .filter(|(table, column, _)| table == "customer_keys" && column == "wrapped_key")
        .count();
    assert_eq!(keys, 1, "one data key");
    assert!(all
        .iter()
        .filter(|(table, _, _)| table == "events")
        .all(|(_, _, text)| !text.contains("Quitéria")));
}
both_backends!(
    concurrent_registrations,
    concurrent_registrations_share_one_key
);
