//! OAuth `state` values: unguessable (256 random bits), bound to one tenant, single use and
//! short-lived. Only their digest is stored, so a database reader cannot complete a flow.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::store::{connections, now_ms, Db, StoreError};

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
    connections::insert_state(db, &digest(&state), tenant, requested_by, expires).await?;
    Ok(state)
}

/// Uses a state once. Returns the tenant and who asked for the authorization.
pub async fn consume(
    db: &Db,
    state: &str,
) -> Result<Result<(String, String), StateError>, StoreError> {
    let now = now_ms();
    let d = digest(state);
    let taken = connections::take_state(db, &d, now).await?;
    if let Some(found) = taken {
        return Ok(Ok(found));
    }
    let row = connections::state_used_at(db, &d).await?;
    Ok(Err(match row {
        None => StateError::Unknown,
        Some(Some(_)) => StateError::Used,
        Some(None) => StateError::Expired,
    }))
}
