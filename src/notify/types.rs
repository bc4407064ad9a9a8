//! The notification types a pet-shop system can subscribe to, and which ledger events make
//! them: the one place the mapping is written (pure: an event in, a notification out).
//!
//! | type | from the event |
//! |---|---|
//! | `invoice.synced` | `Invoice/SalesOrderCreated`, `Invoice/SalesOrderUpdated` |
//! | `invoice.failed` | `Invoice/SyncFailed` (cause, advice, whether it is retried) |
//! | `invoice.parked` | `Invoice/SyncParked` |
//! | `invoice.nfe_issued` | `Invoice/NfeAuthorized` (or `NfeIssued`) |
//! | `invoice.nfe_rejected` | `Invoice/NfeRejected` (or `NfeDenied`) |
//! | `customer.sync_failed` | `Customer/ContactSyncFailed` (cause, advice) |
//! | `connection.revoked` | `BlingConnection/AuthorizationRevoked`, or `RotationLost` (with `rotation_lost: true` and its reason); the notifier adds a reconnect link |
//! | `connection.restored` | `BlingConnection/Reconnected` |
//! | `connection.renewal_failing` | `BlingConnection/RefreshDeferred` |
//!
//! The NF-e lifecycle is being built separately: its event names are mapped here by name,
//! with the event's payload passed through under `data.nfe`, so the two types start flowing
//! the day those events exist (a test pins the mapping with hand-written events).

use aggregates::connection::ConnectionEvent;
use aggregates::customer::CustomerEvent;
use aggregates::invoice::InvoiceEvent;
use aggregates::sync::FailureCause;
use serde_json::{json, Value};

/// A notification type, by its stable name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotificationType {
    InvoiceSynced,
    InvoiceFailed,
    InvoiceParked,
    InvoiceNfeIssued,
    InvoiceNfeRejected,
    CustomerSyncFailed,
    ConnectionRevoked,
    ConnectionRestored,
    ConnectionRenewalFailing,
}

impl NotificationType {
    pub const ALL: [NotificationType; 9] = [
        NotificationType::InvoiceSynced,
        NotificationType::InvoiceFailed,
        NotificationType::InvoiceParked,
        NotificationType::InvoiceNfeIssued,
        NotificationType::InvoiceNfeRejected,
        NotificationType::CustomerSyncFailed,
        NotificationType::ConnectionRevoked,
        NotificationType::ConnectionRestored,
        NotificationType::ConnectionRenewalFailing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotificationType::InvoiceSynced => "invoice.synced",
            NotificationType::InvoiceFailed => "invoice.failed",
            NotificationType::InvoiceParked => "invoice.parked",
            NotificationType::InvoiceNfeIssued => "invoice.nfe_issued",
            NotificationType::InvoiceNfeRejected => "invoice.nfe_rejected",
            NotificationType::CustomerSyncFailed => "customer.sync_failed",
            NotificationType::ConnectionRevoked => "connection.revoked",
            NotificationType::ConnectionRestored => "connection.restored",
            NotificationType::ConnectionRenewalFailing => "connection.renewal_failing",
        }
    }

    pub fn parse(raw: &str) -> Option<NotificationType> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }

    /// Every name, for error messages.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.into_iter().map(Self::as_str).collect()
    }
}

/// What one event notifies: its type and its `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub kind: NotificationType,
    pub data: Value,
}

/// The failure as the pet-shop system reads it: the cause's code, label and message, what to
/// do, and whether the ledger retries on its own.
fn cause(c: &FailureCause) -> Value {
    json!({
        "code": c.code(),
        "label": c.kind().label(),
        "message": c.message(),
        "transient": c.is_transient(),
    })
}

/// The notification an event makes, if any. `local_id` is the stream's id within its tenant
/// (the invoice or customer id); an event whose payload does not decode notifies nothing
/// (the log's own readers report such corruption).
pub fn notification_for(
    aggregate_type: &str,
    event_type: &str,
    local_id: &str,
    payload: &Value,
) -> Option<Notification> {
    let n = |kind, data| Some(Notification { kind, data });
    match aggregate_type {
        "Invoice" => {
            // The NF-e lifecycle's events, by name (see the module documentation).
            match event_type {
                "NfeAuthorized" | "NfeIssued" => {
                    return n(
                        NotificationType::InvoiceNfeIssued,
                        json!({"invoice_id": local_id, "nfe": payload.get(event_type).unwrap_or(payload)}),
                    )
                }
                "NfeRejected" | "NfeDenied" => {
                    return n(
                        NotificationType::InvoiceNfeRejected,
                        json!({"invoice_id": local_id, "nfe": payload.get(event_type).unwrap_or(payload)}),
                    )
                }
                _ => {}
            }
            let event: InvoiceEvent = serde_json::from_value(payload.clone()).ok()?;
            match event {
                InvoiceEvent::SalesOrderCreated {
                    bling_order_id,
                    bling_number,
                    created,
                    ..
                } => n(
                    NotificationType::InvoiceSynced,
                    json!({
                        "invoice_id": local_id,
                        "change": "created",
                        "bling_order_id": bling_order_id,
                        "bling_number": bling_number,
                        "found_existing": !created,
                    }),
                ),
                InvoiceEvent::SalesOrderUpdated { .. } => n(
                    NotificationType::InvoiceSynced,
                    json!({"invoice_id": local_id, "change": "updated"}),
                ),
                InvoiceEvent::SyncFailed {
                    cause: c,
                    attempt,
                    retry_at,
                    ..
                } => n(
                    NotificationType::InvoiceFailed,
                    json!({
                        "invoice_id": local_id,
                        "attempt": attempt,
                        "retry_at": retry_at,
                        "cause": cause(&c),
                        "advice": c.advice(),
                    }),
                ),
                InvoiceEvent::SyncParked { reason } => n(
                    NotificationType::InvoiceParked,
                    json!({"invoice_id": local_id, "reason": reason}),
                ),
                _ => None,
            }
        }
        "Customer" => match serde_json::from_value(payload.clone()).ok()? {
            CustomerEvent::ContactSyncFailed { cause: c, .. } => n(
                NotificationType::CustomerSyncFailed,
                json!({
                    "customer_id": local_id,
                    "cause": cause(&c),
                    "advice": c.advice(),
                }),
            ),
            _ => None,
        },
        "BlingConnection" => match serde_json::from_value(payload.clone()).ok()? {
            ConnectionEvent::AuthorizationRevoked { evidence } => n(
                NotificationType::ConnectionRevoked,
                json!({
                    "evidence": {
                        "call": evidence.call,
                        "status": evidence.status,
                        "error_type": evidence.error_type,
                        "message": evidence.message,
                    },
                }),
            ),
            // The refresh-token chain broke on a lost answer: the shop must reconnect all the
            // same, and the payload says it was not the shop's doing.
            ConnectionEvent::RotationLost { evidence, reason } => n(
                NotificationType::ConnectionRevoked,
                json!({
                    "reason": reason,
                    "rotation_lost": true,
                    "evidence": {
                        "call": evidence.call,
                        "status": evidence.status,
                        "error_type": evidence.error_type,
                        "message": evidence.message,
                    },
                }),
            ),
            ConnectionEvent::Reconnected {
                access_expires_at, ..
            } => n(
                NotificationType::ConnectionRestored,
                json!({"access_expires_at": access_expires_at}),
            ),
            ConnectionEvent::RefreshDeferred {
                reason,
                next_attempt_at,
            } => n(
                NotificationType::ConnectionRenewalFailing,
                json!({"reason": reason, "next_attempt_at": next_attempt_at}),
            ),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in NotificationType::ALL {
            assert_eq!(NotificationType::parse(t.as_str()), Some(t));
        }
        assert_eq!(NotificationType::parse("invoice.*"), None);
    }

    #[test]
    fn a_failure_carries_its_cause_and_advice() {
        let payload = json!({"SyncFailed": {
            "cause": {"kind": "bling_unavailable", "message": "503 from Bling"},
            "attempt": 2, "retry_at": null, "calls": []
        }});
        let n = notification_for("Invoice", "SyncFailed", "inv-1", &payload).unwrap();
        assert_eq!(n.kind, NotificationType::InvoiceFailed);
        assert_eq!(n.data["invoice_id"], "inv-1");
        assert_eq!(n.data["cause"]["code"], "bling_unavailable");
        assert_eq!(n.data["cause"]["transient"], true);
        assert!(!n.data["advice"].as_str().unwrap().is_empty());
    }

    #[test]
    fn nfe_events_are_mapped_by_name_and_others_notify_nothing() {
        let payload = json!({"NfeAuthorized": {"nfe_id": 7, "chave": "3519"}});
        let n = notification_for("Invoice", "NfeAuthorized", "inv-1", &payload).unwrap();
        assert_eq!(n.kind, NotificationType::InvoiceNfeIssued);
        assert_eq!(n.data["nfe"]["nfe_id"], 7);
        let n = notification_for(
            "Invoice",
            "NfeRejected",
            "inv-1",
            &json!({"NfeRejected": {}}),
        )
        .unwrap();
        assert_eq!(n.kind, NotificationType::InvoiceNfeRejected);
        let parked = json!({"SyncParked": {"reason": "revoked"}});
        assert_eq!(
            notification_for("Invoice", "SyncParked", "inv-1", &parked)
                .unwrap()
                .kind,
            NotificationType::InvoiceParked
        );
        let cancelled = json!({"InvoiceCancelled": {"reason": null}});
        assert_eq!(
            notification_for("Invoice", "InvoiceCancelled", "inv-1", &cancelled),
            None
        );
    }
}
