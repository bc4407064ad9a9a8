//! Webhook deliveries (`webhook_deliveries`), the Bling company of each tenant
//! (`bling_companies`), and refused deliveries (`webhook_refusals`, `webhook_refusal_counts`).
//!
//! Invariants: a signed delivery is written here before it is answered (the answer is 2xx
//! only once [`record`] returned); one row per `eventId`, a repeated delivery only counts;
//! a row leaves `received` only when its processing is recorded, so a crash after the answer
//! loses nothing (the processor finds it again). Refused (unsigned) deliveries are never
//! stored as deliveries: anyone can send them. What support sees of them is bounded whatever
//! the rate: the newest [`REFUSALS_KEPT`] rows, and a count per (source, reason) pair for at
//! most [`REFUSAL_SOURCES_KEPT`] pairs, written in lots ([`record_refusals`]), never one
//! write per refusal.

use super::{now_ms, Db, StoreError};
use crate::sql;

/// A signed delivery to store.
#[derive(Debug, Clone)]
pub struct NewDelivery<'a> {
    pub event_id: &'a str,
    pub company_id: &'a str,
    pub tenant: Option<&'a str>,
    pub event: &'a str,
    pub resource_id: Option<i64>,
    pub body: &'a str,
    /// `received`, or `unknown_company` when no tenant has this company.
    pub state: &'a str,
}

/// A [`NewDelivery`] that owns its text (to hand to another task).
#[derive(Debug, Clone)]
pub struct OwnedDelivery {
    pub event_id: String,
    pub company_id: String,
    pub tenant: Option<String>,
    pub event: String,
    pub resource_id: Option<i64>,
    pub body: String,
    pub state: &'static str,
}

impl OwnedDelivery {
    pub fn borrowed(&self) -> NewDelivery<'_> {
        NewDelivery {
            event_id: &self.event_id,
            company_id: &self.company_id,
            tenant: self.tenant.as_deref(),
            event: &self.event,
            resource_id: self.resource_id,
            body: &self.body,
            state: self.state,
        }
    }
}

/// What [`record`] did: the row's id, and whether the event id was already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub id: i64,
    pub duplicate: bool,
}

/// Stores deliveries in one transaction (one commit for the lot: under a flood this is what
/// keeps the intake's writes from crowding out everything else), each stored or counted as a
/// repeat of a known event id; an event id twice in the lot is stored once and counted twice.
/// All or none: an error stores nothing. PostgreSQL takes the lot in one statement
/// (`INSERT … SELECT FROM UNNEST(arrays)`); SQLite one prepared statement per row (in-process).
pub async fn record_all(db: &Db, all: &[NewDelivery<'_>]) -> Result<Vec<Recorded>, StoreError> {
    let now = now_ms();
    // First occurrence of each event id, and how many times it came in this lot.
    let mut first: std::collections::HashMap<&str, (usize, i64)> = std::collections::HashMap::new();
    let mut unique: Vec<&NewDelivery<'_>> = Vec::new();
    for d in all {
        match first.get_mut(d.event_id) {
            Some((_, n)) => *n += 1,
            None => {
                first.insert(d.event_id, (unique.len(), 1));
                unique.push(d);
            }
        }
    }
    let counts: Vec<i64> = unique.iter().map(|d| first[d.event_id].1).collect();
    // (id, times_received) per unique delivery, in `unique`'s order.
    let mut stored: Vec<(i64, i64)> = vec![(0, 0); unique.len()];
    match db {
        // One statement, committed on its own: one round trip for the lot, where an explicit
        // transaction would take three (under a flood, each is a wake-up on both sides).
        Db::Postgres(pool) => {
            let rows: Vec<(i64, String, i64)> = sqlx::query_as(
                "INSERT INTO webhook_deliveries (event_id, company_id, tenant, event, resource_id, body,
                     state, times_received, due_at_ms, received_at_ms, last_received_ms)
                 SELECT e, c, t, ev, r, b, s, n, $9, $9, $9
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
                             $7::text[], $8::bigint[]) AS x(e, c, t, ev, r, b, s, n)
                 ON CONFLICT (event_id) DO UPDATE SET
                     times_received = webhook_deliveries.times_received + excluded.times_received,
                     last_received_ms = excluded.last_received_ms
                 RETURNING id, event_id, times_received",
            )
            .bind(unique.iter().map(|d| d.event_id).collect::<Vec<_>>())
            .bind(unique.iter().map(|d| d.company_id).collect::<Vec<_>>())
            .bind(unique.iter().map(|d| d.tenant).collect::<Vec<_>>())
            .bind(unique.iter().map(|d| d.event).collect::<Vec<_>>())
            .bind(unique.iter().map(|d| d.resource_id).collect::<Vec<_>>())
            .bind(unique.iter().map(|d| d.body).collect::<Vec<_>>())
            .bind(unique.iter().map(|d| d.state).collect::<Vec<_>>())
            .bind(&counts)
            .bind(now)
            .fetch_all(pool)
            .await?;
            for (id, event_id, times) in rows {
                if let Some((i, _)) = first.get(event_id.as_str()) {
                    stored[*i] = (id, times);
                }
            }
        }
        Db::Sqlite(_) => {
            let mut tx = db.begin().await?;
            for (i, d) in unique.iter().enumerate() {
                stored[i] = sql!(
                    tx,
                    as (i64, i64),
                    "INSERT INTO webhook_deliveries (event_id, company_id, tenant, event, resource_id, body, state,
                         times_received, due_at_ms, received_at_ms, last_received_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $9)
                     ON CONFLICT (event_id) DO UPDATE SET
                         times_received = webhook_deliveries.times_received + excluded.times_received,
                         last_received_ms = excluded.last_received_ms
                     RETURNING id, times_received",
                    [d.event_id, d.company_id, d.tenant, d.event, d.resource_id, d.body, d.state, counts[i], now],
                    fetch_one
                )?;
            }
            tx.commit().await?;
        }
    }
    // Each delivery in the lot: the first of its event id is new if the row was created by
    // this lot (its count equals what this lot added); the others are repeats.
    let mut seen = std::collections::HashSet::new();
    Ok(all
        .iter()
        .map(|d| {
            let (i, n) = first[d.event_id];
            let (id, times) = stored[i];
            let repeat = !seen.insert(d.event_id);
            Recorded {
                id,
                duplicate: repeat || times > n,
            }
        })
        .collect())
}

/// Stores one delivery (see [`record_all`]).
pub async fn record(db: &Db, d: &NewDelivery<'_>) -> Result<Recorded, StoreError> {
    let mut r = record_all(db, std::slice::from_ref(d)).await?;
    r.pop()
        .ok_or_else(|| StoreError::Corrupt("no row recorded".into()))
}

/// A delivery waiting for processing.
#[derive(Debug, Clone)]
pub struct Due {
    pub id: i64,
    pub tenant: Option<String>,
    pub company_id: String,
    pub event: String,
    /// The payload's `data.id`, as stored.
    pub resource_id: Option<i64>,
    pub body: String,
    pub attempts: i64,
}

/// Up to `limit` deliveries to process now, oldest first.
pub async fn due(db: &Db, limit: i64) -> Result<Vec<Due>, StoreError> {
    type Row = (
        i64,
        Option<String>,
        String,
        String,
        Option<i64>,
        String,
        i64,
    );
    let rows: Vec<Row> = sql!(
        db,
        as Row,
        "SELECT id, tenant, company_id, event, resource_id, body, attempts FROM webhook_deliveries
         WHERE state = 'received' AND due_at_ms <= $1 ORDER BY id LIMIT $2",
        [now_ms(), limit],
        fetch_all
    )?;
    Ok(rows
        .into_iter()
        .map(
            |(id, tenant, company_id, event, resource_id, body, attempts)| Due {
                id,
                tenant,
                company_id,
                event,
                resource_id,
                body,
                attempts,
            },
        )
        .collect())
}

/// Records how deliveries were processed (`processed`, `ignored`, `unknown_company`,
/// `failed`), with what was learned or done: `(id, state, tenant, detail)`, one commit.
pub async fn settle_all(
    db: &Db,
    all: &[(i64, &str, Option<&str>, String)],
) -> Result<(), StoreError> {
    if all.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    match db {
        // One statement for the lot, committed on its own (one round trip).
        Db::Postgres(pool) => {
            sqlx::query(
                "UPDATE webhook_deliveries AS w SET state = x.s, tenant = COALESCE(x.t, w.tenant),
                     detail = x.d, processed_at_ms = $5, attempts = w.attempts + 1
                 FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[]) AS x(id, s, t, d)
                 WHERE w.id = x.id",
            )
            .bind(all.iter().map(|a| a.0).collect::<Vec<_>>())
            .bind(all.iter().map(|a| a.1).collect::<Vec<_>>())
            .bind(all.iter().map(|a| a.2).collect::<Vec<_>>())
            .bind(all.iter().map(|a| a.3.as_str()).collect::<Vec<_>>())
            .bind(now)
            .execute(pool)
            .await?;
        }
        Db::Sqlite(_) => {
            let mut tx = db.begin().await?;
            for (id, state, tenant, detail) in all {
                sql!(
                    tx,
                    "UPDATE webhook_deliveries SET state = $2, tenant = COALESCE($3, tenant), detail = $4,
                         processed_at_ms = $5, attempts = attempts + 1
                     WHERE id = $1",
                    [*id, *state, *tenant, detail.as_str(), now]
                )?;
            }
            tx.commit().await?;
        }
    }
    Ok(())
}

/// The invoices of the tenant's Bling orders among `order_ids` (from the invoice view), in
/// one query: a lot of deliveries about orders is matched to invoices at once.
pub async fn invoices_of_orders(
    db: &Db,
    tenant: &str,
    order_ids: &[i64],
) -> Result<std::collections::HashMap<i64, String>, StoreError> {
    if order_ids.is_empty() {
        return Ok(std::collections::HashMap::new());
    }
    let rows: Vec<(i64, String)> = match db {
        Db::Postgres(pool) => {
            sqlx::query_as(
                "SELECT bling_order_id, invoice_id FROM proj_invoices
                 WHERE tenant = $1 AND bling_order_id = ANY($2)",
            )
            .bind(tenant)
            .bind(order_ids)
            .fetch_all(pool)
            .await?
        }
        Db::Sqlite(pool) => {
            let ids =
                serde_json::to_string(order_ids).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sqlx::query_as(
                "SELECT bling_order_id, invoice_id FROM proj_invoices
                 WHERE tenant = $1 AND bling_order_id IN (SELECT value FROM json_each($2))",
            )
            .bind(tenant)
            .bind(ids)
            .fetch_all(pool)
            .await?
        }
    };
    Ok(rows.into_iter().collect())
}

/// Processing must wait (Bling unavailable, the invoice not yet known): each delivery of the
/// lot, `(id, due_at_ms, detail)`, is tried again at its `due_at_ms`. One statement on
/// PostgreSQL: a flood's deliveries about orders not known yet are looked at again several
/// times, and this is one commit per lot, not one per delivery.
pub async fn later_all(db: &Db, all: &[(i64, i64, String)]) -> Result<(), StoreError> {
    if all.is_empty() {
        return Ok(());
    }
    match db {
        Db::Postgres(pool) => {
            sqlx::query(
                "UPDATE webhook_deliveries AS w SET due_at_ms = x.due, detail = x.d,
                     attempts = w.attempts + 1
                 FROM UNNEST($1::bigint[], $2::bigint[], $3::text[]) AS x(id, due, d)
                 WHERE w.id = x.id",
            )
            .bind(all.iter().map(|a| a.0).collect::<Vec<_>>())
            .bind(all.iter().map(|a| a.1).collect::<Vec<_>>())
            .bind(all.iter().map(|a| a.2.as_str()).collect::<Vec<_>>())
            .execute(pool)
            .await?;
        }
        Db::Sqlite(_) => {
            let mut tx = db.begin().await?;
            for (id, due_at_ms, detail) in all {
                sql!(
                    tx,
                    "UPDATE webhook_deliveries SET due_at_ms = $2, detail = $3,
                         attempts = attempts + 1
                     WHERE id = $1",
                    [*id, *due_at_ms, detail.as_str()]
                )?;
            }
            tx.commit().await?;
        }
    }
    Ok(())
}

/// One delivery as support reads it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryView {
    pub id: i64,
    pub event_id: String,
    pub company_id: String,
    pub tenant: Option<String>,
    pub event: String,
    pub resource_id: Option<i64>,
    pub state: String,
    pub detail: Option<String>,
    pub times_received: i64,
    pub attempts: i64,
    pub received_at_ms: i64,
    pub last_received_ms: i64,
    pub processed_at_ms: Option<i64>,
}

type ViewRow = (
    i64,
    String,
    String,
    Option<String>,
    String,
    Option<i64>,
    String,
    Option<String>,
    i64,
    i64,
    i64,
    i64,
    Option<i64>,
);

fn view(r: ViewRow) -> DeliveryView {
    DeliveryView {
        id: r.0,
        event_id: r.1,
        company_id: r.2,
        tenant: r.3,
        event: r.4,
        resource_id: r.5,
        state: r.6,
        detail: r.7,
        times_received: r.8,
        attempts: r.9,
        received_at_ms: r.10,
        last_received_ms: r.11,
        processed_at_ms: r.12,
    }
}

/// The tenant's deliveries newest first (`tenant` `None`: those of no known company), before
/// id `before` when given.
pub async fn list(
    db: &Db,
    tenant: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<DeliveryView>, StoreError> {
    let rows: Vec<ViewRow> = sql!(
        db,
        as ViewRow,
        "SELECT id, event_id, company_id, tenant, event, resource_id, state, detail, times_received,
                attempts, received_at_ms, last_received_ms, processed_at_ms
         FROM webhook_deliveries
         WHERE (CASE WHEN $1 IS NULL THEN tenant IS NULL ELSE tenant = $1 END)
           AND id < $2
         ORDER BY id DESC LIMIT $3",
        [tenant, before.unwrap_or(i64::MAX), limit],
        fetch_all
    )?;
    Ok(rows.into_iter().map(view).collect())
}

/// The tenant whose Bling account is `company_id`.
pub async fn company_tenant(db: &Db, company_id: &str) -> Result<Option<String>, StoreError> {
    let row: Option<(String,)> = sql!(
        db,
        as (String,),
        "SELECT tenant FROM bling_companies WHERE company_id = $1",
        [company_id],
        fetch_optional
    )?;
    Ok(row.map(|(t,)| t))
}

/// Records the tenant's Bling company (at connect and reconnect; a company that moved to
/// another tenant moves with it), and hands the deliveries that waited for it to the
/// processor. Returns how many deliveries were taken up again.
pub async fn record_company(
    db: &Db,
    company_id: &str,
    tenant: &str,
    name: &str,
) -> Result<u64, StoreError> {
    let now = now_ms();
    let mut tx = db.begin().await?;
    sql!(
        tx,
        "INSERT INTO bling_companies (company_id, tenant, name, recorded_at_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (company_id) DO UPDATE SET tenant = excluded.tenant, name = excluded.name,
             recorded_at_ms = excluded.recorded_at_ms",
        [company_id, tenant, name, now]
    )?;
    let resumed = sql!(
        tx,
        "UPDATE webhook_deliveries SET state = 'received', tenant = $2, due_at_ms = $3
         WHERE company_id = $1 AND state = 'unknown_company'",
        [company_id, tenant, now]
    )?;
    tx.commit().await?;
    Ok(resumed)
}

/// The invoice whose NF-e is `nfe_id` (from the invoice view).
pub async fn invoice_of_nfe(
    db: &Db,
    tenant: &str,
    nfe_id: i64,
) -> Result<Option<String>, StoreError> {
    let row: Option<(String,)> = sql!(
        db,
        as (String,),
        "SELECT invoice_id FROM proj_invoices WHERE tenant = $1 AND nfe_id = $2 LIMIT 1",
        [tenant, nfe_id],
        fetch_optional
    )?;
    Ok(row.map(|(i,)| i))
}

/// The invoice whose Bling order is `order_id` (from the invoice view).
pub async fn invoice_of_order(
    db: &Db,
    tenant: &str,
    order_id: i64,
) -> Result<Option<String>, StoreError> {
    let row: Option<(String,)> = sql!(
        db,
        as (String,),
        "SELECT invoice_id FROM proj_invoices WHERE tenant = $1 AND bling_order_id = $2 LIMIT 1",
        [tenant, order_id],
        fetch_optional
    )?;
    Ok(row.map(|(i,)| i))
}

/// The tenant's invoices that have an NF-e: id, NF-e status, whether the invoice is
/// cancelled (from the invoice view).
pub async fn nfe_statuses(db: &Db, tenant: &str) -> Result<Vec<(String, String, i64)>, StoreError> {
    Ok(sql!(
        db,
        as (String, String, i64),
        "SELECT invoice_id, nfe_status, cancelled FROM proj_invoices
         WHERE tenant = $1 AND nfe_status IS NOT NULL ORDER BY invoice_id",
        [tenant],
        fetch_all
    )?)
}

/// Whether a delivery about Bling resource `resource_id` (of `resource`: `order`, `invoice`)
/// was stored for the tenant: Bling's webhooks reach the ledger for it.
pub async fn delivered_about(
    db: &Db,
    tenant: &str,
    resource: &str,
    resource_id: i64,
) -> Result<bool, StoreError> {
    let row: Option<(i64,)> = sql!(
        db,
        as (i64,),
        "SELECT id FROM webhook_deliveries WHERE tenant = $1 AND resource_id = $2 AND event LIKE $3 LIMIT 1",
        [tenant, resource_id, format!("{resource}.%")],
        fetch_optional
    )?;
    Ok(row.is_some())
}

/// Refused deliveries kept for support (the newest).
pub const REFUSALS_KEPT: i64 = 1000;
/// (source, reason) pairs counted one by one; further sources are counted as `other`.
pub const REFUSAL_SOURCES_KEPT: i64 = 1000;

/// A delivery refused at the door (nothing in it is trusted).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Refusal {
    pub at_ms: i64,
    /// Who sent it: the peer's address, as the server saw it.
    pub source: String,
    /// `signature_missing`, `signature_malformed`, `signature_mismatch`, `invalid_envelope`,
    /// `no_secret`.
    pub reason: String,
    /// What the body claimed, unverified (`companyId`, `eventId`, `event`), when it parsed.
    pub claimed_company_id: Option<String>,
    pub claimed_event_id: Option<String>,
    pub claimed_event: Option<String>,
    pub bytes: i64,
}

/// Refusals counted for one (source, reason) pair.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RefusalCount {
    pub source: String,
    pub reason: String,
    pub refused: i64,
    pub first_at_ms: i64,
    pub last_at_ms: i64,
}

/// Writes a lot of refusals in one transaction: the rows (`rows`, at most the newest
/// [`REFUSALS_KEPT`] are kept, older rows deleted here) and the counts (`counts`: refusals
/// per pair since the last lot, which may hold more than `rows` when a flood was sampled).
pub async fn record_refusals(
    db: &Db,
    rows: &[Refusal],
    counts: &[RefusalCount],
) -> Result<(), StoreError> {
    if rows.is_empty() && counts.is_empty() {
        return Ok(());
    }
    let mut tx = db.begin().await?;
    let skip = rows.len().saturating_sub(REFUSALS_KEPT as usize);
    for r in &rows[skip..] {
        sql!(
            tx,
            "INSERT INTO webhook_refusals (at_ms, source, reason, claimed_company_id, claimed_event_id,
                 claimed_event, bytes)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [
                r.at_ms,
                r.source.as_str(),
                r.reason.as_str(),
                r.claimed_company_id.as_deref(),
                r.claimed_event_id.as_deref(),
                r.claimed_event.as_deref(),
                r.bytes
            ]
        )?;
    }
    if !rows.is_empty() {
        sql!(
            tx,
            "DELETE FROM webhook_refusals
             WHERE id <= (SELECT MAX(id) FROM webhook_refusals) - $1",
            [REFUSALS_KEPT]
        )?;
    }
    for c in counts {
        let (pairs,): (i64,) = sql!(
            tx,
            as (i64,),
            "SELECT COUNT(*) FROM webhook_refusal_counts",
            [],
            fetch_one
        )?;
        let known: Option<(i64,)> = sql!(
            tx,
            as (i64,),
            "SELECT refused FROM webhook_refusal_counts WHERE source = $1 AND reason = $2",
            [c.source.as_str(), c.reason.as_str()],
            fetch_optional
        )?;
        // A full table takes no new pair: the count goes to `other` (that pair may be the
        // one over the cap: the table holds at most one more row per reason).
        let source = if known.is_none() && pairs >= REFUSAL_SOURCES_KEPT {
            "other"
        } else {
            c.source.as_str()
        };
        sql!(
            tx,
            "INSERT INTO webhook_refusal_counts (source, reason, refused, first_at_ms, last_at_ms)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (source, reason) DO UPDATE SET
                 refused = webhook_refusal_counts.refused + excluded.refused,
                 last_at_ms = excluded.last_at_ms",
            [
                source,
                c.reason.as_str(),
                c.refused,
                c.first_at_ms,
                c.last_at_ms
            ]
        )?;
    }
    tx.commit().await?;
    Ok(())
}

/// Refused deliveries newest first: those claiming `company` (all with `None`).
pub async fn refusals(
    db: &Db,
    company: Option<&str>,
    limit: i64,
) -> Result<Vec<Refusal>, StoreError> {
    type Row = (
        i64,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        i64,
    );
    let rows: Vec<Row> = sql!(
        db,
        as Row,
        "SELECT at_ms, source, reason, claimed_company_id, claimed_event_id, claimed_event, bytes
         FROM webhook_refusals
         WHERE ($1 IS NULL OR claimed_company_id = $1)
         ORDER BY id DESC LIMIT $2",
        [company, limit],
        fetch_all
    )?;
    Ok(rows
        .into_iter()
        .map(|r| Refusal {
            at_ms: r.0,
            source: r.1,
            reason: r.2,
            claimed_company_id: r.3,
            claimed_event_id: r.4,
            claimed_event: r.5,
            bytes: r.6,
        })
        .collect())
}

/// Refusals counted per (source, reason), the most refused first.
pub async fn refusal_counts(db: &Db) -> Result<Vec<RefusalCount>, StoreError> {
    let rows: Vec<(String, String, i64, i64, i64)> = sql!(
        db,
        as (String, String, i64, i64, i64),
        "SELECT source, reason, refused, first_at_ms, last_at_ms FROM webhook_refusal_counts
         ORDER BY refused DESC, source, reason",
        [],
        fetch_all
    )?;
    Ok(rows
        .into_iter()
        .map(|r| RefusalCount {
            source: r.0,
            reason: r.1,
            refused: r.2,
            first_at_ms: r.3,
            last_at_ms: r.4,
        })
        .collect())
}
