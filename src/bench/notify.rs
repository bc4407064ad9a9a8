//! `bench notify`: ledger events fanned out to endpoints on a local receiver that verifies every
//! signature, on PostgreSQL.
//!
//! - **Baseline**: the same signed payloads POSTed straight to the receiver, one sender per
//!   endpoint (the order per endpoint allows no more): what the receiver and HTTP can take.
//! - **Drain**: a backlog (messages already in the outbox, resent to every endpoint at once)
//!   delivered as fast as the worker goes: deliveries/s, and its ratio to the baseline.
//! - **Steady**: events appended at a fixed rate (default 200/s) while the receiver listens:
//!   deliveries/s and the latency added from the event's append to its arrival (p50, p95,
//!   p99; target p95 < 1 s).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aggregates::ids::TenantId;
use aggregates::invoice::InvoiceCommand;
use aggregates::sync::FailureCause;
use serde::Serialize;

use super::ingest::BenchError;
use super::{per_second, ScratchDb};
use crate::auth::{Role, TenantScope, TokenRegistry};
use crate::ledger::{Actor, CommandContext};
use crate::notify::signing;
use crate::server::{Server, Settings};

#[derive(Debug, Clone)]
pub struct NotifyOptions {
    pub tenants: usize,
    pub endpoints_per_tenant: usize,
    /// Events per second in the steady phase.
    pub rate: u64,
    pub seconds: u64,
    /// Messages in the drain phase's backlog.
    pub backlog: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct NotifyReport {
    pub tenants: usize,
    pub endpoints: usize,
    pub baseline_posts_per_sec: f64,
    pub drain_deliveries: u64,
    pub drain_deliveries_per_sec: f64,
    pub drain_ratio: f64,
    pub steady_events: u64,
    pub steady_events_per_sec: f64,
    pub steady_deliveries_per_sec: f64,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    pub lost: u64,
    pub signature_failures: u64,
}

const TOKEN: &str = "bench-notify-admin";
/// Invoices per tenant the failures are recorded on (round robin, so no two commands race
/// on one invoice at 200 events/s).
const INVOICES_PER_TENANT: usize = 20;

pub async fn run(admin_url: &str, options: &NotifyOptions) -> Result<NotifyReport, BenchError> {
    let scratch = ScratchDb::create(admin_url).await?;
    let outcome = measure(&scratch.url, options).await;
    scratch.drop_database().await?;
    outcome
}

/// A failure's identity in the payload: tenant, invoice, attempt.
type Key = (String, String, u64);

/// What the receiver saw: arrival time per (tenant, invoice, attempt), counts.
#[derive(Default)]
struct Seen {
    arrivals: Mutex<HashMap<Key, Vec<Instant>>>,
    deliveries: AtomicU64,
    bad_signatures: AtomicU64,
}

async fn receiver(keys: Arc<Vec<Vec<u8>>>, seen: Arc<Seen>) -> Result<String, BenchError> {
    use axum::extract::{Path, State};
    use axum::http::HeaderMap;
    type St = (Arc<Vec<Vec<u8>>>, Arc<Seen>);
    async fn hook(
        State((keys, seen)): State<St>,
        Path(n): Path<usize>,
        headers: HeaderMap,
        body: String,
    ) -> axum::http::StatusCode {
        let at = Instant::now();
        let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
        let ok = keys.get(n).is_some_and(|key| {
            let ts = h("webhook-timestamp").parse::<i64>().unwrap_or(0);
            signing::sign(key, h("webhook-id"), ts, &body) == h("webhook-signature")
        });
        if !ok {
            seen.bad_signatures.fetch_add(1, Ordering::Relaxed);
            return axum::http::StatusCode::UNAUTHORIZED;
        }
        let payload: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let key = (
            payload["tenant"].as_str().unwrap_or("").to_string(),
            payload["data"]["invoice_id"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            payload["data"]["attempt"].as_u64().unwrap_or(0),
        );
        seen.arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .push(at);
        seen.deliveries.fetch_add(1, Ordering::Relaxed);
        axum::http::StatusCode::NO_CONTENT
    }
    let app = axum::Router::new()
        .route("/hook/{n}", axum::routing::post(hook))
        .with_state((keys, seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn measure(url: &str, o: &NotifyOptions) -> Result<NotifyReport, BenchError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let tokens = TokenRegistry::default().with_token(TOKEN, "bench", Role::Admin, TenantScope::All);
    let server = Server::start(
        Settings {
            database_url: url.to_string(),
            max_connections: 16,
            tokens,
            auth: None,
            sync: Default::default(),
        },
        listener,
    )
    .await?;
    let base = server.base_url();
    let http = reqwest::Client::new();
    let tenants: Vec<String> = (0..o.tenants).map(|t| format!("shop-{t:03}")).collect();
    let fail = |msg: String| BenchError::Io(std::io::Error::other(msg));

    // Shops with billed invoices (over HTTP, like the pet-shop system).
    for (t, tenant) in tenants.iter().enumerate() {
        for i in 0..INVOICES_PER_TENANT {
            let customer = serde_json::json!({
                "name": format!("Cliente {t}-{i}"), "tax_id": super::cpf((t * 1000 + i) as u64),
                "address": {"street": "Rua A", "number": "1", "district": "Centro",
                            "city": "Campinas", "state": "SP", "cep": "13010-000"}
            });
            let invoice = serde_json::json!({
                "customer_id": format!("c{i}"), "number": format!("NF-{i}"), "issue_date": "2026-11-25",
                "items": [{"sku": "BANHO", "description": "Banho", "quantity": 1, "unit_price": 5000}],
                "installments": [{"due_date": "2026-11-25", "amount": 5000, "payment_method": "pix"}],
                "total": 5000
            });
            for (method, path, body) in [
                (
                    "PUT",
                    format!("/v1/tenants/{tenant}/customers/c{i}"),
                    customer,
                ),
                (
                    "POST",
                    format!("/v1/tenants/{tenant}/invoices/inv{i}/bill"),
                    invoice,
                ),
            ] {
                let r = http
                    .request(
                        method.parse().map_err(|_| fail("method".into()))?,
                        format!("{base}{path}"),
                    )
                    .bearer_auth(TOKEN)
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                if !r.status().is_success() {
                    return Err(fail(format!("{path}: {}", r.status())));
                }
            }
        }
    }

    let attempt = Arc::new(AtomicU64::new(0));
    let record = |server: &Server, tenant: &str, invoice: usize, n: u64| {
        let ledger = Arc::clone(&server.ledger);
        let tenant = tenant.to_string();
        async move {
            let ctx = CommandContext::new(
                TenantId::parse(&tenant).map_err(|e| e.to_string())?,
                format!("bench-{n}"),
                Actor::Worker,
            );
            ledger
                .execute_invoice(
                    &ctx,
                    &format!("inv{invoice}"),
                    InvoiceCommand::RecordSyncFailed {
                        cause: FailureCause::BlingUnavailable {
                            message: "bench".into(),
                        },
                        attempt: n as u32,
                        retry_at: None,
                        calls: vec![],
                    },
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    };

    // The backlog, appended before any endpoint exists.
    let backlog_started = chrono::Utc::now() - chrono::Duration::seconds(1);
    for k in 0..o.backlog {
        let n = attempt.fetch_add(1, Ordering::Relaxed) + 1;
        let tenant = &tenants[k % tenants.len()];
        record(
            &server,
            tenant,
            (k / tenants.len()) % INVOICES_PER_TENANT,
            n,
        )
        .await
        .map_err(fail)?;
    }
    // Wait until the notifier has written them all.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut total = 0;
        for tenant in &tenants {
            total += crate::store::notify::feed(&server.db, tenant, 0, 1_000_000)
                .await?
                .len();
        }
        if total >= o.backlog {
            break;
        }
        if Instant::now() > deadline {
            return Err(fail(format!(
                "the notifier wrote {total} of {} messages",
                o.backlog
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Endpoints and the receiver.
    let mut secrets = Vec::new();
    let mut endpoints = Vec::new();
    let seen = Arc::new(Seen::default());
    let mut keys = Vec::new();
    let mut created = Vec::new();
    for tenant in &tenants {
        for _ in 0..o.endpoints_per_tenant {
            created.push(tenant.clone());
            keys.push(Vec::new());
        }
    }
    // The endpoints first (disabled, pointing nowhere): the receiver needs their secrets, and
    // they get the receiver's address once it listens.
    let keys_cell: Arc<Vec<Vec<u8>>>;
    {
        let mut filled = keys;
        for (n, tenant) in created.iter().enumerate() {
            let r = http
                .post(format!("{base}/v1/tenants/{tenant}/endpoints"))
                .bearer_auth(TOKEN)
                .json(&serde_json::json!({"url": format!("http://127.0.0.1:1/hook/{n}"), "event_types": ["invoice.failed"], "enabled": false}))
                .send()
                .await
                .map_err(|e| fail(e.to_string()))?;
            let body: serde_json::Value = r.json().await.map_err(|e| fail(e.to_string()))?;
            let secret = body["secret"].as_str().unwrap_or("").to_string();
            filled[n] = signing::secret_key(&secret).map_err(|e| fail(e.to_string()))?;
            secrets.push(secret);
            endpoints.push(body["id"].as_str().unwrap_or("").to_string());
        }
        keys_cell = Arc::new(filled);
    }
    let hook = receiver(Arc::clone(&keys_cell), Arc::clone(&seen)).await?;

    // Baseline: the payloads of the backlog, signed and POSTed straight to the receiver.
    let mut payloads: Vec<Vec<(String, String)>> = vec![Vec::new(); created.len()];
    for (n, tenant) in created.iter().enumerate() {
        for m in crate::store::notify::feed(&server.db, tenant, 0, 1_000_000).await? {
            payloads[n].push((m.id, m.payload));
        }
    }
    let baseline_total: usize = payloads.iter().map(Vec::len).sum();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (n, list) in payloads.into_iter().enumerate() {
        let http = http.clone();
        let key = keys_cell[n].clone();
        let url = format!("{hook}/hook/{n}");
        tasks.push(tokio::spawn(async move {
            for (id, body) in list {
                let ts = chrono::Utc::now().timestamp();
                let _ = http
                    .post(&url)
                    .header("webhook-id", &id)
                    .header("webhook-timestamp", ts.to_string())
                    .header("webhook-signature", signing::sign(&key, &id, ts, &body))
                    .body(body)
                    .send()
                    .await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let baseline_rate = per_second(baseline_total as u64, started.elapsed());
    seen.arrivals
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    seen.deliveries.store(0, Ordering::Relaxed);

    // Drain: point the endpoints at the receiver, enable them, resend the backlog to each.
    let range_to = chrono::Utc::now() + chrono::Duration::seconds(1);
    let started = Instant::now();
    for (n, (tenant, endpoint)) in created.iter().zip(&endpoints).enumerate() {
        for (method, path, body) in [
            (
                "PATCH",
                format!("/v1/tenants/{tenant}/endpoints/{endpoint}"),
                serde_json::json!({"url": format!("{hook}/hook/{n}"), "enabled": true}),
            ),
            (
                "POST",
                format!("/v1/tenants/{tenant}/endpoints/{endpoint}/resend"),
                serde_json::json!({"from": backlog_started.to_rfc3339(), "to": range_to.to_rfc3339()}),
            ),
        ] {
            let r = http
                .request(
                    method.parse().map_err(|_| fail("method".into()))?,
                    format!("{base}{path}"),
                )
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .map_err(|e| fail(e.to_string()))?;
            if !r.status().is_success() {
                return Err(fail(format!("{path}: {}", r.status())));
            }
        }
    }
    let drain_expected = (o.backlog * o.endpoints_per_tenant) as u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen.deliveries.load(Ordering::Relaxed) < drain_expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = seen.deliveries.load(Ordering::Relaxed);
    let drain_rate = per_second(drained, started.elapsed());
    seen.arrivals
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    seen.deliveries.store(0, Ordering::Relaxed);

    // Steady: events at the rate, each timed from its append.
    let appended: Arc<Mutex<HashMap<Key, Instant>>> = Arc::default();
    let interval = Duration::from_secs_f64(1.0 / o.rate.max(1) as f64);
    let total = o.rate * o.seconds;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..total as usize {
        let due = started + interval.mul_f64(k as f64);
        tokio::time::sleep_until(due.into()).await;
        let n = attempt.fetch_add(1, Ordering::Relaxed) + 1;
        let tenant = tenants[k % tenants.len()].clone();
        let invoice = (k / tenants.len()) % INVOICES_PER_TENANT;
        let command = record(&server, &tenant, invoice, n);
        let appended = Arc::clone(&appended);
        tasks.push(tokio::spawn(async move {
            if command.await.is_ok() {
                appended
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((tenant, format!("inv{invoice}"), n), Instant::now());
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let appending = started.elapsed();
    let expected = appended.lock().unwrap_or_else(|p| p.into_inner()).len() as u64
        * o.endpoints_per_tenant as u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.deliveries.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered_in = started.elapsed();
    let mut latencies = Vec::new();
    let mut lost = 0u64;
    {
        let appended = appended.lock().unwrap_or_else(|p| p.into_inner());
        let arrivals = seen.arrivals.lock().unwrap_or_else(|p| p.into_inner());
        for (key, at) in appended.iter() {
            let got = arrivals.get(key).map(Vec::as_slice).unwrap_or(&[]);
            lost += (o.endpoints_per_tenant as u64).saturating_sub(got.len() as u64);
            for arrival in got {
                latencies.push(arrival.saturating_duration_since(*at).as_secs_f64() * 1000.0);
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let steady_events = total;
    server.stop().await?;
    Ok(NotifyReport {
        tenants: o.tenants,
        endpoints: created.len(),
        baseline_posts_per_sec: baseline_rate,
        drain_deliveries: drained,
        drain_deliveries_per_sec: drain_rate,
        drain_ratio: drain_rate / baseline_rate.max(1e-9),
        steady_events,
        steady_events_per_sec: per_second(steady_events, appending),
        steady_deliveries_per_sec: per_second(
            seen.deliveries.load(Ordering::Relaxed),
            delivered_in,
        ),
        latency_p50_ms: percentile(&latencies, 0.50),
        latency_p95_ms: percentile(&latencies, 0.95),
        latency_p99_ms: percentile(&latencies, 0.99),
        latency_max_ms: latencies.last().copied().unwrap_or(0.0),
        lost,
        signature_failures: seen.bad_signatures.load(Ordering::Relaxed),
    })
}
