//! A tenant's lease as the worker holds it: taken once, renewed by a heartbeat for as long as
//! its jobs run (however long one job takes), and a fence on everything those jobs do.
//!
//! # Invariants
//! - The heartbeat renews every `ttl / 3`, independent of jobs: a job that waits two minutes for
//!   a slow Bling keeps its tenant, and another process cannot take it over meanwhile.
//! - The lease is *valid here* only until `ttl − ttl/4` after the start of its last successful
//!   renewal (measured on this process's monotonic clock), a quarter of the time-to-live earlier
//!   than the database lets another holder take it: that margin covers the time a renewal takes
//!   and clock skew between processes. A process that stalls (its database unreachable, the
//!   process stopped) therefore stops acting before anyone else may start.
//! - Once lost (a renewal found another holder) it never comes back; the tenant's loop ends.
//! - Every Bling call of a job passes the lease as its [`gate`](crate::bling::gate) (checked after
//!   the limiter's wait, right before sending); every ledger write of a job checks it in memory
//!   and in the database ([`ensure_held`]); the to-do list's writes are fenced in their own
//!   transaction (`store::sync_work`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::bling::gate::{self, CallGate};
use crate::store::sync_work::{self, Job, LeaseToken};
use crate::store::{Db, StoreError};

/// How long a released lease stays its holder's alone.
pub const LINGER: Duration = Duration::from_secs(15);

pub struct TenantLease {
    pub tenant: String,
    pub token: LeaseToken,
    ttl: Duration,
    valid_until: Mutex<Instant>,
    lost: AtomicBool,
}

impl TenantLease {
    /// Takes the tenant's lease if it is free. `None`: another live holder has it.
    pub async fn take(
        db: &Db,
        tenant: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Arc<TenantLease>>, StoreError> {
        let started = Instant::now();
        let Some(token) = sync_work::take_lease(db, tenant, holder, ttl_ms(ttl)).await? else {
            return Ok(None);
        };
        Ok(Some(Arc::new(TenantLease {
            tenant: tenant.to_string(),
            token,
            ttl,
            valid_until: Mutex::new(started + valid_for(ttl)),
            lost: AtomicBool::new(false),
        })))
    }

    /// Whether this process may still act for the tenant.
    pub fn is_valid(&self) -> bool {
        !self.lost.load(Ordering::Acquire)
            && Instant::now() < *self.valid_until.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Renews once: extends the validity on success, marks the lease lost when another holder
    /// has the tenant. A database error leaves the validity to run out by itself.
    pub async fn renew(&self, db: &Db) -> Result<bool, StoreError> {
        let started = Instant::now();
        if sync_work::renew_lease(db, &self.tenant, &self.token, ttl_ms(self.ttl)).await? {
            *self.valid_until.lock().unwrap_or_else(|p| p.into_inner()) =
                started + valid_for(self.ttl);
            Ok(true)
        } else {
            self.lost.store(true, Ordering::Release);
            Ok(false)
        }
    }

    /// Renews every `ttl / 3` until the lease is lost; never returns otherwise (run it beside
    /// the tenant's jobs and drop it when they are done).
    pub async fn heartbeat(&self, db: &Db) {
        let every = (self.ttl / 3).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(every).await;
            match self.renew(db).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(tenant = %self.tenant, fence = self.token.fence, "sync lease lost to another worker; stopping the tenant's jobs");
                    return;
                }
                Err(error) => {
                    tracing::warn!(tenant = %self.tenant, %error, "sync lease renewal failed; retrying")
                }
            }
        }
    }

    /// Gives the lease back, unless it was lost. It lingers a while for this holder
    /// ([`LINGER`], at most the lease's life): a shop billing every few seconds stays with the
    /// process that has its rate-limiter state and account discoveries, and a shop passes to
    /// another process only once its last call here is more than Bling's one-second window old
    /// (so the new holder's first calls cannot make a fourth in that window).
    pub async fn release(&self, db: &Db) -> Result<(), StoreError> {
        if self.is_lost() {
            return Ok(());
        }
        let linger = LINGER.min(self.ttl);
        sync_work::release(db, &self.tenant, &self.token, ttl_ms(linger)).await
    }

    /// Marks `job` as run under this lease (its to-do-list writes are fenced by it).
    pub fn stamp(&self, mut job: Job) -> Job {
        job.lease = Some(self.token.clone());
        job
    }

    /// Runs a job's work with this lease as its Bling gate and its ledger fence.
    pub async fn scope<F: std::future::Future>(self: &Arc<Self>, work: F) -> F::Output {
        let as_gate: Arc<dyn CallGate> = self.clone();
        gate::scope(as_gate, CURRENT.scope(Arc::clone(self), work)).await
    }
}

impl CallGate for TenantLease {
    fn open(&self) -> Result<(), String> {
        if self.is_valid() {
            Ok(())
        } else {
            Err(format!(
                "this worker's lease on tenant {} ended (fence {})",
                self.tenant, self.token.fence
            ))
        }
    }
}

tokio::task_local! {
    static CURRENT: Arc<TenantLease>;
}

/// Before a job writes to the ledger: the lease it runs under (if it runs under one) must
/// still be valid here and still be its holder's in the database. `LeaseLost` otherwise.
pub async fn ensure_held(db: &Db) -> Result<(), StoreError> {
    let Ok(lease) = CURRENT.try_with(Arc::clone) else {
        return Ok(());
    };
    if !lease.is_valid() {
        return Err(StoreError::LeaseLost(format!(
            "the lease on tenant {} ended before the write",
            lease.tenant
        )));
    }
    if sync_work::lease_holds(db, &lease.tenant, &lease.token).await? {
        Ok(())
    } else {
        lease.lost.store(true, Ordering::Release);
        Err(StoreError::LeaseLost(format!(
            "tenant {} passed to another worker",
            lease.tenant
        )))
    }
}

fn ttl_ms(ttl: Duration) -> i64 {
    ttl.as_millis().min(i64::MAX as u128) as i64
}

fn valid_for(ttl: Duration) -> Duration {
    ttl - ttl / 4
}
