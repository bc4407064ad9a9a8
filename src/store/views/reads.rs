//! What support reads from the views: the queries behind the HTTP API, the CLI and the
//! benchmarks (their JSON is `projections::queries`'s).

use projections::connections::ConnectionStatus;
use projections::customers::CustomerSync;
use projections::failures::Failure;
use projections::invoices::{InvoiceSync, SyncState};
use projections::timeline::{Entry, STATE_CHANGES};
use serde::Serialize;
use serde_json::{json, Value};

use super::{pg_vals, sqlite_vals, Stored, V};
use crate::sql;
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
                    Arg::Text(t) => q.bind(t.as_str()),
                };
            }
            q.fetch_all(pool)
                .await?
                .iter()
                .map(|r| R::from_vals(&mut pg_vals(r, cols)?))
                .collect()
        }
        Db::Sqlite(pool) => {
            let mut q = sqlx::query(sql);
            for a in args {
                q = match a {
                    Arg::Int(i) => q.bind(*i),
                    Arg::Text(t) => q.bind(t.as_str()),
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
        Some(t) => sql!(
            db,
            as (String,),
            "SELECT tenant FROM proj_connections WHERE tenant = $1
             UNION SELECT tenant FROM (SELECT tenant FROM proj_customers WHERE tenant = $1 LIMIT 1) c",
            [t],
            fetch_all
        )?,
        None => sql!(
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

#[derive(Debug, Clone, Serialize)]
pub struct Dump {
    pub table: String,
    pub rows: Vec<Vec<Value>>,
}

/// Every row of every view table, ordered by key: for comparing a rebuild with the live run.
pub async fn dump_all(db: &Db) -> Result<Vec<Dump>, StoreError> {
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
