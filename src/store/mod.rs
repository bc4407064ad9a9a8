//! Storage: one database, PostgreSQL in production or an embedded SQLite file by default,
//! chosen by the `DATABASE_URL` scheme. Migrations are compiled into the binary.
//!
//! Every statement of the ledger is here, one module per table family, each an API of typed
//! free functions taking a pool (`&Db`) or a transaction (`&mut Tx`):
//!
//! - [`events`]: the event log ([`log`]: global order and the sequencer; [`pg_events`]: the
//!   command side's repository on PostgreSQL);
//! - [`checkpoints`]: how far each log follower (the sync dispatcher, each projection) has got;
//! - [`sync_work`]: the sync worker's to-do list and its leases;
//! - [`connections`]: Bling credentials, OAuth states and the token-endpoint budget;
//! - [`views`]: the projection tables (reads, batched writes, `COPY` for a rebuild);
//! - [`idempotency`]: remembered answers for the `Idempotency-Key` header;
//! - [`notify`]: outbound notifications (endpoints, outbox, deliveries, attempts) and
//!   [`reconnect_links`]: the shops' self-service reconnect links;
//! - [`signed_checkpoints`]: the sealed log's signed checkpoints;
//! - [`personal`]: customers' personal data in the log, encrypted per customer, and its
//!   erasure (LGPD) there and in every other table;
//! - `scratch` (dev tools): the benchmarks' scratch databases, baselines and seeders.
//!
//! One technique for the two backends: a statement is written once with `$N` placeholders
//! (both backends bind them by number) and run by [`sql!`](crate::sql) on a pool or a
//! transaction; where the SQL really differs, both versions sit side by side in one `match`.

pub mod checkpoints;
pub mod connections;
pub mod events;
pub mod idempotency;
pub mod notify;
pub mod personal;
pub mod reconnect_links;
#[cfg(feature = "dev-tools")]
pub mod scratch;
pub mod signed_checkpoints;
pub mod sync_work;
pub mod views;
pub mod webhooks;

pub use events::{log, pg_events};

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
    /// A job's write refused because the lease it ran under has passed to another holder
    /// (`sync_work`'s fence): the job must stop without writing or calling Bling again.
    #[error("lease lost: {0}")]
    LeaseLost(String),
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

    /// Where [`sql!`](crate::sql) runs on this pool.
    #[doc(hidden)]
    pub fn on(&self) -> On<'_> {
        match self {
            Db::Postgres(pool) => On::PgPool(pool),
            Db::Sqlite(pool) => On::SqlitePool(pool),
        }
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

/// Where one statement runs: a pool or a transaction's connection, on either backend.
/// Produced by [`Db::on`] and [`Tx::on`] for [`sql!`](crate::sql); nothing else matches on it.
#[doc(hidden)]
pub enum On<'a> {
    PgPool(&'a PgPool),
    Pg(&'a mut sqlx::PgConnection),
    SqlitePool(&'a SqlitePool),
    Sqlite(&'a mut sqlx::SqliteConnection),
}

#[doc(hidden)]
pub use sqlx as __sqlx;

/// The store's one way to run a statement on either backend, on a pool (`&Db`) or inside a
/// transaction (`&mut Tx`). The SQL is written once, with `$N` placeholders, which both
/// PostgreSQL and sqlx's SQLite driver bind by number (no rewriting, no second copy):
///
/// - `sql!(db, "UPDATE … WHERE a = $1", [a])` returns the rows affected;
/// - `sql!(&mut tx, as (i64, String), "SELECT …", [a, b], fetch_optional)` decodes rows
///   (`fetch_one`, `fetch_optional`, `fetch_all`).
///
/// Where the SQL really differs (row locks, advisory locks, `COPY`, date arithmetic, casts),
/// the function writes both statements side by side in one `match`. Outside `src/store/` only
/// tests use this (`.ci/check-boundaries` enforces it).
#[macro_export]
macro_rules! sql {
    ($on:expr, $sql:expr, [$($arg:expr),* $(,)?]) => {
        match $on.on() {
            $crate::store::On::PgPool(e) => $crate::store::__sqlx::query($sql)$(.bind($arg))*.execute(e).await.map(|r| r.rows_affected()),
            $crate::store::On::Pg(e) => $crate::store::__sqlx::query($sql)$(.bind($arg))*.execute(e).await.map(|r| r.rows_affected()),
            $crate::store::On::SqlitePool(e) => $crate::store::__sqlx::query($sql)$(.bind($arg))*.execute(e).await.map(|r| r.rows_affected()),
            $crate::store::On::Sqlite(e) => $crate::store::__sqlx::query($sql)$(.bind($arg))*.execute(e).await.map(|r| r.rows_affected()),
        }
    };
    ($on:expr, as $t:ty, $sql:expr, [$($arg:expr),* $(,)?], $method:ident) => {
        match $on.on() {
            $crate::store::On::PgPool(e) => $crate::store::__sqlx::query_as::<_, $t>($sql)$(.bind($arg))*.$method(e).await,
            $crate::store::On::Pg(e) => $crate::store::__sqlx::query_as::<_, $t>($sql)$(.bind($arg))*.$method(e).await,
            $crate::store::On::SqlitePool(e) => $crate::store::__sqlx::query_as::<_, $t>($sql)$(.bind($arg))*.$method(e).await,
            $crate::store::On::Sqlite(e) => $crate::store::__sqlx::query_as::<_, $t>($sql)$(.bind($arg))*.$method(e).await,
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
    /// Where [`sql!`](crate::sql) runs inside this transaction.
    #[doc(hidden)]
    pub fn on(&mut self) -> On<'_> {
        match self {
            Tx::Postgres(tx) => On::Pg(tx),
            Tx::Sqlite(tx) => On::Sqlite(tx),
        }
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Postgres(tx) => tx.commit().await?,
            Tx::Sqlite(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Db;

    /// The one technique rests on this: SQLite binds `$N` by its number, like PostgreSQL,
    /// whatever order the placeholders appear in and however often.
    #[tokio::test]
    async fn sqlite_binds_numbered_placeholders_by_number() {
        let db = Db::connect("sqlite::memory:", 1).await.unwrap();
        let row: (String, i64, String) = crate::sql!(
            &db,
            as (String, i64, String),
            "SELECT $3, $1, $3 || '$x'",
            [7i64, "unused", "c"],
            fetch_one
        )
        .unwrap();
        assert_eq!(row, ("c".to_string(), 7, "c$x".to_string()));
    }
}
