//! The shops' self-service reconnect links (`reconnect_links`, see `crate::notify::reconnect`).
//!
//! # Invariants
//! A link row holds no secret: the URL's signature is checked against the server's key, the
//! row only says whether the link was opened and used. A link is used at most once
//! ([`take`] is a conditional update), and never after it expired.

use super::{Db, StoreError, Tx};
use crate::sql;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct LinkRow {
    pub link_id: String,
    pub tenant: String,
    pub created_by: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub opened_at_ms: Option<i64>,
    pub used_at_ms: Option<i64>,
}

pub async fn insert(tx: &mut Tx, link: &LinkRow) -> Result<(), StoreError> {
    sql!(
        tx,
        "INSERT INTO reconnect_links (link_id, tenant, created_by, created_at_ms, expires_at_ms)
         VALUES ($1, $2, $3, $4, $5)",
        [
            &link.link_id,
            &link.tenant,
            &link.created_by,
            link.created_at_ms,
            link.expires_at_ms
        ]
    )?;
    Ok(())
}

pub async fn get(db: &Db, link_id: &str) -> Result<Option<LinkRow>, StoreError> {
    Ok(sql!(
        db,
        as LinkRow,
        "SELECT link_id, tenant, created_by, created_at_ms, expires_at_ms, opened_at_ms, used_at_ms
         FROM reconnect_links WHERE link_id = $1",
        [link_id],
        fetch_optional
    )?)
}

/// Records the first time a valid link was opened.
pub async fn mark_opened(db: &Db, link_id: &str, now: i64) -> Result<(), StoreError> {
    sql!(
        db,
        "UPDATE reconnect_links SET opened_at_ms = $2 WHERE link_id = $1 AND opened_at_ms IS NULL",
        [link_id, now]
    )?;
    Ok(())
}

/// Uses the link: true only for the one caller that found it unused and unexpired.
pub async fn take(db: &Db, link_id: &str, now: i64) -> Result<bool, StoreError> {
    let n = sql!(
        db,
        "UPDATE reconnect_links SET used_at_ms = $2, opened_at_ms = COALESCE(opened_at_ms, $2)
         WHERE link_id = $1 AND used_at_ms IS NULL AND expires_at_ms > $2",
        [link_id, now]
    )?;
    Ok(n == 1)
}

/// The latest `limit` links of `tenant`, newest first.
pub async fn list(db: &Db, tenant: &str, limit: i64) -> Result<Vec<LinkRow>, StoreError> {
    Ok(sql!(
        db,
        as LinkRow,
        "SELECT link_id, tenant, created_by, created_at_ms, expires_at_ms, opened_at_ms, used_at_ms
         FROM reconnect_links WHERE tenant = $1 ORDER BY created_at_ms DESC, link_id LIMIT $2",
        [tenant, limit],
        fetch_all
    )?)
}
