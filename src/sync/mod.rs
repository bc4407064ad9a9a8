//! The sync worker: follows the log, keeps Bling's contatos and pedidos matching the ledger.
//!
//! - [`scheduler`]: [`SyncWorker`], the fleet scheduler: continuous dispatch, a loop per tenant
//!   with due work, one fair budget of jobs in flight;
//! - [`lease`]: a tenant's lease as a worker holds it — heartbeat, and the fence on its jobs;
//! - [`slots`]: the budget of jobs in flight, handed to the shop with the fewest running;
//! - [`queue`]: the to-do list derived from the log (checkpointed), leases per tenant;
//! - [`jobs`]: one customer or invoice made to match, every outcome an event;
//! - [`mapping`]: our records as Bling's (discounts to the centavo);
//! - [`payment_methods`]: an installment's payment method as the account's forma de pagamento;
//! - [`nfe`]: each NF-e followed to SEFAZ's answer; orders compared with Bling's;
//! - [`watch`]: an invoice's order (and authorized NF-e) read again for a bounded window, for
//!   changes made in Bling that no webhook told.
//!
//! Work for one tenant runs on one worker at a time (a fenced lease in the database), in the
//! order its events were written per customer; every tenant with due work runs at once. When the tenant's authorization is revoked
//! the client refuses without calling Bling, jobs park, and a `Reconnected` event puts them
//! back in line.

pub mod jobs;
pub mod lease;
pub mod mapping;
pub mod nfe;
pub mod payment_methods;
pub mod queue;
pub mod scheduler;
pub mod slots;
pub mod watch;

use std::time::Duration;

use aggregates::ids::TenantId;

pub use scheduler::SyncWorker;

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
    /// A worker that stops renewing its lease for this long loses the tenant to another (a
    /// live worker renews it by heartbeat every third of this, whatever its jobs take).
    pub lease_ttl: Duration,
    /// Jobs running at once in this process, across all its tenants (each tenant is bounded
    /// by its own rate limit and `jobs_per_tenant`; this bounds the process). Keep it at most
    /// half the connection pool (`serve` caps it there).
    pub max_in_flight: usize,
    /// Jobs of one tenant run at once, for different customers (the tenant's rate limit is
    /// shared by them; this hides the database's latency between Bling calls). Keep it well
    /// below the connection pool's size; SQLite, with its single writer, always runs one.
    pub jobs_per_tenant: usize,
    pub dispatch_batch: i64,
    /// When the order watch reads Bling, from its window's opening (`watch::DEFAULT_OFFSETS`;
    /// empty: no watch).
    pub watch_offsets: Vec<Duration>,
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
            max_in_flight: 64,
            jobs_per_tenant: 4,
            dispatch_batch: 500,
            watch_offsets: watch::DEFAULT_OFFSETS.to_vec(),
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
