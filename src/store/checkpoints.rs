//! The checkpoints (`checkpoints`): how far in the global log each follower has got, one row
//! per follower (`sync-dispatcher`, `projection:<name>`), the one implementation the sync
//! dispatcher and the projection runner share.
//!
//! # Exactly once
//! A follower reads events past its checkpoint *without* a lock (reading while holding a
//! transaction that waits for a second pooled connection can starve a busy pool), then opens a
//! transaction, [`lock`]s its checkpoint and checks that it has not moved, writes what it
//! derives from the events and [`save`]s the checkpoint in the same transaction. A crash
//! before the commit loses rows and checkpoint alike, so the batch is simply done again; after
//! it, nothing is repeated. Two followers of the same name (two replicas) serialize on the
//! row: `FOR UPDATE` on PostgreSQL, the database's write lock (`BEGIN IMMEDIATE`, see
//! [`Db::begin`]) on SQLite.

use super::{now_ms, Db, StoreError, Tx};
use crate::sql;

/// The checkpoint `name`, read without a lock; 0 when it has no row yet.
pub async fn position(db: &Db, name: &str) -> Result<i64, StoreError> {
    let row = sql!(db, as (i64,), "SELECT position FROM checkpoints WHERE name = $1", [name], fetch_optional)?;
    Ok(row.map_or(0, |r| r.0))
}

/// The checkpoint `name` locked for the rest of `tx`, its row created at 0 when missing.
pub async fn lock(tx: &mut Tx, name: &str) -> Result<i64, StoreError> {
    if let Some(position) = select_for_update(tx, name).await? {
        return Ok(position);
    }
    sql!(
        tx,
        "INSERT INTO checkpoints (name, position, updated_at_ms) VALUES ($1, 0, $2) ON CONFLICT (name) DO NOTHING",
        [name, now_ms()]
    )?;
    // Locked now, whoever created it (another follower may have moved it meanwhile).
    select_for_update(tx, name)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("checkpoint {name} vanished")))
}

async fn select_for_update(tx: &mut Tx, name: &str) -> Result<Option<i64>, StoreError> {
    let row: Option<(i64,)> = match tx {
        Tx::Postgres(_) => {
            sql!(tx, as (i64,), "SELECT position FROM checkpoints WHERE name = $1 FOR UPDATE", [name], fetch_optional)?
        }
        // The transaction holds the database's write lock already.
        Tx::Sqlite(_) => {
            sql!(tx, as (i64,), "SELECT position FROM checkpoints WHERE name = $1", [name], fetch_optional)?
        }
    };
    Ok(row.map(|r| r.0))
}

/// Moves the checkpoint `name` (locked by [`lock`] in `tx`) to `position`.
pub async fn save(tx: &mut Tx, name: &str, position: i64) -> Result<(), StoreError> {
    sql!(
        tx,
        "UPDATE checkpoints SET position = $2, updated_at_ms = $3 WHERE name = $1",
        [name, position, now_ms()]
    )?;
    Ok(())
}

/// The checkpoint `name` and when it last moved, or `None` when it has no row yet.
pub async fn status(db: &Db, name: &str) -> Result<Option<(i64, i64)>, StoreError> {
    Ok(sql!(
        db,
        as (i64, i64),
        "SELECT position, updated_at_ms FROM checkpoints WHERE name = $1",
        [name],
        fetch_optional
    )?)
}
