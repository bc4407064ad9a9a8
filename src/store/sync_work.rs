//! The sync worker's to-do list (`sync_work`) and its leases (`sync_leases`).
//!
//! One row per thing to make Bling match: a customer's contato (`contact`, keyed by customer)
//! or an invoice's pedido (`invoice`, keyed by invoice). The dispatcher (`sync::queue`) writes
//! rows in the transaction that moves its checkpoint; jobs reconcile Bling with the aggregate's
//! *current* state, so running one twice is harmless and later events simply fold into the
//! pending row ([`upsert`]). A job's result is recorded with a fence on `last_position`
//! ([`finish`]): a job that saw newer events meanwhile stays pending, due now. A tenant's work
//! runs under a lease ([`lease`]) so two workers never run it at once.

use super::{now_ms, Db, StoreError, Tx};
use crate::sql;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Contact,
    Invoice,
    /// Follow an invoice's NF-e to SEFAZ's answer (keyed by invoice; see `sync::nfe`).
    Nfe,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Contact => "contact",
            Kind::Invoice => "invoice",
            Kind::Nfe => "nfe",
        }
    }

    fn parse(raw: &str) -> Option<Kind> {
        match raw {
            "contact" => Some(Kind::Contact),
            "invoice" => Some(Kind::Invoice),
            "nfe" => Some(Kind::Nfe),
            _ => None,
        }
    }
}

/// One row of work, as a job reads it.
#[derive(Debug, Clone)]
pub struct Job {
    pub tenant: String,
    pub kind: Kind,
    pub key: String,
    pub customer_id: String,
    pub state: String,
    pub attempts: i64,
    pub last_position: i64,
    pub create_sent: bool,
    pub resume_reason: Option<String>,
}

/// What a job's attempt came to.
#[derive(Debug, Clone)]
pub enum Outcome {
    Done,
    /// Transient: try again at this time.
    Retry {
        at_ms: i64,
        error: String,
    },
    /// Waits for a customer fix.
    Blocked {
        error: String,
    },
    /// Waits for support.
    Failed {
        error: String,
    },
    /// Waits for a reconnection.
    Parked {
        error: String,
    },
}

/// Records work for `key` seen at `position`.
pub async fn upsert(
    tx: &mut Tx,
    tenant: &str,
    kind: Kind,
    key: &str,
    customer: &str,
    position: i64,
    now: i64,
) -> Result<(), StoreError> {
    // New work is due now; work already waiting keeps its schedule (a Bling outage is not over
    // because an invoice changed), its place in line, and a parked tenant stays parked.
    sql!(
        tx,
        "INSERT INTO sync_work (tenant, kind, key, customer_id, state, due_at_ms, first_position, last_position)
         VALUES ($1, $2, $3, $4, 'pending', $5, $6, $6)
         ON CONFLICT (tenant, kind, key) DO UPDATE SET
             state = CASE WHEN sync_work.state = 'parked' THEN 'parked' ELSE 'pending' END,
             due_at_ms = CASE WHEN sync_work.state IN ('done', 'failed', 'blocked') THEN excluded.due_at_ms
                              ELSE sync_work.due_at_ms END,
             attempts = CASE WHEN sync_work.state IN ('done', 'failed', 'blocked') THEN 0 ELSE sync_work.attempts END,
             first_position = CASE WHEN sync_work.state = 'done' THEN excluded.first_position
                                   ELSE sync_work.first_position END,
             last_position = excluded.last_position",
        [tenant, kind.as_str(), key, customer, now, position]
    )?;
    Ok(())
}

/// A fixed customer record unblocks the invoices that failed on it.
pub async fn unblock_invoices_of(
    tx: &mut Tx,
    tenant: &str,
    customer: &str,
    now: i64,
) -> Result<(), StoreError> {
    sql!(
        tx,
        "UPDATE sync_work SET state = 'pending', due_at_ms = $3, attempts = 0,
             resume_reason = 'customer record updated'
         WHERE tenant = $1 AND customer_id = $2 AND kind = 'invoice' AND state = 'blocked'",
        [tenant, customer, now]
    )?;
    Ok(())
}

/// The customer an invoice's work was recorded for, if any.
pub async fn invoice_customer(
    tx: &mut Tx,
    tenant: &str,
    invoice: &str,
) -> Result<Option<String>, StoreError> {
    let row = sql!(tx, as (String,), "SELECT customer_id FROM sync_work WHERE tenant = $1 AND kind = 'invoice' AND key = $2", [tenant, invoice], fetch_optional)?;
    Ok(row.map(|(c,)| c))
}

/// A reconnection takes the tenant's parked work up again.
pub async fn resume_parked(tx: &mut Tx, tenant: &str, now: i64) -> Result<(), StoreError> {
    sql!(
        tx,
        "UPDATE sync_work SET state = 'pending', due_at_ms = $2, resume_reason = 'reconnected to Bling'
         WHERE tenant = $1 AND state = 'parked'",
        [tenant, now]
    )?;
    Ok(())
}

type JobRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    Option<String>,
);

fn job(
    (tenant, kind, key, customer_id, state, attempts, last_position, create_sent, resume_reason): JobRow,
) -> Option<Job> {
    Some(Job {
        tenant,
        kind: Kind::parse(&kind)?,
        key,
        customer_id,
        state,
        attempts,
        last_position,
        create_sent: create_sent != 0,
        resume_reason,
    })
}

/// Tenants with work due now, oldest work first.
pub async fn due_tenants(db: &Db, limit: i64) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(String, i64)> = sql!(
        db,
        as (String, i64),
        "SELECT tenant, MIN(first_position) AS oldest FROM sync_work
         WHERE state = 'pending' AND due_at_ms <= $1
         GROUP BY tenant ORDER BY oldest LIMIT $2",
        [now_ms(), limit],
        fetch_all
    )?;
    Ok(rows.into_iter().map(|(t, _)| t).collect())
}

/// The tenant's next due job: contacts before invoices of the same moment, otherwise in the
/// order their events were written.
pub async fn next_job(db: &Db, tenant: &str) -> Result<Option<Job>, StoreError> {
    let row: Option<JobRow> = sql!(
        db,
        as JobRow,
        "SELECT tenant, kind, key, customer_id, state, attempts, last_position, create_sent, resume_reason
         FROM sync_work
         WHERE tenant = $1 AND state = 'pending' AND due_at_ms <= $2
         ORDER BY first_position, kind LIMIT 1",
        [tenant, now_ms()],
        fetch_optional
    )?;
    Ok(row.and_then(job))
}

/// Up to `max` of the tenant's due jobs that may run at the same time: the oldest due job of
/// each customer, so one customer's contato and orders still run one after the other, in the
/// order their events were written, while different customers proceed in parallel.
pub async fn next_jobs(db: &Db, tenant: &str, max: usize) -> Result<Vec<Job>, StoreError> {
    let rows: Vec<JobRow> = sql!(
        db,
        as JobRow,
        "SELECT tenant, kind, key, customer_id, state, attempts, last_position, create_sent, resume_reason
         FROM sync_work
         WHERE tenant = $1 AND state = 'pending' AND due_at_ms <= $2
         ORDER BY first_position, kind LIMIT $3",
        [tenant, now_ms(), (max * 8) as i64],
        fetch_all
    )?;
    let mut customers = std::collections::HashSet::new();
    Ok(rows
        .into_iter()
        .filter_map(job)
        .filter(|j| customers.insert(j.customer_id.clone()))
        .take(max)
        .collect())
}

pub async fn get_job(
    db: &Db,
    tenant: &str,
    kind: Kind,
    key: &str,
) -> Result<Option<Job>, StoreError> {
    let row: Option<JobRow> = sql!(
        db,
        as JobRow,
        "SELECT tenant, kind, key, customer_id, state, attempts, last_position, create_sent, resume_reason
         FROM sync_work WHERE tenant = $1 AND kind = $2 AND key = $3",
        [tenant, kind.as_str(), key],
        fetch_optional
    )?;
    Ok(row.and_then(job))
}

/// Marks that a create is about to be sent, durably, before it is sent.
pub async fn mark_create_sent(db: &Db, job: &Job) -> Result<(), StoreError> {
    sql!(
        db,
        "UPDATE sync_work SET create_sent = 1 WHERE tenant = $1 AND kind = $2 AND key = $3",
        [&job.tenant, job.kind.as_str(), &job.key]
    )?;
    Ok(())
}

/// Records where a job stands after an attempt. A job that saw newer events meanwhile stays
/// pending, due now, whatever this attempt did.
pub async fn finish(db: &Db, job: &Job, outcome: &Outcome) -> Result<(), StoreError> {
    let now = now_ms();
    let (state, due, attempts, error) = match outcome {
        Outcome::Done => ("done", now, 0, None),
        Outcome::Retry { at_ms, error } => {
            ("pending", *at_ms, job.attempts + 1, Some(error.as_str()))
        }
        Outcome::Blocked { error } => ("blocked", now, job.attempts + 1, Some(error.as_str())),
        Outcome::Failed { error } => ("failed", now, job.attempts + 1, Some(error.as_str())),
        Outcome::Parked { error } => ("parked", now, job.attempts, Some(error.as_str())),
    };
    let create_sent = i64::from(
        matches!(
            outcome,
            Outcome::Retry { .. }
                | Outcome::Parked { .. }
                | Outcome::Failed { .. }
                | Outcome::Blocked { .. }
        ) && job.create_sent,
    );
    let updated = sql!(
        db,
        "UPDATE sync_work SET state = $5, due_at_ms = $6, attempts = $7, last_error = $8,
             create_sent = CASE WHEN $9 = 1 THEN create_sent ELSE 0 END, resume_reason = NULL
         WHERE tenant = $1 AND kind = $2 AND key = $3 AND last_position = $4",
        [
            &job.tenant,
            job.kind.as_str(),
            &job.key,
            job.last_position,
            state,
            due,
            attempts,
            error,
            create_sent
        ]
    )?;
    if updated == 0 {
        // Newer events arrived while the job ran: run again on the new state, right away
        // (unless the tenant is parked: nothing can be done before a reconnection).
        let state = if matches!(outcome, Outcome::Parked { .. }) {
            "parked"
        } else {
            "pending"
        };
        sql!(
            db,
            "UPDATE sync_work SET state = $4, due_at_ms = $5, resume_reason = NULL
             WHERE tenant = $1 AND kind = $2 AND key = $3",
            [&job.tenant, job.kind.as_str(), &job.key, state, now]
        )?;
    }
    Ok(())
}

/// Support asks for failed, blocked or parked work to run again.
pub async fn replay(
    db: &Db,
    tenant: &str,
    invoice: Option<&str>,
    reason: &str,
) -> Result<u64, StoreError> {
    let now = now_ms();
    Ok(match invoice {
        Some(invoice) => sql!(
            db,
            "UPDATE sync_work SET state = 'pending', due_at_ms = $3, attempts = 0, resume_reason = $4
             WHERE tenant = $1 AND ((kind = 'invoice' AND key = $2) OR (kind = 'contact' AND key =
                 (SELECT customer_id FROM sync_work WHERE tenant = $1 AND kind = 'invoice' AND key = $2)))
               AND state IN ('failed', 'blocked', 'parked', 'pending')",
            [tenant, invoice, now, reason]
        )?,
        None => sql!(
            db,
            "UPDATE sync_work SET state = 'pending', due_at_ms = $2, attempts = 0, resume_reason = $3
             WHERE tenant = $1 AND state IN ('failed', 'blocked', 'parked', 'pending')",
            [tenant, now, reason]
        )?,
    })
}

/// Counts of work by state, for metrics and the demo's summary.
pub async fn counts(
    db: &Db,
    tenant: Option<&str>,
) -> Result<Vec<(String, String, i64)>, StoreError> {
    sql!(
        db,
        as (String, String, i64),
        "SELECT kind, state, count(*) FROM sync_work WHERE ($1 IS NULL OR tenant = $1)
         GROUP BY kind, state ORDER BY kind, state",
        [tenant],
        fetch_all
    )
    .map_err(StoreError::from)
}

/// Work not done, by state (pending, blocked, failed, parked), for `/metrics`. Done rows,
/// the bulk of the table, are not read: the `(state, due_at_ms)` index answers this.
pub async fn depth(db: &Db) -> Result<Vec<(String, i64)>, StoreError> {
    sql!(
        db,
        as (String, i64),
        "SELECT state, count(*) FROM sync_work
         WHERE state IN ('pending', 'blocked', 'failed', 'parked') GROUP BY state",
        [],
        fetch_all
    )
    .map_err(StoreError::from)
}

/// Takes or renews the tenant's lease for `holder`. `false`: another live worker has it.
pub async fn lease(db: &Db, tenant: &str, holder: &str, ttl_ms: i64) -> Result<bool, StoreError> {
    let now = now_ms();
    let taken: Option<(String,)> = sql!(
        db,
        as (String,),
        "INSERT INTO sync_leases (tenant, holder, expires_at_ms) VALUES ($1, $2, $3)
         ON CONFLICT (tenant) DO UPDATE SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms
         WHERE sync_leases.holder = excluded.holder OR sync_leases.expires_at_ms < $4
         RETURNING holder",
        [tenant, holder, now + ttl_ms, now],
        fetch_optional
    )?;
    Ok(taken.is_some())
}

/// Gives the tenant's lease back.
pub async fn release(db: &Db, tenant: &str, holder: &str) -> Result<(), StoreError> {
    sql!(
        db,
        "DELETE FROM sync_leases WHERE tenant = $1 AND holder = $2",
        [tenant, holder]
    )?;
    Ok(())
}

/// Whether there is anything left to do now or later (not parked, blocked or failed).
pub async fn outstanding(db: &Db) -> Result<i64, StoreError> {
    let (n,): (i64,) = sql!(db, as (i64,), "SELECT count(*) FROM sync_work WHERE state = 'pending'", [], fetch_one)?;
    Ok(n)
}

/// Invoices of `tenant` (all tenants when `None`) whose work is (or, with `negate`, is not)
/// in `state`: what the demo and the sync benchmark wait for.
pub async fn invoices_in_state(
    db: &Db,
    tenant: Option<&str>,
    state: &str,
    negate: bool,
) -> Result<i64, StoreError> {
    let (n,): (i64,) = sql!(
        db,
        as (i64,),
        "SELECT count(*) FROM sync_work WHERE ($1 IS NULL OR tenant = $1) AND kind = 'invoice'
             AND (CASE WHEN $3 = 1 THEN state <> $2 ELSE state = $2 END)",
        [tenant, state, i64::from(negate)],
        fetch_one
    )?;
    Ok(n)
}

/// The tenant's invoices whose work is blocked or failed (with `only_blocked_or_failed`) or
/// not done, by key: key, customer, last error and state.
pub async fn unsettled_invoices(
    db: &Db,
    tenant: &str,
    only_blocked_or_failed: bool,
) -> Result<Vec<(String, String, Option<String>, String)>, StoreError> {
    Ok(sql!(
        db,
        as (String, String, Option<String>, String),
        "SELECT key, customer_id, last_error, state FROM sync_work
         WHERE tenant = $1 AND kind = 'invoice'
           AND (CASE WHEN $2 = 1 THEN state IN ('blocked', 'failed') ELSE state <> 'done' END)
         ORDER BY key",
        [tenant, i64::from(only_blocked_or_failed)],
        fetch_all
    )?)
}
