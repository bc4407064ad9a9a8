//! A realistic day at a pet shop: who comes in, what they buy.

use serde_json::{json, Value};

/// A customer of the demo shop, as the pet-shop system would send it.
pub struct DemoCustomer {
    pub id: &'static str,
    pub body: Value,
    /// What the demo expects and tells the reader about this record.
    pub note: Option<&'static str>,
}

fn address(street: &str, number: &str, district: &str, cep: &str) -> Value {
    json!({"street": street, "number": number, "district": district,
           "city": "São Paulo", "state": "SP", "cep": cep})
}

fn person(name: &str, cpf: &str, phone: &str, addr: Value) -> Value {
    let first: String = name
        .split(' ')
        .next()
        .unwrap_or("cliente")
        .to_lowercase()
        .chars()
        .map(|c| match c {
            'á' | 'à' | 'â' | 'ã' => 'a',
            'é' | 'ê' => 'e',
            'í' => 'i',
            'ó' | 'ô' | 'õ' => 'o',
            'ú' => 'u',
            'ç' => 'c',
            c => c,
        })
        .collect();
    json!({"name": name, "tax_id": cpf, "email": format!("{first}@example.com.br"),
           "mobile": phone, "address": addr})
}

pub fn customers() -> Vec<DemoCustomer> {
    vec![
        DemoCustomer { id: "cli-001", body: person("Maria Souza", "529.982.247-25", "(11) 98888-1001", address("Rua Augusta", "1200", "Consolação", "01304-001")), note: None },
        DemoCustomer { id: "cli-002", body: person("João Pereira", "111.444.777-35", "(11) 98888-1002", address("Av. Paulista", "900", "Bela Vista", "01310-100")), note: None },
        DemoCustomer { id: "cli-003", body: person("Ana Lima", "255.248.930-33", "(11) 98888-1003", address("Rua Oscar Freire", "45", "Jardins", "01426-001")), note: None },
        DemoCustomer { id: "cli-004", body: person("Carlos Mendes", "390.533.447-05", "(11) 98888-1004", address("Rua da Mooca", "310", "Mooca", "03104-002")), note: None },
        DemoCustomer { id: "cli-005", body: person("Beatriz Rocha", BEATRIZ_TYPED_CPF, "(11) 98888-1005", address("Rua Teodoro Sampaio", "77", "Pinheiros", "05405-000")), note: None },
        DemoCustomer {
            id: "cli-006",
            body: json!({"name": "Clínica Veterinária Amigo Fiel Ltda", "tax_id": "12.ABC.345/01DE-35",
                         "email": "compras@amigofiel.example.com.br", "phone": "(11) 3333-4006",
                         "address": address("Rua Vergueiro", "2000", "Vila Mariana", "04101-000")}),
            note: Some("a company with the new alphanumeric CNPJ (valid from July 2026)"),
        },
        DemoCustomer {
            id: "cli-007",
            body: json!({"name": "Rafael Costa", "tax_id": "123.456.789-00", "mobile": "(11) 98888-1007",
                         "address": address("Rua Harmonia", "12", "Vila Madalena", "05435-000")}),
            note: Some("typed with a wrong CPF: refused at once, nothing stored"),
        },
        DemoCustomer {
            id: "cli-008",
            body: json!({"name": "Fernanda Alves", "tax_id": "987.654.321-00", "mobile": "(11) 98888-1008"}),
            note: Some("registered without an address: accepted, but Bling cannot invoice her yet"),
        },
        DemoCustomer {
            id: "cli-009",
            body: person("Paulo Nunes", "168.995.350-09", "(11) 98888-1009", address("Rua Direita", "50", "Sé", "20040-002")),
            note: Some("a Rio de Janeiro CEP typed for a São Paulo address: passes our checks, Bling refuses it"),
        },
        DemoCustomer { id: "cli-010", body: person("Juliana Martins", "935.411.347-80", "(11) 98888-1010", address("Rua Cardeal Arcoverde", "800", "Pinheiros", "05407-002")), note: None },
    ]
}

/// Beatriz's CPF as typed at the counter: a valid number, but not hers (two digits swapped);
/// SEFAZ rejects her NF-e for it (the sandbox's seeded rule).
pub const BEATRIZ_TYPED_CPF: &str = "746.971.314-01";
/// Her real CPF, which the clerk types after the rejection.
pub const BEATRIZ_CPF: &str = "746.971.341-76";

/// Beatriz's record with her real CPF.
pub fn beatriz_fixed() -> Value {
    person(
        "Beatriz Rocha",
        BEATRIZ_CPF,
        "(11) 98888-1005",
        address("Rua Teodoro Sampaio", "77", "Pinheiros", "05405-000"),
    )
}

/// The fixed version of a customer the clerk corrects later in the day.
pub fn corrected(id: &str) -> Option<Value> {
    match id {
        "cli-008" => Some(person(
            "Fernanda Alves",
            "987.654.321-00",
            "(11) 98888-1008",
            address("Rua Frei Caneca", "500", "Consolação", "01307-001"),
        )),
        "cli-009" => Some(person(
            "Paulo Nunes",
            "168.995.350-09",
            "(11) 98888-1009",
            address("Rua Direita", "50", "Sé", "01002-000"),
        )),
        _ => None,
    }
}

/// What the shop sells, in centavos.
const CATALOGUE: [(&str, &str, i64); 8] = [
    ("BANHO-P", "Banho cão porte pequeno", 5500),
    ("BANHO-G", "Banho cão porte grande", 8500),
    ("TOSA-HIG", "Tosa higiênica", 4000),
    ("TOSA-COMP", "Tosa completa", 9000),
    ("VAC-V10", "Vacina V10 (polivalente)", 12000),
    ("VAC-RAIVA", "Vacina antirrábica", 8000),
    ("RACAO-15", "Ração premium adulto 15 kg", 28990),
    ("PETISCO", "Petisco natural 500 g", 3490),
];

/// An invoice for `customer` with the given catalogue lines (index, quantity, discount).
pub fn invoice(customer: &str, number: u32, lines: &[(usize, i64, i64)], split: bool) -> Value {
    let items: Vec<Value> = lines
        .iter()
        .map(|(i, qty, discount)| {
            let (sku, description, price) = CATALOGUE[*i % CATALOGUE.len()];
            json!({"sku": sku, "description": description, "quantity": qty, "unit_price": price, "discount": discount})
        })
        .collect();
    let total: i64 = lines
        .iter()
        .map(|(i, qty, discount)| CATALOGUE[*i % CATALOGUE.len()].2 * qty - discount)
        .sum();
    let installments = if split && total > 10_000 {
        let first = total / 2;
        json!([
            {"due_date": "2026-11-25", "amount": first, "payment_method": "cartao_credito"},
            {"due_date": "2026-12-25", "amount": total - first, "payment_method": "cartao_credito"}
        ])
    } else {
        json!([{"due_date": "2026-11-25", "amount": total, "payment_method": "pix"}])
    };
    json!({
        "customer_id": customer,
        "number": format!("{number}"),
        "issue_date": "2026-11-25",
        "items": items,
        "installments": installments,
        "notes": "Atendimento loja Centro",
        "total": total
    })
}

/// One planned sale: the customer, catalogue lines (index, quantity, discount) and whether it
/// is paid in two installments.
type Sale = (&'static str, &'static [(usize, i64, i64)], bool);

/// The morning's invoices: (invoice id, customer, body).
pub fn morning() -> Vec<(String, &'static str, Value)> {
    let plan: [Sale; 12] = [
        ("cli-001", &[(0, 1, 0), (2, 1, 0)], false),
        ("cli-002", &[(1, 1, 0), (3, 1, 1000)], true),
        ("cli-003", &[(4, 1, 0)], false),
        ("cli-004", &[(6, 1, 0), (7, 2, 0)], true),
        ("cli-005", &[(5, 1, 0), (0, 1, 0)], false),
        ("cli-006", &[(6, 4, 5000)], true),
        ("cli-008", &[(0, 1, 0)], false),
        ("cli-009", &[(3, 1, 0), (7, 1, 0)], false),
        ("cli-010", &[(4, 1, 0), (5, 1, 0)], true),
        ("cli-001", &[(7, 3, 0)], false),
        ("cli-003", &[(1, 1, 0)], false),
        ("cli-002", &[(6, 1, 990)], true),
    ];
    plan.iter()
        .enumerate()
        .map(|(i, (customer, lines, split))| {
            let number = 1001 + i as u32;
            (
                format!("NF-{number}"),
                *customer,
                invoice(customer, number, lines, *split),
            )
        })
        .collect()
}

/// The afternoon's invoices, billed while the authorization is revoked.
pub fn afternoon() -> Vec<(String, &'static str, Value)> {
    let plan: [Sale; 8] = [
        ("cli-005", &[(2, 1, 0)], false),
        ("cli-010", &[(0, 1, 0), (7, 1, 0)], false),
        ("cli-004", &[(1, 1, 0), (3, 1, 0)], true),
        ("cli-006", &[(4, 3, 0), (5, 3, 0)], true),
        ("cli-001", &[(6, 1, 0)], true),
        ("cli-003", &[(7, 4, 0)], false),
        ("cli-002", &[(0, 1, 0)], false),
        ("cli-005", &[(4, 1, 0)], false),
    ];
    plan.iter()
        .enumerate()
        .map(|(i, (customer, lines, split))| {
            let number = 1101 + i as u32;
            (
                format!("NF-{number}"),
                *customer,
                invoice(customer, number, lines, *split),
            )
        })
        .collect()
}
