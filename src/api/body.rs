//! Request bodies: JSON parsed with the path of the offending field, and the
//! `Idempotency-Key` protocol.

use std::future::Future;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::error::{ApiError, ApiResult};
use crate::store::idempotency::{self, Claim};
use crate::store::Db;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Longest `Idempotency-Key` accepted; it must be visible ASCII (`!` to `~`, no space).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// How long a claimed `Idempotency-Key` whose request never finished (the process died, the
/// client's connection dropped mid-handler) blocks its retries with 409: after this the
/// claim has expired and a retry with the same key and body runs. Far longer than any
/// command takes (milliseconds), so a request still running is not run twice.
pub const IDEMPOTENCY_CLAIM_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Finds a string (value or key) holding U+0000, and says where: PostgreSQL cannot store it,
/// so it is refused with 400 before anything else. JSON can carry it only escaped, as
/// `\u0000`, so the tree is built only when those six bytes occur.
fn nul_path(bytes: &[u8]) -> Option<String> {
    const ESCAPED_NUL: &[u8] = b"\\u0000";
    if !bytes.windows(ESCAPED_NUL.len()).any(|w| w == ESCAPED_NUL) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    fn walk(value: &serde_json::Value, at: &str) -> Option<String> {
        let here = || {
            if at.is_empty() {
                "body".to_string()
            } else {
                at.to_string()
            }
        };
        match value {
            serde_json::Value::String(s) if s.contains('\0') => Some(here()),
            serde_json::Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, v)| walk(v, &format!("{at}[{i}]"))),
            serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
                if k.contains('\0') {
                    return Some(here());
                }
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                walk(v, &path)
            }),
            _ => None,
        }
    }
    walk(&value, "")
}

/// Turns the raw body into `T`, naming the field that failed (`items[0].quantity`).
pub fn parse_json<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> ApiResult<T> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "unreadable_body",
                rejection.body_text(),
            )
        }
    })?;
    if bytes.contains(&0) {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "body",
            "contains a NUL byte",
        ));
    }
    if let Some(field) = nul_path(&bytes) {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            &field,
            "must not contain U+0000 (NUL)",
        ));
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(&bytes);
    let value = serde_path_to_error::deserialize(&mut *deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        let problem = inner.to_string();
        // serde names unknown and repeated fields in the message, not the path.
        let named = problem
            .strip_prefix("unknown field `")
            .or_else(|| problem.strip_prefix("duplicate field `"))
            .and_then(|rest| rest.split('`').next());
        let field = match named {
            Some(name) if field == "body" => name.to_string(),
            Some(name) if !field.ends_with(name) => format!("{field}.{name}"),
            _ => field,
        };
        ApiError::field(StatusCode::BAD_REQUEST, "malformed_json", &field, problem)
    })?;
    // One JSON value and nothing after it but white space.
    deserializer.end().map_err(|error| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "body",
            format!("{error} after the JSON value"),
        )
    })?;
    Ok(value)
}

/// Runs `handler` at most once per `Idempotency-Key` (per tenant): a retry with the same key
/// and request gets the first answer; the same key with another request is refused.
pub async fn idempotent<F, Fut, T>(
    db: &Db,
    tenant: &str,
    headers: &HeaderMap,
    fingerprint: (&str, &str, &[u8]),
    handler: F,
) -> Response
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ApiResult<(StatusCode, T)>>,
    T: serde::Serialize,
{
    let key = match headers.get("idempotency-key") {
        None => return respond(handler().await),
        Some(k) if super::is_visible_ascii(k.as_bytes(), MAX_IDEMPOTENCY_KEY_LEN) => {
            String::from_utf8_lossy(k.as_bytes()).into_owned()
        }
        Some(_) => {
            return ApiError::field(
                StatusCode::BAD_REQUEST,
                "invalid_header",
                "Idempotency-Key",
                format!(
                    "must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters (no space)"
                ),
            )
            .into_response()
        }
    };
    let request_hash = request_hash(fingerprint);
    match idempotency::claim(db, tenant, &key, &request_hash, IDEMPOTENCY_CLAIM_TTL).await {
        Err(e) => ApiError::from(e).into_response(),
        Ok(Claim::Mismatch) => ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_reused",
            "this Idempotency-Key was already used with a different request",
        )
        .into_response(),
        Ok(Claim::InProgress) => ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_in_progress",
            format!(
                "a request with this Idempotency-Key is still being processed; retry shortly \
                 (an unfinished claim expires after {} s)",
                IDEMPOTENCY_CLAIM_TTL.as_secs()
            ),
        )
        .into_response(),
        Ok(Claim::Replay { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut response =
                (status, [("content-type", "application/json")], body).into_response();
            response.headers_mut().insert(
                "idempotent-replayed",
                axum::http::HeaderValue::from_static("true"),
            );
            response
        }
        Ok(Claim::Fresh) => {
            let outcome = handler().await;
            let (status, body) = match &outcome {
                Ok((status, body)) => (*status, serde_json::to_string(body)),
                Err(e) => (e.status, serde_json::to_string(&e.body())),
            };
            let body = match body {
                Ok(body) => body,
                Err(error) => {
                    tracing::error!(%error, "an answer could not be serialized");
                    let _ = idempotency::release(db, tenant, &key).await;
                    return ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal_error",
                        "the answer could not be written",
                    )
                    .into_response();
                }
            };
            // A server-side failure is worth retrying with the same key; anything else is
            // the answer to this request, forever.
            let stored = if status.is_server_error() {
                idempotency::release(db, tenant, &key).await
            } else {
                idempotency::complete(db, tenant, &key, status.as_u16(), &body).await
            };
            if let Err(error) = stored {
                tracing::error!(%error, key, "could not record the idempotent response");
            }
            match outcome {
                // The bytes stored are the bytes answered.
                Ok((status, _)) => {
                    (status, [("content-type", "application/json")], body).into_response()
                }
                Err(e) => e.into_response(),
            }
        }
    }
}

fn respond<T: serde::Serialize>(outcome: ApiResult<(StatusCode, T)>) -> Response {
    match outcome {
        Ok((status, body)) => (status, axum::Json(body)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Method, path and body, with JSON bodies canonicalised so that key order and white space do
/// not make two equal requests differ.
fn request_hash((method, path, body): (&str, &str, &[u8])) -> String {
    let canonical = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => value.to_string().into_bytes(),
        Err(_) => body.to_vec(),
    };
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update(b" ");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    hasher.update(&canonical);
    hex::encode(hasher.finalize())
}
