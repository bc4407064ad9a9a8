//! The sync worker's to-do list (`sync_work`), its dispatcher and its leases.
//!
//! The dispatcher follows the global log and turns events into rows: a customer change into
//! "make Bling's contato match", a billing, update or cancellation into "make Bling's pedido
//! match", a (re)connection into "take the tenant's parked work up again". The rows and the
//! dispatcher's checkpoint are written in one transaction, so a crash repeats nothing and
//! loses nothing. Jobs reconcile Bling with the aggregate's *current* state, so running one
//! twice is harmless and later events simply fold into the pending row.

use crate::store::log::{LogFilter, RecordedEvent};
use crate::store::{now_ms, Db, StoreError, Tx};
use crate::{on_db, on_tx};

pub const DISPATCHER: &str = "sync-dispatcher";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Contact,
    Invoice,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Contact => "contact",
            Kind::Invoice => "invoice",
        }
    }

    fn parse(raw: &str) -> Option<Kind> {
        match raw {
            "contact" => Some(Kind::Contact),
            "invoice" => Some(Kind::Invoice),
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

async fn checkpoint(tx: &mut Tx, name: &str) -> Result<i64, StoreError> {
    let row: Option<(i64,)> = match tx {
        // FOR UPDATE: two dispatchers never derive work from the same events concurrently.
        Tx::Postgres(t) => {
            sqlx::query_as("SELECT position FROM checkpoints WHERE name = $1 FOR UPDATE")
                .bind(name)
                .fetch_optional(&mut **t)
                .await?
        }
        Tx::Sqlite(t) => {
            sqlx::query_as("SELECT position FROM checkpoints WHERE name = ?1")
                .bind(name)
                .fetch_optional(&mut **t)
                .await?
        }
    };
    match row {
        Some((p,)) => Ok(p),
        None => {
            on_tx!(tx, "INSERT INTO checkpoints (name, position, updated_at_ms) VALUES ($1, 0, $2) ON CONFLICT DO NOTHING", [name, now_ms()])?;
            Ok(0)
        }
    }
}

pub async fn save_checkpoint(tx: &mut Tx, name: &str, position: i64) -> Result<(), StoreError> {
    on_tx!(
        tx,
        "UPDATE checkpoints SET position = $2, updated_at_ms = $3 WHERE name = $1",
        [name, position, now_ms()]
    )?;
    Ok(())
}

/// Reads up to `batch` events after the dispatcher's checkpoint and derives work from them.
/// Returns how many events it consumed.
pub async fn dispatch(db: &Db, batch: i64) -> Result<usize, StoreError> {
    // Read the events before opening the transaction: a transaction that waits for a second
    // pooled connection while holding locks can starve a busy pool.
    let (seen,): (i64,) = on_db!(db, as (i64,), "SELECT COALESCE(MAX(position), 0) FROM checkpoints WHERE name = $1", [DISPATCHER], fetch_one)?;
    let events = db.read_from(seen, batch, &LogFilter::default()).await?;
    let Some(last) = events.last().map(|e| e.position) else {
        return Ok(0);
    };
    let mut tx = db.begin().await?;
    if checkpoint(&mut tx, DISPATCHER).await? != seen {
        // Another dispatcher moved the checkpoint meanwhile: its work stands, ours is stale.
        return Ok(0);
    }
    for event in &events {
        derive(&mut tx, event).await?;
    }
    save_checkpoint(&mut tx, DISPATCHER, last).await?;
    tx.commit().await?;
    Ok(events.len())
}

fn local_id(event: &RecordedEvent) -> Option<(String, String)> {
    let (tenant, local) = aggregates::ids::split_stream_id(&event.aggregate_id)?;
    Some((tenant.to_string(), local.to_string()))
}

async fn derive(tx: &mut Tx, event: &RecordedEvent) -> Result<(), StoreError> {
    let now = now_ms();
    match (event.aggregate_type.as_str(), event.event_type.as_str()) {
        ("Customer", "CustomerRegistered" | "CustomerUpdated") => {
            let Some((tenant, customer)) = local_id(event) else {
                return Ok(());
            };
            upsert(
                tx,
                &tenant,
                Kind::Contact,
                &customer,
                &customer,
                event.position,
                now,
            )
            .await?;
            // A fixed customer record unblocks the invoices that failed on it.
            on_tx!(
                tx,
                "UPDATE sync_work SET state = 'pending', due_at_ms = $3, attempts = 0,
                     resume_reason = 'customer record updated'
                 WHERE tenant = $1 AND customer_id = $2 AND kind = 'invoice' AND state = 'blocked'",
                [&tenant, &customer, now]
            )?;
        }
        ("Invoice", "InvoiceBilled" | "InvoiceUpdated" | "InvoiceCancelled") => {
            let Some((tenant, invoice)) = local_id(event) else {
                return Ok(());
            };
            let customer = match event.event_type.as_str() {
                "InvoiceBilled" => event.payload["InvoiceBilled"]["customer_id"]
                    .as_str()
                    .map(str::to_string),
                _ => None,
            };
            let customer = match customer {
                Some(c) => c,
                None => on_tx!(tx, as (String,), "SELECT customer_id FROM sync_work WHERE tenant = $1 AND kind = 'invoice' AND key = $2", [&tenant, &invoice], fetch_optional)?
                    .map(|(c,)| c)
                    .unwrap_or_default(),
            };
            upsert(
                tx,
                &tenant,
                Kind::Invoice,
                &invoice,
                &customer,
                event.position,
                now,
            )
            .await?;
        }
        ("BlingConnection", "Connected" | "Reconnected") => {
            let tenant = event.aggregate_id.clone();
            on_tx!(
                tx,
                "UPDATE sync_work SET state = 'pending', due_at_ms = $2, resume_reason = 'reconnected to Bling'
                 WHERE tenant = $1 AND state = 'parked'",
                [&tenant, now]
            )?;
        }
        _ => {}
    }
    Ok(())
}

async fn upsert(
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
    on_tx!(
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
    let rows: Vec<(String, i64)> = on_db!(
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
    let row: Option<JobRow> = on_db!(
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
    let rows: Vec<JobRow> = on_db!(
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
    let row: Option<JobRow> = on_db!(
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
    on_db!(
        db,
        "UPDATE sync_work SET create_sent = 1 WHERE tenant = $1 AND kind = $2 AND key = $3",
        [&job.tenant, job.kind.as_str(), &job.key],
        execute
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
    let updated = on_db!(
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
        ],
        execute
    )?;
    if updated == 0 {
        // Newer events arrived while the job ran: run again on the new state, right away
        // (unless the tenant is parked: nothing can be done before a reconnection).
        let state = if matches!(outcome, Outcome::Parked { .. }) {
            "parked"
        } else {
            "pending"
        };
        on_db!(
            db,
            "UPDATE sync_work SET state = $4, due_at_ms = $5, resume_reason = NULL
             WHERE tenant = $1 AND kind = $2 AND key = $3",
            [&job.tenant, job.kind.as_str(), &job.key, state, now],
            execute
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
        Some(invoice) => on_db!(
            db,
            "UPDATE sync_work SET state = 'pending', due_at_ms = $3, attempts = 0, resume_reason = $4
             WHERE tenant = $1 AND ((kind = 'invoice' AND key = $2) OR (kind = 'contact' AND key =
                 (SELECT customer_id FROM sync_work WHERE tenant = $1 AND kind = 'invoice' AND key = $2)))
               AND state IN ('failed', 'blocked', 'parked', 'pending')",
            [tenant, invoice, now, reason],
            execute
        )?,
        None => on_db!(
            db,
            "UPDATE sync_work SET state = 'pending', due_at_ms = $2, attempts = 0, resume_reason = $3
             WHERE tenant = $1 AND state IN ('failed', 'blocked', 'parked', 'pending')",
            [tenant, now, reason],
            execute
        )?,
    })
}

/// Counts of work by state, for metrics and the demo's summary.
pub async fn counts(
    db: &Db,
    tenant: Option<&str>,
) -> Result<Vec<(String, String, i64)>, StoreError> {
    on_db!(
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
    on_db!(
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
    let taken: Option<(String,)> = on_db!(
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

pub async fn release(db: &Db, tenant: &str, holder: &str) -> Result<(), StoreError> {
    on_db!(
        db,
        "DELETE FROM sync_leases WHERE tenant = $1 AND holder = $2",
        [tenant, holder],
        execute
    )?;
    Ok(())
}

/// Whether there is anything left to do now or later (not parked, blocked or failed).
pub async fn outstanding(db: &Db) -> Result<i64, StoreError> {
    let (n,): (i64,) = on_db!(db, as (i64,), "SELECT count(*) FROM sync_work WHERE state = 'pending'", [], fetch_one)?;
    Ok(n)
}
