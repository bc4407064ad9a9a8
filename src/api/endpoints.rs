//! A tenant's notification endpoints (admin role), and what support sees of their deliveries:
//!
//! - `POST /v1/tenants/{tenant}/endpoints`: `{"url", "event_types": [...], "description"?,
//!   "enabled"?}` → 201 with the endpoint and its signing `secret`, shown this once;
//! - `GET /v1/tenants/{tenant}/endpoints`, `GET|PATCH|DELETE …/endpoints/{endpoint}`;
//! - `GET …/endpoints/{endpoint}/deliveries?state=&limit=` and `…/attempts?limit=` (support);
//! - `GET /v1/tenants/{tenant}/messages/{message}`: one message and every attempt (support);
//! - `POST …/endpoints/{endpoint}/resend`: `{"message_id"}` or `{"from", "to"}` (RFC 3339)
//!   sends one message, or every message created in that range, again from the start of the
//!   retry schedule (support).
//!
//! The answers are declared here (this resource's own shapes), keys in alphabetical order like
//! every answer of the API.

use aggregates::ids::TenantId;
use aggregates::Problems;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::body::parse_json;
use super::error::ApiError;
use super::{tenant_id, ApiPath, AppState};
use crate::auth::{Principal, Role};
use crate::notify::signing;
use crate::notify::types::NotificationType;
use crate::store::notify::{self, AttemptRow, DeliveryRow, EndpointRow};
use crate::store::now_ms;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants/{tenant}/endpoints", get(list).post(create))
        .route(
            "/v1/tenants/{tenant}/endpoints/{endpoint}",
            get(show).patch(update).delete(remove),
        )
        .route(
            "/v1/tenants/{tenant}/endpoints/{endpoint}/deliveries",
            get(deliveries),
        )
        .route(
            "/v1/tenants/{tenant}/endpoints/{endpoint}/attempts",
            get(attempts),
        )
        .route(
            "/v1/tenants/{tenant}/endpoints/{endpoint}/resend",
            post(resend),
        )
        .route("/v1/tenants/{tenant}/messages/{message}", get(message))
}

/// Longest endpoint URL accepted.
const MAX_URL_LEN: usize = 2048;
/// Longest description accepted.
const MAX_DESCRIPTION_LEN: usize = 200;
/// Most endpoints per tenant.
const MAX_ENDPOINTS: usize = 20;

/// An endpoint as the API shows it (never its secret, except once at creation).
#[derive(Debug, Serialize)]
pub struct EndpointAnswer {
    pub created_at: Option<String>,
    pub description: String,
    /// When the ledger disabled it because every attempt failed for too long, and why.
    pub disabled_at: Option<String>,
    pub disabled_reason: Option<String>,
    pub enabled: bool,
    pub event_types: Vec<String>,
    /// Since when every attempt has failed (`null` while it works).
    pub failing_since: Option<String>,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub tenant: String,
    pub url: String,
}

fn time(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

fn answer(row: EndpointRow, show_secret: bool) -> EndpointAnswer {
    EndpointAnswer {
        created_at: time(row.created_at_ms),
        description: row.description,
        disabled_at: row.disabled_at_ms.and_then(time),
        disabled_reason: row.disabled_reason,
        enabled: row.enabled == 1,
        event_types: row
            .event_types
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        failing_since: row.failing_since_ms.and_then(time),
        id: row.id,
        secret: show_secret.then_some(row.secret),
        tenant: row.tenant,
        url: row.url,
    }
}

#[derive(Debug, Serialize)]
struct EndpointsAnswer {
    endpoints: Vec<EndpointAnswer>,
    /// Every type an endpoint may subscribe to.
    event_types: Vec<&'static str>,
    tenant: TenantId,
}

/// The body of a create (every field) or an update (any of them).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointInput {
    url: Option<String>,
    event_types: Option<Vec<String>>,
    description: Option<String>,
    enabled: Option<bool>,
}

fn check_url(raw: &str, problems: &mut Problems) {
    if raw.len() > MAX_URL_LEN {
        problems.add("url", format!("must be at most {MAX_URL_LEN} characters"));
        return;
    }
    match reqwest::Url::parse(raw) {
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            problems.add("url", "must be an http:// or https:// URL")
        }
        Ok(url) if url.host_str().is_none_or(str::is_empty) => {
            problems.add("url", "must name a host")
        }
        Ok(url) if !url.username().is_empty() || url.password().is_some() => problems.add(
            "url",
            "must not carry credentials (receivers verify the signature instead)",
        ),
        Ok(_) => {}
        Err(e) => problems.add("url", format!("is not a URL ({e})")),
    }
}

fn check_types(types: &[String], problems: &mut Problems) {
    if types.is_empty() {
        problems.add(
            "event_types",
            format!(
                "must name at least one type (one of: {})",
                NotificationType::names().join(", ")
            ),
        );
    }
    for (i, t) in types.iter().enumerate() {
        if NotificationType::parse(t).is_none() {
            problems.add(
                format!("event_types[{i}]"),
                format!(
                    "unknown type {t:?} (one of: {})",
                    NotificationType::names().join(", ")
                ),
            );
        } else if types[..i].contains(t) {
            problems.add(
                format!("event_types[{i}]"),
                format!("{t:?} is listed twice"),
            );
        }
    }
}

fn check_description(d: &str, problems: &mut Problems) {
    if d.chars().count() > MAX_DESCRIPTION_LEN {
        problems.add(
            "description",
            format!("must be at most {MAX_DESCRIPTION_LEN} characters"),
        );
    }
    if d.chars().any(char::is_control) {
        problems.add("description", "must not hold control characters");
    }
}

fn endpoint_path(tenant: &str, endpoint: &str) -> Result<(TenantId, String), ApiError> {
    let tenant = tenant_id(tenant)?;
    let ok = endpoint.len() <= 64
        && endpoint.starts_with("ep_")
        && endpoint[3..].bytes().all(|b| b.is_ascii_alphanumeric());
    if !ok {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            "endpoint",
            "an endpoint id is ep_ followed by letters and digits",
        ));
    }
    Ok((tenant, endpoint.to_string()))
}

fn no_such_endpoint() -> ApiError {
    ApiError::field(
        StatusCode::NOT_FOUND,
        "not_found",
        "endpoint",
        "no endpoint with this id in this tenant",
    )
}

async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Response, ApiError> {
    let tenant = tenant_id(&tenant)?;
    principal.require(&[Role::Support], Some(&tenant))?;
    let rows = notify::list_endpoints(&state.db, tenant.as_str()).await?;
    Ok(Json(EndpointsAnswer {
        endpoints: rows.into_iter().map(|r| answer(r, false)).collect(),
        event_types: NotificationType::names(),
        tenant,
    })
    .into_response())
}

async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(tenant): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let tenant = tenant_id(&tenant)?;
    principal.require(&[Role::Admin], Some(&tenant))?;
    let input: EndpointInput = parse_json(body)?;
    let mut problems = Problems::new();
    match &input.url {
        Some(url) => check_url(url, &mut problems),
        None => problems.add("url", "is required"),
    }
    match &input.event_types {
        Some(types) => check_types(types, &mut problems),
        None => problems.add(
            "event_types",
            format!(
                "is required (a list of: {})",
                NotificationType::names().join(", ")
            ),
        ),
    }
    if let Some(d) = &input.description {
        check_description(d, &mut problems);
    }
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let existing = notify::list_endpoints(&state.db, tenant.as_str()).await?;
    if existing.len() >= MAX_ENDPOINTS {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_endpoints",
            format!("a tenant has at most {MAX_ENDPOINTS} endpoints; delete one first"),
        ));
    }
    let now = now_ms();
    let row = EndpointRow {
        id: format!("ep_{}", uuid::Uuid::new_v4().simple()),
        tenant: tenant.to_string(),
        url: input.url.unwrap_or_default(),
        event_types: input.event_types.unwrap_or_default().join(","),
        description: input.description.unwrap_or_default(),
        secret: signing::new_secret(),
        enabled: i64::from(input.enabled.unwrap_or(true)),
        created_at_ms: now,
        updated_at_ms: now,
        failing_since_ms: None,
        disabled_at_ms: None,
        disabled_reason: None,
    };
    notify::insert_endpoint(&state.db, &row).await?;
    tracing::info!(%tenant, endpoint = row.id, by = principal.name, "notification endpoint created");
    Ok((StatusCode::CREATED, Json(answer(row, true))).into_response())
}

async fn show(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((tenant, endpoint)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let (tenant, endpoint) = endpoint_path(&tenant, &endpoint)?;
    principal.require(&[Role::Support], Some(&tenant))?;
    let row = notify::get_endpoint(&state.db, tenant.as_str(), &endpoint)
        .await?
        .ok_or_else(no_such_endpoint)?;
    Ok(Json(answer(row, false)).into_response())
}

async fn update(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((tenant, endpoint)): ApiPath<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (tenant, endpoint) = endpoint_path(&tenant, &endpoint)?;
    principal.require(&[Role::Admin], Some(&tenant))?;
    let input: EndpointInput = parse_json(body)?;
    let mut problems = Problems::new();
    if let Some(url) = &input.url {
        check_url(url, &mut problems);
    }
    if let Some(types) = &input.event_types {
        check_types(types, &mut problems);
    }
    if let Some(d) = &input.description {
        check_description(d, &mut problems);
    }
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let mut row = notify::get_endpoint(&state.db, tenant.as_str(), &endpoint)
        .await?
        .ok_or_else(no_such_endpoint)?;
    if let Some(url) = input.url {
        row.url = url;
    }
    if let Some(types) = input.event_types {
        row.event_types = types.join(",");
    }
    if let Some(d) = input.description {
        row.description = d;
    }
    if let Some(enabled) = input.enabled {
        row.enabled = i64::from(enabled);
    }
    row.updated_at_ms = now_ms();
    if !notify::update_endpoint(&state.db, &row).await? {
        return Err(no_such_endpoint());
    }
    // Enabling may have made deliveries due.
    state.notify.deliverer.wake();
    let row = notify::get_endpoint(&state.db, tenant.as_str(), &endpoint)
        .await?
        .ok_or_else(no_such_endpoint)?;
    Ok(Json(answer(row, false)).into_response())
}

async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((tenant, endpoint)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let (tenant, endpoint) = endpoint_path(&tenant, &endpoint)?;
    principal.require(&[Role::Admin], Some(&tenant))?;
    if !notify::delete_endpoint(&state.db, tenant.as_str(), &endpoint).await? {
        return Err(no_such_endpoint());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    limit: Option<i64>,
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("the query cannot be read: {}", e.body_text()),
        )
    })
}

fn limit(raw: Option<i64>) -> Result<i64, ApiError> {
    match raw.unwrap_or(100) {
        n @ 1..=1000 => Ok(n),
        _ => Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit",
            "must be 1 to 1000",
        )),
    }
}

#[derive(Debug, Serialize)]
struct DeliveriesAnswer {
    deliveries: Vec<DeliveryRow>,
    endpoint: EndpointAnswer,
}

async fn deliveries(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((tenant, endpoint)): ApiPath<(String, String)>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (tenant, endpoint) = endpoint_path(&tenant, &endpoint)?;
    principal.require(&[Role::Support], Some(&tenant))?;
    let q = query(q)?;
    if let Some(s) = &q.state {
        if !matches!(s.as_str(), "pending" | "delivered" | "failed") {
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "state",
                "must be pending, delivered or failed",
            ));
        }
    }
    let limit = limit(q.limit)?;
    let row = notify::get_endpoint(&state.db, tenant.as_str(), &endpoint)
        .await?
        .ok_or_else(no_such_endpoint)?;
    let deliveries = notify::deliveries(
        &state.db,
        tenant.as_str(),
        &endpoint,
        q.state.as_deref(),
        limit,
    )
    .await?;
    Ok(Json(DeliveriesAnswer {
        deliveries,
        endpoint: answer(row, false),
    })
    .into_response())
}

#[derive(Debug, Serialize)]
struct AttemptsAnswer {
    attempts: Vec<AttemptRow>,
}

async fn attempts(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((tenant, endpoint)): ApiPath<(String, String)>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (tenant, endpoint) = endpoint_path(&tenant, &endpoint)?;
    principal.require(&[Role::Support], Some(&tenant))?;
    let q = query(q)?;
    let limit = limit(q.limit)?;
    notify::get_endpoint(&state.db, tenant.as_str(), &endpoint)
        .await?
        .ok_or_else(no_such_endpoint)?;
    let attempts = notify::endpoint_attempts(&state.db, tenant.as_str(), &endpoint, limit).await?;
    Ok(Json(AttemptsAnswer { attempts }).into_response())
}

#[derive(Debug, Serialize)]
struct MessageAnswer {
    attempts: Vec<AttemptRow>,
    id: String,
    payload: Value,
    position: i64,
    r#type: String,
}

async fn message(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((tenant, message)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let tenant = tenant_id(&tenant)?;
    principal.require(&[Role::Support], Some(&tenant))?;
    let row = notify::message(&state.db, tenant.as_str(), &message)
        .await?
        .ok_or_else(|| {
            ApiError::field(
                StatusCode::NOT_FOUND,
                "not_found",
                "message",
                "no message with this id in this tenant",
            )
        })?;
    let attempts = notify::attempts(&state.db, tenant.as_str(), &row.id).await?;
    Ok(Json(MessageAnswer {
        attempts,
        payload: serde_json::from_str(&row.payload).unwrap_or(Value::Null),
        id: row.id,
        position: row.position,
        r#type: row.event_type,
    })
    .into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResendInput {
    message_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

#[derive(Debug, Serialize)]
struct ResendAnswer {
    endpoint_id: String,
    /// The message resent, when one was asked for (a range says only how many).
    message_ids: Vec<String>,
    resent: usize,
}

fn instant(raw: &str, field: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ApiError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                field,
                "must be an RFC 3339 time (2026-12-03T09:00:00Z)",
            )
        })
}

async fn resend(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((tenant, endpoint)): ApiPath<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (tenant, endpoint) = endpoint_path(&tenant, &endpoint)?;
    principal.require(&[Role::Support], Some(&tenant))?;
    let input: ResendInput = parse_json(body)?;
    let row = notify::get_endpoint(&state.db, tenant.as_str(), &endpoint)
        .await?
        .ok_or_else(no_such_endpoint)?;
    let message = match (&input.message_id, &input.from, &input.to) {
        (Some(id), None, None) => notify::message(&state.db, tenant.as_str(), id)
            .await?
            .ok_or_else(|| {
                ApiError::field(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "message_id",
                    "no message with this id in this tenant",
                )
            })?,
        (None, from, to) if from.is_some() || to.is_some() => {
            let required = |v: &Option<String>, field: &str, other: &str| {
                v.clone().ok_or_else(|| {
                    ApiError::field(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "validation_failed",
                        field,
                        format!("is required with {other} (a time range)"),
                    )
                })
            };
            let from = instant(&required(from, "from", "to")?, "from")?;
            let to = instant(&required(to, "to", "from")?, "to")?;
            if from >= to {
                return Err(ApiError::field(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    "to",
                    "must be after from",
                ));
            }
            // A range resends what the endpoint subscribes to.
            let n = notify::resend_between(
                &state.db,
                &row.id,
                tenant.as_str(),
                &row.event_types,
                from,
                to,
                now_ms(),
            )
            .await?;
            state.notify.deliverer.wake();
            tracing::info!(%tenant, endpoint, n, by = principal.name, "notifications resent");
            return Ok((
                StatusCode::ACCEPTED,
                Json(ResendAnswer {
                    endpoint_id: row.id,
                    resent: n as usize,
                    message_ids: Vec::new(),
                }),
            )
                .into_response());
        }
        _ => {
            return Err(ApiError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "message_id",
                "give either message_id, or from and to (a time range)",
            ))
        }
    };
    notify::resend(&state.db, &row.id, &message, now_ms()).await?;
    state.notify.deliverer.wake();
    tracing::info!(%tenant, endpoint, message = message.id, by = principal.name, "notification resent");
    Ok((
        StatusCode::ACCEPTED,
        Json(ResendAnswer {
            endpoint_id: row.id,
            resent: 1,
            message_ids: vec![message.id],
        }),
    )
        .into_response())
}
