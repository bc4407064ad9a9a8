//! Failure audit: one row per failed sync attempt, of an invoice (`SyncFailed`, and
//! `SyncParked`, whose cause is always a revoked or missing authorization) or of a customer's
//! contato (`ContactSyncFailed`), with the evidence: the classified cause as recorded (Bling's
//! field errors, our validation problems, status, type, description) and every Bling call of
//! the attempt.
//!
//! To name the invoice's customer and number on its failures, the view keeps a small
//! directory of invoices (`InvoiceRef`) from `InvoiceBilled`/`InvoiceUpdated`.

use aggregates::customer::CustomerEvent;
use aggregates::invoice::InvoiceEvent;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{cause_message, Domain, LogEvent};

pub const NAME: &str = "failures";

/// What the view remembers of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceRef {
    pub tenant: String,
    pub invoice_id: String,
    pub customer_id: String,
    pub number: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub position: i64,
    pub tenant: String,
    /// `invoice` or `customer`.
    pub subject: String,
    pub invoice_id: Option<String>,
    pub invoice_number: Option<String>,
    pub customer_id: Option<String>,
    pub recorded_at_ms: i64,
    /// `failed` or `parked`.
    pub outcome: String,
    pub cause_kind: String,
    pub message: String,
    /// JSON: `{"cause": {…as recorded…}, "calls": [{at, method, path, status, latency_ms,
    /// error_type, error_message}]}` (or `{"reason": …}` for a parked attempt).
    pub evidence: String,
    pub attempt: Option<i64>,
    pub retry_at_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Invoice(InvoiceRef),
    Failure(Failure),
}

/// The invoice whose directory entry `apply` needs, if any.
pub fn needs_invoice(domain: &Domain) -> Option<&str> {
    match domain {
        Domain::Invoice {
            invoice_id,
            event:
                InvoiceEvent::SyncFailed { .. }
                | InvoiceEvent::SyncParked { .. }
                | InvoiceEvent::OrderDiverged { .. }
                | InvoiceEvent::InvoiceUpdated { .. },
        } => Some(invoice_id),
        _ => None,
    }
}

pub fn apply(invoice: Option<&InvoiceRef>, log: &LogEvent, domain: &Domain) -> Option<Change> {
    let base =
        |subject: &str, outcome: &str, kind: &str, message: String, evidence: serde_json::Value| {
            Failure {
                position: log.position,
                tenant: log.tenant.clone(),
                subject: subject.to_string(),
                invoice_id: None,
                invoice_number: None,
                customer_id: None,
                recorded_at_ms: log.recorded_at_ms(),
                outcome: outcome.to_string(),
                cause_kind: kind.to_string(),
                message,
                evidence: evidence.to_string(),
                attempt: None,
                retry_at_ms: None,
            }
        };
    match domain {
        Domain::Invoice { invoice_id, event } => {
            let mut failure = match event {
                InvoiceEvent::InvoiceBilled {
                    customer_id,
                    content,
                    ..
                } => {
                    return Some(Change::Invoice(InvoiceRef {
                        tenant: log.tenant.clone(),
                        invoice_id: invoice_id.clone(),
                        customer_id: customer_id.to_string(),
                        number: content.number.clone(),
                    }))
                }
                InvoiceEvent::InvoiceUpdated { content, .. } => {
                    let known = invoice?;
                    if known.number == content.number {
                        return None;
                    }
                    return Some(Change::Invoice(InvoiceRef {
                        number: content.number.clone(),
                        ..known.clone()
                    }));
                }
                InvoiceEvent::SyncFailed {
                    cause,
                    attempt,
                    retry_at,
                    calls,
                } => {
                    let mut f = base(
                        "invoice",
                        "failed",
                        cause.code(),
                        cause_message(cause),
                        json!({"cause": cause, "calls": calls}),
                    );
                    f.attempt = Some(i64::from(*attempt));
                    f.retry_at_ms = retry_at.map(|t| t.timestamp_millis());
                    f
                }
                InvoiceEvent::SyncParked { reason } => base(
                    "invoice",
                    "parked",
                    "authorization_revoked",
                    reason.clone(),
                    json!({"reason": reason}),
                ),
                InvoiceEvent::OrderDiverged { divergence, calls } => base(
                    "invoice",
                    "diverged",
                    "order_diverged",
                    crate::timeline::divergence_text(divergence),
                    json!({"divergence": divergence, "calls": calls}),
                ),
                _ => return None,
            };
            failure.invoice_id = Some(invoice_id.clone());
            if let Some(known) = invoice {
                failure.customer_id = Some(known.customer_id.clone());
                failure.invoice_number = Some(known.number.clone());
            }
            Some(Change::Failure(failure))
        }
        Domain::Customer {
            customer_id,
            event: CustomerEvent::ContactSyncFailed { cause, calls, .. },
        } => {
            let mut f = base(
                "customer",
                "failed",
                cause.code(),
                cause_message(cause),
                json!({"cause": cause, "calls": calls}),
            );
            f.customer_id = Some(customer_id.clone());
            Some(Change::Failure(f))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode;
    use crate::testing::*;
    use serde_json::{json, Value};

    #[test]
    fn failures_carry_their_evidence_and_invoice() {
        let mut s = Script::new("shop-a");
        let billed = s.invoice("i1", billed("shop-a", "i1", "c1"));
        let Some(Change::Invoice(known)) = apply(None, &billed, &decode(&billed).unwrap()) else {
            panic!()
        };
        assert_eq!(known.number, "NF-1");
        let failed = s.invoice("i1", divergent_failure(1));
        let domain = decode(&failed).unwrap();
        assert_eq!(needs_invoice(&domain), Some("i1"));
        let Some(Change::Failure(f)) = apply(Some(&known), &failed, &domain) else {
            panic!()
        };
        assert_eq!(
            (f.subject.as_str(), f.outcome.as_str()),
            ("invoice", "failed")
        );
        assert_eq!(f.cause_kind, "divergent_customer_record");
        assert_eq!(f.customer_id.as_deref(), Some("c1"));
        assert_eq!(f.invoice_number.as_deref(), Some("NF-1"));
        assert_eq!(f.attempt, Some(1));
        let evidence: Value = serde_json::from_str(&f.evidence).unwrap();
        assert_eq!(
            evidence["cause"]["bling_fields"][0]["element"],
            "endereco.geral.cep"
        );
        assert_eq!(evidence["calls"][0]["status"], 400);
        assert_eq!(evidence["calls"][0]["error_type"], "VALIDATION_ERROR");

        let parked = s.invoice("i1", json!({"SyncParked": {"reason": "revoked"}}));
        let Some(Change::Failure(p)) = apply(Some(&known), &parked, &decode(&parked).unwrap())
        else {
            panic!()
        };
        assert_eq!(
            (p.outcome.as_str(), p.cause_kind.as_str()),
            ("parked", "authorization_revoked")
        );

        let ok = s.invoice("i1", order_created(1));
        assert_eq!(apply(Some(&known), &ok, &decode(&ok).unwrap()), None);

        let contact = s.customer(
            "c1",
            json!({"ContactSyncFailed": {"cause": {"kind": "rate_limited", "message": "429"},
            "profile_version": 1, "calls": [call(429, Some("TOO_MANY_REQUESTS"))]}}),
        );
        let Some(Change::Failure(c)) = apply(None, &contact, &decode(&contact).unwrap()) else {
            panic!()
        };
        assert_eq!(
            (c.subject.as_str(), c.cause_kind.as_str()),
            ("customer", "rate_limited")
        );
        assert_eq!(c.customer_id.as_deref(), Some("c1"));
    }
}
