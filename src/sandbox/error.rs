//! Error bodies in Bling's shape, and the library's own error type.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Errors of the sandbox as a library (configuration, I/O, environment).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The configuration cannot describe a working server.
    #[error("invalid sandbox configuration: {0}")]
    InvalidConfig(String),
    /// An environment variable holds a value we cannot parse.
    #[error("environment variable {name}: {reason}")]
    Env { name: String, reason: String },
    /// No client app with that `client_id` is registered.
    #[error("unknown client_id {0:?}")]
    UnknownClient(String),
    /// Binding or serving failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// One entry of `fields`, as Bling reports a field it refused.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct FieldError {
    pub code: i64,
    pub msg: String,
    pub element: String,
    pub namespace: String,
    pub collection: Vec<CollectionError>,
}

/// An error inside an array such as `itens`; `index` is the array position.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct CollectionError {
    pub index: usize,
    pub code: i64,
    pub msg: String,
    pub element: String,
    pub namespace: String,
}

impl FieldError {
    pub fn new(code: i64, element: &str, msg: &str) -> Self {
        FieldError {
            code,
            msg: msg.to_string(),
            element: element.to_string(),
            namespace: String::new(),
            collection: Vec::new(),
        }
    }
}

/// An API error answered as `{"error":{type,message,description[,fields]}}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub description: String,
    pub fields: Option<Vec<FieldError>>,
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<&'a Vec<FieldError>>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: &str, description: &str) -> Self {
        ApiError {
            status,
            kind,
            message: message.to_string(),
            description: description.to_string(),
            fields: None,
            retry_after: None,
        }
    }

    pub fn validation(message: &str, fields: Vec<FieldError>) -> Self {
        let description = fields
            .iter()
            .map(|f| f.msg.as_str())
            .chain(
                fields
                    .iter()
                    .flat_map(|f| f.collection.iter().map(|c| c.msg.as_str())),
            )
            .collect::<Vec<_>>()
            .join("; ");
        let mut e = ApiError::new(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            message,
            &description,
        );
        e.fields = Some(fields);
        e
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "RESOURCE_NOT_FOUND",
            "O recurso requisitado não foi encontrado",
            &format!("{what} não encontrado(a)"),
        )
    }

    pub fn invalid_token(description: &str) -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "invalid_token",
            description,
        )
    }

    pub fn server_error() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SERVER_ERROR",
            "Erro interno do servidor",
            "Ocorreu um erro inesperado, tente novamente mais tarde",
        )
    }

    pub fn too_many_requests(description: &str, retry_after_secs: u64) -> Self {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_REQUESTS",
            "Limite de requisições atingido",
            description,
        );
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }

    /// A body that could not be read as the JSON the route expects.
    pub fn bad_body(message: &str, detail: &str) -> Self {
        ApiError::validation(
            message,
            vec![FieldError::new(
                1,
                "body",
                &format!("JSON inválido: {detail}"),
            )],
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                kind: self.kind,
                message: &self.message,
                description: &self.description,
                fields: self.fields.as_ref(),
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED && self.kind == "invalid_token" {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        resp
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;
