//! The running server and its Rust handle.

use crate::sandbox::calllog::CallRecord;
use crate::sandbox::config::SandboxConfig;
use crate::sandbox::conn::{ConnHandle, KillableListener};
use crate::sandbox::control::{self, AccountSummary};
use crate::sandbox::error::{ApiError, SandboxError};
use crate::sandbox::faults::FaultConfig;
use crate::sandbox::oauth::{self, TokenSet};
use crate::sandbox::pipeline::{api_layer, ip_layer};
use crate::sandbox::state::Shared;
use crate::sandbox::{contatos, empresa, encoding, formas, nfe, pedidos, situacoes};
use axum::routing::{get, patch, post};
use axum::Router;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route(
            "/Api/v3/contatos",
            get(contatos::list).post(contatos::create),
        )
        .route(
            "/Api/v3/contatos/{id}",
            get(contatos::get_one)
                .put(contatos::update)
                .delete(contatos::delete),
        )
        .route(
            "/Api/v3/contatos/{id}/situacoes",
            patch(contatos::set_situacao),
        )
        .route(
            "/Api/v3/pedidos/vendas",
            get(pedidos::list).post(pedidos::create),
        )
        .route(
            "/Api/v3/pedidos/vendas/{id}",
            get(pedidos::get_one)
                .put(pedidos::update)
                .delete(pedidos::delete),
        )
        .route(
            "/Api/v3/pedidos/vendas/{id}/situacoes/{id_situacao}",
            patch(pedidos::set_situacao),
        )
        .route(
            "/Api/v3/pedidos/vendas/{id}/gerar-nfe",
            post(pedidos::gerar_nfe),
        )
        .route("/Api/v3/formas-pagamentos", get(formas::list))
        .route("/Api/v3/formas-pagamentos/{id}", get(formas::get_one))
        .route("/Api/v3/empresas/me/dados-basicos", get(empresa::get))
        .route("/Api/v3/nfe/{id}", get(nfe::get_one))
        .route("/Api/v3/nfe/{id}/enviar", post(nfe::enviar))
        .route("/Api/v3/situacoes/modulos", get(situacoes::modulos))
        .route(
            "/Api/v3/situacoes/modulos/{id}",
            get(situacoes::situacoes_do_modulo),
        )
        .route(
            "/Api/v3/situacoes/modulos/{id}/transicoes",
            get(situacoes::transicoes),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            api_layer,
        ));
    let oauth = Router::new()
        .route(
            "/Api/v3/oauth/authorize",
            get(oauth::authorize_page).post(oauth::authorize_submit),
        )
        .route("/Api/v3/oauth/token", post(oauth::token))
        .route("/Api/v3/oauth/revoke", post(oauth::revoke));
    api.merge(oauth)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            ip_layer,
        ))
        .merge(control::router())
        .merge(crate::sandbox::control_resources::router())
        .merge(crate::sandbox::control_webhooks::router())
        .fallback(|| async { ApiError::not_found("Recurso") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "Método não permitido",
                "O recurso não aceita este método HTTP",
            )
        })
        .layer(axum::middleware::map_response(encoding::php_json))
        .with_state(shared)
}

/// Stops the server when the last `Sandbox` clone is dropped (dropping the sender ends the
/// graceful-shutdown wait).
struct ServerTask {
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// A running Bling API v3 sandbox. Cheap to clone; the server stops on [`Sandbox::shutdown`] or
/// when the last clone is dropped.
#[derive(Clone)]
pub struct Sandbox {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: Arc<ServerTask>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Serves the sandbox on `listener` (bind `127.0.0.1:0` for a random port).
    pub async fn start(config: SandboxConfig, listener: TcpListener) -> std::io::Result<Sandbox> {
        config
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let mut addr = listener.local_addr()?;
        // A wildcard bind is reachable on loopback; clients need a concrete host in the URL.
        match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            _ => {}
        }
        let shared = Arc::new(Shared::new(config));
        let app = router(shared.clone()).into_make_service_with_connect_info::<ConnHandle>();
        let (stop, mut stopped) = watch::channel(false);
        tokio::spawn(crate::sandbox::webhooks::run(
            shared.clone(),
            stop.subscribe(),
        ));
        let serve =
            axum::serve(KillableListener::new(listener), app).with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            });
        let task = tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "bling sandbox server failed");
            }
        });
        tracing::info!(%addr, "bling sandbox listening");
        Ok(Sandbox {
            shared,
            addr,
            server: Arc::new(ServerTask {
                stop,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT/Api/v3`, the base URL to give a Bling client.
    pub fn base_url(&self) -> String {
        format!("http://{}/Api/v3", self.addr)
    }

    pub fn authorize_url(&self) -> String {
        format!("{}/oauth/authorize", self.base_url())
    }

    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.base_url())
    }

    pub fn revoke_url(&self) -> String {
        format!("{}/oauth/revoke", self.base_url())
    }

    /// `http://HOST:PORT/_sandbox`, the control plane's base URL.
    pub fn control_url(&self) -> String {
        format!("http://{}/_sandbox", self.addr)
    }

    /// Every API and OAuth call so far, oldest first.
    pub fn call_log(&self) -> Vec<CallRecord> {
        self.shared.log().all()
    }

    pub fn clear_call_log(&self) {
        self.shared.log().clear();
    }

    pub fn accounts(&self) -> Vec<AccountSummary> {
        self.shared.account_summaries()
    }

    pub fn account(&self, name: &str) -> Option<AccountSummary> {
        self.shared.account_summary(name)
    }

    /// "The shop changed its Bling password": every access and refresh token of the account,
    /// for every client app, stops working. Returns how many authorizations were revoked.
    pub fn revoke_account(&self, account: &str) -> usize {
        self.shared.revoke(account, None)
    }

    /// "The shop removed the app": revokes only `client_id`'s authorizations on the account.
    pub fn revoke_app(&self, account: &str, client_id: &str) -> usize {
        self.shared.revoke(account, Some(client_id))
    }

    /// Replaces the faults of one account (`Some`) or the global ones (`None`), and restarts
    /// the seeded generator of that scope.
    pub fn set_faults(&self, account: Option<&str>, faults: FaultConfig) {
        self.shared.set_faults(account, Some(faults));
    }

    /// Removes an account's own faults so the global ones apply again.
    pub fn clear_account_faults(&self, account: &str) {
        self.shared.set_faults(Some(account), None);
    }

    /// Adds a custom sales-order situação to `account` (created if new); returns its id.
    pub fn add_situacao(&self, account: &str, nome: &str) -> i64 {
        self.shared.add_situacao(account, nome)
    }

    /// A custom sales-order situação inheriting from `id_herdado` (and its `valor`); `None` if
    /// `id_herdado` is not a sales situação of the account.
    pub fn add_situacao_herdada(&self, account: &str, nome: &str, id_herdado: i64) -> Option<i64> {
        self.shared.add_situacao_herdada(account, nome, id_herdado)
    }

    /// Makes a contato look "included" (and last changed) `days` ago, so that Bling's default
    /// `criterio=3` ("Últimos incluídos") no longer lists it. False if there is no such contato.
    pub fn age_contato(&self, account: &str, id: i64, days: i64) -> bool {
        self.shared.age_contato(account, id, days)
    }

    /// Adds an active payment method to `account` (created if new); returns its id.
    /// `tipo_pagamento` is the NF-e code (1 dinheiro, 3 crédito, 4 débito, 15 boleto, 17 Pix…).
    pub fn add_forma_pagamento(&self, account: &str, descricao: &str, tipo_pagamento: i64) -> i64 {
        self.shared
            .add_forma_pagamento(account, descricao, tipo_pagamento)
    }

    /// Activates or deactivates a payment method; false if the account has no such method.
    pub fn set_forma_pagamento_ativa(&self, account: &str, id: i64, ativa: bool) -> bool {
        self.shared.set_forma_situacao(account, id, ativa)
    }

    /// The account's payment methods as `GET /formas-pagamentos` lists them.
    pub fn formas_pagamento(&self, account: &str) -> Vec<serde_json::Value> {
        self.shared.formas_json(account)
    }

    /// The account's `GET /empresas/me/dados-basicos` `data` (its `id` is the webhooks'
    /// `companyId`); `None` if the account does not exist yet.
    pub fn empresa(&self, account: &str) -> Option<serde_json::Value> {
        self.shared.empresa_json(account)
    }

    /// Tokens for `account` without the browser flow or the token endpoint (not logged, not
    /// counted by the token guard). JWT-shaped while JWT-only mode is on, opaque otherwise.
    pub fn grant_tokens(&self, client_id: &str, account: &str) -> Result<TokenSet, SandboxError> {
        self.shared.grant_tokens(client_id, account)
    }

    /// Tokens like [`Sandbox::grant_tokens`], always JWT-shaped (as after `enable-jwt: 1`).
    pub fn grant_jwt_tokens(
        &self,
        client_id: &str,
        account: &str,
    ) -> Result<TokenSet, SandboxError> {
        self.shared.grant_tokens_as(client_id, account, true)
    }

    /// "Empresa inativa" switch (company inactive or in arrears). While inactive, refreshes and
    /// code exchanges answer `UNAUTHORIZED_ERROR`, API calls too (401), and the authorize
    /// redirect carries `error=UNAUTHORIZED_ERROR`. Tokens survive and work again once active.
    pub fn set_company_active(&self, account: &str, active: bool) {
        self.shared.set_company_active(account, active);
    }

    /// Inactivates (or reactivates) a client app: inactivating revokes every token of the app
    /// on every account and makes authorize redirect with `error=app_inativo`. Returns how many
    /// authorizations were revoked.
    pub fn set_app_active(&self, client_id: &str, active: bool) -> Result<usize, SandboxError> {
        self.shared.set_app_active(client_id, active)
    }

    /// JWT-only mode (Bling after the opaque-token cut-off): token calls without
    /// `enable-jwt: 1` and API calls without it are refused, opaque tokens stop working.
    pub fn set_jwt_only(&self, on: bool) {
        self.shared.set_jwt_only(on);
    }

    pub fn jwt_only(&self) -> bool {
        self.shared.jwt_only()
    }

    /// The account's contatos as `GET /contatos/{id}` returns them.
    pub fn contatos(&self, account: &str) -> Vec<serde_json::Value> {
        self.shared.contatos_json(account)
    }

    /// The account's sales orders as `GET /pedidos/vendas/{id}` returns them.
    pub fn pedidos(&self, account: &str) -> Vec<serde_json::Value> {
        self.shared.pedidos_json(account)
    }

    /// The account's NF-e as `GET /nfe/{id}` returns them.
    pub fn nfes(&self, account: &str) -> Vec<serde_json::Value> {
        self.shared.nfes_json(account)
    }

    /// Forgets rate-limit windows, daily quota usage and token-endpoint blocks.
    pub fn reset_counters(&self) {
        self.shared.reset_counters();
    }

    /// Stops accepting, lets in-flight calls finish (up to 5 s), and waits for the server.
    pub async fn shutdown(self) {
        self.server.stop.send_replace(true);
        let task = self
            .server
            .task
            .lock()
            .expect("sandbox task mutex poisoned")
            .take();
        if let Some(mut task) = task {
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

/// Runs a sandbox on `listen` until Ctrl-C (what `bling-ledger sandbox` calls).
pub async fn serve_cli(listen: SocketAddr, config: SandboxConfig) -> anyhow::Result<()> {
    let clients = config.clients.clone();
    let listener = TcpListener::bind(listen).await?;
    let sandbox = Sandbox::start(config, listener).await?;
    println!("Bling API v3 sandbox at {}", sandbox.base_url());
    println!(
        "  authorize: {}?response_type=code&client_id=…&state=…",
        sandbox.authorize_url()
    );
    println!("  token:     {}", sandbox.token_url());
    println!("  control:   {}", sandbox.control_url());
    for c in &clients {
        println!(
            "  client app: client_id={} client_secret={} redirect_uri={}",
            c.client_id, c.client_secret, c.redirect_uri
        );
    }
    tokio::signal::ctrl_c().await?;
    println!("stopping the sandbox");
    sandbox.shutdown().await;
    Ok(())
}
