//! Webhook intake under a flood: signed Bling deliveries sent at a fixed rate (open loop, as
//! Bling sends whatever the receiver does) while the pet shop keeps ingesting; the answer
//! times (p50/p99/max), and the ingest rate against the ingest rate of the same run without
//! the flood, measured before and after it (PostgreSQL, scratch database; the sandbox and the
//! whole service in-process; every phase starts from a settled ledger).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::ingest::BenchError;
use super::{per_second, ScratchDb};
use crate::auth::{Role, TenantScope, TokenRegistry};
use crate::bling::webhooks::sign;
use crate::sandbox::SandboxConfig;
use crate::stack::StackBuilder;

#[derive(Debug, Clone, Serialize)]
pub struct WebhooksReport {
    pub seconds: f64,
    pub target_rate: u32,
    pub ingest_clients: usize,
    pub deliveries_sent: u64,
    pub deliveries_accepted: u64,
    pub deliveries_per_sec: f64,
    pub answer_p50_ms: f64,
    pub answer_p99_ms: f64,
    pub answer_max_ms: f64,
    /// The mean of the two phases without the flood, before and after it.
    pub ingest_alone_per_sec: f64,
    pub ingest_before_per_sec: f64,
    pub ingest_after_per_sec: f64,
    pub ingest_with_flood_per_sec: f64,
    pub ingest_ratio: f64,
}

impl WebhooksReport {
    pub fn text(&self) -> String {
        format!(
            "deliveries accepted   : {:>10.0} /s (asked {} /s, {} of {} sent)\n\
             answer time p50/p99   : {:>7.1} / {:.1} ms  (max {:.1} ms; target p99 < 100 ms)\n\
             ingest alone          : {:>10.0} requests/s (before {:.0}, after {:.0})\n\
             ingest under the flood: {:>10.0} requests/s\n\
             ratio                 : {:>10.1}%  (target >= 80%)\n",
            self.deliveries_per_sec,
            self.target_rate,
            self.deliveries_accepted,
            self.deliveries_sent,
            self.answer_p50_ms,
            self.answer_p99_ms,
            self.answer_max_ms,
            self.ingest_alone_per_sec,
            self.ingest_before_per_sec,
            self.ingest_after_per_sec,
            self.ingest_with_flood_per_sec,
            self.ingest_ratio * 100.0,
        )
    }
}

const TOKEN: &str = "bench-webhooks-token";
const TENANT: &str = "bench";
const COMPANY: &str = "0123456789abcdef0123456789abcdef";
/// Deliveries in flight at most (a receiver slower than this falls behind the target rate,
/// which the report shows).
const IN_FLIGHT: usize = 512;

pub async fn run(
    admin_url: &str,
    rate: u32,
    clients: usize,
    duration: Duration,
) -> Result<WebhooksReport, BenchError> {
    let scratch = ScratchDb::create(admin_url).await?;
    let outcome = measure(&scratch.url, rate, clients, duration).await;
    scratch.drop_database().await?;
    outcome
}

async fn ingest(
    http: &reqwest::Client,
    base: &str,
    clients: usize,
    duration: Duration,
    phase: &str,
) -> f64 {
    let accepted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, base, accepted) = (http.clone(), base.to_string(), Arc::clone(&accepted));
        let phase = phase.to_string();
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while started.elapsed() < duration {
                i += 1;
                let body = serde_json::json!({
                    "name": format!("Cliente {c}-{i}"),
                    "tax_id": super::cpf(i * 64 + c as u64),
                    "email": "cliente@example.com.br",
                    "address": {"street": "Rua A", "number": "1", "district": "Centro",
                                "city": "Campinas", "state": "SP", "cep": "13010-000"}
                });
                let r = http
                    .put(format!(
                        "{base}/v1/tenants/{TENANT}/customers/{phase}{c}-{i}"
                    ))
                    .bearer_auth(TOKEN)
                    .json(&body)
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status().as_u16() == 201) {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    per_second(accepted.load(Ordering::Relaxed), started.elapsed())
}

/// Waits (at most a minute) until the projections have read the whole log and no sync work
/// and no webhook delivery is due.
async fn quiesce(db: &crate::store::Db) -> Result<(), BenchError> {
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        let lagging = crate::projections::status(db)
            .await?
            .iter()
            .any(|s| s.lag > 0);
        let due = crate::store::sync_work::waiting_tenants(db, 1).await?;
        let deliveries = crate::store::webhooks::due(db, 1).await?;
        if !lagging && due.is_empty() && deliveries.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn measure(
    url: &str,
    rate: u32,
    clients: usize,
    duration: Duration,
) -> Result<WebhooksReport, BenchError> {
    let tokens = TokenRegistry::default().with_token(TOKEN, "bench", Role::Admin, TenantScope::All);
    let stack = StackBuilder::new(url)
        .max_connections(clients as u32 + 8)
        .tokens(tokens)
        .start()
        .await
        .map_err(|e| BenchError::Io(std::io::Error::other(e.to_string())))?;
    // The tenant's Bling company, as a connection records it: deliveries are processed.
    crate::store::webhooks::record_company(&stack.server.db, COMPANY, TENANT, "Bench").await?;
    let base = stack.server.base_url();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()
        .map_err(std::io::Error::other)?;

    // Each phase starts from a settled ledger: the first phase's customers leave the
    // projections and the sync worker work that would otherwise run during the second and be
    // counted against the flood.
    quiesce(&stack.server.db).await?;
    let alone = ingest(&http, &base, clients, duration, "a").await;
    quiesce(&stack.server.db).await?;

    let url = format!("{base}/webhooks/bling");
    let secret = SandboxConfig::DEMO_CLIENT_SECRET.as_bytes().to_vec();
    // The deliveries, built and signed before the clock starts: that is Bling's work, done on
    // Bling's machines, not the receiver's.
    let planned = (u64::from(rate) * duration.as_secs().max(1) * 11 / 10) as usize + 16;
    let deliveries: Vec<(Vec<u8>, String)> = (1..=planned as u64)
        .map(|n| {
            let body = serde_json::json!({
                "eventId": uuid::Uuid::new_v4().to_string(), "date": "2026-12-03T09:00:00Z",
                "version": "v1", "event": "order.updated", "companyId": COMPANY,
                "data": {"id": 900_000_000_000i64 + n as i64, "situacao": {"id": 9, "valor": 1}},
            })
            .to_string()
            .into_bytes();
            let signature = sign(&secret, &body);
            (body, signature)
        })
        .collect();
    let flood = {
        let http = http.clone();
        tokio::spawn(async move {
            let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
            let times = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
            let accepted = Arc::new(AtomicU64::new(0));
            let started = Instant::now();
            let mut sent = 0u64;
            let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut tasks = Vec::new();
            let mut deliveries = deliveries.into_iter();
            while started.elapsed() < duration {
                tick.tick().await;
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                let Some((body, signature)) = deliveries.next() else {
                    break;
                };
                sent += 1;
                let (http, url, times, accepted) = (
                    http.clone(),
                    url.clone(),
                    Arc::clone(&times),
                    Arc::clone(&accepted),
                );
                tasks.push(tokio::spawn(async move {
                    let t0 = Instant::now();
                    let r = http
                        .post(&url)
                        .header("X-Bling-Signature-256", signature)
                        .body(body)
                        .send()
                        .await;
                    let ms = t0.elapsed().as_secs_f64() * 1000.0;
                    if r.is_ok_and(|r| r.status().as_u16() == 202) {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    times.lock().unwrap_or_else(|p| p.into_inner()).push(ms);
                    drop(permit);
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
            let elapsed = started.elapsed();
            let mut times = std::mem::take(&mut *times.lock().unwrap_or_else(|p| p.into_inner()));
            times.sort_by(f64::total_cmp);
            (sent, accepted.load(Ordering::Relaxed), elapsed, times)
        })
    };
    let with_flood = ingest(&http, &base, clients, duration, "f").await;
    let (sent, accepted, elapsed, times) = flood
        .await
        .map_err(|e| BenchError::Io(std::io::Error::other(e)))?;
    // Ingest alone again, after the flood and its processing: the baseline is the mean of the
    // phases before and after (A-B-A), so a drift of the machine or of the growing tables
    // over the run does not count for or against the flood.
    quiesce(&stack.server.db).await?;
    let after = ingest(&http, &base, clients, duration, "b").await;
    let before = alone;
    let alone = (before + after) / 2.0;
    stack.stop().await?;
    Ok(WebhooksReport {
        seconds: duration.as_secs_f64(),
        target_rate: rate,
        ingest_clients: clients,
        deliveries_sent: sent,
        deliveries_accepted: accepted,
        deliveries_per_sec: per_second(accepted, elapsed),
        answer_p50_ms: percentile(&times, 0.50),
        answer_p99_ms: percentile(&times, 0.99),
        answer_max_ms: times.last().copied().unwrap_or(0.0),
        ingest_alone_per_sec: alone,
        ingest_before_per_sec: before,
        ingest_after_per_sec: after,
        ingest_with_flood_per_sec: with_flood,
        ingest_ratio: with_flood / alone.max(1e-9),
    })
}
