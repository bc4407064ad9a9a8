//! Projection rebuild rate against a raw `COPY (SELECT … FROM events ORDER BY global_position)
//! TO STDOUT` of the same events, in one run on PostgreSQL (a scratch database).
//!
//! The seeded ledger is a realistic mix: tenants connect, renew tokens, one is revoked and
//! reconnected; customers register (a few with a record Bling refuses, later fixed);
//! invoices are billed, get their Bling order and situação, a few are updated, cancelled,
//! fail (divergent record, Bling unavailable) and recover. Events are inserted with multi-row
//! `INSERT … SELECT FROM UNNEST(…)` and numbered by the real sequencer.

use std::collections::VecDeque;
use std::time::Instant;

use serde::Serialize;
use serde_json::{json, Value};

use super::{per_second, ScratchDb};
use crate::projections::{Projections, RunnerSettings};
use crate::store::scratch::{self, UnnumberedEvents};
use crate::store::{Db, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("audit export: {0}")]
    Audit(#[from] crate::audit::AuditError),
}

/// What was seeded.
#[derive(Debug, Clone, Default)]
pub struct Seeded {
    pub events: u64,
    /// `(tenant, invoice id)` of every invoice.
    pub invoices: Vec<(String, String)>,
    pub seconds: f64,
}

struct Row {
    aggregate_type: &'static str,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    payload: String,
    metadata: String,
    recorded_at: chrono::DateTime<chrono::Utc>,
}

struct Generator {
    rows: Vec<Row>,
    clock: chrono::DateTime<chrono::Utc>,
    count: u64,
}

impl Generator {
    fn push(
        &mut self,
        tenant: &str,
        aggregate_type: &'static str,
        id: String,
        sequence: i64,
        payload: Value,
    ) {
        let event_type = payload
            .as_object()
            .and_then(|o| o.keys().next().cloned())
            .unwrap_or_default();
        self.clock += chrono::Duration::milliseconds(37);
        let actor = if aggregate_type == "Invoice" && event_type == "InvoiceBilled" {
            "ingest:petshop"
        } else {
            "worker"
        };
        self.rows.push(Row {
            aggregate_type,
            aggregate_id: id,
            sequence,
            event_type,
            payload: payload.to_string(),
            metadata: json!({"tenant": tenant, "correlation_id": format!("bench-{}", self.count), "actor": actor,
                             "recorded_at": self.clock.to_rfc3339()})
            .to_string(),
            recorded_at: self.clock,
        });
        self.count += 1;
    }
}

fn call(method: &str, path: &str, status: u16, error: Option<(&str, &str)>) -> Value {
    json!({"at": "2026-11-25T12:00:00Z", "method": method, "path": path, "status": status,
           "latency_ms": 80 + status as u64 % 50, "error_type": error.map(|e| e.0),
           "error_message": error.map(|e| e.1)})
}

fn content(number: &str, total: u64) -> Value {
    json!({"number": number, "issue_date": "2026-11-25", "items": [
        {"sku": "BANHO-P", "description": "Banho porte pequeno", "quantity": 2, "unit_price": total / 2, "discount": 0},
        {"sku": "V10", "description": "Vacina V10", "quantity": 1, "unit_price": total - (total / 2) * 2, "discount": 0}],
        "installments": [{"due_date": "2026-11-25", "amount": total, "payment_method": "pix"}],
        "notes": null, "total": total})
}

fn profile(name: &str, tax_id: &str, cep: &str) -> Value {
    json!({"name": name, "tax_id": tax_id, "email": "cliente@example.com.br", "phone": null,
           "mobile": "11988887777", "address": {"street": "Rua das Flores", "number": "42",
           "complement": null, "district": "Centro", "city": "São Paulo", "state": "SP", "cep": cep}})
}

/// How seeded events get their global positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numbering {
    /// Inserted without positions and numbered by the real sequencer, as in production.
    Sequencer,
    /// Written already numbered, with `COPY`: the seeder is the scratch database's only
    /// writer, so the order it writes in is the log's order. Seeding ten million events the
    /// production way takes most of an hour (the sequencer rewrites every row); this, minutes.
    Direct,
}

/// Seeds about `target` events into `db` (PostgreSQL) and numbers them.
pub async fn seed(db: &Db, target: usize, numbering: Numbering) -> Result<Seeded, StoreError> {
    if numbering == Numbering::Direct {
        // Rows written already numbered skip the sequencer, and so its seal: sealing them
        // afterwards would rewrite every row once more. This process is the benchmark's own, so
        // it reads the log unsealed (see `store::events::seals::set_sealing`).
        crate::store::events::seals::set_sealing(false);
    }
    if let Db::Sqlite(_) = db {
        return Err(StoreError::UnsupportedUrl(
            "the benchmark seeds PostgreSQL only".into(),
        ));
    }
    let started = Instant::now();
    let tenants: Vec<String> = (0..20).map(|t| format!("shop-{t:02}")).collect();
    let mut g = Generator {
        rows: Vec::with_capacity(10_000),
        clock: chrono::DateTime::parse_from_rfc3339("2026-01-01T08:00:00Z")
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_default(),
        count: 0,
    };
    let mut seeded = Seeded::default();
    let mut conn_seq = vec![0i64; tenants.len()];
    for (t, tenant) in tenants.iter().enumerate() {
        g.push(
            tenant,
            "BlingConnection",
            tenant.clone(),
            1,
            json!({"Connected": {"tenant": tenant, "scopes": "all",
            "access_expires_at": "2026-01-01T14:00:00Z", "token_fingerprint": "ab12cd34"}}),
        );
        conn_seq[t] = 1;
    }
    // Invoices in flight: billed, their sync completes a few steps later.
    let mut in_flight: VecDeque<(usize, String, String, u64, i64)> = VecDeque::new();
    let customers_per_tenant = 500u64;
    let mut customer_seq: Vec<Vec<i64>> =
        vec![vec![0; customers_per_tenant as usize]; tenants.len()];
    let mut n = 0u64;
    let mut written = 0u64;
    while (g.count as usize) < target {
        n += 1;
        let t = (n % tenants.len() as u64) as usize;
        let tenant = &tenants[t];
        let c = (n / tenants.len() as u64) % customers_per_tenant;
        let customer = format!("c{c}");
        let cseq = &mut customer_seq[t][c as usize];
        if *cseq == 0 {
            let divergent = c % 50 == 7;
            let cep = if divergent { "20040-002" } else { "01001-000" };
            let tax = super::cpf(t as u64 * 10_000 + c);
            g.push(tenant, "Customer", format!("{tenant}/{customer}"), 1, json!({"CustomerRegistered": {
                "tenant": tenant, "customer_id": customer, "profile": profile(&format!("Cliente {c}"), &tax, cep)}}));
            *cseq = 1;
            if divergent {
                g.push(tenant, "Customer", format!("{tenant}/{customer}"), 2, json!({"ContactSyncFailed": {
                    "cause": {"kind": "divergent_customer_record", "problems": [], "bling_fields": [
                        {"code": 3, "element": "endereco.geral.cep", "msg": "O CEP não pertence à UF"}],
                        "message": "endereco.geral.cep: O CEP não pertence à UF"},
                    "profile_version": 1, "calls": [call("POST", "/contatos", 400, Some(("VALIDATION_ERROR", "dados inválidos")))]}}));
                g.push(tenant, "Customer", format!("{tenant}/{customer}"), 3, json!({"CustomerUpdated": {
                    "changed_fields": ["address"], "profile": profile(&format!("Cliente {c}"), &tax, "01001-000")}}));
                *cseq = 3;
            }
            *cseq += 1;
            g.push(tenant, "Customer", format!("{tenant}/{customer}"), *cseq, json!({"ContactLinked": {
                "bling_contact_id": 10_000 + n, "created": true, "profile_version": if *cseq > 2 { 2 } else { 1 },
                "calls": [call("GET", "/contatos?numeroDocumento=x", 200, None), call("POST", "/contatos", 201, None)]}}));
        }
        let invoice = format!("inv-{n}");
        let total = 5_000 + (n * 37) % 50_000;
        g.push(tenant, "Invoice", format!("{tenant}/{invoice}"), 1, json!({"InvoiceBilled": {
            "tenant": tenant, "invoice_id": invoice, "customer_id": customer, "content": content(&format!("NF-{n}"), total)}}));
        seeded.invoices.push((tenant.clone(), invoice.clone()));
        in_flight.push_back((t, tenant.clone(), invoice, n, 1));
        if n % 997 == 0 {
            conn_seq[t] += 1;
            g.push(tenant, "BlingConnection", tenant.clone(), conn_seq[t], json!({"TokenRefreshed": {
                "access_expires_at": "2026-01-02T14:00:00Z", "token_fingerprint": format!("f{n}")}}));
        }
        if n % 50_021 == 0 {
            conn_seq[t] += 1;
            g.push(tenant, "BlingConnection", tenant.clone(), conn_seq[t], json!({"AuthorizationRevoked": {"evidence": {
                "call": "POST /oauth/token (refresh)", "status": 400, "error_type": "invalid_grant", "message": "revoked"}}}));
            conn_seq[t] += 1;
            g.push(tenant, "BlingConnection", tenant.clone(), conn_seq[t], json!({"Reconnected": {
                "scopes": "all", "access_expires_at": "2026-01-03T14:00:00Z", "token_fingerprint": format!("r{n}")}}));
        }
        while in_flight.len() > 12 {
            let Some((_, tenant, invoice, k, mut seq)) = in_flight.pop_front() else {
                break;
            };
            let id = format!("{tenant}/{invoice}");
            let mut next = |g: &mut Generator, payload: Value| {
                seq += 1;
                g.push(&tenant, "Invoice", id.clone(), seq, payload);
            };
            if k % 23 == 0 {
                next(
                    &mut g,
                    json!({"SyncFailed": {"cause": {"kind": "bling_unavailable", "message": "Bling answered 503"},
                    "attempt": 1, "retry_at": "2026-01-01T09:00:00Z",
                    "calls": [call("POST", "/pedidos/vendas", 503, Some(("SERVICE_UNAVAILABLE", "tente novamente")))]}}),
                );
            }
            if k % 61 == 0 {
                next(
                    &mut g,
                    json!({"SyncFailed": {"cause": {"kind": "divergent_customer_record", "problems": [],
                    "bling_fields": [{"code": 3, "element": "endereco.geral.cep", "msg": "O CEP não pertence à UF"}],
                    "message": "endereco.geral.cep: O CEP não pertence à UF"}, "attempt": 2, "retry_at": null,
                    "calls": [call("POST", "/contatos", 400, Some(("VALIDATION_ERROR", "dados inválidos")))]}}),
                );
                next(
                    &mut g,
                    json!({"SyncResumed": {"reason": "customer record updated"}}),
                );
            }
            if k % 89 == 0 {
                next(
                    &mut g,
                    json!({"SyncParked": {"reason": "the shop revoked access to Bling"}}),
                );
                next(
                    &mut g,
                    json!({"SyncResumed": {"reason": "reconnected to Bling"}}),
                );
            }
            next(
                &mut g,
                json!({"SalesOrderCreated": {"bling_order_id": 500_000 + k, "bling_number": k, "created": true,
                "content_version": 1, "calls": [call("POST", "/pedidos/vendas", 201, None)]}}),
            );
            next(
                &mut g,
                json!({"SituacaoChanged": {"situacao_id": 9, "situacao_name": "Atendido",
                "calls": [call("GET", "/situacoes/modulos", 200, None), call("PATCH", &format!("/pedidos/vendas/{}/situacoes/9", 500_000 + k), 204, None)]}}),
            );
            if k % 17 == 0 {
                next(
                    &mut g,
                    json!({"InvoiceUpdated": {"changed_fields": ["notes"], "content": content(&format!("NF-{k}"), 5_000 + (k * 37) % 50_000)}}),
                );
                next(
                    &mut g,
                    json!({"SalesOrderUpdated": {"content_version": 2, "calls": [call("PUT", "/pedidos/vendas/1", 200, None)]}}),
                );
            }
            if k % 41 == 0 {
                next(&mut g, json!({"InvoiceCancelled": {"reason": "desistiu"}}));
                next(
                    &mut g,
                    json!({"SituacaoChanged": {"situacao_id": 12, "situacao_name": "Cancelado", "calls": [call("PATCH", "/pedidos/vendas/1/situacoes/12", 204, None)]}}),
                );
            }
        }
        match numbering {
            Numbering::Sequencer if g.rows.len() >= 5_000 => {
                written += flush(db, &mut g.rows).await?;
            }
            Numbering::Direct if g.rows.len() >= 50_000 => {
                written += flush_numbered(db, &mut g.rows, written).await?;
                if written / 1_000_000 != (written - 50_000) / 1_000_000 {
                    eprintln!("  {written} events seeded");
                }
            }
            _ => {}
        }
    }
    written += match numbering {
        Numbering::Sequencer => flush(db, &mut g.rows).await?,
        Numbering::Direct => flush_numbered(db, &mut g.rows, written).await?,
    };
    crate::store::log::sequence_pending(db).await?;
    seeded.events = written;
    seeded.seconds = started.elapsed().as_secs_f64();
    Ok(seeded)
}

async fn flush(db: &Db, rows: &mut Vec<Row>) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut events = UnnumberedEvents {
        aggregate_types: Vec::with_capacity(rows.len()),
        aggregate_ids: Vec::with_capacity(rows.len()),
        sequences: Vec::with_capacity(rows.len()),
        event_types: Vec::with_capacity(rows.len()),
        payloads: Vec::with_capacity(rows.len()),
        metadata: Vec::with_capacity(rows.len()),
        recorded_at: Vec::with_capacity(rows.len()),
    };
    for r in rows.drain(..) {
        events.aggregate_types.push(r.aggregate_type.to_string());
        events.aggregate_ids.push(r.aggregate_id);
        events.sequences.push(r.sequence);
        events.event_types.push(r.event_type);
        events.payloads.push(r.payload);
        events.metadata.push(r.metadata);
        events.recorded_at.push(r.recorded_at);
    }
    scratch::insert_unnumbered(db, events).await
}

/// Writes `rows` with `COPY`, numbered from `before + 1` on.
async fn flush_numbered(db: &Db, rows: &mut Vec<Row>, before: u64) -> Result<u64, StoreError> {
    use crate::store::views::{copy_line, V};
    use std::borrow::Cow;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut text = String::with_capacity(rows.len() * 700);
    for (n, r) in rows.drain(..).enumerate() {
        copy_line(
            &mut text,
            &[
                V::I(Some(before as i64 + n as i64 + 1)),
                V::T(Some(Cow::Borrowed(r.aggregate_type))),
                V::T(Some(Cow::Owned(r.aggregate_id))),
                V::I(Some(r.sequence)),
                V::T(Some(Cow::Owned(r.event_type))),
                V::T(Some(Cow::Borrowed("1"))),
                V::T(Some(Cow::Owned(r.payload))),
                V::T(Some(Cow::Owned(r.metadata))),
                V::T(Some(Cow::Owned(r.recorded_at.to_rfc3339()))),
            ],
        );
    }
    scratch::copy_numbered(db, &text).await
}

/// Reads every event with `COPY … TO STDOUT`: the floor of what reading the log can cost.
pub async fn raw_copy(db: &Db) -> Result<(u64, f64), StoreError> {
    if let Db::Sqlite(_) = db {
        return Err(StoreError::UnsupportedUrl("COPY needs PostgreSQL".into()));
    }
    let started = Instant::now();
    let bytes = scratch::copy_out_log(db).await?;
    Ok((bytes, started.elapsed().as_secs_f64()))
}

#[derive(Debug, Clone, Serialize)]
pub struct ProjectionsReport {
    pub bench: &'static str,
    pub events: u64,
    pub seed_seconds: f64,
    pub raw_copy_events_per_sec: f64,
    pub raw_copy_mb_per_sec: f64,
    pub rebuild_all_events_per_sec: f64,
    pub rebuild_all_seconds: f64,
    pub ratio: f64,
    /// Each projection rebuilt alone.
    pub per_projection: Vec<(String, f64)>,
    pub cores: usize,
    /// The same seeding and rebuild with sealing off, in the same run (another scratch
    /// database): what the seal costs the sequencer and the readers.
    pub unsealed_seed_seconds: f64,
    pub unsealed_rebuild_all_events_per_sec: f64,
    /// `verify --database` over the sealed log.
    pub verify_events_per_sec: f64,
}

impl ProjectionsReport {
    pub fn text(&self) -> String {
        let mut s = format!(
            "seeded {} events in {:.1} s ({} cores)\n\
             raw COPY of the log        : {:>10.0} events/s ({:.1} MB/s)\n\
             rebuild, all 5 projections : {:>10.0} events/s ({:.1} s)   (target >= 100000)\n\
             ratio rebuild/raw          : {:>10.1}%   (target >= 20%)\n",
            self.events,
            self.seed_seconds,
            self.cores,
            self.raw_copy_events_per_sec,
            self.raw_copy_mb_per_sec,
            self.rebuild_all_events_per_sec,
            self.rebuild_all_seconds,
            self.ratio * 100.0
        );
        for (name, rate) in &self.per_projection {
            s.push_str(&format!("  rebuild {name:<18}: {rate:>10.0} events/s\n"));
        }
        s.push_str(&format!(
            "sealing: seed (sequencer) {:.1} s sealed vs {:.1} s unsealed ({:+.1}%)\n\
             sealing: rebuild, all     {:>10.0} events/s sealed vs {:.0} unsealed ({:+.1}%)\n\
             verify --database          : {:>10.0} events/s   (target >= 200000)\n",
            self.seed_seconds,
            self.unsealed_seed_seconds,
            (self.seed_seconds / self.unsealed_seed_seconds.max(1e-9) - 1.0) * 100.0,
            self.rebuild_all_events_per_sec,
            self.unsealed_rebuild_all_events_per_sec,
            (self.rebuild_all_events_per_sec / self.unsealed_rebuild_all_events_per_sec.max(1e-9)
                - 1.0)
                * 100.0,
            self.verify_events_per_sec,
        ));
        s
    }
}

pub async fn run(admin_url: &str, events: usize) -> Result<ProjectionsReport, BenchError> {
    // Baseline first: the same seed and rebuild with sealing off, in its own database.
    let unsealed = ScratchDb::create(admin_url).await?;
    crate::store::events::seals::set_sealing(false);
    let baseline = baseline(&unsealed.url, events).await;
    crate::store::events::seals::set_sealing(true);
    unsealed.drop_database().await?;
    let (unsealed_seed_seconds, unsealed_rebuild) = baseline?;
    let scratch = ScratchDb::create(admin_url).await?;
    let outcome = measure(&scratch.url, events).await;
    scratch.drop_database().await?;
    let mut report = outcome?;
    report.unsealed_seed_seconds = unsealed_seed_seconds;
    report.unsealed_rebuild_all_events_per_sec = unsealed_rebuild;
    Ok(report)
}

/// Seed seconds and rebuild rate (all projections) on `url`, with sealing as it is set.
async fn baseline(url: &str, events: usize) -> Result<(f64, f64), BenchError> {
    let db = Db::connect(url, 4).await?;
    db.migrate().await?;
    eprintln!("seeding {events} events, sealing off (baseline)…");
    let seeded = seed(&db, events, Numbering::Sequencer).await?;
    scratch::analyze(&db, false).await?;
    raw_copy(&db).await?;
    let runner = Projections::new(db.clone(), RunnerSettings::default());
    let all = runner.rebuild(&[], 5_000, |_| {}).await?;
    db.close().await;
    Ok((seeded.seconds, all.events_per_sec))
}

async fn measure(url: &str, events: usize) -> Result<ProjectionsReport, BenchError> {
    let db = Db::connect(url, 4).await?;
    db.migrate().await?;
    eprintln!("seeding {events} events…");
    let seeded = seed(&db, events, Numbering::Sequencer).await?;
    if let Db::Postgres(_) = &db {
        scratch::analyze(&db, false).await?;
    }
    // Warm the cache the same way for both: one raw read first.
    raw_copy(&db).await?;
    let (bytes, raw_seconds) = raw_copy(&db).await?;
    let raw_rate = per_second(
        seeded.events,
        std::time::Duration::from_secs_f64(raw_seconds),
    );
    eprintln!("rebuilding all projections…");
    let runner = Projections::new(db.clone(), RunnerSettings::default());
    let all = runner.rebuild(&[], 5_000, |_| {}).await?;
    let mut per_projection = Vec::new();
    for name in crate::projections::NAMES {
        let one = runner.rebuild(&[name], 5_000, |_| {}).await?;
        per_projection.push((name.to_string(), one.events_per_sec));
    }
    eprintln!("verifying the sealed log…");
    let verified = crate::audit::verify_db::verify_database(&db, None)
        .await
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if !verified.ok() {
        return Err(
            StoreError::Corrupt(format!("the sealed log does not verify: {verified}")).into(),
        );
    }
    let verify_rate = verified.events as f64 / verified.seconds.max(1e-9);
    db.close().await;
    Ok(ProjectionsReport {
        bench: "projections",
        events: seeded.events,
        seed_seconds: seeded.seconds,
        raw_copy_events_per_sec: raw_rate,
        raw_copy_mb_per_sec: bytes as f64 / 1e6 / raw_seconds.max(1e-9),
        rebuild_all_events_per_sec: all.events_per_sec,
        rebuild_all_seconds: all.seconds,
        ratio: all.events_per_sec / raw_rate.max(1e-9),
        per_projection,
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        unsealed_seed_seconds: 0.0,
        unsealed_rebuild_all_events_per_sec: 0.0,
        verify_events_per_sec: verify_rate,
    })
}
