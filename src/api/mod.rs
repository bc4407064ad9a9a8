//! The HTTP API (axum). Routes:
//! - `/v1/tenants/{tenant}/customers/{id}` and `/v1/tenants/{tenant}/invoices/{id}…`: ingest;
//! - `/v1/tenants/{tenant}/customers/{id}/forget`: LGPD erasure, administrators only
//!   (`crate::erasure`);
//! - `/v1/tenants/{tenant}/endpoints…`, `/changes`, `/connection/reconnect-link`: outbound
//!   notifications, the change feed and self-service reconnect links (`crate::notify`);
//!   `/reconnect/{tenant}/{link}`: the shop owner's page, no token (the link is signed);
//! - `/health`, `/metrics`;
//! - `/`, `/console.js`, `/console.css`: the support console's static page (see [`console`]).
//!
//! Every route but `/health`, `/metrics` and the console's static files needs a bearer token
//! (see [`crate::auth`]).
//!
//! Every refusal has the one JSON error shape ([`error`]): handlers answer with [`ApiError`],
//! path parameters go through [`ApiPath`], and [`json_errors`] turns whatever axum answers on
//! its own (405 with its `Allow`, a rejection's plain text) into that shape. Only the OAuth
//! callback, a page for the shop's browser, answers in HTML.

pub mod answers;
mod audit;
pub mod body;
mod causes;
mod changes;
mod connection;
mod console;
mod endpoints;
mod erasure;
pub mod error;
mod ingest;
mod reconnect;
mod replay;
mod support;
mod webhooks;

use std::sync::Arc;
use std::time::Instant;

use aggregates::ids::TenantId;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::auth::{Principal, TokenRegistry};
use crate::ledger::Ledger;
use crate::metrics::{Metrics, Sample};
use crate::store::{log, Db};
use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub ledger: Arc<Ledger>,
    pub tokens: Arc<TokenRegistry>,
    pub metrics: Arc<Metrics>,
    /// The Bling connection, when a Bling app is configured.
    pub auth: Option<Arc<crate::oauth::BlingAuth>>,
    /// The sync worker, woken after each accepted change.
    pub sync: Option<Arc<crate::sync::SyncWorker>>,
    /// Outbound notifications, the change feed and reconnect links.
    pub notify: Arc<crate::notify::Notifier>,
    /// The checkpoint signing key, when one is configured.
    pub signing: Option<Arc<crate::audit::checkpoint::SigningKey>>,
    /// Bling's webhooks: the intake's secret, refusals, the processor's wake-up.
    pub webhooks: Arc<crate::webhooks::Webhooks>,
}

impl AppState {
    /// Tells the sync worker there is new work, so it does not wait for its next poll.
    pub fn wake_sync(&self) {
        if let Some(worker) = &self.sync {
            worker.wake();
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        Ok(state.tokens.authenticate(header)?)
    }
}

/// Longest request target (path and query) accepted: 8 KiB. Every route's path is short
/// (ids are at most 64 characters) and the longest query, the support searches, is a few
/// hundred bytes; a longer URI is a mistake or an attack and gets 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Longest `X-Request-Id` (and `Idempotency-Key`, see [`body`]) accepted.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Whether a header value is 1 to `max` visible ASCII characters (no space, no control).
pub fn is_visible_ascii(value: &[u8], max: usize) -> bool {
    !value.is_empty() && value.len() <= max && value.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// The correlation id of a request: the caller's `X-Request-Id`, or a fresh one. A value
/// that is not 1 to 128 visible ASCII characters is refused with 400: it is stored with
/// every event the request appends.
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.headers.get("x-request-id") {
            None => Ok(RequestId(uuid::Uuid::new_v4().to_string())),
            Some(v) if is_visible_ascii(v.as_bytes(), MAX_REQUEST_ID_LEN) => Ok(RequestId(
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )),
            Some(_) => Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "invalid_header",
                "X-Request-Id",
                format!("must be 1 to {MAX_REQUEST_ID_LEN} visible ASCII characters"),
            )),
        }
    }
}

/// axum's `Path`, refusing in the API's error shape and naming the parameter. Every path
/// parameter of this API is an id, so a segment that is not UTF-8 once percent-decoded
/// (`%FF`) gets the ids' rule as its problem.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    use axum::extract::path::ErrorKind;
    match rejection {
        PathRejection::FailedToDeserializePathParams(e) => {
            let field = match e.kind() {
                ErrorKind::InvalidUtf8InPathParam { key }
                | ErrorKind::ParseErrorAtKey { key, .. }
                | ErrorKind::DeserializeError { key, .. } => key.clone(),
                _ => "path".to_string(),
            };
            ApiError::field(
                StatusCode::BAD_REQUEST,
                "invalid_path",
                &field,
                aggregates::ids::InvalidId.to_string(),
            )
        }
        other => {
            tracing::error!(error = %other, "a route extracts parameters it does not have");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the server could not read this route's parameters",
            )
        }
    }
}

/// Parses a path segment into an id, or answers 400 naming it.
pub fn path_id<T>(
    raw: &str,
    field: &str,
    parse: fn(&str) -> Result<T, aggregates::ids::InvalidId>,
) -> Result<T, ApiError> {
    parse(raw).map_err(|e| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            field,
            e.to_string(),
        )
    })
}

pub fn tenant_id(raw: &str) -> Result<TenantId, ApiError> {
    path_id(raw, "tenant", TenantId::parse)
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(ingest::routes())
        .merge(audit::routes())
        .merge(causes::routes())
        .merge(connection::routes())
        .merge(console::routes())
        .merge(support::routes())
        .merge(replay::routes())
        .merge(endpoints::routes())
        .merge(changes::routes())
        .merge(reconnect::routes())
        .merge(webhooks::routes())
        .merge(erasure::routes())
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(body::MAX_BODY_BYTES))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(limit_uri))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// 414 for a request target longer than [`MAX_URI_BYTES`]. (hyper itself answers a bare 414
/// above 64 KiB, before any of this runs.)
async fn limit_uri(request: Request, next: Next) -> Response {
    let len = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if len > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("request targets (path and query) are limited to {MAX_URI_BYTES} bytes"),
        )
        .into_response();
    }
    next.run(request).await
}

/// Gives every refusal the API's error shape: an error response that is neither JSON nor a
/// page (axum's own 405, a rejection's plain text) is rewritten, keeping its status and
/// headers (`Allow` on a 405).
async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/json") || content_type.starts_with("text/html") {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNAUTHORIZED => "unauthenticated",
        StatusCode::FORBIDDEN => "forbidden",
        s if s.is_server_error() => "internal_error",
        _ => "bad_request",
    };
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        let allowed = parts
            .headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        format!("{method} is not allowed on this path (allowed: {allowed})")
    } else {
        text.unwrap_or_else(|| status.canonical_reason().unwrap_or("refused").to_string())
    };
    let mut rewritten = ApiError::new(status, code, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().append(name, value.clone());
        }
    }
    rewritten.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    rewritten
}

async fn health(State(state): State<AppState>) -> Response {
    match log::head_position(&state.db).await {
        Ok(position) => Json(answers::Healthy {
            database: state.db.backend_name(),
            log_head: position,
            status: "ok",
        })
        .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(answers::Unhealthy {
                database: state.db.backend_name(),
                error: e.to_string(),
                status: "unavailable",
            }),
        )
            .into_response(),
    }
}

/// `/metrics`: the counters kept in memory, and gauges read now from the store (each a
/// small indexed query: work not done by state, the token budget's window, the connected
/// tenants).
async fn metrics(State(state): State<AppState>) -> Response {
    let head = log::head_position(&state.db).await.unwrap_or(-1) as f64;
    let commands = state.ledger.commands_executed() as f64;
    let mut samples = vec![
        Sample::gauge(
            "bling_ledger_log_head_position",
            "Highest global position readable.",
            head,
        ),
        Sample::gauge(
            "bling_ledger_commands_executed",
            "Commands that completed since start.",
            commands,
        ),
    ];
    match crate::sync::queue::depth(&state.db).await {
        Ok(rows) => {
            for wanted in ["pending", "blocked", "failed", "parked"] {
                let n = rows
                    .iter()
                    .find(|(s, _)| s == wanted)
                    .map_or(0, |(_, n)| *n);
                samples.push(
                    Sample::gauge(
                        "bling_ledger_sync_queue_depth",
                        "Sync jobs not done, by state (every process on the database).",
                        n as f64,
                    )
                    .label("state", wanted),
                );
            }
        }
        Err(error) => tracing::warn!(%error, "metrics: cannot read the sync queue"),
    }
    if let Some(worker) = &state.sync {
        samples.push(Sample::gauge(
            "bling_ledger_sync_leases_held",
            "Tenants whose sync lease this process holds now.",
            worker.leases_held() as f64,
        ));
        samples.push(Sample::gauge(
            "bling_ledger_sync_jobs_in_flight",
            "Sync jobs running now in this process.",
            worker.jobs_in_flight() as f64,
        ));
        samples.push(Sample::gauge(
            "bling_ledger_sync_jobs_in_flight_limit",
            "This process's budget of sync jobs in flight (BLING_LEDGER_SYNC_MAX_IN_FLIGHT).",
            worker.max_in_flight() as f64,
        ));
        if let Some(egress) = worker.client().egress_stats() {
            samples.push(Sample::gauge(
                "bling_ledger_bling_egress_limit",
                "This process's Bling calls per second, every shop together: its share of Bling's per-IP limit (BLING_LEDGER_EGRESS_PER_SEC).",
                f64::from(egress.per_sec),
            ));
            samples.push(Sample::counter(
                "bling_ledger_bling_egress_delayed_calls_total",
                "Bling calls that waited for a turn of this process's share of the per-IP limit.",
                egress.delayed_calls as f64,
            ));
            samples.push(Sample::counter(
                "bling_ledger_bling_egress_wait_seconds_total",
                "Time Bling calls spent waiting for this process's share of the per-IP limit.",
                egress.waited_seconds,
            ));
        }
    }
    if let Some(auth) = &state.auth {
        token_samples(auth, &mut samples).await;
    }
    let body = state.metrics.render(&samples);
    ([("content-type", "text/plain; version=0.0.4")], body).into_response()
}

/// The token budget's use and the renewals due.
async fn token_samples(auth: &crate::oauth::BlingAuth, samples: &mut Vec<Sample>) {
    match auth.tokens.budget().used().await {
        Ok(used) => samples.push(Sample::gauge(
            "bling_ledger_token_budget_used",
            "Token-endpoint calls of the whole fleet in the current 60 s window.",
            used as f64,
        )),
        Err(error) => tracing::warn!(%error, "metrics: cannot read the token budget"),
    }
    samples.push(Sample::gauge(
        "bling_ledger_token_budget_limit",
        "Token-endpoint calls allowed per 60 s window (BLING_TOKEN_CALLS_PER_MINUTE).",
        f64::from(auth.settings.token_calls_per_minute.max(1)),
    ));
    samples.push(Sample::counter(
        "bling_ledger_token_endpoint_calls_total",
        "Token-endpoint calls (renewals) this process made.",
        auth.tokens.token_calls() as f64,
    ));
    match auth.tokens.credentials().active_tenants().await {
        Ok(tenants) => samples.push(Sample::gauge(
            "bling_ledger_connected_tenants",
            "Tenants with active Bling credentials.",
            tenants.len() as f64,
        )),
        Err(error) => tracing::warn!(%error, "metrics: cannot read the credentials"),
    }
    match auth.tokens.renewal_demand().await {
        Ok(demand) => {
            samples.push(Sample::gauge(
                "bling_ledger_token_renewals_due",
                "Connections whose renewal is due now (waiting for the budget or the next pass).",
                demand.due_now as f64,
            ));
            samples.push(Sample::gauge(
                "bling_ledger_token_renewals_due_next_hour",
                "Renewals falling due within the next hour, those due now included: the fleet's demand.",
                demand.due_next_hour as f64,
            ));
            samples.push(Sample::gauge(
                "bling_ledger_token_renewals_budget_per_hour",
                "Renewals the token budget allows in an hour (the code-exchange reserve left out).",
                demand.renewals_per_hour as f64,
            ));
        }
        Err(error) => tracing::warn!(%error, "metrics: cannot read the renewal demand"),
    }
}

/// The header a request id travels in, both ways.
const REQUEST_ID: &str = "x-request-id";

/// The tenant of a route under `/v1/tenants/{tenant}`, when the segment is a valid id.
fn tenant_of<'a>(route: &str, path: &'a str) -> Option<&'a str> {
    if !route.starts_with("/v1/tenants/{tenant}") {
        return None;
    }
    path.split('/')
        .nth(3)
        .filter(|raw| TenantId::parse(raw).is_ok())
}

/// One span per request (`http_request`: request id, method, matched route, tenant, then the
/// status and latency), the request counted in `/metrics`, and the request id echoed back.
/// A request without `X-Request-Id` gets a fresh one, which the handler stores with its
/// events; an invalid one is refused by the handlers that read it and is neither logged nor
/// echoed.
async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let request_id = match request.headers().get(REQUEST_ID) {
        None => {
            let mut buffer = uuid::Uuid::encode_buffer();
            let fresh = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buffer);
            let value = HeaderValue::from_str(fresh).ok();
            if let Some(value) = &value {
                request.headers_mut().insert(REQUEST_ID, value.clone());
            }
            value
        }
        Some(v) if is_visible_ascii(v.as_bytes(), MAX_REQUEST_ID_LEN) => Some(v.clone()),
        Some(_) => None,
    };
    let span = tracing::info_span!(
        "http_request",
        request_id = request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
        method = method.as_str(),
        route = route.as_str(),
        tenant = tracing::field::Empty,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    if let Some(tenant) = tenant_of(&route, request.uri().path()) {
        span.record("tenant", tenant);
    }
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    state
        .metrics
        .record_request(method.as_str(), &route, status, elapsed);
    let elapsed_ms = elapsed.as_millis() as u64;
    span.record("status", status);
    span.record("latency_ms", elapsed_ms);
    // An accepted change is in the ledger already (its events carry the request id as their
    // correlation id) and every request is counted in /metrics; a line per accepted request
    // at INFO cost 6 % of the service's CPU at ingest rates (measured). Refused and failed
    // requests leave no other trace, so they are logged by default. The span carries the
    // request id, method, route, tenant, status and latency.
    span.in_scope(|| match status {
        500.. => tracing::warn!("request failed"),
        400..=499 => tracing::info!("request refused"),
        _ => tracing::debug!("request"),
    });
    if let Some(id) = request_id {
        response.headers_mut().insert(REQUEST_ID, id);
    }
    response
}
