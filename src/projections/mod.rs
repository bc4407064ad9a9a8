//! The projection runner: feeds the read models of the `projections` crate from the global
//! log, and the queries support reads them with (HTTP, CLI, benchmarks).
//!
//! # Exactly once
//! One batch = one transaction: the runner reads the events after the lowest checkpoint, then
//! locks the projections' checkpoints (`checkpoints.name = 'projection:<name>'`, `FOR UPDATE`
//! on PostgreSQL, the write lock on SQLite: `store::checkpoints`) and applies to each projection only the events past
//! its locked checkpoint; it loads the rows those events touch, applies the pure reducers,
//! writes the rows and every checkpoint, and commits. A crash before the
//! commit loses the whole batch, rows and checkpoints alike, so it is simply done again; after
//! it, nothing is repeated. Two runners (two replicas) serialize on the checkpoint rows.
//!
//! # Rebuild
//! [`Projections::rebuild`] empties a projection's tables and replays the whole log into them
//! in one transaction, reporting progress (see `rebuild.rs`). The reducers depend only on the
//! events (never on the clock), so the rows after a rebuild equal the live ones.

pub mod cli;
pub mod queries;
mod rebuild;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use projections::{decode, Domain, LogEvent};
use serde::Serialize;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::store::events::{projection_events, projection_events_in};
use crate::store::views::{self, load, write, Stored};
use crate::store::{checkpoints, log, Db, StoreError, Tx};

pub use projections::NAMES;

/// The checkpoint row of a projection.
pub fn checkpoint_name(projection: &str) -> String {
    format!("projection:{projection}")
}

/// Checks a projection name given by a person.
pub fn parse_name(raw: &str) -> Result<&'static str, String> {
    NAMES
        .iter()
        .copied()
        .find(|n| *n == raw)
        .ok_or_else(|| format!("unknown projection {raw:?} (one of: {})", NAMES.join(", ")))
}

#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// How often to look for new events when nothing wakes the runner.
    pub poll_interval: Duration,
    /// Events per transaction.
    pub batch: i64,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(200),
            batch: 2_000,
        }
    }
}

/// Where a projection stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub name: String,
    pub checkpoint: i64,
    pub head: i64,
    pub lag: i64,
    pub updated_at_ms: Option<i64>,
}

/// Progress of a rebuild: events replayed so far and the head it runs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub done: i64,
    pub total: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RebuildReport {
    pub projections: Vec<String>,
    pub events: i64,
    pub seconds: f64,
    pub events_per_sec: f64,
}

/// The runner. Cheap to share; [`Projections::spawn`] runs it in the background.
pub struct Projections {
    db: Db,
    settings: RunnerSettings,
    wake: Notify,
}

impl Projections {
    pub fn new(db: Db, settings: RunnerSettings) -> Arc<Self> {
        Arc::new(Self {
            db,
            settings,
            wake: Notify::new(),
        })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Asks the runner to look now rather than at its next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// One batch for `names` (each at its own checkpoint): returns how many events were read.
    pub async fn run_batch(&self, names: &[&str], batch: i64) -> Result<usize, StoreError> {
        run_batch(&self.db, names, batch).await
    }

    /// Runs batches until every projection is at the head; returns the events read.
    pub async fn catch_up(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let n = self.run_batch(&NAMES, self.settings.batch).await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    /// Empties `names` (all when empty) and replays the log into them in one transaction,
    /// reading `batch` events at a time and calling `progress` after each.
    pub async fn rebuild(
        &self,
        names: &[&'static str],
        batch: i64,
        mut progress: impl FnMut(Progress),
    ) -> Result<RebuildReport, StoreError> {
        let names: Vec<&'static str> = if names.is_empty() {
            NAMES.to_vec()
        } else {
            names.to_vec()
        };
        let started = std::time::Instant::now();
        let done = rebuild::replay(&self.db, &names, batch, &mut progress).await?;
        let seconds = started.elapsed().as_secs_f64();
        Ok(RebuildReport {
            projections: names.iter().map(|n| n.to_string()).collect(),
            events: done,
            seconds,
            events_per_sec: done as f64 / seconds.max(1e-9),
        })
    }

    /// Checkpoint, head and lag of every projection.
    pub async fn status(&self) -> Result<Vec<Status>, StoreError> {
        status(&self.db).await
    }

    /// Runs until `stop` turns true: catches up, then waits for a wake-up or the poll interval.
    ///
    /// Measured and not kept: waiting for the poll interval after every batch that was not
    /// full made batches ten times larger under steady ingest (ingest throughput up by a
    /// tenth), but a backlog of 10,000 parked invoices then drained at 85 % of Bling's rate
    /// instead of 95 %, and parked in 80 s instead of 50 s.
    pub fn spawn(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(error) = self.catch_up().await {
                    tracing::error!(%error, "projection batch failed; retrying");
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.settings.poll_interval) => {}
                    _ = self.wake.notified() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        })
    }
}

/// Checkpoint, head and lag of every projection.
pub async fn status(db: &Db) -> Result<Vec<Status>, StoreError> {
    let head = log::head_position(db).await?;
    let mut out = Vec::new();
    for name in NAMES {
        let row = checkpoints::status(db, &checkpoint_name(name)).await?;
        let checkpoint = row.map(|r| r.0).unwrap_or(0);
        out.push(Status {
            name: name.to_string(),
            checkpoint,
            head,
            lag: (head - checkpoint).max(0),
            updated_at_ms: row.map(|r| r.1),
        });
    }
    Ok(out)
}

/// Empties the projections' tables and sets their checkpoints to 0; the caller holds their
/// checkpoint locks.
async fn empty(tx: &mut Tx, names: &[&str]) -> Result<(), StoreError> {
    for name in names {
        views::empty(tx, &[name]).await?;
        save_checkpoint(tx, name, 0).await?;
    }
    Ok(())
}

/// The lowest checkpoint among `names`, read without locks (a missing row counts as 0).
async fn unlocked_min_checkpoint(db: &Db, names: &[&str]) -> Result<i64, StoreError> {
    let mut lowest = i64::MAX;
    for name in names {
        lowest = lowest.min(checkpoints::position(db, &checkpoint_name(name)).await?);
    }
    Ok(if lowest == i64::MAX { 0 } else { lowest })
}

/// Creates missing checkpoint rows and locks them; returns each projection's position.
async fn lock_checkpoints(tx: &mut Tx, names: &[&str]) -> Result<HashMap<String, i64>, StoreError> {
    let mut out = HashMap::new();
    for name in names {
        let position = checkpoints::lock(tx, &checkpoint_name(name)).await?;
        out.insert(name.to_string(), position);
    }
    Ok(out)
}

async fn save_checkpoint(tx: &mut Tx, name: &str, position: i64) -> Result<(), StoreError> {
    checkpoints::save(tx, &checkpoint_name(name), position).await
}

/// Up to `limit` events after `after`, all tenants, in global order (see
/// [`projection_events`]).
pub async fn read(
    db: &Db,
    after: i64,
    limit: i64,
) -> Result<Vec<projections::LogEvent>, StoreError> {
    projection_events(db, after, limit).await
}

/// [`read`] inside `tx` (see [`projection_events_in`]).
async fn read_in(
    db: &Db,
    tx: &mut Tx,
    after: i64,
    limit: i64,
) -> Result<Vec<projections::LogEvent>, StoreError> {
    projection_events_in(db, tx, after, limit).await
}

/// A decoded event of the batch.
pub(crate) struct Item {
    log: LogEvent,
    domain: Domain,
}

/// Decodes events for the reducers; an event that does not decode is skipped, and logged.
fn items(events: Vec<LogEvent>) -> Vec<Item> {
    events
        .into_iter()
        .map(|log| {
            let domain = decode(&log).unwrap_or_else(|error| {
                tracing::warn!(%error, "projections skip an event they cannot decode");
                Domain::Other
            });
            Item { log, domain }
        })
        .collect()
}

async fn run_batch(db: &Db, names: &[&str], batch: i64) -> Result<usize, StoreError> {
    let t0 = std::time::Instant::now();
    // Read the events before opening the transaction: on SQLite the transaction holds the
    // database's write lock, and waiting for a second pooled connection while writers hold
    // every connection (waiting for that lock) deadlocks until the busy timeout.
    let from = unlocked_min_checkpoint(db, names).await?;
    let events = read(db, from, batch).await?;
    let t1 = std::time::Instant::now();
    let mut tx = db.begin().await?;
    let checkpoints = lock_checkpoints(&mut tx, names).await?;
    if checkpoints.values().any(|&position| position < from) {
        // A rebuild reset a checkpoint between the read and the lock: what we read starts
        // too late for it. The next round reads again.
        return Ok(0);
    }
    let t2 = std::time::Instant::now();
    let Some(last) = events.last().map(|e| e.position) else {
        return Ok(0);
    };
    let count = events.len();
    let items = items(events);
    let t3 = std::time::Instant::now();
    let mut spent = Vec::new();
    for name in names {
        let tn = std::time::Instant::now();
        let after = checkpoints.get(*name).copied().unwrap_or(0);
        if after >= last {
            continue;
        }
        let slice: Vec<&Item> = items.iter().filter(|i| i.log.position > after).collect();
        match *name {
            Invoices::NAME => apply::<Invoices>(&mut tx, &slice).await?,
            Timeline::NAME => apply::<Timeline>(&mut tx, &slice).await?,
            Failures::NAME => apply::<Failures>(&mut tx, &slice).await?,
            Connections::NAME => apply::<Connections>(&mut tx, &slice).await?,
            Customers::NAME => apply::<Customers>(&mut tx, &slice).await?,
            other => return Err(StoreError::Corrupt(format!("unknown projection {other}"))),
        }
        save_checkpoint(&mut tx, name, last).await?;
        spent.push((name.to_string(), tn.elapsed().as_millis()));
    }
    let t4 = std::time::Instant::now();
    tx.commit().await?;
    // Where a batch's time goes (RUST_LOG=bling_ledger::projections=debug).
    tracing::debug!(
        events = count,
        read_ms = (t1 - t0).as_millis() as u64,
        lock_ms = (t2 - t1).as_millis() as u64,
        decode_ms = (t3 - t2).as_millis() as u64,
        apply_ms = ?spent,
        commit_ms = t4.elapsed().as_millis() as u64,
        "projection batch"
    );
    Ok(count)
}

/// Rows of one keyed view, loaded for a batch and written back once each.
pub(crate) struct Working<R> {
    rows: HashMap<Vec<String>, Slot<R>>,
    /// Keys of the rows written to, in first-touch order (so writes go in a stable order).
    touched: Vec<Vec<String>>,
}

struct Slot<R> {
    /// `None` while a reducer holds the row (between `take` and `put`), or for a key whose
    /// row does not exist yet.
    row: Option<R>,
    touched: bool,
}

impl<R: Stored> Working<R> {
    async fn load(tx: &mut Tx, keys: Vec<Vec<String>>) -> Result<Self, StoreError> {
        let mut unique = Vec::new();
        let mut seen = HashSet::new();
        for k in keys {
            if seen.insert(k.clone()) {
                unique.push(k);
            }
        }
        let rows = load::<R>(tx, &unique)
            .await?
            .into_iter()
            .map(|r| {
                let key = r.key();
                let slot = Slot {
                    row: Some(r),
                    touched: false,
                };
                (key, slot)
            })
            .collect();
        Ok(Self {
            rows,
            touched: Vec::new(),
        })
    }

    /// An empty view, for a rebuild: every row comes from the replayed events.
    fn empty() -> Self {
        Self {
            rows: HashMap::new(),
            touched: Vec::new(),
        }
    }

    fn get(&self, key: &[String]) -> Option<&R> {
        self.rows.get(key).and_then(|slot| slot.row.as_ref())
    }

    fn take(&mut self, key: &[String]) -> Option<R> {
        self.rows.get_mut(key).and_then(|slot| slot.row.take())
    }

    /// Stores `row` under `key` (its own key) and marks it written.
    fn put(&mut self, key: Vec<String>, row: R) {
        match self.rows.get_mut(&key) {
            Some(slot) => {
                slot.row = Some(row);
                if !slot.touched {
                    slot.touched = true;
                    self.touched.push(key);
                }
            }
            None => {
                self.touched.push(key.clone());
                self.rows.insert(
                    key,
                    Slot {
                        row: Some(row),
                        touched: true,
                    },
                );
            }
        }
    }

    /// Stores `row` under `key` without marking it written.
    fn keep(&mut self, key: &[String], row: R) {
        match self.rows.get_mut(key) {
            Some(slot) => slot.row = Some(row),
            None => {
                self.rows.insert(
                    key.to_vec(),
                    Slot {
                        row: Some(row),
                        touched: false,
                    },
                );
            }
        }
    }

    /// The rows written to, in first-touch order.
    fn touched(&self) -> Vec<&R> {
        self.touched.iter().filter_map(|k| self.get(k)).collect()
    }

    async fn flush(self, tx: &mut Tx) -> Result<(), StoreError> {
        write(tx, &self.touched()).await
    }
}

fn key2(a: &str, b: &str) -> Vec<String> {
    vec![a.to_string(), b.to_string()]
}

/// One projection to the runner and the rebuild: the keyed rows it keeps, the rows it only
/// appends, which row an event touches, and how a batch folds into them (with the pure
/// reducers of the `projections` crate). The live runner loads the touched rows, folds and
/// writes them back ([`apply`]); the rebuild folds into empty rows held in memory and writes
/// them once. A new view is one more implementation, nothing else.
pub(crate) trait View {
    const NAME: &'static str;
    /// The rows the view keeps by key, loaded for a batch and written back once each.
    type Row: Stored;
    /// The rows the view only inserts (timeline entries, failures). A view that appends
    /// nothing names its own row type and returns none.
    type Appended: Stored;
    /// The key of the kept row `item` touches, if it touches one.
    fn key(item: &Item) -> Option<Vec<String>>;
    /// Folds `items` into `rows`; returns the rows to append.
    fn fold(rows: &mut Working<Self::Row>, items: &[&Item]) -> Vec<Self::Appended>;
}

/// Applies a batch to one view inside the batch's transaction.
async fn apply<V: View>(tx: &mut Tx, items: &[&Item]) -> Result<(), StoreError> {
    let keys = items.iter().filter_map(|i| V::key(i)).collect();
    let mut rows = Working::<V::Row>::load(tx, keys).await?;
    let appended = V::fold(&mut rows, items);
    rows.flush(tx).await?;
    if appended.is_empty() {
        return Ok(());
    }
    let refs: Vec<&V::Appended> = appended.iter().collect();
    write(tx, &refs).await
}

/// Invoice sync state, one row per invoice.
pub(crate) struct Invoices;

impl View for Invoices {
    const NAME: &'static str = projections::invoices::NAME;
    type Row = projections::invoices::InvoiceSync;
    type Appended = Self::Row;

    fn key(item: &Item) -> Option<Vec<String>> {
        match &item.domain {
            Domain::Invoice { invoice_id, .. } => Some(key2(&item.log.tenant, invoice_id)),
            _ => None,
        }
    }

    fn fold(rows: &mut Working<Self::Row>, items: &[&Item]) -> Vec<Self::Appended> {
        for item in items {
            if let Domain::Invoice { invoice_id, event } = &item.domain {
                let key = key2(&item.log.tenant, invoice_id);
                let current = rows.take(&key);
                if let Some(row) =
                    projections::invoices::apply(current, &item.log, invoice_id, event)
                {
                    rows.put(key, row);
                }
            }
        }
        Vec::new()
    }
}

/// Customer sync state, one row per customer.
pub(crate) struct Customers;

impl View for Customers {
    const NAME: &'static str = projections::customers::NAME;
    type Row = projections::customers::CustomerSync;
    type Appended = Self::Row;

    fn key(item: &Item) -> Option<Vec<String>> {
        match &item.domain {
            Domain::Customer { customer_id, .. } => Some(key2(&item.log.tenant, customer_id)),
            _ => None,
        }
    }

    fn fold(rows: &mut Working<Self::Row>, items: &[&Item]) -> Vec<Self::Appended> {
        for item in items {
            if let Domain::Customer { customer_id, event } = &item.domain {
                let key = key2(&item.log.tenant, customer_id);
                let current = rows.take(&key);
                if let Some(row) =
                    projections::customers::apply(current, &item.log, customer_id, event)
                {
                    rows.put(key, row);
                }
            }
        }
        Vec::new()
    }
}

/// Connection status, one row per tenant.
pub(crate) struct Connections;

impl View for Connections {
    const NAME: &'static str = projections::connections::NAME;
    type Row = projections::connections::ConnectionStatus;
    type Appended = Self::Row;

    fn key(item: &Item) -> Option<Vec<String>> {
        matches!(item.domain, Domain::Connection { .. }).then(|| vec![item.log.tenant.clone()])
    }

    fn fold(rows: &mut Working<Self::Row>, items: &[&Item]) -> Vec<Self::Appended> {
        for item in items {
            if let Domain::Connection { event } = &item.domain {
                let key = vec![item.log.tenant.clone()];
                let current = rows.take(&key);
                rows.put(
                    key,
                    projections::connections::apply(current, &item.log, event),
                );
            }
        }
        Vec::new()
    }
}

/// The timeline: an entry per event, and each tenant's connection state at that moment.
pub(crate) struct Timeline;

impl View for Timeline {
    const NAME: &'static str = projections::timeline::NAME;
    type Row = projections::timeline::TenantConnection;
    type Appended = projections::timeline::Entry;

    fn key(item: &Item) -> Option<Vec<String>> {
        (!matches!(item.domain, Domain::Other)).then(|| vec![item.log.tenant.clone()])
    }

    fn fold(tenants: &mut Working<Self::Row>, items: &[&Item]) -> Vec<Self::Appended> {
        use projections::timeline::{apply, TenantConnection};
        let mut entries = Vec::with_capacity(items.len());
        for item in items {
            if matches!(item.domain, Domain::Other) {
                continue;
            }
            let key = std::slice::from_ref(&item.log.tenant);
            let mut connection = tenants
                .take(key)
                .unwrap_or_else(|| TenantConnection::new(&item.log.tenant));
            // Only connection events move the state.
            let before =
                matches!(item.domain, Domain::Connection { .. }).then(|| connection.state.clone());
            if let Some(entry) = apply(&mut connection, &item.log, &item.domain) {
                entries.push(entry);
            }
            // Only a changed state is written: a missing row means "never connected".
            match before {
                Some(before) if connection.state != before => tenants.put(key.to_vec(), connection),
                _ => tenants.keep(key, connection),
            }
        }
        entries
    }
}

/// The failure audit: a row per failure, and the invoices it knows (for their numbers).
pub(crate) struct Failures;

impl View for Failures {
    const NAME: &'static str = projections::failures::NAME;
    type Row = projections::failures::InvoiceRef;
    type Appended = projections::failures::Failure;

    fn key(item: &Item) -> Option<Vec<String>> {
        projections::failures::needs_invoice(&item.domain).map(|id| key2(&item.log.tenant, id))
    }

    fn fold(known: &mut Working<Self::Row>, items: &[&Item]) -> Vec<Self::Appended> {
        use projections::failures::{apply, Change};
        let mut failures = Vec::new();
        for item in items {
            let key = match &item.domain {
                Domain::Invoice { invoice_id, .. } => Some(key2(&item.log.tenant, invoice_id)),
                _ => None,
            };
            let current = key.as_ref().and_then(|k| known.get(k));
            match apply(current, &item.log, &item.domain) {
                Some(Change::Invoice(r)) => known.put(r.key(), r),
                Some(Change::Failure(f)) => failures.push(f),
                None => {}
            }
        }
        failures
    }
}
