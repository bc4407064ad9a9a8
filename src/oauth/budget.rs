//! One budget for every call to Bling's token endpoint, across every process on the database.
//! Bling blocks the calling IP for an hour after 20 token calls in 60 s; a fleet behind one
//! address must stay under that together, so the count lives in the database.
//!
//! Two kinds of call draw from it. A **code exchange** cannot wait: the shop's user is on the
//! callback page and Bling's code lives one minute. A **renewal** can (it starts well ahead of
//! the token's expiry). So renewals leave a reserve of the window to code exchanges
//! ([`TokenBudget::exchange_reserve`]): a wave of renewals never makes a connecting shop's code
//! expire, and a wave of connections is paced within the budget instead of blocking the IP.

use std::time::Duration;

use crate::store::{connections, now_ms, Db, StoreError};

const WINDOW_MS: i64 = 60_000;

/// What a token-endpoint call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Renewing an access token (refresh grant): leaves the reserve to code exchanges.
    Renewal,
    /// Exchanging a consent's code (authorization-code grant): may use the whole window.
    CodeExchange,
}

#[derive(Debug)]
pub struct TokenBudget {
    db: Db,
    per_minute: i64,
    // SQLite has no advisory locks; one process per SQLite file, so a local lock is enough
    // (on PostgreSQL the store takes an advisory lock too).
    local: tokio::sync::Mutex<()>,
}

impl TokenBudget {
    pub fn new(db: Db, per_minute: u32) -> Self {
        Self {
            db,
            per_minute: i64::from(per_minute.max(1)),
            local: tokio::sync::Mutex::new(()),
        }
    }

    /// Calls per 60 s window.
    pub fn per_minute(&self) -> i64 {
        self.per_minute
    }

    /// Calls of each window that renewals leave to code exchanges: a fifth of the budget (3 of
    /// the default 15), none for a budget under 5.
    pub fn exchange_reserve(&self) -> i64 {
        if self.per_minute >= 5 {
            self.per_minute / 5
        } else {
            0
        }
    }

    /// Calls per window that renewals may use.
    pub fn renewals_per_minute(&self) -> i64 {
        self.per_minute - self.exchange_reserve()
    }

    /// Takes one call from the budget, or says how long until one is free.
    pub async fn take(
        &self,
        tenant: &str,
        purpose: Purpose,
    ) -> Result<Result<(), Duration>, StoreError> {
        let _local = self.local.lock().await;
        let now = now_ms();
        let since = now - WINDOW_MS;
        let limit = match purpose {
            Purpose::Renewal => self.renewals_per_minute(),
            Purpose::CodeExchange => self.per_minute,
        };
        connections::take_token_call(&self.db, tenant, now, since, |count, oldest| {
            Self::verdict(limit, count, oldest, now)
        })
        .await
    }

    /// Takes one call, waiting for the window to free one for up to `patience`.
    pub async fn take_within(
        &self,
        tenant: &str,
        purpose: Purpose,
        patience: Duration,
    ) -> Result<Result<(), Duration>, StoreError> {
        let give_up = tokio::time::Instant::now() + patience;
        loop {
            match self.take(tenant, purpose).await? {
                Ok(()) => return Ok(Ok(())),
                Err(wait) if tokio::time::Instant::now() + wait <= give_up => {
                    tokio::time::sleep(wait).await
                }
                Err(wait) => return Ok(Err(wait)),
            }
        }
    }

    fn verdict(limit: i64, count: i64, oldest: Option<i64>, now: i64) -> Result<(), Duration> {
        if count < limit {
            Ok(())
        } else {
            let free_at = oldest.unwrap_or(now) + WINDOW_MS;
            Err(Duration::from_millis((free_at - now).max(1) as u64))
        }
    }

    /// Calls counted in the current window (for metrics and tests).
    pub async fn used(&self) -> Result<i64, StoreError> {
        let since = now_ms() - WINDOW_MS;
        connections::token_calls_since(&self.db, since).await
    }
}
