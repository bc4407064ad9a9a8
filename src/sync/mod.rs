//! The sync worker: follows the log, keeps Bling's contatos and pedidos matching the ledger.
//!
//! - [`queue`]: the to-do list derived from the log (checkpointed), leases per tenant;
//! - [`jobs`]: one customer or invoice made to match, every outcome an event;
//! - [`mapping`]: our records as Bling's (discounts to the centavo);
//! - [`payment_methods`]: an installment's payment method as the account's forma de pagamento.
//!
//! Work for one tenant runs on one worker at a time (a lease in the database), in the order
//! its events were written; tenants run in parallel. When the tenant's authorization is revoked
//! the client refuses without calling Bling, jobs park, and a `Reconnected` event puts them
//! back in line.

pub mod jobs;
pub mod mapping;
pub mod nfe;
pub mod payment_methods;
pub mod queue;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aggregates::ids::TenantId;
use futures::StreamExt;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::bling::client::BlingClient;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::store::{Db, StoreError};
use jobs::Executor;

/// Which tenants have Bling generate the NF-e from the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NfeTenants {
    None,
    All,
    Only(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// How often to look for new events and due work when nothing wakes the worker.
    pub poll_interval: Duration,
    /// Delays after the 1st, 2nd, … transient failure; the last repeats.
    pub retry_schedule: Vec<Duration>,
    /// ± this fraction of randomness on each delay, so retries of many invoices spread out.
    pub retry_jitter: f64,
    /// The situação (by name, discovered per account) that lets the shop issue the NF-e.
    pub situacao_billed: String,
    /// The situação of a cancelled invoice's order.
    pub situacao_cancelled: String,
    pub generate_nfe: NfeTenants,
    /// Our installments' `payment_method` → the account's forma de pagamento.
    pub payment_methods: payment_methods::PaymentMethodMap,
    /// A worker that stops renewing its lease for this long loses the tenant to another.
    pub lease_ttl: Duration,
    pub max_parallel_tenants: usize,
    /// Jobs of one tenant run at once, for different customers (the tenant's rate limit is
    /// shared by them; this hides the database's latency between Bling calls). Keep it well
    /// below the connection pool's size; SQLite, with its single writer, always runs one.
    pub jobs_per_tenant: usize,
    pub dispatch_batch: i64,
}

impl Default for SyncSettings {
    fn default() -> Self {
        let m = |minutes: u64| Duration::from_secs(minutes * 60);
        Self {
            poll_interval: Duration::from_millis(500),
            retry_schedule: vec![Duration::from_secs(5), m(5), m(30), m(120), m(300), m(600)],
            retry_jitter: 0.2,
            situacao_billed: "Atendido".into(),
            situacao_cancelled: "Cancelado".into(),
            generate_nfe: NfeTenants::None,
            payment_methods: payment_methods::PaymentMethodMap::default(),
            lease_ttl: Duration::from_secs(60),
            max_parallel_tenants: 8,
            jobs_per_tenant: 4,
            dispatch_batch: 500,
        }
    }
}

impl SyncSettings {
    pub fn retry_delay(&self, failures_before: usize) -> Duration {
        let base = self
            .retry_schedule
            .get(failures_before)
            .or(self.retry_schedule.last())
            .copied()
            .unwrap_or(Duration::from_secs(60));
        let spread = self.retry_jitter.clamp(0.0, 1.0);
        let factor = 1.0 + spread * (rand::random::<f64>() * 2.0 - 1.0);
        base.mul_f64(factor.max(0.0))
    }

    pub fn generates_nfe(&self, tenant: &TenantId) -> bool {
        match &self.generate_nfe {
            NfeTenants::None => false,
            NfeTenants::All => true,
            NfeTenants::Only(list) => list.iter().any(|t| t == tenant.as_str()),
        }
    }
}

pub struct SyncWorker {
    db: Db,
    executor: Executor,
    settings: SyncSettings,
    holder: String,
    wake: Notify,
    metrics: Arc<Metrics>,
    /// Tenants whose lease this worker holds right now.
    leases: AtomicUsize,
}

/// Counts a lease in [`SyncWorker::leases_held`] from when it is taken until this is dropped
/// (released, lost, or the round ended by an error).
struct HeldLease<'a> {
    leases: &'a AtomicUsize,
    held: bool,
}

impl HeldLease<'_> {
    fn taken(&mut self) {
        if !self.held {
            self.held = true;
            self.leases.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for HeldLease<'_> {
    fn drop(&mut self) {
        if self.held {
            self.leases.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// How long a woken worker waits for more changes before its round (Bling's 3 req/s makes
/// 20 ms invisible).
const WAKE_COALESCE: Duration = Duration::from_millis(20);

impl SyncWorker {
    pub fn new(
        db: Db,
        ledger: Arc<Ledger>,
        client: BlingClient,
        settings: SyncSettings,
    ) -> Arc<Self> {
        Self::with_metrics(db, ledger, client, settings, Arc::default())
    }

    /// [`SyncWorker::new`], counting its jobs in `metrics` (the service's `/metrics`).
    pub fn with_metrics(
        db: Db,
        ledger: Arc<Ledger>,
        client: BlingClient,
        settings: SyncSettings,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            executor: Executor::new(db.clone(), ledger, client, settings.clone()),
            db,
            settings,
            holder: format!("worker-{}", uuid::Uuid::new_v4().simple()),
            wake: Notify::new(),
            metrics,
            leases: AtomicUsize::new(0),
        })
    }

    /// Tenants whose lease this worker holds now.
    pub fn leases_held(&self) -> usize {
        self.leases.load(Ordering::Relaxed)
    }

    pub fn client(&self) -> &BlingClient {
        self.executor.client()
    }

    /// Asks the worker to look now rather than at its next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Derives work from every event not yet dispatched.
    pub async fn dispatch_all(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let n = queue::dispatch(&self.db, self.settings.dispatch_batch).await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    /// Runs the tenant's due jobs while it holds the tenant's lease: each customer's jobs in
    /// order, up to `jobs_per_tenant` customers at once. Returns how many jobs ran.
    ///
    /// A job's slot is refilled as soon as it finishes, not when a whole batch has: a batch
    /// waits for its slowest job, and meanwhile the tenant's rate budget goes unused (at a
    /// scaled-up rate that idle tail cost 10% of the ceiling).
    #[tracing::instrument(name = "sync_tenant", skip(self), fields(ran))]
    pub async fn run_tenant(&self, tenant: &str) -> Result<usize, StoreError> {
        let ran = self.run_tenant_jobs(tenant).await;
        if let Ok(n) = &ran {
            tracing::Span::current().record("ran", n);
        }
        ran
    }

    async fn run_tenant_jobs(&self, tenant: &str) -> Result<usize, StoreError> {
        let ttl = self.settings.lease_ttl;
        let mut lease = HeldLease {
            leases: &self.leases,
            held: false,
        };
        let slots = self.settings.jobs_per_tenant.max(1);
        let mut ran = 0;
        let mut renewed_at: Option<tokio::time::Instant> = None;
        let mut running = futures::stream::FuturesUnordered::new();
        // Customers with a job in flight: their next job waits for it.
        let mut busy = std::collections::HashSet::new();
        loop {
            // A worker that dies loses the tenant after `lease_ttl`; a live one renews well
            // before (not before every job: that would be a write per job).
            if renewed_at.is_none_or(|at| at.elapsed() > ttl / 3) {
                if !queue::lease(&self.db, tenant, &self.holder, ttl.as_millis() as i64).await? {
                    return finish(&mut running, ran).await;
                }
                lease.taken();
                renewed_at = Some(tokio::time::Instant::now());
            }
            if running.len() < slots {
                let candidates = queue::next_jobs(&self.db, tenant, slots + busy.len()).await?;
                for job in candidates {
                    if running.len() >= slots {
                        break;
                    }
                    if busy.insert(job.customer_id.clone()) {
                        running.push(async move {
                            let outcome = self.executor.run(&job).await;
                            let label = outcome.as_ref().map_or("error", jobs::outcome_label);
                            self.metrics.record_job(job.kind.as_str(), label);
                            (job.customer_id, outcome.map(|_| ()))
                        });
                    }
                }
            }
            let Some((customer, outcome)) = running.next().await else {
                queue::release(&self.db, tenant, &self.holder).await?;
                return Ok(ran);
            };
            busy.remove(&customer);
            if let Err(error) = outcome {
                // Let the jobs in flight finish (a job dropped mid-call loses its outcome).
                finish(&mut running, ran).await?;
                return Err(error);
            }
            ran += 1;
        }
    }

    /// One round: dispatch, then run every tenant with due work (in parallel, bounded).
    pub async fn tick(&self) -> Result<usize, StoreError> {
        self.dispatch_all().await?;
        let tenants = queue::due_tenants(&self.db, 1000).await?;
        let results: Vec<Result<usize, StoreError>> = futures::stream::iter(tenants)
            .map(|tenant| async move { self.run_tenant(&tenant).await })
            .buffer_unordered(self.settings.max_parallel_tenants.max(1))
            .collect()
            .await;
        let mut ran = 0;
        for r in results {
            ran += r?;
        }
        Ok(ran)
    }

    /// Ticks until no work is due now, or `timeout` passes. For tests, benchmarks and the demo.
    pub async fn run_until_idle(&self, timeout: Duration) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let ran = self.tick().await?;
            let due = queue::due_tenants(&self.db, 1).await?;
            if ran == 0 && due.is_empty() && self.dispatch_all().await? == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Ok(());
            }
        }
    }

    /// Runs until `stop` turns true.
    pub fn spawn(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(error) = self.tick().await {
                    tracing::error!(%error, "sync round failed; retrying");
                }
                let woken = tokio::select! {
                    _ = tokio::time::sleep(self.settings.poll_interval) => false,
                    _ = self.wake.notified() => true,
                    _ = stop.wait_for(|s| *s) => return,
                };
                if woken {
                    // Under a burst of ingest every request wakes the worker; a short pause
                    // lets one round take the whole burst instead of a round per request.
                    tokio::time::sleep(WAKE_COALESCE).await;
                }
            }
        })
    }
}

/// Waits for the jobs still running; returns how many ran in all, or the first error.
async fn finish<F>(
    running: &mut futures::stream::FuturesUnordered<F>,
    mut ran: usize,
) -> Result<usize, StoreError>
where
    F: std::future::Future<Output = (String, Result<(), StoreError>)>,
{
    let mut first_error = None;
    while let Some((_, outcome)) = running.next().await {
        match outcome {
            Ok(()) => ran += 1,
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(ran),
    }
}
