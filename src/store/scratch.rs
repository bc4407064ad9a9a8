//! The benchmarks' own statements (dev tools only): scratch databases, the raw baselines a
//! measurement is compared with, and the seeders that fill a scratch log fast. All of it is
//! PostgreSQL's: the benchmarks run there.

use futures::StreamExt;

use super::{Db, StoreError};
use crate::sql;

fn postgres(db: &Db) -> Result<&sqlx::PgPool, StoreError> {
    match db {
        Db::Postgres(pool) => Ok(pool),
        Db::Sqlite(_) => Err(StoreError::UnsupportedUrl(
            "benchmarks need a postgres:// URL".into(),
        )),
    }
}

/// `CREATE DATABASE name` on the server `admin` is connected to.
pub async fn create_database(admin: &Db, name: &str) -> Result<(), StoreError> {
    let pool = postgres(admin)?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(pool)
        .await?;
    Ok(())
}

/// Drops the database `name`, connections and all (nothing on SQLite).
pub async fn drop_database(admin: &Db, name: &str) -> Result<(), StoreError> {
    if let Db::Postgres(pool) = admin {
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// The ingest baseline's table: an event-sized row with the log's key.
pub async fn create_raw_baseline(db: &Db) -> Result<(), StoreError> {
    let pool = postgres(db)?;
    sqlx::query(
        "CREATE TABLE raw_baseline (id text NOT NULL, sequence bigint NOT NULL, payload json NOT NULL,
                                    metadata json NOT NULL, PRIMARY KEY (id, sequence))",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// One single-row insert into the baseline table.
pub async fn insert_raw_baseline(
    db: &Db,
    id: &str,
    payload: &serde_json::Value,
) -> Result<(), StoreError> {
    sql!(
        db,
        "INSERT INTO raw_baseline VALUES ($1, 1, $2, '{\"tenant\":\"bench\"}')",
        [id, payload]
    )?;
    Ok(())
}

/// `VACUUM ANALYZE events`, or `ANALYZE` of every table with `all`.
pub async fn analyze(db: &Db, all: bool) -> Result<(), StoreError> {
    let pool = postgres(db)?;
    let statement = if all {
        "ANALYZE"
    } else {
        "VACUUM ANALYZE events"
    };
    sqlx::query(statement).execute(pool).await?;
    Ok(())
}

/// Events to insert without positions, column by column.
#[derive(Debug, Default)]
pub struct UnnumberedEvents {
    pub aggregate_types: Vec<String>,
    pub aggregate_ids: Vec<String>,
    pub sequences: Vec<i64>,
    pub event_types: Vec<String>,
    pub payloads: Vec<String>,
    pub metadata: Vec<String>,
    pub recorded_at: Vec<chrono::DateTime<chrono::Utc>>,
}

/// Inserts events without positions (the sequencer numbers them, as in production) with one
/// multi-row `INSERT … SELECT FROM UNNEST(…)`. Returns how many.
pub async fn insert_unnumbered(db: &Db, events: UnnumberedEvents) -> Result<u64, StoreError> {
    let pool = postgres(db)?;
    let n = sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at)
         SELECT t, i, s, e, '1', p::json, m::json, r
         FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
              AS u(t, i, s, e, p, m, r)",
    )
    .bind(events.aggregate_types)
    .bind(events.aggregate_ids)
    .bind(events.sequences)
    .bind(events.event_types)
    .bind(events.payloads)
    .bind(events.metadata)
    .bind(events.recorded_at)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n)
}

/// Writes events already numbered: `text` is `COPY`'s text format of `global_position,
/// aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata,
/// recorded_at` (see `views::copy_line`). Returns how many rows.
pub async fn copy_numbered(db: &Db, text: &str) -> Result<u64, StoreError> {
    let pool = postgres(db)?;
    let mut conn = pool.acquire().await?;
    let mut copy = conn
        .copy_in_raw(
            "COPY events (global_position, aggregate_type, aggregate_id, sequence, event_type,
                          event_version, payload, metadata, recorded_at) FROM STDIN",
        )
        .await?;
    copy.send(text.as_bytes()).await?;
    Ok(copy.finish().await?)
}

/// Reads every numbered event with `COPY … TO STDOUT`, in log order: the floor of what reading
/// the log can cost. Returns the bytes read.
pub async fn copy_out_log(db: &Db) -> Result<u64, StoreError> {
    let pool = postgres(db)?;
    let mut conn = pool.acquire().await?;
    let mut stream = conn
        .copy_out_raw(
            "COPY (SELECT global_position, aggregate_type, aggregate_id, sequence, event_type, event_version,
                          payload, metadata, recorded_at
                   FROM events WHERE global_position IS NOT NULL ORDER BY global_position)
             TO STDOUT",
        )
        .await?;
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        bytes += chunk?.len() as u64;
    }
    Ok(bytes)
}
