//! The sync dispatcher, in front of the worker's to-do list (`store::sync_work`, re-exported
//! here with its jobs, leases and outcomes).
//!
//! The dispatcher follows the global log and turns events into rows: a customer change into
//! "make Bling's contato match", a billing, update or cancellation into "make Bling's pedido
//! match", a (re)connection into "take the tenant's parked work up again". The rows and the
//! dispatcher's checkpoint are written in one transaction, so a crash repeats nothing and
//! loses nothing. Jobs reconcile Bling with the aggregate's *current* state, so running one
//! twice is harmless and later events simply fold into the pending row.

use crate::store::log::{self, LogFilter, RecordedEvent};
use crate::store::sync_work::{self, upsert};
use crate::store::{checkpoints, now_ms, Db, StoreError, Tx};

/// The to-do list itself, its rows and leases, lives in the store.
pub use crate::store::sync_work::{
    counts, depth, due_tenants, finish, get_job, mark_create_sent, next_job, next_jobs,
    outstanding, replay, waiting_tenants, Job, Kind, LeaseToken, Outcome,
};

pub const DISPATCHER: &str = "sync-dispatcher";

/// Reads up to `settings.dispatch_batch` events after the dispatcher's checkpoint and derives
/// work from them. Returns how many events it consumed.
pub async fn dispatch(db: &Db, settings: &super::SyncSettings) -> Result<usize, StoreError> {
    let batch = settings.dispatch_batch;
    // Read the events before opening the transaction: a transaction that waits for a second
    // pooled connection while holding locks can starve a busy pool.
    let seen = checkpoints::position(db, DISPATCHER).await?;
    let events = log::read_from(db, seen, batch, &LogFilter::default()).await?;
    let Some(last) = events.last().map(|e| e.position) else {
        return Ok(0);
    };
    let mut tx = db.begin().await?;
    // The lock: two dispatchers never derive work from the same events concurrently.
    if checkpoints::lock(&mut tx, DISPATCHER).await? != seen {
        // Another dispatcher moved the checkpoint meanwhile: its work stands, ours is stale.
        return Ok(0);
    }
    for event in &events {
        derive(&mut tx, event, &settings.watch_offsets).await?;
    }
    checkpoints::save(&mut tx, DISPATCHER, last).await?;
    tx.commit().await?;
    Ok(events.len())
}

fn local_id(event: &RecordedEvent) -> Option<(String, String)> {
    let (tenant, local) = aggregates::ids::split_stream_id(&event.aggregate_id)?;
    Some((tenant.to_string(), local.to_string()))
}

async fn derive(
    tx: &mut Tx,
    event: &RecordedEvent,
    watch_offsets: &[std::time::Duration],
) -> Result<(), StoreError> {
    let now = now_ms();
    match (event.aggregate_type.as_str(), event.event_type.as_str()) {
        ("Customer", "CustomerRegistered" | "CustomerUpdated") => {
            let Some((tenant, customer)) = local_id(event) else {
                return Ok(());
            };
            upsert(
                tx,
                &tenant,
                Kind::Contact,
                &customer,
                &customer,
                event.position,
                now,
            )
            .await?;
            // A fixed customer record unblocks the invoices that failed on it.
            sync_work::unblock_invoices_of(tx, &tenant, &customer, now).await?;
        }
        ("Invoice", "InvoiceBilled" | "InvoiceUpdated" | "InvoiceCancelled") => {
            let Some((tenant, invoice)) = local_id(event) else {
                return Ok(());
            };
            let customer = match event.event_type.as_str() {
                "InvoiceBilled" => event.payload["InvoiceBilled"]["customer_id"]
                    .as_str()
                    .map(str::to_string),
                _ => None,
            };
            let customer = match customer {
                Some(c) => c,
                None => sync_work::invoice_customer(tx, &tenant, &invoice)
                    .await?
                    .unwrap_or_default(),
            };
            upsert(
                tx,
                &tenant,
                Kind::Invoice,
                &invoice,
                &customer,
                event.position,
                now,
            )
            .await?;
        }
        // Issue #14: the NF-e followed, and ended once settled; divergences resolved by pushing
        // ours (sync::nfe); the order watched for a bounded window (sync::watch).
        ("Invoice", t) if super::nfe::derives(t) || super::watch::derives(t) => {
            if super::nfe::derives(t) {
                super::nfe::derive(tx, event).await?;
            }
            if super::watch::derives(t) {
                super::watch::derive(tx, event, watch_offsets).await?;
            }
        }
        ("BlingConnection", "Connected" | "Reconnected") => {
            let tenant = event.aggregate_id.clone();
            sync_work::resume_parked(tx, &tenant, now).await?;
        }
        _ => {}
    }
    Ok(())
}
