//! Draining a revocation's backlog: invoices parked while the shop's authorization was
//! revoked, then a reconnection. Measures how close the replay runs to Bling's request
//! ceiling, that it never meets a 429, and how many calls each invoice costs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::ScratchDb;
use crate::auth::{Role, TenantScope, TokenRegistry};
use crate::sandbox::Sandbox;
use crate::server::Server;
use crate::stack::{Stack, StackBuilder};
use crate::store::sync_work;
use crate::store::{Db, StoreError};

#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub database: String,
    pub invoices: usize,
    pub ceiling_per_sec: u32,
    pub park_seconds: f64,
    pub drain_seconds: f64,
    pub bling_calls: usize,
    /// Calls per second from the first call of the drain to its last.
    pub achieved_per_sec: f64,
    pub ratio_of_ceiling: f64,
    pub too_many_requests: usize,
    pub calls_per_invoice: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncBenchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("server: {0}")]
    Server(#[from] crate::server::ServeError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    Setup(String),
}

const TOKEN: &str = "bench-admin-token";
const TENANT: &str = "bench-shop";

/// Runs the benchmark on `database_url` (a scratch database is created on PostgreSQL; SQLite
/// uses a temporary file).
pub async fn run(
    database_url: &str,
    invoices: usize,
    ceiling: u32,
) -> Result<SyncReport, SyncBenchError> {
    if database_url.starts_with("postgres") {
        let scratch = ScratchDb::create(database_url).await?;
        let outcome = measure(&scratch.url, "postgres", invoices, ceiling).await;
        scratch.drop_database().await?;
        outcome
    } else {
        let dir = std::env::temp_dir().join(format!(
            "bling-ledger-bench-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)?;
        let url = format!("sqlite://{}", dir.join("bench.db").display());
        let outcome = measure(&url, "sqlite", invoices, ceiling).await;
        let _ = std::fs::remove_dir_all(&dir);
        outcome
    }
}

/// Waits until `want` invoices' work is in `state`.
async fn wait_for(db: &Db, state: &str, want: i64, limit: Duration) -> Result<(), SyncBenchError> {
    let deadline = Instant::now() + limit;
    loop {
        if sync_work::invoices_in_state(db, None, state, false).await? >= want {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(SyncBenchError::Setup(format!(
                "timed out waiting for {want} invoices {state}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A shop's regular customers; the backlog spreads over them as a day's invoices would.
const CUSTOMERS: usize = 200;

fn invoice_body(number: usize) -> serde_json::Value {
    serde_json::json!({
        "customer_id": format!("c{}", number % CUSTOMERS), "number": format!("NF-{number}"), "issue_date": "2026-11-25",
        "items": [{"sku": "BANHO", "description": "Banho e tosa", "quantity": 1, "unit_price": 8000}],
        "installments": [{"due_date": "2026-11-25", "amount": 8000, "payment_method": "pix"}],
        "total": 8000
    })
}

async fn measure(
    url: &str,
    backend: &str,
    invoices: usize,
    ceiling: u32,
) -> Result<SyncReport, SyncBenchError> {
    let Stack { sandbox, server } = StackBuilder::new(url)
        .max_connections(48)
        .tokens(TokenRegistry::default().with_token(TOKEN, "bench", Role::Admin, TenantScope::All))
        .sandbox(move |s| {
            s.rate_limit_per_sec = ceiling;
            s.daily_quota = 0;
            // The bench scales one account past Bling's 3 req/s; Bling's per-IP blocks (600
            // requests or 300 errors in 10 s) would then stop it at 60 req/s, which is not what
            // it measures. A fleet on one egress IP meets that limit for real (README).
            s.ip_blocks = crate::sandbox::IpBlockConfig::off();
        })
        .auth(|a| a.state_ttl = Duration::from_secs(60))
        .sync(move |s| {
            s.client.rate_limit_per_sec = ceiling;
            s.client.daily_quota = 0;
            // The per-IP limit is off on both sides (the sandbox's blocks above).
            s.client.egress_per_sec = 0;
            s.settings.poll_interval = Duration::from_millis(50);
            s.settings.jobs_per_tenant = 24;
        })
        .start()
        .await
        .map_err(|e| SyncBenchError::Setup(e.to_string()))?;
    let outcome = drive(&server, &sandbox, backend, invoices, ceiling).await;
    server.stop().await?;
    sandbox.shutdown().await;
    outcome
}

async fn drive(
    server: &Server,
    sandbox: &Sandbox,
    backend: &str,
    invoices: usize,
    ceiling: u32,
) -> Result<SyncReport, SyncBenchError> {
    let http = reqwest::Client::new();
    let base = server.base_url();
    let connect = || async {
        let answer: serde_json::Value = http
            .post(format!("{base}/v1/tenants/{TENANT}/connection/authorize"))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .json()
            .await?;
        let url = answer["authorize_url"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let page = http
            .get(format!("{url}&account={TENANT}&auto_approve=1"))
            .send()
            .await?;
        if !page.status().is_success() {
            return Err(SyncBenchError::Setup(format!(
                "connect answered {}",
                page.status()
            )));
        }
        Ok::<(), SyncBenchError>(())
    };
    connect().await?;
    // Warm-up: every customer's contato is in Bling before the revocation (the benchmark
    // measures invoices "whose contact is already synced").
    for c in 0..CUSTOMERS {
        let customer = serde_json::json!({
            "name": format!("Tutor {c}"), "tax_id": super::cpf(c as u64),
            "address": {"street": "Rua A", "number": "1", "district": "Centro", "city": "São Paulo", "state": "SP", "cep": "01001-000"}
        });
        http.put(format!("{base}/v1/tenants/{TENANT}/customers/c{c}"))
            .bearer_auth(TOKEN)
            .json(&customer)
            .send()
            .await?;
        http.post(format!(
            "{base}/v1/tenants/{TENANT}/invoices/warmup-{c}/bill"
        ))
        .bearer_auth(TOKEN)
        .json(&invoice_body(c))
        .send()
        .await?;
    }
    let db = &server.db;
    wait_for(db, "done", CUSTOMERS as i64, Duration::from_secs(600)).await?;

    // The shop changes its password; the day's invoices keep coming and park.
    sandbox.revoke_account(TENANT);
    let started = Instant::now();
    let clients = 16;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(1));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, base, next) = (http.clone(), base.clone(), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i > invoices {
                    return Ok::<(), reqwest::Error>(());
                }
                http.post(format!(
                    "{base}/v1/tenants/{TENANT}/invoices/inv-{i:06}/bill"
                ))
                .bearer_auth(TOKEN)
                .json(&invoice_body(i))
                .send()
                .await?;
            }
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| SyncBenchError::Setup(e.to_string()))??;
    }
    wait_for(db, "parked", invoices as i64, Duration::from_secs(1800)).await?;
    let park_seconds = started.elapsed().as_secs_f64();

    // Support reconnects: the backlog drains by itself.
    sandbox.clear_call_log();
    let started = Instant::now();
    connect().await?;
    wait_for(
        db,
        "done",
        (invoices + CUSTOMERS) as i64,
        Duration::from_secs(3600),
    )
    .await?;
    let drain = started.elapsed().as_secs_f64();
    let log = sandbox.call_log();
    let api: Vec<_> = log.iter().filter(|c| !c.path.contains("/oauth/")).collect();
    let too_many = api.iter().filter(|c| c.status == Some(429)).count();
    // The request rate while draining: from the first call to the last. The drain time above
    // also counts the reconnection and the worker noticing it.
    let window = match (api.first(), api.last()) {
        (Some(first), Some(last)) if api.len() > 1 => {
            (last.at - first.at).num_microseconds().unwrap_or(0) as f64 / 1e6
        }
        _ => drain,
    };
    let achieved = (api.len().saturating_sub(1)) as f64 / window.max(1e-9);
    Ok(SyncReport {
        database: backend.to_string(),
        invoices,
        ceiling_per_sec: ceiling,
        park_seconds,
        drain_seconds: drain,
        bling_calls: api.len(),
        achieved_per_sec: achieved,
        ratio_of_ceiling: achieved / f64::from(ceiling.max(1)),
        too_many_requests: too_many,
        calls_per_invoice: api.len() as f64 / invoices.max(1) as f64,
    })
}
