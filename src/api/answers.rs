//! Every JSON answer of the API, declared once. The console, the tests and the pet-shop
//! systems depend on these names and values.
//!
//! Fields are declared in alphabetical order: the answers used to be `serde_json::Value`s,
//! whose keys serialize sorted, and idempotent replays return stored bodies byte for byte, so
//! the same order keeps old and new answers identical.
//!
//! The support views' rows (`invoices`, `failures`, `tenants`, a history, a customer) come
//! shaped from [`crate::projections::queries`]; the answers here wrap them.

use aggregates::ids::{CustomerId, InvoiceId, TenantId};
use aggregates::money::Centavos;
use aggregates::tax_id::{PersonType, TaxId};
use aggregates::FieldProblem;
use serde::Serialize;
use serde_json::Value;

/// Every refusal: `{"error":{"code","fields","message"}}`.
#[derive(Debug, Serialize)]
pub struct ErrorAnswer<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
pub struct ErrorDetail<'a> {
    pub code: &'a str,
    pub fields: &'a [FieldProblem],
    pub message: &'a str,
}

/// `PUT /v1/tenants/{tenant}/customers/{customer_id}`.
#[derive(Debug, Serialize)]
pub struct CustomerSaved {
    pub changed_fields: Vec<String>,
    pub customer_id: CustomerId,
    pub person_type: PersonType,
    pub ready_for_bling: bool,
    /// `registered`, `updated` or `unchanged`.
    pub result: &'static str,
    pub tax_id: TaxId,
    pub tenant: TenantId,
}

/// `POST /v1/tenants/{tenant}/invoices/{invoice_id}/bill`.
#[derive(Debug, Serialize)]
pub struct InvoiceBilled {
    pub invoice_id: InvoiceId,
    /// `billed`.
    pub result: &'static str,
    pub tenant: TenantId,
    pub total: Centavos,
}

/// `PUT /v1/tenants/{tenant}/invoices/{invoice_id}`.
#[derive(Debug, Serialize)]
pub struct InvoiceUpdated {
    pub changed_fields: Vec<String>,
    pub invoice_id: InvoiceId,
    /// `updated` or `unchanged`.
    pub result: &'static str,
    pub tenant: TenantId,
}

/// `POST /v1/tenants/{tenant}/invoices/{invoice_id}/cancel`.
#[derive(Debug, Serialize)]
pub struct InvoiceCancelled {
    pub invoice_id: InvoiceId,
    /// `cancelled`.
    pub result: &'static str,
    pub tenant: TenantId,
}

/// `POST /v1/tenants/{tenant}/connection/authorize`.
#[derive(Debug, Serialize)]
pub struct AuthorizeStarted {
    pub authorize_url: String,
    pub expires_in_seconds: u64,
    pub tenant: TenantId,
}

/// `POST /v1/tenants/{tenant}/connection/disconnect`.
#[derive(Debug, Serialize)]
pub struct Disconnected {
    /// `disconnected`.
    pub state: &'static str,
    pub tenant: TenantId,
}

/// `POST /v1/tenants/{tenant}/replay` (202).
#[derive(Debug, Serialize)]
pub struct Replayed {
    /// The invoice asked for; `null` for the whole tenant.
    pub invoice_id: Option<InvoiceId>,
    pub requeued: u64,
    pub tenant: TenantId,
}

/// `GET /v1/tenants`.
#[derive(Debug, Serialize)]
pub struct TenantList {
    pub tenants: Vec<Value>,
}

/// `GET /v1/tenants/{tenant}/invoices`.
#[derive(Debug, Serialize)]
pub struct InvoicePage {
    pub invoices: Vec<Value>,
    pub next_cursor: Option<String>,
    pub tenant: TenantId,
}

/// `GET /v1/tenants/{tenant}/failures`.
#[derive(Debug, Serialize)]
pub struct FailurePage {
    pub failures: Vec<Value>,
    pub next_cursor: Option<String>,
    pub tenant: TenantId,
}

/// `GET /health`, the database answering.
#[derive(Debug, Serialize)]
pub struct Healthy {
    pub database: &'static str,
    pub log_head: i64,
    /// `ok`.
    pub status: &'static str,
}

/// `GET /health` (503), the database not answering.
#[derive(Debug, Serialize)]
pub struct Unhealthy {
    pub database: &'static str,
    pub error: String,
    /// `unavailable`.
    pub status: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answers serialize exactly as the `json!` values they replaced (keys sorted).
    #[test]
    fn answers_keep_their_bytes() {
        let tenant = TenantId::parse("shop-a").unwrap();
        let invoice = InvoiceId::parse("NF-1").unwrap();
        let typed = serde_json::to_string(&InvoiceUpdated {
            changed_fields: vec!["notes".into()],
            invoice_id: invoice.clone(),
            result: "updated",
            tenant: tenant.clone(),
        })
        .unwrap();
        let old = serde_json::json!({"tenant": tenant, "invoice_id": invoice, "result": "updated", "changed_fields": ["notes"]});
        assert_eq!(typed, old.to_string());
        let typed = serde_json::to_string(&Replayed {
            invoice_id: None,
            requeued: 3,
            tenant: tenant.clone(),
        })
        .unwrap();
        let old = serde_json::json!({"tenant": tenant, "invoice_id": Option::<InvoiceId>::None, "requeued": 3});
        assert_eq!(typed, old.to_string());
        let fields = [FieldProblem {
            field: "name".into(),
            problem: "empty".into(),
        }];
        let typed = serde_json::to_string(&ErrorAnswer {
            error: ErrorDetail {
                code: "validation_failed",
                fields: &fields,
                message: "1 field(s) are not valid",
            },
        })
        .unwrap();
        let old = serde_json::json!({"error": {"code": "validation_failed", "message": "1 field(s) are not valid", "fields": fields}});
        assert_eq!(typed, old.to_string());
    }
}
