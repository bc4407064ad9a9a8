//! One budget for every call to Bling's token endpoint, across every process on the database.
//! Bling blocks the calling IP for an hour after 20 token calls in 60 s; a fleet behind one
//! address must stay under that together, so the count lives in the database.

use std::time::Duration;

use crate::store::{connections, now_ms, Db, StoreError};

const WINDOW_MS: i64 = 60_000;

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

    /// Takes one call from the budget, or says how long until one is free.
    pub async fn take(&self, tenant: &str) -> Result<Result<(), Duration>, StoreError> {
        let _local = self.local.lock().await;
        let now = now_ms();
        let since = now - WINDOW_MS;
        connections::take_token_call(&self.db, tenant, now, since, |count, oldest| {
            self.verdict(count, oldest, now)
        })
        .await
    }

    fn verdict(&self, count: i64, oldest: Option<i64>, now: i64) -> Result<(), Duration> {
        if count < self.per_minute {
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
