//! Storage: one database, PostgreSQL in production or an embedded SQLite file by default,
//! chosen by the `DATABASE_URL` scheme. Migrations are compiled into the binary.

pub mod idempotency;
pub mod log;
pub mod pg_events;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DATABASE_URL must start with sqlite:// or postgres:// (got {0:?})")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// The database behind the ledger. Cloning is cheap: both variants are connection pools.
#[derive(Clone, Debug)]
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Db {
    /// Connects to `url` (`sqlite://path`, `sqlite::memory:`, `postgres://…`). A missing SQLite
    /// file is created.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            Ok(Db::Postgres(pool))
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            // An in-memory database exists per connection: keep exactly one.
            let max = if url.contains(":memory:") {
                1
            } else {
                max_connections.max(1)
            };
            let pool = SqlitePoolOptions::new()
                .max_connections(max)
                .connect_with(options)
                .await?;
            Ok(Db::Sqlite(pool))
        } else {
            Err(StoreError::UnsupportedUrl(url.to_string()))
        }
    }

    /// Applies every pending migration of this backend.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Db::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
            Db::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
        }
        Ok(())
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Db::Postgres(_) => "postgres",
            Db::Sqlite(_) => "sqlite",
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Postgres(pool) => pool.close().await,
            Db::Sqlite(pool) => pool.close().await,
        }
    }
}

/// PostgreSQL placeholders (`$1`) rewritten for SQLite (`?1`), so a query is written once.
pub fn sqlite_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|n| n.is_ascii_digit()) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs one SQL statement, written with `$N` placeholders, on either backend:
/// `on_db!(db, "…", [a, b], execute)` or `on_db!(db, as (i64, String), "…", [a], fetch_optional)`.
#[macro_export]
macro_rules! on_db {
    ($db:expr, $sql:expr, [$($arg:expr),* $(,)?], $method:ident) => {
        match $db {
            $crate::store::Db::Postgres(pool) => sqlx::query($sql)$(.bind($arg))*.$method(pool).await.map(|r| r.rows_affected()),
            $crate::store::Db::Sqlite(pool) => sqlx::query(&$crate::store::sqlite_sql($sql))$(.bind($arg))*.$method(pool).await.map(|r| r.rows_affected()),
        }
    };
    ($db:expr, as $t:ty, $sql:expr, [$($arg:expr),* $(,)?], $method:ident) => {
        match $db {
            $crate::store::Db::Postgres(pool) => sqlx::query_as::<_, $t>($sql)$(.bind($arg))*.$method(pool).await,
            $crate::store::Db::Sqlite(pool) => sqlx::query_as::<_, $t>(&$crate::store::sqlite_sql($sql))$(.bind($arg))*.$method(pool).await,
        }
    };
}

/// Milliseconds since the Unix epoch, the time format of the non-event tables.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A transaction on either backend, for work that must commit together (a checkpoint and the
/// rows derived from the events it covers).
pub enum Tx {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

impl Db {
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
            // IMMEDIATE takes the write lock up front: a deferred transaction that reads and
            // then writes fails with SQLITE_BUSY_SNAPSHOT if another connection wrote meanwhile,
            // and no busy timeout can save it.
            Db::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
        })
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Postgres(tx) => tx.commit().await?,
            Tx::Sqlite(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

/// [`on_db!`] inside a [`Tx`]: `on_tx!(tx, "…", [a, b])` returns rows affected;
/// `on_tx!(tx, as (i64,), "…", [a], fetch_optional)` decodes rows.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, $sql:expr, [$($arg:expr),* $(,)?]) => {
        match $tx {
            $crate::store::Tx::Postgres(tx) => sqlx::query($sql)$(.bind($arg))*.execute(&mut **tx).await.map(|r| r.rows_affected()),
            $crate::store::Tx::Sqlite(tx) => sqlx::query(&$crate::store::sqlite_sql($sql))$(.bind($arg))*.execute(&mut **tx).await.map(|r| r.rows_affected()),
        }
    };
    ($tx:expr, as $t:ty, $sql:expr, [$($arg:expr),* $(,)?], $method:ident) => {
        match $tx {
            $crate::store::Tx::Postgres(tx) => sqlx::query_as::<_, $t>($sql)$(.bind($arg))*.$method(&mut **tx).await,
            $crate::store::Tx::Sqlite(tx) => sqlx::query_as::<_, $t>(&$crate::store::sqlite_sql($sql))$(.bind($arg))*.$method(&mut **tx).await,
        }
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_rewritten_for_sqlite() {
        assert_eq!(
            super::sqlite_sql("SELECT $1, '$x', $12 FROM t"),
            "SELECT ?1, '$x', ?12 FROM t"
        );
    }
}
