//! bling-ledger's read models, pure: each view is a reducer that turns one event of the global
//! log into row changes. No I/O, no clock: a row depends only on the events before it, so a
//! rebuild from position 0 gives the same rows as the live run.
//!
//! The storage side (loading the rows a batch touches, writing them and the checkpoint in one
//! transaction) lives in the binary crate, `src/projections/`.
//!
//! Views:
//! - [`invoices`]: the sync state of each invoice (pending, synced, failed, parked, cancelled);
//! - [`timeline`]: every event about an invoice, its customer's contato sync and the tenant's
//!   connection, each with its Bling calls and the connection state at that moment;
//! - [`failures`]: one row per failed (or parked) sync attempt, with its evidence;
//! - [`connections`]: the Bling connection of each tenant;
//! - [`customers`]: the sync state of each customer's contato.

// No unwrap outside tests (see the workspace lints in Cargo.toml).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod connections;
pub mod customers;
pub mod failures;
pub mod invoices;
pub mod timeline;

use aggregates::connection::ConnectionEvent;
use aggregates::customer::CustomerEvent;
use aggregates::invoice::InvoiceEvent;
use aggregates::sync::{CauseKind, FailureCause};
use chrono::{DateTime, Utc};

/// One event of the global log, as a projection receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEvent {
    pub position: i64,
    pub tenant: String,
    pub aggregate_type: String,
    /// `"{tenant}/{local id}"` for customers and invoices, `"{tenant}"` for the connection.
    pub aggregate_id: String,
    pub event_type: String,
    /// The aggregate's event enum as the log stores it: JSON text, externally tagged
    /// (`{"SyncFailed": {…}}`). Kept as text so that decoding goes straight to the typed
    /// event, without building a JSON tree first (most of a rebuild's time, when it did).
    pub payload: String,
    /// Who caused it (`ingest:…`, `worker`, `support:…`, `system`), from the metadata.
    pub actor: Option<String>,
    /// The request or job the event came from, from the metadata.
    pub correlation_id: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

impl LogEvent {
    pub fn recorded_at_ms(&self) -> i64 {
        self.recorded_at.timestamp_millis()
    }

    pub fn actor(&self) -> Option<&str> {
        self.actor.as_deref()
    }

    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }

    /// The local id of a customer or invoice stream (`inv-1` of `shop-a/inv-1`).
    pub fn local_id(&self) -> &str {
        self.aggregate_id
            .split_once('/')
            .map(|(_, id)| id)
            .unwrap_or(&self.aggregate_id)
    }
}

/// A log event decoded into the domain's types.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    Customer {
        customer_id: String,
        event: CustomerEvent,
    },
    Invoice {
        invoice_id: String,
        event: InvoiceEvent,
    },
    Connection {
        event: ConnectionEvent,
    },
    /// An aggregate or event this version does not project.
    Other,
}

/// An event whose payload does not match its type: projections skip it (deterministically)
/// and the runner logs it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "event at position {position} ({aggregate_type}/{event_type}) cannot be decoded: {problem}"
)]
pub struct DecodeError {
    pub position: i64,
    pub aggregate_type: String,
    pub event_type: String,
    pub problem: String,
}

/// Decodes the payload of `event`. Unknown aggregates and event types are [`Domain::Other`].
pub fn decode(event: &LogEvent) -> Result<Domain, DecodeError> {
    let fail = |e: serde_json::Error| DecodeError {
        position: event.position,
        aggregate_type: event.aggregate_type.clone(),
        event_type: event.event_type.clone(),
        problem: e.to_string(),
    };
    let known = |names: &[&str]| names.contains(&event.event_type.as_str());
    Ok(match event.aggregate_type.as_str() {
        "Customer" if known(&CUSTOMER_EVENTS) => Domain::Customer {
            customer_id: event.local_id().to_string(),
            event: serde_json::from_str::<CustomerEvent>(&event.payload).map_err(fail)?,
        },
        "Invoice" if known(&INVOICE_EVENTS) => Domain::Invoice {
            invoice_id: event.local_id().to_string(),
            event: serde_json::from_str::<InvoiceEvent>(&event.payload).map_err(fail)?,
        },
        "BlingConnection" if known(&CONNECTION_EVENTS) => Domain::Connection {
            event: serde_json::from_str::<ConnectionEvent>(&event.payload).map_err(fail)?,
        },
        _ => Domain::Other,
    })
}

const CUSTOMER_EVENTS: [&str; 6] = [
    "CustomerRegistered",
    "CustomerUpdated",
    "ContactLinked",
    "ContactUpdated",
    "ContactSyncFailed",
    "CustomerErased",
];
const INVOICE_EVENTS: [&str; 17] = [
    "InvoiceBilled",
    "InvoiceUpdated",
    "InvoiceCancelled",
    "SalesOrderCreated",
    "SalesOrderUpdated",
    "SituacaoChanged",
    "NfeGenerated",
    "SyncFailed",
    "SyncParked",
    "SyncResumed",
    "NfeSent",
    "NfeAuthorized",
    "NfeDenied",
    "NfeCancelled",
    "NfeRetryRequested",
    "OrderDiverged",
    "DivergenceResolved",
];
const CONNECTION_EVENTS: [&str; 8] = [
    "AuthorizationRequested",
    "Connected",
    "Reconnected",
    "TokenRefreshed",
    "RefreshDeferred",
    "AuthorizationRevoked",
    "RotationLost",
    "Disconnected",
];

/// The one-line message of a failure cause (see [`FailureCause::message`]).
pub fn cause_message(cause: &FailureCause) -> String {
    cause.message()
}

/// The cause code `kind` as a [`FailureCause`] code, if it is one.
pub fn parse_cause_kind(kind: &str) -> Option<&'static str> {
    CauseKind::parse(kind).map(CauseKind::code)
}

/// Support's advice for a cause code (see [`CauseKind::advice`]).
pub fn advice_for(kind: &str) -> Option<&'static str> {
    CauseKind::parse(kind).map(CauseKind::advice)
}

/// The projections, by the name their checkpoint and the CLI use.
pub const NAMES: [&str; 5] = [
    invoices::NAME,
    timeline::NAME,
    failures::NAME,
    connections::NAME,
    customers::NAME,
];

#[cfg(test)]
pub(crate) mod testing {
    //! Scripted histories for the reducers' tests.
    use super::*;
    use serde_json::{json, Value};

    pub struct Script {
        pub tenant: String,
        pub position: i64,
        pub t0: DateTime<Utc>,
    }

    impl Script {
        pub fn new(tenant: &str) -> Script {
            Script {
                tenant: tenant.into(),
                position: 0,
                t0: DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
                    .unwrap()
                    .with_timezone(&Utc),
            }
        }

        pub fn event(
            &mut self,
            aggregate_type: &str,
            local: Option<&str>,
            payload: Value,
        ) -> LogEvent {
            self.position += 1;
            let event_type = payload.as_object().unwrap().keys().next().unwrap().clone();
            LogEvent {
                position: self.position,
                tenant: self.tenant.clone(),
                aggregate_type: aggregate_type.into(),
                aggregate_id: match local {
                    Some(l) => format!("{}/{l}", self.tenant),
                    None => self.tenant.clone(),
                },
                event_type,
                payload: payload.to_string(),
                actor: Some("worker".into()),
                correlation_id: Some("c-1".into()),
                recorded_at: self.t0 + chrono::Duration::seconds(self.position),
            }
        }

        pub fn invoice(&mut self, id: &str, payload: Value) -> LogEvent {
            self.event("Invoice", Some(id), payload)
        }
        pub fn customer(&mut self, id: &str, payload: Value) -> LogEvent {
            self.event("Customer", Some(id), payload)
        }
        pub fn connection(&mut self, payload: Value) -> LogEvent {
            self.event("BlingConnection", None, payload)
        }
    }

    pub fn content(number: &str, total: u64) -> Value {
        json!({"number": number, "issue_date": "2026-11-25", "items": [
            {"sku": "V10", "description": "Vacina", "quantity": 1, "unit_price": total, "discount": 0}],
            "installments": [{"due_date": "2026-11-25", "amount": total, "payment_method": "pix"}],
            "notes": null, "total": total})
    }

    pub fn billed(tenant: &str, id: &str, customer: &str) -> Value {
        json!({"InvoiceBilled": {"tenant": tenant, "invoice_id": id, "customer_id": customer,
            "content": content("NF-1", 17000)}})
    }

    pub fn call(status: u16, error_type: Option<&str>) -> Value {
        json!({"at": "2026-11-25T12:00:00Z", "method": "POST", "path": "/pedidos/vendas",
            "status": status, "latency_ms": 12, "error_type": error_type,
            "error_message": error_type.map(|_| "refused")})
    }

    pub fn divergent_failure(attempt: u32) -> Value {
        json!({"SyncFailed": {"cause": {"kind": "divergent_customer_record", "problems": [],
            "bling_fields": [{"code": 1, "element": "endereco.geral.cep", "msg": "CEP não pertence à UF"}],
            "message": "endereco.geral.cep: CEP não pertence à UF"},
            "attempt": attempt, "retry_at": null, "calls": [call(400, Some("VALIDATION_ERROR"))]}})
    }

    pub fn order_created(version: u64) -> Value {
        json!({"SalesOrderCreated": {"bling_order_id": 900, "bling_number": 17, "created": true,
            "content_version": version, "calls": [call(201, None)]}})
    }

    pub fn situacao() -> Value {
        json!({"SituacaoChanged": {"situacao_id": 9, "situacao_name": "Atendido", "calls": [call(204, None)]}})
    }

    pub fn customer_registered(tenant: &str, id: &str, name: &str) -> Value {
        json!({"CustomerRegistered": {"tenant": tenant, "customer_id": id, "profile": {
            "name": name, "tax_id": "52998224725", "email": null, "phone": null, "mobile": null,
            "address": null}}})
    }

    pub fn connected() -> Value {
        json!({"Connected": {"tenant": "shop-a", "scopes": "all",
            "access_expires_at": "2026-11-25T18:00:00Z", "token_fingerprint": "ab12"}})
    }

    pub fn revoked() -> Value {
        json!({"AuthorizationRevoked": {"evidence": {"call": "POST /oauth/token (refresh)",
            "status": 400, "error_type": "invalid_grant", "message": "revoked"}}})
    }

    pub fn reconnected() -> Value {
        json!({"Reconnected": {"scopes": "all", "access_expires_at": "2026-11-26T18:00:00Z",
            "token_fingerprint": "cd34"}})
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_known_events_and_skips_unknown_ones() {
        let mut s = Script::new("shop-a");
        let e = s.invoice("i1", billed("shop-a", "i1", "c1"));
        assert!(
            matches!(decode(&e), Ok(Domain::Invoice { ref invoice_id, .. }) if invoice_id == "i1")
        );
        let other = s.event("Something", Some("x"), json!({"Happened": {}}));
        assert_eq!(decode(&other), Ok(Domain::Other));
        let bad = s.invoice("i1", json!({"InvoiceBilled": {"tenant": 5}}));
        assert!(decode(&bad).is_err());
    }

    #[test]
    fn advice_exists_for_every_code() {
        for code in FailureCause::CODES {
            assert!(advice_for(code).is_some());
            assert_eq!(parse_cause_kind(code), Some(code));
        }
        assert_eq!(parse_cause_kind("nope"), None);
    }
}
