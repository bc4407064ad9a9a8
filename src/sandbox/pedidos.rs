//! `/pedidos/vendas`: sales orders, with totals computed from the items in integer centavos.

use crate::sandbox::contatos::IdRef;
use crate::sandbox::error::{ApiError, ApiResult, CollectionError, FieldError};
use crate::sandbox::money::{Centavos, Quantity};
use crate::sandbox::nfe::Nfe;
use crate::sandbox::pipeline::AuthCtx;
use crate::sandbox::query::{check, parse_body, parse_id, Params};
use crate::sandbox::state::{Account, Shared};
use crate::sandbox::validation::{now_brt, parse_bound, parse_date};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::Arc;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct PedidoContato {
    pub id: i64,
    pub tipo_pessoa: String,
    pub numero_documento: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Desconto {
    /// Reais when `unidade` is "REAL", a percentage (two decimals) when "PERCENTUAL".
    pub valor: Centavos,
    pub unidade: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Tributacao {
    #[serde(rename = "totalICMS")]
    pub total_icms: Centavos,
    #[serde(rename = "totalIPI")]
    pub total_ipi: Centavos,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Comissao {
    pub base: Centavos,
    pub aliquota: f64,
    pub valor: Centavos,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Item {
    pub id: i64,
    pub codigo: String,
    pub unidade: String,
    pub quantidade: Quantity,
    /// Discount on the line, in reais.
    pub desconto: Centavos,
    pub valor: Centavos,
    #[serde(rename = "aliquotaIPI")]
    pub aliquota_ipi: f64,
    pub descricao: String,
    pub descricao_detalhada: String,
    pub produto: IdRef,
    pub comissao: Comissao,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Parcela {
    pub id: i64,
    pub data_vencimento: String,
    pub valor: Centavos,
    pub observacoes: String,
    pub forma_pagamento: IdRef,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Intermediador {
    pub cnpj: String,
    pub nome_usuario: String,
}

/// A sales order as Bling accepts it. `transporte` and `taxas` are kept as sent.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct PedidoBody {
    pub numero: i64,
    pub numero_loja: String,
    pub data: String,
    pub data_saida: String,
    pub data_prevista: String,
    pub contato: PedidoContato,
    pub loja: IdRef,
    pub numero_pedido_compra: String,
    pub outras_despesas: Centavos,
    pub observacoes: String,
    pub observacoes_internas: String,
    pub desconto: Desconto,
    pub categoria: IdRef,
    pub tributacao: Tributacao,
    pub itens: Vec<Item>,
    pub parcelas: Vec<Parcela>,
    pub transporte: Map<String, Value>,
    pub vendedor: IdRef,
    pub intermediador: Intermediador,
    pub taxas: Map<String, Value>,
}

#[derive(Clone, Debug)]
pub(crate) struct Pedido {
    pub id: i64,
    pub body: PedidoBody,
    pub situacao: i64,
    pub total_produtos: Centavos,
    pub total: Centavos,
    pub nota_fiscal: Option<i64>,
    pub updated: NaiveDateTime,
}

const SAVE_FAILED: &str = "Não foi possível salvar a venda";

fn frete(b: &PedidoBody) -> Centavos {
    b.transporte
        .get("frete")
        .and_then(|v| serde_json::from_value::<Centavos>(v.clone()).ok())
        .unwrap_or_default()
}

/// Bling's totals: `totalProdutos` = Σ(quantidade × valor − desconto do item);
/// `total` = totalProdutos − desconto + outrasDespesas + frete + IPI.
fn totals(b: &PedidoBody) -> (Centavos, Centavos) {
    let produtos: i64 = b
        .itens
        .iter()
        .map(|i| i.valor.times(i.quantidade).0 - i.desconto.0)
        .sum();
    let produtos = Centavos(produtos);
    let desconto = if b.desconto.unidade == "PERCENTUAL" {
        produtos.percent(b.desconto.valor)
    } else {
        b.desconto.valor
    };
    let total =
        produtos.0 - desconto.0 + b.outras_despesas.0 + frete(b).0 + b.tributacao.total_ipi.0;
    (produtos, Centavos(total))
}

fn check_date(value: &str, element: &str, errors: &mut Vec<FieldError>) {
    if !value.is_empty() && parse_date(value).is_none() {
        errors.push(FieldError::new(
            33,
            element,
            &format!("A data {element} deve estar no formato AAAA-MM-DD"),
        ));
    }
}

/// Normalizes `b`, checks it against the account, and lists every refused field.
fn validate(b: &mut PedidoBody, acct: &Account, own_id: Option<i64>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if b.contato.id <= 0 {
        errors.push(FieldError::new(
            36,
            "contato.id",
            "O contato do pedido é obrigatório",
        ));
    } else if !acct.contatos.contains_key(&b.contato.id) {
        errors.push(FieldError::new(
            37,
            "contato.id",
            "O contato informado não foi encontrado",
        ));
    }
    if b.data.is_empty() {
        b.data = now_brt().date().format("%Y-%m-%d").to_string();
    }
    check_date(&b.data, "data", &mut errors);
    check_date(&b.data_saida, "dataSaida", &mut errors);
    check_date(&b.data_prevista, "dataPrevista", &mut errors);
    if b.itens.is_empty() {
        errors.push(FieldError::new(
            40,
            "itens",
            "O pedido deve possuir ao menos um item",
        ));
    }
    let mut collection = Vec::new();
    for (index, item) in b.itens.iter().enumerate() {
        let mut bad = |code, element: &str, msg: &str| {
            collection.push(CollectionError {
                index,
                code,
                msg: msg.into(),
                element: element.into(),
                namespace: "itens".into(),
            })
        };
        if item.quantidade.0 <= 0 {
            bad(
                41,
                "quantidade",
                "A quantidade do item deve ser maior que zero",
            );
        }
        if item.valor.0 < 0 {
            bad(42, "valor", "O valor do item não pode ser negativo");
        }
        if item.desconto.0 < 0 {
            bad(43, "desconto", "O desconto do item não pode ser negativo");
        }
        if item.descricao.trim().is_empty() && item.codigo.trim().is_empty() && item.produto.id == 0
        {
            bad(
                44,
                "descricao",
                "Informe a descrição, o código ou o produto do item",
            );
        }
    }
    if !collection.is_empty() {
        let mut f = FieldError::new(45, "itens", "Há itens inválidos no pedido");
        f.collection = collection;
        errors.push(f);
    }
    b.desconto.unidade = b.desconto.unidade.trim().to_ascii_uppercase();
    if b.desconto.unidade.is_empty() {
        b.desconto.unidade = "REAL".into();
    }
    match b.desconto.unidade.as_str() {
        "REAL" | "PERCENTUAL" => {}
        _ => errors.push(FieldError::new(
            46,
            "desconto.unidade",
            "A unidade do desconto deve ser REAL ou PERCENTUAL",
        )),
    }
    if b.desconto.valor.0 < 0 || (b.desconto.unidade == "PERCENTUAL" && b.desconto.valor.0 > 10_000)
    {
        errors.push(FieldError::new(
            47,
            "desconto.valor",
            "O valor do desconto é inválido",
        ));
    }
    if b.outras_despesas.0 < 0 {
        errors.push(FieldError::new(
            48,
            "outrasDespesas",
            "Outras despesas não pode ser negativo",
        ));
    }
    if b.numero < 0 {
        errors.push(FieldError::new(
            34,
            "numero",
            "O número do pedido é inválido",
        ));
    } else if b.numero > 0
        && acct
            .pedidos
            .values()
            .any(|p| p.body.numero == b.numero && Some(p.id) != own_id)
    {
        errors.push(FieldError::new(
            35,
            "numero",
            "Já existe um pedido de venda com este número",
        ));
    }
    errors
}

/// Item and parcela ids are Bling's; new lines get fresh ones.
fn assign_line_ids(b: &mut PedidoBody, next_id: &mut impl FnMut() -> i64) {
    for i in &mut b.itens {
        if i.id <= 0 {
            i.id = next_id();
        }
    }
    for p in &mut b.parcelas {
        if p.id <= 0 {
            p.id = next_id();
        }
    }
}

impl Pedido {
    /// The order as `GET /pedidos/vendas/{id}` shows it; `contato` is read from the contato
    /// record as Bling does (falling back to what the order carried if it was deleted).
    pub fn json(&self, acct: &Account) -> Value {
        let mut v = serde_json::to_value(&self.body).unwrap_or_else(|_| json!({}));
        if let Value::Object(m) = &mut v {
            m.insert("id".into(), json!(self.id));
            m.insert("totalProdutos".into(), json!(self.total_produtos));
            m.insert("total".into(), json!(self.total));
            m.insert("situacao".into(), self.situacao_json(acct));
            m.insert("contato".into(), self.contato_json(acct));
            m.insert(
                "notaFiscal".into(),
                json!({"id": self.nota_fiscal.unwrap_or(0)}),
            );
        }
        v
    }

    fn situacao_json(&self, acct: &Account) -> Value {
        let valor = acct
            .situacoes
            .iter()
            .find(|s| s.id == self.situacao)
            .map_or(0, |s| s.valor);
        json!({"id": self.situacao, "valor": valor})
    }

    fn contato_json(&self, acct: &Account) -> Value {
        let c = &self.body.contato;
        match acct.contatos.get(&c.id) {
            Some(k) => json!({
                "id": k.id, "nome": k.body.nome, "tipoPessoa": k.body.tipo,
                "numeroDocumento": k.body.numero_documento,
            }),
            None => json!({
                "id": c.id, "nome": "", "tipoPessoa": c.tipo_pessoa,
                "numeroDocumento": c.numero_documento,
            }),
        }
    }

    fn list_item(&self, acct: &Account) -> Value {
        let b = &self.body;
        json!({
            "id": self.id, "numero": b.numero, "numeroLoja": b.numero_loja, "data": b.data,
            "dataSaida": b.data_saida, "dataPrevista": b.data_prevista,
            "totalProdutos": self.total_produtos, "total": self.total,
            "contato": self.contato_json(acct), "situacao": self.situacao_json(acct),
            "loja": {"id": b.loja.id},
        })
    }
}

fn pedido_mut(acct: &mut Account, id: i64) -> ApiResult<&mut Pedido> {
    acct.pedidos
        .get_mut(&id)
        .ok_or_else(|| ApiError::not_found("Pedido de venda"))
}

pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<AuthCtx>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let mut b: PedidoBody = parse_body(&body, SAVE_FAILED)?;
    let mut store = shared.store();
    let errors = validate(&mut b, store.account_mut(&ctx.account), None);
    if !errors.is_empty() {
        return Err(ApiError::validation(SAVE_FAILED, errors));
    }
    let id = store.next_id();
    assign_line_ids(&mut b, &mut || store.next_id());
    let acct = store.account_mut(&ctx.account);
    if b.numero == 0 {
        b.numero = acct.last_numero_pedido + 1;
    }
    acct.last_numero_pedido = acct.last_numero_pedido.max(b.numero);
    let (total_produtos, total) = totals(&b);
    let situacao = acct.ids.em_aberto;
    acct.pedidos.insert(
        id,
        Pedido {
            id,
            body: b,
            situacao,
            total_produtos,
            total,
            nota_fiscal: None,
            updated: now_brt(),
        },
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({"data": {"id": id, "alertas": []}})),
    ))
}

pub(crate) async fn update(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let id = parse_id(&id, "Pedido de venda")?;
    let mut b: PedidoBody = parse_body(&body, SAVE_FAILED)?;
    let mut store = shared.store();
    let acct = store.account_mut(&ctx.account);
    let numero = pedido_mut(acct, id)?.body.numero;
    // A PUT without `numero` keeps the order's number: clearing it would leave an order no
    // one can find by number, which Bling does not allow.
    if b.numero == 0 {
        b.numero = numero;
    }
    let errors = validate(&mut b, acct, Some(id));
    if !errors.is_empty() {
        return Err(ApiError::validation(SAVE_FAILED, errors));
    }
    assign_line_ids(&mut b, &mut || store.next_id());
    let acct = store.account_mut(&ctx.account);
    acct.last_numero_pedido = acct.last_numero_pedido.max(b.numero);
    let p = pedido_mut(acct, id)?;
    let (total_produtos, total) = totals(&b);
    p.body = b;
    p.total_produtos = total_produtos;
    p.total = total;
    p.updated = now_brt();
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn get_one(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id, "Pedido de venda")?;
    let mut store = shared.store();
    let acct = store.account_mut(&ctx.account);
    let p = acct
        .pedidos
        .get(&id)
        .ok_or_else(|| ApiError::not_found("Pedido de venda"))?;
    Ok(Json(json!({"data": p.json(acct)})))
}

pub(crate) async fn delete(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = parse_id(&id, "Pedido de venda")?;
    let mut store = shared.store();
    match store.account_mut(&ctx.account).pedidos.remove(&id) {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::not_found("Pedido de venda")),
    }
}

pub(crate) async fn set_situacao(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<AuthCtx>,
    Path((id, id_situacao)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let id = parse_id(&id, "Pedido de venda")?;
    let mut store = shared.store();
    let acct = store.account_mut(&ctx.account);
    pedido_mut(acct, id)?;
    let situacao = id_situacao
        .parse::<i64>()
        .ok()
        .filter(|s| acct.situacoes.iter().any(|x| x.id == *s))
        .ok_or_else(|| {
            ApiError::validation(
                "Não foi possível alterar a situação do pedido",
                vec![FieldError::new(
                    38,
                    "idSituacao",
                    "A situação informada não existe no módulo de vendas",
                )],
            )
        })?;
    let p = pedido_mut(acct, id)?;
    p.situacao = situacao;
    p.updated = now_brt();
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /pedidos/vendas/{id}/gerar-nfe`: creates (does not transmit) the NF-e of the order.
pub(crate) async fn gerar_nfe(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let id = parse_id(&id, "Pedido de venda")?;
    let mut store = shared.store();
    let nfe_id = store.next_id();
    let acct = store.account_mut(&ctx.account);
    let p = acct
        .pedidos
        .get(&id)
        .ok_or_else(|| ApiError::not_found("Pedido de venda"))?;
    if let Some(existing) = p.nota_fiscal {
        return Err(ApiError::validation(
            "Não foi possível gerar a nota fiscal",
            vec![FieldError::new(
                39,
                "idPedidoVenda",
                &format!("O pedido já possui a nota fiscal {existing} vinculada"),
            )],
        ));
    }
    let nfe = Nfe::from_pedido(nfe_id, p, acct);
    acct.last_numero_nfe += 1;
    acct.nfes.insert(nfe_id, nfe);
    if let Some(p) = acct.pedidos.get_mut(&id) {
        p.nota_fiscal = Some(nfe_id);
        p.updated = now_brt();
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({"data": {"idNotaFiscal": nfe_id}})),
    ))
}

pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<AuthCtx>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let p = Params::parse(q.as_deref());
    let mut errors = Vec::new();
    let (offset, limit) = p.page(&mut errors);
    let id_contato = p.int("idContato", &mut errors);
    let situacoes = p.ints("idsSituacoes", &mut errors);
    let numero = p.int("numero", &mut errors);
    let id_loja = p.int("idLoja", &mut errors);
    let id_vendedor = p.int("idVendedor", &mut errors);
    let numeros_lojas: Vec<String> = p
        .all("numerosLojas")
        .into_iter()
        .map(str::to_string)
        .collect();
    let mut date = |key: &str, upper: bool| {
        let v = p.get(key)?;
        let parsed = parse_bound(v, upper);
        if parsed.is_none() {
            errors.push(FieldError::new(3, key, "Data inválida: use AAAA-MM-DD"));
        }
        parsed
    };
    let data_de = date("dataInicial", false).map(|d| d.date());
    let data_ate = date("dataFinal", true).map(|d| d.date());
    let alt_de = date("dataAlteracaoInicial", false);
    let alt_ate = date("dataAlteracaoFinal", true);
    let prev_de = date("dataPrevistaInicial", false).map(|d| d.date());
    let prev_ate = date("dataPrevistaFinal", true).map(|d| d.date());
    check(errors)?;

    let mut store = shared.store();
    let acct = store.account_mut(&ctx.account);
    let in_range = |value: &str, from: Option<chrono::NaiveDate>, to: Option<chrono::NaiveDate>| {
        if from.is_none() && to.is_none() {
            return true;
        }
        parse_date(value).is_some_and(|d| from.is_none_or(|f| d >= f) && to.is_none_or(|t| d <= t))
    };
    let data: Vec<Value> = acct
        .pedidos
        .values()
        .filter(|o| {
            let b = &o.body;
            id_contato.is_none_or(|c| b.contato.id == c)
                && (situacoes.is_empty() || situacoes.contains(&o.situacao))
                && numero.is_none_or(|n| b.numero == n)
                && id_loja.is_none_or(|l| b.loja.id == l)
                && id_vendedor.is_none_or(|v| b.vendedor.id == v)
                && (numeros_lojas.is_empty() || numeros_lojas.contains(&b.numero_loja))
                && in_range(&b.data, data_de, data_ate)
                && in_range(&b.data_prevista, prev_de, prev_ate)
                && alt_de.is_none_or(|d| o.updated >= d)
                && alt_ate.is_none_or(|d| o.updated <= d)
        })
        .skip(offset)
        .take(limit)
        .map(|o| o.list_item(acct))
        .collect();
    Ok(Json(json!({ "data": data })))
}
