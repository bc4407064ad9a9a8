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
    /// `limit` and `period` of a 429 ([DOC] /limites: `3`/`"second"`, `120000`/`"day"`).
    pub limit: Option<(u64, &'static str)>,
    /// Answer with `Www-Authenticate: Bearer realm="Service", error="Array"`, as Bling's
    /// bearer-token checks do ([VCR]).
    pub bearer_challenge: bool,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    period: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: &str, description: &str) -> Self {
        ApiError {
            status,
            kind,
            message: message.to_string(),
            description: description.to_string(),
            fields: None,
            limit: None,
            bearer_challenge: false,
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

    /// 401 `invalid_token` from the bearer check: "The access token provided has expired" or
    /// "… is invalid" ([VCR], [DOC] /erros-comuns).
    pub fn invalid_token(description: &str) -> Self {
        let mut e = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "invalid_token",
            description,
        );
        e.bearer_challenge = true;
        e
    }

    /// 400 `invalid_request` "Malformed auth header" ([DOC] /erros-comuns, /migracao-jwt).
    pub fn malformed_auth_header() -> Self {
        let mut e = ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "invalid_request",
            "Malformed auth header",
        );
        e.bearer_challenge = true;
        e
    }

    pub fn server_error() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SERVER_ERROR",
            "Erro interno do servidor",
            "Ocorreu um erro inesperado, tente novamente mais tarde",
        )
    }

    /// Bling's 429 for the per-second limit: no `Retry-After`, no rate headers ([VCR], [LC]),
    /// `limit`/`period` in the body ([DOC] /limites).
    pub fn per_second_limit(limit: u64) -> Self {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_REQUESTS",
            "Limite de requisições atingido.",
            "O limite de requisições por segundo foi atingido, tente novamente mais tarde.",
        );
        e.limit = Some((limit, "second"));
        e
    }

    /// Bling's 429 for the daily quota ([DOC] /limites).
    pub fn daily_limit(limit: u64) -> Self {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_REQUESTS",
            "Limite de requisições atingido.",
            "O limite de requisições por dia foi atingido, tente novamente amanhã.",
        );
        e.limit = Some((limit, "day"));
        e
    }

    /// A call from a blocked IP (or a client blocked by the token guard). What Bling answers
    /// then is unpublished: assumed to be the same 429 type, without `limit`/`period`.
    pub fn blocked(description: &str) -> Self {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_REQUESTS",
            "Limite de requisições atingido.",
            description,
        )
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
                limit: self.limit.map(|(l, _)| l),
                period: self.limit.map(|(_, p)| p),
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.bearer_challenge {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"Service\", error=\"Array\""),
            );
        }
        resp
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;
