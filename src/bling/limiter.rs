//! Bling's limits, kept on our side so we rarely see a 429: **3 requests per second and 120,000
//! per day per Bling account** (`docs/bling-api.md`, "Limits"). One tenant is one Bling account, so
//! both are keyed by [`TenantId`].
//!
//! # Why a per-process limiter is per-account correct
//! The limiter lives in memory, in one process. That is enough because the sync engine leases
//! each tenant to one worker at a time: every call for a Bling account goes through the one
//! process holding that tenant's lease, hence through one `TenantLimiter`. Other tenants, in this
//! process or others, have their own key and their own Bling allowance. When a lease moves, the
//! new holder starts with a fresh rate state; the previous holder stopped calling when it lost
//! the lease, so the per-second window is respected (at worst one call early right at the
//! handover, which Bling answers with a 429 the client retries). The daily count restarts at
//! zero in a new process: it is a guard against runaway loops, not an exact meter — Bling's
//! 429 with `Retry-After` remains the authority, also for other integrations sharing the
//! account.
//!
//! # The IP's limit: one budget for every account
//! Bling also counts requests per IP: **600 in 10 s blocks the IP for 10 minutes**, every shop
//! served from it at once (`docs/bling-api.md`, "Limits"). Twenty shops draining backlogs at
//! their 3 req/s each would reach it. So every call also takes a turn from one process-wide
//! [`Egress`] budget, after its tenant's: `per_sec` calls a second with a burst of one
//! second's worth, so any 10 s window holds at most `11 × per_sec` calls (550 at the default
//! 50, under Bling's 600 with room for the token endpoint). Processes that share one public IP
//! share Bling's budget: give each its part (`BLING_LEDGER_EGRESS_PER_SEC`).
//!
//! # Rate shape
//! Bling's per-second limit behaves as a sliding one-second window (the sandbox implements it
//! so). A GCRA with a burst of 3 would let a fourth call through 1/3 s after a burst of three,
//! inside the same window, so the quota here has a burst of **one** and spaces calls by
//! `1.02/rate` (a margin for network jitter): any one-second window then holds at most `rate`
//! calls, and the ceiling is used at 98%.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use aggregates::ids::TenantId;
use chrono::{DateTime, Duration as ChronoDuration, FixedOffset, NaiveDate, Utc};
use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Jitter, Quota, RateLimiter};
use std::collections::HashMap;

use crate::bling::error::BlingError;

/// Brasília time, where Bling's day turns. Brazil has had no daylight saving since 2019.
fn sao_paulo() -> FixedOffset {
    FixedOffset::west_opt(3 * 3600).expect("UTC-3 is a valid offset")
}

/// Bling's day at `now` and the time left until it ends (midnight America/Sao_Paulo).
pub fn bling_day(now: DateTime<Utc>) -> (NaiveDate, Duration) {
    let local = now.with_timezone(&sao_paulo());
    let day = local.date_naive();
    let next_midnight = day
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|t| t.and_local_timezone(sao_paulo()).single())
        .map(|t| t.with_timezone(&Utc));
    let left = next_midnight
        .map(|m| m - now)
        .unwrap_or_else(|| ChronoDuration::hours(24))
        .to_std()
        .unwrap_or(Duration::ZERO);
    (day, left)
}

/// Requests per day per tenant, reset at midnight Brasília time. Besides our own count, a day
/// Bling itself declared spent (a 429 with `"period":"day"`: other integrations of the shop
/// share the account's quota) stops the tenant until the next day, whatever our count says.
#[derive(Debug)]
pub struct DailyBudget {
    quota: u64,
    used: Mutex<HashMap<TenantId, (NaiveDate, u64)>>,
    spent_by_bling: Mutex<HashMap<TenantId, NaiveDate>>,
}

impl DailyBudget {
    /// `quota` requests per tenant per day; 0 disables the budget.
    pub fn new(quota: u64) -> DailyBudget {
        DailyBudget {
            quota,
            used: Mutex::new(HashMap::new()),
            spent_by_bling: Mutex::new(HashMap::new()),
        }
    }

    /// Bling answered that the account's quota for the day is spent: no call leaves for the
    /// tenant until midnight in Brasília.
    pub fn mark_spent(&self, tenant: &TenantId, now: DateTime<Utc>) {
        let (today, _) = bling_day(now);
        let mut spent = self
            .spent_by_bling
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        spent.retain(|_, day| *day >= today);
        spent.insert(tenant.clone(), today);
    }

    /// When the tenant may call again, if its day is spent (by our count or Bling's word).
    pub fn spent_until(&self, tenant: &TenantId, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (today, left) = bling_day(now);
        let by_bling = self
            .spent_by_bling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
            .is_some_and(|day| *day == today);
        let by_count = self.quota > 0 && self.used(tenant, now) >= self.quota;
        (by_bling || by_count).then(|| {
            now + ChronoDuration::from_std(left).unwrap_or_else(|_| ChronoDuration::hours(24))
        })
    }

    /// Takes one request from the tenant's budget, or tells how long until it resets.
    pub fn try_take(&self, tenant: &TenantId, now: DateTime<Utc>) -> Result<(), Duration> {
        let (today, left) = bling_day(now);
        let spent_by_bling = self
            .spent_by_bling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
            .is_some_and(|day| *day == today);
        if spent_by_bling {
            return Err(left);
        }
        if self.quota == 0 {
            return Ok(());
        }
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        // Forget other tenants' finished days now and then, so the map stays small.
        if used.len() > 1024 {
            used.retain(|_, (day, _)| *day == today);
        }
        let entry = used.entry(tenant.clone()).or_insert((today, 0));
        if entry.0 != today {
            *entry = (today, 0);
        }
        if entry.1 >= self.quota {
            return Err(left);
        }
        entry.1 += 1;
        Ok(())
    }

    /// Requests taken today (at `now`) by the tenant.
    pub fn used(&self, tenant: &TenantId, now: DateTime<Utc>) -> u64 {
        let (today, _) = bling_day(now);
        let used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        match used.get(tenant) {
            Some((day, n)) if *day == today => *n,
            _ => 0,
        }
    }
}

type KeyedLimiter = RateLimiter<TenantId, DefaultKeyedStateStore<TenantId>, DefaultClock>;

/// Calls are spaced by `(1 + SPACING_MARGIN) / rate`: 2% slower than the ceiling. Any one-second
/// window then holds at most `rate` sends, and two arrivals must be squeezed by ~20 ms of
/// network jitter (at any rate) before Bling could count `rate + 1` in one window; a fixed
/// margin would instead cost 3% at 3 req/s and most of the throughput at a sandbox's 300.
const SPACING_MARGIN: f64 = 0.02;

type DirectLimiter =
    RateLimiter<governor::state::NotKeyed, governor::state::InMemoryState, DefaultClock>;

/// The process's share of Bling's per-IP limit, taken by every call of every tenant (see the
/// module docs).
pub struct Egress {
    per_sec: NonZeroU32,
    limiter: DirectLimiter,
    /// Calls that had to wait for a turn, and how long they waited in all (ns): what tells an
    /// operator that the fleet is running at the IP's speed.
    delayed: AtomicU64,
    waited_ns: AtomicU64,
}

/// What the [`Egress`] budget has done since the process started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EgressStats {
    pub per_sec: u32,
    /// Calls that waited for a turn (more than a millisecond).
    pub delayed_calls: u64,
    pub waited_seconds: f64,
}

impl Egress {
    /// `per_sec` calls a second, a burst of one second's worth; `None` for 0 (no limit).
    pub fn new(per_sec: u32) -> Option<Egress> {
        let per_sec = NonZeroU32::new(per_sec)?;
        Some(Egress {
            per_sec,
            limiter: RateLimiter::direct(Quota::per_second(per_sec).allow_burst(per_sec)),
            delayed: AtomicU64::new(0),
            waited_ns: AtomicU64::new(0),
        })
    }

    pub fn stats(&self) -> EgressStats {
        EgressStats {
            per_sec: self.per_sec.get(),
            delayed_calls: self.delayed.load(Ordering::Relaxed),
            waited_seconds: self.waited_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }

    /// The most calls any `window` can hold: the burst, plus the rate over the window.
    pub fn most_in(&self, window: Duration) -> u64 {
        let per_sec = u64::from(self.per_sec.get());
        per_sec + (per_sec as f64 * window.as_secs_f64()).floor() as u64
    }

    /// Waits for the process's next turn. Many tenants wait here at once when the fleet is
    /// busy: a little jitter keeps them from all waking on the same tick.
    async fn acquire(&self) -> Duration {
        let started = std::time::Instant::now();
        self.limiter
            .until_ready_with_jitter(Jitter::up_to(Duration::from_millis(5)))
            .await;
        let waited = started.elapsed();
        if waited > Duration::from_millis(1) {
            self.delayed.fetch_add(1, Ordering::Relaxed);
            self.waited_ns.fetch_add(
                u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
        waited
    }
}

/// Per-tenant rate limit plus daily budget, and the process's [`Egress`] budget; one per
/// process (see the module docs).
pub struct TenantLimiter {
    rate: Option<KeyedLimiter>,
    daily: DailyBudget,
    jitter: Jitter,
    egress: Option<Egress>,
}

impl std::fmt::Debug for TenantLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantLimiter")
            .field("rate_limited", &self.rate.is_some())
            .field("daily", &self.daily.quota)
            .field("egress_per_sec", &self.egress.as_ref().map(|e| e.per_sec))
            .finish()
    }
}

impl TenantLimiter {
    /// `per_sec` requests per second and `daily_quota` per day per tenant; 0 disables either.
    pub fn new(per_sec: u32, daily_quota: u64) -> TenantLimiter {
        let rate = NonZeroU32::new(per_sec).and_then(|n| {
            let spacing = Duration::from_secs(1).mul_f64(1.0 + SPACING_MARGIN) / n.get();
            Quota::with_period(spacing).map(|q| RateLimiter::keyed(q.allow_burst(NonZeroU32::MIN)))
        });
        TenantLimiter {
            rate,
            daily: DailyBudget::new(daily_quota),
            // One worker holds a tenant at a time, so there is no herd to spread: no jitter.
            jitter: Jitter::up_to(Duration::ZERO),
            egress: None,
        }
    }

    /// Every call also waits for a turn of the process's `per_sec` (0: no such limit).
    pub fn with_egress(mut self, per_sec: u32) -> TenantLimiter {
        self.egress = Egress::new(per_sec);
        self
    }

    /// The egress budget's figures; `None` without one.
    pub fn egress_stats(&self) -> Option<EgressStats> {
        self.egress.as_ref().map(Egress::stats)
    }

    /// Waits for the tenant's next slot and takes one request from its daily budget. A spent
    /// budget answers [`BlingError::RateLimited`] at once, with the time until midnight in
    /// Brasília, and no call must be made.
    pub async fn acquire(&self, tenant: &TenantId) -> Result<(), BlingError> {
        self.daily
            .try_take(tenant, Utc::now())
            .map_err(|left| BlingError::RateLimited {
                retry_after: Some(left),
                daily: true,
            })?;
        if let Some(rate) = &self.rate {
            rate.until_key_ready_with_jitter(tenant, self.jitter).await;
        }
        // The tenant's turn first: a call waiting for the IP's budget keeps its place in the
        // tenant's line, and leaves no sooner than its tenant allows.
        if let Some(egress) = &self.egress {
            let waited = egress.acquire().await;
            if waited >= Duration::from_secs(1) {
                tracing::debug!(tenant = %tenant, waited_ms = waited.as_millis() as u64,
                    "Bling call waited for the process's share of the per-IP limit");
            }
        }
        Ok(())
    }

    /// Requests the tenant has taken from today's budget.
    pub fn used_today(&self, tenant: &TenantId) -> u64 {
        self.daily.used(tenant, Utc::now())
    }

    /// Bling said the account's daily quota is spent: stop the tenant until the next day.
    pub fn mark_day_spent(&self, tenant: &TenantId) {
        self.daily.mark_spent(tenant, Utc::now());
    }

    /// When the tenant may call Bling again, if its daily quota is spent.
    pub fn day_spent_until(&self, tenant: &TenantId) -> Option<DateTime<Utc>> {
        self.daily.spent_until(tenant, Utc::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).expect("valid tenant")
    }

    #[test]
    fn the_egress_budget_bounds_every_window() {
        assert!(Egress::new(0).is_none());
        let egress = Egress::new(50).expect("a budget");
        // Bling blocks at 600 in 10 s: the default leaves room for the token endpoint.
        assert_eq!(egress.most_in(Duration::from_secs(10)), 550);
        assert_eq!(
            Egress::new(6).map(|e| e.most_in(Duration::from_secs(3))),
            Some(24)
        );
    }

    #[tokio::test]
    async fn the_egress_budget_paces_every_tenant_together() {
        let limiter = TenantLimiter::new(0, 0).with_egress(20);
        let started = std::time::Instant::now();
        // A second's worth at once (the burst), then one every 50 ms, whichever tenant asks.
        for i in 0..30 {
            let name = format!("shop-{}", i % 5);
            limiter
                .acquire(&tenant(&name))
                .await
                .expect("no daily budget");
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(450), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        let stats = limiter.egress_stats().expect("a budget");
        assert_eq!(stats.per_sec, 20);
        // The burst left at once; the ten after it waited their turn.
        assert!((8..=12).contains(&stats.delayed_calls), "{stats:?}");
        assert!(stats.waited_seconds > 0.2, "{stats:?}");
    }

    #[test]
    fn the_day_turns_at_midnight_in_brasilia() {
        // 02:59:59 UTC is 23:59:59 of the previous day in Brasília.
        let before = Utc.with_ymd_and_hms(2025, 3, 10, 2, 59, 59).unwrap();
        let (day, left) = bling_day(before);
        assert_eq!(day, NaiveDate::from_ymd_opt(2025, 3, 9).unwrap());
        assert_eq!(left, Duration::from_secs(1));
        let after = Utc.with_ymd_and_hms(2025, 3, 10, 3, 0, 0).unwrap();
        let (day, left) = bling_day(after);
        assert_eq!(day, NaiveDate::from_ymd_opt(2025, 3, 10).unwrap());
        assert_eq!(left, Duration::from_secs(24 * 3600));
    }

    #[test]
    fn the_daily_budget_is_per_tenant_and_resets() {
        let budget = DailyBudget::new(2);
        let (a, b) = (tenant("a"), tenant("b"));
        let noon = Utc.with_ymd_and_hms(2025, 3, 10, 15, 0, 0).unwrap();
        assert!(budget.try_take(&a, noon).is_ok());
        assert!(budget.try_take(&a, noon).is_ok());
        assert_eq!(
            budget.try_take(&a, noon),
            Err(Duration::from_secs(12 * 3600))
        );
        assert!(budget.try_take(&b, noon).is_ok());
        assert_eq!(budget.used(&a, noon), 2);
        let next_day = Utc.with_ymd_and_hms(2025, 3, 11, 3, 0, 0).unwrap();
        assert_eq!(budget.used(&a, next_day), 0);
        assert!(budget.try_take(&a, next_day).is_ok());
    }

    #[test]
    fn a_day_bling_declared_spent_stops_the_tenant_until_midnight() {
        let budget = DailyBudget::new(0);
        let (a, b) = (tenant("a"), tenant("b"));
        let noon = Utc.with_ymd_and_hms(2025, 3, 10, 15, 0, 0).unwrap();
        budget.mark_spent(&a, noon);
        assert_eq!(
            budget.try_take(&a, noon),
            Err(Duration::from_secs(12 * 3600))
        );
        assert!(budget.try_take(&b, noon).is_ok());
        assert_eq!(
            budget.spent_until(&a, noon),
            Some(Utc.with_ymd_and_hms(2025, 3, 11, 3, 0, 0).unwrap())
        );
        let next_day = Utc.with_ymd_and_hms(2025, 3, 11, 3, 0, 0).unwrap();
        assert!(budget.try_take(&a, next_day).is_ok());
        assert_eq!(budget.spent_until(&a, next_day), None);
    }

    #[test]
    fn zero_disables_the_budget() {
        let budget = DailyBudget::new(0);
        let now = Utc::now();
        for _ in 0..10 {
            assert!(budget.try_take(&tenant("a"), now).is_ok());
        }
    }

    #[tokio::test]
    async fn tenants_do_not_share_a_rate() {
        let limiter = TenantLimiter::new(2, 0);
        let started = std::time::Instant::now();
        for name in ["a", "b", "c", "d"] {
            limiter.acquire(&tenant(name)).await.expect("no budget");
        }
        assert!(started.elapsed() < Duration::from_millis(200));
        // A second call of the same tenant waits for its slot (1/2 s).
        limiter.acquire(&tenant("a")).await.expect("no budget");
        assert!(started.elapsed() >= Duration::from_millis(450));
    }
}
