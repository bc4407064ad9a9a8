//! Our records as Bling's: a customer as a *contato*, an invoice as a *pedido de venda*.

use aggregates::customer::CustomerProfile;
use aggregates::invoice::InvoiceContent;
use aggregates::tax_id::PersonType;

use crate::bling::models::{
    Contato, Endereco, Enderecos, ItemPedido, Parcela, PedidoContato, PedidoVenda,
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

/// The pedido for an invoice. `numeroLoja` carries our invoice id: it is how a lost answer is
/// found again, since Bling has no idempotency key.
pub fn pedido(
    invoice_id: &str,
    bling_contact_id: i64,
    person_type: PersonType,
    content: &InvoiceContent,
) -> PedidoVenda {
    let itens = content
        .items
        .iter()
        .map(|item| ItemPedido {
            codigo: Some(item.sku.clone()),
            unidade: Some("UN".to_string()),
            quantidade: f64::from(item.quantity),
            desconto: (item.discount.0 > 0).then_some(item.discount),
            valor: item.unit_price,
            descricao: Some(item.description.clone()),
            ..ItemPedido::default()
        })
        .collect();
    let parcelas = content
        .installments
        .iter()
        .map(|p| Parcela {
            data_vencimento: Some(p.due_date),
            valor: p.amount,
            observacoes: Some(p.payment_method.clone()),
            ..Parcela::default()
        })
        .collect();
    PedidoVenda {
        numero_loja: Some(invoice_id.to_string()),
        data: Some(content.issue_date),
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
        itens,
        parcelas,
        ..PedidoVenda::default()
    }
}
