//! `/nfe`: the NF-e generated from a sales order, and its (simulated) transmission to SEFAZ.

use crate::sandbox::codes;
use crate::sandbox::error::{ApiError, ApiResult, FieldError};
use crate::sandbox::money::Centavos;
use crate::sandbox::pedidos::Pedido;
use crate::sandbox::pipeline::AuthCtx;
use crate::sandbox::query::parse_id;
use crate::sandbox::state::{Account, Shared};
use crate::sandbox::validation::{format_datetime, now_brt};
use axum::extract::{Path, State};
use axum::{Extension, Json};
use chrono::NaiveDateTime;
use serde_json::{json, Value};
use std::sync::Arc;

/// Bling's NF-e situações used here (of 1..=11).
pub(crate) const PENDENTE: i64 = 1;
pub(crate) const REJEITADA: i64 = 4;
pub(crate) const AUTORIZADA: i64 = 5;
/// The `namespace` of NF-e errors (assumption, like Bling's "VENDAS").
const NS: &str = "NFE";
/// NF-e `tipo`: 1 = saída (a sale).
const SAIDA: i64 = 1;
const SERIE: i64 = 1;
/// cUF of São Paulo, the issuer state of every sandbox account.
const CUF_SP: &str = "35";

#[derive(Clone, Debug)]
pub(crate) struct Nfe {
    pub id: i64,
    pub numero: i64,
    pub situacao: i64,
    pub chave_acesso: String,
    pub data_emissao: NaiveDateTime,
    /// The recipient as it was when the NF-e was generated: a fiscal document is a snapshot.
    pub contato: Value,
    pub tipo_contato: String,
    pub valor_nota: Centavos,
    pub numero_pedido_loja: String,
    pub loja: i64,
    pub vendedor: i64,
}

fn mod11(digits: &str, weights: impl Iterator<Item = u32> + Clone) -> u32 {
    let sum: u32 = digits
        .chars()
        .rev()
        .filter_map(|c| c.to_digit(10))
        .zip(weights.cycle())
        .map(|(d, w)| d * w)
        .sum();
    match sum % 11 {
        0 | 1 => 0,
        r => 11 - r,
    }
}

/// A valid numeric CNPJ for the n-th account, stable across runs.
pub(crate) fn issuer_cnpj(n: u64) -> String {
    let mut base = format!("{:08}0001", 11_222_333 + n % 80_000_000);
    for _ in 0..2 {
        let dv = mod11(&base, 2..=9);
        base.push(char::from_digit(dv, 10).unwrap_or('0'));
    }
    base
}

/// The 44-digit access key: cUF, AAMM, CNPJ, modelo 55, série, número, tpEmis, cNF, DV.
fn chave_acesso(acct: &Account, nfe: &Nfe) -> String {
    let mut key = format!(
        "{CUF_SP}{}{}55{:03}{:09}1{:08}",
        nfe.data_emissao.format("%y%m"),
        acct.cnpj,
        SERIE,
        nfe.numero,
        nfe.id % 100_000_000
    );
    let dv = mod11(&key, 2..=9);
    key.push(char::from_digit(dv, 10).unwrap_or('0'));
    key
}

impl Nfe {
    pub fn from_pedido(id: i64, p: &Pedido, acct: &Account) -> Nfe {
        let (contato, tipo) = match acct.contatos.get(&p.body.contato.id) {
            Some(c) => {
                let b = &c.body;
                let e = &b.endereco.geral;
                let contato = json!({
                    "id": c.id, "nome": b.nome, "numeroDocumento": b.numero_documento,
                    "ie": b.ie, "rg": b.rg, "telefone": b.telefone, "email": b.email,
                    "endereco": {
                        "endereco": e.endereco, "numero": e.numero, "complemento": e.complemento,
                        "bairro": e.bairro, "cep": e.cep, "municipio": e.municipio, "uf": e.uf,
                        "pais": if b.pais.nome.is_empty() { "Brasil" } else { b.pais.nome.as_str() },
                    },
                });
                (contato, b.tipo.clone())
            }
            None => (
                json!({"id": p.body.contato.id, "nome": "", "numeroDocumento": p.body.contato.numero_documento}),
                p.body.contato.tipo_pessoa.clone(),
            ),
        };
        Nfe {
            id,
            numero: acct.last_numero_nfe + 1,
            situacao: PENDENTE,
            chave_acesso: String::new(),
            data_emissao: now_brt(),
            contato,
            tipo_contato: tipo,
            valor_nota: p.total,
            numero_pedido_loja: p.body.numero_loja.clone(),
            loja: p.body.loja.id,
            vendedor: p.body.vendedor.id,
        }
    }

    fn xml(&self) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><nfeProc versao=\"4.00\"><NFe><infNFe \
             Id=\"NFe{}\" versao=\"4.00\"><ide><nNF>{}</nNF><serie>{SERIE}</serie></ide><total>\
             <ICMSTot><vNF>{:.2}</vNF></ICMSTot></total></infNFe></NFe></nfeProc>",
            self.chave_acesso,
            self.numero,
            self.valor_nota.0 as f64 / 100.0
        )
    }

    pub fn json(&self) -> Value {
        let authorized = self.situacao == AUTORIZADA;
        let link = |kind: &str| {
            if authorized {
                format!("https://sandbox.bling.invalid/{kind}/{}", self.chave_acesso)
            } else {
                String::new()
            }
        };
        json!({
            "id": self.id,
            "tipo": SAIDA,
            "situacao": self.situacao,
            "numero": format!("{:06}", self.numero),
            "dataEmissao": format_datetime(self.data_emissao),
            "dataOperacao": format_datetime(self.data_emissao),
            "contato": self.contato,
            "naturezaOperacao": {"id": 0},
            "loja": {"id": self.loja},
            "serie": SERIE,
            "valorNota": self.valor_nota,
            "chaveAcesso": self.chave_acesso,
            "xml": link("xml"),
            "linkDanfe": link("danfe"),
            "linkPDF": link("pdf"),
            "numeroPedidoLoja": self.numero_pedido_loja,
            "vendedor": {"id": self.vendedor},
        })
    }
}

pub(crate) async fn get_one(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id, "Nota fiscal")?;
    let mut store = shared.store();
    let nfe = store
        .account_mut(&ctx.account)
        .nfes
        .get(&id)
        .ok_or_else(|| ApiError::not_found("Nota fiscal"))?;
    Ok(Json(json!({"data": nfe.json()})))
}

/// `POST /nfe/{id}/enviar`: SEFAZ authorizes at once, unless the recipient lacks a CPF/CNPJ
/// (a real rejection reason), which leaves the NF-e "Rejeitada".
pub(crate) async fn enviar(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id, "Nota fiscal")?;
    let mut store = shared.store();
    let acct = store.account_mut(&ctx.account);
    let mut nfe = acct
        .nfes
        .get(&id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("Nota fiscal"))?;
    const FAILED: &str = "Não foi possível enviar a nota fiscal";
    if nfe.situacao == AUTORIZADA {
        return Err(ApiError::validation(
            FAILED,
            vec![FieldError::in_ns(
                NS,
                codes::NFE_AUTORIZADA,
                "situacao",
                "A nota fiscal já está autorizada",
            )],
        ));
    }
    let documento = nfe
        .contato
        .get("numeroDocumento")
        .and_then(Value::as_str)
        .unwrap_or("");
    if documento.is_empty() && nfe.tipo_contato != "E" {
        nfe.situacao = REJEITADA;
        acct.nfes.insert(id, nfe);
        return Err(ApiError::validation(
            FAILED,
            vec![FieldError::in_ns(
                NS,
                codes::NFE_REJEITADA,
                "numeroDocumento",
                "Rejeição: CPF/CNPJ do destinatário não informado",
            )],
        ));
    }
    nfe.situacao = AUTORIZADA;
    nfe.chave_acesso = chave_acesso(acct, &nfe);
    let xml = nfe.xml();
    acct.nfes.insert(id, nfe);
    Ok(Json(json!({"data": {"xml": xml}})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_cnpj_is_valid() {
        for n in 1..20 {
            assert!(
                cpf_cnpj::cnpj::validate(&issuer_cnpj(n)),
                "{}",
                issuer_cnpj(n)
            );
        }
    }
}
