//! What support reads, as JSON: the views' queries live in the store
//! (`store::views::reads`, re-exported here for the HTTP API, the CLI and the benchmarks); this
//! is how each row they return is shown.

use chrono::{DateTime, SecondsFormat, Utc};
use projections::connections::ConnectionStatus;
use projections::customers::CustomerSync;
use projections::failures::Failure;
use projections::invoices::InvoiceSync;
use projections::timeline::Entry;
use serde_json::{json, Value};

pub use crate::store::views::reads::{
    connection, customer, dump_all, failures, history, invoice, list_invoices, tenants, Dump,
    FailureFilter, History, InvoiceFilter, Page, DEFAULT_LIMIT, HISTORY_LIMIT, MAX_LIMIT,
};

// ---- JSON -------------------------------------------------------------------------------

pub fn time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn otime(ms: Option<i64>) -> Value {
    ms.map(|m| Value::String(time(m))).unwrap_or(Value::Null)
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

fn cause(kind: &Option<String>, message: &Option<String>, at: Option<i64>) -> Value {
    match kind {
        None => Value::Null,
        Some(k) => json!({
            "kind": k,
            "message": message,
            "advice": projections::advice_for(k),
            "at": otime(at),
        }),
    }
}

pub fn invoice_json(i: &InvoiceSync) -> Value {
    json!({
        "tenant": i.tenant,
        "invoice_id": i.invoice_id,
        "customer_id": i.customer_id,
        "number": i.number,
        "total_centavos": i.total_centavos,
        "total": projections::timeline::brl(i.total_centavos),
        "issue_date": i.issue_date,
        "billed_at": time(i.billed_at_ms),
        "state": i.state,
        "content_version": i.content_version,
        "synced_version": i.synced_version,
        "bling": {
            "order_id": i.bling_order_id,
            "order_number": i.bling_number,
            "situacao": i.situacao_id.map(|id| json!({"id": id, "name": i.situacao_name})),
            "nfe_id": i.nfe_id,
        },
        "cancelled": i.cancelled,
        "cancel_reason": i.cancel_reason,
        "last_cause": cause(&i.last_cause_kind, &i.last_cause_message, i.last_failure_at_ms),
        "retry_at": otime(i.retry_at_ms),
        "attempts": i.attempts,
        "failures_total": i.failures_total,
        "updated_at": time(i.updated_at_ms),
        "last_position": i.last_position,
    })
}

pub fn entry_json(e: &Entry) -> Value {
    json!({
        "position": e.position,
        "at": time(e.recorded_at_ms),
        "subject": e.subject,
        "subject_id": e.subject_id,
        "event": e.event_type,
        "actor": e.actor,
        "correlation_id": e.correlation_id,
        "summary": e.summary,
        "calls": parse(&e.calls),
        "connection_state": e.connection_state,
        "cause": cause(&e.cause_kind, &e.cause_message, None).as_object().map(|o| {
            let mut o = o.clone();
            o.remove("at");
            Value::Object(o)
        }).unwrap_or(Value::Null),
        "detail": parse(&e.detail),
    })
}

pub fn history_json(h: &History) -> Value {
    json!({
        "invoice": invoice_json(&h.invoice),
        "entries": h.entries.iter().map(entry_json).collect::<Vec<_>>(),
        "truncated": h.truncated,
    })
}

pub fn failure_json(f: &Failure) -> Value {
    json!({
        "position": f.position,
        "at": time(f.recorded_at_ms),
        "tenant": f.tenant,
        "subject": f.subject,
        "invoice_id": f.invoice_id,
        "invoice_number": f.invoice_number,
        "customer_id": f.customer_id,
        "outcome": f.outcome,
        "cause": f.cause_kind,
        "message": f.message,
        "advice": projections::advice_for(&f.cause_kind),
        "evidence": parse(&f.evidence),
        "attempt": f.attempt,
        "retry_at": otime(f.retry_at_ms),
    })
}

pub fn customer_json(c: &CustomerSync) -> Value {
    json!({
        "tenant": c.tenant,
        "customer_id": c.customer_id,
        "name": c.name,
        "tax_id": c.tax_id,
        "person_type": c.person_type,
        "state": c.state,
        "bling_contact_id": c.bling_contact_id,
        "profile_version": c.profile_version,
        "synced_version": c.synced_version,
        "last_failure": cause(&c.last_cause_kind, &c.last_cause_message, c.last_failure_at_ms),
        "registered_at": time(c.registered_at_ms),
        "updated_at": time(c.updated_at_ms),
        "last_position": c.last_position,
    })
}

pub fn connection_json(c: &ConnectionStatus) -> Value {
    json!({
        "state": c.state,
        "scopes": c.scopes,
        "connected_at": otime(c.connected_at_ms),
        "access_expires_at": otime(c.access_expires_at_ms),
        "token_fingerprint": c.token_fingerprint,
        "last_refresh_at": otime(c.last_refresh_at_ms),
        "last_error": c.last_error,
        "last_error_at": otime(c.last_error_at_ms),
        "revoked_since": otime(c.revoked_since_ms),
        "revoked_evidence": c.revoked_evidence.as_deref().map(parse),
        "disconnected_at": otime(c.disconnected_at_ms),
        "disconnected_by": c.disconnected_by,
        "updated_at": time(c.updated_at_ms),
    })
}

pub fn tenant_json(tenant: &str, status: &Option<ConnectionStatus>) -> Value {
    json!({
        "tenant": tenant,
        "connection": match status {
            Some(c) => connection_json(c),
            None => json!({"state": projections::connections::NEVER_CONNECTED}),
        },
    })
}

/// Parses a cursor (a position) or names the problem.
pub fn parse_cursor(raw: &str) -> Result<i64, String> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| "not a cursor returned by this endpoint".to_string())
}
