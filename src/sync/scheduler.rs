//! The fleet scheduler: every shop with due work served at once, each within its own Bling
//! limits, under one budget of jobs in flight per process.
//!
//! # How it runs
//! - **Dispatch never waits for a job.** The dispatcher follows the log in its own loop and
//!   turns new events into to-do rows as they come; a slow tenant cannot hold it back.
//! - **One loop per tenant with due work**, started as soon as its lease is taken
//!   ([`TenantLease`]); it ends, releasing the lease, when the tenant has nothing due and nothing
//!   running. Its jobs run up to `jobs_per_tenant` at a time for different customers, in the
//!   order their events were written per customer, all under the tenant's 3 req/s.
//! - **A global budget of jobs in flight** (`max_in_flight`) bounds the process instead of a
//!   count of tenants. A tenant loop takes a slot for each job and gives it back when the job
//!   ends. Slots are handed out fairly ([`FairSlots`]): a freed one goes to the waiting shop
//!   with the fewest jobs running, then to the one that waited longest — a fresh invoice of an
//!   idle shop passes every backlog shop's extra jobs, and a shop that got a little service
//!   queues again behind those already waiting.
//! - **Several processes share the fleet** through the leases: each takes free tenants,
//!   longest-waiting first. A process whose budget is exhausted leaves fresh tenants to the
//!   others for [`SATURATED_GRACE`] before taking them anyway, so work moves to whoever has
//!   capacity; a dead process's leases expire and its tenants are taken over. Fences
//!   (`store::sync_work`) keep a job whose lease was lost from writing or calling Bling.
//!
//! The tenant loops of [`SyncWorker::spawn`] live in a `JoinSet` owned by the scheduler's
//! task: stopping (or killing) the scheduler stops every job with it, as a process exit would.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};

use super::jobs::{self, Executor};
use super::lease::TenantLease;
use super::queue;
use super::slots::{FairSlots, Slot};
use super::SyncSettings;
use crate::bling::client::BlingClient;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::store::{now_ms, Db, StoreError};

/// How long a process with no free job slot leaves a tenant with fresh work to processes that
/// may have one, before taking it anyway. Short: a shop with nothing running gets this
/// process's next freed slot ahead of every backlog shop's extra jobs ([`FairSlots`]), so a long
/// grace only adds to its wait (at 1 s it was most of a small shop's 1.4 s in `bench fleet`).
pub const SATURATED_GRACE: Duration = Duration::from_millis(200);

/// How long a woken dispatcher waits for more changes (Bling's 3 req/s make 20 ms invisible;
/// under a burst of ingest it turns a round per request into one round per burst).
const WAKE_COALESCE: Duration = Duration::from_millis(20);

/// Tenants asked for at a time when looking for work.
const DISCOVERY_BATCH: i64 = 2_000;

pub struct SyncWorker {
    db: Db,
    executor: Executor,
    settings: SyncSettings,
    holder: String,
    /// New events may be in the log (ingest wakes the dispatcher).
    wake: Notify,
    /// New work may be due, or a tenant loop ended (the scheduler looks for tenants to take).
    work: Notify,
    metrics: Arc<Metrics>,
    slots: Arc<FairSlots>,
    /// Tenants this process runs now.
    active: Mutex<HashSet<String>>,
    in_flight: AtomicUsize,
    /// Set when the service stops: running jobs finish, no new one starts.
    stopping: AtomicBool,
}

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
            slots: FairSlots::new(settings.max_in_flight),
            settings,
            holder: format!("worker-{}", uuid::Uuid::new_v4().simple()),
            wake: Notify::new(),
            work: Notify::new(),
            metrics,
            active: Mutex::new(HashSet::new()),
            in_flight: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
        })
    }

    /// Tenants whose lease this worker holds now.
    pub fn leases_held(&self) -> usize {
        self.active_tenants().len()
    }

    /// Jobs running now in this process.
    pub fn jobs_in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The budget of jobs in flight.
    pub fn max_in_flight(&self) -> usize {
        self.slots.capacity()
    }

    fn active_tenants(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
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
            let n = queue::dispatch(&self.db, &self.settings).await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    /// Takes the tenants with due work that this process may run now: free leases, the
    /// longest-waiting first, none while saturated unless they have waited [`SATURATED_GRACE`].
    async fn take_tenants(&self) -> Result<Vec<Arc<TenantLease>>, StoreError> {
        let waiting = queue::waiting_tenants(&self.db, DISCOVERY_BATCH).await?;
        let now = now_ms();
        let grace = SATURATED_GRACE.as_millis() as i64;
        let mut taken = Vec::new();
        for (tenant, since) in waiting {
            if self.active_tenants().contains(&tenant) {
                continue;
            }
            if self.slots.available() == 0 && now - since < grace {
                continue;
            }
            if let Some(lease) =
                TenantLease::take(&self.db, &tenant, &self.holder, self.settings.lease_ttl).await?
            {
                self.active_tenants().insert(tenant);
                taken.push(lease);
            }
        }
        Ok(taken)
    }

    /// Runs the tenant's due jobs under its lease until none is due and none is running, with
    /// the lease's heartbeat beside them; then releases the lease. Returns how many jobs ran.
    #[tracing::instrument(name = "sync_tenant", skip_all, fields(tenant = %lease.tenant, fence = lease.token.fence, ran))]
    async fn run_tenant(&self, lease: Arc<TenantLease>) -> Result<usize, StoreError> {
        let ran = tokio::select! {
            ran = self.run_tenant_jobs(&lease) => ran,
            // Ends only when the lease is lost. The jobs running then are dropped: their gate
            // had closed and their fences refuse every write, so nothing of theirs could land.
            _ = lease.heartbeat(&self.db) => Err(StoreError::LeaseLost(format!(
                "tenant {} passed to another worker (fence {})",
                lease.tenant, lease.token.fence
            ))),
        };
        let released = lease.release(&self.db).await;
        self.active_tenants().remove(&lease.tenant);
        // Work may have arrived between the loop's last look and its end.
        self.work.notify_one();
        if let Ok(n) = &ran {
            tracing::Span::current().record("ran", n);
        }
        released.and(ran)
    }

    async fn run_tenant_jobs(&self, lease: &Arc<TenantLease>) -> Result<usize, StoreError> {
        let per_tenant = self.settings.jobs_per_tenant.max(1);
        let mut running = FuturesUnordered::new();
        // Customers with a job in flight: their next job waits for it.
        let mut busy: HashMap<String, ()> = HashMap::new();
        let mut ran = 0;
        let mut first_error = None;
        // Whether the last look found nothing more that may start now.
        let mut exhausted = false;
        loop {
            if !lease.is_valid() || first_error.is_some() || self.stopping.load(Ordering::Relaxed) {
                exhausted = true;
            }
            if running.len() < per_tenant && !exhausted {
                // Queue for a slot, and keep taking the results of jobs that end meanwhile.
                let permit = tokio::select! {
                    permit = self.slots.acquire(running.len()) => permit,
                    Some(done) = running.next(), if !running.is_empty() => {
                        self.job_ended(done, &mut busy, &mut ran, &mut first_error);
                        exhausted = false;
                        continue;
                    }
                };
                match self.next_job(lease, &busy).await {
                    Ok(Some(job)) => {
                        busy.insert(job.customer_id.clone(), ());
                        running.push(self.run_job(lease, job, permit));
                    }
                    Ok(None) => exhausted = true,
                    Err(error) => {
                        first_error.get_or_insert(error);
                    }
                }
                continue;
            }
            match running.next().await {
                Some(done) => {
                    self.job_ended(done, &mut busy, &mut ran, &mut first_error);
                    exhausted = false;
                }
                None => {
                    return match first_error {
                        Some(error) => Err(error),
                        None => Ok(ran),
                    }
                }
            }
        }
    }

    fn job_ended(
        &self,
        (customer, outcome): (String, Result<(), StoreError>),
        busy: &mut HashMap<String, ()>,
        ran: &mut usize,
        first_error: &mut Option<StoreError>,
    ) {
        busy.remove(&customer);
        match outcome {
            Ok(()) => *ran += 1,
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }

    /// The oldest due job of a customer with nothing in flight.
    async fn next_job(
        &self,
        lease: &TenantLease,
        busy: &HashMap<String, ()>,
    ) -> Result<Option<queue::Job>, StoreError> {
        let candidates = queue::next_jobs(&self.db, &lease.tenant, busy.len() + 1).await?;
        Ok(candidates
            .into_iter()
            .find(|job| !busy.contains_key(&job.customer_id))
            .map(|job| lease.stamp(job)))
    }

    async fn run_job(
        &self,
        lease: &Arc<TenantLease>,
        job: queue::Job,
        permit: Slot,
    ) -> (String, Result<(), StoreError>) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let outcome = lease.scope(self.executor.run(&job)).await;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        drop(permit);
        let label = outcome.as_ref().map_or_else(
            |e| match e {
                StoreError::LeaseLost(_) => "lease_lost",
                _ => "error",
            },
            jobs::outcome_label,
        );
        self.metrics.record_job(job.kind.as_str(), label);
        (job.customer_id, outcome.map(|_| ()))
    }

    /// One pass, in the caller's task: dispatch, then run every tenant with due work that this
    /// process can take, concurrently, until each has nothing due. Returns how many jobs ran.
    pub async fn tick(&self) -> Result<usize, StoreError> {
        self.dispatch_all().await?;
        let leases = self.take_tenants().await?;
        let mut runs: FuturesUnordered<_> = leases
            .into_iter()
            .map(|lease| self.run_tenant(lease))
            .collect();
        let mut ran = 0;
        let mut first_error = None;
        while let Some(result) = runs.next().await {
            match result {
                Ok(n) => ran += n,
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
            if ran == 0 {
                // Due work another process holds, or a tenant just released: look again soon.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// Runs until `stop` turns true: the dispatcher and the scheduler, each in its own loop.
    pub fn spawn(self: Arc<Self>, stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            tokio::join!(
                self.dispatch_loop(stop.clone()),
                Arc::clone(&self).schedule_loop(stop)
            );
        })
    }

    async fn dispatch_loop(&self, mut stop: watch::Receiver<bool>) {
        loop {
            match self.dispatch_all().await {
                Ok(0) => {}
                Ok(_) => self.work.notify_one(),
                Err(error) => tracing::error!(%error, "sync dispatch failed; retrying"),
            }
            let woken = tokio::select! {
                _ = tokio::time::sleep(self.settings.poll_interval) => false,
                _ = self.wake.notified() => true,
                _ = stop.wait_for(|s| *s) => return,
            };
            if woken {
                tokio::time::sleep(WAKE_COALESCE).await;
            }
        }
    }

    async fn schedule_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        // Owned here: when this loop ends (stopped, or its task killed) every tenant's jobs end.
        let mut tenants = JoinSet::new();
        loop {
            match self.take_tenants().await {
                Ok(leases) => {
                    for lease in leases {
                        let worker = Arc::clone(&self);
                        tenants.spawn(async move {
                            if let Err(error) = worker.run_tenant(lease).await {
                                match error {
                                    StoreError::LeaseLost(why) => {
                                        tracing::warn!(%why, "sync tenant stopped: lease lost")
                                    }
                                    error => tracing::error!(%error, "sync tenant round failed"),
                                }
                            }
                        });
                    }
                }
                Err(error) => tracing::error!(%error, "looking for sync work failed; retrying"),
            }
            // Reap finished loops so the set does not grow.
            while tenants.try_join_next().is_some() {}
            tokio::select! {
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
                _ = self.work.notified() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        // Let running jobs finish (a job dropped mid-call loses its outcome); start no more.
        self.stopping.store(true, Ordering::Relaxed);
        while tenants.join_next().await.is_some() {}
    }
}
