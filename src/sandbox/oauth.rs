//! The authorization-server side of Bling's OAuth 2.0: consent page, codes, rotating refresh
//! tokens, revocation, and bearer-token checks for API calls.

use crate::sandbox::calllog::CallRecord;
use crate::sandbox::config::ClientApp;
use crate::sandbox::conn::ConnHandle;
use crate::sandbox::error::ApiError;
use crate::sandbox::faults::FaultKind;
use crate::sandbox::pipeline::{record_call, AuthCtx, API_PREFIX};
use crate::sandbox::query::{percent_encode, Params};
use crate::sandbox::state::Shared;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, OriginalUri, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use rand::RngCore;
use serde::Serialize;
use sha2::Digest;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Tokens as the token endpoint returns them; also handed out by `Sandbox::grant_tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TokenSet {
    pub access_token: String,
    pub expires_in: u64,
    pub token_type: String,
    pub scope: String,
    pub refresh_token: String,
}

struct Code {
    client_id: String,
    account: String,
    expires: Instant,
    /// The grant this code was exchanged for; a second exchange revokes it.
    redeemed: Option<u64>,
}

struct Grant {
    client_id: String,
    account: String,
    revoked: bool,
}

struct Access {
    grant: u64,
    expires: Instant,
}

struct Refresh {
    grant: u64,
    expires: Instant,
    rotated: bool,
}

/// Expired entries are kept this long so late callers get "expired" rather than "unknown".
const GRACE: Duration = Duration::from_secs(3600);

#[derive(Default)]
pub(crate) struct OAuthStore {
    codes: HashMap<String, Code>,
    grants: HashMap<u64, Grant>,
    access: HashMap<String, Access>,
    refresh: HashMap<String, Refresh>,
    last_grant: u64,
}

/// Why a grant was refused; every case is `invalid_grant` on the wire.
#[derive(Debug)]
pub(crate) struct InvalidGrant(&'static str);

fn random_token() -> String {
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A JWT-shaped access token (`enable-jwt: 1`): long like Bling's (1,500–3,000 characters) so
/// clients that cap token length fail here. It is opaque to the sandbox, as to clients.
fn jwt_token(account: &str, client_id: &str, ttl: Duration) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let exp = chrono::Utc::now().timestamp() + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
    let mut padding = String::new();
    while padding.len() < 1200 {
        padding.push_str(&random_token());
    }
    let payload = serde_json::json!({
        "iss": "bling-sandbox", "sub": account, "aud": client_id, "exp": exp,
        "jti": random_token(), "scopes": padding,
    });
    let payload = b64.encode(payload.to_string());
    let sig = b64.encode(sha2::Sha256::digest(
        format!("{header}.{payload}").as_bytes(),
    ));
    format!("{header}.{payload}.{sig}")
}

impl OAuthStore {
    pub fn issue_code(&mut self, client_id: &str, account: &str, ttl: Duration) -> String {
        let code = random_token();
        self.codes.insert(
            code.clone(),
            Code {
                client_id: client_id.into(),
                account: account.into(),
                expires: Instant::now() + ttl,
                redeemed: None,
            },
        );
        code
    }

    fn prune(&mut self, now: Instant) {
        self.codes.retain(|_, c| c.expires + GRACE > now);
        self.access.retain(|_, a| a.expires + GRACE > now);
        self.refresh.retain(|_, r| r.expires + GRACE > now);
    }

    fn issue(&mut self, grant: u64, p: &IssueParams) -> TokenSet {
        let now = Instant::now();
        let access_token = if p.jwt {
            let (account, client) = self
                .grants
                .get(&grant)
                .map(|g| (g.account.clone(), g.client_id.clone()))
                .unwrap_or_default();
            jwt_token(&account, &client, p.access_ttl)
        } else {
            random_token()
        };
        let refresh_token = random_token();
        self.access.insert(
            access_token.clone(),
            Access {
                grant,
                expires: now + p.access_ttl,
            },
        );
        self.refresh.insert(
            refresh_token.clone(),
            Refresh {
                grant,
                expires: now + p.refresh_ttl,
                rotated: false,
            },
        );
        TokenSet {
            access_token,
            expires_in: p.access_ttl.as_secs(),
            token_type: "Bearer".into(),
            scope: p.scope.clone(),
            refresh_token,
        }
    }

    fn new_grant(&mut self, client_id: &str, account: &str) -> u64 {
        self.last_grant += 1;
        self.grants.insert(
            self.last_grant,
            Grant {
                client_id: client_id.into(),
                account: account.into(),
                revoked: false,
            },
        );
        self.last_grant
    }

    /// Tokens for `account` without the browser dance (for tests and the demo).
    pub fn grant_directly(&mut self, client_id: &str, account: &str, p: &IssueParams) -> TokenSet {
        let g = self.new_grant(client_id, account);
        self.issue(g, p)
    }

    fn redeem_code(
        &mut self,
        code: &str,
        client_id: &str,
        p: &IssueParams,
    ) -> Result<(TokenSet, String), InvalidGrant> {
        let now = Instant::now();
        self.prune(now);
        let Some(c) = self.codes.get_mut(code) else {
            return Err(InvalidGrant("Código de autorização inválido"));
        };
        if c.client_id != client_id {
            return Err(InvalidGrant(
                "Código de autorização emitido para outro aplicativo",
            ));
        }
        if let Some(g) = c.redeemed {
            // Bling: reusing a code revokes the access it granted (a stolen code is useless).
            if let Some(grant) = self.grants.get_mut(&g) {
                grant.revoked = true;
            }
            return Err(InvalidGrant(
                "Código de autorização já utilizado; a autorização concedida foi revogada",
            ));
        }
        if now >= c.expires {
            return Err(InvalidGrant("Código de autorização expirado"));
        }
        let account = c.account.clone();
        let g = self.new_grant(client_id, &account);
        if let Some(c) = self.codes.get_mut(code) {
            c.redeemed = Some(g);
        }
        Ok((self.issue(g, p), account))
    }

    fn refresh(
        &mut self,
        token: &str,
        client_id: &str,
        p: &IssueParams,
    ) -> Result<(TokenSet, String), InvalidGrant> {
        let now = Instant::now();
        self.prune(now);
        let Some(r) = self.refresh.get(token) else {
            return Err(InvalidGrant("Refresh token inválido"));
        };
        let (grant_id, rotated, expired) = (r.grant, r.rotated, now >= r.expires);
        let Some(grant) = self.grants.get(&grant_id) else {
            return Err(InvalidGrant("Refresh token inválido"));
        };
        if grant.client_id != client_id {
            return Err(InvalidGrant("Refresh token emitido para outro aplicativo"));
        }
        if grant.revoked {
            return Err(InvalidGrant("Autorização revogada"));
        }
        if rotated {
            return Err(InvalidGrant("Refresh token já utilizado"));
        }
        if expired {
            return Err(InvalidGrant("Refresh token expirado"));
        }
        let account = grant.account.clone();
        if let Some(r) = self.refresh.get_mut(token) {
            r.rotated = true;
        }
        Ok((self.issue(grant_id, p), account))
    }

    /// The account and client an access token acts for, or why it cannot be used.
    pub fn authenticate(&self, token: &str) -> Result<AuthCtx, &'static str> {
        let Some(a) = self.access.get(token) else {
            return Err("Token de acesso inválido");
        };
        let Some(g) = self.grants.get(&a.grant) else {
            return Err("Token de acesso inválido");
        };
        if g.revoked {
            return Err("Token de acesso revogado");
        }
        if Instant::now() >= a.expires {
            return Err("Token de acesso expirado");
        }
        Ok(AuthCtx {
            account: g.account.clone(),
            client_id: g.client_id.clone(),
        })
    }

    /// Revokes the grant behind an access or refresh token of `client_id` (RFC 7009 style).
    fn revoke_token(&mut self, token: &str, client_id: &str) -> Option<String> {
        let grant = self
            .access
            .get(token)
            .map(|a| a.grant)
            .or_else(|| self.refresh.get(token).map(|r| r.grant))?;
        let g = self.grants.get_mut(&grant)?;
        if g.client_id != client_id {
            return None;
        }
        g.revoked = true;
        Some(g.account.clone())
    }

    /// "The shop changed its Bling password" (every client) or "removed the app" (one client).
    pub fn revoke_account(&mut self, account: &str, client_id: Option<&str>) -> usize {
        let mut n = 0;
        for g in self.grants.values_mut() {
            if g.account == account && !g.revoked && client_id.is_none_or(|c| c == g.client_id) {
                g.revoked = true;
                n += 1;
            }
        }
        n
    }

    pub fn active_grants(&self, account: &str) -> usize {
        self.grants
            .values()
            .filter(|g| g.account == account && !g.revoked)
            .count()
    }
}

pub(crate) struct IssueParams {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub scope: String,
    pub jwt: bool,
}

impl IssueParams {
    pub fn from(shared: &Shared, jwt: bool) -> IssueParams {
        IssueParams {
            access_ttl: shared.config.access_ttl,
            refresh_ttl: shared.config.refresh_ttl,
            scope: shared.config.scope.clone(),
            jwt,
        }
    }
}

fn oauth_error(status: StatusCode, kind: &'static str, description: &str) -> Response {
    ApiError::new(status, kind, kind, description).into_response()
}

fn client<'a>(shared: &'a Shared, id: &str) -> Option<&'a ClientApp> {
    shared.config.clients.iter().find(|c| c.client_id == id)
}

/// `(client_id, client_secret)` from `Authorization: Basic …`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<!DOCTYPE html><html lang=\"pt-BR\"><head><meta charset=\"utf-8\"><title>Bling (sandbox) - \
         Erro</title></head><body><h1>Não foi possível autorizar</h1><p>{}</p></body></html>",
        escape_html(message)
    );
    (status, Html(body)).into_response()
}

fn redirect_with(uri: &str, pairs: &[(&str, Option<&str>)], status: StatusCode) -> Response {
    let mut location = uri.to_string();
    let mut sep = if uri.contains('?') { '&' } else { '?' };
    for (k, v) in pairs {
        if let Some(v) = v {
            location.push(sep);
            location.push_str(k);
            location.push('=');
            location.push_str(&percent_encode(v));
            sep = '&';
        }
    }
    match HeaderValue::from_str(&location) {
        Ok(loc) => (status, [(header::LOCATION, loc)]).into_response(),
        Err(_) => error_page(StatusCode::BAD_REQUEST, "URL de redirecionamento inválida"),
    }
}

/// Account names come from the URL; keep them to something printable and short.
fn account_name(params: &Params) -> Result<String, &'static str> {
    let name = params
        .get("account")
        .unwrap_or("default")
        .trim()
        .to_string();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("Nome de conta inválido: use letras, números, '-', '_' ou '.' (até 64)");
    }
    Ok(name)
}

struct Outcome {
    response: Response,
    account: Option<String>,
    client_id: Option<String>,
}

fn authorize_outcome(shared: &Shared, params: &Params, from_form: bool) -> Outcome {
    let client_id = params.get("client_id").map(str::to_string);
    let fail = |status, msg: &str, client_id: Option<String>| Outcome {
        response: error_page(status, msg),
        account: None,
        client_id,
    };
    let Some(app) = client_id
        .as_deref()
        .and_then(|id| client(shared, id))
        .cloned()
    else {
        return fail(
            StatusCode::BAD_REQUEST,
            "Aplicativo não encontrado (client_id inválido)",
            client_id,
        );
    };
    if params.get("response_type") != Some("code") {
        return fail(
            StatusCode::BAD_REQUEST,
            "response_type deve ser \"code\"",
            client_id,
        );
    }
    let account = match account_name(params) {
        Ok(a) => a,
        Err(msg) => return fail(StatusCode::BAD_REQUEST, msg, client_id),
    };
    let state = params.get("state");
    let approve_now = params.get("auto_approve") == Some("1");
    if !from_form && !approve_now {
        let page = include_str!("consent.html")
            .replace("{{ACTION}}", "/Api/v3/oauth/authorize")
            .replace("{{CLIENT_ID}}", &escape_html(&app.client_id))
            .replace("{{ACCOUNT}}", &escape_html(&account))
            .replace("{{STATE}}", &escape_html(state.unwrap_or("")));
        return Outcome {
            response: Html(page).into_response(),
            account: Some(account),
            client_id,
        };
    }
    let status = if from_form {
        StatusCode::SEE_OTHER
    } else {
        StatusCode::FOUND
    };
    if from_form && params.get("decision") != Some("approve") {
        let response = redirect_with(
            &app.redirect_uri,
            &[("error", Some("access_denied")), ("state", state)],
            status,
        );
        return Outcome {
            response,
            account: Some(account),
            client_id,
        };
    }
    let code = {
        let mut store = shared.store();
        store.account_mut(&account);
        store
            .oauth
            .issue_code(&app.client_id, &account, shared.config.code_ttl)
    };
    let response = redirect_with(
        &app.redirect_uri,
        &[("code", Some(&code)), ("state", state)],
        status,
    );
    Outcome {
        response,
        account: Some(account),
        client_id,
    }
}

fn finish(
    shared: &Shared,
    method: Method,
    uri: &OriginalUri,
    started: Instant,
    o: Outcome,
) -> Response {
    record_call(
        shared,
        CallRecord::start(&method, uri, o.account, o.client_id),
        Some(o.response.status().as_u16()),
        None,
        0,
        started,
    );
    o.response
}

/// `GET /oauth/authorize`: the consent page, or an immediate redirect with `auto_approve=1`.
pub(crate) async fn authorize_page(
    State(shared): State<Arc<Shared>>,
    uri: OriginalUri,
    RawQuery(q): RawQuery,
) -> Response {
    let started = Instant::now();
    let params = Params::parse(q.as_deref());
    let o = authorize_outcome(&shared, &params, false);
    finish(&shared, Method::GET, &uri, started, o)
}

/// `POST /oauth/authorize`: the consent form's answer.
pub(crate) async fn authorize_submit(
    State(shared): State<Arc<Shared>>,
    uri: OriginalUri,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let params = Params::parse(std::str::from_utf8(&body).ok());
    let o = authorize_outcome(&shared, &params, true);
    finish(&shared, Method::POST, &uri, started, o)
}

fn token_outcome(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Outcome {
    let creds = basic_credentials(headers);
    let client_id = creds.as_ref().map(|(id, _)| id.clone());
    let out = |response, account| Outcome {
        response,
        account,
        client_id: client_id.clone(),
    };
    let guard_key = client_id.clone().unwrap_or_else(|| "<anonymous>".into());
    if let Err(secs) = shared.limits().token_call(&guard_key, Instant::now()) {
        let e = ApiError::too_many_requests(
            "Muitas chamadas ao endpoint de token; cliente bloqueado temporariamente",
            secs,
        );
        return out(e.into_response(), None);
    }
    let authorized = creds
        .as_ref()
        .and_then(|(id, secret)| client(shared, id).filter(|c| &c.client_secret == secret));
    let Some(app) = authorized else {
        return out(
            oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Credenciais do aplicativo inválidas",
            ),
            None,
        );
    };
    let params = Params::parse(std::str::from_utf8(body).ok());
    let jwt = headers
        .get("enable-jwt")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        == Some("1");
    let p = IssueParams::from(shared, jwt);
    let result = match params.get("grant_type") {
        Some("authorization_code") => match params.get("code") {
            Some(code) => shared.store().oauth.redeem_code(code, &app.client_id, &p),
            None => {
                let r = oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Parâmetro code ausente",
                );
                return out(r, None);
            }
        },
        Some("refresh_token") => match params.get("refresh_token") {
            Some(rt) => shared.store().oauth.refresh(rt, &app.client_id, &p),
            None => {
                let r = oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Parâmetro refresh_token ausente",
                );
                return out(r, None);
            }
        },
        _ => {
            let r = oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type deve ser authorization_code ou refresh_token",
            );
            return out(r, None);
        }
    };
    match result {
        Ok((tokens, account)) => {
            let mut resp = axum::Json(tokens).into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            out(resp, Some(account))
        }
        Err(InvalidGrant(why)) => out(
            oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why),
            None,
        ),
    }
}

/// Runs an OAuth endpoint under the global `/oauth/…` fault rules: a 500 or a drop before
/// processing, or processing (a refresh token rotates!) and then dropping the answer.
async fn with_faults(
    shared: &Shared,
    conn: &ConnHandle,
    uri: &OriginalUri,
    started: Instant,
    run: impl FnOnce() -> Outcome,
) -> Response {
    let decision = shared
        .faults()
        .decide_oauth("POST", uri.path().trim_start_matches(API_PREFIX));
    let latency_ms = u64::try_from(decision.latency.as_millis()).unwrap_or(u64::MAX);
    if !decision.latency.is_zero() {
        tokio::time::sleep(decision.latency).await;
    }
    let (o, status) = match decision.kind {
        Some(FaultKind::ServerError) => {
            let o = Outcome {
                response: ApiError::server_error().into_response(),
                account: None,
                client_id: None,
            };
            (o, Some(500))
        }
        Some(FaultKind::Drop) => {
            conn.kill();
            let o = Outcome {
                response: ApiError::server_error().into_response(),
                account: None,
                client_id: None,
            };
            (o, None)
        }
        Some(FaultKind::ApplyThenDrop) => {
            conn.kill();
            (run(), None)
        }
        None => {
            let o = run();
            let status = Some(o.response.status().as_u16());
            (o, status)
        }
    };
    let rec = CallRecord::start(&Method::POST, uri, o.account, o.client_id);
    record_call(shared, rec, status, decision.kind, latency_ms, started);
    o.response
}

/// `POST /oauth/token`: authorization_code and refresh_token grants, Basic client auth.
pub(crate) async fn token(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    with_faults(&shared, &conn, &uri, started, || {
        token_outcome(&shared, &headers, &body)
    })
    .await
}

/// `POST /oauth/revoke` (assumed, RFC 7009 style): `token=<access or refresh token>` revokes
/// the whole authorization; unknown tokens also answer 200, as RFC 7009 asks.
pub(crate) async fn revoke(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    with_faults(&shared, &conn, &uri, started, || {
        revoke_outcome(&shared, &headers, &body)
    })
    .await
}

fn revoke_outcome(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Outcome {
    let creds = basic_credentials(headers);
    let client_id = creds.as_ref().map(|(id, _)| id.clone());
    let authorized = creds
        .as_ref()
        .and_then(|(id, secret)| client(shared, id).filter(|c| &c.client_secret == secret))
        .cloned();
    let o = match authorized {
        None => Outcome {
            response: oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Credenciais do aplicativo inválidas",
            ),
            account: None,
            client_id,
        },
        Some(app) => {
            let params = Params::parse(std::str::from_utf8(body).ok());
            match params.get("token") {
                None => Outcome {
                    response: oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "Parâmetro token ausente",
                    ),
                    account: None,
                    client_id,
                },
                Some(t) => {
                    let account = shared.store().oauth.revoke_token(t, &app.client_id);
                    Outcome {
                        response: StatusCode::OK.into_response(),
                        account,
                        client_id,
                    }
                }
            }
        }
    };
    o
}

/// The caller of an API route, from `Authorization: Bearer …`.
pub(crate) fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<AuthCtx, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_string());
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err(ApiError::invalid_token("Token de acesso não informado"));
    };
    shared
        .store()
        .oauth
        .authenticate(&token)
        .map_err(ApiError::invalid_token)
}
