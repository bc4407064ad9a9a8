//! `GET /empresas/me/dados-basicos`: the Bling account's own company ([OAS]
//! `EmpresasDadosBasicosDTO`: `id, nome, cnpj, email, dataContrato`). `id` is a 32-hex string,
//! the account's identity, equal to webhooks' `companyId` ([OAS] example, [LC] measured).

use crate::sandbox::pipeline::AuthCtx;
use crate::sandbox::state::{Account, Shared};
use crate::sandbox::validation::format_document;
use axum::extract::State;
use axum::{Extension, Json};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// A 32-hex id stable for the account's name (the same in every run and every sandbox).
pub(crate) fn empresa_id(account: &str) -> String {
    let digest = Sha256::digest(format!("bling-sandbox-empresa:{account}").as_bytes());
    hex::encode(&digest[..16])
}

pub(crate) fn dados_basicos(acct: &Account) -> Value {
    json!({
        "id": acct.empresa_id,
        "nome": format!("Empresa {} LTDA", acct.name),
        "cnpj": format_document(&acct.cnpj),
        "email": format!("contato@{}.sandbox.invalid", acct.name.to_ascii_lowercase()),
        "dataContrato": acct.contratado.format("%Y-%m-%d").to_string(),
    })
}

pub(crate) async fn get(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<AuthCtx>,
) -> Json<Value> {
    let mut store = shared.store();
    Json(json!({"data": dados_basicos(store.account_mut(&ctx.account))}))
}
