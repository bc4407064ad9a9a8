//! What support reads: the queries behind the HTTP API, the CLI and the benchmarks, and the
//! JSON each row is shown as.

use chrono::{DateTime, SecondsFormat, Utc};
use projections::connections::ConnectionStatus;
use projections::customers::CustomerSync;
use projections::failures::Failure;
use projections::invoices::{InvoiceSync, SyncState};
use projections::timeline::{Entry, STATE_CHANGES};
use serde::Serialize;
use serde_json::{json, Value};

use super::rows::{pg_vals, sqlite_vals, Stored};
use crate::store::{Db, StoreError};

/// A bound parameter.
#[derive(Debug, Clone)]
pub enum Arg {
    Int(i64),
    Text(String),
}

/// Runs `sql` (selecting `R`'s columns in order, `$N` placeholders) and decodes the rows.
pub async fn fetch<R: Stored>(db: &Db, sql: &str, args: &[Arg]) -> Result<Vec<R>, StoreError> {
    let cols = R::TABLE.cols;
    match db {
        Db::Postgres(pool) => {
            let mut q = sqlx::query(sql);
            for a in args {
                q = match a {
                    Arg::Int(i) => q.bind(*i),
                    Arg::Text(t) => q.bind(t.clone()),
                };
            }
            q.fetch_all(pool)
                .await?
                .iter()
                .map(|r| R::from_vals(&mut pg_vals(r, cols)?))
                .collect()
        }
        Db::Sqlite(pool) => {
            let sql = crate::store::sqlite_sql(sql);
            let mut q = sqlx::query(&sql);
            for a in args {
                q = match a {
                    Arg::Int(i) => q.bind(*i),
                    Arg::Text(t) => q.bind(t.clone()),
                };
            }
            q.fetch_all(pool)
                .await?
                .iter()
                .map(|r| R::from_vals(&mut sqlite_vals(r, cols)?))
                .collect()
        }
    }
}

fn cols<R: Stored>() -> String {
    R::TABLE.select_list()
}

pub async fn invoice(
    db: &Db,
    tenant: &str,
    invoice_id: &str,
) -> Result<Option<InvoiceSync>, StoreError> {
    let sql = format!(
        "SELECT {} FROM proj_invoices WHERE tenant = $1 AND invoice_id = $2",
        cols::<InvoiceSync>()
    );
    Ok(fetch(
        db,
        &sql,
        &[Arg::Text(tenant.into()), Arg::Text(invoice_id.into())],
    )
    .await?
    .pop())
}

pub async fn customer(
    db: &Db,
    tenant: &str,
    customer_id: &str,
) -> Result<Option<CustomerSync>, StoreError> {
    let sql = format!(
        "SELECT {} FROM proj_customers WHERE tenant = $1 AND customer_id = $2",
        cols::<CustomerSync>()
    );
    Ok(fetch(
        db,
        &sql,
        &[Arg::Text(tenant.into()), Arg::Text(customer_id.into())],
    )
    .await?
    .pop())
}

pub async fn connection(db: &Db, tenant: &str) -> Result<Option<ConnectionStatus>, StoreError> {
    let sql = format!(
        "SELECT {} FROM proj_connections WHERE tenant = $1",
        cols::<ConnectionStatus>()
    );
    Ok(fetch(db, &sql, &[Arg::Text(tenant.into())]).await?.pop())
}

/// An invoice and its timeline.
#[derive(Debug, Clone)]
pub struct History {
    pub invoice: InvoiceSync,
    pub entries: Vec<Entry>,
    /// More entries exist than the limit allowed.
    pub truncated: bool,
}

/// The most entries one history returns.
pub const HISTORY_LIMIT: i64 = 2_000;

/// The invoice's timeline: its own entries, its customer's from its billing on, and the
/// connection's state changes over the same window. The window closes at the invoice's last
/// event once it is synced or cancelled (later customer events do not concern it).
pub async fn history(
    db: &Db,
    tenant: &str,
    invoice_id: &str,
) -> Result<Option<History>, StoreError> {
    let Some(invoice) = invoice(db, tenant, invoice_id).await? else {
        return Ok(None);
    };
    let until = match invoice.state {
        SyncState::Synced | SyncState::Cancelled => invoice.last_position,
        _ => i64::MAX,
    };
    let c = cols::<Entry>();
    let changes = STATE_CHANGES
        .iter()
        .map(|e| format!("'{e}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {c} FROM (
             SELECT {c} FROM proj_timeline
             WHERE tenant = $1 AND subject = 'invoice' AND subject_id = $2
             UNION ALL
             SELECT {c} FROM proj_timeline
             WHERE tenant = $1 AND subject = 'customer' AND subject_id = $3
               AND position >= $4 AND position <= $5
             UNION ALL
             SELECT {c} FROM proj_timeline
             WHERE tenant = $1 AND subject = 'connection' AND subject_id = $1
               AND position >= $4 AND position <= $5 AND event_type IN ({changes})
         ) entries ORDER BY position LIMIT $6"
    );
    let mut entries = fetch::<Entry>(
        db,
        &sql,
        &[
            Arg::Text(tenant.into()),
            Arg::Text(invoice_id.into()),
            Arg::Text(invoice.customer_id.clone()),
            Arg::Int(invoice.billed_position),
            Arg::Int(until),
            Arg::Int(HISTORY_LIMIT + 1),
        ],
    )
    .await?;
    let truncated = entries.len() as i64 > HISTORY_LIMIT;
    entries.truncate(HISTORY_LIMIT as usize);
    Ok(Some(History {
        invoice,
        entries,
        truncated,
    }))
}

/// A page of a list, newest first; `next_cursor` fetches the following page.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

pub const MAX_LIMIT: i64 = 500;
pub const DEFAULT_LIMIT: i64 = 50;

#[derive(Debug, Clone, Default)]
pub struct FailureFilter {
    pub cause: Option<String>,
    /// Inclusive, epoch ms.
    pub since_ms: Option<i64>,
    /// Exclusive, epoch ms.
    pub until_ms: Option<i64>,
    pub limit: i64,
    /// Only failures before this position (the cursor).
    pub before: Option<i64>,
}

pub async fn failures(
    db: &Db,
    tenant: &str,
    filter: &FailureFilter,
) -> Result<Page<Failure>, StoreError> {
    let mut sql = format!(
        "SELECT {} FROM proj_failures WHERE tenant = $1",
        cols::<Failure>()
    );
    let mut args = vec![Arg::Text(tenant.into())];
    let mut add = |cond: &str, arg: Arg, sql: &mut String| {
        args.push(arg);
        sql.push_str(&format!(" AND {cond} ${}", args.len()));
    };
    if let Some(c) = &filter.cause {
        add("cause_kind =", Arg::Text(c.clone()), &mut sql);
    }
    if let Some(s) = filter.since_ms {
        add("recorded_at_ms >=", Arg::Int(s), &mut sql);
    }
    if let Some(u) = filter.until_ms {
        add("recorded_at_ms <", Arg::Int(u), &mut sql);
    }
    if let Some(b) = filter.before {
        add("position <", Arg::Int(b), &mut sql);
    }
    let limit = filter.limit.clamp(1, MAX_LIMIT);
    args.push(Arg::Int(limit + 1));
    sql.push_str(&format!(" ORDER BY position DESC LIMIT ${}", args.len()));
    let mut items = fetch::<Failure>(db, &sql, &args).await?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|f| f.position.to_string())
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

#[derive(Debug, Clone, Default)]
pub struct InvoiceFilter {
    pub state: Option<SyncState>,
    pub cause: Option<String>,
    /// An invoice number, or a customer's CPF/CNPJ (punctuation ignored).
    pub q: Option<String>,
    pub limit: i64,
    /// Only invoices billed before this position (the cursor).
    pub before: Option<i64>,
}

/// Invoices newest first (by billing), filtered by state and last cause, searched by number
/// or the customer's tax id.
pub async fn list_invoices(
    db: &Db,
    tenant: &str,
    filter: &InvoiceFilter,
) -> Result<Page<InvoiceSync>, StoreError> {
    let mut sql = format!(
        "SELECT {} FROM proj_invoices WHERE tenant = $1",
        cols::<InvoiceSync>()
    );
    let mut args = vec![Arg::Text(tenant.into())];
    if let Some(s) = filter.state {
        args.push(Arg::Text(s.as_str().into()));
        sql.push_str(&format!(" AND state = ${}", args.len()));
    }
    if let Some(c) = &filter.cause {
        args.push(Arg::Text(c.clone()));
        sql.push_str(&format!(" AND last_cause_kind = ${}", args.len()));
    }
    if let Some(q) = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        args.push(Arg::Text(q.to_string()));
        let n = args.len();
        let digits: String = q.chars().filter(char::is_ascii_digit).collect();
        if digits.len() == 11 || digits.len() == 14 {
            args.push(Arg::Text(digits));
            let d = args.len();
            sql.push_str(&format!(
                " AND (number = ${n} OR customer_id IN
                     (SELECT customer_id FROM proj_customers WHERE tenant = $1 AND tax_id = ${d}))"
            ));
        } else {
            sql.push_str(&format!(" AND number = ${n}"));
        }
    }
    if let Some(b) = filter.before {
        args.push(Arg::Int(b));
        sql.push_str(&format!(" AND billed_position < ${}", args.len()));
    }
    let limit = filter.limit.clamp(1, MAX_LIMIT);
    args.push(Arg::Int(limit + 1));
    sql.push_str(&format!(
        " ORDER BY billed_position DESC LIMIT ${}",
        args.len()
    ));
    let mut items = fetch::<InvoiceSync>(db, &sql, &args).await?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|i| i.billed_position.to_string())
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

/// Every tenant with customers or a connection (or just `only`), with its connection status.
pub async fn tenants(
    db: &Db,
    only: Option<&str>,
) -> Result<Vec<(String, Option<ConnectionStatus>)>, StoreError> {
    let names: Vec<(String,)> = match only {
        Some(t) => crate::on_db!(
            db,
            as (String,),
            "SELECT tenant FROM proj_connections WHERE tenant = $1
             UNION SELECT tenant FROM (SELECT tenant FROM proj_customers WHERE tenant = $1 LIMIT 1) c",
            [t],
            fetch_all
        )?,
        None => crate::on_db!(
            db,
            as (String,),
            "SELECT tenant FROM proj_connections UNION SELECT DISTINCT tenant FROM proj_customers ORDER BY 1",
            [],
            fetch_all
        )?,
    };
    let mut out = Vec::with_capacity(names.len());
    for (tenant,) in names {
        let status = connection(db, &tenant).await?;
        out.push((tenant, status));
    }
    Ok(out)
}

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

#[derive(Debug, Clone, Serialize)]
pub struct Dump {
    pub table: String,
    pub rows: Vec<Vec<Value>>,
}

/// Every row of every view table, ordered by key: for comparing a rebuild with the live run.
pub async fn dump_all(db: &Db) -> Result<Vec<Dump>, StoreError> {
    use super::rows::V;
    async fn one<R: Stored>(db: &Db, order: &str) -> Result<Dump, StoreError> {
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {order}",
            cols::<R>(),
            R::TABLE.name
        );
        let rows = fetch::<R>(db, &sql, &[]).await?;
        Ok(Dump {
            table: R::TABLE.name.to_string(),
            rows: rows
                .iter()
                .map(|r| {
                    r.to_vals()
                        .into_iter()
                        .map(|v| match v {
                            V::T(t) => json!(t),
                            V::I(i) => json!(i),
                        })
                        .collect()
                })
                .collect(),
        })
    }
    Ok(vec![
        one::<InvoiceSync>(db, "tenant, invoice_id").await?,
        one::<Entry>(db, "tenant, subject, subject_id, position").await?,
        one::<projections::timeline::TenantConnection>(db, "tenant").await?,
        one::<Failure>(db, "position").await?,
        one::<projections::failures::InvoiceRef>(db, "tenant, invoice_id").await?,
        one::<ConnectionStatus>(db, "tenant").await?,
        one::<CustomerSync>(db, "tenant, customer_id").await?,
    ])
}
