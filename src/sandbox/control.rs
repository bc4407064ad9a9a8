//! The control plane: operations tests and the demo use to steer the sandbox (not part of
//! Bling), under `/_sandbox`, and the same operations for the Rust handle.

use crate::sandbox::calllog::CallRecord;
use crate::sandbox::config::SituacaoIds;
use crate::sandbox::error::SandboxError;
use crate::sandbox::faults::FaultConfig;
use crate::sandbox::oauth::{IssueParams, TokenSet};
use crate::sandbox::query::Params;
use crate::sandbox::state::Shared;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

/// A situação of the sales module, as the control plane lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SituacaoInfo {
    pub id: i64,
    pub nome: String,
}

/// One account's state and counters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountSummary {
    pub name: String,
    pub situacao_ids: SituacaoIds,
    pub situacoes: Vec<SituacaoInfo>,
    pub contatos: usize,
    pub pedidos: usize,
    pub nfes: usize,
    /// Authorizations (code exchanges) not revoked.
    pub active_authorizations: usize,
    /// Calls admitted today against the daily quota.
    pub requests_today: u64,
    /// Calls in the log for this account (any status).
    pub calls: u64,
    /// Calls answered 429.
    pub rate_limited: u64,
    /// Calls with an injected fault.
    pub faults_injected: u64,
    /// `false` while the company is inactive ("Empresa inativa", see `set_company_active`).
    #[serde(default = "yes")]
    pub company_active: bool,
}

fn yes() -> bool {
    true
}

impl Shared {
    pub(crate) fn account_summaries(&self) -> Vec<AccountSummary> {
        let names: Vec<String> = self.store().accounts.keys().cloned().collect();
        names
            .iter()
            .filter_map(|n| self.account_summary(n))
            .collect()
    }

    pub(crate) fn account_summary(&self, name: &str) -> Option<AccountSummary> {
        let (mut summary, requests_today) = {
            let store = self.store();
            let a = store.accounts.get(name)?;
            let s = AccountSummary {
                name: a.name.clone(),
                situacao_ids: a.ids,
                situacoes: a
                    .situacoes
                    .iter()
                    .map(|s| SituacaoInfo {
                        id: s.id,
                        nome: s.nome.clone(),
                    })
                    .collect(),
                contatos: a.contatos.len(),
                pedidos: a.pedidos.len(),
                nfes: a.nfes.len(),
                active_authorizations: store.oauth.active_grants(name),
                requests_today: 0,
                calls: 0,
                rate_limited: 0,
                faults_injected: 0,
                company_active: store.oauth.company_active(name),
            };
            (s, self.limits().used_today(name))
        };
        summary.requests_today = requests_today;
        for r in self
            .log()
            .all()
            .iter()
            .filter(|r| r.account.as_deref() == Some(name))
        {
            summary.calls += 1;
            summary.rate_limited += u64::from(r.status == Some(429));
            summary.faults_injected += u64::from(r.fault.is_some());
        }
        Some(summary)
    }

    pub(crate) fn revoke(&self, account: &str, client_id: Option<&str>) -> usize {
        self.store().oauth.revoke_account(account, client_id)
    }

    pub(crate) fn add_situacao(&self, account: &str, nome: &str) -> i64 {
        self.store().add_situacao(account, nome)
    }

    pub(crate) fn set_faults(&self, account: Option<&str>, faults: Option<FaultConfig>) {
        self.faults().set(account, faults);
    }

    pub(crate) fn reset_counters(&self) {
        self.limits().reset();
    }

    pub(crate) fn grant_tokens(
        &self,
        client_id: &str,
        account: &str,
    ) -> Result<TokenSet, SandboxError> {
        if !self.config.clients.iter().any(|c| c.client_id == client_id) {
            return Err(SandboxError::UnknownClient(client_id.to_string()));
        }
        let jwt = self.jwt_only();
        self.grant_tokens_as(client_id, account, jwt)
    }

    pub(crate) fn grant_tokens_as(
        &self,
        client_id: &str,
        account: &str,
        jwt: bool,
    ) -> Result<TokenSet, SandboxError> {
        if !self.config.clients.iter().any(|c| c.client_id == client_id) {
            return Err(SandboxError::UnknownClient(client_id.to_string()));
        }
        let p = IssueParams::from(self, jwt);
        let mut store = self.store();
        store.account_mut(account);
        Ok(store.oauth.grant_directly(client_id, account, &p))
    }

    pub(crate) fn set_company_active(&self, account: &str, active: bool) {
        let mut store = self.store();
        store.account_mut(account);
        store.oauth.set_company_active(account, active);
    }

    pub(crate) fn set_app_active(
        &self,
        client_id: &str,
        active: bool,
    ) -> Result<usize, SandboxError> {
        if !self.config.clients.iter().any(|c| c.client_id == client_id) {
            return Err(SandboxError::UnknownClient(client_id.to_string()));
        }
        Ok(self.store().oauth.set_app_active(client_id, active))
    }

    pub(crate) fn jwt_only(&self) -> bool {
        self.store().oauth.jwt_only
    }

    pub(crate) fn set_jwt_only(&self, on: bool) {
        self.store().oauth.jwt_only = on;
    }

    pub(crate) fn contatos_json(&self, account: &str) -> Vec<Value> {
        let store = self.store();
        store
            .accounts
            .get(account)
            .map(|a| a.contatos.values().map(|c| c.json()).collect())
            .unwrap_or_default()
    }

    pub(crate) fn pedidos_json(&self, account: &str) -> Vec<Value> {
        let store = self.store();
        store
            .accounts
            .get(account)
            .map(|a| a.pedidos.values().map(|p| p.json(a)).collect())
            .unwrap_or_default()
    }

    pub(crate) fn nfes_json(&self, account: &str) -> Vec<Value> {
        let store = self.store();
        store
            .accounts
            .get(account)
            .map(|a| a.nfes.values().map(|n| n.json()).collect())
            .unwrap_or_default()
    }
}

fn control_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

async fn accounts(State(s): State<Arc<Shared>>) -> Json<Vec<AccountSummary>> {
    Json(s.account_summaries())
}

async fn account(State(s): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    match s.account_summary(&name) {
        Some(a) => Json(a).into_response(),
        None => control_error(StatusCode::NOT_FOUND, "no such account"),
    }
}

#[derive(Deserialize, Default)]
struct RevokeBody {
    client_id: Option<String>,
}

async fn revoke(State(s): State<Arc<Shared>>, Path(name): Path<String>, body: Bytes) -> Response {
    let body: RevokeBody = if body.is_empty() {
        RevokeBody::default()
    } else {
        match parse_json(&body) {
            Ok(b) => b,
            Err(e) => return control_error(StatusCode::BAD_REQUEST, &e),
        }
    };
    let n = s.revoke(&name, body.client_id.as_deref());
    Json(json!({"revoked": n})).into_response()
}

#[derive(Deserialize)]
struct SituacaoBody {
    nome: String,
}

async fn add_situacao(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    match parse_json::<SituacaoBody>(&body) {
        Ok(b) if !b.nome.trim().is_empty() => {
            let id = s.add_situacao(&name, b.nome.trim());
            (StatusCode::CREATED, Json(json!({"id": id}))).into_response()
        }
        Ok(_) => control_error(StatusCode::BAD_REQUEST, "nome must not be empty"),
        Err(e) => control_error(StatusCode::BAD_REQUEST, &e),
    }
}

fn put_faults(s: &Shared, account: Option<&str>, body: &[u8]) -> Response {
    match parse_json::<FaultConfig>(body) {
        Ok(f) => match f.validate() {
            Ok(()) => {
                s.set_faults(account, Some(f));
                StatusCode::NO_CONTENT.into_response()
            }
            Err(e) => control_error(StatusCode::BAD_REQUEST, &e.to_string()),
        },
        Err(e) => control_error(StatusCode::BAD_REQUEST, &e),
    }
}

async fn global_faults_get(State(s): State<Arc<Shared>>) -> Json<Option<FaultConfig>> {
    Json(s.faults().get(None))
}

async fn global_faults_put(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    put_faults(&s, None, &body)
}

async fn account_faults_get(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> Json<Option<FaultConfig>> {
    Json(s.faults().get(Some(&name)))
}

async fn account_faults_put(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    put_faults(&s, Some(&name), &body)
}

async fn account_faults_delete(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> StatusCode {
    s.set_faults(Some(&name), None);
    StatusCode::NO_CONTENT
}

/// `?account=` filters by account, `?fault=1` keeps only calls with an injected fault.
async fn calls(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Json<Vec<CallRecord>> {
    let p = Params::parse(q.as_deref());
    let account = p.get("account");
    let only_faults = p.get("fault") == Some("1");
    let all = s.log().all();
    Json(
        all.into_iter()
            .filter(|r| account.is_none_or(|a| r.account.as_deref() == Some(a)))
            .filter(|r| !only_faults || r.fault.is_some())
            .collect(),
    )
}

async fn clear_calls(State(s): State<Arc<Shared>>) -> StatusCode {
    s.log().clear();
    StatusCode::NO_CONTENT
}

async fn reset_counters(State(s): State<Arc<Shared>>) -> StatusCode {
    s.reset_counters();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct TokensBody {
    client_id: String,
}

async fn tokens(State(s): State<Arc<Shared>>, Path(name): Path<String>, body: Bytes) -> Response {
    match parse_json::<TokensBody>(&body) {
        Ok(b) => match s.grant_tokens(&b.client_id, &name) {
            Ok(t) => Json(t).into_response(),
            Err(e) => control_error(StatusCode::BAD_REQUEST, &e.to_string()),
        },
        Err(e) => control_error(StatusCode::BAD_REQUEST, &e),
    }
}

async fn contatos(State(s): State<Arc<Shared>>, Path(name): Path<String>) -> Json<Vec<Value>> {
    Json(s.contatos_json(&name))
}

async fn pedidos(State(s): State<Arc<Shared>>, Path(name): Path<String>) -> Json<Vec<Value>> {
    Json(s.pedidos_json(&name))
}

async fn nfes(State(s): State<Arc<Shared>>, Path(name): Path<String>) -> Json<Vec<Value>> {
    Json(s.nfes_json(&name))
}

#[derive(Deserialize)]
struct ActiveBody {
    active: bool,
}

async fn company(State(s): State<Arc<Shared>>, Path(name): Path<String>, body: Bytes) -> Response {
    match parse_json::<ActiveBody>(&body) {
        Ok(b) => {
            s.set_company_active(&name, b.active);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => control_error(StatusCode::BAD_REQUEST, &e),
    }
}

async fn app(State(s): State<Arc<Shared>>, Path(client_id): Path<String>, body: Bytes) -> Response {
    match parse_json::<ActiveBody>(&body) {
        Ok(b) => match s.set_app_active(&client_id, b.active) {
            Ok(n) => Json(json!({"revoked": n})).into_response(),
            Err(e) => control_error(StatusCode::NOT_FOUND, &e.to_string()),
        },
        Err(e) => control_error(StatusCode::BAD_REQUEST, &e),
    }
}

#[derive(Deserialize)]
struct EnabledBody {
    enabled: bool,
}

async fn jwt_only_get(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({"enabled": s.jwt_only()}))
}

async fn jwt_only_put(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match parse_json::<EnabledBody>(&body) {
        Ok(b) => {
            s.set_jwt_only(b.enabled);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => control_error(StatusCode::BAD_REQUEST, &e),
    }
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sandbox/accounts/{name}/company", put(company))
        .route("/_sandbox/apps/{client_id}", put(app))
        .route("/_sandbox/jwt-only", get(jwt_only_get).put(jwt_only_put))
        .route("/_sandbox/accounts", get(accounts))
        .route("/_sandbox/accounts/{name}", get(account))
        .route("/_sandbox/accounts/{name}/revoke", post(revoke))
        .route("/_sandbox/accounts/{name}/situacoes", post(add_situacao))
        .route("/_sandbox/accounts/{name}/tokens", post(tokens))
        .route(
            "/_sandbox/accounts/{name}/faults",
            get(account_faults_get)
                .put(account_faults_put)
                .delete(account_faults_delete),
        )
        .route("/_sandbox/accounts/{name}/contatos", get(contatos))
        .route("/_sandbox/accounts/{name}/pedidos", get(pedidos))
        .route("/_sandbox/accounts/{name}/nfes", get(nfes))
        .route(
            "/_sandbox/faults",
            get(global_faults_get).put(global_faults_put),
        )
        .route("/_sandbox/calls", get(calls).delete(clear_calls))
        .route("/_sandbox/reset-counters", post(reset_counters))
}
