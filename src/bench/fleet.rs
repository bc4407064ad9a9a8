//! `bench fleet`: many shops, each its own Bling account with its own 3 req/s, on one
//! PostgreSQL. K shops bill a backlog of B invoices at once while the others bill one invoice
//! every few seconds; what a small shop waits for its fresh invoice, and how much of the fleet's
//! ceiling the worker uses, are the figures (issue "A fleet of shops").
//!
//! Measured from the outside only, so it measures any scheduler: invoices go in through the
//! HTTP API, their billing and situação times come from the event log, Bling's calls from the
//! sandbox's call log. Shops connect through the real OAuth flow.
//!
//! - **Small-shop latency**: `InvoiceBilled` → `SituacaoChanged` of the trickling shops'
//!   invoices (p50, p95, max).
//! - **Aggregate rate against Σ ceilings**: for each second, the calls Bling received against
//!   3 × the shops that had an invoice billed and not yet synced at that second, summed over
//!   the run.
//! - **The machine's own ceiling**: the same bench with every limit off (sandbox and client),
//!   the calls per second the two cores sustain.
//!
//! Two things are set apart from Bling here, and said so in the report: the sandbox's per-IP
//! blocks are off (Bling blocks an IP at 600 requests in 10 s, i.e. 60 req/s: a fleet on one
//! egress IP meets that at 20 shops at full speed; README, "Limits of a fleet"), and so is the
//! token guard on connecting (connecting 100 shops within Bling's 20 token calls a minute would
//! take five minutes of the bench).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ScratchDb;
use crate::auth::{Role, TenantScope, TokenRegistry};
use crate::oauth::crypto::{EncryptionKey, KeyRing};
use crate::sandbox::IpBlockConfig;
use crate::server::{Server, Settings, SyncConfig};
use crate::stack::{auth_settings_for, Stack, StackBuilder};
use crate::store::log::LogFilter;
use crate::store::{Db, StoreError};

const TOKEN: &str = "bench-fleet-admin";
/// Bling's per-account limit.
const BLING_RATE: u32 = 3;
/// Each server instance's connection pool: half of it is the scheduler's budget of jobs in
/// flight (two instances stay under PostgreSQL's default 100 connections).
const POOL: u32 = 40;

#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub shops: usize,
    pub backlog_shops: usize,
    pub backlog: usize,
    pub trickle_every: Duration,
    /// Server instances on the database, each with its own pool, worker and leases.
    pub workers: usize,
    /// The longest the bench waits for everything to sync.
    pub max_wait: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum FleetBenchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    Setup(String),
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct FleetRun {
    pub limits: bool,
    pub invoices: usize,
    pub synced: usize,
    pub seconds: f64,
    pub small_p50_ms: u64,
    pub small_p95_ms: u64,
    pub small_max_ms: u64,
    pub calls: usize,
    pub calls_per_sec: f64,
    /// Σ over seconds of 3 × shops with work, divided by the seconds: the mean ceiling.
    pub mean_ceiling_per_sec: f64,
    pub ratio_of_ceilings: f64,
    pub too_many_requests: usize,
    pub calls_per_invoice: f64,
    /// Calls by method and route (ids and queries left out), most first.
    pub calls_by_route: Vec<(String, usize)>,
    /// Orders in Bling (the sandbox) for the invoices measured: one each when no job ran twice.
    pub orders: usize,
    /// Look-ups of an order by our key: made only when a job runs again after its create may
    /// have reached Bling, so 0 when no job ran twice.
    pub rerun_lookups: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    pub shops: usize,
    pub backlog_shops: usize,
    pub backlog: usize,
    pub trickle_every_secs: f64,
    pub workers: usize,
    pub at_bling_limits: FleetRun,
    pub machine: FleetRun,
}

impl FleetReport {
    pub fn text(&self) -> String {
        let r = &self.at_bling_limits;
        let m = &self.machine;
        let target_ceiling = r.mean_ceiling_per_sec.min(m.calls_per_sec);
        format!(
            "shops {} ({} with {} invoices each, the rest one every {:.0} s), {} worker(s)\n\
             small shops, bill -> synced : p50 {} ms, p95 {} ms, max {} ms  (target p95 < 5 s)\n\
             aggregate Bling calls        : {:.1} req/s against a mean Σ ceiling of {:.1} req/s = {:.1}%\n\
             the machine's own ceiling    : {:.1} req/s (every limit off)\n\
             against the lower ceiling    : {:.1}%  (target >= 90%)\n\
             429 answers                  : {}  (target 0)\n\
             calls per invoice            : {:.2}  (target <= 2, contatos known)\n\
             calls by route               : {}\n\
             jobs run twice               : {} look-ups after a possible create, {} orders for {} invoices  (target 0, one each)\n\
             synced                       : {} of {} in {:.0} s\n\
             not Bling here: per-IP blocks off (Bling: 60 req/s per IP), token guard off for connecting\n",
            self.shops,
            self.backlog_shops,
            self.backlog,
            self.trickle_every_secs,
            self.workers,
            r.small_p50_ms,
            r.small_p95_ms,
            r.small_max_ms,
            r.calls_per_sec,
            r.mean_ceiling_per_sec,
            r.ratio_of_ceilings * 100.0,
            m.calls_per_sec,
            r.calls_per_sec / target_ceiling.max(1e-9) * 100.0,
            r.too_many_requests,
            r.calls_per_invoice,
            r.calls_by_route
                .iter()
                .map(|(route, n)| format!("{route} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            r.rerun_lookups,
            r.orders,
            r.invoices,
            r.synced,
            r.invoices,
            r.seconds,
        )
    }
}

pub async fn run(admin_url: &str, options: &FleetOptions) -> Result<FleetReport, FleetBenchError> {
    let mut runs = Vec::new();
    for limits in [true, false] {
        let scratch = ScratchDb::create(admin_url).await?;
        let outcome = measure(&scratch.url, options, limits).await;
        scratch.drop_database().await?;
        runs.push(outcome?);
    }
    let machine = runs
        .pop()
        .ok_or_else(|| FleetBenchError::Setup("no run".into()))?;
    let at_bling_limits = runs
        .pop()
        .ok_or_else(|| FleetBenchError::Setup("no run".into()))?;
    Ok(FleetReport {
        shops: options.shops,
        backlog_shops: options.backlog_shops,
        backlog: options.backlog,
        trickle_every_secs: options.trickle_every.as_secs_f64(),
        workers: options.workers,
        at_bling_limits,
        machine,
    })
}

fn shop(i: usize) -> String {
    format!("shop-{i:03}")
}

fn invoice_body(customer: usize, number: usize) -> serde_json::Value {
    serde_json::json!({
        "customer_id": format!("c{customer}"), "number": format!("{number}"), "issue_date": "2026-11-25",
        "items": [{"sku": "BANHO", "description": "Banho e tosa", "quantity": 1, "unit_price": 8000}],
        "installments": [{"due_date": "2026-11-25", "amount": 8000, "payment_method": "pix"}],
        "total": 8000
    })
}

async fn measure(
    url: &str,
    options: &FleetOptions,
    limits: bool,
) -> Result<FleetRun, FleetBenchError> {
    let rate = if limits { BLING_RATE } else { 0 };
    let keys = KeyRing::new(
        EncryptionKey::from_base64(&EncryptionKey::generate_base64())
            .map_err(|e| FleetBenchError::Setup(e.to_string()))?,
    );
    let tokens = TokenRegistry::default().with_token(TOKEN, "bench", Role::Admin, TenantScope::All);
    let sync_tweak = move |s: &mut SyncConfig| {
        s.client.rate_limit_per_sec = rate;
        s.client.daily_quota = 0;
        // The per-IP limit is off on both sides (the sandbox's blocks below): the bench
        // measures the accounts' ceiling, not one IP's.
        s.client.egress_per_sec = 0;
        s.settings.poll_interval = Duration::from_millis(50);
    };
    let Stack { sandbox, server } = StackBuilder::new(url)
        .max_connections(POOL)
        .tokens(tokens.clone())
        .keys(keys.clone())
        .sandbox(move |s| {
            s.rate_limit_per_sec = rate;
            s.daily_quota = 0;
            s.token_calls_per_minute = 0;
            s.ip_blocks = IpBlockConfig::off();
        })
        .auth(|a| a.token_calls_per_minute = 10_000)
        .sync(sync_tweak)
        .start()
        .await
        .map_err(|e| FleetBenchError::Setup(e.to_string()))?;
    // More server instances on the same database, as more processes would be.
    let mut others = Vec::new();
    for _ in 1..options.workers.max(1) {
        let mut auth = auth_settings_for(&sandbox, keys.clone());
        auth.token_calls_per_minute = 10_000;
        let mut sync = SyncConfig {
            bling_api_url: sandbox.base_url(),
            ..SyncConfig::default()
        };
        sync_tweak(&mut sync);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| FleetBenchError::Setup(e.to_string()))?;
        others.push(
            Server::start(
                Settings {
                    database_url: url.to_string(),
                    max_connections: POOL,
                    tokens: tokens.clone(),
                    auth: Some(auth),
                    sync,
                },
                listener,
            )
            .await
            .map_err(|e| FleetBenchError::Setup(e.to_string()))?,
        );
    }
    let http = reqwest::Client::new();
    let base = server.base_url();

    // Every shop connects through the consent flow, and registers its customers.
    let customers_of = |i: usize| if i < options.backlog_shops { 20 } else { 1 };
    for i in 0..options.shops {
        let answer: serde_json::Value = http
            .post(format!(
                "{base}/v1/tenants/{}/connection/authorize",
                shop(i)
            ))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .json()
            .await?;
        let authorize = answer["authorize_url"]
            .as_str()
            .ok_or_else(|| FleetBenchError::Setup(format!("no authorize_url: {answer}")))?;
        let consent = http
            .get(format!("{authorize}&account={}&auto_approve=1", shop(i)))
            .send()
            .await?;
        if !consent.status().is_success() {
            return Err(FleetBenchError::Setup(format!(
                "{} did not connect: {}",
                shop(i),
                consent.status()
            )));
        }
        for c in 0..customers_of(i) {
            let body = serde_json::json!({"name": format!("Cliente {c}"), "tax_id": super::cpf((i * 100 + c) as u64),
                "address": {"street": "Rua Augusta", "number": "100", "district": "Consolação",
                    "city": "São Paulo", "state": "SP", "cep": "01304-001"}});
            http.put(format!("{base}/v1/tenants/{}/customers/c{c}", shop(i)))
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await?;
        }
    }
    let customers: usize = (0..options.shops).map(customers_of).sum();
    let waited = Instant::now();
    while sandbox_contatos(&sandbox, options.shops) < customers {
        if waited.elapsed() > options.max_wait {
            return Err(FleetBenchError::Setup("the customers did not sync".into()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // From here every contato is known: the calls counted are the invoices'.
    sandbox.clear_call_log();
    let after = crate::store::log::head_position(&server.db).await?;
    let started = Instant::now();

    // The backlog, billed at once by 16 clients.
    let backlog: Vec<(usize, usize)> = (0..options.backlog_shops)
        .flat_map(|s| (0..options.backlog).map(move |n| (s, n)))
        .collect();
    let total_backlog = backlog.len();
    let queue = Arc::new(std::sync::Mutex::new(backlog));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (http, base, queue) = (http.clone(), base.clone(), Arc::clone(&queue));
        tasks.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some((s, n)) = next else {
                    return Ok::<(), reqwest::Error>(());
                };
                http.post(format!("{base}/v1/tenants/{}/invoices/b{n}/bill", shop(s)))
                    .bearer_auth(TOKEN)
                    .json(&invoice_body(n % 20, n))
                    .send()
                    .await?;
            }
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| FleetBenchError::Setup(e.to_string()))??;
    }

    // The trickle: each small shop bills one invoice every `trickle_every`, staggered, for as
    // long as the backlog lasts (at least two rounds).
    let small: Vec<usize> = (options.backlog_shops..options.shops).collect();
    let mut trickled = 0usize;
    let mut round = 0usize;
    let mut tracker = Tracker::default();
    let mut cursor = after;
    loop {
        let round_started = Instant::now();
        for (k, s) in small.iter().enumerate() {
            let offset = options
                .trickle_every
                .mul_f64(k as f64 / small.len().max(1) as f64);
            let wait = offset.saturating_sub(round_started.elapsed());
            tokio::time::sleep(wait).await;
            http.post(format!(
                "{base}/v1/tenants/{}/invoices/t{round}/bill",
                shop(*s)
            ))
            .bearer_auth(TOKEN)
            .json(&invoice_body(0, round))
            .send()
            .await?;
            trickled += 1;
        }
        tokio::time::sleep(
            options
                .trickle_every
                .saturating_sub(round_started.elapsed()),
        )
        .await;
        round += 1;
        cursor = tracker.read(&server.db, cursor).await?;
        let backlog_synced = tracker.synced_with_prefix("b");
        if (round >= 2 && backlog_synced >= total_backlog) || started.elapsed() > options.max_wait {
            break;
        }
    }
    let invoices = total_backlog + trickled;
    while tracker.synced() < invoices && started.elapsed() < options.max_wait {
        tokio::time::sleep(Duration::from_millis(500)).await;
        cursor = tracker.read(&server.db, cursor).await?;
    }
    let seconds = started.elapsed().as_secs_f64();

    let log = sandbox.call_log();
    let api: Vec<_> = log.iter().filter(|c| !c.path.contains("/oauth/")).collect();
    let too_many = api.iter().filter(|c| c.status == Some(429)).count();
    let mut by_route: HashMap<String, usize> = HashMap::new();
    for c in &api {
        let path = c.path.trim_start_matches("/Api/v3");
        let path = path.split('?').next().unwrap_or(path);
        let route: Vec<&str> = path
            .split('/')
            .map(|seg| {
                if !seg.is_empty() && seg.chars().all(|ch| ch.is_ascii_digit()) {
                    "{id}"
                } else {
                    seg
                }
            })
            .collect();
        *by_route
            .entry(format!("{} {}", c.method, route.join("/")))
            .or_default() += 1;
    }
    let mut calls_by_route: Vec<(String, usize)> = by_route.into_iter().collect();
    calls_by_route.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut small_latencies: Vec<u64> = tracker.latencies_with_prefix("t").into_iter().collect();
    small_latencies.sort_unstable();
    let pick = |q: f64| -> u64 {
        if small_latencies.is_empty() {
            return 0;
        }
        let i = ((small_latencies.len() as f64 - 1.0) * q).round() as usize;
        small_latencies[i.min(small_latencies.len() - 1)]
    };
    // Per second: calls against 3 × shops with an invoice billed and not yet synced.
    let t0 = tracker.first_billed().unwrap_or_else(Utc::now);
    let mut calls_by_second: BTreeMap<i64, usize> = BTreeMap::new();
    for c in &api {
        *calls_by_second
            .entry((c.at - t0).num_seconds())
            .or_default() += 1;
    }
    let last_second = calls_by_second.keys().next_back().copied().unwrap_or(0);
    let mut ceiling_sum = 0.0;
    let mut seconds_with_work = 0usize;
    let mut calls_in_work = 0usize;
    for sec in 0..=last_second {
        let at = t0 + chrono::Duration::seconds(sec);
        let shops = tracker.shops_with_work_at(at);
        if shops > 0 {
            seconds_with_work += 1;
            ceiling_sum += f64::from(BLING_RATE) * shops as f64;
            calls_in_work += calls_by_second.get(&sec).copied().unwrap_or(0);
        }
    }
    let calls_per_sec = calls_in_work as f64 / seconds_with_work.max(1) as f64;
    let mean_ceiling = ceiling_sum / seconds_with_work.max(1) as f64;
    let orders: usize = (0..options.shops)
        .map(|i| sandbox.pedidos(&shop(i)).len())
        .sum();
    let rerun_lookups = api
        .iter()
        .filter(|c| c.method == "GET" && c.path.contains("numerosLojas"))
        .count();
    for other in others {
        other
            .stop()
            .await
            .map_err(|e| FleetBenchError::Setup(e.to_string()))?;
    }
    server
        .stop()
        .await
        .map_err(|e| FleetBenchError::Setup(e.to_string()))?;
    sandbox.shutdown().await;
    Ok(FleetRun {
        limits,
        invoices,
        synced: tracker.synced(),
        seconds,
        small_p50_ms: pick(0.5),
        small_p95_ms: pick(0.95),
        small_max_ms: small_latencies.last().copied().unwrap_or(0),
        calls: api.len(),
        calls_per_sec,
        mean_ceiling_per_sec: mean_ceiling,
        ratio_of_ceilings: if limits {
            calls_in_work as f64 / ceiling_sum.max(1e-9)
        } else {
            1.0
        },
        too_many_requests: too_many,
        calls_per_invoice: api.len() as f64 / invoices.max(1) as f64,
        calls_by_route,
        orders,
        rerun_lookups,
    })
}

fn sandbox_contatos(sandbox: &crate::sandbox::Sandbox, shops: usize) -> usize {
    (0..shops).map(|i| sandbox.contatos(&shop(i)).len()).sum()
}

/// When an invoice was billed and when it first reached its situação.
type Times = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// Each invoice's billing and first situação time, from the log.
#[derive(Default)]
struct Tracker {
    /// `tenant/invoice` → (billed, synced).
    invoices: HashMap<String, Times>,
}

impl Tracker {
    async fn read(&mut self, db: &Db, mut after: i64) -> Result<i64, StoreError> {
        let filter = LogFilter {
            aggregate_type: Some("Invoice".into()),
            ..LogFilter::default()
        };
        loop {
            let page = crate::store::log::read_from(db, after, 5_000, &filter).await?;
            let Some(last) = page.last().map(|e| e.position) else {
                return Ok(after);
            };
            for e in page {
                let entry = self.invoices.entry(e.aggregate_id.clone()).or_default();
                match e.event_type.as_str() {
                    "InvoiceBilled" => entry.0 = Some(e.recorded_at),
                    "SituacaoChanged" if entry.1.is_none() => entry.1 = Some(e.recorded_at),
                    _ => {}
                }
            }
            after = last;
        }
    }

    fn invoice_part(id: &str) -> &str {
        id.rsplit('/').next().unwrap_or(id)
    }

    fn synced(&self) -> usize {
        self.invoices.values().filter(|(_, s)| s.is_some()).count()
    }

    fn synced_with_prefix(&self, prefix: &str) -> usize {
        self.invoices
            .iter()
            .filter(|(id, (_, s))| s.is_some() && Self::invoice_part(id).starts_with(prefix))
            .count()
    }

    fn latencies_with_prefix(&self, prefix: &str) -> Vec<u64> {
        self.invoices
            .iter()
            .filter(|(id, _)| Self::invoice_part(id).starts_with(prefix))
            .filter_map(|(_, (b, s))| Some(((*s)? - (*b)?).num_milliseconds().max(0) as u64))
            .collect()
    }

    fn first_billed(&self) -> Option<DateTime<Utc>> {
        self.invoices.values().filter_map(|(b, _)| *b).min()
    }

    /// Shops with an invoice billed at or before `at` and not synced by then.
    fn shops_with_work_at(&self, at: DateTime<Utc>) -> usize {
        let mut shops = std::collections::HashSet::new();
        for (id, (b, s)) in &self.invoices {
            if b.is_some_and(|b| b <= at) && s.is_none_or(|s| s > at) {
                shops.insert(id.split('/').next().unwrap_or(id));
            }
        }
        shops.len()
    }
}
