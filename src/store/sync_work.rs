//! The sync worker's to-do list (`sync_work`) and its leases (`sync_leases`).
//!
//! One row per thing to make Bling match: a customer's contato (`contact`, keyed by customer)
//! or an invoice's pedido (`invoice`, keyed by invoice); and per thing to follow in Bling: an
//! invoice's NF-e until SEFAZ answers (`nfe`, ended by the settling event: [`settle_nfe`]) and
//! its order watched for a bounded window (`watch`, its window's start in `watch_from_ms`:
//! [`watch`], [`read_now`]). The dispatcher (`sync::queue`) writes
//! rows in the transaction that moves its checkpoint; jobs reconcile Bling with the aggregate's
//! *current* state, so running one twice is harmless and later events simply fold into the
//! pending row ([`upsert`]). A job's result is recorded with a fence on `last_position`
//! ([`finish`]): a job that saw newer events meanwhile stays pending, due now.
//!
//! # Leases that fence
//! A tenant's work runs under a lease ([`take_lease`]) so two workers never run it at once.
//! Each take bumps the lease's **fence**, and the row is never deleted (a release only expires
//! it), so fences only grow. A job carries the [`LeaseToken`] it was started under, and every
//! write of its outcome ([`finish`], [`mark_create_sent`]) first touches the lease row with
//! that holder and fence, in the same transaction: if the tenant has passed to another holder
//! the write changes nothing and says [`StoreError::LeaseLost`]. On PostgreSQL the touch also
//! locks the lease row, so a takeover waits for a write already under way to commit.
use super::{now_ms, Db, StoreError, Tx};
use crate::sql;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Contact,
    Invoice,
    /// Follow an invoice's NF-e to SEFAZ's answer (keyed by invoice; see `sync::nfe`).
    Nfe,
    /// Watch an invoice's order (and its authorized NF-e) in Bling for changes the ledger did
    /// not make, for a bounded window (keyed by invoice; see `sync::watch`).
    Watch,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Contact => "contact",
            Kind::Invoice => "invoice",
            Kind::Nfe => "nfe",
            Kind::Watch => "watch",
        }
    }

    fn parse(raw: &str) -> Option<Kind> {
        match raw {
            "contact" => Some(Kind::Contact),
            "invoice" => Some(Kind::Invoice),
            "nfe" => Some(Kind::Nfe),
            "watch" => Some(Kind::Watch),
            _ => None,
        }
    }
}

/// The lease a job was started under: who held the tenant, and the fence of that take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseToken {
    pub holder: String,
    pub fence: i64,
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
    /// A watch's window: when it opened (ms), `None` for other kinds.
    pub watch_from_ms: Option<i64>,
    /// How many times the row was asked to run from outside (support's [`read_now`]) when the
    /// job read it: its result is written only while this is unchanged.
    pub asked: i64,
    /// The lease this job runs under; its writes are fenced by it. `None` only for work run
    /// outside the scheduler (tools and tests that hold no lease).
    pub lease: Option<LeaseToken>,
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
    /// Not attempted: other work must end first (the invoice's own sync before its watch
    /// reads). Runs at this time, and what asked for this run (`resume_reason`: support's
    /// request, a reconnection) still stands then; not counted as an attempt.
    Wait {
        at_ms: i64,
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

/// Opens (or opens again) the watch of an invoice's order: its reads fall at offsets from
/// `from_ms`, the first due at `first_due_ms`. A parked tenant stays parked, and a read asked
/// for and not yet made (`resume_reason` set) stays due when it was.
pub async fn watch(
    tx: &mut Tx,
    tenant: &str,
    invoice: &str,
    customer: &str,
    position: i64,
    from_ms: i64,
    first_due_ms: i64,
) -> Result<(), StoreError> {
    sql!(
        tx,
        "INSERT INTO sync_work (tenant, kind, key, customer_id, state, due_at_ms, first_position,
             last_position, watch_from_ms)
         VALUES ($1, 'watch', $2, $3, 'pending', $4, $5, $5, $6)
         ON CONFLICT (tenant, kind, key) DO UPDATE SET
             state = CASE WHEN sync_work.state = 'parked' THEN 'parked' ELSE 'pending' END,
             due_at_ms = CASE WHEN sync_work.state IN ('pending', 'parked')
                     AND sync_work.resume_reason IS NOT NULL
                     AND sync_work.due_at_ms < excluded.due_at_ms
                 THEN sync_work.due_at_ms ELSE excluded.due_at_ms END,
             attempts = 0, last_error = NULL,
             first_position = excluded.first_position, last_position = excluded.last_position,
             watch_from_ms = excluded.watch_from_ms",
        [tenant, invoice, customer, first_due_ms, position, from_ms]
    )?;
    Ok(())
}

/// The NF-e is settled (SEFAZ answered; the ledger recorded it, by webhook or poll): its
/// follow-up ends now rather than at its next scheduled read. The position is bumped so a
/// read already under way, finishing after this, runs once more and ends without a call.
pub async fn settle_nfe(
    tx: &mut Tx,
    tenant: &str,
    invoice: &str,
    position: i64,
) -> Result<(), StoreError> {
    sql!(
        tx,
        "UPDATE sync_work SET state = 'done', attempts = 0, last_error = NULL, last_position = $3
         WHERE tenant = $1 AND kind = 'nfe' AND key = $2 AND state = 'pending'",
        [tenant, invoice, position]
    )?;
    Ok(())
}

/// Support asks for a fresh read of an invoice's order and NF-e now: its watch is due at once
/// (a watch that never started gets this one read only), marked so that the read happens whatever the
/// schedule says; a pending NF-e follow-up is due at once too. False when the invoice has no
/// work at all (never dispatched).
///
/// The request is not lost to a run already under way: it bumps the rows' `asked`, so that
/// run's result, written after, runs the job again at once with this reason ([`finish`]); a
/// read that must wait for the invoice's own sync keeps it ([`Outcome::Wait`]); and a window
/// opened again meanwhile does not push it back ([`watch`]).
pub async fn read_now(
    db: &Db,
    tenant: &str,
    invoice: &str,
    reason: &str,
) -> Result<bool, StoreError> {
    let now = now_ms();
    let mut tx = db.begin().await?;
    let row = sql!(
        &mut tx,
        as (String, i64),
        "SELECT customer_id, last_position FROM sync_work WHERE tenant = $1 AND kind = 'invoice' AND key = $2",
        [tenant, invoice],
        fetch_optional
    )?;
    let Some((customer, position)) = row else {
        return Ok(false);
    };
    sql!(
        &mut tx,
        "INSERT INTO sync_work (tenant, kind, key, customer_id, state, due_at_ms, first_position,
             last_position, resume_reason, watch_from_ms)
         VALUES ($1, 'watch', $2, $3, 'pending', $4, $5, $5, $6, 0)
         ON CONFLICT (tenant, kind, key) DO UPDATE SET
             state = CASE WHEN sync_work.state = 'parked' THEN 'parked' ELSE 'pending' END,
             due_at_ms = excluded.due_at_ms, resume_reason = excluded.resume_reason,
             asked = sync_work.asked + 1",
        [tenant, invoice, customer.as_str(), now, position, reason]
    )?;
    sql!(
        &mut tx,
        "UPDATE sync_work SET due_at_ms = $3, asked = asked + 1
         WHERE tenant = $1 AND kind = 'nfe' AND key = $2 AND state = 'pending'",
        [tenant, invoice, now]
    )?;
    tx.commit().await?;
    Ok(true)
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
    Option<i64>,
    i64,
);

fn job(
    (
        tenant,
        kind,
        key,
        customer_id,
        state,
        attempts,
        last_position,
        create_sent,
        resume_reason,
        watch_from_ms,
        asked,
    ): JobRow,
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
        watch_from_ms,
        asked,
        lease: None,
    })
}

/// Tenants with work due now, oldest work first.
pub async fn due_tenants(db: &Db, limit: i64) -> Result<Vec<String>, StoreError> {
    Ok(waiting_tenants(db, limit)
        .await?
        .into_iter()
        .map(|(t, _)| t)
        .collect())
}

/// Tenants with work due now and since when their oldest due work has waited (ms), the
/// longest-waiting first: the order in which a scheduler with free capacity takes them.
pub async fn waiting_tenants(db: &Db, limit: i64) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(sql!(
        db,
        as (String, i64),
        "SELECT tenant, MIN(due_at_ms) AS since FROM sync_work
         WHERE state = 'pending' AND due_at_ms <= $1
         GROUP BY tenant ORDER BY since, tenant LIMIT $2",
        [now_ms(), limit],
        fetch_all
    )?)
}

/// The tenant's next due job: contacts before invoices of the same moment, otherwise in the
/// order their events were written.
pub async fn next_job(db: &Db, tenant: &str) -> Result<Option<Job>, StoreError> {
    let row: Option<JobRow> = sql!(
        db,
        as JobRow,
        "SELECT tenant, kind, key, customer_id, state, attempts, last_position, create_sent, resume_reason, watch_from_ms, asked
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
        "SELECT tenant, kind, key, customer_id, state, attempts, last_position, create_sent, resume_reason, watch_from_ms, asked
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
        "SELECT tenant, kind, key, customer_id, state, attempts, last_position, create_sent, resume_reason, watch_from_ms, asked
         FROM sync_work WHERE tenant = $1 AND kind = $2 AND key = $3",
        [tenant, kind.as_str(), key],
        fetch_optional
    )?;
    Ok(row.and_then(job))
}

/// Opens the transaction a job's write runs in, touching its lease first: `LeaseLost` when the
/// tenant has passed to another holder since the job started. The touch is a write (an update
/// that changes nothing), so on SQLite the transaction holds the write lock from its first
/// statement, and on PostgreSQL the lease row stays locked until the write commits.
async fn fenced(db: &Db, job: &Job) -> Result<Tx, StoreError> {
    let mut tx = db.begin().await?;
    if let Some(lease) = &job.lease {
        let held = sql!(
            &mut tx,
            "UPDATE sync_leases SET fence = fence WHERE tenant = $1 AND holder = $2 AND fence = $3",
            [&job.tenant, &lease.holder, lease.fence]
        )?;
        if held == 0 {
            return Err(StoreError::LeaseLost(format!(
                "tenant {} is no longer leased to {} (fence {})",
                job.tenant, lease.holder, lease.fence
            )));
        }
    }
    Ok(tx)
}

/// Marks that a create is about to be sent, durably, before it is sent. Fenced by the job's
/// lease: a job that lost its lease learns it here, before the create leaves.
pub async fn mark_create_sent(db: &Db, job: &Job) -> Result<(), StoreError> {
    let mut tx = fenced(db, job).await?;
    sql!(
        &mut tx,
        "UPDATE sync_work SET create_sent = 1 WHERE tenant = $1 AND kind = $2 AND key = $3",
        [&job.tenant, job.kind.as_str(), &job.key]
    )?;
    tx.commit().await
}

/// Whether the tenant's lease is still `lease` (same holder, same fence).
pub async fn lease_holds(db: &Db, tenant: &str, lease: &LeaseToken) -> Result<bool, StoreError> {
    let row = sql!(
        db,
        as (i64,),
        "SELECT fence FROM sync_leases WHERE tenant = $1 AND holder = $2 AND fence = $3",
        [tenant, &lease.holder, lease.fence],
        fetch_optional
    )?;
    Ok(row.is_some())
}

/// Records where a job stands after an attempt. A job that saw newer events meanwhile stays
/// pending, due now, whatever this attempt did. Fenced by the job's lease (`LeaseLost`: nothing
/// written; the tenant's new holder runs the job again).
pub async fn finish(db: &Db, job: &Job, outcome: &Outcome) -> Result<(), StoreError> {
    let mut tx = fenced(db, job).await?;
    let now = now_ms();
    let (state, due, attempts, error) = match outcome {
        Outcome::Done => ("done", now, 0, None),
        Outcome::Retry { at_ms, error } => {
            ("pending", *at_ms, job.attempts + 1, Some(error.as_str()))
        }
        Outcome::Blocked { error } => ("blocked", now, job.attempts + 1, Some(error.as_str())),
        Outcome::Failed { error } => ("failed", now, job.attempts + 1, Some(error.as_str())),
        Outcome::Parked { error } => ("parked", now, job.attempts, Some(error.as_str())),
        Outcome::Wait { at_ms, error } => ("pending", *at_ms, job.attempts, Some(error.as_str())),
    };
    let create_sent = i64::from(
        matches!(
            outcome,
            Outcome::Retry { .. }
                | Outcome::Parked { .. }
                | Outcome::Failed { .. }
                | Outcome::Blocked { .. }
                | Outcome::Wait { .. }
        ) && job.create_sent,
    );
    // What asked for this run is answered, unless the run only waited.
    let keep_reason = i64::from(matches!(outcome, Outcome::Wait { .. }));
    let updated = sql!(
        &mut tx,
        "UPDATE sync_work SET state = $5, due_at_ms = $6, attempts = $7, last_error = $8,
             create_sent = CASE WHEN $9 = 1 THEN create_sent ELSE 0 END,
             resume_reason = CASE WHEN $10 = 1 THEN resume_reason ELSE NULL END
         WHERE tenant = $1 AND kind = $2 AND key = $3 AND last_position = $4 AND asked = $11",
        [
            &job.tenant,
            job.kind.as_str(),
            &job.key,
            job.last_position,
            state,
            due,
            attempts,
            error,
            create_sent,
            keep_reason,
            job.asked
        ]
    )?;
    if updated == 0 {
        // Newer events arrived, or support asked for a run, while the job ran: run again on
        // the new state, right away (unless the tenant is parked: nothing can be done before
        // a reconnection). A request made meanwhile keeps its reason for that run.
        let state = if matches!(outcome, Outcome::Parked { .. }) {
            "parked"
        } else {
            "pending"
        };
        sql!(
            &mut tx,
            "UPDATE sync_work SET state = $4, due_at_ms = $5,
                 resume_reason = CASE WHEN asked = $6 AND $7 = 0 THEN NULL ELSE resume_reason END
             WHERE tenant = $1 AND kind = $2 AND key = $3",
            [
                &job.tenant,
                job.kind.as_str(),
                &job.key,
                state,
                now,
                job.asked,
                keep_reason
            ]
        )?;
    }
    tx.commit().await
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
             WHERE tenant = $1 AND state IN ('failed', 'blocked', 'parked', 'pending') AND kind <> 'watch'",
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

/// Work not done, by state (pending, blocked, failed, parked), for `/metrics`; order watches
/// (pending for a day by design) are not work waiting. Done rows,
/// the bulk of the table, are not read: the `(state, due_at_ms)` index answers this.
pub async fn depth(db: &Db) -> Result<Vec<(String, i64)>, StoreError> {
    sql!(
        db,
        as (String, i64),
        "SELECT state, count(*) FROM sync_work
         WHERE state IN ('pending', 'blocked', 'failed', 'parked') AND kind <> 'watch' GROUP BY state",
        [],
        fetch_all
    )
    .map_err(StoreError::from)
}

/// Takes the tenant's lease for `holder` if nobody else holds it (never held, expired, or
/// lingering after `holder`'s own release), bumping its fence. `None`: another live holder has
/// it.
pub async fn take_lease(
    db: &Db,
    tenant: &str,
    holder: &str,
    ttl_ms: i64,
) -> Result<Option<LeaseToken>, StoreError> {
    let now = now_ms();
    let taken: Option<(i64,)> = sql!(
        db,
        as (i64,),
        "INSERT INTO sync_leases (tenant, holder, expires_at_ms, fence) VALUES ($1, $2, $3, 1)
         ON CONFLICT (tenant) DO UPDATE SET holder = excluded.holder,
             expires_at_ms = excluded.expires_at_ms, fence = sync_leases.fence + 1
         WHERE sync_leases.expires_at_ms < $4 OR sync_leases.holder = excluded.holder
         RETURNING fence",
        [tenant, holder, now + ttl_ms, now],
        fetch_optional
    )?;
    Ok(taken.map(|(fence,)| LeaseToken {
        holder: holder.to_string(),
        fence,
    }))
}

/// Extends a lease its holder still has (same holder and fence), even past its expiry when
/// nobody took it meanwhile. `false`: the tenant has passed to another holder.
pub async fn renew_lease(
    db: &Db,
    tenant: &str,
    lease: &LeaseToken,
    ttl_ms: i64,
) -> Result<bool, StoreError> {
    let renewed = sql!(
        db,
        "UPDATE sync_leases SET expires_at_ms = $4 WHERE tenant = $1 AND holder = $2 AND fence = $3",
        [tenant, &lease.holder, lease.fence, now_ms() + ttl_ms]
    )?;
    Ok(renewed == 1)
}

/// Gives the tenant's lease back: it lingers for `linger_ms`, during which only its holder may
/// take it again, then expires (the row and its fence stay).
pub async fn release(
    db: &Db,
    tenant: &str,
    lease: &LeaseToken,
    linger_ms: i64,
) -> Result<(), StoreError> {
    sql!(
        db,
        "UPDATE sync_leases SET expires_at_ms = $4 WHERE tenant = $1 AND holder = $2 AND fence = $3",
        [tenant, &lease.holder, lease.fence, now_ms() + linger_ms]
    )?;
    Ok(())
}

/// Leases held now (not expired), by anyone: for metrics and the fleet benchmark.
pub async fn leases_live(db: &Db) -> Result<i64, StoreError> {
    let (n,): (i64,) = sql!(
        db,
        as (i64,),
        "SELECT count(*) FROM sync_leases WHERE expires_at_ms >= $1",
        [now_ms()],
        fetch_one
    )?;
    Ok(n)
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
