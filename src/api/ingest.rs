//! Ingest: the pet-shop system registers customers and bills, updates and cancels invoices.

use aggregates::customer::{CustomerCommand, CustomerError, CustomerEvent, CustomerInput};
use aggregates::ids::{CustomerId, InvoiceId, TenantId};
use aggregates::invoice::{InvoiceCommand, InvoiceError, InvoiceEvent, InvoiceInput};
use aggregates::problems::{text_problem, TextKind};
use aggregates::Problems;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{post, put};
use axum::Router;
use serde::Deserialize;

use super::answers::{CustomerSaved, InvoiceBilled, InvoiceCancelled, InvoiceUpdated};
use super::body::{idempotent, parse_json};
use super::error::ApiError;
use super::{path_id, tenant_id, ApiPath, AppState, RequestId};
use crate::auth::{Principal, Role};
use crate::ledger::{Actor, CommandContext, LedgerError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/tenants/{tenant}/customers/{customer_id}",
            put(save_customer),
        )
        .route(
            "/v1/tenants/{tenant}/invoices/{invoice_id}/bill",
            post(bill_invoice),
        )
        .route(
            "/v1/tenants/{tenant}/invoices/{invoice_id}",
            put(update_invoice),
        )
        .route(
            "/v1/tenants/{tenant}/invoices/{invoice_id}/cancel",
            post(cancel_invoice),
        )
}

fn customer_error(error: LedgerError<CustomerError>) -> ApiError {
    match error {
        LedgerError::Domain(e @ CustomerError::Erased) => {
            ApiError::new(StatusCode::GONE, "customer_erased", e.to_string())
        }
        LedgerError::Domain(e) => {
            ApiError::new(StatusCode::CONFLICT, "customer_conflict", e.to_string())
        }
        LedgerError::Conflict(_) => concurrency(),
        LedgerError::Storage(e) => storage(e),
    }
}

pub(crate) fn invoice_error(error: LedgerError<InvoiceError>) -> ApiError {
    match error {
        LedgerError::Domain(e) => match e {
            InvoiceError::AlreadyBilled => {
                ApiError::new(StatusCode::CONFLICT, "already_billed", e.to_string())
            }
            InvoiceError::NotBilled => {
                ApiError::new(StatusCode::NOT_FOUND, "not_billed", e.to_string())
            }
            InvoiceError::Cancelled => {
                ApiError::new(StatusCode::CONFLICT, "invoice_cancelled", e.to_string())
            }
            InvoiceError::UnknownCustomer(_) | InvoiceError::CustomerChanged(_) => ApiError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "customer_id",
                e.to_string(),
            ),
            InvoiceError::WrongTenant(_) => {
                ApiError::new(StatusCode::CONFLICT, "wrong_tenant", e.to_string())
            }
            InvoiceError::Nfe(_) => ApiError::new(StatusCode::CONFLICT, "nfe_state", e.to_string()),
        },
        LedgerError::Conflict(_) => concurrency(),
        LedgerError::Storage(e) => storage(e),
    }
}

/// What every ingest route checks first: a tenant the token may write to and a valid id.
fn target<T>(
    principal: &Principal,
    tenant: &str,
    id: &str,
    field: &str,
    parse: fn(&str) -> Result<T, aggregates::ids::InvalidId>,
) -> Result<(TenantId, T), ApiError> {
    let tenant = tenant_id(tenant)?;
    principal.require(&[Role::Ingest], Some(&tenant))?;
    Ok((tenant, path_id(id, field, parse)?))
}

/// The raw body, for the idempotency fingerprint (empty when it could not be read).
fn raw(body: &Result<Bytes, BytesRejection>) -> Vec<u8> {
    body.as_ref().map(|b| b.to_vec()).unwrap_or_default()
}

/// Appends an invoice command on behalf of the ingest token and wakes the sync worker.
async fn append_invoice(
    state: &AppState,
    principal: &Principal,
    request_id: String,
    tenant: &TenantId,
    invoice_id: &InvoiceId,
    command: InvoiceCommand,
) -> Result<Vec<InvoiceEvent>, ApiError> {
    let ctx = CommandContext::new(
        tenant.clone(),
        request_id,
        Actor::Ingest(principal.name.clone()),
    );
    let appended = state
        .ledger
        .execute_invoice(&ctx, invoice_id.as_str(), command)
        .await
        .map_err(invoice_error)?;
    state.wake_sync();
    Ok(appended)
}

fn concurrency() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "concurrent_modification",
        "the record was changed by other requests while this one ran; retry",
    )
}

fn storage(error: String) -> ApiError {
    tracing::error!(%error, "append failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
        "the ledger's database is unavailable; nothing was stored, retry later",
    )
}

async fn save_customer(
    State(state): State<AppState>,
    principal: Principal,
    RequestId(request_id): RequestId,
    ApiPath((tenant, customer_id)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (tenant, customer_id) = target(
        &principal,
        &tenant,
        &customer_id,
        "customer_id",
        CustomerId::parse,
    )?;
    let raw = raw(&body);
    let path = format!("/customers/{customer_id}");
    Ok(idempotent(
        &state.db,
        tenant.as_str(),
        &headers,
        ("PUT", &path, &raw),
        || async {
            let input: CustomerInput = parse_json(body)?;
            let profile = input.validate().map_err(ApiError::validation)?;
            let ctx = CommandContext::new(
                tenant.clone(),
                request_id,
                Actor::Ingest(principal.name.clone()),
            );
            let person_type = profile.person_type();
            let tax_id = profile.tax_id.clone();
            let ready_for_bling = profile.readiness_for_bling().is_empty();
            let command = CustomerCommand::Save {
                tenant: tenant.clone(),
                customer_id: customer_id.clone(),
                profile,
            };
            // The answer says exactly what was appended: nothing, a registration or an update.
            let appended = state
                .ledger
                .execute_customer(&ctx, customer_id.as_str(), command)
                .await
                .map_err(customer_error)?;
            let (status, result, changed) = match appended.first() {
                Some(CustomerEvent::CustomerRegistered { .. }) => {
                    (StatusCode::CREATED, "registered", vec![])
                }
                Some(CustomerEvent::CustomerUpdated { changed_fields, .. }) => {
                    (StatusCode::OK, "updated", changed_fields.clone())
                }
                _ => (StatusCode::OK, "unchanged", vec![]),
            };
            let body = CustomerSaved {
                changed_fields: changed,
                customer_id: customer_id.clone(),
                person_type,
                ready_for_bling,
                result,
                tax_id,
                tenant: tenant.clone(),
            };
            state.wake_sync();
            Ok((status, body))
        },
    )
    .await)
}

async fn bill_invoice(
    State(state): State<AppState>,
    principal: Principal,
    RequestId(request_id): RequestId,
    ApiPath((tenant, invoice_id)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (tenant, invoice_id) = target(
        &principal,
        &tenant,
        &invoice_id,
        "invoice_id",
        InvoiceId::parse,
    )?;
    let raw = raw(&body);
    let path = format!("/invoices/{invoice_id}/bill");
    Ok(idempotent(
        &state.db,
        tenant.as_str(),
        &headers,
        ("POST", &path, &raw),
        || async {
            let input: InvoiceInput = parse_json(body)?;
            let bill = input.validate().map_err(ApiError::validation)?;
            let total = bill.content.total;
            let command = InvoiceCommand::Bill {
                tenant: tenant.clone(),
                invoice_id: invoice_id.clone(),
                customer_id: bill.customer_id,
                content: bill.content,
            };
            append_invoice(
                &state,
                &principal,
                request_id,
                &tenant,
                &invoice_id,
                command,
            )
            .await?;
            Ok((
                StatusCode::CREATED,
                InvoiceBilled {
                    invoice_id: invoice_id.clone(),
                    result: "billed",
                    tenant: tenant.clone(),
                    total,
                },
            ))
        },
    )
    .await)
}

async fn update_invoice(
    State(state): State<AppState>,
    principal: Principal,
    RequestId(request_id): RequestId,
    ApiPath((tenant, invoice_id)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (tenant, invoice_id) = target(
        &principal,
        &tenant,
        &invoice_id,
        "invoice_id",
        InvoiceId::parse,
    )?;
    let raw = raw(&body);
    let path = format!("/invoices/{invoice_id}");
    Ok(idempotent(
        &state.db,
        tenant.as_str(),
        &headers,
        ("PUT", &path, &raw),
        || async {
            let input: InvoiceInput = parse_json(body)?;
            let bill = input.validate().map_err(ApiError::validation)?;
            let command = InvoiceCommand::Update {
                tenant: tenant.clone(),
                customer_id: bill.customer_id,
                content: bill.content,
            };
            let appended = append_invoice(
                &state,
                &principal,
                request_id,
                &tenant,
                &invoice_id,
                command,
            )
            .await?;
            let changed = match appended.first() {
                Some(InvoiceEvent::InvoiceUpdated { changed_fields, .. }) => changed_fields.clone(),
                _ => Vec::new(),
            };
            let result = if changed.is_empty() {
                "unchanged"
            } else {
                "updated"
            };
            Ok((
                StatusCode::OK,
                InvoiceUpdated {
                    changed_fields: changed,
                    invoice_id: invoice_id.clone(),
                    result,
                    tenant: tenant.clone(),
                },
            ))
        },
    )
    .await)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelInput {
    reason: Option<String>,
}

async fn cancel_invoice(
    State(state): State<AppState>,
    principal: Principal,
    RequestId(request_id): RequestId,
    ApiPath((tenant, invoice_id)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (tenant, invoice_id) = target(
        &principal,
        &tenant,
        &invoice_id,
        "invoice_id",
        InvoiceId::parse,
    )?;
    let raw = raw(&body);
    let path = format!("/invoices/{invoice_id}/cancel");
    Ok(idempotent(
        &state.db,
        tenant.as_str(),
        &headers,
        ("POST", &path, &raw),
        || async {
            // An empty body means "no reason given".
            let input: CancelInput = match &body {
                Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => CancelInput::default(),
                _ => parse_json(body)?,
            };
            let reason = input
                .reason
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty());
            let mut problems = Problems::new();
            if reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
                problems.add("reason", "longer than 500 characters");
            } else if let Some(problem) = reason
                .as_deref()
                .and_then(|r| text_problem(r, TextKind::MultiLine))
            {
                problems.add("reason", problem);
            }
            if !problems.is_empty() {
                return Err(ApiError::validation(problems));
            }
            let command = InvoiceCommand::Cancel {
                tenant: tenant.clone(),
                reason,
            };
            append_invoice(
                &state,
                &principal,
                request_id,
                &tenant,
                &invoice_id,
                command,
            )
            .await?;
            Ok((
                StatusCode::OK,
                InvoiceCancelled {
                    invoice_id: invoice_id.clone(),
                    result: "cancelled",
                    tenant: tenant.clone(),
                },
            ))
        },
    )
    .await)
}
