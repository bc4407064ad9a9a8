//! Remembered responses for the `Idempotency-Key` header: a retried request gets the first
//! answer and appends nothing.
//!
//! A claim whose request never finished (the process died, or the handler was dropped with
//! its connection) would answer "in progress" forever; it expires after the `ttl` the caller
//! gives, measured on the database's clock, and the next request with the same key and the
//! same body takes it over and runs. A claim is taken over only with the same request hash,
//! so a different body with the key still gets [`Claim::Mismatch`].

use std::time::Duration;

use super::{Db, StoreError};
use crate::sql;

/// What a request carrying an idempotency key may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First time this key is seen: run the request, then [`complete`].
    Fresh,
    /// Seen with the same request: answer this.
    Replay { status: u16, body: String },
    /// Seen with a different request.
    Mismatch,
    /// The first request with this key is still running (its claim has not expired).
    InProgress,
}

/// Claims `key` for a request, or says what to answer instead; an unfinished claim older
/// than `ttl` with the same `request_hash` is taken over ([`Claim::Fresh`]).
pub async fn claim(
    db: &Db,
    tenant: &str,
    key: &str,
    request_hash: &str,
    ttl: Duration,
) -> Result<Claim, StoreError> {
    let inserted = sql!(
        db,
        "INSERT INTO idempotency_keys (tenant, key, request_hash) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
        [tenant, key, request_hash]
    )?;
    if inserted == 1 {
        return Ok(Claim::Fresh);
    }
    // An expired claim of the same request: renew it as ours (the database's clock).
    let taken_over = match db {
        Db::Postgres(_) => sql!(
            db,
            "UPDATE idempotency_keys SET created_at = now()
             WHERE tenant = $1 AND key = $2 AND request_hash = $3 AND status_code IS NULL
               AND created_at < now() - make_interval(secs => $4)",
            [tenant, key, request_hash, ttl.as_secs_f64()]
        )?,
        Db::Sqlite(_) => sql!(
            db,
            "UPDATE idempotency_keys SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
             WHERE tenant = $1 AND key = $2 AND request_hash = $3 AND status_code IS NULL
               AND created_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', $4)",
            [
                tenant,
                key,
                request_hash,
                format!("-{:.3} seconds", ttl.as_secs_f64())
            ]
        )?,
    };
    if taken_over == 1 {
        return Ok(Claim::Fresh);
    }
    let row: Option<(String, Option<i32>, Option<String>)> = sql!(
        db,
        as (String, Option<i32>, Option<String>),
        "SELECT request_hash, status_code, response_body FROM idempotency_keys
         WHERE tenant = $1 AND key = $2",
        [tenant, key],
        fetch_optional
    )?;
    Ok(match row {
        // Released between our insert and our read: the caller may simply retry.
        None => Claim::InProgress,
        Some((hash, _, _)) if hash != request_hash => Claim::Mismatch,
        Some((_, Some(status), Some(body))) => Claim::Replay {
            status: u16::try_from(status)
                .map_err(|_| StoreError::Corrupt(format!("status code {status}")))?,
            body,
        },
        Some(_) => Claim::InProgress,
    })
}

/// Remembers the answer to the request that claimed `key`.
pub async fn complete(
    db: &Db,
    tenant: &str,
    key: &str,
    status: u16,
    body: &str,
) -> Result<(), StoreError> {
    sql!(
        db,
        "UPDATE idempotency_keys SET status_code = $3, response_body = $4
         WHERE tenant = $1 AND key = $2",
        [tenant, key, i32::from(status), body]
    )?;
    Ok(())
}

/// Forgets a key whose request failed for a reason worth retrying (a 5xx).
pub async fn release(db: &Db, tenant: &str, key: &str) -> Result<(), StoreError> {
    sql!(
        db,
        "DELETE FROM idempotency_keys WHERE tenant = $1 AND key = $2",
        [tenant, key]
    )?;
    Ok(())
}
