//! The HTTP API (axum). Routes:
//! - `/v1/tenants/{tenant}/customers/{id}` and `/v1/tenants/{tenant}/invoices/{id}…`: ingest;
//! - `/health`, `/metrics`;
//! - `/`, `/console.js`, `/console.css`: the support console's static page (see [`console`]).
//!
//! Every route but `/health`, `/metrics` and the console's static files needs a bearer token
//! (see [`crate::auth`]).

mod audit;
pub mod body;
mod connection;
mod console;
pub mod error;
mod ingest;
mod replay;
mod support;

use std::sync::Arc;
use std::time::Instant;

use aggregates::ids::TenantId;
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::auth::{Principal, TokenRegistry};
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::store::Db;
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

/// The correlation id of a request: the caller's `X-Request-Id`, or a fresh one.
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        Ok(RequestId(id))
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
        .merge(connection::routes())
        .merge(console::routes())
        .merge(support::routes())
        .merge(replay::routes())
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(body::MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .with_state(state)
}

async fn health(State(state): State<AppState>) -> Response {
    match state.db.head_position().await {
        Ok(position) => Json(json!({
            "status": "ok",
            "database": state.db.backend_name(),
            "log_head": position,
        }))
        .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "database": state.db.backend_name(), "error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let head = state.db.head_position().await.unwrap_or(-1) as f64;
    let commands = state.ledger.commands_executed() as f64;
    let body = state.metrics.render(&[
        (
            "bling_ledger_log_head_position",
            "Highest global position readable.",
            head,
        ),
        (
            "bling_ledger_commands_executed",
            "Commands that completed since start.",
            commands,
        ),
    ]);
    ([("content-type", "text/plain; version=0.0.4")], body).into_response()
}

async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    state
        .metrics
        .record_request(&method, &route, status, elapsed);
    let elapsed_ms = elapsed.as_millis() as u64;
    // An accepted change is in the ledger already (its events carry the request id as their
    // correlation id) and every request is counted in /metrics; a line per accepted request
    // at INFO cost 6 % of the service's CPU at ingest rates (measured). Refused and failed
    // requests leave no other trace, so they are logged by default.
    match status {
        500.. => tracing::warn!(%method, %route, status, elapsed_ms, %request_id, "request failed"),
        400..=499 => {
            tracing::info!(%method, %route, status, elapsed_ms, %request_id, "request refused")
        }
        _ => tracing::debug!(%method, %route, status, elapsed_ms, %request_id, "request"),
    }
    response
}
