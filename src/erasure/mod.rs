//! LGPD erasure: a customer's personal data destroyed while the log keeps its proof.
//!
//! - [`data_key`]: the per-customer key the store encrypts each profile under
//!   (`crate::store::personal` does the storing and the reading);
//! - [`values`]: a customer's personal values as text, to keep them out of Bling's evidence
//!   (withheld at the source) and to search them out of every table on erasure;
//! - here: [`forget`], the one way to erase (`bling-ledger forget`, and
//!   `POST /v1/tenants/{tenant}/customers/{id}/forget` for administrators).
//!
//! # What `forget` does, in this order
//! 1. collects the values of every profile the customer ever had (while its key exists);
//! 2. records `CustomerErased` on the customer's stream (who: the event's actor; why: its
//!    `reason`). From then on the customer refuses changes and sync records, cannot be billed,
//!    and the sync worker sends nothing of it to Bling;
//! 3. replaces the values by `[erased]` in every table but the sealed log (views, idempotency
//!    answers, sync work, webhook deliveries, notifications);
//! 4. destroys the data key (a tombstone row stays), so every reader of the log sees the
//!    profiles as erased, and nobody can decrypt them again;
//! 5. waits for the projections to pass the log's head as it was once the key was gone (so a
//!    batch that read the key before step 4 has committed), and scrubs once more, for a view
//!    written from the log between 1 and 4.
//!
//! Each step can run again: a second `forget` finds the customer erased, appends nothing,
//! has no values left to look for, and reports the key already destroyed.
//!
//! # What stays
//! The stream and its events, sealed as written: the chains and every checkpoint still
//! verify. The invoices keep their fiscal facts (amounts, dates, items, NF-e number and key),
//! which never held personal values. Profiles stored in clear (before encryption existed, or
//! by a process without a master key) read as erased everywhere, but their stored bytes still
//! hold the values: the report counts them (`events_in_clear`). Bling's contato, in the
//! shop's own Bling account, is not ours to erase: the report names it.

pub mod data_key;
pub mod values;

use aggregates::customer::{CustomerCommand, CustomerError, CustomerProfile};
use aggregates::ids::stream_id;
use serde::Serialize;

use crate::ledger::{CommandContext, Ledger, LedgerError};
use crate::store::personal::{self, KeyDestroyed, Scrubbed};
use crate::store::StoreError;
use values::PersonalValues;

/// What `forget` did.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetReport {
    pub tenant: String,
    pub customer_id: String,
    /// `erased` now, or `already_erased` (nothing appended: `forget` is idempotent).
    pub result: &'static str,
    /// The data key: `destroyed`, `already_erased`, or `no_key` (its profiles were stored in
    /// clear; see `events_in_clear`).
    pub key: KeyDestroyed,
    /// Sealed events whose stored bytes still hold a profile in clear (written before
    /// encryption). Every reader sees them erased; the bytes stay, or the seals would break.
    pub events_in_clear: usize,
    /// Rows rewritten outside the log, per table and column.
    pub scrubbed: Vec<Scrubbed>,
    /// The Bling contato that mirrored the customer, if one did: it lives in the shop's Bling
    /// account, which the ledger cannot erase; the shop must delete or anonymise it there.
    pub bling_contact_id: Option<i64>,
    pub bling_note: &'static str,
}

/// What the shop is told about Bling in every report.
pub const BLING_NOTE: &str = "the ledger erased its own copy only: the contato in the shop's \
    Bling account still holds the personal data, and only the shop can delete or anonymise it \
    there (Bling: Contatos)";

#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    #[error("customer {0} is not registered")]
    UnknownCustomer(String),
    #[error("recording the erasure failed: {0}")]
    Ledger(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Erases `customer_id` of `ctx.tenant` (see the module documentation). `ctx.actor` is who
/// asked; `reason` is recorded with the erasure (a ticket number, not personal data).
pub async fn forget(
    ledger: &Ledger,
    ctx: &CommandContext,
    customer_id: &str,
    reason: &str,
) -> Result<ForgetReport, ForgetError> {
    let db = ledger.db();
    let customer = ledger.customer(&ctx.tenant, customer_id).await?;
    if !customer.exists() {
        return Err(ForgetError::UnknownCustomer(customer_id.to_string()));
    }
    let stream = stream_id(&ctx.tenant, customer_id);
    // 1. Every value the customer ever had, while the key still opens them.
    let (stored, events_in_clear) = personal::stream_profiles(db, &stream).await?;
    let profiles: Vec<CustomerProfile> = stored
        .into_iter()
        .filter_map(|p| serde_json::from_value(p).ok())
        .collect();
    let values = PersonalValues::of(&profiles);
    // 2. The erasure, recorded.
    let appended = match ledger
        .execute_customer(
            ctx,
            customer_id,
            CustomerCommand::Erase {
                reason: reason.to_string(),
            },
        )
        .await
    {
        Ok(events) => events,
        Err(LedgerError::Domain(CustomerError::NotRegistered)) => {
            return Err(ForgetError::UnknownCustomer(customer_id.to_string()))
        }
        Err(e) => return Err(ForgetError::Ledger(e.to_string())),
    };
    // 3-5. Scrub, destroy the key, scrub again.
    let mut scrubbed = personal::scrub_tables(db, &values).await?;
    let key = personal::erase(db, &stream).await?;
    projections_past_the_key(db).await?;
    for again in personal::scrub_tables(db, &values).await? {
        match scrubbed
            .iter_mut()
            .find(|s| s.table == again.table && s.column == again.column)
        {
            Some(s) => s.rows += again.rows,
            None => scrubbed.push(again),
        }
    }
    tracing::info!(
        tenant = %ctx.tenant,
        customer = customer_id,
        by = ctx.actor.as_string(),
        key = ?key,
        events_in_clear,
        "customer erased (LGPD)"
    );
    Ok(ForgetReport {
        tenant: ctx.tenant.to_string(),
        customer_id: customer_id.to_string(),
        result: if appended.is_empty() {
            "already_erased"
        } else {
            "erased"
        },
        key,
        events_in_clear,
        scrubbed,
        bling_contact_id: customer.bling_contact_id,
        bling_note: BLING_NOTE,
    })
}

/// The longest [`forget`] waits for the projections before its last scrub.
const PROJECTIONS_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Checkpoints that did not move for this long mean no projection runner is working (none
/// started, or none in any process): nothing is in flight, so the wait ends.
const PROJECTIONS_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

/// Waits until every projection's checkpoint reaches the log's head as it is now, right after
/// the key's destruction: a projection batch that read the customer's key before it was
/// destroyed covers positions up to that head at most, so once every checkpoint is there, no
/// such batch is still to write its rows, and the last scrub finds whatever it wrote. Ends
/// early when no checkpoint moves (no runner at work), and after [`PROJECTIONS_WAIT`] at most.
async fn projections_past_the_key(db: &crate::store::Db) -> Result<(), ForgetError> {
    let started = std::time::Instant::now();
    let mut last_moved = started;
    let mut previous: Option<Vec<i64>> = None;
    let mut target: Option<i64> = None;
    loop {
        let status = crate::projections::status(db).await?;
        let head = *target.get_or_insert(status.first().map_or(0, |s| s.head));
        if status.iter().all(|s| s.checkpoint >= head) {
            return Ok(());
        }
        let checkpoints: Vec<i64> = status.iter().map(|s| s.checkpoint).collect();
        if previous.as_ref() != Some(&checkpoints) {
            last_moved = std::time::Instant::now();
            previous = Some(checkpoints);
        }
        if last_moved.elapsed() >= PROJECTIONS_IDLE || started.elapsed() >= PROJECTIONS_WAIT {
            tracing::info!(
                waited_ms = started.elapsed().as_millis() as u64,
                "forget: the projections are behind the log; scrubbing without waiting longer"
            );
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
