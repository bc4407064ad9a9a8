//! The SQLite event repository the ledger runs each command through.
//!
//! It is `sqlite-es`'s repository with one change: a command's events are appended, numbered
//! (by the table's trigger) and sealed ([`super::seals`]) in **one** `BEGIN IMMEDIATE`
//! transaction, so on SQLite no event is ever committed without its links. `BEGIN IMMEDIATE`
//! takes the write lock first, so the sealed head read inside it cannot move under it.
//!
//! Personal data ([`personal`]): a customer's profile is encrypted under its data key inside
//! that transaction, and read back in clear (or erased) on load.
//!
//! Reads are `sqlite-es`'s own, then opened; snapshots and streams, which the ledger does not
//! use, are `sqlite-es`'s own (a replay through them would see profiles encrypted).

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use serde_json::Value;
use sqlite_es::SqliteEventRepository;
use sqlx::SqlitePool;

use super::pg_events::{personal_part, stored_payloads};
use super::seals;
use crate::store::{personal, Db};

pub struct SealingSqliteRepository {
    pool: SqlitePool,
    inner: SqliteEventRepository,
}

impl SealingSqliteRepository {
    pub fn new(pool: SqlitePool) -> Self {
        Self {
            inner: SqliteEventRepository::new(pool.clone()),
            pool,
        }
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
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(persistence)?;
        // Each customer profile encrypted under its customer's key, in the same transaction.
        let mut personal_events = personal_part(events);
        if !personal_events.is_empty() {
            // Boxed: a command's future is deep already (a task's stack is small).
            Box::pin(personal::seal_for_append_sqlite(
                &personal::sqlite_identity(&self.pool),
                &mut tx,
                &mut personal_events,
            ))
            .await
            .map_err(unknown)?;
        }
        let payloads = stored_payloads(events, &personal_events);
        let mut query = sqlx::query(&sql);
        for (event, payload) in events.iter().zip(payloads) {
            let sequence = i64::try_from(event.sequence).map_err(unknown)?;
            query = query
                .bind(&event.aggregate_type)
                .bind(&event.aggregate_id)
                .bind(sequence)
                .bind(&event.event_type)
                .bind(&event.event_version)
                .bind(serde_json::to_string(payload).map_err(unknown)?)
                .bind(serde_json::to_string(&event.metadata).map_err(unknown)?);
        }
        query.execute(&mut *tx).await.map_err(persistence)?;
        if seals::sealing() {
            seals::sqlite_seal(&mut tx).await.map_err(unknown)?;
        }
        tx.commit().await.map_err(persistence)
    }
}

impl SealingSqliteRepository {
    /// A stream's events as the aggregate reads them: personal data in clear, or erased.
    async fn open(
        &self,
        mut events: Vec<SerializedEvent>,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let db = Db::Sqlite(self.pool.clone());
        let keys = Box::pin(personal::keys_for(
            &db,
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
}

fn unknown(error: impl std::error::Error + Send + Sync + 'static) -> PersistenceError {
    PersistenceError::UnknownError(Box::new(error))
}

fn persistence(error: sqlx::Error) -> PersistenceError {
    match error {
        // SQLITE_CONSTRAINT_PRIMARYKEY: another command appended this sequence first.
        sqlx::Error::Database(e) if e.code().as_deref() == Some("1555") => {
            PersistenceError::OptimisticLockError
        }
        error @ (sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut) => {
            PersistenceError::ConnectionError(Box::new(error))
        }
        error => unknown(error),
    }
}

impl PersistedEventRepository for SealingSqliteRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let events = self.inner.get_events::<A>(aggregate_id).await?;
        self.open(events).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let events = self
            .inner
            .get_last_events::<A>(aggregate_id, last_sequence)
            .await?;
        self.open(events).await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.inner.get_snapshot::<A>(aggregate_id).await
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
            // An event and its snapshot must commit together: sqlite-es's transaction, then
            // the seal in the next (the ledger never takes this path).
            Some(update) => {
                self.inner.persist::<A>(events, Some(update)).await?;
                seals::sqlite_backlog(&self.pool).await.map_err(unknown)?;
                Ok(())
            }
        }
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.inner.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.inner.stream_all_events::<A>().await
    }
}
