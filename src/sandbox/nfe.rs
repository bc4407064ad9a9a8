//! `/nfe`: the NF-e generated from a sales order, and its (simulated) transmission to SEFAZ.

use crate::sandbox::codes;
use crate::sandbox::contatos::Contato;
use crate::sandbox::error::{ApiError, ApiResult, FieldError};
use crate::sandbox::money::Centavos;
use crate::sandbox::pedidos::Pedido;
use crate::sandbox::pipeline::AuthCtx;
use crate::sandbox::query::parse_id;
use crate::sandbox::state::{Account, Shared, Store};
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
pub(crate) const CANCELADA: i64 = 2;
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
    /// SEFAZ's reason for the last rejection (kept by the sandbox; Bling's `GET /nfe/{id}`
    /// is not known to carry it).
    pub motivo: String,
    /// When SEFAZ authorized it (its cancellation window counts from here).
    pub autorizada_em: Option<NaiveDateTime>,
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
    /// The recipient block of an NF-e, from a contato as it is now, and its `tipo`.
    pub fn recipient(c: &Contato) -> (Value, String) {
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

    fn contato_id(&self) -> i64 {
        self.contato.get("id").and_then(Value::as_i64).unwrap_or(0)
    }

    pub fn from_pedido(id: i64, p: &Pedido, acct: &Account) -> Nfe {
        let (contato, tipo) = match acct.contatos.get(&p.body.contato.id) {
            Some(c) => Nfe::recipient(c),
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
            motivo: String::new(),
            autorizada_em: None,
        }
    }

    /// The `invoice` webhook's `data` (v1, [DOC] /webhooks).
    pub fn webhook_json(&self) -> Value {
        json!({
            "id": self.id,
            "tipo": SAIDA,
            "situacao": self.situacao,
            "numero": format!("{:06}", self.numero),
            "dataEmissao": format_datetime(self.data_emissao),
            "dataOperacao": format_datetime(self.data_emissao),
            "contato": {"id": self.contato_id()},
            "naturezaOperacao": {"id": 0},
            "loja": {"id": self.loja},
        })
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

/// Seeded SEFAZ answers, per account, by recipient document (digits): SEFAZ rejects an NF-e
/// for a CPF/CNPJ in `reject_documents` (rejeição 237: the document is not valid for SEFAZ)
/// and denies one for a recipient in `deny_documents` (irregular with the tax authority:
/// "Uso Denegado").
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SefazRules {
    pub reject_documents: Vec<String>,
    pub deny_documents: Vec<String>,
}

const DENEGADA: i64 = 9;

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// Why SEFAZ refuses an NF-e, by the sandbox's seeded rules (checked in this order): the
/// recipient's document is in the account's `reject_documents`, it has no CPF/CNPJ, or no
/// complete address (street, number, município, UF and an 8-digit CEP). `None`: authorized.
fn rejection(nfe: &Nfe, rules: &SefazRules) -> Option<(&'static str, &'static str)> {
    let text = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let documento = digits(&text(&nfe.contato, "numeroDocumento"));
    if !documento.is_empty()
        && rules
            .reject_documents
            .iter()
            .any(|d| digits(d) == documento)
    {
        return Some((
            "numeroDocumento",
            "Rejeição 237: CPF do destinatário inválido",
        ));
    }
    if text(&nfe.contato, "numeroDocumento").is_empty() && nfe.tipo_contato != "E" {
        return Some((
            "numeroDocumento",
            "Rejeição: CPF/CNPJ do destinatário não informado",
        ));
    }
    let e = nfe.contato.get("endereco").cloned().unwrap_or(Value::Null);
    let cep: String = text(&e, "cep")
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let incomplete = ["endereco", "numero", "municipio", "uf"]
        .iter()
        .any(|k| text(&e, k).is_empty())
        || cep.len() != 8;
    if incomplete && nfe.tipo_contato != "E" {
        return Some((
            "endereco",
            "Rejeição: Endereço do destinatário incompleto (logradouro, número, município, UF e CEP)",
        ));
    }
    None
}

/// Sends NF-e `id` of `acct` to (simulated) SEFAZ: authorized at once, or "Rejeitada" by the
/// rules of [`rejection`]. A rejected NF-e sent again takes the recipient from the contato as
/// it is now (as Bling's "editar e reenviar" does after the shop fixes the contato). Answers
/// the XML, or the rejection as Bling's validation error.
pub(crate) fn transmit(acct: &mut Account, id: i64) -> ApiResult<String> {
    let mut nfe = acct
        .nfes
        .get(&id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("Nota fiscal"))?;
    const FAILED: &str = "Não foi possível enviar a nota fiscal";
    if nfe.situacao != PENDENTE && nfe.situacao != REJEITADA {
        let msg = match nfe.situacao {
            AUTORIZADA => "A nota fiscal já está autorizada",
            CANCELADA => "A nota fiscal está cancelada",
            _ => "A nota fiscal não pode ser enviada na situação atual",
        };
        return Err(ApiError::validation(
            FAILED,
            vec![FieldError::in_ns(
                NS,
                codes::NFE_AUTORIZADA,
                "situacao",
                msg,
            )],
        ));
    }
    if nfe.situacao == REJEITADA {
        if let Some(c) = acct.contatos.get(&nfe.contato_id()) {
            let fresh = Nfe::recipient(c);
            nfe.contato = fresh.0;
            nfe.tipo_contato = fresh.1;
        }
    }
    let documento = digits(
        nfe.contato
            .get("numeroDocumento")
            .and_then(Value::as_str)
            .unwrap_or(""),
    );
    if !documento.is_empty()
        && acct
            .sefaz
            .deny_documents
            .iter()
            .any(|d| digits(d) == documento)
    {
        // Uso denegado: the number is spent, the NF-e can never be authorized.
        nfe.situacao = DENEGADA;
        nfe.motivo = "Uso Denegado: Irregularidade fiscal do destinatário".to_string();
        acct.nfes.insert(id, nfe);
        return Err(ApiError::validation(
            FAILED,
            vec![FieldError::in_ns(
                NS,
                codes::NFE_REJEITADA,
                "numeroDocumento",
                "Uso Denegado: Irregularidade fiscal do destinatário",
            )],
        ));
    }
    if let Some((element, reason)) = rejection(&nfe, &acct.sefaz) {
        nfe.situacao = REJEITADA;
        nfe.motivo = reason.to_string();
        acct.nfes.insert(id, nfe);
        return Err(ApiError::validation(
            FAILED,
            vec![FieldError::in_ns(NS, codes::NFE_REJEITADA, element, reason)],
        ));
    }
    nfe.situacao = AUTORIZADA;
    nfe.motivo = String::new();
    nfe.autorizada_em = Some(now_brt());
    nfe.chave_acesso = chave_acesso(acct, &nfe);
    let xml = nfe.xml();
    acct.nfes.insert(id, nfe);
    Ok(xml)
}

/// Queues the `invoice.{action}` webhook of NF-e `id` (if it exists).
pub(crate) fn emit_nfe(shared: &Shared, store: &Store, account: &str, id: i64, action: &str) {
    let data = store
        .accounts
        .get(account)
        .and_then(|a| a.nfes.get(&id))
        .map(Nfe::webhook_json);
    if let Some(data) = data {
        shared.emit(store, account, "invoice", action, data);
    }
}

/// `POST /nfe/{id}/enviar` (see [`transmit`]); the NF-e's new situação is announced by an
/// `invoice.updated` webhook either way.
pub(crate) async fn enviar(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id, "Nota fiscal")?;
    let mut store = shared.store();
    let before = store
        .account_mut(&ctx.account)
        .nfes
        .get(&id)
        .map(|n| n.situacao);
    let result = transmit(store.account_mut(&ctx.account), id);
    let after = store
        .account_mut(&ctx.account)
        .nfes
        .get(&id)
        .map(|n| n.situacao);
    if after.is_some() && (before != after || result.is_err()) {
        emit_nfe(&shared, &store, &ctx.account, id, "updated");
    }
    result.map(|xml| Json(json!({"data": {"xml": xml}})))
}

/// The shop, in Bling's screen, moves an NF-e to `situacao` (cancels it: 2, or SEFAZ denies
/// it: 9); `invoice.updated` follows. False if there is no such NF-e.
pub(crate) fn set_situacao(shared: &Shared, account: &str, id: i64, situacao: i64) -> bool {
    let mut store = shared.store();
    let Some(nfe) = store.account_mut(account).nfes.get_mut(&id) else {
        return false;
    };
    nfe.situacao = situacao;
    emit_nfe(shared, &store, account, id, "updated");
    true
}

/// How long after its authorization SEFAZ accepts an NF-e's cancellation: 24 h (Ajuste SINIEF
/// 12/12, the rule of most states; after it, rejeição 501).
pub const CANCELLATION_WINDOW_HOURS: i64 = 24;

/// The shop cancels an authorized NF-e from Bling's screen: SEFAZ accepts it within
/// [`CANCELLATION_WINDOW_HOURS`] of the authorization (then 2 Cancelada, `invoice.updated`),
/// and refuses it after (rejeição 501; nothing changes). `None` without such an NF-e.
pub(crate) fn cancel_from_screen(
    shared: &Shared,
    account: &str,
    id: i64,
) -> Option<Result<(), String>> {
    let mut store = shared.store();
    let nfe = store.account_mut(account).nfes.get_mut(&id)?;
    let result = match (nfe.situacao, nfe.autorizada_em) {
        (AUTORIZADA, Some(at))
            if now_brt() - at <= chrono::Duration::hours(CANCELLATION_WINDOW_HOURS) =>
        {
            nfe.situacao = CANCELADA;
            Ok(())
        }
        (AUTORIZADA, _) => Err(
            "Rejeição 501: Prazo de cancelamento superior ao previsto na Legislação".to_string(),
        ),
        _ => Err("Somente uma nota fiscal autorizada pode ser cancelada".to_string()),
    };
    if result.is_ok() {
        emit_nfe(shared, &store, account, id, "updated");
    }
    Some(result)
}

/// The NF-e was authorized `hours` ago (the control plane's clock for the cancellation
/// window). False without such an authorized NF-e.
pub(crate) fn age_authorization(shared: &Shared, account: &str, id: i64, hours: i64) -> bool {
    let mut store = shared.store();
    match store.account_mut(account).nfes.get_mut(&id) {
        Some(nfe) if nfe.autorizada_em.is_some() => {
            nfe.autorizada_em = Some(now_brt() - chrono::Duration::hours(hours));
            true
        }
        _ => false,
    }
}

/// The shop sends the NF-e from Bling's screen (not through the API).
pub(crate) fn send_from_screen(
    shared: &Shared,
    account: &str,
    id: i64,
) -> Option<Result<(), String>> {
    let mut store = shared.store();
    store.account_mut(account).nfes.get(&id)?;
    let result = transmit(store.account_mut(account), id);
    emit_nfe(shared, &store, account, id, "updated");
    Some(result.map(drop).map_err(|e| {
        e.fields
            .and_then(|f| f.first().map(|x| x.msg.clone()))
            .unwrap_or(e.message)
    }))
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
