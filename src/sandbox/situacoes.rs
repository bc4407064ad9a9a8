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
    /// The normalized code shown as `situacao.valor` on orders, the same in every account
    /// ([OAS], [LC] measured); a custom situação carries its parent's ([VCR]).
    pub valor: i64,
}

impl Situacao {
    pub fn custom(id: i64, nome: &str, herdado: i64, valor: i64) -> Situacao {
        Situacao {
            id,
            nome: nome.to_string(),
            id_herdado: herdado,
            cor: "#8E44AD".into(),
            valor,
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
        d(ids.em_digitacao, "Em digitação", "#A3A3A3", 10),
        d(ids.verificado, "Verificado", "#2FC2CE", 11),
    ]
}

/// The purchase-order ("Compras") module id (a public file lists it beside 98310).
pub(crate) const MODULO_COMPRAS: i64 = 98309;

/// The modules `/situacoes/modulos` lists, in id order: Vendas is **not** first, so a client
/// must pick it by name or id. 98309 and 98310 are evidenced ([U1] and a public file); the
/// other two ids and every non-Vendas situação id are the sandbox's (assumption).
const MODULOS: [(i64, &str, &str); 4] = [
    (MODULO_COMPRAS, "Compras", "Pedidos de compra"),
    (MODULO_VENDAS, "Vendas", "Pedidos de Venda"),
    (98311, "Contas a receber", "Contas a receber"),
    (98313, "Notas fiscais", "Notas fiscais de saída"),
];

/// Fixed situações of the modules the sandbox does not otherwise model (assumption): ids of
/// their own, so a client reading the wrong module gets ids Vendas does not have.
fn other_module(modulo: i64) -> Vec<Situacao> {
    let d = |id, nome: &str, cor: &str, valor| Situacao {
        id,
        nome: nome.into(),
        id_herdado: 0,
        cor: cor.into(),
        valor,
    };
    let base = (modulo - MODULO_COMPRAS) * 100 + 28;
    vec![
        d(base, "Em aberto", "#E9DC40", 0),
        d(base + 3, "Atendido", "#3FB57A", 1),
        d(base + 6, "Cancelado", "#CA3838", 2),
        d(base + 9, "Em andamento", "#5A86CF", 3),
    ]
}

fn parse_modulo(raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>()
        .ok()
        .filter(|m| MODULOS.iter().any(|(id, _, _)| id == m))
        .ok_or_else(|| ApiError::not_found("Módulo"))
}

fn situacoes_of(acct: &crate::sandbox::state::Account, modulo: i64) -> Vec<Situacao> {
    if modulo == MODULO_VENDAS {
        acct.situacoes.clone()
    } else {
        other_module(modulo)
    }
}

pub(crate) async fn modulos(Extension(_ctx): Extension<AuthCtx>) -> Json<Value> {
    let data: Vec<Value> = MODULOS
        .iter()
        .map(|(id, nome, descricao)| {
            json!({"id": id, "nome": nome, "descricao": descricao, "criarSituacoes": true})
        })
        .collect();
    Json(json!({ "data": data }))
}

pub(crate) async fn situacoes_do_modulo(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(modulo): Path<String>,
) -> ApiResult<Json<Value>> {
    let modulo = parse_modulo(&modulo)?;
    let mut store = shared.store();
    let acct = store.account_mut(&ctx.account);
    let data: Vec<Value> = situacoes_of(acct, modulo)
        .iter()
        .map(Situacao::json)
        .collect();
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
    let situacoes = situacoes_of(store.account_mut(&ctx.account), modulo);
    let mut data = Vec::new();
    let mut id = 0;
    for from in &situacoes {
        for to in &situacoes {
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
