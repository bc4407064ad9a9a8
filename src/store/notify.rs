//! Outbound notifications (`notify_endpoints`, `notify_messages`, `notify_deliveries`,
//! `notify_attempts`): the endpoints a tenant subscribed, the outbox the notifier derives from
//! the log, one delivery per message and endpoint, and every attempt (see `crate::notify`).
//!
//! # Invariants
//! - A message is written with the notifier's checkpoint, in one transaction, so the outbox
//!   holds each notifying event exactly once, and a tenant's messages appear in ledger order
//!   (the change feed reads them by position and can never see a later one before an earlier).
//! - A delivery is created with its message, for every enabled endpoint of the tenant that
//!   subscribed its type; later it only changes state (pending → delivered | failed) or is put
//!   back to pending by a resend. Attempts are only ever appended.

use super::{Db, StoreError, Tx};
use crate::sql;

/// One endpoint as stored (the secret included: only the signer and the creation answer read it).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EndpointRow {
    pub id: String,
    pub tenant: String,
    pub url: String,
    /// Comma-separated notification types.
    pub event_types: String,
    pub description: String,
    pub secret: String,
    pub enabled: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub failing_since_ms: Option<i64>,
    pub disabled_at_ms: Option<i64>,
    pub disabled_reason: Option<String>,
}

const ENDPOINT_COLUMNS: &str = "id, tenant, url, event_types, description, secret, enabled,
    created_at_ms, updated_at_ms, failing_since_ms, disabled_at_ms, disabled_reason";

pub async fn insert_endpoint(db: &Db, e: &EndpointRow) -> Result<(), StoreError> {
    sql!(
        db,
        "INSERT INTO notify_endpoints (id, tenant, url, event_types, description, secret,
             enabled, created_at_ms, updated_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [
            &e.id,
            &e.tenant,
            &e.url,
            &e.event_types,
            &e.description,
            &e.secret,
            e.enabled,
            e.created_at_ms,
            e.updated_at_ms
        ]
    )?;
    Ok(())
}

pub async fn list_endpoints(db: &Db, tenant: &str) -> Result<Vec<EndpointRow>, StoreError> {
    let q = format!(
        "SELECT {ENDPOINT_COLUMNS} FROM notify_endpoints WHERE tenant = $1 ORDER BY created_at_ms, id"
    );
    Ok(sql!(db, as EndpointRow, &q, [tenant], fetch_all)?)
}

pub async fn get_endpoint(
    db: &Db,
    tenant: &str,
    id: &str,
) -> Result<Option<EndpointRow>, StoreError> {
    let q =
        format!("SELECT {ENDPOINT_COLUMNS} FROM notify_endpoints WHERE tenant = $1 AND id = $2");
    Ok(sql!(db, as EndpointRow, &q, [tenant, id], fetch_optional)?)
}

/// The endpoint `id`, whatever its tenant (the delivery worker's look-up).
pub async fn endpoint_by_id(db: &Db, id: &str) -> Result<Option<EndpointRow>, StoreError> {
    let q = format!("SELECT {ENDPOINT_COLUMNS} FROM notify_endpoints WHERE id = $1");
    Ok(sql!(db, as EndpointRow, &q, [id], fetch_optional)?)
}

/// Rewrites an endpoint's settings. Enabling it clears a disablement and its failure streak,
/// so the next failure starts a new five days. Returns whether it exists.
pub async fn update_endpoint(db: &Db, e: &EndpointRow) -> Result<bool, StoreError> {
    let n = sql!(
        db,
        "UPDATE notify_endpoints
         SET url = $3, event_types = $4, description = $5, enabled = $6, updated_at_ms = $7,
             disabled_at_ms = CASE WHEN $6 = 1 THEN NULL ELSE disabled_at_ms END,
             disabled_reason = CASE WHEN $6 = 1 THEN NULL ELSE disabled_reason END,
             failing_since_ms = CASE WHEN $6 = 1 AND enabled = 0 THEN NULL ELSE failing_since_ms END
         WHERE tenant = $1 AND id = $2",
        [
            &e.tenant,
            &e.id,
            &e.url,
            &e.event_types,
            &e.description,
            e.enabled,
            e.updated_at_ms
        ]
    )?;
    Ok(n == 1)
}

/// Deletes an endpoint and its pending deliveries; its attempts stay for support.
pub async fn delete_endpoint(db: &Db, tenant: &str, id: &str) -> Result<bool, StoreError> {
    let mut tx = db.begin().await?;
    let n = sql!(
        &mut tx,
        "DELETE FROM notify_endpoints WHERE tenant = $1 AND id = $2",
        [tenant, id]
    )?;
    sql!(
        &mut tx,
        "DELETE FROM notify_deliveries WHERE tenant = $1 AND endpoint_id = $2 AND state = 'pending'",
        [tenant, id]
    )?;
    tx.commit().await?;
    Ok(n == 1)
}

/// The enabled endpoints of `tenant` (id, types), inside the notifier's transaction.
pub async fn enabled_endpoints_in(
    tx: &mut Tx,
    tenant: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    Ok(sql!(
        tx,
        as (String, String),
        "SELECT id, event_types FROM notify_endpoints WHERE tenant = $1 AND enabled = 1 ORDER BY id",
        [tenant],
        fetch_all
    )?)
}

/// A failed attempt: starts the endpoint's failure streak if it has none.
pub async fn endpoint_failed(db: &Db, id: &str, at_ms: i64) -> Result<(), StoreError> {
    sql!(
        db,
        "UPDATE notify_endpoints SET failing_since_ms = $2
         WHERE id = $1 AND failing_since_ms IS NULL",
        [id, at_ms]
    )?;
    Ok(())
}

/// A successful attempt ends the endpoint's failure streak.
pub async fn endpoint_succeeded(db: &Db, id: &str) -> Result<(), StoreError> {
    sql!(
        db,
        "UPDATE notify_endpoints SET failing_since_ms = NULL WHERE id = $1 AND failing_since_ms IS NOT NULL",
        [id]
    )?;
    Ok(())
}

/// Disables an endpoint that has been failing since before `failing_before_ms`, saying why.
/// Returns whether it did.
pub async fn disable_if_failing_since(
    db: &Db,
    id: &str,
    failing_before_ms: i64,
    now_ms: i64,
    reason: &str,
) -> Result<bool, StoreError> {
    let n = sql!(
        db,
        "UPDATE notify_endpoints
         SET enabled = 0, disabled_at_ms = $3, disabled_reason = $4, updated_at_ms = $3
         WHERE id = $1 AND enabled = 1 AND failing_since_ms IS NOT NULL AND failing_since_ms <= $2",
        [id, failing_before_ms, now_ms, reason]
    )?;
    Ok(n == 1)
}

/// One notification in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MessageRow {
    pub id: String,
    pub tenant: String,
    pub position: i64,
    pub event_type: String,
    pub payload: String,
    pub created_at_ms: i64,
}

pub async fn insert_message(tx: &mut Tx, m: &MessageRow) -> Result<(), StoreError> {
    sql!(
        tx,
        "INSERT INTO notify_messages (id, tenant, position, event_type, payload, created_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6)",
        [
            &m.id,
            &m.tenant,
            m.position,
            &m.event_type,
            &m.payload,
            m.created_at_ms
        ]
    )?;
    Ok(())
}

/// Up to `limit` messages of `tenant` after ledger position `after`, in ledger order.
pub async fn feed(
    db: &Db,
    tenant: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<MessageRow>, StoreError> {
    Ok(sql!(
        db,
        as MessageRow,
        "SELECT id, tenant, position, event_type, payload, created_at_ms FROM notify_messages
         WHERE tenant = $1 AND position > $2 ORDER BY position LIMIT $3",
        [tenant, after, limit],
        fetch_all
    )?)
}

pub async fn message(db: &Db, tenant: &str, id: &str) -> Result<Option<MessageRow>, StoreError> {
    Ok(sql!(
        db,
        as MessageRow,
        "SELECT id, tenant, position, event_type, payload, created_at_ms FROM notify_messages
         WHERE tenant = $1 AND id = $2",
        [tenant, id],
        fetch_optional
    )?)
}

/// A new pending delivery of a message to an endpoint, due at `now`.
pub async fn insert_delivery(
    tx: &mut Tx,
    endpoint_id: &str,
    message: &MessageRow,
    now: i64,
) -> Result<(), StoreError> {
    sql!(
        tx,
        "INSERT INTO notify_deliveries (endpoint_id, message_id, tenant, position, state,
             attempts, next_attempt_ms, updated_at_ms)
         VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5)",
        [
            endpoint_id,
            &message.id,
            &message.tenant,
            message.position,
            now
        ]
    )?;
    Ok(())
}

/// Sends `message` to `endpoint_id` again from the start of the schedule (a new delivery when
/// it never had one there).
pub async fn resend(
    db: &Db,
    endpoint_id: &str,
    message: &MessageRow,
    now: i64,
) -> Result<(), StoreError> {
    sql!(
        db,
        "INSERT INTO notify_deliveries (endpoint_id, message_id, tenant, position, state,
             attempts, next_attempt_ms, updated_at_ms)
         VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5)
         ON CONFLICT (endpoint_id, message_id) DO UPDATE
         SET state = 'pending', attempts = 0, next_attempt_ms = $5, updated_at_ms = $5",
        [
            endpoint_id,
            &message.id,
            &message.tenant,
            message.position,
            now
        ]
    )?;
    Ok(())
}

/// [`resend`] for every message of `tenant` created in `[from_ms, to_ms)` whose type is one
/// of `types` (comma-separated), in one statement. Returns how many.
pub async fn resend_between(
    db: &Db,
    endpoint_id: &str,
    tenant: &str,
    types: &str,
    from_ms: i64,
    to_ms: i64,
    now: i64,
) -> Result<u64, StoreError> {
    Ok(sql!(
        db,
        "INSERT INTO notify_deliveries (endpoint_id, message_id, tenant, position, state,
             attempts, next_attempt_ms, updated_at_ms)
         SELECT $1, id, tenant, position, 'pending', 0, $6, $6 FROM notify_messages
         WHERE tenant = $2 AND created_at_ms >= $4 AND created_at_ms < $5
           AND ',' || $3 || ',' LIKE '%,' || event_type || ',%'
         ON CONFLICT (endpoint_id, message_id) DO UPDATE
         SET state = 'pending', attempts = 0, next_attempt_ms = $6, updated_at_ms = $6",
        [endpoint_id, tenant, types, from_ms, to_ms, now]
    )?)
}

/// The endpoints with a pending delivery, each with when its oldest one (the next to send, in
/// ledger order) is due. Disabled endpoints are left out: their deliveries wait.
pub async fn endpoints_with_work(db: &Db) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(sql!(
        db,
        as (String, i64),
        "SELECT d.endpoint_id, d.next_attempt_ms
         FROM notify_deliveries d JOIN notify_endpoints e ON e.id = d.endpoint_id
         WHERE d.state = 'pending' AND e.enabled = 1
           AND d.position = (SELECT MIN(x.position) FROM notify_deliveries x
                             WHERE x.endpoint_id = d.endpoint_id AND x.state = 'pending')",
        [],
        fetch_all
    )?)
}

/// The next delivery of an endpoint: its oldest pending one, with the message.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueDelivery {
    pub endpoint_id: String,
    pub message_id: String,
    pub tenant: String,
    pub position: i64,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub payload: String,
}

/// The endpoint's oldest `limit` pending deliveries, in ledger order, with their messages.
pub async fn heads(db: &Db, endpoint_id: &str, limit: i64) -> Result<Vec<DueDelivery>, StoreError> {
    Ok(sql!(
        db,
        as DueDelivery,
        "SELECT d.endpoint_id, d.message_id, d.tenant, d.position, d.attempts, d.next_attempt_ms,
                m.payload
         FROM notify_deliveries d JOIN notify_messages m ON m.id = d.message_id
         WHERE d.endpoint_id = $1 AND d.state = 'pending'
         ORDER BY d.position LIMIT $2",
        [endpoint_id, limit],
        fetch_all
    )?)
}

/// A transaction for the delivery bookkeeping (claims, attempts). On PostgreSQL it commits
/// without waiting for the disk (`synchronous_commit = off`): a crash may forget the last
/// claims and attempts of the past few hundred milliseconds, and the worker then sends those
/// messages again with the same `webhook-id` (at least once). Messages themselves are
/// written with the notifier's checkpoint, durably.
async fn bookkeeping(db: &Db) -> Result<Tx, StoreError> {
    let mut tx = db.begin().await?;
    if let Tx::Postgres(_) = tx {
        sql!(&mut tx, "SET LOCAL synchronous_commit TO OFF", [])?;
    }
    Ok(tx)
}

/// Claims the endpoint's pending deliveries at positions `first..=last` that are due at `now`:
/// moves their due time to `until_ms`, so another process finds them not due (and, as the
/// oldest pending ones, holding the endpoint's queue). Returns the positions claimed. A crash
/// mid-attempt leaves them due again at `until_ms` (at least once).
pub async fn claim(
    db: &Db,
    endpoint_id: &str,
    first: i64,
    last: i64,
    now: i64,
    until_ms: i64,
) -> Result<Vec<i64>, StoreError> {
    let mut tx = bookkeeping(db).await?;
    let rows: Vec<(i64,)> = sql!(
        &mut tx,
        as (i64,),
        "UPDATE notify_deliveries SET next_attempt_ms = $5
         WHERE endpoint_id = $1 AND state = 'pending' AND position >= $2 AND position <= $3
           AND next_attempt_ms <= $4
         RETURNING position",
        [endpoint_id, first, last, now, until_ms],
        fetch_all
    )?;
    tx.commit().await?;
    Ok(rows.into_iter().map(|(p,)| p).collect())
}

/// Gives back claims (`until_ms`) on positions after `after` up to `last` that were not
/// attempted: due again now, behind the endpoint's head.
pub async fn release(
    db: &Db,
    endpoint_id: &str,
    after: i64,
    last: i64,
    until_ms: i64,
    now: i64,
) -> Result<(), StoreError> {
    sql!(
        db,
        "UPDATE notify_deliveries SET next_attempt_ms = $5
         WHERE endpoint_id = $1 AND state = 'pending' AND position > $2 AND position <= $3
           AND next_attempt_ms = $4",
        [endpoint_id, after, last, until_ms, now]
    )?;
    Ok(())
}

/// One attempt, as support reads it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct AttemptRow {
    pub endpoint_id: String,
    pub message_id: String,
    pub attempt: i64,
    pub at_ms: i64,
    pub status: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub response_excerpt: String,
}

/// What an attempt leaves the delivery as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAttempt {
    Delivered,
    RetryAt(i64),
    GaveUp,
}

/// Records an attempt and moves its delivery on, atomically: one statement on PostgreSQL (a
/// data-modifying `WITH`), a transaction on SQLite (see [`bookkeeping`] for its durability).
pub async fn record_attempt(
    db: &Db,
    tenant: &str,
    a: &AttemptRow,
    after: AfterAttempt,
) -> Result<(), StoreError> {
    let (state, next) = match after {
        AfterAttempt::Delivered => ("delivered", a.at_ms),
        AfterAttempt::RetryAt(at) => ("pending", at),
        AfterAttempt::GaveUp => ("failed", a.at_ms),
    };
    const INSERT: &str = "INSERT INTO notify_attempts (endpoint_id, message_id, tenant, attempt,
             at_ms, status, latency_ms, error, response_excerpt)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    const UPDATE: &str = "UPDATE notify_deliveries
         SET state = $10, attempts = $4, next_attempt_ms = $11, last_status = $6,
             last_error = $8, updated_at_ms = $5
         WHERE endpoint_id = $1 AND message_id = $2";
    macro_rules! run {
        ($on:expr, $sql:expr) => {
            sql!(
                $on,
                $sql,
                [
                    &a.endpoint_id,
                    &a.message_id,
                    tenant,
                    a.attempt,
                    a.at_ms,
                    a.status,
                    a.latency_ms,
                    &a.error,
                    &a.response_excerpt,
                    state,
                    next
                ]
            )
        };
    }
    match db {
        Db::Postgres(_) => {
            let both = format!("WITH recorded AS ({INSERT}) {UPDATE}");
            let mut tx = bookkeeping(db).await?;
            run!(&mut tx, &both)?;
            tx.commit().await?;
        }
        Db::Sqlite(_) => {
            let mut tx = db.begin().await?;
            sql!(
                &mut tx,
                INSERT,
                [
                    &a.endpoint_id,
                    &a.message_id,
                    tenant,
                    a.attempt,
                    a.at_ms,
                    a.status,
                    a.latency_ms,
                    &a.error,
                    &a.response_excerpt
                ]
            )?;
            // The same numbers as the combined statement ($3, $7 and $9 unused).
            run!(&mut tx, UPDATE)?;
            tx.commit().await?;
        }
    }
    Ok(())
}

/// Records a run of successful attempts (each its delivery's, all answered 2xx) and marks their
/// deliveries delivered: two statements in one [`bookkeeping`] transaction, whatever the run's
/// length (the delivery worker sends an endpoint's queue in order and records it afterwards).
pub async fn record_delivered(
    db: &Db,
    tenant: &str,
    rows: &[AttemptRow],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = String::from(
        "INSERT INTO notify_attempts (endpoint_id, message_id, tenant, attempt, at_ms, status,
             latency_ms, error, response_excerpt) VALUES ",
    );
    let mut update = String::from(
        "UPDATE notify_deliveries SET state = 'delivered', attempts = v.attempt,
             next_attempt_ms = v.at_ms, last_status = v.status, last_error = NULL,
             updated_at_ms = v.at_ms
         FROM (",
    );
    for i in 0..rows.len() {
        let b = i * 8;
        if i > 0 {
            insert.push_str(", ");
            update.push_str(" UNION ALL ");
        }
        insert.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, NULL, ${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7,
            b + 8
        ));
        // A derived table of SELECTs: SQLite has no column list for VALUES.
        update.push_str(&format!(
            "SELECT CAST(${} AS TEXT) AS endpoint_id, CAST(${} AS TEXT) AS message_id, \
             CAST(${} AS BIGINT) AS attempt, CAST(${} AS BIGINT) AS at_ms, CAST(${} AS BIGINT) AS status",
            b + 1,
            b + 2,
            b + 4,
            b + 5,
            b + 6
        ));
    }
    update.push_str(
        ") AS v
         WHERE notify_deliveries.endpoint_id = v.endpoint_id
           AND notify_deliveries.message_id = v.message_id",
    );
    // Both statements take the same parameters, eight per attempt.
    macro_rules! bound {
        ($sql:expr) => {{
            let mut q = sqlx::query($sql);
            for a in rows {
                q = q
                    .bind(&a.endpoint_id)
                    .bind(&a.message_id)
                    .bind(tenant)
                    .bind(a.attempt)
                    .bind(a.at_ms)
                    .bind(a.status)
                    .bind(a.latency_ms)
                    .bind(&a.response_excerpt);
            }
            q
        }};
    }
    let mut tx = bookkeeping(db).await?;
    match &mut tx {
        Tx::Postgres(t) => {
            bound!(&insert).execute(&mut **t).await?;
            bound!(&update).execute(&mut **t).await?;
        }
        Tx::Sqlite(t) => {
            bound!(&insert).execute(&mut **t).await?;
            bound!(&update).execute(&mut **t).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// One delivery, as support reads it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct DeliveryRow {
    pub endpoint_id: String,
    pub message_id: String,
    pub position: i64,
    pub event_type: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// An endpoint's deliveries, newest first (`state` filters when given).
pub async fn deliveries(
    db: &Db,
    tenant: &str,
    endpoint_id: &str,
    state: Option<&str>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, StoreError> {
    Ok(sql!(
        db,
        as DeliveryRow,
        "SELECT d.endpoint_id, d.message_id, d.position, m.event_type, d.state, d.attempts,
                d.next_attempt_ms, d.last_status, d.last_error, m.created_at_ms, d.updated_at_ms
         FROM notify_deliveries d JOIN notify_messages m ON m.id = d.message_id
         WHERE d.tenant = $1 AND d.endpoint_id = $2 AND COALESCE($3, d.state) = d.state
         ORDER BY d.position DESC LIMIT $4",
        [tenant, endpoint_id, state, limit],
        fetch_all
    )?)
}

/// Every attempt at delivering `message_id` (to any endpoint of `tenant`), oldest first.
pub async fn attempts(
    db: &Db,
    tenant: &str,
    message_id: &str,
) -> Result<Vec<AttemptRow>, StoreError> {
    Ok(sql!(
        db,
        as AttemptRow,
        "SELECT endpoint_id, message_id, attempt, at_ms, status, latency_ms, error, response_excerpt
         FROM notify_attempts WHERE tenant = $1 AND message_id = $2 ORDER BY id",
        [tenant, message_id],
        fetch_all
    )?)
}

/// The latest `limit` attempts at an endpoint, newest first.
pub async fn endpoint_attempts(
    db: &Db,
    tenant: &str,
    endpoint_id: &str,
    limit: i64,
) -> Result<Vec<AttemptRow>, StoreError> {
    Ok(sql!(
        db,
        as AttemptRow,
        "SELECT endpoint_id, message_id, attempt, at_ms, status, latency_ms, error, response_excerpt
         FROM notify_attempts WHERE tenant = $1 AND endpoint_id = $2 ORDER BY id DESC LIMIT $3",
        [tenant, endpoint_id, limit],
        fetch_all
    )?)
}
