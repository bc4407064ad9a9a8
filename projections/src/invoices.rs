//! Invoice sync state: one row per tenant and invoice.
//!
//! # States
//! Evaluated in this order after every event of the invoice:
//! - `cancelled`: the shop cancelled the invoice, and Bling has nothing left to do: no order
//!   was ever created, or the order's situação changed after the cancellation;
//! - `parked`: the last outcome is `SyncParked` (the connection is revoked or gone; the work
//!   waits for a reconnection);
//! - `failed`: the last outcome is `SyncFailed` (whatever its cause, transient or not;
//!   `retry_at` says whether the worker retries by itself);
//! - `synced`: the Bling order exists, holds the current content version (the version of
//!   the last `SalesOrderCreated`/`SalesOrderUpdated` equals the number of `InvoiceBilled` +
//!   `InvoiceUpdated`), and its situação was set;
//! - `nfe_issued`: synced, and the NF-e is authorized by SEFAZ (`NfeAuthorized`, not
//!   cancelled since);
//! - `pending` otherwise (billed or changed, not yet in Bling; or resumed after a failure).
//!
//! A `cancelled` invoice whose NF-e is authorized (the cancellation came too late to stop its
//! send, or after SEFAZ's answer) also carries [`InvoiceSync::nfe_attention`], computed from
//! the row: the NF-e stands until the shop cancels it in Bling.
//!
//! "Last outcome" is reset by every success (`SalesOrderCreated`, `SalesOrderUpdated`,
//! `SituacaoChanged`, `NfeGenerated`) and by `SyncResumed`. `attempts` is the failed attempts
//! since the last success (the worker's counter); `failures_total` counts them all. The last
//! cause is kept after a recovery (the state says whether it still applies).

use aggregates::invoice::InvoiceEvent;
use serde::{Deserialize, Serialize};

use crate::{cause_message, LogEvent};

pub const NAME: &str = "invoice_sync";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    Pending,
    Synced,
    Failed,
    Parked,
    Cancelled,
    NfeIssued,
}

impl SyncState {
    pub const ALL: [SyncState; 6] = [
        SyncState::Pending,
        SyncState::Synced,
        SyncState::Failed,
        SyncState::Parked,
        SyncState::Cancelled,
        SyncState::NfeIssued,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Pending => "pending",
            SyncState::Synced => "synced",
            SyncState::Failed => "failed",
            SyncState::Parked => "parked",
            SyncState::Cancelled => "cancelled",
            SyncState::NfeIssued => "nfe_issued",
        }
    }

    pub fn parse(raw: &str) -> Option<SyncState> {
        SyncState::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// The last thing the worker reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing yet, a success, or a resumption.
    None,
    Failed,
    Parked,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::None => "none",
            Outcome::Failed => "failed",
            Outcome::Parked => "parked",
        }
    }

    pub fn parse(raw: &str) -> Outcome {
        match raw {
            "failed" => Outcome::Failed,
            "parked" => Outcome::Parked,
            _ => Outcome::None,
        }
    }
}

/// One row of the view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceSync {
    pub tenant: String,
    pub invoice_id: String,
    pub customer_id: String,
    pub number: String,
    pub total_centavos: i64,
    pub issue_date: String,
    pub billed_at_ms: i64,
    /// Position of `InvoiceBilled`: immutable and unique, the list's order and cursor.
    pub billed_position: i64,
    pub content_version: i64,
    pub synced_version: Option<i64>,
    pub bling_order_id: Option<i64>,
    pub bling_number: Option<i64>,
    pub situacao_id: Option<i64>,
    pub situacao_name: Option<String>,
    pub situacao_position: Option<i64>,
    pub nfe_id: Option<i64>,
    pub cancelled: bool,
    pub cancelled_position: Option<i64>,
    pub cancel_reason: Option<String>,
    pub last_outcome: Outcome,
    pub state: SyncState,
    pub last_cause_kind: Option<String>,
    pub last_cause_message: Option<String>,
    pub last_failure_at_ms: Option<i64>,
    pub retry_at_ms: Option<i64>,
    pub attempts: i64,
    pub failures_total: i64,
    pub updated_at_ms: i64,
    pub last_position: i64,
    /// generated | sent | authorized | rejected | denied | cancelled.
    pub nfe_status: Option<String>,
    pub nfe_numero: Option<String>,
    pub nfe_serie: Option<i64>,
    /// The 44-digit chave de acesso.
    pub nfe_chave: Option<String>,
    pub nfe_link_danfe: Option<String>,
    pub nfe_link_pdf: Option<String>,
    /// SEFAZ's reason for a rejection or denial.
    pub nfe_reason: Option<String>,
    /// JSON of the open divergence (`Divergence`), while one is open.
    pub divergence: Option<String>,
}

impl InvoiceSync {
    fn evaluate(&self) -> SyncState {
        let cancel_done = self.cancelled
            && (self.bling_order_id.is_none() || self.situacao_position > self.cancelled_position);
        if cancel_done {
            SyncState::Cancelled
        } else if self.last_outcome == Outcome::Parked {
            SyncState::Parked
        } else if self.last_outcome == Outcome::Failed {
            SyncState::Failed
        } else if !self.cancelled
            && self.bling_order_id.is_some()
            && self.synced_version == Some(self.content_version)
            && self.situacao_id.is_some()
        {
            if self.nfe_status.as_deref() == Some("authorized") {
                SyncState::NfeIssued
            } else {
                SyncState::Synced
            }
        } else {
            SyncState::Pending
        }
    }

    /// What support must act on when the pet shop cancelled the invoice and SEFAZ authorized
    /// its NF-e all the same (the cancellation landed while the ledger's send was on the wire,
    /// or after the authorization): the NF-e stands until the shop cancels it in Bling, and
    /// SEFAZ accepts that within 24 h of the authorization only. Bling's API offers the ledger
    /// no way to cancel an NF-e, so a person must; once Bling shows it cancelled (a webhook,
    /// the order watch, a read support asks for), `NfeCancelled` ends this. `None` otherwise.
    pub fn nfe_attention(&self) -> Option<String> {
        if !self.cancelled || self.nfe_status.as_deref() != Some("authorized") {
            return None;
        }
        let nfe = match (&self.nfe_numero, self.nfe_id) {
            (Some(numero), _) => format!("NF-e nº {numero}"),
            (None, Some(id)) => format!("NF-e {id}"),
            (None, None) => "NF-e".to_string(),
        };
        Some(format!(
            "The pet shop cancelled this invoice, but its {nfe} is authorized by SEFAZ and still \
             stands: the shop must cancel the NF-e in Bling, which SEFAZ accepts only within 24 h \
             of its authorization (the NfeAuthorized entry of the history; later SEFAZ answers \
             rejeição 501). The ledger cannot cancel an NF-e through Bling's API; it records the \
             cancellation once Bling shows it."
        ))
    }

    fn succeeded(&mut self) {
        self.last_outcome = Outcome::None;
        self.attempts = 0;
        self.retry_at_ms = None;
    }
}

/// Applies one event of the invoice to its row (`None` before `InvoiceBilled`). Events of an
/// invoice never billed leave no row.
pub fn apply(
    row: Option<InvoiceSync>,
    log: &LogEvent,
    invoice_id: &str,
    event: &InvoiceEvent,
) -> Option<InvoiceSync> {
    let mut row = match (row, event) {
        (
            None,
            InvoiceEvent::InvoiceBilled {
                customer_id,
                content,
                ..
            },
        ) => InvoiceSync {
            tenant: log.tenant.clone(),
            invoice_id: invoice_id.to_string(),
            customer_id: customer_id.to_string(),
            number: content.number.clone(),
            total_centavos: content.total.0 as i64,
            issue_date: content.issue_date.to_string(),
            billed_at_ms: log.recorded_at_ms(),
            billed_position: log.position,
            content_version: 1,
            synced_version: None,
            bling_order_id: None,
            bling_number: None,
            situacao_id: None,
            situacao_name: None,
            situacao_position: None,
            nfe_id: None,
            cancelled: false,
            cancelled_position: None,
            cancel_reason: None,
            last_outcome: Outcome::None,
            state: SyncState::Pending,
            last_cause_kind: None,
            last_cause_message: None,
            last_failure_at_ms: None,
            retry_at_ms: None,
            attempts: 0,
            failures_total: 0,
            updated_at_ms: log.recorded_at_ms(),
            last_position: log.position,
            nfe_status: None,
            nfe_numero: None,
            nfe_serie: None,
            nfe_chave: None,
            nfe_link_danfe: None,
            nfe_link_pdf: None,
            nfe_reason: None,
            divergence: None,
        },
        (None, _) => return None,
        (Some(row), _) => row,
    };
    match event {
        // Billed twice cannot happen (the aggregate refuses); the first billing stands.
        InvoiceEvent::InvoiceBilled { .. } => {}
        InvoiceEvent::InvoiceUpdated { content, .. } => {
            row.number = content.number.clone();
            row.total_centavos = content.total.0 as i64;
            row.issue_date = content.issue_date.to_string();
            row.content_version += 1;
        }
        InvoiceEvent::InvoiceCancelled { reason } => {
            row.cancelled = true;
            row.cancelled_position = Some(log.position);
            row.cancel_reason = reason.clone();
        }
        InvoiceEvent::SalesOrderCreated {
            bling_order_id,
            bling_number,
            created,
            content_version,
            ..
        } => {
            row.bling_order_id = Some(*bling_order_id);
            row.bling_number = *bling_number;
            // An adopted order may predate the latest content: the worker sends it whole
            // next (SalesOrderUpdated), so it only counts as synced then.
            row.synced_version = created.then_some(*content_version as i64);
            row.succeeded();
        }
        InvoiceEvent::SalesOrderUpdated {
            content_version, ..
        } => {
            row.synced_version = Some(*content_version as i64);
            row.succeeded();
        }
        InvoiceEvent::SituacaoChanged {
            situacao_id,
            situacao_name,
            ..
        } => {
            row.situacao_id = Some(*situacao_id);
            row.situacao_name = Some(situacao_name.clone());
            row.situacao_position = Some(log.position);
            row.succeeded();
        }
        InvoiceEvent::NfeGenerated { nfe_id, .. } => {
            row.nfe_id = Some(*nfe_id);
            row.nfe_status = Some("generated".into());
            row.succeeded();
        }
        InvoiceEvent::NfeSent { .. } => {
            row.nfe_status = Some("sent".into());
            row.succeeded();
        }
        InvoiceEvent::NfeAuthorized { document, .. } => {
            row.nfe_status = Some("authorized".into());
            row.nfe_numero = Some(document.numero.clone());
            row.nfe_serie = Some(document.serie);
            row.nfe_chave = Some(document.chave_acesso.clone());
            row.nfe_link_danfe = Some(document.link_danfe.clone());
            row.nfe_link_pdf = Some(document.link_pdf.clone());
            row.nfe_reason = None;
            row.succeeded();
        }
        InvoiceEvent::NfeDenied { reason, .. } => {
            row.nfe_status = Some("denied".into());
            row.nfe_reason = Some(reason.clone());
        }
        InvoiceEvent::NfeCancelled { .. } => row.nfe_status = Some("cancelled".into()),
        InvoiceEvent::NfeRetryRequested { .. } => {
            row.nfe_status = Some("generated".into());
            row.nfe_reason = None;
            row.last_outcome = Outcome::None;
            row.retry_at_ms = None;
        }
        InvoiceEvent::OrderDiverged { divergence, .. } => {
            row.divergence = serde_json::to_string(divergence).ok();
        }
        InvoiceEvent::DivergenceResolved {
            choice, divergence, ..
        } => {
            row.divergence = None;
            match choice {
                aggregates::invoice::DivergenceChoice::PushOurs => {
                    row.situacao_id = None;
                    row.situacao_name = None;
                    if divergence.found.situacao_id.is_none() {
                        row.bling_order_id = None;
                        row.synced_version = None;
                        row.nfe_id = None;
                        row.nfe_status = None;
                    }
                }
                aggregates::invoice::DivergenceChoice::AcceptBling => {
                    row.situacao_id = divergence.found.situacao_id;
                    row.situacao_name = Some("(accepted from Bling)".into());
                }
            }
        }
        InvoiceEvent::SyncFailed {
            cause: aggregates::sync::FailureCause::NfeRejected { reason, .. },
            ..
        } => {
            row.nfe_status = Some("rejected".into());
            row.nfe_reason = Some(reason.clone());
            if let InvoiceEvent::SyncFailed { cause, attempt, .. } = event {
                row.last_outcome = Outcome::Failed;
                row.last_cause_kind = Some(cause.code().to_string());
                row.last_cause_message = Some(cause_message(cause));
                row.last_failure_at_ms = Some(log.recorded_at_ms());
                row.retry_at_ms = None;
                row.attempts = i64::from(*attempt);
                row.failures_total += 1;
            }
        }
        InvoiceEvent::SyncFailed {
            cause,
            attempt,
            retry_at,
            ..
        } => {
            row.last_outcome = Outcome::Failed;
            row.last_cause_kind = Some(cause.code().to_string());
            row.last_cause_message = Some(cause_message(cause));
            row.last_failure_at_ms = Some(log.recorded_at_ms());
            row.retry_at_ms = retry_at.map(|t| t.timestamp_millis());
            row.attempts = i64::from(*attempt);
            row.failures_total += 1;
        }
        InvoiceEvent::SyncParked { reason } => {
            row.last_outcome = Outcome::Parked;
            // Work parks only when the connection is revoked or gone.
            row.last_cause_kind = Some("authorization_revoked".to_string());
            row.last_cause_message = Some(reason.clone());
            row.last_failure_at_ms = Some(log.recorded_at_ms());
            row.retry_at_ms = None;
        }
        InvoiceEvent::SyncResumed { .. } => {
            row.last_outcome = Outcome::None;
            row.retry_at_ms = None;
        }
    }
    row.state = row.evaluate();
    row.updated_at_ms = log.recorded_at_ms();
    row.last_position = log.position;
    Some(row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use crate::{decode, Domain};
    use serde_json::json;

    fn run(events: &[LogEvent]) -> Vec<Option<InvoiceSync>> {
        let mut row = None;
        let mut states = Vec::new();
        for e in events {
            let Ok(Domain::Invoice { invoice_id, event }) = decode(e) else {
                panic!("not an invoice event: {e:?}")
            };
            row = apply(row, e, &invoice_id, &event);
            states.push(row.clone());
        }
        states
    }

    fn states(rows: &[Option<InvoiceSync>]) -> Vec<&'static str> {
        rows.iter()
            .map(|r| r.as_ref().map(|r| r.state.as_str()).unwrap_or("-"))
            .collect()
    }

    #[test]
    fn billed_then_created_then_situacao_is_synced() {
        let mut s = Script::new("shop-a");
        let events = [
            s.invoice("i1", billed("shop-a", "i1", "c1")),
            s.invoice("i1", order_created(1)),
            s.invoice("i1", situacao()),
        ];
        let rows = run(&events);
        assert_eq!(states(&rows), ["pending", "pending", "synced"]);
        let last = rows[2].clone().unwrap();
        assert_eq!(last.number, "NF-1");
        assert_eq!(last.total_centavos, 17000);
        assert_eq!(last.customer_id, "c1");
        assert_eq!(last.bling_order_id, Some(900));
        assert_eq!(last.bling_number, Some(17));
        assert_eq!(last.situacao_name.as_deref(), Some("Atendido"));
        assert_eq!(last.billed_position, 1);
        assert_eq!(last.last_position, 3);
        assert_eq!(last.updated_at_ms, events[2].recorded_at_ms());
    }

    #[test]
    fn divergent_failure_then_fix_then_synced() {
        let mut s = Script::new("shop-a");
        let events = [
            s.invoice("i1", billed("shop-a", "i1", "c1")),
            s.invoice("i1", divergent_failure(1)),
            s.invoice("i1", divergent_failure(2)),
            s.invoice(
                "i1",
                json!({"SyncResumed": {"reason": "customer record updated"}}),
            ),
            s.invoice("i1", order_created(1)),
            s.invoice("i1", situacao()),
        ];
        let rows = run(&events);
        assert_eq!(
            states(&rows),
            ["pending", "failed", "failed", "pending", "pending", "synced"]
        );
        let failed = rows[2].clone().unwrap();
        assert_eq!(failed.attempts, 2);
        assert_eq!(
            failed.last_cause_kind.as_deref(),
            Some("divergent_customer_record")
        );
        assert!(failed.last_cause_message.unwrap().contains("CEP"));
        let done = rows[5].clone().unwrap();
        assert_eq!(done.attempts, 0, "reset by the success");
        assert_eq!(done.failures_total, 2);
        assert_eq!(
            done.last_cause_kind.as_deref(),
            Some("divergent_customer_record"),
            "kept as history"
        );
    }

    #[test]
    fn parked_then_resumed_then_synced() {
        let mut s = Script::new("shop-a");
        let events = [
            s.invoice("i1", billed("shop-a", "i1", "c1")),
            s.invoice("i1", json!({"SyncParked": {"reason": "access revoked"}})),
            s.invoice(
                "i1",
                json!({"SyncResumed": {"reason": "reconnected to Bling"}}),
            ),
            s.invoice("i1", order_created(1)),
            s.invoice("i1", situacao()),
        ];
        assert_eq!(
            states(&run(&events)),
            ["pending", "parked", "pending", "pending", "synced"]
        );
    }

    #[test]
    fn an_update_is_pending_until_bling_holds_it() {
        let mut s = Script::new("shop-a");
        let events = [
            s.invoice("i1", billed("shop-a", "i1", "c1")),
            s.invoice("i1", order_created(1)),
            s.invoice("i1", situacao()),
            s.invoice("i1", json!({"InvoiceUpdated": {"changed_fields": ["total"], "content": content("NF-1b", 26000)}})),
            s.invoice("i1", json!({"SalesOrderUpdated": {"content_version": 2, "calls": []}})),
        ];
        let rows = run(&events);
        assert_eq!(
            states(&rows),
            ["pending", "pending", "synced", "pending", "synced"]
        );
        assert_eq!(rows[4].clone().unwrap().number, "NF-1b");
        assert_eq!(rows[4].clone().unwrap().total_centavos, 26000);
    }

    #[test]
    fn adopted_orders_count_only_once_updated() {
        let mut s = Script::new("shop-a");
        let adopted = json!({"SalesOrderCreated": {"bling_order_id": 5, "bling_number": 1,
            "created": false, "content_version": 1, "calls": []}});
        let events = [
            s.invoice("i1", billed("shop-a", "i1", "c1")),
            s.invoice("i1", adopted),
            s.invoice("i1", situacao()),
            s.invoice(
                "i1",
                json!({"SalesOrderUpdated": {"content_version": 1, "calls": []}}),
            ),
        ];
        assert_eq!(
            states(&run(&events)),
            ["pending", "pending", "pending", "synced"]
        );
    }

    #[test]
    fn cancelled_before_bling_or_after_the_situacao_changes() {
        let mut s = Script::new("shop-a");
        let early = [
            s.invoice("i1", billed("shop-a", "i1", "c1")),
            s.invoice("i1", json!({"InvoiceCancelled": {"reason": "desistiu"}})),
        ];
        assert_eq!(states(&run(&early)), ["pending", "cancelled"]);
        let late = [
            s.invoice("i2", billed("shop-a", "i2", "c1")),
            s.invoice("i2", order_created(1)),
            s.invoice("i2", situacao()),
            s.invoice("i2", json!({"InvoiceCancelled": {"reason": null}})),
            s.invoice("i2", json!({"SituacaoChanged": {"situacao_id": 12, "situacao_name": "Cancelado", "calls": []}})),
        ];
        let rows = run(&late);
        assert_eq!(
            states(&rows),
            ["pending", "pending", "synced", "pending", "cancelled"]
        );
        assert_eq!(
            rows[4].clone().unwrap().situacao_name.as_deref(),
            Some("Cancelado")
        );
    }

    #[test]
    fn a_cancelled_invoice_with_an_authorized_nfe_asks_for_its_cancellation() {
        let mut s = Script::new("shop-a");
        let authorized = json!({"NfeAuthorized": {"nfe_id": 77, "source": "send", "calls": [],
            "document": {"numero": "000123", "serie": 1, "chave_acesso": "3".repeat(44),
                         "link_danfe": "", "link_pdf": ""}}});
        let events = [
            s.invoice("i1", billed("shop-a", "i1", "c1")),
            s.invoice("i1", order_created(1)),
            s.invoice("i1", situacao()),
            s.invoice("i1", json!({"NfeGenerated": {"nfe_id": 77, "calls": []}})),
            s.invoice("i1", json!({"InvoiceCancelled": {"reason": null}})),
            s.invoice("i1", json!({"NfeSent": {"nfe_id": 77, "calls": []}})),
            s.invoice("i1", authorized.clone()),
            s.invoice(
                "i1",
                json!({"NfeCancelled": {"nfe_id": 77, "source": "webhook", "calls": []}}),
            ),
        ];
        let rows = run(&events);
        let attention: Vec<Option<String>> = rows
            .iter()
            .map(|r| r.as_ref().and_then(InvoiceSync::nfe_attention))
            .collect();
        assert!(attention[..6].iter().all(Option::is_none), "{attention:?}");
        let asked = attention[6].as_deref().expect("asked while it stands");
        assert!(asked.contains("NF-e nº 000123"), "{asked}");
        assert!(asked.contains("24 h"), "{asked}");
        assert_eq!(attention[7], None, "cancelled in Bling: nothing left to do");

        // Authorized first, cancelled in the pet shop afterwards: the same.
        let later = [
            s.invoice("i2", billed("shop-a", "i2", "c1")),
            s.invoice("i2", authorized),
            s.invoice("i2", json!({"InvoiceCancelled": {"reason": "desistiu"}})),
        ];
        let rows = run(&later);
        assert_eq!(rows[1].as_ref().and_then(InvoiceSync::nfe_attention), None);
        assert!(rows[2]
            .as_ref()
            .and_then(InvoiceSync::nfe_attention)
            .is_some());
    }

    #[test]
    fn events_before_billing_leave_no_row() {
        let mut s = Script::new("shop-a");
        let e = s.invoice("i1", json!({"SyncResumed": {"reason": "x"}}));
        let Ok(Domain::Invoice { event, .. }) = decode(&e) else {
            panic!()
        };
        assert_eq!(apply(None, &e, "i1", &event), None);
    }
}
