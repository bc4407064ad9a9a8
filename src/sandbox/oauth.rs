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
use std::collections::{HashMap, HashSet};
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
    /// Exchanged already; a second exchange revokes the user ([DOC] /aplicativos).
    redeemed: bool,
}

struct Grant {
    client_id: String,
    account: String,
    revoked: bool,
}

struct Access {
    grant: u64,
    expires: Instant,
    /// Issued as a JWT (`enable-jwt: 1`); JWT-only mode refuses the others.
    jwt: bool,
    /// Revoked by `/oauth/revoke` on this token alone.
    revoked: bool,
}

struct Refresh {
    grant: u64,
    expires: Instant,
    rotated: bool,
    revoked: bool,
}

/// Expired entries are kept this long so late callers get "expired" rather than "unknown".
const GRACE: Duration = Duration::from_secs(3600);

pub(crate) struct OAuthStore {
    codes: HashMap<String, Code>,
    grants: HashMap<u64, Grant>,
    access: HashMap<String, Access>,
    refresh: HashMap<String, Refresh>,
    last_grant: u64,
    /// JWT-only mode: opaque tokens are neither issued nor accepted.
    pub jwt_only: bool,
    /// Accounts whose company is inactive (in arrears): "Empresa inativa".
    inactive_companies: HashSet<String>,
    /// Client apps inactivated in Bling: authorize answers `app_inativo`.
    inactive_apps: HashSet<String>,
}

// The wording of the token endpoint's and the bearer check's errors is Bling's where it is
// documented ([DOC] /aplicativos, /erros-comuns; [VCR]); the rest is taken from
// bshaffer/oauth2-server-php, whose messages Bling's documented ones match word for word.
const CODE_INVALID: &str = "Authorization code doesn't exist or is invalid for the client";
const CODE_EXPIRED: &str = "The authorization code has expired";
const REFRESH_INVALID: &str = "Invalid refresh token";
const REFRESH_EXPIRED: &str = "Refresh token has expired";
const TOKEN_INVALID: &str = "The access token provided is invalid";
const TOKEN_EXPIRED: &str = "The access token provided has expired";

/// A refused grant and the account it concerned, when known (for the call log).
type Refused = Box<(ApiError, Option<String>)>;

fn refused(e: ApiError, account: Option<String>) -> Refused {
    Box::new((e, account))
}

fn invalid_grant(description: &str) -> ApiError {
    oauth_api_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

fn oauth_api_error(status: StatusCode, kind: &'static str, description: &str) -> ApiError {
    ApiError::new(status, kind, kind, description)
}

/// `UNAUTHORIZED_ERROR` "Empresa inativa" ([DOC] /aplicativos). Status 401: assumption.
pub(crate) fn empresa_inativa() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED_ERROR",
        "Empresa inativa",
        "A empresa vinculada ao token esta inativa.",
    )
}

fn code_reused() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        "Invalid authorization code",
        "This authorization code has already been used, for security reasons the user has been revoked.",
    )
}

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
    pub fn new(jwt_only: bool) -> OAuthStore {
        OAuthStore {
            codes: HashMap::new(),
            grants: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            last_grant: 0,
            jwt_only,
            inactive_companies: HashSet::new(),
            inactive_apps: HashSet::new(),
        }
    }

    pub fn issue_code(&mut self, client_id: &str, account: &str, ttl: Duration) -> String {
        let code = random_token();
        self.codes.insert(
            code.clone(),
            Code {
                client_id: client_id.into(),
                account: account.into(),
                expires: Instant::now() + ttl,
                redeemed: false,
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
                jwt: p.jwt,
                revoked: false,
            },
        );
        self.refresh.insert(
            refresh_token.clone(),
            Refresh {
                grant,
                expires: now + p.refresh_ttl,
                rotated: false,
                revoked: false,
            },
        );
        TokenSet {
            access_token,
            expires_in: p.access_ttl.as_secs(),
            // Measured in lower case on a real account ([LC]).
            token_type: "bearer".into(),
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

    pub fn company_active(&self, account: &str) -> bool {
        !self.inactive_companies.contains(account)
    }

    fn redeem_code(
        &mut self,
        code: &str,
        client_id: &str,
        p: &IssueParams,
    ) -> Result<(TokenSet, String), Refused> {
        let now = Instant::now();
        self.prune(now);
        let Some(c) = self.codes.get(code).filter(|c| c.client_id == client_id) else {
            return Err(refused(invalid_grant(CODE_INVALID), None));
        };
        let account = c.account.clone();
        if c.redeemed {
            // Bling: "for security reasons the user has been revoked". Assumed width: every
            // authorization of that account for this app.
            self.revoke_account(&account, Some(client_id));
            return Err(refused(code_reused(), Some(account)));
        }
        if now >= c.expires {
            return Err(refused(invalid_grant(CODE_EXPIRED), Some(account)));
        }
        if !self.company_active(&account) {
            return Err(refused(empresa_inativa(), Some(account)));
        }
        let g = self.new_grant(client_id, &account);
        if let Some(c) = self.codes.get_mut(code) {
            c.redeemed = true;
        }
        Ok((self.issue(g, p), account))
    }

    fn refresh(
        &mut self,
        token: &str,
        client_id: &str,
        p: &IssueParams,
    ) -> Result<(TokenSet, String), Refused> {
        let now = Instant::now();
        self.prune(now);
        let Some(r) = self.refresh.get(token) else {
            return Err(refused(invalid_grant(REFRESH_INVALID), None));
        };
        let (grant_id, dead, expired) = (r.grant, r.rotated || r.revoked, now >= r.expires);
        let Some(grant) = self
            .grants
            .get(&grant_id)
            .filter(|g| g.client_id == client_id)
        else {
            return Err(refused(invalid_grant(REFRESH_INVALID), None));
        };
        let account = grant.account.clone();
        if grant.revoked || dead {
            return Err(refused(invalid_grant(REFRESH_INVALID), Some(account)));
        }
        if expired {
            return Err(refused(invalid_grant(REFRESH_EXPIRED), Some(account)));
        }
        if !self.company_active(&account) {
            return Err(refused(empresa_inativa(), Some(account)));
        }
        if let Some(r) = self.refresh.get_mut(token) {
            r.rotated = true;
        }
        Ok((self.issue(grant_id, p), account))
    }

    /// The account and client an access token acts for, or Bling's refusal.
    pub fn authenticate(&self, token: &str) -> Result<AuthCtx, ApiError> {
        let Some(a) = self.access.get(token).filter(|a| !a.revoked) else {
            return Err(ApiError::invalid_token(TOKEN_INVALID));
        };
        let Some(g) = self.grants.get(&a.grant).filter(|g| !g.revoked) else {
            return Err(ApiError::invalid_token(TOKEN_INVALID));
        };
        if self.jwt_only && !a.jwt {
            // Opaque tokens are discontinued after the cut-off ([DOC] /migracao-jwt).
            return Err(ApiError::invalid_token(TOKEN_INVALID));
        }
        if Instant::now() >= a.expires {
            return Err(ApiError::invalid_token(TOKEN_EXPIRED));
        }
        if !self.company_active(&g.account) {
            return Err(empresa_inativa());
        }
        Ok(AuthCtx {
            account: g.account.clone(),
            client_id: g.client_id.clone(),
        })
    }

    /// `/oauth/revoke`: without `whole_user`, only the token sent ([DOC] /aplicativos); with a
    /// `revoke_action`, every authorization of that account for the app. Returns the account.
    fn revoke_token(&mut self, token: &str, client_id: &str, whole_user: bool) -> Option<String> {
        let grant = self
            .access
            .get(token)
            .map(|a| a.grant)
            .or_else(|| self.refresh.get(token).map(|r| r.grant))?;
        let g = self.grants.get(&grant)?;
        if g.client_id != client_id {
            return None;
        }
        let account = g.account.clone();
        if whole_user {
            self.revoke_account(&account, Some(client_id));
        } else if let Some(a) = self.access.get_mut(token) {
            a.revoked = true;
        } else if let Some(r) = self.refresh.get_mut(token) {
            r.revoked = true;
        }
        Some(account)
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

    /// Company active or inactive ("Empresa inativa"); tokens survive an inactive period.
    pub fn set_company_active(&mut self, account: &str, active: bool) {
        if active {
            self.inactive_companies.remove(account);
        } else {
            self.inactive_companies.insert(account.to_string());
        }
    }

    /// Inactivating an app revokes all its tokens ([DOC] /aplicativos); reactivating it
    /// restores none. Returns how many authorizations were revoked.
    pub fn set_app_active(&mut self, client_id: &str, active: bool) -> usize {
        if active {
            self.inactive_apps.remove(client_id);
            return 0;
        }
        self.inactive_apps.insert(client_id.to_string());
        let mut n = 0;
        for g in self.grants.values_mut() {
            if g.client_id == client_id && !g.revoked {
                g.revoked = true;
                n += 1;
            }
        }
        n
    }

    pub fn app_active(&self, client_id: &str) -> bool {
        !self.inactive_apps.contains(client_id)
    }

    /// The client apps holding an unrevoked authorization on `account`, sorted: they
    /// receive the account's webhooks ("events flow once the shop has authorized the app").
    pub fn authorized_apps(&self, account: &str) -> Vec<String> {
        let mut apps: Vec<String> = self
            .grants
            .values()
            .filter(|g| g.account == account && !g.revoked && self.app_active(&g.client_id))
            .map(|g| g.client_id.clone())
            .collect();
        apps.sort();
        apps.dedup();
        apps
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
    oauth_api_error(status, kind, description).into_response()
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

/// Whether the request carries Bling's JWT migration header `enable-jwt: 1`.
pub(crate) fn enable_jwt(headers: &HeaderMap) -> bool {
    headers
        .get("enable-jwt")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        == Some("1")
}

/// Client authentication of `/oauth/token` and `/oauth/revoke`: Basic only. Credentials in
/// the body are not accepted ([DOC] /aplicativos); the wording is bshaffer's HttpBasic with
/// body credentials disabled, which Bling's documented "The client credentials are invalid"
/// matches. Status 400, as that library answers (Bling's is undocumented).
fn authenticate_client(shared: &Shared, headers: &HeaderMap) -> Result<ClientApp, ApiError> {
    let Some((id, secret)) = basic_credentials(headers) else {
        return Err(oauth_api_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "Client credentials were not found in the headers",
        ));
    };
    client(shared, &id)
        .filter(|c| c.client_secret == secret)
        .cloned()
        .ok_or_else(|| {
            oauth_api_error(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                "The client credentials are invalid",
            )
        })
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
    enable_jwt: bool,
}

fn authorize_outcome(shared: &Shared, params: &Params, from_form: bool) -> Outcome {
    let client_id = params.get("client_id").map(str::to_string);
    let fail = |status, msg: &str, client_id: Option<String>| Outcome {
        response: error_page(status, msg),
        account: None,
        client_id,
        enable_jwt: false,
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
    let status = if from_form {
        StatusCode::SEE_OTHER
    } else {
        StatusCode::FOUND
    };
    let redirect_error = |error: &str, description: &str| Outcome {
        response: redirect_with(
            &app.redirect_uri,
            &[
                ("error", Some(error)),
                ("error_description", Some(description)),
                ("state", state),
            ],
            status,
        ),
        account: Some(account.clone()),
        client_id: client_id.clone(),
        enable_jwt: false,
    };
    // An inactivated app cannot be authorized ([DOC] /erros-comuns: `error=app_inativo`).
    if !shared.store().oauth.app_active(&app.client_id) {
        return redirect_error(APP_INATIVO, APP_INATIVO_DESCRIPTION);
    }
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
            enable_jwt: false,
        };
    }
    if from_form && params.get("decision") != Some("approve") {
        return redirect_error(
            "access_denied",
            "The user denied access to your application",
        );
    }
    let code = {
        let mut store = shared.store();
        // The company is in arrears or inactive ([DOC]: `error=UNAUTHORIZED_ERROR`).
        if !store.oauth.company_active(&account) {
            drop(store);
            return redirect_error("UNAUTHORIZED_ERROR", "Empresa inativa");
        }
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
        enable_jwt: false,
    }
}

/// `error` of the redirect when the app was inactivated ([DOC] /erros-comuns).
const APP_INATIVO: &str = "app_inativo";
/// The documented text is cut after "inativad…"; the end is ours.
const APP_INATIVO_DESCRIPTION: &str = "Este aplicativo foi inativado.";

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
    let client_id = basic_credentials(headers).map(|(id, _)| id);
    let jwt = enable_jwt(headers);
    let out = |response, account| Outcome {
        response,
        account,
        client_id: client_id.clone(),
        enable_jwt: jwt,
    };
    let guard_key = client_id.clone().unwrap_or_else(|| "<anonymous>".into());
    if !shared.limits().token_call(&guard_key, Instant::now()) {
        let e = ApiError::blocked(
            "Bloqueio temporário: muitas requisições ao /oauth/token, tente novamente mais tarde.",
        );
        return out(e.into_response(), None);
    }
    let app = match authenticate_client(shared, headers) {
        Ok(app) => app,
        Err(e) => return out(e.into_response(), None),
    };
    if shared.store().oauth.jwt_only && !jwt {
        // Assumption: after the cut-off a token call without the header is refused.
        let r = oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Opaque tokens are no longer issued: send the header enable-jwt: 1",
        );
        return out(r, None);
    }
    let params = Params::parse(std::str::from_utf8(body).ok());
    let p = IssueParams::from(shared, jwt);
    let missing = |name: &str| {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("Missing parameter: \"{name}\" is required"),
        )
    };
    let result = match params.get("grant_type") {
        Some("authorization_code") => match params.get("code") {
            Some(code) => shared.store().oauth.redeem_code(code, &app.client_id, &p),
            None => return out(missing("code"), None),
        },
        Some("refresh_token") => match params.get("refresh_token") {
            Some(rt) => shared.store().oauth.refresh(rt, &app.client_id, &p),
            None => return out(missing("refresh_token"), None),
        },
        None => {
            let r = oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The grant type was not specified in the request",
            );
            return out(r, None);
        }
        Some(other) => {
            let r = oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("Grant type \"{other}\" not supported"),
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
        Err(r) => {
            let (e, account) = *r;
            out(e.into_response(), account)
        }
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
    let failed = || Outcome {
        response: ApiError::server_error().into_response(),
        account: None,
        client_id: None,
        enable_jwt: false,
    };
    let (o, status) = match decision.kind {
        Some(FaultKind::ServerError) => (failed(), Some(500)),
        Some(FaultKind::Drop) => {
            conn.kill();
            (failed(), None)
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
    let mut rec = CallRecord::start(&Method::POST, uri, o.account, o.client_id);
    rec.enable_jwt = o.enable_jwt;
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

/// `POST /oauth/revoke` ([DOC] /aplicativos): `token=<access or refresh token>` revokes only
/// that token, unless `revoke_action=logout|uninstall` (`revoke_target=user|company`) asks for
/// the whole user. Answer assumed: `200 {"revoked":true}`, also for unknown tokens (RFC 7009;
/// bshaffer/oauth2-server-php answers so).
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
    let client_id = basic_credentials(headers).map(|(id, _)| id);
    let out = |response, account| Outcome {
        response,
        account,
        client_id: client_id.clone(),
        enable_jwt: enable_jwt(headers),
    };
    let app = match authenticate_client(shared, headers) {
        Ok(app) => app,
        Err(e) => return out(e.into_response(), None),
    };
    let params = Params::parse(std::str::from_utf8(body).ok());
    let Some(token) = params.get("token") else {
        let r = oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing token parameter to revoke",
        );
        return out(r, None);
    };
    let whole_user = match params.get("revoke_action") {
        None => false,
        Some("logout" | "uninstall") => true,
        Some(_) => {
            let r = oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "revoke_action must be logout or uninstall",
            );
            return out(r, None);
        }
    };
    if !matches!(params.get("revoke_target"), None | Some("user" | "company")) {
        let r = oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "revoke_target must be user or company",
        );
        return out(r, None);
    }
    let account = shared
        .store()
        .oauth
        .revoke_token(token, &app.client_id, whole_user);
    out(
        axum::Json(serde_json::json!({"revoked": true})).into_response(),
        account,
    )
}

/// The caller of an API route, from `Authorization: Bearer …`.
pub(crate) fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<AuthCtx, ApiError> {
    // Bling's resource check reads `Bearer <token>` (bshaffer's `Bearer\s(\S+)`); anything
    // else, or no header at all, is "Malformed auth header" ([DOC] /erros-comuns).
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.contains(char::is_whitespace))
        .map(str::to_string);
    let Some(token) = token else {
        return Err(ApiError::malformed_auth_header());
    };
    let store = shared.store();
    if store.oauth.jwt_only && !enable_jwt(headers) {
        // Assumption: after the cut-off, a call without `enable-jwt: 1` ([DOC] /migracao-jwt:
        // "mantido em todas as requisições") is read as a malformed header (the doc's 400).
        return Err(ApiError::malformed_auth_header());
    }
    store.oauth.authenticate(&token)
}
