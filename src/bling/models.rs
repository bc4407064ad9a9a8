//! Bling API v3 request and response bodies, with Bling's own field names (`docs/bling-api.md`).
//!
//! - Money is [`Centavos`] in Rust and a decimal number of reais on the wire (`80.5`); the
//!   conversion happens here, in serde, and nowhere else.
//! - Dates are [`NaiveDate`] in Rust and `YYYY-MM-DD` on the wire; the empty values Bling
//!   answers for unset dates (`""`, `"0000-00-00"`) read as `None`.
//! - Optional fields are skipped when `None`. **`PUT` replaces the whole resource**: a field
//!   left `None` in an update is cleared in Bling, so updates must carry the complete record
//!   (what we own, plus whatever else should survive).
//! - Reading is lenient (`#[serde(default)]`): fields Bling leaves out read as empty, and fields
//!   we do not model are ignored.

use aggregates::money::Centavos;
use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::bling::error::BlingErrorItem;

/// Serde for [`Centavos`] as reais.
pub mod reais {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Centavos, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(v.as_reais())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Centavos, D::Error> {
        let raw = Number::deserialize(d)?
            .value()
            .map_err(serde::de::Error::custom)?;
        Centavos::from_reais(raw)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid amount of reais: {raw}")))
    }
}

/// Serde for `Option<Centavos>` as reais (`null` reads as `None`).
pub mod opt_reais {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<Centavos>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(c) => s.serialize_f64(c.as_reais()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Centavos>, D::Error> {
        match Option::<Number>::deserialize(d)? {
            None => Ok(None),
            Some(n) => {
                let raw = n.value().map_err(serde::de::Error::custom)?;
                Centavos::from_reais(raw).map(Some).ok_or_else(|| {
                    serde::de::Error::custom(format!("invalid amount of reais: {raw}"))
                })
            }
        }
    }
}

/// A JSON number, or a string holding one (some Bling answers quote decimals).
#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Float(f64),
    Text(String),
}

impl Number {
    fn value(self) -> Result<f64, String> {
        match self {
            Number::Float(f) => Ok(f),
            Number::Text(s) => s.trim().parse().map_err(|_| format!("not a number: {s:?}")),
        }
    }
}

/// Serde for `Option<NaiveDate>` as `YYYY-MM-DD`; `""`, `"0000-00-00"` and `null` are `None`.
pub mod opt_date {
    use super::*;

    const FORMAT: &str = "%Y-%m-%d";

    pub fn serialize<S: Serializer>(v: &Option<NaiveDate>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.collect_str(&d.format(FORMAT)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
        let Some(raw) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let raw = raw.trim();
        if raw.is_empty() || raw.starts_with("0000-00-00") {
            return Ok(None);
        }
        // Some answers carry a time after the date; the date is what we model.
        let date = raw.get(..10).unwrap_or(raw);
        NaiveDate::parse_from_str(date, FORMAT)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("invalid date {raw:?}: {e}")))
    }
}

/// `{"data": …}`, Bling's envelope of every successful answer with a body.
#[derive(Debug, Clone, Deserialize)]
pub struct Data<T> {
    pub data: T,
}

/// `{ "id": … }`, the reference to another resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdRef {
    pub id: i64,
}

impl IdRef {
    pub fn new(id: i64) -> IdRef {
        IdRef { id }
    }
}

/// `{ "id", "descricao" }` (tipos de contato, pessoas de contato).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdDescricao {
    pub id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub descricao: Option<String>,
}

/// `POST` answers: `{"data":{"id":…, "alertas":[…]}}` (only sales orders carry alerts).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreatedId {
    pub id: i64,
    pub alertas: Vec<BlingErrorItem>,
}

// ---------------------------------------------------------------------------------------------
// Contatos

/// `situacao` of a contato: ativo.
pub const CONTATO_ATIVO: &str = "A";
/// `tipo` of a contato: pessoa física.
pub const PESSOA_FISICA: &str = "F";
/// `tipo` of a contato: pessoa jurídica.
pub const PESSOA_JURIDICA: &str = "J";
/// `indicadorIe`: não contribuinte.
pub const IE_NAO_CONTRIBUINTE: i64 = 9;

/// A contato as `POST`/`PUT /contatos` take it and `GET /contatos/{id}` answers it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Contato {
    /// Bling's id: read from `GET`, never sent (it travels in the path).
    #[serde(skip_serializing)]
    pub id: Option<i64>,
    pub nome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codigo: Option<String>,
    /// `"A"` ativo, `"E"` excluído, `"I"` inativo, `"S"` sem movimento.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub situacao: Option<String>,
    /// CPF or CNPJ: we send digits; Bling reads it back punctuated ("529.982.247-25"), so
    /// compare it only through a normalisation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numero_documento: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telefone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub celular: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fantasia: Option<String>,
    /// `"F"` física, `"J"` jurídica, `"E"` estrangeira.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tipo: Option<String>,
    /// 1 contribuinte, 2 isento, 9 não contribuinte.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indicador_ie: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ie: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orgao_emissor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endereco: Option<Enderecos>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendedor: Option<IdRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dados_adicionais: Option<DadosAdicionais>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub financeiro: Option<Financeiro>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pais: Option<Pais>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tipos_contato: Vec<IdDescricao>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pessoas_contato: Vec<IdDescricao>,
}

/// `endereco { geral, cobranca }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Enderecos {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geral: Option<Endereco>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cobranca: Option<Endereco>,
}

/// One address; `cep` is 8 digits, `uf` two letters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Endereco {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endereco: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cep: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bairro: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub municipio: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uf: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numero: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complemento: Option<String>,
}

/// `dadosAdicionais`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DadosAdicionais {
    #[serde(with = "opt_date", skip_serializing_if = "Option::is_none")]
    pub data_nascimento: Option<NaiveDate>,
    /// `"M"` or `"F"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sexo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub naturalidade: Option<String>,
}

/// `financeiro`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Financeiro {
    #[serde(with = "opt_reais", skip_serializing_if = "Option::is_none")]
    pub limite_credito: Option<Centavos>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condicao_pagamento: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub categoria: Option<IdRef>,
}

/// `pais { nome }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Pais {
    pub nome: String,
}

/// A row of `GET /contatos`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ContatoListItem {
    pub id: i64,
    pub nome: String,
    pub codigo: String,
    pub situacao: String,
    pub numero_documento: String,
    pub telefone: String,
    pub celular: String,
}

// ---------------------------------------------------------------------------------------------
// Pedidos de venda

/// A sales order as `POST`/`PUT /pedidos/vendas` take it and `GET /pedidos/vendas/{id}`
/// answers it. Fields marked "read only" are Bling's and never sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PedidoVenda {
    /// Read only (the id travels in the path).
    #[serde(skip_serializing)]
    pub id: Option<i64>,
    /// Bling's order number; `None` lets Bling number it (and a `PUT` without it keeps it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numero: Option<i64>,
    /// Our key on the order (the invoice id): how we find it again after a lost answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numero_loja: Option<String>,
    #[serde(with = "opt_date", skip_serializing_if = "Option::is_none")]
    pub data: Option<NaiveDate>,
    #[serde(with = "opt_date", skip_serializing_if = "Option::is_none")]
    pub data_saida: Option<NaiveDate>,
    #[serde(with = "opt_date", skip_serializing_if = "Option::is_none")]
    pub data_prevista: Option<NaiveDate>,
    pub contato: PedidoContato,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loja: Option<IdRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numero_pedido_compra: Option<String>,
    #[serde(with = "opt_reais", skip_serializing_if = "Option::is_none")]
    pub outras_despesas: Option<Centavos>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observacoes: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observacoes_internas: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desconto: Option<Desconto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub categoria: Option<IdRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tributacao: Option<Tributacao>,
    pub itens: Vec<ItemPedido>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parcelas: Vec<Parcela>,
    /// Kept as JSON: we do not ship goods through Bling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transporte: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendedor: Option<IdRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intermediador: Option<Intermediador>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taxas: Option<serde_json::Value>,
    /// Read only: Σ of the items.
    #[serde(with = "opt_reais", skip_serializing)]
    pub total_produtos: Option<Centavos>,
    /// Read only: what the customer pays.
    #[serde(with = "opt_reais", skip_serializing)]
    pub total: Option<Centavos>,
    /// Read only: change it with `PATCH …/situacoes/{id}`.
    #[serde(skip_serializing)]
    pub situacao: Option<SituacaoRef>,
    /// Read only: the NF-e generated from the order (`id` 0 when none).
    #[serde(skip_serializing)]
    pub nota_fiscal: Option<IdRef>,
}

/// `contato` of an order: `id` is required; Bling answers `nome` too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PedidoContato {
    pub id: i64,
    /// Read only.
    #[serde(skip_serializing)]
    pub nome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tipo_pessoa: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numero_documento: Option<String>,
}

impl PedidoContato {
    pub fn id(id: i64) -> PedidoContato {
        PedidoContato {
            id,
            ..PedidoContato::default()
        }
    }
}

/// `desconto { valor, unidade }` of an order. `valor` is reais for `"REAL"` and a percentage
/// for `"PERCENTUAL"`, so it stays a number; build it with [`Desconto::reais`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Desconto {
    pub valor: f64,
    pub unidade: String,
}

impl Desconto {
    /// A discount of an amount (`unidade: "REAL"`).
    pub fn reais(amount: Centavos) -> Desconto {
        Desconto {
            valor: amount.as_reais(),
            unidade: "REAL".into(),
        }
    }

    /// A discount of a percentage of the products (`unidade: "PERCENTUAL"`).
    pub fn percentual(percent: f64) -> Desconto {
        Desconto {
            valor: percent,
            unidade: "PERCENTUAL".into(),
        }
    }

    /// The amount, when this is a discount in reais.
    pub fn as_centavos(&self) -> Option<Centavos> {
        (self.unidade.eq_ignore_ascii_case("REAL"))
            .then(|| Centavos::from_reais(self.valor))
            .flatten()
    }
}

/// `tributacao { totalICMS, totalIPI }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tributacao {
    #[serde(
        rename = "totalICMS",
        with = "opt_reais",
        skip_serializing_if = "Option::is_none"
    )]
    pub total_icms: Option<Centavos>,
    #[serde(
        rename = "totalIPI",
        with = "opt_reais",
        skip_serializing_if = "Option::is_none"
    )]
    pub total_ipi: Option<Centavos>,
}

/// One line of an order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ItemPedido {
    /// Bling's line id; send it back in a `PUT` to keep the line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codigo: Option<String>,
    /// `"UN"`, `"KG"`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unidade: Option<String>,
    /// May be fractional (1.5 kg).
    pub quantidade: f64,
    /// Discount on the line **as a percentage** of `quantidade × valor` ("Valor percentual",
    /// [OAS] `itens[].desconto`): `10.0` is 10 %. See `sync::mapping` for how our discounts in
    /// centavos reach Bling exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desconto: Option<f64>,
    /// Unit price.
    #[serde(with = "reais")]
    pub valor: Centavos,
    #[serde(rename = "aliquotaIPI", skip_serializing_if = "Option::is_none")]
    pub aliquota_ipi: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub descricao: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub descricao_detalhada: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub produto: Option<IdRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comissao: Option<Comissao>,
}

/// `comissao { base, aliquota, valor }` of a line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Comissao {
    #[serde(with = "reais")]
    pub base: Centavos,
    pub aliquota: f64,
    #[serde(with = "reais")]
    pub valor: Centavos,
}

/// One installment of an order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Parcela {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    #[serde(with = "opt_date", skip_serializing_if = "Option::is_none")]
    pub data_vencimento: Option<NaiveDate>,
    #[serde(with = "reais")]
    pub valor: Centavos,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observacoes: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forma_pagamento: Option<IdRef>,
}

/// `intermediador { cnpj, nomeUsuario }` (marketplaces).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Intermediador {
    pub cnpj: String,
    pub nome_usuario: String,
}

/// `situacao { id, valor }` of an order (`valor` is Bling's legacy number of the default
/// situação it derives from).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SituacaoRef {
    pub id: i64,
    pub valor: i64,
}

/// A row of `GET /pedidos/vendas`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PedidoVendaListItem {
    pub id: i64,
    pub numero: i64,
    pub numero_loja: String,
    #[serde(with = "opt_date")]
    pub data: Option<NaiveDate>,
    #[serde(with = "opt_date")]
    pub data_saida: Option<NaiveDate>,
    #[serde(with = "opt_date")]
    pub data_prevista: Option<NaiveDate>,
    #[serde(with = "reais")]
    pub total_produtos: Centavos,
    #[serde(with = "reais")]
    pub total: Centavos,
    pub contato: PedidoContato,
    pub situacao: SituacaoRef,
    pub loja: Option<IdRef>,
}

// ---------------------------------------------------------------------------------------------
// Formas de pagamento, empresa

/// A payment method of `GET /formas-pagamentos` ([OAS] `FormasPagamentosDadosBaseDTO`). Ids
/// differ per account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FormaPagamento {
    pub id: i64,
    pub descricao: String,
    /// The NF-e's fiscal payment type (tPag): 1 dinheiro, 2 cheque, 3 cartão de crédito,
    /// 4 cartão de débito, 15 boleto, 16 depósito, 17 Pix, 18 transferência, 99 outros, …
    pub tipo_pagamento: i64,
    /// 1 ativa, 0 inativa.
    #[serde(deserialize_with = "lenient_opt_i64")]
    pub situacao: Option<i64>,
    pub fixa: Option<bool>,
    /// 0 não, 1 padrão, 2 padrão devolução.
    #[serde(deserialize_with = "lenient_opt_i64")]
    pub padrao: Option<i64>,
    /// 1 pagamentos, 2 recebimentos, 3 both.
    #[serde(deserialize_with = "lenient_opt_i64")]
    pub finalidade: Option<i64>,
}

impl FormaPagamento {
    /// Usable for a sale: active (or unstated) and meant for receiving.
    pub fn usable_for_sales(&self) -> bool {
        self.situacao.unwrap_or(1) == 1 && self.finalidade.is_none_or(|f| f == 2 || f == 3)
    }
}

fn lenient_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        Some(serde_json::Value::Bool(b)) => Some(i64::from(b)),
        _ => None,
    })
}

/// `GET /empresas/me/dados-basicos`: the Bling account ([OAS]; [LC] measured that `id` equals
/// the webhooks' `companyId`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EmpresaDadosBasicos {
    /// 32 hex characters.
    pub id: String,
    pub nome: String,
    pub cnpj: String,
    pub email: String,
}

// ---------------------------------------------------------------------------------------------
// Situações

/// A module of `GET /situacoes/modulos`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ModuloSistema {
    pub id: i64,
    pub nome: String,
    pub descricao: String,
    pub criar_situacoes: bool,
}

/// A situação of `GET /situacoes/modulos/{idModuloSistema}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Situacao {
    pub id: i64,
    pub nome: String,
    /// The default situação a custom one derives from (0 for the defaults).
    pub id_herdado: i64,
    pub cor: String,
}

/// The sales-order module and its situações, as discovered on one account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SituacoesDeVenda {
    pub modulo: ModuloSistema,
    pub situacoes: Vec<Situacao>,
}

impl SituacoesDeVenda {
    /// The situação named `nome`, ignoring case, accents and surrounding spaces
    /// (`"em digitacao"` finds "Em digitação").
    pub fn by_nome(&self, nome: &str) -> Option<&Situacao> {
        let wanted = fold(nome);
        self.situacoes.iter().find(|s| fold(&s.nome) == wanted)
    }

    /// The id of the situação named `nome` (see [`SituacoesDeVenda::by_nome`]).
    pub fn id_of(&self, nome: &str) -> Option<i64> {
        self.by_nome(nome).map(|s| s.id)
    }
}

/// Lower case without the accents of Portuguese, for comparing names.
pub(crate) fn fold(s: &str) -> String {
    s.trim()
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'á' | 'à' | 'â' | 'ã' | 'ä' => 'a',
            'é' | 'ê' | 'è' | 'ë' => 'e',
            'í' | 'ì' | 'î' | 'ï' => 'i',
            'ó' | 'ò' | 'ô' | 'õ' | 'ö' => 'o',
            'ú' | 'ù' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            other => other,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// NF-e

/// `situacao` of an NF-e: pendente (generated, not sent).
pub const NFE_PENDENTE: i64 = 1;
/// `situacao` of an NF-e: autorizada by SEFAZ.
pub const NFE_AUTORIZADA: i64 = 5;

/// An NF-e as `GET /nfe/{id}` answers it (the fields we use; the rest is ignored).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Nfe {
    pub id: i64,
    /// 0 entrada, 1 saída.
    pub tipo: i64,
    /// 1 pendente, 5 autorizada, 4 rejeitada, … (see Bling's documentation).
    pub situacao: i64,
    pub numero: String,
    /// `YYYY-MM-DD HH:MM:SS`, Brasília time.
    pub data_emissao: String,
    pub data_operacao: String,
    pub contato: NfeContato,
    pub natureza_operacao: Option<IdRef>,
    pub loja: Option<IdRef>,
    pub serie: i64,
    #[serde(with = "opt_reais")]
    pub valor_nota: Option<Centavos>,
    /// 44 digits once authorized, empty before.
    pub chave_acesso: String,
    pub xml: String,
    pub link_danfe: String,
    #[serde(rename = "linkPDF")]
    pub link_pdf: String,
    pub numero_pedido_loja: String,
    pub vendedor: Option<IdRef>,
}

/// The recipient of an NF-e.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NfeContato {
    pub id: i64,
    pub nome: String,
    pub numero_documento: String,
    pub ie: String,
    pub rg: String,
    pub telefone: String,
    pub email: String,
    pub endereco: Option<serde_json::Value>,
}

/// `POST /nfe/{id}/enviar` answers `{"data":{"xml":…}}` ([OAS]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub(crate) struct NfeEnviada {
    pub xml: String,
}

/// `POST /pedidos/vendas/{id}/gerar-nfe` answers `{"data":{"idNotaFiscal":…}}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct NfeGerada {
    pub id_nota_fiscal: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn money_is_reais_on_the_wire() {
        let item = ItemPedido {
            quantidade: 2.0,
            valor: Centavos(8050),
            desconto: Some(12.5),
            descricao: Some("Ração".into()),
            ..ItemPedido::default()
        };
        let v = serde_json::to_value(&item).unwrap();
        assert_eq!(v["valor"], json!(80.5));
        assert_eq!(v["desconto"], json!(12.5), "a percentage, not reais");
        assert!(v.get("id").is_none());
        let back: ItemPedido =
            serde_json::from_value(json!({"valor": 80.5, "quantidade": 1, "desconto": 10}))
                .unwrap();
        assert_eq!(back.valor, Centavos(8050));
        assert_eq!(back.desconto, Some(10.0));
        assert!(serde_json::from_value::<ItemPedido>(json!({"valor": -1})).is_err());
    }

    #[test]
    fn read_only_and_unset_fields_are_not_sent() {
        let pedido = PedidoVenda {
            id: Some(7),
            numero_loja: Some("INV-1".into()),
            data: NaiveDate::from_ymd_opt(2025, 1, 31),
            contato: PedidoContato {
                id: 5,
                nome: Some("Ana".into()),
                ..PedidoContato::default()
            },
            total: Some(Centavos(100)),
            ..PedidoVenda::default()
        };
        let v = serde_json::to_value(&pedido).unwrap();
        assert_eq!(
            v,
            json!({"numeroLoja": "INV-1", "data": "2025-01-31", "contato": {"id": 5}, "itens": []})
        );
    }

    #[test]
    fn empty_dates_read_as_none() {
        let item: PedidoVendaListItem = serde_json::from_value(json!({
            "id": 1, "data": "2025-02-03", "dataSaida": "", "dataPrevista": "0000-00-00",
            "total": 10, "totalProdutos": 10.0
        }))
        .unwrap();
        assert_eq!(item.data, NaiveDate::from_ymd_opt(2025, 2, 3));
        assert_eq!(item.data_saida, None);
        assert_eq!(item.data_prevista, None);
        assert_eq!(item.total, Centavos(1000));
    }

    #[test]
    fn payment_methods_read_as_the_spec_and_answers_give_them() {
        let f: FormaPagamento = serde_json::from_value(json!({"id": 1135275, "descricao": "Pix",
            "tipoPagamento": 17, "situacao": 1, "fixa": false, "padrao": 0, "finalidade": 3}))
        .unwrap();
        assert_eq!((f.id, f.tipo_pagamento), (1135275, 17));
        assert!(f.usable_for_sales());
        let inactive: FormaPagamento =
            serde_json::from_value(json!({"id": 2, "descricao": "Cheque", "tipoPagamento": 2,
                "situacao": "0"}))
            .unwrap();
        assert!(!inactive.usable_for_sales());
        let paying_only: FormaPagamento =
            serde_json::from_value(json!({"id": 3, "tipoPagamento": 1, "finalidade": 1})).unwrap();
        assert!(!paying_only.usable_for_sales());
    }

    #[test]
    fn situacoes_are_found_by_folded_name() {
        let s = SituacoesDeVenda {
            modulo: ModuloSistema::default(),
            situacoes: vec![Situacao {
                id: 21,
                nome: "Em digitação".into(),
                ..Situacao::default()
            }],
        };
        assert_eq!(s.id_of("  EM DIGITACAO "), Some(21));
        assert_eq!(s.id_of("Atendido"), None);
    }
}
