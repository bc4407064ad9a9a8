//! Jobs: make Bling match one customer or one invoice, recording every outcome as an event.
//!
//! A job reads the aggregate's current state and does only what is missing, so it can run
//! any number of times. Creates are the dangerous step (Bling has no idempotency key): a
//! contato is always looked up by document first (`criterio=1`, every contato); a pedido is
//! looked up by our key (`numeroLoja`) whenever a create may already have reached Bling (a
//! durable mark written before the create is sent), which keeps the common path to two calls
//! per invoice.
//!
//! Bling's duplicate-sale guard (code 3, "Informações idênticas a última venda salva") is read
//! as what it is: after a create that may have happened, the order is there (look it up and
//! adopt it); on a `PUT`, the content is already applied. An adopted order is read back and
//! compared with the invoice's current content: it is sent again only when it differs, never
//! as a `PUT` that changes nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aggregates::customer::{Customer, CustomerCommand};
use aggregates::ids::TenantId;
use aggregates::invoice::{Invoice, InvoiceCommand};
use aggregates::sync::{BlingCall, FailureCause};
use aggregates::Problems;

use super::mapping;
use super::queue::{self, Job, Kind, Outcome};
use super::SyncSettings;
use crate::bling::client::BlingClient;
use crate::bling::error::{BlingError, Operation};
use crate::bling::models::{FormaPagamento, PedidoVenda, SituacoesDeVenda};
use crate::erasure::values::PersonalValues;
use crate::ledger::{Actor, CommandContext, Ledger};
use crate::store::{now_ms, Db, StoreError};

/// The outcome's name in metrics and spans: done, retry, blocked, failed, parked or wait.
pub fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Done => "done",
        Outcome::Wait { .. } => "wait",
        Outcome::Retry { .. } => "retry",
        Outcome::Blocked { .. } => "blocked",
        Outcome::Failed { .. } => "failed",
        Outcome::Parked { .. } => "parked",
    }
}

/// A step that did not work: what to record and what to do next.
struct Failure {
    cause: FailureCause,
    calls: Vec<BlingCall>,
    next: Next,
    /// How long Bling's answer says to wait (its 429's period), when it says.
    retry_after: Option<std::time::Duration>,
    /// Bling's word that the account's daily quota is spent, when that is the failure.
    daily_quota: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    Retry,
    Block,
    Fail,
    Park,
}

impl Failure {
    /// Classifies a failed call made for `op`. A refusal of the customer's data waits for a
    /// customer update and a refused order for an invoice update (both are `Block`: the
    /// dispatcher queues the job again when one arrives); set-up problems and other rejections
    /// wait for support (`Fail`, then replay).
    fn from_bling(error: &BlingError, calls: Vec<BlingCall>, op: Operation) -> Failure {
        let cause = error.to_failure_cause(op);
        let next = match (error, &cause) {
            (BlingError::Revoked { .. } | BlingError::NotConnected, _) => Next::Park,
            (
                _,
                FailureCause::DivergentCustomerRecord { .. } | FailureCause::OrderRefused { .. },
            ) => Next::Block,
            (e, _) if e.is_transient() => Next::Retry,
            _ => Next::Fail,
        };
        let retry_after = match error {
            BlingError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        };
        let daily_quota =
            matches!(error, BlingError::RateLimited { daily: true, .. }).then(|| error.to_string());
        Failure {
            cause,
            calls,
            next,
            retry_after,
            daily_quota,
        }
    }

    fn divergent(problems: Problems) -> Failure {
        Failure {
            cause: FailureCause::DivergentCustomerRecord {
                message: format!("the customer record is incomplete for Bling: {problems}"),
                problems: problems.0,
                bling_fields: Vec::new(),
            },
            calls: Vec::new(),
            next: Next::Block,
            retry_after: None,
            daily_quota: None,
        }
    }

    /// The shop's Bling account lacks something only a person can set up.
    fn account_setup(
        setting: &str,
        message: String,
        configure: String,
        calls: Vec<BlingCall>,
    ) -> Failure {
        Failure {
            cause: FailureCause::AccountSetup {
                setting: setting.into(),
                message,
                configure,
                bling_fields: Vec::new(),
            },
            calls,
            next: Next::Fail,
            retry_after: None,
            daily_quota: None,
        }
    }
}

/// Runs jobs against Bling for the worker.
pub struct Executor {
    db: Db,
    ledger: Arc<Ledger>,
    client: BlingClient,
    settings: SyncSettings,
    situacoes: Mutex<HashMap<String, SituacoesDeVenda>>,
    formas: Mutex<HashMap<String, Vec<FormaPagamento>>>,
    /// One discovery of an account's situações or payment methods at a time per tenant: the
    /// tenant's parallel jobs wait for it rather than each asking Bling the same thing.
    discovering: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Look-up-then-create of a contato, one at a time per document: two customers with one
    /// CPF synced in parallel would otherwise both find no contato and both create one. A
    /// tenant's work runs in one process (its lease), so a lock in memory is enough; striped,
    /// so memory stays bounded (two documents rarely share a stripe, and then only wait).
    documents: Vec<tokio::sync::Mutex<()>>,
}

/// Stripes of [`Executor::documents`].
const DOCUMENT_STRIPES: usize = 256;

impl Executor {
    pub fn new(db: Db, ledger: Arc<Ledger>, client: BlingClient, settings: SyncSettings) -> Self {
        Self {
            db,
            ledger,
            client,
            settings,
            situacoes: Mutex::new(HashMap::new()),
            formas: Mutex::new(HashMap::new()),
            discovering: Mutex::new(HashMap::new()),
            documents: (0..DOCUMENT_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    pub fn client(&self) -> &BlingClient {
        &self.client
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn settings(&self) -> &SyncSettings {
        &self.settings
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    fn ctx(job: &Job, tenant: &TenantId) -> CommandContext {
        CommandContext::new(
            tenant.clone(),
            format!(
                "sync:{}:{}:{}",
                job.kind.as_str(),
                job.key,
                job.attempts + 1
            ),
            Actor::Worker,
        )
        .caused_by(format!("position:{}", job.last_position))
    }

    /// Runs one job and records where it stands, in a span carrying ids only (tenant, kind,
    /// customer or invoice id, attempt) and the outcome; the Bling client's per-call events
    /// sit inside it.
    #[tracing::instrument(
        name = "sync_job",
        skip_all,
        fields(
            tenant = job.tenant.as_str(),
            kind = job.kind.as_str(),
            customer_id = job.customer_id.as_str(),
            invoice_id = tracing::field::Empty,
            attempt = job.attempts + 1,
            outcome = tracing::field::Empty,
        )
    )]
    pub async fn run(&self, job: &Job) -> Result<Outcome, StoreError> {
        let span = tracing::Span::current();
        if job.kind == Kind::Invoice {
            span.record("invoice_id", job.key.as_str());
        }
        let outcome = self.run_job(job).await;
        let label = outcome.as_ref().map_or("error", outcome_label);
        span.record("outcome", label);
        // Every outcome is an event in the ledger and a count in /metrics: a line per job
        // only at DEBUG. The outcome's error text may quote Bling on the customer's data, so
        // the line carries the label only.
        match &outcome {
            Ok(_) => tracing::debug!("sync job"),
            Err(error) => tracing::warn!(%error, "sync job could not record its outcome"),
        }
        outcome
    }

    async fn run_job(&self, job: &Job) -> Result<Outcome, StoreError> {
        let Ok(tenant) = TenantId::parse(&job.tenant) else {
            let outcome = Outcome::Failed {
                error: format!("invalid tenant id {:?}", job.tenant),
            };
            queue::finish(&self.db, job, &outcome).await?;
            return Ok(outcome);
        };
        let outcome = match job.kind {
            Kind::Contact => self.contact_job(&tenant, job).await?,
            Kind::Invoice => self.invoice_job(&tenant, job).await?,
            Kind::Nfe => super::nfe::run(self, &tenant, job).await?,
            Kind::Watch => super::watch::run(self, &tenant, job).await?,
        };
        queue::finish(&self.db, job, &outcome).await?;
        Ok(outcome)
    }

    fn outcome(&self, job: &Job, failure: &Failure) -> Outcome {
        let error = format!("{}: {}", failure.cause.code(), failure.cause.message());
        match failure.next {
            Next::Retry => {
                // Bling's 429 says how long (its period): a second, or the next day.
                let delay = failure
                    .retry_after
                    .unwrap_or_else(|| self.settings.retry_delay(job.attempts as usize));
                Outcome::Retry {
                    at_ms: now_ms() + delay.as_millis() as i64,
                    error,
                }
            }
            Next::Block => Outcome::Blocked { error },
            Next::Fail => Outcome::Failed { error },
            Next::Park => Outcome::Parked { error },
        }
    }

    async fn contact_job(&self, tenant: &TenantId, job: &Job) -> Result<Outcome, StoreError> {
        let customer = self.ledger.customer(tenant, &job.key).await?;
        if !customer.is_registered() || customer.is_synced() {
            return Ok(Outcome::Done);
        }
        let ctx = Self::ctx(job, tenant);
        match self.sync_contact(&ctx, &job.key, &customer, job).await? {
            Ok(_) => Ok(Outcome::Done),
            Err(failure) => Ok(self.outcome(job, &failure)),
        }
    }

    /// Makes Bling's contato match the customer, recording the outcome on the customer.
    /// Returns the contato id, or the failure (already recorded, except parking).
    async fn sync_contact(
        &self,
        ctx: &CommandContext,
        customer_id: &str,
        customer: &Customer,
        job: &Job,
    ) -> Result<Result<i64, Failure>, StoreError> {
        let tenant = &ctx.tenant;
        let Some(profile) = customer.profile.as_ref() else {
            return Ok(Err(Failure::divergent(Problems::new())));
        };
        let version = customer.profile_version;
        let readiness = profile.readiness_for_bling();
        if !readiness.is_empty() {
            let failure = Failure::divergent(readiness);
            self.record_contact_failure(ctx, customer_id, &failure, version)
                .await?;
            return Ok(Err(failure));
        }
        let contato = mapping::contato(customer_id, profile);
        // Bling's evidence quotes the values we send (the document in a lookup's path, values
        // in its messages): recorded without them (see `crate::erasure::values`).
        let values = PersonalValues::of([profile]);
        let mut calls = Vec::new();
        let _same_document = match customer.bling_contact_id {
            None => Some(self.document_lock(tenant, profile.tax_id.as_str()).await),
            Some(_) => None,
        };
        let (bling_id, created) = match customer.bling_contact_id {
            Some(id) => (id, None),
            None => {
                let (found, step) = self
                    .client
                    .find_contatos_by_documento(tenant, profile.tax_id.as_str())
                    .await
                    .into_parts();
                calls.extend(step);
                match found {
                    Err(e) => {
                        return self
                            .contact_failure(ctx, customer_id, &e, calls, version, &values)
                            .await
                    }
                    // Two of our customers with one document share one contato.
                    Ok(existing) if !existing.is_empty() => {
                        let id = existing
                            .iter()
                            .map(|c| c.id)
                            .min()
                            .unwrap_or(existing[0].id);
                        (id, Some(false))
                    }
                    Ok(_) => {
                        let (created, step) = self
                            .client
                            .create_contato(tenant, &contato)
                            .await
                            .into_parts();
                        calls.extend(step);
                        match created {
                            Ok(c) => (c.id, Some(true)),
                            Err(e) => {
                                return self
                                    .contact_failure(ctx, customer_id, &e, calls, version, &values)
                                    .await
                            }
                        }
                    }
                }
            }
        };
        // A contato we found, or one that knows an older profile, gets the whole record.
        if created != Some(true) {
            let (updated, step) = self
                .client
                .update_contato(tenant, bling_id, &contato)
                .await
                .into_parts();
            calls.extend(step);
            if let Err(e) = updated {
                if created == Some(false) {
                    // Keep the link even though the update failed: the next attempt updates.
                    self.record_customer(
                        ctx,
                        customer_id,
                        CustomerCommand::RecordContactLinked {
                            bling_contact_id: bling_id,
                            created: false,
                            profile_version: 0,
                            calls: values.withhold(std::mem::take(&mut calls)),
                        },
                    )
                    .await?;
                }
                return self
                    .contact_failure(ctx, customer_id, &e, calls, version, &values)
                    .await;
            }
        }
        let calls = values.withhold(calls);
        let command = match created {
            Some(created) => CustomerCommand::RecordContactLinked {
                bling_contact_id: bling_id,
                created,
                profile_version: version,
                calls,
            },
            None => CustomerCommand::RecordContactUpdated {
                bling_contact_id: bling_id,
                profile_version: version,
                calls,
            },
        };
        self.record_customer(ctx, customer_id, command).await?;
        let _ = job;
        Ok(Ok(bling_id))
    }

    async fn contact_failure(
        &self,
        ctx: &CommandContext,
        customer_id: &str,
        error: &BlingError,
        calls: Vec<BlingCall>,
        version: u64,
        values: &PersonalValues,
    ) -> Result<Result<i64, Failure>, StoreError> {
        let mut failure = Failure::from_bling(error, values.withhold(calls), Operation::Contato);
        failure.cause = values.withhold(failure.cause);
        failure.daily_quota = values.withhold(failure.daily_quota);
        if failure.next != Next::Park {
            self.record_contact_failure(ctx, customer_id, &failure, version)
                .await?;
        }
        self.note_daily_quota(ctx, &failure).await?;
        Ok(Err(failure))
    }

    async fn record_contact_failure(
        &self,
        ctx: &CommandContext,
        customer_id: &str,
        failure: &Failure,
        version: u64,
    ) -> Result<(), StoreError> {
        self.record_customer(
            ctx,
            customer_id,
            CustomerCommand::RecordSyncFailed {
                cause: failure.cause.clone(),
                profile_version: version,
                calls: failure.calls.clone(),
            },
        )
        .await
    }

    async fn record_customer(
        &self,
        ctx: &CommandContext,
        customer_id: &str,
        command: CustomerCommand,
    ) -> Result<(), StoreError> {
        super::lease::ensure_held(&self.db).await?;
        self.ledger
            .execute_customer(ctx, customer_id, command)
            .await
            .map(drop)
            .map_err(|e| StoreError::Corrupt(format!("recording on customer {customer_id}: {e}")))
    }

    async fn record_invoice(
        &self,
        ctx: &CommandContext,
        invoice_id: &str,
        command: InvoiceCommand,
    ) -> Result<(), StoreError> {
        super::lease::ensure_held(&self.db).await?;
        self.ledger
            .execute_invoice(ctx, invoice_id, command)
            .await
            .map(drop)
            .map_err(|e| StoreError::Corrupt(format!("recording on invoice {invoice_id}: {e}")))
    }

    /// A daily 429 from Bling stops the whole account until midnight in Brasília: say so on the
    /// connection, once, so that `status`, the console and the timeline show it.
    async fn note_daily_quota(
        &self,
        ctx: &CommandContext,
        failure: &Failure,
    ) -> Result<(), StoreError> {
        let (Some(evidence), Some(until)) = (
            failure.daily_quota.clone(),
            self.client.day_spent_until(&ctx.tenant),
        ) else {
            return Ok(());
        };
        super::lease::ensure_held(&self.db).await?;
        self.ledger
            .execute_connection(
                ctx,
                aggregates::connection::ConnectionCommand::RecordDailyQuotaExhausted {
                    until,
                    evidence,
                },
            )
            .await
            .map(drop)
            .map_err(|e| StoreError::Corrupt(format!("recording the daily quota: {e}")))
    }

    /// Records the failure on the invoice (parking is recorded once) and says what is next.
    async fn invoice_failure(
        &self,
        ctx: &CommandContext,
        job: &Job,
        invoice: &Invoice,
        failure: Failure,
    ) -> Result<Outcome, StoreError> {
        let outcome = self.outcome(job, &failure);
        self.note_daily_quota(ctx, &failure).await?;
        let command = match failure.next {
            Next::Park => InvoiceCommand::RecordSyncParked {
                reason: failure.cause.message(),
            },
            _ => InvoiceCommand::RecordSyncFailed {
                retry_at: match &outcome {
                    Outcome::Retry { at_ms, .. } => {
                        crate::oauth::credentials::from_ms(*at_ms).into()
                    }
                    _ => None,
                },
                attempt: invoice.failed_attempts + 1,
                cause: failure.cause,
                calls: failure.calls,
            },
        };
        self.record_invoice(ctx, &job.key, command).await?;
        Ok(outcome)
    }

    async fn invoice_job(&self, tenant: &TenantId, job: &Job) -> Result<Outcome, StoreError> {
        let invoice = self.ledger.invoice(tenant, &job.key).await?;
        let Some(content) = invoice.content.clone() else {
            return Ok(Outcome::Done);
        };
        let ctx = Self::ctx(job, tenant);
        if let Some(reason) = &job.resume_reason {
            if invoice.parked || invoice.failed_attempts > 0 {
                self.record_invoice(
                    &ctx,
                    &job.key,
                    InvoiceCommand::RecordSyncResumed {
                        reason: reason.clone(),
                    },
                )
                .await?;
            }
        }
        // A create may have reached Bling without our knowing (a lost answer, a crash): the
        // mark written before every create, or an earlier failed attempt, says so.
        let create_may_have_happened = job.create_sent || invoice.failed_attempts > 0;
        let mut invoice = invoice;
        let mut calls = Vec::new();

        // Cancelled before we know of any order: look for one a lost create left, so that no
        // open order stays in Bling for a cancelled invoice.
        if invoice.cancelled && invoice.bling_order_id.is_none() {
            if !create_may_have_happened {
                return Ok(Outcome::Done);
            }
            match self.find_order(tenant, &job.key, &mut calls).await {
                Ok(None) => return Ok(Outcome::Done),
                Ok(Some(order)) => {
                    self.adopt(&ctx, job, &mut invoice, order, std::mem::take(&mut calls))
                        .await?
                }
                Err(failure) => return self.invoice_failure(&ctx, job, &invoice, failure).await,
            }
        }
        if !invoice.cancelled {
            let Some(customer_id) = invoice.customer_id.clone() else {
                return Ok(Outcome::Done);
            };
            let customer = self.ledger.customer(tenant, customer_id.as_str()).await?;
            let Some(profile) = customer.profile.clone() else {
                let mut problems = Problems::new();
                if customer.erased {
                    // Nothing of an erased customer goes to Bling again.
                    problems.add(
                        "customer",
                        "was erased (LGPD): its personal data no longer exists to send",
                    );
                }
                return self
                    .invoice_failure(&ctx, job, &invoice, Failure::divergent(problems))
                    .await;
            };

            // 1. The customer's contato first: the order needs its id, and a contato update
            //    must land before that customer's next order.
            let contact_id = match (customer.is_synced(), customer.bling_contact_id) {
                (true, Some(id)) => id,
                _ => match self
                    .sync_contact(&ctx, customer_id.as_str(), &customer, job)
                    .await?
                {
                    Ok(id) => id,
                    Err(failure) => {
                        return self.invoice_failure(&ctx, job, &invoice, failure).await
                    }
                },
            };

            // 2. The pedido: found again or created, then brought to the current content.
            let needs_content = invoice.synced_version != Some(invoice.content_version);
            if invoice.bling_order_id.is_none() || needs_content {
                let formas = match self.payment_ids(tenant, &content, &mut calls).await {
                    Ok(ids) => ids,
                    Err(failure) => {
                        return self.invoice_failure(&ctx, job, &invoice, failure).await
                    }
                };
                let pedido = mapping::pedido(
                    &job.key,
                    contact_id,
                    profile.person_type(),
                    &content,
                    &formas,
                );
                if invoice.bling_order_id.is_none() {
                    let found = if create_may_have_happened {
                        match self.find_order(tenant, &job.key, &mut calls).await {
                            Ok(found) => found,
                            Err(failure) => {
                                return self.invoice_failure(&ctx, job, &invoice, failure).await
                            }
                        }
                    } else {
                        None
                    };
                    match found {
                        Some(order) => {
                            self.adopt(&ctx, job, &mut invoice, order, std::mem::take(&mut calls))
                                .await?
                        }
                        None => {
                            if let Err(failure) = self
                                .create_order(&ctx, job, &mut invoice, &pedido, &mut calls)
                                .await?
                            {
                                return self.invoice_failure(&ctx, job, &invoice, failure).await;
                            }
                        }
                    }
                }
                if invoice.synced_version != Some(invoice.content_version) {
                    let order_id = invoice.bling_order_id.unwrap_or_default();
                    let read_back = invoice.synced_version.is_none();
                    match self
                        .bring_to_content(tenant, order_id, &pedido, read_back, &mut calls)
                        .await
                    {
                        Ok(()) => {
                            self.record_invoice(
                                &ctx,
                                &job.key,
                                InvoiceCommand::RecordOrderUpdated {
                                    content_version: invoice.content_version,
                                    calls: std::mem::take(&mut calls),
                                },
                            )
                            .await?;
                            invoice.synced_version = Some(invoice.content_version);
                        }
                        Err(failure) => {
                            return self.invoice_failure(&ctx, job, &invoice, failure).await
                        }
                    }
                }
            }
        }
        let order_id = invoice.bling_order_id.unwrap_or_default();

        // 3. The situação: the one that lets the shop issue the NF-e, or cancelled.
        let wanted = if invoice.cancelled {
            &self.settings.situacao_cancelled
        } else {
            &self.settings.situacao_billed
        };
        let target = match self.situacao_id(tenant, wanted, &mut calls).await {
            Ok(found) => found,
            Err(failure) => return self.invoice_failure(&ctx, job, &invoice, failure).await,
        };
        // Support accepted the situação the shop set in Bling: ours is not pushed over it.
        if invoice.situacao_id != Some(target) && !invoice.accepted_bling_situacao {
            let (changed, step) = self
                .client
                .change_situacao(tenant, order_id, target)
                .await
                .into_parts();
            calls.extend(step);
            if let Err(e) = changed {
                let failure = Failure::from_bling(&e, calls, Operation::Situacao);
                return self.invoice_failure(&ctx, job, &invoice, failure).await;
            }
            self.record_invoice(
                &ctx,
                &job.key,
                InvoiceCommand::RecordSituacaoChanged {
                    situacao_id: target,
                    situacao_name: wanted.clone(),
                    calls: std::mem::take(&mut calls),
                },
            )
            .await?;
        }

        // 4. The NF-e, for shops that want Bling to generate it.
        if !invoice.cancelled && invoice.nfe_id.is_none() && self.settings.generates_nfe(tenant) {
            let (nfe, step) = self.client.gerar_nfe(tenant, order_id).await.into_parts();
            calls.extend(step);
            match nfe {
                Ok(nfe_id) => {
                    self.record_invoice(
                        &ctx,
                        &job.key,
                        InvoiceCommand::RecordNfeGenerated {
                            nfe_id,
                            calls: std::mem::take(&mut calls),
                        },
                    )
                    .await?
                }
                Err(e) => {
                    let failure = Failure::from_bling(&e, calls, Operation::Nfe);
                    return self.invoice_failure(&ctx, job, &invoice, failure).await;
                }
            }
        }
        Ok(Outcome::Done)
    }

    /// The order carrying our key, if Bling has one (the oldest, should a duplicate exist).
    async fn find_order(
        &self,
        tenant: &TenantId,
        invoice_id: &str,
        calls: &mut Vec<BlingCall>,
    ) -> Result<Option<crate::bling::models::PedidoVendaListItem>, Failure> {
        let (found, step) = self
            .client
            .find_pedidos_by_numero_loja(tenant, invoice_id)
            .await
            .into_parts();
        calls.extend(step);
        match found {
            Ok(orders) => Ok(orders.into_iter().min_by_key(|o| o.id)),
            Err(e) => Err(Failure::from_bling(
                &e,
                std::mem::take(calls),
                Operation::Pedido,
            )),
        }
    }

    /// Records an order found in Bling as the invoice's. Its content is unknown until read
    /// back, so the invoice is not synced by this (see [`Self::bring_to_content`]).
    async fn adopt(
        &self,
        ctx: &CommandContext,
        job: &Job,
        invoice: &mut Invoice,
        order: crate::bling::models::PedidoVendaListItem,
        calls: Vec<BlingCall>,
    ) -> Result<(), StoreError> {
        self.record_invoice(
            ctx,
            &job.key,
            InvoiceCommand::RecordOrderCreated {
                bling_order_id: order.id,
                bling_number: Some(order.numero),
                created: false,
                content_version: invoice.content_version,
                calls,
            },
        )
        .await?;
        invoice.bling_order_id = Some(order.id);
        invoice.synced_version = None;
        Ok(())
    }

    /// `POST /pedidos/vendas` behind the durable mark. Bling's code 3 here means an identical
    /// sale is already saved: with our unique `numeroLoja` on every order, that is this
    /// invoice's own order from a create whose answer was lost, so it is found and adopted.
    async fn create_order(
        &self,
        ctx: &CommandContext,
        job: &Job,
        invoice: &mut Invoice,
        pedido: &PedidoVenda,
        calls: &mut Vec<BlingCall>,
    ) -> Result<Result<(), Failure>, StoreError> {
        let tenant = &ctx.tenant;
        queue::mark_create_sent(&self.db, job).await?;
        let (created, step) = self.client.create_pedido(tenant, pedido).await.into_parts();
        calls.extend(step);
        match created {
            Ok(c) => {
                self.record_invoice(
                    ctx,
                    &job.key,
                    InvoiceCommand::RecordOrderCreated {
                        bling_order_id: c.id,
                        bling_number: None,
                        created: true,
                        content_version: invoice.content_version,
                        calls: std::mem::take(calls),
                    },
                )
                .await?;
                invoice.bling_order_id = Some(c.id);
                invoice.synced_version = Some(invoice.content_version);
                Ok(Ok(()))
            }
            Err(e) if e.is_duplicate_sale() => {
                match self.find_order(tenant, &job.key, calls).await {
                    Ok(Some(order)) => {
                        self.adopt(ctx, job, invoice, order, std::mem::take(calls))
                            .await?;
                        Ok(Ok(()))
                    }
                    // Identical to the last sale and yet not ours: Bling's refusal stands.
                    Ok(None) => Ok(Err(Failure::from_bling(
                        &e,
                        std::mem::take(calls),
                        Operation::Pedido,
                    ))),
                    Err(failure) => Ok(Err(failure)),
                }
            }
            Err(e) => Ok(Err(Failure::from_bling(
                &e,
                std::mem::take(calls),
                Operation::Pedido,
            ))),
        }
    }

    /// Makes the order hold `pedido`. An order whose content we do not know (`read_back`: it
    /// was adopted) is read first, and a `PUT` is sent only when its content differs, since
    /// Bling refuses a `PUT` that changes nothing (code 3). An order holding an older version
    /// of ours gets the `PUT` at once; code 3 then means the content is already there.
    async fn bring_to_content(
        &self,
        tenant: &TenantId,
        order_id: i64,
        pedido: &PedidoVenda,
        read_back: bool,
        calls: &mut Vec<BlingCall>,
    ) -> Result<(), Failure> {
        if read_back {
            let (current, step) = self.client.get_pedido(tenant, order_id).await.into_parts();
            calls.extend(step);
            match current {
                Ok(current) if mapping::same_sale(pedido, &current) => return Ok(()),
                Ok(_) => {}
                Err(e) => {
                    return Err(Failure::from_bling(
                        &e,
                        std::mem::take(calls),
                        Operation::Pedido,
                    ))
                }
            }
        }
        let (updated, step) = self
            .client
            .update_pedido(tenant, order_id, pedido)
            .await
            .into_parts();
        calls.extend(step);
        match updated {
            Ok(_) => Ok(()),
            Err(e) if e.is_duplicate_sale() => Ok(()),
            Err(e) => Err(Failure::from_bling(
                &e,
                std::mem::take(calls),
                Operation::Pedido,
            )),
        }
    }

    /// The forma de pagamento id of each installment on this tenant's account, from its
    /// `GET /formas-pagamentos` (read once, then cached; read again when a mapping is missing,
    /// in case the shop has just created the method).
    async fn payment_ids(
        &self,
        tenant: &TenantId,
        content: &aggregates::invoice::InvoiceContent,
        calls: &mut Vec<BlingCall>,
    ) -> Result<Vec<i64>, Failure> {
        let resolve = |formas: &[FormaPagamento]| {
            content
                .installments
                .iter()
                .map(|i| {
                    self.settings.payment_methods.resolve(
                        tenant.as_str(),
                        &i.payment_method,
                        formas,
                    )
                })
                .collect::<Result<Vec<i64>, _>>()
        };
        let lock = self.discovery_lock(tenant);
        let _discovering = lock.lock().await;
        let cached = self
            .formas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant.as_str())
            .map(|formas| resolve(formas));
        if let Some(Ok(ids)) = cached {
            return Ok(ids);
        }
        let (found, step) = self.client.formas_pagamento(tenant).await.into_parts();
        calls.extend(step);
        let formas = match found {
            Ok(formas) => formas,
            Err(e) => {
                return Err(Failure::from_bling(
                    &e,
                    std::mem::take(calls),
                    Operation::FormasPagamento,
                ))
            }
        };
        let resolved = resolve(&formas);
        self.formas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.to_string(), formas);
        resolved.map_err(|unmapped| {
            Failure::account_setup(
                "payment_method",
                unmapped.message,
                unmapped.configure,
                std::mem::take(calls),
            )
        })
    }

    /// Waits for the document's turn to look up and create its contato (see `documents`).
    async fn document_lock(
        &self,
        tenant: &TenantId,
        document: &str,
    ) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (tenant.as_str(), document).hash(&mut hasher);
        let stripe = (hasher.finish() % DOCUMENT_STRIPES as u64) as usize;
        self.documents[stripe].lock().await
    }

    /// The tenant's discovery lock (see `discovering`).
    fn discovery_lock(&self, tenant: &TenantId) -> Arc<tokio::sync::Mutex<()>> {
        self.discovering
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(tenant.to_string())
            .or_default()
            .clone()
    }

    /// The id of the situação named `name` on this tenant's account, discovered once and
    /// cached (ids differ per account; they are never hard-coded).
    async fn situacao_id(
        &self,
        tenant: &TenantId,
        name: &str,
        calls: &mut Vec<BlingCall>,
    ) -> Result<i64, Failure> {
        let lock = self.discovery_lock(tenant);
        let _discovering = lock.lock().await;
        let cached = self
            .situacoes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant.as_str())
            .and_then(|s| s.id_of(name));
        if let Some(id) = cached {
            return Ok(id);
        }
        let (found, step) = self.client.sales_order_situacoes(tenant).await.into_parts();
        calls.extend(step);
        match found {
            Ok(situacoes) => {
                let id = situacoes.id_of(name);
                let names: Vec<String> =
                    situacoes.situacoes.iter().map(|s| s.nome.clone()).collect();
                self.situacoes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(tenant.to_string(), situacoes);
                id.ok_or_else(|| {
                    Failure::account_setup(
                        "situacao",
                        format!("the Bling account has no sales-order situação named {name:?}"),
                        format!(
                            "create the situação {name:?} in Bling (Preferências > Vendas > \
                             Situações) or set BLING_SITUACAO_BILLED / BLING_SITUACAO_CANCELLED \
                             to one the account has ({}), then reprocess",
                            names.join(", ")
                        ),
                        std::mem::take(calls),
                    )
                })
            }
            Err(e) => Err(Failure::from_bling(
                &e,
                std::mem::take(calls),
                Operation::Situacao,
            )),
        }
    }
}
