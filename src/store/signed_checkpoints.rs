//! `seal_checkpoints`: the signed checkpoints of the sealed log (see `audit::checkpoint`), one
//! per position, never updated.

use crate::audit::checkpoint::Checkpoint;
use crate::sql;
use crate::store::{Db, StoreError};

type Row = (i64, String, String, i64, String, String, String, String);

fn checkpoint(row: Row) -> Checkpoint {
    let (position, head_hash, tenant_root, tenants, signed_at, key_id, statement, signature) = row;
    Checkpoint {
        position,
        head_hash,
        tenant_root,
        tenants,
        signed_at,
        key_id,
        statement,
        signature,
    }
}

const COLUMNS: &str =
    "position, head_hash, tenant_root, tenants, signed_at, key_id, statement, signature";

/// Stores `c` with the leaves of its Merkle tree (`heads`, JSON); a checkpoint already stored
/// at that position is kept (returns false).
pub async fn insert(db: &Db, c: &Checkpoint, heads: &str) -> Result<bool, StoreError> {
    let n = sql!(
        db,
        "INSERT INTO seal_checkpoints (position, head_hash, tenant_root, tenants, signed_at, key_id,
                                       statement, signature, heads)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (position) DO NOTHING",
        [
            c.position,
            &c.head_hash,
            &c.tenant_root,
            c.tenants,
            &c.signed_at,
            &c.key_id,
            &c.statement,
            &c.signature,
            heads
        ]
    )?;
    Ok(n == 1)
}

/// Checkpoints with `from <= position <= to`, oldest first, at most `limit`.
pub async fn between(
    db: &Db,
    from: i64,
    to: i64,
    limit: i64,
) -> Result<Vec<Checkpoint>, StoreError> {
    let rows = sql!(
        db,
        as Row,
        &format!(
            "SELECT {COLUMNS} FROM seal_checkpoints
             WHERE position >= $1 AND position <= $2 ORDER BY position LIMIT $3"
        ),
        [from, to, limit],
        fetch_all
    )?;
    Ok(rows.into_iter().map(checkpoint).collect())
}

/// The newest checkpoint, if any.
pub async fn latest(db: &Db) -> Result<Option<Checkpoint>, StoreError> {
    let row = sql!(
        db,
        as Row,
        &format!("SELECT {COLUMNS} FROM seal_checkpoints ORDER BY position DESC LIMIT 1"),
        [],
        fetch_optional
    )?;
    Ok(row.map(checkpoint))
}

/// The leaves (JSON) the checkpoint at `position` signed the root of.
pub async fn heads(db: &Db, position: i64) -> Result<Option<String>, StoreError> {
    let row = sql!(
        db,
        as (String,),
        "SELECT heads FROM seal_checkpoints WHERE position = $1",
        [position],
        fetch_optional
    )?;
    Ok(row.map(|(h,)| h))
}
