//! Bling's token endpoint through the `oauth2` crate: authorization-code exchange and refresh,
//! with HTTP Basic client authentication, and Bling's error body classified.
//!
//! Bling answers errors as `{"error":{"type":"invalid_grant","message":…,"description":…}}`
//! rather than RFC 6749's flat `{"error":"invalid_grant"}`; [`BlingTokenError`] reads both.
//!
//! Every token call carries `enable-jwt: 1` (Bling's JWT migration: opaque tokens are
//! discontinued, developer.bling.com.br/migracao-jwt) through [`BlingHttp`], which also keeps
//! the HTTP status of the answer for the evidence of a refusal. `token_type` is compared
//! case-insensitively: Bling has been measured answering `"bearer"` as well as `"Bearer"`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use oauth2::basic::{BasicRevocationErrorResponse, BasicTokenIntrospectionResponse};
use oauth2::http::{HeaderName, HeaderValue};
use oauth2::{
    AsyncHttpClient, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EmptyExtraTokenFields, EndpointNotSet, EndpointSet, ErrorResponse, HttpClientError,
    HttpRequest, HttpResponse, RefreshToken, RequestTokenError, StandardRevocableToken,
    StandardTokenResponse, TokenResponse, TokenType, TokenUrl,
};
use serde::{Deserialize, Serialize};

use super::crypto::Secret;

/// An error answer of the token endpoint, in Bling's shape or the standard one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlingTokenError {
    error: ErrorField,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum ErrorField {
    Bling {
        #[serde(rename = "type")]
        error_type: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        description: String,
    },
    Standard(String),
}

impl BlingTokenError {
    pub fn error_type(&self) -> &str {
        match &self.error {
            ErrorField::Bling { error_type, .. } => error_type,
            ErrorField::Standard(t) => t,
        }
    }

    pub fn message(&self) -> String {
        match &self.error {
            ErrorField::Bling {
                message,
                description,
                ..
            } => [message.as_str(), description.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(": "),
            ErrorField::Standard(t) => t.clone(),
        }
    }
}

impl fmt::Display for BlingTokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.error_type(), self.message())
    }
}

impl ErrorResponse for BlingTokenError {}

/// `token_type` read case-insensitively: `"bearer"` and `"Bearer"` are both the bearer type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlingTokenType {
    Bearer,
    Other(String),
}

impl<'de> Deserialize<'de> for BlingTokenType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Ok(if raw.eq_ignore_ascii_case("bearer") {
            BlingTokenType::Bearer
        } else {
            BlingTokenType::Other(raw)
        })
    }
}

impl Serialize for BlingTokenType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            BlingTokenType::Bearer => s.serialize_str("bearer"),
            BlingTokenType::Other(t) => s.serialize_str(t),
        }
    }
}

impl TokenType for BlingTokenType {}

/// The token endpoint's answer, with [`BlingTokenType`].
pub type BlingTokenResponse = StandardTokenResponse<EmptyExtraTokenFields, BlingTokenType>;

/// The HTTP client of the token calls: reqwest, plus `enable-jwt: 1` on every request, and
/// the status of the last answer (the `oauth2` crate does not report it with an error body).
pub struct BlingHttp {
    client: reqwest::Client,
    status: AtomicU16,
    /// The request never left (no connection could be made): Bling cannot have acted on it.
    not_sent: AtomicBool,
}

impl BlingHttp {
    fn new(client: reqwest::Client) -> Self {
        Self {
            client,
            status: AtomicU16::new(0),
            not_sent: AtomicBool::new(false),
        }
    }

    fn status(&self) -> u16 {
        self.status.load(Ordering::Relaxed)
    }

    fn not_sent(&self) -> bool {
        self.not_sent.load(Ordering::Relaxed)
    }
}

/// Bling's JWT migration header, sent on both grants.
pub const ENABLE_JWT: (&str, &str) = ("enable-jwt", "1");

impl<'c> AsyncHttpClient<'c> for BlingHttp {
    type Error = HttpClientError<reqwest::Error>;
    type Future =
        Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + Sync + 'c>>;

    fn call(&'c self, mut request: HttpRequest) -> Self::Future {
        request.headers_mut().insert(
            HeaderName::from_static(ENABLE_JWT.0),
            HeaderValue::from_static(ENABLE_JWT.1),
        );
        let inner = self.client.call(request);
        Box::pin(async move {
            let response = inner.await.inspect_err(|e| {
                if matches!(e, HttpClientError::Reqwest(re) if re.is_connect()) {
                    self.not_sent.store(true, Ordering::Relaxed);
                }
            })?;
            self.status
                .store(response.status().as_u16(), Ordering::Relaxed);
            Ok(response)
        })
    }
}

type OAuthClient = oauth2::Client<
    BlingTokenError,
    BlingTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// How the app is registered in Bling, and where Bling is.
#[derive(Clone)]
pub struct OAuthSettings {
    pub client_id: String,
    pub client_secret: Secret,
    pub authorize_url: String,
    pub token_url: String,
    pub timeout: Duration,
}

impl fmt::Debug for OAuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthSettings")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("authorize_url", &self.authorize_url)
            .field("token_url", &self.token_url)
            .finish()
    }
}

/// New tokens from Bling.
#[derive(Clone, Debug)]
pub struct TokenGrant {
    pub access: Secret,
    pub refresh: Secret,
    pub access_expires_at: DateTime<Utc>,
    pub scope: String,
}

/// Why the token endpoint did not give tokens.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GrantError {
    /// The shop must authorize again: `invalid_grant` (code or refresh token invalid, used,
    /// expired or revoked), `VALIDATION_ERROR` (a reused code: Bling revoked the user) or
    /// `UNAUTHORIZED_ERROR` (the company is inactive or in arrears). Bling's own type and
    /// message are kept as evidence.
    #[error("Bling refused the grant ({error_type}): {message}")]
    NeedsReconnect {
        status: u16,
        error_type: String,
        message: String,
    },
    /// Our client id or secret is wrong: a configuration problem of this service, not a
    /// revocation and not the shop's doing. Retried later; support must fix the app settings.
    #[error("Bling refused the client credentials (check BLING_CLIENT_ID/SECRET): {message}")]
    InvalidClient { message: String },
    /// Bling is down, slow, limiting us, or answered something unexpected: try later.
    #[error("token endpoint unavailable: {message}")]
    Transient { message: String },
    /// The request was sent but no usable answer came back (the connection dropped, the
    /// answer timed out, or a success could not be read). Transient too, but on a refresh
    /// Bling may have rotated the refresh token: the one we hold may be dead already.
    #[error("token endpoint answer lost: {message}")]
    AnswerLost { message: String },
}

impl GrantError {
    /// Bling's error type, or the transport's, for the audit trail.
    pub fn error_type(&self) -> &str {
        match self {
            GrantError::NeedsReconnect { error_type, .. } => error_type,
            GrantError::InvalidClient { .. } => "invalid_client",
            GrantError::Transient { .. } => "unavailable",
            GrantError::AnswerLost { .. } => "answer_lost",
        }
    }
}

/// Bling's token-endpoint error types after which only a new authorization helps.
pub fn needs_reconnect(error_type: &str) -> bool {
    matches!(
        error_type,
        "invalid_grant" | "VALIDATION_ERROR" | "UNAUTHORIZED_ERROR"
    )
}

/// The token endpoint.
#[derive(Clone)]
pub struct TokenEndpoint {
    client: OAuthClient,
    http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointConfigError {
    #[error("invalid {which} URL: {url}")]
    Url { which: &'static str, url: String },
    #[error("HTTP client: {0}")]
    Http(String),
}

impl TokenEndpoint {
    pub fn new(settings: &OAuthSettings) -> Result<Self, EndpointConfigError> {
        let auth =
            AuthUrl::new(settings.authorize_url.clone()).map_err(|_| EndpointConfigError::Url {
                which: "authorize",
                url: settings.authorize_url.clone(),
            })?;
        let token =
            TokenUrl::new(settings.token_url.clone()).map_err(|_| EndpointConfigError::Url {
                which: "token",
                url: settings.token_url.clone(),
            })?;
        let client = oauth2::Client::new(ClientId::new(settings.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                settings.client_secret.expose().to_string(),
            ))
            .set_auth_uri(auth)
            .set_token_uri(token)
            .set_auth_type(AuthType::BasicAuth);
        // No redirects: an OAuth endpoint that redirects is a misconfiguration or an attack.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .build()
            .map_err(|e| EndpointConfigError::Http(e.to_string()))?;
        Ok(Self { client, http })
    }

    /// The URL that sends the shop's user to Bling's consent page.
    pub fn authorize_url(&self, state: &str) -> String {
        let state = state.to_string();
        let (url, _) = self
            .client
            .authorize_url(move || CsrfToken::new(state))
            .url();
        url.to_string()
    }

    pub async fn exchange_code(&self, code: &str) -> Result<TokenGrant, GrantError> {
        let http = BlingHttp::new(self.http.clone());
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .request_async(&http)
            .await;
        grant(response, http.status(), http.not_sent())
    }

    pub async fn refresh(&self, refresh_token: &Secret) -> Result<TokenGrant, GrantError> {
        let token = RefreshToken::new(refresh_token.expose().to_string());
        let http = BlingHttp::new(self.http.clone());
        let response = self
            .client
            .exchange_refresh_token(&token)
            .request_async(&http)
            .await;
        grant(response, http.status(), http.not_sent())
    }
}

fn grant<RE: std::error::Error + 'static>(
    response: Result<BlingTokenResponse, RequestTokenError<RE, BlingTokenError>>,
    status: u16,
    not_sent: bool,
) -> Result<TokenGrant, GrantError> {
    match response {
        Ok(tokens) => {
            if let BlingTokenType::Other(t) = tokens.token_type() {
                return Err(GrantError::Transient {
                    message: format!("Bling answered token_type {t:?}, not bearer"),
                });
            }
            let Some(refresh) = tokens.refresh_token() else {
                return Err(GrantError::Transient {
                    message: "Bling answered without a refresh token".into(),
                });
            };
            // Bling documents 6 h; assume it when the field is missing.
            let expires_in = tokens.expires_in().unwrap_or(Duration::from_secs(21_600));
            let expires_in =
                chrono::Duration::from_std(expires_in).unwrap_or(chrono::Duration::hours(6));
            let scope = tokens
                .scopes()
                .map(|s| {
                    s.iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            Ok(TokenGrant {
                access: Secret::new(tokens.access_token().secret().clone()),
                refresh: Secret::new(refresh.secret().clone()),
                access_expires_at: Utc::now() + expires_in,
                scope,
            })
        }
        Err(RequestTokenError::ServerResponse(error)) => Err(match error.error_type() {
            t if needs_reconnect(t) => GrantError::NeedsReconnect {
                status,
                error_type: t.to_string(),
                message: error.message(),
            },
            "invalid_client" => GrantError::InvalidClient {
                message: error.message(),
            },
            _ => GrantError::Transient {
                message: error.to_string(),
            },
        }),
        Err(RequestTokenError::Request(e)) if not_sent => Err(GrantError::Transient {
            message: format!("request not sent: {e}"),
        }),
        Err(RequestTokenError::Request(e)) => Err(GrantError::AnswerLost {
            message: format!("request sent, no answer: {e}"),
        }),
        Err(RequestTokenError::Parse(_, body)) => {
            let message = format!(
                "unreadable answer (HTTP {status}): {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            );
            // A success Bling answered is a rotation we cannot read.
            Err(if (200..300).contains(&status) {
                GrantError::AnswerLost { message }
            } else {
                GrantError::Transient { message }
            })
        }
        Err(RequestTokenError::Other(m)) => Err(GrantError::Transient { message: m }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_error_shapes_parse() {
        let bling: BlingTokenError = serde_json::from_str(
            r#"{"error":{"type":"invalid_grant","message":"Invalid refresh token","description":"used"}}"#,
        )
        .unwrap();
        assert_eq!(bling.error_type(), "invalid_grant");
        assert_eq!(bling.message(), "Invalid refresh token: used");
        let standard: BlingTokenError =
            serde_json::from_str(r#"{"error":"invalid_client"}"#).unwrap();
        assert_eq!(standard.error_type(), "invalid_client");
    }

    #[test]
    fn token_type_is_case_insensitive() {
        for raw in ["bearer", "Bearer", "BEARER"] {
            let t: BlingTokenType = serde_json::from_value(serde_json::json!(raw)).unwrap();
            assert_eq!(t, BlingTokenType::Bearer);
        }
        let mac: BlingTokenType = serde_json::from_value(serde_json::json!("mac")).unwrap();
        assert_eq!(mac, BlingTokenType::Other("mac".into()));
    }

    #[test]
    fn reconnect_classification() {
        for t in ["invalid_grant", "VALIDATION_ERROR", "UNAUTHORIZED_ERROR"] {
            assert!(needs_reconnect(t), "{t}");
        }
        for t in [
            "invalid_client",
            "invalid_request",
            "TOO_MANY_REQUESTS",
            "SERVER_ERROR",
        ] {
            assert!(!needs_reconnect(t), "{t}");
        }
    }
}
