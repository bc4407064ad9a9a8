//! Which of a Bling account's *formas de pagamento* an installment's `payment_method` becomes.
//!
//! Bling requires `parcelas[].formaPagamento.id` on every sales order ([OAS]), and the ids are
//! per account (`GET /formas-pagamentos`), so they can be neither hard-coded nor shared between
//! shops. The pet-shop system sends its own names (`"pix"`, `"dinheiro"`, `"cartao_credito"`).
//! The mapping, in order:
//!
//! 1. **Configuration** (`BLING_PAYMENT_METHODS`): `ours=target` pairs separated by commas, an
//!    optional `tenant/` prefix for one shop only; `target` is a forma's `descricao` (case and
//!    accents ignored), `#<id>` (one account's id: only sensible with a tenant prefix), or
//!    `tipo:<N>` (the NF-e fiscal type). E.g.
//!    `pix=Pix Itaú,voucher=tipo:12,petshop-centro/credito=#1135275`.
//! 2. **By fiscal type**, for the usual names: dinheiro 1, cheque 2, crédito 3, débito 4,
//!    boleto 15, depósito 16, Pix 17 (or 20, Pix estático), transferência 18 — the account's
//!    active method of that type for receiving, its default (`padrao`) first, then the lowest
//!    id. The fiscal type is what the NF-e's `tPag` carries, so this is also what makes the
//!    NF-e right ([FM]: a Pix sale needs a method of fiscal type 17 or 20).
//!
//! A name neither configured nor known, or a type the account has no method of, is a
//! [`Unmapped`] with what to configure: the invoice fails as an account set-up problem rather
//! than sending a guess that would put the wrong `tPag` on the NF-e.

use crate::bling::models::{fold, FormaPagamento};

/// The NF-e fiscal payment types (tPag) the defaults use.
const DINHEIRO: i64 = 1;
const CHEQUE: i64 = 2;
const CREDITO: i64 = 3;
const DEBITO: i64 = 4;
const BOLETO: i64 = 15;
const DEPOSITO: i64 = 16;
const PIX: i64 = 17;
const PIX_ESTATICO: i64 = 20;
const TRANSFERENCIA: i64 = 18;

/// What a configured pair points at.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Id(i64),
    Tipo(i64),
    Descricao(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    tenant: Option<String>,
    /// Our name, folded.
    ours: String,
    target: Target,
}

/// The configured mapping plus the defaults by fiscal type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentMethodMap {
    rules: Vec<Rule>,
}

/// No forma de pagamento for an installment: what is missing and what to configure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmapped {
    pub message: String,
    pub configure: String,
}

impl PaymentMethodMap {
    /// Parses `BLING_PAYMENT_METHODS` (see the module docs); an empty text is the defaults.
    pub fn parse(spec: &str) -> Result<PaymentMethodMap, String> {
        let mut rules = Vec::new();
        for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (left, right) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?}: expected ours=target"))?;
            let (tenant, ours) = match left.split_once('/') {
                Some((t, o)) => (Some(t.trim().to_string()), o.trim()),
                None => (None, left.trim()),
            };
            if ours.is_empty() || tenant.as_deref() == Some("") {
                return Err(format!("{pair:?}: empty payment method or tenant"));
            }
            let right = right.trim();
            let target = if let Some(id) = right.strip_prefix('#') {
                Target::Id(
                    id.parse()
                        .map_err(|_| format!("{pair:?}: #{id} is not a numeric id"))?,
                )
            } else if let Some(tipo) = right.strip_prefix("tipo:") {
                Target::Tipo(
                    tipo.trim()
                        .parse()
                        .map_err(|_| format!("{pair:?}: tipo:{tipo} is not a number"))?,
                )
            } else if right.is_empty() {
                return Err(format!("{pair:?}: empty target"));
            } else {
                Target::Descricao(fold(right))
            };
            rules.push(Rule {
                tenant,
                ours: fold(ours),
                target,
            });
        }
        Ok(PaymentMethodMap { rules })
    }

    /// The forma de pagamento id for our `payment_method` on this tenant's account.
    pub fn resolve(
        &self,
        tenant: &str,
        payment_method: &str,
        formas: &[FormaPagamento],
    ) -> Result<i64, Unmapped> {
        let ours = fold(payment_method);
        let rule = self
            .rules
            .iter()
            .find(|r| r.ours == ours && r.tenant.as_deref() == Some(tenant))
            .or_else(|| {
                self.rules
                    .iter()
                    .find(|r| r.ours == ours && r.tenant.is_none())
            });
        let usable = || formas.iter().filter(|f| f.usable_for_sales());
        let configure_hint = format!(
            "map it with BLING_PAYMENT_METHODS={payment_method}=<the forma's descrição in Bling> \
             (or tipo:<fiscal type>, or {tenant}/{payment_method}=#<id>), or create a forma de \
             pagamento for receiving in Bling (Cadastros > Formas de pagamento); the account has: {}",
            describe(formas)
        );
        match rule.map(|r| &r.target) {
            Some(Target::Id(id)) => match formas.iter().find(|f| f.id == *id) {
                Some(f) if f.usable_for_sales() => Ok(f.id),
                _ => Err(Unmapped {
                    message: format!(
                        "payment method {payment_method:?} is configured as forma de pagamento \
                         #{id}, which the Bling account does not have active for receiving"
                    ),
                    configure: configure_hint,
                }),
            },
            Some(Target::Descricao(name)) => usable()
                .find(|f| fold(&f.descricao) == *name)
                .map(|f| f.id)
                .ok_or_else(|| Unmapped {
                    message: format!(
                        "payment method {payment_method:?} is configured as the forma de \
                         pagamento {name:?}, which the Bling account does not have active for \
                         receiving"
                    ),
                    configure: configure_hint.clone(),
                }),
            Some(Target::Tipo(tipo)) => best_of_types(usable(), &[*tipo]).ok_or_else(|| Unmapped {
                message: format!(
                    "payment method {payment_method:?} is configured as fiscal type {tipo}, and \
                     the Bling account has no active forma de pagamento of that type"
                ),
                configure: configure_hint.clone(),
            }),
            None => match default_types(&ours) {
                Some(types) => best_of_types(usable(), types).ok_or_else(|| Unmapped {
                    message: format!(
                        "the Bling account has no active forma de pagamento of fiscal type {} \
                         for payment method {payment_method:?}",
                        types
                            .iter()
                            .map(i64::to_string)
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ),
                    configure: configure_hint.clone(),
                }),
                None => Err(Unmapped {
                    message: format!(
                        "payment method {payment_method:?} has no forma de pagamento in Bling: \
                         it is neither configured nor a name known by its fiscal type"
                    ),
                    configure: configure_hint.clone(),
                }),
            },
        }
    }
}

/// The fiscal types our usual names stand for (folded names, `_`/`-` as spaces).
fn default_types(folded: &str) -> Option<&'static [i64]> {
    let name = folded.replace(['_', '-'], " ");
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    let types: &'static [i64] = match name.as_str() {
        "dinheiro" | "cash" | "especie" | "em especie" => &[DINHEIRO],
        "cheque" | "check" => &[CHEQUE],
        "credito" | "cartao credito" | "cartao de credito" | "credit" | "credit card" => &[CREDITO],
        "debito" | "cartao debito" | "cartao de debito" | "debit" | "debit card" => &[DEBITO],
        "boleto" | "boleto bancario" => &[BOLETO],
        "deposito" | "deposito bancario" => &[DEPOSITO],
        "pix" => &[PIX, PIX_ESTATICO],
        "transferencia" | "transferencia bancaria" | "ted" | "doc" | "transfer" => &[TRANSFERENCIA],
        _ => return None,
    };
    Some(types)
}

/// The account's default method among these types, else the lowest id.
fn best_of_types<'a>(
    formas: impl Iterator<Item = &'a FormaPagamento>,
    types: &[i64],
) -> Option<i64> {
    formas
        .filter(|f| types.contains(&f.tipo_pagamento))
        .min_by_key(|f| (f.padrao != Some(1), f.id))
        .map(|f| f.id)
}

fn describe(formas: &[FormaPagamento]) -> String {
    if formas.is_empty() {
        return "none".into();
    }
    formas
        .iter()
        .map(|f| {
            let state = if f.usable_for_sales() {
                ""
            } else {
                ", inactive or not for receiving"
            };
            format!(
                "{} (#{}, tipo {}{state})",
                f.descricao, f.id, f.tipo_pagamento
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forma(id: i64, descricao: &str, tipo: i64) -> FormaPagamento {
        FormaPagamento {
            id,
            descricao: descricao.into(),
            tipo_pagamento: tipo,
            situacao: Some(1),
            padrao: Some(0),
            finalidade: Some(3),
            ..FormaPagamento::default()
        }
    }

    fn account() -> Vec<FormaPagamento> {
        vec![
            forma(501, "Dinheiro", 1),
            forma(502, "Cartão de crédito", 3),
            forma(503, "Pix Itaú", 17),
            FormaPagamento {
                padrao: Some(1),
                ..forma(504, "Pix Nubank", 17)
            },
            FormaPagamento {
                situacao: Some(0),
                ..forma(505, "Boleto", 15)
            },
        ]
    }

    #[test]
    fn usual_names_map_by_fiscal_type_preferring_the_default() {
        let map = PaymentMethodMap::default();
        assert_eq!(map.resolve("t", "pix", &account()), Ok(504));
        assert_eq!(map.resolve("t", "PIX", &account()), Ok(504));
        assert_eq!(map.resolve("t", "dinheiro", &account()), Ok(501));
        assert_eq!(map.resolve("t", "cartao_credito", &account()), Ok(502));
        assert_eq!(map.resolve("t", "Cartão de Crédito", &account()), Ok(502));
    }

    #[test]
    fn a_missing_or_inactive_method_says_what_to_configure() {
        let map = PaymentMethodMap::default();
        let boleto = map.resolve("t", "boleto", &account()).unwrap_err();
        assert!(boleto.message.contains("fiscal type 15"), "{boleto:?}");
        assert!(boleto.configure.contains("BLING_PAYMENT_METHODS=boleto="));
        assert!(boleto.configure.contains("Boleto (#505, tipo 15, inactive"));
        let unknown = map.resolve("t", "voucher", &account()).unwrap_err();
        assert!(unknown.message.contains("neither configured nor"));
        assert!(map.resolve("t", "pix", &[]).is_err());
    }

    #[test]
    fn configuration_wins_and_a_tenant_rule_beats_a_global_one() {
        let map = PaymentMethodMap::parse(
            "pix=pix itau, voucher=tipo:3 ,petshop/pix=#504, dinheiro=Não existe",
        )
        .unwrap();
        assert_eq!(map.resolve("other", "pix", &account()), Ok(503));
        assert_eq!(map.resolve("petshop", "pix", &account()), Ok(504));
        assert_eq!(map.resolve("t", "voucher", &account()), Ok(502));
        assert!(map.resolve("t", "dinheiro", &account()).is_err());
    }

    #[test]
    fn bad_configuration_is_refused_with_the_pair() {
        for bad in ["pix", "pix=", "=Pix", "/pix=Pix", "pix=#abc", "pix=tipo:x"] {
            let err = PaymentMethodMap::parse(bad).unwrap_err();
            assert!(err.contains(bad.split(',').next().unwrap()), "{bad}: {err}");
        }
        assert_eq!(
            PaymentMethodMap::parse(" ").unwrap(),
            PaymentMethodMap::default()
        );
    }
}
