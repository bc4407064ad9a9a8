//! Contatos, pedidos de venda, situações and NF-e against the sandbox over real HTTP.

mod sandbox_support;

use bling_ledger::sandbox::{AccountConfig, SandboxConfig, SituacaoIds, MODULO_VENDAS};
use reqwest::StatusCode;
use sandbox_support::*;
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
    assert_eq!(c["numeroDocumento"], CPF_A, "punctuation stripped");
    assert_eq!(c["situacao"], "A");
    assert_eq!(c["endereco"]["geral"]["cep"], "01310100");
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
    for e in [
        "nome",
        "numeroDocumento",
        "email",
        "endereco.geral.cep",
        "endereco.geral.uf",
    ] {
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
    assert_eq!(cpf["code"], 49);
    assert_eq!(cpf["msg"], "O CPF informado é inválido");
    assert_eq!(cpf["namespace"], "");
    assert_eq!(cpf["collection"], json!([]));

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
        CNPJ_ALNUM
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
    assert_eq!(ids(&body), created);
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
        vec![created[0], created[2]]
    );
    assert_eq!(
        ids(&api.get("/contatos?telefone=2133330002").await.1),
        vec![created[1]]
    );
    let q = format!(
        "/contatos?idsContatos[]={}&idsContatos[]={}",
        created[0], created[2]
    );
    assert_eq!(ids(&api.get(&q).await.1), vec![created[0], created[2]]);
    assert_eq!(
        ids(&api.get("/contatos?pagina=2&limite=2").await.1),
        vec![created[2]]
    );
    assert_eq!(
        ids(&api.get("/contatos?pagina=3&limite=2").await.1),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids(&api
            .get("/contatos?dataInclusaoInicial=2000-01-01&dataInclusaoFinal=2999-12-31")
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

    // criterio: 1 all but excluded, 2 ativos, 3 inativos, 4 excluídos.
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
        vec![created[1], created[2]]
    );
    assert_eq!(
        ids(&api.get("/contatos?criterio=2").await.1),
        vec![created[2]]
    );
    assert_eq!(
        ids(&api.get("/contatos?criterio=3").await.1),
        vec![created[1]]
    );
    assert_eq!(
        ids(&api.get("/contatos?criterio=4").await.1),
        vec![created[0]]
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

fn pedido(contato: i64, numero_loja: &str) -> Value {
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
        "parcelas": [{"dataVencimento": "2025-04-10", "valor": 290.75, "formaPagamento": {"id": 1}}]
    })
}

#[tokio::test]
async fn pedidos_create_get_update_delete_with_totals() {
    let (sb, api) = api().await;
    let contato = api.contato("Ana", CPF_A).await;
    let (status, body) = api.post("/pedidos/vendas", &pedido(contato, "INV-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["alertas"], json!([]));
    let id = body["data"]["id"].as_i64().expect("id");

    let (status, body) = api.get(&format!("/pedidos/vendas/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let p = &body["data"];
    // 2 × 149.90 − 9.80 + 1.5 × 0.10 = 290.15 (0.15 exactly, no float drift)
    assert_eq!(p["totalProdutos"], 290.15);
    // 290.15 − 10% (29.02) + 2.50 + 15.90 frete = 279.53
    assert_eq!(p["total"], 279.53);
    assert_eq!(p["numero"], 1);
    assert_eq!(p["numeroLoja"], "INV-1");
    assert_eq!(
        p["contato"],
        json!({"id": contato, "nome": "Ana", "tipoPessoa": "F", "numeroDocumento": CPF_A})
    );
    assert_eq!(p["situacao"]["id"], 6, "new orders are Em aberto");
    assert_eq!(p["itens"][1]["quantidade"], 1.5);
    assert!(p["itens"][0]["id"].as_i64().is_some_and(|i| i > 0));
    assert_eq!(p["loja"]["id"], 203);

    let second = api
        .post("/pedidos/vendas", &pedido(contato, "INV-2"))
        .await
        .1["data"]["id"]
        .as_i64()
        .expect("id");
    assert_eq!(
        api.get(&format!("/pedidos/vendas/{second}")).await.1["data"]["numero"],
        2,
        "numero auto-assigned"
    );

    // PUT replaces the order: one item now, no discount.
    let replacement = json!({"numeroLoja": "INV-1", "contato": {"id": contato},
        "itens": [{"descricao": "Coleira", "quantidade": 3, "valor": 19.99}]});
    assert_eq!(
        api.put(&format!("/pedidos/vendas/{id}"), &replacement)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let p = api.get(&format!("/pedidos/vendas/{id}")).await.1["data"].clone();
    assert_eq!(
        (p["totalProdutos"].as_f64(), p["total"].as_f64()),
        (Some(59.97), Some(59.97))
    );
    assert_eq!(p["numero"], 1, "numero kept");
    assert_eq!(p["parcelas"], json!([]));

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
    assert_eq!(error_elements(&body), vec!["contato.id"]);

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
    assert_eq!(collection, vec![(1, "quantidade"), (2, "valor")]);
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
    let mut ids_ = Vec::new();
    for (contato, loja, data) in [
        (ana, "INV-1", "2025-01-05"),
        (bruno, "INV-2", "2025-02-05"),
        (ana, "INV-3", "2025-03-05"),
    ] {
        let mut body = pedido(contato, loja);
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
    assert_eq!(ids(&body), ids_);
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
        vec![ids_[0], ids_[2]]
    );
    assert_eq!(
        ids(&api
            .get("/pedidos/vendas?numerosLojas[]=INV-3&numerosLojas[]=INV-1")
            .await
            .1),
        vec![ids_[0], ids_[2]]
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
    let id = api
        .post("/pedidos/vendas", &pedido(contato, "INV-9"))
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
    assert_eq!(n["valorNota"], 279.53);
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
    let pid = api.post("/pedidos/vendas", &pedido(anon, "INV-10")).await.1["data"]["id"]
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
    let id = odd.post("/pedidos/vendas", &pedido(contato, "X")).await.1["data"]["id"]
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
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
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
    assert_eq!(body["error"]["fields"][0]["element"], "endereco.geral.cep");
    assert_eq!(body["error"]["fields"][0]["code"], 55);
}
