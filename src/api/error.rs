//! Every error the API answers has one shape:
//! `{"error":{"code":…,"message":…,"fields":[{"field":…,"problem":…}]}}`.

use aggregates::{FieldProblem, Problems};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::auth::Denied;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<FieldProblem>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// One bad field.
    pub fn field(
        status: StatusCode,
        code: &'static str,
        field: &str,
        problem: impl Into<String>,
    ) -> Self {
        let problem = problem.into();
        Self {
            status,
            code,
            message: format!("{field}: {problem}"),
            fields: vec![FieldProblem {
                field: field.to_string(),
                problem,
            }],
        }
    }

    /// Every bad field of a request.
    pub fn validation(problems: Problems) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed",
            message: format!("{} field(s) are not valid", problems.0.len()),
            fields: problems.0,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// The answer's body, in the one error shape.
    pub fn body(&self) -> super::answers::ErrorAnswer<'_> {
        super::answers::ErrorAnswer {
            error: super::answers::ErrorDetail {
                code: self.code,
                fields: &self.fields,
                message: &self.message,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::Unauthenticated => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "a valid bearer token is required (Authorization: Bearer …)",
            ),
            Denied::Forbidden(why) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", why),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "storage error");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "the ledger's database is unavailable; nothing was stored, retry later",
        )
    }
}
