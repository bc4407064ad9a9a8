//! The notifier's follower: reads the global log past its checkpoint (`notifier`), turns the
//! events that notify ([`super::types`]) into messages, and writes them, their deliveries (one
//! per enabled endpoint of the tenant that subscribed the type) and the checkpoint in one
//! transaction, as the sync dispatcher does (`store::checkpoints` explains why that is exactly
//! once). A message is stored before any delivery is attempted: the outbox is durable.
//!
//! A message's id is `msg_<position>`: the same on every retry (the `webhook-id`), and the same
//! if a batch is done again after a crash. Its payload:
//!
//! ```json
//! {"id": "msg_42", "type": "invoice.failed", "timestamp": "2026-12-03T09:00:00.123Z",
//!  "tenant": "shop-1", "position": 42,
//!  "source": {"stream": "shop-1/inv-7", "aggregate": "Invoice", "sequence": 3, "event": "SyncFailed"},
//!  "data": {"invoice_id": "inv-7", "cause": {…}, "advice": "…", …}}
//! ```

use std::collections::HashMap;

use serde_json::{json, Value};

use super::reconnect::ReconnectLinks;
use super::types::{notification_for, NotificationType};
use crate::store::log::{self, LogFilter, RecordedEvent};
use crate::store::notify::{self, MessageRow};
use crate::store::{checkpoints, now_ms, Db, StoreError};

/// The notifier's checkpoint row.
pub const CHECKPOINT: &str = "notifier";

/// The message id of the event at `position`.
pub fn message_id(position: i64) -> String {
    format!("msg_{position}")
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Batch {
    pub events: usize,
    pub messages: usize,
    pub deliveries: usize,
}

fn tenant_and_local(event: &RecordedEvent) -> Option<(String, String)> {
    match aggregates::ids::split_stream_id(&event.aggregate_id) {
        Some((tenant, local)) => Some((tenant.to_string(), local.to_string())),
        // A connection's stream id is its tenant.
        None => Some((
            event
                .tenant()
                .unwrap_or(event.aggregate_id.as_str())
                .to_string(),
            event.aggregate_id.clone(),
        )),
    }
}

/// Reads up to `batch` events after the checkpoint and writes their messages.
pub async fn follow(
    db: &Db,
    links: Option<&ReconnectLinks>,
    batch: i64,
) -> Result<Batch, StoreError> {
    let seen = checkpoints::position(db, CHECKPOINT).await?;
    let events = log::read_from(db, seen, batch, &LogFilter::default()).await?;
    let Some(last) = events.last().map(|e| e.position) else {
        return Ok(Batch::default());
    };
    // The pure part first, outside the transaction.
    let notes: Vec<_> = events
        .iter()
        .filter_map(|event| {
            let (tenant, local) = tenant_and_local(event)?;
            let n = notification_for(
                &event.aggregate_type,
                &event.event_type,
                &local,
                &event.payload,
            )?;
            Some((event, tenant, n))
        })
        .collect();
    let mut tx = db.begin().await?;
    if checkpoints::lock(&mut tx, CHECKPOINT).await? != seen {
        // Another notifier moved the checkpoint meanwhile: its messages stand.
        return Ok(Batch::default());
    }
    let now = now_ms();
    let mut done = Batch {
        events: events.len(),
        ..Batch::default()
    };
    let mut endpoints: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for (event, tenant, note) in notes {
        let mut data = note.data;
        if note.kind == NotificationType::ConnectionRevoked {
            match links {
                Some(links) => {
                    let link = links
                        .issue_in(&mut tx, &tenant, "connection.revoked", now)
                        .await?;
                    data["reconnect_url"] = Value::String(link.url);
                    data["reconnect_expires_at"] =
                        json!(chrono::DateTime::from_timestamp_millis(link.expires_at_ms)
                            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
                }
                None => data["reconnect_url"] = Value::Null,
            }
        }
        let id = message_id(event.position);
        let payload = json!({
            "id": id,
            "type": note.kind.as_str(),
            "timestamp": event.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "tenant": tenant,
            "position": event.position,
            "source": {
                "stream": event.aggregate_id,
                "aggregate": event.aggregate_type,
                "sequence": event.sequence,
                "event": event.event_type,
            },
            "data": data,
        });
        let message = MessageRow {
            id,
            tenant: tenant.clone(),
            position: event.position,
            event_type: note.kind.as_str().to_string(),
            payload: payload.to_string(),
            created_at_ms: now,
        };
        notify::insert_message(&mut tx, &message).await?;
        done.messages += 1;
        if !endpoints.contains_key(&tenant) {
            let found = notify::enabled_endpoints_in(&mut tx, &tenant).await?;
            endpoints.insert(tenant.clone(), found);
        }
        for (endpoint, types) in endpoints.get(&tenant).into_iter().flatten() {
            if types.split(',').any(|t| t == note.kind.as_str()) {
                notify::insert_delivery(&mut tx, endpoint, &message, now).await?;
                done.deliveries += 1;
            }
        }
    }
    checkpoints::save(&mut tx, CHECKPOINT, last).await?;
    tx.commit().await?;
    Ok(done)
}
