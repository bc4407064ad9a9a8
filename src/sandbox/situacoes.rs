//! Situações of the sales-order module: Bling's defaults (ids per account) plus custom ones,
//! discoverable through `/situacoes/modulos`.

use crate::sandbox::config::SituacaoIds;
use crate::sandbox::error::{ApiError, ApiResult};
use crate::sandbox::pipeline::AuthCtx;
use crate::sandbox::state::Shared;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde_json::{json, Value};
use std::sync::Arc;

/// The sales-order ("Vendas") module id.
pub(crate) const MODULO_VENDAS: i64 = 98310;

#[derive(Clone, Debug)]
pub(crate) struct Situacao {
    pub id: i64,
    pub nome: String,
    /// The default situação this one derives from; 0 for the defaults themselves.
    pub id_herdado: i64,
    pub cor: String,
    /// Bling's legacy numeric value of the (inherited) default situação, shown as
    /// `situacao.valor` on orders.
    pub valor: i64,
}

impl Situacao {
    pub fn custom(id: i64, nome: &str, herdado: i64) -> Situacao {
        Situacao {
            id,
            nome: nome.to_string(),
            id_herdado: herdado,
            cor: "#8E44AD".into(),
            valor: 3,
        }
    }

    fn json(&self) -> Value {
        json!({"id": self.id, "nome": self.nome, "idHerdado": self.id_herdado, "cor": self.cor})
    }
}

pub(crate) fn defaults(ids: &SituacaoIds) -> Vec<Situacao> {
    let d = |id, nome: &str, cor: &str, valor| Situacao {
        id,
        nome: nome.into(),
        id_herdado: 0,
        cor: cor.into(),
        valor,
    };
    vec![
        d(ids.em_aberto, "Em aberto", "#E9DC40", 0),
        d(ids.atendido, "Atendido", "#3FB57A", 1),
        d(ids.cancelado, "Cancelado", "#CA3838", 2),
        d(ids.em_andamento, "Em andamento", "#5A86CF", 3),
        d(ids.venda_agenciada, "Venda agenciada", "#FF9900", 4),
        d(ids.em_digitacao, "Em digitação", "#A3A3A3", 5),
        d(ids.verificado, "Verificado", "#2FC2CE", 6),
    ]
}

fn parse_modulo(raw: &str) -> ApiResult<i64> {
    match raw.parse::<i64>() {
        Ok(MODULO_VENDAS) => Ok(MODULO_VENDAS),
        _ => Err(ApiError::not_found("Módulo")),
    }
}

pub(crate) async fn modulos(Extension(_ctx): Extension<AuthCtx>) -> Json<Value> {
    Json(json!({"data": [{
        "id": MODULO_VENDAS,
        "nome": "Vendas",
        "descricao": "Pedidos de venda",
        "criarSituacoes": true
    }]}))
}

pub(crate) async fn situacoes_do_modulo(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(modulo): Path<String>,
) -> ApiResult<Json<Value>> {
    parse_modulo(&modulo)?;
    let mut store = shared.store();
    let acct = store.account_mut(&ctx.account);
    let data: Vec<Value> = acct.situacoes.iter().map(Situacao::json).collect();
    Ok(Json(json!({ "data": data })))
}

/// Every ordered pair of distinct situações, all active: the sandbox does not restrict
/// transitions, so the list only tells clients which moves exist.
pub(crate) async fn transicoes(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(modulo): Path<String>,
) -> ApiResult<Json<Value>> {
    let modulo = parse_modulo(&modulo)?;
    let mut store = shared.store();
    let acct = store.account_mut(&ctx.account);
    let mut data = Vec::new();
    let mut id = 0;
    for from in &acct.situacoes {
        for to in &acct.situacoes {
            if from.id == to.id {
                continue;
            }
            id += 1;
            data.push(json!({
                "id": id,
                "ativo": true,
                "acoes": [],
                "modulo": {"id": modulo},
                "situacaoOrigem": {"id": from.id, "nome": from.nome},
                "situacaoDestino": {"id": to.id, "nome": to.nome},
            }));
        }
    }
    Ok(Json(json!({ "data": data })))
}
