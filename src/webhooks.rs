//! Bling talks back: the webhook intake's shared state and the processor that applies stored
//! deliveries (the HTTP side is `api::webhooks`, the rows `store::webhooks`, the NF-e and
//! order logic `sync::nfe`).
//!
//! Invariants:
//! - the intake answers 2xx only after the delivery is stored; everything else happens here,
//!   later, so an answer never waits for Bling or for the ledger (Bling wants one in 5 s);
//! - the processor confirms with a `GET` what a delivery announces and records the state
//!   Bling shows now, so duplicates and reordering leave one outcome;
//! - processing yields to ingest: deliveries are taken in lots (after a round that found some,
//!   it waits [`GATHER`] for more), and through a backlog it rests as long as each round took,
//!   so it holds the database and the cores at most half of the time;
//! - a delivery for a company no tenant has is kept (`unknown_company`) and taken up again
//!   when a tenant connects with that company;
//! - unsigned or wrongly signed deliveries are never stored as deliveries (anyone can send
//!   them). Support sees them from any process, at a bounded cost whatever the rate: they
//!   gather in memory (at most [`rows::REFUSALS_KEPT`] rows and a count per source and
//!   reason) and are written as one lot at most once every [`REFUSAL_FLUSH`] (the newest
//!   1,000 rows and the counts are kept in the database, `store::webhooks`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aggregates::connection::{ConnectionCommand, NfeMode};
use aggregates::ids::TenantId;
use aggregates::invoice::{NfeStatus, OrderFacts, Source};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::bling::client::BlingClient;
use crate::bling::webhooks::Envelope;
use crate::ledger::{Actor, CommandContext, Ledger};
use crate::store::webhooks::{self as rows, Due};
use crate::store::{now_ms, Db, StoreError};
use crate::sync::nfe::{self, Read};
use crate::sync::queue::{self, Kind};

/// After a round that found a few deliveries, the wait for more before the next (processing
/// is asynchronous: this delays no answer).
const GATHER: Duration = Duration::from_millis(100);
/// The longest rest between two rounds of a backlog.
const PACE_CAP: Duration = Duration::from_millis(250);
/// Deliveries processed per round.
const BATCH: i64 = 64;
/// A delivery whose invoice is not known yet (the ledger is still recording our own call) is
/// looked at again this many times, waiting longer each time, before it is set aside as
/// "nothing of ours".
const NOT_YET_KNOWN_TRIES: i64 = 4;

pub use crate::store::webhooks::Refusal;

/// The longest a refusal waits in memory before it is written (and the shortest time between
/// two writes of refusals: a flood of unsigned requests costs one write a second).
pub const REFUSAL_FLUSH: Duration = Duration::from_secs(1);

/// Refusals not written yet: the newest rows, and the counts per (source, reason) since the
/// last write (both bounded).
#[derive(Default)]
struct PendingRefusals {
    rows: VecDeque<Refusal>,
    counts: std::collections::HashMap<(String, String), rows::RefusalCount>,
}

impl PendingRefusals {
    fn add(&mut self, r: Refusal) {
        let pairs = self.counts.len() as i64;
        let mut key = (r.source.clone(), r.reason.clone());
        if pairs >= rows::REFUSAL_SOURCES_KEPT && !self.counts.contains_key(&key) {
            key.0 = "other".into();
        }
        let count = self
            .counts
            .entry(key)
            .or_insert_with_key(|(source, reason)| rows::RefusalCount {
                source: source.clone(),
                reason: reason.clone(),
                refused: 0,
                first_at_ms: r.at_ms,
                last_at_ms: r.at_ms,
            });
        count.refused += 1;
        count.last_at_ms = r.at_ms;
        if self.rows.len() as i64 >= rows::REFUSALS_KEPT {
            self.rows.pop_front();
        }
        self.rows.push_back(r);
    }
}

/// A delivery for the writer, and where to send what became of it.
type ToStore = (
    rows::OwnedDelivery,
    tokio::sync::oneshot::Sender<Result<rows::Recorded, String>>,
);

/// Most deliveries committed together.
const GROUP: usize = 256;
/// Writers committing lots at the same time (a lot is being written while the next gathers).
const WRITERS: usize = 2;
/// How long a writer holding one delivery waits for others to commit with it. Under a flood
/// this makes lots of several deliveries (one commit each, not one per delivery) for at most
/// this much more answer time; alone, a delivery waits this long before its commit.
const GATHER_WRITES: Duration = Duration::from_millis(2);

/// The intake's state: the app's secret, recent refusals, and the processor's wake-up.
pub struct Webhooks {
    /// The group-commit writer's queue (`None`: write each delivery alone).
    writer: Option<tokio::sync::mpsc::Sender<ToStore>>,
    secret: Option<String>,
    refusals: Mutex<PendingRefusals>,
    /// Wakes the refusals' writer.
    refused: Arc<Notify>,
    wake: Notify,
    /// companyId → tenant, as read from `bling_companies` (known companies only: an unknown
    /// one is asked again each time, so a tenant that connects is found at once).
    companies: Mutex<std::collections::HashMap<String, (String, std::time::Instant)>>,
}

/// How long a known company's tenant is trusted without reading it again.
const COMPANY_TTL: Duration = Duration::from_secs(60);

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("secret", &self.secret.as_ref().map(|_| "…"))
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// `secret`: the Bling app's client secret (deliveries are refused without one).
    pub fn new(secret: Option<String>) -> Arc<Webhooks> {
        Arc::new(Webhooks {
            writer: None,
            secret,
            refusals: Mutex::new(PendingRefusals::default()),
            refused: Arc::new(Notify::new()),
            wake: Notify::new(),
            companies: Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Like [`Webhooks::new`], with a writer that commits concurrent deliveries together:
    /// each is answered once the commit holding it is done, so "stored before answered"
    /// holds, with one commit for many deliveries under a flood.
    pub fn with_writer(secret: Option<String>, db: Db) -> Arc<Webhooks> {
        let (tx, rx) = tokio::sync::mpsc::channel::<ToStore>(4 * GROUP);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..WRITERS {
            let (rx, db) = (Arc::clone(&rx), db.clone());
            tokio::spawn(async move {
                loop {
                    let mut batch = Vec::new();
                    {
                        let mut rx = rx.lock().await;
                        let Some(first) = rx.recv().await else {
                            return;
                        };
                        batch.push(first);
                        let gathered_by = tokio::time::Instant::now() + GATHER_WRITES;
                        while batch.len() < GROUP {
                            match rx.try_recv() {
                                Ok(more) => batch.push(more),
                                Err(_) => {
                                    match tokio::time::timeout_at(gathered_by, rx.recv()).await {
                                        Ok(Some(more)) => batch.push(more),
                                        _ => break,
                                    }
                                }
                            }
                        }
                    }
                    let rows: Vec<rows::NewDelivery<'_>> =
                        batch.iter().map(|(d, _)| d.borrowed()).collect();
                    let result = rows::record_all(&db, &rows).await;
                    drop(rows);
                    match result {
                        Ok(recorded) => {
                            for ((_, reply), r) in batch.into_iter().zip(recorded) {
                                let _ = reply.send(Ok(r));
                            }
                        }
                        Err(e) => {
                            let e = e.to_string();
                            for (_, reply) in batch {
                                let _ = reply.send(Err(e.clone()));
                            }
                        }
                    }
                }
            });
        }
        let hooks = Arc::new(Webhooks {
            writer: Some(tx),
            secret,
            refusals: Mutex::new(PendingRefusals::default()),
            refused: Arc::new(Notify::new()),
            wake: Notify::new(),
            companies: Mutex::new(std::collections::HashMap::new()),
        });
        // The refusals' writer holds the intake weakly: it ends with it.
        let weak = Arc::downgrade(&hooks);
        let refused = Arc::clone(&hooks.refused);
        tokio::spawn(async move {
            loop {
                if weak.strong_count() == 0 {
                    return;
                }
                if tokio::time::timeout(Duration::from_secs(30), refused.notified())
                    .await
                    .is_err()
                {
                    continue;
                }
                tokio::time::sleep(REFUSAL_FLUSH).await;
                let Some(hooks) = weak.upgrade() else { return };
                if let Err(e) = hooks.flush_refusals(&db).await {
                    tracing::warn!(error = %e, "refused webhook deliveries could not be written");
                }
            }
        });
        hooks
    }

    /// Stores a delivery (through the writer when there is one); returns once it is committed.
    pub async fn store(&self, db: &Db, d: rows::OwnedDelivery) -> Result<rows::Recorded, String> {
        match &self.writer {
            Some(writer) => {
                let (reply, answer) = tokio::sync::oneshot::channel();
                writer
                    .send((d, reply))
                    .await
                    .map_err(|_| "the delivery writer stopped".to_string())?;
                answer
                    .await
                    .map_err(|_| "the delivery writer stopped".to_string())?
            }
            None => rows::record(db, &d.borrowed())
                .await
                .map_err(|e| e.to_string()),
        }
    }

    pub fn secret(&self) -> Option<&[u8]> {
        self.secret.as_deref().map(str::as_bytes)
    }

    /// Notes a refused delivery (written within [`REFUSAL_FLUSH`], with others).
    pub fn refuse(&self, refusal: Refusal) {
        self.refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(refusal);
        self.refused.notify_one();
    }

    /// Writes the refusals gathered so far (the listing calls it first, so a refusal this
    /// process just saw is listed at once). A failed write drops them (they are bounded and
    /// unverified) and says why.
    pub async fn flush_refusals(&self, db: &Db) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut *self.refusals.lock().unwrap_or_else(|p| p.into_inner()));
        let kept: Vec<Refusal> = pending.rows.into_iter().collect();
        let counts: Vec<rows::RefusalCount> = pending.counts.into_values().collect();
        rows::record_refusals(db, &kept, &counts).await
    }

    /// The tenant whose Bling account is `company_id` (cached for known companies).
    pub async fn tenant_of(&self, db: &Db, company_id: &str) -> Result<Option<String>, StoreError> {
        {
            let cache = self.companies.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((tenant, at)) = cache.get(company_id) {
                if at.elapsed() < COMPANY_TTL {
                    return Ok(Some(tenant.clone()));
                }
            }
        }
        let tenant = rows::company_tenant(db, company_id).await?;
        let mut cache = self.companies.lock().unwrap_or_else(|p| p.into_inner());
        match &tenant {
            Some(t) => {
                if cache.len() > 100_000 {
                    cache.clear();
                }
                cache.insert(
                    company_id.to_string(),
                    (t.clone(), std::time::Instant::now()),
                );
            }
            None => {
                cache.remove(company_id);
            }
        }
        Ok(tenant)
    }

    /// Tells the processor a delivery is waiting.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Reads the tenant's Bling company (`GET /empresas/me/dados-basicos`) and records it on the
/// connection and in the company table; deliveries that waited for it are taken up again.
pub async fn identify_company(
    db: &Db,
    ledger: &Ledger,
    client: &BlingClient,
    tenant: &TenantId,
) -> Result<String, String> {
    let empresa = client
        .empresa(tenant)
        .await
        .into_result()
        .map_err(|e| e.to_string())?;
    if empresa.id.is_empty() {
        return Err("Bling answered no company id".into());
    }
    let ctx = CommandContext::new(tenant.clone(), "identify-company", Actor::System);
    ledger
        .execute_connection(
            &ctx,
            ConnectionCommand::RecordCompany {
                company_id: empresa.id.clone(),
                name: empresa.nome.clone(),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    rows::record_company(db, &empresa.id, tenant.as_str(), &empresa.nome)
        .await
        .map_err(|e| e.to_string())?;
    Ok(empresa.id)
}

/// Applies stored deliveries.
pub struct Processor {
    pub db: Db,
    pub ledger: Arc<Ledger>,
    pub client: BlingClient,
    pub hooks: Arc<Webhooks>,
    /// How often to look for due deliveries when nothing wakes it.
    pub poll: Duration,
}

/// (tenant, Bling order id) → its invoice, looked up for a lot of deliveries at once.
type Known = std::collections::HashMap<(String, i64), Option<String>>;

/// What processing a delivery came to.
enum Step {
    Done(&'static str, String),
    Later(Duration, String),
}

impl Processor {
    pub fn spawn(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if *stop.borrow() {
                    return;
                }
                let started = std::time::Instant::now();
                match self.round().await {
                    Ok(n) if n as i64 >= BATCH => {
                        // A backlog (a flood): rest as long as the round took, so processing
                        // takes at most half of the time and the database's and the cores'
                        // other half stays with ingest and the intake.
                        tokio::time::sleep(started.elapsed().min(PACE_CAP)).await;
                        continue;
                    }
                    Ok(0) => {}
                    Ok(_) => {
                        // Some, not a full lot: let more gather before the next round, so a
                        // steady stream is processed in lots rather than a round per delivery.
                        tokio::time::sleep(GATHER).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "webhook processing failed; retrying"),
                }
                tokio::select! {
                    _ = self.hooks.wake.notified() => {}
                    _ = tokio::time::sleep(self.poll) => {}
                    _ = stop.changed() => {}
                }
            }
        })
    }

    /// Processes the deliveries due now; returns how many it looked at.
    pub async fn round(&self) -> Result<usize, StoreError> {
        let due = rows::due(&self.db, BATCH).await?;
        let n = due.len();
        // The invoices of the orders the lot is about, one query per tenant (most deliveries
        // of a flood are about orders that are not the ledger's).
        let mut orders: std::collections::HashMap<&str, Vec<i64>> = Default::default();
        for d in &due {
            if let (Some(tenant), Some(id), true) = (
                d.tenant.as_deref(),
                d.resource_id,
                d.event.starts_with("order."),
            ) {
                orders.entry(tenant).or_default().push(id);
            }
        }
        let mut known = Known::new();
        for (tenant, ids) in orders {
            let found = rows::invoices_of_orders(&self.db, tenant, &ids).await?;
            for id in ids {
                known.insert((tenant.to_string(), id), found.get(&id).cloned());
            }
        }
        let mut settled: Vec<(i64, &'static str, Option<&str>, String)> = Vec::new();
        let mut again: Vec<(i64, i64, String)> = Vec::new();
        for d in &due {
            let (state, detail) = match self.process(d, &known).await {
                Ok(Step::Done(state, detail)) => (state, detail),
                Ok(Step::Later(wait, detail)) => {
                    again.push((d.id, now_ms() + wait.as_millis() as i64, detail));
                    continue;
                }
                Err(e) => {
                    if d.attempts + 1 >= NOT_YET_KNOWN_TRIES * 2 {
                        ("failed", e.to_string())
                    } else {
                        again.push((d.id, now_ms() + 2000, e.to_string()));
                        continue;
                    }
                }
            };
            settled.push((d.id, state, d.tenant.as_deref(), detail));
        }
        // One statement each for the lot's outcomes and its deliveries to look at again.
        rows::settle_all(&self.db, &settled).await?;
        rows::later_all(&self.db, &again).await?;
        Ok(n)
    }

    async fn process(&self, d: &Due, known: &Known) -> Result<Step, StoreError> {
        let env = match Envelope::parse(d.body.as_bytes()) {
            Ok(e) => e,
            Err(e) => return Ok(Step::Done("failed", format!("unreadable envelope: {e}"))),
        };
        let tenant = match &d.tenant {
            Some(t) => Some(t.clone()),
            None => rows::company_tenant(&self.db, &d.company_id).await?,
        };
        let Some(tenant) = tenant.and_then(|t| TenantId::parse(&t).ok()) else {
            return Ok(Step::Done(
                "unknown_company",
                format!("no tenant is connected to Bling company {}", d.company_id),
            ));
        };
        let Some(resource_id) = env.resource_id() else {
            return Ok(Step::Done("ignored", "no data.id in the payload".into()));
        };
        let correlation = format!("webhook:{}", env.event_id);
        let later = |what: String| {
            let wait = Duration::from_secs(d.attempts.clamp(0, 4) as u64 + 1);
            if d.attempts + 1 >= NOT_YET_KNOWN_TRIES {
                Step::Done("ignored", format!("{what}: not ours"))
            } else {
                Step::Later(wait, format!("{what} yet; looking again"))
            }
        };
        match env.resource() {
            "invoice" => {
                let Some(invoice_id) =
                    rows::invoice_of_nfe(&self.db, tenant.as_str(), resource_id).await?
                else {
                    return Ok(later(format!("no invoice has NF-e {resource_id}")));
                };
                let invoice = self.ledger.invoice(&tenant, &invoice_id).await?;
                // Our own send is in flight: its answer carries SEFAZ's reason, let it land.
                let send_due = invoice.nfe_status == Some(NfeStatus::Generated)
                    && self.ledger.connection(&tenant).await?.nfe_mode == NfeMode::GenerateAndSend;
                if send_due && d.attempts < 2 {
                    return Ok(Step::Later(
                        Duration::from_secs(2),
                        "our own send of this NF-e is in flight".into(),
                    ));
                }
                let read = nfe::observe_nfe(
                    &self.ledger,
                    &self.client,
                    &tenant,
                    &invoice_id,
                    resource_id,
                    Source::Webhook,
                    None,
                    send_due,
                    &correlation,
                    Vec::new(),
                )
                .await?;
                Ok(self.outcome(read, &invoice_id))
            }
            "order" => {
                // Our orders carry our invoice id as `numeroLoja`: an order without one of ours
                // is not the ledger's, and needs no look-up again.
                let numero_loja = env
                    .data
                    .get("numeroLoja")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("")
                    .trim()
                    .to_string();
                let linked = match known.get(&(tenant.as_str().to_string(), resource_id)) {
                    Some(found) => found.clone(),
                    None => rows::invoice_of_order(&self.db, tenant.as_str(), resource_id).await?,
                };
                let Some(invoice_id) = linked else {
                    if env.action() == "deleted" || numero_loja.is_empty() {
                        return Ok(Step::Done(
                            "ignored",
                            format!("Bling order {resource_id} is not one of the ledger's"),
                        ));
                    }
                    let ours = self
                        .ledger
                        .invoice(&tenant, &numero_loja)
                        .await
                        .map(|i| i.is_billed());
                    if !matches!(ours, Ok(true)) {
                        return Ok(Step::Done(
                            "ignored",
                            format!("Bling order {resource_id} (numeroLoja {numero_loja:?}) is not one of the ledger's"),
                        ));
                    }
                    return Ok(later(format!(
                        "invoice {numero_loja} has no Bling order {resource_id}"
                    )));
                };
                // Our own sync of this order is under way: what Bling shows may be our change
                // half-recorded. Look once it is done.
                if let Some(job) =
                    queue::get_job(&self.db, tenant.as_str(), Kind::Invoice, &invoice_id).await?
                {
                    if job.state == "pending" && d.attempts < NOT_YET_KNOWN_TRIES {
                        return Ok(Step::Later(
                            Duration::from_secs(1),
                            "the ledger's own sync of this order is pending".into(),
                        ));
                    }
                }
                if env.action() == "created" {
                    // The ledger created this order: its creation cannot show anyone else's
                    // change (a later `updated` would).
                    return Ok(Step::Done(
                        "processed",
                        format!(
                            "invoice {invoice_id}: the ledger's own order {resource_id} created"
                        ),
                    ));
                }
                let invoice = self.ledger.invoice(&tenant, &invoice_id).await?;
                // What the delivery says (`total` in reais with centavos, as Bling writes it).
                let announced = (env.action() != "deleted").then(|| OrderFacts {
                    situacao_id: env
                        .data
                        .pointer("/situacao/id")
                        .and_then(serde_json::Value::as_i64),
                    total: env
                        .data
                        .get("total")
                        .and_then(serde_json::Value::as_f64)
                        .map(|t| (t * 100.0).round() as i64),
                });
                let read = nfe::check_order(
                    &self.ledger,
                    &self.client,
                    &tenant,
                    &invoice_id,
                    &invoice,
                    resource_id,
                    announced,
                    Source::Webhook,
                    &correlation,
                )
                .await?;
                Ok(self.outcome(read, &invoice_id))
            }
            other => Ok(Step::Done(
                "ignored",
                format!("resource {other} is not followed"),
            )),
        }
    }

    fn outcome(&self, read: Read, invoice_id: &str) -> Step {
        match read {
            Read::Settled(text) => Step::Done("processed", format!("invoice {invoice_id}: {text}")),
            Read::Undecided(text) => {
                Step::Done("processed", format!("invoice {invoice_id}: {text}"))
            }
            Read::Missing => Step::Done(
                "processed",
                format!("invoice {invoice_id}: the resource is no longer in Bling"),
            ),
            Read::Transient(text) => Step::Later(
                Duration::from_secs(5),
                format!("Bling could not be read: {text}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(i: usize) -> Refusal {
        Refusal {
            at_ms: i as i64,
            source: format!("10.0.{}.{}", i / 256, i % 256),
            reason: "signature_missing".into(),
            claimed_company_id: None,
            claimed_event_id: None,
            claimed_event: None,
            bytes: 10,
        }
    }

    #[test]
    fn refusals_waiting_in_memory_stay_bounded() {
        let mut pending = PendingRefusals::default();
        for i in 0..3000 {
            pending.add(refusal(i));
        }
        assert_eq!(pending.rows.len() as i64, rows::REFUSALS_KEPT);
        assert_eq!(
            pending.rows.back().map(|r| r.at_ms),
            Some(2999),
            "the newest kept"
        );
        assert_eq!(
            pending.counts.len() as i64,
            rows::REFUSAL_SOURCES_KEPT + 1,
            "a thousand sources and `other`"
        );
        let total: i64 = pending.counts.values().map(|c| c.refused).sum();
        assert_eq!(total, 3000, "every refusal counted");
        let other = &pending.counts[&("other".to_string(), "signature_missing".to_string())];
        assert_eq!(other.refused, 2000);
    }
}
