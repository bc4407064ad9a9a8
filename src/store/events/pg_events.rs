//! The PostgreSQL event repository the ledger runs each command through.
//!
//! It is `postgres-es`'s repository with one change: a command's events are appended by a
//! single `INSERT … VALUES (…), (…)` instead of `BEGIN`, one `INSERT` per event and `COMMIT`,
//! two round trips fewer on every ingest request, which round trips dominate. One statement is
//! atomic on its own, so the events still land all or none, and the
//! `(aggregate_type, aggregate_id, sequence)` key still turns a concurrent append into an
//! optimistic-lock conflict.
//!
//! A command runs on **one** pooled connection, from the load of its stream to its append
//! ([`on_one_connection`]): sqlx checks a connection with a round trip when it leaves the pool
//! and again when it returns, so a checkout per statement doubled a command's round trips.
//! Whatever else the command reads in between (the invoice handler asks the customer
//! directory) goes through [`connection`] too and so uses the same connection: a command that
//! held one connection while waiting for a second could, under concurrency, leave every
//! connection held by a command waiting for another (measured once: the pool timed out).
//!
//! Personal data ([`personal`]): a customer's profile is encrypted under its data key on
//! append, and read back in clear (or erased) on load, both on the command's connection.
//!
//! Snapshots and streams, which the ledger does not use, are `postgres-es`'s own (their
//! payloads are as stored: a replay through them would see profiles encrypted).

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use std::cell::RefCell;
use std::future::Future;

use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres, Row};

use crate::store::personal;

tokio::task_local! {
    /// The connection the running command holds, between two of its statements.
    static HELD: RefCell<Option<PoolConnection<Postgres>>>;
}

/// Runs `command` so that every statement it makes through [`connection`] shares one pooled
/// connection, given back to the pool when the command ends.
pub async fn on_one_connection<F: Future>(command: F) -> F::Output {
    HELD.scope(RefCell::new(None), command).await
}

/// The running command's connection, or a pooled one outside [`on_one_connection`]. Hand it
/// back with [`release`] once the statement is done.
pub async fn connection(pool: &PgPool) -> Result<PoolConnection<Postgres>, sqlx::Error> {
    match HELD.try_with(|held| held.borrow_mut().take()) {
        Ok(Some(connection)) => Ok(connection),
        _ => pool.acquire().await,
    }
}

/// Keeps `connection` for the running command's next statement; outside a command it goes
/// back to the pool.
pub fn release(connection: PoolConnection<Postgres>) {
    let mut spare = Some(connection);
    let _ = HELD.try_with(|held| *held.borrow_mut() = spare.take());
    drop(spare);
}

pub struct PgEventRepository {
    pool: PgPool,
}

fn persistence(error: sqlx::Error) -> PersistenceError {
    match error {
        sqlx::Error::Database(e) if e.code().as_deref() == Some("23505") => {
            PersistenceError::OptimisticLockError
        }
        error @ (sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut) => {
            PersistenceError::ConnectionError(Box::new(error))
        }
        error => PersistenceError::UnknownError(Box::new(error)),
    }
}

impl PgEventRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    fn inner(&self) -> PostgresEventRepository {
        PostgresEventRepository::new(self.pool.clone())
    }

    async fn select_events(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_sequence: i64,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let query = sqlx::query(
            "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata
             FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3
             ORDER BY sequence",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(after_sequence);
        let mut conn = connection(&self.pool).await.map_err(persistence)?;
        let rows = query.fetch_all(&mut *conn).await;
        let opened = match rows {
            Ok(rows) => open_rows(&personal::pg_identity(&self.pool), &mut conn, rows).await,
            Err(e) => Err(persistence(e)),
        };
        release(conn);
        opened
    }

    async fn append(&self, events: &[SerializedEvent]) -> Result<(), PersistenceError> {
        let mut conn = connection(&self.pool).await.map_err(persistence)?;
        let done = append_on(&personal::pg_identity(&self.pool), &mut conn, events).await;
        release(conn);
        done
    }
}

/// The rows of a stream as the aggregate reads them: personal data in clear, or erased
/// (read on the command's connection, see the module documentation).
async fn open_rows(
    identity: &str,
    conn: &mut sqlx::PgConnection,
    rows: Vec<sqlx::postgres::PgRow>,
) -> Result<Vec<SerializedEvent>, PersistenceError> {
    let mut events = rows
        .iter()
        .map(|row| {
            let sequence: i64 = row.try_get("sequence").map_err(persistence)?;
            Ok(SerializedEvent::new(
                row.try_get("aggregate_id").map_err(persistence)?,
                usize::try_from(sequence)
                    .map_err(|e| PersistenceError::UnknownError(Box::new(e)))?,
                row.try_get("aggregate_type").map_err(persistence)?,
                row.try_get("event_type").map_err(persistence)?,
                row.try_get("event_version").map_err(persistence)?,
                row.try_get("payload").map_err(persistence)?,
                row.try_get("metadata").map_err(persistence)?,
            ))
        })
        .collect::<Result<Vec<_>, PersistenceError>>()?;
    let keys = Box::pin(personal::keys_for_pg_conn(
        identity,
        conn,
        events.iter().map(|e| {
            (
                e.aggregate_type.as_str(),
                e.aggregate_id.as_str(),
                e.event_type.as_str(),
            )
        }),
    ))
    .await
    .map_err(unknown)?;
    for e in &mut events {
        keys.open(
            &e.aggregate_type,
            &e.aggregate_id,
            &e.event_type,
            &mut e.payload,
        )
        .map_err(unknown)?;
    }
    Ok(events)
}

fn unknown(error: impl std::error::Error + Send + Sync + 'static) -> PersistenceError {
    PersistenceError::UnknownError(Box::new(error))
}

/// The payloads to store: each customer profile encrypted under its customer's key
/// ([`personal`]), every other payload as it is.
pub(super) fn personal_part(events: &[SerializedEvent]) -> personal::PersonalEvents {
    events
        .iter()
        .filter(|e| personal::carries_personal_data(&e.aggregate_type, &e.event_type))
        .map(|e| {
            (
                e.aggregate_id.clone(),
                e.event_type.clone(),
                e.payload.clone(),
            )
        })
        .collect()
}

/// Puts the encrypted payloads of [`personal_part`] back in the order of `events`.
pub(super) fn stored_payloads<'a>(
    events: &'a [SerializedEvent],
    sealed: &'a personal::PersonalEvents,
) -> Vec<&'a Value> {
    let mut sealed = sealed.iter();
    events
        .iter()
        .map(|e| {
            if personal::carries_personal_data(&e.aggregate_type, &e.event_type) {
                sealed.next().map_or(&e.payload, |(_, _, payload)| payload)
            } else {
                &e.payload
            }
        })
        .collect()
}

fn seal_error(error: personal::SealError) -> PersistenceError {
    unknown(error)
}

async fn append_on(
    identity: &str,
    conn: &mut sqlx::PgConnection,
    events: &[SerializedEvent],
) -> Result<(), PersistenceError> {
    let mut personal_events = personal_part(events);
    let mut new_keys = Vec::new();
    if !personal_events.is_empty() {
        let new_streams: Vec<&str> = events
            .iter()
            .filter(|e| e.sequence == 1)
            .map(|e| e.aggregate_id.as_str())
            .collect();
        // Boxed: a command's future is deep already (a task's stack is small).
        new_keys = Box::pin(personal::seal_for_append_pg(
            identity,
            conn,
            &mut personal_events,
            &new_streams,
        ))
        .await
        .map_err(seal_error)?;
    }
    let payloads = stored_payloads(events, &personal_events);
    {
        const COLUMNS: usize = 7;
        let rows: Vec<String> = (0..events.len())
            .map(|row| {
                let params: Vec<String> = (1..=COLUMNS)
                    .map(|column| format!("${}", row * COLUMNS + column))
                    .collect();
                format!("({})", params.join(", "))
            })
            .collect();
        // A new customer's data key is stored by the same statement as its first event: all or
        // nothing, and no round trip more.
        let first_key = events.len() * COLUMNS;
        let keys: Vec<String> = (0..new_keys.len())
            .map(|k| {
                let at = first_key + k * 4;
                format!("(${}, ${}, ${}, ${})", at + 1, at + 2, at + 3, at + 4)
            })
            .collect();
        let with_keys = if keys.is_empty() {
            String::new()
        } else {
            format!(
                "WITH made_keys AS (INSERT INTO customer_keys (stream_id, tenant, wrapped_key, created_at_ms) VALUES {}) ",
                keys.join(", ")
            )
        };
        let sql = format!(
            "{with_keys}INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             VALUES {}",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for (event, payload) in events.iter().zip(payloads) {
            let sequence = i64::try_from(event.sequence)
                .map_err(|e| PersistenceError::UnknownError(Box::new(e)))?;
            query = query
                .bind(&event.aggregate_type)
                .bind(&event.aggregate_id)
                .bind(sequence)
                .bind(&event.event_type)
                .bind(&event.event_version)
                .bind(payload)
                .bind(&event.metadata);
        }
        let now = crate::store::now_ms();
        for (stream, tenant, wrapped) in &new_keys {
            query = query.bind(stream).bind(tenant).bind(wrapped).bind(now);
        }
        let done = query.execute(&mut *conn).await;
        done.map(|_| ()).map_err(persistence)
    }
}

impl PersistedEventRepository for PgEventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.select_events(A::TYPE, aggregate_id, 0).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let after = i64::try_from(last_sequence)
            .map_err(|e| PersistenceError::UnknownError(Box::new(e)))?;
        self.select_events(A::TYPE, aggregate_id, after).await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.inner().get_snapshot::<A>(aggregate_id).await
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        match snapshot_update {
            // The ledger keeps no snapshots (its streams are short), so this is every append.
            None if !events.is_empty() => self.append(events).await,
            None => Ok(()),
            // An event and its snapshot must commit together: postgres-es's transaction.
            Some(update) => self.inner().persist::<A>(events, Some(update)).await,
        }
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.inner().stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.inner().stream_all_events::<A>().await
    }
}
