//! Control-plane operations on an account's Bling data (not part of Bling): contatos "included
//! long ago", custom payment methods and situações, the company's dados básicos. Served under
//! `/_sandbox/accounts/{name}/…` and by the `Sandbox` handle.

use crate::sandbox::empresa::dados_basicos;
use crate::sandbox::formas::FormaPagamento;
use crate::sandbox::state::Shared;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

impl Shared {
    pub(crate) fn age_contato(&self, account: &str, id: i64, days: i64) -> bool {
        let mut store = self.store();
        store
            .accounts
            .get_mut(account)
            .is_some_and(|a| a.age_contato(id, days))
    }

    pub(crate) fn add_forma_pagamento(&self, account: &str, descricao: &str, tipo: i64) -> i64 {
        let mut store = self.store();
        let acct = store.account_mut(account);
        let id = acct.formas.iter().map(|f| f.id).max().unwrap_or(0) + 1;
        acct.formas.push(FormaPagamento::new(id, descricao, tipo));
        id
    }

    pub(crate) fn set_forma_situacao(&self, account: &str, id: i64, ativa: bool) -> bool {
        let mut store = self.store();
        let Some(acct) = store.accounts.get_mut(account) else {
            return false;
        };
        match acct.formas.iter_mut().find(|f| f.id == id) {
            Some(f) => {
                f.situacao = i64::from(ativa);
                true
            }
            None => false,
        }
    }

    pub(crate) fn formas_json(&self, account: &str) -> Vec<Value> {
        let store = self.store();
        store
            .accounts
            .get(account)
            .map(|a| a.formas.iter().map(FormaPagamento::json).collect())
            .unwrap_or_default()
    }

    pub(crate) fn empresa_json(&self, account: &str) -> Option<Value> {
        let store = self.store();
        store.accounts.get(account).map(dados_basicos)
    }

    pub(crate) fn add_situacao_herdada(
        &self,
        account: &str,
        nome: &str,
        herdado: i64,
    ) -> Option<i64> {
        self.store().add_situacao_herdada(account, nome, herdado)
    }
}

fn bad(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

#[derive(Deserialize)]
struct AgeBody {
    days: i64,
}

async fn age(
    State(s): State<Arc<Shared>>,
    Path((name, id)): Path<(String, i64)>,
    body: Bytes,
) -> Response {
    match serde_json::from_slice::<AgeBody>(&body) {
        Ok(b) if b.days >= 0 => {
            if s.age_contato(&name, id, b.days) {
                StatusCode::NO_CONTENT.into_response()
            } else {
                bad(StatusCode::NOT_FOUND, "no such contato")
            }
        }
        Ok(_) => bad(StatusCode::BAD_REQUEST, "days must not be negative"),
        Err(e) => bad(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FormaBody {
    descricao: String,
    tipo_pagamento: i64,
}

async fn add_forma(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    match serde_json::from_slice::<FormaBody>(&body) {
        Ok(b) if !b.descricao.trim().is_empty() => {
            let id = s.add_forma_pagamento(&name, b.descricao.trim(), b.tipo_pagamento);
            (StatusCode::CREATED, Json(json!({"id": id}))).into_response()
        }
        Ok(_) => bad(StatusCode::BAD_REQUEST, "descricao must not be empty"),
        Err(e) => bad(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

async fn formas(State(s): State<Arc<Shared>>, Path(name): Path<String>) -> Json<Vec<Value>> {
    Json(s.formas_json(&name))
}

async fn empresa(State(s): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    match s.empresa_json(&name) {
        Some(v) => Json(v).into_response(),
        None => bad(StatusCode::NOT_FOUND, "no such account"),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SituacaoHerdadaBody {
    nome: String,
    id_herdado: i64,
}

async fn add_situacao_herdada(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    match serde_json::from_slice::<SituacaoHerdadaBody>(&body) {
        Ok(b) if !b.nome.trim().is_empty() => {
            match s.add_situacao_herdada(&name, b.nome.trim(), b.id_herdado) {
                Some(id) => (StatusCode::CREATED, Json(json!({"id": id}))).into_response(),
                None => bad(
                    StatusCode::BAD_REQUEST,
                    "idHerdado is not a situação of the account",
                ),
            }
        }
        Ok(_) => bad(StatusCode::BAD_REQUEST, "nome must not be empty"),
        Err(e) => bad(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sandbox/accounts/{name}/contatos/{id}/age", post(age))
        .route(
            "/_sandbox/accounts/{name}/formas-pagamentos",
            get(formas).post(add_forma),
        )
        .route("/_sandbox/accounts/{name}/empresa", get(empresa))
        .route(
            "/_sandbox/accounts/{name}/situacoes-herdadas",
            post(add_situacao_herdada),
        )
}
