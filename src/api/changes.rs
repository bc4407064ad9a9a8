//! The change feed, for pet-shop systems that prefer to pull:
//! `GET /v1/tenants/{tenant}/changes?after=<cursor>&wait=<seconds>&limit=<n>`.
//!
//! The same payloads as the notifications, in ledger order, from the outbox. The cursor is
//! opaque to the caller (today the ledger position of the last change read): pass the
//! `next_cursor` of one answer as `after` of the next, from any process, after any restart, and
//! nothing is lost or repeated; no `after` starts from the beginning. With `wait` (at most 60 s)
//! an empty answer is held until a change arrives or the time is up (long-poll).
//!
//! Tokens of the ingest (the pet-shop system) or support role, scoped to the tenant.

use std::time::Duration;

use aggregates::ids::TenantId;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiError;
use super::{tenant_id, ApiPath, AppState};
use crate::auth::{Principal, Role};
use crate::store::notify;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/tenants/{tenant}/changes", get(changes))
}

/// The longest long-poll.
const MAX_WAIT_SECS: u64 = 60;
/// How often a waiting request looks again even when this process wrote nothing (another
/// process may have).
const RECHECK: Duration = Duration::from_millis(500);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangesQuery {
    after: Option<String>,
    wait: Option<String>,
    limit: Option<String>,
}

#[derive(Debug, Serialize)]
struct ChangesAnswer {
    /// The notifications' payloads (their keys are sorted, so these are the same bytes a
    /// webhook carries).
    changes: Vec<Value>,
    /// Pass as `after` to read on.
    next_cursor: String,
    tenant: TenantId,
}

fn bad(field: &str, problem: &str) -> ApiError {
    ApiError::field(StatusCode::BAD_REQUEST, "invalid_query", field, problem)
}

async fn changes(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(tenant): ApiPath<String>,
    query: Result<Query<ChangesQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let tenant = tenant_id(&tenant)?;
    principal.require(&[Role::Ingest, Role::Support], Some(&tenant))?;
    let Query(q) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!(
                "the query cannot be read ({}); use after, wait and limit",
                e.body_text()
            ),
        )
    })?;
    let after = match q.after.as_deref() {
        None | Some("") => 0,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| bad("after", "is not a cursor this feed gave (use next_cursor)"))?,
    };
    let wait = match q.wait.as_deref() {
        None => 0,
        Some(raw) => raw
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= MAX_WAIT_SECS)
            .ok_or_else(|| bad("wait", "must be 0 to 60 seconds"))?,
    };
    let limit = match q.limit.as_deref() {
        None => 100,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| bad("limit", "must be 1 to 1000"))?,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let rows = loop {
        let rows = notify::feed(&state.db, tenant.as_str(), after, limit).await?;
        let now = tokio::time::Instant::now();
        if !rows.is_empty() || now >= deadline {
            break rows;
        }
        state.notify.written(RECHECK.min(deadline - now)).await;
    };
    let next_cursor = rows.last().map_or(after, |r| r.position).to_string();
    let changes = rows
        .into_iter()
        .map(|r| serde_json::from_str(&r.payload))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            tracing::error!(error = %e, "a stored notification is not JSON");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "a stored change cannot be read",
            )
        })?;
    Ok(Json(ChangesAnswer {
        changes,
        next_cursor,
        tenant,
    })
    .into_response())
}
