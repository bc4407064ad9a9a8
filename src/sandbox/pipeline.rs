//! What every Bling call goes through: the IP blocks (every Bling route); for API calls the
//! bearer-token check (with the JWT-only and company-inactive switches), the account's rate
//! limit and daily quota, fault injection; and afterwards the call log.

use crate::sandbox::calllog::CallRecord;
use crate::sandbox::conn::ConnHandle;
use crate::sandbox::error::ApiError;
use crate::sandbox::faults::FaultKind;
use crate::sandbox::limits::{IpRule, Refusal};
use crate::sandbox::oauth::{authenticate, enable_jwt};
use crate::sandbox::state::Shared;
use crate::sandbox::validation::now_brt;
use axum::extract::{ConnectInfo, OriginalUri, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Instant;

pub(crate) const API_PREFIX: &str = "/Api/v3";

/// Who is calling: the Bling account the token was granted for, and the client app.
#[derive(Clone, Debug)]
pub(crate) struct AuthCtx {
    pub account: String,
    pub client_id: String,
}

pub(crate) fn record_call(
    shared: &Shared,
    mut rec: CallRecord,
    status: Option<u16>,
    fault: Option<FaultKind>,
    injected_latency_ms: u64,
    started: Instant,
) {
    rec.status = status;
    rec.fault = fault;
    rec.injected_latency_ms = injected_latency_ms;
    rec.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::debug!(
        account = rec.account.as_deref().unwrap_or("-"),
        method = %rec.method,
        path = %rec.path,
        status = ?rec.status,
        fault = ?rec.fault,
        "sandbox call"
    );
    shared.log().push(rec);
}

/// Brasília's date: the sandbox assumes Bling's daily quota turns at local midnight (the
/// reset time is unpublished).
fn brt_day() -> chrono::NaiveDate {
    now_brt().date()
}

/// Bling's IP blocks, in front of every Bling route (API and OAuth; not the control plane):
/// a blocked IP is refused before anything else, and every answer >= 400 (429s included)
/// counts toward the error rule.
pub(crate) async fn ip_layer(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(ip) = req
        .extensions()
        .get::<ConnectInfo<ConnHandle>>()
        .map(|c| c.0.peer)
    else {
        return next.run(req).await;
    };
    let started = Instant::now();
    if let Err(rule) = shared.limits().ip_arrival(ip, started) {
        let uri = req
            .extensions()
            .get::<OriginalUri>()
            .cloned()
            .unwrap_or_else(|| OriginalUri(req.uri().clone()));
        let description = match rule {
            IpRule::Errors => {
                "IP bloqueado temporariamente por excesso de erros, tente novamente mais tarde."
            }
            IpRule::Requests => {
                "IP bloqueado temporariamente por excesso de requisições, tente novamente mais tarde."
            }
        };
        let mut rec = CallRecord::start(req.method(), &uri, None, None);
        rec.enable_jwt = enable_jwt(req.headers());
        record_call(&shared, rec, Some(429), None, 0, started);
        return ApiError::blocked(description).into_response();
    }
    let resp = next.run(req).await;
    if resp.status().as_u16() >= 400 {
        shared.limits().ip_error(ip, Instant::now());
    }
    resp
}

pub(crate) async fn api_layer(
    State(shared): State<Arc<Shared>>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let uri = req
        .extensions()
        .get::<OriginalUri>()
        .cloned()
        .unwrap_or_else(|| OriginalUri(req.uri().clone()));
    let conn = req
        .extensions()
        .get::<ConnectInfo<ConnHandle>>()
        .map(|c| c.0.clone());

    let jwt = enable_jwt(req.headers());
    let ctx = match authenticate(&shared, req.headers()) {
        Ok(ctx) => ctx,
        Err(e) => {
            let resp = e.into_response();
            let mut rec = CallRecord::start(&method, &uri, None, None);
            rec.enable_jwt = jwt;
            record_call(&shared, rec, Some(resp.status().as_u16()), None, 0, started);
            return resp;
        }
    };
    let mut rec = CallRecord::start(
        &method,
        &uri,
        Some(ctx.account.clone()),
        Some(ctx.client_id.clone()),
    );
    rec.enable_jwt = jwt;

    let admitted = shared
        .limits()
        .admit(&ctx.account, Instant::now(), brt_day());
    if let Err(refusal) = admitted {
        let e = match refusal {
            Refusal::PerSecond { limit } => ApiError::per_second_limit(limit),
            Refusal::Daily { limit } => ApiError::daily_limit(limit),
        };
        let resp = e.into_response();
        record_call(&shared, rec, Some(resp.status().as_u16()), None, 0, started);
        return resp;
    }

    let path = uri.path();
    let rel = path.strip_prefix(API_PREFIX).unwrap_or(path);
    let decision = shared.faults().decide(&ctx.account, method.as_str(), rel);
    let latency_ms = u64::try_from(decision.latency.as_millis()).unwrap_or(u64::MAX);
    if !decision.latency.is_zero() {
        tokio::time::sleep(decision.latency).await;
    }
    // Without the kill switch (never the case when served by `Sandbox`) a drop degrades to a 500.
    let kind = match (decision.kind, &conn) {
        (Some(FaultKind::Drop | FaultKind::ApplyThenDrop), None) => Some(FaultKind::ServerError),
        (k, _) => k,
    };
    match kind {
        Some(FaultKind::ServerError) => {
            let resp = ApiError::server_error().into_response();
            record_call(&shared, rec, Some(500), kind, latency_ms, started);
            return resp;
        }
        Some(FaultKind::Drop) => {
            if let Some(c) = &conn {
                c.kill();
            }
            record_call(&shared, rec, None, kind, latency_ms, started);
            return ApiError::server_error().into_response();
        }
        _ => {}
    }

    req.extensions_mut().insert(ctx);
    let resp = next.run(req).await;
    if kind == Some(FaultKind::ApplyThenDrop) {
        if let Some(c) = &conn {
            c.kill();
        }
        record_call(&shared, rec, None, kind, latency_ms, started);
        return resp;
    }
    record_call(
        &shared,
        rec,
        Some(resp.status().as_u16()),
        None,
        latency_ms,
        started,
    );
    resp
}
