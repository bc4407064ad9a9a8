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
    /// Only wrappers such as Bling's code 49 carry one ([OAS] `ErrorField`); Bling's code-3
    /// refusal has none ([FM]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub collection: Vec<CollectionError>,
}

/// An error inside an array such as `parcelas`; `index` is the array position (from 1, as in
/// the [OAS] example).
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

    /// A field error of a Bling module (`namespace` in upper case, e.g. "VENDAS").
    pub fn in_ns(namespace: &str, code: i64, element: &str, msg: &str) -> Self {
        let mut f = FieldError::new(code, element, msg);
        f.namespace = namespace.to_string();
        f
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
    // Bling's code-3 refusal carries no description ([FM]).
    #[serde(skip_serializing_if = "str::is_empty")]
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

    /// Bling's recorded 404 ([VCR] `spec/vcr/not_found_at_bling.yml`), whatever is missing.
    pub fn not_found(_what: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "RESOURCE_NOT_FOUND",
            "Não encontrado.",
            "O recurso requisitado não foi encontrado. Verifique se o endpoint solicitado está \
             correto ou se o ID informado realmente existe no sistema.",
        )
    }

    /// A `VALIDATION_ERROR` with Bling's own `description` for the module (none when empty).
    pub fn validation_described(message: &str, description: &str, fields: Vec<FieldError>) -> Self {
        let mut e = ApiError::validation(message, fields);
        e.description = description.to_string();
        e
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

    /// A body that could not be read as the JSON the route expects: `INVALID_REQUEST_BODY`, a
    /// type of Bling's [OAS] enum (the wording is the sandbox's).
    pub fn bad_body(message: &str, detail: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST_BODY",
            message,
            &format!("O corpo da requisição não é um JSON válido: {detail}"),
        )
    }

    /// No body at all: Bling's `MISSING_REQUIRED_FIELD_ERROR` wording ([DOC] /erros-comuns).
    pub fn empty_body() -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "MISSING_REQUIRED_FIELD_ERROR",
            "Nenhum dado foi informado na requisição.",
            "Nenhum dado foi informado na requisição.",
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
