//! The log sealed at sequencing: every event linked when it gets its position, on both
//! backends; `verify --database` recomputes both chains and names the first event that a direct
//! SQL `UPDATE`, `DELETE`, `INSERT` or reordering broke; signed checkpoints catch a rewrite
//! that recomputed every link.

use crate::support::TestDb;
use aggregates::customer::{CustomerCommand, CustomerInput};
use aggregates::ids::{CustomerId, TenantId};
use bling_ledger::audit::seal::{self, GENESIS};
use bling_ledger::audit::verify_db::{verify_database, Tamper};
use bling_ledger::ledger::{Actor, CommandContext, Ledger};
use bling_ledger::store::events::seals;
use bling_ledger::store::log::LogFilter;
use bling_ledger::store::Db;

/// Events the seed writes: positions 1..=EVENTS, tenants alternating shop-a / shop-b.
pub const EVENTS: usize = 8;

fn save(tenant: &TenantId, id: &str, name: &str) -> CustomerCommand {
    CustomerCommand::Save {
        tenant: tenant.clone(),
        customer_id: CustomerId::parse(id).unwrap(),
        profile: CustomerInput {
            name: Some(name.to_string()),
            tax_id: Some(crate::support::cpf(id.len() as u32 * 7 + name.len() as u32)),
            ..Default::default()
        }
        .validate()
        .expect("valid profile"),
    }
}

/// Writes EVENTS events through the ledger, on two tenants, and waits until all are numbered.
pub async fn seed(db: &Db) {
    let ledger = Ledger::new(db.clone());
    for i in 0..EVENTS {
        let tenant = TenantId::parse(if i % 2 == 0 { "shop-a" } else { "shop-b" }).unwrap();
        let ctx = CommandContext::new(
            tenant.clone(),
            format!("req-{i}"),
            Actor::Ingest("p".into()),
        );
        let id = format!("c{i}");
        ledger
            .execute_customer(&ctx, &id, save(&tenant, &id, &format!("Cliente {i}")))
            .await
            .unwrap();
    }
    let read = crate::support::read_eventually(db, 0, EVENTS, &LogFilter::default()).await;
    assert_eq!(read.len(), EVENTS);
}

/// Runs `pg` or `sqlite` on the test's database, statement by statement.
pub async fn exec(db: &Db, pg: &[&str], sqlite: &[&str]) {
    match db {
        Db::Postgres(pool) => {
            for s in pg {
                sqlx::query(s).execute(pool).await.expect(s);
            }
        }
        Db::Sqlite(pool) => {
            for s in sqlite {
                sqlx::query(s).execute(pool).await.expect(s);
            }
        }
    }
}

async fn every_event_is_sealed_in_both_chains(t: TestDb) {
    seed(&t.db).await;
    let rows = seals::read_sealed(&t.db, 0, 100).await.unwrap();
    assert_eq!(rows.len(), EVENTS);
    // Recompute by hand: the global chain in position order, one chain per tenant.
    let mut prev = GENESIS.to_string();
    let mut tenants = std::collections::HashMap::<String, String>::new();
    for row in &rows {
        let text = seal::canonical_event(&row.event);
        prev = seal::link(&prev, &text);
        assert_eq!(
            row.hash.as_deref(),
            Some(prev.as_str()),
            "at {}",
            row.event.position
        );
        let chain = seal::tenant_chain(&row.event).to_string();
        let tenant_prev = tenants.get(&chain).cloned().unwrap_or(GENESIS.to_string());
        let link = seal::link(&tenant_prev, &text);
        assert_eq!(row.tenant_hash.as_deref(), Some(link.as_str()));
        tenants.insert(chain, link);
    }
    let ((head_position, head_hash), tenant_heads) = seals::heads(&t.db).await.unwrap();
    assert_eq!(
        (head_position, head_hash.as_str()),
        (EVENTS as i64, prev.as_str())
    );
    assert_eq!(tenant_heads.len(), 2);
    for (chain, _, hash) in &tenant_heads {
        assert_eq!(Some(hash), tenants.get(chain));
    }
    let report = verify_database(&t.db, None).await.unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(report.events, EVENTS as u64);
    assert_eq!(report.tenants, 2);
    assert_eq!(report.head_hash.as_deref(), Some(prev.as_str()));
}
both_backends!(sealed_at_sequencing, every_event_is_sealed_in_both_chains);

/// Events numbered before the seal existed (migration 0013 on an old log), or while sealing was
/// off for a benchmark's baseline, are sealed in position order by the next pass.
async fn unsealed_events_are_sealed_later_in_order(t: TestDb) {
    seed(&t.db).await;
    let sealed = seals::read_sealed(&t.db, 0, 100).await.unwrap();
    let both = [
        "UPDATE events SET hash = NULL, tenant_hash = NULL",
        "DELETE FROM seal_heads WHERE chain <> '*'",
        "UPDATE seal_heads SET position = 0, hash = '0000000000000000000000000000000000000000000000000000000000000000'",
    ];
    exec(&t.db, &both, &both).await;
    let report = verify_database(&t.db, None).await.unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(report.events, EVENTS as u64);
    let resealed = seals::read_sealed(&t.db, 0, 100).await.unwrap();
    let links = |rows: &[seals::SealedEvent]| -> Vec<_> {
        rows.iter()
            .map(|r| (r.hash.clone(), r.tenant_hash.clone()))
            .collect()
    };
    assert_eq!(links(&resealed), links(&sealed));
}
both_backends!(
    backlog_sealed_in_order,
    unsealed_events_are_sealed_later_in_order
);

async fn tampered(
    kind: &str,
    pg: &[&str],
    sqlite: &[&str],
) -> [bling_ledger::audit::verify_db::DbReport; 2] {
    let mut out = Vec::new();
    for backend in ["postgres", "sqlite"] {
        let t = TestDb::of_kind(backend).await;
        seed(&t.db).await;
        let clean = verify_database(&t.db, None).await.unwrap();
        assert!(clean.ok(), "{backend} before {kind}: {clean}");
        exec(&t.db, pg, sqlite).await;
        out.push(verify_database(&t.db, None).await.unwrap());
    }
    out.try_into().unwrap()
}

fn assert_break(
    reports: &[bling_ledger::audit::verify_db::DbReport; 2],
    kind: Tamper,
    position: i64,
) {
    for (backend, report) in ["postgres", "sqlite"].iter().zip(reports) {
        let b = report
            .first_break
            .as_ref()
            .unwrap_or_else(|| panic!("{backend}: tampering not detected:\n{report}"));
        assert_eq!(
            (b.kind, b.position),
            (kind, position),
            "{backend}: {report}"
        );
        assert!(!report.ok());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_is_named_altered() {
    let pg = ["UPDATE events SET payload = replace(payload::text, 'Cliente 2', 'Cliente X')::json WHERE global_position = 3"];
    let sqlite = ["UPDATE events SET payload = replace(payload, 'Cliente 2', 'Cliente X') WHERE global_position = 3"];
    let reports = tampered("update", &pg, &sqlite).await;
    assert_break(&reports, Tamper::Altered, 3);
    // The metadata, the time, the tenant chain's own column: each is covered.
    let pg = ["UPDATE events SET recorded_at = recorded_at + interval '1 second' WHERE global_position = 5"];
    let sqlite =
        ["UPDATE events SET recorded_at = '2020-01-01T00:00:00.000Z' WHERE global_position = 5"];
    assert_break(&tampered("time", &pg, &sqlite).await, Tamper::Altered, 5);
    let both = ["UPDATE events SET tenant_hash = hash WHERE global_position = 6"];
    let reports = tampered("tenant link", &both, &both).await;
    assert_break(&reports, Tamper::Altered, 6);
    assert!(reports[0]
        .first_break
        .as_ref()
        .unwrap()
        .detail
        .contains("tenant chain"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_is_named_deleted() {
    let both = ["DELETE FROM events WHERE global_position = 4"];
    assert_break(&tampered("delete", &both, &both).await, Tamper::Deleted, 4);
    // Deleted, and the positions after it renumbered to close the hole.
    let both = [
        "DELETE FROM events WHERE global_position = 4",
        "UPDATE events SET global_position = -(global_position - 1) WHERE global_position > 4",
        "UPDATE events SET global_position = -global_position WHERE global_position < 0",
    ];
    assert_break(
        &tampered("delete and renumber", &both, &both).await,
        Tamper::Deleted,
        4,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_is_named_inserted() {
    // Make room at 4, then write a copy of event 2 (with its seal) there.
    let shift = [
        "UPDATE events SET global_position = -global_position WHERE global_position >= 4",
        "UPDATE events SET global_position = -global_position + 1 WHERE global_position < 0",
    ];
    let copy = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                                   payload, metadata, global_position, hash, tenant_hash)
                SELECT aggregate_type, aggregate_id || '-forged', sequence, event_type, event_version,
                       payload, metadata, 4, hash, tenant_hash
                FROM events WHERE global_position = 2";
    let pg = [shift[0], shift[1], copy];
    // SQLite's trigger numbers the new row at the end: move it to 4 afterwards.
    let sqlite = [
        shift[0],
        shift[1],
        copy,
        "UPDATE events SET global_position = 4 WHERE aggregate_id LIKE '%-forged'",
    ];
    assert_break(&tampered("insert", &pg, &sqlite).await, Tamper::Inserted, 4);
    // A row written without a seal among sealed ones.
    let unsealed = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                                   payload, metadata, global_position)
                SELECT aggregate_type, aggregate_id || '-forged', sequence, event_type, event_version,
                       payload, metadata, 4
                FROM events WHERE global_position = 2";
    let pg = [shift[0], shift[1], unsealed];
    let sqlite = [
        shift[0],
        shift[1],
        unsealed,
        "UPDATE events SET global_position = 4 WHERE aggregate_id LIKE '%-forged'",
    ];
    assert_break(
        &tampered("insert unsealed", &pg, &sqlite).await,
        Tamper::Inserted,
        4,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordering_is_named_reordered() {
    let swap = |a: i64, b: i64| {
        [
            format!("UPDATE events SET global_position = CASE global_position WHEN {a} THEN -{b} ELSE -{a} END WHERE global_position IN ({a}, {b})"),
            "UPDATE events SET global_position = -global_position WHERE global_position < 0".to_string(),
        ]
    };
    let far = swap(3, 6);
    let far: Vec<&str> = far.iter().map(String::as_str).collect();
    assert_break(
        &tampered("swap 3 and 6", &far, &far).await,
        Tamper::Reordered,
        3,
    );
    let near = swap(5, 6);
    let near: Vec<&str> = near.iter().map(String::as_str).collect();
    assert_break(
        &tampered("swap 5 and 6", &near, &near).await,
        Tamper::Reordered,
        5,
    );
}

// ---------------------------------------------------------------------------------------------
// Signed checkpoints

use bling_ledger::audit::checkpoint::SigningKey;
use bling_ledger::audit::checkpointer::take_checkpoint;

fn key() -> SigningKey {
    SigningKey::from_base64(&SigningKey::generate_base64()).unwrap()
}

/// Rewrites the content of event `position` and recomputes every link after it, as someone who
/// knows the chain rule would: the chain is whole again, only a checkpoint can tell.
async fn rewrite_and_reseal(db: &Db, position: i64) {
    let pg = [format!("UPDATE events SET payload = replace(payload::text, 'Cliente', 'Fulano')::json WHERE global_position = {position}")];
    let sqlite = [format!("UPDATE events SET payload = replace(payload, 'Cliente', 'Fulano') WHERE global_position = {position}")];
    exec(db, &[pg[0].as_str()], &[sqlite[0].as_str()]).await;
    let rows = seals::read_sealed(db, 0, 1000).await.unwrap();
    let mut prev = GENESIS.to_string();
    let mut tenants = std::collections::HashMap::<String, String>::new();
    let mut updates = Vec::new();
    for row in &rows {
        let text = seal::canonical_event(&row.event);
        prev = seal::link(&prev, &text);
        let chain = seal::tenant_chain(&row.event).to_string();
        let t = seal::link(tenants.get(&chain).map_or(GENESIS, String::as_str), &text);
        tenants.insert(chain, t.clone());
        updates.push(format!(
            "UPDATE events SET hash = '{prev}', tenant_hash = '{t}' WHERE global_position = {}",
            row.event.position
        ));
    }
    let updates: Vec<&str> = updates.iter().map(String::as_str).collect();
    exec(db, &updates, &updates).await;
}

async fn a_rewrite_fails_against_an_earlier_checkpoint(t: TestDb) {
    let key = key();
    let public = key.public_key();
    seed(&t.db).await;
    let c = take_checkpoint(&t.db, &key)
        .await
        .unwrap()
        .expect("a checkpoint");
    assert_eq!(c.position, EVENTS as i64);
    assert_eq!(c.tenants, 2);
    c.verify(&public).unwrap();
    // Nothing new: the same checkpoint.
    assert_eq!(take_checkpoint(&t.db, &key).await.unwrap(), Some(c.clone()));
    let report = verify_database(&t.db, Some(&public)).await.unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(report.checkpoints_checked, 1);

    rewrite_and_reseal(&t.db, 3).await;
    let report = verify_database(&t.db, Some(&public)).await.unwrap();
    assert!(
        report.first_break.is_none(),
        "the links were recomputed: {report}"
    );
    assert!(!report.ok());
    assert_eq!(report.checkpoint_failures.len(), 1, "{report}");
    assert_eq!(report.checkpoint_failures[0].position, EVENTS as i64);
    assert!(report.to_string().contains("rewritten"), "{report}");
}
both_backends!(
    checkpoint_catches_rewrite,
    a_rewrite_fails_against_an_earlier_checkpoint
);

async fn forged_checkpoints_fail(t: TestDb) {
    let key = key();
    seed(&t.db).await;
    take_checkpoint(&t.db, &key)
        .await
        .unwrap()
        .expect("a checkpoint");
    // Signed by another key.
    let report = verify_database(&t.db, Some(&self::key().public_key()))
        .await
        .unwrap();
    assert!(!report.ok());
    assert!(
        report.checkpoint_failures[0]
            .problem
            .contains("does not verify"),
        "{report}"
    );
    // A forged signature.
    let forged = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 64]);
    let both = [format!(
        "UPDATE seal_checkpoints SET signature = '{forged}'"
    )];
    exec(&t.db, &[both[0].as_str()], &[both[0].as_str()]).await;
    let report = verify_database(&t.db, Some(&key.public_key()))
        .await
        .unwrap();
    assert!(!report.ok());
    assert!(
        report.checkpoint_failures[0]
            .problem
            .contains("does not verify"),
        "{report}"
    );
    // A log cut at its end: the checkpoint says it was longer.
    let t2 = TestDb::of_kind(t.db.backend_name()).await;
    seed(&t2.db).await;
    take_checkpoint(&t2.db, &key)
        .await
        .unwrap()
        .expect("a checkpoint");
    let both = [format!(
        "DELETE FROM events WHERE global_position = {EVENTS}"
    )];
    exec(&t2.db, &[both[0].as_str()], &[both[0].as_str()]).await;
    let report = verify_database(&t2.db, Some(&key.public_key()))
        .await
        .unwrap();
    let b = report.first_break.as_ref().expect("a break");
    assert_eq!(
        (b.kind, b.position),
        (Tamper::Deleted, EVENTS as i64),
        "{report}"
    );
}
both_backends!(forged_checkpoint, forged_checkpoints_fail);

/// The checkpoints and the public key over HTTP: auditors only.
async fn checkpoints_over_http(t: TestDb) {
    use crate::support::{AUDITOR_TOKEN, INGEST_TOKEN};
    let key = std::sync::Arc::new(key());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let settings = bling_ledger::server::Settings {
        database_url: t.url.clone(),
        max_connections: 8,
        tokens: crate::support::test_tokens(),
        auth: None,
        sync: Default::default(),
    };
    let seal = bling_ledger::server::SealSettings {
        key: Some(key.clone()),
        // Often, so the periodic checkpoint shows up within the test.
        checkpoint_interval: Some(std::time::Duration::from_millis(200)),
    };
    let server = bling_ledger::server::Server::start_sealed(settings, listener, seal)
        .await
        .unwrap();
    seed(&t.db).await;
    let http = reqwest::Client::new();
    let get = |path: &str, token: &str| {
        http.get(format!("{}{path}", server.base_url()))
            .bearer_auth(token)
            .send()
    };
    let public: serde_json::Value = get("/v1/audit/public-key", AUDITOR_TOKEN)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(public["public_key"], key.public_key().base64());
    assert_eq!(public["algorithm"], "Ed25519");
    // The periodic checkpoint reaches the head.
    let reached = crate::support::eventually(20, || async {
        let list: serde_json::Value = get("/v1/audit/checkpoints", AUDITOR_TOKEN)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        list["checkpoints"]
            .as_array()
            .and_then(|a| a.last())
            .is_some_and(|c| c["position"] == EVENTS as i64)
    })
    .await;
    assert!(reached, "no periodic checkpoint at the head");
    let list: serde_json::Value = get("/v1/audit/checkpoints?from=1&limit=5", AUDITOR_TOKEN)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let c: bling_ledger::audit::checkpoint::Checkpoint = serde_json::from_value(
        list["checkpoints"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone(),
    )
    .unwrap();
    let public = bling_ledger::audit::checkpoint::PublicKey::from_base64(
        public["public_key"].as_str().unwrap(),
    )
    .unwrap();
    c.verify(&public).unwrap();
    assert_eq!(
        get("/v1/audit/checkpoints", INGEST_TOKEN)
            .await
            .unwrap()
            .status(),
        reqwest::StatusCode::FORBIDDEN
    );
    let bad = get("/v1/audit/checkpoints?limit=x", AUDITOR_TOKEN)
        .await
        .unwrap();
    assert_eq!(bad.status(), reqwest::StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("limit"));
    server.stop().await.unwrap();
}
both_backends!(http_checkpoints, checkpoints_over_http);

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

/// The commands, on the SQLite default (the signing key is created beside the database).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_checkpoint_key_and_verify_database() {
    let t = TestDb::sqlite().await;
    seed(&t.db).await;
    let url = ["--database-url", t.url.as_str()];
    let (ok, public, err) = run(bin().args(["key", "public"]).args(url));
    assert!(ok, "{err}");
    let public = public.trim().to_string();
    assert_eq!(public.len(), 44, "{public}");
    let (ok, out, err) = run(bin().arg("checkpoint").args(url));
    assert!(ok, "{out}{err}");
    assert!(out.contains(&format!("\"position\": {EVENTS}")), "{out}");
    let (ok, out, err) = run(bin()
        .args(["verify", "--database", "--public-key", &public])
        .args(url));
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("OK"), "{out}");
    assert!(
        out.contains("1 checkpoints checked, signatures verified"),
        "{out}"
    );
    let both = ["DELETE FROM events WHERE global_position = 2"];
    exec(&t.db, &both, &both).await;
    let (ok, out, _) = run(bin().args(["verify", "--database"]).args(url));
    assert!(!ok);
    assert!(out.contains("first break: deleted at position 2"), "{out}");
    let (ok, out, _) = run(bin().args(["checkpoint", "--list"]).args(url));
    assert!(ok && out.lines().count() == 1, "{out}");
}

/// `verify FILE --checkpoint C --public-key K`, offline, as an auditor runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_verify_export_against_checkpoint() {
    let t = TestDb::sqlite().await;
    seed(&t.db).await;
    let dir = tempfile::tempdir().unwrap();
    let url = ["--database-url", t.url.as_str()];
    let (_, public, _) = run(bin().args(["key", "public"]).args(url));
    let (ok, checkpoint, err) = run(bin().arg("checkpoint").args(url));
    assert!(ok, "{err}");
    let checkpoint_file = dir.path().join("checkpoint.json");
    std::fs::write(&checkpoint_file, checkpoint).unwrap();
    let file = dir.path().join("shop-a.jsonl");
    let (ok, out, err) = run(bin()
        .args(["export", "--tenant", "shop-a", "-o"])
        .arg(&file)
        .args(url));
    assert!(ok, "{out}{err}");
    let (ok, out, err) = run(bin()
        .arg("verify")
        .arg(&file)
        .arg("--checkpoint")
        .arg(&checkpoint_file)
        .args(["--public-key", public.trim()]));
    assert!(ok, "{out}{err}");
    assert!(out.contains("sealed: 4 record(s) recomputed"), "{out}");
    let other = bling_ledger::audit::checkpoint::SigningKey::from_base64(
        &bling_ledger::audit::checkpoint::SigningKey::generate_base64(),
    )
    .unwrap()
    .public_key()
    .base64();
    let (ok, out, err) = run(bin()
        .arg("verify")
        .arg(&file)
        .arg("--checkpoint")
        .arg(&checkpoint_file)
        .args(["--public-key", &other]));
    assert!(!ok, "{out}");
    assert!(err.contains("does not verify with key"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Exports against checkpoints

use bling_ledger::audit::cli::{export, ExportArgs};
use bling_ledger::audit::verify_sealed::verify_against_checkpoint;
use bling_ledger::audit::{verify_file, Manifest};

fn export_args(
    dir: &std::path::Path,
    name: &str,
    tenant: Option<&str>,
    redact: bool,
) -> ExportArgs {
    ExportArgs {
        from: None,
        to: None,
        tenant: tenant.map(str::to_string),
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

/// Exports, checks the file's own chain, returns its path and manifest.
async fn export_checked(db: &Db, args: &ExportArgs) -> (std::path::PathBuf, Manifest) {
    let outcome = export(db, args).await.expect("export");
    let report = verify_file(&outcome.output, Some(&outcome.manifest_path)).unwrap();
    assert!(report.ok(), "{report}");
    (outcome.output, outcome.manifest)
}

fn records(path: &std::path::Path) -> Vec<serde_json::Map<String, serde_json::Value>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Two more events after the checkpoint, so that a tenant's head now is not its head then.
async fn more_events(db: &Db) {
    let ledger = Ledger::new(db.clone());
    for (i, shop) in ["shop-a", "shop-b"].iter().enumerate() {
        let tenant = TenantId::parse(shop).unwrap();
        let ctx = CommandContext::new(
            tenant.clone(),
            format!("late-{i}"),
            Actor::Ingest("p".into()),
        );
        let id = format!("late{i}");
        ledger
            .execute_customer(&ctx, &id, save(&tenant, &id, "Tardio"))
            .await
            .unwrap();
    }
    crate::support::read_eventually(db, 0, EVENTS + 2, &LogFilter::default()).await;
}

async fn exports_are_proven_by_checkpoints(t: TestDb) {
    let key = key();
    let public = key.public_key();
    let dir = tempfile::tempdir().unwrap();
    seed(&t.db).await;
    let c = take_checkpoint(&t.db, &key).await.unwrap().unwrap();
    more_events(&t.db).await;

    // Every tenant, JSONL and CSV: each record's seal recomputes, and position 8 is signed.
    for name in ["all.jsonl", "all.csv"] {
        let (path, manifest) =
            export_checked(&t.db, &export_args(dir.path(), name, None, false)).await;
        let seal = manifest.seal.as_ref().unwrap();
        assert_eq!(seal.prev.as_deref(), Some(GENESIS));
        assert_eq!(seal.checkpoints, vec![c.clone()]);
        let r = verify_against_checkpoint(&path, &manifest, &c, &public).unwrap();
        assert_eq!(
            (r.records, r.proven),
            (EVENTS as u64 + 2, EVENTS as u64),
            "{name}"
        );
    }
    // One tenant: its own chain and the Merkle proof of its head at the checkpoint.
    for shop in ["shop-a", "shop-b"] {
        let (path, manifest) = export_checked(
            &t.db,
            &export_args(dir.path(), &format!("{shop}.jsonl"), Some(shop), false),
        )
        .await;
        let proofs = &manifest.seal.as_ref().unwrap().proofs;
        assert_eq!(proofs.len(), 1);
        assert_eq!(proofs[0].as_ref().unwrap().head.tenant, shop);
        let r = verify_against_checkpoint(&path, &manifest, &c, &public).unwrap();
        assert_eq!(
            (r.records, r.proven),
            (EVENTS as u64 / 2 + 1, EVENTS as u64 / 2),
            "{shop}"
        );
    }
    // Two overlapping exports agree on every record they share.
    let (all, _) =
        export_checked(&t.db, &export_args(dir.path(), "again.jsonl", None, false)).await;
    let (a, _) = export_checked(
        &t.db,
        &export_args(dir.path(), "again-a.jsonl", Some("shop-a"), false),
    )
    .await;
    let all = records(&all);
    let strip = |mut r: serde_json::Map<String, serde_json::Value>| {
        r.remove("prev_hash");
        r.remove("hash");
        r
    };
    for record in records(&a) {
        let position = record["position"].as_i64().unwrap();
        let same = all
            .iter()
            .find(|r| r["position"] == position)
            .unwrap()
            .clone();
        assert_eq!(strip(record), strip(same));
    }
    // A forged checkpoint proves nothing.
    let (path, manifest) =
        export_checked(&t.db, &export_args(dir.path(), "x.jsonl", None, false)).await;
    let mut forged = c.clone();
    forged.head_hash = "f".repeat(64);
    assert!(verify_against_checkpoint(&path, &manifest, &forged, &public).is_err());
    assert!(verify_against_checkpoint(&path, &manifest, &c, &self::key().public_key()).is_err());
    // A redacted export still verifies on its own, and says why it cannot be proven.
    let (path, manifest) =
        export_checked(&t.db, &export_args(dir.path(), "r.jsonl", None, true)).await;
    let e = verify_against_checkpoint(&path, &manifest, &c, &public).unwrap_err();
    assert!(e.to_string().contains("redacted"), "{e}");

    // The log altered in place: a fresh export carries the stored seal, which no longer fits.
    let pg = ["UPDATE events SET payload = replace(payload::text, 'Cliente 2', 'Cliente X')::json WHERE global_position = 3"];
    let sqlite = ["UPDATE events SET payload = replace(payload, 'Cliente 2', 'Cliente X') WHERE global_position = 3"];
    exec(&t.db, &pg, &sqlite).await;
    let (path, manifest) =
        export_checked(&t.db, &export_args(dir.path(), "t1.jsonl", None, false)).await;
    let e = verify_against_checkpoint(&path, &manifest, &c, &public).unwrap_err();
    assert!(
        e.to_string().contains("position 3 is not what was sealed"),
        "{e}"
    );
    // Rewritten with every link recomputed: the export is consistent, the checkpoint is not.
    rewrite_and_reseal(&t.db, 3).await;
    let (path, manifest) =
        export_checked(&t.db, &export_args(dir.path(), "t2.jsonl", None, false)).await;
    let e = verify_against_checkpoint(&path, &manifest, &c, &public).unwrap_err();
    assert!(e.to_string().contains("rewritten"), "{e}");
    // Event 3 is shop-a's: its export fails, shop-b's (untouched) still proves.
    let (path, manifest) = export_checked(
        &t.db,
        &export_args(dir.path(), "t3.jsonl", Some("shop-a"), false),
    )
    .await;
    let e = verify_against_checkpoint(&path, &manifest, &c, &public).unwrap_err();
    assert!(e.to_string().contains("rewritten"), "{e}");
    let (path, manifest) = export_checked(
        &t.db,
        &export_args(dir.path(), "t4.jsonl", Some("shop-b"), false),
    )
    .await;
    verify_against_checkpoint(&path, &manifest, &c, &public).unwrap();
}
both_backends!(
    exports_against_checkpoints,
    exports_are_proven_by_checkpoints
);
