//! `/pedidos/vendas`: sales orders, with totals computed from the items in integer centavos.

use crate::sandbox::codes;
use crate::sandbox::contatos::IdRef;
use crate::sandbox::error::{ApiError, ApiResult, CollectionError, FieldError};
use crate::sandbox::money::{Centavos, Quantity};
use crate::sandbox::nfe::Nfe;
use crate::sandbox::pipeline::AuthCtx;
use crate::sandbox::query::{check, parse_body, parse_id, Params};
use crate::sandbox::state::{Account, Shared, Store};
use crate::sandbox::validation::{
    date_or_zero, format_document, normalize_document, now_brt, parse_date,
};
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
    /// Discount on the line, a percentage with two decimals ("Valor percentual": [OAS]).
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
/// The description of the [OAS] `ErrorField` example.
const SAVE_INVALID: &str = "A venda não pode ser salva, pois ocorreram problemas em sua validação.";
/// Bling's module in `namespace` ([OAS], [FM]).
pub(crate) const NS: &str = "VENDAS";
const IDENTICA: &str =
    "Informações idênticas a última venda salva, altere alguma informação caso deseje prosseguir";

fn err(code: i64, element: &str, msg: &str) -> FieldError {
    FieldError::in_ns(NS, code, element, msg)
}

fn frete(b: &PedidoBody) -> Centavos {
    b.transporte
        .get("frete")
        .and_then(|v| serde_json::from_value::<Centavos>(v.clone()).ok())
        .unwrap_or_default()
}

/// One line as Bling computes it: `quantidade × valor × (1 − desconto/100)`, `desconto` being a
/// percentage ([OAS] "Valor percentual", [U3]), rounded to the centavo per line ([LC]: "Bling
/// rounds per item"). Half-up (away from zero) is an assumption: PHP's `round()`, which Bling's
/// PHP back end ([VCR]: PHPSESSID) would use, rounds half away from zero.
pub(crate) fn line_total(item: &Item) -> Centavos {
    // valor in centavos × quantidade in 1/10,000 × (100% − desconto) in 1/10,000.
    let numerator = i128::from(item.valor.0)
        * i128::from(item.quantidade.0)
        * i128::from(10_000 - item.desconto.0);
    let scale: i128 = 10_000 * 10_000;
    let rounded = if numerator >= 0 {
        (numerator + scale / 2) / scale
    } else {
        (numerator - scale / 2) / scale
    };
    Centavos(i64::try_from(rounded).unwrap_or(i64::MAX))
}

/// Bling's totals ([LC] measured): `totalProdutos` = Σ lines; `total` = totalProdutos − the
/// order's `desconto` (REAL, or PERCENTUAL of totalProdutos only, not of the freight) +
/// `outrasDespesas` + `transporte.frete`. IPI is not added (assumption: [LC]'s measured formula
/// has no IPI term; the real order of [VCR] has `totalIPI` 0 and says nothing either way).
fn totals(b: &PedidoBody) -> (Centavos, Centavos) {
    let produtos = Centavos(b.itens.iter().map(|i| line_total(i).0).sum());
    let desconto = if b.desconto.unidade == "PERCENTUAL" {
        produtos.percent(b.desconto.valor)
    } else {
        b.desconto.valor
    };
    let total = produtos.0 - desconto.0 + b.outras_despesas.0 + frete(b).0;
    (produtos, Centavos(total))
}

fn check_date(value: &str, element: &str, errors: &mut Vec<FieldError>) {
    if !value.is_empty() && value != "0000-00-00" && parse_date(value).is_none() {
        errors.push(err(
            codes::DATA,
            element,
            &format!("A data {element} deve estar no formato AAAA-MM-DD"),
        ));
    }
}

/// "0000-00-00" (Bling's empty date on reads) sent back means no date.
fn clear_zero_date(d: &mut String) {
    if d == "0000-00-00" {
        d.clear();
    }
}

/// The account's default payment method for generated parcelas: the active `padrao` one, else
/// the first active one.
fn forma_padrao(acct: &Account) -> i64 {
    let active = || acct.formas.iter().filter(|f| f.situacao == 1);
    active()
        .find(|f| f.padrao == 1)
        .or_else(|| active().next())
        .map_or(0, |f| f.id)
}

/// Normalizes `b`, checks it against the account, and lists every refused field. `current` is
/// the order a PUT replaces (its parcela ids are the only ones a PUT may carry).
fn validate(b: &mut PedidoBody, acct: &Account, current: Option<&Pedido>) -> Vec<FieldError> {
    let own_id = current.map(|p| p.id);
    let mut errors = Vec::new();
    if b.contato.id <= 0 {
        errors.push(err(
            codes::CONTATO_OBRIGATORIO,
            "contato",
            "O contato da venda é obrigatório",
        ));
    } else if !acct.contatos.contains_key(&b.contato.id) {
        errors.push(err(
            codes::CONTATO_INEXISTENTE,
            "contato",
            "O contato informado não foi encontrado",
        ));
    }
    for d in [&mut b.data, &mut b.data_saida, &mut b.data_prevista] {
        clear_zero_date(d);
    }
    if b.data.is_empty() {
        b.data = now_brt().date().format("%Y-%m-%d").to_string();
    }
    check_date(&b.data, "data", &mut errors);
    check_date(&b.data_saida, "dataSaida", &mut errors);
    check_date(&b.data_prevista, "dataPrevista", &mut errors);
    if b.itens.is_empty() {
        errors.push(err(
            codes::ITENS_VAZIO,
            "itens",
            "A venda deve possuir ao menos um item",
        ));
    }
    let mut collection = Vec::new();
    for (i, item) in b.itens.iter().enumerate() {
        let mut bad = |code, element: &str, msg: &str| {
            collection.push(CollectionError {
                index: i + 1,
                code,
                msg: msg.into(),
                element: element.into(),
                namespace: NS.into(),
            })
        };
        if item.quantidade.0 <= 0 {
            bad(
                codes::ITEM_QUANTIDADE,
                "quantidade",
                "A quantidade do item deve ser maior que zero",
            );
        }
        if item.valor.0 < 0 {
            bad(
                codes::ITEM_VALOR,
                "valor",
                "O valor do item não pode ser negativo",
            );
        }
        if !(0..=10_000).contains(&item.desconto.0) {
            bad(
                codes::ITEM_DESCONTO,
                "desconto",
                "O desconto do item é um percentual entre 0 e 100",
            );
        }
        if item.descricao.trim().is_empty() && item.codigo.trim().is_empty() && item.produto.id == 0
        {
            bad(
                codes::ITEM_DESCRICAO,
                "descricao",
                "Informe a descrição, o código ou o produto do item",
            );
        }
    }
    let itens_ok = collection.is_empty() && !b.itens.is_empty();
    if !collection.is_empty() {
        let mut f = err(
            codes::ITENS_COM_ERROS,
            "itens",
            "Um ou mais itens da venda possuem erros de validação",
        );
        f.collection = collection;
        errors.push(f);
    }
    b.desconto.unidade = b.desconto.unidade.trim().to_ascii_uppercase();
    if b.desconto.unidade.is_empty() {
        b.desconto.unidade = "REAL".into();
    }
    let mut desconto_ok = true;
    match b.desconto.unidade.as_str() {
        "REAL" | "PERCENTUAL" => {}
        _ => {
            desconto_ok = false;
            errors.push(err(
                codes::DESCONTO_UNIDADE,
                "desconto",
                "A unidade do desconto deve ser REAL ou PERCENTUAL",
            ))
        }
    }
    if b.desconto.valor.0 < 0 || (b.desconto.unidade == "PERCENTUAL" && b.desconto.valor.0 > 10_000)
    {
        desconto_ok = false;
        errors.push(err(
            codes::DESCONTO_VALOR,
            "desconto",
            "O valor do desconto é inválido",
        ));
    }
    if b.outras_despesas.0 < 0 {
        errors.push(err(
            codes::OUTRAS_DESPESAS,
            "outrasDespesas",
            "Outras despesas não pode ser negativo",
        ));
    }
    if b.numero < 0 {
        errors.push(err(
            codes::NUMERO_INVALIDO,
            "numero",
            "O número da venda é inválido",
        ));
    } else if b.numero > 0
        && acct
            .pedidos
            .values()
            .any(|p| p.body.numero == b.numero && Some(p.id) != own_id)
    {
        errors.push(err(
            codes::NUMERO_DUPLICADO,
            "numero",
            "Já existe uma venda com este número",
        ));
    }
    errors.extend(validate_parcelas(b, acct, current, itens_ok && desconto_ok));
    // Stored as Bling reads them back, so a read-back sent again is the same sale.
    b.transporte = with_defaults(transporte_defaults(), &b.transporte);
    b.taxas = with_defaults(
        json!({"taxaComissao": 0, "custoFrete": 0, "valorBase": 0}),
        &b.taxas,
    );
    errors
}

/// Parcelas ([OAS], [LC]): each needs one of the account's payment methods (else Bling's code
/// 49 wrapper with code 12 per parcela), a PUT may carry only the order's current parcela ids,
/// and together they must add up to the total (else code 22). Absent parcelas are generated:
/// one parcela of the whole total, due on `data`, with the default payment method (assumption:
/// [OAS] marks parcelas required, yet its `data` field speaks of the account's "geração de
/// parcelas" parameter, i.e. Bling generates parcelas itself).
fn validate_parcelas(
    b: &mut PedidoBody,
    acct: &Account,
    current: Option<&Pedido>,
    totals_known: bool,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let (_, total) = totals(b);
    if b.parcelas.is_empty() {
        if totals_known {
            b.parcelas.push(Parcela {
                id: 0,
                data_vencimento: b.data.clone(),
                valor: total,
                observacoes: String::new(),
                forma_pagamento: IdRef {
                    id: forma_padrao(acct),
                },
            });
        }
        return errors;
    }
    let current_ids: Vec<i64> = current
        .map(|p| p.body.parcelas.iter().map(|x| x.id).collect())
        .unwrap_or_default();
    let mut collection = Vec::new();
    for (i, parcela) in b.parcelas.iter_mut().enumerate() {
        let mut bad = |code, element: &str, msg: &str| {
            collection.push(CollectionError {
                index: i + 1,
                code,
                msg: msg.into(),
                element: element.into(),
                namespace: NS.into(),
            })
        };
        if current.is_none() {
            // [OAS]: a parcela's `id` is "Ignorado no método POST".
            parcela.id = 0;
        } else if parcela.id > 0 && !current_ids.contains(&parcela.id) {
            bad(
                codes::PARCELA_ID,
                "id",
                &format!("O id ({}) da parcela é inválido", parcela.id),
            );
        }
        let forma = parcela.forma_pagamento.id;
        if !acct.formas.iter().any(|f| f.id == forma && f.situacao == 1) {
            bad(
                codes::FORMA_PAGAMENTO_INVALIDA,
                "formaPagamento",
                "Id da forma de pagamento inválido.",
            );
        }
        clear_zero_date(&mut parcela.data_vencimento);
        if parcela.data_vencimento.is_empty() {
            parcela.data_vencimento = b.data.clone();
        } else if parse_date(&parcela.data_vencimento).is_none() {
            bad(
                codes::PARCELA_VENCIMENTO,
                "dataVencimento",
                "A data de vencimento deve estar no formato AAAA-MM-DD",
            );
        }
        if parcela.valor.0 <= 0 {
            bad(
                codes::PARCELA_VALOR,
                "valor",
                "O valor da parcela deve ser maior que zero",
            );
        }
    }
    if !collection.is_empty() {
        let mut f = err(
            codes::PARCELAS_COM_ERROS,
            "parcelas",
            "Uma ou mais parcelas da venda possuem erros de validação",
        );
        f.collection = collection;
        errors.push(f);
    }
    let soma: i64 = b.parcelas.iter().map(|p| p.valor.0).sum();
    if totals_known && soma != total.0 {
        errors.push(err(
            codes::PARCELAS_SOMA,
            "parcelas",
            "O somatório do valor das parcelas difere do total da venda",
        ));
    }
    errors
}

/// What makes two sales "identical" for Bling's duplicate guard (assumption: Bling does not say
/// which fields it compares): the whole normalized content as saved — contato, itens,
/// parcelas, dates, loja, `numeroLoja`, observações, descontos, transporte, … — without the ids
/// Bling assigns (order `numero`, item and parcela ids).
fn fingerprint(b: &PedidoBody) -> Value {
    let mut v = serde_json::to_value(b).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.remove("numero");
        // Bling reads the order's contato from the contato record: only its id matters.
        m.insert("contato".into(), json!({"id": b.contato.id}));
        for key in ["itens", "parcelas"] {
            if let Some(Value::Array(lines)) = m.get_mut(key) {
                for line in lines {
                    if let Value::Object(l) = line {
                        l.remove("id");
                    }
                }
            }
        }
    }
    v
}

/// Bling's refusal of a sale identical to the last one saved ([FM], [LC]), byte for byte.
fn identical_sale() -> ApiError {
    ApiError::validation_described(
        SAVE_FAILED,
        "",
        vec![err(codes::VENDA_IDENTICA, "", IDENTICA)],
    )
}

/// Item and parcela ids are Bling's: new lines get fresh ones (on POST every line is new).
fn assign_line_ids(b: &mut PedidoBody, keep_items: &[i64], next_id: &mut impl FnMut() -> i64) {
    for i in &mut b.itens {
        if i.id <= 0 || !keep_items.contains(&i.id) {
            i.id = next_id();
        }
    }
    for p in &mut b.parcelas {
        if p.id <= 0 {
            p.id = next_id();
        }
    }
}

/// `transporte` as Bling reads it: its empty fields present ([VCR] GET pedido), the shipping
/// label (`etiqueta`) with empty texts when the sale has none (assumption: the recorded order
/// had a label; empty values read as empty text elsewhere in the same answer).
fn transporte_defaults() -> Value {
    json!({
        "fretePorConta": 0, "frete": 0, "quantidadeVolumes": 0, "pesoBruto": 0,
        "prazoEntrega": 0, "contato": {"id": 0, "nome": ""},
        "etiqueta": {"nome": "", "endereco": "", "numero": "", "complemento": "", "municipio": "",
            "uf": "", "cep": "", "bairro": "", "nomePais": ""},
        "volumes": [],
    })
}

/// `defaults` (an object) with what was sent on top.
fn with_defaults(defaults: Value, sent: &Map<String, Value>) -> Map<String, Value> {
    let mut m = match defaults {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for (k, v) in sent {
        m.insert(k.clone(), v.clone());
    }
    m
}

impl Pedido {
    /// The order as `GET /pedidos/vendas/{id}` shows it ([VCR] GET pedido): `contato` read from
    /// the contato record (falling back to what the order carried if it was deleted), empty
    /// dates "0000-00-00", empty references `{"id":0}`.
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
            for (key, d) in [
                ("data", &self.body.data),
                ("dataSaida", &self.body.data_saida),
                ("dataPrevista", &self.body.data_prevista),
            ] {
                m.insert(key.into(), json!(date_or_zero(d)));
            }
        }
        v
    }

    /// The `order` webhook's `data` (v1, [DOC] /webhooks): a summary, never the items.
    pub fn webhook_json(&self, acct: &Account) -> Value {
        json!({
            "id": self.id,
            "data": self.body.data,
            "numero": self.body.numero,
            "numeroLoja": self.body.numero_loja,
            "total": self.total,
            "contato": {"id": self.body.contato.id},
            "vendedor": {"id": self.body.vendedor.id},
            "loja": {"id": self.body.loja.id},
            "situacao": self.situacao_json(acct),
        })
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
                "numeroDocumento": format_document(&k.body.numero_documento),
            }),
            None => json!({
                "id": c.id, "nome": "", "tipoPessoa": c.tipo_pessoa,
                "numeroDocumento": format_document(&normalize_document(&c.numero_documento)),
            }),
        }
    }

    fn list_item(&self, acct: &Account) -> Value {
        let b = &self.body;
        json!({
            "id": self.id, "numero": b.numero, "numeroLoja": b.numero_loja, "data": b.data,
            "dataSaida": date_or_zero(&b.data_saida), "dataPrevista": date_or_zero(&b.data_prevista),
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

/// Queues the `order.{action}` webhook of order `id` (if it still exists).
pub(crate) fn emit_order(shared: &Shared, store: &Store, account: &str, id: i64, action: &str) {
    let Some(acct) = store.accounts.get(account) else {
        return;
    };
    if let Some(p) = acct.pedidos.get(&id) {
        shared.emit(store, account, "order", action, p.webhook_json(acct));
    }
}

pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<AuthCtx>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let mut b: PedidoBody = parse_body(&body, SAVE_FAILED)?;
    let mut store = shared.store();
    let acct = store.account_mut(&ctx.account);
    let errors = validate(&mut b, acct, None);
    if !errors.is_empty() {
        return Err(ApiError::validation_described(
            SAVE_FAILED,
            SAVE_INVALID,
            errors,
        ));
    }
    let fp = fingerprint(&b);
    if acct.last_sale.as_ref() == Some(&fp) {
        return Err(identical_sale());
    }
    let id = store.next_id();
    assign_line_ids(&mut b, &[], &mut || store.next_id());
    let acct = store.account_mut(&ctx.account);
    if b.numero == 0 {
        b.numero = acct.last_numero_pedido + 1;
    }
    acct.last_numero_pedido = acct.last_numero_pedido.max(b.numero);
    let (total_produtos, total) = totals(&b);
    let situacao = acct.ids.em_aberto;
    acct.last_sale = Some(fp);
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
    emit_order(&shared, &store, &ctx.account, id, "created");
    Ok((
        StatusCode::CREATED,
        Json(json!({"data": {"id": id, "alertas": []}})),
    ))
}

/// `PUT /pedidos/vendas/{id}` replaces the whole order (fields left out are cleared: [DOC]
/// /bling-api, [LC]) and answers `200 {"data":{"id","alertas":[]}}` ([OAS]).
pub(crate) async fn update(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id, "Pedido de venda")?;
    let mut b: PedidoBody = parse_body(&body, SAVE_FAILED)?;
    let mut store = shared.store();
    let acct = store.account_mut(&ctx.account);
    let current = pedido_mut(acct, id)?.clone();
    // A PUT without `numero` keeps the order's number (assumption: clearing it would leave an
    // order no one can find by number).
    if b.numero == 0 {
        b.numero = current.body.numero;
    }
    let errors = validate(&mut b, acct, Some(&current));
    if !errors.is_empty() {
        return Err(ApiError::validation_described(
            SAVE_FAILED,
            SAVE_INVALID,
            errors,
        ));
    }
    let fp = fingerprint(&b);
    if fingerprint(&current.body) == fp || acct.last_sale.as_ref() == Some(&fp) {
        return Err(identical_sale());
    }
    let keep: Vec<i64> = current.body.itens.iter().map(|i| i.id).collect();
    assign_line_ids(&mut b, &keep, &mut || store.next_id());
    let acct = store.account_mut(&ctx.account);
    acct.last_numero_pedido = acct.last_numero_pedido.max(b.numero);
    acct.last_sale = Some(fp);
    let p = pedido_mut(acct, id)?;
    let (total_produtos, total) = totals(&b);
    p.body = b;
    p.total_produtos = total_produtos;
    p.total = total;
    p.updated = now_brt();
    emit_order(&shared, &store, &ctx.account, id, "updated");
    Ok(Json(json!({"data": {"id": id, "alertas": []}})))
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
        Some(_) => {
            shared.emit(&store, &ctx.account, "order", "deleted", json!({"id": id}));
            Ok(StatusCode::NO_CONTENT)
        }
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
            ApiError::validation_described(
                "Não foi possível alterar a situação da venda",
                SAVE_INVALID,
                vec![err(
                    codes::SITUACAO_PEDIDO,
                    "idSituacao",
                    "A situação informada não existe no módulo de vendas",
                )],
            )
        })?;
    let p = pedido_mut(acct, id)?;
    p.situacao = situacao;
    p.updated = now_brt();
    emit_order(&shared, &store, &ctx.account, id, "updated");
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
        return Err(ApiError::validation_described(
            "Não foi possível gerar a nota fiscal",
            "",
            vec![err(
                codes::NFE_JA_GERADA,
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
    crate::sandbox::nfe::emit_nfe(&shared, &store, &ctx.account, nfe_id, "created");
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
    let (data_de, data_ate) = p.period("data", &mut errors);
    let (data_de, data_ate) = (data_de.map(|d| d.date()), data_ate.map(|d| d.date()));
    let (alt_de, alt_ate) = p.period("dataAlteracao", &mut errors);
    let (prev_de, prev_ate) = p.period("dataPrevista", &mut errors);
    let (prev_de, prev_ate) = (prev_de.map(|d| d.date()), prev_ate.map(|d| d.date()));
    check(errors, NS)?;

    let mut store = shared.store();
    let acct = store.account_mut(&ctx.account);
    let in_range = |value: &str, from: Option<chrono::NaiveDate>, to: Option<chrono::NaiveDate>| {
        if from.is_none() && to.is_none() {
            return true;
        }
        parse_date(value).is_some_and(|d| from.is_none_or(|f| d >= f) && to.is_none_or(|t| d <= t))
    };
    // Newest first ([VCR] `all_situations_bling_order_items.yml`: descending ids).
    let data: Vec<Value> = acct
        .pedidos
        .values()
        .rev()
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
