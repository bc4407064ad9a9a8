//! The Bling connection: start the OAuth flow, receive Bling's redirect, show the status,
//! disconnect.

use std::collections::HashMap;
use std::sync::Arc;

use aggregates::connection::ConnectionCommand;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::answers::{AuthorizeStarted, Disconnected};
use super::error::ApiError;
use super::{tenant_id, ApiPath, AppState, RequestId};
use crate::auth::{Principal, Role};
use crate::ledger::{Actor, CommandContext};
use crate::oauth::connect::ConnectError;
use crate::oauth::credentials::CredentialStatus;
use crate::oauth::endpoint::GrantError;
use crate::oauth::{connection_status, BlingAuth};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants/{tenant}/connection", get(status))
        .route("/v1/tenants/{tenant}/connection/authorize", post(authorize))
        .route(
            "/v1/tenants/{tenant}/connection/disconnect",
            post(disconnect),
        )
        .route("/oauth/callback", get(callback))
}

fn bling(state: &AppState) -> Result<&Arc<BlingAuth>, ApiError> {
    state.auth.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "bling_not_configured",
            "no Bling app is configured (set BLING_CLIENT_ID and BLING_CLIENT_SECRET)",
        )
    })
}

pub fn actor_of(principal: &Principal) -> Actor {
    match principal.role {
        Role::Ingest => Actor::Ingest(principal.name.clone()),
        _ => Actor::Support(principal.name.clone()),
    }
}

async fn status(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Response, ApiError> {
    let tenant = tenant_id(&tenant)?;
    principal.require(&[Role::Support], Some(&tenant))?;
    let creds = state.auth.as_ref().map(|a| a.tokens.credentials());
    let status = connection_status(&state.ledger, creds, &tenant)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                e.to_string(),
            )
        })?;
    Ok(Json(status).into_response())
}

async fn authorize(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Response, ApiError> {
    let tenant = tenant_id(&tenant)?;
    principal.require(&[Role::Support], Some(&tenant))?;
    let auth = bling(&state)?;
    let url = auth
        .connector
        .start(&tenant, actor_of(&principal))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                e.to_string(),
            )
        })?;
    Ok(Json(AuthorizeStarted {
        authorize_url: url,
        expires_in_seconds: auth.settings.state_ttl.as_secs(),
        tenant,
    })
    .into_response())
}

async fn disconnect(
    State(state): State<AppState>,
    principal: Principal,
    RequestId(request_id): RequestId,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Response, ApiError> {
    let tenant = tenant_id(&tenant)?;
    principal.require(&[Role::Support], Some(&tenant))?;
    let auth = bling(&state)?;
    let ctx = CommandContext::new(tenant.clone(), request_id, actor_of(&principal));
    let command = ConnectionCommand::Disconnect {
        by: principal.name.clone(),
        reason: None,
    };
    state
        .ledger
        .execute_connection(&ctx, command)
        .await
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "not_connected", e.to_string()))?;
    auth.tokens
        .credentials()
        .set_status(
            tenant.as_str(),
            CredentialStatus::Disconnected,
            Some("disconnected by support"),
        )
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                e.to_string(),
            )
        })?;
    Ok(Json(Disconnected {
        state: "disconnected",
        tenant,
    })
    .into_response())
}

pub(super) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;line-height:1.5}}</style>\
         </head><body><h1>{title}</h1><p>{body}</p></body></html>",
        title = html_escape(title),
        body = html_escape(body),
    );
    (status, Html(html)).into_response()
}

/// What Bling's refusal means for the shop, with Bling's own words.
fn refusal_text(error: &str, description: Option<&str>) -> String {
    let meaning = match error {
        "access_denied" => "The Bling user declined the authorization.",
        "app_inativo" => "This service's app is inactive in Bling; support must reactivate it.",
        "UNAUTHORIZED_ERROR" => {
            "Bling refused: the company is inactive or in arrears, or the user lacks the privileges. Settle it in Bling, then connect again."
        }
        "VALIDATION_ERROR" => {
            "Bling refused the authorization code (already used): for security it revoked the user's access. Connect again."
        }
        "invalid_grant" => "The authorization code expired or is invalid. Connect again.",
        _ => "Bling did not grant access.",
    };
    match description.filter(|d| !d.is_empty()) {
        Some(d) => format!("{meaning} Bling said: {error}: {d}."),
        None => format!("{meaning} Bling said: {error}."),
    }
}

pub(super) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Where Bling sends the shop's browser back. No token: the `state` is the credential.
async fn callback(
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    // A query that cannot be read, or a value with a control character (PostgreSQL refuses
    // U+0000), is no authorization link: refused before anything is looked up.
    let query = match query {
        Ok(Query(q)) if !q.iter().any(|(k, v)| k.chars().chain(v.chars()).any(char::is_control)) => q,
        _ => {
            return page(
                StatusCode::BAD_REQUEST,
                "Invalid authorization link",
                "The link's query cannot be read. Nothing was stored; start again from the support console.",
            )
        }
    };
    let Ok(auth) = bling(&state) else {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Bling is not configured",
            "This service has no Bling app configured.",
        );
    };
    if let Some(error) = query.get("error") {
        let description = query.get("error_description").map(String::as_str);
        let why = refusal_text(error, description);
        // The state identifies the tenant: the refusal is recorded on its connection for
        // support. A bad state records nothing.
        let recorded = match query.get("state") {
            Some(oauth_state) => match auth
                .connector
                .refused(oauth_state, error, description)
                .await
            {
                Ok(_) => "Support can see this on the shop's connection.",
                Err(ConnectError::Store(e)) => {
                    tracing::error!(error = %e, "callback could not record the refusal");
                    "It could not be recorded; tell support."
                }
                Err(_) => "This link was not valid any more, so nothing was recorded.",
            },
            None => "The link had no state, so nothing was recorded.",
        };
        return page(
            StatusCode::BAD_REQUEST,
            "Authorization not granted",
            &format!("{why} No Bling access was stored. {recorded}"),
        );
    }
    let (Some(code), Some(oauth_state)) = (query.get("code"), query.get("state")) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Invalid authorization link",
            "The link lacks its code or state. Nothing was stored.",
        );
    };
    match auth.connector.complete(code, oauth_state).await {
        Ok(done) => {
            // Issue #14: webhooks name the Bling company, so learn it at every (re)connect.
            identify_company(&state, &done.tenant).await;
            page(
            StatusCode::OK,
            if done.reconnected { "Reconnected to Bling" } else { "Connected to Bling" },
            &format!(
                "Shop {} is connected. Parked work is replayed automatically. You can close this window.",
                done.tenant
            ),
        )
        }
        Err(ConnectError::State(e)) => page(
            StatusCode::BAD_REQUEST,
            "Invalid authorization link",
            &format!("{e}. Nothing was stored; start again from the support console."),
        ),
        Err(ConnectError::Grant(GrantError::NeedsReconnect {
            error_type,
            message,
            ..
        })) => page(
            StatusCode::BAD_GATEWAY,
            "Bling refused the authorization",
            &format!(
                "{} Nothing was stored; start again from the support console.",
                refusal_text(&error_type, Some(&message))
            ),
        ),
        Err(ConnectError::Grant(e @ GrantError::InvalidClient { .. })) => {
            tracing::error!(error = %e, "Bling refused our client credentials");
            page(
                StatusCode::BAD_GATEWAY,
                "This service is misconfigured",
                "Bling refused this service's app credentials (not the shop's doing). Nothing was stored; support must fix the Bling app settings.",
            )
        }
        Err(ConnectError::Grant(e)) => page(
            StatusCode::BAD_GATEWAY,
            "Bling did not answer",
            &format!("{e}. Nothing was stored; try again in a moment."),
        ),
        Err(e @ ConnectError::Busy { .. }) => page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Bling is busy connecting other shops",
            &format!("{e}. Nothing was stored and Bling was not called; start the connection again in a minute."),
        ),
        Err(ConnectError::Store(e)) => {
            tracing::error!(error = %e, "callback could not store the connection");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "The ledger could not store the connection. Start again in a moment.",
            )
        }
    }
}

/// Reads and records the tenant's Bling company (webhooks name it), when this process runs a
/// Bling client. A failure is logged: the connection stands, and deliveries for the company
/// wait as `unknown_company` until the next (re)connect identifies it.
async fn identify_company(state: &AppState, tenant: &aggregates::ids::TenantId) {
    let Some(sync) = &state.sync else {
        return;
    };
    match crate::webhooks::identify_company(&state.db, &state.ledger, sync.client(), tenant).await {
        Ok(company) => tracing::info!(%tenant, %company, "Bling company identified"),
        Err(e) => tracing::warn!(%tenant, error = %e, "could not read the Bling company"),
    }
}
