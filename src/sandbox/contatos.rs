//! `/contatos`: Bling's customers and suppliers, validated as Bling validates them.

use crate::sandbox::codes;
use crate::sandbox::error::{ApiError, ApiResult, FieldError};
use crate::sandbox::money::Centavos;
use crate::sandbox::pipeline::AuthCtx;
use crate::sandbox::query::{check, parse_body, parse_id, Params};
use crate::sandbox::state::{Account, Shared};
use crate::sandbox::validation::{
    cep_uf, cep_valid, document_kind, document_valid, format_cep, format_document, format_phone,
    normalize_cep, normalize_document, now_brt, parse_date, uf_valid, Document,
};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct IdRef {
    pub id: i64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct IdDescricao {
    pub id: i64,
    pub descricao: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Endereco {
    pub endereco: String,
    pub cep: String,
    pub bairro: String,
    pub municipio: String,
    pub uf: String,
    pub numero: String,
    pub complemento: String,
}

impl Endereco {
    fn is_blank(&self) -> bool {
        [
            &self.endereco,
            &self.cep,
            &self.bairro,
            &self.municipio,
            &self.uf,
            &self.numero,
            &self.complemento,
        ]
        .iter()
        .all(|s| s.trim().is_empty())
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Enderecos {
    pub geral: Endereco,
    pub cobranca: Endereco,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct DadosAdicionais {
    pub data_nascimento: String,
    pub sexo: String,
    pub naturalidade: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Financeiro {
    pub limite_credito: Centavos,
    pub condicao_pagamento: String,
    pub categoria: IdRef,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Pais {
    pub nome: String,
}

/// A contato as Bling accepts and returns it; fields left out read as empty.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct ContatoBody {
    pub nome: String,
    pub codigo: String,
    pub situacao: String,
    pub numero_documento: String,
    pub telefone: String,
    pub celular: String,
    pub fantasia: String,
    pub tipo: String,
    pub indicador_ie: i64,
    pub ie: String,
    pub rg: String,
    pub orgao_emissor: String,
    pub email: String,
    pub endereco: Enderecos,
    pub vendedor: IdRef,
    pub dados_adicionais: DadosAdicionais,
    pub financeiro: Financeiro,
    pub pais: Pais,
    pub tipos_contato: Vec<IdDescricao>,
    pub pessoas_contato: Vec<IdDescricao>,
}

#[derive(Clone, Debug)]
pub(crate) struct Contato {
    pub id: i64,
    pub body: ContatoBody,
    pub created: NaiveDateTime,
    pub updated: NaiveDateTime,
}

#[derive(Serialize)]
struct WithId<'a> {
    id: i64,
    #[serde(flatten)]
    body: &'a ContatoBody,
}

impl Contato {
    /// The contato as `GET /contatos/{id}` reads it: document, phones and CEPs punctuated
    /// ([VCR], [OAS], [U1]; the CEP is an assumption from the [OAS] example).
    pub fn json(&self) -> Value {
        let mut v = serde_json::to_value(WithId {
            id: self.id,
            body: &self.body,
        })
        .unwrap_or(Value::Null);
        let b = &self.body;
        if let Value::Object(m) = &mut v {
            m.insert(
                "numeroDocumento".into(),
                json!(format_document(&b.numero_documento)),
            );
            m.insert("telefone".into(), json!(format_phone(&b.telefone)));
            m.insert("celular".into(), json!(format_phone(&b.celular)));
            for (kind, e) in [
                ("geral", &b.endereco.geral),
                ("cobranca", &b.endereco.cobranca),
            ] {
                if let Some(Value::Object(addr)) =
                    m.get_mut("endereco").and_then(|x| x.get_mut(kind))
                {
                    addr.insert("cep".into(), json!(format_cep(&e.cep)));
                }
            }
            if b.dados_adicionais.data_nascimento.is_empty() {
                if let Some(Value::Object(extra)) = m.get_mut("dadosAdicionais") {
                    extra.insert("dataNascimento".into(), json!("0000-00-00"));
                }
            }
        }
        v
    }

    fn list_item(&self) -> Value {
        let b = &self.body;
        json!({
            "id": self.id, "nome": b.nome, "codigo": b.codigo, "situacao": b.situacao,
            "numeroDocumento": format_document(&b.numero_documento),
            "telefone": format_phone(&b.telefone), "celular": format_phone(&b.celular),
        })
    }
}

/// Contatos "incluídos" within this many days are the "Últimos incluídos" of `criterio=3`,
/// Bling's default (assumption: Bling does not define the window publicly).
pub(crate) const ULTIMOS_INCLUIDOS_DIAS: i64 = 30;

/// Bling's module name in the `namespace` of contato errors (assumption, like "VENDAS").
pub(crate) const NS: &str = "CONTATOS";

const SAVE_FAILED: &str = "Não foi possível salvar o contato";
/// [DOC] /erros-comuns, the generic `VALIDATION_ERROR` description.
const INVALID: &str = "Ocorreu um erro ao validar os dados recebidos.";

fn err(code: i64, element: &str, msg: &str) -> FieldError {
    FieldError::in_ns(NS, code, element, msg)
}

fn check_endereco(e: &mut Endereco, errors: &mut Vec<FieldError>) {
    if e.is_blank() {
        return;
    }
    e.cep = normalize_cep(&e.cep);
    e.uf = e.uf.trim().to_ascii_uppercase();
    if !e.cep.is_empty() && !cep_valid(&e.cep) {
        errors.push(err(codes::CEP, "cep", "O CEP informado é inválido"));
    } else if e.cep.is_empty() && !e.endereco.trim().is_empty() {
        errors.push(err(codes::CEP, "cep", "O CEP é obrigatório"));
    }
    if !e.uf.is_empty() && !uf_valid(&e.uf) {
        errors.push(err(codes::UF, "uf", "A UF informada é inválida"));
    } else if cep_valid(&e.cep) && uf_valid(&e.uf) && cep_uf(&e.cep) != Some(e.uf.as_str()) {
        errors.push(err(
            codes::CEP,
            "cep",
            "O CEP informado não pertence à UF do endereço",
        ));
    } else if e.uf.is_empty() && !e.endereco.trim().is_empty() {
        errors.push(err(codes::UF, "uf", "A UF é obrigatória"));
    }
}

/// Normalizes `b` in place and lists every field Bling would refuse.
fn validate(b: &mut ContatoBody) -> Vec<FieldError> {
    let mut errors = Vec::new();
    b.nome = b.nome.trim().to_string();
    if b.nome.is_empty() {
        errors.push(err(codes::NOME, "nome", "O nome do contato é obrigatório"));
    }
    b.situacao = b.situacao.trim().to_ascii_uppercase();
    if b.situacao.is_empty() {
        b.situacao = "A".into();
    } else if !matches!(b.situacao.as_str(), "A" | "E" | "I" | "S") {
        errors.push(err(
            codes::SITUACAO_CONTATO,
            "situacao",
            "A situação deve ser A, E, I ou S",
        ));
    }
    b.tipo = b.tipo.trim().to_ascii_uppercase();
    b.numero_documento = normalize_document(&b.numero_documento);
    let doc = b.numero_documento.as_str();
    let kind = document_kind(doc);
    if b.tipo.is_empty() {
        b.tipo = if kind == Some(Document::Cnpj) {
            "J"
        } else {
            "F"
        }
        .into();
    }
    match b.tipo.as_str() {
        "E" => {}
        "F" | "J" if doc.is_empty() => {}
        "F" | "J" => {
            let expected = if b.tipo == "F" {
                Document::Cpf
            } else {
                Document::Cnpj
            };
            match kind {
                None => errors.push(err(
                    if b.tipo == "F" { codes::CPF } else { codes::CNPJ },
                    "numeroDocumento",
                    if b.tipo == "F" { "O CPF informado é inválido" } else { "O CNPJ informado é inválido" },
                )),
                Some(k) if k != expected => errors.push(err(codes::TIPO_DOCUMENTO,
                    "tipo",
                    "O tipo de pessoa não corresponde ao documento informado (F exige CPF, J exige CNPJ)",
                )),
                Some(Document::Cpf) if !document_valid(doc) => {
                    errors.push(err(codes::CPF, "numeroDocumento", "O CPF informado é inválido"))
                }
                Some(Document::Cnpj) if !document_valid(doc) => {
                    errors.push(err(codes::CNPJ, "numeroDocumento", "O CNPJ informado é inválido"))
                }
                Some(_) => {}
            }
        }
        _ => errors.push(err(
            codes::TIPO,
            "tipo",
            "O tipo de pessoa deve ser F, J ou E",
        )),
    }
    if b.indicador_ie == 0 {
        b.indicador_ie = 9;
    }
    if !matches!(b.indicador_ie, 1 | 2 | 9) {
        errors.push(err(
            codes::INDICADOR_IE,
            "indicadorIe",
            "O indicador de IE deve ser 1, 2 ou 9",
        ));
    } else if b.indicador_ie == 1 && b.ie.trim().is_empty() {
        errors.push(err(
            codes::IE,
            "ie",
            "A inscrição estadual é obrigatória para contribuintes do ICMS",
        ));
    }
    b.email = b.email.trim().to_string();
    if !b.email.is_empty() && !email_plausible(&b.email) {
        errors.push(err(codes::EMAIL, "email", "O e-mail informado é inválido"));
    }
    check_endereco(&mut b.endereco.geral, &mut errors);
    check_endereco(&mut b.endereco.cobranca, &mut errors);
    b.telefone = b.telefone.trim().to_string();
    b.celular = b.celular.trim().to_string();
    let extra = &mut b.dados_adicionais;
    extra.sexo = extra.sexo.trim().to_ascii_uppercase();
    if !extra.sexo.is_empty() && !matches!(extra.sexo.as_str(), "M" | "F") {
        errors.push(err(codes::SEXO, "sexo", "O sexo deve ser M ou F"));
    }
    if !extra.data_nascimento.is_empty() && parse_date(&extra.data_nascimento).is_none() {
        errors.push(err(
            codes::DATA_NASCIMENTO,
            "dataNascimento",
            "A data de nascimento deve estar no formato AAAA-MM-DD",
        ));
    }
    errors
}

/// Every address (including e-mail list separators Bling allows) separated by , or ; needs a
/// local part and a dotted domain.
fn email_plausible(s: &str) -> bool {
    s.split([',', ';']).map(str::trim).all(|e| {
        e.split_once('@').is_some_and(|(user, domain)| {
            !user.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
    })
}

fn contato_mut(acct: &mut Account, id: i64) -> ApiResult<&mut Contato> {
    acct.contatos
        .get_mut(&id)
        .ok_or_else(|| ApiError::not_found("Contato"))
}

pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<AuthCtx>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let mut b: ContatoBody = parse_body(&body, SAVE_FAILED)?;
    let errors = validate(&mut b);
    if !errors.is_empty() {
        return Err(ApiError::validation_described(SAVE_FAILED, INVALID, errors));
    }
    let mut store = shared.store();
    let id = store.next_id();
    let now = now_brt();
    store.account_mut(&ctx.account).contatos.insert(
        id,
        Contato {
            id,
            body: b,
            created: now,
            updated: now,
        },
    );
    Ok((StatusCode::CREATED, Json(json!({"data": {"id": id}}))))
}

pub(crate) async fn get_one(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id, "Contato")?;
    let mut store = shared.store();
    let c = contato_mut(store.account_mut(&ctx.account), id)?;
    Ok(Json(json!({"data": c.json()})))
}

pub(crate) async fn update(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let id = parse_id(&id, "Contato")?;
    let mut b: ContatoBody = parse_body(&body, SAVE_FAILED)?;
    let mut store = shared.store();
    let c = contato_mut(store.account_mut(&ctx.account), id)?;
    let errors = validate(&mut b);
    if !errors.is_empty() {
        return Err(ApiError::validation_described(SAVE_FAILED, INVALID, errors));
    }
    c.body = b;
    c.updated = now_brt();
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn delete(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = parse_id(&id, "Contato")?;
    let mut store = shared.store();
    match store.account_mut(&ctx.account).contatos.remove(&id) {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::not_found("Contato")),
    }
}

#[derive(Deserialize)]
struct SituacaoBody {
    #[serde(default)]
    situacao: String,
}

pub(crate) async fn set_situacao(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let id = parse_id(&id, "Contato")?;
    let s: SituacaoBody = parse_body(&body, "Não foi possível alterar a situação do contato")?;
    let situacao = s.situacao.trim().to_ascii_uppercase();
    if !matches!(situacao.as_str(), "A" | "E" | "I" | "S") {
        return Err(ApiError::validation_described(
            "Não foi possível alterar a situação do contato",
            INVALID,
            vec![err(
                codes::SITUACAO_CONTATO,
                "situacao",
                "A situação deve ser A, E, I ou S",
            )],
        ));
    }
    let mut store = shared.store();
    let c = contato_mut(store.account_mut(&ctx.account), id)?;
    c.body.situacao = situacao;
    c.updated = now_brt();
    Ok(StatusCode::NO_CONTENT)
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<AuthCtx>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let p = Params::parse(q.as_deref());
    let mut errors = Vec::new();
    let (offset, limit) = p.page(&mut errors);
    // [OAS]: 1 Todos, 2 Excluídos, 3 Últimos incluídos (the default), 4 Sem movimento.
    let criterio = p.int("criterio", &mut errors).unwrap_or(3);
    if !(1..=4).contains(&criterio) {
        errors.push(FieldError::new(
            codes::CRITERIO,
            "criterio",
            "O critério deve ser 1, 2, 3 ou 4",
        ));
    }
    let tipo_pessoa = p.int("tipoPessoa", &mut errors);
    let tipo_pessoa = match tipo_pessoa {
        None => None,
        Some(1) => Some("F"),
        Some(2) => Some("J"),
        Some(3) => Some("E"),
        Some(_) => {
            errors.push(FieldError::new(
                codes::TIPO,
                "tipoPessoa",
                "O tipo de pessoa deve ser 1, 2 ou 3",
            ));
            None
        }
    };
    let ids = p.ints("idsContatos", &mut errors);
    let id_tipo = p.int("idTipoContato", &mut errors);
    let id_vendedor = p.int("idVendedor", &mut errors);
    let (inc_from, inc_to) = p.period("dataInclusao", &mut errors);
    let (alt_from, alt_to) = p.period("dataAlteracao", &mut errors);
    check(errors, NS)?;
    let pesquisa = p.get("pesquisa").map(str::to_lowercase);
    let documento = p.get("numeroDocumento").map(normalize_document);
    let uf = p.get("uf").map(str::to_ascii_uppercase);
    let telefone = p.get("telefone").map(digits).filter(|t| !t.is_empty());
    let recent = now_brt() - chrono::Duration::days(ULTIMOS_INCLUIDOS_DIAS);

    let mut store = shared.store();
    let acct = store.account_mut(&ctx.account);
    let com_movimento: std::collections::BTreeSet<i64> =
        acct.pedidos.values().map(|o| o.body.contato.id).collect();
    // Newest first, as Bling lists pedidos ([VCR]); for contatos an assumption.
    let data: Vec<Value> = acct
        .contatos
        .values()
        .rev()
        .filter(|c| {
            let b = &c.body;
            let criterio_ok = match criterio {
                2 => b.situacao == "E",
                3 => b.situacao != "E" && c.created >= recent,
                4 => b.situacao != "E" && !com_movimento.contains(&c.id),
                _ => b.situacao != "E",
            };
            criterio_ok
                && (ids.is_empty() || ids.contains(&c.id))
                && documento.as_ref().is_none_or(|d| &b.numero_documento == d)
                && tipo_pessoa.is_none_or(|t| b.tipo == t)
                && uf.as_ref().is_none_or(|u| &b.endereco.geral.uf == u)
                && telefone.as_ref().is_none_or(|t| {
                    digits(&b.telefone).contains(t.as_str())
                        || digits(&b.celular).contains(t.as_str())
                })
                && id_tipo.is_none_or(|t| b.tipos_contato.iter().any(|x| x.id == t))
                && id_vendedor.is_none_or(|v| b.vendedor.id == v)
                && inc_from.is_none_or(|d| c.created >= d)
                && inc_to.is_none_or(|d| c.created <= d)
                && alt_from.is_none_or(|d| c.updated >= d)
                && alt_to.is_none_or(|d| c.updated <= d)
                && pesquisa.as_ref().is_none_or(|s| {
                    [
                        &b.nome,
                        &b.fantasia,
                        &b.codigo,
                        &b.email,
                        &b.numero_documento,
                    ]
                    .iter()
                    .any(|f| f.to_lowercase().contains(s.as_str()))
                        || (!normalize_document(s).is_empty()
                            && b.numero_documento.contains(&normalize_document(s)))
                })
        })
        .skip(offset)
        .take(limit)
        .map(Contato::list_item)
        .collect();
    Ok(Json(json!({ "data": data })))
}

impl Account {
    /// Moves a contato's inclusion (and last change) `days` into the past, as if it had been
    /// "incluído" long ago; false if the account has no such contato.
    pub(crate) fn age_contato(&mut self, id: i64, days: i64) -> bool {
        match self.contatos.get_mut(&id) {
            Some(c) => {
                c.created -= chrono::Duration::days(days);
                c.updated -= chrono::Duration::days(days);
                true
            }
            None => false,
        }
    }
}
