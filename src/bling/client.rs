//! [`BlingClient`]: one method per Bling API v3 endpoint the sync engine uses.
//!
//! Every method takes the tenant first and returns a [`CallOutcome`]: the result **and** every
//! HTTP attempt it made ([`BlingCall`]), success or failure, so the sync worker can keep the
//! calls in its events. Each attempt goes through the tenant's rate limiter and daily budget
//! ([`TenantLimiter`]); 401s go through the token source ([`AccessTokens`]); transient failures
//! are retried per [`RetryPolicy`] (creates only when Bling certainly did not apply them, see
//! [`crate::bling::retry`]).
//!
//! An attempt leaves only after, in this order: the tenant's limiter let it through (its turn
//! in the account's 3 req/s: seconds when the shop's parallel jobs queue calls); no revocation
//! of the tenant was learned since its token was taken; the caller's
//! [`gate`](crate::bling::gate) is open (a sync job's lease); and the request's own
//! [`StillWanted`] check, when its caller gave one, agrees (the NF-e's send: its invoice not
//! cancelled meanwhile). All are asked again before every retry. A refusal ends the request
//! with an error, and the refused attempt is neither made nor recorded. None of them can stop
//! a change that lands while the request is on the wire: the caller learns of it afterwards.
//!
//! Tokens travel only in the `Authorization` header: never in URLs, [`BlingCall`]s, errors,
//! logs or `Debug` output (any text the client keeps is also scrubbed of the token).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aggregates::connection::RevocationEvidence;
use aggregates::ids::TenantId;
use aggregates::sync::BlingCall;
use chrono::Utc;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::bling::error::{BlingError, BlingErrorBody};
use crate::bling::gate::StillWanted;
use crate::bling::limiter::TenantLimiter;
use crate::bling::models::{
    fold, Contato, ContatoListItem, CreatedId, Data, EmpresaDadosBasicos, FormaPagamento,
    ModuloSistema, Nfe, NfeEnviada, NfeGerada, PedidoVenda, PedidoVendaListItem, Situacao,
    SituacoesDeVenda,
};
use crate::bling::retry::{AttemptFacts, RetryPolicy};
use crate::bling::{AccessTokens, AuthFailure};

/// Settings of a [`BlingClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Whole-request timeout of one attempt (connect, send, answer).
    pub timeout: Duration,
    /// Requests per second per tenant (Bling: 3). 0 disables the limiter.
    pub rate_limit_per_sec: u32,
    /// Requests per day per tenant (Bling: 120,000), reset at midnight in Brasília. 0 disables.
    pub daily_quota: u64,
    /// Requests per second of this process, every tenant together: its share of Bling's
    /// per-IP limit (600 in 10 s; see `bling::limiter`). 0 disables.
    pub egress_per_sec: u32,
    pub retry: RetryPolicy,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            timeout: Duration::from_secs(30),
            rate_limit_per_sec: 3,
            daily_quota: 120_000,
            egress_per_sec: 50,
            retry: RetryPolicy::default(),
        }
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    #[error("invalid Bling base URL {url:?}: {reason}")]
    BaseUrl { url: String, reason: String },
    #[error("could not build the HTTP client: {0}")]
    Http(String),
}

/// What a client method returns: the result and every HTTP attempt made for it (empty when
/// no call was made: token source refused, daily budget spent).
#[derive(Debug, Clone, PartialEq)]
pub struct CallOutcome<T> {
    pub result: Result<T, BlingError>,
    pub calls: Vec<BlingCall>,
}

impl<T> CallOutcome<T> {
    /// The result, dropping the calls.
    pub fn into_result(self) -> Result<T, BlingError> {
        self.result
    }

    /// Result and calls, for `let (result, calls) = outcome.into_parts();`.
    pub fn into_parts(self) -> (Result<T, BlingError>, Vec<BlingCall>) {
        (self.result, self.calls)
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> CallOutcome<U> {
        CallOutcome {
            result: self.result.map(f),
            calls: self.calls,
        }
    }

    fn failed(error: BlingError, calls: Vec<BlingCall>) -> CallOutcome<T> {
        CallOutcome {
            result: Err(error),
            calls,
        }
    }
}

/// One page of a list: `pagina` from 1, `limite` up to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub pagina: u32,
    pub limite: u32,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            pagina: 1,
            limite: MAX_LIMITE,
        }
    }
}

/// The header that asks Bling for JWT access tokens and tells it the client speaks JWT.
pub const ENABLE_JWT: &str = "enable-jwt";

/// `criterio` of `GET /contatos`: 1 Todos, 2 Excluídos, 3 Últimos incluídos (Bling's
/// default), 4 Sem movimento ([OAS]).
pub const CRITERIO_TODOS: u8 = 1;

/// Bling's largest page.
const MAX_LIMITE: u32 = 100;
/// Pages a `find_*` reads at most. A document or an invoice id matching more than a thousand
/// records means Bling ignored the filter; the caller gets an error rather than a partial
/// answer it could mistake for "not there" (and create a duplicate).
const MAX_FIND_PAGES: u32 = 10;

/// One HTTP attempt as an observer sees it: ids only (the route has its numeric ids replaced
/// by `{id}` and no query), never a token, a body or a document number.
#[derive(Debug, Clone, Copy)]
pub struct CallEvent<'a> {
    pub tenant: &'a TenantId,
    pub method: &'a str,
    /// The route template, e.g. `/pedidos/vendas/{id}`.
    pub route: &'a str,
    /// Bling's HTTP status; `None` when no answer came (timeout, connection failure).
    pub status: Option<u16>,
    pub latency: Duration,
}

/// Told of every HTTP attempt the client makes (metrics); it must not block.
pub trait CallObserver: Send + Sync {
    fn on_call(&self, call: &CallEvent<'_>);
}

/// The typed Bling API v3 client. Cheap to clone (one `Arc` inside); share one per process so
/// that the per-tenant limiter sees every call.
#[derive(Clone)]
pub struct BlingClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// `…/Api/v3`, without a trailing slash.
    base: String,
    tokens: Arc<dyn AccessTokens>,
    limiter: TenantLimiter,
    retry: RetryPolicy,
    observer: Option<Arc<dyn CallObserver>>,
}

impl std::fmt::Debug for BlingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlingClient")
            .field("base", &self.inner.base)
            .field("limiter", &self.inner.limiter)
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

/// A request as the client replays it.
struct Request {
    method: Method,
    /// Under the base, e.g. `/contatos/12`.
    path: String,
    query: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    /// May be replayed whatever happened (GET, PUT, PATCH to a given situação).
    idempotent: bool,
}

impl Request {
    fn new(method: Method, path: String) -> Request {
        let idempotent = method != Method::POST;
        Request {
            method,
            path,
            query: Vec::new(),
            body: None,
            idempotent,
        }
    }

    fn get(path: String) -> Request {
        Request::new(Method::GET, path)
    }

    fn query(mut self, pairs: impl IntoIterator<Item = (String, String)>) -> Request {
        self.query.extend(pairs);
        self
    }

    fn json(mut self, body: &impl Serialize) -> Result<Request, BlingError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| BlingError::Decode(format!("could not encode the request: {e}")))?;
        self.body = Some(bytes);
        Ok(self)
    }
}

/// A 2xx answer's body.
struct Answer {
    body: Vec<u8>,
}

/// A failed attempt: the error and whether Bling may have applied the request.
struct Failure {
    error: BlingError,
    may_have_applied: bool,
}

impl BlingClient {
    /// A client for the API at `base_url` (`https://api.bling.com.br/Api/v3`, or a sandbox's
    /// `base_url()`).
    pub fn new(
        base_url: &str,
        tokens: Arc<dyn AccessTokens>,
        config: ClientConfig,
    ) -> Result<BlingClient, ClientBuildError> {
        Self::build(base_url, tokens, config, None)
    }

    /// [`BlingClient::new`], telling `observer` of every HTTP attempt.
    pub fn observed(
        base_url: &str,
        tokens: Arc<dyn AccessTokens>,
        config: ClientConfig,
        observer: Arc<dyn CallObserver>,
    ) -> Result<BlingClient, ClientBuildError> {
        Self::build(base_url, tokens, config, Some(observer))
    }

    fn build(
        base_url: &str,
        tokens: Arc<dyn AccessTokens>,
        config: ClientConfig,
        observer: Option<Arc<dyn CallObserver>>,
    ) -> Result<BlingClient, ClientBuildError> {
        let base = base_url.trim_end_matches('/').to_string();
        let parsed = Url::parse(&base).map_err(|e| ClientBuildError::BaseUrl {
            url: base_url.to_string(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.query().is_some()
            || parsed.cannot_be_a_base()
        {
            return Err(ClientBuildError::BaseUrl {
                url: base_url.to_string(),
                reason: "must be an http(s) URL without a query".into(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("bling-ledger/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientBuildError::Http(e.to_string()))?;
        Ok(BlingClient {
            inner: Arc::new(Inner {
                http,
                base,
                tokens,
                limiter: TenantLimiter::new(config.rate_limit_per_sec, config.daily_quota)
                    .with_egress(config.egress_per_sec),
                retry: config.retry,
                observer,
            }),
        })
    }

    /// What this process's share of Bling's per-IP limit has done (`None`: no such budget).
    pub fn egress_stats(&self) -> Option<crate::bling::limiter::EgressStats> {
        self.inner.limiter.egress_stats()
    }

    /// Requests the tenant has taken from today's budget in this process.
    pub fn used_today(&self, tenant: &TenantId) -> u64 {
        self.inner.limiter.used_today(tenant)
    }

    // -----------------------------------------------------------------------------------------
    // Contatos

    /// `POST /contatos`. Single attempt unless Bling certainly did not apply it: look up by
    /// `numeroDocumento` before creating, and again after an `Unavailable`.
    pub async fn create_contato(
        &self,
        tenant: &TenantId,
        contato: &Contato,
    ) -> CallOutcome<CreatedId> {
        match Request::new(Method::POST, "/contatos".into()).json(contato) {
            Ok(req) => self.fetch(tenant, req).await,
            Err(e) => CallOutcome::failed(e, Vec::new()),
        }
    }

    /// `PUT /contatos/{id}`: **replaces the whole contato** — fields left `None` are cleared.
    pub async fn update_contato(
        &self,
        tenant: &TenantId,
        id: i64,
        contato: &Contato,
    ) -> CallOutcome<()> {
        match Request::new(Method::PUT, format!("/contatos/{id}")).json(contato) {
            Ok(req) => self.no_content(tenant, req).await,
            Err(e) => CallOutcome::failed(e, Vec::new()),
        }
    }

    /// `GET /contatos/{id}`.
    pub async fn get_contato(&self, tenant: &TenantId, id: i64) -> CallOutcome<Contato> {
        self.fetch(tenant, Request::get(format!("/contatos/{id}")))
            .await
    }

    /// `GET /contatos?numeroDocumento=…&criterio=1`, every page. The document is sent without
    /// punctuation (Bling's filter "desconsidera a pontuação"), and rows whose document differs
    /// are dropped (should Bling ignore the filter), comparing digits with digits: Bling reads
    /// documents back punctuated. `criterio=1` ("Todos") because Bling's default, 3 ("Últimos
    /// incluídos"), lists only recent contatos and would miss an older one, which is how a
    /// second contato gets created ([OAS] `criterio`). Several contatos may share a document.
    pub async fn find_contatos_by_documento(
        &self,
        tenant: &TenantId,
        numero_documento: &str,
    ) -> CallOutcome<Vec<ContatoListItem>> {
        let wanted = normalize_documento(numero_documento);
        let filters = vec![
            ("numeroDocumento".to_string(), wanted.clone()),
            ("criterio".to_string(), CRITERIO_TODOS.to_string()),
        ];
        self.list_all::<ContatoListItem>(tenant, "/contatos", filters)
            .await
            .map(|rows| {
                rows.into_iter()
                    .filter(|c| normalize_documento(&c.numero_documento) == wanted)
                    .collect()
            })
    }

    /// `GET /contatos` with Bling's filters (`pesquisa`, `criterio`, `uf`, …), one page.
    pub async fn list_contatos(
        &self,
        tenant: &TenantId,
        filters: &[(&str, &str)],
        page: Page,
    ) -> CallOutcome<Vec<ContatoListItem>> {
        self.fetch(tenant, list_request("/contatos", filters, page))
            .await
    }

    // -----------------------------------------------------------------------------------------
    // Pedidos de venda

    /// `POST /pedidos/vendas`. Single attempt unless Bling certainly did not apply it: look up
    /// by `numeroLoja` before creating, and again after an `Unavailable`.
    pub async fn create_pedido(
        &self,
        tenant: &TenantId,
        pedido: &PedidoVenda,
    ) -> CallOutcome<CreatedId> {
        match Request::new(Method::POST, "/pedidos/vendas".into()).json(pedido) {
            Ok(req) => self.fetch(tenant, req).await,
            Err(e) => CallOutcome::failed(e, Vec::new()),
        }
    }

    /// `PUT /pedidos/vendas/{id}`: **replaces the whole order**. Bling answers `200
    /// {"data":{"id","alertas"}}` ([OAS]); an empty 2xx is read as no alerts. A `PUT` that
    /// changes nothing is refused with code 3 ([`BlingError::is_duplicate_sale`]): the order
    /// already holds this content. Send parcelas without their old ids.
    pub async fn update_pedido(
        &self,
        tenant: &TenantId,
        id: i64,
        pedido: &PedidoVenda,
    ) -> CallOutcome<CreatedId> {
        match Request::new(Method::PUT, format!("/pedidos/vendas/{id}")).json(pedido) {
            Ok(req) => self.fetch_or_empty(tenant, req).await,
            Err(e) => CallOutcome::failed(e, Vec::new()),
        }
    }

    /// `GET /pedidos/vendas/{id}`.
    pub async fn get_pedido(&self, tenant: &TenantId, id: i64) -> CallOutcome<PedidoVenda> {
        self.fetch(tenant, Request::get(format!("/pedidos/vendas/{id}")))
            .await
    }

    /// `GET /pedidos/vendas?numerosLojas[]=…`, every page; rows with another `numeroLoja` are
    /// dropped (should Bling ignore the filter). `numeroLoja` is not unique in Bling.
    pub async fn find_pedidos_by_numero_loja(
        &self,
        tenant: &TenantId,
        numero_loja: &str,
    ) -> CallOutcome<Vec<PedidoVendaListItem>> {
        let filters = vec![("numerosLojas[]".to_string(), numero_loja.to_string())];
        self.list_all::<PedidoVendaListItem>(tenant, "/pedidos/vendas", filters)
            .await
            .map(|rows| {
                rows.into_iter()
                    .filter(|p| p.numero_loja == numero_loja)
                    .collect()
            })
    }

    /// `GET /pedidos/vendas` with Bling's filters (`idContato`, `idsSituacoes[]`, …), one page.
    pub async fn list_pedidos(
        &self,
        tenant: &TenantId,
        filters: &[(&str, &str)],
        page: Page,
    ) -> CallOutcome<Vec<PedidoVendaListItem>> {
        self.fetch(tenant, list_request("/pedidos/vendas", filters, page))
            .await
    }

    /// `PATCH /pedidos/vendas/{id}/situacoes/{idSituacao}`. Discover `id_situacao` with
    /// [`BlingClient::sales_order_situacoes`]; ids differ per account.
    pub async fn change_situacao(
        &self,
        tenant: &TenantId,
        id: i64,
        id_situacao: i64,
    ) -> CallOutcome<()> {
        let req = Request::new(
            Method::PATCH,
            format!("/pedidos/vendas/{id}/situacoes/{id_situacao}"),
        );
        self.no_content(tenant, req).await
    }

    /// `POST /pedidos/vendas/{id}/gerar-nfe`: creates (does not send) the order's NF-e and
    /// answers its id. Single attempt unless certainly not applied; after an `Unavailable`,
    /// read the order's `notaFiscal` before calling again.
    pub async fn gerar_nfe(&self, tenant: &TenantId, id: i64) -> CallOutcome<i64> {
        let req = Request::new(Method::POST, format!("/pedidos/vendas/{id}/gerar-nfe"));
        self.fetch::<NfeGerada>(tenant, req)
            .await
            .map(|g| g.id_nota_fiscal)
    }

    // -----------------------------------------------------------------------------------------
    // Situações

    /// `GET /situacoes/modulos`.
    pub async fn modulos(&self, tenant: &TenantId) -> CallOutcome<Vec<ModuloSistema>> {
        self.fetch(tenant, Request::get("/situacoes/modulos".into()))
            .await
    }

    /// `GET /situacoes/modulos/{idModuloSistema}`.
    pub async fn situacoes_do_modulo(
        &self,
        tenant: &TenantId,
        id_modulo: i64,
    ) -> CallOutcome<Vec<Situacao>> {
        self.fetch(
            tenant,
            Request::get(format!("/situacoes/modulos/{id_modulo}")),
        )
        .await
    }

    /// The sales-order module ("Vendas" / "Pedidos de venda") and its situações, discovered on
    /// the tenant's account (two calls). Situação ids differ per account and shops add their
    /// own: never hard-code them. Without such a module: [`BlingError::Rejected`] with type
    /// `SALES_MODULE_NOT_FOUND` (ours).
    pub async fn sales_order_situacoes(&self, tenant: &TenantId) -> CallOutcome<SituacoesDeVenda> {
        let (modulos, mut calls) = self.modulos(tenant).await.into_parts();
        let modulos = match modulos {
            Ok(m) => m,
            Err(e) => return CallOutcome::failed(e, calls),
        };
        let Some(modulo) = pick_sales_module(&modulos) else {
            let names: Vec<_> = modulos.iter().map(|m| m.nome.as_str()).collect();
            let error = BlingError::Rejected {
                status: 404,
                body: Box::new(BlingErrorBody {
                    error_type: "SALES_MODULE_NOT_FOUND".into(),
                    message: "No sales-order module in /situacoes/modulos".into(),
                    description: format!("modules: {}", names.join(", ")),
                    ..BlingErrorBody::default()
                }),
            };
            return CallOutcome::failed(error, calls);
        };
        let (situacoes, more) = self
            .situacoes_do_modulo(tenant, modulo.id)
            .await
            .into_parts();
        calls.extend(more);
        CallOutcome {
            result: situacoes.map(|situacoes| SituacoesDeVenda { modulo, situacoes }),
            calls,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Formas de pagamento, empresa

    /// `GET /formas-pagamentos`, every page: the account's payment methods. Ids differ per
    /// account, so a sales order's `parcelas[].formaPagamento.id` must come from here.
    pub async fn formas_pagamento(&self, tenant: &TenantId) -> CallOutcome<Vec<FormaPagamento>> {
        self.list_all::<FormaPagamento>(tenant, "/formas-pagamentos", Vec::new())
            .await
    }

    /// `GET /empresas/me/dados-basicos`: the Bling account's identity (`id`, a 32-hex string
    /// equal to the webhooks' `companyId`).
    pub async fn empresa(&self, tenant: &TenantId) -> CallOutcome<EmpresaDadosBasicos> {
        self.fetch(tenant, Request::get("/empresas/me/dados-basicos".into()))
            .await
    }

    /// When the tenant may call Bling again if its daily quota is spent (Bling said so with a
    /// 429 `"period":"day"`, or our own count reached it): `None` while calls may leave.
    pub fn day_spent_until(&self, tenant: &TenantId) -> Option<chrono::DateTime<Utc>> {
        self.inner.limiter.day_spent_until(tenant)
    }

    // -----------------------------------------------------------------------------------------
    // NF-e

    /// `GET /nfe/{id}`.
    pub async fn get_nfe(&self, tenant: &TenantId, id: i64) -> CallOutcome<Nfe> {
        self.fetch(tenant, Request::get(format!("/nfe/{id}"))).await
    }

    /// `POST /nfe/{id}/enviar`: sends the NF-e to SEFAZ; answers `{"data":{"xml":…}}` once
    /// authorized, a `VALIDATION_ERROR` carrying SEFAZ's reason when rejected. Single attempt:
    /// after a lost answer, read the NF-e (`GET /nfe/{id}`) before sending again.
    pub async fn enviar_nfe(&self, tenant: &TenantId, id: i64) -> CallOutcome<String> {
        let req = Request::new(Method::POST, format!("/nfe/{id}/enviar"));
        self.fetch::<NfeEnviada>(tenant, req).await.map(|e| e.xml)
    }

    /// [`Self::enviar_nfe`], sent only while `still_wanted` agrees: it is awaited after the
    /// limiter's wait, right before the request leaves (and before a retry). A refusal is
    /// [`BlingError::Halted`] with its reason; no call is made or recorded. An NF-e authorized
    /// by SEFAZ can only be undone by a cancellation within SEFAZ's window, so the caller's
    /// last word must come as late as possible: the wait in the limiter can be seconds.
    pub async fn enviar_nfe_if(
        &self,
        tenant: &TenantId,
        id: i64,
        still_wanted: &StillWanted<'_>,
    ) -> CallOutcome<String> {
        let req = Request::new(Method::POST, format!("/nfe/{id}/enviar"));
        self.fetch_with::<NfeEnviada>(tenant, req, None, Some(still_wanted))
            .await
            .map(|e| e.xml)
    }

    // -----------------------------------------------------------------------------------------
    // Machinery

    /// Every page of a list, `limite` 100, until a short page.
    async fn list_all<T: DeserializeOwned>(
        &self,
        tenant: &TenantId,
        path: &str,
        filters: Vec<(String, String)>,
    ) -> CallOutcome<Vec<T>> {
        let mut rows = Vec::new();
        let mut calls = Vec::new();
        for pagina in 1..=MAX_FIND_PAGES {
            let req = Request::get(path.to_string()).query(filters.iter().cloned().chain([
                ("pagina".to_string(), pagina.to_string()),
                ("limite".to_string(), MAX_LIMITE.to_string()),
            ]));
            let (page, more) = self.fetch::<Vec<T>>(tenant, req).await.into_parts();
            calls.extend(more);
            match page {
                Err(e) => return CallOutcome::failed(e, calls),
                Ok(page) => {
                    let short = page.len() < MAX_LIMITE as usize;
                    rows.extend(page);
                    if short {
                        return CallOutcome {
                            result: Ok(rows),
                            calls,
                        };
                    }
                }
            }
        }
        let error = BlingError::Decode(format!(
            "{path} answered more than {MAX_FIND_PAGES} full pages for a filter that should \
             match a few records; the filter seems ignored"
        ));
        CallOutcome::failed(error, calls)
    }

    /// Sends `req` and reads `{"data": T}` from the answer.
    async fn fetch<T: DeserializeOwned>(&self, tenant: &TenantId, req: Request) -> CallOutcome<T> {
        self.fetch_with(tenant, req, None, None).await
    }

    /// Like [`Self::fetch`], but an empty 2xx body (a `204`) reads as `T::default()`.
    async fn fetch_or_empty<T: DeserializeOwned + Default>(
        &self,
        tenant: &TenantId,
        req: Request,
    ) -> CallOutcome<T> {
        self.fetch_with(tenant, req, Some(T::default), None).await
    }

    async fn fetch_with<T: DeserializeOwned>(
        &self,
        tenant: &TenantId,
        req: Request,
        empty: Option<fn() -> T>,
        still_wanted: Option<&StillWanted<'_>>,
    ) -> CallOutcome<T> {
        let (answer, mut calls) = self.execute(tenant, &req, still_wanted).await;
        let result = answer.and_then(|a| {
            if let Some(empty) = empty.filter(|_| a.body.iter().all(u8::is_ascii_whitespace)) {
                return Ok(empty());
            }
            let de = &mut serde_json::Deserializer::from_slice(&a.body);
            serde_path_to_error::deserialize::<_, Data<T>>(de)
                .map(|d| d.data)
                .map_err(|e| BlingError::Decode(format!("{} {}: {e}", req.method, req.path)))
        });
        if let (Err(e @ BlingError::Decode(_)), Some(last)) = (&result, calls.last_mut()) {
            last.error_type = Some(e.error_type());
            last.error_message = Some(e.to_string());
        }
        CallOutcome { result, calls }
    }

    /// Sends `req`; any 2xx is success, its body ignored.
    async fn no_content(&self, tenant: &TenantId, req: Request) -> CallOutcome<()> {
        let (answer, calls) = self.execute(tenant, &req, None).await;
        CallOutcome {
            result: answer.map(|_| ()),
            calls,
        }
    }

    /// The call loop: token → (limiter → checks → attempt → classify)* with one renewal after
    /// a 401 and retries of transient failures. The checks (revocation, the gate,
    /// `still_wanted`) come after every limiter wait, right before the attempt leaves.
    async fn execute(
        &self,
        tenant: &TenantId,
        req: &Request,
        still_wanted: Option<&StillWanted<'_>>,
    ) -> (Result<Answer, BlingError>, Vec<BlingCall>) {
        let inner = &self.inner;
        let mut calls = Vec::new();
        let (url, call_path) = match self.url(req) {
            Ok(u) => u,
            Err(e) => return (Err(e), calls),
        };
        let route = route_template(&req.path);
        let token_at = Instant::now();
        let mut token = match inner.tokens.access_token(tenant).await {
            Ok(t) => t,
            Err(e) => return (Err(auth_error(e)), calls),
        };
        let mut renewed = false;
        let mut attempts = 0u32;
        loop {
            if let Err(e) = inner.limiter.acquire(tenant).await {
                return (Err(e), calls);
            }
            // The wait may have been long, and another job may have found the access revoked
            // meanwhile: then this call must not leave (no call after `AuthorizationRevoked`).
            if inner.tokens.revoked_after(tenant, token_at) {
                return (Err(BlingError::Revoked { evidence: None }), calls);
            }
            // And the work itself may have lost the right to act (a sync job's lease).
            if let Err(why) = super::gate::check() {
                return (Err(BlingError::Halted(why)), calls);
            }
            // Last, the request's own check (it may read a database): what the caller knew
            // when it asked may have changed during the wait (an invoice cancelled while its
            // NF-e's send waited its turn), and after this point nothing can stop the call.
            if let Some(still_wanted) = still_wanted {
                if let Err(why) = still_wanted().await {
                    tracing::debug!(tenant = %tenant, method = %req.method, %route, %why, "Bling call not sent: no longer wanted");
                    return (Err(BlingError::Halted(why)), calls);
                }
            }
            attempts += 1;
            let sent = Instant::now();
            let (outcome, call) = self.attempt(req, &url, &call_path, &token).await;
            let latency = sent.elapsed();
            // The route, not the path: a query may carry a document number.
            tracing::debug!(
                tenant = %tenant,
                method = %call.method,
                route = %route,
                status = ?call.status,
                latency_ms = call.latency_ms,
                error_type = ?call.error_type,
                "bling call"
            );
            if let Some(observer) = &inner.observer {
                observer.on_call(&CallEvent {
                    tenant,
                    method: &call.method,
                    route: &route,
                    status: call.status,
                    latency,
                });
            }
            calls.push(call);
            let failure = match outcome {
                Ok(answer) => return (Ok(answer), calls),
                Err(f) => f,
            };
            if let BlingError::Unauthorized {
                error_type,
                message,
            } = &failure.error
            {
                let mut evidence = RevocationEvidence {
                    call: format!("{} {}", req.method, call_path),
                    status: 401,
                    error_type: error_type.clone(),
                    message: message.clone(),
                };
                if renewed {
                    tracing::warn!(tenant = %tenant, method = %req.method, %route, "renewed Bling token refused: access revoked");
                    inner.tokens.report_revoked(tenant, evidence.clone()).await;
                    return (
                        Err(BlingError::Revoked {
                            evidence: Some(evidence),
                        }),
                        calls,
                    );
                }
                renewed = true;
                // The resend with a renewed token is part of this attempt, not a retry.
                attempts -= 1;
                match inner.tokens.renew_after_unauthorized(tenant, &token).await {
                    Ok(fresh) => {
                        token = fresh;
                        continue;
                    }
                    Err(AuthFailure::Revoked) => {
                        evidence.message = format!(
                            "{}; token renewal answered: authorization revoked",
                            evidence.message
                        );
                        tracing::warn!(tenant = %tenant, method = %req.method, %route, "Bling token renewal refused: access revoked");
                        inner.tokens.report_revoked(tenant, evidence.clone()).await;
                        return (
                            Err(BlingError::Revoked {
                                evidence: Some(evidence),
                            }),
                            calls,
                        );
                    }
                    Err(AuthFailure::Transient(m)) => {
                        return (Err(BlingError::Auth(scrub(&m, &token))), calls)
                    }
                    Err(other) => return (Err(auth_error(other)), calls),
                }
            }
            if let BlingError::RateLimited { daily: true, .. } = &failure.error {
                // Bling's count covers every integration of the shop: believe it over ours.
                tracing::warn!(tenant = %tenant, "Bling says the account's daily quota is spent; no calls until midnight in Brasília");
                inner.limiter.mark_day_spent(tenant);
            }
            let facts = AttemptFacts {
                idempotent: req.idempotent,
                may_have_applied: failure.may_have_applied,
            };
            match inner.retry.next_delay(attempts, &failure.error, facts) {
                Some(delay) => {
                    tracing::debug!(tenant = %tenant, ?delay, attempt = attempts, "retrying Bling call");
                    tokio::time::sleep(delay).await;
                }
                None => return (Err(failure.error), calls),
            }
        }
    }

    /// One HTTP attempt and its record.
    async fn attempt(
        &self,
        req: &Request,
        url: &Url,
        call_path: &str,
        token: &str,
    ) -> (Result<Answer, Failure>, BlingCall) {
        let at = Utc::now();
        let started = Instant::now();
        let mut builder = self
            .inner
            .http
            .request(req.method.clone(), url.clone())
            .bearer_auth(token)
            .header(ACCEPT, "application/json")
            // Bling is discontinuing opaque tokens; the header must go on every call, not only
            // on the token grants ([DOC] /migracao-jwt).
            .header(ENABLE_JWT, "1");
        if let Some(body) = &req.body {
            builder = builder
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let mut status = None;
        let outcome = match builder.send().await {
            Err(e) => Err(transport_failure(e, token)),
            Ok(resp) => {
                let code = resp.status().as_u16();
                status = Some(code);
                let retry_after = parse_retry_after(resp.headers());
                match resp.bytes().await {
                    Err(e) => {
                        let mut f = transport_failure(e, token);
                        f.may_have_applied = true;
                        if let BlingError::Unavailable { status, message } = &mut f.error {
                            *status = Some(code);
                            *message = format!("answer lost while reading its body: {message}");
                        }
                        Err(f)
                    }
                    Ok(body) if (200..300).contains(&code) => Ok(Answer {
                        body: body.to_vec(),
                    }),
                    Ok(body) => {
                        let body = scrub(&String::from_utf8_lossy(&body), token);
                        Err(Failure {
                            error: BlingError::from_response(code, body.as_bytes(), retry_after),
                            may_have_applied: code >= 500 || code == 408,
                        })
                    }
                }
            }
        };
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (error_type, error_message) = match &outcome {
            Ok(_) => (None, None),
            Err(f) => (Some(f.error.error_type()), Some(f.error.to_string())),
        };
        let call = BlingCall {
            at,
            method: req.method.to_string(),
            path: call_path.to_string(),
            status,
            latency_ms,
            error_type,
            error_message: error_message.map(|m| scrub(&m, token)),
        };
        (outcome, call)
    }

    /// The full URL, and the path with query under the base as [`BlingCall`] keeps it.
    fn url(&self, req: &Request) -> Result<(Url, String), BlingError> {
        let mut url = Url::parse(&format!("{}{}", self.inner.base, req.path))
            .map_err(|e| BlingError::Decode(format!("bad request path {}: {e}", req.path)))?;
        if !req.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&req.query);
        }
        let call_path = match url.query() {
            Some(q) => format!("{}?{q}", req.path),
            None => req.path.clone(),
        };
        Ok((url, call_path))
    }
}

fn list_request(path: &str, filters: &[(&str, &str)], page: Page) -> Request {
    let limite = page.limite.clamp(1, MAX_LIMITE);
    Request::get(path.to_string()).query(
        filters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([
                ("pagina".to_string(), page.pagina.max(1).to_string()),
                ("limite".to_string(), limite.to_string()),
            ]),
    )
}

/// `path` with every all-digit segment replaced by `{id}`: `/pedidos/vendas/12/situacoes/9`
/// → `/pedidos/vendas/{id}/situacoes/{id}` (a bounded label for metrics and logs).
pub fn route_template(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
                "{id}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The module holding sales-order situações: "Pedidos de venda" by name or description
/// first, else one named "Vendas".
fn pick_sales_module(modulos: &[ModuloSistema]) -> Option<ModuloSistema> {
    let score = |m: &ModuloSistema| {
        let (nome, descricao) = (fold(&m.nome), fold(&m.descricao));
        if ["pedidos de venda", "pedido de venda", "pedidos de vendas"]
            .iter()
            .any(|k| nome.contains(k) || descricao.contains(k))
        {
            2
        } else if nome == "vendas" {
            1
        } else {
            0
        }
    };
    modulos
        .iter()
        .filter(|m| score(m) > 0)
        .max_by_key(|m| (score(m), std::cmp::Reverse(m.id)))
        .cloned()
}

/// A CPF/CNPJ as Bling stores it: letters and digits only, upper case.
fn normalize_documento(raw: &str) -> String {
    raw.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn auth_error(e: AuthFailure) -> BlingError {
    match e {
        AuthFailure::NotConnected => BlingError::NotConnected,
        AuthFailure::Revoked => BlingError::Revoked { evidence: None },
        AuthFailure::Transient(m) => BlingError::Auth(m),
    }
}

/// A failure before any answer: timeouts, refused or dropped connections.
fn transport_failure(e: reqwest::Error, token: &str) -> Failure {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "connection error"
    };
    // A connection that was never established carried nothing: safe to replay any call.
    let may_have_applied = !e.is_connect();
    let e = e.without_url();
    let mut message = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    Failure {
        error: BlingError::Unavailable {
            status: None,
            message: scrub(&message, token),
        },
        may_have_applied,
    }
}

/// `Retry-After` as seconds or as an HTTP date.
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = raw.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(raw).ok()?;
    Some(
        (when.with_timezone(&Utc) - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// Removes the token from any text we keep, should a server or library echo it.
fn scrub(text: &str, token: &str) -> String {
    if token.len() >= 8 && text.contains(token) {
        text.replace(token, "[token]")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modulo(id: i64, nome: &str, descricao: &str) -> ModuloSistema {
        ModuloSistema {
            id,
            nome: nome.into(),
            descricao: descricao.into(),
            criar_situacoes: true,
        }
    }

    #[test]
    fn the_sales_module_is_found_by_name_or_description() {
        let mods = [
            modulo(1, "Compras", "Pedidos de compra"),
            modulo(2, "Vendas", "Notas"),
            modulo(3, "Pedidos de Venda", ""),
        ];
        assert_eq!(pick_sales_module(&mods).map(|m| m.id), Some(3));
        assert_eq!(pick_sales_module(&mods[..2]).map(|m| m.id), Some(2));
        assert_eq!(pick_sales_module(&mods[..1]), None);
    }

    #[test]
    fn routes_hide_ids() {
        assert_eq!(route_template("/pedidos/vendas/12"), "/pedidos/vendas/{id}");
        assert_eq!(
            route_template("/pedidos/vendas/12/situacoes/9"),
            "/pedidos/vendas/{id}/situacoes/{id}"
        );
        assert_eq!(route_template("/contatos"), "/contatos");
        assert_eq!(
            route_template("/empresas/me/dados-basicos"),
            "/empresas/me/dados-basicos"
        );
    }

    #[test]
    fn documents_lose_punctuation() {
        assert_eq!(normalize_documento("123.456.789-09"), "12345678909");
        assert_eq!(normalize_documento("12.abc.345/01de-35"), "12ABC34501DE35");
    }

    #[test]
    fn tokens_are_scrubbed() {
        assert_eq!(
            scrub("bad token abcdef123456 here", "abcdef123456"),
            "bad token [token] here"
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(parse_retry_after(&h), Some(Duration::ZERO));
    }
}
