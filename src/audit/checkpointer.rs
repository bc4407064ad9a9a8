//! Taking signed checkpoints: on demand (`bling-ledger checkpoint`) and every interval while
//! `serve` runs ([`spawn_periodic`]).
//!
//! A checkpoint signs the sealed heads as one statement read them (the global head and every
//! tenant chain's head, all from the same committed state), after the sequencer has run, so it
//! covers every event readable when it was taken. Taking one when the log has not moved since
//! the last returns the last.

use std::sync::Arc;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::checkpoint::{Checkpoint, SigningKey, Statement};
use super::merkle::{self, TenantHead};
use super::AuditError;
use crate::store::events::seals;
use crate::store::{log, signed_checkpoints, Db};

/// Every tenant chain's sealed head now, sorted for the Merkle tree, and the global head.
pub async fn sealed_heads(db: &Db) -> Result<((i64, String), Vec<TenantHead>), AuditError> {
    log::sequence_pending(db).await?;
    let (global, tenants) = seals::heads(db).await?;
    let mut heads: Vec<TenantHead> = tenants
        .into_iter()
        .map(|(tenant, position, hash)| TenantHead {
            tenant,
            position,
            hash,
        })
        .collect();
    merkle::sort(&mut heads);
    Ok((global, heads))
}

/// Signs and stores a checkpoint of the log as it is now (`None` for an empty log).
pub async fn take_checkpoint(db: &Db, key: &SigningKey) -> Result<Option<Checkpoint>, AuditError> {
    let ((position, head_hash), heads) = sealed_heads(db).await?;
    if position == 0 {
        return Ok(None);
    }
    if let Some(last) = signed_checkpoints::latest(db).await? {
        if last.position == position {
            return Ok(Some(last));
        }
    }
    let statement = Statement {
        position,
        head_hash,
        tenant_root: merkle::root(&heads),
        tenants: heads.len() as i64,
        signed_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
    };
    let checkpoint = Checkpoint::sign(&statement, key);
    let leaves = serde_json::to_string(&heads).map_err(std::io::Error::other)?;
    if !signed_checkpoints::insert(db, &checkpoint, &leaves).await? {
        // Another process signed this position first: theirs is the stored one.
        return Ok(signed_checkpoints::between(db, position, position, 1)
            .await?
            .pop());
    }
    Ok(Some(checkpoint))
}

/// Takes a checkpoint every `interval` until `stop`.
pub fn spawn_periodic(
    db: Db,
    key: Arc<SigningKey>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            match take_checkpoint(&db, &key).await {
                Ok(Some(c)) => tracing::info!(position = c.position, "signed checkpoint"),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "checkpoint failed; retrying next interval"),
            }
        }
    })
}
