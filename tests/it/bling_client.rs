//! The typed Bling client against the sandbox over real HTTP: CRUD with field and money
//! round trips, look-ups, situação discovery, NF-e, error classification, retries, 429s,
//! dropped connections, token renewal and revocation, and the client's own limits.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aggregates::connection::RevocationEvidence;
use aggregates::ids::TenantId;
use aggregates::money::Centavos;
use aggregates::sync::{BlingCall, FailureCause};
use bling_ledger::bling::{
    AccessTokens, AuthFailure, BlingClient, BlingError, CallOutcome, ClientConfig, Contato,
    DadosAdicionais, Desconto, Endereco, Enderecos, Financeiro, IdRef, ItemPedido, Operation,
    Parcela, PedidoContato, PedidoVenda, RetryPolicy, StillWanted, IE_NAO_CONTRIBUINTE,
    NFE_PENDENTE, PESSOA_FISICA,
};
use bling_ledger::sandbox::{
    AccountConfig, CallRecord, FaultConfig, FaultRule, Sandbox, SandboxConfig, SituacaoIds,
    MODULO_VENDAS,
};
use chrono::NaiveDate;

// ---------------------------------------------------------------------------------------------
// A stand-in for the OAuth module: tokens from the sandbox, refreshed at its real token
// endpoint (HTTP Basic client credentials, rotating refresh token). It never renews ahead of
// expiry, so expired tokens reach the client's 401 path.

#[derive(Default)]
struct SandboxTokens {
    http: reqwest::Client,
    token_url: String,
    /// account → (access, refresh)
    tokens: Mutex<HashMap<String, (String, String)>>,
    revoked: Mutex<HashSet<String>>,
    /// Every token ever handed out or received, to prove none leaks.
    secrets: Mutex<Vec<String>>,
    renewals: AtomicUsize,
    reports: Mutex<Vec<(String, RevocationEvidence)>>,
    /// When set, renewal "succeeds" with this token instead of calling the token endpoint.
    renew_with: Mutex<Option<String>>,
    /// When each tenant's revocation was reported.
    revoked_at: Mutex<HashMap<String, Instant>>,
}

impl SandboxTokens {
    fn new(sb: &Sandbox) -> Arc<SandboxTokens> {
        Arc::new(SandboxTokens {
            token_url: sb.token_url(),
            ..SandboxTokens::default()
        })
    }

    fn connect(&self, sb: &Sandbox, account: &str) {
        let set = sb
            .grant_tokens(SandboxConfig::DEMO_CLIENT_ID, account)
            .expect("tokens granted");
        self.remember(&set.access_token, &set.refresh_token);
        self.tokens.lock().unwrap().insert(
            account.to_string(),
            (set.access_token.clone(), set.refresh_token.clone()),
        );
    }

    fn remember(&self, access: &str, refresh: &str) {
        let mut s = self.secrets.lock().unwrap();
        s.push(access.to_string());
        s.push(refresh.to_string());
    }

    fn secrets(&self) -> Vec<String> {
        self.secrets.lock().unwrap().clone()
    }

    fn reports(&self) -> Vec<(String, RevocationEvidence)> {
        self.reports.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl AccessTokens for SandboxTokens {
    async fn access_token(&self, tenant: &TenantId) -> Result<String, AuthFailure> {
        if self.revoked.lock().unwrap().contains(tenant.as_str()) {
            return Err(AuthFailure::Revoked);
        }
        self.tokens
            .lock()
            .unwrap()
            .get(tenant.as_str())
            .map(|(access, _)| access.clone())
            .ok_or(AuthFailure::NotConnected)
    }

    async fn renew_after_unauthorized(
        &self,
        tenant: &TenantId,
        refused: &str,
    ) -> Result<String, AuthFailure> {
        self.renewals.fetch_add(1, Ordering::SeqCst);
        if let Some(fake) = self.renew_with.lock().unwrap().clone() {
            return Ok(fake);
        }
        let (access, refresh) = self
            .tokens
            .lock()
            .unwrap()
            .get(tenant.as_str())
            .cloned()
            .ok_or(AuthFailure::NotConnected)?;
        if access != refused {
            return Ok(access); // someone renewed already
        }
        let resp = self
            .http
            .post(&self.token_url)
            .basic_auth(
                SandboxConfig::DEMO_CLIENT_ID,
                Some(SandboxConfig::DEMO_CLIENT_SECRET),
            )
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
            ])
            .send()
            .await
            .map_err(|e| AuthFailure::Transient(e.to_string()))?;
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        match status {
            200 => {
                let access = body["access_token"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let refresh = body["refresh_token"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                self.remember(&access, &refresh);
                self.tokens
                    .lock()
                    .unwrap()
                    .insert(tenant.to_string(), (access.clone(), refresh));
                Ok(access)
            }
            400 if body["error"]["type"] == "invalid_grant" => Err(AuthFailure::Revoked),
            _ => Err(AuthFailure::Transient(format!("token endpoint {status}"))),
        }
    }

    async fn report_revoked(&self, tenant: &TenantId, evidence: RevocationEvidence) {
        self.revoked.lock().unwrap().insert(tenant.to_string());
        self.revoked_at
            .lock()
            .unwrap()
            .insert(tenant.to_string(), Instant::now());
        self.reports
            .lock()
            .unwrap()
            .push((tenant.to_string(), evidence));
    }

    fn revoked_after(&self, tenant: &TenantId, since: Instant) -> bool {
        self.revoked_at
            .lock()
            .unwrap()
            .get(tenant.as_str())
            .is_some_and(|at| *at >= since)
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

async fn start(config: SandboxConfig) -> Sandbox {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    Sandbox::start(config, listener)
        .await
        .expect("sandbox starts")
}

/// Bling's behaviour with the per-second limit off, so functional tests are not throttled.
fn unthrottled() -> SandboxConfig {
    SandboxConfig {
        rate_limit_per_sec: 0,
        ..SandboxConfig::default()
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
    }
}

/// No client-side limits, tiny retry delays.
fn config() -> ClientConfig {
    ClientConfig {
        timeout: Duration::from_secs(5),
        rate_limit_per_sec: 0,
        daily_quota: 0,
        egress_per_sec: 0,
        retry: fast_retry(),
    }
}

struct Setup {
    sb: Sandbox,
    tokens: Arc<SandboxTokens>,
    client: BlingClient,
    tenant: TenantId,
}

/// A sandbox, a connected account `account`, and a client.
async fn setup(sandbox: SandboxConfig, account: &str, client: ClientConfig) -> Setup {
    let sb = start(sandbox).await;
    let tokens = SandboxTokens::new(&sb);
    tokens.connect(&sb, account);
    let client = BlingClient::new(&sb.base_url(), tokens.clone(), client).expect("client");
    Setup {
        sb,
        tokens,
        client,
        tenant: TenantId::parse(account).expect("tenant"),
    }
}

/// API calls in the sandbox's log (OAuth calls left out).
fn api_log(sb: &Sandbox) -> Vec<CallRecord> {
    sb.call_log()
        .into_iter()
        .filter(|c| !c.path.contains("/oauth/"))
        .collect()
}

fn statuses(calls: &[BlingCall]) -> Vec<Option<u16>> {
    calls.iter().map(|c| c.status).collect()
}

fn ok<T: std::fmt::Debug>(outcome: CallOutcome<T>, what: &str) -> T {
    match outcome.result {
        Ok(v) => v,
        Err(e) => panic!("{what} failed: {e} ({e:?}); calls: {:?}", outcome.calls),
    }
}

fn err<T: std::fmt::Debug>(outcome: &CallOutcome<T>) -> &BlingError {
    match &outcome.result {
        Err(e) => e,
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

/// No secret of `tokens` in the calls, nor in the error's Display and Debug.
fn assert_no_secret<T: std::fmt::Debug>(tokens: &SandboxTokens, outcome: &CallOutcome<T>) {
    let mut text = format!("{:?}", outcome.calls);
    if let Err(e) = &outcome.result {
        text.push_str(&format!(
            "{e} {e:?} {:?}",
            e.to_failure_cause(Operation::Pedido)
        ));
    }
    for secret in tokens.secrets() {
        assert!(!text.contains(&secret), "a token leaked into {text}");
    }
}

const CPF: &str = "52998224725";
const CPF_2: &str = "11144477735";

fn endereco(rua: &str) -> Endereco {
    Endereco {
        endereco: Some(rua.into()),
        cep: Some("01310100".into()),
        bairro: Some("Bela Vista".into()),
        municipio: Some("São Paulo".into()),
        uf: Some("SP".into()),
        numero: Some("1000".into()),
        complemento: Some("ap 12".into()),
    }
}

fn contato(nome: &str, cpf: &str) -> Contato {
    Contato {
        nome: nome.into(),
        codigo: Some("CLI-1".into()),
        situacao: Some("A".into()),
        numero_documento: Some(cpf.into()),
        telefone: Some("1133334444".into()),
        celular: Some("11999998888".into()),
        fantasia: Some("Tutor da Mel".into()),
        tipo: Some(PESSOA_FISICA.into()),
        indicador_ie: Some(IE_NAO_CONTRIBUINTE),
        email: Some("ana@example.com".into()),
        endereco: Some(Enderecos {
            geral: Some(endereco("Av. Paulista")),
            cobranca: Some(endereco("Rua Augusta")),
        }),
        dados_adicionais: Some(DadosAdicionais {
            data_nascimento: NaiveDate::from_ymd_opt(1990, 5, 17),
            sexo: Some("F".into()),
            naturalidade: Some("Campinas".into()),
        }),
        financeiro: Some(Financeiro {
            limite_credito: Some(Centavos(8050)),
            ..Financeiro::default()
        }),
        ..Contato::default()
    }
}

/// The account's Pix method: payment-method ids differ per account ([OAS]).
fn pix(s: &Setup) -> i64 {
    s.sb.formas_pagamento(s.tenant.as_str())
        .iter()
        .find(|f| f["tipoPagamento"] == 17)
        .and_then(|f| f["id"].as_i64())
        .expect("the account has a Pix method")
}

/// A sale of 2 × R$ 80,50 with 10 % off the line (a percentage, as Bling reads it) and R$ 0,50
/// off the order: 161,00 − 16,10 − 0,50 = R$ 144,40 in one Pix parcela that adds up to it.
fn pedido(s: &Setup, id_contato: i64, numero_loja: &str) -> PedidoVenda {
    PedidoVenda {
        numero_loja: Some(numero_loja.into()),
        data: NaiveDate::from_ymd_opt(2025, 3, 10),
        data_prevista: NaiveDate::from_ymd_opt(2025, 3, 12),
        contato: PedidoContato::id(id_contato),
        observacoes: Some("Banho e tosa".into()),
        observacoes_internas: Some(format!("invoice {numero_loja}")),
        desconto: Some(Desconto::reais(Centavos(50))),
        itens: vec![ItemPedido {
            codigo: Some("RACAO-15".into()),
            unidade: Some("UN".into()),
            quantidade: 2.0,
            desconto: Some(10.0),
            valor: Centavos(8050),
            descricao: Some("Ração 15 kg".into()),
            ..ItemPedido::default()
        }],
        parcelas: vec![Parcela {
            data_vencimento: NaiveDate::from_ymd_opt(2025, 4, 10),
            valor: Centavos(14440),
            observacoes: Some("Pix".into()),
            forma_pagamento: Some(IdRef::new(pix(s))),
            ..Parcela::default()
        }],
        ..PedidoVenda::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Resources

#[tokio::test]
async fn contatos_round_trip_find_and_full_replacement() {
    let s = setup(unthrottled(), "shop-contatos", config()).await;
    let (c, t) = (&s.client, &s.tenant);

    let created = c.create_contato(t, &contato("Ana Souza", CPF)).await;
    assert_eq!(statuses(&created.calls), [Some(201)]);
    assert_eq!(created.calls[0].method, "POST");
    assert_eq!(created.calls[0].path, "/contatos");
    let id = ok(created, "create").id;

    let got = ok(c.get_contato(t, id).await, "get");
    let mut expected = contato("Ana Souza", CPF);
    expected.id = Some(id);
    // Bling reads documents, phones and CEPs back formatted ([OAS], [VCR], [U1]).
    expected.numero_documento = Some("529.982.247-25".into());
    expected.telefone = Some("(11) 3333-4444".into());
    expected.celular = Some("(11) 99999-8888".into());
    if let Some(enderecos) = expected.endereco.as_mut() {
        for e in [&mut enderecos.geral, &mut enderecos.cobranca]
            .into_iter()
            .flatten()
        {
            e.cep = Some("01310-100".into());
        }
    }
    // Bling answers every field; those we did not set come back empty.
    expected.ie = Some(String::new());
    expected.rg = Some(String::new());
    expected.orgao_emissor = Some(String::new());
    expected.vendedor = Some(IdRef::new(0));
    expected.pais = got.pais.clone();
    expected.financeiro = Some(Financeiro {
        limite_credito: Some(Centavos(8050)),
        condicao_pagamento: Some(String::new()),
        categoria: Some(IdRef::new(0)),
    });
    assert_eq!(got, expected);
    assert_eq!(
        s.sb.contatos("shop-contatos")[0]["financeiro"]["limiteCredito"],
        serde_json::json!(80.5),
        "80.5 reais on the wire"
    );

    // Look-up with punctuation: the client sends digits only.
    let found = c.find_contatos_by_documento(t, "529.982.247-25").await;
    assert_eq!(
        found.calls[0].path,
        format!("/contatos?numeroDocumento={CPF}&criterio=1&pagina=1&limite=100")
    );
    let found = ok(found, "find");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, id);
    assert_eq!(found[0].nome, "Ana Souza");
    assert_eq!(found[0].numero_documento, "529.982.247-25");
    assert!(ok(c.find_contatos_by_documento(t, CPF_2).await, "find none").is_empty());

    // PUT replaces the whole contato: what is left out is cleared.
    let mut changed = contato("Ana Souza Lima", CPF);
    changed.telefone = None;
    changed.endereco = None;
    let updated = c.update_contato(t, id, &changed).await;
    assert_eq!(statuses(&updated.calls), [Some(204)]);
    assert_eq!(updated.calls[0].path, format!("/contatos/{id}"));
    ok(updated, "update");
    let got = ok(c.get_contato(t, id).await, "get after update");
    assert_eq!(got.nome, "Ana Souza Lima");
    assert_eq!(got.telefone.as_deref(), Some(""));
    assert_eq!(
        got.endereco.and_then(|e| e.geral).and_then(|g| g.endereco),
        Some(String::new())
    );
    assert_eq!(got.celular.as_deref(), Some("(11) 99999-8888"));
}

#[tokio::test]
async fn pedidos_round_trip_money_and_find_by_numero_loja() {
    let s = setup(unthrottled(), "shop-pedidos", config()).await;
    let (c, t) = (&s.client, &s.tenant);
    let id_contato = ok(c.create_contato(t, &contato("Ana", CPF)).await, "contato").id;

    let created = ok(
        c.create_pedido(t, &pedido(&s, id_contato, "INV-1")).await,
        "create",
    );
    assert!(created.alertas.is_empty());
    // A numeroLoja that needs URL encoding, and a decoy that must not match.
    let odd = "INV 2&x=[1]/ç";
    let id_odd = ok(
        c.create_pedido(t, &pedido(&s, id_contato, odd)).await,
        "odd",
    )
    .id;
    ok(
        c.create_pedido(t, &pedido(&s, id_contato, "INV 2")).await,
        "decoy",
    );

    let got = ok(c.get_pedido(t, created.id).await, "get");
    assert_eq!(got.id, Some(created.id));
    assert_eq!(got.numero_loja.as_deref(), Some("INV-1"));
    assert_eq!(got.data, NaiveDate::from_ymd_opt(2025, 3, 10));
    assert_eq!(got.data_saida, None);
    assert_eq!(got.data_prevista, NaiveDate::from_ymd_opt(2025, 3, 12));
    assert_eq!(got.contato.id, id_contato);
    assert_eq!(got.contato.nome.as_deref(), Some("Ana"));
    assert_eq!(got.observacoes.as_deref(), Some("Banho e tosa"));
    assert_eq!(got.observacoes_internas.as_deref(), Some("invoice INV-1"));
    assert_eq!(got.desconto, Some(Desconto::reais(Centavos(50))));
    let item = &got.itens[0];
    assert!(item.id.is_some());
    assert_eq!(item.codigo.as_deref(), Some("RACAO-15"));
    assert_eq!(item.unidade.as_deref(), Some("UN"));
    assert_eq!(item.quantidade, 2.0);
    assert_eq!(item.valor, Centavos(8050));
    assert_eq!(item.desconto, Some(10.0));
    assert_eq!(item.descricao.as_deref(), Some("Ração 15 kg"));
    let parcela = &got.parcelas[0];
    assert_eq!(parcela.valor, Centavos(14440));
    assert_eq!(
        parcela.data_vencimento,
        NaiveDate::from_ymd_opt(2025, 4, 10)
    );
    assert_eq!(parcela.observacoes.as_deref(), Some("Pix"));
    assert_eq!(parcela.forma_pagamento, Some(IdRef::new(pix(&s))));
    // 2 × 80.50 less 10 % = 144.90 of products; − 0.50 of order discount.
    assert_eq!(got.total_produtos, Some(Centavos(14490)));
    assert_eq!(got.total, Some(Centavos(14440)));
    assert_eq!(got.nota_fiscal, Some(IdRef::new(0)));

    let found = c.find_pedidos_by_numero_loja(t, "INV-1").await;
    assert_eq!(
        found.calls[0].path,
        "/pedidos/vendas?numerosLojas%5B%5D=INV-1&pagina=1&limite=100"
    );
    let found = ok(found, "find");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, created.id);
    assert_eq!(found[0].total, Centavos(14440));
    assert_eq!(found[0].total_produtos, Centavos(14490));
    assert_eq!(found[0].contato.id, id_contato);
    assert_eq!(found[0].situacao.id, SituacaoIds::default().em_aberto);
    let found_odd = ok(c.find_pedidos_by_numero_loja(t, odd).await, "find odd");
    assert_eq!(found_odd.iter().map(|p| p.id).collect::<Vec<_>>(), [id_odd]);
    assert!(ok(c.find_pedidos_by_numero_loja(t, "INV-9").await, "none").is_empty());

    // PUT with the line's id keeps the line; the number is kept.
    let mut changed = got.clone();
    changed.observacoes = Some("Só banho".into());
    changed.itens[0].quantidade = 1.0;
    // The parcelas follow the new total (80.50 less 10 %, less 0.50) and go without their old
    // ids, as Bling wants on a PUT.
    changed.parcelas[0].valor = Centavos(7245 - 50);
    changed.parcelas[0].id = None;
    let updated = c.update_pedido(t, created.id, &changed).await;
    // Bling answers a PUT of an order with 200 and its id ([OAS]).
    assert_eq!(statuses(&updated.calls), [Some(200)]);
    assert_eq!(ok(updated, "update").id, created.id);
    let again = ok(c.get_pedido(t, created.id).await, "get again");
    assert_eq!(again.observacoes.as_deref(), Some("Só banho"));
    assert_eq!(again.itens[0].id, item.id);
    assert_eq!(again.numero, got.numero);
    assert_eq!(again.total, Some(Centavos(7245 - 50)));

    // The same PUT again changes nothing: Bling's duplicate-sale guard, code 3.
    let mut same = again.clone();
    for p in &mut same.parcelas {
        p.id = None;
    }
    let noop = c.update_pedido(t, created.id, &same).await;
    assert_eq!(statuses(&noop.calls), [Some(400)]);
    assert!(err(&noop).is_duplicate_sale(), "{:?}", noop.result);
}

#[tokio::test]
async fn situacoes_are_discovered_and_changed() {
    let ids = SituacaoIds {
        em_aberto: 1006,
        atendido: 1009,
        cancelado: 1012,
        em_andamento: 1015,
        venda_agenciada: 1018,
        em_digitacao: 1021,
        verificado: 1024,
    };
    let sandbox = SandboxConfig {
        accounts: vec![AccountConfig {
            name: "shop-ids".into(),
            situacao_ids: Some(ids),
            custom_situacoes: vec!["Aguardando NF-e".into()],
            faults: None,
        }],
        ..unthrottled()
    };
    let s = setup(sandbox, "shop-ids", config()).await;
    let (c, t) = (&s.client, &s.tenant);
    let separado = s.sb.add_situacao("shop-ids", "Separado para entrega");

    let outcome = c.sales_order_situacoes(t).await;
    let paths: Vec<_> = outcome.calls.iter().map(|c| c.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/situacoes/modulos".to_string(),
            format!("/situacoes/modulos/{MODULO_VENDAS}")
        ]
    );
    let found = ok(outcome, "discovery");
    assert_eq!(found.modulo.id, MODULO_VENDAS);
    assert_eq!(found.id_of("Em aberto"), Some(1006));
    assert_eq!(found.id_of("atendido"), Some(1009));
    assert_eq!(found.id_of("Em digitacao"), Some(1021));
    let aguardando = found.by_nome("Aguardando NF-e").expect("custom situação");
    assert_eq!(aguardando.id_herdado, 1015);
    assert_eq!(found.id_of("Separado para entrega"), Some(separado));
    assert_eq!(found.situacoes.len(), 9);

    let id_contato = ok(c.create_contato(t, &contato("Ana", CPF)).await, "contato").id;
    let id = ok(
        c.create_pedido(t, &pedido(&s, id_contato, "INV-7")).await,
        "pedido",
    )
    .id;
    for target in [aguardando.id, 1009] {
        let changed = c.change_situacao(t, id, target).await;
        assert_eq!(changed.calls[0].method, "PATCH");
        assert_eq!(
            changed.calls[0].path,
            format!("/pedidos/vendas/{id}/situacoes/{target}")
        );
        ok(changed, "change");
        let got = ok(c.get_pedido(t, id).await, "get");
        assert_eq!(got.situacao.map(|s| s.id), Some(target));
    }
    // The default id 9 does not exist on this account.
    let wrong = c.change_situacao(t, id, 9).await;
    assert!(matches!(err(&wrong), BlingError::Validation { .. }));
}

#[tokio::test]
async fn gerar_nfe_and_read_it() {
    let s = setup(unthrottled(), "shop-nfe", config()).await;
    let (c, t) = (&s.client, &s.tenant);
    let id_contato = ok(c.create_contato(t, &contato("Ana", CPF)).await, "contato").id;
    let id = ok(
        c.create_pedido(t, &pedido(&s, id_contato, "INV-3")).await,
        "pedido",
    )
    .id;

    let generated = c.gerar_nfe(t, id).await;
    assert_eq!(statuses(&generated.calls), [Some(201)]);
    assert_eq!(
        generated.calls[0].path,
        format!("/pedidos/vendas/{id}/gerar-nfe")
    );
    let id_nfe = ok(generated, "gerar-nfe");
    let nfe = ok(c.get_nfe(t, id_nfe).await, "get nfe");
    assert_eq!(nfe.id, id_nfe);
    assert_eq!(nfe.situacao, NFE_PENDENTE);
    assert_eq!(nfe.valor_nota, Some(Centavos(14440)));
    assert_eq!(nfe.contato.numero_documento, CPF);
    assert_eq!(nfe.numero_pedido_loja, "INV-3");
    assert_eq!(nfe.numero, "000001");
    let pedido = ok(c.get_pedido(t, id).await, "pedido");
    assert_eq!(pedido.nota_fiscal, Some(IdRef::new(id_nfe)));

    // A second NF-e for the order is refused, and a refused write is not retried.
    let again = c.gerar_nfe(t, id).await;
    assert_eq!(statuses(&again.calls), [Some(400)]);
    assert!(matches!(err(&again), BlingError::Validation { .. }));
}

// ---------------------------------------------------------------------------------------------
// Errors

#[tokio::test]
async fn validation_error_is_a_divergent_customer_record() {
    let s = setup(unthrottled(), "shop-invalid", config()).await;
    let outcome = s
        .client
        .create_contato(&s.tenant, &contato("Ana", "12345678900"))
        .await;
    assert_eq!(statuses(&outcome.calls), [Some(400)]);
    assert_eq!(
        outcome.calls[0].error_type.as_deref(),
        Some("VALIDATION_ERROR")
    );
    let e = err(&outcome);
    let BlingError::Validation { body } = e else {
        panic!("not a validation error: {e:?}");
    };
    assert_eq!(body.error_type, "VALIDATION_ERROR");
    assert_eq!(body.fields[0].element, "numeroDocumento");
    // No public source gives Bling's code for an invalid CPF: the sandbox's own is 951.
    assert_eq!(body.fields[0].code, Some(951));
    assert!(!e.is_transient());
    match e.to_failure_cause(Operation::Contato) {
        FailureCause::DivergentCustomerRecord { bling_fields, .. } => {
            assert_eq!(bling_fields.len(), 1);
            assert_eq!(bling_fields[0].element, "numeroDocumento");
            assert_eq!(bling_fields[0].code, Some(951));
            assert_eq!(bling_fields[0].msg, "O CPF informado é inválido");
        }
        other => panic!("wrong cause {other:?}"),
    }
    assert!(s.sb.contatos("shop-invalid").is_empty());

    // Errors inside items come out with their index.
    let id_contato = ok(
        s.client
            .create_contato(&s.tenant, &contato("Ana", CPF))
            .await,
        "contato",
    )
    .id;
    let mut bad = pedido(&s, id_contato, "INV-1");
    bad.itens[0].quantidade = 0.0;
    let outcome = s.client.create_pedido(&s.tenant, &bad).await;
    // A refused order is the order's problem, not the customer record's.
    let FailureCause::OrderRefused { bling_fields, .. } =
        err(&outcome).to_failure_cause(Operation::Pedido)
    else {
        panic!("wrong cause");
    };
    // Bling counts collection entries from 1 ([OAS] example; the sandbox follows it).
    assert!(bling_fields
        .iter()
        .any(|f| f.element == "itens[1].quantidade"));
}

#[tokio::test]
async fn not_found_is_rejected_without_retry() {
    let s = setup(unthrottled(), "shop-404", config()).await;
    let outcome = s.client.get_contato(&s.tenant, 15_999_999_999).await;
    assert_eq!(statuses(&outcome.calls), [Some(404)]);
    let e = err(&outcome);
    match e {
        BlingError::Rejected { status: 404, body } => {
            assert_eq!(body.error_type, "RESOURCE_NOT_FOUND")
        }
        other => panic!("wrong error {other:?}"),
    }
    match e.to_failure_cause(Operation::Contato) {
        FailureCause::BlingRejected {
            status, error_type, ..
        } => {
            assert_eq!(status, 404);
            assert_eq!(error_type, "RESOURCE_NOT_FOUND");
        }
        other => panic!("wrong cause {other:?}"),
    }
    assert!(!e.is_transient());
    assert_eq!(api_log(&s.sb).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Limits and retries

#[tokio::test]
async fn a_429_is_retried_after_its_period_even_for_creates() {
    // Bling's limit low, the client's off: the sandbox answers 429 as Bling does, without
    // Retry-After, with "period":"second" in the body; the client waits a second by it.
    let sandbox = SandboxConfig {
        rate_limit_per_sec: 1,
        ..SandboxConfig::default()
    };
    let client = ClientConfig {
        retry: RetryPolicy {
            max_delay: Duration::from_secs(2),
            ..fast_retry()
        },
        ..config()
    };
    let s = setup(sandbox, "shop-429", client).await;
    ok(s.client.modulos(&s.tenant).await, "first call");
    let started = Instant::now();
    let created = s
        .client
        .create_contato(&s.tenant, &contato("Ana", CPF))
        .await;
    let elapsed = started.elapsed();
    assert_eq!(statuses(&created.calls), [Some(429), Some(201)]);
    assert_eq!(
        created.calls[0].error_type.as_deref(),
        Some("TOO_MANY_REQUESTS")
    );
    ok(created, "create after 429");
    assert!(elapsed >= Duration::from_millis(900), "waited {elapsed:?}");
    let log: Vec<_> = api_log(&s.sb).iter().map(|c| c.status).collect();
    assert_eq!(log, [Some(200), Some(429), Some(201)]);
    assert_eq!(
        s.sb.contatos("shop-429").len(),
        1,
        "refused write not applied"
    );

    // A wait beyond max_delay is handed to the caller instead of holding the worker.
    let impatient = BlingClient::new(
        &s.sb.base_url(),
        s.tokens.clone(),
        ClientConfig {
            retry: fast_retry(),
            ..config()
        },
    )
    .expect("client");
    let limited = impatient.modulos(&s.tenant).await;
    assert_eq!(statuses(&limited.calls), [Some(429)]);
    let e = err(&limited);
    assert!(matches!(
        e,
        BlingError::RateLimited {
            retry_after: Some(d),
            daily: false,
        } if *d == bling_ledger::bling::error::PER_SECOND_WAIT
    ));
    assert!(matches!(
        e.to_failure_cause(Operation::Contato),
        FailureCause::RateLimited { .. }
    ));
    assert!(e.is_transient());
}

#[tokio::test]
async fn bling_s_daily_429_stops_the_account_until_midnight_in_brasilia() {
    // The account's 120,000 a day are shared by every integration of the shop: when Bling says
    // the day is spent ("period":"day"), believe it over our own count.
    let sandbox = SandboxConfig {
        rate_limit_per_sec: 0,
        daily_quota: 1,
        ..SandboxConfig::default()
    };
    let s = setup(sandbox, "shop-day", config()).await;
    ok(s.client.modulos(&s.tenant).await, "the day's one call");
    let limited = s.client.modulos(&s.tenant).await;
    assert_eq!(statuses(&limited.calls), [Some(429)], "not retried");
    let e = err(&limited);
    let BlingError::RateLimited {
        retry_after: Some(wait),
        daily: true,
    } = e
    else {
        panic!("wrong error {e:?}");
    };
    assert!(*wait > Duration::from_secs(1) && *wait <= Duration::from_secs(24 * 3600));
    assert!(e.to_string().contains("for the day"), "{e}");
    let until = s
        .client
        .day_spent_until(&s.tenant)
        .expect("the day is spent");
    assert!(until > chrono::Utc::now());
    // No call leaves for the account any more today.
    let before = s.sb.call_log().len();
    let again = s.client.modulos(&s.tenant).await;
    assert!(again.calls.is_empty());
    assert_eq!(s.sb.call_log().len(), before);
    assert!(matches!(
        err(&again),
        BlingError::RateLimited { daily: true, .. }
    ));
    // Other accounts are not affected.
    let other = TenantId::parse("shop-day-2").unwrap();
    s.tokens.connect(&s.sb, "shop-day-2");
    ok(s.client.modulos(&other).await, "another account");
    assert!(s.client.day_spent_until(&other).is_none());
}

/// An account whose seeded fault sequence (seed 0, error_rate 0.5 on `/situacoes/modulos`) is
/// 500, 500, then success: the sandbox's faults are deterministic per seed and account name
/// (found by trying names; should the sandbox's generator change, pick another).
const FLAKY_ACCOUNT: &str = "flaky-28";

#[tokio::test]
async fn a_5xx_is_retried_until_success() {
    let s = setup(unthrottled(), FLAKY_ACCOUNT, config()).await;
    s.sb.set_faults(
        Some(FLAKY_ACCOUNT),
        FaultConfig::none()
            .with_rule(FaultRule::route("GET", "/situacoes/modulos").error_rate(0.5)),
    );
    let outcome = s.client.modulos(&s.tenant).await;
    let st = statuses(&outcome.calls);
    assert_eq!(st, [Some(500), Some(500), Some(200)]);
    assert_eq!(outcome.calls[0].error_type.as_deref(), Some("SERVER_ERROR"));
    let log: Vec<_> = api_log(&s.sb).iter().map(|c| c.status).collect();
    assert_eq!(log, st, "one sandbox call per reported attempt");
    // Bling lists several modules: the sales one is found by id, never as the first.
    assert!(ok(outcome, "modulos").iter().any(|m| m.id == MODULO_VENDAS));
}

#[tokio::test]
async fn persistent_5xx_gives_unavailable_after_max_attempts_and_creates_are_not_replayed() {
    let s = setup(unthrottled(), "shop-down", config()).await;
    s.sb.set_faults(
        Some("shop-down"),
        FaultConfig::none().with_rule(FaultRule::any().error_rate(1.0)),
    );
    let outcome = s.client.get_contato(&s.tenant, 1).await;
    assert_eq!(statuses(&outcome.calls), [Some(500); 3]);
    let e = err(&outcome);
    assert!(matches!(
        e,
        BlingError::Unavailable {
            status: Some(500),
            ..
        }
    ));
    assert!(e.is_transient());
    assert!(matches!(
        e.to_failure_cause(Operation::Contato),
        FailureCause::BlingUnavailable { .. }
    ));
    assert_eq!(api_log(&s.sb).len(), 3);

    // A create whose outcome is unknown is tried once: the engine looks up before retrying.
    let created = s
        .client
        .create_contato(&s.tenant, &contato("Ana", CPF))
        .await;
    assert_eq!(statuses(&created.calls), [Some(500)]);
    assert!(matches!(err(&created), BlingError::Unavailable { .. }));
    assert_eq!(api_log(&s.sb).len(), 4);
    assert!(s.tokens.reports().is_empty());
    assert_eq!(s.tokens.renewals.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn dropped_connections_are_unavailable_never_revoked() {
    let s = setup(unthrottled(), "shop-drop", config()).await;
    let (c, t) = (&s.client, &s.tenant);
    let id_contato = ok(c.create_contato(t, &contato("Ana", CPF)).await, "contato").id;
    s.sb.set_faults(
        Some("shop-drop"),
        FaultConfig::none()
            .with_rule(
                FaultRule::route("POST", "/pedidos/vendas")
                    .exact()
                    .apply_then_drop_rate(1.0),
            )
            .with_rule(FaultRule::route("GET", "/contatos").drop_rate(1.0)),
    );

    let read = c.get_contato(t, id_contato).await;
    assert_eq!(statuses(&read.calls), [None, None, None]);
    assert!(read
        .calls
        .iter()
        .all(|c| c.error_type.as_deref() == Some("transport")));
    let e = err(&read);
    assert!(
        matches!(e, BlingError::Unavailable { status: None, .. }),
        "{e:?}"
    );
    assert!(e.is_transient());

    // The order is stored, the answer lost: one attempt, then the engine's look-up finds it.
    let created = c.create_pedido(t, &pedido(&s, id_contato, "INV-5")).await;
    assert_eq!(statuses(&created.calls), [None]);
    assert!(matches!(
        err(&created),
        BlingError::Unavailable { status: None, .. }
    ));
    let found = ok(c.find_pedidos_by_numero_loja(t, "INV-5").await, "look-up");
    assert_eq!(found.len(), 1);

    assert!(s.tokens.reports().is_empty(), "a drop is not a revocation");
    assert_eq!(s.tokens.renewals.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_client_keeps_three_requests_per_second() {
    let client = ClientConfig {
        rate_limit_per_sec: 3,
        ..config()
    };
    let s = setup(unthrottled(), "shop-pace", client).await;
    let started = Instant::now();
    for _ in 0..9 {
        ok(s.client.modulos(&s.tenant).await, "modulos");
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(2), "9 calls in {elapsed:?}");
    assert_eq!(api_log(&s.sb).len(), 9);
}

#[tokio::test]
async fn a_spent_daily_budget_makes_no_call() {
    let client = ClientConfig {
        daily_quota: 2,
        ..config()
    };
    let s = setup(unthrottled(), "shop-budget", client).await;
    ok(s.client.modulos(&s.tenant).await, "1");
    ok(s.client.modulos(&s.tenant).await, "2");
    assert_eq!(s.client.used_today(&s.tenant), 2);
    let before = s.sb.call_log().len();
    let outcome = s.client.modulos(&s.tenant).await;
    assert!(outcome.calls.is_empty());
    assert_eq!(s.sb.call_log().len(), before);
    let e = err(&outcome);
    let BlingError::RateLimited {
        retry_after: Some(until_midnight),
        daily: true,
    } = e
    else {
        panic!("wrong error {e:?}");
    };
    assert!(*until_midnight > Duration::ZERO);
    assert!(*until_midnight <= Duration::from_secs(24 * 3600));
    assert!(matches!(
        e.to_failure_cause(Operation::Contato),
        FailureCause::RateLimited { .. }
    ));
    // Another tenant has its own budget.
    let other = TenantId::parse("shop-budget-2").unwrap();
    s.tokens.connect(&s.sb, "shop-budget-2");
    ok(s.client.modulos(&other).await, "other tenant");
}

// ---------------------------------------------------------------------------------------------
// Tokens

#[tokio::test]
async fn an_expired_token_is_renewed_once_and_the_call_succeeds() {
    let sandbox = SandboxConfig {
        access_ttl: Duration::from_secs(1),
        ..unthrottled()
    };
    let s = setup(sandbox, "shop-expiry", config()).await;
    ok(s.client.modulos(&s.tenant).await, "fresh token");
    tokio::time::sleep(Duration::from_millis(1300)).await;

    let outcome = s.client.modulos(&s.tenant).await;
    assert_eq!(statuses(&outcome.calls), [Some(401), Some(200)]);
    assert_eq!(
        outcome.calls[0].error_type.as_deref(),
        Some("invalid_token")
    );
    assert_no_secret(&s.tokens, &outcome);
    ok(outcome, "after renewal");
    assert_eq!(s.tokens.renewals.load(Ordering::SeqCst), 1);
    assert!(s.tokens.reports().is_empty());
    let token_calls =
        s.sb.call_log()
            .iter()
            .filter(|c| c.path.ends_with("/oauth/token"))
            .count();
    assert_eq!(token_calls, 1);
}

#[tokio::test]
async fn revocation_is_reported_once_and_then_no_call_is_made() {
    let s = setup(unthrottled(), "shop-revoked", config()).await;
    ok(s.client.modulos(&s.tenant).await, "connected");
    assert!(s.sb.revoke_account("shop-revoked") > 0);

    let outcome = s.client.get_contato(&s.tenant, 42).await;
    assert_eq!(statuses(&outcome.calls), [Some(401)]);
    assert_no_secret(&s.tokens, &outcome);
    let e = err(&outcome);
    let BlingError::Revoked {
        evidence: Some(evidence),
    } = e
    else {
        panic!("wrong error {e:?}");
    };
    assert_eq!(evidence.call, "GET /contatos/42");
    assert_eq!(evidence.status, 401);
    assert_eq!(evidence.error_type, "invalid_token");
    assert!(!e.is_transient());
    assert!(matches!(
        e.to_failure_cause(Operation::Contato),
        FailureCause::AuthorizationRevoked { .. }
    ));
    assert_eq!(s.tokens.renewals.load(Ordering::SeqCst), 1);
    let reports = s.tokens.reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].0, "shop-revoked");
    assert_eq!(&reports[0].1, evidence);

    // The token source now answers Revoked: no HTTP call at all.
    let before = s.sb.call_log().len();
    let outcome = s.client.modulos(&s.tenant).await;
    assert!(outcome.calls.is_empty());
    assert_eq!(s.sb.call_log().len(), before);
    assert!(matches!(
        err(&outcome),
        BlingError::Revoked { evidence: None }
    ));
    assert_eq!(s.tokens.reports().len(), 1, "reported once");
}

/// Jobs of one tenant that took their token before another job found the access revoked, and
/// then waited for the rate limiter, send nothing once their turn comes: no call leaves after
/// the revocation is recorded.
#[tokio::test]
async fn calls_waiting_for_the_limiter_do_not_leave_after_a_revocation() {
    let client = ClientConfig {
        rate_limit_per_sec: 2,
        ..config()
    };
    let s = setup(unthrottled(), "shop-waiting", client).await;
    ok(s.client.modulos(&s.tenant).await, "connected");
    assert!(s.sb.revoke_account("shop-waiting") > 0);
    let before = api_log(&s.sb).len();
    let outcomes = futures::future::join_all((0..4).map(|_| s.client.modulos(&s.tenant))).await;
    let sent: usize = outcomes.iter().map(|o| o.calls.len()).sum();
    assert_eq!(
        sent, 1,
        "only the call that found out was sent: {outcomes:?}"
    );
    assert_eq!(api_log(&s.sb).len() - before, 1, "the sandbox saw one call");
    for o in &outcomes {
        assert!(
            matches!(err(o), BlingError::Revoked { .. }),
            "{:?}",
            o.result
        );
    }
    assert_eq!(s.tokens.reports().len(), 1);
}

/// An NF-e's send waits its turn in the tenant's limiter, and its caller's check is asked after
/// that wait, right before it leaves: no longer wanted (the invoice was cancelled during the
/// wait), nothing leaves and nothing is recorded; still wanted, it leaves.
#[tokio::test]
async fn a_send_no_longer_wanted_after_the_limiters_wait_does_not_leave() {
    let client = ClientConfig {
        rate_limit_per_sec: 1,
        ..config()
    };
    let s = setup(unthrottled(), "shop-still-wanted", client).await;
    let (c, t) = (&s.client, &s.tenant);
    let id_contato = ok(c.create_contato(t, &contato("Ana", CPF)).await, "contato").id;
    let id = ok(
        c.create_pedido(t, &pedido(&s, id_contato, "INV-9")).await,
        "pedido",
    )
    .id;
    let id_nfe = ok(c.gerar_nfe(t, id).await, "gerar-nfe");
    // gerar-nfe just took the tenant's slot: the send waits about a second for the next one,
    // and the invoice is cancelled 200 ms into that wait.
    let cancelled = Arc::new(AtomicBool::new(false));
    let flip = cancelled.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        flip.store(true, Ordering::SeqCst);
    });
    let asked = AtomicUsize::new(0);
    let (asked, cancelled) = (&asked, &*cancelled);
    let still_wanted: &StillWanted<'_> = &move || {
        Box::pin(async move {
            asked.fetch_add(1, Ordering::SeqCst);
            if cancelled.load(Ordering::SeqCst) {
                Err("invoice INV-9 was cancelled".to_string())
            } else {
                Ok(())
            }
        })
    };
    let before = api_log(&s.sb).len();
    let refused = c.enviar_nfe_if(t, id_nfe, still_wanted).await;
    assert!(
        matches!(err(&refused), BlingError::Halted(why) if why.contains("cancelled")),
        "{:?}",
        refused.result
    );
    assert!(refused.calls.is_empty(), "no call recorded");
    assert_eq!(api_log(&s.sb).len(), before, "nothing reached Bling");
    assert_eq!(
        asked.load(Ordering::SeqCst),
        1,
        "asked once, after the wait"
    );

    cancelled.store(false, Ordering::SeqCst);
    let sent = c.enviar_nfe_if(t, id_nfe, still_wanted).await;
    assert_eq!(statuses(&sent.calls), [Some(200)], "{:?}", sent.result);
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    let log = api_log(&s.sb);
    assert_eq!(log.len(), before + 1);
    assert_eq!(log[before].method, "POST");
    assert!(log[before].path.ends_with(&format!("/nfe/{id_nfe}/enviar")));
}

#[tokio::test]
async fn a_renewed_token_refused_again_is_a_revocation() {
    let s = setup(unthrottled(), "shop-refused", config()).await;
    s.sb.revoke_account("shop-refused");
    *s.tokens.renew_with.lock().unwrap() = Some("renewed-but-refused-token-0123456789".into());
    s.tokens
        .secrets
        .lock()
        .unwrap()
        .push("renewed-but-refused-token-0123456789".into());

    let outcome = s.client.modulos(&s.tenant).await;
    assert_eq!(statuses(&outcome.calls), [Some(401), Some(401)]);
    assert_no_secret(&s.tokens, &outcome);
    assert!(matches!(
        err(&outcome),
        BlingError::Revoked { evidence: Some(_) }
    ));
    assert_eq!(s.tokens.renewals.load(Ordering::SeqCst), 1);
    assert_eq!(s.tokens.reports().len(), 1);
}

#[tokio::test]
async fn a_tenant_never_connected_makes_no_call() {
    let s = setup(unthrottled(), "shop-a", config()).await;
    let stranger = TenantId::parse("shop-never").unwrap();
    let outcome = s.client.get_pedido(&stranger, 1).await;
    assert!(outcome.calls.is_empty());
    assert_eq!(err(&outcome), &BlingError::NotConnected);
    assert!(matches!(
        err(&outcome).to_failure_cause(Operation::Contato),
        FailureCause::AuthorizationRevoked { .. }
    ));
    assert!(s.sb.call_log().is_empty());
}

#[tokio::test]
async fn no_token_appears_in_calls_errors_or_debug_output() {
    let s = setup(unthrottled(), "shop-secrets", config()).await;
    let mut outcomes: Vec<CallOutcome<()>> = Vec::new();
    outcomes.push(s.client.modulos(&s.tenant).await.map(|_| ()));
    outcomes.push(
        s.client
            .create_contato(&s.tenant, &contato("Ana", "12345678900"))
            .await
            .map(|_| ()),
    );
    outcomes.push(s.client.get_nfe(&s.tenant, 7).await.map(|_| ()));
    s.sb.set_faults(
        Some("shop-secrets"),
        FaultConfig::none().with_rule(FaultRule::any().drop_rate(1.0)),
    );
    outcomes.push(s.client.get_contato(&s.tenant, 1).await.map(|_| ()));
    s.sb.clear_account_faults("shop-secrets");
    s.sb.revoke_account("shop-secrets");
    outcomes.push(s.client.modulos(&s.tenant).await.map(|_| ()));
    assert_eq!(outcomes.iter().filter(|o| o.result.is_err()).count(), 4);
    for outcome in &outcomes {
        assert_no_secret(&s.tokens, outcome);
    }
    let debug = format!("{:?}", s.client);
    for secret in s.tokens.secrets() {
        assert!(!debug.contains(&secret));
    }
    assert!(!s.tokens.secrets().is_empty());
}
