//! Bling talks back, over HTTP:
//! - `POST /webhooks/bling`: Bling's deliveries. No bearer token: the
//!   `X-Bling-Signature-256` HMAC of the raw body (the app's client secret) authenticates
//!   it. A bad or missing signature gets 401 and nothing is stored; a signed delivery is
//!   stored, then answered `202` (a repeated `eventId` too), and processed later;
//! - `GET /v1/tenants/{tenant}/webhooks?limit=&before=`: the tenant's deliveries, newest
//!   first, with their outcome, and the refused ones that claimed its company (support);
//! - `GET /v1/webhooks/unmatched`: deliveries for companies no tenant has, every refusal
//!   kept (the newest 1,000) and the refusals counted per source address and reason (support
//!   or admin without a tenant scope: they name no tenant);
//! - `POST /v1/tenants/{tenant}/invoices/{id}/refresh`: read the invoice's order and NF-e
//!   from Bling now (the order watch's next read, at once);
//! - `PUT /v1/tenants/{tenant}/nfe-mode` `{"mode":"generate_only"|"generate_and_send"}`;
//! - `POST /v1/tenants/{tenant}/invoices/{id}/nfe/retry`: send a rejected NF-e again;
//! - `POST /v1/tenants/{tenant}/invoices/{id}/divergence` `{"choice":"push_ours"|"accept_bling"}`.

use std::collections::HashMap;

use aggregates::connection::{ConnectionCommand, NfeMode};
use aggregates::ids::InvoiceId;
use aggregates::invoice::{DivergenceChoice, InvoiceCommand};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;

use super::body::parse_json;
use super::error::ApiError;
use super::{path_id, tenant_id, ApiPath, AppState};
use crate::auth::{Principal, Role, TenantScope};
use crate::bling::webhooks::{verify, Envelope, SIGNATURE_HEADER};
use crate::ledger::{Actor, CommandContext};
use crate::store::now_ms;
use crate::store::webhooks::{self as rows, OwnedDelivery};
use crate::webhooks::Refusal;

/// Most deliveries listed at once.
pub const MAX_LIST: i64 = 500;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/webhooks/bling", post(intake))
        .route("/v1/tenants/{tenant}/webhooks", get(list))
        .route("/v1/webhooks/unmatched", get(unmatched))
        .route("/v1/tenants/{tenant}/nfe-mode", put(nfe_mode))
        .route(
            "/v1/tenants/{tenant}/invoices/{invoice_id}/nfe/retry",
            post(retry_nfe),
        )
        .route(
            "/v1/tenants/{tenant}/invoices/{invoice_id}/divergence",
            post(resolve_divergence),
        )
        .route(
            "/v1/tenants/{tenant}/invoices/{invoice_id}/refresh",
            post(refresh),
        )
}

fn refused(status: StatusCode, code: &'static str, message: String) -> Response {
    ApiError::new(status, code, message).into_response()
}

/// Bling's delivery. Answers within a database write: no Bling call, no ledger command.
async fn intake(
    State(state): State<AppState>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hooks = &state.webhooks;
    let claimed = Envelope::parse(&body).ok();
    let refusal = |reason: &str| Refusal {
        at_ms: now_ms(),
        source: extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string()),
        reason: reason.to_string(),
        claimed_company_id: claimed.as_ref().map(|e| e.company_id.clone()),
        claimed_event_id: claimed.as_ref().map(|e| e.event_id.clone()),
        claimed_event: claimed.as_ref().map(|e| e.event.clone()),
        bytes: body.len() as i64,
    };
    let Some(secret) = hooks.secret() else {
        hooks.refuse(refusal("no_secret"));
        state.metrics.add("webhook_deliveries_refused", 1);
        return refused(
            StatusCode::UNAUTHORIZED,
            "no_bling_app",
            "no Bling app is configured, so no delivery can be verified".into(),
        );
    };
    let header = headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes());
    if let Err(e) = verify(secret, &body, header) {
        hooks.refuse(refusal(e.code()));
        state.metrics.add("webhook_deliveries_refused", 1);
        return ApiError::field(
            StatusCode::UNAUTHORIZED,
            e.code(),
            "X-Bling-Signature-256",
            e.to_string(),
        )
        .into_response();
    }
    let (Some(envelope), Ok(text)) = (claimed.clone(), std::str::from_utf8(&body)) else {
        let problem = match Envelope::parse(&body) {
            Err(e) => e,
            Ok(_) => "the body is not UTF-8".into(),
        };
        hooks.refuse(refusal("invalid_envelope"));
        state.metrics.add("webhook_deliveries_refused", 1);
        return ApiError::field(StatusCode::BAD_REQUEST, "invalid_envelope", "body", problem)
            .into_response();
    };
    let tenant = match hooks.tenant_of(&state.db, &envelope.company_id).await {
        Ok(t) => t,
        Err(e) => return storage_unavailable(&state, e),
    };
    let delivery = OwnedDelivery {
        event_id: envelope.event_id.clone(),
        company_id: envelope.company_id.clone(),
        tenant: tenant.clone(),
        event: envelope.event.clone(),
        resource_id: envelope.resource_id(),
        body: text.to_string(),
        state: if tenant.is_some() {
            "received"
        } else {
            "unknown_company"
        },
    };
    match hooks.store(&state.db, delivery).await {
        Ok(recorded) => {
            state.metrics.add(
                if recorded.duplicate {
                    "webhook_deliveries_duplicate"
                } else {
                    "webhook_deliveries_accepted"
                },
                1,
            );
            if !recorded.duplicate && tenant.is_some() {
                hooks.wake();
            }
            (
                StatusCode::ACCEPTED,
                Json(json!({
                    "id": recorded.id,
                    "event_id": envelope.event_id,
                    "duplicate": recorded.duplicate,
                    "tenant": tenant,
                })),
            )
                .into_response()
        }
        Err(e) => storage_unavailable(&state, e),
    }
}

/// Not stored, so not acknowledged: Bling retries (this is the one 5xx, and only when the
/// database is down).
fn storage_unavailable(state: &AppState, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "a webhook delivery could not be stored");
    state.metrics.add("webhook_deliveries_unstored", 1);
    refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
        "the delivery could not be stored; Bling will retry".into(),
    )
}

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

fn page(raw: Params) -> Result<(i64, Option<i64>), ApiError> {
    let bad = |field: &str, problem: &str| {
        ApiError::field(StatusCode::BAD_REQUEST, "invalid_query", field, problem)
    };
    let Query(map) = raw.map_err(|e| bad("query", &e.body_text()))?;
    if let Some(k) = map
        .keys()
        .find(|k| !["limit", "before"].contains(&k.as_str()))
    {
        return Err(bad(k, "unknown parameter (limit, before)"));
    }
    let limit = match map.get("limit") {
        None => 100,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIST).contains(n))
            .ok_or_else(|| bad("limit", &format!("must be 1 to {MAX_LIST}")))?,
    };
    let before = match map.get("before") {
        None => None,
        Some(v) => Some(
            v.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad("before", "must be a positive delivery id"))?,
        ),
    };
    Ok((limit, before))
}

async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(tenant): ApiPath<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let tenant = tenant_id(&tenant)?;
    principal.require(&[Role::Support], Some(&tenant))?;
    let (limit, before) = page(params)?;
    let deliveries = rows::list(&state.db, Some(tenant.as_str()), before, limit).await?;
    let connection = state.ledger.connection(&tenant).await?;
    // What this process refused a moment ago is listed too.
    state.webhooks.flush_refusals(&state.db).await?;
    let refused = match &connection.company_id {
        Some(company) => rows::refusals(&state.db, Some(company.as_str()), MAX_LIST).await?,
        None => Vec::new(),
    };
    Ok(Json(json!({
        "tenant": tenant,
        "company_id": connection.company_id,
        "nfe_mode": connection.nfe_mode.as_str(),
        "deliveries": deliveries,
        "next_before": deliveries.last().filter(|_| deliveries.len() as i64 == limit).map(|d| d.id),
        "refused": refused,
    })))
}

async fn unmatched(
    State(state): State<AppState>,
    principal: Principal,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    principal.require(&[Role::Support], None)?;
    if !matches!(principal.scope, TenantScope::All) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "deliveries of unknown companies name no tenant: only a token for all tenants may read them",
        ));
    }
    let (limit, before) = page(params)?;
    let deliveries = rows::list(&state.db, None, before, limit).await?;
    state.webhooks.flush_refusals(&state.db).await?;
    Ok(Json(json!({
        "deliveries": deliveries,
        "refused": rows::refusals(&state.db, None, MAX_LIST).await?,
        "refused_counts": rows::refusal_counts(&state.db).await?,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeInput {
    mode: String,
}

async fn nfe_mode(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(tenant): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let tenant = tenant_id(&tenant)?;
    principal.require(&[Role::Support], Some(&tenant))?;
    let input: ModeInput = parse_json(body)?;
    let mode = NfeMode::parse(&input.mode).ok_or_else(|| {
        ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "mode",
            "must be generate_only or generate_and_send",
        )
    })?;
    let ctx = CommandContext::new(
        tenant.clone(),
        uuid::Uuid::new_v4().to_string(),
        Actor::Support(principal.name.clone()),
    );
    state
        .ledger
        .execute_connection(
            &ctx,
            ConnectionCommand::ChooseNfeMode {
                mode,
                by: principal.name.clone(),
            },
        )
        .await
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "connection", e.to_string()))?;
    Ok(Json(json!({"tenant": tenant, "nfe_mode": mode.as_str()})))
}

async fn support_command(
    state: &AppState,
    principal: &Principal,
    tenant: &str,
    invoice_id: &str,
    command: InvoiceCommand,
) -> Result<(), ApiError> {
    let tenant = tenant_id(tenant)?;
    principal.require(&[Role::Support], Some(&tenant))?;
    let invoice_id = path_id(invoice_id, "invoice_id", InvoiceId::parse)?;
    let ctx = CommandContext::new(
        tenant.clone(),
        uuid::Uuid::new_v4().to_string(),
        Actor::Support(principal.name.clone()),
    );
    state
        .ledger
        .execute_invoice(&ctx, invoice_id.as_str(), command)
        .await
        .map_err(super::ingest::invoice_error)?;
    state.wake_sync();
    Ok(())
}

async fn retry_nfe(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((tenant, invoice_id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let by = principal.name.clone();
    support_command(
        &state,
        &principal,
        &tenant,
        &invoice_id,
        InvoiceCommand::RetryNfe { by },
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"invoice_id": invoice_id, "nfe": "retry requested"})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChoiceInput {
    choice: String,
}

async fn resolve_divergence(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((tenant, invoice_id)): ApiPath<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let input: ChoiceInput = parse_json(body)?;
    let choice = match input.choice.as_str() {
        "push_ours" => DivergenceChoice::PushOurs,
        "accept_bling" => DivergenceChoice::AcceptBling,
        _ => {
            return Err(ApiError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "choice",
                "must be push_ours or accept_bling",
            ))
        }
    };
    let by = principal.name.clone();
    support_command(
        &state,
        &principal,
        &tenant,
        &invoice_id,
        InvoiceCommand::ResolveDivergence { choice, by },
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"invoice_id": invoice_id, "choice": input.choice})),
    )
        .into_response())
}

/// Support asks for a fresh read of the invoice's order and NF-e in Bling now (202): the
/// watch's next read, at once, whatever its schedule; what it finds is recorded as a webhook's
/// would be. 404 when the invoice has no sync work (never billed here).
async fn refresh(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((tenant, invoice_id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let tenant = tenant_id(&tenant)?;
    principal.require(&[Role::Support], Some(&tenant))?;
    let invoice_id = path_id(&invoice_id, "invoice_id", InvoiceId::parse)?;
    let reason = format!("{} asked for a fresh read from Bling", principal.name);
    let found =
        crate::store::sync_work::read_now(&state.db, tenant.as_str(), invoice_id.as_str(), &reason)
            .await?;
    if !found {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "invoice {} has no sync work in tenant {tenant}",
                invoice_id.as_str()
            ),
        ));
    }
    state.wake_sync();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"invoice_id": invoice_id.as_str(), "read": "requested"})),
    )
        .into_response())
}
