//! `POST /v1/tenants/{tenant}/customers/{customer_id}/forget`: LGPD erasure of one customer
//! ([`crate::erasure::forget`]), administrators only. Body (optional): `{"reason": "…"}`, a
//! ticket or request reference recorded with the erasure. The erasure is itself an event
//! (`CustomerErased`, actor `admin:<token name>`, correlation the request id), and the
//! answer is the report: what was destroyed, what was rewritten, what stays, and the Bling
//! contato the shop must erase itself.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use super::body::parse_json;
use super::error::ApiError;
use super::{path_id, tenant_id, ApiPath, AppState, RequestId};
use crate::auth::{Principal, Role};
use crate::erasure::ForgetError;
use crate::ledger::{Actor, CommandContext};

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/v1/tenants/{tenant}/customers/{customer_id}/forget",
        post(forget),
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForgetInput {
    reason: Option<String>,
}

async fn forget(
    State(state): State<AppState>,
    principal: Principal,
    RequestId(request_id): RequestId,
    ApiPath((tenant, customer_id)): ApiPath<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let tenant = tenant_id(&tenant)?;
    principal.require(&[Role::Admin], Some(&tenant))?;
    let customer_id = path_id(
        &customer_id,
        "customer_id",
        aggregates::ids::CustomerId::parse,
    )?;
    let empty = matches!(&body, Ok(b) if b.is_empty());
    let input: ForgetInput = if empty {
        ForgetInput::default()
    } else {
        parse_json(body)?
    };
    let reason = input
        .reason
        .unwrap_or_else(|| "LGPD erasure request".to_string());
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "reason",
            "must have 1 to 200 characters",
        ));
    }
    let ctx = CommandContext::new(
        tenant.clone(),
        request_id,
        Actor::Admin(principal.name.clone()),
    );
    match crate::erasure::forget(&state.ledger, &ctx, customer_id.as_str(), reason).await {
        Ok(report) => Ok(Json(report).into_response()),
        Err(ForgetError::UnknownCustomer(id)) => Err(ApiError::not_found(format!(
            "customer {id} is not registered in tenant {tenant}"
        ))),
        Err(ForgetError::Store(e)) => Err(e.into()),
        Err(ForgetError::Ledger(e)) => {
            tracing::error!(error = %e, "recording an erasure failed");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the erasure could not be recorded; nothing was destroyed, retry",
            ))
        }
    }
}
