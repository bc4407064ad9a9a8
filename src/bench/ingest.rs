//! Ingest throughput: the whole HTTP path (auth, JSON, validation, aggregate load, optimistic
//! append) against a raw single-row `INSERT` loop at the same concurrency, on PostgreSQL.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{per_second, ScratchDb};
use crate::auth::{Role, TenantScope, TokenRegistry};
use crate::server::{Server, Settings};
use crate::store::{scratch, Db, StoreError};

#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub clients: usize,
    pub seconds: f64,
    pub raw_inserts_per_sec: f64,
    pub ingest_requests_per_sec: f64,
    pub ratio: f64,
    pub ingest_errors: u64,
    /// The same ingest with sealing and encryption off (its own scratch database, same run),
    /// and what the seal costs: `1 - sealed / unsealed`, both without encryption.
    pub unsealed_ingest_requests_per_sec: f64,
    pub sealing_cost: f64,
    /// The same ingest sealed, with customers' personal data stored in clear (no master key),
    /// and what encrypting it costs: `1 - encrypted / clear`, both sealed. The product
    /// (`ingest_requests_per_sec`) is sealed and encrypted.
    pub unencrypted_ingest_requests_per_sec: f64,
    pub encryption_cost: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("server: {0}")]
    Server(#[from] crate::server::ServeError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

const TOKEN: &str = "bench-ingest-token";

pub async fn run(
    admin_url: &str,
    clients: usize,
    duration: Duration,
) -> Result<IngestReport, BenchError> {
    use crate::oauth::crypto::{EncryptionKey, KeyRing};
    use crate::store::personal;
    // The product: sealed, and each customer's profile encrypted under its data key.
    let key = EncryptionKey::from_base64(&EncryptionKey::generate_base64())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let scratch = ScratchDb::create(admin_url).await?;
    let db = Db::connect(&scratch.url, 1).await?;
    personal::install_master_keys(&db, &KeyRing::new(key));
    let outcome = measure(&scratch.url, clients, duration).await;
    personal::uninstall_master_keys(&db);
    db.close().await;
    scratch.drop_database().await?;
    let mut report = outcome?;
    // Sealed, profiles in clear, on a fresh database.
    let clear = ScratchDb::create(admin_url).await?;
    let sealed_clear = ingest_phase(&clear.url, clients, duration).await;
    clear.drop_database().await?;
    let (sealed_clear, _) = sealed_clear?;
    report.unencrypted_ingest_requests_per_sec = sealed_clear;
    report.encryption_cost = 1.0 - report.ingest_requests_per_sec / sealed_clear.max(1e-9);
    // Sealing off too, on a fresh database: the sequencer numbers without linking.
    let unsealed = ScratchDb::create(admin_url).await?;
    crate::store::events::seals::set_sealing(false);
    let baseline = ingest_phase(&unsealed.url, clients, duration).await;
    crate::store::events::seals::set_sealing(true);
    unsealed.drop_database().await?;
    let (rate, _) = baseline?;
    report.unsealed_ingest_requests_per_sec = rate;
    report.sealing_cost = 1.0 - sealed_clear / rate.max(1e-9);
    Ok(report)
}

async fn measure(
    url: &str,
    clients: usize,
    duration: Duration,
) -> Result<IngestReport, BenchError> {
    // Baseline: what the database does with a single-row insert of an event-sized row.
    let db = Db::connect(url, clients as u32 + 2).await?;
    db.migrate().await?;
    scratch::create_raw_baseline(&db)
        .await
        .map_err(|e| match e {
            StoreError::UnsupportedUrl(_) => StoreError::UnsupportedUrl(url.to_string()),
            e => e,
        })?;
    let payload =
        serde_json::json!({"CustomerRegistered": {"name": "Cliente", "tax_id": "52998224725"}});
    let inserted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let db = db.clone();
        let inserted = Arc::clone(&inserted);
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while started.elapsed() < duration {
                i += 1;
                let result =
                    scratch::insert_raw_baseline(&db, &format!("c{c}-{i}"), &payload).await;
                if result.is_ok() {
                    inserted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let raw_rate = per_second(inserted.load(Ordering::Relaxed), started.elapsed());
    db.close().await;
    let (ingest_rate, errors) = ingest_phase(url, clients, duration).await?;
    Ok(IngestReport {
        clients,
        seconds: duration.as_secs_f64(),
        raw_inserts_per_sec: raw_rate,
        ingest_requests_per_sec: ingest_rate,
        ratio: ingest_rate / raw_rate.max(1e-9),
        ingest_errors: errors,
        unsealed_ingest_requests_per_sec: 0.0,
        sealing_cost: 0.0,
        unencrypted_ingest_requests_per_sec: 0.0,
        encryption_cost: 0.0,
    })
}

/// Ingest requests accepted per second for `duration` (and the errors), the log sequenced (and
/// sealed, when on) by the server's own readers meanwhile.
async fn ingest_phase(
    url: &str,
    clients: usize,
    duration: Duration,
) -> Result<(f64, u64), BenchError> {
    // The product: HTTP requests that each register a new customer (one event each).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let tokens =
        TokenRegistry::default().with_token(TOKEN, "bench", Role::Ingest, TenantScope::All);
    let server = Server::start(
        Settings {
            database_url: url.to_string(),
            max_connections: clients as u32 + 2,
            tokens,
            auth: None,
            sync: Default::default(),
        },
        listener,
    )
    .await?;
    let base = server.base_url();
    let accepted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .map_err(std::io::Error::other)?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let http = http.clone();
        let base = base.clone();
        let accepted = Arc::clone(&accepted);
        let errors = Arc::clone(&errors);
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while started.elapsed() < duration {
                i += 1;
                let body = serde_json::json!({
                    "name": format!("Cliente {c}-{i}"),
                    "tax_id": "52998224725",
                    "email": "cliente@example.com.br",
                    "address": {"street": "Rua A", "number": "1", "district": "Centro",
                                "city": "Campinas", "state": "SP", "cep": "13010-000"}
                });
                let response = http
                    .put(format!("{base}/v1/tenants/bench/customers/c{c}-{i}"))
                    .bearer_auth(TOKEN)
                    .json(&body)
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().as_u16() == 201 => accepted.fetch_add(1, Ordering::Relaxed),
                    _ => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let ingest_rate = per_second(accepted.load(Ordering::Relaxed), started.elapsed());
    server.stop().await?;
    Ok((ingest_rate, errors.load(Ordering::Relaxed)))
}
