//! One budget for every call to Bling's token endpoint, across every process on the database.
//! Bling blocks the calling IP for an hour after 20 token calls in 60 s; a fleet behind one
//! address must stay under that together, so the count lives in the database.

use std::time::Duration;

use crate::store::{now_ms, Db, StoreError};

const BUDGET_LOCK: i64 = 0x626c_696e_675f_746b; // "bling_tk"
const WINDOW_MS: i64 = 60_000;

#[derive(Debug)]
pub struct TokenBudget {
    db: Db,
    per_minute: i64,
    // SQLite has no advisory locks; one process per SQLite file, so a local lock is enough.
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
        match &self.db {
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(BUDGET_LOCK)
                    .execute(&mut *tx)
                    .await?;
                let (count, oldest): (i64, Option<i64>) = sqlx::query_as(
                    "SELECT count(*), min(at_ms) FROM token_endpoint_calls WHERE at_ms > $1",
                )
                .bind(since)
                .fetch_one(&mut *tx)
                .await?;
                let verdict = self.verdict(count, oldest, now);
                if verdict.is_ok() {
                    sqlx::query("INSERT INTO token_endpoint_calls (at_ms, tenant) VALUES ($1, $2)")
                        .bind(now)
                        .bind(tenant)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("DELETE FROM token_endpoint_calls WHERE at_ms < $1")
                        .bind(now - 3_600_000)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(verdict)
            }
            Db::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let (count, oldest): (i64, Option<i64>) = sqlx::query_as(
                    "SELECT count(*), min(at_ms) FROM token_endpoint_calls WHERE at_ms > ?1",
                )
                .bind(since)
                .fetch_one(&mut *tx)
                .await?;
                let verdict = self.verdict(count, oldest, now);
                if verdict.is_ok() {
                    sqlx::query("INSERT INTO token_endpoint_calls (at_ms, tenant) VALUES (?1, ?2)")
                        .bind(now)
                        .bind(tenant)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("DELETE FROM token_endpoint_calls WHERE at_ms < ?1")
                        .bind(now - 3_600_000)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(verdict)
            }
        }
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
        let (count,): (i64,) = crate::on_db!(
            &self.db,
            as (i64,),
            "SELECT count(*) FROM token_endpoint_calls WHERE at_ms > $1",
            [since],
            fetch_one
        )?;
        Ok(count)
    }
}
