//! Our records as Bling's: a customer as a *contato*, an invoice as a *pedido de venda*.
//!
//! # Discounts, to the centavo
//! Our line is `quantity × unit_price − discount`, the discount in centavos. Bling reads
//! `itens[].desconto` as a **percentage** of the line ([OAS] "Valor percentual") and computes
//! `total = Σ round(quantidade × valor × (1 − desconto/100)) − desconto{REAL} + outrasDespesas +
//! frete` ([LC] measured). A percentage that is not exact would round the line to a centavo
//! Bling chooses (and nobody publishes how many decimals Bling keeps), the total would drift
//! from the parcelas, and Bling refuses that with code 22. So:
//!
//! - a line whose discount is an **exact** percentage with two decimals (10 %, 12.5 %: the
//!   line's value times it is a whole number of centavos) carries it on the item, where the
//!   NF-e shows it per line;
//! - every other line discount goes, summed, into the order's `desconto {unidade: "REAL"}`,
//!   which Bling subtracts as an amount. The NF-e then spreads it over the lines (Bling's
//!   *rateio*), and the total is still ours to the centavo.
//!
//! Either way, Bling's total equals ours exactly, whatever rounding Bling uses: no value it
//! computes has a fraction of a centavo to round. `discount_property` below checks it over
//! random invoices, and `tests/it`'s sandbox test checks it against the sandbox's arithmetic.

use aggregates::customer::CustomerProfile;
use aggregates::invoice::{InvoiceContent, LineItem};
use aggregates::money::Centavos;
use aggregates::tax_id::PersonType;

use crate::bling::models::{
    Contato, Desconto, Endereco, Enderecos, IdRef, ItemPedido, Parcela, PedidoContato, PedidoVenda,
    IE_NAO_CONTRIBUINTE,
};

/// The whole contato: Bling's `PUT` replaces the resource, so every field we own is sent.
pub fn contato(customer_id: &str, profile: &CustomerProfile) -> Contato {
    let endereco = profile.address.as_ref().map(|a| Endereco {
        endereco: Some(a.street.clone()),
        cep: Some(a.cep.as_str().to_string()),
        bairro: Some(a.district.clone()),
        municipio: Some(a.city.clone()),
        uf: Some(a.state.as_str().to_string()),
        numero: Some(a.number.clone()),
        complemento: a.complement.clone(),
    });
    Contato {
        nome: profile.name.clone(),
        codigo: Some(customer_id.to_string()),
        situacao: Some("A".to_string()),
        numero_documento: Some(profile.tax_id.as_str().to_string()),
        telefone: profile.phone.clone(),
        celular: profile.mobile.clone(),
        tipo: Some(profile.person_type().bling_code().to_string()),
        indicador_ie: Some(IE_NAO_CONTRIBUINTE),
        email: profile.email.as_ref().map(|e| e.as_str().to_string()),
        endereco: endereco.map(|geral| Enderecos {
            geral: Some(geral),
            cobranca: None,
        }),
        ..Contato::default()
    }
}

/// How an invoice's line discounts reach Bling (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct BlingDiscounts {
    /// `itens[i].desconto`, a percentage, for lines whose discount is an exact one.
    pub per_line: Vec<Option<f64>>,
    /// The order's `desconto` in reais: every other line's discount.
    pub order_level: Centavos,
}

/// Splits our line discounts into exact per-line percentages and one order-level amount.
pub fn discounts(items: &[LineItem]) -> BlingDiscounts {
    let mut order_level = 0u64;
    let per_line = items
        .iter()
        .map(|item| {
            let discount = item.discount.0;
            if discount == 0 {
                return None;
            }
            let gross = item.unit_price.0.saturating_mul(u64::from(item.quantity));
            match exact_hundredths_of_percent(gross, discount) {
                Some(hundredths) => Some(hundredths as f64 / 100.0),
                None => {
                    order_level = order_level.saturating_add(discount);
                    None
                }
            }
        })
        .collect();
    BlingDiscounts {
        per_line,
        order_level: Centavos(order_level),
    }
}

/// `p` in hundredths of a percent such that `gross × p / 10000 == discount` exactly, if one
/// exists (and is below 100 %).
fn exact_hundredths_of_percent(gross: u64, discount: u64) -> Option<u64> {
    if gross == 0 || discount >= gross {
        return None;
    }
    let scaled = u128::from(discount) * 10_000;
    let gross = u128::from(gross);
    (scaled % gross == 0).then(|| (scaled / gross) as u64)
}

/// The pedido for an invoice. `numeroLoja` carries our invoice id: it is how a lost answer is
/// found again, since Bling has no idempotency key, and it makes every sale distinct for
/// Bling's duplicate-sale guard (code 3). `formas` holds the forma de pagamento id of each
/// installment, in order (see [`super::payment_methods`]).
pub fn pedido(
    invoice_id: &str,
    bling_contact_id: i64,
    person_type: PersonType,
    content: &InvoiceContent,
    formas: &[i64],
) -> PedidoVenda {
    let discounts = discounts(&content.items);
    let itens = content
        .items
        .iter()
        .zip(&discounts.per_line)
        .map(|(item, desconto)| ItemPedido {
            codigo: Some(item.sku.clone()),
            unidade: Some("UN".to_string()),
            quantidade: f64::from(item.quantity),
            desconto: *desconto,
            valor: item.unit_price,
            descricao: Some(item.description.clone()),
            ..ItemPedido::default()
        })
        .collect();
    let parcelas = content
        .installments
        .iter()
        .enumerate()
        .map(|(i, p)| Parcela {
            data_vencimento: Some(p.due_date),
            valor: p.amount,
            observacoes: Some(p.payment_method.clone()),
            forma_pagamento: formas.get(i).copied().map(IdRef::new),
            ..Parcela::default()
        })
        .collect();
    PedidoVenda {
        numero_loja: Some(invoice_id.to_string()),
        data: Some(content.issue_date),
        // Some accounts require the dates ("Valor obrigatório caso parâmetro de geração de
        // parcelas seja este", [OAS]); the service is rendered on the invoice's date.
        data_saida: Some(content.issue_date),
        data_prevista: Some(content.issue_date),
        contato: PedidoContato {
            id: bling_contact_id,
            tipo_pessoa: Some(person_type.bling_code().to_string()),
            ..PedidoContato::default()
        },
        numero_pedido_compra: Some(content.number.clone()),
        observacoes: content.notes.clone(),
        observacoes_internas: Some(format!(
            "Fatura {} (bling-ledger {invoice_id})",
            content.number
        )),
        desconto: (discounts.order_level.0 > 0).then(|| Desconto::reais(discounts.order_level)),
        itens,
        parcelas,
        ..PedidoVenda::default()
    }
}

/// Whether Bling's order (`GET /pedidos/vendas/{id}`) already holds the sale we would send:
/// the fields we own, compared as Bling reads them back (empty text as none, a zero discount as
/// none, amounts to the centavo). Fields Bling adds are not ours and are left out.
pub fn same_sale(ours: &PedidoVenda, bling: &PedidoVenda) -> bool {
    let text = |v: &Option<String>| v.as_deref().unwrap_or("").trim().to_string();
    let percent = |v: Option<f64>| v.unwrap_or(0.0);
    let order_discount = |d: &Option<Desconto>| {
        d.as_ref().filter(|d| d.valor != 0.0).map(|d| {
            (
                d.unidade.to_ascii_uppercase(),
                (d.valor * 100.0).round() as i64,
            )
        })
    };
    ours.contato.id == bling.contato.id
        && text(&ours.numero_loja) == text(&bling.numero_loja)
        && ours.data == bling.data
        && text(&ours.observacoes) == text(&bling.observacoes)
        && order_discount(&ours.desconto) == order_discount(&bling.desconto)
        && ours.itens.len() == bling.itens.len()
        && ours.itens.iter().zip(&bling.itens).all(|(a, b)| {
            text(&a.codigo) == text(&b.codigo)
                && (a.quantidade - b.quantidade).abs() < 1e-6
                && a.valor == b.valor
                && (percent(a.desconto) - percent(b.desconto)).abs() < 1e-6
        })
        && ours.parcelas.len() == bling.parcelas.len()
        && ours.parcelas.iter().zip(&bling.parcelas).all(|(a, b)| {
            a.valor == b.valor
                && a.data_vencimento == b.data_vencimento
                && a.forma_pagamento.map(|f| f.id) == b.forma_pagamento.map(|f| f.id)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use rand::{Rng, SeedableRng};

    /// Bling's total as [LC] measured it, computed the way a PHP back end would: floats in
    /// reais, each line rounded half away from zero to the centavo.
    fn bling_total(p: &PedidoVenda) -> f64 {
        let round2 = |x: f64| (x * 100.0).round() / 100.0;
        let products: f64 = p
            .itens
            .iter()
            .map(|i| {
                round2(
                    i.quantidade * i.valor.as_reais() * (1.0 - i.desconto.unwrap_or(0.0) / 100.0),
                )
            })
            .sum();
        let order_discount = match &p.desconto {
            Some(d) if d.unidade == "REAL" => d.valor,
            Some(d) => round2(products * d.valor / 100.0),
            None => 0.0,
        };
        round2(products - order_discount)
    }

    fn content(items: Vec<LineItem>) -> InvoiceContent {
        let total: Centavos = items.iter().map(|i| i.total().unwrap()).sum();
        let date = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        // Three installments that add up, the last taking the remainder, as the shop sends.
        let third = Centavos(total.0 / 3);
        let installments = [third, third, Centavos(total.0 - 2 * third.0)]
            .into_iter()
            .map(|amount| aggregates::invoice::Installment {
                due_date: date,
                amount,
                payment_method: "pix".into(),
            })
            .collect();
        InvoiceContent {
            number: "1".into(),
            issue_date: date,
            items,
            installments,
            notes: None,
            total,
        }
    }

    #[test]
    fn the_same_sale_is_recognised_as_bling_reads_it_back() {
        let line = LineItem {
            sku: "BANHO".into(),
            description: "Banho".into(),
            quantity: 2,
            unit_price: Centavos(5500),
            discount: Centavos(1000),
        };
        let ours = pedido(
            "INV-1",
            9,
            PersonType::Individual,
            &content(vec![line]),
            &[4, 4, 4],
        );
        // What Bling answers: read-only fields filled, ids on lines and parcelas, text empty.
        let mut bling = ours.clone();
        bling.id = Some(77);
        bling.total = Some(Centavos(10000));
        bling.observacoes = Some(String::new());
        for (i, p) in bling.parcelas.iter_mut().enumerate() {
            p.id = Some(100 + i as i64);
            p.observacoes = Some("Método de pagamento: Pix".into());
        }
        bling.itens[0].id = Some(5);
        assert!(same_sale(&ours, &bling));
        let mut other = bling.clone();
        other.parcelas[0].valor = Centavos(1);
        assert!(!same_sale(&ours, &other));
        let mut other = bling.clone();
        other.desconto = None;
        assert!(!same_sale(&ours, &other));
        let mut other = bling;
        other.itens[0].quantidade = 3.0;
        assert!(!same_sale(&ours, &other));
    }

    #[test]
    fn exact_percentages_stay_on_the_line_the_rest_goes_to_the_order() {
        let line = |q, price, discount| LineItem {
            sku: "S".into(),
            description: "d".into(),
            quantity: q,
            unit_price: Centavos(price),
            discount: Centavos(discount),
        };
        let d = discounts(&[line(2, 5500, 1100), line(2, 5500, 1000), line(1, 999, 0)]);
        assert_eq!(d.per_line, vec![Some(10.0), None, None]);
        assert_eq!(d.order_level, Centavos(1000));
        let d = discounts(&[line(3, 1999, 749)]);
        assert_eq!(d.per_line, vec![None]);
        assert_eq!(d.order_level, Centavos(749));
        assert_eq!(exact_hundredths_of_percent(8000, 1000), Some(1250));
        assert_eq!(exact_hundredths_of_percent(100, 100), None);
    }

    #[test]
    fn discount_property_bling_total_equals_ours_and_parcelas_add_up() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(20261201);
        for case in 0..20_000 {
            let lines = rng.random_range(1..=6);
            let items: Vec<LineItem> = (0..lines)
                .map(|n| {
                    let quantity = rng.random_range(1..=12u32);
                    let unit_price = Centavos(rng.random_range(1..=250_000u64));
                    let gross = unit_price.0 * u64::from(quantity);
                    let discount = match rng.random_range(0..4) {
                        0 => 0,
                        // A round percentage, as a shop's promotion gives.
                        1 => gross * rng.random_range(1..=50u64) / 100,
                        _ => rng.random_range(0..gross),
                    };
                    LineItem {
                        sku: format!("SKU-{n}"),
                        description: "item".into(),
                        quantity,
                        unit_price,
                        discount: Centavos(discount),
                    }
                })
                .collect();
            let content = content(items);
            let pedido = pedido("INV", 1, PersonType::Individual, &content, &[7, 7, 7]);
            let ours = content.total.as_reais();
            let theirs = bling_total(&pedido);
            assert!(
                (theirs - ours).abs() < 0.001,
                "case {case}: Bling {theirs} vs ours {ours} for {:?}",
                content.items
            );
            let parcelas: u64 = pedido.parcelas.iter().map(|p| p.valor.0).sum();
            assert_eq!(parcelas, content.total.0, "case {case}: parcelas");
            assert!(pedido
                .parcelas
                .iter()
                .all(|p| p.forma_pagamento == Some(IdRef::new(7))));
        }
    }
}
