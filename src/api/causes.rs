//! `GET /v1/causes`: every failure cause with its label and advice, from the one definition in
//! `aggregates::sync::CauseKind`, so the support console (and any other reader) shows the words
//! the CLI and the API use instead of a copy of its own.

use aggregates::sync::CauseKind;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::AppState;
use crate::auth::{Principal, Role};

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/causes", get(causes))
}

/// One cause as the console shows it.
#[derive(Debug, Serialize)]
struct CauseAnswer {
    code: &'static str,
    label: &'static str,
    advice: &'static str,
    /// Retried by the worker on its own.
    transient: bool,
    /// About the shop's Bling connection: when present it explains the other failures.
    connection: bool,
}

#[derive(Debug, Serialize)]
struct CausesAnswer {
    causes: Vec<CauseAnswer>,
}

async fn causes(principal: Principal) -> Result<Json<CausesAnswer>, super::error::ApiError> {
    principal.require(&[Role::Support, Role::Auditor, Role::Ingest], None)?;
    let causes = CauseKind::ALL
        .into_iter()
        .map(|k| CauseAnswer {
            code: k.code(),
            label: k.label(),
            advice: k.advice(),
            transient: k.is_transient(),
            connection: k.is_about_the_connection(),
        })
        .collect();
    Ok(Json(CausesAnswer { causes }))
}
