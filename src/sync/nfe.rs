//! Following each invoice's NF-e to SEFAZ's answer, and noticing orders changed in Bling.
//!
//! The NF-e job (`Kind::Nfe`, one row per invoice, derived from `NfeGenerated` and
//! `NfeRetryRequested`): for a tenant in `generate_and_send` mode it sends the NF-e
//! (`POST /nfe/{id}/enviar`, once per generation or retry); then it reads `GET /nfe/{id}`
//! until Bling shows a state SEFAZ decided, waiting longer each time (the tenant's
//! `BlingClient` limiter keeps every read inside the account's 3 req/s). Webhooks usually
//! settle the NF-e first: the dispatcher then ends the job at once, from the settling event
//! (`NfeAuthorized`, `NfeDenied`, `NfeCancelled`, a `SyncFailed` of `nfe_rejected`), whoever
//! recorded it. An authorized NF-e is then watched for SEFAZ's cancellation window by the
//! order watch (`sync::watch`).
//!
//! Whatever tells the ledger (webhook, poll, our own send), the state recorded is the one
//! `GET /nfe/{id}` shows *now*, and the invoice records a state only when it changes: so a
//! duplicate, a late or a reordered delivery changes nothing.
//!
//! The ledger does not send a cancelled invoice's NF-e. The job checks when it loads the
//! invoice, and again right before `POST /nfe/{id}/enviar` leaves: the send waits its turn in
//! the account's rate limiter, seconds behind the shop's other calls, and the pet shop may
//! cancel the invoice meanwhile. That last check ([`BlingClient::enviar_nfe_if`]) reads the
//! invoice fresh from the ledger after the limiter's wait; a cancelled invoice stops the send
//! (nothing reaches Bling, no `NfeSent`), and the job ends with an INFO line naming tenant,
//! invoice and NF-e. The NF-e stays generated and unsent in Bling. A cancellation that lands
//! while the send is on the wire cannot be stopped: SEFAZ may authorize that NF-e, and then
//! only the shop can cancel it in Bling, within SEFAZ's 24 h. The invoice then shows cancelled
//! with an authorized NF-e, and its answer says so
//! (`projections::invoices::InvoiceSync::nfe_attention`).
//!
//! Orders: Bling's order is compared with what the ledger set (its situação and total). A
//! difference, or an order gone, is recorded as a divergence for support to resolve.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aggregates::connection::NfeMode;
use aggregates::ids::TenantId;
use aggregates::invoice::{
    Divergence, Invoice, InvoiceCommand, NfeDocument, NfeObserved, NfeStatus, OrderFacts, Source,
};
use aggregates::sync::BlingCall;

use super::jobs::Executor;
use super::queue::{Job, Outcome};
use crate::bling::client::BlingClient;
use crate::bling::error::BlingError;
use crate::bling::gate::StillWanted;
use crate::bling::models::Nfe;
use crate::ledger::{Actor, CommandContext, Ledger};
use crate::store::log::RecordedEvent;
use crate::store::sync_work::{self, upsert, Kind};
use crate::store::{now_ms, StoreError, Tx};

/// Waits between reads of an NF-e that SEFAZ has not answered yet; the last repeats.
pub const POLL_SCHEDULE: [Duration; 6] = [
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(15),
    Duration::from_secs(60),
    Duration::from_secs(300),
    Duration::from_secs(1800),
];

/// Bling's NF-e `situacao` codes ([OAS]).
pub mod situacao {
    pub const CANCELADA: i64 = 2;
    pub const REJEITADA: i64 = 4;
    pub const AUTORIZADA: i64 = 5;
    pub const EMITIDA_DANFE: i64 = 6;
    pub const DENEGADA: i64 = 9;
}

/// The reason recorded when only Bling's situação says "rejected" (its `GET /nfe/{id}` does
/// not carry SEFAZ's message).
pub const REJECTED_WITHOUT_REASON: &str =
    "SEFAZ rejected the NF-e (Bling situação 4, Rejeitada); Bling's API did not pass SEFAZ's message on: read it on the NF-e in Bling";

/// What Bling's NF-e says SEFAZ decided, if it decided.
pub fn observed(nfe: &Nfe, reason: Option<&str>) -> Option<NfeObserved> {
    match nfe.situacao {
        situacao::AUTORIZADA | situacao::EMITIDA_DANFE => Some(NfeObserved::Authorized {
            document: NfeDocument {
                numero: nfe.numero.clone(),
                serie: nfe.serie,
                chave_acesso: nfe.chave_acesso.clone(),
                link_danfe: nfe.link_danfe.clone(),
                link_pdf: nfe.link_pdf.clone(),
            },
        }),
        situacao::REJEITADA => Some(NfeObserved::Rejected {
            reason: reason.unwrap_or(REJECTED_WITHOUT_REASON).to_string(),
        }),
        situacao::DENEGADA => Some(NfeObserved::Denied {
            reason: reason
                .unwrap_or("SEFAZ denied the NF-e (Bling situação 9, Denegada)")
                .to_string(),
        }),
        situacao::CANCELADA => Some(NfeObserved::Cancelled),
        _ => None,
    }
}

/// SEFAZ's reason in a refused `enviar`: the first field message Bling gave.
fn rejection_reason(error: &BlingError) -> Option<String> {
    let body = match error {
        BlingError::Validation { body } | BlingError::Rejected { body, .. } => body,
        _ => return None,
    };
    body.field_errors()
        .into_iter()
        .map(|f| f.msg)
        .find(|m| !m.is_empty())
        .or_else(|| (!body.message.is_empty()).then(|| body.message.clone()))
}

/// How a read of Bling ended.
pub enum Read {
    /// Recorded (or already known); the text says what.
    Settled(String),
    /// Not decided yet (the NF-e is pending or waiting for SEFAZ).
    Undecided(String),
    /// Bling has no such resource.
    Missing,
    /// Bling could not be asked now (unavailable, limit, authorization): try later.
    Transient(String),
}

fn ctx(tenant: &TenantId, correlation: &str, actor: Actor) -> CommandContext {
    CommandContext::new(tenant.clone(), correlation.to_string(), actor)
}

async fn record(
    ledger: &Ledger,
    ctx: &CommandContext,
    invoice_id: &str,
    command: InvoiceCommand,
) -> Result<(), StoreError> {
    ledger
        .execute_invoice(ctx, invoice_id, command)
        .await
        .map(drop)
        .map_err(|e| StoreError::Corrupt(format!("recording on invoice {invoice_id}: {e}")))
}

/// Reads NF-e `nfe_id` and records on the invoice what SEFAZ decided, if it decided.
///
/// `send_due`: the ledger's own send of this NF-e is still to come (the shop sends through
/// the ledger, and the NF-e was generated or its retry requested since SEFAZ last answered).
/// A refusal Bling shows then is SEFAZ's *earlier* answer, already recorded, and is not
/// recorded again: recorded after a retry, it would end the retry's follow-up before its send
/// (a late webhook of the first rejection did exactly that). The send's own read records the
/// new answer.
#[allow(clippy::too_many_arguments)]
pub async fn observe_nfe(
    ledger: &Ledger,
    client: &BlingClient,
    tenant: &TenantId,
    invoice_id: &str,
    nfe_id: i64,
    source: Source,
    reason: Option<&str>,
    send_due: bool,
    correlation: &str,
    mut calls: Vec<BlingCall>,
) -> Result<Read, StoreError> {
    let (nfe, step) = client.get_nfe(tenant, nfe_id).await.into_parts();
    calls.extend(step);
    let nfe = match nfe {
        Ok(n) => n,
        Err(BlingError::Rejected { status: 404, .. }) => return Ok(Read::Missing),
        Err(e) => return Ok(Read::Transient(e.to_string())),
    };
    let Some(observed) = observed(&nfe, reason) else {
        return Ok(Read::Undecided(format!(
            "NF-e {nfe_id} at Bling situação {}: waiting for SEFAZ",
            nfe.situacao
        )));
    };
    if send_due
        && matches!(
            observed,
            NfeObserved::Rejected { .. } | NfeObserved::Denied { .. }
        )
    {
        return Ok(Read::Undecided(format!(
            "NF-e {nfe_id}: Bling still shows SEFAZ's earlier refusal; the ledger's own send is \
             due, and its read records the new answer"
        )));
    }
    let what = match &observed {
        NfeObserved::Authorized { document } => format!(
            "NF-e {nfe_id} authorized (nº {}, chave {})",
            document.numero, document.chave_acesso
        ),
        NfeObserved::Rejected { reason } => format!("NF-e {nfe_id} rejected: {reason}"),
        NfeObserved::Denied { reason } => format!("NF-e {nfe_id} denied: {reason}"),
        NfeObserved::Cancelled => format!("NF-e {nfe_id} cancelled"),
    };
    let actor = match source {
        Source::Webhook => Actor::System,
        _ => Actor::Worker,
    };
    record(
        ledger,
        &ctx(tenant, correlation, actor),
        invoice_id,
        InvoiceCommand::RecordNfeState {
            nfe_id,
            observed,
            source,
            calls,
        },
    )
    .await?;
    Ok(Read::Settled(what))
}

/// Compares Bling's order `order_id` with what the ledger set on `invoice`, and records a
/// divergence when they differ (or the order is gone). `deleted`: the webhook said so.
#[allow(clippy::too_many_arguments)]
pub async fn check_order(
    ledger: &Ledger,
    client: &BlingClient,
    tenant: &TenantId,
    invoice_id: &str,
    invoice: &Invoice,
    order_id: i64,
    announced: Option<OrderFacts>,
    source: Source,
    correlation: &str,
) -> Result<Read, StoreError> {
    let expected = OrderFacts {
        situacao_id: invoice.situacao_id,
        total: invoice.content.as_ref().map(|c| c.total.0 as i64),
    };
    // The delivery shows what the ledger set (usually the echo of its own change): no need to
    // spend one of the shop's 3 requests a second to read it back. Only a difference is
    // confirmed with a GET (the delivery may be stale; Bling's current order decides).
    if announced.as_ref().is_some_and(|a| {
        a.situacao_id.is_some()
            && (a.situacao_id == expected.situacao_id || invoice.accepted_bling_situacao)
            && (a.total.is_none() || a.total == expected.total)
    }) {
        return Ok(Read::Settled(format!(
            "order {order_id} as the ledger set it (from the delivery)"
        )));
    }
    let (order, calls) = client.get_pedido(tenant, order_id).await.into_parts();
    let found = match order {
        Ok(o) => OrderFacts {
            situacao_id: o.situacao.map(|s| s.id),
            total: o.total.map(|t| t.0 as i64),
        },
        Err(BlingError::Rejected { status: 404, .. }) => OrderFacts::default(),
        Err(e) => return Ok(Read::Transient(e.to_string())),
    };
    let situacao_differs = found.situacao_id.is_none()
        || (!invoice.accepted_bling_situacao
            && expected.situacao_id.is_some()
            && found.situacao_id != expected.situacao_id);
    // The total is ours only once our content is in Bling.
    let total_differs = invoice.synced_version == Some(invoice.content_version)
        && found.total.is_some()
        && found.total != expected.total;
    if !situacao_differs && !total_differs {
        return Ok(Read::Settled(format!(
            "order {order_id} matches the ledger"
        )));
    }
    let divergence = Divergence {
        bling_order_id: order_id,
        expected,
        found,
        changed_by: "the shop in Bling (not the ledger; Bling does not say who)".into(),
        source,
    };
    let text = projections::timeline::divergence_text(&divergence);
    record(
        ledger,
        &ctx(tenant, correlation, Actor::System),
        invoice_id,
        InvoiceCommand::RecordDivergence { divergence, calls },
    )
    .await?;
    Ok(Read::Settled(format!("order {order_id} diverged: {text}")))
}

/// The wait before the `attempts`-th read (from 0).
pub fn poll_delay(attempts: i64) -> Duration {
    let i = usize::try_from(attempts).unwrap_or(usize::MAX);
    POLL_SCHEDULE
        .get(i)
        .or(POLL_SCHEDULE.last())
        .copied()
        .unwrap_or(Duration::from_secs(60))
}

/// The trace of an NF-e the ledger did not send because the pet shop cancelled its invoice
/// (`when`: at the job's start, or during the send's wait). No event: the invoice's
/// cancellation is the fact, and the NF-e's state in the ledger stays `generated`.
fn not_sent(tenant: &TenantId, invoice_id: &str, nfe_id: i64, when: &str) {
    tracing::info!(
        tenant = %tenant,
        invoice_id,
        nfe_id,
        "NF-e not sent nor followed: the invoice was cancelled in the pet shop {when}"
    );
}

/// Runs the NF-e job of `job.key` (an invoice).
pub async fn run(exec: &Executor, tenant: &TenantId, job: &Job) -> Result<Outcome, StoreError> {
    let ledger = exec.ledger();
    let client = exec.client();
    let invoice = ledger.invoice(tenant, &job.key).await?;
    let Some(nfe_id) = invoice.nfe_id else {
        return Ok(Outcome::Done);
    };
    let status = invoice.nfe_status.unwrap_or(NfeStatus::Generated);
    if status.is_final() {
        return Ok(Outcome::Done);
    }
    let correlation = format!("sync:nfe:{}:{}", job.key, job.attempts + 1);
    let mut calls = Vec::new();
    let mut reason = None;
    let mut source = Source::Poll;
    if status == NfeStatus::Generated && invoice.cancelled {
        // Cancelled in the pet shop: its NF-e is not sent, and nothing more is asked of Bling.
        not_sent(tenant, &job.key, nfe_id, "before its follow-up started");
        return Ok(Outcome::Done);
    }
    if status == NfeStatus::Generated {
        let mode = ledger.connection(tenant).await?.nfe_mode;
        if mode == NfeMode::GenerateAndSend {
            // The invoice above may be seconds old when the send's turn in the account's
            // limiter comes: the pet shop may have cancelled it since. Read it again, fresh,
            // right before the request leaves; a cancelled invoice's NF-e must not go to SEFAZ
            // (once authorized, only the shop can cancel it, in Bling, within 24 h).
            let cancelled_meanwhile = AtomicBool::new(false);
            let (flag, key) = (&cancelled_meanwhile, job.key.as_str());
            let still_wanted: &StillWanted<'_> = &move || {
                Box::pin(async move {
                    match ledger.invoice(tenant, key).await {
                        Ok(now) if now.cancelled => {
                            flag.store(true, Ordering::Relaxed);
                            Err(format!("invoice {key} was cancelled in the pet shop"))
                        }
                        Ok(_) => Ok(()),
                        // Not knowing is not sending: the job's next attempt asks again.
                        Err(e) => Err(format!(
                            "could not read invoice {key} again before sending its NF-e: {e}"
                        )),
                    }
                })
            };
            let (sent, step) = client
                .enviar_nfe_if(tenant, nfe_id, still_wanted)
                .await
                .into_parts();
            calls.extend(step);
            match sent {
                Ok(_) => {}
                Err(BlingError::Halted(_)) if cancelled_meanwhile.load(Ordering::Relaxed) => {
                    // Nothing was sent. An earlier attempt refused by Bling (a 429) applied
                    // nothing either, and with no NF-e state to record it is left out.
                    not_sent(tenant, &job.key, nfe_id, "while its send waited its turn");
                    return Ok(Outcome::Done);
                }
                Err(e @ (BlingError::Validation { .. } | BlingError::Rejected { .. })) => {
                    // Refused by SEFAZ (or already sent): the read below says which.
                    reason = rejection_reason(&e);
                }
                Err(e @ (BlingError::Revoked { .. } | BlingError::NotConnected)) => {
                    // The shop revoked access (or disconnected): wait for the reconnection,
                    // which takes parked work up again, rather than fail for support.
                    return Ok(Outcome::Parked {
                        error: format!("sending NF-e {nfe_id}: {e}"),
                    });
                }
                Err(e) if e.is_transient() => {
                    return Ok(Outcome::Retry {
                        at_ms: now_ms() + poll_delay(job.attempts).as_millis() as i64,
                        error: format!("sending NF-e {nfe_id}: {e}"),
                    })
                }
                Err(e) => {
                    return Ok(Outcome::Failed {
                        error: format!("sending NF-e {nfe_id}: {e}"),
                    })
                }
            }
            record(
                ledger,
                &ctx(tenant, &correlation, Actor::Worker),
                &job.key,
                InvoiceCommand::RecordNfeSent {
                    nfe_id,
                    calls: std::mem::take(&mut calls),
                },
            )
            .await?;
            source = Source::Send;
        }
    }
    let read = observe_nfe(
        ledger,
        client,
        tenant,
        &job.key,
        nfe_id,
        source,
        reason.as_deref(),
        false,
        &correlation,
        calls,
    )
    .await?;
    Ok(match read {
        Read::Settled(_) => Outcome::Done,
        Read::Missing => Outcome::Failed {
            error: format!("NF-e {nfe_id} is not in Bling (deleted there?)"),
        },
        Read::Undecided(text) | Read::Transient(text) => Outcome::Retry {
            at_ms: now_ms() + poll_delay(job.attempts).as_millis() as i64,
            error: text,
        },
    })
}

/// The invoice events this module derives work from.
pub fn derives(event_type: &str) -> bool {
    matches!(
        event_type,
        "NfeGenerated"
            | "NfeRetryRequested"
            | "DivergenceResolved"
            | "NfeAuthorized"
            | "NfeDenied"
            | "NfeCancelled"
            | "SyncFailed"
    )
}

/// The dispatcher's arm for [`derives`] events: an NF-e to follow; an NF-e settled (by a
/// webhook, the poll or our own send), whose follow-up ends now; or (support chose to push
/// ours over a divergence) the invoice's order to sync again.
pub async fn derive(tx: &mut Tx, event: &RecordedEvent) -> Result<(), StoreError> {
    let Some((tenant, invoice)) = aggregates::ids::split_stream_id(&event.aggregate_id) else {
        return Ok(());
    };
    let kind = match event.event_type.as_str() {
        "DivergenceResolved" => {
            if event.payload["DivergenceResolved"]["choice"] != "push_ours" {
                return Ok(());
            }
            Kind::Invoice
        }
        "NfeAuthorized" | "NfeDenied" | "NfeCancelled" => {
            return sync_work::settle_nfe(tx, tenant, invoice, event.position).await
        }
        "SyncFailed" => {
            if event.payload["SyncFailed"]["cause"]["kind"] != "nfe_rejected" {
                return Ok(());
            }
            return sync_work::settle_nfe(tx, tenant, invoice, event.position).await;
        }
        _ => Kind::Nfe,
    };
    let customer = sync_work::invoice_customer(tx, tenant, invoice)
        .await?
        .unwrap_or_default();
    upsert(
        tx,
        tenant,
        kind,
        invoice,
        &customer,
        event.position,
        now_ms(),
    )
    .await
}
