//! `/formas-pagamentos`: the account's payment methods ([OAS] `FormasPagamentosDadosBaseDTO`,
//! `FormasPagamentosDadosDTO`). Ids are per account, so a client must discover them; a sale's
//! `parcelas[].formaPagamento.id` must name one of them.

use crate::sandbox::error::{ApiError, ApiResult};
use crate::sandbox::pipeline::AuthCtx;
use crate::sandbox::query::{check, parse_id, Params};
use crate::sandbox::state::Shared;
use axum::extract::{Path, RawQuery, State};
use axum::{Extension, Json};
use serde_json::{json, Value};
use std::sync::Arc;

/// `tipoPagamento` is the NF-e's fiscal payment code (tPag) ([OAS]).
pub(crate) const DINHEIRO: i64 = 1;
pub(crate) const CARTAO_CREDITO: i64 = 3;
pub(crate) const CARTAO_DEBITO: i64 = 4;
pub(crate) const BOLETO: i64 = 15;
pub(crate) const PIX: i64 = 17;
pub(crate) const TRANSFERENCIA: i64 = 18;

#[derive(Clone, Debug)]
pub(crate) struct FormaPagamento {
    pub id: i64,
    pub descricao: String,
    pub tipo_pagamento: i64,
    /// 1 Ativa, 0 Inativa.
    pub situacao: i64,
    /// Bling's built-in methods cannot be removed.
    pub fixa: bool,
    /// 0 Não, 1 Padrão, 2 Padrão devolução.
    pub padrao: i64,
    /// 1 Pagamentos, 2 Recebimentos, 3 both.
    pub finalidade: i64,
}

impl FormaPagamento {
    pub fn new(id: i64, descricao: &str, tipo_pagamento: i64) -> FormaPagamento {
        FormaPagamento {
            id,
            descricao: descricao.to_string(),
            tipo_pagamento,
            situacao: 1,
            fixa: false,
            padrao: 0,
            finalidade: 3,
        }
    }

    /// The list item: `FormasPagamentosDadosBaseDTO`.
    pub fn json(&self) -> Value {
        json!({
            "id": self.id, "descricao": self.descricao, "tipoPagamento": self.tipo_pagamento,
            "situacao": self.situacao, "fixa": self.fixa, "padrao": self.padrao,
            "finalidade": self.finalidade, "juros": 0, "multa": 0,
        })
    }

    /// `GET /formas-pagamentos/{id}`: the base fields plus `FormasPagamentosDadosDTO`.
    fn detail(&self) -> Value {
        let mut v = self.json();
        if let Value::Object(m) = &mut v {
            m.insert("condicao".into(), json!("1x"));
            m.insert("destino".into(), json!(1));
            m.insert("utilizaDiasUteis".into(), json!(false));
            m.insert(
                "taxas".into(),
                json!({"aliquota": 0, "valor": 0, "prazo": 0}),
            );
        }
        v
    }
}

/// The methods every new sandbox account starts with, Pix included, with ids from `first_id`
/// (per account, so ids differ between accounts). Which methods a new Bling account really has
/// is not public: these are the common ones (assumption), "Dinheiro" the default.
pub(crate) fn defaults(first_id: i64) -> Vec<FormaPagamento> {
    let seeds = [
        ("Dinheiro", DINHEIRO),
        ("Cartão de crédito", CARTAO_CREDITO),
        ("Cartão de débito", CARTAO_DEBITO),
        ("Boleto", BOLETO),
        ("Pix", PIX),
        ("Transferência bancária", TRANSFERENCIA),
    ];
    seeds
        .iter()
        .zip(first_id..)
        .map(|((descricao, tipo), id)| {
            let mut f = FormaPagamento::new(id, descricao, *tipo);
            f.fixa = *tipo == DINHEIRO;
            f.padrao = i64::from(*tipo == DINHEIRO);
            f
        })
        .collect()
}

pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<AuthCtx>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let p = Params::parse(q.as_deref());
    let mut errors = Vec::new();
    let (offset, limit) = p.page(&mut errors);
    let tipos = p.ints("tiposPagamentos", &mut errors);
    let situacao = p.int("situacao", &mut errors);
    check(errors, "FORMASPAGAMENTOS")?;
    let descricao = p.get("descricao").map(str::to_lowercase);
    let mut store = shared.store();
    let acct = store.account_mut(&ctx.account);
    let data: Vec<Value> = acct
        .formas
        .iter()
        .filter(|f| {
            (tipos.is_empty() || tipos.contains(&f.tipo_pagamento))
                && situacao.is_none_or(|s| f.situacao == s)
                && descricao
                    .as_ref()
                    .is_none_or(|d| f.descricao.to_lowercase().contains(d.as_str()))
        })
        .skip(offset)
        .take(limit)
        .map(FormaPagamento::json)
        .collect();
    Ok(Json(json!({ "data": data })))
}

pub(crate) async fn get_one(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id, "Forma de pagamento")?;
    let mut store = shared.store();
    let f = store
        .account_mut(&ctx.account)
        .formas
        .iter()
        .find(|f| f.id == id)
        .ok_or_else(|| ApiError::not_found("Forma de pagamento"))?;
    Ok(Json(json!({"data": f.detail()})))
}
