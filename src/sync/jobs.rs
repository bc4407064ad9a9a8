//! Jobs: make Bling match one customer or one invoice, recording every outcome as an event.
//!
//! A job reads the aggregate's current state and does only what is missing, so it can run
//! any number of times. Creates are the dangerous step (Bling has no idempotency key): a
//! contato is always looked up by document first; a pedido is looked up by our key
//! (`numeroLoja`) whenever a create may already have reached Bling (a durable mark written
//! before the create is sent), which keeps the common path to two calls per invoice.

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
use crate::bling::error::BlingError;
use crate::bling::models::SituacoesDeVenda;
use crate::ledger::{Actor, CommandContext, Ledger};
use crate::store::{now_ms, Db, StoreError};

/// A step that did not work: what to record and what to do next.
struct Failure {
    cause: FailureCause,
    calls: Vec<BlingCall>,
    next: Next,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    Retry,
    Block,
    Fail,
    Park,
}

impl Failure {
    fn from_bling(error: &BlingError, calls: Vec<BlingCall>) -> Failure {
        let next = match error {
            BlingError::Revoked { .. } | BlingError::NotConnected => Next::Park,
            BlingError::Validation { .. } => Next::Block,
            e if e.is_transient() => Next::Retry,
            _ => Next::Fail,
        };
        Failure {
            cause: error.to_failure_cause(),
            calls,
            next,
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
}

impl Executor {
    pub fn new(db: Db, ledger: Arc<Ledger>, client: BlingClient, settings: SyncSettings) -> Self {
        Self {
            db,
            ledger,
            client,
            settings,
            situacoes: Mutex::new(HashMap::new()),
        }
    }

    pub fn client(&self) -> &BlingClient {
        &self.client
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

    /// Runs one job and records where it stands.
    pub async fn run(&self, job: &Job) -> Result<Outcome, StoreError> {
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
        };
        queue::finish(&self.db, job, &outcome).await?;
        Ok(outcome)
    }

    fn outcome(&self, job: &Job, failure: &Failure) -> Outcome {
        let error = format!(
            "{}: {}",
            failure.cause.code(),
            cause_message(&failure.cause)
        );
        match failure.next {
            Next::Retry => {
                let delay = self.settings.retry_delay(job.attempts as usize);
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
        let mut calls = Vec::new();
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
                            .contact_failure(ctx, customer_id, &e, calls, version)
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
                                    .contact_failure(ctx, customer_id, &e, calls, version)
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
                            calls: std::mem::take(&mut calls),
                        },
                    )
                    .await?;
                }
                return self
                    .contact_failure(ctx, customer_id, &e, calls, version)
                    .await;
            }
        }
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
    ) -> Result<Result<i64, Failure>, StoreError> {
        let failure = Failure::from_bling(error, calls);
        if failure.next != Next::Park {
            self.record_contact_failure(ctx, customer_id, &failure, version)
                .await?;
        }
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
        self.ledger
            .execute_invoice(ctx, invoice_id, command)
            .await
            .map(drop)
            .map_err(|e| StoreError::Corrupt(format!("recording on invoice {invoice_id}: {e}")))
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
        let command = match failure.next {
            Next::Park => InvoiceCommand::RecordSyncParked {
                reason: cause_message(&failure.cause),
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
        // Cancelled before it ever reached Bling: there is nothing to cancel there.
        if invoice.cancelled && invoice.bling_order_id.is_none() {
            return Ok(Outcome::Done);
        }
        let Some(customer_id) = invoice.customer_id.clone() else {
            return Ok(Outcome::Done);
        };
        let customer = self.ledger.customer(tenant, customer_id.as_str()).await?;
        let Some(profile) = customer.profile.clone() else {
            return self
                .invoice_failure(&ctx, job, &invoice, Failure::divergent(Problems::new()))
                .await;
        };

        // 1. The customer's contato first: the order needs its id, and a contato update must
        //    land before that customer's next order.
        let contact_id = match (customer.is_synced(), customer.bling_contact_id) {
            (true, Some(id)) => id,
            _ => match self
                .sync_contact(&ctx, customer_id.as_str(), &customer, job)
                .await?
            {
                Ok(id) => id,
                Err(failure) => return self.invoice_failure(&ctx, job, &invoice, failure).await,
            },
        };

        // 2. The pedido.
        let mut invoice = invoice;
        let pedido = mapping::pedido(&job.key, contact_id, profile.person_type(), &content);
        if invoice.bling_order_id.is_none() {
            {
                let mut calls = Vec::new();
                let mut existing = None;
                if job.create_sent || invoice.failed_attempts > 0 {
                    let (found, step) = self
                        .client
                        .find_pedidos_by_numero_loja(tenant, &job.key)
                        .await
                        .into_parts();
                    calls.extend(step);
                    match found {
                        Ok(orders) => existing = orders.into_iter().min_by_key(|o| o.id),
                        Err(e) => {
                            return self
                                .invoice_failure(
                                    &ctx,
                                    job,
                                    &invoice,
                                    Failure::from_bling(&e, calls),
                                )
                                .await
                        }
                    }
                }
                let (order_id, number, created) = match existing {
                    Some(order) => (order.id, Some(order.numero), false),
                    None => {
                        queue::mark_create_sent(&self.db, job).await?;
                        let (created, step) = self
                            .client
                            .create_pedido(tenant, &pedido)
                            .await
                            .into_parts();
                        calls.extend(step);
                        match created {
                            Ok(c) => (c.id, None, true),
                            Err(e) => {
                                return self
                                    .invoice_failure(
                                        &ctx,
                                        job,
                                        &invoice,
                                        Failure::from_bling(&e, calls),
                                    )
                                    .await
                            }
                        }
                    }
                };
                self.record_invoice(
                    &ctx,
                    &job.key,
                    InvoiceCommand::RecordOrderCreated {
                        bling_order_id: order_id,
                        bling_number: number,
                        created,
                        content_version: invoice.content_version,
                        calls,
                    },
                )
                .await?;
                invoice.bling_order_id = Some(order_id);
                if !created {
                    // An adopted order may predate the latest content: send it whole.
                    invoice.synced_version = None;
                } else {
                    invoice.synced_version = Some(invoice.content_version);
                }
            }
        }
        let order_id = invoice.bling_order_id.unwrap_or_default();
        if !invoice.cancelled && invoice.synced_version != Some(invoice.content_version) {
            let (updated, calls) = self
                .client
                .update_pedido(tenant, order_id, &pedido)
                .await
                .into_parts();
            if let Err(e) = updated {
                return self
                    .invoice_failure(&ctx, job, &invoice, Failure::from_bling(&e, calls))
                    .await;
            }
            self.record_invoice(
                &ctx,
                &job.key,
                InvoiceCommand::RecordOrderUpdated {
                    content_version: invoice.content_version,
                    calls,
                },
            )
            .await?;
        }

        // 3. The situação: the one that lets the shop issue the NF-e, or cancelled.
        let wanted = if invoice.cancelled {
            &self.settings.situacao_cancelled
        } else {
            &self.settings.situacao_billed
        };
        let (target, mut calls) = match self.situacao_id(tenant, wanted).await {
            Ok(found) => found,
            Err(failure) => return self.invoice_failure(&ctx, job, &invoice, failure).await,
        };
        if invoice.situacao_id != Some(target) {
            let (changed, step) = self
                .client
                .change_situacao(tenant, order_id, target)
                .await
                .into_parts();
            calls.extend(step);
            if let Err(e) = changed {
                return self
                    .invoice_failure(&ctx, job, &invoice, Failure::from_bling(&e, calls))
                    .await;
            }
            self.record_invoice(
                &ctx,
                &job.key,
                InvoiceCommand::RecordSituacaoChanged {
                    situacao_id: target,
                    situacao_name: wanted.clone(),
                    calls,
                },
            )
            .await?;
        }

        // 4. The NF-e, for shops that want Bling to generate it.
        if !invoice.cancelled && invoice.nfe_id.is_none() && self.settings.generates_nfe(tenant) {
            let (nfe, calls) = self.client.gerar_nfe(tenant, order_id).await.into_parts();
            match nfe {
                Ok(nfe_id) => {
                    self.record_invoice(
                        &ctx,
                        &job.key,
                        InvoiceCommand::RecordNfeGenerated { nfe_id, calls },
                    )
                    .await?
                }
                Err(e) => {
                    return self
                        .invoice_failure(&ctx, job, &invoice, Failure::from_bling(&e, calls))
                        .await
                }
            }
        }
        Ok(Outcome::Done)
    }

    /// The id of the situação named `name` on this tenant's account, discovered once and
    /// cached (ids differ per account; they are never hard-coded).
    async fn situacao_id(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<(i64, Vec<BlingCall>), Failure> {
        let cached = self
            .situacoes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant.as_str())
            .and_then(|s| s.id_of(name));
        if let Some(id) = cached {
            return Ok((id, Vec::new()));
        }
        let (found, calls) = self.client.sales_order_situacoes(tenant).await.into_parts();
        match found {
            Ok(situacoes) => {
                let id = situacoes.id_of(name);
                self.situacoes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(tenant.to_string(), situacoes);
                match id {
                    Some(id) => Ok((id, calls)),
                    None => Err(Failure {
                        cause: FailureCause::BlingRejected {
                            status: 200,
                            error_type: "SITUACAO_NOT_FOUND".into(),
                            message: format!("the Bling account has no sales-order situação named {name:?}"),
                            description: "set BLING_SITUACAO_BILLED / BLING_SITUACAO_CANCELLED to a name the account has".into(),
                            bling_fields: Vec::new(),
                        },
                        calls,
                        next: Next::Fail,
                    }),
                }
            }
            Err(e) => Err(Failure::from_bling(&e, calls)),
        }
    }
}

fn cause_message(cause: &FailureCause) -> String {
    match cause {
        FailureCause::DivergentCustomerRecord { message, .. }
        | FailureCause::AuthorizationExpired { message }
        | FailureCause::AuthorizationRevoked { message }
        | FailureCause::BlingUnavailable { message }
        | FailureCause::RateLimited { message } => message.clone(),
        FailureCause::BlingRejected {
            error_type,
            message,
            ..
        } => format!("{error_type}: {message}"),
    }
}
