//! The event log (`events`): one table, every event of every aggregate.
//!
//! - [`log`]: the global order, read by position, and the sequencer that assigns positions
//!   after commit (its module documentation explains why);
//! - [`pg_events`]: the per-stream repository the ledger runs commands through on PostgreSQL
//!   (one multi-row append, one connection per command);
//! - [`sqlite_events`]: the same on SQLite (append, number and seal in one transaction);
//! - [`seals`]: the log sealed at sequencing (both chains' links and heads) and the reads that
//!   `verify --database` and checkpoints make of it;
//! - here: the other readers of the table: the projections' text-payload range scan, the
//!   customer directory, the audit export's position bounds, and the event stores of
//!   `cqrs-es` on either backend ([`AggregateStore`]).
//!
//! Every reader but the audit export and the seals' own sees personal data through
//! [`personal`]: in clear while the customer's key exists, erased after.

pub mod log;
pub mod pg_copy;
pub mod pg_events;
pub mod seals;
pub mod sqlite_events;

use cqrs_es::persist::PersistedEventStore;
use cqrs_es::Aggregate;
use projections::LogEvent;

use crate::sql;
use crate::store::{personal, Db, StoreError, Tx};
use pg_events::PgEventRepository;
use sqlite_events::SealingSqliteRepository;

/// One aggregate type's `cqrs-es` event store on the configured backend.
pub enum AggregateStore<A: Aggregate> {
    Postgres(PersistedEventStore<PgEventRepository, A>),
    Sqlite(PersistedEventStore<SealingSqliteRepository, A>),
}

impl<A: Aggregate> AggregateStore<A> {
    pub fn new(db: &Db) -> Self {
        match db {
            Db::Postgres(pool) => AggregateStore::Postgres(PersistedEventStore::new_event_store(
                PgEventRepository::new(pool.clone()),
            )),
            Db::Sqlite(pool) => AggregateStore::Sqlite(PersistedEventStore::new_event_store(
                SealingSqliteRepository::new(pool.clone()),
            )),
        }
    }
}

/// Whether the customer stream `stream_id` has any event and was not erased (the invoice
/// handler's customer directory: an erased customer cannot be billed). Inside a command on
/// PostgreSQL it runs on the command's own connection (see [`pg_events`]).
pub async fn customer_registered(db: &Db, stream_id: &str) -> Result<bool, StoreError> {
    let found: Option<i64> = match db {
        Db::Postgres(pool) => {
            let mut conn = pg_events::connection(pool).await?;
            let found = sqlx::query_scalar(
                "SELECT 1::bigint FROM events
                 WHERE aggregate_type = 'Customer' AND aggregate_id = $1
                   AND NOT EXISTS (SELECT 1 FROM events
                                   WHERE aggregate_type = 'Customer' AND aggregate_id = $1
                                     AND event_type = 'CustomerErased')
                 LIMIT 1",
            )
            .bind(stream_id)
            .fetch_optional(&mut *conn)
            .await;
            pg_events::release(conn);
            found?
        }
        Db::Sqlite(_) => sql!(
            db,
            as (i64,),
            "SELECT 1 FROM events
             WHERE aggregate_type = 'Customer' AND aggregate_id = $1
               AND NOT EXISTS (SELECT 1 FROM events
                               WHERE aggregate_type = 'Customer' AND aggregate_id = $1
                                 AND event_type = 'CustomerErased')
             LIMIT 1",
            [stream_id],
            fetch_optional
        )?
        .map(|(one,)| one),
    };
    Ok(found.is_some())
}

/// How many events of type `event_type` the stream has (the demo waits on them).
pub async fn count_in_stream(
    db: &Db,
    aggregate_type: &str,
    aggregate_id: &str,
    event_type: &str,
) -> Result<i64, StoreError> {
    let (n,): (i64,) = sql!(
        db,
        as (i64,),
        "SELECT count(*) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND event_type = $3",
        [aggregate_type, aggregate_id, event_type],
        fetch_one
    )?;
    Ok(n)
}

/// The first and last positions (at most `upto`) that can fall in `[from, to)` for `tenant`
/// (any when `None`), or `None` when none does. On PostgreSQL `recorded_at` is the writing
/// transaction's start, so it does not grow with the position: the caller still reads and
/// filters every event in between exactly.
pub async fn position_bounds(
    db: &Db,
    upto: i64,
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
    tenant: Option<&str>,
) -> Result<(Option<i64>, Option<i64>), StoreError> {
    Ok(match db {
        Db::Postgres(_) => sql!(
            db,
            as (Option<i64>, Option<i64>),
            "SELECT MIN(global_position), MAX(global_position) FROM events
             WHERE global_position IS NOT NULL AND global_position <= $1
               AND ($2::timestamptz IS NULL OR recorded_at >= $2)
               AND ($3::timestamptz IS NULL OR recorded_at < $3)
               AND ($4::text IS NULL OR tenant = $4)",
            [upto, from, to, tenant],
            fetch_one
        )?,
        Db::Sqlite(_) => {
            // `recorded_at` is text `YYYY-MM-DDTHH:MM:SS.sssZ`: bounds truncated to the
            // millisecond compare as text, and are only ever wider than the exact range.
            let text =
                |t: &chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            sql!(
                db,
                as (Option<i64>, Option<i64>),
                "SELECT MIN(global_position), MAX(global_position) FROM events
                 WHERE global_position IS NOT NULL AND global_position <= $1
                   AND ($2 IS NULL OR recorded_at >= $2)
                   AND ($3 IS NULL OR recorded_at <= $3)
                   AND ($4 IS NULL OR tenant = $4)",
                [upto, from.as_ref().map(text), to.as_ref().map(text), tenant],
                fetch_one
            )?
        }
    })
}

/// The columns a projection reads, the same on both backends. The payload and metadata come
/// as text: the reducers decode the payload straight into the domain's types, and take two
/// fields of the metadata.
const READ_SQL: &str = "SELECT global_position, tenant, aggregate_type, aggregate_id, event_type,
            CAST(payload AS TEXT), CAST(metadata AS TEXT), recorded_at
     FROM events WHERE global_position > $1 ORDER BY global_position LIMIT $2";

/// Up to `limit` events after `after`, all tenants, in global order: the same events as
/// [`log::read_from`] with no filter, by a plain range scan of the position index (the filtered
/// query's generic plan can be far slower on a large log).
pub async fn projection_events(
    db: &Db,
    after: i64,
    limit: i64,
) -> Result<Vec<LogEvent>, StoreError> {
    log::sequence_pending(db).await?;
    let mut events = match db {
        Db::Postgres(pool) => read_pg(pool, after, limit).await?,
        Db::Sqlite(pool) => read_sqlite(pool, after, limit).await?,
    };
    let keys = personal::keys_for(db, personal_of(&events)).await?;
    open_all(&keys, &mut events)?;
    Ok(events)
}

/// The `(aggregate type, stream, event type)` of each event, for [`personal::keys_for`].
fn personal_of(events: &[LogEvent]) -> impl Iterator<Item = (&str, &str, &str)> {
    events.iter().map(|e| {
        (
            e.aggregate_type.as_str(),
            e.aggregate_id.as_str(),
            e.event_type.as_str(),
        )
    })
}

/// Personal data as readers see it: in clear, or erased (see [`personal`]).
fn open_all(keys: &personal::Keys, events: &mut [LogEvent]) -> Result<(), StoreError> {
    for e in events {
        keys.open_text(
            &e.aggregate_type,
            &e.aggregate_id,
            &e.event_type,
            &mut e.payload,
        )?;
    }
    Ok(())
}

/// [`projection_events`] inside `tx` on `db`. A SQLite transaction holds the database's write lock, so it must read
/// on its own connection: a second pooled one may be held by a writer waiting for that lock.
pub async fn projection_events_in(
    db: &Db,
    tx: &mut Tx,
    after: i64,
    limit: i64,
) -> Result<Vec<LogEvent>, StoreError> {
    let mut events = match tx {
        Tx::Postgres(t) => read_pg(&mut **t, after, limit).await?,
        Tx::Sqlite(t) => read_sqlite(&mut **t, after, limit).await?,
    };
    let keys = personal::keys_for_in(db, tx, personal_of(&events)).await?;
    open_all(&keys, &mut events)?;
    Ok(events)
}

async fn read_pg<'e>(
    on: impl sqlx::PgExecutor<'e>,
    after: i64,
    limit: i64,
) -> Result<Vec<LogEvent>, StoreError> {
    let rows: Vec<LogRow> = sqlx::query_as(READ_SQL)
        .bind(after)
        .bind(limit)
        .fetch_all(on)
        .await?;
    rows.into_iter().map(log_event).collect()
}

async fn read_sqlite<'e>(
    on: impl sqlx::SqliteExecutor<'e>,
    after: i64,
    limit: i64,
) -> Result<Vec<LogEvent>, StoreError> {
    let rows: Vec<SqliteRow> = sqlx::query_as(READ_SQL)
        .bind(after)
        .bind(limit)
        .fetch_all(on)
        .await?;
    rows.into_iter().map(sqlite_log_event).collect()
}

/// A row of [`READ_SQL`].
type LogRow = (
    i64,
    Option<String>,
    String,
    String,
    String,
    String,
    String,
    chrono::DateTime<chrono::Utc>,
);

/// SQLite keeps the recorded time as RFC 3339 text.
type SqliteRow = (
    i64,
    Option<String>,
    String,
    String,
    String,
    String,
    String,
    String,
);

fn sqlite_log_event(row: SqliteRow) -> Result<LogEvent, StoreError> {
    let recorded_at = chrono::DateTime::parse_from_rfc3339(&row.7)
        .map_err(|e| StoreError::Corrupt(format!("recorded_at at {}: {e}", row.0)))?
        .with_timezone(&chrono::Utc);
    log_event((row.0, row.1, row.2, row.3, row.4, row.5, row.6, recorded_at))
}

/// The two metadata fields the views show; the rest is skipped unparsed.
#[derive(serde::Deserialize)]
struct Attribution {
    actor: Option<String>,
    correlation_id: Option<String>,
}

fn log_event(row: LogRow) -> Result<LogEvent, StoreError> {
    let (position, tenant, aggregate_type, aggregate_id, event_type, payload, metadata, at) = row;
    let attribution: Attribution = serde_json::from_str(&metadata)
        .map_err(|e| StoreError::Corrupt(format!("metadata at {position}: {e}")))?;
    // Every event since the first release names its tenant; the stream id says it too.
    let tenant = tenant.unwrap_or_else(|| {
        aggregate_id
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string()
    });
    Ok(LogEvent {
        position,
        tenant,
        aggregate_type,
        aggregate_id,
        event_type,
        payload,
        actor: attribution.actor,
        correlation_id: attribution.correlation_id,
        recorded_at: at,
    })
}
