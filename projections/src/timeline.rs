//! Invoice timeline: every event about an invoice, its customer's record and contato sync,
//! and the tenant's Bling connection, one entry per event, each with the Bling calls it
//! records (method, path, status, latency, Bling's error type and message) and the state of
//! the tenant's connection at that moment.
//!
//! Entries are stored once per event under their subject (`invoice`, `customer` or
//! `connection`); an invoice's history is its own entries merged with its customer's and
//! the connection's over the invoice's lifetime (see the query side). The connection state is
//! kept per tenant inside the projection (`TenantConnection`), never read from another view,
//! so a rebuild stamps exactly what the live run stamped.

use aggregates::connection::ConnectionEvent;
use aggregates::customer::CustomerEvent;
use aggregates::invoice::{InvoiceContent, InvoiceEvent};
use aggregates::sync::{BlingCall, FailureCause};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connections::{next_state, NEVER_CONNECTED};
use crate::{cause_message, Domain, LogEvent};

pub const NAME: &str = "timeline";

/// The projection's own record of a tenant's connection state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantConnection {
    pub tenant: String,
    pub state: String,
}

impl TenantConnection {
    pub fn new(tenant: &str) -> Self {
        Self {
            tenant: tenant.to_string(),
            state: NEVER_CONNECTED.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub tenant: String,
    /// `invoice`, `customer` or `connection`.
    pub subject: String,
    /// Invoice id, customer id, or the tenant for the connection.
    pub subject_id: String,
    pub position: i64,
    pub recorded_at_ms: i64,
    pub event_type: String,
    pub actor: Option<String>,
    pub correlation_id: Option<String>,
    /// One readable line.
    pub summary: String,
    /// JSON array of the Bling calls, as recorded.
    pub calls: String,
    /// The tenant's connection state when the event was recorded (after it, for a
    /// connection event).
    pub connection_state: String,
    pub cause_kind: Option<String>,
    pub cause_message: Option<String>,
    /// JSON object: the event's fields, without its calls and with the invoice content and
    /// the customer profile reduced to what support reads.
    pub detail: String,
}

/// Money in centavos as Brazilians write it: `R$ 1.234,56`.
pub fn brl(centavos: i64) -> String {
    let reais = (centavos / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in reais.chars().enumerate() {
        if i > 0 && (reais.len() - i) % 3 == 0 {
            grouped.push('.');
        }
        grouped.push(c);
    }
    format!("R$ {grouped},{:02}", centavos % 100)
}

/// An entry's detail as JSON text, written directly (`detail!("a": x, "b": y)`): building a
/// `serde_json::Value` per event and printing it cost a rebuild a tenth of its time. Keys go
/// in byte order, the order the `Value` map printed them in, so older entries read the same.
macro_rules! detail {
    ($($key:literal : $value:expr),* $(,)?) => {{
        let mut out = Vec::with_capacity(96);
        out.push(b'{');
        $(
            if out.len() > 1 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice($key.as_bytes());
            out.extend_from_slice(b"\":");
            // Plain data with string keys: serializing it into memory cannot fail.
            let _ = serde_json::to_writer(&mut out, &$value);
        )*
        out.push(b'}');
        String::from_utf8(out).unwrap_or_default()
    }};
}

/// What support reads of an invoice's content (fields in byte order, as above).
#[derive(Serialize)]
struct ContentDetail<'a> {
    installments: usize,
    issue_date: &'a chrono::NaiveDate,
    items: usize,
    number: &'a str,
    total: &'a aggregates::money::Centavos,
}

fn content_detail(content: &InvoiceContent) -> ContentDetail<'_> {
    ContentDetail {
        installments: content.installments.len(),
        issue_date: &content.issue_date,
        items: content.items.len(),
        number: &content.number,
        total: &content.total,
    }
}

fn call_summary(calls: &[BlingCall]) -> String {
    match calls.last() {
        None => String::new(),
        Some(c) => {
            let status = c
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "no answer".into());
            format!(" [{} {} → {}]", c.method, c.path, status)
        }
    }
}

fn failure_text(cause: &FailureCause) -> (Option<String>, Option<String>) {
    (Some(cause.code().to_string()), Some(cause_message(cause)))
}

/// Applies one event: updates the tenant's connection state (a connection event) and returns
/// the entry to store, if the event belongs in timelines.
pub fn apply(connection: &mut TenantConnection, log: &LogEvent, domain: &Domain) -> Option<Entry> {
    let no_calls: &[BlingCall] = &[];
    let (subject, subject_id, summary, calls, cause, detail): (
        &str,
        String,
        String,
        &[BlingCall],
        _,
        String,
    ) = match domain {
        Domain::Invoice { invoice_id, event } => {
            let id = invoice_id.clone();
            let none = (None, None);
            match event {
                InvoiceEvent::InvoiceBilled {
                    customer_id,
                    content,
                    ..
                } => (
                    "invoice",
                    id,
                    format!(
                        "billed {} for customer {customer_id}, total {}",
                        content.number,
                        brl(content.total.0 as i64)
                    ),
                    no_calls,
                    none,
                    detail!("content": content_detail(content), "customer_id": customer_id),
                ),
                InvoiceEvent::InvoiceUpdated {
                    changed_fields,
                    content,
                } => (
                    "invoice",
                    id,
                    format!("updated by the shop: {}", changed_fields.join(", ")),
                    no_calls,
                    none,
                    detail!("changed_fields": changed_fields, "content": content_detail(content)),
                ),
                InvoiceEvent::InvoiceCancelled { reason } => (
                    "invoice",
                    id,
                    match reason {
                        Some(r) => format!("cancelled by the shop: {r}"),
                        None => "cancelled by the shop".to_string(),
                    },
                    no_calls,
                    none,
                    detail!("reason": reason),
                ),
                InvoiceEvent::SalesOrderCreated {
                    bling_order_id,
                    bling_number,
                    created,
                    content_version,
                    calls,
                } => (
                    "invoice",
                    id,
                    format!(
                        "{} Bling order {bling_order_id}{}{}",
                        if *created {
                            "created"
                        } else {
                            "adopted existing"
                        },
                        bling_number
                            .map(|n| format!(" (nº {n})"))
                            .unwrap_or_default(),
                        call_summary(calls)
                    ),
                    calls.as_slice(),
                    none,
                    detail!("bling_number": bling_number, "bling_order_id": bling_order_id,
                            "content_version": content_version, "created": created),
                ),
                InvoiceEvent::SalesOrderUpdated {
                    content_version,
                    calls,
                } => (
                    "invoice",
                    id,
                    format!(
                        "Bling order updated to content version {content_version}{}",
                        call_summary(calls)
                    ),
                    calls.as_slice(),
                    none,
                    detail!("content_version": content_version),
                ),
                InvoiceEvent::SituacaoChanged {
                    situacao_id,
                    situacao_name,
                    calls,
                } => (
                    "invoice",
                    id,
                    format!(
                        "situação set to {situacao_name} ({situacao_id}){}",
                        call_summary(calls)
                    ),
                    calls.as_slice(),
                    none,
                    detail!("situacao_id": situacao_id, "situacao_name": situacao_name),
                ),
                InvoiceEvent::NfeGenerated { nfe_id, calls } => (
                    "invoice",
                    id,
                    format!("NF-e {nfe_id} generated{}", call_summary(calls)),
                    calls.as_slice(),
                    none,
                    detail!("nfe_id": nfe_id),
                ),
                InvoiceEvent::SyncFailed {
                    cause,
                    attempt,
                    retry_at,
                    calls,
                } => (
                    "invoice",
                    id,
                    format!(
                        "sync failed (attempt {attempt}, {}): {}; {}",
                        cause.code(),
                        cause_message(cause),
                        match retry_at {
                            Some(t) => format!(
                                "retried at {}",
                                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                            ),
                            None => "waits for a person".to_string(),
                        }
                    ),
                    calls.as_slice(),
                    failure_text(cause),
                    detail!("attempt": attempt, "cause": cause, "retry_at": retry_at),
                ),
                InvoiceEvent::SyncParked { reason } => (
                    "invoice",
                    id,
                    format!("parked until Bling is reconnected: {reason}"),
                    no_calls,
                    (
                        Some("authorization_revoked".to_string()),
                        Some(reason.clone()),
                    ),
                    detail!("reason": reason),
                ),
                InvoiceEvent::SyncResumed { reason } => (
                    "invoice",
                    id,
                    format!("resumed: {reason}"),
                    no_calls,
                    none,
                    detail!("reason": reason),
                ),
                InvoiceEvent::NfeSent { nfe_id, calls } => (
                    "invoice",
                    id,
                    format!("NF-e {nfe_id} sent to SEFAZ{}", call_summary(calls)),
                    calls.as_slice(),
                    none,
                    detail!("nfe_id": nfe_id),
                ),
                InvoiceEvent::NfeAuthorized {
                    nfe_id,
                    document,
                    source,
                    calls,
                } => (
                    "invoice",
                    id,
                    format!(
                        "NF-e {nfe_id} authorized: nº {} série {}, chave {} (learned by {}){}",
                        document.numero,
                        document.serie,
                        document.chave_acesso,
                        source_name(source),
                        call_summary(calls)
                    ),
                    calls.as_slice(),
                    none,
                    detail!("nfe_id": nfe_id, "document": document, "source": source),
                ),
                InvoiceEvent::NfeDenied {
                    nfe_id,
                    reason,
                    source,
                    calls,
                } => (
                    "invoice",
                    id,
                    format!(
                        "NF-e {nfe_id} denied by SEFAZ: {reason} (learned by {}){}",
                        source_name(source),
                        call_summary(calls)
                    ),
                    calls.as_slice(),
                    none,
                    detail!("nfe_id": nfe_id, "reason": reason, "source": source),
                ),
                InvoiceEvent::NfeCancelled {
                    nfe_id,
                    source,
                    calls,
                } => (
                    "invoice",
                    id,
                    format!(
                        "NF-e {nfe_id} cancelled in Bling (learned by {}){}",
                        source_name(source),
                        call_summary(calls)
                    ),
                    calls.as_slice(),
                    none,
                    detail!("nfe_id": nfe_id, "source": source),
                ),
                InvoiceEvent::NfeRetryRequested { nfe_id, by } => (
                    "invoice",
                    id,
                    format!("NF-e {nfe_id} to be sent again, asked by {by}"),
                    no_calls,
                    none,
                    detail!("nfe_id": nfe_id, "by": by),
                ),
                InvoiceEvent::OrderDiverged { divergence, calls } => (
                    "invoice",
                    id,
                    format!(
                        "Bling order {} differs from ours: {} (changed by {}, seen by {}){}",
                        divergence.bling_order_id,
                        divergence_text(divergence),
                        divergence.changed_by,
                        source_name(&divergence.source),
                        call_summary(calls)
                    ),
                    calls.as_slice(),
                    (
                        Some("order_diverged".to_string()),
                        Some(divergence_text(divergence)),
                    ),
                    detail!("divergence": divergence),
                ),
                InvoiceEvent::DivergenceResolved {
                    choice,
                    by,
                    divergence,
                } => (
                    "invoice",
                    id,
                    format!(
                        "divergence on Bling order {} resolved by {by}: {}",
                        divergence.bling_order_id,
                        match choice {
                            aggregates::invoice::DivergenceChoice::PushOurs => "push ours again",
                            aggregates::invoice::DivergenceChoice::AcceptBling => "accept Bling's",
                        }
                    ),
                    no_calls,
                    none,
                    detail!("choice": choice, "by": by, "divergence": divergence),
                ),
            }
        }
        Domain::Customer { customer_id, event } => {
            let id = customer_id.clone();
            match event {
                CustomerEvent::CustomerRegistered { profile, .. } => (
                    "customer",
                    id,
                    format!("customer {customer_id} registered ({})", profile.name()),
                    no_calls,
                    (None, None),
                    detail!("name": profile.name()),
                ),
                CustomerEvent::CustomerUpdated {
                    changed_fields,
                    profile,
                } => (
                    "customer",
                    id,
                    format!("customer {customer_id} record updated: {}", changed_fields.join(", ")),
                    no_calls,
                    (None, None),
                    detail!("changed_fields": changed_fields, "name": profile.name()),
                ),
                CustomerEvent::CustomerErased { reason } => (
                    "customer",
                    id,
                    format!("customer {customer_id} erased (LGPD): personal data destroyed"),
                    no_calls,
                    (None, None),
                    detail!("reason": reason),
                ),
                CustomerEvent::ContactLinked {
                    bling_contact_id,
                    created,
                    profile_version,
                    calls,
                } => (
                    "customer",
                    id,
                    format!(
                        "Bling contato {bling_contact_id} {} for customer {customer_id} (profile v{profile_version}){}",
                        if *created { "created" } else { "found and linked" },
                        call_summary(calls)
                    ),
                    calls.as_slice(),
                    (None, None),
                    detail!("bling_contact_id": bling_contact_id, "created": created, "profile_version": profile_version),
                ),
                CustomerEvent::ContactUpdated {
                    bling_contact_id,
                    profile_version,
                    calls,
                } => (
                    "customer",
                    id,
                    format!(
                        "Bling contato {bling_contact_id} updated for customer {customer_id} (profile v{profile_version}){}",
                        call_summary(calls)
                    ),
                    calls.as_slice(),
                    (None, None),
                    detail!("bling_contact_id": bling_contact_id, "profile_version": profile_version),
                ),
                CustomerEvent::ContactSyncFailed {
                    cause,
                    profile_version,
                    calls,
                } => (
                    "customer",
                    id,
                    format!(
                        "contato sync failed for customer {customer_id} ({}): {}",
                        cause.code(),
                        cause_message(cause)
                    ),
                    calls.as_slice(),
                    failure_text(cause),
                    detail!("cause": cause, "profile_version": profile_version),
                ),
            }
        }
        Domain::Connection { event } => {
            connection.state = next_state(&connection.state, event).to_string();
            let at = |t: &chrono::DateTime<chrono::Utc>| {
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            };
            let (summary, cause) = match event {
                ConnectionEvent::AuthorizationRequested { requested_by, .. } => (
                    format!("Bling authorization requested by {requested_by}"),
                    (None, None),
                ),
                ConnectionEvent::Connected {
                    access_expires_at, ..
                } => (
                    format!(
                        "connected to Bling (access until {})",
                        at(access_expires_at)
                    ),
                    (None, None),
                ),
                ConnectionEvent::Reconnected {
                    access_expires_at, ..
                } => (
                    format!(
                        "reconnected to Bling (access until {})",
                        at(access_expires_at)
                    ),
                    (None, None),
                ),
                ConnectionEvent::TokenRefreshed {
                    access_expires_at, ..
                } => (
                    format!("access token renewed (until {})", at(access_expires_at)),
                    (None, None),
                ),
                ConnectionEvent::RefreshDeferred { reason, .. } => {
                    (format!("token renewal deferred: {reason}"), (None, None))
                }
                ConnectionEvent::AuthorizationRevoked { evidence } => (
                    format!(
                        "access revoked by the shop: {} answered {} {} ({})",
                        evidence.call, evidence.status, evidence.error_type, evidence.message
                    ),
                    (
                        Some("authorization_revoked".to_string()),
                        Some(evidence.message.clone()),
                    ),
                ),
                ConnectionEvent::RotationLost { evidence, reason } => (
                    format!(
                        "needs reconnect, not revoked by the shop: {reason}; then {} answered {} {} ({})",
                        evidence.call, evidence.status, evidence.error_type, evidence.message
                    ),
                    (Some("rotation_lost".to_string()), Some(reason.clone())),
                ),
                ConnectionEvent::AuthorizationFailed { evidence } => (
                    format!(
                        "Bling authorization failed: {} answered {} {} ({})",
                        evidence.call, evidence.status, evidence.error_type, evidence.message
                    ),
                    (
                        Some("authorization_failed".to_string()),
                        Some(evidence.message.clone()),
                    ),
                ),
                ConnectionEvent::Disconnected { by, reason } => (
                    format!(
                        "disconnected by {by}{}",
                        reason
                            .as_ref()
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    ),
                    (None, None),
                ),
                ConnectionEvent::DailyQuotaExhausted { until, evidence } => (
                    format!(
                        "the Bling account's daily quota is spent: no calls until {} ({evidence})",
                        at(until)
                    ),
                    (Some("rate_limited".to_string()), Some(evidence.clone())),
                ),
                ConnectionEvent::CompanyIdentified { company_id, name } => (
                    format!("Bling company identified: {name} (companyId {company_id})"),
                    (None, None),
                ),
                ConnectionEvent::NfeModeChosen { mode, by } => (
                    format!("NF-e mode set to {} by {by}", mode.as_str()),
                    (None, None),
                ),
            };
            // Connection events are few: parsing the payload again costs nothing that shows.
            let detail = serde_json::from_str::<Value>(&log.payload)
                .ok()
                .and_then(|mut payload| payload.get_mut(&log.event_type).map(Value::take))
                .unwrap_or(Value::Null)
                .to_string();
            (
                "connection",
                log.tenant.clone(),
                summary,
                no_calls,
                cause,
                detail,
            )
        }
        Domain::Other => return None,
    };
    Some(Entry {
        tenant: log.tenant.clone(),
        subject: subject.to_string(),
        subject_id,
        position: log.position,
        recorded_at_ms: log.recorded_at_ms(),
        event_type: log.event_type.clone(),
        actor: log.actor().map(str::to_string),
        correlation_id: log.correlation_id().map(str::to_string),
        summary,
        calls: serde_json::to_string(calls).unwrap_or_else(|_| "[]".into()),
        connection_state: connection.state.clone(),
        cause_kind: cause.0,
        cause_message: cause.1,
        detail,
    })
}

/// Connection events that change the state: the ones an invoice's history shows.
pub const STATE_CHANGES: [&str; 5] = [
    "Connected",
    "Reconnected",
    "AuthorizationRevoked",
    "RotationLost",
    "Disconnected",
];

fn source_name(source: &aggregates::invoice::Source) -> &'static str {
    match source {
        aggregates::invoice::Source::Webhook => "webhook",
        aggregates::invoice::Source::Poll => "polling",
        aggregates::invoice::Source::Send => "sending",
    }
}

/// "situação 12 where we set 9", "deleted in Bling", "total 150.00 where we sent 170.00".
pub fn divergence_text(d: &aggregates::invoice::Divergence) -> String {
    let mut parts = Vec::new();
    match (d.expected.situacao_id, d.found.situacao_id) {
        (_, None) => parts.push("the order was deleted in Bling".to_string()),
        (Some(e), Some(f)) if e != f => parts.push(format!("situação {f} where we set {e}")),
        (None, Some(f)) => parts.push(format!("situação {f}")),
        _ => {}
    }
    if let (Some(e), Some(f)) = (d.expected.total, d.found.total) {
        if e != f {
            parts.push(format!(
                "total {}.{:02} where we sent {}.{:02}",
                f / 100,
                f % 100,
                e / 100,
                e % 100
            ));
        }
    }
    if parts.is_empty() {
        "content changed".to_string()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode;
    use crate::testing::*;
    use serde_json::json;

    #[test]
    fn details_are_the_json_the_value_tree_printed() {
        let content: InvoiceContent = serde_json::from_value(content("NF-7", 17050)).unwrap();
        let written = detail!("content": content_detail(&content), "customer_id": "c1",
                              "retry_at": None::<String>);
        let printed = json!({"customer_id": "c1", "retry_at": null, "content": {"number": "NF-7",
            "issue_date": "2026-11-25", "total": 17050, "items": 1, "installments": 1}})
        .to_string();
        assert_eq!(written, printed);
    }

    #[test]
    fn entries_carry_calls_and_the_connection_state_of_their_moment() {
        let mut s = Script::new("shop-a");
        let events = [
            s.connection(connected()),
            s.invoice("i1", billed("shop-a", "i1", "c1")),
            s.connection(revoked()),
            s.invoice("i1", json!({"SyncParked": {"reason": "access revoked"}})),
            s.connection(reconnected()),
            s.invoice("i1", json!({"SyncResumed": {"reason": "reconnected to Bling"}})),
            s.invoice("i1", order_created(1)),
            s.customer("c1", json!({"ContactSyncFailed": {"cause": {"kind": "bling_unavailable", "message": "503"},
                "profile_version": 1, "calls": [call(503, Some("SERVICE_UNAVAILABLE"))]}})),
            s.event("Unknown", Some("x"), json!({"Whatever": {}})),
        ];
        let mut conn = TenantConnection::new("shop-a");
        let entries: Vec<Option<Entry>> = events
            .iter()
            .map(|e| apply(&mut conn, e, &decode(e).unwrap()))
            .collect();
        let stamp: Vec<&str> = entries
            .iter()
            .flatten()
            .map(|e| e.connection_state.as_str())
            .collect();
        assert_eq!(
            stamp,
            [
                "connected",
                "connected",
                "revoked",
                "revoked",
                "connected",
                "connected",
                "connected",
                "connected"
            ]
        );
        assert!(entries[8].is_none());
        let billed = entries[1].clone().unwrap();
        assert_eq!(
            (billed.subject.as_str(), billed.subject_id.as_str()),
            ("invoice", "i1")
        );
        assert_eq!(
            billed.summary,
            "billed NF-1 for customer c1, total R$ 170,00"
        );
        let parked = entries[3].clone().unwrap();
        assert_eq!(parked.cause_kind.as_deref(), Some("authorization_revoked"));
        let created = entries[6].clone().unwrap();
        let calls: Value = serde_json::from_str(&created.calls).unwrap();
        assert_eq!(calls[0]["method"], "POST");
        assert_eq!(calls[0]["status"], 201);
        assert_eq!(calls[0]["latency_ms"], 12);
        assert!(created.summary.contains("created Bling order 900 (nº 17)"));
        let contact = entries[7].clone().unwrap();
        assert_eq!(
            (contact.subject.as_str(), contact.subject_id.as_str()),
            ("customer", "c1")
        );
        assert_eq!(contact.cause_kind.as_deref(), Some("bling_unavailable"));
        let calls: Value = serde_json::from_str(&contact.calls).unwrap();
        assert_eq!(calls[0]["error_type"], "SERVICE_UNAVAILABLE");
        assert_eq!(calls[0]["error_message"], "refused");
        let revoked = entries[2].clone().unwrap();
        assert_eq!(revoked.subject, "connection");
        assert!(revoked.summary.contains("invalid_grant"));
        assert_eq!(entries[0].clone().unwrap().actor.as_deref(), Some("worker"));
    }

    #[test]
    fn money_is_written_the_brazilian_way() {
        assert_eq!(brl(17000), "R$ 170,00");
        assert_eq!(brl(123456789), "R$ 1.234.567,89");
        assert_eq!(brl(5), "R$ 0,05");
    }
}
