//! OAuth `state` values: unguessable (256 random bits), bound to one tenant, single use and
//! short-lived. Only their digest is stored, so a database reader cannot complete a flow.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::on_db;
use crate::store::{now_ms, Db, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("this authorization link is not one we issued")]
    Unknown,
    #[error("this authorization link was already used")]
    Used,
    #[error("this authorization link expired")]
    Expired,
}

pub fn digest(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

/// A new state for `tenant`, valid for `ttl`.
pub async fn issue(
    db: &Db,
    tenant: &str,
    requested_by: &str,
    ttl: std::time::Duration,
) -> Result<String, StoreError> {
    let bytes: [u8; 32] = rand::random();
    let state = URL_SAFE_NO_PAD.encode(bytes);
    let expires = now_ms() + ttl.as_millis() as i64;
    on_db!(
        db,
        "INSERT INTO oauth_states (state_digest, tenant, requested_by, expires_at_ms) VALUES ($1, $2, $3, $4)",
        [digest(&state), tenant, requested_by, expires],
        execute
    )?;
    Ok(state)
}

/// Uses a state once. Returns the tenant and who asked for the authorization.
pub async fn consume(
    db: &Db,
    state: &str,
) -> Result<Result<(String, String), StateError>, StoreError> {
    let now = now_ms();
    let d = digest(state);
    let taken: Option<(String, String)> = on_db!(
        db,
        as (String, String),
        "UPDATE oauth_states SET used_at_ms = $2
         WHERE state_digest = $1 AND used_at_ms IS NULL AND expires_at_ms > $2
         RETURNING tenant, requested_by",
        [&d, now],
        fetch_optional
    )?;
    if let Some(found) = taken {
        return Ok(Ok(found));
    }
    let row: Option<(Option<i64>,)> = on_db!(
        db,
        as (Option<i64>,),
        "SELECT used_at_ms FROM oauth_states WHERE state_digest = $1",
        [&d],
        fetch_optional
    )?;
    Ok(Err(match row {
        None => StateError::Unknown,
        Some((Some(_),)) => StateError::Used,
        Some((None,)) => StateError::Expired,
    }))
}
