//! What support reads, as JSON: the views' queries live in the store
//! (`store::views::reads`, re-exported here for the HTTP API, the CLI and the benchmarks); this
//! is how each row they return is shown.

use chrono::{DateTime, SecondsFormat, Utc};
use projections::connections::ConnectionStatus;
use projections::customers::CustomerSync;
use projections::failures::Failure;
use projections::invoices::InvoiceSync;
use projections::timeline::Entry;
use serde::Serialize;
use serde_json::Value;

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

// Each shape is a type, its fields in alphabetical order: `serde_json`'s maps sort their keys,
// so the bytes are the ones these answers always had.

/// A failure cause as support reads it: Bling's or our message, and what to do.
#[derive(Debug, Serialize)]
struct CauseAnswer<'a> {
    advice: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    at: Option<Value>,
    kind: &'a str,
    message: &'a Option<String>,
}

/// The cause of `kind`, when there is one; `at` is left out when `None` is given for it
/// (timeline entries carry their own time).
fn cause<'a>(
    kind: &'a Option<String>,
    message: &'a Option<String>,
    at: Option<Option<i64>>,
) -> Option<CauseAnswer<'a>> {
    kind.as_deref().map(|k| CauseAnswer {
        advice: projections::advice_for(k),
        at: at.map(otime),
        kind: k,
        message,
    })
}

#[derive(Debug, Serialize)]
struct SituacaoAnswer<'a> {
    id: i64,
    name: &'a Option<String>,
}

#[derive(Debug, Serialize)]
struct BlingAnswer<'a> {
    nfe_id: Option<i64>,
    order_id: Option<i64>,
    order_number: Option<i64>,
    situacao: Option<SituacaoAnswer<'a>>,
    /// The NF-e as far as the ledger knows (issue #14); `attention` when the invoice is
    /// cancelled and its NF-e authorized ([`InvoiceSync::nfe_attention`]).
    nfe: Option<Value>,
    /// An order changed in Bling, while support has not resolved it.
    divergence: Option<Value>,
}

#[derive(Debug, Serialize)]
struct InvoiceAnswer<'a> {
    attempts: i64,
    billed_at: String,
    bling: BlingAnswer<'a>,
    cancel_reason: &'a Option<String>,
    cancelled: bool,
    content_version: i64,
    customer_id: &'a str,
    failures_total: i64,
    invoice_id: &'a str,
    issue_date: &'a str,
    last_cause: Option<CauseAnswer<'a>>,
    last_position: i64,
    number: &'a str,
    retry_at: Value,
    state: &'a projections::invoices::SyncState,
    synced_version: Option<i64>,
    tenant: &'a str,
    total: String,
    total_centavos: i64,
    updated_at: String,
}

fn to_value(answer: impl Serialize) -> Value {
    serde_json::to_value(answer).unwrap_or(Value::Null)
}

pub fn invoice_json(i: &InvoiceSync) -> Value {
    to_value(InvoiceAnswer {
        attempts: i.attempts,
        billed_at: time(i.billed_at_ms),
        bling: BlingAnswer {
            nfe_id: i.nfe_id,
            order_id: i.bling_order_id,
            order_number: i.bling_number,
            situacao: i.situacao_id.map(|id| SituacaoAnswer {
                id,
                name: &i.situacao_name,
            }),
            nfe: i.nfe_status.as_ref().map(|status| {
                let mut nfe = serde_json::json!({
                    "id": i.nfe_id,
                    "status": status,
                    "numero": i.nfe_numero,
                    "serie": i.nfe_serie,
                    "chave_acesso": i.nfe_chave,
                    "link_danfe": i.nfe_link_danfe,
                    "link_pdf": i.nfe_link_pdf,
                    "reason": i.nfe_reason,
                });
                // Only when there is something to do, so every other answer keeps its bytes.
                if let Some(attention) = i.nfe_attention() {
                    nfe["attention"] = Value::String(attention);
                }
                nfe
            }),
            divergence: i
                .divergence
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok()),
        },
        cancel_reason: &i.cancel_reason,
        cancelled: i.cancelled,
        content_version: i.content_version,
        customer_id: &i.customer_id,
        failures_total: i.failures_total,
        invoice_id: &i.invoice_id,
        issue_date: &i.issue_date,
        last_cause: cause(
            &i.last_cause_kind,
            &i.last_cause_message,
            Some(i.last_failure_at_ms),
        ),
        last_position: i.last_position,
        number: &i.number,
        retry_at: otime(i.retry_at_ms),
        state: &i.state,
        synced_version: i.synced_version,
        tenant: &i.tenant,
        total: projections::timeline::brl(i.total_centavos),
        total_centavos: i.total_centavos,
        updated_at: time(i.updated_at_ms),
    })
}

#[derive(Debug, Serialize)]
struct EntryAnswer<'a> {
    actor: &'a Option<String>,
    at: String,
    calls: Value,
    cause: Option<CauseAnswer<'a>>,
    connection_state: &'a str,
    correlation_id: &'a Option<String>,
    detail: Value,
    event: &'a str,
    position: i64,
    subject: &'a str,
    subject_id: &'a str,
    summary: &'a str,
}

pub fn entry_json(e: &Entry) -> Value {
    to_value(EntryAnswer {
        actor: &e.actor,
        at: time(e.recorded_at_ms),
        calls: parse(&e.calls),
        cause: cause(&e.cause_kind, &e.cause_message, None),
        connection_state: &e.connection_state,
        correlation_id: &e.correlation_id,
        detail: parse(&e.detail),
        event: &e.event_type,
        position: e.position,
        subject: &e.subject,
        subject_id: &e.subject_id,
        summary: &e.summary,
    })
}

#[derive(Debug, Serialize)]
struct HistoryAnswer {
    entries: Vec<Value>,
    invoice: Value,
    truncated: bool,
}

pub fn history_json(h: &History) -> Value {
    to_value(HistoryAnswer {
        entries: h.entries.iter().map(entry_json).collect(),
        invoice: invoice_json(&h.invoice),
        truncated: h.truncated,
    })
}

#[derive(Debug, Serialize)]
struct FailureAnswer<'a> {
    advice: Option<&'static str>,
    at: String,
    attempt: Option<i64>,
    cause: &'a str,
    customer_id: &'a Option<String>,
    evidence: Value,
    invoice_id: &'a Option<String>,
    invoice_number: &'a Option<String>,
    message: &'a str,
    outcome: &'a str,
    position: i64,
    retry_at: Value,
    subject: &'a str,
    tenant: &'a str,
}

pub fn failure_json(f: &Failure) -> Value {
    to_value(FailureAnswer {
        advice: projections::advice_for(&f.cause_kind),
        at: time(f.recorded_at_ms),
        attempt: f.attempt,
        cause: &f.cause_kind,
        customer_id: &f.customer_id,
        evidence: parse(&f.evidence),
        invoice_id: &f.invoice_id,
        invoice_number: &f.invoice_number,
        message: &f.message,
        outcome: &f.outcome,
        position: f.position,
        retry_at: otime(f.retry_at_ms),
        subject: &f.subject,
        tenant: &f.tenant,
    })
}

#[derive(Debug, Serialize)]
struct CustomerAnswer<'a> {
    bling_contact_id: Option<i64>,
    customer_id: &'a str,
    last_failure: Option<CauseAnswer<'a>>,
    last_position: i64,
    name: &'a str,
    person_type: &'a str,
    profile_version: i64,
    registered_at: String,
    state: &'a str,
    synced_version: Option<i64>,
    tax_id: &'a str,
    tenant: &'a str,
    updated_at: String,
}

pub fn customer_json(c: &CustomerSync) -> Value {
    to_value(CustomerAnswer {
        bling_contact_id: c.bling_contact_id,
        customer_id: &c.customer_id,
        last_failure: cause(
            &c.last_cause_kind,
            &c.last_cause_message,
            Some(c.last_failure_at_ms),
        ),
        last_position: c.last_position,
        name: &c.name,
        person_type: &c.person_type,
        profile_version: c.profile_version,
        registered_at: time(c.registered_at_ms),
        state: &c.state,
        synced_version: c.synced_version,
        tax_id: &c.tax_id,
        tenant: &c.tenant,
        updated_at: time(c.updated_at_ms),
    })
}

#[derive(Debug, Serialize)]
struct ConnectionAnswer<'a> {
    access_expires_at: Value,
    connected_at: Value,
    disconnected_at: Value,
    disconnected_by: &'a Option<String>,
    last_error: &'a Option<String>,
    last_error_at: Value,
    last_refresh_at: Value,
    revoked_evidence: Option<Value>,
    revoked_since: Value,
    scopes: &'a Option<String>,
    state: &'a str,
    token_fingerprint: &'a Option<String>,
    updated_at: String,
}

pub fn connection_json(c: &ConnectionStatus) -> Value {
    to_value(ConnectionAnswer {
        access_expires_at: otime(c.access_expires_at_ms),
        connected_at: otime(c.connected_at_ms),
        disconnected_at: otime(c.disconnected_at_ms),
        disconnected_by: &c.disconnected_by,
        last_error: &c.last_error,
        last_error_at: otime(c.last_error_at_ms),
        last_refresh_at: otime(c.last_refresh_at_ms),
        revoked_evidence: c.revoked_evidence.as_deref().map(parse),
        revoked_since: otime(c.revoked_since_ms),
        scopes: &c.scopes,
        state: &c.state,
        token_fingerprint: &c.token_fingerprint,
        updated_at: time(c.updated_at_ms),
    })
}

#[derive(Debug, Serialize)]
struct NeverConnected {
    state: &'static str,
}

#[derive(Debug, Serialize)]
struct TenantAnswer {
    connection: Value,
    tenant: String,
}

pub fn tenant_json(tenant: &str, status: &Option<ConnectionStatus>) -> Value {
    to_value(TenantAnswer {
        connection: match status {
            Some(c) => connection_json(c),
            None => to_value(NeverConnected {
                state: projections::connections::NEVER_CONNECTED,
            }),
        },
        tenant: tenant.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed answers keep the keys sorted, as the `json!` maps they replaced did: the bytes
    /// support tools and stored idempotent answers have seen stay the same.
    #[test]
    fn answers_serialize_with_sorted_keys() {
        let entry = Entry {
            tenant: "t".into(),
            subject: "invoice".into(),
            subject_id: "i1".into(),
            position: 7,
            recorded_at_ms: 0,
            event_type: "SyncFailed".into(),
            actor: Some("worker".into()),
            correlation_id: None,
            summary: "s".into(),
            calls: "[]".into(),
            connection_state: "connected".into(),
            cause_kind: Some("order_refused".into()),
            cause_message: Some("code 22".into()),
            detail: "{}".into(),
        };
        let text = serde_json::to_string(&entry_json(&entry)).unwrap();
        let value: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
        let keys: Vec<&String> = value.keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(
            text.starts_with(
                r#"{"actor":"worker","at":"1970-01-01T00:00:00.000Z","calls":[],"cause":{"advice":"#
            ),
            "{text}"
        );
        assert!(
            !text.contains(r#""at":null"#),
            "a timeline cause carries no time of its own"
        );
        assert_eq!(value["cause"]["kind"], "order_refused");
    }
}
