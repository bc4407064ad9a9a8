//! Support asks for failed, blocked or parked work to run again.

use aggregates::ids::InvoiceId;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use super::answers::Replayed;
use super::body::parse_json;
use super::error::ApiError;
use super::{path_id, tenant_id, ApiPath, AppState};
use crate::auth::{Principal, Role};
use crate::sync::queue;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/tenants/{tenant}/replay", post(replay))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayInput {
    /// Only this invoice (and its customer's contato); all of the tenant's work otherwise.
    invoice_id: Option<String>,
}

async fn replay(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(tenant): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let tenant = tenant_id(&tenant)?;
    principal.require(&[Role::Support], Some(&tenant))?;
    let input: ReplayInput = match &body {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => ReplayInput::default(),
        _ => parse_json(body)?,
    };
    let invoice = match &input.invoice_id {
        Some(raw) => Some(path_id(raw, "invoice_id", InvoiceId::parse)?),
        None => None,
    };
    if let Some(invoice) = &invoice {
        let current = state.ledger.invoice(&tenant, invoice.as_str()).await?;
        if !current.is_billed() {
            return Err(ApiError::field(
                StatusCode::NOT_FOUND,
                "not_found",
                "invoice_id",
                "no invoice with this id was billed in this tenant",
            ));
        }
    }
    let reason = format!("replay requested by {}", principal.name);
    let requeued = queue::replay(
        &state.db,
        tenant.as_str(),
        invoice.as_ref().map(|i| i.as_str()),
        &reason,
    )
    .await?;
    state.wake_sync();
    Ok((
        StatusCode::ACCEPTED,
        Json(Replayed {
            invoice_id: invoice,
            requeued,
            tenant,
        }),
    )
        .into_response())
}
