//! Support's read API over the projections (role support, or admin; tenant-scoped):
//! - `GET /v1/tenants`: the tenants the caller may see, with their connection status;
//! - `GET /v1/tenants/{tenant}/invoices?state=&cause=&q=&limit=&cursor=`: invoices newest
//!   first, filtered by sync state and last cause, searched by number or customer CPF/CNPJ;
//! - `GET /v1/tenants/{tenant}/invoices/{id}`: one invoice's sync state;
//! - `GET /v1/tenants/{tenant}/invoices/{id}/history`: its timeline;
//! - `GET /v1/tenants/{tenant}/failures?cause=&since=&until=&limit=&cursor=`: the failure
//!   audit, newest first;
//! - `GET /v1/tenants/{tenant}/customers/{id}`: a customer's contato sync state.
//!
//! Views are eventually consistent: the runner follows the log within ~200 ms.

use std::collections::HashMap;

use aggregates::ids::{CustomerId, InvoiceId, TenantId};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use super::answers::{FailurePage, InvoicePage, TenantList};
use super::error::ApiError;
use super::{path_id, tenant_id, ApiPath, AppState};
use crate::auth::{Principal, Role, TenantScope};
use crate::projections::queries::{self, FailureFilter, InvoiceFilter, DEFAULT_LIMIT, MAX_LIMIT};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants", get(tenants))
        .route("/v1/tenants/{tenant}/invoices", get(list_invoices))
        .route("/v1/tenants/{tenant}/invoices/{invoice_id}", get(invoice))
        .route(
            "/v1/tenants/{tenant}/invoices/{invoice_id}/history",
            get(history),
        )
        .route("/v1/tenants/{tenant}/failures", get(failures))
        .route(
            "/v1/tenants/{tenant}/customers/{customer_id}",
            get(customer),
        )
}

fn bad(field: &str, problem: impl Into<String>) -> ApiError {
    ApiError::field(StatusCode::BAD_REQUEST, "invalid_query", field, problem)
}

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// Longest value of a query parameter (the search `q` is the only free one; the others are
/// codes, numbers and times).
pub const MAX_PARAM_CHARS: usize = 200;

/// The query parameters, refusing any not in `allowed`, any with a control character (a
/// `%00` would reach the database, which refuses it) and any longer than [`MAX_PARAM_CHARS`].
fn params(raw: Params, allowed: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let Query(map) = raw.map_err(|e| bad("query", e.body_text()))?;
    if let Some((k, _)) = map
        .iter()
        .find(|(k, v)| k.chars().chain(v.chars()).any(char::is_control))
    {
        let field = if k.chars().any(char::is_control) {
            "query"
        } else {
            k.as_str()
        };
        return Err(bad(field, "must not contain control characters"));
    }
    if let Some((k, _)) = map
        .iter()
        .find(|(_, v)| v.chars().count() > MAX_PARAM_CHARS)
    {
        return Err(bad(k, format!("longer than {MAX_PARAM_CHARS} characters")));
    }
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(bad(
            unknown,
            format!("unknown parameter (allowed: {})", allowed.join(", ")),
        ));
    }
    Ok(map
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .collect())
}

fn limit(map: &HashMap<String, String>) -> Result<i64, ApiError> {
    match map.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(raw) => raw
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                bad(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIMIT}"),
                )
            }),
    }
}

fn cursor(map: &HashMap<String, String>) -> Result<Option<i64>, ApiError> {
    map.get("cursor")
        .map(|raw| queries::parse_cursor(raw).map_err(|p| bad("cursor", p)))
        .transpose()
}

fn cause(map: &HashMap<String, String>) -> Result<Option<String>, ApiError> {
    map.get("cause")
        .map(|raw| {
            projections::parse_cause_kind(raw.trim())
                .map(str::to_string)
                .ok_or_else(|| {
                    bad(
                        "cause",
                        format!(
                            "unknown cause (one of: {})",
                            aggregates::sync::FailureCause::CODES.join(", ")
                        ),
                    )
                })
        })
        .transpose()
}

async fn tenants(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<TenantList>, ApiError> {
    principal.require(&[Role::Support], None)?;
    let only = match &principal.scope {
        TenantScope::All => None,
        TenantScope::One(t) => Some(t.as_str().to_string()),
    };
    let list = queries::tenants(&state.db, only.as_deref()).await?;
    let tenants: Vec<Value> = list
        .iter()
        .map(|(t, s)| queries::tenant_json(t, s))
        .collect();
    Ok(Json(TenantList { tenants }))
}

/// What the invoice routes check first: a tenant this support token may read, a valid id.
fn support_invoice(
    principal: &Principal,
    tenant: &str,
    invoice_id: &str,
) -> Result<(TenantId, InvoiceId), ApiError> {
    let tenant = tenant_id(tenant)?;
    principal.require(&[Role::Support], Some(&tenant))?;
    let invoice_id = path_id(invoice_id, "invoice_id", InvoiceId::parse)?;
    Ok((tenant, invoice_id))
}

async fn invoice(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((tenant, invoice_id)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (tenant, invoice_id) = support_invoice(&principal, &tenant, &invoice_id)?;
    match queries::invoice(&state.db, tenant.as_str(), invoice_id.as_str()).await? {
        Some(row) => Ok(Json(queries::invoice_json(&row))),
        None => Err(ApiError::not_found(format!(
            "no invoice {invoice_id} in tenant {tenant}"
        ))),
    }
}

async fn history(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((tenant, invoice_id)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (tenant, invoice_id) = support_invoice(&principal, &tenant, &invoice_id)?;
    match queries::history(&state.db, tenant.as_str(), invoice_id.as_str()).await? {
        Some(h) => Ok(Json(queries::history_json(&h))),
        None => Err(ApiError::not_found(format!(
            "no invoice {invoice_id} in tenant {tenant}"
        ))),
    }
}

async fn customer(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((tenant, customer_id)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let tenant = tenant_id(&tenant)?;
    principal.require(&[Role::Support], Some(&tenant))?;
    let customer_id = path_id(&customer_id, "customer_id", CustomerId::parse)?;
    match queries::customer(&state.db, tenant.as_str(), customer_id.as_str()).await? {
        Some(row) => Ok(Json(queries::customer_json(&row))),
        None => Err(ApiError::not_found(format!(
            "no customer {customer_id} in tenant {tenant}"
        ))),
    }
}

async fn failures(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(tenant): ApiPath<String>,
    raw: Params,
) -> Result<Json<FailurePage>, ApiError> {
    let tenant = tenant_id(&tenant)?;
    principal.require(&[Role::Support], Some(&tenant))?;
    let map = params(raw, &["cause", "since", "until", "limit", "cursor"])?;
    let time = |field: &str, upper: bool| -> Result<Option<i64>, ApiError> {
        map.get(field)
            .map(|raw| {
                crate::audit::parse_time_bound(raw, upper)
                    .map(|t| t.timestamp_millis())
                    .map_err(|p| bad(field, p))
            })
            .transpose()
    };
    let filter = FailureFilter {
        cause: cause(&map)?,
        since_ms: time("since", false)?,
        until_ms: time("until", true)?,
        limit: limit(&map)?,
        before: cursor(&map)?,
    };
    if let (Some(s), Some(u)) = (filter.since_ms, filter.until_ms) {
        if u <= s {
            return Err(bad("until", "must be after since"));
        }
    }
    let page = queries::failures(&state.db, tenant.as_str(), &filter).await?;
    Ok(Json(FailurePage {
        failures: page.items.iter().map(queries::failure_json).collect(),
        next_cursor: page.next_cursor,
        tenant,
    }))
}

async fn list_invoices(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(tenant): ApiPath<String>,
    raw: Params,
) -> Result<Json<InvoicePage>, ApiError> {
    let tenant = tenant_id(&tenant)?;
    principal.require(&[Role::Support], Some(&tenant))?;
    let map = params(raw, &["state", "cause", "q", "limit", "cursor"])?;
    let filter = InvoiceFilter {
        state: map
            .get("state")
            .map(|raw| {
                projections::invoices::SyncState::parse(raw.trim()).ok_or_else(|| {
                    bad(
                        "state",
                        "must be one of pending, synced, failed, parked, cancelled",
                    )
                })
            })
            .transpose()?,
        cause: cause(&map)?,
        q: map.get("q").cloned(),
        limit: limit(&map)?,
        before: cursor(&map)?,
    };
    let page = queries::list_invoices(&state.db, tenant.as_str(), &filter).await?;
    Ok(Json(InvoicePage {
        invoices: page.items.iter().map(queries::invoice_json).collect(),
        next_cursor: page.next_cursor,
        tenant,
    }))
}
