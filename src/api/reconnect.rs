//! Self-service reconnect (see `crate::notify::reconnect` for the link's guarantees):
//!
//! - `POST /v1/tenants/{tenant}/connection/reconnect-link` (support): a new link, to send to
//!   the shop owner; `connection.revoked` notifications carry one too;
//! - `GET /v1/tenants/{tenant}/connection/reconnect-links` (support): the links sent, and
//!   whether each was opened and used, for the console;
//! - `GET /reconnect/{tenant}/{link}?expires&sig` (no token: the link is signed): the shop
//!   owner's page, with one button to Bling's consent; opening it is recorded;
//! - `POST` to the same URL: uses the link once and sends the browser to Bling's consent,
//!   which comes back to `/oauth/callback` like any connection.

use std::collections::HashMap;

use aggregates::ids::TenantId;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use super::connection::{html_escape, page};
use super::error::ApiError;
use super::{tenant_id, ApiPath, AppState};
use crate::auth::{Principal, Role};
use crate::ledger::Actor;
use crate::notify::reconnect::{LinkProblem, ReconnectLinks};
use crate::store::reconnect_links::{self, LinkRow};
use crate::store::{now_ms, StoreError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/tenants/{tenant}/connection/reconnect-link",
            post(issue),
        )
        .route("/v1/tenants/{tenant}/connection/reconnect-links", get(list))
        .route("/reconnect/{tenant}/{link}", get(open).post(go))
}

fn links(state: &AppState) -> Result<&ReconnectLinks, ApiError> {
    state.notify.links().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "bling_not_configured",
            "no Bling app is configured (set BLING_CLIENT_ID and BLING_CLIENT_SECRET)",
        )
    })
}

fn time(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

#[derive(Debug, Serialize)]
struct LinkIssued {
    expires_at: Option<String>,
    link_id: String,
    tenant: TenantId,
    url: String,
}

async fn issue(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Response, ApiError> {
    let tenant = tenant_id(&tenant)?;
    principal.require(&[Role::Support], Some(&tenant))?;
    let link = links(&state)?
        .issue(
            &state.db,
            tenant.as_str(),
            &format!("support:{}", principal.name),
            now_ms(),
        )
        .await?;
    tracing::info!(%tenant, link = link.link_id, by = principal.name, "reconnect link issued");
    Ok((
        StatusCode::CREATED,
        Json(LinkIssued {
            expires_at: time(link.expires_at_ms),
            link_id: link.link_id,
            tenant,
            url: link.url,
        }),
    )
        .into_response())
}

/// A link as the console shows it (never its URL: only the shop owner's message carries it).
#[derive(Debug, Serialize)]
struct LinkShown {
    created_at: Option<String>,
    created_by: String,
    expires_at: Option<String>,
    link_id: String,
    opened_at: Option<String>,
    /// `unused`, `opened`, `used` or `expired`.
    state: &'static str,
    used_at: Option<String>,
}

#[derive(Debug, Serialize)]
struct LinksAnswer {
    links: Vec<LinkShown>,
    tenant: TenantId,
}

fn shown(row: LinkRow, now: i64) -> LinkShown {
    let state = match (row.used_at_ms, row.opened_at_ms) {
        (Some(_), _) => "used",
        _ if row.expires_at_ms <= now => "expired",
        (None, Some(_)) => "opened",
        (None, None) => "unused",
    };
    LinkShown {
        created_at: time(row.created_at_ms),
        created_by: row.created_by,
        expires_at: time(row.expires_at_ms),
        link_id: row.link_id,
        opened_at: row.opened_at_ms.and_then(time),
        state,
        used_at: row.used_at_ms.and_then(time),
    }
}

async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Response, ApiError> {
    let tenant = tenant_id(&tenant)?;
    principal.require(&[Role::Support], Some(&tenant))?;
    let now = now_ms();
    let rows = reconnect_links::list(&state.db, tenant.as_str(), 50).await?;
    Ok(Json(LinksAnswer {
        links: rows.into_iter().map(|r| shown(r, now)).collect(),
        tenant,
    })
    .into_response())
}

/// The page for a link that cannot be used: it says why, and nothing was stored.
fn refused(problem: LinkProblem) -> Response {
    let status = match problem {
        LinkProblem::Invalid => StatusCode::BAD_REQUEST,
        LinkProblem::Expired | LinkProblem::Used => StatusCode::GONE,
    };
    let title = match problem {
        LinkProblem::Invalid => "This link is not valid",
        LinkProblem::Expired => "This link expired",
        LinkProblem::Used => "This link was already used",
    };
    page(
        status,
        title,
        &format!(
            "{}. Nothing was changed.",
            capitalized(&problem.to_string())
        ),
    )
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn unavailable(e: StoreError) -> Response {
    tracing::error!(error = %e, "reconnect link: storage failed");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        "The ledger could not read this link just now. Try again in a moment.",
    )
}

type LinkQuery = Result<Query<HashMap<String, String>>, QueryRejection>;

/// Checks the presented link; `Err` is the page to answer.
async fn checked(
    state: &AppState,
    tenant: &str,
    link: &str,
    query: LinkQuery,
) -> Result<(TenantId, LinkRow), Response> {
    let Ok(links) = links(state) else {
        return Err(page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Bling is not configured",
            "This service has no Bling app configured.",
        ));
    };
    let (Ok(Query(query)), Ok(tenant_id)) = (query, TenantId::parse(tenant)) else {
        return Err(refused(LinkProblem::Invalid));
    };
    let get = |k: &str| query.get(k).map(String::as_str);
    match links
        .check(
            &state.db,
            tenant,
            link,
            get("expires"),
            get("sig"),
            now_ms(),
        )
        .await
    {
        Ok(Ok(row)) => Ok((tenant_id, row)),
        Ok(Err(problem)) => Err(refused(problem)),
        Err(e) => Err(unavailable(e)),
    }
}

async fn open(
    State(state): State<AppState>,
    ApiPath((tenant, link)): ApiPath<(String, String)>,
    query: LinkQuery,
) -> Response {
    let (tenant, row) = match checked(&state, &tenant, &link, query).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    if let Err(e) = reconnect_links::mark_opened(&state.db, &row.link_id, now_ms()).await {
        return unavailable(e);
    }
    let expires = time(row.expires_at_ms).unwrap_or_default();
    // The form posts back to this very URL (its query holds the signature).
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Reconnect to Bling</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;line-height:1.5}}\
         button{{font-size:1.1rem;padding:.6rem 1.2rem}}</style></head><body>\
         <h1>Reconnect shop {tenant} to Bling</h1>\
         <p>Bling stopped accepting this service's access for your shop (for example after a password \
         change). Continue to Bling, sign in and authorize the app again; you will come back here \
         when it is done. This link works once, until {expires}.</p>\
         <form method=\"post\"><button type=\"submit\">Continue to Bling</button></form>\
         </body></html>",
        tenant = html_escape(tenant.as_str()),
        expires = html_escape(&expires),
    );
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Html(html),
    )
        .into_response()
}

async fn go(
    State(state): State<AppState>,
    ApiPath((tenant, link)): ApiPath<(String, String)>,
    query: LinkQuery,
) -> Response {
    let (tenant, row) = match checked(&state, &tenant, &link, query).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let Some(auth) = state.auth.as_ref() else {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Bling is not configured",
            "This service has no Bling app configured.",
        );
    };
    match reconnect_links::take(&state.db, &row.link_id, now_ms()).await {
        Ok(true) => {}
        // Used (or expired) between the check and now.
        Ok(false) => return refused(LinkProblem::Used),
        Err(e) => return unavailable(e),
    }
    match auth.connector.start(&tenant, Actor::System).await {
        Ok(url) => {
            tracing::info!(%tenant, link = row.link_id, "reconnect link used: on to Bling's consent");
            (StatusCode::SEE_OTHER, [(header::LOCATION, url)]).into_response()
        }
        Err(e) => {
            tracing::error!(%tenant, error = %e, "reconnect link: could not start the consent");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "The ledger could not start the authorization. Ask your support contact for a new link.",
            )
        }
    }
}
