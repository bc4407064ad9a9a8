//! Contatos, pedidos de venda, situações and NF-e against the sandbox over real HTTP.

use crate::sandbox_support::*;
use bling_ledger::sandbox::{AccountConfig, SandboxConfig, SituacaoIds, MODULO_VENDAS};
use reqwest::StatusCode;
use serde_json::{json, Value};

const CPF_A: &str = "12345678909";
const CPF_B: &str = "98765432100";
const CNPJ: &str = "11222333000181";
const CNPJ_ALNUM: &str = "12ABC34501DE35";

async fn api() -> (bling_ledger::sandbox::Sandbox, Api) {
    let sb = start(unthrottled()).await;
    let api = login(&sb, "default").await;
    (sb, api)
}

fn ids(body: &Value) -> Vec<i64> {
    body["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|x| x["id"].as_i64())
        .collect()
}

#[tokio::test]
async fn contatos_crud() {
    let (sb, api) = api().await;
    let full = json!({
        "nome": "Maria da Silva", "codigo": "C-1", "numeroDocumento": "123.456.789-09",
        "telefone": "(11) 3333-4444", "celular": "11 98888-7777", "tipo": "F", "email": "maria@example.com",
        "endereco": {"geral": {"endereco": "Rua A", "cep": "01310-100", "bairro": "Centro",
                               "municipio": "São Paulo", "uf": "sp", "numero": "10"}},
        "dadosAdicionais": {"dataNascimento": "1990-05-01", "sexo": "F"},
        "financeiro": {"limiteCredito": 150.75},
        "vendedor": null
    });
    let (status, body) = api.post("/contatos", &full).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["data"]["id"].as_i64().expect("id");
    assert!(
        id > i64::from(u32::MAX),
        "ids do not fit 32 bits, as in Bling"
    );

    let (status, body) = api.get(&format!("/contatos/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let c = &body["data"];
    assert_eq!(c["id"], id);
    // Read-backs are punctuated as Bling's are ([VCR], [OAS]).
    assert_eq!(c["numeroDocumento"], "123.456.789-09");
    assert_eq!(c["telefone"], "(11) 3333-4444");
    assert_eq!(c["celular"], "(11) 98888-7777");
    assert_eq!(c["situacao"], "A");
    assert_eq!(c["endereco"]["geral"]["cep"], "01310-100");
    assert_eq!(c["endereco"]["geral"]["uf"], "SP");
    assert_eq!(c["financeiro"]["limiteCredito"], 150.75);
    assert_eq!(c["dadosAdicionais"]["sexo"], "F");

    // PUT replaces: fields left out are cleared.
    let (status, _) = api
        .put(
            &format!("/contatos/{id}"),
            &json!({"nome": "Maria S.", "numeroDocumento": CPF_A}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = api.get(&format!("/contatos/{id}")).await;
    assert_eq!(body["data"]["nome"], "Maria S.");
    assert_eq!(body["data"]["email"], "");
    assert_eq!(body["data"]["endereco"]["geral"]["cep"], "");

    let (status, _) = api
        .patch(
            &format!("/contatos/{id}/situacoes"),
            Some(&json!({"situacao": "I"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(sb.contatos("default")[0]["situacao"], "I");
    let (status, body) = api
        .patch(
            &format!("/contatos/{id}/situacoes"),
            Some(&json!({"situacao": "X"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (StatusCode::BAD_REQUEST, Some("VALIDATION_ERROR"))
    );

    assert_eq!(
        api.delete(&format!("/contatos/{id}")).await.0,
        StatusCode::NO_CONTENT
    );
    let (status, body) = api.get(&format!("/contatos/{id}")).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (StatusCode::NOT_FOUND, Some("RESOURCE_NOT_FOUND"))
    );
    assert_eq!(
        api.delete(&format!("/contatos/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.put("/contatos/999", &json!({"nome": "x"})).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(api.get("/contatos/abc").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn contatos_validation_reports_every_field() {
    let (_sb, api) = api().await;
    let (status, body) = api
        .post(
            "/contatos",
            &json!({
                "nome": " ", "tipo": "F", "numeroDocumento": "123.456.789-00", "email": "nope",
                "endereco": {"geral": {"endereco": "Rua B", "cep": "123", "uf": "XX"}}
            }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let err = &body["error"];
    assert_eq!(err["type"], "VALIDATION_ERROR");
    assert_eq!(err["message"], "Não foi possível salvar o contato");
    let elements = error_elements(&body);
    for e in ["nome", "numeroDocumento", "email", "cep", "uf"] {
        assert!(
            elements.contains(&e.to_string()),
            "{e} missing in {elements:?}"
        );
    }
    let cpf = err["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["element"] == "numeroDocumento")
        .cloned()
        .expect("cpf");
    // No public source gives Bling's code for an invalid CPF: the sandbox's own (900s).
    assert_eq!(cpf["code"], 951);
    assert_eq!(cpf["msg"], "O CPF informado é inválido");
    assert_eq!(cpf["namespace"], "CONTATOS");
    assert!(cpf.get("collection").is_none(), "only wrappers carry one");

    // tipo must match the document.
    let (status, body) = api
        .post(
            "/contatos",
            &json!({"nome": "X", "tipo": "F", "numeroDocumento": CNPJ}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_elements(&body), vec!["tipo"]);
    let (_, body) = api
        .post(
            "/contatos",
            &json!({"nome": "X", "tipo": "J", "numeroDocumento": CPF_A}),
        )
        .await;
    assert_eq!(error_elements(&body), vec!["tipo"]);
    let (_, body) = api
        .post(
            "/contatos",
            &json!({"nome": "X", "tipo": "J", "numeroDocumento": "11222333000182"}),
        )
        .await;
    assert_eq!(
        body["error"]["fields"][0]["msg"],
        "O CNPJ informado é inválido"
    );
    let (_, body) = api
        .post("/contatos", &json!({"nome": "X", "tipo": "Q"}))
        .await;
    assert_eq!(error_elements(&body), vec!["tipo"]);
    let raw = api
        .http
        .post(format!("{}/contatos", api.base))
        .header("content-type", "application/json")
        .body("not json");
    let (status, body) = api.send(raw).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["type"], "INVALID_REQUEST_BODY");
    let raw = api
        .http
        .post(format!("{}/contatos", api.base))
        .header("content-type", "application/json");
    let (status, body) = api.send(raw).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["type"], "MISSING_REQUIRED_FIELD_ERROR");
    assert_eq!(
        body["error"]["message"],
        "Nenhum dado foi informado na requisição."
    );

    // Valid: the alphanumeric CNPJ (formatted), a plain CNPJ, and tipo inferred from it.
    let (status, body) = api
        .post(
            "/contatos",
            &json!({"nome": "Pet Ltda", "tipo": "J", "numeroDocumento": "12.ABC.345/01DE-35"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["data"]["id"].as_i64().expect("id");
    assert_eq!(
        api.get(&format!("/contatos/{id}")).await.1["data"]["numeroDocumento"],
        "12.ABC.345/01DE-35"
    );
    assert_eq!(
        ids(&api
            .get(&format!("/contatos?numeroDocumento={CNPJ_ALNUM}"))
            .await
            .1),
        vec![id]
    );
    let (status, body) = api
        .post(
            "/contatos",
            &json!({"nome": "Rações SA", "numeroDocumento": CNPJ}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = body["data"]["id"].as_i64().expect("id");
    assert_eq!(
        api.get(&format!("/contatos/{id}")).await.1["data"]["tipo"],
        "J"
    );
    // Bling accepts two contatos with the same document; clients must look up first.
    assert_eq!(
        api.post(
            "/contatos",
            &json!({"nome": "Rações SA (2)", "numeroDocumento": CNPJ})
        )
        .await
        .0,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn contatos_list_filters_and_paging() {
    let (_sb, api) = api().await;
    let mut created = Vec::new();
    for (nome, doc, uf, tel) in [
        ("Ana Souza", CPF_A, "SP", "11 3333-0001"),
        ("Bruno Lima", CPF_B, "RJ", "21 3333-0002"),
        ("Clínica Vet", CNPJ, "SP", "11 4444-0003"),
    ] {
        let (status, body) = api
            .post(
                "/contatos",
                &json!({"nome": nome, "numeroDocumento": doc, "telefone": tel, "codigo": nome,
                "endereco": {"geral": {"endereco": "Rua", "cep": if uf == "RJ" { "20040002" } else { "01001000" }, "uf": uf}}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        created.push(body["data"]["id"].as_i64().expect("id"));
    }
    let (status, body) = api.get("/contatos").await;
    assert_eq!(status, StatusCode::OK);
    let newest_first: Vec<i64> = created.iter().rev().copied().collect();
    assert_eq!(ids(&body), newest_first);
    let item = body["data"][0].as_object().expect("item");
    let mut keys: Vec<&str> = item.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "celular",
            "codigo",
            "id",
            "nome",
            "numeroDocumento",
            "situacao",
            "telefone"
        ]
    );

    assert_eq!(
        ids(&api.get("/contatos?numeroDocumento=987.654.321-00").await.1),
        vec![created[1]]
    );
    assert_eq!(
        ids(&api.get("/contatos?pesquisa=vet").await.1),
        vec![created[2]]
    );
    assert_eq!(
        ids(&api.get("/contatos?uf=SP").await.1),
        vec![created[2], created[0]]
    );
    assert_eq!(
        ids(&api.get("/contatos?tipoPessoa=2").await.1),
        vec![created[2]]
    );
    assert_eq!(
        ids(&api.get("/contatos?tipoPessoa=1").await.1),
        vec![created[1], created[0]]
    );
    assert_eq!(
        ids(&api.get("/contatos?telefone=2133330002").await.1),
        vec![created[1]]
    );
    let q = format!(
        "/contatos?idsContatos[]={}&idsContatos[]={}",
        created[0], created[2]
    );
    assert_eq!(ids(&api.get(&q).await.1), vec![created[2], created[0]]);
    assert_eq!(
        ids(&api.get("/contatos?pagina=2&limite=2").await.1),
        vec![created[0]]
    );
    assert_eq!(
        ids(&api.get("/contatos?pagina=3&limite=2").await.1),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids(&api
            .get(&format!(
                "/contatos?dataInclusaoInicial={}&dataInclusaoFinal={}",
                days_from_today(-100),
                days_from_today(100)
            ))
            .await
            .1)
        .len(),
        3
    );
    assert!(ids(&api
        .get("/contatos?dataAlteracaoInicial=2999-01-01 00:00:00")
        .await
        .1)
    .is_empty());
    assert!(ids(&api.get("/contatos?dataInclusaoFinal=2000-01-01").await.1).is_empty());

    // criterio ([OAS]): 1 Todos (but excluídos), 2 Excluídos, 3 Últimos incluídos (default),
    // 4 Sem movimento.
    api.patch(
        &format!("/contatos/{}/situacoes", created[0]),
        Some(&json!({"situacao": "E"})),
    )
    .await;
    api.patch(
        &format!("/contatos/{}/situacoes", created[1]),
        Some(&json!({"situacao": "I"})),
    )
    .await;
    assert_eq!(
        ids(&api.get("/contatos").await.1),
        vec![created[2], created[1]]
    );
    assert_eq!(
        ids(&api.get("/contatos?criterio=1").await.1),
        vec![created[2], created[1]]
    );
    assert_eq!(
        ids(&api.get("/contatos?criterio=2").await.1),
        vec![created[0]]
    );
    assert_eq!(
        ids(&api.get("/contatos?criterio=4").await.1),
        vec![created[2], created[1]],
        "no sales order yet: all without movement"
    );

    let (status, body) = api.get("/contatos?pagina=abc").await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (StatusCode::BAD_REQUEST, Some("VALIDATION_ERROR"))
    );
    assert_eq!(
        api.get("/contatos?dataInclusaoInicial=31/12/2024").await.0,
        StatusCode::BAD_REQUEST
    );
}

fn days_from_today(days: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(days))
        .format("%Y-%m-%d")
        .to_string()
}

/// The account's payment method of NF-e type `tipo` (1 dinheiro, 17 Pix, …), discovered.
async fn forma(api: &Api, tipo: i64) -> i64 {
    let (status, body) = api.get("/formas-pagamentos").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]
        .as_array()
        .expect("list")
        .iter()
        .find(|f| f["tipoPagamento"] == tipo)
        .and_then(|f| f["id"].as_i64())
        .expect("payment method of that type")
}

/// A sale whose parcelas add up to its total: itens 2 × 149.90 − 9.8 % = 270.42 and
/// 1.5 × 0.10 = 0.15 (totalProdutos 270.57); − 10 % (27.06) + 2.50 + 15.90 frete = 261.91.
fn pedido(contato: i64, numero_loja: &str, forma: i64) -> Value {
    json!({
        "numeroLoja": numero_loja, "data": "2025-03-10", "dataPrevista": "2025-03-12",
        "contato": {"id": contato},
        "loja": {"id": 203},
        "desconto": {"valor": 10, "unidade": "PERCENTUAL"},
        "outrasDespesas": 2.5,
        "transporte": {"frete": 15.9},
        "itens": [
            {"codigo": "RACAO-15", "descricao": "Ração 15 kg", "quantidade": 2, "valor": 149.9, "desconto": 9.8},
            {"codigo": "BANHO", "descricao": "Banho e tosa", "quantidade": 1.5, "valor": 0.1},
        ],
        "parcelas": [{"dataVencimento": "2025-04-10", "valor": 130.95, "formaPagamento": {"id": forma}},
                     {"dataVencimento": "2025-05-10", "valor": 130.96, "formaPagamento": {"id": forma}}]
    })
}

#[tokio::test]
async fn pedidos_create_get_update_delete_with_totals() {
    let (sb, api) = api().await;
    let contato = api.contato("Ana", CPF_A).await;
    let pix = forma(&api, 17).await;
    let (status, body) = api
        .post("/pedidos/vendas", &pedido(contato, "INV-1", pix))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["alertas"], json!([]));
    let id = body["data"]["id"].as_i64().expect("id");

    let (status, body) = api.get(&format!("/pedidos/vendas/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let p = &body["data"];
    // itens[].desconto is a percentage ([OAS]): 2 × 149.90 × (1 − 9.8 %) = 270.42, plus
    // 1.5 × 0.10 = 0.15 exactly (no float drift).
    assert_eq!(p["totalProdutos"], 270.57);
    // 270.57 − 10 % of the products only (27.06) + 2.50 + 15.90 frete = 261.91 ([LC]).
    assert_eq!(p["total"], 261.91);
    assert_eq!(p["numero"], 1);
    assert_eq!(p["numeroLoja"], "INV-1");
    assert_eq!(
        p["contato"],
        json!({"id": contato, "nome": "Ana", "tipoPessoa": "F", "numeroDocumento": "123.456.789-09"})
    );
    assert_eq!(p["situacao"]["id"], 6, "new orders are Em aberto");
    assert_eq!(p["itens"][1]["quantidade"], 1.5);
    assert!(p["itens"][0]["id"].as_i64().is_some_and(|i| i > 0));
    assert_eq!(p["loja"]["id"], 203);

    let second = api
        .post("/pedidos/vendas", &pedido(contato, "INV-2", pix))
        .await
        .1["data"]["id"]
        .as_i64()
        .expect("id");
    assert_eq!(
        api.get(&format!("/pedidos/vendas/{second}")).await.1["data"]["numero"],
        2,
        "numero auto-assigned"
    );

    // PUT replaces the order: one item now, no discount; answers 200 with a body ([OAS]).
    let replacement = json!({"numeroLoja": "INV-1", "contato": {"id": contato},
        "itens": [{"descricao": "Coleira", "quantidade": 3, "valor": 19.99}]});
    let (status, body) = api
        .put(&format!("/pedidos/vendas/{id}"), &replacement)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"data": {"id": id, "alertas": []}}));
    let p = api.get(&format!("/pedidos/vendas/{id}")).await.1["data"].clone();
    assert_eq!(
        (p["totalProdutos"].as_f64(), p["total"].as_f64()),
        (Some(59.97), Some(59.97))
    );
    assert_eq!(p["numero"], 1, "numero kept");
    assert_eq!(p["desconto"]["valor"], 0.0, "left out, so cleared");
    assert_eq!(p["observacoes"], "");
    assert_eq!(p["transporte"]["frete"], 0);
    // Parcelas left out: one generated for the whole total, with the default method.
    let dinheiro = forma(&api, 1).await;
    let parcelas = p["parcelas"].as_array().expect("parcelas");
    assert_eq!(parcelas.len(), 1);
    assert_eq!(parcelas[0]["valor"], 59.97);
    assert_eq!(parcelas[0]["formaPagamento"]["id"], dinheiro);

    let (status, body) = api
        .post(
            "/pedidos/vendas",
            &json!({"contato": {"id": contato}, "numero": 2,
        "itens": [{"descricao": "x", "quantidade": 1, "valor": 1}]}),
        )
        .await;
    assert_eq!(
        (status, error_elements(&body)),
        (StatusCode::BAD_REQUEST, vec!["numero".to_string()])
    );

    assert_eq!(
        api.delete(&format!("/pedidos/vendas/{second}")).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.get(&format!("/pedidos/vendas/{second}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(sb.pedidos("default").len(), 1);
}

#[tokio::test]
async fn pedidos_validation() {
    let (_sb, api) = api().await;
    let (status, body) = api
        .post("/pedidos/vendas", &json!({"contato": {"id": 424242}, "itens": [{"descricao": "x", "quantidade": 1, "valor": 1}]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["type"], "VALIDATION_ERROR");
    assert_eq!(error_elements(&body), vec!["contato"]);
    assert_eq!(body["error"]["fields"][0]["namespace"], "VENDAS");

    let contato = api.contato("Ana", CPF_A).await;
    let (_, body) = api
        .post(
            "/pedidos/vendas",
            &json!({"contato": {"id": contato}, "itens": []}),
        )
        .await;
    assert_eq!(error_elements(&body), vec!["itens"]);
    let (status, body) = api
        .post(
            "/pedidos/vendas",
            &json!({"contato": {"id": contato}, "data": "10/03/2025", "itens": [
            {"descricao": "ok", "quantidade": 1, "valor": 1},
            {"descricao": "zero", "quantidade": 0, "valor": 1},
            {"descricao": "neg", "quantidade": 1, "valor": -1}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let fields = body["error"]["fields"].as_array().expect("fields");
    let itens = fields
        .iter()
        .find(|f| f["element"] == "itens")
        .expect("itens field");
    let collection: Vec<(i64, &str)> = itens["collection"]
        .as_array()
        .expect("collection")
        .iter()
        .map(|c| {
            (
                c["index"].as_i64().unwrap_or(-1),
                c["element"].as_str().unwrap_or(""),
            )
        })
        .collect();
    // index counts from 1, as in Bling's [OAS] example.
    assert_eq!(collection, vec![(2, "quantidade"), (3, "valor")]);
    assert!(fields.iter().any(|f| f["element"] == "data"));
    assert_eq!(
        api.get("/pedidos/vendas").await.1["data"],
        json!([]),
        "nothing stored"
    );
}

#[tokio::test]
async fn pedidos_list_filters() {
    let (_sb, api) = api().await;
    let ana = api.contato("Ana", CPF_A).await;
    let bruno = api.contato("Bruno", CPF_B).await;
    let pix = forma(&api, 17).await;
    let mut ids_ = Vec::new();
    for (contato, loja, data) in [
        (ana, "INV-1", "2025-01-05"),
        (bruno, "INV-2", "2025-02-05"),
        (ana, "INV-3", "2025-03-05"),
    ] {
        let mut body = pedido(contato, loja, pix);
        body["data"] = json!(data);
        ids_.push(
            api.post("/pedidos/vendas", &body).await.1["data"]["id"]
                .as_i64()
                .expect("id"),
        );
    }
    let (status, _) = api
        .patch(&format!("/pedidos/vendas/{}/situacoes/9", ids_[1]), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, body) = api.get("/pedidos/vendas").await;
    assert_eq!(status, StatusCode::OK);
    // Newest first ([VCR]).
    assert_eq!(ids(&body), vec![ids_[2], ids_[1], ids_[0]]);
    let item = body["data"][1].as_object().expect("item");
    let mut keys: Vec<&str> = item.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "contato",
            "data",
            "dataPrevista",
            "dataSaida",
            "id",
            "loja",
            "numero",
            "numeroLoja",
            "situacao",
            "total",
            "totalProdutos"
        ]
    );
    assert_eq!(item["situacao"], json!({"id": 9, "valor": 1}));
    assert_eq!(item["contato"]["nome"], "Bruno");

    assert_eq!(
        ids(&api.get(&format!("/pedidos/vendas?idContato={ana}")).await.1),
        vec![ids_[2], ids_[0]]
    );
    assert_eq!(
        ids(&api
            .get("/pedidos/vendas?numerosLojas[]=INV-3&numerosLojas[]=INV-1")
            .await
            .1),
        vec![ids_[2], ids_[0]]
    );
    assert_eq!(
        ids(&api.get("/pedidos/vendas?idsSituacoes[]=9").await.1),
        vec![ids_[1]]
    );
    assert_eq!(
        ids(&api
            .get("/pedidos/vendas?idsSituacoes%5B%5D=6&idsSituacoes%5B%5D=9")
            .await
            .1)
        .len(),
        3
    );
    assert_eq!(
        ids(&api
            .get("/pedidos/vendas?dataInicial=2025-02-01&dataFinal=2025-02-28")
            .await
            .1),
        vec![ids_[1]]
    );
    assert_eq!(
        ids(&api.get("/pedidos/vendas?numero=3").await.1),
        vec![ids_[2]]
    );
    assert_eq!(
        ids(&api
            .get("/pedidos/vendas?idLoja=203&limite=1&pagina=2")
            .await
            .1),
        vec![ids_[1]]
    );
    assert_eq!(
        ids(&api
            .get("/pedidos/vendas?dataPrevistaInicial=2025-03-12")
            .await
            .1)
        .len(),
        3
    );
    assert!(ids(&api
        .get("/pedidos/vendas?dataAlteracaoInicial=2999-01-01")
        .await
        .1)
    .is_empty());
}

#[tokio::test]
async fn situacao_change_gerar_nfe_and_enviar() {
    let (sb, api) = api().await;
    let contato = api
        .post("/contatos", &json!({"nome": "Ana", "numeroDocumento": CPF_A,
            "endereco": {"geral": {"endereco": "Rua A", "numero": "1", "bairro": "Centro", "cep": "01310100",
                                   "municipio": "São Paulo", "uf": "SP"}}}))
        .await
        .1["data"]["id"]
        .as_i64()
        .expect("id");
    let pix = forma(&api, 17).await;
    let id = api
        .post("/pedidos/vendas", &pedido(contato, "INV-9", pix))
        .await
        .1["data"]["id"]
        .as_i64()
        .expect("id");

    let (status, body) = api
        .patch(&format!("/pedidos/vendas/{id}/situacoes/999"), None)
        .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (StatusCode::BAD_REQUEST, Some("VALIDATION_ERROR"))
    );
    assert_eq!(
        api.patch("/pedidos/vendas/777/situacoes/9", None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.patch(&format!("/pedidos/vendas/{id}/situacoes/15"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.get(&format!("/pedidos/vendas/{id}")).await.1["data"]["situacao"],
        json!({"id": 15, "valor": 3})
    );

    let (status, body) = api
        .post_empty(&format!("/pedidos/vendas/{id}/gerar-nfe"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let nfe = body["data"]["idNotaFiscal"].as_i64().expect("idNotaFiscal");
    let (status, body) = api
        .post_empty(&format!("/pedidos/vendas/{id}/gerar-nfe"))
        .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (StatusCode::BAD_REQUEST, Some("VALIDATION_ERROR"))
    );
    assert_eq!(
        api.get(&format!("/pedidos/vendas/{id}")).await.1["data"]["notaFiscal"]["id"],
        nfe
    );

    let (status, body) = api.get(&format!("/nfe/{nfe}")).await;
    assert_eq!(status, StatusCode::OK);
    let n = &body["data"];
    assert_eq!(
        (n["id"].as_i64(), n["tipo"].as_i64(), n["situacao"].as_i64()),
        (Some(nfe), Some(1), Some(1))
    );
    assert_eq!(n["numero"], "000001");
    assert_eq!(n["serie"], 1);
    assert_eq!(n["valorNota"], 261.91);
    assert_eq!(n["chaveAcesso"], "", "no key before transmission");
    assert_eq!(n["contato"]["numeroDocumento"], CPF_A);
    assert_eq!(n["contato"]["endereco"]["municipio"], "São Paulo");
    assert_eq!(n["numeroPedidoLoja"], "INV-9");

    let (status, body) = api.post_empty(&format!("/nfe/{nfe}/enviar")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["data"]["xml"]
        .as_str()
        .is_some_and(|x| x.contains("<nfeProc")));
    let n = api.get(&format!("/nfe/{nfe}")).await.1["data"].clone();
    assert_eq!(n["situacao"], 5, "Autorizada");
    let chave = n["chaveAcesso"].as_str().expect("chave");
    assert_eq!(chave.len(), 44);
    assert!(chave.starts_with("35") && chave[20..22] == *"55");
    assert!(n["linkDanfe"].as_str().is_some_and(|l| !l.is_empty()));
    let (status, _) = api.post_empty(&format!("/nfe/{nfe}/enviar")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "already authorized");
    assert_eq!(api.get("/nfe/123").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        api.post_empty("/pedidos/vendas/123/gerar-nfe").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(sb.nfes("default").len(), 1);

    // A recipient without a document is rejected by "SEFAZ".
    let anon = api.post("/contatos", &json!({"nome": "Sem doc"})).await.1["data"]["id"]
        .as_i64()
        .expect("id");
    let pid = api
        .post("/pedidos/vendas", &pedido(anon, "INV-10", pix))
        .await
        .1["data"]["id"]
        .as_i64()
        .expect("id");
    let nfe2 = api
        .post_empty(&format!("/pedidos/vendas/{pid}/gerar-nfe"))
        .await
        .1["data"]["idNotaFiscal"]
        .as_i64()
        .expect("id");
    assert_eq!(
        api.post_empty(&format!("/nfe/{nfe2}/enviar")).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api.get(&format!("/nfe/{nfe2}")).await.1["data"]["situacao"],
        4,
        "Rejeitada"
    );
    assert_eq!(
        api.get(&format!("/nfe/{nfe2}")).await.1["data"]["numero"],
        "000002"
    );
}

#[tokio::test]
async fn situacoes_are_discovered_per_account() {
    let custom_ids = SituacaoIds {
        em_aberto: 106,
        atendido: 109,
        cancelado: 112,
        em_andamento: 115,
        venda_agenciada: 118,
        em_digitacao: 121,
        verificado: 124,
    };
    let config = SandboxConfig {
        accounts: vec![AccountConfig {
            name: "odd".into(),
            situacao_ids: Some(custom_ids),
            custom_situacoes: vec!["Aguardando NF-e".into()],
            faults: None,
        }],
        ..unthrottled()
    };
    let sb = start(config).await;
    let odd = login(&sb, "odd").await;
    let normal = login(&sb, "default").await;

    let (status, body) = odd.get("/situacoes/modulos").await;
    assert_eq!(status, StatusCode::OK);
    let vendas = body["data"]
        .as_array()
        .expect("modules")
        .iter()
        .find(|m| m["nome"] == "Vendas")
        .cloned()
        .expect("Vendas");
    assert_eq!(vendas["id"], MODULO_VENDAS);
    assert_eq!(vendas["criarSituacoes"], true);

    let situacoes = |body: &Value| -> Vec<(i64, String)> {
        body["data"]
            .as_array()
            .expect("list")
            .iter()
            .map(|s| {
                (
                    s["id"].as_i64().unwrap_or(0),
                    s["nome"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    let (_, body) = odd
        .get(&format!("/situacoes/modulos/{MODULO_VENDAS}"))
        .await;
    let list = situacoes(&body);
    assert_eq!(list[0], (106, "Em aberto".to_string()));
    let aguardando = list
        .iter()
        .find(|(_, n)| n == "Aguardando NF-e")
        .expect("custom situação")
        .0;
    assert!(aguardando > 1000);
    assert!(body["data"][0]["cor"].is_string() && body["data"][7]["idHerdado"] == 115);

    let (_, body) = normal
        .get(&format!("/situacoes/modulos/{MODULO_VENDAS}"))
        .await;
    let list = situacoes(&body);
    let expected: Vec<(i64, String)> = [
        (6, "Em aberto"),
        (9, "Atendido"),
        (12, "Cancelado"),
        (15, "Em andamento"),
        (18, "Venda agenciada"),
        (21, "Em digitação"),
        (24, "Verificado"),
    ]
    .iter()
    .map(|(i, n)| (*i, n.to_string()))
    .collect();
    assert_eq!(list, expected);
    // A control-plane situação appears in discovery and can be used.
    let added = sb.add_situacao("default", "Aguardando NF-e");
    let (_, body) = normal
        .get(&format!("/situacoes/modulos/{MODULO_VENDAS}"))
        .await;
    assert!(situacoes(&body).contains(&(added, "Aguardando NF-e".to_string())));

    // Orders of "odd" start in its own Em aberto; default ids do not exist there.
    let contato = odd.contato("Ana", CPF_A).await;
    let pix = forma(&odd, 17).await;
    let id = odd
        .post("/pedidos/vendas", &pedido(contato, "X", pix))
        .await
        .1["data"]["id"]
        .as_i64()
        .expect("id");
    assert_eq!(
        odd.get(&format!("/pedidos/vendas/{id}")).await.1["data"]["situacao"]["id"],
        106
    );
    assert_eq!(
        odd.patch(&format!("/pedidos/vendas/{id}/situacoes/9"), None)
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        odd.patch(
            &format!("/pedidos/vendas/{id}/situacoes/{aguardando}"),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        odd.get(&format!("/pedidos/vendas?idsSituacoes[]={aguardando}"))
            .await
            .1["data"][0]["id"],
        id
    );

    let (status, body) = odd
        .get(&format!("/situacoes/modulos/{MODULO_VENDAS}/transicoes"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let t = &body["data"][0];
    assert!(
        t["situacaoOrigem"]["id"].is_i64()
            && t["situacaoDestino"]["nome"].is_string()
            && t["ativo"] == true
    );
    assert_eq!(body["data"].as_array().map(Vec::len), Some(8 * 7));
    assert_eq!(
        odd.get("/situacoes/modulos/1").await.0,
        StatusCode::NOT_FOUND
    );

    let summary = sb.account("odd").expect("account");
    assert_eq!(summary.situacao_ids, custom_ids);
    assert_eq!((summary.contatos, summary.pedidos), (1, 1));
}

#[tokio::test]
async fn unknown_route_is_bling_404() {
    let (_sb, api) = api().await;
    let (status, body) = api.get("/produtos").await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (StatusCode::NOT_FOUND, Some("RESOURCE_NOT_FOUND"))
    );
    assert_eq!(body["error"]["message"], "Não encontrado.");
    let (status, body) = api.patch("/contatos", None).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("METHOD_NOT_ALLOWED"))
    );
}

#[tokio::test]
async fn serve_cli_serves_until_stopped() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
        probe.local_addr().expect("addr").port()
    };
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let server = tokio::spawn(bling_ledger::sandbox::serve_cli(
        addr,
        SandboxConfig::default(),
    ));
    let url = format!("http://{addr}/_sandbox/accounts");
    let mut answered = None;
    for _ in 0..50 {
        if let Ok(resp) = http().get(&url).send().await {
            answered = Some(resp.status());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(answered, Some(StatusCode::OK));
    let resp = http()
        .get(format!("http://{addr}/Api/v3/contatos"))
        .send()
        .await
        .expect("answer");
    // No Authorization header: Bling's 400 invalid_request "Malformed auth header" ([DOC]).
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    server.abort();
}

/// Bling checks that an address's CEP belongs to its UF; the ledger only checks the format.
#[tokio::test]
async fn contato_cep_outside_its_uf_is_refused() {
    let (_sb, api) = api().await;
    let (status, body) = api
        .post(
            "/contatos",
            &json!({"nome": "Ana", "numeroDocumento": CPF_A,
                    "endereco": {"geral": {"endereco": "Rua", "cep": "20040-002", "uf": "SP"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["type"], "VALIDATION_ERROR");
    // Leaf element and the module namespace ([OAS], [FM]); the code is the sandbox's own.
    assert_eq!(body["error"]["fields"][0]["element"], "cep");
    assert_eq!(body["error"]["fields"][0]["namespace"], "CONTATOS");
    assert_eq!(body["error"]["fields"][0]["code"], 955);
}

/// A sale with one item and one parcela of `valor` (Pix).
fn simple_sale(contato: i64, numero_loja: &str, pix: i64, valor: f64) -> Value {
    json!({"numeroLoja": numero_loja, "data": "2025-03-10", "contato": {"id": contato},
        "itens": [{"descricao": "Ração", "quantidade": 1, "valor": valor}],
        "parcelas": [{"dataVencimento": "2025-04-10", "valor": valor, "formaPagamento": {"id": pix}}]})
}

async fn raw_get(api: &Api, path: &str) -> (StatusCode, String) {
    let resp = api
        .http
        .get(format!("{}{path}", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("answer");
    let status = resp.status();
    (status, resp.text().await.expect("text"))
}

#[tokio::test]
async fn item_discount_is_a_percentage_and_lines_round_half_up() {
    let (_sb, api) = api().await;
    let contato = api.contato("Ana", CPF_A).await;
    let pix = forma(&api, 17).await;
    // 0.05 × (1 − 50 %) = 0.025 → 0.03 (half-up per line); 3 × 10 = 30; REAL discount 1.03 on
    // the products; frete 10 not discounted: 30.03 − 1.03 + 10 = 39.
    let body = json!({"numeroLoja": "D-1", "contato": {"id": contato},
        "desconto": {"valor": 1.03, "unidade": "REAL"}, "transporte": {"frete": 10},
        "itens": [{"descricao": "Petisco", "quantidade": 1, "valor": 0.05, "desconto": 50},
                  {"descricao": "Areia", "quantidade": 3, "valor": 10}],
        "parcelas": [{"valor": 39, "formaPagamento": {"id": pix}}]});
    let (status, created) = api.post("/pedidos/vendas", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["data"]["id"].as_i64().expect("id");
    let p = api.get(&format!("/pedidos/vendas/{id}")).await.1["data"].clone();
    assert_eq!(p["totalProdutos"], 30.03);
    assert_eq!(p["total"], 39.0);
    assert_eq!(p["itens"][0]["desconto"], 50.0);
    // A percentage above 100 is refused, inside the itens collection.
    let mut over = body.clone();
    over["numeroLoja"] = json!("D-2");
    over["itens"][0]["desconto"] = json!(101);
    let (status, refused) = api.post("/pedidos/vendas", &over).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        refused["error"]["fields"][0]["collection"][0]["element"],
        "desconto"
    );
}

#[tokio::test]
async fn parcelas_must_add_up_to_the_total_code_22() {
    let (sb, api) = api().await;
    let contato = api.contato("Ana", CPF_A).await;
    let pix = forma(&api, 17).await;
    let mut sale = simple_sale(contato, "P-1", pix, 80.5);
    sale["parcelas"][0]["valor"] = json!(80.49);
    let (status, body) = api.post("/pedidos/vendas", &sale).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["type"], "VALIDATION_ERROR");
    assert_eq!(body["error"]["message"], "Não foi possível salvar a venda");
    assert_eq!(
        body["error"]["fields"],
        json!([{"code": 22, "msg": "O somatório do valor das parcelas difere do total da venda",
                "element": "parcelas", "namespace": "VENDAS"}])
    );
    assert!(sb.pedidos("default").is_empty());
    sale["parcelas"] = json!([
        {"valor": 40.25, "formaPagamento": {"id": pix}},
        {"valor": 40.25, "formaPagamento": {"id": pix}}
    ]);
    assert_eq!(
        api.post("/pedidos/vendas", &sale).await.0,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn parcela_payment_method_must_be_the_accounts_code_49_with_12() {
    let sb = start(unthrottled()).await;
    let api = login(&sb, "default").await;
    let other = login(&sb, "other-shop").await;
    let contato = api.contato("Ana", CPF_A).await;
    let foreign = forma(&other, 17).await;
    let pix = forma(&api, 17).await;
    let sale = json!({"numeroLoja": "F-1", "contato": {"id": contato},
        "itens": [{"descricao": "Ração", "quantidade": 1, "valor": 50}],
        "parcelas": [{"valor": 20, "formaPagamento": {"id": pix}},
                     {"valor": 20, "formaPagamento": {"id": foreign}},
                     {"valor": 10}]});
    let (status, body) = api.post("/pedidos/vendas", &sale).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let msg = "Id da forma de pagamento inválido.";
    assert_eq!(
        body["error"]["fields"],
        json!([{"code": 49, "msg": "Uma ou mais parcelas da venda possuem erros de validação",
            "element": "parcelas", "namespace": "VENDAS", "collection": [
                {"index": 2, "code": 12, "msg": msg, "element": "formaPagamento", "namespace": "VENDAS"},
                {"index": 3, "code": 12, "msg": msg, "element": "formaPagamento", "namespace": "VENDAS"}]}])
    );
    assert_eq!(
        body["error"]["description"],
        "A venda não pode ser salva, pois ocorreram problemas em sua validação."
    );
    // A deactivated method is refused too.
    assert!(sb.set_forma_pagamento_ativa("default", pix, false));
    let (status, body) = api
        .post("/pedidos/vendas", &simple_sale(contato, "F-2", pix, 5.0))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["fields"][0]["code"], 49);
}

#[tokio::test]
async fn formas_pagamentos_are_per_account_and_include_pix() {
    let sb = start(unthrottled()).await;
    let a = login(&sb, "shop-a").await;
    let b = login(&sb, "shop-b").await;
    let (status, body) = a.get("/formas-pagamentos").await;
    assert_eq!(status, StatusCode::OK);
    let list = body["data"].as_array().expect("list").clone();
    let tipos: Vec<i64> = list
        .iter()
        .filter_map(|f| f["tipoPagamento"].as_i64())
        .collect();
    for t in [1, 3, 4, 15, 17, 18] {
        assert!(tipos.contains(&t), "tipoPagamento {t} in {tipos:?}");
    }
    let pix = list.iter().find(|f| f["tipoPagamento"] == 17).expect("Pix");
    assert_eq!(pix["descricao"], "Pix");
    assert_eq!(pix["situacao"], 1);
    for key in [
        "id",
        "descricao",
        "tipoPagamento",
        "situacao",
        "fixa",
        "padrao",
        "finalidade",
    ] {
        assert!(pix.get(key).is_some(), "{key}");
    }
    assert_eq!(
        list.iter().filter(|f| f["padrao"] == 1).count(),
        1,
        "one default method"
    );
    let a_ids: Vec<i64> = list.iter().filter_map(|f| f["id"].as_i64()).collect();
    let b_ids = ids(&b.get("/formas-pagamentos").await.1);
    assert!(
        a_ids.iter().all(|i| !b_ids.contains(i)),
        "{a_ids:?} vs {b_ids:?}"
    );

    let pix_id = pix["id"].as_i64().expect("id");
    let (status, one) = a.get(&format!("/formas-pagamentos/{pix_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["data"]["tipoPagamento"], 17);
    assert!(one["data"]["destino"].is_i64());
    assert_eq!(
        b.get(&format!("/formas-pagamentos/{pix_id}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ids(&a.get("/formas-pagamentos?tiposPagamentos[]=17").await.1),
        vec![pix_id]
    );

    // A custom method through the control plane is listed and accepted in parcelas.
    let resp = http()
        .post(format!(
            "{}/accounts/shop-a/formas-pagamentos",
            sb.control_url()
        ))
        .json(&json!({"descricao": "Crediário da loja", "tipoPagamento": 5}))
        .send()
        .await
        .expect("control plane");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let custom = resp.json::<Value>().await.expect("json")["id"]
        .as_i64()
        .expect("id");
    assert!(ids(&a.get("/formas-pagamentos").await.1).contains(&custom));
    let contato = a.contato("Ana", CPF_A).await;
    assert_eq!(
        a.post(
            "/pedidos/vendas",
            &simple_sale(contato, "C-1", custom, 12.0)
        )
        .await
        .0,
        StatusCode::CREATED
    );
    assert_eq!(sb.formas_pagamento("shop-a").len(), 7);
    let vale = sb.add_forma_pagamento("shop-b", "Vale", 10);
    assert_ne!(vale, custom);
    assert!(ids(&b.get("/formas-pagamentos").await.1).contains(&vale));
}

#[tokio::test]
async fn identical_sale_and_no_op_put_are_refused_with_code_3() {
    let (sb, api) = api().await;
    let contato = api.contato("Ana", CPF_A).await;
    let pix = forma(&api, 17).await;
    let sale = simple_sale(contato, "S-1", pix, 80.5);
    let (status, body) = api.post("/pedidos/vendas", &sale).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["data"]["id"].as_i64().expect("id");
    let code3 = json!({"error": {"type": "VALIDATION_ERROR", "message": "Não foi possível salvar a venda",
        "fields": [{"code": 3, "msg": "Informações idênticas a última venda salva, altere alguma informação caso deseje prosseguir",
                    "element": "", "namespace": "VENDAS"}]}});
    // A blind retry of the same sale: refused, exactly as Bling's body ([FM]).
    assert_eq!(
        api.post("/pedidos/vendas", &sale).await,
        (StatusCode::BAD_REQUEST, code3.clone())
    );
    assert_eq!(sb.pedidos("default").len(), 1);
    // A different numeroLoja is a different sale.
    let (status, body) = api
        .post("/pedidos/vendas", &simple_sale(contato, "S-2", pix, 80.5))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let second = body["data"]["id"].as_i64().expect("id");
    // The guard compares with the last sale saved only: S-1 again is accepted now.
    assert_eq!(
        api.post("/pedidos/vendas", &sale).await.0,
        StatusCode::CREATED
    );

    // A PUT that changes nothing: code 3; with its own current parcela ids it is still a no-op.
    let current = api.get(&format!("/pedidos/vendas/{id}")).await.1["data"].clone();
    assert_eq!(
        api.put(&format!("/pedidos/vendas/{id}"), &sale).await,
        (StatusCode::BAD_REQUEST, code3.clone())
    );
    let mut same_with_ids = sale.clone();
    same_with_ids["parcelas"][0]["id"] = current["parcelas"][0]["id"].clone();
    assert_eq!(
        api.put(&format!("/pedidos/vendas/{id}"), &same_with_ids)
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    // A parcela id of another order is refused ([LC] "O id (…) da parcela é inválido").
    let other_parcela = api.get(&format!("/pedidos/vendas/{second}")).await.1["data"]["parcelas"]
        [0]["id"]
        .as_i64()
        .expect("parcela id");
    let mut foreign = sale.clone();
    foreign["observacoes"] = json!("changed");
    foreign["parcelas"][0]["id"] = json!(other_parcela);
    let (status, body) = api.put(&format!("/pedidos/vendas/{id}"), &foreign).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let item = &body["error"]["fields"][0]["collection"][0];
    assert_eq!(body["error"]["fields"][0]["code"], 49);
    assert_eq!(item["element"], "id");
    assert_eq!(
        item["msg"],
        format!("O id ({other_parcela}) da parcela é inválido")
    );
    // A real change goes through and answers 200 with the envelope.
    foreign["parcelas"][0]["id"] = json!(0);
    assert_eq!(
        api.put(&format!("/pedidos/vendas/{id}"), &foreign).await,
        (StatusCode::OK, json!({"data": {"id": id, "alertas": []}}))
    );
}

#[tokio::test]
async fn default_criterio_misses_an_old_contato_and_criterio_1_finds_it() {
    let (sb, api) = api().await;
    let old = api.contato("Cliente antigo", CPF_A).await;
    let older = api.contato("Cliente mais antigo", CPF_B).await;
    let recent = api.contato("Cliente novo", "52998224725").await;
    assert!(sb.age_contato("default", old, 400));
    assert!(!sb.age_contato("default", 1, 400));
    let resp = http()
        .post(format!(
            "{}/accounts/default/contatos/{older}/age",
            sb.control_url()
        ))
        .json(&json!({"days": 31}))
        .send()
        .await
        .expect("control plane");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    // Bling's default criterio is 3, "Últimos incluídos": the lookup by document misses them.
    assert!(ids(&api
        .get(&format!("/contatos?numeroDocumento={CPF_A}"))
        .await
        .1)
    .is_empty());
    assert!(ids(&api
        .get(&format!("/contatos?numeroDocumento={CPF_B}"))
        .await
        .1)
    .is_empty());
    assert_eq!(ids(&api.get("/contatos").await.1), vec![recent]);
    assert_eq!(
        ids(&api
            .get(&format!("/contatos?criterio=1&numeroDocumento={CPF_A}"))
            .await
            .1),
        vec![old]
    );
    assert_eq!(
        ids(&api.get("/contatos?criterio=1").await.1),
        vec![recent, older, old]
    );
    // criterio 4, "Sem movimento": contatos without a sales order.
    let pix = forma(&api, 17).await;
    api.post("/pedidos/vendas", &simple_sale(old, "M-1", pix, 10.0))
        .await;
    assert_eq!(
        ids(&api.get("/contatos?criterio=4").await.1),
        vec![recent, older]
    );
    assert_eq!(
        api.get("/contatos?criterio=5").await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn read_backs_are_formatted_and_empty_values_are_blings() {
    let (_sb, api) = api().await;
    let (status, body) = api
        .post(
            "/contatos",
            &json!({"nome": "Clínica Vet", "tipo": "J", "numeroDocumento": "29860598000170",
                    "celular": "51992696163"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["data"]["id"].as_i64().expect("id");
    let c = api.get(&format!("/contatos/{id}")).await.1["data"].clone();
    assert_eq!(c["numeroDocumento"], "29.860.598/0001-70");
    assert_eq!(c["celular"], "(51) 99269-6163");
    assert_eq!(c["dadosAdicionais"]["dataNascimento"], "0000-00-00");
    // The filter takes digits ("desconsiderando a pontuação"); the list reads punctuated.
    let found = api.get("/contatos?numeroDocumento=29860598000170").await.1;
    assert_eq!(ids(&found), vec![id]);
    assert_eq!(found["data"][0]["numeroDocumento"], "29.860.598/0001-70");

    let pix = forma(&api, 17).await;
    let sale = simple_sale(id, "R-1", pix, 10.0);
    let pid = api.post("/pedidos/vendas", &sale).await.1["data"]["id"]
        .as_i64()
        .expect("id");
    let p = api.get(&format!("/pedidos/vendas/{pid}")).await.1["data"].clone();
    assert_eq!(p["dataSaida"], "0000-00-00");
    assert_eq!(p["dataPrevista"], "0000-00-00");
    assert_eq!(p["categoria"], json!({"id": 0}));
    assert_eq!(p["vendedor"], json!({"id": 0}));
    assert_eq!(p["notaFiscal"], json!({"id": 0}));
    assert_eq!(p["transporte"]["contato"], json!({"id": 0, "nome": ""}));
    assert_eq!(p["intermediador"], json!({"cnpj": "", "nomeUsuario": ""}));
    assert_eq!(p["contato"]["numeroDocumento"], "29.860.598/0001-70");
    assert_eq!(p["contato"]["tipoPessoa"], "J");
    let listed = api.get("/pedidos/vendas").await.1;
    assert_eq!(listed["data"][0]["dataPrevista"], "0000-00-00");
    // Sending the read-back again (ids, zero dates and all) is a no-op: code 3.
    let (status, body) = api.put(&format!("/pedidos/vendas/{pid}"), &p).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["fields"][0]["code"], 3);
}

#[tokio::test]
async fn date_filters_are_strict_and_span_at_most_a_year() {
    let (_sb, api) = api().await;
    for bad in [
        "/pedidos/vendas?dataAlteracaoInicial=2025-01-01T00:00:00",
        "/pedidos/vendas?dataAlteracaoInicial=2025-01-01%2000:00:00-03:00",
        "/pedidos/vendas?dataInicial=2025-1-1",
        "/contatos?dataInclusaoInicial=2025-01-01T10:00:00",
    ] {
        let (status, body) = api.get(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["error"]["type"], "VALIDATION_ERROR", "{bad}");
    }
    let (status, body) = api
        .get("/pedidos/vendas?dataInicial=2024-01-01&dataFinal=2025-01-02")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["fields"][0]["code"], 904);
    assert_eq!(body["error"]["fields"][0]["namespace"], "VENDAS");
    assert_eq!(
        api.get("/contatos?dataAlteracaoInicial=2024-01-01%2000:00:00&dataAlteracaoFinal=2025-06-01%2000:00:00")
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    for ok in [
        "/pedidos/vendas?dataInicial=2024-01-01&dataFinal=2025-01-01",
        "/pedidos/vendas?dataAlteracaoInicial=2025-01-01%2010:00:00",
        "/contatos?criterio=1&dataInclusaoInicial=2025-01-01",
    ] {
        assert_eq!(api.get(ok).await.0, StatusCode::OK, "{ok}");
    }
}

#[tokio::test]
async fn several_modules_vendas_not_first_and_real_valor_map() {
    let (sb, api) = api().await;
    let (_, body) = api.get("/situacoes/modulos").await;
    let modules = body["data"].as_array().expect("modules");
    assert!(modules.len() >= 3);
    assert_ne!(
        modules[0]["id"], MODULO_VENDAS,
        "clients must not take data[0]"
    );
    assert!(modules
        .iter()
        .any(|m| m["id"] == 98309 && m["nome"] == "Compras"));
    assert!(modules
        .iter()
        .any(|m| m["id"] == MODULO_VENDAS && m["nome"] == "Vendas"));
    let (status, compras) = api.get("/situacoes/modulos/98309").await;
    assert_eq!(status, StatusCode::OK);
    let compras_ids = ids(&compras);
    assert!(!compras_ids.contains(&9), "Compras has its own ids");

    let contato = api.contato("Ana", CPF_A).await;
    let pix = forma(&api, 17).await;
    let id = api
        .post("/pedidos/vendas", &simple_sale(contato, "V-1", pix, 10.0))
        .await
        .1["data"]["id"]
        .as_i64()
        .expect("id");
    let herdada = sb
        .add_situacao_herdada("default", "Aguardando retirada", 6)
        .expect("inherits Em aberto");
    assert!(sb.add_situacao_herdada("default", "x", 424242).is_none());
    let custom = sb.add_situacao("default", "Aguardando NF-e");
    for (situacao, valor) in [
        (6, 0),
        (9, 1),
        (12, 2),
        (15, 3),
        (18, 4),
        (21, 10),
        (24, 11),
        (herdada, 0),
        (custom, 3),
    ] {
        let path = format!("/pedidos/vendas/{id}/situacoes/{situacao}");
        assert_eq!(api.patch(&path, None).await.0, StatusCode::NO_CONTENT);
        assert_eq!(
            api.get(&format!("/pedidos/vendas/{id}")).await.1["data"]["situacao"],
            json!({"id": situacao, "valor": valor}),
            "situação {situacao}"
        );
    }
    let (_, vendas) = api
        .get(&format!("/situacoes/modulos/{MODULO_VENDAS}"))
        .await;
    let h = vendas["data"]
        .as_array()
        .expect("list")
        .iter()
        .find(|s| s["id"] == herdada)
        .cloned()
        .expect("listed");
    assert_eq!(h["idHerdado"], 6);
}

#[tokio::test]
async fn answers_are_php_encoded_and_404_is_the_recorded_body() {
    let (_sb, api) = api().await;
    let (_, body) = api
        .post(
            "/contatos",
            &json!({"nome": "Ração/Gato Ltda", "numeroDocumento": CPF_A}),
        )
        .await;
    let id = body["data"]["id"].as_i64().expect("id");
    let (status, raw) = raw_get(&api, &format!("/contatos/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(raw.contains(r#""Ra\u00e7\u00e3o\/Gato Ltda""#), "{raw}");
    assert!(raw.is_ascii());
    let parsed: Value = serde_json::from_str(&raw).expect("still JSON");
    assert_eq!(parsed["data"]["nome"], "Ração/Gato Ltda");

    let (status, raw) = raw_get(&api, "/pedidos/vendas/99").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        raw,
        "{\n    \"error\": {\n        \"type\": \"RESOURCE_NOT_FOUND\",\n        \"message\": \"N\\u00e3o encontrado.\",\n        \"description\": \"O recurso requisitado n\\u00e3o foi encontrado. Verifique se o endpoint solicitado est\\u00e1 correto ou se o ID informado realmente existe no sistema.\"\n    }\n}"
    );
    // Error bodies are escaped too.
    let (_, raw) = raw_get(&api, "/contatos?criterio=x").await;
    assert!(raw.contains("par\\u00e2metro"), "{raw}");
}

#[tokio::test]
async fn empresa_dados_basicos_is_stable_per_account() {
    let sb = start(unthrottled()).await;
    let a = login(&sb, "shop-a").await;
    let b = login(&sb, "shop-b").await;
    let (status, body) = a.get("/empresas/me/dados-basicos").await;
    assert_eq!(status, StatusCode::OK);
    let d = &body["data"];
    let id = d["id"].as_str().expect("id is a string");
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|c| c.is_ascii_hexdigit()));
    for key in ["nome", "cnpj", "email", "dataContrato"] {
        assert!(d[key].as_str().is_some_and(|v| !v.is_empty()), "{key}");
    }
    assert!(d["cnpj"].as_str().is_some_and(|c| c.contains('/')));
    assert_eq!(a.get("/empresas/me/dados-basicos").await.1, body);
    assert_eq!(sb.empresa("shop-a"), Some(d.clone()));
    let other = b.get("/empresas/me/dados-basicos").await.1;
    assert_ne!(other["data"]["id"], d["id"]);
    assert!(sb.empresa("nobody").is_none());
}
