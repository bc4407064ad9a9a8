//! A tenant's connection to Bling: its credentials (`bling_credentials`), the OAuth `state`
//! values of flows under way (`oauth_states`) and the fleet-wide budget of token-endpoint calls
//! (`token_endpoint_calls`), plus the lock one token renewal holds.
//!
//! - Credentials arrive here already encrypted (`oauth::credentials` encrypts and decrypts;
//!   nothing here sees a token) and are written with a version fence: a renewal stores its
//!   tokens only over the version it read ([`store_refresh`]), so a reconnection meanwhile wins.
//! - A state is stored as its digest only, and is consumed once ([`take_state`]).
//! - The budget's count lives in the database so that every process behind one address stays
//!   under Bling's limit together ([`take_token_call`]).

use super::{now_ms, Db, StoreError, Tx};
use crate::sql;

/// A tenant's stored credentials, tokens still encrypted.
#[derive(Debug, Clone)]
pub struct CredentialRow {
    pub version: i64,
    pub access_token: String,
    pub refresh_token: String,
    pub access_expires_at_ms: i64,
    pub scope: String,
    pub status: String,
    pub connected_at_ms: i64,
    pub last_refresh_at_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
    /// The first use of the current access token; `None`: unused since it was issued.
    pub used_at_ms: Option<i64>,
    /// A refresh of this version was sent and its answer lost.
    pub refresh_sent_at_ms: Option<i64>,
}

type Row = (
    i64,
    String,
    String,
    i64,
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

pub async fn load_credentials(db: &Db, tenant: &str) -> Result<Option<CredentialRow>, StoreError> {
    let row: Option<Row> = sql!(
        db,
        as Row,
        "SELECT version, access_token, refresh_token, access_expires_at_ms, scope,
                status, connected_at_ms, last_refresh_at_ms, last_error,
                last_error_at_ms, used_at_ms, refresh_sent_at_ms
         FROM bling_credentials WHERE tenant = $1",
        [tenant],
        fetch_optional
    )?;
    Ok(row.map(
        |(
            version,
            access_token,
            refresh_token,
            access_expires_at_ms,
            scope,
            status,
            connected_at_ms,
            last_refresh_at_ms,
            last_error,
            last_error_at_ms,
            used_at_ms,
            refresh_sent_at_ms,
        )| CredentialRow {
            version,
            access_token,
            refresh_token,
            access_expires_at_ms,
            scope,
            status,
            connected_at_ms,
            last_refresh_at_ms,
            last_error,
            last_error_at_ms,
            used_at_ms,
            refresh_sent_at_ms,
        },
    ))
}

/// When a connection's renewal is due and by when it must be done (ms), for tokens just
/// issued and not yet used: an unused access token is not renewed ahead of its expiry, only
/// its refresh token is kept alive (see `oauth::tokens`, "Renewals at fleet scale").
#[derive(Debug, Clone, Copy)]
pub struct IdleSchedule {
    /// From the refresh token's issue to its keep-alive renewal.
    pub keepalive_ms: i64,
    /// From the refresh token's issue to its end.
    pub refresh_life_ms: i64,
}

/// Stores the tokens of a new authorization (connect or reconnect), whatever was there;
/// returns the new version.
#[allow(clippy::too_many_arguments)]
pub async fn store_authorization(
    db: &Db,
    tenant: &str,
    access_token: &str,
    refresh_token: &str,
    access_expires_at_ms: i64,
    scope: &str,
    idle: IdleSchedule,
) -> Result<i64, StoreError> {
    let now = now_ms();
    let version: (i64,) = sql!(
        db,
        as (i64,),
        "INSERT INTO bling_credentials (tenant, version, access_token, refresh_token,
             access_expires_at_ms, scope, status, connected_at_ms, refresh_issued_at_ms,
             renew_at_ms, renew_deadline_ms)
         VALUES ($1, 1, $2, $3, $4, $5, 'active', $6, $6, $6 + $7, $6 + $8)
         ON CONFLICT (tenant) DO UPDATE SET
             refresh_issued_at_ms = excluded.refresh_issued_at_ms,
             renew_at_ms = excluded.renew_at_ms,
             renew_deadline_ms = excluded.renew_deadline_ms,
             used_at_ms = NULL,
             refresh_sent_at_ms = NULL,
             version = bling_credentials.version + 1,
             access_token = excluded.access_token,
             refresh_token = excluded.refresh_token,
             access_expires_at_ms = excluded.access_expires_at_ms,
             scope = excluded.scope,
             status = 'active',
             connected_at_ms = excluded.connected_at_ms,
             last_refresh_at_ms = NULL,
             last_error = NULL,
             last_error_at_ms = NULL
         RETURNING version",
        [
            tenant,
            access_token,
            refresh_token,
            access_expires_at_ms,
            scope,
            now,
            idle.keepalive_ms,
            idle.refresh_life_ms
        ],
        fetch_one
    )?;
    Ok(version.0)
}

/// Stores refreshed tokens only if nobody wrote since `read_version` and the credentials are
/// still active. `false` means a newer token is already stored.
pub async fn store_refresh(
    db: &Db,
    tenant: &str,
    read_version: i64,
    access_token: &str,
    refresh_token: &str,
    access_expires_at_ms: i64,
    idle: IdleSchedule,
) -> Result<bool, StoreError> {
    let updated = sql!(
        db,
        "UPDATE bling_credentials SET version = version + 1, access_token = $3,
             refresh_token = $4, access_expires_at_ms = $5, last_refresh_at_ms = $6,
             last_error = NULL, last_error_at_ms = NULL, refresh_issued_at_ms = $6,
             renew_at_ms = $6 + $7, renew_deadline_ms = $6 + $8, used_at_ms = NULL,
             refresh_sent_at_ms = NULL
         WHERE tenant = $1 AND version = $2 AND status = 'active'",
        [
            tenant,
            read_version,
            access_token,
            refresh_token,
            access_expires_at_ms,
            now_ms(),
            idle.keepalive_ms,
            idle.refresh_life_ms
        ]
    )?;
    Ok(updated == 1)
}

/// The first use of `version`'s access token: from now on it is renewed ahead of its expiry,
/// at `renew_at_ms`. Once per version (later uses change nothing).
pub async fn mark_used(
    db: &Db,
    tenant: &str,
    version: i64,
    renew_at_ms: i64,
) -> Result<(), StoreError> {
    sql!(
        db,
        "UPDATE bling_credentials SET used_at_ms = $3,
             renew_at_ms = CASE WHEN $4 < renew_at_ms THEN $4 ELSE renew_at_ms END,
             renew_deadline_ms = CASE WHEN access_expires_at_ms < renew_deadline_ms
                                      THEN access_expires_at_ms ELSE renew_deadline_ms END
         WHERE tenant = $1 AND version = $2 AND used_at_ms IS NULL",
        [tenant, version, now_ms(), renew_at_ms]
    )?;
    Ok(())
}

/// A refresh of `version` was sent and no answer came back: Bling may have rotated the
/// refresh token we hold.
pub async fn mark_refresh_unanswered(
    db: &Db,
    tenant: &str,
    version: i64,
) -> Result<(), StoreError> {
    sql!(
        db,
        "UPDATE bling_credentials SET refresh_sent_at_ms = $3 WHERE tenant = $1 AND version = $2",
        [tenant, version, now_ms()]
    )?;
    Ok(())
}

/// Puts `version`'s renewal off until `at_ms` (after a transient failure), keeping its deadline.
pub async fn postpone_renewal(
    db: &Db,
    tenant: &str,
    version: i64,
    at_ms: i64,
) -> Result<(), StoreError> {
    sql!(
        db,
        "UPDATE bling_credentials SET renew_at_ms = $3 WHERE tenant = $1 AND version = $2",
        [tenant, version, at_ms]
    )?;
    Ok(())
}

/// Connections whose renewal is due at `now`, earliest deadline first: tenant, version and
/// deadline (ms). Answered by the partial index on `renew_at_ms`; no token is read.
pub async fn renewals_due(
    db: &Db,
    now: i64,
    limit: i64,
) -> Result<Vec<(String, i64, i64)>, StoreError> {
    Ok(sql!(
        db,
        as (String, i64, i64),
        "SELECT tenant, version, renew_deadline_ms FROM bling_credentials
         WHERE status = 'active' AND renew_at_ms <= $1
         ORDER BY renew_deadline_ms, tenant LIMIT $2",
        [now, limit],
        fetch_all
    )?)
}

/// Renewals falling due before `until` (ms), already due included: the demand on the token
/// budget.
pub async fn renewals_due_before(db: &Db, until: i64) -> Result<i64, StoreError> {
    let (n,): (i64,) = sql!(
        db,
        as (i64,),
        "SELECT count(*) FROM bling_credentials WHERE status = 'active' AND renew_at_ms <= $1",
        [until],
        fetch_one
    )?;
    Ok(n)
}

/// Sets the credentials' status (`active`, `revoked`, `disconnected`), with the error that
/// caused it when there is one.
pub async fn set_credential_status(
    db: &Db,
    tenant: &str,
    status: &str,
    error: Option<&str>,
) -> Result<(), StoreError> {
    sql!(
        db,
        "UPDATE bling_credentials SET status = $2, last_error = COALESCE($3, last_error),
             last_error_at_ms = CASE WHEN $3 IS NULL THEN last_error_at_ms ELSE $4 END
         WHERE tenant = $1",
        [tenant, status, error, now_ms()]
    )?;
    Ok(())
}

pub async fn record_credential_error(db: &Db, tenant: &str, error: &str) -> Result<(), StoreError> {
    sql!(
        db,
        "UPDATE bling_credentials SET last_error = $2, last_error_at_ms = $3 WHERE tenant = $1",
        [tenant, error, now_ms()]
    )?;
    Ok(())
}

/// Tenants with active credentials: tenant, version and access expiry (ms), by tenant.
pub async fn active_credentials(db: &Db) -> Result<Vec<(String, i64, i64)>, StoreError> {
    Ok(sql!(
        db,
        as (String, i64, i64),
        "SELECT tenant, version, access_expires_at_ms FROM bling_credentials
         WHERE status = 'active' ORDER BY tenant",
        [],
        fetch_all
    )?)
}

/// Every tenant's encrypted tokens: tenant, access, refresh.
pub async fn all_ciphertexts(db: &Db) -> Result<Vec<(String, String, String)>, StoreError> {
    Ok(sql!(
        db,
        as (String, String, String),
        "SELECT tenant, access_token, refresh_token FROM bling_credentials",
        [],
        fetch_all
    )?)
}

/// Replaces a tenant's encrypted tokens, compare-and-set on the old ciphertexts (a refresh
/// meanwhile already wrote new ones). Returns the rows changed.
pub async fn swap_ciphertexts(
    db: &Db,
    tenant: &str,
    access_token: &str,
    refresh_token: &str,
    old_access_token: &str,
    old_refresh_token: &str,
) -> Result<u64, StoreError> {
    Ok(sql!(
        db,
        "UPDATE bling_credentials SET access_token = $2, refresh_token = $3
         WHERE tenant = $1 AND access_token = $4 AND refresh_token = $5",
        [
            tenant,
            access_token,
            refresh_token,
            old_access_token,
            old_refresh_token
        ]
    )?)
}

/// Held while one token renewal runs: across processes a PostgreSQL advisory lock on `key`,
/// held by an open transaction and released when this is dropped. On SQLite (one process per
/// file) nothing: the caller's in-process lock is enough.
pub struct RenewalLock {
    _held: Option<Tx>,
}

pub async fn lock_renewal(db: &Db, key: &str) -> Result<RenewalLock, StoreError> {
    Ok(RenewalLock {
        _held: match db {
            Db::Postgres(_) => {
                let mut tx = db.begin().await?;
                sql!(
                    &mut tx,
                    "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                    [key]
                )?;
                Some(tx)
            }
            Db::Sqlite(_) => None,
        },
    })
}

// ---- OAuth states --------------------------------------------------------------------------

/// Stores a new state (its digest) for `tenant`.
pub async fn insert_state(
    db: &Db,
    state_digest: &str,
    tenant: &str,
    requested_by: &str,
    expires_at_ms: i64,
) -> Result<(), StoreError> {
    sql!(
        db,
        "INSERT INTO oauth_states (state_digest, tenant, requested_by, expires_at_ms) VALUES ($1, $2, $3, $4)",
        [state_digest, tenant, requested_by, expires_at_ms]
    )?;
    Ok(())
}

/// Uses a live, unused state once: returns its tenant and who asked, or `None`.
pub async fn take_state(
    db: &Db,
    state_digest: &str,
    now: i64,
) -> Result<Option<(String, String)>, StoreError> {
    Ok(sql!(
        db,
        as (String, String),
        "UPDATE oauth_states SET used_at_ms = $2
         WHERE state_digest = $1 AND used_at_ms IS NULL AND expires_at_ms > $2
         RETURNING tenant, requested_by",
        [state_digest, now],
        fetch_optional
    )?)
}

/// `None` for an unknown state, else when it was used (`None`: never, so it expired).
pub async fn state_used_at(db: &Db, state_digest: &str) -> Result<Option<Option<i64>>, StoreError> {
    let row = sql!(
        db,
        as (Option<i64>,),
        "SELECT used_at_ms FROM oauth_states WHERE state_digest = $1",
        [state_digest],
        fetch_optional
    )?;
    Ok(row.map(|(used,)| used))
}

// ---- The token-endpoint budget -------------------------------------------------------------

const BUDGET_LOCK: i64 = 0x626c_696e_675f_746b; // "bling_tk"

/// Counts the token-endpoint calls after `since` and asks `verdict` (given the count and the
/// oldest call's time) whether one more may be made; if so records it at `now` for `tenant`
/// and forgets calls older than an hour. One decision at a time across the fleet: under a
/// PostgreSQL advisory lock, or SQLite's write lock.
pub async fn take_token_call<V>(
    db: &Db,
    tenant: &str,
    now: i64,
    since: i64,
    verdict: impl FnOnce(i64, Option<i64>) -> Result<(), V>,
) -> Result<Result<(), V>, StoreError> {
    let mut tx = db.begin().await?;
    if let Tx::Postgres(_) = tx {
        sql!(&mut tx, "SELECT pg_advisory_xact_lock($1)", [BUDGET_LOCK])?;
    }
    let (count, oldest): (i64, Option<i64>) = sql!(
        &mut tx,
        as (i64, Option<i64>),
        "SELECT count(*), min(at_ms) FROM token_endpoint_calls WHERE at_ms > $1",
        [since],
        fetch_one
    )?;
    let verdict = verdict(count, oldest);
    if verdict.is_ok() {
        sql!(
            &mut tx,
            "INSERT INTO token_endpoint_calls (at_ms, tenant) VALUES ($1, $2)",
            [now, tenant]
        )?;
        sql!(
            &mut tx,
            "DELETE FROM token_endpoint_calls WHERE at_ms < $1",
            [now - 3_600_000]
        )?;
    }
    tx.commit().await?;
    Ok(verdict)
}

/// Token-endpoint calls counted after `since`.
pub async fn token_calls_since(db: &Db, since: i64) -> Result<i64, StoreError> {
    let (count,): (i64,) = sql!(
        db,
        as (i64,),
        "SELECT count(*) FROM token_endpoint_calls WHERE at_ms > $1",
        [since],
        fetch_one
    )?;
    Ok(count)
}
