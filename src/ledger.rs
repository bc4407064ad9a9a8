//! The command side: runs commands against aggregates stored in the event log, with the
//! metadata every event carries (tenant, correlation, causation, actor, time).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aggregates::connection::BlingConnection;
use aggregates::customer::Customer;
use aggregates::ids::{stream_id, CustomerId, TenantId};
use aggregates::invoice::{CustomerDirectory, Invoice, InvoiceServices};
use async_trait::async_trait;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventStore};

use crate::store::events::{self, AggregateStore};
use crate::store::pg_events;
use crate::store::{Db, StoreError};

/// Who or what caused an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The pet-shop system, through an ingest token (its name).
    Ingest(String),
    /// A support engineer's token.
    Support(String),
    /// An administrator's token, or an operator at the command line (`forget`).
    Admin(String),
    /// The sync worker.
    Worker,
    /// The service itself (token renewal, scheduled work).
    System,
}

impl Actor {
    pub fn as_string(&self) -> String {
        match self {
            Actor::Ingest(name) => format!("ingest:{name}"),
            Actor::Support(name) => format!("support:{name}"),
            Actor::Admin(name) => format!("admin:{name}"),
            Actor::Worker => "worker".to_string(),
            Actor::System => "system".to_string(),
        }
    }
}

/// The context a command runs in; it becomes the metadata of every event the command appends.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub tenant: TenantId,
    /// The pet-shop request (its `X-Request-Id`) or the sync job that led here.
    pub correlation_id: String,
    /// The event that caused this command, when one did (`Type/stream#sequence`).
    pub causation_id: Option<String>,
    pub actor: Actor,
}

impl CommandContext {
    pub fn new(tenant: TenantId, correlation_id: impl Into<String>, actor: Actor) -> Self {
        Self {
            tenant,
            correlation_id: correlation_id.into(),
            causation_id: None,
            actor,
        }
    }

    pub fn caused_by(mut self, causation_id: impl Into<String>) -> Self {
        self.causation_id = Some(causation_id.into());
        self
    }

    fn metadata(&self) -> HashMap<String, String> {
        let mut m = HashMap::with_capacity(5);
        m.insert("tenant".into(), self.tenant.to_string());
        m.insert("correlation_id".into(), self.correlation_id.clone());
        if let Some(c) = &self.causation_id {
            m.insert("causation_id".into(), c.clone());
        }
        m.insert("actor".into(), self.actor.as_string());
        m.insert(
            "recorded_at".into(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        );
        m
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError<E: std::error::Error> {
    #[error(transparent)]
    Domain(E),
    #[error("the {0} was changed concurrently too many times; retry")]
    Conflict(&'static str),
    #[error("storage failed: {0}")]
    Storage(String),
}

/// Commands that lose an optimistic-concurrency race are re-run on fresh state this many times.
const CONFLICT_RETRIES: usize = 5;

/// One aggregate type's event store on the configured backend, and the services its commands
/// need. It does what `cqrs_es::CqrsFramework::execute_with_metadata` does, and also returns the
/// events it appended, so callers can answer with exactly what happened without loading the
/// aggregate a second time.
struct Framework<A: Aggregate> {
    store: AggregateStore<A>,
    services: A::Services,
}

impl<A: Aggregate> Framework<A> {
    fn new(db: &Db, services: A::Services) -> Self {
        Self {
            store: AggregateStore::new(db),
            services,
        }
    }

    async fn execute(
        &self,
        id: &str,
        command: A::Command,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<A::Event>, AggregateError<A::Error>> {
        match &self.store {
            AggregateStore::Postgres(store) => {
                pg_events::on_one_connection(execute_on(
                    store,
                    &self.services,
                    id,
                    command,
                    metadata,
                ))
                .await
            }
            AggregateStore::Sqlite(store) => {
                execute_on(store, &self.services, id, command, metadata).await
            }
        }
    }
}

async fn execute_on<A: Aggregate, ES: EventStore<A>>(
    store: &ES,
    services: &A::Services,
    id: &str,
    command: A::Command,
    metadata: HashMap<String, String>,
) -> Result<Vec<A::Event>, AggregateError<A::Error>> {
    let mut context = store.load_aggregate(id).await?;
    let sink = EventSink::default();
    context
        .aggregate()
        .handle(command, services, &sink)
        .await
        .map_err(AggregateError::UserError)?;
    let events = sink.collect().await;
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let committed = store.commit(events, context, metadata).await?;
    Ok(committed
        .into_iter()
        .map(|envelope| envelope.payload)
        .collect())
}

async fn load<A: Aggregate>(db: &Db, id: &str) -> Result<A, StoreError> {
    let corrupt = |e: AggregateError<A::Error>| StoreError::Corrupt(e.to_string());
    Ok(match AggregateStore::<A>::new(db) {
        AggregateStore::Postgres(store) => {
            let mut context = store.load_aggregate(id).await.map_err(corrupt)?;
            std::mem::take(context.aggregate())
        }
        AggregateStore::Sqlite(store) => {
            let mut context = store.load_aggregate(id).await.map_err(corrupt)?;
            std::mem::take(context.aggregate())
        }
    })
}

/// Answers whether a customer exists, and was not erased, by looking for its stream in the log.
struct LogCustomerDirectory {
    db: Db,
}

#[async_trait]
impl CustomerDirectory for LogCustomerDirectory {
    async fn is_registered(&self, tenant: &TenantId, customer: &CustomerId) -> bool {
        let id = stream_id(tenant, customer.as_str());
        // Inside a command: on the command's own connection (see `store::pg_events`).
        let found = events::customer_registered(&self.db, &id).await;
        // A storage error surfaces on the append that follows; answering "unknown" here keeps
        // a bill from being accepted against a customer we could not see.
        matches!(found, Ok(true))
    }
}

/// The command side of the ledger. Cheap to share: hold it in an `Arc`.
pub struct Ledger {
    db: Db,
    customers: Framework<Customer>,
    invoices: Framework<Invoice>,
    connections: Framework<BlingConnection>,
    appended_commands: AtomicU64,
}

impl Ledger {
    pub fn new(db: Db) -> Arc<Ledger> {
        let directory = Arc::new(LogCustomerDirectory { db: db.clone() });
        Arc::new(Ledger {
            customers: Framework::new(&db, ()),
            invoices: Framework::new(
                &db,
                InvoiceServices {
                    customers: directory,
                },
            ),
            connections: Framework::new(&db, ()),
            db,
            appended_commands: AtomicU64::new(0),
        })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Commands that ran to completion since start (for `/metrics`).
    pub fn commands_executed(&self) -> u64 {
        self.appended_commands.load(Ordering::Relaxed)
    }

    pub async fn customer(&self, tenant: &TenantId, id: &str) -> Result<Customer, StoreError> {
        load(&self.db, &stream_id(tenant, id)).await
    }

    pub async fn invoice(&self, tenant: &TenantId, id: &str) -> Result<Invoice, StoreError> {
        load(&self.db, &stream_id(tenant, id)).await
    }

    pub async fn connection(&self, tenant: &TenantId) -> Result<BlingConnection, StoreError> {
        load(&self.db, tenant.as_str()).await
    }

    pub async fn execute_customer(
        &self,
        ctx: &CommandContext,
        id: &str,
        command: <Customer as Aggregate>::Command,
    ) -> Result<Vec<<Customer as Aggregate>::Event>, LedgerError<<Customer as Aggregate>::Error>>
    {
        self.run(
            &self.customers,
            "customer",
            &stream_id(&ctx.tenant, id),
            command,
            ctx,
        )
        .await
    }

    pub async fn execute_invoice(
        &self,
        ctx: &CommandContext,
        id: &str,
        command: <Invoice as Aggregate>::Command,
    ) -> Result<Vec<<Invoice as Aggregate>::Event>, LedgerError<<Invoice as Aggregate>::Error>>
    {
        self.run(
            &self.invoices,
            "invoice",
            &stream_id(&ctx.tenant, id),
            command,
            ctx,
        )
        .await
    }

    /// The connection's stream id is the tenant itself: one connection per tenant.
    pub async fn execute_connection(
        &self,
        ctx: &CommandContext,
        command: <BlingConnection as Aggregate>::Command,
    ) -> Result<
        Vec<<BlingConnection as Aggregate>::Event>,
        LedgerError<<BlingConnection as Aggregate>::Error>,
    > {
        let id = ctx.tenant.to_string();
        self.run(&self.connections, "connection", &id, command, ctx)
            .await
    }

    async fn run<A>(
        &self,
        framework: &Framework<A>,
        what: &'static str,
        id: &str,
        command: A::Command,
        ctx: &CommandContext,
    ) -> Result<Vec<A::Event>, LedgerError<A::Error>>
    where
        A: Aggregate,
        A::Command: Clone,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match framework.execute(id, command.clone(), ctx.metadata()).await {
                Ok(events) => {
                    self.appended_commands.fetch_add(1, Ordering::Relaxed);
                    return Ok(events);
                }
                Err(AggregateError::UserError(e)) => return Err(LedgerError::Domain(e)),
                // Another command on the same aggregate committed first: decide again on the
                // fresh state, so no event is lost and no rule is bypassed.
                Err(AggregateError::AggregateConflict) if attempt <= CONFLICT_RETRIES => continue,
                Err(AggregateError::AggregateConflict) => return Err(LedgerError::Conflict(what)),
                Err(other) => return Err(LedgerError::Storage(other.to_string())),
            }
        }
    }
}
