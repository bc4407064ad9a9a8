//! The PostgreSQL event repository the ledger runs each command through.
//!
//! It is `postgres-es`'s repository with one change: a command's events are appended by a
//! single `INSERT … VALUES (…), (…)` instead of `BEGIN`, one `INSERT` per event and `COMMIT`,
//! two round trips fewer on every ingest request, which round trips dominate. One statement is
//! atomic on its own, so the events still land all or none, and the
//! `(aggregate_type, aggregate_id, sequence)` key still turns a concurrent append into an
//! optimistic-lock conflict.
//!
//! Each call takes its own pooled connection. Holding one connection from load to append would
//! save a pool checkout, but an invoice's command handler asks the customer directory in
//! between, on a second connection: under concurrency every connection can end up held by a
//! command waiting for another (measured: the pool timed out).
//!
//! Snapshots and streams, which the ledger does not use, are `postgres-es`'s own.

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::{PgPool, Row};

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
        let rows = sqlx::query(
            "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata
             FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3
             ORDER BY sequence",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(after_sequence)
        .fetch_all(&self.pool)
        .await
        .map_err(persistence)?;
        rows.iter()
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
            .collect()
    }

    async fn append(&self, events: &[SerializedEvent]) -> Result<(), PersistenceError> {
        const COLUMNS: usize = 7;
        let rows: Vec<String> = (0..events.len())
            .map(|row| {
                let params: Vec<String> = (1..=COLUMNS)
                    .map(|column| format!("${}", row * COLUMNS + column))
                    .collect();
                format!("({})", params.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             VALUES {}",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for event in events {
            let sequence = i64::try_from(event.sequence)
                .map_err(|e| PersistenceError::UnknownError(Box::new(e)))?;
            query = query
                .bind(&event.aggregate_type)
                .bind(&event.aggregate_id)
                .bind(sequence)
                .bind(&event.event_type)
                .bind(&event.event_version)
                .bind(&event.payload)
                .bind(&event.metadata);
        }
        query
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(persistence)
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
