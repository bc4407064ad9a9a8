//! What every Bling API call goes through before its handler: bearer-token check, the
//! account's rate limit and daily quota, fault injection; and afterwards the call log.

use crate::sandbox::calllog::CallRecord;
use crate::sandbox::conn::ConnHandle;
use crate::sandbox::error::ApiError;
use crate::sandbox::faults::FaultKind;
use crate::sandbox::limits::Refusal;
use crate::sandbox::oauth::authenticate;
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

/// Brasília's date and the seconds left in it: Bling's daily quota turns at local midnight.
fn brt_day() -> (chrono::NaiveDate, u64) {
    let now = now_brt();
    let today = now.date();
    let secs = today
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(86_400, |midnight| {
            u64::try_from((midnight - now).num_seconds()).unwrap_or(1)
        });
    (today, secs)
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

    let ctx = match authenticate(&shared, req.headers()) {
        Ok(ctx) => ctx,
        Err(e) => {
            let resp = e.into_response();
            let rec = CallRecord::start(&method, &uri, None, None);
            record_call(&shared, rec, Some(resp.status().as_u16()), None, 0, started);
            return resp;
        }
    };
    let rec = CallRecord::start(
        &method,
        &uri,
        Some(ctx.account.clone()),
        Some(ctx.client_id.clone()),
    );

    let (today, secs_left) = brt_day();
    let admitted = shared
        .limits()
        .admit(&ctx.account, Instant::now(), today, secs_left);
    if let Err(refusal) = admitted {
        let e = match refusal {
            Refusal::PerSecond { retry_after_secs } => ApiError::too_many_requests(
                "Limite de requisições por segundo atingido, tente novamente mais tarde",
                retry_after_secs,
            ),
            Refusal::Daily { retry_after_secs } => ApiError::too_many_requests(
                "Limite diário de requisições atingido, tente novamente amanhã",
                retry_after_secs,
            ),
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
