//! Watching an invoice's order in Bling, without webhooks: the poll that finds an order
//! changed or deleted in Bling's screen, and an authorized NF-e cancelled there.
//!
//! One `watch` job per invoice (`Kind::Watch`). Its **window** opens when the ledger last
//! changed the order in Bling (`SituacaoChanged`), opens again when the NF-e is authorized
//! (`NfeAuthorized`: SEFAZ's cancellation window starts) and when support resolves a
//! divergence; the dispatcher writes it ([`derive`]). Its reads fall at fixed offsets from the
//! window's opening ([`DEFAULT_OFFSETS`]: 10 min, 1 h, 6 h, 24 h 30 min), and it ends after
//! the last one. Each read:
//!
//! - `GET /pedidos/vendas/{id}`, compared with what the ledger set by [`nfe::check_order`],
//!   the same code the `order` webhook goes through: a situação or total the ledger did not
//!   set, or a 404, is the same `OrderDiverged`, with `source: poll`;
//! - `GET /nfe/{id}` when the invoice's NF-e is authorized, through [`nfe::observe_nfe`]:
//!   a cancellation in Bling is the same `NfeCancelled` a webhook would give.
//!
//! Invariants and policy (the evidence is in `docs/bling-api.md` and README *Orders changed
//! in Bling*):
//! - every read goes through the tenant's rate-limited client, as a job of the fleet
//!   scheduler: inside the account's 3 req/s, behind the shop's other work in the same line;
//! - **webhooks first**: when Bling's webhooks reach the ledger for this order (a delivery
//!   about it is stored, usually the echo of the ledger's own change), only the last read is
//!   made: the safety net for a delivery lost for good (Bling retries a failed one for 3
//!   days). A shop without webhooks, or whose deliveries about this order never came, gets
//!   every read;
//! - **bounded**: at most `offsets.len()` reads of the order and as many of an authorized
//!   NF-e per window, so at most 8 calls per invoice; the last offset lies past SEFAZ's 24 h
//!   cancellation window for an NF-e (Ajuste SINIEF 12/12; rejeição 501 after it), so a
//!   cancellation inside it is seen within 30 min of the window's close;
//! - the ledger's own change is never read as someone else's: while the invoice's own sync
//!   job is pending the watch waits;
//! - support can ask for a read now ([`sync_work::read_now`]): it reads whatever the schedule
//!   says, then the schedule goes on. The request survives what happens meanwhile: a run
//!   already under way (it runs again), the invoice's own sync pending (the read waits for it
//!   and stays forced), a window opened again (the read stays due).

use std::time::Duration;

use aggregates::ids::TenantId;
use aggregates::invoice::{NfeStatus, Source};

use super::jobs::Executor;
use super::nfe::{self, Read};
use super::queue::{self, Job, Outcome};
use crate::store::log::RecordedEvent;
use crate::store::sync_work::{self, Kind};
use crate::store::webhooks as deliveries;
use crate::store::{now_ms, StoreError, Tx};

/// When the watch reads, counted from its window's opening; the last lies past SEFAZ's 24 h
/// NF-e cancellation window.
pub const DEFAULT_OFFSETS: [Duration; 4] = [
    Duration::from_secs(10 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(6 * 60 * 60),
    Duration::from_secs(24 * 60 * 60 + 30 * 60),
];

/// Bling could not be read: try again this much later.
const AFTER_TRANSIENT: Duration = Duration::from_secs(5 * 60);
/// A read the ledger's own pending sync holds back is looked at again this much later.
const WHILE_SYNCING: Duration = Duration::from_secs(2);
/// A watch that could not read Bling for this long after its last offset gives up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The invoice events that open (or open again) a watch window.
pub fn derives(event_type: &str) -> bool {
    matches!(
        event_type,
        "SituacaoChanged" | "NfeAuthorized" | "DivergenceResolved"
    )
}

/// The dispatcher's arm for [`derives`] events: the watch's window opens at the event's time,
/// its first read due at the first offset. Nothing without offsets (the watch is off).
pub async fn derive(
    tx: &mut Tx,
    event: &RecordedEvent,
    offsets: &[Duration],
) -> Result<(), StoreError> {
    let Some(first) = offsets.first() else {
        return Ok(());
    };
    let Some((tenant, invoice)) = aggregates::ids::split_stream_id(&event.aggregate_id) else {
        return Ok(());
    };
    let customer = sync_work::invoice_customer(tx, tenant, invoice)
        .await?
        .unwrap_or_default();
    let from = event.recorded_at.timestamp_millis();
    sync_work::watch(
        tx,
        tenant,
        invoice,
        &customer,
        event.position,
        from,
        from + ms(*first),
    )
    .await
}

/// Runs the watch of `job.key` (an invoice): one read of its order (and authorized NF-e) when
/// one is due, then the next offset, or the end.
pub async fn run(exec: &Executor, tenant: &TenantId, job: &Job) -> Result<Outcome, StoreError> {
    let offsets = &exec.settings().watch_offsets;
    let forced = job.resume_reason.is_some();
    let now = now_ms();
    let from = job.watch_from_ms.unwrap_or(now);
    let end = from + offsets.last().map_or(0, |o| ms(*o));
    // The next offset after `t`, as a time.
    let next_after = |t: i64| offsets.iter().map(|o| from + ms(*o)).find(|at| *at > t);
    let ledger = exec.ledger();
    let invoice = ledger.invoice(tenant, &job.key).await?;
    let Some(order_id) = invoice.bling_order_id else {
        return Ok(Outcome::Done);
    };
    if !forced && now < from + offsets.first().map_or(0, |o| ms(*o)) {
        // Opened again since this run was scheduled: wait for the first offset.
        return Ok(match next_after(now) {
            Some(at) => Outcome::Retry {
                at_ms: at,
                error: "watching the order in Bling; first read not due yet".into(),
            },
            None => Outcome::Done,
        });
    }
    if let Some(own) = queue::get_job(exec.db(), tenant.as_str(), Kind::Invoice, &job.key).await? {
        if own.state == "pending" {
            // Our own change is on its way (look again in a moment), or failing and retried
            // later (look again at the next offset, or not at all after the last).
            // A read support asked for waits past the last offset too.
            let at = if own.attempts == 0 {
                Some(now + ms(WHILE_SYNCING))
            } else {
                next_after(now).or_else(|| forced.then(|| now + ms(AFTER_TRANSIENT)))
            };
            // Not a read: a read support asked for still stands when it comes.
            return Ok(match at {
                Some(at_ms) => Outcome::Wait {
                    at_ms,
                    error: "the ledger's own sync of this order is pending; reading after it"
                        .into(),
                },
                None => Outcome::Done,
            });
        }
    }
    if !forced
        && now < end
        && deliveries::delivered_about(exec.db(), tenant.as_str(), "order", order_id).await?
    {
        return Ok(Outcome::Retry {
            at_ms: end,
            error: "Bling's webhooks reach the ledger for this order: one last read at the window's end".into(),
        });
    }
    let correlation = format!("sync:watch:{}:{}", job.key, job.attempts + 1);
    let client = exec.client();
    let mut done = Vec::new();
    let read = nfe::check_order(
        ledger,
        client,
        tenant,
        &job.key,
        &invoice,
        order_id,
        None,
        Source::Poll,
        &correlation,
    )
    .await?;
    let mut transient = None;
    match read {
        Read::Settled(text) | Read::Undecided(text) => done.push(text),
        Read::Missing => done.push(format!("order {order_id} is not in Bling")),
        Read::Transient(text) => transient = Some(text),
    }
    // The NF-e: once authorized, a cancellation in Bling (SEFAZ allows it for 24 h). One not
    // yet settled is the NF-e follow-up's; support's read looks at it anyway.
    let nfe_due = match (invoice.nfe_id, invoice.nfe_status) {
        (Some(_), Some(NfeStatus::Authorized)) => true,
        (Some(_), Some(status)) => forced && !status.is_final(),
        _ => false,
    };
    if let (Some(nfe_id), true, None) = (invoice.nfe_id, nfe_due, &transient) {
        match nfe::observe_nfe(
            ledger,
            client,
            tenant,
            &job.key,
            nfe_id,
            Source::Poll,
            None,
            false,
            &correlation,
            Vec::new(),
        )
        .await?
        {
            Read::Settled(text) | Read::Undecided(text) => done.push(text),
            Read::Missing => done.push(format!("NF-e {nfe_id} is not in Bling")),
            Read::Transient(text) => transient = Some(text),
        }
    }
    if let Some(text) = transient {
        if now > end + ms(GIVE_UP_AFTER) {
            return Ok(Outcome::Done);
        }
        return Ok(Outcome::Retry {
            at_ms: now + ms(AFTER_TRANSIENT),
            error: format!("the watch could not read Bling: {text}"),
        });
    }
    Ok(match next_after(now) {
        Some(at) => Outcome::Retry {
            at_ms: at,
            error: format!("watching the order in Bling: {}", done.join("; ")),
        },
        None => Outcome::Done,
    })
}
