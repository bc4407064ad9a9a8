//! The audit export over HTTP, for auditors (and admins).
//!
//! - `GET /v1/audit/export?from&to&tenant&format=jsonl|csv&redact_pii=true|false&upto` streams
//!   the export (the body is the export file, nothing else). Response headers:
//!   `X-Audit-Upto-Position` (the log head the export is pinned to), `X-Audit-Export-Id` (for a
//!   redacted export), and `X-Audit-Manifest`: the path of the manifest of exactly this body.
//! - `GET /v1/audit/export/manifest?same parameters&upto&export_id` computes that manifest (it
//!   reads the range again; with the same `upto` it selects the same events). A manifest cannot
//!   ride along with a streamed body, hence the second request.
//!
//! A redacted HTTP export uses a salt derived from a key that lives only in this process's
//! memory and the export id, so the manifest endpoint reproduces the chain while the salt is
//! never revealed; the manifest of a redacted export can therefore only be computed by the
//! same server process (behind a load balancer, route both requests to the same instance, or
//! use the CLI, which writes both files at once).
//!
//! - `GET /v1/audit/checkpoints?from&to&limit` lists the signed checkpoints of the sealed log
//!   with `from <= position <= to` (oldest first, at most `limit`, 1000 by default);
//!   `GET /v1/audit/public-key` is the Ed25519 key that verifies them. Both for any auditor: a
//!   checkpoint names no tenant and no person. 503 when no signing key is configured.
//!
//! A tenant-scoped auditor must name its tenant; an export of every tenant needs a token for
//! every tenant.

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rand::RngCore;

use super::error::ApiError;
use super::AppState;
use crate::audit::redact::Salt;
use crate::audit::{compute_manifest, export_stream, AuditError, ExportCursor, ExportQuery};
use crate::auth::{Principal, Role, TenantScope};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/audit/export", get(export))
        .route("/v1/audit/export/manifest", get(manifest))
        .route("/v1/audit/checkpoints", get(checkpoints))
        .route("/v1/audit/public-key", get(public_key))
}

const EXPORT_PARAMS: [&str; 6] = ["from", "to", "tenant", "format", "redact_pii", "upto"];

/// The key redaction salts of HTTP exports derive from; it never leaves this process.
fn process_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        key
    })
}

fn bad(field: &str, problem: impl Into<String>) -> ApiError {
    ApiError::field(StatusCode::BAD_REQUEST, "invalid_query", field, problem)
}

fn audit_error(error: AuditError) -> ApiError {
    match error {
        AuditError::Invalid { field, problem } => bad(field, problem),
        AuditError::Store(e) => e.into(),
        AuditError::Io(e) => {
            tracing::error!(error = %e, "audit export failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "export_failed",
                "the export failed; retry",
            )
        }
    }
}

/// The parameters of both endpoints: the query, whether to redact, and the export id.
struct Params {
    query: ExportQuery,
    redact: bool,
    export_id: Option<String>,
}

fn params(
    raw: Result<Query<Vec<(String, String)>>, QueryRejection>,
    allowed: &[&str],
) -> Result<Params, ApiError> {
    let Query(pairs) = raw.map_err(|e| bad("query", e.body_text()))?;
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in &pairs {
        if name.chars().chain(value.chars()).any(char::is_control) {
            let field = if name.chars().any(char::is_control) {
                "query"
            } else {
                name.as_str()
            };
            return Err(bad(field, "must not contain control characters"));
        }
        if !allowed.contains(&name.as_str()) {
            return Err(bad(
                name,
                format!("unknown parameter; expected one of {}", allowed.join(", ")),
            ));
        }
        if seen.contains(&name.as_str()) {
            return Err(bad(name, "given more than once"));
        }
        seen.push(name);
    }
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let mut query = ExportQuery::parse(get("from"), get("to"), get("tenant"), get("format"))
        .map_err(audit_error)?;
    let redact = match get("redact_pii").map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("false") | Some("0") | Some("no") => false,
        Some("true") | Some("1") | Some("yes") => true,
        Some(other) => {
            return Err(bad(
                "redact_pii",
                format!("must be true or false (got {other:?})"),
            ))
        }
    };
    query.upto =
        match get("upto") {
            None | Some("") => None,
            Some(raw) => Some(raw.parse::<i64>().ok().filter(|u| *u >= 0).ok_or_else(|| {
                bad("upto", "must be a log position (a whole number, 0 or more)")
            })?),
        };
    let export_id = get("export_id")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    if let Some(id) = &export_id {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(bad(
                "export_id",
                "must be the X-Audit-Export-Id of an export",
            ));
        }
    }
    Ok(Params {
        query,
        redact,
        export_id,
    })
}

/// Auditors and admins; a tenant-scoped token only for its own tenant.
fn authorize(principal: &Principal, query: &ExportQuery) -> Result<(), ApiError> {
    principal.require(&[Role::Auditor], query.tenant.as_ref())?;
    if query.tenant.is_none() && principal.scope != TenantScope::All {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "token '{}' may only export its own tenant; pass tenant=…",
                principal.name
            ),
        ));
    }
    Ok(())
}

fn manifest_link(p: &Params, upto: i64) -> String {
    let q = &p.query;
    let mut parts = vec![
        format!("format={}", q.format.as_str()),
        format!("upto={upto}"),
    ];
    if let Some(from) = &q.from {
        parts.push(format!(
            "from={}",
            crate::audit::format_bound(from).replace('+', "%2B")
        ));
    }
    if let Some(to) = &q.to {
        parts.push(format!(
            "to={}",
            crate::audit::format_bound(to).replace('+', "%2B")
        ));
    }
    if let Some(tenant) = &q.tenant {
        parts.push(format!("tenant={tenant}"));
    }
    if p.redact {
        parts.push("redact_pii=true".into());
    }
    if let Some(id) = &p.export_id {
        parts.push(format!("export_id={id}"));
    }
    format!("/v1/audit/export/manifest?{}", parts.join("&"))
}

async fn export(
    State(state): State<AppState>,
    principal: Principal,
    raw: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    principal.require(&[Role::Auditor], None)?;
    let mut p = params(raw, &EXPORT_PARAMS)?;
    authorize(&principal, &p.query)?;
    if p.redact {
        let id = uuid::Uuid::new_v4().to_string();
        p.query.redact = Some(Salt::derived(process_key(), &id));
        p.export_id = Some(id);
    }
    let cursor = ExportCursor::open(&state.db, &p.query)
        .await
        .map_err(audit_error)?;
    let upto = cursor.upto();
    let filename = format!(
        "bling-ledger-audit-{}-{upto}.{}",
        p.query.tenant.as_ref().map_or("all", |t| t.as_str()),
        p.query.format.as_str()
    );
    tracing::info!(auditor = %principal.name, tenant = ?p.query.tenant, upto, redacted = p.redact, "audit export");
    let mut response = Body::from_stream(export_stream(cursor)).into_response();
    let headers = response.headers_mut();
    let value =
        |s: String| HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(p.query.format.content_type()),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        value(format!("attachment; filename=\"{filename}\"")),
    );
    headers.insert("x-audit-upto-position", value(upto.to_string()));
    headers.insert("x-audit-manifest", value(manifest_link(&p, upto)));
    if let Some(id) = &p.export_id {
        headers.insert("x-audit-export-id", value(id.clone()));
    }
    Ok(response)
}

async fn manifest(
    State(state): State<AppState>,
    principal: Principal,
    raw: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    principal.require(&[Role::Auditor], None)?;
    let allowed: Vec<&str> = EXPORT_PARAMS.iter().copied().chain(["export_id"]).collect();
    let mut p = params(raw, &allowed)?;
    authorize(&principal, &p.query)?;
    if p.redact {
        let Some(id) = &p.export_id else {
            return Err(bad(
                "export_id",
                "a redacted export's manifest needs the X-Audit-Export-Id of that export",
            ));
        };
        p.query.redact = Some(Salt::derived(process_key(), id));
    }
    let manifest = compute_manifest(&state.db, &p.query)
        .await
        .map_err(audit_error)?;
    Ok(Json(manifest).into_response())
}

fn no_signing_key() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_signing_key",
        "no checkpoint signing key is configured (BLING_LEDGER_SIGNING_KEY)",
    )
}

/// The signed checkpoints, oldest first.
async fn checkpoints(
    State(state): State<AppState>,
    principal: Principal,
    raw: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    principal.require(&[Role::Auditor], None)?;
    let Query(pairs) = raw.map_err(|e| bad("query", e.body_text()))?;
    let mut range = (0i64, i64::MAX, 1_000i64);
    for (name, value) in &pairs {
        let slot = match name.as_str() {
            "from" => &mut range.0,
            "to" => &mut range.1,
            "limit" => &mut range.2,
            other => {
                return Err(bad(
                    other,
                    "unknown parameter; expected one of from, to, limit",
                ))
            }
        };
        *slot = value
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .ok_or_else(|| bad(name, "must be a non-negative integer"))?;
    }
    if range.2 == 0 || range.2 > 10_000 {
        return Err(bad("limit", "must be between 1 and 10000"));
    }
    let list = crate::store::signed_checkpoints::between(&state.db, range.0, range.1, range.2)
        .await
        .map_err(ApiError::from)?;
    let key_id = state.signing.as_ref().map(|k| k.key_id());
    Ok(Json(serde_json::json!({"key_id": key_id, "checkpoints": list})).into_response())
}

/// The public key that verifies checkpoints.
async fn public_key(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require(&[Role::Auditor], None)?;
    let key = state.signing.as_ref().ok_or_else(no_signing_key)?;
    let public = key.public_key();
    Ok(Json(serde_json::json!({
        "algorithm": "Ed25519",
        "key_id": public.key_id(),
        "public_key": public.base64(),
        "statement": crate::audit::checkpoint::STATEMENT,
    }))
    .into_response())
}
