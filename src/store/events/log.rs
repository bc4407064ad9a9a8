//! The global event log: every event of every aggregate in one order, read by position.
//!
//! # Why positions are assigned after commit (PostgreSQL)
//! A sequence value taken at insert becomes visible at commit. If transaction A takes 11 and
//! B takes 12, B may commit first; a reader that sees 12 and moves its checkpoint past it never
//! sees 11. So a position is not taken at insert. Every event records its writing transaction
//! (`tx_id`), and a *sequencer* numbers only events whose transaction is older than the oldest
//! one still running (`pg_snapshot_xmin`): those are all committed (or gone), and every event
//! still to come belongs to a transaction at or above that horizon, so it sorts after them. The
//! sequencer numbers them in `(tx_id, insert_id)` order, densely, under an advisory lock; readers
//! then simply read by position. Writers are never serialized; the cost is that an event becomes
//! readable once the transactions older than it have finished.
//!
//! Within one aggregate the order is the commit order: a command reads the previous events
//! (committed) before its own transaction takes an id, so its `tx_id` is larger.
//!
//! On SQLite there is one writer at a time and a trigger numbers events inside the writing
//! transaction, so positions are commit order already.
//!
//! Numbering is also sealing (`super::seals`): with sealing on (always, but in benchmarks'
//! baselines) the sequencer numbers *and* links events in one step, and on SQLite the writing
//! transaction links them before its commit.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use crate::sql;
use crate::store::{Db, StoreError};

/// One event as the log holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedEvent {
    pub position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    pub fn tenant(&self) -> Option<&str> {
        self.metadata.get("tenant").and_then(Value::as_str)
    }
}

/// Filters for reading the log.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub tenant: Option<String>,
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
}

/// Numbers at most this many events per sequencer pass, to keep its transaction short.
const SEQUENCER_BATCH: i64 = 5_000;

/// Arbitrary but fixed key of the sequencer's advisory lock.
const SEQUENCER_LOCK: i64 = 0x626c_696e_675f_6c67; // "bling_lg"

/// Gives positions to committed events that have none yet. Returns how many it numbered;
/// 0 also when another process holds the sequencer (it will do the work).
pub async fn sequence_pending(db: &Db) -> Result<u64, StoreError> {
    let pool = match db {
        Db::Postgres(pool) => pool,
        Db::Sqlite(pool) => return super::seals::sqlite_backlog(pool).await,
    };
    let mut numbered = 0;
    loop {
        let mut tx = pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(SEQUENCER_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(numbered);
        }
        if super::seals::sealing() {
            // Numbered and sealed together (see `seals`); a backlog is sealed first.
            let (done, backlog) = super::seals::pg_step(&mut tx, SEQUENCER_BATCH).await?;
            tx.commit().await?;
            numbered += done;
            if !backlog && done < SEQUENCER_BATCH as u64 {
                return Ok(numbered);
            }
            continue;
        }
        let done = sqlx::query(
            "WITH pending AS (
                     SELECT aggregate_type, aggregate_id, sequence,
                            row_number() OVER (ORDER BY tx_id, insert_id) AS n
                     FROM (SELECT aggregate_type, aggregate_id, sequence, tx_id, insert_id
                           FROM events
                           WHERE global_position IS NULL
                             AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
                           ORDER BY tx_id, insert_id
                           LIMIT $1) oldest
                 ),
                 head AS (SELECT COALESCE(MAX(global_position), 0) AS position FROM events)
                 UPDATE events e
                 SET global_position = head.position + pending.n
                 FROM pending, head
                 WHERE e.aggregate_type = pending.aggregate_type
                   AND e.aggregate_id = pending.aggregate_id
                   AND e.sequence = pending.sequence",
        )
        .bind(SEQUENCER_BATCH)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        numbered += done;
        if done < SEQUENCER_BATCH as u64 {
            return Ok(numbered);
        }
    }
}

/// Up to `limit` events after `after` (exclusive), in global order. Never skips an event:
/// an event committed late is numbered after every event already readable. Personal data
/// reads in clear, or erased (`super::super::personal`).
pub async fn read_from(
    db: &Db,
    after: i64,
    limit: i64,
    filter: &LogFilter,
) -> Result<Vec<RecordedEvent>, StoreError> {
    sequence_pending(db).await?;
    let mut events = match db {
        Db::Postgres(pool) => {
            let rows = sqlx::query(
                "SELECT global_position, aggregate_type, aggregate_id, sequence, event_type,
                            event_version, payload, metadata, recorded_at
                     FROM events
                     WHERE global_position > $1
                       AND ($2::text IS NULL OR tenant = $2)
                       AND ($3::text IS NULL OR aggregate_type = $3)
                       AND ($4::text IS NULL OR aggregate_id = $4)
                     ORDER BY global_position
                     LIMIT $5",
            )
            .bind(after)
            .bind(&filter.tenant)
            .bind(&filter.aggregate_type)
            .bind(&filter.aggregate_id)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter().map(pg_event).collect::<Result<Vec<_>, _>>()?
        }
        Db::Sqlite(pool) => {
            let rows = sqlx::query(
                "SELECT global_position, aggregate_type, aggregate_id, sequence, event_type,
                            event_version, payload, metadata, recorded_at
                     FROM events
                     WHERE global_position > ?1
                       AND (?2 IS NULL OR tenant = ?2)
                       AND (?3 IS NULL OR aggregate_type = ?3)
                       AND (?4 IS NULL OR aggregate_id = ?4)
                     ORDER BY global_position
                     LIMIT ?5",
            )
            .bind(after)
            .bind(&filter.tenant)
            .bind(&filter.aggregate_type)
            .bind(&filter.aggregate_id)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(sqlite_event)
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    // Personal data as readers see it: in clear, or erased.
    let keys = crate::store::personal::keys_for(
        db,
        events.iter().map(|e| {
            (
                e.aggregate_type.as_str(),
                e.aggregate_id.as_str(),
                e.event_type.as_str(),
            )
        }),
    )
    .await?;
    for e in &mut events {
        keys.open(
            &e.aggregate_type,
            &e.aggregate_id,
            &e.event_type,
            &mut e.payload,
        )?;
    }
    Ok(events)
}

/// Every aggregate id of one type, sorted (e.g. the tenants with a Bling connection).
pub async fn aggregate_ids(db: &Db, aggregate_type: &str) -> Result<Vec<String>, StoreError> {
    let rows = sql!(
        db,
        as (String,),
        "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = $1 ORDER BY 1",
        [aggregate_type],
        fetch_all
    )?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// The highest position readable now (0 for an empty log).
pub async fn head_position(db: &Db) -> Result<i64, StoreError> {
    sequence_pending(db).await?;
    let (head,): (i64,) =
        sql!(db, as (i64,), "SELECT COALESCE(MAX(global_position), 0) FROM events", [], fetch_one)?;
    Ok(head)
}

fn pg_event(row: &sqlx::postgres::PgRow) -> Result<RecordedEvent, StoreError> {
    let sequence: i64 = row.try_get("sequence")?;
    Ok(RecordedEvent {
        position: row.try_get("global_position")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        recorded_at: row.try_get("recorded_at")?,
    })
}

fn sqlite_event(row: &sqlx::sqlite::SqliteRow) -> Result<RecordedEvent, StoreError> {
    let json = |column: &str| -> Result<Value, StoreError> {
        let text: String = row.try_get(column)?;
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
    };
    let recorded_at: String = row.try_get("recorded_at")?;
    let recorded_at = DateTime::parse_from_rfc3339(&recorded_at)
        .map_err(|e| StoreError::Corrupt(format!("recorded_at: {e}")))?
        .with_timezone(&Utc);
    Ok(RecordedEvent {
        position: row.try_get("global_position")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: json("payload")?,
        metadata: json("metadata")?,
        recorded_at,
    })
}
